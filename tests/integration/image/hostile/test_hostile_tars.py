"""Every hostile tar of the corpus either fails with InvalidArgument or lands inside the target;
nothing outside changes: not the sentinel directory, not /etc/passwd, not the test's tmp dir."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hostile_corpus import Case, cases

from pallet.errors import InvalidArgument
from pallet.image.layers import apply_layer, decompress_layer

NOBODY = 65534


def fingerprint(path: Path) -> dict[str, tuple]:
    out = {}
    for d, ds, fs in os.walk(path):
        for n in ds + fs + ["."]:
            p = os.path.join(d, n)
            st = os.lstat(p)
            data = b""
            if os.path.isfile(p) and not os.path.islink(p):
                with open(p, "rb") as f:
                    data = f.read()
            out[os.path.relpath(p, path)] = (st.st_mode, st.st_ino, st.st_nlink, st.st_mtime_ns,
                                             st.st_size, hashlib.sha256(data).hexdigest())
    return out


def etc_passwd() -> tuple:
    st = os.stat("/etc/passwd")
    with open("/etc/passwd", "rb") as f:
        return st.st_ino, st.st_nlink, st.st_mtime_ns, hashlib.sha256(f.read()).hexdigest()


def _apply_as_nobody(raw: bytes, target: Path) -> dict:
    """Apply in a child running as nobody; returns {"error": ..., "warnings": [...]}."""
    code = (
        "import io, json, sys\n"
        "from pallet.errors import InvalidArgument\n"
        "from pallet.image.layers import apply_layer\n"
        "raw = sys.stdin.buffer.read()\n"
        "try:\n"
        "    r = apply_layer(io.BytesIO(raw), sys.argv[1], overlay_whiteouts=False)\n"
        "    print(json.dumps({'error': None, 'warnings': list(r.warnings)}))\n"
        "except InvalidArgument as e:\n"
        "    print(json.dumps({'error': str(e), 'warnings': []}))\n"
    )
    # pytest's tmp dirs are private to root: give nobody a reachable one of its own.
    outer = Path(tempfile.mkdtemp(prefix="pallet-hostile-"))
    try:
        os.chmod(outer, 0o711)
        own = outer / "target"
        own.mkdir()
        os.chown(own, NOBODY, NOBODY)
        proc = subprocess.run([sys.executable, "-c", code, str(own)], input=raw, capture_output=True,
                              user=NOBODY, group=NOBODY)
        assert proc.returncode == 0, proc.stderr.decode()
        result = json.loads(proc.stdout)
        result["listing"] = sorted(os.listdir(own))
        return result
    finally:
        shutil.rmtree(outer)


@pytest.fixture
def arena(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("the corpus runs as root so that a missed escape would really succeed")
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    (sentinel / "canary").write_bytes(b"original")
    (sentinel / "sub").mkdir()
    (sentinel / "sub/file").write_bytes(b"keep")
    target = tmp_path / "target"
    target.mkdir()
    before = (fingerprint(sentinel), etc_passwd(), sorted(os.listdir(tmp_path)))
    yield target, sentinel
    assert fingerprint(sentinel) == before[0], "something changed outside the target"
    assert etc_passwd() == before[1]
    assert sorted(os.listdir(tmp_path)) == before[2]


@pytest.mark.parametrize("mode", ["copy", "overlay"])
@pytest.mark.parametrize("case", cases(), ids=lambda c: c.name)
def test_hostile_tar(arena, case: Case, mode: str):
    target, sentinel = arena
    if case.name == "zstd-bomb":
        pytest.importorskip("zstandard")
    if case.as_nobody and mode == "overlay":
        pytest.skip("overlay whiteouts need CAP_MKNOD; unprivileged apply is copy mode")
    raw = case.build(str(sentinel))
    if case.as_nobody:
        result = _apply_as_nobody(raw, target)
        assert result["error"] is None
        assert any("CAP_MKNOD" in w for w in result["warnings"])
        assert result["listing"] == []  # the device was skipped, not half-made
        return
    elif case.refuse:
        with pytest.raises(InvalidArgument) as exc:
            apply_layer(decompress_layer(io.BytesIO(raw), case.limits), str(target),
                        overlay_whiteouts=(mode == "overlay"), limits=case.limits)
        assert str(exc.value)  # a clear message, not an empty error
    else:
        apply_layer(decompress_layer(io.BytesIO(raw), case.limits), str(target),
                    overlay_whiteouts=(mode == "overlay"), limits=case.limits)
    if case.check is not None and not case.refuse:
        case.check(target, str(sentinel))
