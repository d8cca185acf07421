"""apply_layer in copy mode (the copying snapshotter): entries, metadata, whiteouts, limits."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile

import pytest
from layertar import TarBuilder

from pallet.errors import InvalidArgument
from pallet.image.layers import Limits, apply_layer

ROOT = os.geteuid() == 0


def apply(b: TarBuilder | bytes, target, **kw):
    raw = b if isinstance(b, bytes) else b.raw()
    kw.setdefault("overlay_whiteouts", False)
    return apply_layer(io.BytesIO(raw), str(target), **kw)


def base(tmp_path):
    """A parent layer: file1, a/file2, b/, c/file3, a/b/c/bar."""
    t = tmp_path / "rootfs"
    t.mkdir()
    b = (TarBuilder().file("file1", b"1").dir("a").file("a/file2", b"2").dir("b").dir("c")
         .file("c/file3", b"3").dir("a/b").dir("a/b/c").file("a/b/c/bar", b"bar"))
    apply(b, t)
    return t


def test_files_dirs_modes_owners_mtimes(tmp_path):
    b = (TarBuilder().dir("bin", mode=0o755, mtime=1_000)
         .file("bin/su", b"#!", mode=0o4755, uid=0, gid=0, mtime=2_000)
         .file("bin/sg", b"#!", mode=0o2711, uid=1000, gid=50, mtime=3_000)
         .dir("tmp", mode=0o1777).file("secret", b"s", mode=0o600, uid=1000, gid=1000))
    r = apply(b, tmp_path)
    assert r.entries == 5 and r.size == 5
    st = os.lstat(tmp_path / "bin/su")
    assert stat.S_IMODE(st.st_mode) == 0o4755 and st.st_mtime == 2_000
    st = os.lstat(tmp_path / "bin/sg")
    assert stat.S_IMODE(st.st_mode) == 0o2711
    if ROOT:  # chown clears setgid; the mode must survive it (chmod after chown)
        assert (st.st_uid, st.st_gid) == (1000, 50)
    assert stat.S_IMODE(os.lstat(tmp_path / "tmp").st_mode) == 0o1777
    # Directory mtimes are set after their contents were written.
    assert os.lstat(tmp_path / "bin").st_mtime == 1_000
    assert (tmp_path / "secret").read_bytes() == b"s"


def test_diff_id_is_sha256_of_whole_stream(tmp_path):
    raw = TarBuilder().file("a", b"x" * 1000).raw()
    r = apply(raw, tmp_path)
    assert r.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert r.tar_size == len(raw)  # the record padding after the end marker is hashed too


def test_symlinks_keep_owner_and_mtime(tmp_path):
    b = TarBuilder().symlink("link", "/etc/target", uid=7, gid=8, mtime=1234)
    apply(b, tmp_path)
    st = os.lstat(tmp_path / "link")
    assert os.readlink(tmp_path / "link") == "/etc/target"
    assert st.st_mtime == 1234
    if ROOT:
        assert (st.st_uid, st.st_gid) == (7, 8)


def test_hardlinks(tmp_path):
    b = (TarBuilder().dir("d").file("d/a", b"data", mode=0o755).hardlink("b", "d/a")
         .symlink("s", "d/a").hardlink("s2", "s"))
    apply(b, tmp_path)
    assert os.lstat(tmp_path / "b").st_ino == os.lstat(tmp_path / "d/a").st_ino
    assert os.lstat(tmp_path / "d/a").st_nlink == 2
    # A hardlink to a symlink links the symlink itself, never its target.
    assert os.path.islink(tmp_path / "s2") and os.readlink(tmp_path / "s2") == "d/a"


def test_hardlink_to_earlier_layer_in_copy_mode(tmp_path):
    t = base(tmp_path)
    apply(TarBuilder().hardlink("again", "c/file3"), t)
    assert os.path.samefile(t / "again", t / "c/file3")


@pytest.mark.parametrize("target", ["missing", "d"])
def test_hardlink_to_missing_or_dir_is_refused(tmp_path, target):
    b = TarBuilder().dir("d").hardlink("x", target)
    with pytest.raises(InvalidArgument):
        apply(b, tmp_path)


def test_replacing_entries(tmp_path):
    t = base(tmp_path)
    b = (TarBuilder().dir("file1", mode=0o700)        # file -> dir
         .file("b", b"now a file")                    # dir -> file
         .dir("c", mode=0o711, mtime=42))             # dir -> dir keeps contents, new attrs
    apply(b, t)
    assert (t / "file1").is_dir() and (t / "b").read_bytes() == b"now a file"
    assert (t / "c/file3").read_bytes() == b"3"
    st = os.lstat(t / "c")
    assert stat.S_IMODE(st.st_mode) == 0o711 and st.st_mtime == 42


def test_duplicate_entry_last_wins(tmp_path):
    apply(TarBuilder().file("f", b"one").file("f", b"two"), tmp_path)
    assert (tmp_path / "f").read_bytes() == b"two"


def test_whiteouts_delete_in_copy_mode(tmp_path):
    t = base(tmp_path)
    b = TarBuilder().file(".wh.file1").file("a/.wh.file2").file(".wh.b").file("file4", b"4")
    apply(b, t)
    assert sorted(os.listdir(t)) == ["a", "c", "file4"]
    assert os.listdir(t / "a") == ["b"]
    assert not (t / ".wh.file1").exists()


def test_whiteout_of_missing_path_is_a_noop(tmp_path):
    t = base(tmp_path)
    apply(TarBuilder().file("nope/.wh.x").file(".wh.ghost"), t)
    assert not (t / "nope").exists()


@pytest.mark.parametrize("opaque_first", [True, False])
def test_opaque_dir_hides_lower_keeps_this_layer(tmp_path, opaque_first):
    """layer.md: `a/.wh..wh..opq` applies first whatever its position in the tar."""
    t = base(tmp_path)
    b = TarBuilder().dir("a")
    if opaque_first:
        b.file("a/.wh..wh..opq")
    b.dir("a/b").dir("a/b/c").file("a/b/c/foo", b"foo")
    if not opaque_first:
        b.file("a/.wh..wh..opq")
    apply(b, t)
    found = sorted(os.path.relpath(os.path.join(d, f), t / "a")
                   for d, ds, fs in os.walk(t / "a") for f in ds + fs)
    assert found == ["b", "b/c", "b/c/foo"]
    assert (t / "c/file3").exists()


def test_whiteout_does_not_hide_same_layer_file(tmp_path):
    t = base(tmp_path)
    apply(TarBuilder().file("new", b"n").file(".wh.new").file(".wh.file1"), t)
    assert (t / "new").read_bytes() == b"n"
    assert not (t / "file1").exists()


def test_empty_whiteout_name_is_invalid(tmp_path):
    with pytest.raises(InvalidArgument, match="names nothing"):
        apply(TarBuilder().file("d/.wh."), tmp_path)


def test_aufs_meta_entries_are_ignored(tmp_path):
    apply(TarBuilder().dir(".wh..wh.plnk").file(".wh..wh.aufs"), tmp_path)
    assert os.listdir(tmp_path) == []


def test_xattrs_from_pax(tmp_path):
    b = TarBuilder()
    b.file("f", b"x", pax_headers={
        "SCHILY.xattr.user.note": "hello",
        "SCHILY.xattr.user.bin": b"\x00\xff".decode("utf-8", "surrogateescape"),
        "SCHILY.xattr.security.selinux": "system_u:object_r:bin_t:s0",
        "SCHILY.xattr.trusted.overlay.opaque": "y",
        "LIBARCHIVE.xattr.user.la": "YWJj",
    })
    try:
        os.setxattr(tmp_path, "user.probe", b"1")
    except OSError:
        pytest.skip("file system without user xattrs")
    apply(b, tmp_path)
    p = tmp_path / "f"
    assert os.getxattr(p, "user.note") == b"hello"
    assert os.getxattr(p, "user.bin") == b"\x00\xff"
    assert os.getxattr(p, "user.la") == b"abc"
    names = os.listxattr(p)
    assert "trusted.overlay.opaque" not in names  # a layer may not forge overlay state
    label = b"system_u:object_r:bin_t:s0"
    assert "security.selinux" not in names or os.getxattr(p, "security.selinux") != label


def test_fifo_and_devices(tmp_path):
    b = TarBuilder().node("fifo", tarfile.FIFOTYPE, mode=0o620).node("null", tarfile.CHRTYPE, 1, 3, 0o666)
    r = apply(b, tmp_path)
    assert stat.S_ISFIFO(os.lstat(tmp_path / "fifo").st_mode)
    assert stat.S_IMODE(os.lstat(tmp_path / "fifo").st_mode) == 0o620
    if ROOT:
        st = os.lstat(tmp_path / "null")
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
    else:
        assert not (tmp_path / "null").exists() and r.warnings


def test_root_entry_is_ignored(tmp_path):
    (tmp_path / "t").mkdir(mode=0o755)
    apply(TarBuilder().dir("./", mode=0o777).file("./x", b"1"), tmp_path / "t")
    assert stat.S_IMODE(os.lstat(tmp_path / "t").st_mode) == 0o755
    assert (tmp_path / "t/x").exists()


def test_parents_are_created_when_missing(tmp_path):
    apply(TarBuilder().file("deep/er/file", b"x"), tmp_path)
    assert (tmp_path / "deep/er/file").read_bytes() == b"x"


def test_file_where_parent_dir_expected(tmp_path):
    with pytest.raises(InvalidArgument, match="not a directory"):
        apply(TarBuilder().file("f", b"1").file("f/g", b"2"), tmp_path)


# -- limits ------------------------------------------------------------------------------------

def test_limit_entries(tmp_path):
    b = TarBuilder()
    for i in range(11):
        b.file(f"f{i}")
    with pytest.raises(InvalidArgument, match="more than 10 entries"):
        apply(b, tmp_path, limits=Limits(max_entries=10))


def test_limit_single_file(tmp_path):
    with pytest.raises(InvalidArgument, match="single-file limit"):
        apply(TarBuilder().file("big", b"x" * 2000), tmp_path, limits=Limits(max_file_size=1000))


def test_limit_total_size(tmp_path):
    b = TarBuilder()
    for i in range(10):
        b.file(f"f{i}", b"x" * 10_000)
    with pytest.raises(InvalidArgument, match="larger than the limit"):
        apply(b, tmp_path, limits=Limits(max_size=50_000))


def test_limit_depth_and_name_length(tmp_path):
    with pytest.raises(InvalidArgument, match="nested deeper"):
        apply(TarBuilder().file("a/" * 20 + "f"), tmp_path, limits=Limits(max_depth=10))
    with pytest.raises(InvalidArgument, match="longer than"):
        apply(TarBuilder().file("n" * 300), tmp_path)


def test_header_size_lie_is_refused_before_reading(tmp_path):
    """A header claiming 1 TiB with nothing behind it."""
    ti = tarfile.TarInfo("huge")
    ti.size = 1 << 40
    raw = ti.tobuf(tarfile.GNU_FORMAT) + bytes(1024)
    with pytest.raises(InvalidArgument, match="single-file limit"):
        apply(raw, tmp_path)


def test_huge_pax_header_is_refused(tmp_path):
    b = TarBuilder()
    b.file("f", pax_headers={"SCHILY.xattr.user.big": "x" * (17 << 20)})
    with pytest.raises(InvalidArgument, match="tar header takes more than"):
        apply(b, tmp_path)


# -- malformed input ---------------------------------------------------------------------------

def test_truncated_file_data(tmp_path):
    raw = TarBuilder().file("f", b"x" * 5000).raw()
    with pytest.raises(InvalidArgument, match="truncated"):
        apply(raw[:512 + 1000], tmp_path)


def test_corrupt_header_in_the_middle(tmp_path):
    raw = bytearray(TarBuilder().file("a", b"1").file("b", b"2").raw())
    raw[1024 + 148:1024 + 156] = b"9999999\0"  # checksum of the second header
    with pytest.raises(InvalidArgument, match="corrupt"):
        apply(bytes(raw), tmp_path)


def test_not_a_tar(tmp_path):
    with pytest.raises(InvalidArgument):
        apply(b"this is not a tar file" * 100, tmp_path)


def test_gnu_sparse_file(tmp_path):
    import shutil
    import subprocess

    if shutil.which("tar") is None:
        pytest.skip("needs GNU tar to write a sparse archive")
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "sparse", "wb") as f:
        f.write(b"head")
        f.seek(50 << 20)
        f.write(b"tail")
    raw = subprocess.run(["tar", "--sparse", "--format=gnu", "-C", str(src), "-cf", "-", "sparse"],
                         check=True, capture_output=True).stdout
    dst = tmp_path / "dst"
    dst.mkdir()
    apply(raw, dst)
    data = (dst / "sparse").read_bytes()
    assert len(data) == (50 << 20) + 4 and data[:4] == b"head" and data[-4:] == b"tail"
    assert os.lstat(dst / "sparse").st_blocks * 512 < (1 << 20)  # holes stayed holes
