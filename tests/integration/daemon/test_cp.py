"""`pallet cp` both ways and the archive API against a real palletd (root): a running and a
stopped container, tar on stdin/stdout, docker's destination rules, hostile paths."""

from __future__ import annotations

import base64
import io
import json
import os
import secrets
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from palletd_support import PALLET, palletd

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (palletd runs containers)")

CGROUP_PARENT = f"/pallet-test-{secrets.token_hex(4)}"


@pytest.fixture(scope="module")
def daemon() -> Iterator[str]:
    with palletd("--cgroup-parent", CGROUP_PARENT) as d:
        r = pallet(d.host, "image", "bootstrap", "busybox")
        assert r.returncode == 0, r.stderr + d.log()
        yield d.host
    from pallet.cgroups import create_cgroup_manager

    create_cgroup_manager(CGROUP_PARENT).destroy()


def pallet(host: str, *args: str, input: bytes | None = None,
           timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*PALLET, "-H", host, *args], capture_output=True, input=input, timeout=timeout)


@pytest.fixture
def running(daemon) -> Iterator[str]:
    r = pallet(daemon, "run", "-d", "busybox", "sleep", "1000")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.decode().strip()
    yield cid
    pallet(daemon, "rm", "-f", cid)


def test_cp_file_in_and_out_of_a_running_container(daemon, running, tmp_path: Path):
    src = tmp_path / "hello.txt"
    src.write_text("hello pallet\n")
    r = pallet(daemon, "cp", str(src), f"{running}:/tmp/")
    assert r.returncode == 0, r.stderr
    r = pallet(daemon, "exec", running, "cat", "/tmp/hello.txt")
    assert r.stdout == b"hello pallet\n"
    # Renamed on the way in (missing destination), then out to a new name and into a directory.
    assert pallet(daemon, "cp", str(src), f"{running}:/tmp/renamed").returncode == 0
    assert pallet(daemon, "exec", running, "cat", "/tmp/renamed").stdout == b"hello pallet\n"
    out = tmp_path / "back.txt"
    r = pallet(daemon, "cp", f"{running}:/tmp/renamed", str(out))
    assert r.returncode == 0, r.stderr
    assert out.read_text() == "hello pallet\n"
    outdir = tmp_path / "outdir"
    outdir.mkdir()
    assert pallet(daemon, "cp", f"{running}:/tmp/hello.txt", str(outdir)).returncode == 0
    assert (outdir / "hello.txt").read_text() == "hello pallet\n"


def test_cp_directories_and_stdio(daemon, running, tmp_path: Path):
    d = tmp_path / "tree"
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "f").write_text("deep")
    assert pallet(daemon, "cp", str(d), f"{running}:/srv").returncode == 0  # /srv missing: becomes it
    assert pallet(daemon, "exec", running, "cat", "/srv/sub/f").stdout == b"deep"
    r = pallet(daemon, "cp", f"{running}:/srv", "-")
    assert r.returncode == 0, r.stderr
    with tarfile.open(fileobj=io.BytesIO(r.stdout)) as t:
        assert sorted(t.getnames()) == ["srv", "srv/sub", "srv/sub/f"]
    back = tmp_path / "back"
    assert pallet(daemon, "cp", f"{running}:/srv", str(back)).returncode == 0
    assert (back / "sub" / "f").read_text() == "deep"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        ti = tarfile.TarInfo("from-stdin")
        ti.size = 3
        t.addfile(ti, io.BytesIO(b"abc"))
    assert pallet(daemon, "cp", "-", f"{running}:/tmp", input=buf.getvalue()).returncode == 0
    assert pallet(daemon, "exec", running, "cat", "/tmp/from-stdin").stdout == b"abc"


def test_cp_errors_and_hostile_paths(daemon, running, tmp_path: Path):
    r = pallet(daemon, "cp", f"{running}:/no/such", str(tmp_path / "x"))
    assert r.returncode == 1 and b"Error response from daemon" in r.stderr
    r = pallet(daemon, "cp", "nosuchcontainer:/etc/passwd", str(tmp_path / "x"))
    assert r.returncode == 1 and b"No such container" in r.stderr
    out = tmp_path / "passwd"
    r = pallet(daemon, "cp", f"{running}:/../../../etc/passwd", str(out))
    assert r.returncode == 0, r.stderr
    inside = pallet(daemon, "exec", running, "cat", "/etc/passwd").stdout
    assert out.read_bytes() == inside
    # A symlink inside the container pointing "out" resolves inside the rootfs.
    assert pallet(daemon, "exec", running, "ln", "-s", "/../../../../", "/tmp/up").returncode == 0
    r = pallet(daemon, "cp", f"{running}:/tmp/up/etc/passwd", str(tmp_path / "p2"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "p2").read_bytes() == inside


def test_cp_into_a_stopped_container_and_api(daemon, tmp_path: Path):
    r = pallet(daemon, "create", "busybox", "cat", "/tmp/note")
    cid = r.stdout.decode().strip()
    try:
        note = tmp_path / "note"
        note.write_text("written while stopped\n")
        r = pallet(daemon, "cp", str(note), f"{cid}:/tmp/note")
        assert r.returncode == 0, r.stderr
        r = pallet(daemon, "start", "-a", cid)
        assert r.stdout == b"written while stopped\n", r.stderr
        from pallet.api.client import Client

        c = Client(daemon)
        resp = c.request("HEAD", f"/containers/{cid}/archive", params={"path": "/tmp/note"})
        info = json.loads(base64.b64decode(resp.headers["X-Docker-Container-Path-Stat"]))
        resp.read()
        assert info["name"] == "note" and info["size"] == 22 and not info["mode"] & (1 << 31)
        from pallet.errors import InvalidArgument, NotFound

        with pytest.raises(NotFound):
            c.request("HEAD", f"/containers/{cid}/archive", params={"path": "/nope"})
        with pytest.raises(InvalidArgument):
            c.request("GET", f"/containers/{cid}/archive")
        with pytest.raises(InvalidArgument):
            c.request("PUT", f"/containers/{cid}/archive", params={"path": "/tmp/note"}, data=b"")
    finally:
        pallet(daemon, "rm", "-f", cid)
