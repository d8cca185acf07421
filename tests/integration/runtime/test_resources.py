"""Limits and accounting through the runtime: memory (OOM), CPU quota, pids, block IO, update."""

from __future__ import annotations

import json
import os
import time

import pytest


def stats(env, cid):
    return json.loads(env.run("events", "--stats", cid).stdout)["data"]


def started(env, name, resources, args=("sleep", "1000"), **mounts):
    bundle, spec = env.bundle(list(args), name=name)
    spec["linux"]["resources"].update(resources)
    for dest, src in mounts.items():
        spec["mounts"].append({"destination": "/" + dest, "type": "bind", "source": str(src),
                               "options": ["rbind", "rw"]})
    env.write(bundle, spec)
    env.container(name, bundle)
    env.run("start", name)
    return bundle


def test_oom_kill_under_memory_limit(env):
    started(env, "oom", {"memory": {"limit": 32 * 1024 * 1024, "swap": 32 * 1024 * 1024}})
    proc = env.run("exec", "oom", "sh", "-c", "head -c 200m /dev/zero | tail > /dev/null", check=False,
                   timeout=60)
    assert proc.returncode in (137, 1), proc  # tail killed by SIGKILL; sh reports it
    data = stats(env, "oom")
    assert data["memory"]["oom_kill"] >= 1
    assert data["memory"]["usage"]["limit"] == 32 * 1024 * 1024
    assert env.state("oom")["status"] == "running"  # only the hog died


def test_cpu_quota_is_enforced(env):
    started(env, "cpu", {"cpu": {"quota": 20000, "period": 100000}})
    before = stats(env, "cpu")["cpu"]["usage"]["total"]
    env.run("exec", "cpu", "timeout", "-s", "KILL", "2", "sh", "-c", "while :; do :; done", check=False)
    used = (stats(env, "cpu")["cpu"]["usage"]["total"] - before) / 1e9
    # The loop spins for 2 s: 20% of one CPU is ~0.4 s of CPU time; unthrottled it would be ~2 s.
    # (Measured against the loop's 2 s, not the wall time, which includes exec's start-up.)
    assert 0.25 <= used <= 0.75, used
    assert stats(env, "cpu")["cpu"]["throttling"]["throttledPeriods"] > 0


def test_pids_limit(env):
    started(env, "pids", {"pids": {"limit": 8}})
    proc = env.run("exec", "pids", "sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 3 & done 2>&1; "
                   "wait", check=False, timeout=30)
    assert "can't fork" in proc.stdout + proc.stderr or "Resource temporarily unavailable" in \
        proc.stdout + proc.stderr
    assert stats(env, "pids")["pids"]["limit"] == 8


def test_update_changes_limits_of_a_running_container(env):
    started(env, "upd", {"memory": {"limit": 64 * 1024 * 1024}})
    env.run("update", "--memory", "48m", "--pids-limit", "20", "upd")
    data = stats(env, "upd")
    assert data["memory"]["usage"]["limit"] == 48 * 1024 * 1024
    assert data["pids"]["limit"] == 20
    env.run("update", "--resources", "-", "upd", input=json.dumps({"pids": {"limit": 30}}))
    assert stats(env, "upd")["pids"]["limit"] == 30


def _root_disk() -> tuple[int, int] | None:
    st = os.stat("/tmp")
    major, minor = os.major(st.st_dev), os.minor(st.st_dev)
    return (major, minor) if os.path.exists(f"/sys/dev/block/{major}:{minor}") else None


def test_io_write_throttle_on_real_disk(env):
    dev = _root_disk()
    if dev is None:
        pytest.skip("/tmp is not on a block device")
    vol = env.tmp / "io"
    vol.mkdir()
    rule = {"major": dev[0], "minor": dev[1], "rate": 1024 * 1024}
    started(env, "io", {"blockIO": {"throttleWriteBpsDevice": [rule]}}, io=vol)
    t0 = time.monotonic()
    proc = env.run("exec", "io", "dd", "if=/dev/zero", "of=/io/f", "bs=256k", "count=12", "oflag=direct",
                   check=False, timeout=60)
    elapsed = time.monotonic() - t0
    if "Invalid argument" in proc.stderr:
        pytest.skip("O_DIRECT not supported on /tmp's filesystem")
    assert proc.returncode == 0, proc.stderr
    assert elapsed >= 2.0, elapsed  # 3 MiB at 1 MiB/s
    written = sum(e["value"] for e in stats(env, "io")["blkio"]["ioServiceBytesRecursive"]
                  if e["op"] in ("Write", "write") and (e["major"], e["minor"]) == dev)
    assert written >= 3 * 1024 * 1024
