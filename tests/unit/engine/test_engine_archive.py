"""pallet.engine.archive on a plain directory standing in for a container's rootfs: stat, tar out,
tar in, and hostile paths and tars that must stay inside the root."""

from __future__ import annotations

import base64
import io
import os
import tarfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pallet.engine import archive
from pallet.errors import InvalidArgument, NotFound, PermissionDenied


@dataclass
class FakeContainer:
    id: str = "c" * 64
    host_config: dict[str, Any] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)
    removed: bool = False


class FakeImages:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def container_mounts(self, cid: str) -> list[str]:
        return ["m"]

    def mount(self, mounts: Any, target: str) -> None:
        self.calls.append("mount")

    def unmount(self, mounts: Any, target: str) -> None:
        self.calls.append("unmount")


class FakeEngine:
    def __init__(self, rootfs: Path) -> None:
        self.rootfs, self.images, self.c = rootfs, FakeImages(), FakeContainer()
        self.data_root = str(rootfs.parent)

    def get(self, ref: str) -> FakeContainer:
        if ref != "c":
            raise NotFound(f"No such container: {ref}")
        return self.c

    def rootfs_path(self, cid: str) -> str:
        return str(self.rootfs)


@pytest.fixture
def env(tmp_path: Path) -> tuple[FakeEngine, Path, Path]:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "data" / "sub").mkdir(parents=True)
    (root / "data" / "a.txt").write_text("hello")
    (root / "data" / "sub" / "b.txt").write_text("bee")
    (root / "escape").symlink_to("/../../..")
    (root / "abs").symlink_to("/etc/passwd")
    (root / "rel").symlink_to("data/a.txt")
    host = tmp_path / "host"
    host.mkdir()
    (host / "secret").write_text("host secret")
    return FakeEngine(root), root, host


def _tar_names(data: bytes) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        for m in t:
            f = t.extractfile(m) if m.isreg() else None
            out[m.name] = f.read() if f else None
    return out


def _get(engine: FakeEngine, path: str) -> tuple[dict[str, Any], dict[str, bytes | None]]:
    buf = io.BytesIO()
    info = archive.get_archive(engine, "c", path, buf)
    return info, _tar_names(buf.getvalue())


