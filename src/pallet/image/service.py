"""The image service: the library API the daemon calls for images (unpack, container rootfs,
import, export, commit, tag, remove, inspect, history, list, built-in images).

It owns, under the data root (DESIGN.md "On disk"):

    content/        the OCI-layout content store (pallet.image.content)
    metadata.db     images, names, containers, leases (pallet.image.metadata)
    snapshots/      the snapshotter's root: its own metadata.db and snapshots/<id>/{fs,work}
    tmp/            scratch directories (built-in image trees, export mount points)

Vocabulary and rules:
- An image id is its config digest; `resolve` takes a name (`busybox`, `a/b:t`, `x@sha256:..`),
  a full id (`sha256:<hex>` or `<hex>`) or a Docker-style short id (a unique hex prefix).
  Names win over id prefixes, as in Docker.
- Each layer is unpacked into a committed snapshot named by its chain ID (image-spec
  config.md, "Layer ChainID"): ChainID(L0) = DiffID(L0), ChainID(L0..Ln) =
  sha256(ChainID(L0..Ln-1) + " " + DiffID(Ln)). The string "sha256:<hex>" is the snapshot name,
  so images that share a base share its snapshots, and gc can find them from configs.
- A container's rootfs is the active snapshot `container-<id>` on top of its image's top chain
  snapshot, recorded in metadata (containers table) so that gc keeps it and `remove` sees it.
- New content (import, commit, bootstrap, unpack in progress) is held by a lease until the image
  record that references it exists; the lease goes away when the operation ends either way.
- A pull with the overlay snapshotter unpacks layers in parallel and out of order:
  `stage_layer` applies a layer into a staging directory of the snapshotter (no parent needed:
  overlay layers record whiteouts), `commit_layer` commits it on its parent, bottom up, in one
  snapshot transaction (snapshots/store.py, "Staged layers", for the crash argument).
- An uncompressed layer whose blob digest is its diff_id is hashed once, not twice: the blob's
  verification (content store read, or the pull's writer) is the diff_id check.
- Image records carry one Pallet label, `pallet.image.parent` (the image a commit was made
  from), which gives inspect's `Parent` and Docker's rules for dependent child images.

Removal follows Docker (daemon/images/image_delete.go): `remove(name)` untags; the image goes
when its last name does, unless a container uses it (Conflict, naming the container; with
force the name goes and the image stays, dangling, for the container) or child images depend
on it (it stays as an untagged parent). `remove(id)` untags every name first; it refuses without
force an image named in several repositories or used by a container, and refuses even with force
an image that has children. Deleting an image then deletes its untagged, unused, childless
parents (`prune`, Docker's default; `noprune` is prune=False). Blobs and snapshots are left to gc.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import shutil
import tarfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

from pallet.errors import (
    AlreadyExists,
    Conflict,
    InvalidArgument,
    NotFound,
    NotSupported,
    PalletError,
)
from pallet.image.changes import apply_changes
from pallet.image.content import CHUNK, ContentStore
from pallet.image.inspect import ImageFacts, history_items, image_inspect, image_summary
from pallet.image.layers import apply_layer, decompress_layer, write_diff, write_tree
from pallet.image.layers.compression import Compression, Compressor, detect
from pallet.image.metadata import ImageRecord, MetadataStore, NameRecord, now_rfc3339
from pallet.image.snapshots import Kind, Snapshotter, create_snapshotter
from pallet.oci import mediatypes as mt
from pallet.oci.descriptor import Descriptor
from pallet.oci.digest import Digest, DigestMismatch
from pallet.oci.manifest import (
    ImageConfig,
    Manifest,
    canonical_json,
    chain_ids,
    check_image,
    parse_config,
    parse_manifest,
)
from pallet.oci.mount import Mount
from pallet.oci.reference import DEFAULT_DOMAIN, parse_normalized
from pallet.syscalls import flags as F

LABEL_PARENT = "pallet.image.parent"
LEASE_TTL = timedelta(hours=24)
BUILTIN_IMAGES = ("hello-world", "busybox", "debian")
DEFAULT_DEBIAN_SUITE = "bookworm"
_HEX = frozenset("0123456789abcdef")


def short_id(image_id: str) -> str:
    """Docker's 12-hex-digit short form of an id."""
    return image_id.partition(":")[2][:12] or image_id[:12]


@dataclass(frozen=True)
class Image:
    """One stored image, loaded: its record, manifest (and descriptor) and config."""

    record: ImageRecord
    manifest_desc: Descriptor
    manifest: Manifest
    config: ImageConfig

    @property
    def id(self) -> Digest:
        return self.record.id

    @property
    def parent(self) -> str:
        return self.record.labels.get(LABEL_PARENT, "")


# --- performing a snapshotter's mounts ----------------------------------------------------------

# mount(8) words the kernel takes as flags; every other option (but `x-*`) is filesystem data.
_MOUNT_FLAGS: dict[str, tuple[bool, int]] = {
    "ro": (False, F.MS_RDONLY), "rw": (True, F.MS_RDONLY),
    "bind": (False, F.MS_BIND), "rbind": (False, F.MS_BIND | F.MS_REC),
    "nosuid": (False, F.MS_NOSUID), "nodev": (False, F.MS_NODEV), "noexec": (False, F.MS_NOEXEC),
    "suid": (True, F.MS_NOSUID), "dev": (True, F.MS_NODEV), "exec": (True, F.MS_NOEXEC),
}


def mount_args(m: Mount) -> tuple[int, str]:
    """(flags, data) for mount(2) from a Mount's options (`x-` options left out)."""
    flags = 0
    data: list[str] = []
    for opt in m.kernel_options():
        if opt in _MOUNT_FLAGS:
            clear, bit = _MOUNT_FLAGS[opt]
            flags = flags & ~bit if clear else flags | bit
        else:
            data.append(opt)
    return flags, ",".join(data)


def _in_dir(directory: str | None, fn: Callable[[], None]) -> None:
    """Run `fn` with `directory` as the working directory (pallet.oci.mount, x-pallet.chdir).

    The cwd is per process: a single-threaded caller changes it and changes it back; in a
    multi-threaded one (palletd) a forked child does the work, as containerd's mountAt does.
    """
    if directory is None:
        fn()
        return
    if threading.active_count() == 1:
        cwd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.chdir(directory)
            fn()
        finally:
            os.fchdir(cwd)
            os.close(cwd)
        return
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            os.chdir(directory)
            fn()
        except OSError as exc:
            code = exc.errno or 1
        except BaseException:
            code = 255
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code:
        raise OSError(code, f"mount with working directory {directory} (in a child): "
                            f"{os.strerror(code) if code < 255 else 'failed'}")


