"""Named and anonymous volumes through a real palletd (root): the /volumes routes, `pallet volume`,
a volume shared by two containers, inspect's Mounts, `rm -v` and the in-use conflict."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Iterator

import pytest
from palletd_support import PALLET, palletd

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (palletd runs containers)")

CGROUP_PARENT = f"/pallet-test-{secrets.token_hex(4)}"


@pytest.fixture(scope="module")
def daemon() -> Iterator[str]:
    try:
        with palletd("--cgroup-parent", CGROUP_PARENT) as d:
            r = pallet(d.host, "image", "bootstrap", "busybox")
            assert r.returncode == 0, r.stderr + d.log()
            yield d.host
    finally:
        from pallet.cgroups import create_cgroup_manager

        create_cgroup_manager(CGROUP_PARENT).destroy()


def pallet(host: str, *args: str, input: str | None = None,
           timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PALLET, "-H", host, *args], capture_output=True, text=True, input=input,
                          timeout=timeout)


def api(host: str, method: str, path: str, body: object = None, **params: str) -> tuple[object, object]:
    """(status, decoded body), or (the error kind's name, its message)."""
    from pallet.api.client import Client
    from pallet.errors import PalletError

    try:
        resp = Client(host).request(method, path, body=body, params=params or None)
    except PalletError as exc:
        return type(exc).__name__, str(exc)
    data = resp.read()
    return resp.status, json.loads(data) if data else None


def test_routes(daemon):
    status, v = api(daemon, "POST", "/volumes/create", {"Name": "rv1", "Labels": {"k": "v"}})
    assert status == 201 and v["Name"] == "rv1" and v["Driver"] == "local" and v["Scope"] == "local"
    assert v["Mountpoint"].endswith("/volumes/rv1/_data") and v["Labels"] == {"k": "v"}
    assert api(daemon, "GET", "/volumes/rv1") == (200, v)
    status, body = api(daemon, "GET", "/volumes", filters='{"label":["k=v"]}')
    assert status == 200 and [x["Name"] for x in body["Volumes"]] == ["rv1"] and body["Warnings"] == []
    assert api(daemon, "DELETE", "/volumes/rv1")[0] == 204
    assert api(daemon, "GET", "/volumes/rv1") == ("NotFound", "get rv1: no such volume")
    status, anon = api(daemon, "POST", "/volumes/create", {})
    assert status == 201 and len(anon["Name"]) == 64
    status, body = api(daemon, "POST", "/volumes/prune", filters='{"all":["true"]}')
    assert status == 200 and anon["Name"] in body["VolumesDeleted"]


def test_cli_shared_volume_inspect_and_conflict(daemon):
    assert pallet(daemon, "volume", "create", "data1").stdout == "data1\n"
    ls = pallet(daemon, "volume", "ls")
    assert ls.stdout.splitlines()[0] == "DRIVER    VOLUME NAME" and "local     data1" in ls.stdout
    r = pallet(daemon, "run", "--rm", "-v", "data1:/data", "busybox", "sh", "-c", "echo shared > /data/f")
    assert r.returncode == 0, r.stderr
    r = pallet(daemon, "run", "--rm", "-v", "data1:/data:ro", "busybox", "sh", "-c",
               "cat /data/f; echo no > /data/g")
    assert r.stdout == "shared\n" and r.returncode != 0  # read-only
    r = pallet(daemon, "create", "--name", "holder", "-v", "data1:/d", "-v", "/anon", "busybox", "true")
    assert r.returncode == 0, r.stderr
    info = json.loads(pallet(daemon, "inspect", "holder").stdout)[0]
    mounts = {m["Destination"]: m for m in info["Mounts"]}
    assert mounts["/d"] == {"Type": "volume", "Name": "data1",
                            "Source": json.loads(pallet(daemon, "volume", "inspect", "data1").stdout)[0]
                            ["Mountpoint"], "Destination": "/d", "Driver": "local", "Mode": "", "RW": True,
                            "Propagation": ""}
    anon = mounts["/anon"]["Name"]
    assert mounts["/anon"]["Type"] == "volume" and len(anon) == 64
    r = pallet(daemon, "volume", "rm", "data1")
    assert r.returncode == 1 and "volume is in use" in r.stderr
    dangling = pallet(daemon, "volume", "ls", "-q", "--filter", "dangling=true").stdout.split()
    assert "data1" not in dangling and anon not in dangling
    assert pallet(daemon, "rm", "-v", "holder").returncode == 0
    names = pallet(daemon, "volume", "ls", "-q").stdout.split()
    assert "data1" in names and anon not in names  # rm -v: anonymous ones only
    assert pallet(daemon, "volume", "rm", "data1").stdout == "data1\n"
    assert pallet(daemon, "volume", "inspect", "data1").returncode == 1


def test_image_volumes_and_prune(daemon):
    # Config.Volumes of the request (what `-v /path` sends) makes an anonymous volume; --rm removes it.
    before = set(pallet(daemon, "volume", "ls", "-q").stdout.split())
    r = pallet(daemon, "run", "--rm", "-v", "/scratch", "busybox", "sh", "-c",
               "echo x > /scratch/f && cat /scratch/f")
    assert (r.returncode, r.stdout) == (0, "x\n"), r.stderr
    assert set(pallet(daemon, "volume", "ls", "-q").stdout.split()) == before
    r = pallet(daemon, "run", "-d", "--name", "keep", "-v", "/scratch", "busybox", "true")
    assert r.returncode == 0
    pallet(daemon, "wait", "keep")
    assert pallet(daemon, "rm", "keep").returncode == 0  # no -v: the anonymous volume stays
    left = set(pallet(daemon, "volume", "ls", "-q").stdout.split()) - before
    assert len(left) == 1
    pallet(daemon, "volume", "create", "named-kept")
    r = pallet(daemon, "volume", "prune", "-f")
    assert r.returncode == 0 and left.pop() in r.stdout and "Total reclaimed space:" in r.stdout
    assert "named-kept" in pallet(daemon, "volume", "ls", "-q").stdout.split()
    r = pallet(daemon, "volume", "prune", "-a", "-f")
    assert "named-kept" in r.stdout
