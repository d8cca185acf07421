"""The image service for real (root, overlayfs): built-in images, unpack, container rootfs
mounts, commit of a change (+ whiteout) and its round trip, import with --change, export,
removal while a container uses an image, inspect/history, and hello-world run by pallet-runtime.

Safety: everything lives under tmp_path; every mount a test makes is unmounted in teardown
(detached if busy); containers run with a private --root and cgroups under
/pallet-test-<random>/, force-deleted and removed afterwards.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
import uuid
from pathlib import Path

import pytest

from pallet.errors import Conflict
from pallet.image.service import ImageService, chain_ids, mount_rootfs, unmount_rootfs
from pallet.oci.mount import Mount
from pallet_testlib import rm_cgroups

if os.geteuid() != 0:
    pytest.skip("overlay mounts, whiteout devices and containers need root", allow_module_level=True)
with open("/proc/filesystems") as _f:
    if "overlay" not in _f.read():
        pytest.skip("kernel without overlayfs", allow_module_level=True)

needs_busybox = pytest.mark.skipif(not os.path.exists("/bin/busybox"),
                                   reason="needs Debian's busybox-static (/bin/busybox)")
GREETING = "Hello from Pallet!"


class Mounted:
    """Mounts made by a test, undone in reverse order at teardown."""

    def __init__(self) -> None:
        self.stack: list[tuple[list[Mount], Path]] = []

    def __call__(self, mounts: list[Mount], target: Path) -> Path:
        target.mkdir(parents=True, exist_ok=True)
        mount_rootfs(mounts, target)
        self.stack.append((mounts, target))
        return target

    def undo(self, target: Path) -> None:
        for i, (mounts, t) in enumerate(self.stack):
            if t == target:
                unmount_rootfs(mounts, t)
                del self.stack[i]
                return

    def cleanup(self) -> None:
        while self.stack:
            mounts, target = self.stack.pop()
            unmount_rootfs(mounts, target)


@pytest.fixture
def svc(tmp_path):
    s = ImageService(tmp_path / "data")
    assert s.driver == "overlay"
    yield s
    s.close()


@pytest.fixture
def mounted():
    m = Mounted()
    yield m
    m.cleanup()


def _layer_tar(svc: ImageService, digest: str) -> bytes:
    data = svc.content.read(digest)
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


@needs_busybox
def test_commit_captures_exactly_the_change(svc, mounted, tmp_path):
    base_id = svc.bootstrap("busybox")
    assert svc.bootstrap("busybox") == base_id  # kept without force
    mounts = svc.prepare_container_rootfs("c1", "busybox")
    root = mounted(mounts, tmp_path / "c1")
    assert (root / "bin" / "busybox").is_file() and os.readlink(root / "bin" / "sh") == "busybox"
    (root / "root" / "note.txt").write_text("committed\n")
    (root / "bin" / "ls").unlink()
    mounted.undo(root)

    new_id = svc.commit("c1", "mine:v1", author="Ann <a@example.org>", message="a note",
                        created_by="/bin/sh -c note", changes=['CMD ["/bin/sh"]'])
    base, new = svc.get(base_id), svc.get(new_id)
    assert len(new.manifest.layers) == len(base.manifest.layers) + 1
    assert new.manifest.layers[:-1] == base.manifest.layers
    tar_bytes = _layer_tar(svc, new.manifest.layers[-1].digest)
    assert f"sha256:{hashlib.sha256(tar_bytes).hexdigest()}" == str(new.config.diff_ids[-1])
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as t:
        names = t.getnames()
        assert t.extractfile("root/note.txt").read() == b"committed\n"
    assert sorted(names) == ["bin", "bin/.wh.ls", "root", "root/note.txt"]
    assert new.config.config["Cmd"] == ["/bin/sh"]

    info = svc.inspect("mine:v1")
    assert info["Parent"] == base_id and info["Author"] == "Ann <a@example.org>"
    assert info["Comment"] == "a note" and info["RepoTags"] == ["mine:v1"]
    history = svc.history(new_id)
    assert history[0]["Id"] == new_id and history[0]["CreatedBy"] == "/bin/sh -c note"
    assert history[0]["Comment"] == "a note" and history[1]["Id"] == base_id

    mounts2 = svc.prepare_container_rootfs("c2", "mine:v1")
    root2 = mounted(mounts2, tmp_path / "c2")
    assert (root2 / "root" / "note.txt").read_text() == "committed\n"
    assert not os.path.lexists(root2 / "bin" / "ls") and (root2 / "bin" / "cat").exists()
    mounted.undo(root2)
    chains = chain_ids([str(d) for d in new.config.diff_ids])
    assert svc.snapshots.stat(chains[-1]).kind.value == "committed"

    # The container still uses busybox: removing its last name conflicts, naming the container.
    with pytest.raises(Conflict, match="container c1"):
        svc.remove("busybox")
    with pytest.raises(Conflict, match="dependent child images"):
        svc.remove(base_id, force=True)
    for cid in ("c1", "c2"):
        svc.remove_container_rootfs(cid)
    assert svc.remove("mine:v1") == [{"Untagged": "mine:v1"}, {"Deleted": new_id}]
    assert svc.remove("busybox") == [{"Untagged": "busybox:latest"}, {"Deleted": base_id}]


@needs_busybox
def test_concurrent_unpacks_share_one_snapshot(svc):
    svc.bootstrap("busybox")
    results: list[str | None] = []
    threads = [threading.Thread(target=lambda: results.append(svc.unpack("busybox"))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1
    snaps = list(svc.snapshots.walk())
    assert [s.name for s in snaps] == [results[0]]


def test_import_with_change_and_export(svc, mounted, tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, kind in (("bin", "d"), ("bin/tool", "f"), ("etc", "d"), ("etc/conf", "f")):
            ti = tarfile.TarInfo(name)
            if kind == "d":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                t.addfile(ti)
            else:
                ti.size, ti.mode = 4, 0o755
                t.addfile(ti, io.BytesIO(b"data"))
    buf.seek(0)
    image_id = svc.import_image(buf, "imported:1", changes=['CMD ["/bin/sh"]'])
    assert svc.inspect(image_id)["Config"]["Cmd"] == ["/bin/sh"]
    mounts = svc.prepare_container_rootfs("exp", "imported:1")
    root = mounted(mounts, tmp_path / "exp")
    (root / "etc" / "conf").unlink()
    (root / "new").write_text("n")
    out = io.BytesIO()
    svc.export_container("exp", out)  # while the container's own mount is up
    mounted.undo(root)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as t:
        names = sorted(t.getnames())
        assert t.extractfile("bin/tool").read() == b"data"
    assert names == ["bin", "bin/tool", "etc", "new"]
    assert not [p for p in (svc.root / "tmp").iterdir()]  # the export mount point is gone
    svc.remove_container_rootfs("exp")


def _runtime() -> list[str]:
    return [sys.executable, "-m", "pallet.runtime.cli"]


@pytest.mark.skipif(os.uname().machine not in ("x86_64", "aarch64"), reason="no hello program here")
def test_hello_world_rootfs_runs_in_pallet_runtime(svc, mounted, tmp_path):
    from pallet.runtime.spec import default_spec

    svc.bootstrap("hello-world")
    bundle = tmp_path / "bundle"
    rootfs = mounted(svc.prepare_container_rootfs("hello", "hello-world"), bundle / "rootfs")
    cgroup_parent = f"pallet-test-{uuid.uuid4().hex[:8]}"
    spec = default_spec(args=["/hello"], terminal=False, rootfs=str(rootfs))
    spec["linux"]["cgroupsPath"] = f"/{cgroup_parent}/hello"
    (bundle / "config.json").write_text(json.dumps(spec))
    state = tmp_path / "state"
    try:
        proc = subprocess.run([*_runtime(), "--root", str(state), "run", "--bundle", str(bundle), "hello"],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith("\n" + GREETING + "\n")
    finally:
        subprocess.run([*_runtime(), "--root", str(state), "delete", "--force", "hello"],
                       capture_output=True, timeout=60)
        rm_cgroups(cgroup_parent)
        mounted.cleanup()
    svc.remove_container_rootfs("hello")
