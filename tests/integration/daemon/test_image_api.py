"""Images end to end: palletd as a real process and the `pallet` CLI against it (bootstrap busybox,
images, tag, inspect, history, save, rmi, load, import, prune), plus concurrent requests on the
one image service."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from palletd_support import PALLET, palletd

from pallet.api.client import Client

pytestmark = pytest.mark.skipif(not os.access("/bin/busybox", os.X_OK),
                                reason="needs Debian's busybox-static (/bin/busybox) to bootstrap busybox")


def pallet(host: str, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([*PALLET, "-H", host, *args], capture_output=True, timeout=120, input=stdin)
    return subprocess.CompletedProcess(r.args, r.returncode, r.stdout.decode(errors="replace"),
                                       r.stderr.decode(errors="replace"))


def ok(host: str, *args: str, stdin: bytes | None = None) -> str:
    r = pallet(host, *args, stdin=stdin)
    assert r.returncode == 0, f"pallet {' '.join(args)}: {r.stderr}"
    return r.stdout


@pytest.fixture(scope="module")
def daemon():
    with palletd() as d:
        out = ok(d.host, "image", "bootstrap", "busybox")
        assert out.startswith("busybox:latest sha256:")
        yield d


def table(text: str) -> list[list[str]]:
    """Rows of a docker-style table, split on runs of 3+ spaces."""
    import re

    return [re.split(r" {3,}", line.strip()) for line in text.strip().splitlines()]


def test_images_table_and_quiet(daemon):
    rows = table(ok(daemon.host, "images"))
    assert rows[0] == ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]
    bb = next(r for r in rows[1:] if r[0] == "busybox")
    assert bb[1] == "latest" and len(bb[2]) == 12 and bb[3].endswith("ago") and bb[4].endswith("MB")
    assert bb[2] in ok(daemon.host, "images", "-q").split()
    assert ok(daemon.host, "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", "busybox").split() == \
        ["busybox:latest"]


def test_tag_inspect_history(daemon):
    ok(daemon.host, "tag", "busybox", "localhost:5000/team/box:v1")
    [info] = json.loads(ok(daemon.host, "image", "inspect", "localhost:5000/team/box:v1"))
    assert "busybox:latest" in info["RepoTags"] and "localhost:5000/team/box:v1" in info["RepoTags"]
    assert ok(daemon.host, "image", "inspect", "-f", "{{json .Config.Cmd}}", "busybox").strip() == '["sh"]'
    hist = table(ok(daemon.host, "history", "busybox"))
    assert hist[0] == ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]
    assert hist[1][0] == info["Id"][7:19] and 'CMD ["sh"]' in hist[1][2]
    assert hist[2][0] == "<missing>"
    assert ok(daemon.host, "image", "rm", "localhost:5000/team/box:v1").strip() == \
        "Untagged: localhost:5000/team/box:v1"


def test_save_rmi_load_round_trip(daemon, tmp_path: Path):
    image_id = ok(daemon.host, "images", "-q", "--no-trunc", "busybox").strip()
    archive = tmp_path / "bb.tar"
    ok(daemon.host, "save", "-o", str(archive), "busybox")
    with tarfile.open(archive) as tar:
        assert json.load(tar.extractfile("manifest.json"))[0]["RepoTags"] == ["busybox:latest"]  # type: ignore[arg-type]
    # to stdout (not a terminal here) as well
    r = subprocess.run([*PALLET, "-H", daemon.host, "save", "busybox"], capture_output=True, timeout=60)
    assert r.returncode == 0 and r.stdout == archive.read_bytes()

    out = ok(daemon.host, "rmi", "busybox")
    assert out.splitlines() == ["Untagged: busybox:latest", f"Deleted: {image_id}"]
    r = pallet(daemon.host, "image", "inspect", "busybox")
    assert r.returncode == 1 and "Error: No such image: busybox:latest" in r.stderr
    assert ok(daemon.host, "load", "-i", str(archive)) == "Loaded image: busybox:latest\n"
    assert ok(daemon.host, "images", "-q", "--no-trunc", "busybox").strip() == image_id
    # and from stdin, quietly
    assert ok(daemon.host, "load", "-q", stdin=archive.read_bytes()) == ""


def test_import_from_file_and_stdin(daemon, tmp_path: Path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("etc/motd")
        data = b"imported\n"
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    path = tmp_path / "root.tar"
    path.write_bytes(buf.getvalue())
    image_id = ok(daemon.host, "import", str(path), "imported:1", "-c", "CMD [\"/bin/cat\"]",
                  "-m", "from a file").strip()
    assert image_id.startswith("sha256:")
    [info_] = json.loads(ok(daemon.host, "image", "inspect", "imported:1"))
    assert info_["Id"] == image_id and info_["Config"]["Cmd"] == ["/bin/cat"]
    assert info_["Comment"] == "from a file"
    other = ok(daemon.host, "image", "import", "-", "imported:2", stdin=buf.getvalue()).strip()
    assert other.startswith("sha256:")
    ok(daemon.host, "rmi", "imported:1", "imported:2")


def test_prune_removes_dangling_images(daemon, tmp_path: Path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("dangling")
        tar.addfile(info, io.BytesIO(b""))
    image_id = ok(daemon.host, "import", "-", stdin=buf.getvalue()).strip()
    out = ok(daemon.host, "image", "prune", "-f")
    assert f"deleted: {image_id}" in out and "Total reclaimed space:" in out
    assert "busybox" in ok(daemon.host, "images")  # tagged images stay


def test_errors_are_one_line(daemon):
    for args in (("rmi", "nope"), ("history", "nope"), ("tag", "nope", "x"),
                 ("save", "-o", "/tmp/x.tar", "nope"), ("image", "bootstrap", "alpine")):
        r = pallet(daemon.host, *args)
        assert r.returncode == 1, args
        assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("Error: "), (args, r.stderr)
        assert "Traceback" not in r.stderr
    assert not os.path.exists("/tmp/x.tar")


def test_concurrent_requests_share_one_store(daemon):
    client = Client(daemon.host)

    def work(i: int) -> int:
        client.request("POST", "/images/busybox/tag", params={"repo": "many", "tag": str(i)}).read()
        client.get_json("/images/json")
        client.get_json(f"/images/many:{i}/history")
        return len(client.request("DELETE", f"/images/many:{i}").json())

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(work, range(24))) == [1] * 24


def test_automatic_store_policy_keeps_the_store_under_its_limit():
    """--image-store-max-size: after each operation that adds images, unused images go, least
    recently used first, until the store fits (Docker has no such policy)."""
    with palletd("--image-store-max-size", "100000") as d:
        ok(d.host, "image", "bootstrap", "busybox")        # ~2 MB: over the limit, and unused
        assert "busybox" not in ok(d.host, "images")
        ok(d.host, "image", "bootstrap", "hello-world")    # ~10 kB: fits
        assert "hello-world" in ok(d.host, "images")
