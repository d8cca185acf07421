"""The real docker CLI and docker-py against palletd's /volumes routes: `docker volume create/ls/
inspect/rm`, a volume written by one `docker run -v v1:/data` and read by the next, the in-use
conflict; docker-py's volumes.create/list/get/remove. Same safety as test_docker_cli_containers
(its `sock` fixture: private roots, --cgroup-parent /pallet-test-<random>, cleaned afterwards)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_docker_cli_containers import docker, pytestmark  # noqa: F401 - the marks apply here too
from test_docker_cli_containers import sock as _sock

sock = _sock  # the module-scoped palletd fixture, one daemon for this module


def test_docker_volume_cli(sock: Path):
    assert docker(sock, "volume", "create", "v1").stdout == "v1\n"
    ls = docker(sock, "volume", "ls")
    assert ls.returncode == 0 and ls.stdout.splitlines() == ["DRIVER    VOLUME NAME", "local     v1"]
    info = json.loads(docker(sock, "volume", "inspect", "v1").stdout)[0]
    assert info["Name"] == "v1" and info["Driver"] == "local" and info["Mountpoint"].endswith("/v1/_data")
    r = docker(sock, "run", "--rm", "-v", "v1:/data", "busybox", "sh", "-c", "echo x > /data/f")
    assert r.returncode == 0, r.stderr
    r = docker(sock, "run", "--rm", "-v", "v1:/data", "busybox", "cat", "/data/f")
    assert (r.returncode, r.stdout) == (0, "x\n"), r.stderr
    r = docker(sock, "run", "-d", "--name", "user", "-v", "v1:/data", "busybox", "sleep", "1000")
    assert r.returncode == 0, r.stderr
    mounts = json.loads(docker(sock, "inspect", "user").stdout)[0]["Mounts"]
    assert [(m["Type"], m["Name"], m["Destination"], m["Source"]) for m in mounts] == \
        [("volume", "v1", "/data", info["Mountpoint"])]
    r = docker(sock, "volume", "rm", "v1")
    assert r.returncode != 0 and "volume is in use" in r.stderr
    assert docker(sock, "rm", "-f", "user").returncode == 0
    r = docker(sock, "volume", "rm", "v1")
    assert (r.returncode, r.stdout) == (0, "v1\n"), r.stderr
    r = docker(sock, "volume", "inspect", "v1")
    assert r.returncode != 0 and "no such volume" in r.stderr


def test_docker_volume_prune(sock: Path):
    docker(sock, "volume", "create", "keepme")
    r = docker(sock, "run", "--name", "anon", "-v", "/scratch", "busybox", "true")
    assert r.returncode == 0, r.stderr
    anon = json.loads(docker(sock, "inspect", "anon").stdout)[0]["Mounts"][0]["Name"]
    docker(sock, "rm", "anon")
    r = docker(sock, "volume", "prune", "-f")
    assert r.returncode == 0 and anon in r.stdout and "keepme" not in r.stdout, r.stderr
    assert docker(sock, "volume", "rm", "keepme").returncode == 0


def test_docker_py_volumes(sock: Path):
    docker_mod = pytest.importorskip("docker")
    client = docker_mod.DockerClient(base_url=f"unix://{sock}")
    try:
        v = client.volumes.create("pyvol", labels={"by": "docker-py"})
        assert v.name == "pyvol" and v.attrs["Labels"] == {"by": "docker-py"}
        assert [x.name for x in client.volumes.list(filters={"label": "by=docker-py"})] == ["pyvol"]
        assert client.volumes.get("pyvol").attrs["Mountpoint"] == v.attrs["Mountpoint"]
        out = client.containers.run("busybox", ["sh", "-c", "echo py > /v/f; cat /v/f"], remove=True,
                                    volumes={"pyvol": {"bind": "/v", "mode": "rw"}})
        assert out == b"py\n"
        v.remove()
        with pytest.raises(docker_mod.errors.NotFound):
            client.volumes.get("pyvol")
    finally:
        client.close()
