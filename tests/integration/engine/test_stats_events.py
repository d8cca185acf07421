"""Stats from the cgroup and the event log, for real (root): a busybox container that fills memory,
burns CPU and writes to the block device shows each figure moving (cgroup v1 here, v2 in the VM of
tests/v2vm); a full lifecycle including an OOM kill appears in the events with Docker's
attributes.

Safety: containers live under the cgroup parent /pallet-test-<random> with a private data and
exec root; teardown force-removes every container and removes the parent cgroups.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from pathlib import Path

import pytest

from pallet.engine.containers import Engine
from pallet.engine.stats import container_stats
from pallet.image.service import ImageService
from pallet_testlib import rm_cgroups

if os.geteuid() != 0:
    pytest.skip("needs root (overlay mounts, namespaces, cgroups)", allow_module_level=True)
if not os.path.exists("/bin/busybox"):
    pytest.skip("needs Debian's busybox-static (/bin/busybox)", allow_module_level=True)

MiB = 1 << 20


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    # Under /var/tmp when it is a block-device file system: writes in the container then reach a
    # disk the blkio/io controller accounts (a tmpfs /tmp would not).
    base = Path("/var/tmp") if os.path.isdir("/var/tmp") else tmp_path_factory.getbasetemp()
    root = Path(os.path.realpath(base)) / f"pallet-stats-{uuid.uuid4().hex[:8]}"
    root.mkdir()
    with ImageService(str(root)) as svc:
        svc.bootstrap("busybox")
    yield root
    import shutil

    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def engine(data_root, tmp_path):
    parent = f"/pallet-test-{uuid.uuid4().hex[:8]}"
    e = Engine(str(data_root), str(tmp_path / "run"), cgroup_parent=parent)
    yield e
    for c in e.list(all=True):
        with contextlib.suppress(Exception):
            e.remove(c["Id"], force=True)
    e.close()
    rm_cgroups(parent)


def until(pred, timeout: float = 15.0, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("timed out")


def _blk(s: dict, op: str) -> int:
    return sum(e["value"] for e in s["blkio_stats"]["io_service_bytes_recursive"] or []
               if e["op"].lower() == op)


def test_update_of_a_running_container_shows_in_stats(engine):
    cid = engine.create({"Image": "busybox", "Cmd": ["sleep", "60"],
                         "HostConfig": {"Memory": 128 * MiB, "PidsLimit": 30}})
    engine.start(cid)
    before = container_stats(engine, cid)
    assert (before["memory_stats"]["limit"], before["pids_stats"]["limit"]) == (128 * MiB, 30)
    engine.update(cid, {"Memory": 64 * MiB, "MemorySwap": 64 * MiB, "PidsLimit": 20})
    after = container_stats(engine, cid)
    assert (after["memory_stats"]["limit"], after["pids_stats"]["limit"]) == (64 * MiB, 20)
    engine.remove(cid, force=True)


def test_stats_move_with_memory_cpu_and_block_io(engine, data_root):
    # The work starts when the test says so (/go), after the first sample: a slow host (the v2 VM
    # runs under emulation) must not finish it before the baseline is read.
    script = ("while [ ! -e /go ]; do sleep 0.05; done; "
              "dd if=/dev/zero of=/dev/shm/fill bs=1M count=24 2>/dev/null; "
              "dd if=/dev/zero of=/blk bs=1M count=16 oflag=direct 2>/dev/null; touch /done; "
              "(while [ ! -e /stop ]; do :; done) & sleep 60")
    cid = engine.create({"Image": "busybox", "Cmd": ["sh", "-c", script], "HostConfig": {
        "Memory": 256 * MiB, "PidsLimit": 50}})
    engine.start(cid)
    first = container_stats(engine, cid)
    assert first["id"] == cid and first["name"].startswith("/") and first["read"] != "0001-01-01T00:00:00Z"
    assert first["memory_stats"]["limit"] == 256 * MiB
    assert first["pids_stats"]["limit"] == 50
    open(os.path.join(engine.rootfs_path(cid), "go"), "w").close()
    until(lambda: os.path.exists(os.path.join(engine.rootfs_path(cid), "done")))
    time.sleep(1.0)  # the CPU loop runs for a second
    second = container_stats(engine, cid, pre=first)
    assert second["precpu_stats"] == first["cpu_stats"] and second["preread"] == first["read"]
    mem = second["memory_stats"]
    assert mem["usage"] - first["memory_stats"]["usage"] >= 20 * MiB, (first["memory_stats"], mem)
    page_kinds = mem["stats"]
    shmem = page_kinds.get("total_shmem", page_kinds.get("shmem", 0))
    assert shmem >= 20 * MiB  # /dev/shm pages are shared memory in the page cache
    assert "active_anon" in page_kinds and "inactive_file" in page_kinds and "oom_kill" in page_kinds
    cpu, pre = second["cpu_stats"], second["precpu_stats"]
    busy = cpu["cpu_usage"]["total_usage"] - pre["cpu_usage"]["total_usage"]
    assert busy > 0.2e9  # up to one CPU for a second (less on a busy host: 2 cores, shared)
    assert cpu["system_cpu_usage"] > pre["system_cpu_usage"] and cpu["online_cpus"] >= 1
    assert cpu["cpu_usage"]["usage_in_usermode"] > 0
    from pallet.cli.commands.stats import cpu_percent, row

    assert cpu_percent(second) > 15.0
    assert second["pids_stats"]["current"] >= 2  # the CPU loop and sleep (sh execs its last command)
    if os.major(os.stat(data_root).st_dev) != 0:  # a real block device under the data root
        assert _blk(second, "write") >= 16 * MiB, second["blkio_stats"]
        assert row(second, "x")["BlockIO"].split(" / ")[1].endswith("MB")
    # The container's interfaces but lo (none when it has loopback only; eth0 on a bridge).
    for name, counters in (second.get("networks") or {}).items():
        assert name != "lo" and set(counters) == {"rx_bytes", "rx_packets", "rx_errors", "rx_dropped",
                                                  "tx_bytes", "tx_packets", "tx_errors", "tx_dropped"}
    open(os.path.join(engine.rootfs_path(cid), "stop"), "w").close()  # the CPU loop ends: a quick kill
    engine.kill(cid)
    stopped = container_stats(engine, cid)
    assert stopped["read"] == "0001-01-01T00:00:00Z" and stopped["memory_stats"] == {}


def test_events_of_a_lifecycle(engine):
    start_ns = time.time_ns()
    cid = engine.create({"Image": "busybox", "Cmd": ["sleep", "60"], "Labels": {"team": "a"},
                         "StopSignal": "SIGKILL"}, name="lc")
    engine.start(cid)
    engine.pause(cid)
    engine.unpause(cid)
    eid = engine.exec_create(cid, {"Cmd": ["sh", "-c", "exit 4"]})
    session = engine.exec_start(eid)
    assert session is not None and session.wait(10) == 4
    session.close()
    engine.rename(cid, "lc2")
    engine.update(cid, {"PidsLimit": 20})
    engine.restart(cid, timeout=1)
    engine.stop(cid, timeout=1)
    engine.remove(cid)
    events = engine.events.history(since_ns=start_ns, filters={"container": [cid[:12]]})
    mine = [e["Action"] for e in events]
    assert mine == ["create", "start", "pause", "unpause", "exec_create: sh -c exit 4",
                    "exec_start: sh -c exit 4", "exec_die", "rename", "update",
                    "kill", "die", "stop", "start", "restart", "kill", "die", "stop", "destroy"], mine
    by = {e["Action"]: e for e in events}
    assert by["die"]["Actor"]["Attributes"]["exitCode"] == "137"
    assert by["kill"]["Actor"]["Attributes"]["signal"] == "9"
    assert by["exec_die"]["Actor"]["Attributes"]["exitCode"] == "4"
    assert by["exec_die"]["Actor"]["Attributes"]["execID"] == eid
    assert by["rename"]["Actor"]["Attributes"]["oldName"] == "/lc"
    create = by["create"]
    assert create["Actor"]["Attributes"] == {"team": "a", "image": "busybox", "name": "lc"}
    assert create["from"] == "busybox" and create["status"] == "create" and create["id"] == cid


def test_an_oom_kill_is_reported(engine):
    start_ns = time.time_ns()
    oom = engine.create({"Image": "busybox", "Cmd": ["tail", "/dev/zero"],
                         "HostConfig": {"Memory": 16 * MiB, "MemorySwap": 16 * MiB}}, name="hog")
    engine.start(oom)
    assert engine.wait(oom, timeout=30) == 137
    assert engine.inspect(oom)["State"]["OOMKilled"] is True
    events = engine.events.history(since_ns=start_ns, filters={"container": ["hog"]})
    hog = [e["Action"] for e in events if e["Actor"]["ID"] == oom]
    assert hog == ["create", "start", "oom", "die"], hog
    die = [e for e in events if e["Actor"]["ID"] == oom][-1]
    assert die["Actor"]["Attributes"]["exitCode"] == "137"


def test_an_oom_kill_is_reported_live_while_pid1_survives(engine):
    # The shell (pid 1) runs the hog as a child: the kernel kills the child, the container lives on.
    cid = engine.create({"Image": "busybox", "Cmd": ["sh", "-c", "tail /dev/zero; echo survived; sleep 60"],
                         "HostConfig": {"Memory": 16 * MiB, "MemorySwap": 16 * MiB}})
    start_ns = time.time_ns()
    engine.start(cid)
    until(lambda: "survived" in b"".join(d for _s, d in engine.logs(cid)).decode())
    info = engine.inspect(cid)
    assert info["State"]["Running"] and info["State"]["OOMKilled"] is True
    acts = [e["Action"] for e in engine.events.history(since_ns=start_ns, filters={"container": [cid]})]
    assert acts == ["start", "oom"], acts
    engine.kill(cid)
    acts = [e["Action"] for e in engine.events.history(since_ns=start_ns, filters={"container": [cid]})]
    assert acts == ["start", "oom", "kill", "die"], acts  # one oom event, not a second at the exit
