"""What the registry reads from a pushed manifest: its type, the blobs and manifests it refers to,
its subject, and the descriptor it gets in a referrers list.

Deliberately lenient about what a registry need not understand: artifacts carry any config and
layer media types (image-spec manifest.md "Guidelines for Artifact Usage"), so only the
structure the registry acts on is checked: schemaVersion 2, a known manifest or index media type
that agrees with Content-Type, and well-formed descriptors (media type, digest, size).
Docker schema 1 is refused (distribution stopped accepting it in 2.8).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pallet.errors import InvalidArgument
from pallet.oci import mediatypes as mt
from pallet.oci.descriptor import check_media_type
from pallet.oci.digest import Digest
from pallet.registry.server.errors import RegistryError

MAX_MANIFEST_SIZE = 4 << 20  # spec.md "Pushing Manifests": registries should take at least 4 MB
KNOWN = mt.MANIFESTS | mt.INDEXES


@dataclass(frozen=True)
class Ref:
    """A descriptor as the registry needs it."""

    media_type: str
    digest: Digest
    size: int
    platform: dict[str, Any] | None = None
    foreign: bool = False  # has `urls`: content lives elsewhere, the registry need not hold it


@dataclass(frozen=True)
class ParsedManifest:
    media_type: str
    blobs: tuple[Ref, ...] = ()  # config and layers of an image manifest
    manifests: tuple[Ref, ...] = ()  # children of an index
    subject: Ref | None = None
    artifact_type: str | None = None
    config_media_type: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def is_index(self) -> bool:
        return self.media_type in mt.INDEXES


def _invalid(message: str) -> RegistryError:
    return RegistryError("MANIFEST_INVALID", message)


def _ref(where: str, obj: Any) -> Ref:
    if not isinstance(obj, dict):
        raise _invalid(f"{where}: expected a descriptor object")
    try:
        media_type = check_media_type(f"{where}.mediaType", obj.get("mediaType"))
        digest = Digest(obj.get("digest"))  # type: ignore[arg-type]  # Digest() checks the type
    except InvalidArgument as exc:
        raise _invalid(str(exc)) from None
    size = obj.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _invalid(f"{where}.size: expected a non-negative integer")
    platform = obj.get("platform")
    return Ref(media_type, digest, size, platform if isinstance(platform, dict) else None,
               foreign=bool(obj.get("urls")))


def base_media_type(content_type: str | None) -> str | None:
    """Content-Type without parameters (spec: the registry SHOULD ignore them)."""
    if not content_type:
        return None
    return content_type.split(";", 1)[0].strip().lower() or None


def parse(data: bytes, content_type: str | None) -> ParsedManifest:
    """Parse a pushed manifest; RegistryError MANIFEST_INVALID naming what is wrong."""
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _invalid(f"not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise _invalid("expected a JSON object")
    if obj.get("schemaVersion") == 1:
        raise _invalid("Docker image manifest schema 1 is not supported")
    if obj.get("schemaVersion") != 2 or isinstance(obj.get("schemaVersion"), bool):
        raise _invalid(f"schemaVersion: must be 2, got {obj.get('schemaVersion')!r}")
    declared = base_media_type(content_type)
    in_doc = obj.get("mediaType")
    if in_doc is not None and not isinstance(in_doc, str):
        raise _invalid("mediaType: expected a string")
    # "If a manifest includes a mediaType field, clients MUST set the Content-Type header to
    # the value specified" (spec.md "Pushing Manifests"); a generic Content-Type is tolerated.
    if in_doc and declared in KNOWN and declared != in_doc:
        raise _invalid(f"mediaType {in_doc!r} does not match Content-Type {declared!r}")
    media_type = in_doc or (declared if declared in KNOWN else None)
    if media_type is None:
        # OCI lets mediaType be absent; tell index from manifest by shape.
        media_type = mt.OCI_INDEX if "manifests" in obj else mt.OCI_MANIFEST
    if media_type not in KNOWN:
        raise _invalid(f"unsupported manifest media type {media_type!r}")
    annotations = obj.get("annotations") or {}
    if not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values()):
        raise _invalid("annotations: expected an object of string values")
    artifact_type = obj.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise _invalid("artifactType: expected a string")
    subject = _ref("subject", obj["subject"]) if obj.get("subject") is not None else None
    if media_type in mt.INDEXES:
        children = obj.get("manifests")
        if not isinstance(children, list):
            raise _invalid("manifests: expected an array")
        refs = tuple(_ref(f"manifests[{i}]", c) for i, c in enumerate(children))
        return ParsedManifest(media_type, manifests=refs, subject=subject, artifact_type=artifact_type,
                              annotations=annotations)
    config = _ref("config", obj.get("config"))
    layers = obj.get("layers", [])
    if not isinstance(layers, list):
        raise _invalid("layers: expected an array")
    refs = (config, *(_ref(f"layers[{i}]", layer) for i, layer in enumerate(layers)))
    return ParsedManifest(media_type, blobs=refs, subject=subject, artifact_type=artifact_type,
                          config_media_type=config.media_type, annotations=annotations)


def referrer_descriptor(parsed: ParsedManifest, digest: Digest, size: int) -> dict[str, Any]:
    """The descriptor of a referrer in a referrers list (spec.md "Listing Referrers"):
    artifactType is the manifest's, else its config's media type (image manifests only)."""
    desc: dict[str, Any] = {"mediaType": parsed.media_type, "digest": str(digest), "size": size}
    artifact_type = parsed.artifact_type or (None if parsed.is_index else parsed.config_media_type)
    if artifact_type:
        desc["artifactType"] = artifact_type
    if parsed.annotations:
        desc["annotations"] = parsed.annotations
    return desc
