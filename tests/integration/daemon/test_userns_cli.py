"""--userns through palletd and the pallet CLI (root): the daemon-wide default, opting out, inspect's
IDMappings, and an exhausted pool answered with a clear error (HTTP 503) that leaks no range."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from palletd_support import PALLET, palletd, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (palletd runs containers)")

CGROUP_PARENT = f"/pallet-test-{secrets.token_hex(4)}"


@pytest.fixture(scope="module")
def daemon() -> Iterator[str]:
    # The root must be searchable by the containers' unprivileged roots (as /var/lib/pallet is).
    root = Path(tempfile.mkdtemp(prefix="pdu", dir="/tmp"))
    os.chmod(root, 0o711)
    try:
        with palletd("--cgroup-parent", CGROUP_PARENT, "--userns-default", "auto", "--userns-base", "20000",
                     "--userns-size", "1000", "--userns-count", "2", root=root) as d:
            r = pallet(d.host, "image", "bootstrap", "busybox")
            assert r.returncode == 0, r.stderr + d.log()
            yield d.host
            for cid in pallet(d.host, "ps", "-a", "-q").stdout.split():
                pallet(d.host, "rm", "-f", cid)
    finally:
        from pallet.cgroups import create_cgroup_manager

        create_cgroup_manager(CGROUP_PARENT).destroy()
        shutil.rmtree(root, ignore_errors=True)


def pallet(host: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PALLET, "-H", host, *args], capture_output=True, text=True, timeout=60)


def test_default_auto_host_opt_out_inspect_and_exhaustion(daemon):
    r = pallet(daemon, "run", "--rm", "busybox", "cat", "/proc/self/uid_map")
    assert (r.returncode, r.stdout.split()) == (0, ["0", "20000", "1000"]), r.stderr
    r = pallet(daemon, "run", "--rm", "--userns=host", "busybox", "cat", "/proc/self/uid_map")
    assert r.stdout.split() == ["0", "0", "4294967295"], r.stderr
    # The ranges of the --rm containers come back once they are removed (AutoRemove runs at exit).
    wait_for(lambda: not pallet(daemon, "ps", "-a", "-q").stdout.split(), what="--rm removals")
    ra = pallet(daemon, "create", "--userns=auto:size=500", "busybox", "true")
    rb = pallet(daemon, "create", "busybox", "true")
    assert ra.returncode == rb.returncode == 0, ra.stderr + rb.stderr
    a, b = ra.stdout.strip(), rb.stdout.strip()
    info = json.loads(pallet(daemon, "inspect", a, b).stdout)
    assert [i["HostConfig"]["IDMappings"]["UidMap"] for i in info] == [["0:20000:500"], ["0:20500:1000"]]
    assert [i["HostConfig"]["UsernsMode"] for i in info] == ["auto:size=500", "auto"]
    r = pallet(daemon, "create", "--name", "third", "busybox", "true")
    assert r.returncode != 0 and "no free range of 1000 host ids" in r.stderr
    assert "third" not in pallet(daemon, "ps", "-a", "--format", "{{.Names}}").stdout
    r = pallet(daemon, "create", "--userns=auto:size=400", "busybox", "true")  # fits in what is left
    assert r.returncode == 0, r.stderr
    c = r.stdout.strip()
    assert json.loads(pallet(daemon, "inspect", c).stdout)[0]["HostConfig"]["IDMappings"]["UidMap"] == \
        ["0:21500:400"]
    for cid in (a, b, c):
        assert pallet(daemon, "rm", cid).returncode == 0
    r = pallet(daemon, "run", "--rm", "busybox", "cat", "/proc/self/uid_map")
    assert r.stdout.split() == ["0", "20000", "1000"], r.stderr  # all freed


def test_systemd_and_init_flags_reach_hostconfig(daemon):
    r = pallet(daemon, "create", "--userns=host", "--systemd=always", "busybox", "true")
    assert r.returncode == 0, r.stderr
    hc = json.loads(pallet(daemon, "inspect", r.stdout.strip()).stdout)[0]["HostConfig"]
    assert hc["Systemd"] == "always" and "IDMappings" not in hc
    r2 = pallet(daemon, "create", "--systemd=always", "--init", "busybox", "true")
    assert r2.returncode != 0 and "cannot be combined with --init" in r2.stderr
    assert pallet(daemon, "rm", r.stdout.strip()).returncode == 0
