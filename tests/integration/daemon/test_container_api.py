"""Containers end to end over the Docker API: palletd as a real process (private data and exec
roots, containers under the cgroup parent /pallet-test-<random>), busybox bootstrapped through
POST /pallet/images/bootstrap, then create/start/wait/logs/inspect/stop/rm, exec with output and
exit code, attach (before and after start), commit, export, top, stats and prune.

Safety: every container is removed through the API (rm -f) before palletd stops; the cgroup
parent is then removed from every hierarchy."""

from __future__ import annotations

import http.client
import io
import json
import os
import socket
import struct
import tarfile
import uuid
from pathlib import Path
from typing import Any

import pytest
from palletd_support import palletd

from pallet_testlib import rm_cgroups

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (overlay mounts, namespaces, cgroups)"),
    pytest.mark.skipif(not os.access("/bin/busybox", os.X_OK),
                       reason="needs Debian's busybox-static (/bin/busybox) to bootstrap busybox"),
]


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 60) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


class Api:
    def __init__(self, sock: Path) -> None:
        self.sock = str(sock)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, bytes, dict[str, str]]:
        conn = UnixHTTP(self.sock)
        try:
            data = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json"} if data is not None else {}
            conn.request(method, "/v1.50" + path, body=data, headers=headers)
            r = conn.getresponse()
            return r.status, r.read(), dict(r.getheaders())
        finally:
            conn.close()

    def json(self, method: str, path: str, body: Any = None, want: int = 200) -> Any:
        status, data, _ = self.call(method, path, body)
        assert status == want, f"{method} {path}: {status} {data!r}"
        return json.loads(data) if data.strip() else None

    def hijack(self, path: str, stdin: bytes = b"") -> socket.socket:
        """Sends an upgrade request; returns the socket positioned after the 101 head."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(60)
        s.connect(self.sock)
        s.sendall(f"POST /v1.50{path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
                  "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(1)
            assert chunk, head
            head += chunk
        assert head.startswith(b"HTTP/1.1 101"), head
        if stdin:
            s.sendall(stdin)
            s.shutdown(socket.SHUT_WR)
        return s

    def create(self, *cmd: str, name: str | None = None, **config: Any) -> str:
        q = f"?name={name}" if name else ""
        out = self.json("POST", f"/containers/create{q}", {"Image": "busybox", "Cmd": list(cmd), **config},
                        want=201)
        return str(out["Id"])


def read_all(s: socket.socket) -> bytes:
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return out
        out += chunk


def demux(data: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {1: b"", 2: b""}
    while data:
        stream, size = struct.unpack(">BxxxL", data[:8])
        out[stream] = out.get(stream, b"") + data[8:8 + size]
        data = data[8 + size:]
    return out


@pytest.fixture(scope="module")
def api():
    parent = f"/pallet-test-{uuid.uuid4().hex[:8]}"
    try:
        with palletd("--cgroup-parent", parent) as d:
            a = Api(d.socket)
            status, body, _ = a.call("POST", "/pallet/images/bootstrap?name=busybox")
            assert status == 200 and b"Bootstrapped busybox" in body, body
            try:
                yield a
            finally:
                for c in a.json("GET", "/containers/json?all=1"):
                    a.call("DELETE", f"/containers/{c['Id']}?force=1")
    finally:
        rm_cgroups(parent)


def test_lifecycle_create_start_wait_logs_inspect_rm(api: Api):
    cid = api.create("sh", "-c", "echo out; echo err >&2; exit 3", name="life")
    assert api.json("GET", "/containers/life/json")["State"]["Status"] == "created"
    assert api.call("POST", f"/containers/{cid}/start")[0] == 204
    assert api.json("POST", f"/containers/{cid}/wait") == {"StatusCode": 3}
    status, data, headers = api.call("GET", f"/containers/{cid}/logs?stdout=1&stderr=1")
    assert headers["Content-Type"] == "application/vnd.docker.multiplexed-stream"
    assert demux(data) == {1: b"out\n", 2: b"err\n"}
    info = api.json("GET", "/containers/life/json")
    assert info["State"]["Status"] == "exited" and info["State"]["ExitCode"] == 3 and info["Name"] == "/life"
    conflict = api.call("POST", "/containers/create?name=life", {"Image": "busybox"})
    assert conflict[0] == 409 and b'The container name \\"/life\\" is already in use' in conflict[1]
    assert api.call("POST", f"/containers/{cid}/stop")[0] == 304
    assert api.call("DELETE", f"/containers/{cid}")[0] == 204
    status, data, _ = api.call("GET", f"/containers/{cid}/json")
    assert status == 404 and json.loads(data) == {"message": f"No such container: {cid}"}


def test_running_container_exec_top_stats_stop(api: Api):
    cid = api.create("sleep", "1000", name="runner")
    assert api.call("POST", f"/containers/{cid}/start")[0] == 204
    assert api.call("POST", f"/containers/{cid}/start")[0] == 304
    assert [c["Id"] for c in api.json("GET", "/containers/json")] == [cid]
    eid = api.json("POST", f"/containers/{cid}/exec",
                   {"Cmd": ["sh", "-c", "echo hi; echo no >&2; exit 4"], "AttachStdout": True,
                    "AttachStderr": True}, want=201)["Id"]
    s = api.hijack(f"/exec/{eid}/start")
    assert demux(read_all(s)) == {1: b"hi\n", 2: b"no\n"}
    s.close()
    assert api.json("GET", f"/exec/{eid}/json")["ExitCode"] == 4
    eid = api.json("POST", f"/containers/{cid}/exec", {"Cmd": ["cat"], "AttachStdin": True,
                                                       "AttachStdout": True}, want=201)["Id"]
    s = api.hijack(f"/exec/{eid}/start", stdin=b"fed\n")
    assert demux(read_all(s))[1] == b"fed\n"
    s.close()
    top = api.json("GET", f"/containers/{cid}/top")
    assert "CMD" in top["Titles"] and any("sleep 1000" in " ".join(p) for p in top["Processes"])
    st = api.json("GET", f"/containers/{cid}/stats?stream=false&one-shot=true")
    assert st["cpu_stats"]["cpu_usage"]["total_usage"] > 0 and st["cpu_stats"]["system_cpu_usage"] > 0
    assert st["memory_stats"]["usage"] > 0 and st["pids_stats"]["current"] == 1
    assert api.call("POST", f"/containers/{cid}/pause")[0] == 204
    assert api.json("GET", f"/containers/{cid}/json")["State"]["Status"] == "paused"
    assert api.call("POST", f"/containers/{cid}/unpause")[0] == 204
    assert api.call("POST", f"/containers/{cid}/stop?t=1")[0] == 204
    assert api.json("GET", f"/containers/{cid}/json")["State"]["ExitCode"] == 137
    assert api.call("DELETE", f"/containers/{cid}")[0] == 204


def test_attach_before_start_gets_all_output_of_an_autoremoved_container(api: Api):
    """docker run's order: attach, wait (headers first), start; AutoRemove deletes the container."""
    cid = api.create("echo", "hi", HostConfig={"AutoRemove": True})
    s = api.hijack(f"/containers/{cid}/attach?stream=1&stdout=1&stderr=1")
    conn = UnixHTTP(api.sock)
    conn.request("POST", f"/v1.50/containers/{cid}/wait?condition=removed")
    waiting = conn.getresponse()  # the headers come before the container even starts
    assert waiting.status == 200
    assert api.call("POST", f"/containers/{cid}/start")[0] == 204
    assert demux(read_all(s)) == {1: b"hi\n", 2: b""}
    assert json.loads(waiting.read()) == {"StatusCode": 0}
    conn.close()
    assert api.call("GET", f"/containers/{cid}/json")[0] == 404


