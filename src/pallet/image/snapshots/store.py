"""The half both snapshotters share: the on-disk layout, the SQLite metadata, crash-safe directories.

On-disk format, version 1 (`PRAGMA user_version` of metadata.db):

    <root>/
      metadata.db            SQLite, WAL journal, synchronous=FULL; the table below
      snapshots/
        <id>/                one per snapshot, <id> = snapshots.id in decimal
          fs/                the content: the layer (overlay upper) or the full tree (copying)
          work/              overlay, active snapshots only: the overlayfs workdir
        new-<random>/        a snapshot being made; its maker holds flock(LOCK_EX) on it
        rm-<random>/         a snapshot being deleted

    CREATE TABLE snapshots (
      id        INTEGER PRIMARY KEY AUTOINCREMENT,   -- never reused: names the directory
      name      TEXT NOT NULL UNIQUE,                -- key (active, view) or name (committed)
      kind      TEXT NOT NULL,                       -- 'active' | 'view' | 'committed'
      parent_id INTEGER REFERENCES snapshots(id),    -- a committed snapshot, or NULL
      labels    TEXT NOT NULL,                       -- JSON object, str -> str
      created   TEXT NOT NULL, updated TEXT NOT NULL,-- RFC 3339, UTC
      size      INTEGER, inodes INTEGER              -- usage, recorded at commit
    )

Why SQLite rather than a JSON file per snapshot: the operations check and change several
records at once (commit moves key -> name and needs the name free; remove needs "no children";
prepare needs "parent committed" while it inserts). One transaction does that atomically and
across processes; JSON files would need a lock file plus a rename protocol per change, and a
directory scan to find children. SQLite's COMMIT is the single point of no return, and it is
crash-safe against kill -9 (and, with synchronous=FULL, power loss). The store is its own
database, under its own root, as containerd's snapshotters keep theirs: snapshot ids mean
nothing outside it.

Crash protocol. Make: build `new-*` (flock held, inherited by `cp` in the copying snapshotter so
the lock lives as long as anyone writes there), then in one transaction insert the row, rename
the directory to <id>, fsync snapshots/, COMMIT. Remove: delete the row and COMMIT, then rename
<id> to `rm-*` and delete it. A kill at any point leaves either no row (and maybe `new-*`, or
an <id> dir no row names) or a row with its directory; `cleanup` deletes the directories no row
names, skipping `new-*` dirs whose maker still holds the lock.

Staged layers (overlay only; `stage` and `commit_staged`, what a pull uses to unpack layers in
parallel). `stage` hands out a `new-*` directory (flock held) whose `fs/` the caller fills
while the parent layer may still be unpacking elsewhere; `commit_staged` then makes it a
committed snapshot in one transaction: insert the committed row (with its usage), rename the
directory to <id>, fsync snapshots/, COMMIT. That is the make protocol above with the row born
committed, so the same argument holds: before COMMIT a kill leaves a `new-*` dir (removed by
`cleanup` once its lock died with the process) or an <id> dir no row names; after it, a
complete committed snapshot. An overlay layer dir does not depend on its parent's content
(whiteouts are recorded as device nodes, not applied), which is why it can be filled before
the parent exists; its root directory takes the parent's owner and mode at commit, as
`prepare` gives it.
`commit_staged_many` commits a stack of staged layers (each on the one before) in one
transaction and one fsync of snapshots/: all of the stack or none of it, as one layer.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar, Self

from pallet.errors import AlreadyExists, Conflict, InvalidArgument, NotFound, NotSupported
from pallet.image.content import fsync_dir
from pallet.image.snapshots import Info, Kind, Usage
from pallet.oci.mount import Mount

FORMAT_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshots (
  id        INTEGER PRIMARY KEY AUTOINCREMENT,
  name      TEXT NOT NULL UNIQUE,
  kind      TEXT NOT NULL CHECK (kind IN ('active', 'view', 'committed')),
  parent_id INTEGER REFERENCES snapshots(id),
  labels    TEXT NOT NULL DEFAULT '{}',
  created   TEXT NOT NULL,
  updated   TEXT NOT NULL,
  size      INTEGER,
  inodes    INTEGER
);
CREATE INDEX IF NOT EXISTS snapshots_parent ON snapshots(parent_id);
"""

Checkpoint = Callable[[str], None]


