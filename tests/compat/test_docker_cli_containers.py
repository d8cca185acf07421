"""The real docker CLI and docker-py against palletd's container routes: `docker run --rm` (attach
before start, wait condition=removed), detached run, ps, exec, logs, stop, rm, inspect,
hello-world, exit codes, stdin, name conflicts; docker-py's containers.run/logs/exec_run/stop/remove.

Safety: palletd runs on private roots with --cgroup-parent /pallet-test-<random>; every container
is removed through the API before it stops, and the cgroup parent is removed afterwards."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from compat_support import docker, palletd_for_docker

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (overlay mounts, namespaces, cgroups)"),
    pytest.mark.skipif(not os.access("/bin/busybox", os.X_OK),
                       reason="needs Debian's busybox-static (/bin/busybox) to bootstrap busybox"),
]


@pytest.fixture(scope="module")
def sock() -> Iterator[Path]:
    with palletd_for_docker("pdc", images=("busybox", "hello-world")) as path:
        yield path

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
