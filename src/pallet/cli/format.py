"""Rendering helpers shared by the CLI verbs: Docker's human sizes and ages, tab-aligned tables,
and `--format` handling (`table ...`, `json`, or a Go-template subset, see cli.main).

Standard library only, like the rest of the CLI path (no pallet.image: it would pull in the
store's dependencies).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

NONE = "<none>"


def human_size(size: float) -> str:
    """Docker's size column (go-units HumanSizeWithPrecision(size, 3)): decimal units."""
    units = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
    i = 0
    while size >= 1000 and i < len(units) - 1:
        size /= 1000
        i += 1
    return f"{size:.3g}{units[i]}"


def human_duration(seconds: float) -> str:
    """go-units HumanDuration, which the docker CLI's CREATED columns use (with " ago")."""
    s = int(seconds)
    minutes, hours = round(seconds / 60), round(seconds / 3600)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // (24 * 7)} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // (24 * 30)} months"
    return f"{hours // (24 * 365)} years"


def since(unix: int, now: float | None = None) -> str:
    """`2 minutes ago`, or N/A for an unknown time."""
    if unix <= 0:
        return "N/A"
    return f"{human_duration((time.time() if now is None else now) - unix)} ago"


def created_at(unix: int) -> str:
    """The docker CLI's CreatedAt: `2024-05-07 20:33:45 +0000 UTC`."""
    return time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(unix))


def short_id(image_id: str) -> str:
    """Docker's 12-hex-digit form of an id (`sha256:` dropped)."""
    return image_id.partition(":")[2][:12] if image_id.startswith("sha256:") else image_id[:12]


def split_reference(ref: str) -> tuple[str, str]:
    """(repository, tag) of a familiar `name:tag` or `name@digest` from the daemon."""
    name = ref.split("@")[0]
    slash, colon = name.rfind("/"), name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1:]
    return name, NONE


def align(rows: Iterable[Sequence[str]], pad: int = 3) -> str:
    """Left-aligned columns `pad` spaces apart, the last column unpadded (the docker CLI's
    tabwriter settings: minwidth 20 is for `docker ps`; images and history use plain padding)."""
    rows = [list(r) for r in rows]
    if not rows:
        return ""
    ncols = max(len(r) for r in rows)
    widths = [max((len(r[i]) for r in rows if i < len(r)), default=0) for i in range(ncols)]
    out = []
    for r in rows:
        cells = [c.ljust(widths[i] + pad) if i < len(r) - 1 else c for i, c in enumerate(r)]
        out.append("".join(cells).rstrip())
    return "\n".join(out) + "\n"


_FIELD = re.compile(r"\{\{\s*\.(\w+)\s*\}\}")


def render(fmt: str | None, default_fields: Sequence[str], headers: Mapping[str, str],
           rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows as the docker CLI prints them for `--format`: None or "table" is the default table
    of `default_fields`; "table TEMPLATE" a table with a header made from the fields the
    template names; "json" one JSON object per line; anything else a template per row."""
    from pallet.cli.main import render_template

    if fmt is None or fmt.strip() == "table":
        return align([[headers[f] for f in default_fields],
                      *([str(r[f]) for f in default_fields] for r in rows)])
    if fmt.strip() == "json":
        return "".join(json.dumps(dict(r), sort_keys=True) + "\n" for r in rows)
    if fmt.startswith("table"):
        template = fmt[len("table"):].strip()
        header = _FIELD.sub(lambda m: headers.get(m.group(1), m.group(1).upper()), template)
        lines = [render_template(header, {})] + [render_template(template, r) for r in rows]
        return align(line.split("\t") for line in lines)
    return "".join(render_template(fmt, r) + "\n" for r in rows)


__all__ = ["NONE", "align", "created_at", "human_duration", "human_size", "render", "short_id", "since",
           "split_reference"]