def _tar(entries: list[tuple[tarfile.TarInfo, bytes]]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for ti, data in entries:
            ti.size = len(data) if ti.isreg() else 0
            t.addfile(ti, io.BytesIO(data) if ti.isreg() else None)
    buf.seek(0)
    return buf


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname = kind, target
    return ti, b""


def test_go_file_mode_and_time():
    assert archive.go_file_mode(0o40755) == (1 << 31) | 0o755
    assert archive.go_file_mode(0o120777) == (1 << 27) | 0o777
    assert archive.go_file_mode(0o104755) == (1 << 23) | 0o755
    assert archive.go_file_mode(0o20620) == (1 << 26) | (1 << 21) | 0o620
    assert archive.rfc3339(0) == "1970-01-01T00:00:00Z"
    assert archive.rfc3339(1.5) == "1970-01-01T00:00:01.5Z"


def test_clean_path():
    p = archive.CleanPath.parse("../../etc/../etc/passwd")
    assert (p.abs, p.parts, p.want_dir) == ("/etc/passwd", ["etc", "passwd"], False)
    assert archive.CleanPath.parse("/data/").want_dir
    assert archive.CleanPath.parse("/data/.").want_dir
    assert archive.CleanPath.parse("/").parts == []
    with pytest.raises(InvalidArgument):
        archive.CleanPath.parse("")


def test_stat(env):
    engine, root, _ = env
    info = archive.stat_path(engine, "c", "/data/a.txt")
    assert (info["name"], info["size"], info["mode"], info["linkTarget"]) == ("a.txt", 5, (
        os.stat(root / "data/a.txt").st_mode & 0o777), "")
    assert archive.stat_path(engine, "c", "/data")["mode"] & (1 << 31)
    assert archive.stat_path(engine, "c", "/abs")["linkTarget"] == "/etc/passwd"
    assert archive.stat_path(engine, "c", "/rel")["linkTarget"] == "/data/a.txt"
    assert archive.stat_path(engine, "c", "/escape")["linkTarget"] == "/"
    with pytest.raises(NotFound):
        archive.stat_path(engine, "c", "/nope")
    with pytest.raises(NotFound):
        archive.stat_path(engine, "c", "/data/a.txt/x")
    with pytest.raises(InvalidArgument):
        archive.stat_path(engine, "c", "/data/a.txt/")
    with pytest.raises(NotFound):
        archive.stat_path(engine, "x", "/data")
    # A stopped container: mounted for the call and unmounted after.
    assert engine.images.calls[:2] == ["mount", "unmount"]


def test_get_file_dir_and_contents(env):
    engine, _, _ = env
    info, names = _get(engine, "/data/a.txt")
    assert info["name"] == "a.txt" and names == {"a.txt": b"hello"}
    _, names = _get(engine, "/data")
    assert names == {"data": None, "data/a.txt": b"hello", "data/sub": None, "data/sub/b.txt": b"bee"}
    _, names = _get(engine, "/data/.")
    assert set(names) == {".", "./a.txt", "./sub", "./sub/b.txt"}
    _, names = _get(engine, "/abs")  # the link itself, not its target
    assert names == {"abs": None}


def test_get_never_leaves_the_root(env):
    engine, root, _ = env
    for hostile in ("../../etc/passwd", "/../../../etc/passwd", "escape/etc/passwd"):
        _, names = _get(engine, hostile)
        assert names == {"passwd": b"root:x:0:0:root:/root:/bin/sh\n"}, hostile
    (root / "out").symlink_to("../host")
    with pytest.raises(NotFound):  # ../host seen from the root is /host: not there
        _get(engine, "/out/secret")


def test_put_file_and_dir(env):
    engine, root, _ = env
    ti = tarfile.TarInfo("d")
    ti.type = tarfile.DIRTYPE
    archive.put_archive(engine, "c", "/data", _tar([_file("new.txt", b"new"), (ti, b""),
                                                     _file("d/in.txt", b"in")]))
    assert (root / "data/new.txt").read_text() == "new"
    assert (root / "data/d/in.txt").read_text() == "in"
    archive.put_archive(engine, "c", "/rel/..", _tar([_file("z")]))  # lexically /
    assert (root / "z").exists()
    with pytest.raises(NotFound):
        archive.put_archive(engine, "c", "/nope", _tar([_file("x")]))
    with pytest.raises(InvalidArgument):
        archive.put_archive(engine, "c", "/data/a.txt", _tar([_file("x")]))


def test_put_hostile_tar_stays_inside(env):
    engine, root, host = env
    with pytest.raises(InvalidArgument):
        archive.put_archive(engine, "c", "/", _tar([_file("../host/secret", b"pwned")]))
    # A symlink planted by the tar, then a file written through it: lands inside the root.
    archive.put_archive(engine, "c", "/", _tar([_link("evil", str(host)), _file("evil/secret", b"pwned")]))
    assert (host / "secret").read_text() == "host secret"
    assert (root / str(host).lstrip("/") / "secret").read_text() == "pwned"
    # The destination itself is a symlink pointing out: resolved inside the root.
    (root / "outdir").symlink_to("/../../../tmp")
    archive.put_archive(engine, "c", "/outdir", _tar([_file("f", b"1")]))
    assert (root / "tmp" / "f").read_text() == "1"
    with pytest.raises(InvalidArgument):
        archive.put_archive(engine, "c", "/", _tar([_link("hl", "/../../../etc/shadow", tarfile.LNKTYPE)]))


def test_put_no_overwrite_dir_non_dir(env):
    engine, root, _ = env
    with pytest.raises(InvalidArgument, match="overwrite directory"):
        archive.put_archive(engine, "c", "/", _tar([_file("data", b"x")]), no_overwrite_dir_non_dir=True)
    ti = tarfile.TarInfo("data/a.txt")
    ti.type = tarfile.DIRTYPE
    with pytest.raises(InvalidArgument, match="non-directory"):
        archive.put_archive(engine, "c", "/", _tar([(ti, b"")]), no_overwrite_dir_non_dir=True)
    assert (root / "data").is_dir()
    archive.put_archive(engine, "c", "/", _tar([_file("data/a.txt", b"new")]), no_overwrite_dir_non_dir=True)
    assert (root / "data/a.txt").read_text() == "new"


def test_read_only_rootfs_and_running(env, monkeypatch):
    engine, _, _ = env
    engine.c.host_config["ReadonlyRootfs"] = True
    with pytest.raises(PermissionDenied):
        archive.put_archive(engine, "c", "/", _tar([_file("x")]))
    monkeypatch.setattr(archive.os.path, "ismount", lambda p: True)
    engine.images.calls.clear()
    assert archive.stat_path(engine, "c", "/data")["name"] == "data"
    assert engine.images.calls == []  # already mounted: used as it is


def test_stat_header_roundtrip(env):
    from pallet.api.server.routes.archive import stat_header

    engine, _, _ = env
    info = archive.stat_path(engine, "c", "/data/a.txt")
    assert __import__("json").loads(base64.b64decode(stat_header(info))) == info
