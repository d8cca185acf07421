"""write_tree and write_diff: order, headers, hashes, user.overlay opaque dirs, round trips."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import socket
import tarfile

import pytest
from layertar import tree

from pallet.image.layers import apply_layer, write_diff, write_tree


def make_tree(root):
    (root / "etc").mkdir(parents=True)
    (root / "etc/hosts").write_bytes(b"127.0.0.1 localhost\n")
    (root / "bin").mkdir()
    (root / "bin/app").write_bytes(os.urandom(3000))
    os.chmod(root / "bin/app", 0o4755)
    os.link(root / "bin/app", root / "bin/app2")
    os.symlink("../etc/hosts", root / "bin/hosts")
    (root / "empty").mkdir(mode=0o700)
    (root / "long" / ("n" * 120) / ("m" * 120)).mkdir(parents=True)
    (root / "long" / ("n" * 120) / ("m" * 120) / "f").write_bytes(b"deep")
    os.mkfifo(root / "fifo")
    for p in [root / "etc/hosts", root / "bin/app", root / "bin/hosts", root / "empty",
              root / "etc", root / "bin", root / "fifo"]:
        os.utime(p, (1_500_000_000, 1_500_000_000), follow_symlinks=False)


def members(raw: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(raw)) as t:
        return t.getmembers()


def test_tree_round_trip(tmp_path):
    src = tmp_path / "src"
    make_tree(src)
    out = io.BytesIO()
    res = write_tree(str(src), out)
    raw = out.getvalue()
    assert res.diff_id == res.digest == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert res.size == res.uncompressed_size == len(raw)
    dst = tmp_path / "dst"
    dst.mkdir()
    applied = apply_layer(io.BytesIO(raw), str(dst), overlay_whiteouts=False)
    assert applied.diff_id == res.diff_id
    assert tree(dst) == tree(src)
    assert os.lstat(dst / "bin/app").st_ino == os.lstat(dst / "bin/app2").st_ino


def test_order_headers_and_determinism(tmp_path):
    src = tmp_path / "src"
    make_tree(src)
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(src / "sock"))  # sockets cannot go in a tar and are skipped
        a, b = io.BytesIO(), io.BytesIO()
        write_tree(str(src), a)
        write_tree(str(src), b)
    assert a.getvalue() == b.getvalue()
    ms = members(a.getvalue())
    names = [m.name for m in ms]
    assert names[:6] == ["bin", "bin/app", "bin/app2", "bin/hosts", "empty", "etc"]
    assert "sock" not in names and "." not in names
    by = {m.name: m for m in ms}
    assert by["bin/app2"].islnk() and by["bin/app2"].linkname == "bin/app"
    assert by["bin/app"].mode == 0o4755
    assert by["fifo"].isfifo()
    assert all(m.uname == "" and m.gname == "" for m in ms)
    assert a.getvalue().endswith(bytes(1024)) and len(a.getvalue()) % 512 == 0


def test_gzip_hashes_in_one_pass(tmp_path):
    src = tmp_path / "src"
    make_tree(src)
    out = io.BytesIO()
    res = write_tree(str(src), out, compression="gzip")
    blob = out.getvalue()
    assert res.digest == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert res.diff_id == "sha256:" + hashlib.sha256(gzip.decompress(blob)).hexdigest()
    assert res.size == len(blob) and res.compression == "gzip"


def test_source_date_epoch_clamps(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "new").write_text("x")
    (src / "old").write_text("y")
    os.utime(src / "old", (100, 100))
    out = io.BytesIO()
    write_tree(str(src), out, source_date_epoch=1000)
    assert {m.name: m.mtime for m in members(out.getvalue())} == {"new": 1000, "old": 100}


def test_xattrs_as_pax(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    try:
        os.setxattr(src / "f", "user.k", b"v\x00\xff")
    except OSError:
        pytest.skip("file system without user xattrs")
    os.setxattr(src / "f", "user.overlay.origin", b"junk")
    out = io.BytesIO()
    write_tree(str(src), out)
    (m,) = members(out.getvalue())
    assert "SCHILY.xattr.user.overlay.origin" not in m.pax_headers
    dst = tmp_path / "dst"
    dst.mkdir()
    apply_layer(io.BytesIO(out.getvalue()), str(dst), overlay_whiteouts=False)
    assert os.getxattr(dst / "f", "user.k") == b"v\x00\xff"


def test_user_overlay_opaque_dir_becomes_opq_marker(tmp_path):
    upper = tmp_path / "upper"
    (upper / "d").mkdir(parents=True)
    (upper / "d/new").write_text("n")
    try:
        os.setxattr(upper / "d", "user.overlay.opaque", b"y")
    except OSError:
        pytest.skip("file system without user xattrs")
    out = io.BytesIO()
    write_diff(str(upper), out, compression="none")
    ms = members(out.getvalue())
    assert [m.name for m in ms] == ["d", "d/.wh..wh..opq", "d/new"]
    assert all("overlay" not in k for m in ms for k in m.pax_headers)
