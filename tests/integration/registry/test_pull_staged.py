"""The parallel pull (layers unpacked out of order into staged snapshots, committed in order)
against Pallet's own registry: the same tree as the serial unpack of the copying snapshotter,
whiteouts, opaque dirs, a hardlink into a lower layer (copy-up), a gzip layer next to plain
ones; and a layer that does not unpack to its diff_id fails the pull leaving nothing staged."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pallet.errors import InvalidArgument
from pallet.image.service import ImageService, mount_rootfs, unmount_rootfs
from pallet.image.snapshots.overlay import supported
from pallet.registry.client import RegistryClient

sys.path.insert(0, str(Path(__file__).parent))
from regserver_support import Server, digest_of, push_blob

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="overlay whiteouts and mounts need root")

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("registry") / "root").start()
    yield srv
    srv.stop()


def _tar(entries: list[tuple[str, str, bytes | str]]) -> bytes:
    """(kind, name, data) with kind file|dir|symlink|link; data is the link target for links."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for kind, name, data in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1_700_000_000
            if kind == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(ti)
            elif kind in ("symlink", "link"):
                ti.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
                ti.linkname = str(data)
                tf.addfile(ti)
            else:
                raw = data if isinstance(data, bytes) else data.encode()
                ti.size, ti.mode = len(raw), 0o640
                tf.addfile(ti, io.BytesIO(raw))
    return buf.getvalue()


def _push(server: Server, repo: str, tag: str, tars: list[bytes], gzipped: set[int],
          diff_ids: list[str] | None = None) -> str:
    blobs = [gzip.compress(t, mtime=0) if i in gzipped else t for i, t in enumerate(tars)]
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers",
                                    "diff_ids": diff_ids or [digest_of(t) for t in tars]}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest_of(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if i in gzipped else ""),
                    "digest": digest_of(b), "size": len(b)} for i, b in enumerate(blobs)]}).encode()
    for blob in [*blobs, config]:
        push_blob(server, repo, blob)
    r = server.request("PUT", f"/v2/{repo}/manifests/{tag}", manifest, {"Content-Type": OCI_MANIFEST})
    assert r.status == 201, r
    return f"127.0.0.1:{server.port}/{repo}:{tag}"


def _tree(root: Path) -> dict[str, tuple]:
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            rel = str(p.relative_to(root))
            if stat.S_ISREG(st.st_mode):
                out[rel] = ("f", stat.S_IMODE(st.st_mode), hashlib.sha256(p.read_bytes()).hexdigest())
            elif stat.S_ISLNK(st.st_mode):
                out[rel] = ("l", os.readlink(p))
            else:
                out[rel] = (oct(stat.S_IFMT(st.st_mode)), stat.S_IMODE(st.st_mode))
    return out


LAYERS = [
    _tar([("dir", "a", ""), ("file", "a/big", "big" * 5000), ("file", "a/x", "x"), ("dir", "d", ""),
          ("file", "d/old", "old"), ("symlink", "s", "a/big")]),
    _tar([("link", "a/link", "a/big"), ("dir", "b", ""), ("file", "b/new", "new")]),
    _tar([("file", "a/.wh.x", ""), ("file", "d/.wh..wh..opq", ""), ("file", "d/fresh", "fresh")]),
    _tar([("file", "r/random.bin", os.urandom(3 << 20))]),
]


def test_parallel_pull_matches_the_serial_unpack(server, tmp_path):
    if not supported(tmp_path / "probe"):
        pytest.skip("overlayfs is not usable here")
    name = _push(server, "staged/app", "1", LAYERS, gzipped={1})
    overlay = ImageService(tmp_path / "overlay", "overlay")
    copying = ImageService(tmp_path / "copying", "copying")
    try:
        assert overlay.can_stage and not copying.can_stage
        [res] = RegistryClient(overlay).pull(name)
        RegistryClient(copying).pull(name)
        top = overlay.unpack(res.image_id)  # already unpacked: returns the top chain
        layer_dirs = overlay.lower_dirs(top)
        assert len(layer_dirs) == 4
        # The hardlink into the lower layer was satisfied by a copy-up, as overlayfs would.
        l1 = Path(layer_dirs[2])
        assert os.stat(l1 / "a" / "link").st_ino == os.stat(l1 / "a" / "big").st_ino
        assert stat.S_ISCHR(os.lstat(Path(layer_dirs[1]) / "a" / "x").st_mode)  # whiteout

        view = overlay.snapshots.view("check", top)
        target = tmp_path / "mnt"
        target.mkdir()
        mount_rootfs(view, target)
        try:
            merged = _tree(target)
        finally:
            unmount_rootfs(view, target)
        overlay.snapshots.remove("check")
        expected = _tree(Path(copying.lower_dirs(copying.unpack(res.image_id))[0]))
        assert merged == expected
        assert "a/x" not in merged and "d/old" not in merged and "d/fresh" in merged
        assert merged["a/link"] == merged["a/big"] and merged["s"] == ("l", "a/big")
        staging = [n for n in os.listdir(overlay.snapshots.snapshots_dir) if not n.isdigit()]
        assert staging == []
    finally:
        overlay.close()
        copying.close()


