"""The v1 memory controller: limits, soft limit, swap (memsw), swappiness, OOM killer and stats.

Documentation/admin-guide/cgroup-v1/memory.rst. memory.memsw.limit_in_bytes bounds memory+swap
together, which is exactly what OCI linux.resources.memory.swap means, so it is written as is.
"""

from __future__ import annotations

import os

from pallet.cgroups import cgroupfs as fs
from pallet.cgroups.conversions import v1_memory_limit
from pallet.cgroups.resources import get_int
from pallet.errors import InvalidArgument, NotSupported

TYPE_CHECKING = False  # the stats dataclasses load only when stats are read (start-up cost)
if TYPE_CHECKING:
    from pallet.cgroups.stats import MemoryStats

LIMIT = "memory.limit_in_bytes"
MEMSW = "memory.memsw.limit_in_bytes"


def check(mem: dict, hierarchy: str) -> None:
    limit, swap = get_int(mem, "limit"), get_int(mem, "swap")
    if swap and swap > 0 and limit and limit > 0 and swap < limit:
        raise InvalidArgument(f"linux.resources.memory.swap: memory+swap limit {swap} must be "
                              f">= the memory limit {limit}")
    # memsw files exist only with swap accounting (CONFIG_MEMCG_SWAP, swapaccount=1).
    if swap and swap > 0 and swap != limit and not os.path.exists(os.path.join(hierarchy, MEMSW)):
        raise NotSupported("linux.resources.memory.swap: this kernel does not account swap "
                           "(no memory.memsw.limit_in_bytes)")


def set(d: str, mem: dict) -> None:
    limit, swap = get_int(mem, "limit"), get_int(mem, "swap")
    has_memsw = os.path.exists(os.path.join(d, MEMSW))
    if swap and has_memsw:
        # memsw must stay >= limit at every moment: grow memsw before the limit, shrink it after
        # (runc libcontainer/cgroups/fs/memory.go setMemoryAndSwap). "Unlimited" reads back as
        # a huge number, and with an unlimited limit a finite memsw must come second.
        current = v1_memory_limit(fs.read_int(os.path.join(d, MEMSW), default=-1))
        grow = swap == -1 or (current > 0 and swap > current)
        if grow:
            fs.write(os.path.join(d, MEMSW), swap)
        if limit:
            fs.write(os.path.join(d, LIMIT), limit)
        if not grow:
            fs.write(os.path.join(d, MEMSW), swap)
    elif limit:
        fs.write(os.path.join(d, LIMIT), limit)
    reservation = get_int(mem, "reservation")
    if reservation:
        fs.write(os.path.join(d, "memory.soft_limit_in_bytes"), reservation)
    swappiness = get_int(mem, "swappiness")
    if swappiness is not None and swappiness != -1:
        fs.write(os.path.join(d, "memory.swappiness"), swappiness)
    if "disableOOMKiller" in mem and mem["disableOOMKiller"] is not None:
        # memory.rst section 10: writing 1 to memory.oom_control disables the OOM killer.
        fs.write(os.path.join(d, "memory.oom_control"), 1 if mem["disableOOMKiller"] else 0)
    # kernel and kernelTCP: kmem limits are deprecated and ignored since Linux 5.16 (memory.rst).


def stats(d: str) -> MemoryStats:
    from pallet.cgroups.stats import MemoryStats

    raw = fs.read_keyed(os.path.join(d, "memory.stat"))
    usage = fs.read_int(os.path.join(d, "memory.usage_in_bytes"))
    memsw_usage = fs.read_int(os.path.join(d, "memory.memsw.usage_in_bytes"))
    oom = fs.read_keyed(os.path.join(d, "memory.oom_control"))

    def total(key: str) -> int:
        # total_* keys are hierarchical (this cgroup and its children), memory.rst 5.2.
        return raw.get(f"total_{key}", raw.get(key, 0))

    return MemoryStats(
        usage=usage,
        max_usage=fs.read_int(os.path.join(d, "memory.max_usage_in_bytes")),
        limit=v1_memory_limit(fs.read_int(os.path.join(d, LIMIT))),
        cache=total("cache"), rss=total("rss"),
        active_anon=total("active_anon"), inactive_anon=total("inactive_anon"),
        active_file=total("active_file"), inactive_file=total("inactive_file"),
        swap=max(memsw_usage - usage, 0) if memsw_usage else total("swap"),
        failcnt=fs.read_int(os.path.join(d, "memory.failcnt")),
        oom_kill=oom.get("oom_kill", 0),
        raw=raw,
    )