def _dest(target: str, m: Mount) -> str:
    return os.path.join(target, m.target) if m.target else target


def mount_rootfs(mounts: Sequence[Mount], target: str | os.PathLike[str], *,
                 syscalls: Any = None) -> None:
    """Mount a snapshotter's `mounts` at `target`, in order; all or nothing.

    Bind mounts with `ro` are made read-only by a remount (mount(2): MS_RDONLY is ignored on
    the first MS_BIND call). A mount carrying x-pallet.chdir is made with that working
    directory. `syscalls` is the kernel door (pallet.syscalls.real() by default).
    """
    if syscalls is None:
        from pallet.syscalls import real

        syscalls = real()
    root = os.fspath(target)
    done: list[str] = []
    try:
        for m in mounts:
            dest = _dest(root, m)
            flags, data = mount_args(m)
            bind = bool(flags & F.MS_BIND)
            fstype = None if bind else m.type

            first = flags & ~F.MS_RDONLY if bind else flags

            def do(m: Mount = m, dest: str = dest, first: int = first, data: str = data,
                   fstype: str | None = fstype) -> None:
                syscalls.mount(m.source, dest, fstype, first, data or None)

            _in_dir(m.chdir, do)
            done.append(dest)
            if bind and flags & F.MS_RDONLY:
                syscalls.mount(None, dest, None, F.MS_REMOUNT | F.MS_BIND | F.MS_RDONLY, None)
    except BaseException:
        for dest in reversed(done):
            with contextlib.suppress(OSError):
                syscalls.umount2(dest, F.MNT_DETACH)
        raise


def unmount_rootfs(mounts: Sequence[Mount], target: str | os.PathLike[str], *,
                   syscalls: Any = None) -> None:
    """Undo `mount_rootfs`: unmount in reverse order; a busy mount is detached (MNT_DETACH),
    one that is not mounted (EINVAL) is skipped."""
    if syscalls is None:
        from pallet.syscalls import real

        syscalls = real()
    root = os.fspath(target)
    for m in reversed(list(mounts)):
        dest = _dest(root, m)
        try:
            syscalls.umount2(dest, 0)
        except OSError as exc:
            if exc.errno == errno.EBUSY:
                syscalls.umount2(dest, F.MNT_DETACH)
            elif exc.errno not in (errno.EINVAL, errno.ENOENT):
                raise


def readonly_view(mounts: Sequence[Mount]) -> Mount | str:
    """A read-only view of an active snapshot's merged tree, without touching its upper dir:
    for overlay, a lower-only overlay with the upper dir as the top lower layer (its whiteouts
    and opaque dirs work there too; overlayfs.rst "Multiple lower layers"); for a bind mount,
    the source directory itself (returned as a str: nothing to mount)."""
    if len(mounts) != 1:
        raise NotSupported(f"a read-only view of {len(mounts)} mounts is not supported")
    m = mounts[0]
    if m.type == "bind":
        return m.source
    if m.type != "overlay":
        raise NotSupported(f"a read-only view of a {m.type} mount is not supported")
    upper, lower = m.option("upperdir"), m.option("lowerdir")
    if upper is None or lower is None:
        return m  # already read-only
    opts = [o for o in m.options if not o.startswith(("upperdir=", "workdir=", "lowerdir="))
            and o not in ("rw", "ro")]
    return Mount("overlay", m.source, "", ("ro", f"lowerdir={upper}:{lower}", *opts))


# --- writing layers -----------------------------------------------------------------------------

class _LayerSink:
    """An uncompressed tar written here is hashed (its diff_id), compressed, and passed on."""

    def __init__(self, out: Any, compression: Compression, level: int | None) -> None:
        self._h = hashlib.sha256()
        self.size = 0
        self._head = b""
        self._compressor = Compressor(out, compression, level)

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        if len(self._head) < tarfile.BLOCKSIZE:
            self._head += bytes(view[:tarfile.BLOCKSIZE - len(self._head)])
        self._h.update(view)
        self.size += len(view)
        self._compressor.write(view)
        return len(view)

    def finish(self) -> str:
        self._compressor.finish()
        return f"sha256:{self._h.hexdigest()}"

    def looks_like_tar(self) -> bool:
        """ustar magic in the first header, or an empty archive (zero blocks)."""
        head = self._head
        if len(head) < tarfile.BLOCKSIZE:
            return False
        return head[257:262] == b"ustar" or head == bytes(tarfile.BLOCKSIZE)


class _Tee:
    """Reads from `src`, handing every byte read to `out` as well."""

    def __init__(self, src: Any, out: Any) -> None:
        self.src, self.out = src, out

    def read(self, n: int = -1, /) -> bytes:
        data: bytes = self.src.read(n)
        if data:
            self.out.write(data)
        return data


def _layer_media_type(compression: Compression, docker: bool) -> str:
    if docker:
        return {Compression.GZIP: mt.DOCKER_LAYER_GZIP, Compression.ZSTD: mt.DOCKER_LAYER_ZSTD,
                Compression.NONE: mt.DOCKER_LAYER}[compression]
    return {Compression.GZIP: mt.OCI_LAYER_GZIP, Compression.ZSTD: mt.OCI_LAYER_ZSTD,
            Compression.NONE: mt.OCI_LAYER}[compression]


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the service ----------------------------------------------------------------------------------

