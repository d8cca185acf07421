"""The v1 cpu and cpuacct controllers: CFS shares, bandwidth, idle, and CPU time accounting.

Documentation/scheduler/sched-bwc.rst (cpu.cfs_quota_us, cpu.cfs_period_us, cpu.cfs_burst_us)
and Documentation/admin-guide/cgroup-v1/cpuacct.rst. cpu and cpuacct may be one hierarchy
("cpu,cpuacct") or two; callers pass each directory separately.
"""

from __future__ import annotations

import os

from pallet.cgroups import cgroupfs as fs
from pallet.cgroups.resources import get_int
from pallet.errors import InvalidArgument, NotSupported

TYPE_CHECKING = False  # the stats dataclasses load only when stats are read (start-up cost)
if TYPE_CHECKING:
    from pallet.cgroups.stats import CpuStats


def set(d: str, cpu: dict) -> None:
    shares = get_int(cpu, "shares")
    if shares:
        fs.write(os.path.join(d, "cpu.shares"), shares)
    quota, period = get_int(cpu, "quota"), get_int(cpu, "period")
    quota_value = None if not quota else (-1 if quota < 0 else quota)
    if period:
        try:
            fs.write(os.path.join(d, "cpu.cfs_period_us"), period)
        except InvalidArgument:
            # The kernel checks period against the current quota: a new quota has to go first
            # (runc fs/cpu.go does the same dance).
            if quota_value is None:
                raise
            fs.write(os.path.join(d, "cpu.cfs_quota_us"), quota_value)
            fs.write(os.path.join(d, "cpu.cfs_period_us"), period)
    if quota_value is not None:
        fs.write(os.path.join(d, "cpu.cfs_quota_us"), quota_value)
    burst = get_int(cpu, "burst")
    if burst is not None:
        if not os.path.exists(os.path.join(d, "cpu.cfs_burst_us")):
            if burst:
                raise NotSupported("linux.resources.cpu.burst: this kernel has no cpu.cfs_burst_us")
        else:
            fs.write(os.path.join(d, "cpu.cfs_burst_us"), burst)
    idle = get_int(cpu, "idle")
    if idle is not None:
        if not os.path.exists(os.path.join(d, "cpu.idle")):
            if idle:
                raise NotSupported("linux.resources.cpu.idle: this kernel has no cpu.idle")
        else:
            fs.write(os.path.join(d, "cpu.idle"), idle)


def stats(cpu_dir: str | None, cpuacct_dir: str | None) -> CpuStats:
    from pallet.cgroups.stats import CpuStats

    throttling = fs.read_keyed(os.path.join(cpu_dir, "cpu.stat")) if cpu_dir else {}
    total = user = system = 0
    per_cpu: list[int] = []
    if cpuacct_dir:
        total = fs.read_int(os.path.join(cpuacct_dir, "cpuacct.usage"))
        per_cpu = fs.read_ints(os.path.join(cpuacct_dir, "cpuacct.usage_percpu"))
        if os.path.exists(os.path.join(cpuacct_dir, "cpuacct.usage_user")):
            user = fs.read_int(os.path.join(cpuacct_dir, "cpuacct.usage_user"))
            system = fs.read_int(os.path.join(cpuacct_dir, "cpuacct.usage_sys"))
        else:
            # cpuacct.stat is in USER_HZ ticks (cpuacct.rst), the older kernels' only split.
            ticks = fs.read_keyed(os.path.join(cpuacct_dir, "cpuacct.stat"))
            ns_per_tick = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
            user, system = ticks.get("user", 0) * ns_per_tick, ticks.get("system", 0) * ns_per_tick
    return CpuStats(total_ns=total, user_ns=user, system_ns=system, per_cpu_ns=per_cpu,
                    nr_periods=throttling.get("nr_periods", 0),
                    nr_throttled=throttling.get("nr_throttled", 0),
                    throttled_ns=throttling.get("throttled_time", 0))
