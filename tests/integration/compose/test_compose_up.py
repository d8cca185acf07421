"""`pallet compose` against a real palletd (root): a web + backend + database-like application
from the busybox image. The database writes to a named volume and turns healthy; the backend
(`busybox httpd`) starts only then (depends_on: service_healthy); the web front fetches the
backend by its service name through the embedded DNS. Then: ps, logs, exec, run, `up` again
without recreation, one changed service recreated alone, `down` keeping the named volume,
`down -v` leaving nothing.

Safety: palletd runs on private temporary roots with --cgroup-parent /pallet-test-<random>
(removed afterwards); traffic stays between containers on the project's bridge network; every
object is removed by `compose down -v` and the daemon fixture's teardown.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "daemon"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "registry"))
from palletd_support import PALLET, palletd
from regserver_support import Server

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (palletd runs containers)"),
    pytest.mark.skipif(not os.access("/bin/busybox", os.X_OK),
                       reason="needs Debian's busybox-static (/bin/busybox) for the busybox image"),
]

CGROUP_PARENT = f"/pallet-test-{secrets.token_hex(4)}"
PROJECT = f"ct{secrets.token_hex(3)}"

COMPOSE = """
name: {project}
services:
  web:
    image: busybox
    init: true
    command: ["sh", "-c", "while true; do wget -q -O- http://backend/ && sleep 1 || sleep 0.3; done"]
    environment: {{FLAVOUR: "${{FLAVOUR:-plain}}"}}
    volumes: ["/cache"]
    depends_on: [backend]
  backend:
    image: busybox
    init: true
    command:
      - sh
      - -c
      - mkdir -p /www && echo hello from backend > /www/index.html && exec httpd -f -p 80 -h /www
    ports: ["127.0.0.1::80"]
    depends_on:
      db: {{condition: service_healthy}}
  db:
    image: busybox
    init: true
    command: ["sh", "-c", "date >> /data/boots; sleep 1; touch /data/ready; exec sleep 100000"]
    volumes: ["data:/data"]
    healthcheck:
      test: ["CMD", "test", "-f", "/data/ready"]
      interval: 500ms
      retries: 20
volumes:
  data:
