"""The build cache: which image a build step made from a given parent and inputs, and cache mounts.

On disk, under `<data-root>/build/` (format version 1):

    cache.db                      SQLite, user_version = 1:
        steps(key TEXT PRIMARY KEY, image_id TEXT, created_by TEXT, created REAL, last_used REAL)
        mounts(id TEXT PRIMARY KEY, dir TEXT, created REAL, last_used REAL)
    cache-mounts/<sha256(id)[:32]>/   the persistent directory of `RUN --mount=type=cache,id=<id>`

A step's key is sha256 over its parent image id, the step's `created_by` text (which for
COPY/ADD carries the sha256 of the copied files' contents and modes, never their mtimes, and
for RUN the command with the build args in effect) and extra inputs (RUN mounts, network, the
SOURCE_DATE_EPOCH). The image a step made is an ordinary image in the store (untagged, with its
parent link): the cache only maps keys to ids, so it survives daemon restarts and serves any
Dockerfile that shares a prefix. An entry whose image is gone is a miss and is dropped.

An entry is written only once its image exists (after the step succeeded), so an interrupted
build leaves no entry behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pallet.errors import InvalidArgument, NotFound

VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS steps(key TEXT PRIMARY KEY, image_id TEXT NOT NULL, created_by TEXT,
                                 created REAL, last_used REAL);
CREATE TABLE IF NOT EXISTS mounts(id TEXT PRIMARY KEY, dir TEXT NOT NULL, created REAL, last_used REAL);
"""


def step_key(parent: str, created_by: str, *extra: str) -> str:
    h = hashlib.sha256()
    for part in (parent, created_by, *extra):
        h.update(part.encode("utf-8", "surrogateescape"))
        h.update(b"\0")
    return h.hexdigest()


def dir_size(path: str | os.PathLike[str]) -> int:
    total = 0
    for root, dirs, files in os.walk(path):
        for name in files + dirs:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


