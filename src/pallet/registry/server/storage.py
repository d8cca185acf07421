"""Registry storage: the `Storage` Protocol the server talks to, and its file-system implementation.

On-disk format, version 1 (`<root>/registry.json` says `{"version": 1}`):

    <root>/
      registry.json                       format version
      .lock                               flock()ed by a running server and by gc (one at a time)
      blobs/<alg>/<hex>                   blob content, shared by all repositories (manifests too)
      uploads/<uuid>/info.json            {"repository", "started" (unix time), "algorithm"}
      uploads/<uuid>/data                 the bytes received so far, in order
      tmp/                                temporary files of atomic writes; emptied at start
      repositories/<name>/                <name> may contain '/', one directory per component
        _layers/<alg>/<hex>               empty file: the repository may serve this blob
        _manifests/revisions/<alg>/<hex>  JSON {"mediaType", "size"} of a manifest pushed here
        _manifests/tags/<tag>             the digest the tag points to (text)
        _referrers/<alg>/<hex>/<alg>-<hex>  empty file: manifest (file name) has subject (dir)

The layout follows distribution's (docs/storage-drivers, registry/storage/paths.go): content is
global and addressed by digest, repositories hold only links, so a cross-repository mount is a
link and garbage collection is a mark (from every repository's manifests) and a sweep of blobs/.

Crash safety (STYLE.md §7): every file is written to tmp/, fsynced, and renamed into place, then
its directory fsynced. An upload becomes a blob only by rename after its digest is verified, so a
SIGKILL at any moment leaves either no blob or the whole verified blob. Partial uploads stay in
uploads/ (a client may resume them: GET reports the offset); those older than the upload TTL are
removed at start-up and periodically. Names and digests are validated before any path is built
from them (`names.check_name`, `Digest`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from pallet.errors import Conflict, InvalidArgument, NotFound
from pallet.image.content import fsync_dir
from pallet.oci.digest import Digest, Hasher

FORMAT_VERSION = 1
_UUID_LEN = 36


class ManifestRecord:
    """What the store keeps about a manifest beside its bytes: media type and size."""

    __slots__ = ("digest", "media_type", "size")

    def __init__(self, digest: Digest, media_type: str, size: int) -> None:
        self.digest, self.media_type, self.size = digest, media_type, size

    def __repr__(self) -> str:
        return f"ManifestRecord({self.digest!r}, {self.media_type!r}, {self.size})"


class Storage(Protocol):
    """What the registry needs from where it keeps things; the seam for an object-store backend.

    Contract for every implementation:
    - Blobs are immutable and addressed by a validated `Digest`; `put_blob` and `finish_upload`
      verify content against the digest before it becomes visible, and are idempotent (putting a
      blob that exists is a no-op). Nothing partial is ever visible through `stat_blob`/`open_blob`.
    - Repository metadata (links, manifests, tags, referrers) is changed atomically, one record at
      a time; deleting something absent raises NotFound.
    - Names passed in are already validated (`names.check_name`, `names.check_tag`).
    - Methods block (file or network I/O): the server calls them from a worker thread.
    Errors: NotFound (absent), InvalidArgument (digest or size mismatch), Conflict (a lock is held).
    """

    # -- blobs ------------------------------------------------------------------------------------
    def stat_blob(self, digest: Digest) -> int | None:
        """Size of the blob, or None when the registry lacks it."""
        ...

    def open_blob(self, digest: Digest) -> BinaryIO:
        """A readable binary file of the blob; NotFound if absent."""
        ...

    def local_blob_path(self, digest: Digest) -> Path | None:
        """A local file with the blob's bytes, for zero-copy serving (sendfile); None when the
        backend has none (an object store would stream `open_blob` or redirect instead)."""
        ...

    def put_blob(self, digest: Digest, data: bytes) -> None:
        """Store small content (a manifest) after verifying it hashes to `digest`."""
        ...

    def delete_blob(self, digest: Digest) -> None: ...

    def list_blobs(self) -> Iterator[Digest]: ...

    # -- uploads ----------------------------------------------------------------------------------
    def new_upload(self, repository: str, algorithm: str) -> str:
        """Start an upload session; returns its id (a UUID)."""
        ...

    def upload_info(self, repository: str, upload_id: str) -> dict[str, object]:
        """The session's info with its current "size"; NotFound for an unknown id or another
        repository's upload."""
        ...

    def open_upload(self, repository: str, upload_id: str) -> BinaryIO:
        """The session's data file opened for appending (position at the end)."""
        ...

    def truncate_upload(self, repository: str, upload_id: str, size: int) -> None:
        """Cut a session back to `size` bytes (a chunk that arrived only in part is dropped)."""
        ...

    def finish_upload(self, repository: str, upload_id: str, digest: Digest,
                      hasher: Hasher | None = None) -> int:
        """Verify the session's bytes against `digest` (using `hasher` when it covers them all),
        publish the blob, link it into `repository`, remove the session; returns the size.
        InvalidArgument on mismatch (the session is removed then too)."""
        ...

    def cancel_upload(self, repository: str, upload_id: str) -> None: ...

    def purge_uploads(self, older_than: float) -> list[str]:
        """Remove sessions started more than `older_than` seconds ago; returns their ids."""
        ...

    # -- repositories -----------------------------------------------------------------------------
    def repository_exists(self, repository: str) -> bool: ...

    def list_repositories(self) -> list[str]:
        """All repositories, sorted."""
        ...

    def link_blob(self, repository: str, digest: Digest) -> None: ...

    def unlink_blob(self, repository: str, digest: Digest) -> None: ...

    def has_blob_link(self, repository: str, digest: Digest) -> bool: ...

    def list_blob_links(self, repository: str) -> list[Digest]: ...

    def put_manifest(self, repository: str, digest: Digest, media_type: str, data: bytes) -> None:
        """Store the manifest's exact bytes as a blob and record it in the repository."""
        ...

    def get_manifest(self, repository: str, digest: Digest) -> ManifestRecord | None: ...

    def delete_manifest(self, repository: str, digest: Digest) -> None: ...

    def list_manifests(self, repository: str) -> list[ManifestRecord]: ...

    def set_tag(self, repository: str, tag: str, digest: Digest) -> None: ...

    def get_tag(self, repository: str, tag: str) -> Digest | None: ...

    def delete_tag(self, repository: str, tag: str) -> None: ...

    def list_tags(self, repository: str) -> list[str]:
        """The repository's tags, sorted ASCIIbetically."""
        ...

    def tag_time(self, repository: str, tag: str) -> float:
        """When the tag was last set (seconds since the epoch)."""
        ...

    def add_referrer(self, repository: str, subject: Digest, referrer: Digest) -> None: ...

    def remove_referrer(self, repository: str, subject: Digest, referrer: Digest) -> None: ...

    def list_referrers(self, repository: str, subject: Digest) -> list[Digest]: ...


