"""The v2 driver on a fake unified tree: subtree_control, files written, eBPF calls, stats."""

from __future__ import annotations

import pytest
from fake_cgroupfs import RecordingBpf, drop_interface_files, populate_v2

from pallet.cgroups import create_cgroup_manager
from pallet.cgroups.stats import BlkioEntry
from pallet.cgroups.v2 import devices as ebpf
from pallet.errors import InvalidArgument, NotSupported, PermissionDenied, Unavailable

PATH = "/pallet/c1"
MiB = 1 << 20


@pytest.fixture
def mgr(v2_root, bpf):
    populate_v2(v2_root, PATH)
    return create_cgroup_manager(PATH, root=v2_root, syscalls=bpf)


def test_apply_enables_controllers_top_down_but_not_in_the_leaf(mgr, v2_root, writes):
    mgr.apply(99)
    controllers = ["+cpuset", "+cpu", "+io", "+memory", "+hugetlb", "+pids", "+rdma", "+misc"]
    assert writes == [("cgroup.subtree_control", c) for c in controllers] + \
                     [("pallet/cgroup.subtree_control", c) for c in controllers] + \
                     [("pallet/c1/cgroup.procs", "99")]
    # Already enabled: only the pid is written again (the fake keeps the last write, so say all).
    for d in (v2_root, v2_root / "pallet"):
        (d / "cgroup.subtree_control").write_text("cpuset cpu io memory hugetlb pids rdma misc\n")
    writes.clear()
    mgr.apply(99)
    assert writes == [("pallet/c1/cgroup.procs", "99")]


def test_only_available_controllers_are_enabled(v2_root, bpf, writes):
    (v2_root / "cgroup.controllers").write_text("memory pids\n")
    populate_v2(v2_root, PATH)
    (v2_root / "pallet" / "cgroup.controllers").write_text("memory\n")
    create_cgroup_manager(PATH, root=v2_root, syscalls=bpf).apply(1)
    assert writes.to("cgroup.subtree_control") == ["+memory", "+pids", "+memory"]


def test_set_writes_the_v2_files(mgr, v2_root, writes):
    mgr.set({
        "memory": {"limit": 64 * MiB, "reservation": 32 * MiB, "swap": 96 * MiB, "kernel": 1},
        "cpu": {"shares": 1024, "quota": 20000, "period": 100000, "burst": 5000, "idle": 0,
                "cpus": "0-1", "mems": "0"},
        "blockIO": {"weight": 500, "weightDevice": [{"major": 8, "minor": 0, "weight": 1000}],
                    "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": MiB}],
                    "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 2 * MiB}],
                    "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 0}]},
        "pids": {"limit": 50},
        "hugepageLimits": [{"pageSize": "2MB", "limit": -1}],
        "unified": {"memory.high": "50331648"},
    })
    leaf = [(p.rsplit("/", 1)[1], v) for p, v in writes if p.startswith("pallet/c1/")]
    assert leaf == [
        ("cpu.weight", "39"),
        ("cpu.max", "20000 100000"),
        ("cpu.max.burst", "5000"),
        ("cpu.idle", "0"),
        ("cpuset.cpus", "0-1"),
        ("cpuset.mems", "0"),
        ("memory.max", str(64 * MiB)),
        ("memory.swap.max", str(32 * MiB)),     # 96 MiB memory+swap - 64 MiB memory
        ("memory.low", str(32 * MiB)),
        ("io.weight", "default 4950"),
        ("io.weight", "8:0 10000"),
        ("io.max", f"8:0 rbps={MiB} wbps={2 * MiB}"),
        ("io.max", "8:16 wiops=max"),
        ("pids.max", "50"),
        ("hugetlb.2MB.max", "max"),
        ("memory.high", "50331648"),
    ]


def test_bfq_weight_is_written_in_blkio_units(mgr, v2_root, writes):
    (v2_root / "pallet" / "c1" / "io.bfq.weight").write_text("default 100\n")
    mgr.set({"blockIO": {"weight": 500, "weightDevice": [{"major": 8, "minor": 0, "weight": 200}]}})
    assert writes.to("io.bfq.weight") == ["500", "8:0 200"]
    assert writes.to("io.weight") == []


