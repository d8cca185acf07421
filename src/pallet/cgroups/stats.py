"""Plain, frozen statistics of one cgroup, read from the kernel's v1 or v2 files.

Every field says where it comes from. Counters the kernel does not report on a host read as 0;
`raw` keeps every key of memory.stat so callers (docker stats) can show what they need.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class MemoryStats:
    """Memory usage in bytes.

    v1: memory.usage_in_bytes, memory.max_usage_in_bytes, memory.limit_in_bytes, memory.stat
    (total_* hierarchical keys), memory.memsw.usage_in_bytes, memory.failcnt, memory.oom_control.
    v2: memory.current, memory.peak, memory.max, memory.stat, memory.swap.current,
    memory.events (max -> failcnt, oom_kill).
    `limit` is 0 when the cgroup has no limit.
    """

    usage: int = 0
    max_usage: int = 0
    limit: int = 0
    cache: int = 0          # v1 total_cache, v2 file
    rss: int = 0            # v1 total_rss, v2 anon
    active_anon: int = 0
    inactive_anon: int = 0
    active_file: int = 0
    inactive_file: int = 0
    swap: int = 0           # v1 memsw usage - usage, v2 memory.swap.current
    failcnt: int = 0        # v1 memory.failcnt, v2 memory.events "max"
    oom_kill: int = 0       # v1 memory.oom_control oom_kill, v2 memory.events oom_kill
    raw: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class CpuStats:
    """CPU time in nanoseconds.

    v1: cpuacct.usage, cpuacct.usage_user, cpuacct.usage_sys (cpuacct.stat ticks as a fallback),
    cpuacct.usage_percpu, and cpu.stat nr_periods, nr_throttled, throttled_time.
    v2: cpu.stat usage_usec, user_usec, system_usec, nr_periods, nr_throttled, throttled_usec;
    v2 has no per-CPU usage so `per_cpu_ns` is empty.
    """

    total_ns: int = 0
    user_ns: int = 0
    system_ns: int = 0
    per_cpu_ns: list[int] = field(default_factory=list)
    nr_periods: int = 0
    nr_throttled: int = 0
    throttled_ns: int = 0


@dataclass(frozen=True)
class BlkioEntry:
    """One counter of one device: op is Read, Write, Sync, Async, Discard or Total."""

    major: int
    minor: int
    op: str
    value: int


@dataclass(frozen=True)
class BlkioStats:
    """Block IO per device.

    v1: blkio.io_service_bytes_recursive / blkio.io_serviced_recursive of the first policy that
    reports anything (CFQ, then BFQ, then blkio.throttle.*).
    v2: io.stat rbytes/wbytes -> io_service_bytes Read/Write, rios/wios -> io_serviced Read/Write.
    """

    io_service_bytes: list[BlkioEntry] = field(default_factory=list)
    io_serviced: list[BlkioEntry] = field(default_factory=list)


@dataclass(frozen=True)
class PidsStats:
    """pids.current and pids.max (0 when "max")."""

    current: int = 0
    limit: int = 0


@dataclass(frozen=True)
class Stats:
    memory: MemoryStats = field(default_factory=MemoryStats)
    cpu: CpuStats = field(default_factory=CpuStats)
    blkio: BlkioStats = field(default_factory=BlkioStats)
    pids: PidsStats = field(default_factory=PidsStats)