class BuildCache:
    """The cache under `<data-root>/build`; thread-safe (one SQLite connection per thread)."""

    def __init__(self, data_root: str | os.PathLike[str]) -> None:
        self.root = Path(data_root) / "build"
        self.mounts_dir = self.root / "cache-mounts"
        self.mounts_dir.mkdir(parents=True, exist_ok=True)
        self.tmp = self.root / "tmp"
        self.tmp.mkdir(exist_ok=True)
        self._local = threading.local()
        self._mount_locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        db = self._db()
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, VERSION):
            raise InvalidArgument(f"{self.root / 'cache.db'}: format version {version}, this Pallet "
                                  f"reads {VERSION}")
        with db:
            db.executescript(_SCHEMA)
            db.execute(f"PRAGMA user_version = {VERSION}")

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.root / "cache.db", timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            self._local.db = db
        return db

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    # --- steps ------------------------------------------------------------------------------

    def get(self, key: str) -> str | None:
        row = self._db().execute("SELECT image_id FROM steps WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        self._db().execute("UPDATE steps SET last_used = ? WHERE key = ?", (time.time(), key))
        return str(row[0])

    def put(self, key: str, image_id: str, created_by: str) -> None:
        now = time.time()
        self._db().execute("INSERT OR REPLACE INTO steps VALUES (?, ?, ?, ?, ?)",
                           (key, image_id, created_by, now, now))

    def forget(self, key: str) -> None:
        self._db().execute("DELETE FROM steps WHERE key = ?", (key,))

    def steps(self) -> list[tuple[str, str, str, float]]:
        """(key, image id, created_by, last used) of every entry."""
        return [(str(k), str(i), str(c or ""), float(t or 0)) for k, i, c, t in
                self._db().execute("SELECT key, image_id, created_by, last_used FROM steps")]

    # --- cache mounts -------------------------------------------------------------------------

    @staticmethod
    def _check_id(mount_id: str) -> None:
        if not mount_id or "\0" in mount_id or len(mount_id) > 1024:
            raise InvalidArgument(f"invalid cache mount id {mount_id!r}")

    def mount_dir(self, mount_id: str, *, create: bool = True, uid: int | None = None,
                  gid: int | None = None, mode: int = 0o755) -> Path:
        """The persistent directory of cache mount `mount_id`, made on first use with `mode` and
        owned by uid:gid when given (RUN --mount=type=cache,uid=,gid=,mode=)."""
        self._check_id(mount_id)
        path = self.mounts_dir / hashlib.sha256(mount_id.encode()).hexdigest()[:32]
        db = self._db()
        row = db.execute("SELECT dir FROM mounts WHERE id = ?", (mount_id,)).fetchone()
        now = time.time()
        if row is None:
            if not create:
                raise NotFound(f"no cache mount with id {mount_id!r}")
            if not path.is_dir():
                staging = self.tmp / f"mount-{os.urandom(6).hex()}"
                staging.mkdir(mode=mode)
                if uid is not None or gid is not None:
                    os.chown(staging, -1 if uid is None else uid, -1 if gid is None else gid)
                os.chmod(staging, mode)
                try:
                    staging.rename(path)
                except OSError:
                    shutil.rmtree(staging, ignore_errors=True)
            db.execute("INSERT OR IGNORE INTO mounts VALUES (?, ?, ?, ?)", (mount_id, path.name, now, now))
        else:
            db.execute("UPDATE mounts SET last_used = ? WHERE id = ?", (now, mount_id))
        return path

    def mount_lock(self, mount_id: str) -> threading.Lock:
        """`sharing=locked`: one build step at a time uses the directory (in this daemon)."""
        with self._guard:
            return self._mount_locks.setdefault(mount_id, threading.Lock())

    def mounts(self) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        for mid, d, created, used in self._db().execute("SELECT id, dir, created, last_used FROM mounts"):
            path = self.mounts_dir / d
            out.append({"ID": mid, "Path": str(path), "Size": dir_size(path) if path.is_dir() else 0,
                        "CreatedAt": created, "LastUsedAt": used})
        return out

    def remove_mount(self, mount_id: str) -> int:
        """Delete cache mount `mount_id`; returns the bytes freed (NotFound if unknown)."""
        row = self._db().execute("SELECT dir FROM mounts WHERE id = ?", (mount_id,)).fetchone()
        if row is None:
            raise NotFound(f"no cache mount with id {mount_id!r}")
        path = self.mounts_dir / str(row[0])
        size = dir_size(path) if path.is_dir() else 0
        self._db().execute("DELETE FROM mounts WHERE id = ?", (mount_id,))
        # Rename first so that a crash mid-delete leaves no half-emptied mount under its name.
        doomed = self.tmp / f"doomed-{os.urandom(6).hex()}"
        with contextlib.suppress(FileNotFoundError):
            path.rename(doomed)
        shutil.rmtree(doomed, ignore_errors=True)
        return size

    def export_mount(self, mount_id: str, out: object) -> None:
        """The cache mount's tree as an uncompressed tar written to `out`."""
        from pallet.image.layers import write_tree

        path = self.mount_dir(mount_id, create=False)
        write_tree(str(path), out, compression="none")  # type: ignore[arg-type]

    def import_mount(self, mount_id: str, stream: object) -> None:
        """Replace the cache mount's content with a tar (plain or compressed) read from `stream`:
        unpacked aside, then swapped in, so a bad archive leaves the old content."""
        from pallet.image.layers import apply_layer, decompress_layer

        self._check_id(mount_id)
        staging = self.tmp / f"import-{os.urandom(6).hex()}"
        staging.mkdir(mode=0o755)
        try:
            apply_layer(decompress_layer(stream), str(staging), overlay_whiteouts=False)  # type: ignore[arg-type]
            path = self.mount_dir(mount_id)
            with self.mount_lock(mount_id):
                old = self.tmp / f"doomed-{os.urandom(6).hex()}"
                path.rename(old)
                staging.rename(path)
                shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def prune(self, images: Any, *, all: bool = False) -> tuple[list[str], int]:
        """`docker builder prune`: delete every cache mount and the step entries (with their
        untagged images) that no named image builds on; with `all`, forget every entry (images
        that named images build on stay: they are those images' parents). Then collect the
        store's garbage. Returns (deleted ids, bytes reclaimed)."""
        from pallet.errors import Conflict
        from pallet.image.gc import GarbageCollector
        from pallet.image.service import LABEL_PARENT

        deleted: list[str] = []
        space = 0
        for m in self.mounts():
            with contextlib.suppress(NotFound):
                space += self.remove_mount(str(m["ID"]))
                deleted.append(f"cachemount:{m['ID']}")
        records = {str(r.id): r for r in images.meta.images()}
        keep: set[str] = set()
        for rid in records:
            if images.meta.names(rid) or any(c.image_id == rid for c in images.meta.containers()):
                cur: str | None = rid
                while cur and cur in records and cur not in keep:
                    keep.add(cur)
                    cur = records[cur].labels.get(LABEL_PARENT)
        doomed_images: set[str] = set()
        for key, image_id, _, _ in self.steps():
            if image_id not in records:
                self.forget(key)
                deleted.append(key[:25])
            elif image_id not in keep:
                doomed_images.add(image_id)
                self.forget(key)
                deleted.append(key[:25])
            elif all:
                self.forget(key)
                deleted.append(key[:25])
        progress = True
        while doomed_images and progress:  # children first: a parent goes once its children went
            progress = False
            for image_id in sorted(doomed_images):
                try:
                    images.remove(image_id, prune=False)
                except (Conflict, NotFound):
                    continue
                doomed_images.discard(image_id)
                progress = True
        gc = GarbageCollector(images.content, images.meta, images.snapshots, data_root=images.root)
        space += gc.collect().bytes_freed
        return deleted, space

    @contextlib.contextmanager
    def using_mount(self, mount_id: str, sharing: str) -> Iterator[None]:
        if sharing == "locked":
            with self.mount_lock(mount_id):
                yield
        else:
            yield


__all__ = ["VERSION", "BuildCache", "dir_size", "step_key"]
