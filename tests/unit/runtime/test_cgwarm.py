"""pallet.runtime.cgwarm: the helper child that holds the cgroup semaphore's grace period open."""

from __future__ import annotations

import os
import time
from pathlib import Path

from pallet.runtime import cgwarm


def test_procs_file_prefers_a_hierarchy_without_accounting():
    dirs = ["/cg/memory/pallet/c", "/cg/cpu,cpuacct/pallet/c", "/cg/pids/pallet/c", "/cg/devices/pallet/c"]
    assert cgwarm.procs_file(dirs) == "/cg/devices/pallet/c/cgroup.procs"
    assert cgwarm.procs_file(["/cg/memory/x", "/cg/net_cls,net_prio/x"]) == \
        "/cg/net_cls,net_prio/x/cgroup.procs"
    assert cgwarm.procs_file(["/sys/fs/cgroup/pallet/c"]) == "/sys/fs/cgroup/pallet/c/cgroup.procs"  # v2
    assert cgwarm.procs_file([]) == ""


def test_helper_writes_its_pid_repeatedly_until_stopped(tmp_path: Path):
    procs = tmp_path / "devices" / "c" / "cgroup.procs"  # a fake cgroupfs file: nothing moves
    procs.parent.mkdir(parents=True)
    procs.write_text("")
    cgwarm.start(str(procs))
    try:
        assert cgwarm.running()
        pid = cgwarm._state[0]
        deadline = time.monotonic() + 5
        while procs.read_text() != str(pid) and time.monotonic() < deadline:
            time.sleep(0.002)
        assert procs.read_text() == str(pid)  # its own pid, into the given cgroup
        procs.write_text("")
        time.sleep(0.05)
        assert procs.read_text().startswith(str(pid))  # written again: the window stays open
    finally:
        cgwarm.stop()
        cgwarm.reap()
    assert not cgwarm.running() and not cgwarm._pending
    try:
        os.kill(pid, 0)
        raise AssertionError(f"helper {pid} still exists after stop()")
    except ProcessLookupError:
        pass
    cgwarm.stop()  # idempotent
    cgwarm.reap()


def test_helper_gives_up_quietly_without_a_cgroupfs(tmp_path: Path):
    cgwarm.start(str(tmp_path / "nothing" / "cgroup.procs"))
    t = time.monotonic()
    cgwarm.reap()
    assert time.monotonic() - t < 2 and not cgwarm.running() and not cgwarm._pending