def _check_upload_id(upload_id: str) -> str:
    """Upload ids come from URLs: only our own UUIDs are accepted, so one never names a path."""
    try:
        if len(upload_id) != _UUID_LEN or str(uuid.UUID(upload_id)) != upload_id:
            raise ValueError(upload_id)
    except ValueError:
        raise NotFound(f"unknown upload {upload_id[:80]!r}") from None
    return upload_id


class FilesystemStorage:
    """`Storage` on a local directory, laid out as the module docstring says."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.blobs = self.root / "blobs"
        self.uploads = self.root / "uploads"
        self.tmp = self.root / "tmp"
        self.repos = self.root / "repositories"
        self._lock_fd: int | None = None
        for d in (self.root, self.blobs, self.uploads, self.tmp, self.repos):
            d.mkdir(parents=True, exist_ok=True)
        version_file = self.root / "registry.json"
        if version_file.exists():
            try:
                version = json.loads(version_file.read_bytes()).get("version")
            except (ValueError, AttributeError) as exc:
                raise InvalidArgument(f"{version_file}: unreadable: {exc}") from exc
            if version != FORMAT_VERSION:
                raise InvalidArgument(f"{version_file}: storage format version {version!r} is not "
                                      f"supported (this registry reads version {FORMAT_VERSION})")
        else:
            self._atomic_write(version_file, json.dumps({"version": FORMAT_VERSION}).encode())

    # -- process-wide lock and start-up recovery --------------------------------------------------
    def lock(self) -> None:
        """Take the root's exclusive lock (held until `unlock` or exit): one server or one gc."""
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise Conflict(f"{self.root} is in use by another registry server or gc") from None
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def recover(self) -> None:
        """Empty tmp/: what is there was never renamed into place, so nothing refers to it."""
        for entry in self.tmp.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if entry.is_dir():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()

    # -- helpers ----------------------------------------------------------------------------------
    def _atomic_write(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.tmp / f"{uuid.uuid4()}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
        fsync_dir(path.parent)

    def _blob_path(self, digest: Digest) -> Path:
        return self.blobs / digest.algorithm / digest.encoded

    def _repo(self, repository: str) -> Path:
        return self.repos / repository

    def _link(self, repository: str, digest: Digest) -> Path:
        return self._repo(repository) / "_layers" / digest.algorithm / digest.encoded

    def _revision(self, repository: str, digest: Digest) -> Path:
        return self._repo(repository) / "_manifests" / "revisions" / digest.algorithm / digest.encoded

    def _tag(self, repository: str, tag: str) -> Path:
        return self._repo(repository) / "_manifests" / "tags" / tag

    def _referrers(self, repository: str, subject: Digest) -> Path:
        return self._repo(repository) / "_referrers" / subject.algorithm / subject.encoded

    @staticmethod
    def _digests_under(path: Path) -> list[Digest]:
        out: list[Digest] = []
        if not path.is_dir():
            return out
        for alg_dir in sorted(path.iterdir()):
            for f in sorted(alg_dir.iterdir()):
                try:
                    out.append(Digest(f"{alg_dir.name}:{f.name}"))
                except InvalidArgument:
                    continue  # not ours (a stray file): ignored, never served
        return out

    # -- blobs ------------------------------------------------------------------------------------
    def stat_blob(self, digest: Digest) -> int | None:
        try:
            return self._blob_path(digest).stat().st_size
        except FileNotFoundError:
            return None

    def open_blob(self, digest: Digest) -> BinaryIO:
        try:
            return open(self._blob_path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"blob unknown: {digest}") from None

    def local_blob_path(self, digest: Digest) -> Path | None:
        return self._blob_path(digest)

    def put_blob(self, digest: Digest, data: bytes) -> None:
        got = Digest.from_bytes(data, digest.algorithm)
        if got != digest:
            raise InvalidArgument(f"content has digest {got}, expected {digest}")
        path = self._blob_path(digest)
        if not path.exists():
            self._atomic_write(path, data)

    def delete_blob(self, digest: Digest) -> None:
        try:
            self._blob_path(digest).unlink()
        except FileNotFoundError:
            raise NotFound(f"blob unknown: {digest}") from None

    def list_blobs(self) -> Iterator[Digest]:
        yield from self._digests_under(self.blobs)

    # -- uploads ----------------------------------------------------------------------------------
    def new_upload(self, repository: str, algorithm: str) -> str:
        upload_id = str(uuid.uuid4())
        staging = self.tmp / f"upload-{upload_id}"
        staging.mkdir()
        (staging / "data").touch()
        info = {"repository": repository, "started": time.time(), "algorithm": algorithm}
        (staging / "info.json").write_text(json.dumps(info))
        # The session appears whole (info and data) or not at all.
        os.rename(staging, self.uploads / upload_id)
        return upload_id

    def _upload_dir(self, repository: str, upload_id: str) -> Path:
        path = self.uploads / _check_upload_id(upload_id)
        try:
            info = json.loads((path / "info.json").read_bytes())
        except (FileNotFoundError, ValueError):
            raise NotFound(f"unknown upload {upload_id}") from None
        if info.get("repository") != repository:
            raise NotFound(f"unknown upload {upload_id} in repository {repository}")
        return path

    def upload_info(self, repository: str, upload_id: str) -> dict[str, object]:
        path = self._upload_dir(repository, upload_id)
        info: dict[str, object] = json.loads((path / "info.json").read_bytes())
        try:
            info["size"] = (path / "data").stat().st_size
        except FileNotFoundError:
            raise NotFound(f"unknown upload {upload_id}") from None
        return info

    def open_upload(self, repository: str, upload_id: str) -> BinaryIO:
        path = self._upload_dir(repository, upload_id)
        return open(path / "data", "ab")

    def truncate_upload(self, repository: str, upload_id: str, size: int) -> None:
        path = self._upload_dir(repository, upload_id)
        os.truncate(path / "data", size)

    def finish_upload(self, repository: str, upload_id: str, digest: Digest,
                      hasher: Hasher | None = None) -> int:
        path = self._upload_dir(repository, upload_id)
        data = path / "data"
        try:
            with open(data, "rb+") as f:
                size = os.fstat(f.fileno()).st_size
                if hasher is None or hasher.size != size or hasher.algorithm != digest.algorithm:
                    # The session outlived the process that hashed it, or its chunks were
                    # hashed with another algorithm: hash the file again, streaming.
                    hasher = Hasher(digest.algorithm)
                    while chunk := f.read(1 << 20):
                        hasher.update(chunk)
                got = hasher.digest()
                if got != digest:
                    raise InvalidArgument(f"uploaded content has digest {got} ({size} bytes), "
                                          f"not the {digest} given")
                os.fsync(f.fileno())
            target = self._blob_path(digest)
            if target.exists():
                data.unlink()
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.rename(data, target)
                fsync_dir(target.parent)
            self.link_blob(repository, digest)
            return size
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def cancel_upload(self, repository: str, upload_id: str) -> None:
        path = self._upload_dir(repository, upload_id)
        # Rename first so that a crash half way through rmtree leaves no half session in uploads/.
        doomed = self.tmp / f"cancel-{upload_id}"
        os.rename(path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)

    def purge_uploads(self, older_than: float) -> list[str]:
        cutoff = time.time() - older_than
        purged = []
        for entry in self.uploads.iterdir():
            try:
                started = json.loads((entry / "info.json").read_bytes()).get("started", 0)
            except (FileNotFoundError, NotADirectoryError, ValueError):
                started = 0  # unreadable: not a session we can resume
            if not isinstance(started, int | float) or started < cutoff:
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
                purged.append(entry.name)
        return purged

    # -- repositories -----------------------------------------------------------------------------
    def repository_exists(self, repository: str) -> bool:
        repo = self._repo(repository)
        return (repo / "_layers").is_dir() or (repo / "_manifests").is_dir()

    def list_repositories(self) -> list[str]:
        found = []
        for dirpath, dirnames, _ in os.walk(self.repos):
            if "_layers" in dirnames or "_manifests" in dirnames:
                found.append(os.path.relpath(dirpath, self.repos))
            # Internal directories start with '_', which no name component can (names.NAME_RE).
            dirnames[:] = [d for d in dirnames if not d.startswith("_")]
        return sorted(found)

    def link_blob(self, repository: str, digest: Digest) -> None:
        link = self._link(repository, digest)
        if not link.exists():
            self._atomic_write(link, b"")

    def unlink_blob(self, repository: str, digest: Digest) -> None:
        try:
            self._link(repository, digest).unlink()
        except FileNotFoundError:
            raise NotFound(f"blob unknown to repository {repository}: {digest}") from None

    def has_blob_link(self, repository: str, digest: Digest) -> bool:
        return self._link(repository, digest).exists()

    def list_blob_links(self, repository: str) -> list[Digest]:
        return self._digests_under(self._repo(repository) / "_layers")

    def put_manifest(self, repository: str, digest: Digest, media_type: str, data: bytes) -> None:
        self.put_blob(digest, data)
        record = json.dumps({"mediaType": media_type, "size": len(data)}).encode()
        self._atomic_write(self._revision(repository, digest), record)

    def get_manifest(self, repository: str, digest: Digest) -> ManifestRecord | None:
        try:
            record = json.loads(self._revision(repository, digest).read_bytes())
        except FileNotFoundError:
            return None
        if self.stat_blob(digest) is None:
            return None  # content collected (or lost): the record alone cannot serve it
        return ManifestRecord(digest, record["mediaType"], record["size"])

    def delete_manifest(self, repository: str, digest: Digest) -> None:
        try:
            self._revision(repository, digest).unlink()
        except FileNotFoundError:
            raise NotFound(f"manifest unknown to repository {repository}: {digest}") from None

    def list_manifests(self, repository: str) -> list[ManifestRecord]:
        out = []
        for digest in self._digests_under(self._repo(repository) / "_manifests" / "revisions"):
            record = self.get_manifest(repository, digest)
            if record is not None:
                out.append(record)
        return out

    def set_tag(self, repository: str, tag: str, digest: Digest) -> None:
        self._atomic_write(self._tag(repository, tag), digest.encode())

    def get_tag(self, repository: str, tag: str) -> Digest | None:
        try:
            return Digest(self._tag(repository, tag).read_text().strip())
        except (FileNotFoundError, InvalidArgument):
            return None

    def delete_tag(self, repository: str, tag: str) -> None:
        try:
            self._tag(repository, tag).unlink()
        except FileNotFoundError:
            raise NotFound(f"tag unknown to repository {repository}: {tag}") from None

    def list_tags(self, repository: str) -> list[str]:
        tags_dir = self._repo(repository) / "_manifests" / "tags"
        if not tags_dir.is_dir():
            return []
        return sorted(p.name for p in tags_dir.iterdir())

    def tag_time(self, repository: str, tag: str) -> float:
        try:
            return self._tag(repository, tag).stat().st_mtime
        except FileNotFoundError:
            raise NotFound(f"tag unknown to repository {repository}: {tag}") from None

    def add_referrer(self, repository: str, subject: Digest, referrer: Digest) -> None:
        path = self._referrers(repository, subject) / f"{referrer.algorithm}-{referrer.encoded}"
        if not path.exists():
            self._atomic_write(path, b"")

    def remove_referrer(self, repository: str, subject: Digest, referrer: Digest) -> None:
        path = self._referrers(repository, subject) / f"{referrer.algorithm}-{referrer.encoded}"
        try:
            path.unlink()
        except FileNotFoundError:
            raise NotFound(f"{referrer} is not a referrer of {subject}") from None

    def list_referrers(self, repository: str, subject: Digest) -> list[Digest]:
        path = self._referrers(repository, subject)
        if not path.is_dir():
            return []
        out = []
        for f in sorted(path.iterdir()):
            try:
                out.append(Digest(f.name.replace("-", ":", 1)))
            except InvalidArgument:
                continue
        return out
