"""Live restore through the daemon: palletd is killed with SIGKILL while containers run, a new
palletd on the same roots finds them again (issue 4's "Shown by").

One container prints a numbered line every 0.2 s: its processes and its log outlive the daemon,
the new daemon reports it Running with the same pid, its logs have no gap, and a later stop is
recorded. A second container exits (code 7) while no daemon runs: the new daemon records that exit.

Safety: palletd runs on private roots under /tmp with the cgroup parent /pallet-test-<random>;
daemons are stopped by pid, containers removed through the API (rm -f), the cgroup parent removed
from every hierarchy."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import struct
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from palletd_support import palletd, wait_for

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (overlay mounts, namespaces, cgroups)"),
    pytest.mark.skipif(not os.access("/bin/busybox", os.X_OK),
                       reason="needs Debian's busybox-static (/bin/busybox) to bootstrap busybox"),
]

TICKER = "i=0; while :; do echo line$i; i=$((i+1)); sleep 0.2; done"


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 60) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def call(sock: Path, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
    conn = UnixHTTP(str(sock))
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, "/v1.50" + path, body=data,
                     headers={"Content-Type": "application/json"} if data is not None else {})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def api(sock: Path, method: str, path: str, body: Any = None, want: int = 200) -> Any:
    status, data = call(sock, method, path, body)
    assert status == want, f"{method} {path}: {status} {data!r}"
    return json.loads(data) if data.strip() else None


def demux(data: bytes) -> bytes:
    out = b""
    while data:
        _stream, size = struct.unpack(">BxxxL", data[:8])
        out += data[8:8 + size]
        data = data[8 + size:]
    return out


def numbers(sock: Path, cid: str) -> list[int]:
    status, data = call(sock, "GET", f"/containers/{cid}/logs?stdout=1&stderr=1")
    assert status == 200, data
    return [int(line.removeprefix(b"line")) for line in demux(data).splitlines()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as f:
        return f.read().split(") ", 1)[1][0] != "Z"
    return False


def _rm_cgroups(parent: str) -> None:
    from pallet.cgroups import create_cgroup_manager

    with contextlib.suppress(Exception):
        create_cgroup_manager(parent).destroy()


@pytest.fixture
def roots():
    root = Path(tempfile.mkdtemp(prefix="plr", dir="/tmp"))
    parent = f"/pallet-test-{uuid.uuid4().hex[:8]}"
    try:
        yield root, parent
    finally:
        # Whatever survived a failure: a daemon on the roots removes its containers.
        with contextlib.suppress(Exception), palletd("--cgroup-parent", parent, root=root) as d:
            for c in api(d.socket, "GET", "/containers/json?all=1"):
                call(d.socket, "DELETE", f"/containers/{c['Id']}?force=1")
        _rm_cgroups(parent)
        shutil.rmtree(root, ignore_errors=True)


def test_containers_survive_sigkill_of_palletd(roots):
    root, parent = roots
    with palletd("--cgroup-parent", parent, root=root) as d1:
        status, body = call(d1.socket, "POST", "/pallet/images/bootstrap?name=busybox")
        assert status == 200 and b"Bootstrapped busybox" in body, body
        ticker = api(d1.socket, "POST", "/containers/create?name=ticker",
                     {"Image": "busybox", "Cmd": ["sh", "-c", TICKER]}, want=201)["Id"]
        short = api(d1.socket, "POST", "/containers/create?name=short",
                    {"Image": "busybox", "Cmd": ["sh", "-c", "sleep 2; exit 7"]}, want=201)["Id"]
        for cid in (ticker, short):
            assert call(d1.socket, "POST", f"/containers/{cid}/start")[0] == 204
        info = api(d1.socket, "GET", f"/containers/{ticker}/json")
        pid, log_path = info["State"]["Pid"], info["LogPath"]
        short_pid = api(d1.socket, "GET", f"/containers/{short}/json")["State"]["Pid"]
        wait_for(lambda: len(numbers(d1.socket, ticker)) >= 3, what="the first lines")
        os.kill(d1.proc.pid, signal.SIGKILL)
        d1.proc.wait(10)

    # No daemon: the ticker runs on, its monitor keeps writing the log; "short" exits.
    assert alive(pid)
    size = os.path.getsize(log_path)
    wait_for(lambda: os.path.getsize(log_path) > size, timeout=5, what="the log to grow without palletd")
    wait_for(lambda: not alive(short_pid), timeout=10, what="short to exit while palletd is down")
    time.sleep(0.5)

    with palletd("--cgroup-parent", parent, root=root) as d2:
        info = api(d2.socket, "GET", f"/containers/{ticker}/json")
        assert info["State"]["Status"] == "running" and info["State"]["Running"] is True
        assert info["State"]["Pid"] == pid
        st = api(d2.socket, "GET", f"/containers/{short}/json")["State"]
        assert st["Status"] == "exited" and st["ExitCode"] == 7 and st["Error"] == ""
        assert not st["FinishedAt"].startswith("0001-")
        running = api(d2.socket, "GET", "/containers/json")
        assert [c["Id"] for c in running] == [ticker]

        # The logs continue, without a gap across the daemon's death.
        before = numbers(d2.socket, ticker)
        wait_for(lambda: len(numbers(d2.socket, ticker)) > len(before) + 2, what="the logs to continue")
        seen = numbers(d2.socket, ticker)
        assert seen == list(range(len(seen)))

        # A followed log and a wait through the new daemon see the stop.
        conn = UnixHTTP(str(d2.socket))
        conn.request("POST", f"/v1.50/containers/{ticker}/wait")
        waiting = conn.getresponse()
        assert waiting.status == 200
        follow = UnixHTTP(str(d2.socket))
        follow.request("GET", f"/v1.50/containers/{ticker}/logs?stdout=1&follow=1&tail=0")
        followed = follow.getresponse()
        assert followed.status == 200
        assert call(d2.socket, "POST", f"/containers/{ticker}/stop?t=1")[0] == 204
        assert demux(followed.read()).startswith(b"line")  # ends with the container
        follow.close()
        code = json.loads(waiting.read())["StatusCode"]
        conn.close()
        st = api(d2.socket, "GET", f"/containers/{ticker}/json")["State"]
        assert st["Status"] == "exited" and st["ExitCode"] == code
        assert code in (137, 143)  # sh as pid 1 ignores SIGTERM: SIGKILL after 1 s
        assert not alive(pid)
        final = numbers(d2.socket, ticker)
        assert final == list(range(len(final))) and len(final) >= len(seen)
        for cid in (ticker, short):
            assert call(d2.socket, "DELETE", f"/containers/{cid}")[0] == 204
