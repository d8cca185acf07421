"""Save images to, and load them from, `docker save` archives and OCI image-layout archives.

Archives written by `save` (no Pallet-specific parts; the formats are the specs' own):

format="docker", what `docker save` writes since Docker 25 (a `docker save` archive that is
also an OCI image layout; ../shared/specs/docker-image/spec.md "Combined Image JSON +
Filesystem Changeset Format", ../shared/specs/oci-image/image-layout.md):

    oci-layout          {"imageLayoutVersion":"1.0.0"}
    index.json          one descriptor per name, annotated with io.containerd.image.name (the
                        full name) and org.opencontainers.image.ref.name (the tag), as Docker
                        25 writes it; one unannotated descriptor per image saved by id
    manifest.json       [{"Config": "blobs/sha256/<hex>", "RepoTags": ["busybox:latest"],
                          "Layers": ["blobs/sha256/<hex>", ...]}, ...], one entry per image
    repositories        {"busybox": {"latest": "<hex of the top layer blob>"}}; legacy readers
                        only, the value names the top layer's file under blobs/sha256/
    blobs/sha256/<hex>  manifests, indexes, configs and layers exactly as the store holds them
                        (a gzip layer stays gzip: manifest.json Layers point at the blob files,
                        and `docker load` decompresses what it finds there)

format="oci": an OCI image layout tar (what `skopeo copy ... oci-archive:` and `podman save
--format oci-archive` write): oci-layout, index.json, blobs/. Each name is one index.json entry
whose org.opencontainers.image.ref.name and io.containerd.image.name are the full normalized
name (`docker.io/library/busybox:latest`), unique in the archive so `oci-archive:X:<name>`
picks one image; images saved by id have no annotations.

The metadata files come first and the blobs after them, so a streaming reader knows what to
expect; the tar is written straight to `out` (tarfile "w|"), never staged on disk. Blobs are
read through verifying readers: a corrupt blob aborts the save with DigestMismatch.

`load` reads, from a stream, any of: the archive above; Docker 1.10-24 archives (<id>/layer.tar,
<id>/json, VERSION, <config hex>.json, manifest.json, repositories); skopeo's docker-archive
(<hex>.tar layers); OCI archives (index.json, names from io.containerd.image.name or a full
reference in org.opencontainers.image.ref.name; a bare tag or no name loads the image by id);
gzip/bzip2/xz-compressed archives. Order of work, so that a failure leaves nothing visible:

1. Under a lease (so a concurrent gc cannot take them), every regular member is written to the
   content store as it streams past: a `blobs/<alg>/<hex>` member through
   `ContentStore.writer(expected)` with the digest taken from its (validated) name, anything
   else hashed as it is written. Member names are untrusted (`unsafe_path`): absolute names,
   `..` components, links leaving the archive and device nodes are refused; member sizes and
   the metadata files are capped (`Limits`).
2. manifest.json (or index.json) is read, every referenced blob looked up (a reference to a
   member that is not there is an error), configs parsed, diff_ids checked against the layers
   (computed by decompressing compressed ones), manifests created for archives that carry
   only config + layers (Docker schema 2, as `docker push` would), names normalized
   (pallet.oci.reference) and checked for duplicates.
3. Only then are the image records and names written, in one metadata transaction
   (`MetadataStore.put_images_and_names`), and after it the names tagged in index.json. An
   image record's `created` is the time of the load (as for every image pallet.image.service
   records); the build time stays in the config.

A failure in 1 or 2 leaves only blobs that nothing names (gc collects them once the lease is
gone). A kill -9 at any moment leaves either every name of the archive or none (SQLite's
journal makes the one transaction all or nothing), and each name that is there points to a
complete image. The index.json tags are a mirror for other tools (skopeo, umoci), written
after the transaction: a kill -9 between the two leaves names without their tag, which the
store check reports as a warning. An error while tagging is compensated (names restored, new
image records removed).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import lzma
import posixpath
import tarfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO

from pallet.errors import InvalidArgument, NotFound
from pallet.image.content import ContentStore
from pallet.image.layers.apply import DEFAULT_LIMITS as LAYER_LIMITS
from pallet.image.layers.apply import decompress_layer
from pallet.image.layers.compression import Compression, detect
from pallet.image.metadata import ImageRecord, MetadataStore, NameRecord, now_rfc3339
from pallet.oci import mediatypes as mt
from pallet.oci.descriptor import ANNOTATION_REF_NAME, Descriptor
from pallet.oci.digest import Digest, DigestMismatch, Hasher
from pallet.oci.manifest import (
    MAX_CONFIG_SIZE,
    MAX_MANIFEST_SIZE,
    ImageConfig,
    Index,
    Manifest,
    canonical_json,
    check_image,
    parse_any,
    parse_config,
    parse_index,
    select_manifest,
)
from pallet.oci.reference import Reference, parse_normalized

ANNOTATION_IMAGE_NAME = "io.containerd.image.name"
FORMATS = ("docker", "oci")
CHUNK = 1 << 20
LAYOUT = {"imageLayoutVersion": "1.0.0"}
# Files of a docker-archive read into memory (the rest goes to the content store).
_METADATA_FILES = ("manifest.json", "repositories", "index.json", "oci-layout")
# Per-layer files of the pre-1.10 v1 format that Docker still writes; not needed to load.
_LEGACY_FILES = ("VERSION", "json")
_TAR_ERRORS = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile)


@dataclass(frozen=True)
class Limits:
    """Bounds on what one archive may make `load` do."""

    max_member_size: int = 64 << 30      # one member (a layer) in bytes
    max_metadata_size: int = 16 << 20    # manifest.json, repositories, index.json, oci-layout
    max_members: int = 200_000
    max_images: int = 10_000             # entries of manifest.json or index.json
    max_link_hops: int = 8               # symlinks followed when resolving a member path
    lease_hours: float = 24.0            # how long the load's lease protects its blobs


DEFAULT_LIMITS = Limits()


def _tarinfo(name: str, size: int = 0, *, mode: int = 0o644,
             kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.type = size, mode, kind
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    return info


def _blob_path(digest: Digest) -> str:
    return f"blobs/{digest.algorithm}/{digest.encoded}"


# --- save ------------------------------------------------------------------------------------


@dataclass
class _SaveImage:
    image: ImageRecord
    manifest: Manifest
    names: list[NameRecord] = field(default_factory=list)


def _read_manifest(content: ContentStore, digest: Digest) -> Manifest | Index:
    try:
        return parse_any(content.read(digest, MAX_MANIFEST_SIZE))
    except NotFound:
        raise NotFound(f"manifest {digest} is missing from the content store "
                       "(run a store check)") from None


def _platform_manifest(content: ContentStore, digest: Digest) -> tuple[Digest, Manifest]:
    """The single-platform manifest at `digest`, or the host's one of the index there."""
    doc = _read_manifest(content, digest)
    for _ in range(8):
        if isinstance(doc, Manifest):
            return digest, doc
        present = [d for d in doc.manifests if content.exists(d.digest)]
        digest = select_manifest(present).digest
        doc = _read_manifest(content, digest)
    raise InvalidArgument(f"index {digest}: nested too deeply")


