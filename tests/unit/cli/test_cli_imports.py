"""The container verbs' whole path, parse to exit, imports no heavy module (issue 4: `pallet run`
must start fast): each verb runs in a fresh `python -S` (as the `pallet` launcher) against a
scripted daemon, then reports which of the modules below it loaded."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import pallet
from pallet_testlib import FakeDaemon

# Each costs a millisecond or more of start-up; none is needed to run or list containers.
HEAVY = ("argparse", "re", "enum", "json", "typing", "dataclasses", "asyncio", "aiohttp", "gettext",
         "locale", "collections", "urllib.parse", "socket", "selectors", "shutil", "threading",
         "datetime", "http.client", "email", "ssl", "signal", "contextlib", "functools", "inspect",
         "importlib.util", "pallet.api.server", "pallet.engine", "pallet.image", "pallet.runtime",
         "pallet.network", "pallet.registry")

CID = "c0ffee" * 10 + "abcd"
SUMMARY = {"Id": CID, "Names": ["/web"], "Image": "busybox", "Command": "sh", "Created": 1700000000,
           "State": "running", "Status": "Up 2 minutes", "Ports": [], "Labels": {}, "Mounts": []}
INSPECT = {"Id": CID, "Name": "/web", "Config": {"Tty": False, "OpenStdin": False},
           "HostConfig": {"AutoRemove": False}, "State": {"Status": "running"}}


class Daemon(FakeDaemon):
    """Answers the requests of the container verbs as palletd does (shapes of v1.50.yaml)."""

    def __init__(self, path: Path) -> None:
        self.started = threading.Event()
        super().__init__(path, self._handle)

    @staticmethod
    def _json(conn: socket.socket, status: str, body: object) -> None:
        data = json.dumps(body).encode()
        conn.sendall(b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                     % (status.encode(), len(data), data))

    def _handle(self, method: str, target: str, _headers: dict[str, str], _body: bytes,
                conn: socket.socket) -> None:
        path = target.split("?")[0]
        what = path.rsplit("/", 1)[-1]
        if path == "/_ping":
            conn.sendall(b"HTTP/1.1 200 OK\r\nApi-Version: 1.50\r\nContent-Length: 2\r\n\r\nOK")
        elif what == "create" and "/exec" not in path:
            self._json(conn, "201 Created", {"Id": CID, "Warnings": []})
        elif what == "exec":
            self._json(conn, "201 Created", {"Id": "e" * 64})
        elif what == "wait" and "condition=" in target:
            # `run`'s wait, posted before the start: headers once armed (as dockerd), the
            # status once the container ran
            self.send_chunked_wait(conn, self.started, 3)
        elif what == "wait":
            self._json(conn, "200 OK", {"StatusCode": 3})
        elif what == "attach" or (what == "start" and "/exec/" in path):
            conn.sendall(b"HTTP/1.1 101 UPGRADED\r\n"
                         b"Content-Type: application/vnd.docker.multiplexed-stream\r\n"
                         b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
            self.started.wait(10) if what == "attach" else None
            conn.sendall(b"\x01\x00\x00\x00\x00\x00\x00\x03hi\n")
        elif what in ("start", "stop", "kill", "restart") or method == "DELETE":
            conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")
            self.started.set()
        elif path.endswith("/version"):
            self._json(conn, "200 OK", {"Platform": {"Name": "Pallet"}, "Components": [
                {"Name": "Engine", "Version": "0.1.0", "Details": {"ApiVersion": "1.50"}}]})
        elif path.endswith("/containers/json"):
            self._json(conn, "200 OK", [SUMMARY])
        elif path.startswith("/v1.50/exec/") and what == "json":
            self._json(conn, "200 OK", {"ExitCode": 4, "Running": False})
        elif what == "json":
            self._json(conn, "200 OK", INSPECT)
        elif what == "logs":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.multiplexed-stream\r\n"
                         b"Connection: close\r\n\r\n\x01\x00\x00\x00\x00\x00\x00\x03hi\n")
        else:
            self._json(conn, "404 Not Found", {"message": f"no route {path}"})


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    d = Daemon(tmp_path / "d.sock")
    yield d
    d.close()


SRC = str(Path(pallet.__file__).resolve().parent.parent)
PROBE = ("import sys\n"
         "sys.path.insert(0, {src!r})\n"
         "before = set(sys.modules)\n"
         "import pallet.cli.main as m\n"
         "try:\n"
         "    code = m._main(sys.argv[1:])\n"
         "except SystemExit as exc:\n"
         "    code = exc.code\n"
         "sys.stdout.flush()\n"
         "heavy = {heavy!r}\n"
         "new = set(sys.modules) - before\n"
         "found = sorted(n for n in new if n in heavy or any(n.startswith(h + '.') for h in heavy))\n"
         "sys.stderr.write('HEAVY ' + ' '.join(found) + '\\n')\n"
         "sys.exit(code)\n")


def run_cli(daemon: Daemon, tmp_path: Path, *argv: str) -> tuple[int, str, list[str]]:
    """(exit status, stdout, heavy modules loaded) of `pallet ARGV` in a fresh interpreter."""
    env = {"PALLET_HOST": f"unix://{daemon.path}", "XDG_RUNTIME_DIR": str(tmp_path / "run"),
           "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-S", "-c", PROBE.format(src=SRC, heavy=HEAVY), *argv],
                         capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)
    lines = out.stderr.splitlines()
    heavy = [ln for ln in lines if ln.startswith("HEAVY")]
    assert heavy, out.stderr
    return out.returncode, out.stdout, heavy[-1].split()[1:]


@pytest.mark.parametrize(("argv", "status", "stdout"), [
    (["version"], 0, None),
    (["run", "--rm", "--network", "none", "busybox", "true"], 3, "hi\n"),
    (["run", "-d", "--name", "web", "-e", "A=1", "-p", "80:80", "-m", "64m", "busybox", "sleep", "9"], 0,
     CID + "\n"),
    (["create", "--name", "web", "busybox", "sh", "-c", "sleep 9"], 0, CID + "\n"),
    (["start", "web"], 0, "web\n"),
    (["start", "-a", "web"], 3, "hi\n"),
    (["ps"], 0, None),
    (["ps", "-aq"], 0, CID[:12] + "\n"),
    (["stop", "-t", "1", "web"], 0, "web\n"),
    (["kill", "web"], 0, "web\n"),
    (["rm", "-f", "web"], 0, "web\n"),
    (["wait", "web"], 0, "3\n"),
    (["exec", "web", "true"], 4, "hi\n"),
    (["logs", "web"], 0, "hi\n"),
    (["inspect", "web"], 0, None),
    (["inspect", "-f", "{{.State.Status}} {{json .Config}}", "web"], 0,
     'running {"Tty":false,"OpenStdin":false}\n'),
    (["ps", "--format", "table {{.ID}}\t{{.Names}}"], 0, f"CONTAINER ID   NAMES\n{CID[:12]}   web\n"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_container_verbs_load_no_heavy_module(daemon, tmp_path, argv, status, stdout):
    code, out, heavy = run_cli(daemon, tmp_path, *argv)
    assert code == status, out
    if stdout is not None:
        assert out == stdout
    assert heavy == [], f"`pallet {' '.join(argv)}` imported {heavy}"


def test_ps_table_and_inspect_json_are_right(daemon, tmp_path):
    _, out, _ = run_cli(daemon, tmp_path, "ps")
    header, row = out.splitlines()
    assert header.split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
    assert row.startswith(CID[:12]) and row.endswith("web")
    _, out, _ = run_cli(daemon, tmp_path, "inspect", "web")
    assert json.loads(out) == [INSPECT]
    assert out == json.dumps([INSPECT], indent=4) + "\n"


def test_the_probe_sees_a_heavy_module(daemon, tmp_path):
    """The check itself works: `--help` goes to argparse (and re, enum...), the probe says so."""
    code, out, heavy = run_cli(daemon, tmp_path, "rm", "--help")
    assert code == 0 and "Remove one or more containers" in out
    assert {"argparse", "re", "enum"} <= set(heavy)