def test_attach_with_stdin_before_start(api: Api):
    cid = api.create("cat", OpenStdin=True, StdinOnce=True, AttachStdin=True)
    s = api.hijack(f"/containers/{cid}/attach?stream=1&stdin=1&stdout=1&stderr=1")
    assert api.call("POST", f"/containers/{cid}/start")[0] == 204
    s.sendall(b"through stdin\n")
    s.shutdown(socket.SHUT_WR)
    assert demux(read_all(s))[1] == b"through stdin\n"
    assert api.json("POST", f"/containers/{cid}/wait") == {"StatusCode": 0}
    api.call("DELETE", f"/containers/{cid}")


def test_attach_to_a_running_container(api: Api):
    cid = api.create("sh", "-c", "sleep 1; echo late")
    api.call("POST", f"/containers/{cid}/start")
    s = api.hijack(f"/containers/{cid}/attach?stream=1&stdout=1&stderr=1")
    assert demux(read_all(s))[1] == b"late\n"
    api.call("DELETE", f"/containers/{cid}?force=1")


def test_detach_keys_end_the_attach_and_the_container_runs_on(api: Api):
    cid = api.create("cat", Tty=True, OpenStdin=True)
    api.call("POST", f"/containers/{cid}/start")
    for query, keys in (("", b"\x10\x11"), ("&detachKeys=ctrl-a,d", b"\x01d")):  # ctrl-p,ctrl-q by default
        s = api.hijack(f"/containers/{cid}/attach?stream=1&stdin=1&stdout=1{query}")
        s.sendall(b"typed\n")
        seen = b""
        while b"typed" not in seen:
            seen += s.recv(4096)
        s.sendall(keys)
        read_all(s)  # returns: the daemon ended the stream
        s.close()
        assert api.json("GET", f"/containers/{cid}/json")["State"]["Running"] is True
    assert api.call("POST", f"/containers/{cid}/attach?stream=1&stdin=1&detachKeys=ctrl-%3F")[0] == 400
    api.call("DELETE", f"/containers/{cid}?force=1")


