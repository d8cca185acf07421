"""The container engine for real: busybox through the image store, monitor and runtime (root).

Safety: every test's containers live in a private exec root, under the cgroup parent
/pallet-test-<random>; teardown force-removes every container the test's Engine knows (by its
recorded pids, through the runtime), then removes the parent cgroups.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from pallet.engine.containers import Engine
from pallet.engine.logs import parse_line
from pallet.engine.state import Status
from pallet.errors import Conflict, InvalidArgument, NotFound, NotSupported
from pallet.image.service import ImageService
from pallet_testlib import rm_cgroups

if os.geteuid() != 0:
    pytest.skip("needs root (overlay mounts, namespaces, cgroups)", allow_module_level=True)
if not os.path.exists("/bin/busybox"):
    pytest.skip("needs Debian's busybox-static (/bin/busybox)", allow_module_level=True)

SRC = str(Path(__file__).resolve().parents[3] / "src")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("engine-data")
    with ImageService(str(root)) as svc:
        svc.bootstrap("busybox")
    return root


class Env:
    def __init__(self, data_root: Path, tmp: Path) -> None:
        self.data_root, self.exec_root = str(data_root), str(tmp / "run")
        self.parent = f"/pallet-test-{uuid.uuid4().hex[:8]}"
        self.engines: list[Engine] = []

    def engine(self, **kw) -> Engine:
        e = Engine(self.data_root, self.exec_root, cgroup_parent=self.parent, **kw)
        self.engines.append(e)
        return e

    def cleanup(self) -> None:
        e = Engine(self.data_root, self.exec_root, cgroup_parent=self.parent)
        for c in e.list(all=True):
            with contextlib.suppress(Exception):
                e.remove(c["Id"], force=True)
        e.close()
        for old in self.engines:
            with contextlib.suppress(Exception):
                old.close()
        rm_cgroups(self.parent)


@pytest.fixture
def env(data_root, tmp_path):
    e = Env(data_root, tmp_path)
    yield e
    e.cleanup()


@pytest.fixture(params=["conmon", "pallet"])
def engine(env, request):
    """Every test runs with both monitors: conmon (the default) and the Python one."""
    return env.engine(monitor=request.param)


def run(engine: Engine, cmd: list[str], **cfg) -> str:
    cid = engine.create({"Image": "busybox", "Cmd": cmd, **cfg})
    engine.start(cid)
    return cid


def log_text(engine: Engine, cid: str, **kw) -> str:
    return b"".join(data for _s, data in engine.logs(cid, **kw)).decode()


def until(pred, timeout: float = 10.0, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("condition not met in time")


def mounts_under(path: str) -> list[str]:
    return [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if line.split()[4].startswith(path)]


# --- the core ----------------------------------------------------------------------------------

def test_create_start_wait_logs_inspect_remove(engine, env):
    cid = engine.create({"Image": "busybox", "Cmd": ["sh", "-c", "echo out; echo err >&2; exit 3"],
                         "Labels": {"a": "b"}}, name="core")
    assert len(cid) == 64
    info = engine.inspect("core")
    assert info["State"]["Status"] == "created" and info["Name"] == "/core"
    assert info["Path"] == "sh" and info["Args"] == ["-c", "echo out; echo err >&2; exit 3"]
    assert engine.wait(cid, "not-running", timeout=1) == 0  # Docker: a created container is not running
    assert engine.start(cid) is True
    assert engine.wait(cid, timeout=20) == 3
    info = engine.inspect(cid)
    assert info["State"]["Status"] == "exited" and info["State"]["ExitCode"] == 3
    assert info["State"]["FinishedAt"] >= info["State"]["StartedAt"]
    assert log_text(engine, cid, stderr=False) == "out\n"
    assert log_text(engine, cid, stdout=False) == "err\n"
    lines = Path(info["LogPath"]).read_text().splitlines()
    assert {parse_line(x.encode())[0] for x in lines} == {"stdout", "stderr"}  # type: ignore[index]
    assert [c["Id"] for c in engine.list()] == []
    assert [c["Names"] for c in engine.list(all=True, filters={"label": ["a=b"]})] == [["/core"]]
    assert engine.list(all=True, filters={"exited": ["3"]})[0]["Status"].startswith("Exited (3)")
    engine.remove(cid)
    with pytest.raises(NotFound):
        engine.inspect(cid)
    assert not os.path.exists(os.path.join(env.data_root, "containers", cid))
    assert mounts_under(os.path.join(env.data_root, "containers")) == []


def test_stop_uses_signal_then_kill(engine):
    cid = run(engine, ["sh", "-c", "trap 'exit 7' TERM; while true; do sleep 0.1; done"])
    until(lambda: engine.inspect(cid)["State"]["Running"])
    time.sleep(0.3)  # let the trap be installed
    assert engine.stop(cid, timeout=5) is True
    assert engine.inspect(cid)["State"]["ExitCode"] == 7
    assert engine.stop(cid) is False  # not modified
    # A process that ignores the stop signal is killed after the timeout.
    cid2 = run(engine, ["sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"])
    time.sleep(0.3)
    t = time.monotonic()
    engine.stop(cid2, timeout=1)
    assert 0.9 < time.monotonic() - t < 10
    assert engine.inspect(cid2)["State"]["ExitCode"] == 137


def test_kill_restart_and_remove_running(engine):
    cid = run(engine, ["sleep", "1000"])
    with pytest.raises(Conflict):
        engine.remove(cid)
    engine.kill(cid, "SIGKILL")
    assert engine.inspect(cid)["State"]["ExitCode"] == 137
    with pytest.raises(Conflict):
        engine.kill(cid)
    engine.restart(cid, timeout=1)
    info = engine.inspect(cid)
    assert info["State"]["Running"] and info["RestartCount"] == 1
    engine.remove(cid, force=True)
    with pytest.raises(NotFound):
        engine.get(cid)


def test_logs_follow_tail_timestamps(engine):
    cid = run(engine, ["sh", "-c", "for i in 1 2 3 4 5; do echo line$i; sleep 0.2; done"])
    got = [d.decode() for _s, d in engine.logs(cid, follow=True)]
    assert got == [f"line{i}\n" for i in range(1, 6)]
    assert log_text(engine, cid, tail=2) == "line4\nline5\n"
    stamped = log_text(engine, cid, timestamps=True, tail=1)
    assert stamped.endswith("Z line5\n") and stamped[:4].isdigit()
    assert log_text(engine, cid, since=time.time() + 60) == ""


def test_tty_and_stdin_through_attach(engine):
    cid = run(engine, ["sh", "-c", "tty; read x; echo got:$x"], Tty=True, OpenStdin=True)
    s = engine.attach(cid)
    s.sendall(b"hello\n")
    assert engine.wait(cid, timeout=20) == 0
    s.close()
    text = log_text(engine, cid)
    assert "/dev/pts/0" in text and "got:hello" in text
    # Without a Tty: stdin pipe, output framed on the attach socket.
    cid = run(engine, ["sh", "-c", "read x; echo got:$x; echo e >&2"], OpenStdin=True, StdinOnce=True)
    s = engine.attach(cid)
    s.sendall(b"pipe\n")
    s.shutdown(socket.SHUT_WR)
    data = b""
    s.settimeout(10)
    while chunk := s.recv(4096):
        data += chunk
    s.close()
    assert engine.wait(cid, timeout=20) == 0
    assert data.startswith(bytes([1, 0, 0, 0]) + (9).to_bytes(4, "big") + b"got:pipe\n")
    assert bytes([2, 0, 0, 0]) + (2).to_bytes(4, "big") + b"e\n" in data


def _read_all(s: socket.socket) -> bytes:
    data = b""
    s.settimeout(20)
    while chunk := s.recv(4096):
        data += chunk
    s.close()
    return data


def test_attach_before_start_sees_everything_and_ends_with_the_run(engine):
    if not engine.attach_before_start:
        with pytest.raises(Conflict):  # the Python monitor: the API follows the log instead
            engine.attach(engine.create({"Image": "busybox", "Cmd": ["true"]}), before_start=True)
        return
    # A command that is over at once: its output is not lost, and the stream ends at its exit.
    cid = engine.create({"Image": "busybox", "Cmd": ["sh", "-c", "echo first; echo err >&2; exit 4"]})
    s = engine.attach(cid, before_start=True)
    engine.start(cid)
    data = _read_all(s)
    assert engine.wait(cid, timeout=20) == 4
    assert bytes([1, 0, 0, 0]) + (6).to_bytes(4, "big") + b"first\n" in data
    assert bytes([2, 0, 0, 0]) + (4).to_bytes(4, "big") + b"err\n" in data
    # stdin through an attach made before the start, with a Tty (raw output); a second start
    # needs a new attach (the first one ended with the first run).
    cid = engine.create({"Image": "busybox", "Cmd": ["sh", "-c", "read x; echo got:$x"], "Tty": True,
                         "OpenStdin": True, "StdinOnce": True})
    s = engine.attach(cid, before_start=True)
    s.sendall(b"early\n")  # typed ahead: it waits in the socket until the start connects it
    engine.start(cid)
    assert b"got:early" in _read_all(s)
    assert engine.wait(cid, timeout=20) == 0
    # Removing a container drops an attach that waits for its start.
    cid = engine.create({"Image": "busybox", "Cmd": ["true"]})
    s = engine.attach(cid, before_start=True)
    engine.remove(cid)
    assert _read_all(s) == b""


def test_resize_a_running_tty_container(engine):
    # The shell waits for a line on stdin, then prints the size its terminal has by then.
    cid = run(engine, ["sh", "-c", "read x; stty size"], Tty=True, OpenStdin=True)
    engine.resize(cid, 33, 101)
    s = engine.attach(cid)
    s.sendall(b"go\n")
    assert engine.wait(cid, timeout=20) == 0
    s.close()
    assert "33 101" in log_text(engine, cid)
    with pytest.raises(Conflict):
        engine.resize(cid, 10, 10)  # not running any more


def test_pause_unpause_update_top_stats_exec(engine):
    cid = run(engine, ["sleep", "1000"], HostConfig={"Memory": 64 * 1024 * 1024})
    until(lambda: engine.inspect(cid)["State"]["Running"])
    engine.pause(cid)
    assert engine.inspect(cid)["State"]["Status"] == "paused"
    with pytest.raises(Conflict):
        engine.pause(cid)
    with pytest.raises(Conflict):
        engine.exec_create(cid, {"Cmd": ["true"]})
    engine.unpause(cid)
    assert engine.inspect(cid)["State"]["Status"] == "running"
    engine.update(cid, {"Memory": 32 * 1024 * 1024})
    limit = Path(f"/sys/fs/cgroup/memory{engine.cgroup_parent}/{cid}/memory.limit_in_bytes")
    if limit.exists():
        assert int(limit.read_text()) == 32 * 1024 * 1024
    assert engine.inspect(cid)["HostConfig"]["Memory"] == 32 * 1024 * 1024
    top = engine.top(cid)
    assert "PID" in top["Titles"] and any("sleep" in " ".join(p) for p in top["Processes"])
    stats = engine.stats(cid)
    assert stats["data"]["memory"]["usage"]["limit"] == 32 * 1024 * 1024
    eid = engine.exec_create(cid, {"Cmd": ["sh", "-c", "echo in-exec; echo oops >&2; exit 5"],
                                   "AttachStdout": True, "AttachStderr": True})
    session = engine.exec_start(eid)
    assert session is not None
    out, err = session.stdout.read(), session.stderr.read()
    assert session.wait(10) == 5 and out == b"in-exec\n" and err == b"oops\n"
    session.close()
    info = engine.exec_inspect(eid)
    assert info["ExitCode"] == 5 and info["Running"] is False
    eid = engine.exec_create(cid, {"Cmd": ["sh", "-c", "exit 4"]})
    assert engine.exec_start(eid, detach=True) is None
    until(lambda: engine.exec_inspect(eid)["ExitCode"] == 4)
    eid = engine.exec_create(cid, {"Cmd": ["tty"], "Tty": True})
    session = engine.exec_start(eid)
    data = b""
    with contextlib.suppress(OSError):
        while chunk := os.read(session.pty, 1024):
            data += chunk
    assert session.wait(10) == 0 and b"/dev/pts/" in data
    session.close()
    engine.stop(cid, timeout=1)


def test_live_restore_after_the_owner_is_killed(env, tmp_path):
    """A daemon-like process owns the Engine; kill -9 it; a new Engine finds the container running,
    its log still growing; stop it and see the exit code."""
    script = tmp_path / "owner.py"
    script.write_text(
        "import sys, time\n"
        f"sys.path.insert(0, {SRC!r})\n"
        "from pallet.engine.containers import Engine\n"
        f"e = Engine({env.data_root!r}, {env.exec_root!r}, cgroup_parent={env.parent!r})\n"
        "cid = e.create({'Image': 'busybox', 'Cmd': ['sh', '-c', "
        "'trap \"exit 9\" TERM; i=0; while true; do i=$((i+1)); echo tick$i; sleep 0.2; done']},"
        " name='live')\n"
        "e.start(cid)\n"
        "print(cid, flush=True)\n"
        "time.sleep(1000)\n")
    owner = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        cid = owner.stdout.readline().strip()
        assert len(cid) == 64
    finally:
        owner.kill()
        owner.wait()
    engine = env.engine()
    info = engine.inspect("live")
    assert info["State"]["Status"] == "running"
    assert os.path.exists(f"/proc/{info['State']['Pid']}")
    before = len(Path(info["LogPath"]).read_text().splitlines())
    until(lambda: len(Path(info["LogPath"]).read_text().splitlines()) > before + 2, timeout=10)
    # The reloaded engine sees the next exit through the monitor it did not start.
    engine.stop("live", timeout=5)
    info = engine.inspect("live")
    assert info["State"]["Status"] == "exited" and info["State"]["ExitCode"] == 9
    ticks = [d for _s, d in engine.logs("live")]
    assert ticks[:3] == [b"tick1\n", b"tick2\n", b"tick3\n"]


def test_exit_while_no_engine_runs_is_recorded(env):
    engine = env.engine()
    cid = run(engine, ["sh", "-c", "sleep 0.5; echo bye; exit 4"])
    engine.close()
    time.sleep(1.5)
    engine = env.engine()
    info = engine.inspect(cid)
    assert info["State"]["Status"] == "exited" and info["State"]["ExitCode"] == 4
    assert log_text(engine, cid) == "bye\n"


def test_auto_remove(engine):
    cid = run(engine, ["true"], HostConfig={"AutoRemove": True})
    engine.wait(cid, "removed", timeout=20)
    with pytest.raises(NotFound):
        engine.get(cid)


def test_runc_as_the_runtime(engine):
    if shutil.which("runc") is None:
        pytest.skip("runc is not installed")
    cid = engine.create({"Image": "busybox", "Cmd": ["sh", "-c", "echo via-runc; sleep 1000"],
                         "HostConfig": {"Runtime": "runc"}})
    engine.start(cid)
    until(lambda: "via-runc" in log_text(engine, cid))
    eid = engine.exec_create(cid, {"Cmd": ["echo", "exec-runc"], "AttachStdout": True})
    session = engine.exec_start(eid)
    assert session.stdout.read() == b"exec-runc\n" and session.wait(10) == 0
    session.close()
    engine.pause(cid)
    engine.unpause(cid)
    engine.stop(cid, timeout=1)
    assert engine.inspect(cid)["State"]["ExitCode"] == 137  # sh ignores SIGTERM as pid 1
    assert engine.inspect(cid)["HostConfig"]["Runtime"] == "runc"


def test_crun_is_refused_on_a_hybrid_host(engine):
    from pallet.engine.runtimes import hybrid_cgroups

    if shutil.which("crun") is None or not hybrid_cgroups():
        pytest.skip("crun is refused only on a cgroup v1 hybrid host with crun installed")
    with pytest.raises(NotSupported, match="hybrid"):
        engine.create({"Image": "busybox", "Cmd": ["true"], "HostConfig": {"Runtime": "crun"}})


def test_bad_input_leaves_nothing_behind(engine, env):
    before = sorted(os.listdir(os.path.join(env.data_root, "containers")))
    with pytest.raises(NotFound):
        engine.create({"Image": "no-such-image", "Cmd": ["true"]})
    with pytest.raises(InvalidArgument):
        engine.create({"Image": "busybox", "Cmd": ["true"]}, name="-bad name")
    with pytest.raises(InvalidArgument):
        engine.create({"Image": "busybox", "Cmd": ["true"], "HostConfig": {"Binds": ["relative/x:/x"]}})
    with pytest.raises(NotFound):  # no container "x" to share a network namespace with
        engine.create({"Image": "busybox", "Cmd": ["true"], "HostConfig": {"NetworkMode": "container:x"}})
    cid = engine.create({"Image": "busybox", "Cmd": ["/no/such/program"]}, name="nostart")
    with pytest.raises(Exception, match=r"no/such/program|no such file|not found"):
        engine.start(cid)
    assert engine.inspect(cid)["State"]["Error"]
    assert engine.inspect(cid)["State"]["Status"] == "created"
    assert mounts_under(os.path.join(env.data_root, "containers", cid)) == []
    engine.remove(cid)
    with pytest.raises(Conflict):
        engine.create({"Image": "busybox", "Cmd": ["true"]}, name="dup") and \
            engine.create({"Image": "busybox", "Cmd": ["true"]}, name="dup")
    engine.remove("dup")
    assert sorted(os.listdir(os.path.join(env.data_root, "containers"))) == before


def test_binds_env_user_hostname_readonly_init(engine, tmp_path):
    host = tmp_path / "shared"
    host.mkdir()
    (host / "f").write_text("from-host")
    cid = run(engine, ["sh", "-c", "cat /data/f; id -u; echo $FOO; hostname; pwd; touch /x 2>/dev/null"
                                   " || echo ro-root; echo w > /data/w; ps -o comm | head -3"],
              Env=["FOO=bar"], User="1000:1000", Hostname="box", WorkingDir="/tmp",
              HostConfig={"Binds": [f"{host}:/data"], "ReadonlyRootfs": True, "Init": True,
                          "Tmpfs": {"/tmp": ""}})
    engine.wait(cid, timeout=20)
    text = log_text(engine, cid)
    assert text.startswith("from-host1000\nbar\nbox\n/tmp\nro-root\n"), text
    assert "docker-init" in text or "catatonit" in text
    engine.remove(cid)
    # The bind was writable but owned by root: uid 1000 could not write; the container is gone either way.
    assert (host / "f").read_text() == "from-host"


def test_rename_and_name_rules(engine):
    cid = engine.create({"Image": "busybox", "Cmd": ["true"]})
    name = engine.inspect(cid)["Name"].lstrip("/")
    assert "_" in name
    engine.rename(cid, "renamed")
    assert engine.inspect("renamed")["Id"] == cid
    with pytest.raises(NotFound):
        engine.get(name)
    with pytest.raises(InvalidArgument):
        engine.rename(cid, "a")
    assert engine.inspect(cid)["State"]["Status"] == Status.CREATED.value


def test_commit_and_export(engine, tmp_path):
    cid = run(engine, ["sh", "-c", "echo data > /made; sleep 1000"])
    until(lambda: engine.inspect(cid)["State"]["Running"])
    time.sleep(0.3)
    image_id = engine.commit(cid, "committed:1", message="m")
    assert image_id.startswith("sha256:")
    assert engine.inspect(cid)["State"]["Status"] == "running"
    with open(tmp_path / "out.tar", "wb") as f:
        engine.export(cid, f)
    import tarfile

    with tarfile.open(tmp_path / "out.tar") as tar:
        assert tar.extractfile("made").read() == b"data\n"
    engine.remove(cid, force=True)
    cid2 = run(engine, ["cat", "/made"], Image="committed:1")
    assert engine.wait(cid2, timeout=20) == 0 and log_text(engine, cid2) == "data\n"
    engine.remove(cid2)
    engine.images.remove("committed:1")


def test_log_rotation_bounds_the_file(engine):
    cid = run(engine, ["sh", "-c", "i=0; while [ $i -lt 3000 ]; do echo line-$i-xxxxxxxxxxxxxxxxxxxxxxxx; "
                                   "i=$((i+1)); done"],
              HostConfig={"LogConfig": {"Type": "json-file", "Config": {"max-size": "20k", "max-file": "2"}}})
    engine.wait(cid, timeout=30)
    path = engine.inspect(cid)["LogPath"]
    if engine.monitor == "conmon":
        # conmon keeps one file and starts it again past --log-size-max (max-size x max-file).
        assert os.path.getsize(path) <= 2 * 20 * 1024 and not os.path.exists(path + ".1")
    else:
        assert os.path.getsize(path) <= 20 * 1024 and os.path.getsize(path + ".1") <= 20 * 1024
        assert not os.path.exists(path + ".2")
    lines = log_text(engine, cid).splitlines()
    assert lines[-1] == "line-2999-xxxxxxxxxxxxxxxxxxxxxxxx"
    assert [int(x.split("-")[1]) for x in lines] == list(range(int(lines[0].split("-")[1]), 3000))


# --- prune, stop/restart with a signal, cancelled follow ---------------------------------------

def test_prune_removes_what_is_not_running_with_filters(engine):
    running = run(engine, ["sleep", "1000"])
    created = engine.create({"Image": "busybox", "Cmd": ["true"], "Labels": {"keep": "1"}})
    exited = run(engine, ["true"], Labels={"team": "a"})
    engine.wait(exited, timeout=20)
    other = run(engine, ["true"], Labels={"team": "b"})
    engine.wait(other, timeout=20)
    with pytest.raises(InvalidArgument):
        engine.prune({"status": ["exited"]})
    assert engine.prune({"until": ["2000-01-01T00:00:00Z"]}) == []  # all are newer
    assert engine.prune({"label": ["team=a"]}) == [exited]
    assert engine.prune({"label!": ["keep"]}) == [other]
    assert engine.prune() == [created]
    assert [c["Id"] for c in engine.list(all=True)] == [running]
    assert engine.inspect(running)["State"]["Running"]


def test_stop_and_restart_with_a_signal(engine):
    # SIGTERM is trapped and ignored; SIGUSR1 ends it with 9: the signal given wins over StopSignal.
    script = "trap '' TERM; trap 'exit 9' USR1; while true; do sleep 0.1; done"
    cid = run(engine, ["sh", "-c", script])
    until(lambda: engine.inspect(cid)["State"]["Running"])
    time.sleep(0.3)
    with pytest.raises(InvalidArgument):
        engine.stop(cid, timeout=1, signal="SIGNOPE")
    assert engine.inspect(cid)["State"]["Running"]  # a bad signal sent nothing
    t = time.monotonic()
    assert engine.stop(cid, timeout=10, signal="SIGUSR1") is True
    assert time.monotonic() - t < 5
    assert engine.inspect(cid)["State"]["ExitCode"] == 9
    engine.start(cid)
    time.sleep(0.3)
    engine.restart(cid, timeout=10, signal="USR1")
    info = engine.inspect(cid)
    assert info["State"]["Running"] and info["RestartCount"] == 1
    engine.remove(cid, force=True)


def test_followed_logs_end_when_cancelled(engine):
    import threading

    cid = run(engine, ["sh", "-c", "echo first; sleep 1000"])
    cancel = threading.Event()
    it = engine.logs(cid, follow=True, cancel=cancel)
    assert next(it) == ("stdout", b"first\n")
    done = threading.Event()

    def drain() -> None:
        for _rec in it:
            pass
        done.set()

    threading.Thread(target=drain, daemon=True).start()
    assert not done.wait(0.5)  # still following a quiet, running container
    cancel.set()
    assert done.wait(2)
    assert engine.inspect(cid)["State"]["Running"]
    engine.remove(cid, force=True)
