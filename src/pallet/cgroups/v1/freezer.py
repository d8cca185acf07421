"""The v1 freezer controller: freezer.state FROZEN / THAWED.

Documentation/admin-guide/cgroup-v1/freezer-subsystem.rst: writing FROZEN starts freezing; the
state reads FREEZING until every task is frozen, so freeze() polls until it reads FROZEN and
gives up (thawing again) if that does not happen in time.
"""

from __future__ import annotations

import os
import time

from pallet.cgroups import cgroupfs as fs
from pallet.errors import NotFound, Unavailable


def freeze(d: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        fs.write(os.path.join(d, "freezer.state"), "FROZEN")
        if state(d) == "FROZEN":
            return
        if time.monotonic() > deadline:
            fs.write(os.path.join(d, "freezer.state"), "THAWED")
            raise Unavailable(f"{d}: processes did not freeze within {timeout} s")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def thaw(d: str) -> None:
    fs.write(os.path.join(d, "freezer.state"), "THAWED")


def state(d: str) -> str:
    try:
        return fs.read(os.path.join(d, "freezer.state")).strip()
    except NotFound:
        return "THAWED"
