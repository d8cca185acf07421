"""The real docker CLI (and the pallet CLI) pushing and pulling through palletd to Debian's
docker-registry on 127.0.0.1; `docker login` against a registry with basic auth (POST /auth);
`docker search` and `pallet search` against a loopback search endpoint."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from compat_support import random_cgroup_parent, remove_cgroup_tree

sys.path.insert(0, str(Path(__file__).parents[1] / "integration" / "registry"))
from distreg_support import REGISTRY, DistRegistry

from pallet_testlib import install_credential_helper

pytestmark = [
    pytest.mark.skipif(not os.access("/bin/busybox", os.X_OK), reason="needs Debian's busybox-static"),
    pytest.mark.skipif(not os.access(REGISTRY, os.X_OK), reason="needs Debian's docker-registry"),
    pytest.mark.skipif(os.geteuid() != 0, reason="palletd unpacks layers as root"),
]

PALLET = [sys.executable, "-m", "pallet.cli.main"]


@pytest.fixture(scope="module")
def env() -> Iterator[dict[str, str]]:
    """A palletd on a temporary socket with busybox, a docker-registry, a DOCKER_CONFIG dir."""
    root = Path(tempfile.mkdtemp(prefix="pdr", dir="/tmp"))
    (root / "daemon.json").write_text("{}")
    sock = root / "s.sock"
    cgroup_parent = random_cgroup_parent("registry")
    log = open(root / "log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "pallet.daemon.main",
                             "--config", str(root / "daemon.json"), "-H", f"unix://{sock}",
                             "--data-root", str(root / "data"),
                             "--exec-root", str(root / "exec"), "--cgroup-parent", cgroup_parent],
                            stdout=log, stderr=subprocess.STDOUT)
    reg = DistRegistry(root / "registry")
    try:
        reg.start()
        deadline = time.monotonic() + 15
        while "ready" not in (root / "log").read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"palletd did not start:\n{(root / 'log').read_text()}")
            time.sleep(0.05)
        e = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "PALLET_"))}
        e.update(DOCKER_HOST=f"unix://{sock}", PALLET_HOST=f"unix://{sock}",
                 DOCKER_CONFIG=str(root / "docker-config"), REGISTRY=reg.host, ROOT=str(root))
        r = subprocess.run([*PALLET, "image", "bootstrap", "busybox"], capture_output=True, text=True,
                           timeout=120, env=e)
        assert r.returncode == 0, r.stderr
        yield e
    finally:
        reg.stop()
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()
        if os.environ.get("PALLET_TEST_KEEP_LOG"):
            print((root / "log").read_text())
        remove_cgroup_tree(cgroup_parent)
        shutil.rmtree(root, ignore_errors=True)


def run(env: dict[str, str], *argv: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    if argv[0] == "docker" and shutil.which("docker") is None:
        pytest.skip("the docker CLI is not on PATH")
    cmd = [*PALLET, *argv[1:]] if argv[0] == "pallet" else list(argv)
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, input=input)


def ok(env: dict[str, str], *argv: str, input: str | None = None) -> str:
    r = run(env, *argv, input=input)
    assert r.returncode == 0, f"{' '.join(argv)}: {r.stderr}{r.stdout}"
    return r.stdout


def test_docker_push_and_pull_through_palletd(env):
    name = f"{env['REGISTRY']}/compat/busybox:1"
    ok(env, "docker", "tag", "busybox", name)
    out = ok(env, "docker", "push", name)
    assert f"The push refers to repository [{name.rsplit(':', 1)[0]}]" in out
    assert "Pushed" in out and "1: digest: sha256:" in out
    digest = out.split("digest: ")[1].split()[0]
    ok(env, "docker", "rmi", name)
    out = ok(env, "docker", "pull", name)
    assert "Pulling from compat/busybox" in out and f"Digest: {digest}" in out
    assert "Status: Image is up to date" in out or "Status: Downloaded newer image" in out
    assert out.strip().splitlines()[-1] == name
    [info] = json.loads(ok(env, "docker", "image", "inspect", name))
    assert f"{env['REGISTRY']}/compat/busybox@{digest}" in info["RepoDigests"]
    # A missing tag is the registry's error, before any output, as dockerd words it.
    r = run(env, "docker", "pull", f"{env['REGISTRY']}/compat/busybox:nope")
    assert r.returncode != 0 and "manifest unknown" in r.stderr and "not found" in r.stderr


def test_pallet_cli_push_pull_run(env):
    name = f"{env['REGISTRY']}/cli/box:2"
    ok(env, "pallet", "tag", "busybox", name)
    assert ok(env, "pallet", "push", "-q", name).strip() == name
    ok(env, "pallet", "rmi", name)
    out = ok(env, "pallet", "pull", name)
    assert "Pull complete" in out or "Already exists" in out
    assert out.strip().splitlines()[-1] == name
    ok(env, "pallet", "rmi", name)
    # `pallet create` (and so `pallet run`, which shares its code) pulls a missing image, as
    # docker does, with the progress on stderr.
    r = run(env, "pallet", "create", "--name", "pulled-for-me", name, "echo", "ran")
    assert r.returncode == 0, r.stderr
    assert "Unable to find image" in r.stderr
    assert "Pull complete" in r.stderr or "Already exists" in r.stderr
    ok(env, "pallet", "rm", "pulled-for-me")


def test_docker_login_through_palletd(env):
    users = {"carol": "pa55word"}
    with DistRegistry(Path(env["ROOT"]) / "basic", users=users) as reg:
        r = run(env, "docker", "login", "-u", "carol", "--password-stdin", reg.host, input="wrong\n")
        assert r.returncode != 0 and "unauthorized" in r.stderr.lower()
        out = ok(env, "docker", "login", "-u", "carol", "--password-stdin", reg.host, input="pa55word\n")
        assert "Login Succeeded" in out
        name = f"{reg.host}/private/box:latest"
        ok(env, "docker", "tag", "busybox", name)
        assert "digest: sha256:" in ok(env, "docker", "push", name)
        # pallet login writes the same config.json the docker CLI reads.
        ok(env, "docker", "logout", reg.host)
        r = run(env, "pallet", "push", name)
        assert r.returncode != 0 and "unauthorized" in r.stderr.lower()
        out = ok(env, "pallet", "login", "-u", "carol", "--password-stdin", reg.host, input="pa55word\n")
        assert "Login Succeeded" in out
        config = json.loads((Path(env["DOCKER_CONFIG"]) / "config.json").read_text())
        assert reg.host in config["auths"]
        assert "digest: sha256:" in ok(env, "pallet", "push", name)
        assert ok(env, "docker", "pull", name)
        assert "Removing login credentials" in ok(env, "pallet", "logout", reg.host)


def test_credential_helper_shared_with_the_docker_cli(env):
    """`credsStore` in config.json: `pallet login` hands the secret to docker-credential-NAME,
    and the real docker CLI finds it there (and the other way round)."""
    root = Path(env["ROOT"])
    bindir = install_credential_helper(root / "helper-bin")
    conf = root / "helper-config"
    conf.mkdir()
    (conf / "config.json").write_text(json.dumps({"credsStore": "fake"}))
    e = {**env, "DOCKER_CONFIG": str(conf), "PATH": f"{bindir}:{env['PATH']}"}
    with DistRegistry(root / "helper-reg", users={"dave": "h3lper"}) as reg:
        out = ok(e, "pallet", "login", "-u", "dave", "--password-stdin", reg.host, input="h3lper\n")
        assert "Login Succeeded" in out
        assert "h3lper" not in (conf / "config.json").read_text()  # the helper keeps the secret
        assert json.loads((bindir / "store.json").read_text())[reg.host]["Secret"] == "h3lper"
        name = f"{reg.host}/helped/box:1"
        ok(e, "docker", "tag", "busybox", name)
        assert "digest: sha256:" in ok(e, "docker", "push", name)  # docker asks the same helper
        assert "Removing login credentials" in ok(e, "docker", "logout", reg.host)
        r = run(e, "pallet", "push", name)
        assert r.returncode != 0 and "unauthorized" in r.stderr.lower()
        ok(e, "docker", "login", "-u", "dave", "--password-stdin", reg.host, input="h3lper\n")
        assert "digest: sha256:" in ok(e, "pallet", "push", name)  # pallet reads what docker stored
        assert "Removing login credentials" in ok(e, "pallet", "logout", reg.host)
        assert reg.host not in json.loads((bindir / "store.json").read_text())


class _Search(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    repos = [{"name": "tools/busybox", "description": "busybox built from Debian's busybox-static " * 2,
              "star_count": 7, "is_official": True, "is_automated": False},
             {"name": "tools/busyness", "description": "other", "star_count": 1,
              "is_official": False, "is_automated": False}]

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        parts = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(parts.query)
        term, n = q.get("q", [""])[0], int(q.get("n", ["25"])[0])
        found = [r for r in self.repos if term in r["name"]][:n] if parts.path == "/v1/search" else None
        body = json.dumps({"query": term, "num_results": len(found or []), "num_pages": 1, "page": 1,
                           "page_size": n, "results": found}).encode()
        self.send_response(200 if found is not None else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_search(env):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Search)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host = f"127.0.0.1:{server.server_address[1]}"
    try:
        out = ok(env, "docker", "search", f"{host}/busy").splitlines()
        assert out[0].split()[:4] == ["NAME", "DESCRIPTION", "STARS", "OFFICIAL"]
        assert out[1].split()[0] == "tools/busybox" and "[OK]" in out[1] and len(out) == 3
        out = ok(env, "docker", "search", "--filter", "is-official=true",
                 "--format", "{{.Name}} {{.StarCount}}", f"{host}/busy")
        assert out.splitlines() == ["tools/busybox 7"]
        out = ok(env, "pallet", "search", "--limit", "1", f"{host}/busy").splitlines()
        assert out[0].split()[:4] == ["NAME", "DESCRIPTION", "STARS", "OFFICIAL"] and len(out) == 2
        assert "…" in out[1]
        out = ok(env, "pallet", "search", "--no-trunc", "--filter", "stars=2", "--format",
                 "{{.Name}}|{{.Description}}", f"{host}/busy")
        assert out.splitlines() == [f"tools/busybox|{_Search.repos[0]['description'].strip()}"]
    finally:
        server.shutdown()
        server.server_close()


def test_all_tags_and_docker_py(env):
    repo = f"{env['REGISTRY']}/every/box"
    for t in ("a", "b"):
        ok(env, "docker", "tag", "busybox", f"{repo}:{t}")
    out = ok(env, "docker", "push", "--all-tags", repo)
    assert "a: digest: sha256:" in out and "b: digest: sha256:" in out
    ok(env, "docker", "rmi", f"{repo}:a", f"{repo}:b")
    out = ok(env, "docker", "pull", "--all-tags", repo)
    assert "Pulling from every/box" in out
    tags = ok(env, "docker", "images", "--format", "{{.Tag}}", repo).split()
    assert sorted(tags) == ["a", "b"]

    docker_py = pytest.importorskip("docker", reason="docker-py is not installed (pip install docker)")
    client = docker_py.DockerClient(base_url=env["DOCKER_HOST"], version="auto")
    try:
        client.images.remove(f"{repo}:a")
        img = client.images.pull(repo, tag="a")
        assert f"{repo}:a" in img.tags
        lines = list(client.images.push(repo, tag="b", stream=True, decode=True))
        assert any("aux" in m and m["aux"]["Tag"] == "b" for m in lines)
        with pytest.raises(docker_py.errors.NotFound):
            client.images.pull(repo, tag="missing")
    finally:
        client.close()
