"""The runtime's lifecycle against the real kernel: create, start, state, kill, delete, run, exec."""

from __future__ import annotations

import json
import os
import select
import sys
import time

from pallet.runtime.state import proc_start_time

RUNTIME = [sys.executable, "-m", "pallet.runtime.cli"]


def wait_status(env, cid, want, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = env.state(cid)
        if st["status"] == want:
            return st
        time.sleep(0.02)
    raise AssertionError(f"{cid} never became {want}: {st}")


def test_run_foreground_prints_and_returns_status(env):
    bundle, _ = env.bundle(["sh", "-c", "echo hello; exit 7"])
    proc = env.run("run", "--bundle", str(bundle), "fg1", check=False)
    assert proc.stdout == "hello\n"
    assert proc.returncode == 7
    assert env.run("list", "-q").stdout == ""


def test_create_start_state_delete(env):
    bundle, _ = env.bundle(["sleep", "1000"])
    env.container("c1", bundle)
    st = env.state("c1")
    assert st["status"] == "created"
    assert st["ociVersion"].startswith("1.")
    assert st["bundle"] == str(bundle)
    pid = st["pid"]
    assert proc_start_time(pid) is not None
    # The init is blocked on the exec fifo, not yet running sleep.
    assert os.readlink(f"/proc/{pid}/exe") != "/bin/busybox"
    env.run("start", "c1")
    st = env.state("c1")
    assert st["status"] == "running"
    assert "c1" in env.run("list").stdout
    listed = json.loads(env.run("list", "--format", "json").stdout)
    assert [c["id"] for c in listed] == ["c1"]
    proc = env.run("delete", "c1", check=False)
    assert proc.returncode == 1 and "not stopped" in proc.stderr
    env.run("kill", "c1", "KILL")
    wait_status(env, "c1", "stopped")
    env.run("delete", "c1")
    proc = env.run("state", "c1", check=False)
    assert proc.returncode == 1 and "does not exist" in proc.stderr
    assert proc_start_time(pid) is None


def test_kill_signals_by_name_and_number(env):
    bundle, _ = env.bundle(["sh", "-c", "trap 'exit 3' TERM; while true; do sleep 0.05; done"])
    env.container("k1", bundle)
    env.run("start", "k1")
    time.sleep(0.2)
    env.run("kill", "k1", "15")
    wait_status(env, "k1", "stopped")
    assert env.run("kill", "k1", "TERM", check=False).returncode == 1


def test_delete_force_running_and_created(env):
    bundle, _ = env.bundle(["sleep", "1000"])
    env.container("d1", bundle)
    env.container("d2", bundle)
    env.run("start", "d1")
    pids = [env.state(c)["pid"] for c in ("d1", "d2")]
    env.run("delete", "--force", "d1")
    env.run("delete", "d2")  # a created container can be deleted without --force, as with runc
    for pid in pids:
        assert proc_start_time(pid) is None
    assert env.run("list", "-q").stdout == ""


def test_duplicate_id_refused(env):
    bundle, _ = env.bundle(["true"])
    env.container("dup", bundle)
    proc = env.run("create", "--bundle", str(bundle), "dup", check=False, timeout=10)
    assert proc.returncode == 1 and "already exists" in proc.stderr


def test_pid_file_and_exec(env):
    bundle, _ = env.bundle(["sleep", "1000"])
    pidfile = env.tmp / "pid"
    env.container("e1", bundle, "--pid-file", str(pidfile))
    assert int(pidfile.read_text()) == env.state("e1")["pid"]
    env.run("start", "e1")
    proc = env.run("exec", "e1", "sh", "-c", "echo $$ $(hostname); ps | wc -l; exit 4", check=False)
    assert proc.returncode == 4
    pid, host, nproc = proc.stdout.split()
    assert host == "pallet"
    assert int(pid) > 1
    assert int(nproc) <= 6  # header, sleep, sh, ps, wc: the container's processes only
    procfile = env.tmp / "process.json"
    procfile.write_text(json.dumps({"args": ["sh", "-c", "id -u; pwd"], "cwd": "/tmp",
                                    "user": {"uid": 65534, "gid": 65534}, "env": ["PATH=/bin"]}))
    proc = env.run("exec", "--process", str(procfile), "e1")
    assert proc.stdout.split() == ["65534", "/tmp"]
    env.detached("exec", "-d", "--pid-file", str(env.tmp / "xpid"), "e1", "sleep", "1000")
    xpid = int((env.tmp / "xpid").read_text())
    assert xpid in json.loads(env.run("ps", "--format", "json", "e1").stdout)


def test_exec_missing_program_fails_cleanly(env):
    bundle, _ = env.bundle(["sleep", "1000"])
    env.container("e2", bundle)
    env.run("start", "e2")
    proc = env.run("exec", "e2", "no-such-program", check=False)
    assert proc.returncode == 1 and "not found" in proc.stderr


def test_pause_resume(env):
    bundle, _ = env.bundle(["sleep", "1000"])
    env.container("p1", bundle)
    env.run("start", "p1")
    env.run("pause", "p1")
    assert env.state("p1")["status"] == "paused"
    env.run("resume", "p1")
    assert env.state("p1")["status"] == "running"


def _drive_pty(cmd, script: bytes, timeout=20.0):
    """Run cmd on a fresh pty, type `script`, return (exit status, everything it printed)."""
    import subprocess

    master, slave = os.openpty()
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    time.sleep(0.5)
    os.write(master, script)
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not select.select([master], [], [], max(0.0, deadline - time.monotonic()))[0]:
            break  # never block past the deadline: a lost keystroke must fail the test, not hang it
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return proc.wait(timeout=timeout), out.decode(errors="replace")


def test_run_and_exec_with_a_terminal(env):
    bundle, spec = env.bundle(["sh"])
    spec["process"]["terminal"] = True
    env.write(bundle, spec)
    env.ids.append("tty")
    rc, out = _drive_pty([*RUNTIME, "--root", str(env.root), "run", "--bundle", str(bundle), "tty"],
                         b"echo in-$(tty)\nexit 5\n")
    assert rc == 5
    assert "in-/dev/pts/0" in out
    bundle2, _ = env.bundle(["sleep", "1000"], name="b2")
    env.container("tty2", bundle2)
    env.run("start", "tty2")
    rc, out = _drive_pty([*RUNTIME, "--root", str(env.root), "exec", "-t", "tty2", "sh"],
                         b"echo ex-$(tty)\nexit 6\n")
    assert rc == 6
    assert "ex-/dev/pts/" in out


def test_kill_all_and_ps_table(env):
    bundle, _ = env.bundle(["sh", "-c", "sleep 1000 & sleep 1000 & wait"])
    env.container("ka", bundle)
    env.run("start", "ka")
    deadline = time.monotonic() + 5
    while len(json.loads(env.run("ps", "--format", "json", "ka").stdout)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    table = env.run("ps", "ka").stdout.splitlines()
    assert "PID" in table[0] and len(table) == 4
    env.run("kill", "--all", "ka", "KILL")
    wait_status(env, "ka", "stopped")
    assert json.loads(env.run("ps", "--format", "json", "ka").stdout) == []


def test_log_file_json_on_error(env):
    log = env.tmp / "log.json"
    proc = env.run("--log", str(log), "--log-format", "json", "state", "nope", check=False)
    # global flags come before the command, as with runc
    assert proc.returncode != 0
    proc = subprocess_run_global(env, ["--log", str(log), "--log-format", "json", "state", "nope"])
    assert proc.returncode == 1
    entry = json.loads(log.read_text().splitlines()[-1])
    assert entry["level"] == "error" and "does not exist" in entry["msg"]


def subprocess_run_global(env, args):
    import subprocess

    return subprocess.run([*RUNTIME, "--root", str(env.root), *args], capture_output=True, text=True)


def test_spec_and_features(env, tmp_path):
    d = tmp_path / "specdir"
    d.mkdir()
    proc = subprocess_run_global(env, ["spec", "--bundle", str(d)])
    assert proc.returncode == 0
    spec = json.loads((d / "config.json").read_text())
    assert spec["process"]["noNewPrivileges"] is True
    assert subprocess_run_global(env, ["spec", "--bundle", str(d)]).returncode == 1  # exists
    feats = json.loads(subprocess_run_global(env, ["features"]).stdout)
    assert "user" in feats["linux"]["namespaces"] and feats["linux"]["seccomp"]["enabled"]