def _names_in_repo(metadata: MetadataStore, ref: Reference) -> list[NameRecord]:
    out = []
    for n in metadata.names():
        with contextlib.suppress(InvalidArgument):
            r = parse_normalized(n.name, default_tag=False)
            if r.name == ref.name and r.tag is not None and r.digest is None:
                out.append(n)
    return out


def _resolve_ref(metadata: MetadataStore, ref: str) -> list[tuple[ImageRecord, list[NameRecord]]]:
    """What `ref` names, as (image, its names to save) pairs: a name (`busybox:1.36`), a
    repository (`busybox`: all its tags, as `docker save` does), `name@digest`, or an image id
    or unique id prefix (saved without names)."""
    parsed: Reference | None = None
    with contextlib.suppress(InvalidArgument):
        parsed = parse_normalized(ref, default_tag=False)
    if parsed is not None:
        names: list[NameRecord] = []
        if parsed.tag is None and parsed.digest is None:
            names = _names_in_repo(metadata, parsed)
        else:
            with contextlib.suppress(NotFound):
                names = [metadata.get_name(parsed.string())]
        if names:
            by_image = dict.fromkeys(n.image_id for n in names)
            return [(metadata.get_image(i), [n for n in names if n.image_id == i]) for i in by_image]
    ids = metadata.find_image_ids(ref)
    if len(ids) == 1:
        return [(metadata.get_image(ids[0]), [])]
    if len(ids) > 1:
        raise InvalidArgument(f"image id prefix {ref!r} is ambiguous ({len(ids)} images)")
    raise NotFound(f"no such image: {ref}")


