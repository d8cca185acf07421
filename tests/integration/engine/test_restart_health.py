"""Restart policies and healthchecks for real (root): `always` brings back a container killed from
outside, and again when a new engine (a palletd restart, a host reboot) finds it dead; a user's
stop wins over `always` until then and over `unless-stopped` for good; on-failure stops after its
retries; a failing healthcheck turns a container unhealthy; a hung one times out without stalling
the engine.

Safety: containers live under the cgroup parent /pallet-test-<random> with a private exec root;
teardown force-removes every container (by recorded pids, through the runtime) and the cgroups.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from pallet.engine.containers import Engine
from pallet.errors import InvalidArgument
from pallet.image.service import ImageService
from pallet_testlib import rm_cgroups

if os.geteuid() != 0:
    pytest.skip("needs root (overlay mounts, namespaces, cgroups)", allow_module_level=True)
if not os.path.exists("/bin/busybox"):
    pytest.skip("needs Debian's busybox-static (/bin/busybox)", allow_module_level=True)

MS = 1_000_000


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("restart-data")
    with ImageService(str(root)) as svc:
        svc.bootstrap("busybox")
    return root


class Env:
    def __init__(self, data_root: Path, tmp: Path) -> None:
        self.data_root, self.exec_root = str(data_root), str(tmp / "run")
        self.parent = f"/pallet-test-{uuid.uuid4().hex[:8]}"
        self.engines: list[Engine] = []

    def engine(self) -> Engine:
        e = Engine(self.data_root, self.exec_root, cgroup_parent=self.parent)
        self.engines.append(e)
        return e

    def cleanup(self) -> None:
        for e in self.engines:
            with contextlib.suppress(Exception):
                e.close()
        # A fresh engine (its boot may start `always` containers: they are removed right after).
        e = Engine(self.data_root, self.exec_root, cgroup_parent=self.parent)
        for c in e.list(all=True):
            with contextlib.suppress(Exception):
                e.remove(c["Id"], force=True)
        e.close()
        rm_cgroups(self.parent)


@pytest.fixture
def env(data_root, tmp_path):
    e = Env(data_root, tmp_path)
    yield e
    e.cleanup()


def until(pred, timeout: float = 15.0, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("timed out")


def run(engine: Engine, cmd: list[str], policy: str = "no", retries: int = 0, **cfg) -> str:
    cid = engine.create({"Image": "busybox", "Cmd": cmd, **cfg,
                         "HostConfig": {"RestartPolicy": {"Name": policy, "MaximumRetryCount": retries}}})
    engine.start(cid)
    return cid


def state(engine: Engine, cid: str) -> dict:
    return engine.inspect(cid)["State"]


def test_always_comes_back_after_an_outside_kill_and_a_new_engine(env):
    e = env.engine()
    cid = run(e, ["sleep", "600"], "always")
    pid = state(e, cid)["Pid"]
    os.kill(pid, signal.SIGKILL)  # from outside, not through the engine
    info = until(lambda: (i := e.inspect(cid))["State"]["Running"]
                 and i["State"]["Pid"] not in (0, pid) and i)
    assert info["RestartCount"] == 1 and info["State"]["Status"] == "running"
    actions = [m["Action"] for m in e.events.history(filters={"container": [cid]})]
    assert actions[-2:] == ["die", "start"], actions
    # The daemon goes away; the container dies while nobody watches; a new engine starts it.
    e.close()
    pid2 = info["State"]["Pid"]
    os.kill(pid2, signal.SIGKILL)
    until(lambda: not os.path.exists(f"/proc/{pid2}"))
    time.sleep(0.3)  # its monitor writes exit.json and exits
    e2 = env.engine()
    info = e2.inspect(cid)
    assert info["State"]["Running"] and info["State"]["Pid"] not in (0, pid2)


def test_user_stop_wins_over_always_until_the_next_engine(env):
    e = env.engine()
    always = run(e, ["sleep", "600"], "always", StopSignal="SIGKILL")
    unless = run(e, ["sleep", "600"], "unless-stopped", StopSignal="SIGKILL")
    e.stop(always, timeout=1)
    e.kill(unless)
    time.sleep(0.5)  # longer than the first back-off
    assert state(e, always)["Status"] == "exited" and state(e, unless)["Status"] == "exited"
    assert e.inspect(always)["RestartCount"] == 0
    e.close()
    e2 = env.engine()
    assert state(e2, always)["Running"]  # Docker: `always` comes back when the daemon restarts
    assert state(e2, unless)["Status"] == "exited"  # stopped by hand: stays stopped
    e2.start(unless)
    assert state(e2, unless)["Running"]


def test_on_failure_gives_up_after_its_retries_with_backoff(env):
    e = env.engine()
    t0 = time.monotonic()
    cid = run(e, ["sh", "-c", "exit 3"], "on-failure", 2)
    info = until(lambda: (i := e.inspect(cid))["RestartCount"] == 2 and i["State"]["Status"] == "exited"
                 and i, timeout=20)
    took = time.monotonic() - t0
    assert info["State"]["ExitCode"] == 3 and took >= 0.3  # 100 ms, then 200 ms of back-off
    time.sleep(0.5)
    assert e.inspect(cid)["RestartCount"] == 2 and state(e, cid)["Status"] == "exited"
    dies = [m for m in e.events.history(filters={"container": [cid], "event": ["die"]})]
    assert [m["Actor"]["Attributes"]["exitCode"] for m in dies] == ["3", "3", "3"]
    ok = run(e, ["true"], "on-failure")
    until(lambda: state(e, ok)["Status"] == "exited")
    time.sleep(0.3)
    assert e.inspect(ok)["RestartCount"] == 0  # exit 0 is not a failure


def test_a_restarting_container_can_be_stopped_and_removed(env):
    e = env.engine()
    cid = run(e, ["sh", "-c", "sleep 0.2; exit 1"], "always")
    until(lambda: e.inspect(cid)["RestartCount"] >= 3, timeout=20)
    until(lambda: state(e, cid)["Status"] == "restarting", timeout=20, step=0.01)
    assert "Restarting (1)" in e.list(all=True)[0]["Status"]
    assert e.stop(cid) is True
    assert state(e, cid)["Status"] == "exited"
    n = e.inspect(cid)["RestartCount"]
    time.sleep(1.0)
    assert e.inspect(cid)["RestartCount"] == n and state(e, cid)["Status"] == "exited"
    e.start(cid)
    until(lambda: state(e, cid)["Status"] == "restarting", timeout=20, step=0.01)
    e.remove(cid, force=True)
    assert cid not in [c["Id"] for c in e.list(all=True)]


def test_failing_healthcheck_turns_unhealthy(env):
    e = env.engine()
    cid = e.create({"Image": "busybox", "Cmd": ["sleep", "600"], "Healthcheck": {
        "Test": ["CMD-SHELL", "test -e /ok || { echo missing; exit 1; }"], "Interval": 200 * MS,
        "Retries": 2}})
    e.start(cid)
    assert e.inspect(cid)["State"]["Health"]["Status"] == "starting"
    assert "(health: starting)" in e.list()[0]["Status"]
    h = until(lambda: (s := state(e, cid)["Health"])["Status"] == "unhealthy" and s)
    assert h["FailingStreak"] >= 2 and h["Log"][-1]["ExitCode"] == 1 and h["Log"][-1]["Output"] == "missing\n"
    assert "(unhealthy)" in e.list()[0]["Status"]
    assert [c["Id"] for c in e.list(filters={"health": ["unhealthy"]})] == [cid]
    assert e.list(filters={"health": ["healthy", "none"]}) == []
    with pytest.raises(InvalidArgument, match="health"):
        e.list(filters={"health": ["poorly"]})
    open(os.path.join(e.rootfs_path(cid), "ok"), "w").close()
    until(lambda: state(e, cid)["Health"]["Status"] == "healthy")
    assert state(e, cid)["Health"]["FailingStreak"] == 0
    changes = [m["Action"] for m in e.events.history(filters={"container": [cid],
                                                              "event": ["health_status"]})]
    assert changes == ["health_status: unhealthy", "health_status: healthy"]
    assert e.inspect(cid)["ExecIDs"] is None  # probes are not left behind as exec instances


def test_hung_healthcheck_times_out_without_stalling(env):
    e = env.engine()
    cid = e.create({"Image": "busybox", "Cmd": ["sleep", "600"], "Healthcheck": {
        "Test": ["CMD", "sleep", "100"], "Interval": 100 * MS, "Timeout": 500 * MS, "Retries": 1}})
    e.start(cid)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 0.8:  # the engine answers while the probe hangs
        s = time.monotonic()
        e.inspect(cid)
        assert time.monotonic() - s < 0.5
        time.sleep(0.1)
    h = until(lambda: (s := state(e, cid)["Health"])["Status"] == "unhealthy" and s)
    assert h["Log"][-1]["ExitCode"] == -1
    assert h["Log"][-1]["Output"] == "Health check exceeded timeout (500ms)"
    assert e.top(cid, "-o pid,args")["Processes"] is not None
    procs = [p[-1] for p in e.top(cid, "-o pid,args")["Processes"]]
    assert sum("sleep 100" in p for p in procs) <= 1  # killed probes do not pile up


def test_no_healthcheck_and_bad_config(env):
    e = env.engine()
    cid = run(e, ["sleep", "600"], Healthcheck={"Test": ["NONE"]})
    assert "Health" not in state(e, cid)
    with pytest.raises(InvalidArgument):
        e.create({"Image": "busybox", "Healthcheck": {"Test": ["CMD", "true"], "Interval": 5}})


def test_always_comes_back_after_a_palletd_restart(data_root, tmp_path):
    """Through the daemon: `pallet run --restart=always`, palletd SIGKILLed, the container killed
    while no daemon runs (a host reboot leaves the same picture), a new palletd starts it again."""
    import subprocess
    import sys

    parent = f"/pallet-test-{uuid.uuid4().hex[:8]}"
    root = Path(__import__("tempfile").mkdtemp(prefix="prh", dir="/tmp"))  # a short socket path
    (root / "daemon.json").write_text("{}")
    sock = root / "s.sock"
    env = {**os.environ, "PALLET_HOST": f"unix://{sock}"}
    argv = [sys.executable, "-m", "pallet.daemon.main", "--config", str(root / "daemon.json"), "-H",
            f"unix://{sock}", "--data-root", str(data_root), "--exec-root", str(tmp_path / "exec"),
            "--cgroup-parent", parent]

    def daemon(n: int) -> subprocess.Popen:
        log = root / f"log{n}"
        proc = subprocess.Popen(argv, stdout=log.open("w"), stderr=subprocess.STDOUT)
        until(lambda: "ready" in log.read_text() or proc.poll() is not None)
        assert proc.poll() is None, log.read_text()
        return proc

    def pallet(*args: str) -> str:
        r = subprocess.run([sys.executable, "-m", "pallet.cli.main", *args], capture_output=True, text=True,
                           env=env, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    procs = [daemon(1)]
    try:
        cid = pallet("run", "-d", "--restart=always", "--name", "phoenix", "busybox", "sleep", "600")
        pid = int(pallet("inspect", "-f", "{{.State.Pid}}", cid))
        os.kill(procs[0].pid, signal.SIGKILL)
        procs[0].wait()
        os.kill(pid, signal.SIGKILL)
        until(lambda: not os.path.exists(f"/proc/{pid}"))
        time.sleep(0.3)
        procs.append(daemon(2))
        state_now = pallet("inspect", "-f", "{{.State.Status}} {{.State.Pid}}", "phoenix").split()
        assert state_now[0] == "running" and int(state_now[1]) not in (0, pid)
        pallet("rm", "-f", "phoenix")
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(15)
        e = Engine(str(data_root), str(tmp_path / "exec"), cgroup_parent=parent)
        for c in e.list(all=True):
            with contextlib.suppress(Exception):
                e.remove(c["Id"], force=True)
        e.close()
        rm_cgroups(parent)
        import shutil

        shutil.rmtree(root, ignore_errors=True)
