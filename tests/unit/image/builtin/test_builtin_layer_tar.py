"""layer_tar and files_tar: the same tree gives the same bytes, mtimes clamp, links stay links."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from pallet.errors import InvalidArgument
from pallet.image.builtin.rootfs import files_tar, layer_tar


class WriteOnly:
    """A sink that cannot seek or tell, like a pipe."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data) -> int:
        self.chunks.append(bytes(data))
        return len(data)


def _tree(root: Path) -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (root / "bin").mkdir()
    (root / "bin" / "busybox").write_bytes(b"\x7fELF" + bytes(300))
    (root / "bin" / "busybox").chmod(0o755)
    os.symlink("busybox", root / "bin" / "sh")
    os.link(root / "bin" / "busybox", root / "bin" / "zz-hardlink")
    (root / "tmp").mkdir()
    (root / "tmp").chmod(0o1777)
    (root / "b-c").write_text("a sibling of b, after b and its contents")
    (root / "b").mkdir()
    (root / "b" / "x").write_text("x")
    (root / ("a" * 120)).write_text("long name: a PAX path record")
    os.mkfifo(root / "fifo")
    (root / "suid").write_text("")
    (root / "suid").chmod(0o4755)
    for i, p in enumerate(sorted(root.rglob("*"))):
        os.utime(p, (2000 + i, 2000 + i), follow_symlinks=False)
    return root


def _tar(root: Path, **kw) -> tuple[bytes, str]:
    out = io.BytesIO()
    diff_id = layer_tar(root, out, **kw)
    return out.getvalue(), diff_id


def test_deterministic_and_diff_id_is_sha256(tmp_path):
    root = _tree(tmp_path / "r")
    one, id1 = _tar(root)
    two, id2 = _tar(root)
    assert one == two and id1 == id2
    assert id1 == "sha256:" + hashlib.sha256(one).hexdigest()
    assert len(one) % 10240 == 0        # padded to whole tar records


def test_entries_order_owners_and_types(tmp_path):
    root = _tree(tmp_path / "r")
    data, _ = _tar(root)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    # depth-first, siblings sorted by name bytes; tarfile strips the "/" of directories on read
    assert names == ["a" * 120, "b", "b/x", "b-c", "bin", "bin/busybox", "bin/sh", "bin/zz-hardlink",
                     "etc", "etc/passwd", "fifo", "suid", "tmp"]
    by = {m.name: m for m in members}
    assert all(m.uname == "" and m.gname == "" for m in members)
    assert all(m.uid == os.getuid() and m.gid == os.getgid() for m in members)
    assert by["bin/sh"].issym() and by["bin/sh"].linkname == "busybox"
    assert by["bin/zz-hardlink"].islnk() and by["bin/zz-hardlink"].linkname == "bin/busybox"
    assert by["bin/busybox"].isreg() and by["bin/busybox"].size == 304 and by["bin/busybox"].mode == 0o755
    assert by["fifo"].isfifo()
    assert by["tmp"].isdir() and by["tmp"].mode == 0o1777
    assert by["suid"].mode == 0o4755
    assert all(m.mtime >= 2000 for m in members)
    assert b"\x00./" not in data and not any(n.startswith(("/", "./")) for n in names)


def test_directory_names_end_in_slash_in_the_raw_header(tmp_path):
    root = tmp_path / "r"
    (root / "d").mkdir(parents=True)
    data, _ = _tar(root)
    assert data[:2] == b"d/" and data[2] == 0


def test_mtime_clamping(tmp_path):
    root = _tree(tmp_path / "r")
    os.utime(root / "etc" / "passwd", (500, 500))
    data, _ = _tar(root, mtime=1000)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        mtimes = {m.name: m.mtime for m in tar.getmembers()}
    assert mtimes["etc/passwd"] == 500                      # older than the clamp: kept
    assert {v for k, v in mtimes.items() if k != "etc/passwd"} == {1000}
    # With the clamp, touching files (to a later time) does not change the bytes.
    for p in root.rglob("*"):
        if p.name != "passwd":
            os.utime(p, (9_000_000, 9_000_000), follow_symlinks=False)
    again, _ = _tar(root, mtime=1000)
    assert again == data


