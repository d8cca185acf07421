"""Progress of pulls and pushes: the values the library reports and the JSON dockerd streams.

`Progress` carries dockerd's own status words ("Pulling fs layer", "Downloading", "Pushed", ...;
moby distribution/pull_v2.go and push_v2.go). `message` renders one as a line of the JSON
progress stream (pkg/jsonmessage.JSONMessage) and `bar` renders the `progress` text exactly as
moby's JSONProgress.String does for a daemon (no terminal: width 200, so the bar is included):

    [=========================>                         ]  1.049MB/2.13MB

Sizes use go-units HumanSizeWithPrecision(size, 4): decimal units, `%.4g`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pallet.errors import PalletError

_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")


@dataclass(frozen=True)
class Progress:
    """One progress message: `status` in dockerd's words, `id` the short layer id or tag."""

    status: str
    id: str | None = None
    current: int | None = None
    total: int | None = None
    plain: bool = False    # a message (moby progress.Message): no progressDetail even with an id


ProgressFn = Callable[[Progress], None]


class Cancelled(PalletError):
    """Raised by a progress function to stop the operation (its client went away). Not an
    Unavailable: a download does not retry it, and keeps its bytes for the next pull."""


def human_size(size: float) -> str:
    """go-units HumanSize: 2129920 -> "2.13MB", 999 -> "999B"."""
    i = 0
    while size >= 1000 and i < len(_UNITS) - 1:
        size /= 1000.0
        i += 1
    return f"{size:.4g}{_UNITS[i]}"


def bar(current: int, total: int | None) -> str:
    """moby's JSONProgress.String() for a daemon-side message (see the module docstring)."""
    if current <= 0 and (total is None or total <= 0):
        return ""
    if total is None or total <= 0:
        return f"{human_size(current):>8}"
    percentage = min(int(current / total * 100) // 2, 50)
    box = f"[{'=' * percentage}>{' ' * max(50 - percentage, 0)}] "
    numbers = f"{human_size(current):>8}/{human_size(total)}"
    if current > total:
        numbers = f"{human_size(current):>8}"
    return box + numbers


def message(p: Progress) -> dict[str, Any]:
    """The JSONMessage of one Progress: layer messages carry `progressDetail` (empty unless
    there are numbers), byte counts a `progress` bar, as dockerd writes them."""
    out: dict[str, Any] = {"status": p.status}
    if p.current is not None:
        detail: dict[str, int] = {"current": p.current}
        if p.total is not None:
            detail["total"] = p.total
        out["progressDetail"] = detail
        out["progress"] = bar(p.current, p.total)
    elif p.id is not None and not p.plain:
        out["progressDetail"] = {}
    if p.id is not None:
        out["id"] = p.id
    return out
