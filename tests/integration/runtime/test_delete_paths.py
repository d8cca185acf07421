"""delete's two paths against the real kernel: a stopped container's cgroup is removed from the
directories create recorded (no cgroup driver), and one that still holds a process takes the
driver's path (kill, wait, remove)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from pallet.runtime.state import proc_start_time


def _dirs(env, cid: str) -> list[str]:
    return json.loads((env.root / cid / "state.json").read_text())["cgroup_dirs"]


def _wait_gone(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while proc_start_time(pid) is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc_start_time(pid) is None


def test_delete_of_a_stopped_container_removes_the_recorded_cgroup_dirs(env):
    bundle, _ = env.bundle(["true"], name="stopped")
    env.container("stopped", bundle)
    dirs = _dirs(env, "stopped")
    root = "/sys/fs/cgroup/"
    assert dirs and all(d.startswith(root) and d.endswith("/stopped") for d in dirs)
    assert all(os.path.isdir(d) for d in dirs)
    pid = env.state("stopped")["pid"]
    env.run("start", "stopped")
    _wait_gone(pid)
    env.run("delete", "stopped")
    assert not any(os.path.exists(d) for d in dirs)
    assert not (env.root / "stopped").exists()


def test_delete_force_takes_the_driver_path_for_a_live_container(env):
    # A process that outlives the init's pid namespace cannot exist, so "left in the cgroup" is
    # shown with a running container: force kills it, waits, and removes every directory.
    bundle, _ = env.bundle(["sleep", "1000"], name="live")
    env.container("live", bundle)
    env.run("start", "live")
    dirs = _dirs(env, "live")
    pid = env.state("live")["pid"]
    env.run("delete", "--force", "live")
    assert proc_start_time(pid) is None
    assert not any(os.path.exists(d) for d in dirs)


def test_a_state_file_without_cgroup_dirs_is_deleted_through_the_driver(env):
    # As written by an older pallet-runtime: the field is absent.
    bundle, _ = env.bundle(["true"], name="old")
    env.container("old", bundle)
    path = Path(env.root / "old" / "state.json")
    state = json.loads(path.read_text())
    dirs = state.pop("cgroup_dirs")
    path.write_text(json.dumps(state))
    pid = env.state("old")["pid"]
    env.run("start", "old")
    _wait_gone(pid)
    env.run("delete", "old")
    assert not any(os.path.exists(d) for d in dirs)
