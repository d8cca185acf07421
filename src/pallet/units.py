"""Sizes and durations as Docker prints and reads them (docker/go-units); imports nothing.

Shared by the CLI tables and flags, the image admin command, the runtime's `update`, the
engine's log options and compose (ContainerSummary.Status is a human duration computed by the
daemon, as dockerd does).
"""

from __future__ import annotations


def human_size(size: float) -> str:
    """go-units HumanSizeWithPrecision(size, 3): decimal units, as Docker's SIZE columns."""
    units = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
    i = 0
    while size >= 1000 and i < len(units) - 1:
        size /= 1000
        i += 1
    return f"{size:.3g}{units[i]}"


def human_duration(seconds: float) -> str:
    """go-units HumanDuration: minutes truncate, hours round (time.Duration.Round(time.Hour))."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    m = s // 60
    if m == 1:
        return "About a minute"
    if m < 60:
        return f"{m} minutes"
    h = round(seconds / 3600)
    if h == 1:
        return "About an hour"
    if h < 48:
        return f"{h} hours"
    if h < 24 * 7 * 2:
        return f"{h // 24} days"
    if h < 24 * 30 * 2:
        return f"{h // (24 * 7)} weeks"
    if h < 24 * 365 * 2:
        return f"{h // (24 * 30)} months"
    return f"{h // (24 * 365)} years"


_DURATION_SCALE = {"ns": 1, "us": 10**3, "µs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9,
                   "h": 3600 * 10**9}


def go_duration_ns(text: str) -> int:
    """A Go duration (time.ParseDuration: "30s", "1m30s", "1.5h", "500ms", "0") in nanoseconds;
    ValueError if `text` is not one. The CLI's flags, the engine's events and prune, builds and
    compose all read durations with it."""
    import re  # here: only the verbs that take a duration pay for it at CLI start-up

    v = text.strip()
    if v == "0":
        return 0
    parts = re.findall(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)", v)
    if not parts or "".join(n + u for n, u in parts) != v:
        raise ValueError(f"invalid duration {text!r}")
    return int(sum(float(n) * _DURATION_SCALE[u] for n, u in parts))


_BINARY = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def ram_in_bytes(text: str) -> int:
    """go-units RAMInBytes (v0.5 parseSize with binary units), the reader of every byte size
    Docker takes (`-m 64m`, `--shm-size`, tmpfs `size=`, log `max-size`, compose `mem_limit`):
    a number, an optional single space, then nothing, `b`, or k/m/g/t/p with an optional `b` or
    `ib`, any case: `64m`, `1.5g`, `512 KiB`, `1024`. ValueError says what is wrong.

    Surrounding whitespace is dropped (go-units refuses it; nothing it takes is refused here).
    The number is what both Go's strconv.ParseFloat and Python's float() take (`1.5`, `.5`,
    `1e3`, `1_000`; not Go's hex floats); the result is truncated to an integer, as int64(float)
    is. Written by hand: `re` costs the CLI's
    start-up ~6 ms, and the runtime's `update` pays nothing for it either."""
    s = text.strip()
    # go-units: the number ends at the last digit, dot or space; a space there is dropped
    sep = max(s.rfind(c) for c in "0123456789. ")
    if sep < 0 or not s.isascii():
        raise ValueError(f"invalid size: {text!r}")
    num, sfx = (s[:sep], s[sep + 1:]) if s[sep] == " " else (s[:sep + 1], s[sep + 1:])
    if not num or num[0].isspace() or num[-1].isspace() or num.lstrip("+-")[:1].isalpha():
        raise ValueError(f"invalid size: {text!r}")
    try:
        size = float(num)
    except ValueError:
        raise ValueError(f"invalid size: {text!r}") from None
    if not 0 <= size < 2**63:  # negative (go-units refuses it), or past int64 (inf included)
        raise ValueError(f"invalid size: {text!r}")
    low = sfx.lower()
    if low and low != "b":
        mul = _BINARY.get(low[0])
        if mul is None or len(low) > 3 or low[1:] not in ("", "b", "ib"):
            raise ValueError(f"invalid suffix: {sfx!r}")
        size *= mul
        if size >= 2**63:
            raise ValueError(f"invalid size: {text!r}")
    return int(size)
