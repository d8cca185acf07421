"""One conformance suite for every snapshotter (STYLE.md §12): the returned mounts are performed
for real, as root, and each test unmounts what it mounted and removes its store.

The mounts are performed by a helper of this file, as the runtime will: flags from
pallet.runtime.mountopts, `x-` options left out, mount(2) run with the working directory that
`x-pallet.chdir=` names, a read-only bind as bind + remount.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pallet.errors import AlreadyExists, Conflict
from pallet.image.snapshots import Kind, create_snapshotter
from pallet.image.snapshots.overlay import supported
from pallet.image.snapshots.store import DirSnapshotter
from pallet.oci.mount import MOUNT_DATA_LIMIT, Mount
from pallet.runtime import mountopts
from pallet.syscalls import flags as F
from pallet.syscalls import real

if os.geteuid() != 0:
    pytest.skip("snapshotter conformance performs real mounts: needs root", allow_module_level=True)

KINDS = ["overlay", "copying"]


# -- performing Mount lists, as a consumer must ------------------------------------------------
@contextlib.contextmanager
def _cwd(path: str | None) -> Iterator[None]:
    if path is None:
        yield
        return
    saved = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.chdir(path)  # pytest runs tests in one thread: a process-wide chdir is safe here
        yield
    finally:
        os.fchdir(saved)
        os.close(saved)


def perform(mounts: list[Mount], target: Path) -> list[str]:
    """Mount `mounts` at `target` in order; returns the mounted paths, innermost last."""
    sys_ = real()
    done: list[str] = []
    try:
        for m in mounts:
            dest = str(target / m.target) if m.target else str(target)
            opts = mountopts.parse(list(m.kernel_options()))
            if m.type == "bind" or opts.is_bind:
                sys_.mount(m.source, dest, None, F.MS_BIND | (opts.flags & F.MS_REC), None)
                done.append(dest)
                if opts.flags & F.MS_RDONLY:
                    sys_.mount(None, dest, None, F.MS_BIND | F.MS_REMOUNT | F.MS_RDONLY, None)
            else:
                with _cwd(m.chdir):
                    sys_.mount(m.source, dest, m.type, opts.flags, opts.data or None)
                done.append(dest)
        return done
    except BaseException:
        unmount(done)
        raise


def unmount(done: list[str]) -> None:
    for dest in reversed(done):
        try:
            real().umount2(dest, 0)
        except OSError:
            real().umount2(dest, F.MNT_DETACH)


@contextlib.contextmanager
def mounted(mounts: list[Mount], target: Path) -> Iterator[Path]:
    target.mkdir(parents=True, exist_ok=True)
    done = perform(mounts, target)
    try:
        yield target
    finally:
        unmount(done)


def _is_mountpoint(path: Path) -> bool:
    return path.exists() and os.path.ismount(path)


# -- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(params=KINDS)
def kind(request, tmp_path) -> str:
    if request.param == "overlay" and not supported(tmp_path / "probe"):
        pytest.skip("overlayfs is not usable on the file system of the test's tmp dir")
    return request.param


@pytest.fixture
def store_root(tmp_path) -> Iterator[Path]:
    root = tmp_path / "store"
    yield root
    shutil.rmtree(root, ignore_errors=True)


def open_store(kind: str, root: Path) -> DirSnapshotter:
    s = create_snapshotter(kind, root)
    assert isinstance(s, DirSnapshotter)
    return s


@pytest.fixture
def snap(kind, store_root) -> Iterator[DirSnapshotter]:
    s = open_store(kind, store_root)
    yield s
    s.close()


@pytest.fixture
def mnt(tmp_path) -> Iterator[Path]:
    path = tmp_path / "mnt"
    path.mkdir()
    yield path
    assert not _is_mountpoint(path), "a test left a mount behind"


def layer(s: DirSnapshotter, mnt: Path, name: str, parent: str | None,
          files: dict[str, str | None]) -> None:
    """Make committed `name` on `parent` by writing through the mounted snapshot (None = delete)."""
    key = f"extract-{name}"
    with mounted(s.prepare(key, parent), mnt) as root:
        for rel, text in files.items():
            p = root / rel
            if text is None:
                p.unlink()
            else:
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_text(text)
    s.commit(name, key)


# -- the contract ------------------------------------------------------------------------------
def test_parent_files_are_visible_and_writes_land_in_the_active_snapshot_only(kind, snap, mnt):
    layer(snap, mnt, "base", None, {"etc/hostname": "base", "bin/tool": "v1", "gone": "x"})
    with mounted(snap.prepare("c1", "base"), mnt) as root:
        assert (root / "etc/hostname").read_text() == "base"
        (root / "new").write_text("n")
        (root / "bin/tool").write_text("v2")
        (root / "gone").unlink()
    base = snap.upper_dir("base")
    assert (base / "bin/tool").read_text() == "v1" and (base / "gone").exists()
    assert not (base / "new").exists()
    upper = snap.upper_dir("c1")
    assert (upper / "new").read_text() == "n" and (upper / "bin/tool").read_text() == "v2"
    if kind == "overlay":
        wh = os.lstat(upper / "gone")  # overlay whiteout: a 0/0 character device
        assert stat.S_ISCHR(wh.st_mode) and wh.st_rdev == 0
        assert not (upper / "etc/hostname").exists()  # untouched files stay in the lower
    else:
        assert not (upper / "gone").exists() and (upper / "etc/hostname").exists()
    snap.remove("c1")


def test_commit_then_child_sees_the_writes(snap, mnt):
    layer(snap, mnt, "l1", None, {"a": "1", "b": "1"})
    layer(snap, mnt, "l2", "l1", {"b": "2", "c": "2", "a": None})
    with mounted(snap.prepare("c", "l2"), mnt) as root:
        assert sorted(os.listdir(root)) == ["b", "c"]
        assert (root / "b").read_text() == "2"
    assert snap.stat("l2").parent == "l1"
    snap.remove("c")


def test_active_with_no_parent_is_writable(snap, mnt):
    with mounted(snap.prepare("k"), mnt) as root:
        (root / "x").write_text("1")
    assert (snap.upper_dir("k") / "x").read_text() == "1"


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_view_is_read_only(snap, mnt, depth):
    parent = None
    for i in range(depth):
        layer(snap, mnt, f"l{i}", parent, {f"f{i}": str(i)})
        parent = f"l{i}"
    mounts = snap.view("v", parent)
    assert all(m.readonly for m in mounts)
    with mounted(mounts, mnt) as root:
        assert sorted(os.listdir(root)) == [f"f{i}" for i in range(depth)]
        with pytest.raises(OSError) as exc:
            (root / "new").write_text("x")
        assert exc.value.errno == errno.EROFS
    assert snap.stat("v").kind == Kind.VIEW
    with pytest.raises(Conflict):
        snap.commit("nope", "v")


def test_mounts_of_an_existing_snapshot_can_be_performed_again(snap, mnt):
    layer(snap, mnt, "l1", None, {"a": "1"})
    snap.prepare("k", "l1")
    with mounted(snap.mounts("k"), mnt) as root:
        (root / "b").write_text("2")
    with mounted(snap.mounts("k"), mnt) as root:
        assert sorted(os.listdir(root)) == ["a", "b"]


def test_remove_with_children_is_a_conflict(snap, mnt):
    layer(snap, mnt, "l1", None, {"a": "1"})
    snap.prepare("k", "l1")
    with pytest.raises(Conflict):
        snap.remove("l1")
    snap.remove("k")
    snap.remove("l1")
    assert list(snap.walk()) == [] and os.listdir(snap.snapshots_dir) == []


def test_stat_walk_usage_and_already_exists(snap, mnt):
    layer(snap, mnt, "l1", None, {"blob": "x" * 50_000})
    snap.prepare("k", "l1", labels={"containerd.io/gc.root": "1"})
    with pytest.raises(AlreadyExists):
        snap.prepare("k", "l1")
    with pytest.raises(AlreadyExists):
        snap.view("l1", None)
    infos = {i.name: i for i in snap.walk()}
    assert set(infos) == {"l1", "k"}
    assert infos["k"].parent == "l1" and dict(infos["k"].labels) == {"containerd.io/gc.root": "1"}
    assert snap.stat("l1") == infos["l1"]
    assert snap.usage("l1").size >= 50_000
    with mounted(snap.mounts("k"), mnt) as root:
        (root / "more").write_bytes(b"y" * 200_000)
    assert snap.usage("k").size >= 200_000


def test_child_sees_metadata_of_the_parent_unchanged(snap, mnt):
    """Owners, modes, setuid, mtimes, xattrs, hardlinks, symlinks, fifos and devices survive
    the step to a child (for the copying snapshotter: cp -a --reflink=auto)."""
    snap.prepare("k")
    up = snap.upper_dir("k")
    (up / "suid").write_text("#!/bin/sh\n")
    os.chown(up / "suid", 1234, 5678)
    os.chmod(up / "suid", 0o4755)
    os.utime(up / "suid", ns=(1_000_000_000_123, 1_000_000_000_456))
    os.setxattr(up / "suid", "user.pallet", b"yes")
    os.link(up / "suid", up / "hardlink")
    os.symlink("suid", up / "symlink")
    os.mkfifo(up / "fifo")
    os.mknod(up / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mkdir(up / "sticky", 0o1777)
    os.chmod(up / "sticky", 0o1777)
    snap.commit("base", "k")
    with mounted(snap.prepare("child", "base"), mnt) as root:
        st = os.lstat(root / "suid")
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 5678, 0o4755)
        assert st.st_mtime_ns == 1_000_000_000_456
        assert os.getxattr(root / "suid", "user.pallet") == b"yes"
        assert st.st_nlink == 2 and os.lstat(root / "hardlink").st_ino == st.st_ino
        assert os.readlink(root / "symlink") == "suid"
        assert stat.S_ISFIFO(os.lstat(root / "fifo").st_mode)
        null = os.lstat(root / "null")
        assert stat.S_ISCHR(null.st_mode) and null.st_rdev == os.makedev(1, 3)
        assert stat.S_IMODE(os.lstat(root / "sticky").st_mode) == 0o1777


def _long_root(base: Path) -> Path:
    # 128 absolute lower dirs under this root are ~128 * 70 bytes: twice mount(2)'s page.
    return base / "a-long-directory-name-to-push-lowerdir-past-one-page" / "store"


def test_128_layer_chain_mounts(kind, tmp_path, mnt):
    root = _long_root(tmp_path)
    s = open_store(kind, root)
    try:
        parent = None
        for i in range(128):
            key = f"x{i}"
            s.prepare(key, parent)
            up = s.upper_dir(key)
            (up / f"layer-{i:03}").write_text(str(i))
            (up / "top").write_text(str(i))
            s.commit(f"L{i}", key)
            parent = f"L{i}"
        mounts = s.prepare("container", parent)
        if kind == "overlay":
            (m,) = mounts
            lowers = (m.option("lowerdir") or "").split(":")
            assert len(lowers) == 128
            absolute = ":".join(str(s.snapshots_dir / lo) for lo in lowers)
            assert len(absolute) > MOUNT_DATA_LIMIT
            assert m.chdir == str(s.snapshots_dir)
        with mounted(mounts, mnt) as rootfs:
            names = sorted(os.listdir(rootfs))
            assert names == [f"layer-{i:03}" for i in range(128)] + ["top"]
            assert (rootfs / "top").read_text() == "127"
            (rootfs / "written").write_text("ok")
        assert (s.upper_dir("container") / "written").read_text() == "ok"
        with mounted(s.view("v", parent), mnt) as rootfs:
            assert (rootfs / "layer-000").read_text() == "0"
    finally:
        s.close()
        shutil.rmtree(root, ignore_errors=True)


# -- crash consistency: a child SIGKILLs itself at each step; the store must stay consistent -----
CHILD = textwrap.dedent("""
    import os, signal, sys
    from pallet.image.snapshots import create_snapshotter
    kind, root, point, op = sys.argv[1:5]
    def checkpoint(p):
        if p == point:
            os.kill(os.getpid(), signal.SIGKILL)
    s = create_snapshotter(kind, root, checkpoint=checkpoint)
    if op == "prepare":
        s.prepare("new", "base")
    elif op == "view":
        s.view("newview", "base")
    elif op == "commit":
        s.commit("done", "victim")
    else:
        s.remove("victim")
    print("survived")
