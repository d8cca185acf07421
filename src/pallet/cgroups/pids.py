"""The pids controller, identical in v1 and v2: pids.max and pids.current.

Documentation/admin-guide/cgroup-v1/pids.rst: "max" means no limit; fork() and clone() fail with
EAGAIN once pids.current would pass pids.max.
"""

from __future__ import annotations

import os

from pallet.cgroups import cgroupfs as fs
from pallet.cgroups.resources import get_int

TYPE_CHECKING = False  # the stats dataclasses load only when stats are read (start-up cost)
if TYPE_CHECKING:
    from pallet.cgroups.cgroupfs import StrPath
    from pallet.cgroups.stats import PidsStats


def set(d: StrPath, pids: dict) -> None:
    limit = get_int(pids, "limit")
    # As runc: 0 leaves the limit alone, a negative limit is "max".
    if limit:
        fs.write(os.path.join(d, "pids.max"), limit if limit > 0 else "max")


def stats(d: StrPath) -> PidsStats:
    from pallet.cgroups.stats import PidsStats

    return PidsStats(current=fs.read_int(os.path.join(d, "pids.current")),
                     limit=fs.read_int(os.path.join(d, "pids.max")))
