"""The content store: verified, content-addressed blobs in an OCI image layout on disk.

On-disk format, version 1 (`FORMAT_VERSION`). The layout directory (the daemon uses
`<data-root>/content/`) is a valid OCI image layout (../shared/specs/oci-image/image-layout.md),
so skopeo (`oci:<dir>:<tag>`) and umoci read it as is:

    oci-layout              {"imageLayoutVersion":"1.0.0"}
    index.json              an OCI image index; each descriptor's
                            "org.opencontainers.image.ref.name" annotation is its tag
    blobs/<alg>/<hex>       content, mode 0444; the bytes always hash to <alg>:<hex>
    pallet-content.json     {"version":1}: the version of the Pallet-specific parts below
    ingest/<key>/           one write in progress (invisible to readers):
        data                the bytes written so far
        ref                 the ref name (UTF-8) of a resumable write; absent for anonymous ones
        expected            JSON descriptor the write must end as, when known
        lock                flock(2)ed by the writer that owns the ingest
                            <key> is sha256(ref) in hex for a resumable write, "tmp-<random>"
                            for an anonymous one

A blob becomes visible only by rename(2) from `ingest/<key>/data` after its digest and size were
verified and the file fsynced, and the directory is fsynced after the rename (or, for writers
made with `sync_dir=False`, once for many blobs by `sync_blobs()`, which their caller runs
before it records anything that names them: the rename is atomic against a kill -9 either way,
and only a power loss can undo a rename not yet synced, taking the blob back to "absent"). A kill -9 at any
moment leaves at most an ingest directory behind (collected by `clean_ingests`), never a
partial blob (STYLE.md §7; containerd content/local, umoci oci/cas/dir do the same). Every digest
is validated (`pallet.oci.digest.Digest`) before a path is built from it.

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

FORMAT_VERSION = 1
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


class _Writer:
    """A ContentWriter backed by `ingest/<key>/data` (see the module docstring)."""

    def __init__(self, store: ContentStore, key: str, ref: str | None,
                 expected: Descriptor | None, media_type: str, sync_dir: bool = True) -> None:
        self._store = store
        self._sync_dir = sync_dir
        self.key = key
        self.ref = ref
        self.dir = store.path / "ingest" / key
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
        # Another writer may remove the directory (commit or abort) between our mkdir and our
        # flock; then the lock we hold is on a dead inode, and we start again.
        for _ in range(10):
            if self._lock():
                break
        else:
            raise Unavailable(f"ingest {self.key}: kept vanishing while being locked")
        try:
            if self.ref is not None:
                (self.dir / "ref").write_text(self.ref)
                self._reconcile_expected()
            self._f = open(self.dir / "data", "ab+")  # noqa: SIM115 - owned until commit/close
            self._f.seek(0)
            while chunk := self._f.read(CHUNK):
                self._hasher.update(chunk)
            self._f.seek(0, os.SEEK_END)
            self._kicked = self._hasher.size
        except BaseException:
            self._release()
            raise

    def _lock(self) -> bool:
        """Take the ingest's flock; False if the directory went away meanwhile."""
        lock = self.dir / "lock"
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise Unavailable(f"ref {self.ref!r} is locked by another writer") from None
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    def _reconcile_expected(self) -> None:
        """A resumed write whose target changed starts over (its old bytes are for something else)."""
        path = self.dir / "expected"
        old: Descriptor | None = None
        with contextlib.suppress(FileNotFoundError, ValueError, InvalidArgument):
            old = Descriptor.from_json(json.loads(path.read_bytes()))
        if self.expected is None:
            if old is not None:
                self.expected = old
                self.media_type = old.media_type
                self._hasher = Hasher(old.digest.algorithm)
            return
        if old is None or old.digest != self.expected.digest or old.size != self.expected.size:
            with contextlib.suppress(FileNotFoundError):
                os.truncate(self.dir / "data", 0)
            # Not fsynced: after a power loss an `expected` that is missing, empty or old only
            # makes the next writer truncate `data` and start over, which is always safe.
            atomic_write(path, canonical_json(self.expected.to_json()), durable=False)

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
            os.fchmod(self._f.fileno(), 0o444)
            self._f.close()
            self._f = None
            target = self._store._blob_path(desc.digest)
            target.parent.mkdir(parents=True, exist_ok=True)
            # rename(2) over an existing blob is harmless: same name, same verified bytes.
            os.rename(self.dir / "data", target)
            if self._sync_dir:
                fsync_dir(target.parent)
        except BaseException:
            self._discard()
            raise
        self._discard()
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
        # Remove while still holding the lock, so a waiting writer finds no stale bytes. The
        # names are known: unlink them and rmdir (a directory walk costs more than the blob's
        # own write on small blobs); anything unexpected falls back to rmtree.
        try:
            for name in ("data", "ref", "expected", "lock"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.dir / name)
            os.rmdir(self.dir)
        except FileNotFoundError:
            pass
        except OSError:
            shutil.rmtree(self.dir, ignore_errors=True)
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


