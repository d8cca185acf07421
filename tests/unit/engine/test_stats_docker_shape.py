"""Docker's stats shape from cgroup figures (pallet.engine.stats) and the docker CLI's arithmetic
over it (pallet.cli.commands.stats): v1 and v2, stopped containers, network counters."""

from __future__ import annotations

from pallet.cgroups.stats import BlkioEntry, BlkioStats, CpuStats, MemoryStats, PidsStats, Stats
from pallet.cli.commands import stats as cli
from pallet.engine.stats import docker_stats, empty_stats, parse_net_dev

CID = "a" * 64

NET_DEV = "\n".join([
    "Inter-|   Receive                                                |  Transmit",
    " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo "
    "colls carrier compressed",
    "    lo:     840      10    0    0    0     0          0         0      840      10    0    0    0     0"
    "       0          0",
    "  eth0:    1296      16    1    2    0     0          0         0      656       8    3    4    0     0"
    "       0          0",
    ""])


def _v1() -> Stats:
    return Stats(
        memory=MemoryStats(usage=50 << 20, max_usage=60 << 20, limit=100 << 20, failcnt=2, oom_kill=1,
                           raw={"cache": 10 << 20, "rss": 40 << 20, "total_inactive_file": 8 << 20,
                                "inactive_file": 8 << 20, "active_anon": 1, "inactive_anon": 2}),
        cpu=CpuStats(total_ns=3_000_000_000, user_ns=2_000_000_000, system_ns=1_000_000_000,
                     per_cpu_ns=[1_000_000_000, 2_000_000_000], nr_periods=10, nr_throttled=3,
                     throttled_ns=500),
        blkio=BlkioStats(io_service_bytes=[BlkioEntry(254, 0, "Read", 4096),
                                           BlkioEntry(254, 0, "Write", 8192),
                                           BlkioEntry(254, 0, "Total", 12288)],
                         io_serviced=[BlkioEntry(254, 0, "Read", 1), BlkioEntry(254, 0, "Write", 2)]),
        pids=PidsStats(current=3, limit=100))


def test_v1_sample_has_every_docker_field():
    s = docker_stats(_v1(), version=1, name="/web", cid=CID, read="t1", system_cpu=10**12, cpus=2,
                     mem_total=1 << 33, networks=parse_net_dev(NET_DEV))
    assert s["name"] == "/web" and s["id"] == CID and s["read"] == "t1"
    assert s["preread"] == "0001-01-01T00:00:00Z"
    assert s["cpu_stats"] == {
        "cpu_usage": {"total_usage": 3_000_000_000, "percpu_usage": [1_000_000_000, 2_000_000_000],
                      "usage_in_kernelmode": 1_000_000_000, "usage_in_usermode": 2_000_000_000},
        "system_cpu_usage": 10**12, "online_cpus": 2,
        "throttling_data": {"periods": 10, "throttled_periods": 3, "throttled_time": 500}}
    assert s["precpu_stats"]["cpu_usage"]["total_usage"] == 0
    mem = s["memory_stats"]
    assert (mem["usage"], mem["max_usage"], mem["failcnt"]) == (50 << 20, 60 << 20, 2)
    assert mem["limit"] == 100 << 20
    assert mem["stats"]["cache"] == 10 << 20 and mem["stats"]["oom_kill"] == 1
    assert s["blkio_stats"]["io_service_bytes_recursive"][1] == {"major": 254, "minor": 0, "op": "Write",
                                                                 "value": 8192}
    assert s["blkio_stats"]["io_serviced_recursive"] == [
        {"major": 254, "minor": 0, "op": "Read", "value": 1},
        {"major": 254, "minor": 0, "op": "Write", "value": 2}]
    assert s["pids_stats"] == {"current": 3, "limit": 100}
    assert s["networks"] == {"eth0": {"rx_bytes": 1296, "rx_packets": 16, "rx_errors": 1, "rx_dropped": 2,
                                      "tx_bytes": 656, "tx_packets": 8, "tx_errors": 3, "tx_dropped": 4}}
    assert s["num_procs"] == 0 and s["storage_stats"] == {}


