"""The real docker CLI's `docker cp` against palletd's archive routes: a file into a running
busybox container and back out, a directory, and a hostile path (`c:/../../etc/passwd`) that
must give the container's /etc/passwd, never the host's.

Safety: palletd runs on private roots with --cgroup-parent /pallet-test-<random>; containers are
removed through the API and the cgroup parent is destroyed afterwards."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from compat_support import docker, palletd_for_docker

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (overlay mounts, namespaces, cgroups)"),
    pytest.mark.skipif(not os.access("/bin/busybox", os.X_OK),
                       reason="needs Debian's busybox-static (/bin/busybox) to bootstrap busybox"),
    pytest.mark.skipif(shutil.which("docker") is None, reason="the docker CLI is not on PATH"),
]


@pytest.fixture(scope="module")
def sock() -> Iterator[Path]:
    with palletd_for_docker("pcp", images=("busybox",)) as path:
        yield path

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
