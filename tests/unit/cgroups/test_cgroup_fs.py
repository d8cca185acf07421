"""cgroupfs file helpers: parsing and the errno -> Pallet error kind table."""

from __future__ import annotations

import errno

import pytest

from pallet.cgroups import cgroupfs as fs
from pallet.errors import (
    Conflict,
    InvalidArgument,
    NotFound,
    NotSupported,
    PermissionDenied,
    Unavailable,
)


@pytest.mark.parametrize(("code", "kind"), [
    (errno.ENOENT, NotFound), (errno.EINVAL, InvalidArgument), (errno.ERANGE, InvalidArgument),
    (errno.EOPNOTSUPP, NotSupported), (errno.ENODEV, NotSupported), (errno.EPERM, PermissionDenied),
    (errno.EACCES, PermissionDenied), (errno.EBUSY, Conflict), (errno.EIO, Unavailable)])
def test_error_kinds(code, kind):
    err = fs.error_for(OSError(code, "boom"), "write 5 to /x/pids.max")
    assert type(err) is kind
    assert str(err) == "write 5 to /x/pids.max: boom"


def test_read_helpers(tmp_path):
    (tmp_path / "a").write_text("max\n")
    (tmp_path / "b").write_text("42\n")
    (tmp_path / "k").write_text("nr_periods 3\nsome junk line\nneg -1\n")
    (tmp_path / "l").write_text("1 2 3 \n")
    assert fs.read_int(tmp_path / "a") == 0
    assert fs.read_int(tmp_path / "a", default=-1) == -1
    assert fs.read_int(tmp_path / "b") == 42
    assert fs.read_int(tmp_path / "missing", default=7) == 7
    assert fs.read_keyed(tmp_path / "k") == {"nr_periods": 3, "neg": -1}
    assert fs.read_keyed(tmp_path / "missing") == {}
    assert fs.read_ints(tmp_path / "l") == [1, 2, 3]
    with pytest.raises(NotFound, match="missing"):
        fs.read(tmp_path / "missing")


def test_make_dirs_reports_each_new_level_top_down(tmp_path):
    made = []
    fs.make_dirs(tmp_path / "a" / "b" / "c", on_create=made.append)
    assert made == [str(tmp_path / "a"), str(tmp_path / "a" / "b"), str(tmp_path / "a" / "b" / "c")]
    fs.make_dirs(tmp_path / "a" / "b" / "c", on_create=made.append)
    assert len(made) == 3


def test_remove_tree_children_first(tmp_path):
    (tmp_path / "x" / "y" / "z").mkdir(parents=True)
    (tmp_path / "x" / "w").mkdir()
    fs.remove_tree(tmp_path / "x")
    assert not (tmp_path / "x").exists()
    fs.remove_tree(tmp_path / "x")
