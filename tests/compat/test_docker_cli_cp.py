"""The real docker CLI's `docker cp` against palletd's archive routes: a file into a running
busybox container and back out, a directory, and a hostile path (`c:/../../etc/passwd`) that
must give the container's /etc/passwd, never the host's.

Safety: palletd runs on private roots with --cgroup-parent /pallet-test-<random>; containers are
removed through the API and the cgroup parent is destroyed afterwards."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (overlay mounts, namespaces, cgroups)"),
    pytest.mark.skipif(not os.access("/bin/busybox", os.X_OK),
                       reason="needs Debian's busybox-static (/bin/busybox) to bootstrap busybox"),
    pytest.mark.skipif(shutil.which("docker") is None, reason="the docker CLI is not on PATH"),
]


def docker(sock: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env.update(DOCKER_HOST=f"unix://{sock}", DOCKER_CONFIG=str(sock.parent / "docker-config"))
    return subprocess.run(["docker", *args], capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def sock() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="pcp", dir="/tmp"))
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
        r = subprocess.run(["curl", "-sf", "--unix-socket", str(path), "-X", "POST",
                            "http://x/pallet/images/bootstrap?name=busybox"],
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
        from pallet.cgroups import create_cgroup_manager

        create_cgroup_manager(parent).destroy()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def container(sock: Path) -> Iterator[str]:
    r = docker(sock, "run", "-d", "busybox", "sleep", "1000")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.strip()
    yield cid
    docker(sock, "rm", "-f", cid)


def test_docker_cp_file_both_ways(sock: Path, container: str, tmp_path: Path):
    src = tmp_path / "in.txt"
    src.write_text("from the host\n")
    r = docker(sock, "cp", str(src), f"{container}:/tmp/in.txt")
    assert r.returncode == 0, r.stderr
    assert docker(sock, "exec", container, "cat", "/tmp/in.txt").stdout == "from the host\n"
    out = tmp_path / "out.txt"
    r = docker(sock, "cp", f"{container}:/tmp/in.txt", str(out))
    assert r.returncode == 0, r.stderr
    assert out.read_text() == "from the host\n"


def test_docker_cp_directory(sock: Path, container: str, tmp_path: Path):
    d = tmp_path / "tree"
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "f").write_text("deep")
    r = docker(sock, "cp", str(d), f"{container}:/tmp/")
    assert r.returncode == 0, r.stderr
    assert docker(sock, "exec", container, "cat", "/tmp/tree/sub/f").stdout == "deep"
    r = docker(sock, "cp", f"{container}:/tmp/tree", str(tmp_path / "back"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "back" / "sub" / "f").read_text() == "deep"


def test_docker_cp_hostile_path_stays_inside(sock: Path, container: str, tmp_path: Path):
    assert docker(sock, "exec", container, "sh", "-c", "echo marker:x:0:0::/:/bin/sh > /etc/passwd"
                  ).returncode == 0
    out = tmp_path / "passwd"
    r = docker(sock, "cp", f"{container}:/../../etc/passwd", str(out))
    assert r.returncode == 0, r.stderr
    assert out.read_text() == "marker:x:0:0::/:/bin/sh\n"
    host = Path("/etc/passwd").read_text()
    r = docker(sock, "cp", str(tmp_path / "passwd"), f"{container}:/../../../etc/")
    assert r.returncode == 0, r.stderr
    assert Path("/etc/passwd").read_text() == host
    r = docker(sock, "cp", f"{container}:/no/such/file", str(tmp_path / "x"))
    assert r.returncode != 0, r.stderr
    assert "No such container:path" in r.stderr or "Could not find" in r.stderr, r.stderr
