"""Human-readable sizes and durations as Docker prints them (docker/go-units); imports nothing.

Shared by the CLI tables, the image admin command and the engine (ContainerSummary.Status is a
human duration computed by the daemon, as dockerd does).
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
