"""The content store: verified, content-addressed blobs in an OCI image layout on disk.

On-disk format, version 2 (`FORMAT_VERSION`). The layout directory (the daemon uses
`<data-root>/content/`) is a valid OCI image layout (../shared/specs/oci-image/image-layout.md),
so skopeo (`oci:<dir>:<tag>`) and umoci read it as is:

    oci-layout              {"imageLayoutVersion":"1.0.0"}
    index.json              an OCI image index; each descriptor's
                            "org.opencontainers.image.ref.name" annotation is its tag
    blobs/<alg>/<hex>       content, mode 0444; the bytes always hash to <alg>:<hex>
    pallet-content.json     {"version":2}: the version of the Pallet-specific parts below
    ingest/<key>            one write in progress (invisible to readers): the bytes written so
                            far, flock(2)ed by the writer that owns it. <key> is sha256(ref) in
                            hex for a resumable write, "tmp-<random>" for an anonymous one.
                            A resumable write's ref and expected descriptor are the JSON
                            `{"ref": REF, "expected": DESCRIPTOR|null}` in the file's extended
                            attribute `user.pallet.ingest`, or, on a file system without user
                            xattrs, in the file `ingest/<key>.json` next to it.
    ingest/.<name>.tmp      a `<key>.json` being replaced (atomic_write)

Version 1 kept each ingest in a directory `ingest/<key>/` of four files (`data`, `ref`,
`expected`, `lock`): five inodes per blob where version 2 makes one, and on ext4 an inode is
what a small blob's write costs most (a 50-layer pull created 250 for its ingests; perf showed
a seventh of the pull's CPU in `__ext4_new_inode` for them). A version 1 store is upgraded in
place when opened: its marker is rewritten, and version 1 ingest directories are no longer
resumed; `clean_ingests` removes them like any stale ingest.

A blob becomes visible only by rename(2) from `ingest/<key>` after its digest and size were
verified and the file fsynced, and the directory is fsynced after the rename (or, for writers
made with `sync_dir=False`, once for many blobs by `sync_blobs()`, which their caller runs
before it records anything that names them: the rename is atomic against a kill -9 either way,
and only a power loss can undo a rename not yet synced, taking the blob back to "absent"). A kill -9 at any
moment leaves at most an ingest file behind (collected by `clean_ingests`), never a
partial blob (STYLE.md §7; containerd content/local, umoci oci/cas/dir do the same). Every digest
is validated (`pallet.oci.digest.Digest`) before a path is built from it.

Locking: the writer opens (or creates) `ingest/<key>`, takes flock(LOCK_EX|LOCK_NB) on it and
checks that the path still names the inode it locked (a committer may have renamed it into
`blobs/` meanwhile, or a cleaner unlinked it: then it starts again). While it holds the lock,
nobody else renames, unlinks or rewrites the file or its metadata; a commit removes the
metadata sidecar (if any) before the rename, so a path free for a new writer never has a
stale sidecar of ours (a kill between the two only costs the resumability of verified bytes:
the next writer starts over, which is always safe).

Commit in two steps (what a pull uses to take the fsync off its download threads): `verify()`
checks digest and size, keeping the bytes in the ingest under the writer's lock; a later
`commit()`, from another thread, after `start_writeback()`, fsyncs and renames. The order
"fsync, then rename" is the same, so the guarantee is the same: a blob name never points at
bytes a power loss can take back. Writers also start the writeback of every `WRITEBACK_CHUNK`
bytes as they go (`posix_fadvise(POSIX_FADV_DONTNEED)`, which on Linux starts asynchronous
writeback of the dirty range and drops only clean pages, mm/fadvise.c; the fallback
PostgreSQL's `pg_flush_data` uses where sync_file_range(2) is not at hand), so the
commit's fsync waits for the tail of the file rather than writing all of it then.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Protocol

from pallet.errors import AlreadyExists, InvalidArgument, NotFound, Unavailable
from pallet.oci import mediatypes as mt
from pallet.oci.descriptor import ANNOTATION_REF_NAME, Descriptor
from pallet.oci.digest import ALGORITHMS, CANONICAL, Digest, DigestMismatch, Hasher
from pallet.oci.manifest import canonical_json, parse_index

FORMAT_VERSION = 2
# Older formats this code opens (and upgrades: see the module docstring).
UPGRADES_FROM = (1,)
LAYOUT_VERSION = "1.0.0"
CHUNK = 1 << 20
DEFAULT_MAX_READ = 64 << 20
# Start the writeback of a blob being written every this many bytes (module docstring).
WRITEBACK_CHUNK = 8 << 20
_MAX_REF = 1024


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (a rename, a new file) durable: fsync(2) of the directory."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int = 0o644, *, durable: bool = True) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, never a mix.
    `durable=False` skips the fsyncs: still all-or-nothing against a kill -9 (the page cache
    outlives the process), but a power loss may leave the old file, or an empty one."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(path.parent)


@dataclass(frozen=True)
class IngestStatus:
    """A write in progress: its ref (None for anonymous), bytes so far, when it started."""

    key: str
    ref: str | None
    offset: int
    started_at: float
    updated_at: float
    expected: Descriptor | None


class ContentWriter(Protocol):
    """One blob being written. `write` hashes as it goes; `commit` verifies and publishes.

    Used as a context manager: leaving it without `commit` discards an anonymous write; a
    resumable (ref'd) write keeps its bytes for a later `resume` unless `abort` is called.
    """

    offset: int

    def write(self, data: bytes | bytearray | memoryview) -> int: ...
    def verify(self, expected: Descriptor | None = None) -> Descriptor: ...
    def start_writeback(self) -> None: ...
    def commit(self, expected: Descriptor | None = None) -> Descriptor: ...
    def abort(self) -> None: ...
    def close(self) -> None: ...
    def __enter__(self) -> ContentWriter: ...
    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None: ...


class BlobStore(Protocol):
    """Content-addressed blob storage (the contract every content store implements).

    - `writer(...).commit()` is atomic: the blob is either fully there and verified or absent.
      Committing content that exists already is not an error (idempotent) and returns its
      descriptor. A digest or size different from `expected` raises DigestMismatch and leaves
      nothing behind.
    - `open`/`read` verify: a reader raises DigestMismatch when the bytes, read to the end, do not
      match their name. `read` refuses blobs larger than `max_size` (InvalidArgument).
    - `info`, `open`, `read`, `delete` raise NotFound for absent content; `exists` never raises
      for a valid digest. Every method raises InvalidArgument for a malformed digest.
    - `resume(ref)` reopens a resumable write at its current offset; two writers on one ref at
      once: the second gets Unavailable.
    - Safe to call from several threads and processes at once.
    """

    def writer(self, expected: Descriptor | None = None, *, ref: str | None = None,
               media_type: str = mt.OCTET_STREAM) -> ContentWriter: ...
    def resume(self, ref: str, expected: Descriptor | None = None) -> tuple[int, ContentWriter]: ...
    def put(self, data: bytes, media_type: str = mt.OCTET_STREAM) -> Descriptor: ...
    def open(self, digest: str) -> BlobReader: ...
    def read(self, digest: str, max_size: int = DEFAULT_MAX_READ) -> bytes: ...
    def exists(self, digest: str) -> bool: ...
    def info(self, digest: str) -> int: ...
    def delete(self, digest: str) -> None: ...
    def walk(self) -> Iterator[tuple[Digest, int]]: ...


class BlobReader:
    """A file-like reader of one blob that verifies its digest once read to the end.

    `read()` raises DigestMismatch at end of file if the bytes are not what the name says.
    Seeking is not offered (it would defeat verification); use `ContentStore.path` for ranged
    reads that are verified some other way.
    """

    def __init__(self, f: BinaryIO, digest: Digest, size: int) -> None:
        self._f = f
        self.digest = digest
        self.size = size
        self._hasher = Hasher(digest.algorithm)
        self._verified = False

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n) if n is not None and n >= 0 else self._f.read()
        self._hasher.update(data)
        # Verify as soon as the last byte is read (not only on the empty read after it), and on
        # a short file at end of file.
        if self._hasher.size >= self.size or (not data and n != 0) or n < 0:
            self._verify()
        return data

    def readable(self) -> bool:
        return True

    def _verify(self) -> None:
        if self._verified:
            return
        got = self._hasher.digest()
        if self._hasher.size != self.size or got != self.digest:
            raise DigestMismatch(f"blob {self.digest} is corrupt: read {self._hasher.size} bytes "
                                 f"hashing to {got}")
        self._verified = True

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> BlobReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


INGEST_XATTR = "user.pallet.ingest"
_NO_XATTR = (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM, errno.ENOSYS)


class _IngestMeta:
    """The ref and expected descriptor of a resumable ingest (module docstring): in the data
    file's `user.pallet.ingest` xattr, or in `<key>.json` where the file system has no user
    xattrs (tmpfs before Linux 6.6, some network file systems). The caller holds the lock."""

    def __init__(self, store: ContentStore, key: str) -> None:
        self.sidecar = store.path / "ingest" / f"{key}.json"
        self._store = store

    def read(self, fd: int) -> dict[str, Any] | None:
        raw: bytes | None = None
        if self._store._xattrs:
            try:
                raw = os.getxattr(fd, INGEST_XATTR)
            except OSError as exc:
                if exc.errno in _NO_XATTR:
                    self._store._xattrs = False
                elif exc.errno != errno.ENODATA:
                    raise
        if raw is None:
            with contextlib.suppress(FileNotFoundError):
                raw = self.sidecar.read_bytes()
        return _parse_meta(raw)

    def write(self, fd: int, doc: dict[str, Any]) -> None:
        data = canonical_json(doc)
        if self._store._xattrs:
            try:
                os.setxattr(fd, INGEST_XATTR, data)
                return
            except OSError as exc:
                if exc.errno not in _NO_XATTR:
                    raise
                self._store._xattrs = False
        # Not fsynced: after a power loss, metadata that is missing, empty or old only makes
        # the next writer truncate the data and start over, which is always safe.
        atomic_write(self.sidecar, data, durable=False)

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.sidecar)


def _parse_meta(raw: bytes | None) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _meta_expected(doc: dict[str, Any] | None) -> Descriptor | None:
    if doc is None or doc.get("expected") is None:
        return None
    with contextlib.suppress(ValueError, TypeError, KeyError, AttributeError, InvalidArgument):
        return Descriptor.from_json(doc["expected"])
    return None


class _Writer:
    """A ContentWriter backed by the file `ingest/<key>` (see the module docstring)."""

    def __init__(self, store: ContentStore, key: str, ref: str | None,
                 expected: Descriptor | None, media_type: str, sync_dir: bool = True) -> None:
        self._store = store
        self._sync_dir = sync_dir
        self.key = key
        self.ref = ref
        self.path = store.path / "ingest" / key
        self._meta = _IngestMeta(store, key)
        self.expected = expected
        self.media_type = expected.media_type if expected else media_type
        algorithm = expected.digest.algorithm if expected else CANONICAL
        self._hasher = Hasher(algorithm)
        self._lock_fd = -1
        self._f: BinaryIO | None = None
        self._done = False
        self._verified: Descriptor | None = None
        self._kicked = 0        # writeback started up to this offset
        self._open()

    def _open(self) -> None:
        # A committer may rename the file away (or a cleaner unlink it) between our open and
        # our flock; then the lock we hold is on a dead inode, and we start again.
        for _ in range(10):
            if self._lock():
                break
        else:
            raise Unavailable(f"ingest {self.key}: kept vanishing while being locked")
        try:
            if self.ref is not None:
                self._reconcile_meta()
            self._f = os.fdopen(os.dup(self._lock_fd), "r+b")
            while chunk := self._f.read(CHUNK):
                self._hasher.update(chunk)
            self._f.seek(0, os.SEEK_END)
            self._kicked = self._hasher.size
        except BaseException:
            self._release()
            raise

    def _lock(self) -> bool:
        """Open or create the ingest file and flock it; False if it went away meanwhile."""
        # O_CREAT without O_EXCL: a second writer opens the first one's file and is refused
        # by the flock below, as intended.
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except IsADirectoryError:
            # A version 1 ingest of the same ref (module docstring): its bytes are not
            # resumed; it goes unless an older Pallet's writer still holds it.
            if not _clean_v1_ingest(self.path, time.time(), 0.0, grace=-1.0):
                raise Unavailable(f"ref {self.ref!r} is locked by another writer") from None
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise Unavailable(f"ref {self.ref!r} is locked by another writer") from None
        try:
            same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    def _reconcile_meta(self) -> None:
        """Record our ref and target; a resumed write whose target changed starts over (its
        old bytes are for something else), and one without metadata too (what it was for is
        unknown)."""
        doc = self._meta.read(self._lock_fd)
        old = _meta_expected(doc)
        known = doc is not None and doc.get("ref") == self.ref
        if self.expected is None:
            if known and old is not None:
                self.expected = old
                self.media_type = old.media_type
                self._hasher = Hasher(old.digest.algorithm)
            elif not known:
                os.ftruncate(self._lock_fd, 0)
                self._meta.write(self._lock_fd, {"ref": self.ref, "expected": None})
            return
        if not known or old is None or old.digest != self.expected.digest or old.size != self.expected.size:
            os.ftruncate(self._lock_fd, 0)
            self._meta.write(self._lock_fd, {"ref": self.ref, "expected": self.expected.to_json()})

    @property
    def offset(self) -> int:
        return self._hasher.size

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._f is None or self._done:
            raise InvalidArgument("write on a closed content writer")
        if self._verified is not None:
            raise InvalidArgument("write on a verified content writer")
        n = len(data)
        if self.expected is not None and self._hasher.size + n > self.expected.size:
            raise DigestMismatch(f"{self.expected.digest}: more than the expected "
                                 f"{self.expected.size} bytes written")
        self._f.write(data)
        self._hasher.update(data)
        if self._hasher.size - self._kicked >= WRITEBACK_CHUNK:
            self._writeback()
        return n

    def start_writeback(self) -> None:
        """Start the asynchronous writeback of what was written and not yet sent to the disk
        (module docstring), so that a later `commit` waits less; a no-op on a closed writer."""
        if self._f is not None and not self._done:
            self._writeback()

    def _writeback(self) -> None:
        """Start the writeback of what was written since the last call (module docstring)."""
        assert self._f is not None
        self._f.flush()
        end = self._hasher.size
        with contextlib.suppress(OSError):  # a hint: a file system without it loses nothing
            os.posix_fadvise(self._f.fileno(), self._kicked, end - self._kicked, os.POSIX_FADV_DONTNEED)
        self._kicked = end

    def verify(self, expected: Descriptor | None = None) -> Descriptor:
        """The first half of `commit`: check the digest and size, but keep the bytes in the
        ingest (under our lock) until `commit`, which may come from another thread (after
        `start_writeback`, say). On a mismatch the ingest is discarded and DigestMismatch
        raised. Nothing more can be written afterwards."""
        if self._f is None or self._done:
            raise InvalidArgument("verify on a closed content writer")
        if self._verified is not None:
            return self._verified
        expected = expected or self.expected
        digest, size = self._hasher.digest(), self._hasher.size
        media_type = expected.media_type if expected else self.media_type
        try:
            if expected is not None and (expected.size != size or expected.digest != digest):
                raise DigestMismatch(f"content is {digest} ({size} bytes), expected "
                                     f"{expected.digest} ({expected.size} bytes)")
            self._f.flush()
        except BaseException:
            self._discard()
            raise
        if expected is not None:
            self._verified = Descriptor(media_type, digest, size, expected.annotations, expected.platform,
                                        expected.urls, expected.artifact_type)
        else:
            self._verified = Descriptor(media_type, digest, size)
        return self._verified

    def commit(self, expected: Descriptor | None = None) -> Descriptor:
        """Verify, fsync and publish the blob; returns its descriptor. Idempotent for existing
        content. On a mismatch the ingest is discarded and DigestMismatch raised."""
        if self._f is None or self._done:
            raise InvalidArgument("commit on a closed content writer")
        desc = self.verify(expected)
        try:
            self._f.flush()
            os.fsync(self._f.fileno())
            if self.ref is not None:
                # Before the rename, under our lock (module docstring: "Locking"); the xattr
                # goes too, as a blob carries none (and before the fchmod: removing a user
                # xattr needs write permission on the file).
                self._meta.remove()
                if self._store._xattrs:
                    with contextlib.suppress(OSError):
                        os.removexattr(self._lock_fd, INGEST_XATTR)
            os.fchmod(self._f.fileno(), 0o444)
            self._f.close()
            self._f = None
            target = self._store._blob_path(desc.digest)
            # rename(2) over an existing blob is harmless: same name, same verified bytes.
            try:
                os.rename(self.path, target)
            except FileNotFoundError:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.rename(self.path, target)
            if self._sync_dir:
                fsync_dir(target.parent)
        except BaseException:
            self._discard()
            raise
        # The path may name another writer's new ingest now: release only, unlink nothing.
        self._release()
        self._done = True
        return desc

    def abort(self) -> None:
        """Forget the write and its bytes (also of a resumable one)."""
        if not self._done:
            self._discard()

    def close(self) -> None:
        """Stop writing; an anonymous write is discarded, a resumable one kept for `resume`."""
        if self._done:
            return
        if self.ref is None:
            self._discard()
            return
        if self._f is not None:
            self._f.flush()
            self._f.close()
            self._f = None
        self._release()
        self._done = True

    def _discard(self) -> None:
        if self._f is not None:
            with contextlib.suppress(OSError):
                self._f.close()
            self._f = None
        # Remove while still holding the lock, so a waiting writer finds no stale bytes; the
        # path is still ours (only our commit renames it, only a lock holder unlinks it).
        if self._lock_fd >= 0:
            if self.ref is not None:
                self._meta.remove()
            with contextlib.suppress(FileNotFoundError):
                if os.stat(self.path).st_ino == os.fstat(self._lock_fd).st_ino:
                    os.unlink(self.path)
        self._release()
        self._done = True

    def _release(self) -> None:
        if self._f is not None:
            with contextlib.suppress(OSError):
                self._f.close()
            self._f = None
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __del__(self) -> None:
        if self._lock_fd >= 0:
            with contextlib.suppress(Exception):
                self.close()


def _is_ingest_name(name: str) -> bool:
    """`<sha256 hex>` or `tmp-<random>`: an ingest file's name (not a sidecar or temporary)."""
    return not name.startswith(".") and not name.endswith(".json")


def _clean_v1_ingest(d: Path, now: float, older_than: float, grace: float = 60.0) -> int:
    """Remove a version 1 ingest directory (module docstring) that no writer holds; one
    without a lock file only once `grace` seconds old (its writer may be about to lock)."""
    lock = d / "lock"
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        if now - d.stat().st_mtime > max(older_than, grace):
            shutil.rmtree(d, ignore_errors=True)  # a write killed before it locked
            return 1
        return 0
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0  # an older Pallet's writer, still running
        mtimes = [p.stat().st_mtime for p in (d / "data", lock) if p.exists()]
        if now - max(mtimes, default=0) >= older_than:
            shutil.rmtree(d, ignore_errors=True)
            return 1
        return 0
    finally:
        os.close(fd)


class ContentStore:
    """The OCI-layout content store at `path` (the layout directory itself). See module docstring."""

    def __init__(self, path: str | os.PathLike[str], *, xattrs: bool = True) -> None:
        self.path = Path(path)
        self._index_lock = threading.Lock()
        # Where ingest metadata goes (module docstring); turned off at the first file system
        # refusal, or by the caller (tests of the sidecar form).
        self._xattrs = xattrs
        self._init_layout()

    def _init_layout(self) -> None:
        for d in ("blobs/sha256", "ingest"):
            (self.path / d).mkdir(parents=True, exist_ok=True)
        layout = self.path / "oci-layout"
        if layout.exists():
            try:
                version = json.loads(layout.read_bytes()).get("imageLayoutVersion")
            except (ValueError, AttributeError) as exc:
                raise InvalidArgument(f"{layout}: not a valid oci-layout file") from exc
            if not isinstance(version, str) or not version.startswith("1."):
                raise InvalidArgument(f"{layout}: unsupported imageLayoutVersion {version!r}")
        else:
            atomic_write(layout, canonical_json({"imageLayoutVersion": LAYOUT_VERSION}))
        marker = self.path / "pallet-content.json"
        if marker.exists():
            version = json.loads(marker.read_bytes()).get("version")
            if version in UPGRADES_FROM:
                # Blobs and index.json are the same; only the ingest area changed, and its
                # version 1 directories are left for clean_ingests (module docstring).
                atomic_write(marker, canonical_json({"version": FORMAT_VERSION}))
            elif version != FORMAT_VERSION:
                raise InvalidArgument(f"{marker}: content store format {version!r} is not supported "
                                      f"(this Pallet knows {FORMAT_VERSION})")
        else:
            atomic_write(marker, canonical_json({"version": FORMAT_VERSION}))
        if not (self.path / "index.json").exists():
            self.set_index([])

    # --- paths -------------------------------------------------------------------------------

    def _blob_path(self, digest: str) -> Path:
        d = Digest(digest)  # validated before any path is built from it
        return self.path / "blobs" / d.algorithm / d.encoded

    def path_of(self, digest: str) -> Path:
        """The file of a blob, for callers that must read it themselves (ranged reads, tarfile)."""
        p = self._blob_path(digest)
        if not p.exists():
            raise NotFound(f"content {digest} not found")
        return p

    # --- writes ------------------------------------------------------------------------------

    def writer(self, expected: Descriptor | None = None, *, ref: str | None = None,
               media_type: str = mt.OCTET_STREAM, sync_dir: bool = True) -> _Writer:
        """A writer for one blob; with `ref`, a resumable one (see `resume`). `sync_dir=False`:
        the commit does not fsync the blob's directory after the rename; the caller makes the
        names durable with one `sync_blobs()` before anything durable refers to them (a pull
        does, before the image record)."""
        if ref is None:
            return _Writer(self, f"tmp-{secrets.token_hex(16)}", None, expected, media_type, sync_dir)
        if not isinstance(ref, str) or not ref or len(ref) > _MAX_REF or "\0" in ref:
            raise InvalidArgument(f"invalid ingest ref {str(ref)[:100]!r}")
        key = hashlib.sha256(ref.encode()).hexdigest()
        return _Writer(self, key, ref, expected, media_type, sync_dir)

    def sync_blobs(self) -> None:
        """fsync every `blobs/<alg>/` directory: the renames of writers made with
        `sync_dir=False` become durable (one fsync per algorithm instead of one per blob)."""
        for alg in ALGORITHMS:
            path = self.path / "blobs" / alg
            if path.is_dir():
                fsync_dir(path)

    def resume(self, ref: str, expected: Descriptor | None = None) -> tuple[int, _Writer]:
        """Reopen (or start) the resumable write named `ref`; returns (offset, writer).

        The writer has re-hashed the bytes already there, so the caller continues from `offset`
        (e.g. an HTTP Range request). A different `expected` than before restarts at 0.
        """
        w = self.writer(expected, ref=ref)
        return w.offset, w

    def put(self, data: bytes, media_type: str = mt.OCTET_STREAM,
            expected: Descriptor | None = None, *, sync_dir: bool = True) -> Descriptor:
        """Store `data` (verified against `expected` if given); returns its descriptor.
        `sync_dir=False` as for `writer`: the caller runs `sync_blobs()` before recording
        anything that names the blob."""
        digest = Digest.from_bytes(data, expected.digest.algorithm if expected else CANONICAL)
        if expected is not None and (expected.digest != digest or expected.size != len(data)):
            raise DigestMismatch(f"content is {digest} ({len(data)} bytes), expected "
                                 f"{expected.digest} ({expected.size} bytes)")
        if self.exists(digest):
            return expected or Descriptor(media_type, digest, len(data))
        with self.writer(expected, media_type=media_type, sync_dir=sync_dir) as w:
            w.write(data)
            return w.commit()

    def put_stream(self, stream: BinaryIO, media_type: str = mt.OCTET_STREAM,
                   expected: Descriptor | None = None) -> Descriptor:
        with self.writer(expected, media_type=media_type) as w:
            while chunk := stream.read(CHUNK):
                w.write(chunk)
            return w.commit()

    # --- reads -------------------------------------------------------------------------------

    def open(self, digest: str) -> BlobReader:
        d = Digest(digest)
        try:
            f = open(self._blob_path(d), "rb")  # noqa: SIM115 - handed to the reader
        except FileNotFoundError:
            raise NotFound(f"content {d} not found") from None
        return BlobReader(f, d, os.fstat(f.fileno()).st_size)

    def read(self, digest: str, max_size: int = DEFAULT_MAX_READ) -> bytes:
        with self.open(digest) as r:
            if r.size > max_size:
                raise InvalidArgument(f"content {r.digest} is {r.size} bytes, more than the "
                                      f"{max_size} allowed here")
            return r.read()

    def exists(self, digest: str) -> bool:
        return self._blob_path(digest).is_file()

    def info(self, digest: str) -> int:
        """The size of a blob in bytes."""
        try:
            return self._blob_path(digest).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"content {digest} not found") from None

    def delete(self, digest: str) -> None:
        try:
            os.unlink(self._blob_path(digest))
        except FileNotFoundError:
            raise NotFound(f"content {digest} not found") from None

    def walk(self) -> Iterator[tuple[Digest, int]]:
        """Every blob as (digest, size); files whose names are not digests are skipped."""
        for alg in sorted(ALGORITHMS):
            base = self.path / "blobs" / alg
            try:
                entries = sorted(os.scandir(base), key=lambda e: e.name)
            except FileNotFoundError:
                continue
            for entry in entries:
                try:
                    digest = Digest(f"{alg}:{entry.name}")
                    size = entry.stat(follow_symlinks=False).st_size
                except (InvalidArgument, FileNotFoundError):
                    continue
                if entry.is_file(follow_symlinks=False):
                    yield digest, size

    def verify(self, digest: str) -> None:
        """Re-hash one blob; DigestMismatch if it is corrupt (used by a store check)."""
        with self.open(digest) as r:
            while r.read(CHUNK):
                pass

    # --- ingests -----------------------------------------------------------------------------

    def ingests(self) -> list[IngestStatus]:
        """The writes in progress (or abandoned), by key."""
        out = []
        for entry in sorted(os.scandir(self.path / "ingest"), key=lambda e: e.name):
            if not _is_ingest_name(entry.name) or not entry.is_file(follow_symlinks=False):
                continue
            try:
                fd = os.open(entry.path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                st = os.fstat(fd)
                doc = None if entry.name.startswith("tmp-") else _IngestMeta(self, entry.name).read(fd)
            finally:
                os.close(fd)
            ref = doc.get("ref") if doc is not None and isinstance(doc.get("ref"), str) else None
            out.append(IngestStatus(entry.name, ref, st.st_size, st.st_ctime, st.st_mtime,
                                    _meta_expected(doc)))
        return out

    def abort_ingest(self, ref: str) -> None:
        """Drop the resumable write `ref` (Unavailable if a writer holds it, NotFound if none)."""
        if not self.ingest_data(ref).exists():
            raise NotFound(f"no ingest for ref {ref!r}")
        self.writer(ref=ref).abort()

    def ingest_data(self, ref: str) -> Path:
        """The file of the resumable write `ref` (it may not exist): a reader can follow a
        write in progress there (a pull unpacks a layer while it downloads)."""
        return self.path / "ingest" / hashlib.sha256(ref.encode()).hexdigest()

    def clean_ingests(self, older_than: float = 0.0) -> int:
        """Remove ingests no writer holds whose last write is older than `older_than` seconds
        (and what a crash left around them: sidecars without their ingest, temporary files,
        version 1 ingest directories). Returns how many ingests were removed."""
        removed = 0
        now = time.time()
        for entry in os.scandir(self.path / "ingest"):
            path = Path(entry.path)
            try:
                if entry.is_dir(follow_symlinks=False):
                    removed += _clean_v1_ingest(path, now, older_than)
                elif _is_ingest_name(entry.name):
                    removed += self._clean_ingest(path, now, older_than)
                elif (now - entry.stat(follow_symlinks=False).st_mtime > max(older_than, 60)
                      and not (entry.name.endswith(".json") and Path(entry.path[:-5]).exists())):
                    # A sidecar whose ingest is gone (a kill between its removal and the
                    # commit's rename), or a temporary file a kill left.
                    os.unlink(path)
            except FileNotFoundError:
                continue
        return removed

    def _clean_ingest(self, path: Path, now: float, older_than: float) -> int:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return 0
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0
            st = os.fstat(fd)
            if os.stat(path).st_ino != st.st_ino or now - st.st_mtime < older_than:
                return 0
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path.with_name(f"{path.name}.json"))
            os.unlink(path)
            return 1
        finally:
            os.close(fd)

    # --- index.json --------------------------------------------------------------------------

    def set_index(self, manifests: Sequence[Descriptor]) -> None:
        """Replace index.json atomically. A descriptor's `org.opencontainers.image.ref.name`
        annotation is its tag in the layout (`oci:<dir>:<tag>`); tags must be unique."""
        seen: set[str] = set()
        for d in manifests:
            name = d.ref_name
            if name is not None:
                if name in seen:
                    raise AlreadyExists(f"index.json: ref name {name!r} used twice")
                seen.add(name)
        with self._index_locked():
            self._write_index(manifests)

    @contextlib.contextmanager
    def _index_locked(self) -> Iterator[None]:
        """Serialize read-modify-write of index.json among threads (a lock) and processes
        (flock(2) on the layout directory, which needs no extra file in the layout)."""
        with self._index_lock:
            fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)

    def _write_index(self, manifests: Sequence[Descriptor]) -> None:
        doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX,
                               "manifests": [d.to_json() for d in manifests]}
        atomic_write(self.path / "index.json", canonical_json(doc))

    def index(self) -> list[Descriptor]:
        """The descriptors of index.json."""
        return list(parse_index((self.path / "index.json").read_bytes()).manifests)

    def tag(self, name: str, desc: Descriptor) -> None:
        """Point ref name `name` in index.json at `desc` (replacing what it named before)."""
        self.tag_many([name], desc)

    def tag_many(self, names: Sequence[str], desc: Descriptor) -> None:
        """`tag` for several names at once: one rewrite of index.json (a pull names its image
        by tag and by digest)."""
        if not names:
            return
        with self._index_locked():
            entries = [d for d in self.index() if d.ref_name not in names]
            for name in dict.fromkeys(names):
                annotations = dict(desc.annotations or {})
                annotations[ANNOTATION_REF_NAME] = name
                entries.append(desc.with_annotations(annotations))
            self._write_index(entries)

    def untag(self, name: str) -> None:
        with self._index_locked():
            entries = self.index()
            kept = [d for d in entries if d.ref_name != name]
            if len(kept) == len(entries):
                raise NotFound(f"no ref {name!r} in index.json")
            self._write_index(kept)


def open_content_store(data_root: str | os.PathLike[str]) -> ContentStore:
    """The daemon's content store: `<data-root>/content`."""
    return ContentStore(Path(data_root) / "content")
