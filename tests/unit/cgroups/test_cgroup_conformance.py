"""Checks every CgroupManager driver passes, run against fake v1 and v2 trees alike.

They speak only OCI linux.resources and the Stats dataclasses, so the same expectations hold
whichever files the driver writes underneath.
"""

from __future__ import annotations

import pytest
from fake_cgroupfs import RecordingBpf, drop_interface_files, make_v1, make_v2, populate_v1, populate_v2

from pallet.cgroups import create_cgroup_manager
from pallet.cgroups.stats import Stats
from pallet.errors import InvalidArgument, NotSupported

PATH = "/pallet/conf"
MiB = 1 << 20


@pytest.fixture(params=["v1", "v1-combined", "v2"])
def driver(request, tmp_path):
    root = tmp_path / "cgroup"
    if request.param == "v2":
        make_v2(root)
        populate_v2(root, PATH)
    else:
        make_v1(root, combined=request.param == "v1-combined")
        populate_v1(root, PATH)
    return create_cgroup_manager(PATH, root=root, syscalls=RecordingBpf()), root


def test_version_path_and_every_protocol_method(driver):
    mgr, _ = driver
    assert mgr.version in (1, 2) and mgr.path == PATH
    for name in ("validate", "apply", "set", "stats", "freeze", "thaw", "frozen", "pids", "exists",
                 "destroy"):
        assert callable(getattr(mgr, name)), name


def test_apply_is_idempotent_and_pids_follow(driver):
    mgr, _ = driver
    mgr.apply(4242)
    mgr.apply(4242)
    assert mgr.exists()
    assert mgr.pids() == [4242]


def test_memory_and_pids_limits_round_trip_through_stats(driver):
    mgr, _ = driver
    mgr.set({"memory": {"limit": 64 * MiB}, "pids": {"limit": 32}})
    stats = mgr.stats()
    assert isinstance(stats, Stats)
    assert stats.memory.limit == 64 * MiB
    assert stats.pids.limit == 32
    mgr.set({"pids": {"limit": -1}})
    assert mgr.stats().pids.limit == 0


@pytest.mark.parametrize(("resources", "field"), [
    ({"memory": {"limit": "1g"}}, "memory.limit"),
    ({"memory": {"limit": 100 * MiB, "swap": 50 * MiB}}, "memory.swap"),
    ({"cpu": {"shares": 300000}}, "cpu.shares"),
    ({"cpu": {"mems": "x"}}, "cpu.mems"),
    ({"pids": {"limit": True}}, "pids.limit"),
    ({"blockIO": {"weightDevice": [{"major": 8, "minor": -1, "weight": 10}]}},
     r"blockIO.weightDevice\[0\].minor"),
    ({"devices": [{"allow": True, "access": "x"}]}, r"devices\[0\].access"),
    ({"hugepageLimits": [{"pageSize": "2M", "limit": 1}]}, r"hugepageLimits.pageSize"),
])
def test_invalid_resources_name_the_field(driver, resources, field):
    mgr, root = driver
    before = sorted(p.name for p in root.rglob("*"))
    with pytest.raises(InvalidArgument, match=rf"linux\.resources\.{field}"):
        mgr.validate(resources)
    with pytest.raises(InvalidArgument):
        mgr.set(resources)            # set validates before it writes anything
    assert sorted(p.name for p in root.rglob("*")) == before


def test_realtime_is_not_supported(driver):
    mgr, _ = driver
    with pytest.raises(NotSupported, match="realtimeRuntime"):
        mgr.validate({"cpu": {"realtimeRuntime": 950000, "realtimePeriod": 1000000}})
    mgr.validate({"cpu": {"realtimeRuntime": 0, "realtimePeriod": 0}})   # zero: unset


def test_empty_resources_are_fine(driver):
    mgr, _ = driver
    mgr.validate({})
    mgr.set({"memory": {}, "cpu": {}, "devices": []})


def test_cpu_quota_shows_as_configured_not_as_stats(driver):
    mgr, _ = driver
    mgr.set({"cpu": {"quota": 50000, "period": 100000, "shares": 2048}})
    stats = mgr.stats().cpu
    assert stats.total_ns == 0 and stats.nr_throttled == 0


def test_destroy_is_idempotent_and_keeps_the_parent(driver):
    mgr, root = driver
    mgr.apply(1)
    for pallet_dir in root.rglob("pallet"):
        drop_interface_files(pallet_dir)
    mgr.destroy()
    mgr.destroy()
    assert not mgr.exists()
    assert mgr.pids() == []
    assert create_cgroup_manager("/pallet", root=root).exists()
