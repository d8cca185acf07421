"""Staged layers of the overlay snapshotter (`stage`, `commit_staged`, `discard_staged`,
`chain_dirs`): a layer filled before its parent exists, committed in one transaction, mounted
for real; and a SIGKILL at each step of `commit_staged` leaves a consistent store."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from pallet.errors import AlreadyExists, NotSupported
from pallet.image.service import mount_rootfs, unmount_rootfs
from pallet.image.snapshots import Kind, create_snapshotter
from pallet.image.snapshots.overlay import supported
from pallet.image.snapshots.store import DirSnapshotter, disk_usage

if os.geteuid() != 0:
    pytest.skip("mounting overlay snapshots needs root", allow_module_level=True)


@pytest.fixture
def snap(tmp_path) -> Iterator[DirSnapshotter]:
    if not supported(tmp_path / "probe"):
        pytest.skip("overlayfs is not usable on the file system of the test's tmp dir")
    s = create_snapshotter("overlay", tmp_path / "store")
    assert isinstance(s, DirSnapshotter)
    yield s
    s.close()


def _consistent(s: DirSnapshotter) -> None:
    rows = s._db.rows()
    assert {int(n) for n in os.listdir(s.snapshots_dir)} == {r.id for r in rows}
    for r in rows:
        assert s.fs_dir(r.id).is_dir()


def _stage(s: DirSnapshotter, files: dict[str, str]):
    staged = s.stage()
    for rel, text in files.items():
        p = staged.fs / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return staged


def test_layers_staged_out_of_order_commit_in_order_and_mount(snap, tmp_path):
    # The child is filled first, with a whiteout of a base file, before the base exists.
    child = _stage(snap, {"b": "child"})
    os.mknod(child.fs / "a", stat.S_IFCHR | 0o600, os.makedev(0, 0))
    base = _stage(snap, {"a": "base", "b": "base"})
    os.chmod(base.fs, 0o750)
    snap.commit_staged("base", None, base, labels={"k": "v"})
    snap.commit_staged("child", "base", child)
    assert snap.stat("child").kind == Kind.COMMITTED and snap.stat("child").parent == "base"
    assert snap.stat("base").labels == {"k": "v"}
    assert snap.usage("child") == disk_usage(snap.upper_dir("child"))  # recorded at commit
    # The child's root took the parent's mode, as prepare gives it.
    assert stat.S_IMODE(os.stat(snap.upper_dir("child")).st_mode) == 0o750
    assert snap.chain_dirs("child") == [snap.upper_dir("child"), snap.upper_dir("base")]
    assert not [n for n in os.listdir(snap.snapshots_dir) if not n.isdigit()]

    mounts = snap.view("v", "child")
    target = tmp_path / "mnt"
    target.mkdir()
    mount_rootfs(mounts, target)
    try:
        assert sorted(os.listdir(target)) == ["b"]
        assert (target / "b").read_text() == "child"
    finally:
        unmount_rootfs(mounts, target)
    _consistent(snap)


def test_a_taken_name_keeps_the_staged_dir_for_the_caller_to_discard(snap):
    snap.commit_staged("base", None, _stage(snap, {"f": "1"}))
    again = _stage(snap, {"f": "2"})
    with pytest.raises(AlreadyExists):
        snap.commit_staged("base", None, again)
    assert again.path.is_dir()
    snap.discard_staged(again)
    snap.discard_staged(again)  # idempotent
    assert not again.path.exists()
    assert (snap.upper_dir("base") / "f").read_text() == "1"
    _consistent(snap)


def test_a_held_staged_dir_survives_cleanup(snap):
    staged = _stage(snap, {"f": "1"})
    assert snap.cleanup() == []
    assert (staged.fs / "f").read_text() == "1"
    snap.discard_staged(staged)
    _consistent(snap)


def test_the_copying_snapshotter_does_not_stage(tmp_path):
    with create_snapshotter("copying", tmp_path / "c") as s, pytest.raises(NotSupported):
        s.stage()  # type: ignore[attr-defined]


CHILD = textwrap.dedent("""
    import os, signal, sys
    from pallet.image.snapshots import create_snapshotter
    root, point = sys.argv[1:3]
    def checkpoint(p):
        if p == point:
            os.kill(os.getpid(), signal.SIGKILL)
    s = create_snapshotter("overlay", root, checkpoint=checkpoint)
    staged = s.stage()
    (staged.fs / "g").write_text("2")
    s.commit_staged("new", "base", staged)
    print("survived")