def _no_checkpoint(point: str) -> None:
    return None


@dataclass
class Staged:
    """A staging directory from `DirSnapshotter.stage`: fill `fs`, then commit or discard it.
    `lock_fd` holds the flock that keeps `cleanup` away; -1 once committed or discarded.
    `usage` is measured by `seal_staged` once `fs` is filled (in the filler's thread), or else
    by the commit."""

    path: Path
    fs: Path
    lock_fd: int
    usage: Usage | None = None


@dataclass(frozen=True)
class Row:
    id: int
    name: str
    kind: Kind
    parent_id: int | None
    labels: dict[str, str]
    created: str
    updated: str
    size: int | None
    inodes: int | None


class Metadata:
    """The `snapshots` table; all access under one lock, writes in `write()` transactions."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        # isolation_level=None: we issue BEGIN/COMMIT ourselves; the timeout waits out other
        # processes' write transactions instead of failing with "database is locked".
        self._conn = sqlite3.connect(str(path), timeout=60, isolation_level=None,
                                     check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        with self.write():
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                # One statement at a time: executescript() would COMMIT our transaction first.
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._conn.execute(statement)
                self._conn.execute(f"PRAGMA user_version = {FORMAT_VERSION}")
            elif version != FORMAT_VERSION:
                raise InvalidArgument(f"{path}: snapshot metadata format {version}, this Pallet "
                                      f"reads format {FORMAT_VERSION}")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        """One write transaction (BEGIN IMMEDIATE: take the write lock now, not at first write)."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            try:
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise

    _COLUMNS = "id, name, kind, parent_id, labels, created, updated, size, inodes"

    @staticmethod
    def _row(r: tuple) -> Row:
        return Row(r[0], r[1], Kind(r[2]), r[3], json.loads(r[4]), r[5], r[6], r[7], r[8])

    def get(self, name: str) -> Row | None:
        with self._lock:
            r = self._conn.execute(f"SELECT {self._COLUMNS} FROM snapshots WHERE name = ?",
                                   (name,)).fetchone()
        return self._row(r) if r else None

    def get_by_id(self, sid: int) -> Row | None:
        with self._lock:
            r = self._conn.execute(f"SELECT {self._COLUMNS} FROM snapshots WHERE id = ?",
                                   (sid,)).fetchone()
        return self._row(r) if r else None

    def chain(self, sid: int) -> list[Row]:
        """The snapshot `sid` and its ancestors, nearest first, in one consistent read."""
        query = f"""
            WITH RECURSIVE up(id, depth) AS (
              SELECT id, 0 FROM snapshots WHERE id = ?
              UNION ALL
              SELECT s.parent_id, up.depth + 1 FROM snapshots s JOIN up ON s.id = up.id
              WHERE s.parent_id IS NOT NULL
            )
            SELECT {', '.join('s.' + c.strip() for c in self._COLUMNS.split(','))}
            FROM up JOIN snapshots s ON s.id = up.id ORDER BY up.depth"""
        with self._lock:
            return [self._row(r) for r in self._conn.execute(query, (sid,))]

    def children(self, sid: int) -> list[str]:
        with self._lock:
            return [r[0] for r in self._conn.execute(
                "SELECT name FROM snapshots WHERE parent_id = ? ORDER BY id", (sid,))]

    def rows(self) -> list[Row]:
        with self._lock:
            return [self._row(r) for r in self._conn.execute(
                f"SELECT {self._COLUMNS} FROM snapshots ORDER BY id")]

    def ids(self) -> set[int]:
        with self._lock:
            return {r[0] for r in self._conn.execute("SELECT id FROM snapshots")}

    def insert(self, name: str, kind: Kind, parent_id: int | None, labels: Mapping[str, str],
               now: str) -> Row:
        with self._lock:
            cur = self._conn.execute(
                "INSERT INTO snapshots (name, kind, parent_id, labels, created, updated) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (name, kind.value, parent_id, json.dumps(dict(labels), sort_keys=True), now, now))
        row = self.get_by_id(cur.lastrowid or 0)
        assert row is not None
        return row

    def mark_committed(self, sid: int, name: str, labels: Mapping[str, str], usage: Usage,
                       now: str) -> None:
        with self._lock:
            self._conn.execute(
                "UPDATE snapshots SET kind = 'committed', name = ?, labels = ?, updated = ?, "
                "size = ?, inodes = ? WHERE id = ?",
                (name, json.dumps(dict(labels), sort_keys=True), now, usage.size, usage.inodes, sid))

    def delete(self, sid: int) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM snapshots WHERE id = ?", (sid,))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _check_name(what: str, name: object) -> str:
    if not isinstance(name, str) or not name:
        raise InvalidArgument(f"snapshot {what} must be a non-empty string, got {name!r}")
    if "\x00" in name:
        raise InvalidArgument(f"snapshot {what} {name!r} contains a NUL byte")
    return name


def _check_labels(labels: Mapping[str, str] | None) -> dict[str, str]:
    if labels is None:
        return {}
    if not isinstance(labels, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise InvalidArgument(f"snapshot labels must map str to str, got {labels!r}")
    return dict(labels)


def disk_usage(path: Path) -> Usage:
    """Allocated bytes (st_blocks * 512) and inodes under `path`, each hardlinked inode once.

    Like containerd's continuity fs.DiskUsage: what the tree costs on disk, not apparent sizes.
    """
    seen: set[tuple[int, int]] = set()
    size = 0

    def account(st: os.stat_result) -> None:
        nonlocal size
        ident = (st.st_dev, st.st_ino)
        if ident not in seen:
            seen.add(ident)
            size += st.st_blocks * 512

    account(os.lstat(path))
    stack = [str(path)]
    while stack:
        top = stack.pop()
        with os.scandir(top) as it:
            for entry in it:
                account(entry.stat(follow_symlinks=False))
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
    return Usage(size, len(seen))


def _rmtree(path: Path) -> None:
    """Delete a tree; a concurrent deleter (another cleanup) is not an error."""
    def onerror(func: object, p: str, exc: tuple) -> None:
        if not isinstance(exc[1], FileNotFoundError):
            raise exc[1]

    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, onerror=onerror)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


class DirSnapshotter:
    """The shared implementation of the Snapshotter protocol; subclasses say how a snapshot's
    directory is filled (`_populate`) and mounted (`_build_mounts`).

    `checkpoint(point)` is called at each step of the crash protocol ("prepare:staging",
    "prepare:populated", "prepare:inserted", "prepare:renamed", "prepare:committed", "view:...",
    "commit:updated", "commit:committed", "remove:deleted", "remove:committed",
    "remove:renamed"); crash tests pass one that kills the process there.
    """

    driver: ClassVar[str] = ""

    def __init__(self, root: Path | str, *, checkpoint: Checkpoint | None = None) -> None:
        self.root = Path(os.path.abspath(root))
        for bad in (":", ","):
            # overlayfs separates lower dirs with ':' and options with ','.
            if bad in str(self.root):
                raise InvalidArgument(f"snapshot root {self.root} must not contain {bad!r}")
        self.snapshots_dir = self.root / "snapshots"
        self.snapshots_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        self.checkpoint: Checkpoint = checkpoint or _no_checkpoint
        self._db = Metadata(self.root / "metadata.db")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what subclasses provide -------------------------------------------------------------
    def _populate(self, staging: Path, kind: Kind, chain: list[Row], lock_fd: int) -> None:
        raise NotImplementedError

    def _build_mounts(self, row: Row, chain: list[Row]) -> list[Mount]:
        raise NotImplementedError

    def _check_depth(self, depth: int) -> None:
        return None

    def _content_dir(self, row: Row, chain: list[Row]) -> Path:
        return self.fs_dir(row.id)

    # -- paths ----------------------------------------------------------------------------------
    def snapshot_dir(self, sid: int) -> Path:
        return self.snapshots_dir / str(sid)

    def fs_dir(self, sid: int) -> Path:
        return self.snapshots_dir / str(sid) / "fs"

    # -- the protocol -------------------------------------------------------------------------
    def prepare(self, key: str, parent: str | None = None,
                labels: Mapping[str, str] | None = None) -> list[Mount]:
        return self._create(Kind.ACTIVE, key, parent, labels)

    def view(self, key: str, parent: str | None = None,
             labels: Mapping[str, str] | None = None) -> list[Mount]:
        return self._create(Kind.VIEW, key, parent, labels)

    def mounts(self, key: str) -> list[Mount]:
        row = self._get(key)
        if row.kind == Kind.COMMITTED:
            raise Conflict(f"snapshot {key!r} is committed: it has no mounts of its own; "
                           "view or prepare on top of it")
        chain = self._db.chain(row.id)
        return self._build_mounts(row, chain[1:])

    def commit(self, name: str, key: str, labels: Mapping[str, str] | None = None) -> None:
        _check_name("name", name)
        new_labels = _check_labels(labels) if labels is not None else None
        row = self._get_active(key)
        if name != key and self._db.get(name) is not None:
            raise AlreadyExists(f"snapshot {name!r} already exists")
        # Usage is the size of the layer's own directory: O(size of the change), the same walk
        # the diff makes; the commit itself is one UPDATE (the directory is not touched).
        usage = disk_usage(self.fs_dir(row.id))
        with self._db.write():
            again = self._get_active(key)
            if again.id != row.id:
                raise Conflict(f"snapshot {key!r} changed while committing")
            if name != key and self._db.get(name) is not None:
                raise AlreadyExists(f"snapshot {name!r} already exists")
            self._db.mark_committed(row.id, name, row.labels if new_labels is None else new_labels,
                                    usage, _now())
            self.checkpoint("commit:updated")
        self.checkpoint("commit:committed")

    def remove(self, key: str) -> None:
        with self._db.write():
            row = self._get(key)
            children = self._db.children(row.id)
            if children:
                shown = ", ".join(repr(c) for c in children[:5])
                raise Conflict(f"snapshot {key!r} has {len(children)} child snapshot(s) ({shown}): "
                               "remove them first")
            self._db.delete(row.id)
            self.checkpoint("remove:deleted")
        self.checkpoint("remove:committed")
        self._discard(self.snapshot_dir(row.id))

    def stat(self, key: str) -> Info:
        return self._info(self._get(key))

    def walk(self) -> Iterator[Info]:
        rows = self._db.rows()
        names = {r.id: r.name for r in rows}
        for r in rows:
            yield self._info(r, names)

    def usage(self, key: str) -> Usage:
        row = self._get(key)
        if row.kind == Kind.COMMITTED and row.size is not None and row.inodes is not None:
            return Usage(row.size, row.inodes)
        return disk_usage(self.fs_dir(row.id))

    def upper_dir(self, key: str) -> Path:
        row = self._get(key)
        return self._content_dir(row, self._db.chain(row.id)[1:])

    def chain_dirs(self, name: str) -> list[Path]:
        """The content dirs of committed snapshot `name` and its ancestors, nearest first (the
        lower dirs of a layer applied on top of `name`), in one metadata read."""
        row = self._get(name)
        chain = self._db.chain(row.id)
        return [self._content_dir(r, chain[i + 1:]) for i, r in enumerate(chain)]

    def stage(self) -> Staged:
        """A fresh staging directory (`new-*`, our flock on it) whose `fs` the caller fills and
        then hands to `commit_staged` or `discard_staged` (see the module docstring)."""
        if self.driver != "overlay":
            raise NotSupported(f"the {self.driver} snapshotter cannot commit a staged layer: its "
                               "snapshots hold whole trees, not layers")
        path, lock_fd = self._make_staging()
        try:
            self.checkpoint("stage:staging")
            (path / "fs").mkdir(mode=0o755)
        except BaseException:
            with contextlib.suppress(OSError):
                _rmtree(self._rename_aside(path))
            os.close(lock_fd)
            raise
        return Staged(path, path / "fs", lock_fd)

    def seal_staged(self, staged: Staged) -> None:
        """The caller is done filling `staged.fs`: measure its usage now, in the caller's
        thread, rather than in `commit_staged_many` (a pull commits from one thread what
        several unpacked). Nothing may be written to `fs` afterwards."""
        staged.usage = disk_usage(staged.fs)

    def discard_staged(self, staged: Staged) -> None:
        """Remove a staged directory that was not committed (idempotent)."""
        if staged.lock_fd < 0:
            return
        with contextlib.suppress(FileNotFoundError):
            _rmtree(self._rename_aside(staged.path))
        os.close(staged.lock_fd)
        staged.lock_fd = -1

    def commit_staged(self, name: str, parent: str | None, staged: Staged,
                      labels: Mapping[str, str] | None = None) -> None:
        """Make the filled `staged.fs` the committed snapshot `name` on top of committed
        `parent`, in one transaction (module docstring). Raises AlreadyExists when `name` is
        taken (the staged dir stays, for the caller to discard), NotFound when `parent` went."""
        self.commit_staged_many([(name, parent, staged, labels)])

    def commit_staged_many(self, items: Sequence[tuple[str, str | None, Staged, Mapping[str, str] | None]],
                           *, skip_existing: bool = False) -> list[str]:
        """`commit_staged` for a stack of layers in one transaction and one directory fsync:
        (name, parent, staged, labels) bottom up, each parent committed already or named earlier
        in `items`. A taken name raises AlreadyExists (nothing is committed), or with
        `skip_existing` is left out (its staged dir stays for the caller to discard) and the
        ones above it go on top of the existing snapshot. Returns the names committed."""
        checked = []
        for name, _parent, staged, labels in items:
            _check_name("name", name)
            if staged.lock_fd < 0:
                raise InvalidArgument(f"staged directory {staged.path} was committed or discarded")
            checked.append(_check_labels(labels))
        usages = [staged.usage or disk_usage(staged.fs) for _, _, staged, _ in items]
        done: list[tuple[str, Staged]] = []
        moved: list[Path] = []
        # Parents committed earlier in this batch: (row, depth of the chain it ends), so that a
        # stack of n layers reads the chain once, not n times (n^2 rows for a 50-layer pull).
        known: dict[str, tuple[Row, int]] = {}
        try:
            with self._db.write():
                for (name, parent, staged, _), labels, usage in zip(items, checked, usages, strict=True):
                    if self._db.get(name) is not None:
                        if skip_existing:
                            continue
                        raise AlreadyExists(f"snapshot {name!r} already exists")
                    prow: Row | None
                    if parent is not None and parent in known:
                        prow, depth = known[parent]
                    else:
                        # Read in this transaction: a parent inserted just before is visible.
                        chain = self._parent_chain(parent)
                        prow, depth = (chain[0] if chain else None), len(chain)
                    self._check_depth(depth)
                    if prow is not None:
                        # An overlay layer's root takes the parent's attributes, as `prepare` gives it.
                        st = os.stat(self.fs_dir(prow.id))
                        os.chown(staged.fs, st.st_uid, st.st_gid)
                        os.chmod(staged.fs, st.st_mode & 0o7777)
                    now = _now()
                    parent_id = prow.id if prow is not None else None
                    row = self._db.insert(name, Kind.COMMITTED, parent_id, labels, now)
                    known[name] = (row, depth + 1)
                    self._db.mark_committed(row.id, name, labels, usage, now)
                    self.checkpoint("stage:inserted")
                    final = self.snapshot_dir(row.id)
                    if os.path.lexists(final):
                        _rmtree(self._rename_aside(final))  # see _create: a rolled-back id handed out again
                    os.rename(staged.path, final)
                    moved.append(final)
                    done.append((name, staged))
                if moved:
                    fsync_dir(self.snapshots_dir)
                self.checkpoint("stage:renamed")
        except BaseException:
            # Rolled back: the directories renamed into place belong to no row; take them away
            # now rather than leave them to `cleanup`.
            for path in moved:
                with contextlib.suppress(OSError):
                    _rmtree(self._rename_aside(path))
            for _, staged in done:
                os.close(staged.lock_fd)
                staged.lock_fd = -1
            raise
        for _, staged in done:
            os.close(staged.lock_fd)
            staged.lock_fd = -1
        self.checkpoint("stage:committed")
        return [name for name, _ in done]

    def cleanup(self) -> list[str]:
        removed: list[str] = []
        doomed: list[Path] = []
        with self._db.write():
            ids = self._db.ids()
            for entry in os.scandir(self.snapshots_dir):
                name = entry.name
                if name.isdigit() and str(int(name)) == name and int(name) in ids:
                    continue
                path = Path(entry.path)
                if name.startswith("rm-"):
                    doomed.append(path)
                elif name.startswith("new-") and entry.is_dir(follow_symlinks=False):
                    moved = self._claim_staging(path)
                    if moved is None:
                        continue  # its maker is alive and holds the lock
                    doomed.append(moved)
                else:
                    doomed.append(self._rename_aside(path))
                removed.append(name)
        for path in doomed:
            _rmtree(path)
        return sorted(removed)

    # -- helpers ----------------------------------------------------------------------------
    def _get(self, key: str) -> Row:
        _check_name("key", key)
        row = self._db.get(key)
        if row is None:
            raise NotFound(f"snapshot {key!r} not found")
        return row

    def _get_active(self, key: str) -> Row:
        row = self._get(key)
        if row.kind != Kind.ACTIVE:
            raise Conflict(f"snapshot {key!r} is {row.kind.value}: only an active snapshot can be "
                           "committed")
        return row

    def _info(self, row: Row, names: Mapping[int, str] | None = None) -> Info:
        parent = None
        if row.parent_id is not None:
            if names is not None:
                parent = names[row.parent_id]
            else:
                prow = self._db.get_by_id(row.parent_id)
                parent = prow.name if prow else None
        return Info(row.kind, row.name, parent, dict(row.labels),
                    datetime.fromisoformat(row.created), datetime.fromisoformat(row.updated))

    def _create(self, kind: Kind, key: str, parent: str | None,
                labels: Mapping[str, str] | None) -> list[Mount]:
        op = "prepare" if kind == Kind.ACTIVE else "view"
        _check_name("key", key)
        checked = _check_labels(labels)
        chain = self._parent_chain(parent)
        self._check_depth(len(chain))
        if self._db.get(key) is not None:
            raise AlreadyExists(f"snapshot {key!r} already exists")
        staging, lock_fd = self._make_staging()
        final: Path | None = None
        done = False
        try:
            self.checkpoint(f"{op}:staging")
            self._populate(staging, kind, chain, lock_fd)
            self.checkpoint(f"{op}:populated")
            with self._db.write():
                # Checked again under the write lock: the world moves while we copy.
                if self._db.get(key) is not None:
                    raise AlreadyExists(f"snapshot {key!r} already exists")
                if chain:
                    now_parent = self._db.get_by_id(chain[0].id)
                    if now_parent is None or now_parent.kind != Kind.COMMITTED:
                        raise NotFound(f"parent snapshot {parent!r} was removed")
                row = self._db.insert(key, kind, chain[0].id if chain else None, checked, _now())
                self.checkpoint(f"{op}:inserted")
                final = self.snapshot_dir(row.id)
                if os.path.lexists(final):
                    # A directory no row names: a crash between rename and COMMIT under the
                    # same id (the rolled-back AUTOINCREMENT hands it out again).
                    _rmtree(self._rename_aside(final))
                os.rename(staging, final)
                fsync_dir(self.snapshots_dir)
                self.checkpoint(f"{op}:renamed")
            done = True
            self.checkpoint(f"{op}:committed")
        finally:
            if not done:
                leftover = final if final is not None and final.exists() else staging
                with contextlib.suppress(OSError):
                    _rmtree(self._rename_aside(leftover))
            os.close(lock_fd)
        return self._build_mounts(row, chain)

    def _parent_chain(self, parent: str | None) -> list[Row]:
        if parent is None:
            return []
        _check_name("parent", parent)
        prow = self._db.get(parent)
        if prow is None:
            raise NotFound(f"parent snapshot {parent!r} not found")
        if prow.kind != Kind.COMMITTED:
            raise InvalidArgument(f"parent snapshot {parent!r} is {prow.kind.value}, not committed")
        return self._db.chain(prow.id)

    def _make_staging(self) -> tuple[Path, int]:
        """A fresh `new-*` directory with our flock on it (see `cleanup` for the other side)."""
        while True:
            path = Path(tempfile.mkdtemp(prefix="new-", dir=self.snapshots_dir))
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return path, fd
            os.close(fd)  # a concurrent cleanup took it before we locked it: make another

    def _claim_staging(self, path: Path) -> Path | None:
        """Move an abandoned `new-*` dir aside; None if its maker still holds the lock."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return None
            return self._rename_aside(path)
        finally:
            os.close(fd)

    def _rename_aside(self, path: Path) -> Path:
        aside = self.snapshots_dir / f"rm-{os.urandom(8).hex()}"
        os.rename(path, aside)
        return aside

    def _discard(self, path: Path) -> None:
        try:
            aside = self._rename_aside(path)
        except FileNotFoundError:
            return
        self.checkpoint("remove:renamed")
        _rmtree(aside)