def test_period_only_update_keeps_the_quota(mgr, v2_root, writes):
    (v2_root / "pallet" / "c1" / "cpu.max").write_text("30000 100000\n")
    mgr.set({"cpu": {"period": 50000}})
    assert writes.to("cpu.max") == ["30000 50000"]
    (v2_root / "pallet" / "c1" / "cpu.max").write_text("max 100000\n")
    mgr.set({"cpu": {"period": 50000}})
    assert writes.to("cpu.max")[-1] == "max 50000"


def test_unlimited_memory_and_swap(mgr, writes):
    mgr.set({"memory": {"limit": -1, "swap": -1}})
    assert writes.to("memory.max") == ["max"]
    assert writes.to("memory.swap.max") == ["max"]


@pytest.mark.parametrize(("resources", "kind", "field"), [
    ({"memory": {"swappiness": 60}}, NotSupported, "memory.swappiness"),
    ({"memory": {"disableOOMKiller": True}}, NotSupported, "memory.disableOOMKiller"),
    ({"memory": {"swap": 10 * MiB}}, InvalidArgument, "memory.swap"),
    ({"blockIO": {"leafWeight": 100}}, NotSupported, "blockIO.leafWeight"),
    ({"network": {"classID": 5}}, NotSupported, "network"),
    ({"unified": {"cgroup.procs": "1"}}, InvalidArgument, "unified.cgroup.procs"),
    ({"unified": {"../x.y": "1"}}, InvalidArgument, "unified"),
    ({"unified": {"memory.high": 5}}, InvalidArgument, "unified.memory.high"),
    ({"unified": {"rdmax.max": "1"}}, NotSupported, "unified.rdmax.max"),
    ({"cpu": {"realtimePeriod": 1000}}, NotSupported, "cpu.realtimePeriod"),
    ({"devices": [{"allow": True, "type": "q"}]}, InvalidArgument, r"devices\[0\].type"),
])
def test_validate_names_the_field(v2_root, bpf, resources, kind, field):
    mgr = create_cgroup_manager(PATH, root=v2_root, syscalls=bpf)
    with pytest.raises(kind, match=rf"linux\.resources\.{field}"):
        mgr.validate(resources)
    assert not (v2_root / "pallet").exists()
    assert bpf.calls == []


def test_swappiness_minus_one_means_unset(mgr):
    mgr.validate({"memory": {"swappiness": -1}})


def test_missing_controller_is_not_supported(v2_root, bpf):
    (v2_root / "cgroup.controllers").write_text("cpu memory\n")
    mgr = create_cgroup_manager(PATH, root=v2_root, syscalls=bpf)
    with pytest.raises(NotSupported, match=r"linux\.resources\.pids: the pids controller"):
        mgr.validate({"pids": {"limit": 5}})
    with pytest.raises(NotSupported, match=r"hugepageLimits"):
        mgr.validate({"hugepageLimits": [{"pageSize": "2MB", "limit": 1}]})


def test_unified_key_without_its_file(mgr):
    with pytest.raises(NotSupported, match=r"unified\.memory\.oom\.group: no such file"):
        mgr.set({"unified": {"memory.oom.group": "1"}})


