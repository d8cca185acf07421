"""The real docker CLI (`DOCKER_BUILDKIT=0 docker build`, the classic builder's API) and docker-py's
`images.build` against palletd: steps and cache lines, tags, build args, -f, .dockerignore, -q,
--iidfile, a Dockerfile on stdin, a failing RUN, `docker builder prune`.

Safety: palletd runs on private roots with --cgroup-parent /pallet-test-<random>; RUN containers
live under it and are gone when each build ends; the parent cgroups are removed afterwards."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from compat_support import docker as compat_docker
from compat_support import palletd_for_docker

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (overlay mounts, namespaces, cgroups)"),
    pytest.mark.skipif(not os.access("/bin/busybox", os.X_OK),
                       reason="needs Debian's busybox-static (/bin/busybox) to bootstrap busybox"),
]


@pytest.fixture(scope="module")
def sock() -> Iterator[Path]:
    with palletd_for_docker("pdb", images=("busybox",)) as path:
        yield path


def docker(sock: Path, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return compat_docker(sock, *args, DOCKER_BUILDKIT="0", **kw)  # the classic builder

def test_docker_build_tags_args_cache_and_run(sock: Path, tmp_path: Path):
    check = tmp_path / "check"
    check.mkdir()
    tmp_path = tmp_path / "ctx"
    tmp_path.mkdir()
    (tmp_path / "app.txt").write_text("app\n")
    (tmp_path / "secret.key").write_text("do not send\n")
    (tmp_path / ".dockerignore").write_text("*.key\n")
    (tmp_path / "build.Dockerfile").write_text(
        "FROM busybox\nARG WHO=world\nCOPY . /ctx/\nRUN echo \"hello $WHO\" > /greeting\n"
        "CMD [\"sh\", \"-c\", \"cat /greeting; ls /ctx\"]\n")
    r = docker(sock, "build", "-t", "dk/app:1", "-t", "dk/app:latest", "-f", "build.Dockerfile",
               "--build-arg", "WHO=docker", ".", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Step 1/5 : FROM busybox" in r.stdout and "Step 4/5 : RUN echo" in r.stdout
    assert "Successfully tagged dk/app:1" in r.stdout and "Successfully tagged dk/app:latest" in r.stdout
    # The image's content, seen from a build on top of it (this keeps the test about builds).
    (check / "Dockerfile").write_text("FROM dk/app:1\nRUN cat /greeting; ls /ctx\n")
    run = docker(sock, "build", str(check))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "hello docker\n" in run.stdout
    assert "secret.key" not in run.stdout and "app.txt" in run.stdout
    again = docker(sock, "build", "-t", "dk/app:1", "-f", "build.Dockerfile", "--build-arg", "WHO=docker",
                   ".", cwd=tmp_path)
    assert again.returncode == 0 and again.stdout.count("---> Using cache") == 4, again.stdout
    hist = docker(sock, "history", "--no-trunc", "dk/app:1")
    assert "|1 WHO=docker /bin/sh -c echo" in hist.stdout


def test_docker_build_quiet_iidfile_and_stdin(sock: Path, tmp_path: Path):
    (tmp_path / "Dockerfile").write_text("FROM busybox\nLABEL quiet=yes\n")
    r = docker(sock, "build", "-q", "--iidfile", str(tmp_path / "iid"), str(tmp_path))
    assert r.returncode == 0, r.stderr
    # In quiet mode the docker CLI takes the id from the stream text, newline included (as
    # with dockerd) and writes that to the iidfile.
    iid = (tmp_path / "iid").read_text().strip()
    assert iid.startswith("sha256:") and r.stdout.strip() == iid
    r = docker(sock, "build", "-t", "fromstdin", "-", input=b"FROM busybox\nENV FROM_STDIN=1\n")
    assert r.returncode == 0, r.stderr
    env = docker(sock, "image", "inspect", "-f", "{{json .Config.Env}}", "fromstdin").stdout
    assert "FROM_STDIN=1" in env


def test_docker_build_failure_and_parse_error(sock: Path, tmp_path: Path):
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN echo failing-output; exit 7\n")
    r = docker(sock, "build", str(tmp_path))
    assert r.returncode == 7  # the errorDetail code is the RUN's exit code, which the CLI exits with
    assert "failing-output" in r.stdout
    assert "The command '/bin/sh -c echo failing-output; exit 7' returned a non-zero code: 7" in r.stderr
    (tmp_path / "Dockerfile").write_text("FROM busybox\nFROBNICATE x\n")
    r = docker(sock, "build", str(tmp_path))
    assert r.returncode == 1 and "Dockerfile:2:1: unknown instruction: FROBNICATE" in r.stderr


def test_docker_builder_prune(sock: Path, tmp_path: Path):
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox\nRUN --mount=type=cache,target=/c,id=prunable echo x > /c/x\n")
    assert docker(sock, "build", str(tmp_path)).returncode == 0
    r = docker(sock, "builder", "prune", "-f")
    assert r.returncode == 0, r.stderr
    assert "cachemount:prunable" in r.stdout and "Total reclaimed space" in r.stdout


def test_docker_py_images_build(sock: Path, tmp_path: Path):
    docker_py = pytest.importorskip("docker")
    (tmp_path / "Dockerfile").write_text("FROM busybox\nARG N=0\nRUN echo n=$N > /n\nCMD [\"cat\", \"/n\"]\n")
    client = docker_py.DockerClient(base_url=f"unix://{sock}", version="1.43")
    try:
        image, logs = client.images.build(path=str(tmp_path), tag="dockerpy:1", buildargs={"N": "5"},
                                          rm=True)
        lines = [entry.get("stream", "") for entry in logs]
        assert any(line.startswith("Step 3/4 : RUN echo n=$N") for line in lines)
        assert "dockerpy:1" in image.tags
        assert client.images.get("dockerpy:1").id == image.id
        (tmp_path / "Dockerfile").write_text("FROM dockerpy:1\nRUN cat /n\n")
        _, logs = client.images.build(path=str(tmp_path))
        assert "n=5\n" in [entry.get("stream", "") for entry in logs]
        (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN exit 4\n")
        with pytest.raises(docker_py.errors.BuildError, match="returned a non-zero code: 4"):
            client.images.build(path=str(tmp_path))
    finally:
        client.close()
