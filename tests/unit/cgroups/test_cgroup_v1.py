"""The v1 driver on a fake hybrid tree: which files get written, in which order, and stats parsing."""

from __future__ import annotations

import pytest
from fake_cgroupfs import drop_interface_files, populate_v1

from pallet.cgroups import create_cgroup_manager
from pallet.cgroups.stats import BlkioEntry
from pallet.errors import Conflict, InvalidArgument, NotSupported

PATH = "/pallet/c1"
MiB = 1 << 20


@pytest.fixture
def mgr(v1_root):
    return create_cgroup_manager(PATH, root=v1_root)


def test_apply_joins_every_hierarchy_and_seeds_cpuset(mgr, v1_root, writes):
    mgr.apply(1234)
    for name in ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "hugetlb"):
        assert (v1_root / name / "pallet" / "c1" / "cgroup.procs").read_text() == "1234"
    assert not (v1_root / "systemd" / "pallet").exists()      # named hierarchy left alone
    assert not (v1_root / "unified" / "pallet").exists()
    # cpusets.rst: both levels get cpus and mems from their parent before any task joins.
    assert [w for w in writes if w[0].startswith("cpuset/")][:4] == [
        ("cpuset/pallet/cpuset.cpus", "0-3"), ("cpuset/pallet/cpuset.mems", "0"),
        ("cpuset/pallet/c1/cpuset.cpus", "0-3"), ("cpuset/pallet/c1/cpuset.mems", "0")]
    writes.clear()
    mgr.apply(1234)  # idempotent: no second seeding
    assert [p for p, _ in writes] == [f"{n}/pallet/c1/cgroup.procs" for n in
                                      ("blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer",
                                       "hugetlb", "memory", "pids")]


def test_set_writes_the_v1_files(mgr, v1_root, writes):
    populate_v1(v1_root, PATH)
    mgr.set({
        "memory": {"limit": 64 * MiB, "reservation": 32 * MiB, "swap": 128 * MiB, "swappiness": 10,
                   "disableOOMKiller": True, "kernel": 1 << 30},
        "cpu": {"shares": 512, "quota": 20000, "period": 100000, "burst": 1000, "cpus": "0-1",
                "mems": "0", "idle": 1},
        "blockIO": {"weight": 300, "weightDevice": [{"major": 8, "minor": 0, "weight": 500}],
                    "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": MiB}],
                    "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 100}]},
        "pids": {"limit": 100},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 4 * MiB}],
        "devices": [{"allow": False, "access": "rwm"},
                    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"}],
    })
    leaf = {p.split("/", 1)[0] + "/" + p.rsplit("/", 1)[1]: v for p, v in writes if "/c1/" in p}
    assert leaf == {
        "memory/memory.memsw.limit_in_bytes": str(128 * MiB),
        "memory/memory.limit_in_bytes": str(64 * MiB),
        "memory/memory.soft_limit_in_bytes": str(32 * MiB),
        "memory/memory.swappiness": "10",
        "memory/memory.oom_control": "1",
        "cpu/cpu.shares": "512",
        "cpu/cpu.cfs_period_us": "100000",
        "cpu/cpu.cfs_quota_us": "20000",
        "cpu/cpu.cfs_burst_us": "1000",
        "cpu/cpu.idle": "1",
        "cpuset/cpuset.cpus": "0-1",
        "cpuset/cpuset.mems": "0",
        "blkio/blkio.bfq.weight": "300",
        "blkio/blkio.bfq.weight_device": "8:0 500",
        "blkio/blkio.throttle.read_bps_device": f"8:0 {MiB}",
        "blkio/blkio.throttle.write_iops_device": "8:16 100",
        "pids/pids.max": "100",
        "hugetlb/hugetlb.2MB.limit_in_bytes": str(4 * MiB),
        "devices/devices.deny": "a",
        "devices/devices.allow": "c 1:3 rwm",
    }
    # Deny-all goes first, then the whitelist (devices.rst).
    assert [(p.rsplit("/", 1)[1], v) for p, v in writes if p.startswith("devices/")] == [
        ("devices.deny", "a"), ("devices.allow", "c 1:3 rwm")]