def test_devices_load_attach_then_detach_the_old_program(mgr, bpf):
    rules = [{"allow": False, "access": "rwm"},
             {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]
    mgr.set({"devices": rules})
    assert bpf.calls == [("query",), ("load", 101), ("attach", 101), ("close", 101),
                         ("get_fd_by_id", 7, 102), ("detach", 102), ("close", 102)]
    from pallet.cgroups.devices import parse_rules

    assert bpf.loaded == [ebpf.program(parse_rules(rules))]


def test_devices_errors_map_to_kinds(mgr):
    import errno

    class Refusing(RecordingBpf):
        def bpf_prog_load_cgroup_device(self, insns, license="Apache-2.0"):
            raise OSError(errno.EPERM, "bpf BPF_PROG_LOAD: Operation not permitted")

    mgr._syscalls = Refusing()
    with pytest.raises(PermissionDenied, match=r"linux\.resources\.devices: eBPF"):
        mgr.set({"devices": [{"allow": False}]})


MEMORY_STAT = """anon 8953856
file 2105344
kernel 1236992
kernel_stack 32768
sock 0
shmem 0
file_mapped 516096
file_dirty 0
inactive_anon 8929280
active_anon 24576
inactive_file 1581056
active_file 524288
unevictable 0
pgfault 5462
pgmajfault 0
"""
MEMORY_EVENTS = "low 0\nhigh 0\nmax 17\noom 2\noom_kill 2\noom_group_kill 0\n"
CPU_STAT = """usage_usec 3046839
user_usec 2900000
system_usec 146839
nr_periods 52
nr_throttled 40
throttled_usec 3120004
nr_bursts 0
burst_usec 0
"""
IO_STAT = ("8:16 rbytes=4096 wbytes=8388608 rios=1 wios=32 dbytes=0 dios=0\n"
           "253:0 rbytes=12288 wbytes=0 rios=3 wios=0 dbytes=0 dios=0\n")


def test_stats_from_realistic_files(mgr, v2_root):
    d = v2_root / "pallet" / "c1"
    files = {"memory.stat": MEMORY_STAT, "memory.events": MEMORY_EVENTS, "cpu.stat": CPU_STAT,
             "io.stat": IO_STAT, "memory.current": "11059200\n", "memory.peak": "33554432\n",
             "memory.max": "67108864\n", "memory.swap.current": "4096\n", "pids.current": "3\n",
             "pids.max": "64\n"}
    for name, text in files.items():
        (d / name).write_text(text)
    s = mgr.stats()
    assert (s.memory.usage, s.memory.max_usage, s.memory.limit) == (11059200, 33554432, 67108864)
    assert (s.memory.cache, s.memory.rss, s.memory.swap) == (2105344, 8953856, 4096)
    assert (s.memory.active_anon, s.memory.inactive_file) == (24576, 1581056)
    assert (s.memory.failcnt, s.memory.oom_kill) == (17, 2)
    assert s.memory.raw["kernel_stack"] == 32768
    assert (s.cpu.total_ns, s.cpu.user_ns, s.cpu.system_ns) == (3046839000, 2900000000, 146839000)
    assert (s.cpu.nr_periods, s.cpu.nr_throttled, s.cpu.throttled_ns) == (52, 40, 3120004000)
    assert s.cpu.per_cpu_ns == []
    assert s.blkio.io_service_bytes == [
        BlkioEntry(8, 16, "Read", 4096), BlkioEntry(8, 16, "Write", 8388608),
        BlkioEntry(253, 0, "Read", 12288), BlkioEntry(253, 0, "Write", 0)]
    assert s.blkio.io_serviced[:2] == [BlkioEntry(8, 16, "Read", 1), BlkioEntry(8, 16, "Write", 32)]
    assert (s.pids.current, s.pids.limit) == (3, 64)
    (d / "memory.max").write_text("max\n")
    assert mgr.stats().memory.limit == 0


def test_freeze_waits_for_cgroup_events(mgr, v2_root, writes):
    events = v2_root / "pallet" / "c1" / "cgroup.events"
    events.write_text("populated 1\nfrozen 1\n")      # as the kernel reports once frozen
    mgr.freeze()
    assert mgr.frozen()
    assert writes.to("cgroup.freeze") == ["1"]
    events.write_text("populated 1\nfrozen 0\n")
    mgr.thaw()
    assert not mgr.frozen()
    assert writes.to("cgroup.freeze") == ["1", "0"]


def test_freeze_timeout_unfreezes(v2_root):
    from pallet.cgroups.v2 import freezer

    d = v2_root / "c"
    d.mkdir()
    (d / "cgroup.events").write_text("populated 1\nfrozen 0\n")
    with pytest.raises(Unavailable, match="frozen 1"):
        freezer.freeze(d, timeout=0.05)
    assert (d / "cgroup.freeze").read_text() == "0"


def test_destroy_and_pids(mgr, v2_root):
    mgr.apply(5)
    (v2_root / "pallet" / "c1" / "child").mkdir()
    (v2_root / "pallet" / "c1" / "child" / "cgroup.procs").write_text("6\n")
    assert mgr.pids() == [5, 6]
    drop_interface_files(v2_root / "pallet" / "c1")
    mgr.destroy()
    assert not mgr.exists() and (v2_root / "pallet").is_dir()
    assert mgr.pids() == []