def test_fractional_mtimes_add_no_pax_record(tmp_path):
    root = tmp_path / "r"
    root.mkdir()
    (root / "f").write_text("f")
    os.utime(root / "f", (1234.75, 1234.75))
    data, _ = _tar(root)
    assert b"mtime=" not in data
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert tar.getmember("f").mtime == 1234


def test_owner_override(tmp_path):
    root = _tree(tmp_path / "r")
    data, _ = _tar(root, owner=(0, 0))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert {(m.uid, m.gid) for m in tar.getmembers()} == {(0, 0)}


def test_xattrs_in_pax_records(tmp_path):
    root = tmp_path / "r"
    root.mkdir()
    f = root / "f"
    f.write_text("f")
    try:
        os.setxattr(f, "user.pallet.b", b"\xff\x00binary")
        os.setxattr(f, "user.pallet.a", b"text")
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EPERM):
            pytest.skip(f"{tmp_path} does not take user xattrs: {exc}")
        raise
    data, _ = _tar(root)
    assert data.index(b"SCHILY.xattr.user.pallet.a=text") < data.index(b"SCHILY.xattr.user.pallet.b=")
    with tarfile.open(fileobj=io.BytesIO(data), encoding="utf-8") as tar:
        pax = tar.getmember("f").pax_headers
    assert pax["SCHILY.xattr.user.pallet.a"] == "text"
    assert pax["SCHILY.xattr.user.pallet.b"].encode("utf-8", "surrogateescape") == b"\xff\x00binary"


def test_socket_is_skipped(tmp_path):
    import socket

    root = tmp_path / "r"
    root.mkdir()
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(str(root / "sock"))
        data, _ = _tar(root)
    finally:
        s.close()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert tar.getnames() == []


def test_writes_to_unseekable_sink(tmp_path):
    root = _tree(tmp_path / "r")
    sink = WriteOnly()
    diff_id = layer_tar(root, sink)  # type: ignore[arg-type]
    assert b"".join(sink.chunks) == _tar(root)[0]
    assert diff_id == _tar(root)[1]


def test_files_tar_layout_and_determinism():
    files = {"/hello": (b"\x7fELF-hello", 0o755), "/etc/motd": (b"hi\n", 0o644), "/etc/a/b": (b"", 0o600)}
    out1, out2 = io.BytesIO(), io.BytesIO()
    d1 = files_tar(files, out1)
    d2 = files_tar(dict(reversed(list(files.items()))), out2)
    assert out1.getvalue() == out2.getvalue() and d1 == d2
    assert d1 == "sha256:" + hashlib.sha256(out1.getvalue()).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(out1.getvalue())) as tar:
        members = tar.getmembers()
        assert tar.extractfile("hello").read() == b"\x7fELF-hello"  # type: ignore[union-attr]
    assert [(m.name, m.type, m.mode) for m in members] == [
        ("etc", tarfile.DIRTYPE, 0o755), ("etc/a", tarfile.DIRTYPE, 0o755),
        ("etc/a/b", tarfile.REGTYPE, 0o600), ("etc/motd", tarfile.REGTYPE, 0o644),
        ("hello", tarfile.REGTYPE, 0o755)]
    assert all((m.uid, m.gid, m.uname, m.gname, m.mtime) == (0, 0, "", "", 0) for m in members)
    out3 = io.BytesIO()
    files_tar(files, out3, mtime=1700000000)
    with tarfile.open(fileobj=io.BytesIO(out3.getvalue())) as tar:
        assert {m.mtime for m in tar.getmembers()} == {1700000000}


@pytest.mark.parametrize("bad", ["/", "/../etc/x", "/a/./b", ""])
def test_files_tar_rejects_bad_paths(bad):
    with pytest.raises(InvalidArgument):
        files_tar({bad: (b"", 0o644)}, io.BytesIO())


def test_files_tar_rejects_file_under_file():
    with pytest.raises(InvalidArgument):
        files_tar({"/a": (b"", 0o644), "/a/b": (b"", 0o644)}, io.BytesIO())
