"""Image manifests, indexes (manifest lists) and image configs: parse, validate, serialize, pick a platform.

Both OCI (image-spec v1.1) and Docker image manifest v2 schema 2 are read and written; the two
share field names, and differ in media types and in that Docker requires `mediaType` in the
document. Parsing validates the structure and every digest, and keeps unknown fields of configs
so that what is read can be written back. Serialization is deterministic: compact JSON, fields
in the order of the spec (a digest is of exact bytes, so the bytes that were pulled are always
kept and stored as they came; serialization is for content Pallet creates).
Specs: ../shared/specs/oci-image/{manifest,image-index,config}.md, ../shared/specs/docker-image/v1.2.md.
"""

from __future__ import annotations

import json
import platform as _platform
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pallet.errors import InvalidArgument, NotFound, NotSupported
from pallet.oci import mediatypes as mt
from pallet.oci.descriptor import Descriptor, Platform, check_media_type
from pallet.oci.digest import Digest

SCHEMA_VERSION = 2
# Manifests and configs are small; a registry (distribution) caps manifests at 4 MiB.
MAX_MANIFEST_SIZE = 4 << 20
MAX_CONFIG_SIZE = 8 << 20


def canonical_json(obj: Any) -> bytes:
    """Deterministic compact JSON (the key order is the caller's), as Go's json.Marshal writes it."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _load(data: bytes, what: str, limit: int) -> dict[str, Any]:
    if len(data) > limit:
        raise InvalidArgument(f"{what}: {len(data)} bytes is more than the {limit} allowed")
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidArgument(f"{what}: not valid JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise InvalidArgument(f"{what}: expected a JSON object")
    return obj


def _str_map(where: str, value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise InvalidArgument(f"{where}: expected an object of string values")
    return dict(value)


def _schema_version(what: str, obj: dict[str, Any]) -> None:
    version = obj.get("schemaVersion")
    if version == 1:
        raise NotSupported(f"{what}: Docker image manifest schema 1 is not supported")
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise InvalidArgument(f"{what}.schemaVersion: must be 2, got {version!r}")


def _document_media_type(what: str, obj: dict[str, Any], expected: str | None,
                         known: frozenset[str]) -> str:
    """The media type of a manifest or index, from the document and/or the caller (descriptor or
    Content-Type). A mismatch is refused (media-types.md "Media Type Conflicts")."""
    in_doc = obj.get("mediaType")
    if in_doc is not None:
        check_media_type(f"{what}.mediaType", in_doc)
    if expected is not None and in_doc is not None and expected != in_doc:
        raise InvalidArgument(f"{what}: mediaType {in_doc!r} does not match the expected {expected!r}")
    media_type = in_doc or expected
    if media_type is None:
        raise InvalidArgument(f"{what}.mediaType: required (cannot tell OCI from Docker)")
    if media_type not in known:
        if media_type in (mt.DOCKER_MANIFEST_V1, mt.DOCKER_MANIFEST_V1_SIGNED):
            raise NotSupported(f"{what}: Docker image manifest schema 1 ({media_type}) is not supported")
        raise InvalidArgument(f"{what}: unknown media type {media_type!r}")
    if mt.is_docker(media_type) and in_doc is None:
        raise InvalidArgument(f"{what}.mediaType: required in a Docker schema 2 document")
    return media_type


@dataclass(frozen=True)
class Manifest:
    """One image for one platform: a config and layers, base layer first."""

    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: Mapping[str, str] | None = field(default=None, hash=False)
    subject: Descriptor | None = None
    artifact_type: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"schemaVersion": SCHEMA_VERSION, "mediaType": self.media_type}
        if self.artifact_type is not None:
            out["artifactType"] = self.artifact_type
        out["config"] = self.config.to_json()
        out["layers"] = [layer.to_json() for layer in self.layers]
        if self.subject is not None:
            out["subject"] = self.subject.to_json()
        if self.annotations is not None:
            out["annotations"] = dict(self.annotations)
        return out

    def serialize(self) -> bytes:
        return canonical_json(self.to_json())

    @property
    def is_docker(self) -> bool:
        return self.media_type == mt.DOCKER_MANIFEST


@dataclass(frozen=True)
class Index:
    """An OCI image index or a Docker manifest list: manifests for several platforms."""

    media_type: str
    manifests: tuple[Descriptor, ...]
    annotations: Mapping[str, str] | None = field(default=None, hash=False)
    subject: Descriptor | None = None
    artifact_type: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"schemaVersion": SCHEMA_VERSION, "mediaType": self.media_type}
        if self.artifact_type is not None:
            out["artifactType"] = self.artifact_type
        out["manifests"] = [m.to_json() for m in self.manifests]
        if self.subject is not None:
            out["subject"] = self.subject.to_json()
        if self.annotations is not None:
            out["annotations"] = dict(self.annotations)
        return out

    def serialize(self) -> bytes:
        return canonical_json(self.to_json())


def parse_manifest(data: bytes, media_type: str | None = None) -> Manifest:
    """Parse and validate an image manifest (OCI or Docker schema 2) from its bytes.

    `media_type` is what the caller expected (from a descriptor or Content-Type); it must agree
    with the document's own `mediaType`. Raises InvalidArgument naming the bad field, or an
    unknown media type; NotSupported for Docker schema 1.
    """
    obj = _load(data, "manifest", MAX_MANIFEST_SIZE)
    if "manifests" in obj and "config" not in obj:
        raise InvalidArgument("manifest: this is an image index, not a manifest")
    _schema_version("manifest", obj)
    media_type = _document_media_type("manifest", obj, media_type, mt.MANIFESTS)
    if "config" not in obj:
        raise InvalidArgument("manifest.config: required")
    config = Descriptor.from_json(obj["config"], "manifest.config")
    layers_json = obj.get("layers")
    if not isinstance(layers_json, list):
        raise InvalidArgument("manifest.layers: required array")
    layers = tuple(Descriptor.from_json(d, f"manifest.layers[{i}]") for i, d in enumerate(layers_json))
    # Unknown config and layer media types are kept, not refused: "implementations storing or
    # copying image manifests MUST NOT error" on them (manifest.md); check_image() is the gate
    # for running an image.
    subject = obj.get("subject")
    artifact_type = obj.get("artifactType")
    return Manifest(
        media_type=media_type, config=config, layers=layers,
        annotations=_str_map("manifest.annotations", obj.get("annotations")),
        subject=None if subject is None else Descriptor.from_json(subject, "manifest.subject"),
        artifact_type=None if artifact_type is None
        else check_media_type("manifest.artifactType", artifact_type),
    )


def parse_index(data: bytes, media_type: str | None = None) -> Index:
    """Parse and validate an OCI image index or Docker manifest list from its bytes."""
    obj = _load(data, "index", MAX_MANIFEST_SIZE)
    _schema_version("index", obj)
    # An OCI index without mediaType is allowed (image-index.md: SHOULD); index.json of a layout
    # often omits it.
    if obj.get("mediaType") is None and media_type is None:
        media_type = mt.OCI_INDEX
    media_type = _document_media_type("index", obj, media_type, mt.INDEXES)
    manifests_json = obj.get("manifests")
    if not isinstance(manifests_json, list):
        raise InvalidArgument("index.manifests: required array")
    manifests = tuple(Descriptor.from_json(d, f"index.manifests[{i}]")
                      for i, d in enumerate(manifests_json))
    if media_type == mt.DOCKER_MANIFEST_LIST:
        for i, d in enumerate(manifests):
            if d.platform is None:
                raise InvalidArgument(f"index.manifests[{i}].platform: required in a Docker manifest list")
    subject = obj.get("subject")
    artifact_type = obj.get("artifactType")
    return Index(
        media_type=media_type, manifests=manifests,
        annotations=_str_map("index.annotations", obj.get("annotations")),
        subject=None if subject is None else Descriptor.from_json(subject, "index.subject"),
        artifact_type=None if artifact_type is None
        else check_media_type("index.artifactType", artifact_type),
    )


def parse_any(data: bytes, media_type: str | None = None) -> Manifest | Index:
    """Parse a manifest or an index, telling them apart by media type (or, lacking one, by shape)."""
    if media_type is None:
        obj = _load(data, "manifest", MAX_MANIFEST_SIZE)
        doc_type = obj.get("mediaType")
        if isinstance(doc_type, str):
            media_type = doc_type
        elif "manifests" in obj:
            media_type = mt.OCI_INDEX
        elif "config" in obj:
            media_type = mt.OCI_MANIFEST
    if media_type in mt.INDEXES:
        return parse_index(data, media_type)
    if media_type in mt.MANIFESTS:
        return parse_manifest(data, media_type)
    if media_type in (mt.DOCKER_MANIFEST_V1, mt.DOCKER_MANIFEST_V1_SIGNED):
        raise NotSupported(f"Docker image manifest schema 1 ({media_type}) is not supported")
    raise InvalidArgument(f"unknown manifest media type {media_type!r}")


# --- image config -------------------------------------------------------------------------

# Known keys of config.config (OCI config.md "config"; Docker adds more, kept as they come).
_CONFIG_STR_LISTS = ("Env", "Entrypoint", "Cmd", "OnBuild", "Shell")
_CONFIG_STRS = ("User", "WorkingDir", "StopSignal")
_CONFIG_OBJECTS = ("ExposedPorts", "Volumes")


@dataclass(frozen=True)
class History:
    """One step of how the image was built; `empty_layer` steps made no layer (ENV, CMD...)."""

    created: str | None = None
    author: str | None = None
    created_by: str | None = None
    comment: str | None = None
    empty_layer: bool = False

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in ("created", "author", "created_by", "comment"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.empty_layer:
            out["empty_layer"] = True
        return out

    @classmethod
    def from_json(cls, obj: Any, where: str) -> History:
        if not isinstance(obj, dict):
            raise InvalidArgument(f"{where}: expected an object")
        for key in ("created", "author", "created_by", "comment"):
            if obj.get(key) is not None and not isinstance(obj[key], str):
                raise InvalidArgument(f"{where}.{key}: expected a string")
        empty = obj.get("empty_layer", False)
        if not isinstance(empty, bool):
            raise InvalidArgument(f"{where}.empty_layer: expected a boolean")
        return cls(created=obj.get("created"), author=obj.get("author"),
                   created_by=obj.get("created_by"), comment=obj.get("comment"), empty_layer=empty)


@dataclass(frozen=True)
class ImageConfig:
    """An image config (OCI `application/vnd.oci.image.config.v1+json` or Docker's v1.2 JSON).

    `config` is the execution config (`Env`, `Cmd`, `Entrypoint`, `Labels`...) as the JSON
    object it is; `extra` holds top-level fields this model does not name (Docker's
    `container_config`, `docker_version`, ...) so that a round trip keeps them.
    """

    architecture: str
    os: str
    rootfs_type: str = "layers"
    diff_ids: tuple[Digest, ...] = ()
    history: tuple[History, ...] = ()
    config: Mapping[str, Any] | None = field(default=None, hash=False)
    created: str | None = None
    author: str | None = None
    variant: str | None = None
    os_version: str | None = None
    os_features: tuple[str, ...] | None = None
    extra: Mapping[str, Any] | None = field(default=None, hash=False)

    @property
    def platform(self) -> Platform:
        return Platform(self.architecture, self.os, self.variant, self.os_version, self.os_features)

    @property
    def labels(self) -> dict[str, str]:
        return dict((self.config or {}).get("Labels") or {})

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.created is not None:
            out["created"] = self.created
        if self.author is not None:
            out["author"] = self.author
        out["architecture"] = self.architecture
        if self.variant is not None:
            out["variant"] = self.variant
        out["os"] = self.os
        if self.os_version is not None:
            out["os.version"] = self.os_version
        if self.os_features is not None:
            out["os.features"] = list(self.os_features)
        if self.config is not None:
            out["config"] = dict(self.config)
        out["rootfs"] = {"type": self.rootfs_type, "diff_ids": [str(d) for d in self.diff_ids]}
        if self.history:
            out["history"] = [h.to_json() for h in self.history]
        for key, value in (self.extra or {}).items():
            out.setdefault(key, value)
        return out

    def serialize(self) -> bytes:
        return canonical_json(self.to_json())

    def digest(self) -> Digest:
        """The image ID of this config as Pallet would write it (config.md "ImageID")."""
        return Digest.from_bytes(self.serialize())


_CONFIG_KNOWN = {"created", "author", "architecture", "variant", "os", "os.version", "os.features",
                 "config", "rootfs", "history"}


def _check_exec_config(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidArgument("config.config: expected an object")
    for key in _CONFIG_STR_LISTS:
        v = value.get(key)
        if v is not None and (not isinstance(v, list) or not all(isinstance(s, str) for s in v)):
            raise InvalidArgument(f"config.config.{key}: expected an array of strings")
    for key in _CONFIG_STRS:
        if value.get(key) is not None and not isinstance(value[key], str):
            raise InvalidArgument(f"config.config.{key}: expected a string")
    for key in _CONFIG_OBJECTS:
        if value.get(key) is not None and not isinstance(value[key], dict):
            raise InvalidArgument(f"config.config.{key}: expected an object")
    if value.get("Labels") is not None:
        _str_map("config.config.Labels", value["Labels"])
    return value


def parse_config(data: bytes) -> ImageConfig:
    """Parse and validate an image config (OCI or Docker; the JSON is the same) from its bytes."""
    obj = _load(data, "config", MAX_CONFIG_SIZE)
    for key in ("architecture", "os"):
        if not isinstance(obj.get(key), str) or not obj[key]:
            raise InvalidArgument(f"config.{key}: required string")
    for key in ("created", "author", "variant", "os.version"):
        if obj.get(key) is not None and not isinstance(obj[key], str):
            raise InvalidArgument(f"config.{key}: expected a string")
    features = obj.get("os.features")
    if features is not None and (not isinstance(features, list)
                                 or not all(isinstance(f, str) for f in features)):
        raise InvalidArgument("config.os.features: expected an array of strings")
    rootfs = obj.get("rootfs")
    if not isinstance(rootfs, dict):
        raise InvalidArgument("config.rootfs: required object")
    if rootfs.get("type") != "layers":
        raise InvalidArgument(f"config.rootfs.type: must be 'layers', got {rootfs.get('type')!r}")
    diff_ids_json = rootfs.get("diff_ids")
    if not isinstance(diff_ids_json, list):
        raise InvalidArgument("config.rootfs.diff_ids: required array")
    diff_ids = []
    for i, d in enumerate(diff_ids_json):
        try:
            diff_ids.append(Digest(d))
        except InvalidArgument as exc:
            raise InvalidArgument(f"config.rootfs.diff_ids[{i}]: {exc}") from exc
    history_json = obj.get("history")
    if history_json is None:
        history_json = []
    if not isinstance(history_json, list):
        raise InvalidArgument("config.history: expected an array")
    history = tuple(History.from_json(h, f"config.history[{i}]") for i, h in enumerate(history_json))
    exec_config = obj.get("config")
    return ImageConfig(
        architecture=obj["architecture"], os=obj["os"], rootfs_type="layers",
        diff_ids=tuple(diff_ids), history=history,
        config=None if exec_config is None else _check_exec_config(exec_config),
        created=obj.get("created"), author=obj.get("author"), variant=obj.get("variant") or None,
        os_version=obj.get("os.version"),
        os_features=None if features is None else tuple(features),
        extra={k: v for k, v in obj.items() if k not in _CONFIG_KNOWN} or None,
    )


def check_image(manifest: Manifest, config: ImageConfig) -> None:
    """Cross-check a manifest against its config before the image is used: the config is an
    image config, every layer type is known, and there is one diff_id per layer.

    The history is not held to the layer count: images built by some tools carry a short or
    empty history, and Docker runs them; `history_with_layers` pairs what there is.
    """
    if not mt.is_config(manifest.config.media_type):
        raise InvalidArgument(f"manifest.config.mediaType: {manifest.config.media_type!r} is not an "
                              f"image config")
    if len(manifest.layers) != len(config.diff_ids):
        raise InvalidArgument(f"manifest has {len(manifest.layers)} layers but the config has "
                              f"{len(config.diff_ids)} diff_ids")
    for i, layer in enumerate(manifest.layers):
        if not mt.is_layer(layer.media_type):
            raise InvalidArgument(f"manifest.layers[{i}]: unknown layer media type {layer.media_type!r}")


def history_with_layers(config: ImageConfig) -> list[tuple[History, Digest | None]]:
    """Each history entry with the diff_id of the layer it made (None for `empty_layer` steps,
    and for entries beyond the last layer), oldest first, as `docker history` needs them."""
    out: list[tuple[History, Digest | None]] = []
    layers = iter(config.diff_ids)
    for h in config.history:
        out.append((h, None if h.empty_layer else next(layers, None)))
    return out


# --- platforms ------------------------------------------------------------------------------

# uname -m -> (GOARCH, variant); Go's names are what image indexes use (image-index.md).
_MACHINES: dict[str, tuple[str, str | None]] = {
    "x86_64": ("amd64", None), "amd64": ("amd64", None),
    "aarch64": ("arm64", "v8"), "arm64": ("arm64", "v8"),
    "armv7l": ("arm", "v7"), "armv6l": ("arm", "v6"), "armv8l": ("arm", "v8"),
    "i386": ("386", None), "i686": ("386", None),
    "ppc64le": ("ppc64le", None), "s390x": ("s390x", None), "riscv64": ("riscv64", None),
}


def host_platform(machine: str | None = None) -> Platform:
    """The platform images must be for to run here, e.g. linux/amd64 or linux/arm64/v8."""
    machine = machine or _platform.machine()
    arch, variant = _MACHINES.get(machine, (machine, None))
    return Platform(architecture=arch, os="linux", variant=variant)


def normalize_platform(p: Platform) -> Platform:
    """Spell a platform the way comparisons expect (containerd platforms.Normalize):
    arm64 without variant is v8, amd64 v1 is plain amd64, arm without variant is v7."""
    arch, variant = p.architecture.lower(), p.variant
    arch = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm",
            "i386": "386"}.get(arch, arch)
    if arch == "arm64" and variant in (None, "", "8", "v8"):
        variant = "v8"
    elif arch == "amd64" and variant in ("", "v1"):
        variant = None
    elif arch == "arm" and not variant:
        variant = "v7"
    return Platform(arch, p.os.lower(), variant or None, p.os_version, p.os_features)


def compatible_platforms(want: Platform) -> list[Platform]:
    """Platforms that run on `want`, best first: itself, then older variants of its architecture
    (arm v7 runs v6 and v5; arm64 v8.x runs v8; amd64 v3 runs v2 and v1)."""
    want = normalize_platform(want)
    out = [want]
    if want.architecture == "arm" and want.variant in ("v8", "v7", "v6"):
        n = int(want.variant[1:])
        out += [Platform("arm", want.os, f"v{k}") for k in range(n - 1, 4, -1)]
    elif want.architecture == "arm64" and want.variant and want.variant.startswith("v8."):
        minor = int(want.variant[3:]) if want.variant[3:].isdigit() else 0
        out += [Platform("arm64", want.os, f"v8.{k}") for k in range(minor - 1, 0, -1)]
        out.append(Platform("arm64", want.os, "v8"))
    elif want.architecture == "amd64" and want.variant and want.variant[1:].isdigit():
        out += [Platform("amd64", want.os, f"v{k}") for k in range(int(want.variant[1:]) - 1, 1, -1)]
        out.append(Platform("amd64", want.os, None))
    return out


def platform_matches(candidate: Platform, want: Platform) -> bool:
    """True when an image for `candidate` runs on `want` (os, architecture and variant)."""
    c = normalize_platform(candidate)
    return any(c.os == p.os and c.architecture == p.architecture and c.variant == p.variant
               for p in compatible_platforms(want))


def select_manifest(manifests: Index | Iterable[Descriptor], want: Platform | None = None) -> Descriptor:
    """The descriptor to use for `want` (default: this host) from an index or manifest list.

    Preference follows `compatible_platforms` order; among equals the first in the index wins
    (image-index.md: "the first matching entry SHOULD be used"). Entries whose media type is
    not a manifest or index (attestations use an "unknown/unknown" platform) are skipped; a
    descriptor without a platform matches nothing. Raises NotFound listing what is there.
    """
    want = want or host_platform()
    entries = list(manifests.manifests if isinstance(manifests, Index) else manifests)
    usable = [d for d in entries if (mt.is_manifest(d.media_type) or mt.is_index(d.media_type))
              and d.platform is not None]
    for p in compatible_platforms(want):
        for d in usable:
            assert d.platform is not None
            c = normalize_platform(d.platform)
            if (c.os, c.architecture, c.variant) == (p.os, p.architecture, p.variant):
                return d
    have = ", ".join(str(d.platform) for d in usable) or "none"
    raise NotFound(f"no manifest for platform {want} (available: {have})")


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """The ChainID of each layer stack L0..Ln (image-spec config.md, "Layer ChainID"); also the
    names of the committed layer snapshots in Pallet's snapshotter."""
    out: list[str] = []
    for diff_id in diff_ids:
        d = str(Digest(diff_id))
        out.append(d if not out else str(Digest.from_bytes(f"{out[-1]} {d}".encode())))
    return out