def test_memsw_order_when_growing_and_shrinking(mgr, v1_root, writes):
    populate_v1(v1_root, PATH)
    memsw = v1_root / "memory" / "pallet" / "c1" / "memory.memsw.limit_in_bytes"
    memsw.write_text("9223372036854771712\n")   # fresh cgroup: unlimited
    mgr.set({"memory": {"limit": 64 * MiB, "swap": 128 * MiB}})
    assert [p.rsplit("/", 1)[1] for p, _ in writes] [-2:] == ["memory.limit_in_bytes",
                                                              "memory.memsw.limit_in_bytes"]
    writes.clear()
    mgr.set({"memory": {"limit": 256 * MiB, "swap": 512 * MiB}})   # grow: memsw first
    assert [p.rsplit("/", 1)[1] for p, _ in writes][-2:] == ["memory.memsw.limit_in_bytes",
                                                             "memory.limit_in_bytes"]
    writes.clear()
    mgr.set({"memory": {"limit": 32 * MiB, "swap": 32 * MiB}})     # shrink: limit first
    assert [p.rsplit("/", 1)[1] for p, _ in writes][-2:] == ["memory.limit_in_bytes",
                                                             "memory.memsw.limit_in_bytes"]


def test_quota_minus_one_and_pids_unlimited(mgr, v1_root, writes):
    populate_v1(v1_root, PATH)
    mgr.set({"cpu": {"quota": -1}, "pids": {"limit": -1}})
    assert writes.to("cpu.cfs_quota_us") == ["-1"]
    assert writes.to("pids.max") == ["max"]
    writes.clear()
    mgr.set({"cpu": {"quota": 0, "shares": 0}, "pids": {"limit": 0}})   # 0: leave alone
    assert [w for w in writes if "/c1/" in w[0] and "cgroup.procs" not in w[0]] == []


@pytest.mark.parametrize(("resources", "kind", "field"), [
    ({"unified": {"memory.high": "1"}}, NotSupported, "unified"),
    ({"cpu": {"realtimeRuntime": 1000}}, NotSupported, "cpu.realtimeRuntime"),
    ({"memory": {"limit": 100 * MiB, "swap": 50 * MiB}}, InvalidArgument, "memory.swap"),
    ({"memory": {"limit": -2}}, InvalidArgument, "memory.limit"),
    ({"memory": {"swappiness": 101}}, InvalidArgument, "memory.swappiness"),
    ({"cpu": {"shares": 1}}, InvalidArgument, "cpu.shares"),
    ({"cpu": {"quota": 500}}, InvalidArgument, "cpu.quota"),
    ({"cpu": {"period": 2_000_000}}, InvalidArgument, "cpu.period"),
    ({"cpu": {"cpus": "0-"}}, InvalidArgument, "cpu.cpus"),
    ({"blockIO": {"weight": 5}}, InvalidArgument, "blockIO.weight"),
    ({"blockIO": {"throttleReadBpsDevice": [{"major": 8, "rate": 1}]}}, InvalidArgument,
     r"blockIO.throttleReadBpsDevice\[0\].minor"),
    ({"hugepageLimits": [{"pageSize": "2MB"}]}, InvalidArgument, r"hugepageLimits\[0\].limit"),
    ({"rdma": {"mlx5_0": {"hcaHandles": 1}}}, NotSupported, "rdma"),
])
def test_validate_names_the_field(mgr, v1_root, resources, kind, field):
    with pytest.raises(kind, match=rf"linux\.resources\.{field}"):
        mgr.validate(resources)
    assert not (v1_root / "memory" / "pallet").exists()   # validate creates nothing


def test_missing_controller_is_not_supported(v1_root):
    import shutil

    shutil.rmtree(v1_root / "pids")
    mgr = create_cgroup_manager(PATH, root=v1_root)
    with pytest.raises(NotSupported, match=r"linux\.resources\.pids: the pids controller"):
        mgr.validate({"pids": {"limit": 10}})


