"""The real docker CLI and docker-py against palletd's image routes: images, inspect, tag, history,
save, rmi, load, import, pull of a local image, prune; Docker's error words."""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from compat_support import docker, palletd_for_docker

pytestmark = pytest.mark.skipif(not os.access("/bin/busybox", os.X_OK),
                                reason="needs Debian's busybox-static (/bin/busybox) to bootstrap busybox")


@pytest.fixture(scope="module")
def sock() -> Iterator[Path]:
    with palletd_for_docker("pdi", images=("busybox",)) as path:
        yield path

def ok(sock: Path, *args: str, input: bytes | None = None) -> str:
    r = docker(sock, *args, input=input)
    assert r.returncode == 0, f"docker {' '.join(args)}: {r.stderr}"
    return r.stdout


def rootfs_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("etc/motd")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"hi\n"))
    return buf.getvalue()


def test_docker_images_and_inspect(sock):
    lines = ok(sock, "images").splitlines()
    assert lines[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert any(line.split()[:2] == ["busybox", "latest"] for line in lines[1:])
    [info] = json.loads(ok(sock, "image", "inspect", "busybox"))
    assert info["RepoTags"] == ["busybox:latest"] and info["Config"]["Cmd"] == ["sh"]
    platform = ok(sock, "image", "inspect", "--format", "{{.Os}}/{{.Architecture}}", "busybox")
    assert platform.startswith("linux/")
    assert ok(sock, "images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", "reference=busy*").split() \
        == ["busybox:latest"]


def test_docker_tag_history_rmi(sock):
    ok(sock, "tag", "busybox", "localhost:5000/me/box:1")
    assert "localhost:5000/me/box" in ok(sock, "images")
    hist = ok(sock, "history", "busybox").splitlines()
    assert hist[0].split()[:2] == ["IMAGE", "CREATED"] and 'CMD ["sh"]' in hist[1]
    assert ok(sock, "history", "-q", "--no-trunc", "busybox").splitlines()[0].startswith("sha256:")
    assert ok(sock, "rmi", "localhost:5000/me/box:1").strip() == "Untagged: localhost:5000/me/box:1"


def test_docker_save_rmi_load(sock, tmp_path: Path):
    image_id = ok(sock, "images", "-q", "--no-trunc", "busybox").strip()
    archive = tmp_path / "bb.tar"
    ok(sock, "save", "-o", str(archive), "busybox")
    with tarfile.open(archive) as tar:
        assert json.load(tar.extractfile("manifest.json"))[0]["RepoTags"] == ["busybox:latest"]  # type: ignore[arg-type]
    out = ok(sock, "rmi", "busybox")
    assert "Untagged: busybox:latest" in out and f"Deleted: {image_id}" in out
    assert ok(sock, "load", "-i", str(archive)).strip() == "Loaded image: busybox:latest"
    assert ok(sock, "images", "-q", "--no-trunc", "busybox").strip() == image_id


def test_docker_import_and_prune(sock, tmp_path: Path):
    path = tmp_path / "root.tar"
    path.write_bytes(rootfs_tar())
    image_id = ok(sock, "import", "-c", "CMD [\"/bin/sh\"]", "-m", "msg", str(path), "imp:1").strip()
    assert image_id.startswith("sha256:")
    [info] = json.loads(ok(sock, "image", "inspect", "imp:1"))
    assert info["Config"]["Cmd"] == ["/bin/sh"] and info["Comment"] == "msg"
    untagged = ok(sock, "import", "-", input=rootfs_tar() + b"\0" * 1024).strip()
    out = ok(sock, "image", "prune", "-f")
    assert f"deleted: {untagged}" in out and "Total reclaimed space" in out
    ok(sock, "rmi", "imp:1")


def test_docker_pull_errors(sock):
    # Real pulls are tests/compat/test_docker_cli_registry.py (a local docker-registry); here a
    # registry nobody serves (loopback port 1) fails cleanly and no traffic leaves the machine.
    r = docker(sock, "pull", "localhost:1/alpine:3")
    assert r.returncode != 0 and "localhost:1" in r.stderr and "{" not in r.stderr
    r = docker(sock, "rmi", "nope")
    assert r.returncode != 0 and "No such image: nope:latest" in r.stderr and "{" not in r.stderr
    r = docker(sock, "image", "inspect", "nope")
    assert r.returncode != 0 and "No such image: nope:latest" in r.stderr


def test_docker_py(sock, tmp_path: Path):
    docker_py = pytest.importorskip("docker", reason="docker-py is not installed (pip install docker)")
    client = docker_py.DockerClient(base_url=f"unix://{sock}", version="auto")
    try:
        assert "busybox:latest" in [t for i in client.images.list() for t in i.tags]
        img = client.images.get("busybox")
        assert img.tags == ["busybox:latest"] and img.id.startswith("sha256:")
        assert img.history()[0]["CreatedBy"] == 'CMD ["sh"]'
        assert img.tag("pybox", "2") is True
        assert client.images.get("pybox:2").id == img.id
        data = b"".join(img.save(named=True))
        client.images.remove("pybox:2")
        client.images.remove("busybox")
        with pytest.raises(docker_py.errors.ImageNotFound):
            client.images.get("busybox")
        [loaded] = client.images.load(data)
        assert loaded.tags == ["busybox:latest"] and loaded.id == img.id
        assert [i.tags for i in client.images.list(name="busybox")] == [["busybox:latest"]]
        pruned = client.images.prune()
        assert set(pruned) == {"ImagesDeleted", "SpaceReclaimed"}
    finally:
        client.close()
