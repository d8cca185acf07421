"""The CgroupManager against the real kernel: v1 on the host, v2 in the tests/v2vm VM.

Each test moves a child it started into a fresh /pallet-test-<random>/ctr cgroup and checks the
effect from the outside (OOM kill, CPU time, fork failure, EPERM, elapsed IO time).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from pallet.cgroups import create_cgroup_manager, detect_version
from pallet.errors import InvalidArgument, NotSupported

MiB = 1 << 20
pytestmark = pytest.mark.root


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process from /proc/<pid>/stat (proc(5), fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


def test_detects_the_host_version(cgroup):
    mounts = Path("/proc/self/mounts").read_text().split("\n")
    v2_root = any(line.split()[1:3] == ["/sys/fs/cgroup", "cgroup2"] for line in mounts if line)
    assert cgroup.version == (2 if v2_root else 1) == detect_version(Path("/sys/fs/cgroup"))


def test_child_shows_in_pids_and_destroy_removes(cgroup, children):
    proc = children.shell("sleep 30")
    assert not cgroup.exists()
    cgroup.apply(proc.pid)
    cgroup.apply(proc.pid)  # idempotent
    assert cgroup.exists()
    assert cgroup.pids() == [proc.pid]
    proc.kill()
    proc.wait()
    assert wait_until(lambda: cgroup.pids() == [])
    cgroup.destroy()
    cgroup.destroy()
    assert not cgroup.exists()


def test_memory_limit_written_and_read_back(cgroup, children, requires):
    requires("controller:memory")
    proc = children.shell("sleep 30")
    cgroup.apply(proc.pid)
    cgroup.set({"memory": {"limit": 64 * MiB}})
    assert cgroup.stats().memory.limit == 64 * MiB
    cgroup.set({"memory": {"limit": 96 * MiB}})  # update
    assert cgroup.stats().memory.limit == 96 * MiB


def test_memory_swap_update_grows_and_shrinks(cgroup, children, requires):
    requires("controller:memory", "memsw")
    proc = children.shell("sleep 30")
    cgroup.apply(proc.pid)
    # v1 keeps memsw >= limit at every write; both directions must go through.
    cgroup.set({"memory": {"limit": 64 * MiB, "swap": 64 * MiB}})
    cgroup.set({"memory": {"limit": 128 * MiB, "swap": 256 * MiB}})
    cgroup.set({"memory": {"limit": 32 * MiB, "swap": 32 * MiB}})
    assert cgroup.stats().memory.limit == 32 * MiB
    with pytest.raises(InvalidArgument, match=r"memory\.swap"):
        cgroup.set({"memory": {"limit": 64 * MiB, "swap": 32 * MiB}})


def test_allocating_past_the_limit_is_oom_killed(cgroup, children, requires):
    requires("controller:memory")
    proc = children.python("b = b'x' * (256 << 20)\nprint('survived', flush=True)")
    cgroup.apply(proc.pid)
    memory = {"limit": 32 * MiB}
    if not _missing_memsw():
        memory["swap"] = 32 * MiB  # no swapping out instead of dying
    cgroup.set({"memory": memory})
    children.go(proc)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == -9, out
    assert wait_until(lambda: cgroup.stats().memory.oom_kill >= 1)
    assert cgroup.stats().memory.max_usage >= 30 * MiB


def _missing_memsw() -> bool:
    mgr_root = Path("/sys/fs/cgroup")
    if (mgr_root / "cgroup.controllers").exists():
        return False
    return not (mgr_root / "memory" / "memory.memsw.limit_in_bytes").exists()


def test_cpu_quota_limits_a_busy_loop_to_20_percent(cgroup, children, requires):
    requires("controller:cpu")
    proc = children.shell("while :; do :; done")
    cgroup.apply(proc.pid)
    cgroup.set({"cpu": {"quota": 20000, "period": 100000}})
    before = cgroup.stats().cpu.total_ns
    children.go(proc)
    time.sleep(1.5)
    used = (cgroup.stats().cpu.total_ns - before) / 1e9
    # 20% of 1.5 s is 0.3 s; generous bounds for a loaded machine or an emulated VM.
    assert 0.1 < used < 0.6, used
    stats = cgroup.stats().cpu
    assert stats.nr_throttled > 0 and stats.nr_periods >= stats.nr_throttled


def test_pids_limit_makes_fork_fail(cgroup, children, requires):
    requires("controller:pids")
    proc = children.python(
        "import os\n"
        "try:\n"
        "    pid = os.fork()\n"
        "except BlockingIOError:\n"
        "    print('EAGAIN', flush=True)\n"
        "else:\n"
        "    if pid == 0:\n"
        "        os._exit(0)\n"
        "    os.waitpid(pid, 0)\n"
        "    print('forked', flush=True)\n")
    cgroup.apply(proc.pid)
    cgroup.set({"pids": {"limit": 1}})
    assert cgroup.stats().pids == type(cgroup.stats().pids)(current=1, limit=1)
    children.go(proc)
    out, _ = proc.communicate(timeout=60)
    assert out.strip() == "EAGAIN"


def test_freeze_stops_and_thaw_resumes(cgroup, children, requires):
    if cgroup.version == 1:
        requires("controller:freezer")
    proc = children.shell("while :; do :; done")
    cgroup.apply(proc.pid)
    children.go(proc)
    assert wait_until(lambda: cpu_seconds(proc.pid) > 0.02)
    cgroup.freeze()
    cgroup.freeze()  # idempotent
    assert cgroup.frozen()
    frozen_at = cpu_seconds(proc.pid)
    time.sleep(0.5)
    assert cpu_seconds(proc.pid) == frozen_at
    cgroup.thaw()
    assert not cgroup.frozen()
    assert wait_until(lambda: cpu_seconds(proc.pid) > frozen_at + 0.05)


def test_device_deny_makes_open_fail_with_eperm(cgroup, children, requires):
    if cgroup.version == 1:
        requires("controller:devices")
    proc = children.shell("echo x > /dev/null && echo null-ok; echo x > /dev/zero && echo zero-ok")
    cgroup.apply(proc.pid)
    cgroup.set({"devices": [{"allow": False, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]})
    children.go(proc)
    out, _ = proc.communicate(timeout=30)
    assert "Operation not permitted" in out and "null-ok" not in out, out
    assert "zero-ok" in out, out


def test_device_whitelist_after_deny_all(cgroup, children, requires):
    if cgroup.version == 1:
        requires("controller:devices")
    proc = children.shell("echo x > /dev/null && echo null-ok; echo x > /dev/zero && echo zero-ok; "
                          "head -c1 /dev/zero > /dev/null; cat < /dev/zero > /dev/full; "
                          "read y < /dev/zero && echo read-zero")
    cgroup.apply(proc.pid)
    # What Docker sends, shortened: deny all, then the few devices a container gets.
    rules = [{"allow": False, "access": "rwm"},
             {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "w"}]
    cgroup.set({"devices": rules})
    cgroup.set({"devices": rules})  # update with the same list
    children.go(proc)
    out, _ = proc.communicate(timeout=30)
    assert "null-ok" not in out and "zero-ok" in out, out
    assert "read-zero" not in out, out  # /dev/zero is allowed for writing only


@pytest.fixture
def loop_device(requires):
    """A 64 MiB loop device over a file in /tmp; detached and removed afterwards."""
    requires("root", "cmd:losetup")
    if not Path("/dev/loop-control").exists():
        subprocess.run(["modprobe", "loop"], check=False, capture_output=True)
    backing = Path("/tmp") / f"pallet-test-loop-{os.getpid()}"
    with open(backing, "wb") as f:
        f.truncate(64 * MiB)
    result = subprocess.run(["losetup", "--find", "--show", str(backing)], capture_output=True, text=True)
    if result.returncode != 0:
        backing.unlink()
        pytest.skip(f"requires a loop device: {result.stderr.strip()}")
    device = result.stdout.strip()
    try:
        major, minor = Path(f"/sys/class/block/{Path(device).name}/dev").read_text().strip().split(":")
        yield device, int(major), int(minor)
    finally:
        subprocess.run(["losetup", "--detach", device], check=False)
        backing.unlink()


def test_io_write_throttle_slows_direct_writes(cgroup, children, loop_device, requires):
    requires("controller:blkio" if cgroup.version == 1 else "controller:io", "cmd:dd")
    device, major, minor = loop_device
    proc = children.shell(f"exec dd if=/dev/zero of={device} bs=256K count=16 oflag=direct 2>&1")
    cgroup.apply(proc.pid)
    cgroup.set({"blockIO": {"throttleWriteBpsDevice": [{"major": major, "minor": minor, "rate": MiB}]}})
    start = time.monotonic()
    children.go(proc)
    out, _ = proc.communicate(timeout=30)
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, out
    # 4 MiB at 1 MiB/s: blk-throttle lets the first slice through, so >= ~3 s, not 4.
    assert 2.5 <= elapsed < 15, elapsed
    written = sum(e.value for e in cgroup.stats().blkio.io_service_bytes
                  if (e.major, e.minor, e.op) == (major, minor, "Write"))
    assert written >= 4 * MiB


def test_stats_parse_from_the_real_files(cgroup, children, requires):
    requires("controller:memory", "controller:pids")
    proc = children.python("import time\nb = b'x' * (16 << 20)\nprint('ready', flush=True)\n"
                           "t = time.process_time()\nwhile time.process_time() - t < 0.2: pass\n"
                           "input()")
    cgroup.apply(proc.pid)
    children.go(proc)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    time.sleep(0.3)
    stats = cgroup.stats()
    assert stats.memory.usage >= 16 * MiB
    assert stats.memory.rss >= 16 * MiB
    assert stats.memory.raw
    assert stats.pids.current == 1 and stats.pids.limit == 0
    assert stats.cpu.total_ns > 0
    assert stats.cpu.user_ns + stats.cpu.system_ns > 0
    if cgroup.version == 1:
        assert len(stats.cpu.per_cpu_ns) == os.cpu_count()
        # Two files read one after the other while the process lives: usage_percpu, read second,
        # may have grown by the few microseconds the idle process spent in between.
        assert 0 <= sum(stats.cpu.per_cpu_ns) - stats.cpu.total_ns < 10_000_000


def test_validate_refuses_what_this_version_lacks(cgroup):
    if cgroup.version == 1:
        with pytest.raises(NotSupported, match="unified"):
            cgroup.validate({"unified": {"memory.high": "100M"}})
    else:
        with pytest.raises(NotSupported, match="network"):
            cgroup.validate({"network": {"classID": 1}})
    with pytest.raises(InvalidArgument, match=r"linux\.resources\.memory\.limit"):
        cgroup.validate({"memory": {"limit": "lots"}})
    assert not cgroup.exists()  # validate creates nothing


def test_unified_keys_on_v2(cgroup, children, requires):
    requires("cgroup2", "controller:memory")
    proc = children.shell("sleep 30")
    cgroup.apply(proc.pid)
    cgroup.set({"unified": {"memory.high": "104857600"}})
    mgr_dir = Path("/sys/fs/cgroup") / cgroup.path.lstrip("/")
    assert (mgr_dir / "memory.high").read_text().strip() == "104857600"


def test_nested_manager_for_the_parent_does_not_touch_the_child(cgroup, children):
    proc = children.shell("sleep 30")
    cgroup.apply(proc.pid)
    parent = create_cgroup_manager(cgroup.path.rsplit("/", 1)[0])
    assert parent.pids() == [proc.pid]  # recursive
    assert parent.exists()
