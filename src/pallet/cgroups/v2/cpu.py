"""The v2 cpu and cpuset controllers: cpu.weight, cpu.max, cpu.max.burst, cpu.idle, cpuset.*.

cgroup-v2.rst, "CPU" and "Cpuset". Shares become a weight with conversions.shares_to_weight;
quota and period share one file, cpu.max, so a period-only update keeps the current quota.
"""

from __future__ import annotations

import os

from pallet.cgroups import cgroupfs as fs
from pallet.cgroups.conversions import cpu_max, shares_to_weight
from pallet.cgroups.resources import get_int
from pallet.errors import NotSupported

TYPE_CHECKING = False  # the stats dataclasses load only when stats are read (start-up cost)
if TYPE_CHECKING:
    from pallet.cgroups.cgroupfs import StrPath
    from pallet.cgroups.stats import CpuStats


def set(d: StrPath, cpu: dict) -> None:
    weight = shares_to_weight(get_int(cpu, "shares") or 0)
    if weight:
        fs.write(os.path.join(d, "cpu.weight"), weight)
    quota, period = get_int(cpu, "quota"), get_int(cpu, "period")
    if quota is None and period:
        current = fs.read(os.path.join(d, "cpu.max")).split()
        quota = -1 if not current or current[0] == "max" else int(current[0])
    value = cpu_max(quota, period)
    if value is not None:
        fs.write(os.path.join(d, "cpu.max"), value)
    burst = get_int(cpu, "burst")
    if burst is not None:
        if os.path.exists(os.path.join(d, "cpu.max.burst")):
            fs.write(os.path.join(d, "cpu.max.burst"), burst)
        elif burst:
            raise NotSupported("linux.resources.cpu.burst: this kernel has no cpu.max.burst")
    idle = get_int(cpu, "idle")
    if idle is not None:
        if os.path.exists(os.path.join(d, "cpu.idle")):
            fs.write(os.path.join(d, "cpu.idle"), idle)
        elif idle:
            raise NotSupported("linux.resources.cpu.idle: this kernel has no cpu.idle")
    if cpu.get("cpus"):
        fs.write(os.path.join(d, "cpuset.cpus"), cpu["cpus"])
    if cpu.get("mems"):
        fs.write(os.path.join(d, "cpuset.mems"), cpu["mems"])


def stats(d: StrPath) -> CpuStats:
    from pallet.cgroups.stats import CpuStats

    st = fs.read_keyed(os.path.join(d, "cpu.stat"))
    return CpuStats(total_ns=st.get("usage_usec", 0) * 1000, user_ns=st.get("user_usec", 0) * 1000,
                    system_ns=st.get("system_usec", 0) * 1000, per_cpu_ns=[],
                    nr_periods=st.get("nr_periods", 0), nr_throttled=st.get("nr_throttled", 0),
                    throttled_ns=st.get("throttled_usec", 0) * 1000)