def test_missing_swap_accounting_and_hugepage_size(mgr, v1_root):
    (v1_root / "memory" / "memory.memsw.limit_in_bytes").unlink()
    with pytest.raises(NotSupported, match="swap"):
        mgr.validate({"memory": {"limit": 64 * MiB, "swap": 128 * MiB}})
    mgr.validate({"memory": {"limit": 64 * MiB, "swap": 64 * MiB}})  # no swap asked: fine
    populate_v1(v1_root, PATH)
    with pytest.raises(NotSupported, match=r"hugepageLimits\[0\].pageSize: 64KB"):
        mgr.set({"hugepageLimits": [{"pageSize": "64KB", "limit": 1}]})


def test_blkio_weight_without_a_weight_file(mgr, v1_root):
    mgr.apply(1)
    with pytest.raises(NotSupported, match=r"blockIO\.weight"):
        mgr.set({"blockIO": {"weight": 500}})


MEMORY_STAT = """cache 1052672
rss 4476928
rss_huge 0
shmem 0
mapped_file 516096
swap 0
inactive_anon 4464640
active_anon 12288
inactive_file 790528
active_file 262144
unevictable 0
hierarchical_memory_limit 67108864
hierarchical_memsw_limit 134217728
total_cache 2105344
total_rss 8953856
total_swap 4096
total_inactive_anon 8929280
total_active_anon 24576
total_inactive_file 1581056
total_active_file 524288
total_unevictable 0
"""
CPU_STAT = "nr_periods 52\nnr_throttled 40\nthrottled_time 3120004532\nnr_bursts 0\nburst_time 0\n"
BLKIO = """8:16 Read 4096
8:16 Write 8388608
8:16 Sync 8392704
8:16 Async 0
8:16 Discard 0
8:16 Total 8392704
8:0 Read 12288
8:0 Write 0
8:0 Sync 12288
8:0 Async 0
8:0 Discard 0
8:0 Total 12288
Total 8404992
"""


