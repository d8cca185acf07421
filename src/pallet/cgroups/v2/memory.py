"""The v2 memory controller: memory.max, memory.low, memory.swap.max and stats.

cgroup-v2.rst, "Memory". v2 bounds swap alone (memory.swap.max) where OCI's swap is
memory+swap, hence conversions.swap_to_v2. There is no per-cgroup swappiness and no way to turn
the OOM killer off in v2; validate() refuses both.
"""

from __future__ import annotations

import os

from pallet.cgroups import cgroupfs as fs
from pallet.cgroups.conversions import memory_value, swap_to_v2
from pallet.cgroups.resources import get_int
from pallet.errors import NotSupported

TYPE_CHECKING = False  # the stats dataclasses load only when stats are read (start-up cost)
if TYPE_CHECKING:
    from pallet.cgroups.cgroupfs import StrPath
    from pallet.cgroups.stats import MemoryStats

P = "linux.resources.memory"


def check(mem: dict) -> None:
    swappiness = get_int(mem, "swappiness")
    if swappiness is not None and swappiness != -1:
        raise NotSupported(f"{P}.swappiness: cgroup v2 has no per-cgroup swappiness")
    if mem.get("disableOOMKiller"):
        raise NotSupported(f"{P}.disableOOMKiller: cgroup v2 cannot disable the OOM killer")
    swap = get_int(mem, "swap")
    if swap is not None:
        swap_to_v2(swap, get_int(mem, "limit") or 0)


def set(d: StrPath, mem: dict) -> None:
    limit = get_int(mem, "limit")
    if limit:
        fs.write(os.path.join(d, "memory.max"), memory_value(limit))
    swap = get_int(mem, "swap")
    if swap is not None:
        swap_max = swap_to_v2(swap, limit or 0)
        if swap_max and os.path.exists(os.path.join(d, "memory.swap.max")):
            fs.write(os.path.join(d, "memory.swap.max"), memory_value(swap_max))
        elif swap_max > 0:
            raise NotSupported(f"{P}.swap: this kernel does not account swap (no memory.swap.max)")
    reservation = get_int(mem, "reservation")
    if reservation:
        fs.write(os.path.join(d, "memory.low"), memory_value(reservation))


def stats(d: StrPath) -> MemoryStats:
    from pallet.cgroups.stats import MemoryStats

    raw = fs.read_keyed(os.path.join(d, "memory.stat"))
    events = fs.read_keyed(os.path.join(d, "memory.events"))
    return MemoryStats(
        usage=fs.read_int(os.path.join(d, "memory.current")),
        max_usage=fs.read_int(os.path.join(d, "memory.peak")),  # Linux 5.19+
        limit=fs.read_int(os.path.join(d, "memory.max")),
        cache=raw.get("file", 0), rss=raw.get("anon", 0),
        active_anon=raw.get("active_anon", 0), inactive_anon=raw.get("inactive_anon", 0),
        active_file=raw.get("active_file", 0), inactive_file=raw.get("inactive_file", 0),
        swap=fs.read_int(os.path.join(d, "memory.swap.current")),
        failcnt=events.get("max", 0),
        oom_kill=events.get("oom_kill", 0),
        raw=raw,
    )
