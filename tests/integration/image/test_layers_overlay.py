"""Layer apply and diff against real overlayfs (root): whiteout devices, opaque dirs, round trips.

Each test mounts overlays under its own tmp_path and unmounts them in a finally.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from pallet.image.layers import apply_layer, decompress_layer, write_diff
from pallet.syscalls import real
from pallet.syscalls.flags import MNT_DETACH

if os.geteuid() != 0:
    pytest.skip("overlay mounts and whiteout devices need root", allow_module_level=True)
with open("/proc/filesystems") as _f:
    if "overlay" not in _f.read():
        pytest.skip("kernel without overlayfs", allow_module_level=True)


@contextlib.contextmanager
def overlay(tmp: Path, lowers: list[Path], upper: Path):
    merged, work = tmp / "merged", tmp / "work"
    for d in (merged, work):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir()
    data = f"lowerdir={':'.join(map(str, lowers))},upperdir={upper},workdir={work}"
    real().mount("overlay", str(merged), "overlay", 0, data)
    try:
        yield merged
    finally:
        real().umount2(str(merged), MNT_DETACH)


def tar(*members: tuple) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for kind, name, *rest in members:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1_600_000_000
            data = None
            if kind == "f":
                data = rest[0] if rest else b""
                ti.size = len(data)
                ti.mode = 0o644
            elif kind == "d":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            elif kind == "h":
                ti.type, ti.linkname = tarfile.LNKTYPE, rest[0]
            t.addfile(ti, io.BytesIO(data) if data is not None else None)
    buf.seek(0)
    return buf


BASE = tar(("f", "file1", b"1"), ("d", "a"), ("f", "a/file2", b"2"), ("d", "b"), ("f", "b/x", b"x"),
           ("d", "c"), ("f", "c/file3", b"3"), ("d", "a/b"), ("d", "a/b/c"), ("f", "a/b/c/bar", b"bar"))


@pytest.fixture
def base(tmp_path) -> Path:
    d = tmp_path / "base"
    d.mkdir()
    BASE.seek(0)
    apply_layer(BASE, str(d), overlay_whiteouts=False)
    return d


def listing(root: Path) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, n), root)
                  for d, ds, fs in os.walk(root) for n in ds + fs)


def test_overlay_whiteouts_and_opaque_dir(tmp_path, base):
    upper = tmp_path / "upper"
    upper.mkdir()
    layer = tar(("f", ".wh.file1"), ("f", ".wh.b"), ("d", "a"), ("f", "a/.wh..wh..opq"),
                ("d", "a/b"), ("d", "a/b/c"), ("f", "a/b/c/foo", b"foo"), ("f", "c/.wh.file3"),
                ("f", "c/new", b"n"))
    apply_layer(layer, str(upper), overlay_whiteouts=True)
    st = os.lstat(upper / "file1")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(upper / "a", "trusted.overlay.opaque") == b"y"
    with pytest.raises(OSError):
        os.getxattr(upper / "c", "trusted.overlay.opaque")
    with overlay(tmp_path, [base], upper) as merged:
        assert listing(merged) == ["a", "a/b", "a/b/c", "a/b/c/foo", "c", "c/new"]


def test_dir_recreated_after_whiteout_is_opaque(tmp_path, base):
    upper = tmp_path / "upper"
    upper.mkdir()
    apply_layer(tar(("f", ".wh.c"), ("d", "c"), ("f", "c/only", b"o")), str(upper),
                overlay_whiteouts=True)
    with overlay(tmp_path, [base], upper) as merged:
        assert os.listdir(merged / "c") == ["only"]


def test_hardlink_to_lower_file_is_copied_up(tmp_path, base):
    upper = tmp_path / "upper"
    upper.mkdir()
    apply_layer(tar(("h", "c/link", "c/file3")), str(upper), overlay_whiteouts=True,
                lower_dirs=[str(base)])
    assert os.path.samefile(upper / "c/link", upper / "c/file3")
    with overlay(tmp_path, [base], upper) as merged:
        assert (merged / "c/link").read_bytes() == b"3"
        assert os.lstat(merged / "c/link").st_nlink == 2


def tree(root: Path) -> dict[str, tuple]:
    out = {}
    for rel in listing(root):
        p = root / rel
        st = os.lstat(p)
        content: object = None
        if stat.S_ISREG(st.st_mode):
            content = hashlib.sha256(p.read_bytes()).hexdigest()
        elif stat.S_ISLNK(st.st_mode):
            content = os.readlink(p)
        xattrs = tuple(sorted((x, os.getxattr(p, x, follow_symlinks=False))
                              for x in os.listxattr(p, follow_symlinks=False)
                              if x.startswith("user.")))
        out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, content,
                    int(st.st_mtime) if not stat.S_ISLNK(st.st_mode) else None, xattrs)
    return out


def change(merged: Path) -> None:
    (merged / "new.txt").write_bytes(b"hello")
    (merged / "c/file3").write_bytes(b"changed")           # copy-up
    os.unlink(merged / "file1")                               # whiteout
    shutil.rmtree(merged / "b")                               # whiteout of a dir
    shutil.rmtree(merged / "a")                               # replaced dir -> opaque
    (merged / "a/fresh").mkdir(parents=True)
    (merged / "a/fresh/f").write_bytes(os.urandom(10_000))
    os.chmod(merged / "a", 0o750)
    os.chown(merged / "a/fresh/f", 1234, 5678)
    os.chmod(merged / "a/fresh/f", 0o6755)
    os.link(merged / "new.txt", merged / "c/new-link")
    os.symlink("../new.txt", merged / "c/sym")
    os.setxattr(merged / "new.txt", "user.k", b"v")
    os.mkfifo(merged / "fifo")
    os.mknod(merged / "c/null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))


def test_diff_round_trip(tmp_path, base):
    upper = tmp_path / "upper"
    upper.mkdir()
    with overlay(tmp_path, [base], upper) as merged:
        change(merged)
        expected = tree(merged)
    blob = io.BytesIO()
    res = write_diff(str(upper), blob, lower_dirs=[str(base)])
    again = io.BytesIO()
    assert write_diff(str(upper), again, lower_dirs=[str(base)]) == res  # deterministic
    assert res.digest == "sha256:" + hashlib.sha256(blob.getvalue()).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(blob.getvalue())) as t:
        names = t.getnames()
    assert ".wh.file1" in names and ".wh.b" in names and "a/.wh..wh..opq" in names
    assert names.index("a/.wh..wh..opq") == names.index("a") + 1

    # Copy mode: a copy of the parent plus the diff equals the merged view.
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", f"{base}/.", str(copy)], check=True)
    blob.seek(0)
    applied = apply_layer(decompress_layer(blob), str(copy), overlay_whiteouts=False)
    assert applied.diff_id == res.diff_id
    assert tree(copy) == expected

    # Overlay mode: the diff applied to a fresh upper over the same parent gives the same view.
    upper2 = tmp_path / "upper2"
    upper2.mkdir()
    blob.seek(0)
    apply_layer(decompress_layer(blob), str(upper2), overlay_whiteouts=True)
    with overlay(tmp_path, [base], upper2) as merged2:
        assert tree(merged2) == expected


def test_diff_cost_follows_the_upper_only(tmp_path, base):
    """An untouched lower of any size adds nothing to the layer."""
    upper = tmp_path / "upper"
    upper.mkdir()
    for i in range(2000):
        (base / f"big{i}").write_bytes(b"x" * 1000)
    with overlay(tmp_path, [base], upper) as merged:
        (merged / "one").write_bytes(b"1")
    out = io.BytesIO()
    res = write_diff(str(upper), out, compression="none")
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as t:
        assert t.getnames() == ["one"]
    assert res.uncompressed_size == 512 * 2 + 1024