def test_size_of_the_writable_layer(api: Api):
    cid = api.create("sh", "-c", "head -c 5000 /dev/zero > /f")
    api.call("POST", f"/containers/{cid}/start")
    assert api.json("POST", f"/containers/{cid}/wait") == {"StatusCode": 0}
    info = api.json("GET", f"/containers/{cid}/json?size=1")
    assert 5000 <= info["SizeRw"] < 5000 + 4096 and info["SizeRootFs"] > info["SizeRw"]
    listed = {c["Id"]: c for c in api.json("GET", "/containers/json?all=1&size=true")}
    assert listed[cid]["SizeRw"] == info["SizeRw"]
    assert "SizeRw" not in api.json("GET", f"/containers/{cid}/json")
    api.call("DELETE", f"/containers/{cid}")


def test_commit_export_rename_prune(api: Api):
    cid = api.create("sh", "-c", "echo made > /made", name="builder")
    api.call("POST", f"/containers/{cid}/start")
    api.json("POST", f"/containers/{cid}/wait")
    changes = "CMD%20%5B%22cat%22%2C%22%2Fmade%22%5D"  # CMD ["cat","/made"]
    out = api.json("POST", f"/commit?container=builder&repo=committed&tag=v1&changes={changes}", want=201)
    assert out["Id"].startswith("sha256:")
    status, data, headers = api.call("GET", f"/containers/{cid}/export")
    assert status == 200 and headers["Content-Type"] == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        made = tar.extractfile("made")
        assert made is not None and made.read() == b"made\n"
    assert api.call("POST", f"/containers/{cid}/rename?name=builder2")[0] == 204
    assert api.json("GET", "/containers/builder2/json")["Id"] == cid
    second = api.json("POST", "/containers/create", {"Image": "committed:v1"}, want=201)["Id"]
    api.call("POST", f"/containers/{second}/start")
    api.json("POST", f"/containers/{second}/wait")
    _, logs, _ = api.call("GET", f"/containers/{second}/logs?stdout=1")
    assert demux(logs)[1] == b"made\n"
    pruned = api.json("POST", "/containers/prune")
    assert {cid, second} <= set(pruned["ContainersDeleted"])
    assert api.call("GET", f"/containers/{cid}/json")[0] == 404


def test_info_counts(api: Api):
    cid = api.create("sleep", "100")
    api.call("POST", f"/containers/{cid}/start")
    info = api.json("GET", "/info")
    assert info["Containers"] >= 1 and info["ContainersRunning"] >= 1 and info["Images"] >= 1
    api.call("DELETE", f"/containers/{cid}?force=1")