""")


@pytest.mark.parametrize("point", ["stage:staging", "stage:inserted", "stage:renamed", "stage:committed"])
def test_kill_9_while_committing_a_staged_layer(snap, point):
    snap.commit_staged("base", None, _stage(snap, {"f": "1"}))
    proc = subprocess.run([sys.executable, "-c", CHILD, str(snap.root), point], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    with create_snapshotter("overlay", snap.root) as s:
        assert isinstance(s, DirSnapshotter)
        s.cleanup()
        _consistent(s)
        names = {i.name for i in s.walk()}
        assert ("new" in names) == (point == "stage:committed")
        if "new" in names:
            assert (s.upper_dir("new") / "g").read_text() == "2"
        # The store still works: the same layer commits now.
        staged = s.stage()
        (staged.fs / "g").write_text("3")
        if "new" in names:
            with pytest.raises(AlreadyExists):
                s.commit_staged("new", "base", staged)
            s.discard_staged(staged)
        else:
            s.commit_staged("new", "base", staged)
        _consistent(s)


def test_a_stack_commits_in_one_transaction_and_a_taken_name_is_skipped_or_refused(snap):
    snap.commit_staged("l0", None, _stage(snap, {"f": "0"}))
    a, b = _stage(snap, {"f": "1"}), _stage(snap, {"f": "2"})
    # Refused as a whole: l0 is taken, so nothing of the stack is committed.
    with pytest.raises(AlreadyExists):
        snap.commit_staged_many([("l0", None, a, None), ("l1", "l0", b, None)])
    assert {i.name for i in snap.walk()} == {"l0"} and a.path.is_dir() and b.path.is_dir()
    # Skipped: l1 goes on top of the existing l0, l2 on top of l1 named in the same call.
    c = _stage(snap, {"f": "3"})
    done = snap.commit_staged_many([("l0", None, a, None), ("l1", "l0", b, None), ("l2", "l1", c, None)],
                                   skip_existing=True)
    assert done == ["l1", "l2"]
    assert a.path.is_dir() and a.lock_fd >= 0  # left for the caller
    snap.discard_staged(a)
    assert snap.stat("l2").parent == "l1" and snap.stat("l1").parent == "l0"
    assert [p.name for p in snap.chain_dirs("l2")] == ["fs", "fs", "fs"]
    assert (snap.chain_dirs("l2")[0] / "f").read_text() == "3"
    _consistent(snap)


CHILD_MANY = textwrap.dedent("""
    import os, signal, sys
    from pallet.image.snapshots import create_snapshotter
    root, point, nth = sys.argv[1], sys.argv[2], int(sys.argv[3])
    seen = []
    def checkpoint(p):
        seen.append(p)
        if p == point and seen.count(p) == nth:
            os.kill(os.getpid(), signal.SIGKILL)
    s = create_snapshotter("overlay", root, checkpoint=checkpoint)
    stack = []
    for i in range(3):
        st = s.stage()
        (st.fs / "f").write_text(str(i))
        stack.append((f"m{i}", "base" if i == 0 else f"m{i - 1}", st, None))
    s.commit_staged_many(stack)
    print("survived")
""")


@pytest.mark.parametrize(("point", "nth"), [("stage:inserted", 2), ("stage:inserted", 3),
                                            ("stage:renamed", 1), ("stage:committed", 1)])
def test_kill_9_while_committing_a_stack(snap, point, nth):
    snap.commit_staged("base", None, _stage(snap, {"f": "b"}))
    proc = subprocess.run([sys.executable, "-c", CHILD_MANY, str(snap.root), point, str(nth)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    with create_snapshotter("overlay", snap.root) as s:
        assert isinstance(s, DirSnapshotter)
        s.cleanup()
        _consistent(s)
        names = {i.name for i in s.walk()}
        # All of the stack or none of it.
        assert names == ({"base", "m0", "m1", "m2"} if point == "stage:committed" else {"base"})


def test_gc_removes_what_a_dead_stager_left_and_keeps_a_live_one(tmp_path):
    from pallet.image.gc import GarbageCollector
    from pallet.image.service import ImageService

    if not supported(tmp_path / "probe"):
        pytest.skip("overlayfs is not usable on the file system of the test's tmp dir")
    svc = ImageService(tmp_path / "root", "overlay")
    try:
        snaps = svc.snapshots
        assert isinstance(snaps, DirSnapshotter)
        # A process that staged a layer and died (its flock went with it).
        script = ("import sys\nfrom pallet.image.snapshots import create_snapshotter\n"
                  "s = create_snapshotter('overlay', sys.argv[1]).stage()\n(s.fs / 'f').write_text('x')")
        subprocess.run([sys.executable, "-c", script, str(snaps.root)], check=True, timeout=60)
        live = _stage(snaps, {"g": "y"})
        dead = [n for n in os.listdir(snaps.snapshots_dir) if n.startswith("new-") and n != live.path.name]
        assert len(dead) == 1
        GarbageCollector(svc.content, svc.meta, snaps, data_root=svc.root).collect()
        assert [n for n in os.listdir(snaps.snapshots_dir) if n.startswith("new-")] == [live.path.name]
        snaps.discard_staged(live)
    finally:
        svc.close()
