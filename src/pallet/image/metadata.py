"""Image metadata in SQLite: images, their names, leases, and the snapshot and container references gc needs.

On-disk format: one SQLite database (the daemon's `<data-root>/metadata.db`) in WAL mode, schema
version 1 (`SCHEMA_VERSION`, recorded in the `schema_version` table; `MIGRATIONS[n]` takes a
database from version n to n+1, each in one transaction; a version 1 database is migrated in
place when it is opened). Tables, version 2:

    images(id PK = config digest, manifest_digest, media_type, created, labels JSON, size,
           last_used NULL)       last_used: when a container was last made from it (v2)
    names(name PK = normalized reference "docker.io/library/busybox:latest" or "...@sha256:...",
          image_id -> images.id, manifest_digest, updated)
    leases(id PK, created, expires NULL, labels JSON)
    lease_resources(lease_id -> leases.id ON DELETE CASCADE, kind, key)   kind: content|snapshot|ingest
    snapshots(key PK, name UNIQUE NULL, parent NULL, kind, created, labels JSON)
        vocabulary (STYLE.md §5): `key` names an active snapshot, `name` a committed one,
        `parent` is the committed name it was made from; kind: active|committed|view
    containers(id PK, snapshot_key, image_id NULL, created, labels JSON)

Times are RFC 3339 UTC strings. Every mutation runs in one `BEGIN IMMEDIATE` transaction, so a
kill -9 leaves the database as it was before or after it (SQLite's journal guarantees it); the
connection uses `synchronous=FULL` so a committed change also survives power loss.
Thread safety: one connection per thread (`threading.local`; it closes when its thread ends, so a
renewed worker pool leaves no connection behind), WAL readers do not block the writer,
and `busy_timeout` makes concurrent writers wait instead of failing.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import sqlite3
import threading
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pallet.errors import AlreadyExists, Conflict, InvalidArgument, NotFound, NotSupported
from pallet.oci.digest import Digest
from pallet.oci.reference import parse_normalized

SCHEMA_VERSION = 2
BUSY_TIMEOUT_MS = 10_000

SNAPSHOT_KINDS = ("active", "committed", "view")
LEASE_RESOURCE_KINDS = ("content", "snapshot", "ingest")

MIGRATIONS: dict[int, list[str]] = {
    0: [
        """CREATE TABLE images (
            id TEXT PRIMARY KEY,
            manifest_digest TEXT NOT NULL,
            media_type TEXT NOT NULL,
            created TEXT NOT NULL,
            labels TEXT NOT NULL DEFAULT '{}',
            size INTEGER NOT NULL DEFAULT 0
        )""",
        """CREATE TABLE names (
            name TEXT PRIMARY KEY,
            image_id TEXT NOT NULL REFERENCES images(id) ON DELETE RESTRICT,
            manifest_digest TEXT NOT NULL,
            updated TEXT NOT NULL
        )""",
        "CREATE INDEX names_image ON names(image_id)",
        """CREATE TABLE leases (
            id TEXT PRIMARY KEY,
            created TEXT NOT NULL,
            expires TEXT,
            labels TEXT NOT NULL DEFAULT '{}'
        )""",
        """CREATE TABLE lease_resources (
            lease_id TEXT NOT NULL REFERENCES leases(id) ON DELETE CASCADE,
            kind TEXT NOT NULL CHECK (kind IN ('content', 'snapshot', 'ingest')),
            key TEXT NOT NULL,
            PRIMARY KEY (lease_id, kind, key)
        )""",
        """CREATE TABLE snapshots (
            key TEXT PRIMARY KEY,
            name TEXT UNIQUE,
            parent TEXT,
            kind TEXT NOT NULL CHECK (kind IN ('active', 'committed', 'view')),
            created TEXT NOT NULL,
            labels TEXT NOT NULL DEFAULT '{}'
        )""",
        "CREATE INDEX snapshots_parent ON snapshots(parent)",
        """CREATE TABLE containers (
            id TEXT PRIMARY KEY,
            snapshot_key TEXT NOT NULL,
            image_id TEXT,
            created TEXT NOT NULL,
            labels TEXT NOT NULL DEFAULT '{}'
        )""",
        "CREATE INDEX containers_image ON containers(image_id)",
    ],
    # v2: when an image was last used, for gc.enforce_watermark's least-recently-used order.
    # NULL until a container is made from it (gc then falls back to `created`).
    1: ["ALTER TABLE images ADD COLUMN last_used TEXT"],
}


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _labels(value: Mapping[str, str] | None) -> str:
    labels = dict(value or {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise InvalidArgument("labels: keys and values must be strings")
    return json.dumps(labels, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class ImageRecord:
    """An image: `id` is its config digest (Docker's image ID)."""

    id: Digest
    manifest_digest: Digest
    media_type: str
    created: str
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    size: int = 0
    last_used: str | None = None


@dataclass(frozen=True)
class NameRecord:
    """A normalized reference pointing at an image (through the manifest it was resolved to)."""

    name: str
    image_id: Digest
    manifest_digest: Digest
    updated: str


@dataclass(frozen=True)
class Lease:
    """Protects resources from gc while an operation (pull, build, commit) is under way."""

    id: str
    created: str
    expires: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class SnapshotRecord:
    key: str
    kind: str
    name: str | None = None
    parent: str | None = None
    created: str = ""
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class ContainerRecord:
    id: str
    snapshot_key: str
    image_id: Digest | None = None
    created: str = ""
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class GcRoots:
    """What garbage collection must keep, as found in the metadata at one instant."""

    manifests: frozenset[Digest]
    images: frozenset[Digest]
    snapshots: frozenset[str]
    content: frozenset[str]
    ingests: frozenset[str]


def check_name(name: str) -> str:
    """A name must already be in its normalized full form (`docker.io/library/busybox:latest`)."""
    ref = parse_normalized(name, default_tag=False)
    if ref.string() != name or (ref.tag is None and ref.digest is None):
        raise InvalidArgument(f"image name {name!r} is not a normalized reference "
                              f"(expected e.g. {parse_normalized(name).string()!r})")
    return name


class _Connection(sqlite3.Connection):
    """A connection that can be weakly referenced (sqlite3.Connection itself cannot)."""


class MetadataStore:
    """The metadata database at `path`. Methods may be called from any thread."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._all: weakref.WeakSet[sqlite3.Connection] = weakref.WeakSet()
        self._all_lock = threading.Lock()
        self._migrate()

    # --- connections and transactions ---------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            # isolation_level=None: no implicit transactions; _tx() issues BEGIN IMMEDIATE itself.
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000,
                                   check_same_thread=False, factory=_Connection)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            self._local.conn = conn
            with self._all_lock:
                self._all.add(conn)
        return conn

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back already
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        with self._all_lock:
            for conn in list(self._all):
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._all.clear()
        self._local = threading.local()

    def _migrate(self) -> None:
        with self._tx() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT version FROM schema_version").fetchone()
            if row is None:
                conn.execute("INSERT INTO schema_version (version) VALUES (0)")
                version = 0
            else:
                version = row[0]
        if version > SCHEMA_VERSION:
            raise NotSupported(f"{self.path}: metadata schema {version} is newer than this Pallet "
                               f"knows ({SCHEMA_VERSION})")
        while version < SCHEMA_VERSION:
            with self._tx() as conn:
                # Re-read under the write lock: another process may have migrated meanwhile.
                current = conn.execute("SELECT version FROM schema_version").fetchone()[0]
                if current == version:
                    for statement in MIGRATIONS[version]:
                        conn.execute(statement)
                    conn.execute("UPDATE schema_version SET version = ?", (version + 1,))
                    current = version + 1
            version = current

    def schema_version(self) -> int:
        return int(self._conn().execute("SELECT version FROM schema_version").fetchone()[0])

    # --- images ------------------------------------------------------------------------------

    @staticmethod
    def _image(row: sqlite3.Row) -> ImageRecord:
        return ImageRecord(Digest(row["id"]), Digest(row["manifest_digest"]), row["media_type"],
                           row["created"], json.loads(row["labels"]), row["size"], row["last_used"])

    @staticmethod
    def _image_params(image: ImageRecord) -> tuple[str, str, str, str, str, int, str | None]:
        return (str(Digest(image.id)), str(Digest(image.manifest_digest)), image.media_type,
                image.created, _labels(image.labels), image.size, image.last_used)

    # An update keeps last_used unless the record brings one (a re-import is not a use).
    _PUT_IMAGE = (
        "INSERT INTO images (id, manifest_digest, media_type, created, labels, size, last_used) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
        "manifest_digest = excluded.manifest_digest, media_type = excluded.media_type, "
        "created = excluded.created, labels = excluded.labels, size = excluded.size, "
        "last_used = coalesce(excluded.last_used, images.last_used)")

    def put_image(self, image: ImageRecord) -> None:
        """Insert or update an image (idempotent)."""
        params = self._image_params(image)
        with self._tx() as conn:
            conn.execute(self._PUT_IMAGE, params)

    def put_images_and_names(self, images: Sequence[ImageRecord],
                             names: Sequence[tuple[str, str, str]]) -> list[NameRecord | None]:
        """Record `images` (inserted when absent; an image already recorded is left as it is)
        and point each (name, image_id, manifest_digest) of `names` at its image, all in one
        transaction: after a crash either every record and name is there or none is. The
        checks are set_name's (normalized names, known image ids, including the ones added
        here). Returns, per name, what it named before (None if nothing)."""
        image_params = [self._image_params(i) for i in images]
        checked = [(check_name(n), str(Digest(i)), str(Digest(m))) for n, i, m in names]
        if len({n for n, _, _ in checked}) != len(checked):
            raise InvalidArgument("put_images_and_names: a name is given twice")
        previous: list[NameRecord | None] = []
        with self._tx() as conn:
            for params in image_params:
                conn.execute(
                    "INSERT INTO images (id, manifest_digest, media_type, created, labels, size, "
                    "last_used) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO NOTHING", params)
            for name, image_id, manifest_digest in checked:
                previous.append(self._put_name(conn, name, image_id, manifest_digest))
        return previous

    def touch_image(self, image_id: str, when: str | None = None) -> None:
        """Record that the image was used (a container was made from it) at `when` (now)."""
        image_id = str(Digest(image_id))
        with self._tx() as conn:
            if conn.execute("UPDATE images SET last_used = ? WHERE id = ?",
                            (when or now_rfc3339(), image_id)).rowcount == 0:
                raise NotFound(f"no such image: {image_id}")

    def get_image(self, image_id: str) -> ImageRecord:
        row = self._conn().execute("SELECT * FROM images WHERE id = ?", (str(Digest(image_id)),)).fetchone()
        if row is None:
            raise NotFound(f"no such image: {image_id}")
        return self._image(row)

    def images(self) -> list[ImageRecord]:
        return [self._image(r) for r in self._conn().execute("SELECT * FROM images ORDER BY created, id")]

    def find_image_ids(self, prefix: str) -> list[Digest]:
        """Image ids starting with `prefix` (hex, with or without "sha256:"), for short ids."""
        hex_part = prefix.removeprefix("sha256:")
        if not hex_part or not all(c in "0123456789abcdef" for c in hex_part):
            return []
        rows = self._conn().execute("SELECT id FROM images WHERE id >= ? AND id < ? ORDER BY id",
                                    (f"sha256:{hex_part}", f"sha256:{hex_part}\x7f"))
        return [Digest(r[0]) for r in rows]

    def delete_image(self, image_id: str, *, force: bool = False) -> list[str]:
        """Delete an image. Refused (Conflict) while names or containers refer to it, unless
        `force`, which removes its names too (containers keep a dangling image id, as in
        Docker). Returns the names removed."""
        image_id = str(Digest(image_id))
        with self._tx() as conn:
            if conn.execute("SELECT 1 FROM images WHERE id = ?", (image_id,)).fetchone() is None:
                raise NotFound(f"no such image: {image_id}")
            names = [r[0] for r in conn.execute("SELECT name FROM names WHERE image_id = ? ORDER BY name",
                                                (image_id,))]
            users = [r[0] for r in conn.execute("SELECT id FROM containers WHERE image_id = ?",
                                                (image_id,))]
            if not force and (names or users):
                what = f"names {names}" if names else f"containers {users}"
                raise Conflict(f"image {image_id} is referenced by {what}")
            conn.execute("DELETE FROM names WHERE image_id = ?", (image_id,))
            conn.execute("DELETE FROM images WHERE id = ?", (image_id,))
        return names

    # --- names -------------------------------------------------------------------------------

    @staticmethod
    def _name(row: sqlite3.Row) -> NameRecord:
        return NameRecord(row["name"], Digest(row["image_id"]), Digest(row["manifest_digest"]),
                          row["updated"])

    def set_name(self, name: str, image_id: str, manifest_digest: str) -> NameRecord | None:
        """Point `name` (a normalized reference) at an image; returns what it named before."""
        check_name(name)
        image_id, manifest_digest = str(Digest(image_id)), str(Digest(manifest_digest))
        with self._tx() as conn:
            return self._put_name(conn, name, image_id, manifest_digest)

    def _put_name(self, conn: sqlite3.Connection, name: str, image_id: str,
                  manifest_digest: str) -> NameRecord | None:
        """set_name's work inside the caller's transaction (arguments already checked)."""
        if conn.execute("SELECT 1 FROM images WHERE id = ?", (image_id,)).fetchone() is None:
            raise NotFound(f"no such image: {image_id}")
        old = conn.execute("SELECT * FROM names WHERE name = ?", (name,)).fetchone()
        conn.execute(
            "INSERT INTO names (name, image_id, manifest_digest, updated) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(name) DO UPDATE SET image_id = excluded.image_id, "
            "manifest_digest = excluded.manifest_digest, updated = excluded.updated",
            (name, image_id, manifest_digest, now_rfc3339()))
        return None if old is None else self._name(old)

    def get_name(self, name: str) -> NameRecord:
        row = self._conn().execute("SELECT * FROM names WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"no such image: {name}")
        return self._name(row)

    def lookup(self, reference: str) -> NameRecord:
        """Resolve what a user typed (`busybox`, `a/b:t`, `x@sha256:...`) to its name record."""
        return self.get_name(parse_normalized(reference).string())

    def names(self, image_id: str | None = None) -> list[NameRecord]:
        if image_id is None:
            rows = self._conn().execute("SELECT * FROM names ORDER BY name")
        else:
            rows = self._conn().execute("SELECT * FROM names WHERE image_id = ? ORDER BY name",
                                        (str(Digest(image_id)),))
        return [self._name(r) for r in rows]

    def delete_name(self, name: str) -> NameRecord:
        with self._tx() as conn:
            row = conn.execute("SELECT * FROM names WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise NotFound(f"no such image: {name}")
            conn.execute("DELETE FROM names WHERE name = ?", (name,))
        return self._name(row)

    # --- leases ------------------------------------------------------------------------------

    @staticmethod
    def _lease(row: sqlite3.Row) -> Lease:
        return Lease(row["id"], row["created"], row["expires"], json.loads(row["labels"]))

    def create_lease(self, lease_id: str | None = None, *, expires: str | None = None,
                     labels: Mapping[str, str] | None = None,
                     resources: Iterable[tuple[str, str]] = ()) -> Lease:
        """A new lease, holding `resources` ((kind, key) pairs, as `add_lease_resources`) from
        the same transaction on (a pull makes its lease and names what it holds in one)."""
        lease_id = lease_id or f"lease-{secrets.token_hex(12)}"
        lease = Lease(lease_id, now_rfc3339(), expires, dict(labels or {}))
        rows = self._resource_rows(lease_id, resources)
        with self._tx() as conn:
            try:
                conn.execute("INSERT INTO leases (id, created, expires, labels) VALUES (?, ?, ?, ?)",
                             (lease.id, lease.created, expires, _labels(labels)))
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"lease {lease_id} exists already") from None
            conn.executemany("INSERT OR IGNORE INTO lease_resources (lease_id, kind, key) VALUES (?, ?, ?)",
                             rows)
        return lease

    def leases(self) -> list[Lease]:
        return [self._lease(r) for r in self._conn().execute("SELECT * FROM leases ORDER BY created, id")]

    def delete_lease(self, lease_id: str) -> None:
        """Delete a lease and its resource list (they become collectable)."""
        with self._tx() as conn:
            if conn.execute("DELETE FROM leases WHERE id = ?", (lease_id,)).rowcount == 0:
                raise NotFound(f"no such lease: {lease_id}")

    def add_lease_resource(self, lease_id: str, kind: str, key: str) -> None:
        """Protect a resource (idempotent). kind: content (a digest), snapshot (a key), ingest (a ref)."""
        if kind not in LEASE_RESOURCE_KINDS:
            raise InvalidArgument(f"lease resource kind {kind!r}: expected one of {LEASE_RESOURCE_KINDS}")
        if kind == "content":
            key = str(Digest(key))
        with self._tx() as conn:
            if conn.execute("SELECT 1 FROM leases WHERE id = ?", (lease_id,)).fetchone() is None:
                raise NotFound(f"no such lease: {lease_id}")
            conn.execute("INSERT OR IGNORE INTO lease_resources (lease_id, kind, key) VALUES (?, ?, ?)",
                         (lease_id, kind, key))

    def add_lease_resources(self, lease_id: str, items: Iterable[tuple[str, str]]) -> None:
        """`add_lease_resource` for many (kind, key) pairs in one transaction."""
        rows = self._resource_rows(lease_id, items)
        with self._tx() as conn:
            if conn.execute("SELECT 1 FROM leases WHERE id = ?", (lease_id,)).fetchone() is None:
                raise NotFound(f"no such lease: {lease_id}")
            conn.executemany("INSERT OR IGNORE INTO lease_resources (lease_id, kind, key) VALUES (?, ?, ?)",
                             rows)

    @staticmethod
    def _resource_rows(lease_id: str, items: Iterable[tuple[str, str]]) -> list[tuple[str, str, str]]:
        rows: list[tuple[str, str, str]] = []
        for kind, key in items:
            if kind not in LEASE_RESOURCE_KINDS:
                raise InvalidArgument(f"lease resource kind {kind!r}: expected one of {LEASE_RESOURCE_KINDS}")
            rows.append((lease_id, kind, str(Digest(key)) if kind == "content" else key))
        return rows

    def remove_lease_resource(self, lease_id: str, kind: str, key: str) -> None:
        with self._tx() as conn:
            conn.execute("DELETE FROM lease_resources WHERE lease_id = ? AND kind = ? AND key = ?",
                         (lease_id, kind, key))

    def lease_resources(self, lease_id: str | None = None) -> list[tuple[str, str, str]]:
        """(lease_id, kind, key) rows, of one lease or of all."""
        if lease_id is None:
            rows = self._conn().execute("SELECT lease_id, kind, key FROM lease_resources ORDER BY 1, 2, 3")
        else:
            rows = self._conn().execute("SELECT lease_id, kind, key FROM lease_resources WHERE lease_id = ? "
                                        "ORDER BY 2, 3", (lease_id,))
        return [(r[0], r[1], r[2]) for r in rows]

    def expire_leases(self, now: str | None = None) -> list[str]:
        """Delete leases whose `expires` is past; returns their ids."""
        now = now or now_rfc3339()
        with self._tx() as conn:
            ids = [r[0] for r in conn.execute(
                "SELECT id FROM leases WHERE expires IS NOT NULL AND expires <= ? ORDER BY id", (now,))]
            conn.executemany("DELETE FROM leases WHERE id = ?", [(i,) for i in ids])
        return ids

    # --- snapshots ---------------------------------------------------------------------------

    @staticmethod
    def _snapshot(row: sqlite3.Row) -> SnapshotRecord:
        return SnapshotRecord(row["key"], row["kind"], row["name"], row["parent"], row["created"],
                              json.loads(row["labels"]))

    def add_snapshot(self, key: str, kind: str, *, parent: str | None = None, name: str | None = None,
                     labels: Mapping[str, str] | None = None) -> SnapshotRecord:
        """Record a snapshot. `parent` must be a committed snapshot's name. AlreadyExists on a
        duplicate key or name."""
        if kind not in SNAPSHOT_KINDS:
            raise InvalidArgument(f"snapshot kind {kind!r}: expected one of {SNAPSHOT_KINDS}")
        if kind == "committed" and name is None:
            raise InvalidArgument("a committed snapshot needs a name")
        record = SnapshotRecord(key, kind, name, parent, now_rfc3339(), dict(labels or {}))
        with self._tx() as conn:
            if parent is not None and conn.execute(
                    "SELECT 1 FROM snapshots WHERE name = ? AND kind = 'committed'",
                    (parent,)).fetchone() is None:
                raise NotFound(f"parent snapshot {parent!r} is not a committed snapshot")
            try:
                conn.execute("INSERT INTO snapshots (key, name, parent, kind, created, labels) "
                             "VALUES (?, ?, ?, ?, ?, ?)",
                             (key, name, parent, kind, record.created, _labels(labels)))
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"snapshot {key!r} (name {name!r}) exists already") from None
        return record

    def commit_snapshot(self, key: str, name: str) -> SnapshotRecord:
        """Mark the active snapshot `key` committed under `name`."""
        with self._tx() as conn:
            row = conn.execute("SELECT * FROM snapshots WHERE key = ?", (key,)).fetchone()
            if row is None:
                raise NotFound(f"no such snapshot: {key}")
            if row["kind"] != "active":
                raise Conflict(f"snapshot {key} is {row['kind']}, not active")
            try:
                conn.execute("UPDATE snapshots SET kind = 'committed', name = ? WHERE key = ?", (name, key))
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"a snapshot named {name!r} exists already") from None
            row = conn.execute("SELECT * FROM snapshots WHERE key = ?", (key,)).fetchone()
        return self._snapshot(row)

    def get_snapshot(self, key: str) -> SnapshotRecord:
        row = self._conn().execute("SELECT * FROM snapshots WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise NotFound(f"no such snapshot: {key}")
        return self._snapshot(row)

    def snapshot_by_name(self, name: str) -> SnapshotRecord:
        row = self._conn().execute("SELECT * FROM snapshots WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"no such committed snapshot: {name}")
        return self._snapshot(row)

    def snapshots(self) -> list[SnapshotRecord]:
        return [self._snapshot(r) for r in self._conn().execute("SELECT * FROM snapshots ORDER BY key")]

    def remove_snapshot(self, key: str) -> None:
        """Forget a snapshot; Conflict while another snapshot has it as parent or a container uses it."""
        with self._tx() as conn:
            row = conn.execute("SELECT * FROM snapshots WHERE key = ?", (key,)).fetchone()
            if row is None:
                raise NotFound(f"no such snapshot: {key}")
            if row["name"] is not None and conn.execute(
                    "SELECT 1 FROM snapshots WHERE parent = ?", (row["name"],)).fetchone():
                raise Conflict(f"snapshot {key} is the parent of other snapshots")
            if conn.execute("SELECT 1 FROM containers WHERE snapshot_key = ?", (key,)).fetchone():
                raise Conflict(f"snapshot {key} is used by a container")
            conn.execute("DELETE FROM snapshots WHERE key = ?", (key,))

    # --- containers --------------------------------------------------------------------------

    @staticmethod
    def _container(row: sqlite3.Row) -> ContainerRecord:
        return ContainerRecord(row["id"], row["snapshot_key"],
                               Digest(row["image_id"]) if row["image_id"] else None,
                               row["created"], json.loads(row["labels"]))

    def add_container(self, container_id: str, snapshot_key: str, image_id: str | None = None,
                      labels: Mapping[str, str] | None = None) -> ContainerRecord:
        record = ContainerRecord(container_id, snapshot_key, Digest(image_id) if image_id else None,
                                 now_rfc3339(), dict(labels or {}))
        with self._tx() as conn:
            try:
                conn.execute("INSERT INTO containers (id, snapshot_key, image_id, created, labels) "
                             "VALUES (?, ?, ?, ?, ?)",
                             (container_id, snapshot_key, image_id and str(record.image_id),
                              record.created, _labels(labels)))
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"container {container_id} exists already") from None
        return record

    def get_container(self, container_id: str) -> ContainerRecord:
        row = self._conn().execute("SELECT * FROM containers WHERE id = ?", (container_id,)).fetchone()
        if row is None:
            raise NotFound(f"no such container: {container_id}")
        return self._container(row)

    def containers(self) -> list[ContainerRecord]:
        return [self._container(r) for r in self._conn().execute("SELECT * FROM containers ORDER BY id")]

    def remove_container(self, container_id: str) -> None:
        with self._tx() as conn:
            if conn.execute("DELETE FROM containers WHERE id = ?", (container_id,)).rowcount == 0:
                raise NotFound(f"no such container: {container_id}")

    # --- gc ----------------------------------------------------------------------------------

    def gc_roots(self) -> GcRoots:
        """The roots of a mark-and-sweep, read in one transaction (a consistent instant): the
        manifests and images of every image record, snapshots used by containers or leases,
        and leased content and ingests. Following manifests to configs, layers and chain-id
        snapshots is the collector's work."""
        with self._tx() as conn:
            images = conn.execute("SELECT id, manifest_digest FROM images").fetchall()
            names = conn.execute("SELECT manifest_digest FROM names").fetchall()
            container_snaps = conn.execute("SELECT snapshot_key FROM containers").fetchall()
            leased = conn.execute("SELECT kind, key FROM lease_resources").fetchall()
        return GcRoots(
            manifests=frozenset(Digest(r[1]) for r in images) | frozenset(Digest(r[0]) for r in names),
            images=frozenset(Digest(r[0]) for r in images),
            snapshots=frozenset(r[0] for r in container_snaps)
            | frozenset(r[1] for r in leased if r[0] == "snapshot"),
            content=frozenset(r[1] for r in leased if r[0] == "content"),
            ingests=frozenset(r[1] for r in leased if r[0] == "ingest"),
        )

    def check(self) -> list[str]:
        """Problems SQLite itself finds (integrity_check, foreign keys); empty when healthy."""
        conn = self._conn()
        problems = [r[0] for r in conn.execute("PRAGMA integrity_check") if r[0] != "ok"]
        problems += [f"foreign key: {tuple(r)}" for r in conn.execute("PRAGMA foreign_key_check")]
        return problems


