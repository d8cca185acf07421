"""The v1 freezer controller: freezer.state FROZEN / THAWED.

Documentation/admin-guide/cgroup-v1/freezer-subsystem.rst: writing FROZEN starts freezing; the
state reads FREEZING until every task is frozen, so freeze() polls until it reads FROZEN and
gives up (thawing again) if that does not happen in time.
"""

from __future__ import annotations

import time
from pathlib import Path

from pallet.cgroups import cgroupfs as fs
from pallet.errors import NotFound, Unavailable


def freeze(d: Path, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        fs.write(d / "freezer.state", "FROZEN")
        if state(d) == "FROZEN":
            return
        if time.monotonic() > deadline:
            fs.write(d / "freezer.state", "THAWED")
            raise Unavailable(f"{d}: processes did not freeze within {timeout} s")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def thaw(d: Path) -> None:
    fs.write(d / "freezer.state", "THAWED")


def state(d: Path) -> str:
    try:
        return fs.read(d / "freezer.state").strip()
    except NotFound:
        return "THAWED"