class ContentStore:
    """The OCI-layout content store at `path` (the layout directory itself). See module docstring."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._index_lock = threading.Lock()
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
            if version != FORMAT_VERSION:
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
            expected: Descriptor | None = None) -> Descriptor:
        """Store `data` (verified against `expected` if given); returns its descriptor."""
        digest = Digest.from_bytes(data, expected.digest.algorithm if expected else CANONICAL)
        if expected is not None and (expected.digest != digest or expected.size != len(data)):
            raise DigestMismatch(f"content is {digest} ({len(data)} bytes), expected "
                                 f"{expected.digest} ({expected.size} bytes)")
        if self.exists(digest):
            return expected or Descriptor(media_type, digest, len(data))
        with self.writer(expected, media_type=media_type) as w:
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
        out = []
        for d in sorted((self.path / "ingest").iterdir()):
            try:
                data = (d / "data").stat()
                start = (d / "lock").stat().st_mtime
            except (FileNotFoundError, NotADirectoryError):
                continue
            ref = (d / "ref").read_text() if (d / "ref").exists() else None
            expected = None
            with contextlib.suppress(FileNotFoundError, ValueError, InvalidArgument):
                expected = Descriptor.from_json(json.loads((d / "expected").read_bytes()))
            out.append(IngestStatus(d.name, ref, data.st_size, start, data.st_mtime, expected))
        return out

    def abort_ingest(self, ref: str) -> None:
        """Drop the resumable write `ref` (Unavailable if a writer holds it, NotFound if none)."""
        key = hashlib.sha256(ref.encode()).hexdigest()
        if not (self.path / "ingest" / key).exists():
            raise NotFound(f"no ingest for ref {ref!r}")
        self.writer(ref=ref).abort()

    def ingest_data(self, ref: str) -> Path:
        """The `data` file of the resumable write `ref` (it may not exist): a reader can follow
        a write in progress there (a pull unpacks a layer while it downloads)."""
        return self.path / "ingest" / hashlib.sha256(ref.encode()).hexdigest() / "data"

    def clean_ingests(self, older_than: float = 0.0) -> int:
        """Remove ingests no writer holds whose last write is older than `older_than` seconds.
        Returns how many were removed."""
        removed = 0
        now = time.time()
        for d in (self.path / "ingest").iterdir():
            lock = d / "lock"
            try:
                fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
            except (FileNotFoundError, NotADirectoryError):
                if d.is_dir() and now - d.stat().st_mtime > max(older_than, 60):
                    shutil.rmtree(d, ignore_errors=True)  # a write killed before it locked
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                mtimes = [p.stat().st_mtime for p in (d / "data", lock) if p.exists()]
                if now - max(mtimes, default=0) >= older_than:
                    shutil.rmtree(d, ignore_errors=True)
                    removed += 1
            finally:
                os.close(fd)
        return removed

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
