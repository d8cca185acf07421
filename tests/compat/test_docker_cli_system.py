"""The real docker CLI and docker-py against palletd: ping, version negotiation, version, info."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from compat_support import docker, palletd_for_docker


@pytest.fixture(scope="module")
def sock() -> Iterator[Path]:
    with palletd_for_docker("pds", images=()) as path:
        yield path

def test_docker_version(sock):
    r = docker(sock, "version")
    assert r.returncode == 0, r.stderr
    assert "Server: Pallet Engine" in r.stdout
    assert "API version:      1.50 (minimum version 1.24)" in r.stdout
    r = docker(sock, "version", "--format", "{{.Server.Version}} {{.Server.APIVersion}}")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[1] == "1.50"


def test_docker_info(sock):
    r = docker(sock, "info")
    assert r.returncode == 0, r.stderr
    assert "Server Version: 0." in r.stdout
    assert "Storage Driver: overlayfs" in r.stdout and "Default Runtime: pallet-runtime" in r.stdout
    assert "ERROR" not in r.stderr
    r = docker(sock, "info", "--format", "{{.Containers}} {{.CgroupDriver}}")
    assert (r.returncode, r.stdout) == (0, "0 cgroupfs\n"), r.stderr


def test_docker_with_an_older_api_version(sock):
    env_version = "1.41"
    if shutil.which("docker") is None:
        pytest.skip("the docker CLI is not on PATH")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env.update(DOCKER_HOST=f"unix://{sock}", DOCKER_API_VERSION=env_version,
               DOCKER_CONFIG=str(sock.parent / "docker-config"))
    r = subprocess.run(["docker", "version", "--format", "{{.Client.APIVersion}}"], capture_output=True,
                       text=True, env=env, timeout=60)
    assert (r.returncode, r.stdout.strip()) == (0, env_version), r.stderr


def test_docker_py(sock):
    docker_py = pytest.importorskip("docker", reason="docker-py is not installed (pip install docker)")
    client = docker_py.DockerClient(base_url=f"unix://{sock}", version="auto")
    try:
        assert client.ping() is True
        v = client.version()
        assert v["ApiVersion"] == "1.50" and v["MinAPIVersion"] == "1.24"
        assert client.api.api_version == "1.50"
        info = client.info()
        assert info["OSType"] == "linux" and info["Containers"] == 0
    finally:
        client.close()