"""


def pallet(host: str, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess[str]:
    e = {k: v for k, v in os.environ.items() if k != "FLAVOUR"}
    e.update(env or {})
    return subprocess.run([*PALLET, "-H", host, *args], capture_output=True, text=True, cwd=cwd,
                          env=e, timeout=timeout)


@pytest.fixture(scope="module")
def daemon() -> Iterator[str]:
    with palletd("--cgroup-parent", CGROUP_PARENT) as d:
        r = pallet(d.host, "image", "bootstrap", "busybox")
        assert r.returncode == 0, r.stderr + d.log()
        try:
            yield d.host
        finally:
            ids = pallet(d.host, "ps", "-aq").stdout.split()
            if ids:
                pallet(d.host, "rm", "-f", *ids)
    from pallet.cgroups import create_cgroup_manager

    create_cgroup_manager(CGROUP_PARENT).destroy()


@pytest.fixture(scope="module")
def app(daemon: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    d = tmp_path_factory.mktemp("composeapp")
    (d / "compose.yaml").write_text(COMPOSE.format(project=PROJECT))
    try:
        yield d
    finally:
        pallet(daemon, "compose", "down", "-v", "--remove-orphans", cwd=d)


def compose(host: str, app: Path, *args: str, **kw) -> subprocess.CompletedProcess[str]:
    return pallet(host, "compose", *args, cwd=app, **kw)


def inspect(host: str, name: str) -> dict:
    r = pallet(host, "inspect", name)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)[0]


def ids(host: str, app: Path) -> dict[str, str]:
    """container name -> id for the project."""
    r = compose(host, app, "ps", "-a", "--format", "json")
    assert r.returncode == 0, r.stderr
    return {c["Name"]: c["ID"] for c in map(json.loads, r.stdout.splitlines())}


def wait_logs(host: str, app: Path, service: str, text: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while True:
        out = compose(host, app, "logs", "--no-color", service).stdout
        if text in out or time.monotonic() > deadline:
            return out
        time.sleep(0.3)


def test_up_starts_in_dependency_order_and_labels_everything(daemon, app):
    r = compose(daemon, app, "up", "-d")
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()

    def at(text: str) -> int:
        return next(i for i, ln in enumerate(lines) if text in ln)

    # the db became healthy before the backend started, the backend started before the web
    assert at(f"Container {PROJECT}-db-1  Healthy") < at(f"Container {PROJECT}-backend-1  Started")
    assert at(f"Container {PROJECT}-backend-1  Started") < at(f"Container {PROJECT}-web-1  Started")
    assert at(f"Network {PROJECT}_default  Created") < at(f"Container {PROJECT}-db-1  Created")

    web = inspect(daemon, f"{PROJECT}-web-1")
    labels = web["Config"]["Labels"]
    assert labels["com.docker.compose.project"] == PROJECT
    assert labels["com.docker.compose.service"] == "web"
    assert labels["com.docker.compose.container-number"] == "1"
    assert labels["com.docker.compose.oneoff"] == "False"
    assert re.fullmatch(r"[0-9a-f]{64}", labels["com.docker.compose.config-hash"])
    assert labels["com.docker.compose.project.working_dir"] == str(app)
    assert labels["com.docker.compose.project.config_files"] == str(app / "compose.yaml")
    assert "FLAVOUR=plain" in web["Config"]["Env"]
    nets = web["NetworkSettings"]["Networks"]
    assert list(nets) == [f"{PROJECT}_default"]
    assert {"web", f"{PROJECT}-web-1"} <= set(nets[f"{PROJECT}_default"].get("Aliases") or [])

    net = json.loads(pallet(daemon, "network", "inspect", f"{PROJECT}_default").stdout)[0]
    assert net["Labels"]["com.docker.compose.project"] == PROJECT
    assert net["Labels"]["com.docker.compose.network"] == "default"
    vol = json.loads(pallet(daemon, "volume", "inspect", f"{PROJECT}_data").stdout)[0]
    assert vol["Labels"]["com.docker.compose.volume"] == "data"

    ps = compose(daemon, app, "ps")
    rows = ps.stdout.splitlines()
    assert rows[0].split() == ["NAME", "IMAGE", "COMMAND", "SERVICE", "CREATED", "STATUS", "PORTS"]
    assert [r.split()[0] for r in rows[1:]] == [f"{PROJECT}-web-1", f"{PROJECT}-backend-1", f"{PROJECT}-db-1"]
    assert all("Up " in r for r in rows[1:])
    assert compose(daemon, app, "ps", "--services").stdout.split() == ["web", "backend", "db"]


def test_services_reach_each_other_by_name_and_logs_are_prefixed(daemon, app):
    out = wait_logs(daemon, app, "web", "hello from backend")
    assert re.search(rf"^{PROJECT}-web-1\s+\| hello from backend$", out, re.M), out
    both = compose(daemon, app, "logs", "--no-color", "--tail", "1").stdout.splitlines()
    assert {ln.split()[0] for ln in both} <= {f"{PROJECT}-web-1", f"{PROJECT}-backend-1", f"{PROJECT}-db-1"}
    coloured = compose(daemon, app, "--ansi", "always", "logs", "web").stdout
    assert "\x1b[" in coloured
    # -f: lines keep coming while the container runs
    follow = subprocess.Popen([*PALLET, "-H", daemon, "compose", "logs", "-f", "--no-color", "--tail", "0",
                               "web"], cwd=app, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert follow.stdout is not None
        line = follow.stdout.readline()
        assert re.fullmatch(rf"{PROJECT}-web-1\s+\| hello from backend\n", line), line
    finally:
        follow.terminate()
        follow.wait(10)


def test_port_top_images(daemon, app):
    r = compose(daemon, app, "port", "backend", "80")
    assert r.returncode == 0, r.stderr
    host, _, port = r.stdout.strip().rpartition(":")
    assert host == "127.0.0.1" and port.isdigit()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as resp:  # loopback only
        assert resp.read() == b"hello from backend\n"
    assert f"127.0.0.1:{port}->80/tcp" in compose(daemon, app, "ps", "backend").stdout
    top = compose(daemon, app, "top", "backend").stdout
    assert top.startswith(f"{PROJECT}-backend-1\nUID") and "httpd -f -p 80" in top
    images = compose(daemon, app, "images").stdout.splitlines()
    assert images[0].split() == ["CONTAINER", "REPOSITORY", "TAG", "IMAGE", "ID", "SIZE"]
    assert {ln.split()[0] for ln in images[1:]} == {f"{PROJECT}-{s}-1" for s in ("web", "backend", "db")}
    assert all(ln.split()[1:3] == ["busybox", "latest"] for ln in images[1:])


def test_exec_and_run(daemon, app):
    r = compose(daemon, app, "exec", "-T", "db", "cat", "/data/boots")
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 1, r.stderr
    r = compose(daemon, app, "run", "--rm", "-T", "--no-deps", "web", "wget", "-q", "-O-", "http://backend/")
    assert (r.returncode, r.stdout) == (0, "hello from backend\n"), r.stderr
    assert not [n for n in ids(daemon, app) if "-run-" in n]  # --rm removed the one-off


def test_up_again_recreates_nothing(daemon, app):
    before = ids(daemon, app)
    r = compose(daemon, app, "up", "-d")
    assert r.returncode == 0, r.stderr
    assert "Recreate" not in r.stderr and "Created" not in r.stderr
    assert ids(daemon, app) == before


def test_a_changed_service_alone_is_recreated(daemon, app):
    r = compose(daemon, app, "exec", "-T", "web", "sh", "-c", "echo kept > /cache/f")
    assert r.returncode == 0, r.stderr
    before = ids(daemon, app)
    r = compose(daemon, app, "up", "-d", env={"FLAVOUR": "spicy"})
    assert r.returncode == 0, r.stderr
    after = ids(daemon, app)
    assert after[f"{PROJECT}-web-1"] != before[f"{PROJECT}-web-1"]
    assert after[f"{PROJECT}-backend-1"] == before[f"{PROJECT}-backend-1"]
    assert after[f"{PROJECT}-db-1"] == before[f"{PROJECT}-db-1"]
    assert "FLAVOUR=spicy" in inspect(daemon, f"{PROJECT}-web-1")["Config"]["Env"]
    # the anonymous volume went over to the new container, as compose does
    assert compose(daemon, app, "exec", "-T", "web", "cat", "/cache/f").stdout == "kept\n"


def test_down_keeps_named_volume_and_down_v_leaves_nothing(daemon, app, tmp_path):
    r = compose(daemon, app, "down")
    assert r.returncode == 0, r.stderr
    assert ids(daemon, app) == {}
    assert pallet(daemon, "network", "inspect", f"{PROJECT}_default").returncode != 0
    assert pallet(daemon, "volume", "inspect", f"{PROJECT}_data").returncode == 0

    r = compose(daemon, app, "up", "-d", "--wait", "db")
    assert r.returncode == 0, r.stderr
    assert f"Container {PROJECT}-db-1  Healthy" in r.stderr
    boots = compose(daemon, app, "exec", "-T", "db", "cat", "/data/boots").stdout
    assert len(boots.splitlines()) == 2  # the volume survived `down`
    # -p without a compose file: the labels say what the project holds
    assert pallet(daemon, "compose", "-p", PROJECT, "ps", "--services", cwd=tmp_path).stdout == "db\n"

    r = compose(daemon, app, "down", "-v")
    assert r.returncode == 0, r.stderr
    label = f"label=com.docker.compose.project={PROJECT}"
    assert pallet(daemon, "ps", "-aq", "--filter", label).stdout == ""
    assert PROJECT not in pallet(daemon, "network", "ls").stdout
    assert PROJECT not in pallet(daemon, "volume", "ls").stdout


def test_bad_files_are_refused_before_anything_is_made(daemon, tmp_path):
    (tmp_path / "compose.yaml").write_text(textwrap.dedent("""
        services:
          a: {image: busybox, depends_on: [b]}
          b: {image: busybox, depends_on: [a]}
    """))
    r = pallet(daemon, "compose", "-p", "badapp", "up", "-d", cwd=tmp_path)
    assert r.returncode != 0 and "dependency cycle: a -> b -> a" in r.stderr
    assert "Traceback" not in r.stderr
    (tmp_path / "compose.yaml").write_text("services: {a: {image: busybox, ports: [[80]]}}\n")
    r = pallet(daemon, "compose", "-p", "badapp", "config", cwd=tmp_path)
    assert r.returncode != 0 and "compose.yaml: services.a.ports[0]: must be" in r.stderr
    assert "badapp" not in pallet(daemon, "network", "ls").stdout


def test_build_then_down_rmi_local(daemon, tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "Dockerfile").write_text(
        "FROM busybox\nARG WORD=plain\nRUN echo \"built $WORD\" > /word\nCMD [\"cat\", \"/word\"]\n")
    (tmp_path / "compose.yaml").write_text(textwrap.dedent("""
        name: ctbuild
        services:
          app:
            build: {context: ./img, args: {WORD: fancy}}
    """))
    r = pallet(daemon, "compose", "up", "-d", "--build", cwd=tmp_path)
    try:
        assert r.returncode == 0, r.stderr
        assert pallet(daemon, "image", "inspect", "ctbuild-app").returncode == 0
        deadline = time.monotonic() + 10
        while "built fancy" not in (out := pallet(daemon, "compose", "logs", cwd=tmp_path).stdout):
            assert time.monotonic() < deadline, out
            time.sleep(0.2)
    finally:
        r = pallet(daemon, "compose", "down", "--rmi", "local", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert pallet(daemon, "image", "inspect", "ctbuild-app").returncode != 0


def test_push_and_pull_through_a_loopback_registry(daemon, tmp_path):
    """build, push to Pallet's own registry server on 127.0.0.1, drop the image, pull it back."""
    server = Server(tmp_path / "registry").start()
    try:
        ref = f"127.0.0.1:{server.port}/ct/app:1"
        (tmp_path / "img").mkdir()
        (tmp_path / "img" / "Dockerfile").write_text("FROM busybox\nRUN echo pushed > /marker\n")
        (tmp_path / "compose.yaml").write_text(textwrap.dedent(f"""
            name: ctpush
            services:
              app: {{build: ./img, image: "{ref}"}}
              plain: {{image: busybox}}
        """))
        r = pallet(daemon, "compose", "build", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        r = pallet(daemon, "compose", "push", cwd=tmp_path)
        assert r.returncode == 0 and f"Image {ref}  Pushed" in r.stderr, r.stderr
        assert "busybox  Pushed" not in r.stderr  # only services that build are pushed
        assert pallet(daemon, "rmi", ref).returncode == 0
        r = pallet(daemon, "compose", "pull", "app", cwd=tmp_path)
        assert r.returncode == 0 and f"Image {ref}  Pulled" in r.stderr, r.stderr
        assert pallet(daemon, "image", "inspect", ref).returncode == 0
    finally:
        pallet(daemon, "rmi", f"127.0.0.1:{server.port}/ct/app:1")
        server.stop()


def test_attached_up_follows_logs_and_stops_on_sigint(daemon, tmp_path):
    import signal

    (tmp_path / "compose.yaml").write_text(textwrap.dedent("""
        name: ctattach
        services:
          talker: {image: busybox, init: true, command: ["sh", "-c", "echo ready; exec sleep 1000"]}
    """))
    up = subprocess.Popen([*PALLET, "-H", daemon, "compose", "up", "--no-color"], cwd=tmp_path,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert up.stdout is not None
        line = up.stdout.readline()
        assert re.fullmatch(r"ctattach-talker-1\s+\| ready\n", line), line
        up.send_signal(signal.SIGINT)  # Ctrl-C: stop the project, as docker compose does
        assert up.wait(30) == 130
        state = inspect(daemon, "ctattach-talker-1")["State"]
        assert state["Status"] == "exited"
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        pallet(daemon, "compose", "down", cwd=tmp_path)
