"""Container statistics in Docker's ContainerStatsResponse shape, read from the container's cgroup.

`container_stats(engine, ref, pre)` reads the cgroup at `<cgroup-parent>/<id>` through
pallet.cgroups (v1 and v2 drivers) and the network counters of the container's interfaces from
/proc/<init pid>/net/dev, and returns what dockerd's stats collector sends (moby
daemon/stats_unix.go, v1.50.yaml ContainerStatsResponse):

- `cpu_stats`: cpu_usage {total_usage, percpu_usage (v1 only: cgroup v2 has no per-CPU
  counter, as in dockerd), usage_in_kernelmode, usage_in_usermode} in ns; system_cpu_usage (the
  host's /proc/stat `cpu` line in ns, dockerd's getSystemCPUUsage); online_cpus
  (sysconf(_SC_NPROCESSORS_ONLN)); throttling_data. `precpu_stats` is the previous sample's, so
  a client computes CPU % as the docker CLI does:
  (Δtotal_usage / Δsystem_cpu_usage) * online_cpus * 100.
- `memory_stats`: usage, max_usage and failcnt (v1 only, as dockerd; omitted when zero, Go's
  omitempty), limit (the host's memory when unlimited), and `stats`: every key of memory.stat (v1:
  cache, rss, active_anon, inactive_file, total_*...; v2: anon, file, active_anon...), plus
  `oom_kill` from memory.oom_control (v1) or memory.events (v2).
- `blkio_stats`: io_service_bytes_recursive and io_serviced_recursive per device and op (v1:
  Read/Write/Sync/Async/Discard/Total; v2: read/write, lower case as dockerd's v2 collector).
- `pids_stats` {current, limit}, `networks` {ifname: {rx_bytes, rx_packets, rx_errors,
  rx_dropped, tx_...}} for every interface but `lo` (omitted for NetworkMode host: the host's
  interfaces are not the container's; dockerd sends none either).

A container that is not running (created, exited, restarting) has no cgroup: the answer is
dockerd's zeroed response, `{"name", "id", "read": zero time, ...}` with zero counters (moby
daemon/stats.go: `if !config.Stream && !ctr.IsRunning() { Encode(StatsResponse{Name, ID}) }`;
its collector publishes the same empty sample every second to a stream of a stopped container).
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

ZERO_TIME = "0001-01-01T00:00:00Z"


def system_cpu_ns(proc: str = "/proc") -> int:
    """The host's CPU time in ns from /proc/stat's `cpu` line (user..steal), as dockerd's
    getSystemCPUUsage: USER_HZ ticks to nanoseconds."""
    with open(os.path.join(proc, "stat")) as f:
        for line in f:
            parts = line.split()
            if parts and parts[0] == "cpu":
                ticks = sum(int(x) for x in parts[1:8])
                return ticks * 10**9 // os.sysconf("SC_CLK_TCK")
    return 0


def host_memory(proc: str = "/proc") -> int:
    with contextlib.suppress(OSError, ValueError), open(os.path.join(proc, "meminfo")) as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def online_cpus() -> int:
    try:
        return int(os.sysconf("SC_NPROCESSORS_ONLN"))
    except (ValueError, OSError):
        return os.cpu_count() or 1


def parse_net_dev(text: str) -> dict[str, dict[str, int]]:
    """/proc/<pid>/net/dev (two header lines, then `iface: rx bytes packets errs drop fifo frame
    compressed multicast | tx bytes packets errs drop fifo colls carrier compressed`), less `lo`."""
    out: dict[str, dict[str, int]] = {}
    for line in text.splitlines()[2:]:
        name, sep, rest = line.partition(":")
        if not sep:
            continue
        name = name.strip()
        f = rest.split()
        if name == "lo" or len(f) < 12:
            continue
        v = [int(x) for x in f]
        out[name] = {"rx_bytes": v[0], "rx_packets": v[1], "rx_errors": v[2], "rx_dropped": v[3],
                     "tx_bytes": v[8], "tx_packets": v[9], "tx_errors": v[10], "tx_dropped": v[11]}
    return out


def empty_stats(name: str, cid: str) -> dict[str, Any]:
    """dockerd's answer for a container that is not running: a zero StatsResponse{Name, ID} as
    Go encodes it (omitempty fields gone, nil slices null)."""
    zero_cpu = {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
                "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}
    return {"name": name, "id": cid, "read": ZERO_TIME, "preread": ZERO_TIME, "pids_stats": {},
            "blkio_stats": _blkio(None, None), "num_procs": 0, "storage_stats": {},
            "cpu_stats": dict(zero_cpu), "precpu_stats": dict(zero_cpu), "memory_stats": {}}


def _blkio(served: list[dict[str, Any]] | None, count: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {"io_service_bytes_recursive": served or None, "io_serviced_recursive": count or None,
            "io_queue_recursive": None, "io_service_time_recursive": None, "io_wait_time_recursive": None,
            "io_merged_recursive": None, "io_time_recursive": None, "sectors_recursive": None}


def docker_stats(st: Any, *, version: int, name: str, cid: str, read: str, system_cpu: int, cpus: int,
                 mem_total: int, networks: dict[str, dict[str, int]] | None,
                 pre: dict[str, Any] | None = None) -> dict[str, Any]:
    """pallet.cgroups.Stats -> Docker's ContainerStatsResponse; `pre` is the previous answer."""
    mem, cpu, blk, pids = st.memory, st.cpu, st.blkio, st.pids

    def entries(items: list[Any]) -> list[dict[str, Any]]:
        return [{"major": e.major, "minor": e.minor, "op": e.op.lower() if version == 2 else e.op,
                 "value": e.value} for e in items]

    usage: dict[str, Any] = {"total_usage": cpu.total_ns}
    if cpu.per_cpu_ns:
        usage["percpu_usage"] = list(cpu.per_cpu_ns)
    usage.update(usage_in_kernelmode=cpu.system_ns, usage_in_usermode=cpu.user_ns)
    cpu_stats = {"cpu_usage": usage, "system_cpu_usage": system_cpu, "online_cpus": cpus,
                 "throttling_data": {"periods": cpu.nr_periods, "throttled_periods": cpu.nr_throttled,
                                     "throttled_time": cpu.throttled_ns}}
    limit = mem.limit
    if mem_total and (limit <= 0 or limit > mem_total):
        limit = mem_total  # unlimited: dockerd reports the host's memory
    page_kinds = dict(mem.raw)
    page_kinds["oom_kill"] = mem.oom_kill
    memory: dict[str, Any] = {"usage": mem.usage}
    if version == 1 and mem.max_usage:
        memory["max_usage"] = mem.max_usage
    memory["stats"] = page_kinds
    if version == 1 and mem.failcnt:
        memory["failcnt"] = mem.failcnt
    memory["limit"] = limit
    pids_stats: dict[str, int] = {}
    if pids.current:
        pids_stats["current"] = pids.current
    if pids.limit:
        pids_stats["limit"] = pids.limit
    out: dict[str, Any] = {
        "name": name, "id": cid, "read": read, "preread": pre["read"] if pre else ZERO_TIME,
        "pids_stats": pids_stats,
        "blkio_stats": _blkio(entries(blk.io_service_bytes), entries(blk.io_serviced)),
        "num_procs": 0, "storage_stats": {},
        "cpu_stats": cpu_stats,
        "precpu_stats": pre["cpu_stats"] if pre else empty_stats(name, cid)["precpu_stats"],
        "memory_stats": memory,
    }
    if networks:
        out["networks"] = networks
    return out


def container_stats(engine: Any, ref: str, pre: dict[str, Any] | None = None) -> dict[str, Any]:
    """One sample of container `ref` (NotFound when there is no such container); a container
    that is not running gets `empty_stats`."""
    from pallet.cgroups import create_cgroup_manager
    from pallet.engine.logs import rfc3339nano
    from pallet.engine.state import Status

    c = engine.get(ref)
    with c.lock:
        running = c.state.status in (Status.RUNNING, Status.PAUSED)
        pid = c.state.pid
        name, cid = f"/{c.name}", c.id
        host_net = c.host_config.get("NetworkMode") == "host"
    if not running:
        return empty_stats(name, cid)
    mgr = create_cgroup_manager(f"{engine.cgroup_parent}/{cid}")
    st = mgr.stats()
    networks = None
    if not host_net and pid > 0:
        with contextlib.suppress(OSError, ValueError), open(f"/proc/{pid}/net/dev") as f:
            networks = parse_net_dev(f.read())
    return docker_stats(st, version=mgr.version, name=name, cid=cid, read=rfc3339nano(time.time_ns()),
                        system_cpu=system_cpu_ns(), cpus=online_cpus(), mem_total=host_memory(),
                        networks=networks, pre=pre)