def _collect_save(content: ContentStore, metadata: MetadataStore, refs: Sequence[str]) -> list[_SaveImage]:
    if not refs:
        raise InvalidArgument("save: no image named")
    images: dict[Digest, _SaveImage] = {}
    for ref in refs:
        for image, names in _resolve_ref(metadata, ref):
            entry = images.get(image.id)
            if entry is None:
                manifest_digest, manifest = _platform_manifest(content, image.manifest_digest)
                if manifest.config.digest != image.id:
                    raise InvalidArgument(f"image {image.id}: its manifest {manifest_digest} has config "
                                          f"{manifest.config.digest} (run a store check)")
                entry = images[image.id] = _SaveImage(image, manifest)
            for n in names:
                if n.name not in {m.name for m in entry.names}:
                    entry.names.append(n)
    return list(images.values())


def _tag_of(name: str) -> str | None:
    ref = parse_normalized(name, default_tag=False)
    return ref.tag if ref.digest is None else None


def _blob_closure(content: ContentStore, digest: Digest, out: dict[Digest, None], depth: int = 0) -> None:
    """`digest` (a manifest or index) and what it references that the store holds."""
    if digest in out or depth > 8:
        return
    out[digest] = None
    doc = _read_manifest(content, digest)
    if isinstance(doc, Manifest):
        for d in (doc.config, *doc.layers):
            if not content.exists(d.digest):
                if mt.is_foreign_layer(d.media_type):
                    continue
                raise NotFound(f"blob {d.digest} of manifest {digest} is missing from the content "
                               "store (run a store check)")
            out[d.digest] = None
    else:
        for child in doc.manifests:
            # An index names every platform; the store usually has only the host's.
            if content.exists(child.digest):
                _blob_closure(content, child.digest, out, depth + 1)


