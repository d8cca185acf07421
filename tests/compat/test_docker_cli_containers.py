"""The real docker CLI and docker-py against palletd's container routes: `docker run --rm` (attach
before start, wait condition=removed), detached run, ps, exec, logs, stop, rm, inspect,
hello-world, exit codes, stdin, name conflicts; docker-py's containers.run/logs/exec_run/stop/remove.

Safety: palletd runs on private roots with --cgroup-parent /pallet-test-<random>; every container
is removed through the API before it stops, and the cgroup parent is removed afterwards."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (overlay mounts, namespaces, cgroups)"),
    pytest.mark.skipif(not os.access("/bin/busybox", os.X_OK),
                       reason="needs Debian's busybox-static (/bin/busybox) to bootstrap busybox"),
]


def _rm_cgroups(parent: str) -> None:
    for hier in Path("/sys/fs/cgroup").iterdir():
        d = hier / parent.lstrip("/")
        if d.is_dir():
            for sub in sorted((p for p in d.rglob("*") if p.is_dir()), reverse=True):
                with contextlib.suppress(OSError):
                    sub.rmdir()
            with contextlib.suppress(OSError):
                d.rmdir()


def docker(sock: Path, *args: str, input: bytes | None = None,
           timeout: float = 60) -> subprocess.CompletedProcess[str]:
    if shutil.which("docker") is None:
        pytest.skip("the docker CLI is not on PATH")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env.update(DOCKER_HOST=f"unix://{sock}", DOCKER_CONFIG=str(sock.parent / "docker-config"))
    r = subprocess.run(["docker", *args], input=input, capture_output=True, env=env, timeout=timeout)
    return subprocess.CompletedProcess(r.args, r.returncode, r.stdout.decode(errors="replace"),
                                       r.stderr.decode(errors="replace"))


@pytest.fixture(scope="module")
def sock():
    root = Path(tempfile.mkdtemp(prefix="pdc", dir="/tmp"))
    parent = f"/pallet-test-{uuid.uuid4().hex[:8]}"
    (root / "daemon.json").write_text("{}")
    path = root / "s.sock"
    log = open(root / "log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "pallet.daemon.main",
                             "--config", str(root / "daemon.json"),
                             "-H", f"unix://{path}", "--data-root", str(root / "data"),
                             "--exec-root", str(root / "exec"), "--cgroup-parent", parent],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while "ready" not in (root / "log").read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"palletd did not start:\n{(root / 'log').read_text()}")
            time.sleep(0.05)
        for name in ("busybox", "hello-world"):
            r = subprocess.run(["curl", "-sf", "--unix-socket", str(path), "-X", "POST",
                                f"http://x/pallet/images/bootstrap?name={name}"],
                               capture_output=True, text=True, timeout=120)
            assert r.returncode == 0 and "Bootstrapped" in r.stdout, r.stdout + r.stderr
        yield path
    finally:
        with contextlib.suppress(Exception):
            ids = docker(path, "ps", "-aq").stdout.split()
            if ids:
                docker(path, "rm", "-f", *ids)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()
        _rm_cgroups(parent)
        shutil.rmtree(root, ignore_errors=True)


def test_run_rm_echo(sock: Path):
    r = docker(sock, "run", "--rm", "busybox", "echo", "hi")
    assert (r.returncode, r.stdout, r.stderr) == (0, "hi\n", "")
    assert docker(sock, "ps", "-aq").stdout == ""


def test_run_exit_code_and_streams(sock: Path):
    r = docker(sock, "run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (r.returncode, r.stdout, r.stderr) == (3, "out\n", "err\n")


def test_run_stdin(sock: Path):
    r = docker(sock, "run", "-i", "--rm", "busybox", "cat", input=b"piped\n")
    assert (r.returncode, r.stdout) == (0, "piped\n")


def test_run_hello_world(sock: Path):
    r = docker(sock, "run", "--rm", "hello-world")
    assert r.returncode == 0 and "Hello from Pallet!" in r.stdout


def test_detached_ps_exec_logs_inspect_stop_rm(sock: Path):
    r = docker(sock, "run", "-d", "--name", "web", "busybox", "sh", "-c", "echo started; exec sleep 1000")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.strip()
    ps = docker(sock, "ps")
    assert "web" in ps.stdout and cid[:12] in ps.stdout and "Up " in ps.stdout
    ex = docker(sock, "exec", "web", "echo", "hi")
    assert (ex.returncode, ex.stdout) == (0, "hi\n")
    assert docker(sock, "exec", "web", "sh", "-c", "exit 5").returncode == 5
    deadline = time.monotonic() + 10
    while (logs := docker(sock, "logs", "web")).stdout != "started\n" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert logs.stdout == "started\n"
    info = json.loads(docker(sock, "inspect", "web").stdout)[0]
    assert info["Id"] == cid and info["State"]["Running"] is True and info["Name"] == "/web"
    fmt = docker(sock, "inspect", "-f", "{{.State.Status}} {{.Config.Image}}", "web")
    assert fmt.stdout == "running busybox\n"
    dup = docker(sock, "run", "-d", "--name", "web", "busybox", "true")
    assert dup.returncode != 0 and 'The container name "/web" is already in use' in dup.stderr
    stop = docker(sock, "stop", "-t", "1", "web")
    assert (stop.returncode, stop.stdout) == (0, "web\n")
    assert "Exited (137)" in docker(sock, "ps", "-a").stdout
    assert docker(sock, "rm", "web").returncode == 0
    missing = docker(sock, "inspect", "web")
    assert missing.returncode != 0


def test_docker_py(sock: Path):
    docker_mod = pytest.importorskip("docker")
    client = docker_mod.DockerClient(base_url=f"unix://{sock}")
    try:
        assert client.containers.run("busybox", "echo hi", remove=True) == b"hi\n"
        c = client.containers.run("busybox", ["sh", "-c", "echo hello; exec sleep 1000"], detach=True)
        try:
            deadline = time.monotonic() + 10
            while c.logs() != b"hello\n" and time.monotonic() < deadline:
                time.sleep(0.1)
            assert c.logs() == b"hello\n"
            res = c.exec_run("echo inexec")
            assert (res.exit_code, res.output) == (0, b"inexec\n")
            assert c.exec_run(["sh", "-c", "exit 4"]).exit_code == 4
            c.reload()
            assert c.status == "running"
            c.stop(timeout=1)
            c.reload()
            assert c.status == "exited"
        finally:
            c.remove(force=True)
        assert client.containers.list(all=True) == []
    finally:
        client.close()