def test_stats_from_realistic_files(mgr, v1_root):
    populate_v1(v1_root, PATH)
    d = {n: v1_root / n / "pallet" / "c1" for n in ("memory", "cpu", "cpuacct", "blkio", "pids")}
    (d["memory"] / "memory.stat").write_text(MEMORY_STAT)
    (d["memory"] / "memory.usage_in_bytes").write_text("11059200\n")
    (d["memory"] / "memory.max_usage_in_bytes").write_text("33554432\n")
    (d["memory"] / "memory.limit_in_bytes").write_text("67108864\n")
    (d["memory"] / "memory.memsw.usage_in_bytes").write_text("11063296\n")
    (d["memory"] / "memory.failcnt").write_text("17\n")
    (d["memory"] / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    (d["cpuacct"] / "cpuacct.usage").write_text("3046839281\n")
    (d["cpuacct"] / "cpuacct.usage_percpu").write_text("1046839281 2000000000 \n")
    (d["cpuacct"] / "cpuacct.usage_user").write_text("2900000000\n")
    (d["cpuacct"] / "cpuacct.usage_sys").write_text("146839281\n")
    (d["cpu"] / "cpu.stat").write_text(CPU_STAT)
    (d["blkio"] / "blkio.throttle.io_service_bytes_recursive").write_text(BLKIO)
    (d["blkio"] / "blkio.throttle.io_serviced_recursive").write_text("8:16 Write 32\nTotal 32\n")
    (d["blkio"] / "blkio.bfq.io_service_bytes_recursive").write_text("Total 0\n")  # BFQ idle
    (d["pids"] / "pids.current").write_text("3\n")
    (d["pids"] / "pids.max").write_text("max\n")

    s = mgr.stats()
    assert (s.memory.usage, s.memory.max_usage, s.memory.limit) == (11059200, 33554432, 67108864)
    assert (s.memory.cache, s.memory.rss, s.memory.swap) == (2105344, 8953856, 4096)
    assert (s.memory.active_anon, s.memory.inactive_anon) == (24576, 8929280)
    assert (s.memory.active_file, s.memory.inactive_file) == (524288, 1581056)
    assert (s.memory.failcnt, s.memory.oom_kill) == (17, 2)
    assert s.memory.raw["hierarchical_memsw_limit"] == 134217728
    assert s.cpu.total_ns == 3046839281 and s.cpu.per_cpu_ns == [1046839281, 2000000000]
    assert (s.cpu.user_ns, s.cpu.system_ns) == (2900000000, 146839281)
    assert (s.cpu.nr_periods, s.cpu.nr_throttled, s.cpu.throttled_ns) == (52, 40, 3120004532)
    assert s.blkio.io_service_bytes[:2] == [BlkioEntry(8, 16, "Read", 4096),
                                            BlkioEntry(8, 16, "Write", 8388608)]
    assert len(s.blkio.io_service_bytes) == 12          # the bare "Total" line is dropped
    assert s.blkio.io_serviced == [BlkioEntry(8, 16, "Write", 32)]
    assert (s.pids.current, s.pids.limit) == (3, 0)


def test_cpu_split_from_cpuacct_stat_ticks(mgr, v1_root):
    import os

    mgr.apply(1)
    d = v1_root / "cpuacct" / "pallet" / "c1"
    (d / "cpuacct.stat").write_text("user 150\nsystem 50\n")
    tick = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    s = mgr.stats().cpu
    assert (s.user_ns, s.system_ns) == (150 * tick, 50 * tick)


def test_stats_of_a_missing_cgroup_are_zero(mgr):
    s = mgr.stats()
    assert s.memory.usage == 0 and s.cpu.total_ns == 0 and s.pids.current == 0


def test_freeze_thaw(mgr, v1_root, writes):
    mgr.apply(1)
    assert not mgr.frozen()
    mgr.freeze()
    assert mgr.frozen()
    mgr.thaw()
    assert not mgr.frozen()
    assert writes.to("freezer.state") == ["FROZEN", "THAWED"]


def test_freeze_gives_up_and_thaws(mgr, v1_root, monkeypatch):
    from pallet.cgroups.v1 import freezer
    from pallet.errors import Unavailable

    mgr.apply(1)
    monkeypatch.setattr(freezer, "state", lambda d: "FREEZING")
    with pytest.raises(Unavailable, match="did not freeze"):
        freezer.freeze(v1_root / "freezer" / "pallet" / "c1", timeout=0.05)
    assert (v1_root / "freezer" / "pallet" / "c1" / "freezer.state").read_text() == "THAWED"


def test_pids_are_recursive(mgr, v1_root):
    mgr.apply(10)
    sub = v1_root / "pids" / "pallet" / "c1" / "sub"
    sub.mkdir()
    (sub / "cgroup.procs").write_text("12\n11\n")
    assert mgr.pids() == [10, 11, 12]


def test_destroy_removes_only_the_cgroup_and_below(mgr, v1_root):
    mgr.apply(10)
    (v1_root / "memory" / "pallet" / "c1" / "sub" / "deeper").mkdir(parents=True)
    drop_interface_files(v1_root / "memory" / "pallet")
    for name in ("cpu", "pids", "cpuset", "cpuacct", "devices", "freezer", "blkio", "hugetlb"):
        drop_interface_files(v1_root / name / "pallet")
    mgr.destroy()
    assert not mgr.exists()
    assert (v1_root / "memory" / "pallet").is_dir()   # the parent stays
    mgr.destroy()                                     # idempotent


def test_destroy_busy_cgroup_is_a_conflict(mgr, v1_root, monkeypatch):
    import errno

    from pallet.cgroups import cgroupfs

    mgr.apply(10)

    def busy(path):
        raise OSError(errno.EBUSY, "Device or resource busy")

    monkeypatch.setattr(cgroupfs.os, "rmdir", busy)
    with pytest.raises(Conflict, match="still has processes"):
        cgroupfs.remove_tree(v1_root / "pids" / "pallet" / "c1", timeout=0.05)
