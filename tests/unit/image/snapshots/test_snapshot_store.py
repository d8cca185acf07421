"""Snapshot metadata and directory lifecycle of both snapshotters, without root and without mounting.

The mounts themselves are performed in tests/integration/image/test_snapshotter_conformance.py.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from pallet.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from pallet.image.snapshots import Info, Kind, Snapshotter, Usage, create_snapshotter
from pallet.image.snapshots.store import FORMAT_VERSION, DirSnapshotter, disk_usage


@pytest.fixture(params=["overlay", "copying"])
def kind(request) -> str:
    return request.param


@pytest.fixture
def snap(kind, tmp_path) -> Iterator[DirSnapshotter]:
    s = create_snapshotter(kind, tmp_path / "store", **({"index_off": False} if kind == "overlay" else {}))
    assert isinstance(s, DirSnapshotter)
    yield s
    s.close()


def _layer(s: DirSnapshotter, name: str, parent: str | None, files: dict[str, str]) -> None:
    s.prepare(f"extract-{name}", parent)
    for rel, text in files.items():
        p = s.upper_dir(f"extract-{name}") / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    s.commit(name, f"extract-{name}")


def _consistent(s: DirSnapshotter) -> None:
    """Every row has its directory, and after cleanup no directory lacks a row."""
    s.cleanup()
    infos = list(s.walk())
    ids = {row.id for row in s._db.rows()}
    dirs = {int(n) for n in os.listdir(s.snapshots_dir)}
    assert dirs == ids, (sorted(dirs), sorted(ids))
    for row in s._db.rows():
        assert s.fs_dir(row.id).is_dir()
    names = {i.name for i in infos}
    assert all(i.parent is None or i.parent in names for i in infos)


def test_is_a_snapshotter(snap):
    assert isinstance(snap, Snapshotter)


def test_prepare_commit_stat_walk(snap):
    snap.prepare("k1", labels={"a": "b"})
    info = snap.stat("k1")
    assert (info.kind, info.name, info.parent, dict(info.labels)) == (Kind.ACTIVE, "k1", None, {"a": "b"})
    assert info.created is not None and info.created.tzinfo is not None
    (snap.upper_dir("k1") / "hello").write_text("hi")
    snap.commit("base", "k1")
    with pytest.raises(NotFound):
        snap.stat("k1")
    info = snap.stat("base")
    assert (info.kind, info.parent, dict(info.labels)) == (Kind.COMMITTED, None, {"a": "b"})
    snap.prepare("k2", "base")
    snap.view("v", "base")
    assert [(i.name, i.kind, i.parent) for i in snap.walk()] == [
        ("base", Kind.COMMITTED, None), ("k2", Kind.ACTIVE, "base"), ("v", Kind.VIEW, "base")]


def test_commit_labels_replace_when_given(snap):
    snap.prepare("k", labels={"old": "1"})
    snap.commit("c", "k", labels={"new": "2"})
    assert dict(snap.stat("c").labels) == {"new": "2"}


def test_commit_is_metadata_only_the_directory_stays(snap):
    snap.prepare("k")
    before = snap.upper_dir("k")
    (before / "f").write_text("x")
    snap.commit("c", "k")
    assert snap.upper_dir("c") == before and (before / "f").read_text() == "x"


def test_already_exists_rules(snap):
    snap.prepare("k")
    with pytest.raises(AlreadyExists):
        snap.prepare("k")
    with pytest.raises(AlreadyExists):
        snap.view("k")
    snap.commit("c", "k")
    with pytest.raises(AlreadyExists):
        snap.prepare("c")  # keys and names share one namespace
    snap.prepare("k2", "c")
    with pytest.raises(AlreadyExists):
        snap.commit("c", "k2")
    assert snap.stat("k2").kind == Kind.ACTIVE  # a refused commit changes nothing
    _consistent(snap)


def test_not_found_and_invalid(snap):
    with pytest.raises(NotFound):
        snap.prepare("k", "missing")
    with pytest.raises(NotFound):
        snap.commit("c", "missing")
    with pytest.raises(NotFound):
        snap.remove("missing")
    with pytest.raises(NotFound):
        snap.mounts("missing")
    with pytest.raises(NotFound):
        snap.usage("missing")
    with pytest.raises(InvalidArgument):
        snap.prepare("")
    with pytest.raises(InvalidArgument):
        snap.prepare("k", labels={"a": 1})
    snap.prepare("active")
    with pytest.raises(InvalidArgument):
        snap.prepare("child", "active")  # a parent must be committed
    _consistent(snap)


def test_conflicts(snap):
    snap.prepare("k")
    snap.commit("c", "k")
    with pytest.raises(Conflict):
        snap.commit("c2", "c")  # committed already
    with pytest.raises(Conflict):
        snap.mounts("c")
    snap.view("v", "c")
    with pytest.raises(Conflict):
        snap.commit("c3", "v")  # a view cannot be committed
    with pytest.raises(Conflict, match="child"):
        snap.remove("c")
    snap.remove("v")
    snap.remove("c")
    assert list(snap.walk()) == []


def test_remove_deletes_the_directory(snap):
    snap.prepare("k")
    d = snap.upper_dir("k").parent
    assert d.is_dir()
    snap.remove("k")
    assert not d.exists()
    assert os.listdir(snap.snapshots_dir) == []


def test_mounts_match_what_prepare_returned(snap):
    _layer(snap, "l1", None, {"a": "1"})
    _layer(snap, "l2", "l1", {"b": "2"})
    m = snap.prepare("k", "l2")
    assert snap.mounts("k") == m
    v = snap.view("v", "l2")
    assert snap.mounts("v") == v and all(x.readonly for x in v)
    assert not any(x.readonly for x in m)


def test_usage(snap):
    snap.prepare("k")
    empty = snap.usage("k")
    (snap.upper_dir("k") / "big").write_bytes(b"x" * 100_000)
    (snap.upper_dir("k") / "sub").mkdir()
    os.link(snap.upper_dir("k") / "big", snap.upper_dir("k") / "sub" / "link")
    grown = snap.usage("k")
    assert grown.inodes == empty.inodes + 2  # the hardlink is the same inode
    assert grown.size >= empty.size + 100_000
    snap.commit("c", "k")
    assert snap.usage("c") == grown  # recorded at commit
    assert isinstance(snap.usage("c"), Usage)


def test_disk_usage_counts_root(tmp_path):
    assert disk_usage(tmp_path).inodes == 1


def test_copying_child_has_the_full_tree_overlay_child_is_empty(kind, snap):
    _layer(snap, "l1", None, {"etc/os-release": "pallet"})
    snap.prepare("k", "l1")
    upper = snap.upper_dir("k")
    if kind == "copying":
        assert (upper / "etc/os-release").read_text() == "pallet"
    else:
        assert list(upper.iterdir()) == []


def test_reopen_keeps_everything(kind, tmp_path):
    root = tmp_path / "store"
    with create_snapshotter(kind, root) as s:
        assert isinstance(s, DirSnapshotter)
        _layer(s, "l1", None, {"f": "1"})
        s.prepare("k", "l1", labels={"x": "y"})
        before = list(s.walk())
    with create_snapshotter(kind, root) as s:
        assert list(s.walk()) == before
        assert isinstance(before[0], Info)


def test_format_version_is_checked(kind, tmp_path):
    root = tmp_path / "store"
    create_snapshotter(kind, root).close()
    con = sqlite3.connect(root / "metadata.db")
    assert con.execute("PRAGMA user_version").fetchone()[0] == FORMAT_VERSION
    con.execute("PRAGMA user_version = 99")
    con.commit()
    con.close()
    with pytest.raises(InvalidArgument, match="format 99"):
        create_snapshotter(kind, root)


def test_root_with_colon_is_refused(kind, tmp_path):
    with pytest.raises(InvalidArgument):
        create_snapshotter(kind, tmp_path / "a:b")


def test_unknown_kind(tmp_path):
    with pytest.raises(InvalidArgument):
        create_snapshotter("zfs", tmp_path)


def test_cleanup_removes_orphans_and_keeps_locked_staging(snap):
    snap.prepare("k")
    sd = snap.snapshots_dir
    (sd / "99" / "fs").mkdir(parents=True)        # renamed in place, COMMIT never happened
    (sd / "new-abandoned" / "fs").mkdir(parents=True)
    (sd / "rm-halfway" / "fs" / "x").mkdir(parents=True)
    (sd / "junk").write_text("?")
    busy = sd / "new-busy"
    busy.mkdir()
    fd = os.open(busy, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        assert snap.cleanup() == ["99", "junk", "new-abandoned", "rm-halfway"]
        assert sorted(os.listdir(sd)) == ["1", "new-busy"]
    finally:
        os.close(fd)
    assert snap.cleanup() == ["new-busy"]
    assert snap.cleanup() == []  # idempotent
    assert snap.stat("k").kind == Kind.ACTIVE


def test_orphan_dir_with_a_reused_id_is_replaced(snap):
    # A crash between rename and COMMIT leaves snapshots/<id> while the id is handed out again.
    (snap.snapshots_dir / "1" / "fs" / "stale").mkdir(parents=True)
    snap.prepare("k")
    assert list(snap.upper_dir("k").iterdir()) == []


class Boom(Exception):
    pass


POINTS = ["prepare:staging", "prepare:populated", "prepare:inserted", "prepare:renamed",
          "prepare:committed", "commit:updated", "commit:committed", "remove:deleted",
          "remove:committed", "remove:renamed"]


@pytest.mark.parametrize("point", POINTS)
def test_failure_at_any_step_leaves_a_consistent_store(snap, point):
    _layer(snap, "base", None, {"f": "1"})
    snap.prepare("victim", "base")
    (snap.upper_dir("victim") / "g").write_text("2")

    def checkpoint(p: str) -> None:
        if p == point:
            raise Boom(p)

    snap.checkpoint = checkpoint
    op = point.split(":")[0]
    try:
        if op == "prepare":
            snap.prepare("new", "base")
        elif op == "commit":
            snap.commit("done", "victim")
        else:
            snap.remove("victim")
    except Boom:
        pass
    snap.checkpoint = lambda p: None
    _consistent(snap)
    names = {i.name: i.kind for i in snap.walk()}
    after = point.endswith(("committed", "renamed")) and point != "prepare:renamed"
    if op == "prepare":
        assert ("new" in names) == after
    elif op == "commit":
        assert names.get("done" if after else "victim") == (Kind.COMMITTED if after else Kind.ACTIVE)
    else:
        assert ("victim" in names) == (not after)


def test_staging_dirs_do_not_survive_a_failed_copy(tmp_path, monkeypatch):
    from pallet.image.snapshots import copying

    s = create_snapshotter("copying", tmp_path / "store")
    assert isinstance(s, DirSnapshotter)
    _layer(s, "base", None, {"f": "1"})

    def broken(src: Path, dst: Path, *, pass_fds=()) -> None:
        dst.mkdir()
        raise OSError("disk full")

    monkeypatch.setattr(copying, "copy_tree", broken)
    with pytest.raises(OSError, match="disk full"):
        s.prepare("k", "base")
    assert os.listdir(s.snapshots_dir) == ["1"]
    s.close()
