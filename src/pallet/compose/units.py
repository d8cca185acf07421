"""Compose's value formats: durations and byte sizes (Compose Specification, "Specifying
durations" and "Specifying byte values")."""

from __future__ import annotations

import re
from typing import Any

from pallet.units import go_duration_ns


def duration_ns(value: Any) -> int:
    """A Go duration (`1m30s`, `10s`, `1.5s`, `250ms`) in nanoseconds; a bare number counts
    seconds (docker-compose 1.x accepted those). ValueError says what is wrong."""
    if isinstance(value, bool):
        raise ValueError(f"must be a duration like 10s or 1m30s, not {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"must not be negative: {value!r}")
        return int(value * 1_000_000_000)
    if not isinstance(value, str):
        raise ValueError(f"must be a duration like 10s or 1m30s, not {value!r}")
    text = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return int(float(text) * 1_000_000_000)
    try:
        return go_duration_ns(text)
    except ValueError:
        raise ValueError(f"must be a duration like 10s or 1m30s, not {value!r}") from None


def ram_in_bytes(value: Any) -> int:
    """A byte value (`512m`, `1g`, `2gb`, `1024`, an integer) in bytes, binary multiples as
    docker's units.RAMInBytes (pallet.units.ram_in_bytes). ValueError says what is wrong."""
    from pallet import units

    if isinstance(value, bool):
        raise ValueError(f"must be a byte value like 512m or 1g, not {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"must not be negative: {value!r}")
        return value
    if not isinstance(value, str):
        raise ValueError(f"must be a byte value like 512m or 1g, not {value!r}")
    try:
        return units.ram_in_bytes(value)
    except ValueError:
        raise ValueError(f"must be a byte value like 512m or 1g, not {value!r}") from None


def duration_text(ns: int) -> str:
    """Nanoseconds as Go prints a duration (`1m30s`, `500ms`), for `config` output."""
    if ns == 0:
        return "0s"
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return f"{ns / size:g}{unit}"
    out = ""
    h, rest = divmod(ns, 3_600_000_000_000)
    m, rest = divmod(rest, 60_000_000_000)
    if h:
        out += f"{h}h"
    if h or m:
        out += f"{m}m"
    return out + f"{rest / 1_000_000_000:g}s"
