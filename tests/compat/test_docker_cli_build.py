"""The real docker CLI (`DOCKER_BUILDKIT=0 docker build`, the classic builder's API) and docker-py's
`images.build` against palletd: steps and cache lines, tags, build args, -f, .dockerignore, -q,
--iidfile, a Dockerfile on stdin, a failing RUN, `docker builder prune`.

Safety: palletd runs on private roots with --cgroup-parent /pallet-test-<random>; RUN containers
live under it and are gone when each build ends; the parent cgroups are removed afterwards."""

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
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (overlay mounts, namespaces, cgroups)"),
    pytest.mark.skipif(not os.access("/bin/busybox", os.X_OK),
                       reason="needs Debian's busybox-static (/bin/busybox) to bootstrap busybox"),
]


def _rm_cgroups(parent: str) -> None:
    for hier in Path("/sys/fs/cgroup").iterdir():
        d = hier / parent.lstrip("/")
        if d.is_dir():
            for sub in sorted((p for p in d.rglob("*") if p.is_dir()), reverse=True):
                with contextlib.suppress(OSError):
                    sub.rmdir()
            with contextlib.suppress(OSError):
                d.rmdir()


def docker(sock: Path, *args: str, input: bytes | None = None, cwd: Path | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess[str]:
    if shutil.which("docker") is None:
        pytest.skip("the docker CLI is not on PATH")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env.update(DOCKER_HOST=f"unix://{sock}", DOCKER_CONFIG=str(sock.parent / "docker-config"),
               DOCKER_BUILDKIT="0")
    r = subprocess.run(["docker", *args], input=input, capture_output=True, env=env, timeout=timeout,
                       cwd=cwd)
    return subprocess.CompletedProcess(r.args, r.returncode, r.stdout.decode(errors="replace"),
                                       r.stderr.decode(errors="replace"))


@pytest.fixture(scope="module")
def sock():
    root = Path(tempfile.mkdtemp(prefix="pdb", dir="/tmp"))
    parent = f"/pallet-test-{uuid.uuid4().hex[:8]}"
    (root / "daemon.json").write_text("{}")
    path = root / "s.sock"
    log = open(root / "log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "pallet.daemon.main",
                             "--config", str(root / "daemon.json"), "-H", f"unix://{path}",
                             "--data-root", str(root / "data"),
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
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()
        _rm_cgroups(parent)
        shutil.rmtree(root, ignore_errors=True)


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
