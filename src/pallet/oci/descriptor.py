"""Content descriptors and platforms: the plain values passed between registry, image and build.

JSON field names are exactly the OCI ones (`mediaType`, `digest`, `size`, `urls`, `annotations`,
`platform{architecture, os, os.version, os.features, variant}`, `artifactType`, `data`).
Spec: ../shared/specs/oci-image/descriptor.md and image-index.md ("platform").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pallet.errors import InvalidArgument
from pallet.oci.digest import Digest

# RFC 6838 section 4.2 restricted-name, type "/" subtype (with +suffix), no parameters.
_RESTRICTED_NAME = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
_MEDIA_TYPE_RE = re.compile(f"{_RESTRICTED_NAME}/{_RESTRICTED_NAME}")

ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"


def check_media_type(where: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidArgument(f"{where}: expected a media type string, got {type(value).__name__}")
    if not _MEDIA_TYPE_RE.fullmatch(value):
        raise InvalidArgument(f"{where}: invalid media type {value[:200]!r}")
    return value


def _str_list(where: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"{where}: expected an array of strings")
    return tuple(value)


def _str_map(where: str, value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise InvalidArgument(f"{where}: expected an object of string values")
    return dict(value)


def _where(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


@dataclass(frozen=True)
class Platform:
    """The platform a manifest runs on (image-index.md). `variant` e.g. "v8" for arm64."""

    architecture: str
    os: str
    variant: str | None = None
    os_version: str | None = None
    os_features: tuple[str, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.os_version is not None:
            out["os.version"] = self.os_version
        if self.os_features is not None:
            out["os.features"] = list(self.os_features)
        if self.variant is not None:
            out["variant"] = self.variant
        return out

    @classmethod
    def from_json(cls, obj: Any, where: str = "platform") -> Platform:
        if not isinstance(obj, dict):
            raise InvalidArgument(f"{where}: expected an object")
        for key in ("architecture", "os"):
            if not isinstance(obj.get(key), str):
                raise InvalidArgument(f"{where}.{key}: required string")
        for key in ("variant", "os.version"):
            if key in obj and not isinstance(obj[key], str):
                raise InvalidArgument(f"{where}.{key}: expected a string")
        features = obj.get("os.features")
        return cls(architecture=obj["architecture"], os=obj["os"], variant=obj.get("variant") or None,
                   os_version=obj.get("os.version"),
                   os_features=None if features is None else _str_list(f"{where}.os.features", features))

    def __str__(self) -> str:
        s = f"{self.os}/{self.architecture}"
        return f"{s}/{self.variant}" if self.variant else s


@dataclass(frozen=True)
class Descriptor:
    """What a piece of content is (media type), its digest and size, plus optional extras.

    Hashing ignores the mapping-valued fields, so descriptors can be set members and dict keys.
    """

    media_type: str
    digest: Digest
    size: int
    annotations: Mapping[str, str] | None = field(default=None, hash=False)
    platform: Platform | None = None
    urls: tuple[str, ...] | None = None
    artifact_type: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.digest, Digest):
            object.__setattr__(self, "digest", Digest(self.digest))
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 0:
            raise InvalidArgument(f"size: must be a non-negative integer, got {self.size!r}")
        if self.urls is not None and not isinstance(self.urls, tuple):
            object.__setattr__(self, "urls", tuple(self.urls))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": str(self.digest),
                               "size": self.size}
        if self.urls is not None:
            out["urls"] = list(self.urls)
        if self.annotations is not None:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            out["platform"] = self.platform.to_json()
        if self.artifact_type is not None:
            out["artifactType"] = self.artifact_type
        return out

    @classmethod
    def from_json(cls, obj: Any, where: str = "descriptor") -> Descriptor:
        if not isinstance(obj, dict):
            raise InvalidArgument(f"{where}: expected an object")
        media_type = check_media_type(_where(where, "mediaType"), obj.get("mediaType"))
        if "digest" not in obj:
            raise InvalidArgument(f"{where}.digest: required")
        try:
            digest = Digest(obj["digest"])
        except InvalidArgument as exc:
            raise InvalidArgument(f"{where}.digest: {exc}") from exc
        size = obj.get("size")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise InvalidArgument(f"{where}.size: required non-negative integer")
        annotations = obj.get("annotations")
        platform = obj.get("platform")
        urls = obj.get("urls")
        artifact_type = obj.get("artifactType")
        return cls(
            media_type=media_type, digest=digest, size=size,
            annotations=None if annotations is None else _str_map(f"{where}.annotations", annotations),
            platform=None if platform is None else Platform.from_json(platform, f"{where}.platform"),
            urls=None if urls is None else _str_list(f"{where}.urls", urls),
            artifact_type=None if artifact_type is None
            else check_media_type(f"{where}.artifactType", artifact_type),
        )

    @property
    def ref_name(self) -> str | None:
        """The `org.opencontainers.image.ref.name` annotation (a tag in an image layout)."""
        return (self.annotations or {}).get(ANNOTATION_REF_NAME)

    def with_annotations(self, annotations: Mapping[str, str] | None) -> Descriptor:
        return Descriptor(self.media_type, self.digest, self.size, annotations, self.platform,
                          self.urls, self.artifact_type)