def test_v2_sample_as_dockerd_v2_collector():
    st = Stats(memory=MemoryStats(usage=5 << 20, max_usage=7 << 20, limit=0, failcnt=4,
                                  raw={"anon": 4 << 20, "file": 1 << 20, "inactive_file": 1 << 20}),
               cpu=CpuStats(total_ns=100, user_ns=60, system_ns=40),
               blkio=BlkioStats(io_service_bytes=[BlkioEntry(8, 0, "Read", 1), BlkioEntry(8, 0, "Write", 2)]),
               pids=PidsStats(current=1))
    s = docker_stats(st, version=2, name="/x", cid=CID, read="t", system_cpu=1, cpus=4, mem_total=1 << 30,
                     networks={})
    assert "percpu_usage" not in s["cpu_stats"]["cpu_usage"]  # v2 has no per-CPU counter
    assert "max_usage" not in s["memory_stats"] and "failcnt" not in s["memory_stats"]
    assert s["memory_stats"]["limit"] == 1 << 30  # unlimited: the host's memory
    assert [e["op"] for e in s["blkio_stats"]["io_service_bytes_recursive"]] == ["read", "write"]
    assert "networks" not in s and s["pids_stats"] == {"current": 1}


def test_precpu_comes_from_the_previous_sample_and_cli_cpu_percent():
    first = docker_stats(_v1(), version=1, name="/w", cid=CID, read="t1", system_cpu=10_000_000_000, cpus=2,
                         mem_total=0, networks=None)
    later = Stats(cpu=CpuStats(total_ns=3_500_000_000), memory=_v1().memory)
    second = docker_stats(later, version=1, name="/w", cid=CID, read="t2", system_cpu=12_000_000_000, cpus=2,
                          mem_total=0, networks=None, pre=first)
    assert second["preread"] == "t1" and second["precpu_stats"] == first["cpu_stats"]
    # docker CLI: 0.5 s of CPU over 2 s of system time on 2 CPUs -> 50 %
    assert cli.cpu_percent(second) == 50.0
    # Against an empty precpu_stats the CLI's formula gives the average since the cgroup began
    # (3 s of CPU over 10 s of system time on 2 CPUs), as `docker stats` shows on its first line.
    assert cli.cpu_percent(first) == 60.0


def test_stopped_container_gets_dockerds_zero_sample():
    s = empty_stats("/gone", CID)
    assert s["read"] == "0001-01-01T00:00:00Z" and s["memory_stats"] == {} and s["pids_stats"] == {}
    r = cli.row(s, "gone")
    assert (r["CPUPerc"], r["MemUsage"], r["MemPerc"], r["NetIO"], r["BlockIO"], r["PIDs"]) == \
        ("0.00%", "0B / 0B", "0.00%", "0B / 0B", "0B / 0B", "0")


def test_cli_row_as_docker_stats_prints_it():
    s = docker_stats(_v1(), version=1, name="/web", cid=CID, read="t", system_cpu=1, cpus=2, mem_total=0,
                     networks=parse_net_dev(NET_DEV))
    r = cli.row(s, "web")
    assert r["ID"] == CID[:12] and r["Name"] == "web" and r["Container"] == "web"
    assert r["MemUsage"] == "42MiB / 100MiB"  # usage less total_inactive_file
    assert r["MemPerc"] == "42.00%"
    assert r["NetIO"] == "1.3kB / 656B"
    assert r["BlockIO"] == "4.1kB / 8.19kB"
    assert r["PIDs"] == "3"
    assert cli.row(s, "web", no_trunc=True)["ID"] == CID


def test_cli_sizes_match_go_units():
    assert cli.bytes_size(0) == "0B" and cli.bytes_size(1536) == "1.5KiB"
    assert cli.bytes_size(7.7 * (1 << 30)) == "7.7GiB"
    assert cli.human_size(999) == "999B" and cli.human_size(1234567) == "1.23MB"


def test_cli_table_and_format():
    s = docker_stats(_v1(), version=1, name="/web", cid=CID, read="t", system_cpu=1, cpus=2, mem_total=0,
                     networks=None)
    rows = [cli.row(s, "web")]
    table = cli.render_rows(None, rows).splitlines()
    assert table[0].split() == ["CONTAINER", "ID", "NAME", "CPU", "%", "MEM", "USAGE", "/", "LIMIT", "MEM",
                                "%", "NET", "I/O", "BLOCK", "I/O", "PIDS"]
    assert cli.render_rows("{{.Name}}: {{.PIDs}} {{.Container}}", rows) == "web: 3 web\n"


def test_parse_net_dev_skips_loopback_and_junk():
    assert parse_net_dev("h1\nh2\n    lo: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n") == {}
    assert parse_net_dev("h1\nh2\ngarbage\n") == {}


def test_oom_kill_counter_of_v1_and_v2_files(tmp_path):
    from pallet.engine.oom import read_oom_kills

    (tmp_path / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    (tmp_path / "memory.events").write_text("low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\noom_group_kill 0\n")
    assert read_oom_kills(str(tmp_path / "memory.oom_control")) == 2
    assert read_oom_kills(str(tmp_path / "memory.events")) == 1
    assert read_oom_kills(str(tmp_path / "missing")) == 0
