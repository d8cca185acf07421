"""The v2 freezer: cgroup.freeze, with completion reported in cgroup.events.

cgroup-v2.rst, "Core Interface Files": writing 1 to cgroup.freeze starts freezing the cgroup and
its descendants; "frozen 1" appears in cgroup.events once every process is stopped.
"""

from __future__ import annotations

import os
import time

from pallet.cgroups import cgroupfs as fs
from pallet.errors import Unavailable

TYPE_CHECKING = False  # mypy treats this name as typing's
if TYPE_CHECKING:
    from pallet.cgroups.cgroupfs import StrPath


def _wait(d: StrPath, want: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.001
    while is_frozen(d) != bool(want):
        if time.monotonic() > deadline:
            raise Unavailable(f"{d}: cgroup.events did not report frozen {want} within {timeout} s")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def freeze(d: StrPath, timeout: float = 5.0) -> None:
    fs.write(os.path.join(d, "cgroup.freeze"), 1)
    try:
        _wait(d, 1, timeout)
    except Unavailable:
        fs.write(os.path.join(d, "cgroup.freeze"), 0)
        raise


def thaw(d: StrPath, timeout: float = 5.0) -> None:
    fs.write(os.path.join(d, "cgroup.freeze"), 0)
    _wait(d, 0, timeout)


def is_frozen(d: StrPath) -> bool:
    return fs.read_keyed(os.path.join(d, "cgroup.events")).get("frozen", 0) == 1
