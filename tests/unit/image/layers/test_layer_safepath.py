"""SafeRoot: fd-relative resolution that never leaves the root."""

from __future__ import annotations

import os

import pytest

from pallet.errors import InvalidArgument
from pallet.image.layers.safepath import SafeRoot, split_unsafe


def where(root: SafeRoot, parts, **kw) -> str:
    fd, resolved = root.open_dir(parts, **kw)
    try:
        assert os.path.samefile(f"/proc/self/fd/{fd}", os.path.join(root.path, *resolved))
        return "/".join(resolved)
    finally:
        os.close(fd)


def test_split_unsafe():
    assert split_unsafe("./a//b/./c/") == ["a", "b", "c"]
    assert split_unsafe("/etc/passwd") == ["etc", "passwd"]
    assert split_unsafe("./") == []
    for bad in ("../x", "a/../../x", "a/.."):
        with pytest.raises(InvalidArgument):
            split_unsafe(bad)


def test_symlinks_resolve_inside_root(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    root_dir = tmp_path / "root"
    (root_dir / "real/sub").mkdir(parents=True)
    os.symlink(str(outside), root_dir / "abs")           # absolute: restarts at the root
    os.symlink("../../../../..", root_dir / "real/up")   # climbs: clamped at the root
    os.symlink("sub", root_dir / "real/rel")
    with SafeRoot(str(root_dir)) as root:
        assert where(root, ["real", "rel"]) == "real/sub"
        assert where(root, ["real", "up", "real"]) == "real"
        with pytest.raises(FileNotFoundError):
            where(root, ["abs"])
        assert where(root, ["abs", "x"], create=True) == os.path.join(str(outside)[1:], "x")
    assert os.listdir(outside) == []


def test_loops_and_non_dirs(tmp_path):
    os.symlink("b", tmp_path / "a")
    os.symlink("a", tmp_path / "b")
    (tmp_path / "f").write_text("x")
    with SafeRoot(str(tmp_path)) as root:
        with pytest.raises(InvalidArgument, match="too many symlinks"):
            where(root, ["a"])
        with pytest.raises(InvalidArgument, match="not a directory"):
            where(root, ["f", "x"])
        os.symlink("f", tmp_path / "lf")
        with pytest.raises(InvalidArgument, match="not a directory"):
            where(root, ["lf", "x"])


def test_nofollow(tmp_path):
    (tmp_path / "d").mkdir()
    os.symlink("d", tmp_path / "l")
    with SafeRoot(str(tmp_path)) as root:
        assert where(root, ["d"], follow=False) == "d"
        with pytest.raises(InvalidArgument, match="symlink"):
            where(root, ["l"], follow=False)


def test_on_create_reports_new_dirs(tmp_path):
    made = []
    with SafeRoot(str(tmp_path)) as root:
        where(root, ["x", "y"], create=True, on_create=made.append)
        where(root, ["x", "y"], create=True, on_create=made.append)
    assert made == [["x"], ["x", "y"]]