def test_a_layer_that_does_not_match_its_diff_id_fails_the_pull_and_leaves_nothing(server, tmp_path):
    diff_ids = [digest_of(t) for t in LAYERS[:3]]
    diff_ids[1] = digest_of(b"something else")
    name = _push(server, "staged/bad", "1", LAYERS[:3], gzipped={1}, diff_ids=diff_ids)
    svc = ImageService(tmp_path / "store", "overlay")
    try:
        with pytest.raises(InvalidArgument, match="diff_id"):
            RegistryClient(svc).pull(name)
        assert svc.images() == []
        assert [n for n in os.listdir(svc.snapshots.snapshots_dir) if not n.isdigit()] == []
        assert svc.snapshots.cleanup() == []
        # The good image pulls into the same store afterwards.
        good = _push(server, "staged/good", "1", LAYERS[:3], gzipped={1})
        [res] = RegistryClient(svc).pull(good)
        assert len(svc.lower_dirs(svc.unpack(res.image_id))) == 3
    finally:
        svc.close()


_PULL_AND_DIE = """
import os, signal, sys
from pallet.image.service import ImageService
from pallet.image.snapshots.store import DirSnapshotter
from pallet.registry.client import RegistryClient
real = DirSnapshotter.commit_staged_many
calls = []
def commit_then_die(self, items, **kw):
    calls.append(len(items))
    if len(calls) == 2:  # one stack committed, more layers staged: a crash now
        staged = [n for n in os.listdir(self.snapshots_dir) if n.startswith("new-")]
        print("STAGED", len(staged), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    return real(self, items, **kw)
DirSnapshotter.commit_staged_many = commit_then_die
RegistryClient(ImageService(sys.argv[1], "overlay"), max_concurrent_downloads=2).pull(sys.argv[2])
"""


def test_a_pull_killed_with_layers_staged_leaves_a_store_that_cleans_up_and_pulls(server, tmp_path):
    import subprocess

    name = _push(server, "staged/killed", "1", LAYERS + [_tar([("file", f"z{i}", os.urandom(1 << 20))])
                                                          for i in range(6)], gzipped={1})
    root = tmp_path / "store"
    ImageService(root, "overlay").close()
    proc = subprocess.run([sys.executable, "-c", _PULL_AND_DIE, str(root), name], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    assert int(proc.stdout.split()[1]) >= 1  # staged layers were there when it died
    svc = ImageService(root, "overlay")  # start-up runs the snapshotter's cleanup
    try:
        assert [n for n in os.listdir(svc.snapshots.snapshots_dir) if not n.isdigit()] == []
        assert svc.images() == []
        [res] = RegistryClient(svc).pull(name)
        assert len(svc.lower_dirs(svc.unpack(res.image_id))) == 10
        # The stack committed before the kill is kept: those layers are not fetched again.
        assert 0 < len(res.fetched) < 10
    finally:
        svc.close()


@pytest.mark.parametrize("snapshotter", ["overlay", "copying"])
def test_a_layer_is_committed_only_once_its_blob_is_in_the_store(server, tmp_path, monkeypatch, snapshotter):
    """The downloads hand their verified blobs to the publisher thread (fsync, rename); a
    layer's snapshot must not be committed before its blob is renamed into the store, or a
    kill between the two would leave a layer a later pull skips ("Already exists") with no
    blob behind it. The publisher is slowed down here to make the race certain."""
    import time

    from pallet.image.content import _Writer

    name = _push(server, "staged/order", snapshotter, [_tar([("file", f"o{i}", os.urandom(300_000))])
                                                       for i in range(6)], gzipped={2})
    svc = ImageService(tmp_path / "store", snapshotter)
    real_commit = _Writer.commit

    def slow_commit(self, expected=None):
        time.sleep(0.05)
        return real_commit(self, expected)

    monkeypatch.setattr(_Writer, "commit", slow_commit)
    manifest = json.loads(server.request("GET", f"/v2/staged/order/manifests/{snapshotter}", None,
                                         {"Accept": OCI_MANIFEST}).body)
    layers = [d["digest"] for d in manifest["layers"]]
    missing: list[str] = []
    real_apply = ImageService._apply if snapshotter == "copying" else None
    real_commit_layers = ImageService.commit_layers

    def check_commit_layers(self, stack, parent):
        missing.extend(str(st.layer.digest) for st in stack if not self.content.exists(st.layer.digest))
        return real_commit_layers(self, stack, parent)

    def check_apply(self, layer, diff_id, chain, parent, source, before_commit, lease):
        def check() -> None:
            if before_commit is not None:
                before_commit()
            if not self.content.exists(layer.digest):
                missing.append(str(layer.digest))
        return real_apply(self, layer, diff_id, chain, parent, source, check, lease)

    monkeypatch.setattr(ImageService, "commit_layers", check_commit_layers)
    if real_apply is not None:
        monkeypatch.setattr(ImageService, "_apply", check_apply)
    try:
        [res] = RegistryClient(svc).pull(name)
        assert missing == []
        assert set(res.fetched) == set(layers)
        assert all(svc.content.exists(d) for d in layers)
        assert svc.content.ingests() == []
    finally:
        svc.close()