""")

CRASH_POINTS = ["prepare:staging", "prepare:populated", "prepare:inserted", "prepare:renamed",
                "prepare:committed", "view:inserted", "view:renamed", "commit:updated",
                "commit:committed", "remove:deleted", "remove:committed", "remove:renamed"]


def _run_child(kind: str, root: Path, point: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CHILD, kind, str(root), point, point.split(":")[0]],
                          capture_output=True, text=True, timeout=60)


def _assert_consistent(s: DirSnapshotter) -> None:
    rows = s._db.rows()
    assert {int(n) for n in os.listdir(s.snapshots_dir)} == {r.id for r in rows}
    names = {r.name for r in rows}
    for info in s.walk():
        assert info.parent is None or info.parent in names
    for r in rows:
        assert s.fs_dir(r.id).is_dir()


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_kill_9_at_any_step_leaves_a_consistent_store(kind, store_root, mnt, point):
    with open_store(kind, store_root) as s:
        layer(s, mnt, "base", None, {"f": "1"})
        with mounted(s.prepare("victim", "base"), mnt) as root:
            (root / "g").write_text("2")
    proc = _run_child(kind, store_root, point)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    with open_store(kind, store_root) as s:
        s.cleanup()
        _assert_consistent(s)
        names = {i.name: i.kind for i in s.walk()}
        op, step = point.split(":")
        durable = step in ("committed", "renamed") and op in ("commit", "remove")
        durable = durable or step == "committed"
        if op == "prepare":
            assert ("new" in names) == durable
        elif op == "view":
            assert "newview" not in names
        elif op == "commit":
            assert names.get("done" if durable else "victim") == (
                Kind.COMMITTED if durable else Kind.ACTIVE)
        else:
            assert ("victim" in names) == (not durable)
        # The store still works after the crash: a new snapshot on base mounts and sees it.
        with mounted(s.prepare("after", "base"), mnt) as root:
            assert (root / "f").read_text() == "1"
        if "victim" in names and names["victim"] == Kind.ACTIVE:
            with mounted(s.mounts("victim"), mnt) as root:
                assert (root / "g").read_text() == "2"


def test_kill_9_during_copy_keeps_the_staging_dir_until_the_copier_is_gone(store_root, mnt):
    """The copying snapshotter's cp inherits the staging lock: cleanup must wait for it."""
    with open_store("copying", store_root) as s:
        layer(s, mnt, "base", None, {"f": "1"})
    script = textwrap.dedent("""
        import os, signal, subprocess, sys
        from pallet.image.snapshots import copying, create_snapshotter
        def slow_copy(src, dst, *, pass_fds=()):
            dst.mkdir()
            p = subprocess.Popen(["sleep", "60"], pass_fds=pass_fds, start_new_session=True,
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
            print(p.pid, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        copying.copy_tree = slow_copy
        create_snapshotter("copying", sys.argv[1]).prepare("k", "base")
    """)
    proc = subprocess.run([sys.executable, "-c", script, str(store_root)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    copier = int(proc.stdout.split()[0])
    try:
        with open_store("copying", store_root) as s:
            assert s.cleanup() == []  # the copier still holds the lock
            staging = [n for n in os.listdir(s.snapshots_dir) if n.startswith("new-")]
            assert len(staging) == 1
            os.kill(copier, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while os.path.exists(f"/proc/{copier}") and time.monotonic() < deadline:
                time.sleep(0.02)  # it is not our child: wait for init to reap it
            assert s.cleanup() == staging
            _assert_consistent(s)
            assert [i.name for i in s.walk()] == ["base"]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(copier, signal.SIGKILL)


def test_walk_is_json_friendly(snap, mnt):
    layer(snap, mnt, "l1", None, {"a": "1"})
    (info,) = list(snap.walk())
    json.dumps({"kind": info.kind, "name": info.name, "labels": dict(info.labels),
                "created": info.created.isoformat() if info.created else None})
