"""Unit tests for pallet.oci.securejoin: resolution never leaves root, whatever the tree holds."""

from __future__ import annotations

import errno
import os

import pytest

from pallet.oci.securejoin import MAX_SYMLINKS, secure_join


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    (r / "usr" / "lib").mkdir(parents=True)
    (r / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    return str(r)


def inside(root: str, path: str) -> bool:
    return path == root or path.startswith(root + "/")


@pytest.mark.parametrize("unsafe,expected", [
    ("", ""),
    ("/", ""),
    (".", ""),
    ("/etc/passwd", "/etc/passwd"),
    ("etc/passwd", "/etc/passwd"),
    ("//etc///passwd/", "/etc/passwd"),
    ("/./etc/./passwd", "/etc/passwd"),
    ("/does/not/exist", "/does/not/exist"),
    ("/usr/lib/../../etc", "/etc"),
])
def test_plain_paths(root, unsafe, expected):
    assert secure_join(root, unsafe) == root + expected


@pytest.mark.parametrize("unsafe", ["..", "../..", "/../../../..", "../../etc/passwd", "etc/../../../x",
                                    "/usr/lib/../../../../../../tmp"])
def test_dotdot_never_climbs_above_root(root, unsafe):
    got = secure_join(root, unsafe)
    assert inside(root, got)


def test_dotdot_stops_at_root(root):
    assert secure_join(root, "../../etc/passwd") == f"{root}/etc/passwd"
    assert secure_join(root, "/usr/lib/../../../../../../tmp") == f"{root}/tmp"


def test_absolute_symlink_restarts_at_root(root, tmp_path):
    os.symlink("/etc", f"{root}/link")
    assert secure_join(root, "/link/passwd") == f"{root}/etc/passwd"
    # A symlink naming the host path of the rootfs itself is just a path inside it.
    os.symlink(str(tmp_path), f"{root}/host")
    assert secure_join(root, "/host/secret") == root + str(tmp_path) + "/secret"


def test_relative_symlink_is_resolved_from_its_directory(root):
    os.symlink("../etc", f"{root}/usr/etc-link")
    assert secure_join(root, "/usr/etc-link/passwd") == f"{root}/etc/passwd"
    os.symlink("lib", f"{root}/usr/lib64")
    assert secure_join(root, "/usr/lib64/libc.so") == f"{root}/usr/lib/libc.so"


@pytest.mark.parametrize("target", ["../../../../../../../..", "../" * 40 + "etc", "/../../..", "./../.."])
def test_relative_symlink_climbing_out_stops_at_root(root, target):
    os.symlink(target, f"{root}/usr/lib/escape")
    got = secure_join(root, "/usr/lib/escape/shadow")
    assert inside(root, got)
    assert got == root + ("/etc/shadow" if target.endswith("etc") else "/shadow")


def test_final_component_symlink_is_followed(root):
    os.symlink("/etc/passwd", f"{root}/pw")
    assert secure_join(root, "/pw") == f"{root}/etc/passwd"


def test_dangling_symlink_resolves_to_its_target_inside_root(root):
    os.symlink("/nowhere/file", f"{root}/dangling")
    assert secure_join(root, "/dangling") == f"{root}/nowhere/file"
    os.symlink("../../../../host-only", f"{root}/dangling-up")
    assert secure_join(root, "/dangling-up") == f"{root}/host-only"


def test_nested_symlinks(root):
    # a -> b/c, b -> /usr, /usr/c -> ../etc ; so a/passwd is /etc/passwd.
    os.symlink("b/c", f"{root}/a")
    os.symlink("/usr", f"{root}/b")
    os.symlink("../etc", f"{root}/usr/c")
    assert secure_join(root, "/a/passwd") == f"{root}/etc/passwd"


def test_symlink_then_dotdot_uses_the_resolved_directory(root):
    # Like the kernel, '..' after a symlink is taken from where the link led, not lexically.
    os.symlink("/usr/lib", f"{root}/deep")
    assert secure_join(root, "/deep/..") == f"{root}/usr"


def test_symlink_loop_is_eloop(root):
    os.symlink("loop2", f"{root}/loop1")
    os.symlink("loop1", f"{root}/loop2")
    with pytest.raises(OSError) as info:
        secure_join(root, "/loop1/x")
    assert info.value.errno == errno.ELOOP


def test_self_loop_is_eloop(root):
    os.symlink("/self", f"{root}/self")
    with pytest.raises(OSError) as info:
        secure_join(root, "/self")
    assert info.value.errno == errno.ELOOP


def test_a_long_but_finite_chain_resolves(root):
    os.symlink("/etc", f"{root}/l0")
    for i in range(1, 40):
        os.symlink(f"l{i - 1}", f"{root}/l{i}")
    assert secure_join(root, "/l39/passwd") == f"{root}/etc/passwd"
    assert MAX_SYMLINKS >= 40


def test_root_itself_may_be_a_symlink_or_relative(tmp_path, root, monkeypatch):
    os.symlink(root, tmp_path / "root-link")
    # The root is taken as given (made absolute, not resolved): results are under it.
    assert secure_join(str(tmp_path / "root-link"), "/etc") == str(tmp_path / "root-link" / "etc")
    monkeypatch.chdir(tmp_path)
    assert secure_join("root", "/etc") == f"{root}/etc"


def test_symlinks_outside_root_are_never_read(root, tmp_path):
    # A symlink on the host next to root with the same name as a path inside must not matter.
    os.symlink("/", tmp_path / "etc")
    assert secure_join(root, "/etc/../etc/passwd") == f"{root}/etc/passwd"


def test_result_never_escapes_for_a_hostile_tree(root):
    os.symlink("/", f"{root}/r")
    os.symlink("..", f"{root}/usr/up")
    os.symlink("../../../../..", f"{root}/usr/lib/up5")
    os.symlink("/usr/lib/up5/../r/usr/up/..", f"{root}/mix")
    for unsafe in ["/r/r/r/..", "/usr/up/up/..", "/mix", "/mix/../..", "/usr/lib/up5/etc/passwd",
                   "/mix/etc/../../../../passwd"]:
        assert inside(root, secure_join(root, unsafe)), unsafe