class ImageService:
    """Images under one data root. Methods may be called from several threads; each operation
    is safe against a concurrent one of another process on the same root (SQLite transactions,
    content-addressed blobs, snapshot names that only one committer can take)."""

    def __init__(self, data_root: str | os.PathLike[str], snapshotter: str = "auto", *,
                 compression: str = "none", compression_level: int | None = None,
                 syscalls: Any = None) -> None:
        self.root = Path(data_root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.content = ContentStore(self.root / "content")
        self.meta = MetadataStore(self.root / "metadata.db")
        self.snapshots: Snapshotter = create_snapshotter(snapshotter, self.root / "snapshots")
        self.driver: str = getattr(self.snapshots, "driver", snapshotter)
        # What a crash left (layers a killed pull had staged, half-deleted snapshots): `cleanup`
        # keeps what a live process is still filling (its flock), as the Snapshotter contract says
        # to run it at start-up.
        with contextlib.suppress(OSError, PalletError):
            self.snapshots.cleanup()
        self.compression = Compression(compression)
        self.compression_level = compression_level
        self.syscalls = syscalls
        self.tmp = self.root / "tmp"
        self.tmp.mkdir(exist_ok=True)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def close(self) -> None:
        self.snapshots.close()
        self.meta.close()

    def __enter__(self) -> ImageService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- lookup ---------------------------------------------------------------------------------

    def resolve(self, ref_or_id: str | Image) -> ImageRecord:
        """The image record `ref_or_id` names (see module docstring); NotFound otherwise."""
        if isinstance(ref_or_id, Image):
            return ref_or_id.record
        s = ref_or_id.strip() if isinstance(ref_or_id, str) else ""
        if not s:
            raise InvalidArgument(f"invalid image reference {ref_or_id!r}")
        hex_part = s.removeprefix("sha256:")
        is_hex = bool(hex_part) and set(hex_part) <= _HEX
        if is_hex and len(hex_part) == 64:
            return self.meta.get_image(f"sha256:{hex_part}")
        if not s.startswith("sha256:"):
            try:
                ref = parse_normalized(s)
            except InvalidArgument:
                ref = None
            if ref is not None:
                with contextlib.suppress(NotFound):
                    return self.meta.get_image(self.meta.get_name(ref.string()).image_id)
                if ref.digest is not None:
                    for rec in self.meta.images():
                        if rec.manifest_digest == ref.digest:
                            return rec
        if is_hex:
            found = self.meta.find_image_ids(hex_part)
            if len(found) == 1:
                return self.meta.get_image(found[0])
            if len(found) > 1:
                raise InvalidArgument(f"short image id {s!r} is ambiguous: {len(found)} images match")
        raise NotFound(f"no such image: {s}")

    def get(self, ref_or_id: str | Image) -> Image:
        """The image, loaded and verified (its config hashes to its id)."""
        if isinstance(ref_or_id, Image):
            return ref_or_id
        rec = self.resolve(ref_or_id)
        mbytes = self.content.read(rec.manifest_digest)
        manifest = parse_manifest(mbytes, rec.media_type)
        if manifest.config.digest != rec.id:
            raise DigestMismatch(f"image {rec.id}: its manifest {rec.manifest_digest} names config "
                                 f"{manifest.config.digest}")
        config = parse_config(self.content.read(rec.id))
        desc = Descriptor(manifest.media_type, rec.manifest_digest, len(mbytes))
        return Image(rec, desc, manifest, config)

    def images(self) -> list[Image]:
        out = []
        for rec in self.meta.images():
            with contextlib.suppress(NotFound):
                out.append(self.get(rec.id))
        return out

    # --- leases (gc protection while an operation runs) ----------------------------------------

    @contextlib.contextmanager
    def _lease(self, purpose: str, content: Iterable[str] = ()) -> Iterator[str]:
        expires = (datetime.now(UTC) + LEASE_TTL).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        lease = self.meta.create_lease(expires=expires, labels={"pallet.purpose": purpose},
                                       resources=[("content", d) for d in content])
        try:
            yield lease.id
        finally:
            with contextlib.suppress(NotFound):
                self.meta.delete_lease(lease.id)

    # --- unpack -------------------------------------------------------------------------------

    def _chain_lock(self, chain: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(chain, threading.Lock())

    def _committed(self, name: str) -> bool:
        try:
            return self.snapshots.stat(name).kind == Kind.COMMITTED
        except NotFound:
            return False

    def _lower_dirs(self, name: str | None) -> list[str]:
        """The fs dirs of committed snapshot `name` and its ancestors, nearest first."""
        chain_dirs = getattr(self.snapshots, "chain_dirs", None)
        if chain_dirs is not None and name is not None:
            # One metadata read instead of two per ancestor (a 50-layer pull asked 1275 times).
            return [str(d) for d in chain_dirs(name)]
        dirs: list[str] = []
        while name is not None:
            dirs.append(str(self.snapshots.upper_dir(name)))
            name = self.snapshots.stat(name).parent
        return dirs

    @property
    def _overlay(self) -> bool:
        return self.driver == "overlay"

    def unpack(self, image: str | Image) -> str | None:
        """Unpack every layer of `image` not unpacked yet; return the top chain id (None for an
        image without layers). A concurrent unpack of the same chain in this process waits for
        the first; one in another process applies in parallel and the loser's commit finds the
        name taken (AlreadyExists) and drops its copy."""
        img = self.get(image)
        check_image(img.manifest, img.config)
        chains = chain_ids(img.config.diff_ids)
        parent: str | None = None
        for i, chain in enumerate(chains):
            if not self._committed(chain):
                with self._chain_lock(chain):
                    if not self._committed(chain):
                        self._apply(img.manifest.layers[i], str(img.config.diff_ids[i]), chain, parent)
            parent = chain
        return parent

    def _apply(self, layer: Descriptor, diff_id: str, chain: str, parent: str | None,
               source: Any = None, before_commit: Callable[[], None] | None = None,
               lease: str | None = None) -> None:
        """Apply `layer` (read from the content store, or from `source`, a reader of its
        compressed bytes) as snapshot `chain`; `before_commit` runs just before the snapshot is
        committed and may refuse it by raising (a pull waits there for the blob's digest).
        `lease`: the caller's lease to hold the extraction snapshot (else one of its own)."""
        key = f"extract-{secrets.token_hex(8)}-{chain}"
        own = self._lease("unpack") if lease is None else contextlib.nullcontext(lease)
        with own as lease:
            self.meta.add_lease_resource(lease, "snapshot", key)
            self.snapshots.prepare(key, parent, labels={"pallet.unpack": chain})
            committed = False
            try:
                target = str(self.snapshots.upper_dir(key))
                lowers = self._lower_dirs(parent) if self._overlay else []
                if source is not None:
                    reader = decompress_layer(source)
                    result = apply_layer(reader, target, overlay_whiteouts=self._overlay, lower_dirs=lowers,
                                         verified_diff_id=_same_bytes(layer, diff_id, reader))
                    while source.read(CHUNK):
                        pass
                else:
                    with self.content.open(layer.digest) as blob:
                        reader = decompress_layer(blob)
                        result = apply_layer(reader, target, overlay_whiteouts=self._overlay,
                                             lower_dirs=lowers,
                                             verified_diff_id=_same_bytes(layer, diff_id, reader))
                        while blob.read(CHUNK):  # verify the blob's digest to the last byte
                            pass
                if result.diff_id != diff_id:
                    raise DigestMismatch(f"layer {layer.digest} unpacks to diff_id {result.diff_id}, "
                                         f"the config says {diff_id}")
                if before_commit is not None:
                    before_commit()
                try:
                    self.snapshots.commit(chain, key)
                    committed = True
                except AlreadyExists:
                    pass  # another unpacker committed this chain first: use theirs
            finally:
                if not committed:
                    with contextlib.suppress(PalletError, OSError):
                        self.snapshots.remove(key)

    # --- container rootfs ---------------------------------------------------------------------

    @staticmethod
    def container_key(container_id: str) -> str:
        return f"container-{container_id}"

    def prepare_container_rootfs(self, container_id: str, image: str | Image,
                                 labels: Mapping[str, str] | None = None) -> list[Mount]:
        """Unpack `image` and make the container's writable snapshot on top; return its mounts
        (perform them with `mount_rootfs`). AlreadyExists if the container has one."""
        if not container_id or "/" in container_id or "\0" in container_id:
            raise InvalidArgument(f"invalid container id {container_id!r}")
        img = self.get(image)
        chain = self.unpack(img)
        key = self.container_key(container_id)
        self.meta.add_container(container_id, key, img.id, labels)
        self.meta.touch_image(img.id)  # the watermark gc's least-recently-used order
        try:
            return self.snapshots.prepare(key, chain, labels={"pallet.container": container_id})
        except BaseException:
            with contextlib.suppress(PalletError):
                self.meta.remove_container(container_id)
            raise

    def container_mounts(self, container_id: str) -> list[Mount]:
        return self.snapshots.mounts(self.meta.get_container(container_id).snapshot_key)

    def remove_container_rootfs(self, container_id: str) -> None:
        """Forget the container's snapshot and record (the caller has unmounted it)."""
        rec = self.meta.get_container(container_id)
        with contextlib.suppress(NotFound):
            self.snapshots.remove(rec.snapshot_key)
        self.meta.remove_container(container_id)

    def mount(self, mounts: Sequence[Mount], target: str | os.PathLike[str]) -> None:
        mount_rootfs(mounts, target, syscalls=self.syscalls)

    def unmount(self, mounts: Sequence[Mount], target: str | os.PathLike[str]) -> None:
        unmount_rootfs(mounts, target, syscalls=self.syscalls)

    # --- creating images ------------------------------------------------------------------------

    def _write_layer(self, lease: str, produce: Callable[[_LayerSink], object],
                     compression: Compression, level: int | None, docker: bool = False,
                     ) -> tuple[Descriptor, str, int]:
        """Run `produce(sink)` to write an uncompressed tar; store it compressed. Returns
        (descriptor, diff_id, uncompressed size)."""
        media_type = _layer_media_type(compression, docker)
        with self.content.writer(media_type=media_type) as w:
            sink = _LayerSink(w, compression, level)
            produce(sink)
            diff_id = sink.finish()
            if not sink.looks_like_tar():
                raise InvalidArgument("the layer is not a tar archive")
            desc = w.commit()
        self.meta.add_lease_resource(lease, "content", desc.digest)
        return desc, diff_id, sink.size

    def _create_image(self, lease: str, config: Mapping[str, Any], layers: Sequence[Descriptor],
                      *, docker: bool = False, parent: str = "", names: Iterable[str] = ()) -> Image:
        """Store config and manifest, record the image, and point `names` at it."""
        cfg = parse_config(canonical_json(dict(config)))
        check_manifest_type = mt.DOCKER_MANIFEST if docker else mt.OCI_MANIFEST
        cdesc = self.content.put(cfg.serialize(), mt.DOCKER_CONFIG if docker else mt.OCI_CONFIG)
        self.meta.add_lease_resource(lease, "content", cdesc.digest)
        manifest = Manifest(check_manifest_type, cdesc, tuple(layers))
        check_image(manifest, cfg)
        mdesc = self.content.put(manifest.serialize(), check_manifest_type)
        self.meta.add_lease_resource(lease, "content", mdesc.digest)
        # The config's labels are recorded for `prune --filter label=...`; the parent link is ours
        # alone (an image must not be able to claim a parent through its own labels).
        labels = {k: v for k, v in (cfg.labels or {}).items() if k != LABEL_PARENT}
        if parent:
            labels[LABEL_PARENT] = parent
        size = sum(layer.size for layer in layers)
        rec = ImageRecord(cdesc.digest, mdesc.digest, check_manifest_type, now_rfc3339(), labels, size)
        self.meta.put_image(rec)
        img = Image(rec, mdesc, manifest, cfg)
        for name in names:
            self._set_name(name, img)
        return img

    def _set_name(self, name: str, img: Image) -> None:
        self.meta.set_name(name, img.id, img.manifest_desc.digest)
        # Mirror the name into index.json so skopeo/umoci see it as a tag of the layout.
        self.content.tag(name, img.manifest_desc)

    @staticmethod
    def _tag_name(ref: str) -> str:
        parsed = parse_normalized(ref)
        if parsed.digest is not None:
            raise InvalidArgument(f"refusing to create a tag with a digest reference: {ref}")
        return parsed.string()

    def import_image(self, stream: BinaryIO, ref: str | None = None, changes: Iterable[str] = (),
                     message: str = "", *, arch: str | None = None, source: str = "-",
                     compression: str | None = None) -> str:
        """`docker import`: a rootfs tarball (plain, gzip, zstd, xz or bzip2) becomes a one-layer
        image; returns its id. A gzip or zstd input is stored as it came (no recompression);
        the others are stored with the service's compression (none by default: layers made here
        are stored uncompressed, as Docker's classic store does, and compressed when pushed)."""
        from pallet.image.builtin import oci_platform

        names = [self._tag_name(ref)] if ref else []
        architecture, variant = oci_platform(arch)
        with self._lease("import") as lease:
            layer, diff_id = self._import_layer(lease, stream, compression)
            now = now_rfc3339()
            comment = message or f"Imported from {source}"
            config: dict[str, Any] = {"created": now, "architecture": architecture, "os": "linux"}
            if variant:
                config["variant"] = variant
            config["config"] = apply_changes({}, changes)
            config["rootfs"] = {"type": "layers", "diff_ids": [diff_id]}
            config["history"] = [{"created": now, "created_by": "", "comment": comment}]
            config["comment"] = comment
            return str(self._create_image(lease, config, [layer], names=names).id)

    def _import_layer(self, lease: str, stream: BinaryIO, compression: str | None,
                      ) -> tuple[Descriptor, str]:
        comp = Compression(compression) if compression else self.compression
        head = b""
        while len(head) < 6 and (more := stream.read(6 - len(head))):
            head += more
        src = _Prefixed(head, stream)
        kind = detect(head)
        if kind in (Compression.GZIP, Compression.ZSTD) and compression is None:
            # Keep the bytes as they came; decompress alongside only to hash the diff_id.
            with self.content.writer(media_type=_layer_media_type(kind, False)) as w:
                plain = decompress_layer(_Tee(src, w))
                h = hashlib.sha256()
                first = b""
                while chunk := plain.read(CHUNK):
                    if len(first) < tarfile.BLOCKSIZE:
                        first += chunk[:tarfile.BLOCKSIZE]
                    h.update(chunk)
                while src.read(CHUNK):  # what the decompressor left (padding) is part of the blob
                    pass
                if not (first[257:262] == b"ustar" or first[:tarfile.BLOCKSIZE] == bytes(tarfile.BLOCKSIZE)):
                    raise InvalidArgument("the imported stream is not a tar archive")
                desc = w.commit()
            self.meta.add_lease_resource(lease, "content", desc.digest)
            return desc, f"sha256:{h.hexdigest()}"

        def produce(sink: _LayerSink) -> None:
            plain = decompress_layer(src)
            while chunk := plain.read(CHUNK):
                sink.write(chunk)

        desc, diff_id, _ = self._write_layer(lease, produce, comp, self.compression_level)
        return desc, diff_id

    def commit(self, container_id: str, ref: str | None = None, *, author: str = "",
               message: str = "", changes: Iterable[str] = (), created_by: str = "",
               pause: Callable[[], AbstractContextManager[object]] | None = None,
               compression: str | None = None, level: int | None = None,
               upper_view: Callable[[str], AbstractContextManager[str]] | None = None) -> str:
        """`docker commit`: the container's change (its overlay upper dir) becomes one new layer
        on top of its image; returns the new image id. `pause`, if given, is entered around the
        read of the upper dir (the engine freezes the container there). `upper_view`, if given,
        turns the upper dir's path into the path to read it through (the engine's idmapped view
        of a --userns=auto container's layer, so that the layer stores container ids). The cost
        is that of walking and compressing the change: the image's own layers are never read."""
        if not self._overlay:
            raise NotSupported(f"commit needs the overlay snapshotter (this store uses {self.driver}): "
                               "the copying snapshotter keeps no separate upper dir to diff")
        names = [self._tag_name(ref)] if ref else []
        crec = self.meta.get_container(container_id)
        if crec.image_id is None:
            raise NotFound(f"container {container_id} has no image to commit on")
        parent = self.get(crec.image_id)
        comp = Compression(compression) if compression else self.compression
        upper = str(self.snapshots.upper_dir(crec.snapshot_key))
        lowers = self._lower_dirs(self.snapshots.stat(crec.snapshot_key).parent)
        docker = parent.manifest.is_docker
        with self._lease("commit") as lease:
            # write_diff hashes the tar (diff_id) and compresses in the same pass; the content
            # writer hashes what lands on disk (the digest, verified at commit).
            with self.content.writer(media_type=_layer_media_type(comp, docker)) as w:
                with pause() if pause is not None else contextlib.nullcontext(), \
                        upper_view(upper) if upper_view is not None else contextlib.nullcontext(upper) as src:
                    result = write_diff(src, w, lower_dirs=lowers, compression=comp,
                                        level=level if level is not None else self.compression_level)
                layer = w.commit()
            self.meta.add_lease_resource(lease, "content", layer.digest)
            diff_id = result.diff_id
            config = self._commit_config(parent.config, diff_id, author=author, message=message,
                                         changes=changes, created_by=created_by)
            img = self._create_image(lease, config, [*parent.manifest.layers, layer], docker=docker,
                                     parent=str(parent.id), names=names)
        return str(img.id)

    @staticmethod
    def _commit_config(base: ImageConfig, diff_id: str, *, author: str, message: str,
                       changes: Iterable[str], created_by: str) -> dict[str, Any]:
        cfg = base.to_json()
        # What described the parent's own making is not true of the child.
        for key in ("container", "container_config", "docker_version", "comment", "author"):
            cfg.pop(key, None)
        now = now_rfc3339()
        cfg["created"] = now
        if author:
            cfg["author"] = author
        cfg["config"] = apply_changes(base.config, changes)
        cfg["rootfs"] = {"type": "layers", "diff_ids": [*map(str, base.diff_ids), diff_id]}
        entry: dict[str, Any] = {"created": now}
        if author:
            entry["author"] = author
        entry["created_by"] = created_by
        if message:
            entry["comment"] = message
            cfg["comment"] = message
        cfg["history"] = [*cfg.get("history", []), entry]
        return cfg

    # --- build steps (pallet.build.builder) -------------------------------------------------------

    @contextlib.contextmanager
    def build_lease(self) -> Iterator[str]:
        """A gc lease held for a whole build: its snapshots and blobs stay until images hold them."""
        with self._lease("build") as lease:
            yield lease

    def prepare_build_rootfs(self, lease: str, key: str, image: Image | None, *,
                             readonly: bool = False) -> list[Mount]:
        """An active snapshot `key` (a view with `readonly`) on top of `image` (unpacked first;
        None is scratch), held by `lease`; returns its mounts."""
        chain = self.unpack(image) if image is not None else None
        self.meta.add_lease_resource(lease, "snapshot", key)
        make = self.snapshots.view if readonly else self.snapshots.prepare
        return make(key, chain, labels={"pallet.build": key})

    def remove_build_rootfs(self, key: str) -> None:
        """Forget a build snapshot (unmounted by the caller); a missing one is fine."""
        with contextlib.suppress(NotFound):
            self.snapshots.remove(key)

    def commit_build_layer(self, lease: str, key: str, image: Image | None, *,
                           source_date_epoch: int | None = None) -> tuple[Descriptor, str]:
        """Turn the active snapshot `key` on `image` into a layer: its upper dir is diffed into
        a blob (mtimes clamped to `source_date_epoch` when given) and the snapshot itself is
        committed under the new chain id, so the next step needs no unpack. Returns (layer
        descriptor, diff_id)."""
        if not self._overlay:
            raise NotSupported(f"builds need the overlay snapshotter (this store uses {self.driver})")
        base = [str(d) for d in image.config.diff_ids] if image is not None else []
        parent = chain_ids(base)[-1] if base else None
        upper = str(self.snapshots.upper_dir(key))
        docker = image.manifest.is_docker if image is not None else False
        with self.content.writer(media_type=_layer_media_type(self.compression, docker)) as w:
            result = write_diff(upper, w, lower_dirs=self._lower_dirs(parent) if parent else [],
                                compression=self.compression, level=self.compression_level,
                                source_date_epoch=source_date_epoch)
            layer = w.commit()
        self.meta.add_lease_resource(lease, "content", layer.digest)
        chain = chain_ids([*base, result.diff_id])[-1]
        try:
            self.snapshots.commit(chain, key)
        except AlreadyExists:  # the same layer was made before: keep that snapshot
            self.remove_build_rootfs(key)
        return layer, result.diff_id

    def create_built_image(self, lease: str, config: Mapping[str, Any], layers: Sequence[Descriptor],
                           *, docker: bool = False, parent: str = "", names: Iterable[str] = ()) -> Image:
        """Record a build step's image: `config` (a full image config) over `layers`, with the
        parent link Docker's classic builder keeps between the images of consecutive steps."""
        return self._create_image(lease, config, layers, docker=docker, parent=parent,
                                  names=[self._tag_name(n) for n in names])

    # --- export -----------------------------------------------------------------------------------

    def export_container(self, container_id: str, out: Any,
                         upper_view: Callable[[str], AbstractContextManager[str]] | None = None) -> None:
        """`docker export`: the container's merged file system as an uncompressed tar on `out`.

        The tree is read through a read-only overlay of the upper dir over the image layers (see
        `readonly_view`), so a running container's own mount is not touched. `upper_view` is
        commit's: the upper dir is read through it."""
        rec = self.meta.get_container(container_id)
        mounts = self.snapshots.mounts(rec.snapshot_key)
        if upper_view is not None and len(mounts) == 1:
            m = mounts[0]
            upper = m.option("upperdir") if m.type == "overlay" else m.source
            with upper_view(upper or m.source) as shifted:
                if m.type == "overlay":
                    opts = tuple(f"upperdir={shifted}" if o.startswith("upperdir=") else o for o in m.options)
                    self._export_view(readonly_view([Mount(m.type, m.source, m.target, opts)]), out)
                else:
                    self._export_view(shifted, out)
            return
        self._export_view(readonly_view(mounts), out)

    def _export_view(self, view: Mount | str, out: Any) -> None:
        if isinstance(view, str):
            write_tree(view, out, compression="none")
            return
        target = Path(os.path.realpath(self.tmp)) / f"export-{secrets.token_hex(8)}"
        target.mkdir()
        try:
            mount_rootfs([view], target, syscalls=self.syscalls)
            try:
                write_tree(str(target), out, compression="none")
            finally:
                unmount_rootfs([view], target, syscalls=self.syscalls)
        finally:
            with contextlib.suppress(OSError):
                target.rmdir()

    # --- names and removal ------------------------------------------------------------------------

    def tag(self, source: str | Image, ref: str) -> str:
        """Point `ref` at the image `source` names; returns the normalized name."""
        name = self._tag_name(ref)
        self._set_name(name, self.get(source))
        return name

    def untag(self, ref: str) -> NameRecord:
        """Remove the name `ref` (NotFound if it names nothing); the image stays."""
        name = parse_normalized(ref).string()
        rec = self.meta.delete_name(name)
        with contextlib.suppress(NotFound):
            self.content.untag(name)
        return rec

    def _users(self, image_id: str) -> list[str]:
        return [c.id for c in self.meta.containers() if c.image_id == image_id]

    def _children(self, image_id: str) -> list[str]:
        return [r.id for r in self.meta.images() if r.labels.get(LABEL_PARENT) == image_id]

    def remove(self, ref_or_id: str, *, force: bool = False, prune: bool = True) -> list[dict[str, str]]:
        """`docker rmi`: returns Docker's ImageDeleteResponseItem list ({"Untagged": name} and
        {"Deleted": id} entries). See the module docstring for the rules."""
        by_name: NameRecord | None = None
        s = ref_or_id.strip()
        hex_part = s.removeprefix("sha256:")
        if not (s.startswith("sha256:") or (len(hex_part) == 64 and set(hex_part) <= _HEX)):
            with contextlib.suppress(InvalidArgument, NotFound):
                by_name = self.meta.get_name(parse_normalized(s).string())
        items: list[dict[str, str]] = []
        if by_name is not None:
            image_id = str(by_name.image_id)
            others = [n for n in self.meta.names(image_id) if n.name != by_name.name]
            if not others:
                users = self._users(image_id)
                if users and not force:
                    raise Conflict(f'unable to remove repository reference "{s}" (must force) - '
                                   f"container {users[0][:12]} is using its referenced image "
                                   f"{short_id(image_id)}")
            self.untag(by_name.name)
            items.append({"Untagged": parse_normalized(by_name.name).familiar()})
            others = self._untag_repo_digests(by_name.name, others, items)
            if others or self._users(image_id) or self._children(image_id):
                return items
            return items + self._delete(image_id, prune)
        image_id = str(self.resolve(s).id)
        names = self.meta.names(image_id)
        repos = {parse_normalized(n.name).name for n in names}
        if len(repos) > 1 and not force:
            raise Conflict(f"unable to delete {short_id(image_id)} (must be forced) - image is "
                           "referenced in multiple repositories")
        users = self._users(image_id)
        if users and not force:
            raise Conflict(f"unable to delete {short_id(image_id)} (must be forced) - image is being "
                           f"used by container {users[0][:12]}")
        if self._children(image_id):
            raise Conflict(f"unable to delete {short_id(image_id)} (cannot be forced) - image has "
                           "dependent child images")
        for n in names:
            self.untag(n.name)
            items.append({"Untagged": parse_normalized(n.name).familiar()})
        if users:
            return items
        return items + self._delete(image_id, prune)

    def _untag_repo_digests(self, removed_name: str, others: list[NameRecord],
                            items: list[dict[str, str]]) -> list[NameRecord]:
        """When the last tag of a repository goes, its digest references (`repo@sha256:...`,
        recorded by pulls and pushes) go too (moby daemon/images/image_delete.go); returns the
        names left."""
        removed = parse_normalized(removed_name, default_tag=False)
        refs = [(n, parse_normalized(n.name, default_tag=False)) for n in others]
        if removed.digest is not None or any(r.name == removed.name and r.digest is None for _, r in refs):
            return others
        left = []
        for n, r in refs:
            if r.name == removed.name and r.digest is not None:
                self.untag(n.name)
                items.append({"Untagged": r.familiar()})
            else:
                left.append(n)
        return left

    def _delete(self, image_id: str, prune: bool) -> list[dict[str, str]]:
        rec = self.meta.get_image(image_id)
        self.meta.delete_image(image_id)
        items = [{"Deleted": image_id}]
        parent = rec.labels.get(LABEL_PARENT)
        if prune and parent:
            with contextlib.suppress(NotFound):
                self.meta.get_image(parent)
                if not (self.meta.names(parent) or self._users(parent) or self._children(parent)):
                    items += self._delete(parent, prune)
        return items

    # --- inspect, history, list -------------------------------------------------------------------

    def _facts(self, img: Image, containers: int = -1) -> ImageFacts:
        names = self.meta.names(img.id)
        tags: list[str] = []
        digests: list[str] = []
        for n in names:
            ref = parse_normalized(n.name, default_tag=False)
            (digests if ref.digest is not None and ref.tag is None else tags).append(ref.familiar())
        data: dict[str, str] = {}
        chains = chain_ids(img.config.diff_ids)
        if chains and self._committed(chains[-1]):
            dirs = self._lower_dirs(chains[-1])
            data = {"UpperDir": dirs[0]}
            if len(dirs) > 1:
                data["LowerDir"] = ":".join(dirs[1:])
        return ImageFacts(
            id=str(img.id), manifest=img.manifest_desc, config=img.config, repo_tags=tags,
            repo_digests=digests, parent=img.parent, size=img.record.size,
            last_tag_time=max((n.updated for n in names), default=None), containers=containers,
            driver=self.driver, driver_data=data)

    def inspect(self, ref_or_id: str) -> dict[str, Any]:
        """Docker's ImageInspect object for the image."""
        img = self.get(ref_or_id)
        return image_inspect(self._facts(img, len(self._users(img.id))))

    def history(self, ref_or_id: str) -> list[dict[str, Any]]:
        """Docker's HistoryResponseItem list, newest first."""
        img = self.get(ref_or_id)
        sizes = []
        for layer, chain in zip(img.manifest.layers, chain_ids(img.config.diff_ids), strict=False):
            try:
                sizes.append(self.snapshots.usage(chain).size)
            except NotFound:
                sizes.append(layer.size)
        ids: dict[int, str] = {}
        parent_id = img.parent
        while parent_id:
            try:
                parent = self.get(parent_id)
            except NotFound:
                break
            if len(parent.config.history) < len(img.config.history):
                ids[len(parent.config.history) - 1] = str(parent.id)
            parent_id = parent.parent
        return history_items(self._facts(img), sizes, ids)

    def list_images(self, *, all: bool = False) -> list[dict[str, Any]]:
        """Docker's ImageSummary list, newest first; untagged parents of other images only with
        `all` (`docker images -a`)."""
        users: dict[str, int] = {}
        for c in self.meta.containers():
            if c.image_id:
                users[c.image_id] = users.get(c.image_id, 0) + 1
        records = self.meta.images()
        parents = {r.labels.get(LABEL_PARENT) for r in records}
        out = []
        for img in self.images():
            facts = self._facts(img, users.get(img.id, 0))
            if not all and not facts.repo_tags and not facts.repo_digests and str(img.id) in parents:
                continue
            out.append(image_summary(facts))
        out.sort(key=lambda s: s["Created"], reverse=True)
        return out

    # --- pulled images (pallet.registry.client) ---------------------------------------------------

    @contextlib.contextmanager
    def lease(self, purpose: str, hold: Iterable[str] = ()) -> Iterator[str]:
        """A gc lease for an operation run outside this service (a pull): content named with
        `hold(lease, digest)`, or in `hold` (the same transaction as the lease's creation), is
        kept until the lease ends, whatever happens meanwhile; it need not exist yet."""
        with self._lease(purpose, hold) as lease:
            yield lease

    def hold(self, lease: str, digest: str) -> None:
        self.meta.add_lease_resource(lease, "content", digest)

    def unpacked(self, chain: str) -> bool:
        """True when the layer stack `chain` (a chain id) is unpacked already."""
        return self._committed(chain)

    def unpack_layer(self, layer: Descriptor, diff_id: str, parent: str | None, *,
                     source: Any = None, before_commit: Callable[[], None] | None = None,
                     lease: str | None = None) -> str:
        """Unpack one layer onto the committed chain `parent` (None for a base layer); returns
        the new chain id. The bytes come from the content store, or from `source` (a reader
        of the compressed blob while it downloads: then `before_commit` must raise unless the
        blob was verified). `lease` (from `lease()`) holds the extraction snapshot instead of
        a lease of its own. Idempotent, and safe against concurrent unpackers as `unpack` is."""
        chain = self.chain_of(parent, diff_id)
        if not self._committed(chain):
            with self._chain_lock(chain):
                if not self._committed(chain):
                    self._apply(layer, str(Digest(diff_id)), chain, parent, source, before_commit, lease)
        return chain

    @staticmethod
    def chain_of(parent: str | None, diff_id: str) -> str:
        """The chain id of layer `diff_id` on top of chain `parent` (image-spec config.md)."""
        return chain_ids([diff_id])[0] if parent is None else \
            str(Digest.from_bytes(f"{parent} {Digest(diff_id)}".encode()))

    def hold_all(self, lease: str, digests: Iterable[str]) -> None:
        """`hold` for many digests, in one metadata transaction."""
        self.meta.add_lease_resources(lease, [("content", d) for d in digests])

    # Staged unpacking: layers applied in parallel, committed in order (pallet.registry pull).

    @property
    def can_stage(self) -> bool:
        """True when layers can be unpacked before their parents are (`stage_layer`): overlay,
        whose layer dirs hold only the layer's own changes."""
        return self._overlay and hasattr(self.snapshots, "stage")

    def stage_layer(self, layer: Descriptor, diff_id: str, *, source: Any = None,
                    lower_dirs: Callable[[], Sequence[str]] = list) -> StagedLayer:
        """Apply `layer` into a staging directory of the snapshotter, without its parent.

        The bytes come from the content store (verified to the last byte), or from `source`, a
        reader of the blob as it downloads: then the caller must have the blob verified before
        `commit_layer`. The diff_id is checked here. `lower_dirs` is called only if a hardlink
        needs a file of a lower layer (copy-up), and may wait until the parents are committed.
        Raises as `unpack`; nothing is left behind on an error."""
        stage = cast(Any, self.snapshots).stage
        staged = stage()
        try:
            def apply(raw: Any) -> Any:
                reader = decompress_layer(raw)
                return apply_layer(reader, str(staged.fs), overlay_whiteouts=True, lower_dirs=lower_dirs,
                                   verified_diff_id=_same_bytes(layer, diff_id, reader))

            if source is not None:
                result = apply(source)
                while source.read(CHUNK):
                    pass
            else:
                with self.content.open(layer.digest) as blob:
                    result = apply(blob)
                    while blob.read(CHUNK):  # verify the blob's digest to the last byte
                        pass
            if result.diff_id != str(Digest(diff_id)):
                raise DigestMismatch(f"layer {layer.digest} unpacks to diff_id {result.diff_id}, "
                                     f"the config says {diff_id}")
            cast(Any, self.snapshots).seal_staged(staged)
        except BaseException:
            self.snapshots.discard_staged(staged)  # type: ignore[attr-defined]
            raise
        return StagedLayer(layer, str(Digest(diff_id)), staged)

    def commit_layer(self, staged: StagedLayer, parent: str | None) -> str:
        """Commit a staged layer on top of the committed chain `parent`; returns its chain id.
        When another unpacker committed that chain first, theirs is kept and ours discarded."""
        return self.commit_layers([staged], parent)[-1]

    def commit_layers(self, stack: Sequence[StagedLayer], parent: str | None) -> list[str]:
        """Commit staged layers, bottom up, on top of the committed chain `parent`, in one
        snapshot transaction; returns their chain ids. A chain another unpacker committed
        first is kept (ours is discarded) and the layers above go on top of it."""
        snaps = cast(Any, self.snapshots)
        chains: list[str] = []
        items = []
        for st in stack:
            chain = self.chain_of(parent, st.diff_id)
            items.append((chain, parent, st.staged, {"pallet.unpack": chain}))
            chains.append(chain)
            parent = chain
        locks = [self._chain_lock(c) for c in dict.fromkeys(chains)]
        try:
            with contextlib.ExitStack() as held:
                for lock in locks:
                    held.enter_context(lock)
                snaps.commit_staged_many(items, skip_existing=True)
        finally:
            for st in stack:
                snaps.discard_staged(st.staged)  # a no-op for the committed ones
        return chains

    def discard_layer(self, staged: StagedLayer) -> None:
        """Drop a staged layer that will not be committed."""
        cast(Any, self.snapshots).discard_staged(staged.staged)

    def lower_dirs(self, chain: str | None) -> list[str]:
        """The layer dirs of committed `chain` and its ancestors, topmost first."""
        return self._lower_dirs(chain)

    def add_pulled_image(self, manifest_bytes: bytes, media_type: str,
                         names: Sequence[str]) -> tuple[Image, list[str]]:
        """Record the image whose manifest (`manifest_bytes`, kept byte for byte so its digest
        stays the registry's), config and layers are in the content store, and point `names`
        (normalized references: a tag, and `repo@digest` for RepoDigests) at it, in one
        metadata transaction. An image already recorded keeps its record. Returns the image
        and the names that pointed elsewhere or nowhere before (empty: it was up to date)."""
        manifest = parse_manifest(manifest_bytes, media_type)
        mdesc = self.content.put(manifest_bytes, manifest.media_type)
        config = parse_config(self.content.read(manifest.config.digest))
        check_image(manifest, config)
        labels = {k: v for k, v in (config.labels or {}).items() if k != LABEL_PARENT}
        size = sum(layer.size for layer in manifest.layers)
        rec = ImageRecord(manifest.config.digest, mdesc.digest, manifest.media_type, now_rfc3339(),
                          labels, size)
        checked = [self._tag_name(n) if "@" not in n else parse_normalized(n, default_tag=False).string()
                   for n in names]
        olds = self.meta.put_images_and_names([rec], [(n, str(rec.id), str(mdesc.digest)) for n in checked])
        rec = self.meta.get_image(rec.id)
        img = self.get(str(rec.id))
        self.content.tag_many(checked, img.manifest_desc)
        changed = [n for n, old in zip(checked, olds, strict=True) if old is None or old.image_id != rec.id]
        return img, changed

    # --- built-in images --------------------------------------------------------------------------

    def bootstrap(self, name: str, *, arch: str | None = None, force: bool = False,
                  busybox: str | None = None) -> str:
        """Create a built-in image (hello-world, busybox, debian:<suite>) under its Docker Hub
        name; returns its id. Without `force`, an image already under that name is kept."""
        from pallet.image import builtin
        from pallet.image.builtin.rootfs import BUSYBOX, DEFAULT_PATH

        ref = parse_normalized(name)
        base = ref.path.removeprefix("library/")
        if ref.domain != DEFAULT_DOMAIN or base not in BUILTIN_IMAGES or ref.digest is not None:
            raise InvalidArgument(f"{name!r} is not a built-in image (have {', '.join(BUILTIN_IMAGES)}"
                                  ", debian:<suite>)")
        full = ref.string()
        if not force:
            with contextlib.suppress(NotFound):
                return str(self.meta.get_name(full).image_id)
        machine = arch or os.uname().machine
        scratch = Path(os.path.realpath(self.tmp)) / f"bootstrap-{secrets.token_hex(6)}"
        scratch.mkdir()
        try:
            with self._lease("bootstrap") as lease:
                now = now_rfc3339()
                if base == "hello-world":
                    files = builtin.hello_files(machine)
                    desc, diff_id, _ = self._write_layer(
                        lease, lambda sink: builtin.files_tar(files, cast(IO[bytes], sink)),
                        self.compression, self.compression_level)
                    config = builtin.hello_config(machine, [diff_id], created=now)
                else:
                    rootfs = scratch / "rootfs"
                    if base == "busybox":
                        binary = busybox or BUSYBOX
                        builtin.busybox_rootfs(rootfs, binary)
                        mtime = int(os.stat(binary).st_mtime)
                        cmd, what = ["sh"], f"busybox-static from the host ({binary})"
                        now = _rfc3339(mtime)
                    else:
                        suite = DEFAULT_DEBIAN_SUITE if ref.tag in (None, "latest") else str(ref.tag)
                        tool = builtin.debian_rootfs(rootfs, suite=suite)
                        mtime = int(datetime.now(UTC).timestamp())
                        cmd, what = ["bash"], f"debian {suite} by {tool}"
                    desc, diff_id, _ = self._write_layer(
                        lease, lambda sink: builtin.layer_tar(rootfs, cast(IO[bytes], sink), mtime=mtime),
                        self.compression, self.compression_level)
                    history = [builtin.history_entry(f"pallet: {what}", created=now),
                               builtin.history_entry(f"CMD {canonical_json(cmd).decode()}", created=now,
                                                     empty_layer=True)]
                    config = builtin.image_config(machine, cmd=cmd, env=[DEFAULT_PATH],
                                                  diff_ids=[diff_id], created=now, history=history)
                return str(self._create_image(lease, config, [desc], names=[full]).id)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


@dataclass
class StagedLayer:
    """A layer applied into a staging directory by `ImageService.stage_layer`."""

    layer: Descriptor
    diff_id: str
    staged: Any   # pallet.image.snapshots.store.Staged


def _same_bytes(layer: Descriptor, diff_id: str, reader: Any) -> str | None:
    """The diff_id when hashing the tar again is redundant: the blob is not compressed, so the
    tar is the blob, and its digest (which the content store or the pull verifies) is the
    diff_id. None otherwise (apply_layer hashes the tar)."""
    if reader.kind is Compression.NONE and str(layer.digest) == str(Digest(diff_id)):
        return str(layer.digest)
    return None


class _Prefixed:
    """`head` (already read from `src`) followed by the rest of `src`."""

    def __init__(self, head: bytes, src: Any) -> None:
        self.head, self.src = head, src

    def read(self, n: int = -1, /) -> bytes:
        if self.head:
            if n < 0:
                out, self.head = self.head + self.src.read(), b""
            else:
                out, self.head = self.head[:n], self.head[n:]
            return out
        data: bytes = self.src.read(n)
        return data


__all__ = [
    "BUILTIN_IMAGES",
    "LABEL_PARENT",
    "Image",
    "ImageService",
    "chain_ids",
    "mount_args",
    "mount_rootfs",
    "readonly_view",
    "short_id",
    "unmount_rootfs",
]
