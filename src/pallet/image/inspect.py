"""Docker Engine API shapes of images: ImageInspect, ImageSummary and HistoryResponseItem.

Field names, types and nullability are those of the v1.50 document
(../shared/specs/docker-engine-api/v1.50.yaml, definitions ImageInspect, ImageConfig,
ImageSummary, ImageHistoryResponseItem). Fields marked x-nullable are left out when there is no
value, as Docker's `omitempty` does; the others are always present ("" / [] / {} when empty).
These functions only reshape plain data; finding the data is the image service's work.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pallet.oci.descriptor import Descriptor
from pallet.oci.manifest import ImageConfig

# ImageConfig (the API's, i.e. the run config): always-present fields and their empty values.
_CONFIG_ALWAYS: dict[str, Any] = {"User": "", "Env": [], "Cmd": [], "Volumes": {}, "WorkingDir": "",
                                  "Entrypoint": [], "Labels": {}}
_CONFIG_NULLABLE = ("ExposedPorts", "Healthcheck", "ArgsEscaped", "OnBuild", "StopSignal", "Shell")


@dataclass(frozen=True)
class ImageFacts:
    """What the service knows about one image, beyond its config and manifest."""

    id: str
    manifest: Descriptor
    config: ImageConfig
    repo_tags: Sequence[str] = ()
    repo_digests: Sequence[str] = ()
    parent: str = ""
    size: int = 0
    last_tag_time: str | None = None
    containers: int = -1
    driver: str = ""
    driver_data: Mapping[str, str] = field(default_factory=dict)


def unix_time(rfc3339: str | None) -> int:
    """Seconds since the epoch of an RFC 3339 time (nanoseconds allowed); 0 when absent or bad."""
    if not rfc3339:
        return 0
    text = rfc3339.strip().replace("z", "Z")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    # fromisoformat takes at most 6 fraction digits on 3.11: cut nanoseconds to microseconds.
    head, dot, rest = text.partition(".")
    if dot:
        digits = "".join(c for c in rest if c.isdigit())
        tz = rest[len(digits):]
        text = f"{head}.{digits[:6]}{tz}"
    try:
        return int(datetime.fromisoformat(text).timestamp())
    except ValueError:
        return 0


def run_config(config: ImageConfig) -> dict[str, Any]:
    """The API's ImageConfig object from an image config's `config` field."""
    src = dict(config.config or {})
    out: dict[str, Any] = {}
    for key, empty in _CONFIG_ALWAYS.items():
        value = src.get(key)
        out[key] = value if value is not None else type(empty)()
    for key in _CONFIG_NULLABLE:
        if src.get(key) is not None:
            out[key] = src[key]
    return out


def comment(config: ImageConfig) -> str:
    """Docker's image comment: the config's top-level `comment` (written by commit and import),
    else the last history entry's comment."""
    value = (config.extra or {}).get("comment")
    if isinstance(value, str):
        return value
    return next((h.comment for h in reversed(config.history) if h.comment), "")


def image_inspect(f: ImageFacts) -> dict[str, Any]:
    """ImageInspect for GET /images/{name}/json."""
    c = f.config
    extra = c.extra or {}
    out: dict[str, Any] = {
        "Id": f.id,
        "Descriptor": f.manifest.to_json(),
        "RepoTags": list(f.repo_tags),
        "RepoDigests": list(f.repo_digests),
        "Parent": f.parent,
        "Comment": comment(c),
    }
    if c.created:
        out["Created"] = c.created
    out["DockerVersion"] = extra.get("docker_version") if isinstance(extra.get("docker_version"), str) else ""
    out["Author"] = c.author or ""
    out["Config"] = run_config(c)
    out["Architecture"] = c.architecture
    if c.variant:
        out["Variant"] = c.variant
    out["Os"] = c.os
    if c.os_version:
        out["OsVersion"] = c.os_version
    out["Size"] = f.size
    out["GraphDriver"] = {"Name": f.driver, "Data": dict(f.driver_data)}
    out["RootFS"] = {"Type": c.rootfs_type, "Layers": [str(d) for d in c.diff_ids]}
    out["Metadata"] = {"LastTagTime": f.last_tag_time} if f.last_tag_time else {}
    return out


def image_summary(f: ImageFacts) -> dict[str, Any]:
    """ImageSummary for GET /images/json (`docker images`)."""
    return {
        "Id": f.id,
        "ParentId": f.parent,
        "RepoTags": list(f.repo_tags),
        "RepoDigests": list(f.repo_digests),
        "Created": unix_time(f.config.created),
        "Size": f.size,
        "SharedSize": -1,
        "Labels": dict(f.config.labels),
        "Containers": f.containers,
        "Descriptor": f.manifest.to_json(),
    }


def history_items(f: ImageFacts, layer_sizes: Sequence[int],
                  ids: Mapping[int, str] | None = None) -> list[dict[str, Any]]:
    """HistoryResponseItem list, newest first (GET /images/{name}/history).

    `layer_sizes[i]` is the size of the i-th layer; `ids` maps a history index to the id of a
    local image that ends at that step (the newest entry always gets this image's id); other
    steps show "<missing>", as Docker does for layers it did not build itself.
    """
    items: list[dict[str, Any]] = []
    layer = 0
    for h in f.config.history:
        size = 0
        if not h.empty_layer:
            size = layer_sizes[layer] if layer < len(layer_sizes) else 0
            layer += 1
        items.append({
            "Id": "<missing>",
            "Created": unix_time(h.created),
            "CreatedBy": h.created_by or "",
            "Tags": [],
            "Size": size,
            "Comment": h.comment or "",
        })
    for index, image_id in (ids or {}).items():
        if 0 <= index < len(items):
            items[index]["Id"] = image_id
    if items:
        items[-1]["Id"] = f.id
        items[-1]["Tags"] = list(f.repo_tags)
    items.reverse()
    return items