def save(content: ContentStore, metadata: MetadataStore, refs: Sequence[str], out: BinaryIO,
         format: str = "docker") -> list[str]:
    """Write the images `refs` name to `out` as one tar archive; returns the names (or, for
    images given by id, the ids) saved. See the module docstring for the formats.

    `refs` may hold names, repositories (all their tags), `name@digest` and image ids or id
    prefixes. Raises NotFound for an unknown image or a blob missing from the store,
    DigestMismatch when a blob is corrupt (`out` then holds a partial archive: the caller must
    discard it), InvalidArgument for an unknown format.
    """
    if format not in FORMATS:
        raise InvalidArgument(f"archive format {format!r}: expected one of {', '.join(FORMATS)}")
    items = _collect_save(content, metadata, refs)

    blobs: dict[Digest, None] = {}
    index: list[dict[str, Any]] = []
    manifest_json: list[dict[str, Any]] = []
    repositories: dict[str, dict[str, str]] = {}
    saved: list[str] = []
    for item in items:
        _blob_closure(content, item.image.manifest_digest, blobs)
        layer_paths = [_blob_path(d.digest) for d in item.manifest.layers]
        repo_tags = []
        for n in item.names:
            _blob_closure(content, n.manifest_digest, blobs)
            top = _read_manifest(content, n.manifest_digest)
            desc = Descriptor(top.media_type, n.manifest_digest, content.info(n.manifest_digest))
            ref = parse_normalized(n.name, default_tag=False)
            tag = _tag_of(n.name)
            if format == "oci":
                annotations = {ANNOTATION_REF_NAME: n.name, ANNOTATION_IMAGE_NAME: n.name}
            else:
                annotations = {ANNOTATION_IMAGE_NAME: n.name}
                if tag is not None:
                    annotations[ANNOTATION_REF_NAME] = tag
            index.append(desc.with_annotations(annotations).to_json())
            saved.append(n.name)
            if tag is not None:
                repo_tags.append(ref.familiar())
                if item.manifest.layers:
                    repositories.setdefault(ref.familiar_name(), {})[tag] = \
                        item.manifest.layers[-1].digest.encoded
        if not item.names:
            mdesc = Descriptor(item.manifest.media_type, item.image.manifest_digest,
                               content.info(item.image.manifest_digest))
            index.append(mdesc.to_json())
            saved.append(str(item.image.id))
        manifest_json.append({"Config": _blob_path(item.image.id), "RepoTags": repo_tags,
                              "Layers": layer_paths})

    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        def put_json(name: str, obj: Any) -> None:
            data = canonical_json(obj)
            tar.addfile(_tarinfo(name, len(data)), _BytesReader(data))

        put_json("oci-layout", LAYOUT)
        put_json("index.json", {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": index})
        if format == "docker":
            put_json("manifest.json", manifest_json)
            put_json("repositories", repositories)
        tar.addfile(_tarinfo("blobs/", mode=0o755, kind=tarfile.DIRTYPE))
        for alg in sorted({d.algorithm for d in blobs}):
            tar.addfile(_tarinfo(f"blobs/{alg}/", mode=0o755, kind=tarfile.DIRTYPE))
        for digest in blobs:
            with content.open(digest) as reader:
                tar.addfile(_tarinfo(_blob_path(digest), reader.size, mode=0o444), reader)
    return saved


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self._data, self._pos = data, 0

    def read(self, n: int = -1) -> bytes:
        end = len(self._data) if n is None or n < 0 else self._pos + n
        chunk = self._data[self._pos:end]
        self._pos += len(chunk)
        return chunk


# --- load ------------------------------------------------------------------------------------


def clean_member_name(unsafe_path: str) -> str:
    """An archive member name as a relative path without `.` parts; InvalidArgument for an
    absolute name, a `..` component or a NUL byte. "" is the archive's root."""
    if "\0" in unsafe_path:
        raise InvalidArgument(f"archive member {unsafe_path[:200]!r}: NUL in name")
    if unsafe_path.startswith("/"):
        raise InvalidArgument(f"archive member {unsafe_path[:200]!r}: absolute path")
    parts = [p for p in unsafe_path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidArgument(f"archive member {unsafe_path[:200]!r}: '..' in path")
    return "/".join(parts)


@dataclass(frozen=True)
class _Blob:
    digest: Digest
    size: int


@dataclass
class _Pending:
    """An image `load` found, checked and not yet recorded."""

    image: ImageRecord
    top: Descriptor          # what its names point at: the manifest, or the index holding it
    names: list[str]


class _Loader:
    def __init__(self, content: ContentStore, metadata: MetadataStore, limits: Limits,
                 verify_diff_ids: bool) -> None:
        self.content = content
        self.metadata = metadata
        self.limits = limits
        self.verify_diff_ids = verify_diff_ids
        self.files: dict[str, _Blob] = {}
        self.links: dict[str, str] = {}
        self.small: dict[str, bytes] = {}
        self.lease_id = ""
        self._diff_ids: dict[Digest, tuple[Digest, int]] = {}

    # -- 1. stream the members into the store ---------------------------------------------------

    def _protect(self, digest: Digest) -> None:
        self.metadata.add_lease_resource(self.lease_id, "content", digest)

    def read_archive(self, stream: BinaryIO) -> None:
        try:
            with tarfile.open(fileobj=stream, mode="r|*") as tar:
                for count, member in enumerate(tar, 1):
                    if count > self.limits.max_members:
                        raise InvalidArgument(f"archive has more than {self.limits.max_members} members")
                    self._member(tar, member)
        except _TAR_ERRORS as exc:
            raise InvalidArgument(f"archive is truncated or not a tar archive: {exc}") from exc
        except OSError as exc:
            # bz2 reports bad data as a plain OSError; disk errors come with an errno.
            if exc.errno is not None:
                raise
            raise InvalidArgument(f"archive is corrupt: {exc}") from exc

    def _member(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        name = clean_member_name(member.name)
        if member.isdir():
            return
        if not name:
            raise InvalidArgument(f"archive member {member.name!r}: not a directory")
        if name in self.files or name in self.links or name in self.small:
            raise InvalidArgument(f"archive member {name!r} appears twice")
        if member.issym():
            if member.linkname.startswith("/"):
                raise InvalidArgument(f"archive member {name!r}: symlink to absolute path")
            target = posixpath.normpath(posixpath.join(posixpath.dirname(name), member.linkname))
            if target == ".." or target.startswith("../") or target == ".":
                raise InvalidArgument(f"archive member {name!r}: symlink leaves the archive")
            self.links[name] = target
            return
        if member.islnk():
            self.links[name] = clean_member_name(member.linkname)
            return
        if not member.isreg():
            raise InvalidArgument(f"archive member {name!r}: unexpected member type {member.type!r}")
        if member.size > self.limits.max_member_size:
            raise InvalidArgument(f"archive member {name!r}: {member.size} bytes is more than the "
                                  f"{self.limits.max_member_size} allowed")
        f = tar.extractfile(member)
        assert f is not None  # a regular file
        if name in _METADATA_FILES:
            if member.size > self.limits.max_metadata_size:
                raise InvalidArgument(f"archive member {name}: {member.size} bytes is more than the "
                                      f"{self.limits.max_metadata_size} allowed")
            self.small[name] = f.read()
            return
        if "/" in name and posixpath.basename(name) in _LEGACY_FILES and not name.startswith("blobs/"):
            return  # tarfile skips the data when we move on
        expected: Descriptor | None = None
        parts = name.split("/")
        if len(parts) == 3 and parts[0] == "blobs":
            try:
                digest = Digest(f"{parts[1]}:{parts[2]}")
            except InvalidArgument as exc:
                raise InvalidArgument(f"archive member {name!r}: not a blob name: {exc}") from exc
            expected = Descriptor(mt.OCTET_STREAM, digest, member.size)
            self._protect(digest)
            if self.content.exists(digest):
                # Verified when it was written; the member's bytes are skipped unread.
                self.files[name] = _Blob(digest, self.content.info(digest))
                return
        try:
            with self.content.writer(expected) as w:
                while chunk := f.read(CHUNK):
                    w.write(chunk)
                desc = w.commit()
        except DigestMismatch as exc:
            raise DigestMismatch(f"archive member {name}: {exc}") from exc
        if expected is None:
            self._protect(desc.digest)
        self.files[name] = _Blob(desc.digest, desc.size)

    def resolve(self, unsafe_path: Any, where: str) -> _Blob:
        """The blob stored for the archive path `unsafe_path` (following links)."""
        if not isinstance(unsafe_path, str):
            raise InvalidArgument(f"{where}: expected a path string")
        path = clean_member_name(unsafe_path)
        for _ in range(self.limits.max_link_hops + 1):
            if path in self.files:
                return self.files[path]
            if path not in self.links:
                break
            path = self.links[path]
        raise InvalidArgument(f"{where}: {unsafe_path[:200]!r} is not in the archive")

    # -- 2. images ------------------------------------------------------------------------------

    def _json(self, name: str) -> Any:
        try:
            return json.loads(self.small[name])
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidArgument(f"{name}: not valid JSON: {exc}") from exc

    def _config(self, digest: Digest, where: str) -> ImageConfig:
        try:
            data = self.content.read(digest, MAX_CONFIG_SIZE)
        except NotFound:
            raise InvalidArgument(f"{where}: config {digest} is not in the archive") from None
        try:
            return parse_config(data)
        except InvalidArgument as exc:
            raise InvalidArgument(f"{where}: {exc}") from exc

    def _diff_id(self, digest: Digest) -> tuple[Digest, int]:
        """(diff_id, uncompressed size) of a layer blob: its own digest when uncompressed."""
        if digest in self._diff_ids:
            return self._diff_ids[digest]
        with self.content.open(digest) as r:
            head = r.read(6)
        kind = detect(head)
        if kind is Compression.NONE:
            result = (digest, self.content.info(digest))
        else:
            hasher = Hasher()
            with self.content.open(digest) as raw:
                reader = decompress_layer(raw, LAYER_LIMITS)
                while chunk := reader.read(CHUNK):
                    hasher.update(chunk)
            result = (hasher.digest(), hasher.size)
        self._diff_ids[digest] = result
        return result

    def _check_layers(self, manifest: Manifest, config: ImageConfig, where: str) -> int:
        """Cross-check manifest and config; every layer present; diff_ids match. Returns the
        image's uncompressed size."""
        try:
            check_image(manifest, config)
        except InvalidArgument as exc:
            raise InvalidArgument(f"{where}: {exc}") from exc
        size = 0
        for i, (layer, diff_id) in enumerate(zip(manifest.layers, config.diff_ids)):
            if not self.content.exists(layer.digest):
                if mt.is_foreign_layer(layer.media_type):
                    continue
                raise InvalidArgument(f"{where}: layer {layer.digest} is not in the archive")
            if self.content.info(layer.digest) != layer.size:
                raise InvalidArgument(f"{where}: layer {layer.digest} is {self.content.info(layer.digest)} "
                                      f"bytes, the manifest says {layer.size}")
            if not self.verify_diff_ids:
                size += layer.size
                continue
            got, plain = self._diff_id(layer.digest)
            if got != diff_id:
                raise InvalidArgument(f"{where}: layer {i} ({layer.digest}) has diff_id {got}, but the "
                                      f"config's rootfs.diff_ids[{i}] is {diff_id}")
            size += plain
        return size

    def _record(self, manifest_digest: Digest, manifest: Manifest, config: ImageConfig,
                size: int) -> ImageRecord:
        return ImageRecord(manifest.config.digest, manifest_digest, manifest.media_type,
                           now_rfc3339(), config.labels, size)

    def _index_manifests(self) -> list[tuple[Descriptor, Manifest]]:
        """Single-platform manifests reachable from index.json, for a docker-archive whose
        manifest.json entries may match one (Docker 25+ writes both)."""
        if "index.json" not in self.small:
            return []
        try:
            index = parse_index(self.small["index.json"])
        except InvalidArgument as exc:
            raise InvalidArgument(f"index.json: {exc}") from exc
        out: list[tuple[Descriptor, Manifest]] = []
        todo = list(index.manifests)
        seen: set[Digest] = set()
        while todo and len(seen) < self.limits.max_images:
            d = todo.pop(0)
            if d.digest in seen or not self.content.exists(d.digest):
                continue
            seen.add(d.digest)
            if not (mt.is_manifest(d.media_type) or mt.is_index(d.media_type)):
                continue
            doc = parse_any(self.content.read(d.digest, MAX_MANIFEST_SIZE), d.media_type)
            if isinstance(doc, Manifest):
                out.append((d, doc))
            else:
                todo.extend(doc.manifests)
        return out

    def docker_images(self) -> list[_Pending]:
        entries = self._json("manifest.json")
        if not isinstance(entries, list):
            raise InvalidArgument("manifest.json: expected an array")
        if len(entries) > self.limits.max_images:
            raise InvalidArgument(f"manifest.json: more than {self.limits.max_images} images")
        in_index = self._index_manifests()
        out: list[_Pending] = []
        for i, entry in enumerate(entries):
            where = f"manifest.json[{i}]"
            if not isinstance(entry, dict):
                raise InvalidArgument(f"{where}: expected an object")
            config_blob = self.resolve(entry.get("Config"), f"{where}.Config")
            config = self._config(config_blob.digest, f"{where}.Config")
            layer_paths = entry.get("Layers")
            if not isinstance(layer_paths, list):
                raise InvalidArgument(f"{where}.Layers: required array")
            layers = [self.resolve(p, f"{where}.Layers[{j}]") for j, p in enumerate(layer_paths)]
            repo_tags = entry.get("RepoTags") or []
            if not isinstance(repo_tags, list) or not all(isinstance(t, str) for t in repo_tags):
                raise InvalidArgument(f"{where}.RepoTags: expected an array of strings")
            names = []
            for t in repo_tags:
                try:
                    ref = parse_normalized(t)
                except InvalidArgument as exc:
                    raise InvalidArgument(f"{where}.RepoTags: {exc}") from exc
                if ref.digest is not None:
                    raise InvalidArgument(f"{where}.RepoTags: {t!r} is not name:tag")
                names.append(ref.string())
            top, manifest = self._docker_manifest(config_blob, layers, in_index, where)
            size = self._check_layers(manifest, config, where)
            out.append(_Pending(self._record(top.digest, manifest, config, size), top, names))
        return out

    def _docker_manifest(self, config_blob: _Blob, layers: list[_Blob],
                         in_index: list[tuple[Descriptor, Manifest]],
                         where: str) -> tuple[Descriptor, Manifest]:
        """The manifest for a manifest.json entry: the archive's own one when index.json has a
        manifest with that config and those layers (so the manifest digest survives a save and
        load), else a new Docker schema 2 manifest written to the store."""
        want = [b.digest for b in layers]
        for desc, m in in_index:
            if m.config.digest == config_blob.digest and [d.digest for d in m.layers] == want:
                return Descriptor(m.media_type, desc.digest, desc.size), m
        layer_descs = []
        for j, b in enumerate(layers):
            with self.content.open(b.digest) as r:
                kind = detect(r.read(6))
            media_type = {Compression.NONE: mt.DOCKER_LAYER, Compression.GZIP: mt.DOCKER_LAYER_GZIP,
                          Compression.ZSTD: mt.DOCKER_LAYER_ZSTD}.get(kind)
            if media_type is None:
                raise InvalidArgument(f"{where}.Layers[{j}]: {kind.value} is not a layer compression "
                                      "images may use (gzip, zstd or none)")
            layer_descs.append(Descriptor(media_type, b.digest, b.size))
        manifest = Manifest(mt.DOCKER_MANIFEST, Descriptor(mt.DOCKER_CONFIG, config_blob.digest,
                                                           config_blob.size), tuple(layer_descs))
        data = manifest.serialize()
        self._protect(Digest.from_bytes(data))
        desc = self.content.put(data, mt.DOCKER_MANIFEST)
        return Descriptor(mt.DOCKER_MANIFEST, desc.digest, desc.size), manifest

    def _stored_desc(self, desc: Descriptor, where: str) -> None:
        if not self.content.exists(desc.digest):
            raise InvalidArgument(f"{where}: blob {desc.digest} is not in the archive")
        size = self.content.info(desc.digest)
        if size != desc.size:
            raise InvalidArgument(f"{where}: blob {desc.digest} is {size} bytes, the descriptor says "
                                  f"{desc.size}")

    def _oci_manifest(self, desc: Descriptor, where: str) -> tuple[Digest, Manifest, ImageConfig, int]:
        """The image `desc` leads to: itself, or the host platform's manifest of an index."""
        for _ in range(8):
            self._stored_desc(desc, where)
            try:
                doc = parse_any(self.content.read(desc.digest, MAX_MANIFEST_SIZE), desc.media_type)
            except InvalidArgument as exc:
                raise InvalidArgument(f"{where}: {exc}") from exc
            if isinstance(doc, Manifest):
                self._stored_desc(doc.config, f"{where}.config")
                config = self._config(doc.config.digest, where)
                size = self._check_layers(doc, config, where)
                return desc.digest, doc, config, size
            present = [d for d in doc.manifests if self.content.exists(d.digest)]
            try:
                desc = select_manifest(present)
            except NotFound as exc:
                raise InvalidArgument(f"{where}: {exc}") from exc
            where = f"{where} -> {desc.digest}"
        raise InvalidArgument(f"{where}: indexes nested too deeply")

    def oci_images(self) -> list[_Pending]:
        if "oci-layout" not in self.small:
            raise InvalidArgument("not an image archive: neither manifest.json nor oci-layout")
        layout = self._json("oci-layout")
        version = layout.get("imageLayoutVersion") if isinstance(layout, dict) else None
        if not isinstance(version, str) or not version.startswith("1."):
            raise InvalidArgument(f"oci-layout: unsupported imageLayoutVersion {version!r}")
        if "index.json" not in self.small:
            raise InvalidArgument("OCI archive without index.json")
        try:
            index = parse_index(self.small["index.json"])
        except InvalidArgument as exc:
            raise InvalidArgument(f"index.json: {exc}") from exc
        if len(index.manifests) > self.limits.max_images:
            raise InvalidArgument(f"index.json: more than {self.limits.max_images} images")
        out: list[_Pending] = []
        for i, desc in enumerate(index.manifests):
            where = f"index.json manifests[{i}]"
            if not (mt.is_manifest(desc.media_type) or mt.is_index(desc.media_type)):
                raise InvalidArgument(f"{where}: unknown media type {desc.media_type!r} (expected an "
                                      "image manifest or index)")
            manifest_digest, manifest, config, size = self._oci_manifest(desc, where)
            name = _oci_name(desc, where)
            top = Descriptor(desc.media_type, desc.digest, desc.size)
            out.append(_Pending(self._record(manifest_digest, manifest, config, size), top,
                                [name] if name else []))
        return out

    # -- 3. record --------------------------------------------------------------------------

    def commit(self, pending: list[_Pending]) -> list[str]:
        seen: set[str] = set()
        for p in pending:
            for n in p.names:
                if n in seen:
                    raise InvalidArgument(f"archive names {n} more than once")
                seen.add(n)
        tags = {d.ref_name: d for d in self.content.index() if d.ref_name}
        images = list({p.image.id: p.image for p in pending}.values())
        known = {i.id for i in self.metadata.images()}
        created = [i.id for i in images if i.id not in known]
        names = [(n, str(p.image.id), str(p.top.digest)) for p in pending for n in p.names]
        olds = self.metadata.put_images_and_names(images, names)
        tops = [p.top for p in pending for _ in p.names]
        try:
            for (n, _, _), top in zip(names, tops, strict=True):
                self.content.tag(n, top)
        except BaseException:
            self._undo(created, [(n, old, tags.get(n)) for (n, _, _), old in zip(names, olds, strict=True)])
            raise
        loaded: list[str] = []
        for p in pending:
            loaded.extend(p.names or [str(p.image.id)])
        return list(dict.fromkeys(loaded))

    def _undo(self, created: list[Digest],
              previous: list[tuple[str, NameRecord | None, Descriptor | None]]) -> None:
        for name, old, old_tag in reversed(previous):
            with contextlib.suppress(Exception):
                if old is None:
                    self.metadata.delete_name(name)
                else:
                    self.metadata.set_name(name, old.image_id, old.manifest_digest)
            with contextlib.suppress(Exception):
                if old_tag is None:
                    self.content.untag(name)
                else:
                    self.content.tag(name, old_tag)
        for image_id in created:
            with contextlib.suppress(Exception):
                self.metadata.delete_image(image_id)


def _oci_name(desc: Descriptor, where: str) -> str | None:
    """The name an OCI archive gives an index.json entry: io.containerd.image.name, else a ref
    name that is a full reference (`busybox:1.36`, `example.com/a/b:t`). A bare tag (`latest`)
    names no repository, so that image is loaded by id (containerd does the same without
    --base-name)."""
    annotations = desc.annotations or {}
    candidate = annotations.get(ANNOTATION_IMAGE_NAME)
    if candidate is None:
        ref_name = annotations.get(ANNOTATION_REF_NAME)
        if ref_name is None or not any(c in ref_name for c in "/:@"):
            return None
        candidate = ref_name
    try:
        return parse_normalized(candidate).string()
    except InvalidArgument as exc:
        raise InvalidArgument(f"{where}: image name {candidate[:200]!r}: {exc}") from exc


def _expiry(hours: float) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def load(content: ContentStore, metadata: MetadataStore, stream: BinaryIO, *,
         limits: Limits = DEFAULT_LIMITS, verify_diff_ids: bool = True) -> list[str]:
    """Load every image of the archive read from `stream` (see the module docstring).

    Returns the loaded names (normalized, `docker.io/library/busybox:latest`) and, for images
    the archive does not name, their ids (`sha256:...`), in archive order. Raises
    InvalidArgument (DigestMismatch for a blob that is not what its name says) naming the
    member or field at fault; then no name or image record was added or changed.
    """
    loader = _Loader(content, metadata, limits, verify_diff_ids)
    lease = metadata.create_lease(expires=_expiry(limits.lease_hours),
                                  labels={"pallet.operation": "load"})
    loader.lease_id = lease.id
    try:
        loader.read_archive(stream)
        pending = loader.docker_images() if "manifest.json" in loader.small else loader.oci_images()
        return loader.commit(pending)
    finally:
        with contextlib.suppress(NotFound):
            metadata.delete_lease(lease.id)



__all__ = ["DEFAULT_LIMITS", "FORMATS", "Limits", "clean_member_name", "load", "save"]
