"""The container and exec routes in-process (aiohttp's test server) over a fake Engine that records
its calls: paths, query parsing, Docker's status codes and shapes, the error table, wait's early
headers, logs framing, attach before start from the log, and the stats conversion. No root."""

from __future__ import annotations

import asyncio
import json
import os
import struct
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pallet.api.server import HostInfo, create_app
from pallet.api.server.backend import EngineBackend, EngineCounts, ImageBackend
from pallet.api.server.routes.containers import (
    parse_filters,
    parse_tail,
    parse_timestamp,
)
from pallet.errors import Conflict, InvalidArgument, NotFound

T = TypeVar("T")
HOST = HostInfo(id="test-id", name="testhost", version="0.1.0")
CID = "c" * 64
EID = "e" * 64


class FakeContainer:
    def __init__(self, cid: str) -> None:
        self.id = cid


class FakeEngine:
    """Records every call as (method, args, kwargs); answers from small tables."""

    def __init__(self, tmp: Path) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.tmp = tmp
        self.status = "running"
        self.started_at = "2024-01-01T00:00:00Z"
        self.tty = False
        self.start_result = True
        self.stop_result = True
        self.log_records: list[tuple[str, bytes]] = [("stdout", b"out\n"), ("stderr", b"err\n")]
        self.wait_gate = threading.Event()
        self.wait_gate.set()
        self.removed = False
        self.follow_cancelled = threading.Event()

    def _rec(self, name: str, *args: Any, **kwargs: Any) -> None:
        self.calls.append((name, args, kwargs))

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]

    def get(self, ref: str) -> FakeContainer:
        self._rec("get", ref)
        if ref in ("nosuch",) or self.removed:
            raise NotFound(f"No such container: {ref}")
        return FakeContainer(CID)

    def create(self, config: dict[str, Any], name: str | None = None) -> str:
        self._rec("create", config, name)
        if name == "taken":
            raise Conflict('Conflict. The container name "/taken" is already in use by container "x". '
                           "You have to remove (or rename) that container to be able to reuse that name.")
        return CID

    def inspect(self, ref: str) -> dict[str, Any]:
        self.get(ref)
        return {"Id": CID, "Name": "/web", "Config": {"Tty": self.tty},
                "HostConfig": {"LogConfig": {"Type": "json-file"}},
                "State": {"Status": self.status, "Running": self.status == "running", "Paused": False,
                          "Restarting": False, "StartedAt": self.started_at}}

    def list(self, all: bool = False, filters: Any = None, limit: int = -1) -> list[dict[str, Any]]:
        self._rec("list", all, filters, limit)
        return [{"Id": CID, "Names": ["/web"], "State": self.status, "Created": 1, "Labels": {}}]

    def start(self, ref: str) -> bool:
        self.get(ref)
        self._rec("start", ref)
        return self.start_result

    def stop(self, ref: str, timeout: int | None = None, **kw: Any) -> bool:
        self._rec("stop", ref, timeout, **kw)
        return self.stop_result

    def restart(self, ref: str, timeout: int | None = None, **kw: Any) -> None:
        self._rec("restart", ref, timeout, **kw)

    def resize(self, ref: str, height: int, width: int) -> None:
        self.get(ref)
        self._rec("resize", ref, height, width)

    def prune(self, filters: Any = None) -> list[str]:
        self._rec("prune", filters)
        return [CID] if self.status == "exited" else []

    def kill(self, ref: str, sig: str = "SIGKILL") -> None:
        self._rec("kill", ref, sig)
        if self.status != "running":
            raise Conflict(f"Cannot kill container: {ref}: container {CID} is not running")

    def pause(self, ref: str) -> None:
        self._rec("pause", ref)

    def unpause(self, ref: str) -> None:
        self._rec("unpause", ref)

    def rename(self, ref: str, name: str) -> None:
        self._rec("rename", ref, name)
        if not name:
            raise InvalidArgument("Invalid container name ('')")

    def update(self, ref: str, resources: dict[str, Any]) -> list[str]:
        self._rec("update", ref, resources)
        return []

    def remove(self, ref: str, force: bool = False, volumes: bool = False) -> None:
        self._rec("remove", ref, force, volumes)

    def wait(self, ref: str, condition: str = "not-running", timeout: float | None = None) -> int:
        self._rec("wait", ref, condition)
        self.wait_gate.wait(10)
        return 7

    def logs(self, ref: str, **kw: Any) -> Iterator[tuple[str, bytes]]:
        self._rec("logs", ref, **kw)
        if kw.get("follow"):
            return self._follow(kw["cancel"])
        return iter([r for r in self.log_records if kw.get(r[0], True)])

    def _follow(self, cancel: threading.Event) -> Iterator[tuple[str, bytes]]:
        """A quiet running container: the first record, then nothing until cancelled."""
        yield self.log_records[0]
        while not cancel.wait(0.02):
            pass
        self.follow_cancelled.set()

    def log_path(self, cid: str) -> str:
        return str(self.tmp / f"{cid}-json.log")

    def top(self, ref: str, ps_args: str = "-ef") -> dict[str, Any]:
        self._rec("top", ref, ps_args)
        return {"Titles": ["PID", "CMD"], "Processes": [["1", "sleep"]]}

    def stats(self, ref: str) -> dict[str, Any]:
        self._rec("stats", ref)
        return {"type": "stats", "id": ref, "data": {
            "cpu": {"usage": {"total": 100, "percpu": [60, 40], "kernel": 10, "user": 90}},
            "memory": {"usage": {"usage": 4096, "limit": 8192, "max": 5000, "failcnt": 0},
                       "raw": {"cache": 1}},
            "pids": {"current": 2, "limit": 0}, "blkio": {}}}

    def export(self, ref: str, out: Any) -> None:
        self._rec("export", ref)
        out.write(b"tar-bytes")

    def commit(self, ref: str, repo_tag: str | None = None, **kw: Any) -> str:
        self._rec("commit", ref, repo_tag, **kw)
        return "sha256:" + "a" * 64

    def exec_create(self, ref: str, config: dict[str, Any]) -> str:
        self._rec("exec_create", ref, config)
        return EID

    def exec_start(self, exec_id: str, detach: bool = False) -> Any:
        self._rec("exec_start", exec_id, detach)
        return None

    def exec_inspect(self, exec_id: str) -> dict[str, Any]:
        self._rec("exec_inspect", exec_id)
        if exec_id != EID:
            raise NotFound(f"No such exec instance: {exec_id}")
        return {"ID": EID, "Running": False, "ExitCode": 0, "ProcessConfig": {"tty": False}}


@pytest.fixture
def engine(tmp_path: Path) -> FakeEngine:
    return FakeEngine(tmp_path)


@pytest.fixture
def app(engine: FakeEngine, tmp_path: Path) -> web.Application:
    return create_app(HOST, images=ImageBackend(str(tmp_path / "data")), engine=EngineBackend(engine=engine))


def run(app: web.Application, fn: Callable[[TestClient], Awaitable[T]]) -> T:
    async def go() -> T:
        async with TestClient(TestServer(app)) as client:
            return await fn(client)

    return asyncio.run(go())


def test_create_201_with_name_and_body(app, engine):
    async def go(c):
        r = await c.post("/v1.50/containers/create?name=web", json={"Image": "busybox", "Cmd": ["true"]})
        return r.status, await r.json()

    status, body = run(app, go)
    assert status == 201 and body == {"Id": CID, "Warnings": []}
    assert ("create", ({"Image": "busybox", "Cmd": ["true"]}, "web"), {}) in engine.calls


def test_create_name_conflict_is_409_with_dockers_words(app):
    async def go(c):
        r = await c.post("/containers/create?name=taken", json={"Image": "busybox"})
        return r.status, await r.json()

    status, body = run(app, go)
    assert status == 409 and body["message"].startswith('Conflict. The container name "/taken" is already')


def test_create_needs_a_body_and_json(app):
    async def go(c):
        r1 = await c.post("/containers/create")
        r2 = await c.post("/containers/create", data=b"{bad", headers={"Content-Type": "application/json"})
        r3 = await c.post("/containers/create?platform=windows", json={"Image": "x"})
        return r1.status, r2.status, r3.status

    assert run(app, go) == (400, 400, 400)


def test_lifecycle_statuses(app, engine):
    async def go(c):
        out = []
        for path in ("start", "stop?t=3", "restart?t=1", "kill?signal=SIGTERM", "pause", "unpause",
                     "rename?name=web2"):
            out.append((await c.post(f"/containers/web/{path}")).status)
        return out

    assert run(app, go) == [204, 204, 204, 204, 204, 204, 204]
    assert ("stop", ("web", 3), {}) in engine.calls
    assert ("restart", ("web", 1), {}) in engine.calls
    assert ("kill", ("web", "SIGTERM"), {}) in engine.calls
    assert ("rename", ("web", "web2"), {}) in engine.calls


def test_start_started_and_stop_stopped_are_304(app, engine):
    engine.start_result = engine.stop_result = False

    async def go(c):
        return (await c.post("/containers/web/start")).status, (await c.post("/containers/web/stop")).status

    assert run(app, go) == (304, 304)
    assert ("stop", ("web", None), {}) in engine.calls


def test_no_such_container_is_404(app):
    async def go(c):
        r = await c.get("/containers/nosuch/json")
        return r.status, await r.json(), r.headers["Content-Type"]

    status, body, ctype = run(app, go)
    assert (status, body, ctype) == (404, {"message": "No such container: nosuch"}, "application/json")


def test_kill_of_a_stopped_container_is_409(app, engine):
    engine.status = "exited"

    async def go(c):
        return (await c.post("/containers/web/kill")).status

    assert run(app, go) == 409


def test_list_parses_all_limit_filters(app, engine):
    async def go(c):
        r = await c.get("/containers/json", params={"all": "1", "limit": "2",
                                                    "filters": json.dumps({"status": ["exited"],
                                                                           "label": {"a=b": True}})})
        return r.status, await r.json()

    status, body = run(app, go)
    assert status == 200 and body[0]["Id"] == CID
    assert ("list", (True, {"status": ["exited"], "label": ["a=b"]}, 2), {}) in engine.calls


def test_bad_filters_are_400(app):
    async def go(c):
        return (await c.get("/containers/json?filters=notjson")).status

    assert run(app, go) == 400


def test_delete_force_volumes(app, engine):
    async def go(c):
        return (await c.delete("/containers/web?force=1&v=true")).status

    assert run(app, go) == 204
    assert ("remove", ("web", True, True), {}) in engine.calls


def test_update_drops_the_empty_restart_policy(app, engine):
    async def go(c):
        r = await c.post("/containers/web/update", json={"Memory": 1 << 26, "RestartPolicy": {"Name": ""}})
        return r.status, await r.json()

    assert run(app, go) == (200, {"Warnings": []})
    assert ("update", ("web", {"Memory": 1 << 26}), {}) in engine.calls


def test_wait_sends_headers_before_the_exit(app, engine):
    engine.wait_gate.clear()

    async def go(c):
        r = await c.post("/containers/web/wait?condition=next-exit")
        status = r.status  # the headers arrived while the container still "runs"
        assert not engine.wait_gate.is_set()
        engine.wait_gate.set()
        return status, await r.json()

    assert run(app, go) == (200, {"StatusCode": 7})
    assert ("wait", (CID, "next-exit"), {}) in engine.calls


def test_wait_bad_condition_and_unknown_container(app):
    async def go(c):
        return ((await c.post("/containers/web/wait?condition=bogus")).status,
                (await c.post("/containers/nosuch/wait")).status)

    assert run(app, go) == (400, 404)


def _frames(data: bytes) -> list[tuple[int, bytes]]:
    out = []
    while data:
        stream, size = struct.unpack(">BxxxL", data[:8])
        out.append((stream, data[8:8 + size]))
        data = data[8 + size:]
    return out


def test_logs_multiplexed_without_tty(app, engine):
    async def go(c):
        r = await c.get("/containers/web/logs?stdout=1&stderr=1&tail=10&timestamps=1&since=1700000000.5")
        return r.status, r.headers["Content-Type"], await r.read()

    status, ctype, body = run(app, go)
    assert (status, ctype) == (200, "application/vnd.docker.multiplexed-stream")
    assert _frames(body) == [(1, b"out\n"), (2, b"err\n")]
    kw = next(c[2] for c in engine.calls if c[0] == "logs")
    assert kw["tail"] == 10 and kw["timestamps"] is True and kw["since"] == 1700000000.5


def test_logs_raw_with_tty_and_stream_choice(app, engine):
    engine.tty = True

    async def go(c):
        r = await c.get("/containers/web/logs?stdout=1")
        bad = await c.get("/containers/web/logs")
        return r.headers["Content-Type"], await r.read(), bad.status

    ctype, body, bad = run(app, go)
    assert (ctype, body, bad) == ("application/vnd.docker.raw-stream", b"out\n", 400)


def test_top_stats_export_commit(app, engine):
    async def go(c):
        top = await (await c.get("/containers/web/top?ps_args=aux")).json()
        # stats: routes/stats.py reads the cgroup; tests/unit/engine/test_stats_docker_shape.py
        # and tests/integration/engine/test_stats_events.py cover it.
        st = None
        ex = await c.get("/containers/web/export")
        tar = (ex.headers["Content-Type"], await ex.read())
        cm = await c.post("/commit?container=web&repo=mine&tag=1&comment=m&author=a&pause=0"
                          "&changes=CMD%20%5B%22sh%22%5D")
        return top, st, tar, cm.status, await cm.json()

    top, st, tar, cstatus, cbody = run(app, go)
    assert top["Titles"] == ["PID", "CMD"] and ("top", ("web", "aux"), {}) in engine.calls
    assert st is None
    assert tar == ("application/x-tar", b"tar-bytes")
    assert (cstatus, cbody) == (201, {"Id": "sha256:" + "a" * 64})
    call = next(c for c in engine.calls if c[0] == "commit")
    assert call[1] == ("web", "mine:1")
    assert call[2] == {"author": "a", "message": "m", "changes": ['CMD ["sh"]'], "pause": False}


def test_prune_is_the_engines(app, engine):
    engine.status = "exited"

    async def go(c):
        r = await c.post("/containers/prune", params={"filters": '{"label!": ["keep"], "until": ["1h"]}'})
        engine.status = "running"
        r2 = await c.post("/containers/prune")
        return r.status, await r.json(), await r2.json()

    status, body, none = run(app, go)
    assert status == 200 and body == {"ContainersDeleted": [CID], "SpaceReclaimed": 0}
    assert none == {"ContainersDeleted": None, "SpaceReclaimed": 0}
    assert ("prune", ({"label!": ["keep"], "until": ["1h"]},), {}) in engine.calls


def test_stop_and_restart_pass_the_signal(app, engine):
    async def go(c):
        return [(await c.post("/containers/web/stop?signal=SIGUSR1&t=2")).status,
                (await c.post("/containers/web/restart?signal=HUP")).status]

    assert run(app, go) == [204, 204]
    assert ("stop", ("web", 2), {"signal": "SIGUSR1"}) in engine.calls
    assert ("restart", ("web", None), {"signal": "HUP"}) in engine.calls


def test_a_client_leaving_a_followed_log_cancels_the_engines_follow(app, engine):
    async def go(c):
        r = await c.get("/containers/web/logs?stdout=1&follow=1")
        first = await r.content.readexactly(8 + 4)
        r.close()  # the client hangs up while the container is quiet
        return first, await asyncio.to_thread(engine.follow_cancelled.wait, 5)

    first, cancelled = run(app, go)
    assert first[8:] == b"out\n" and cancelled


def test_resize_reaches_the_engine(app, engine):
    async def go(c):
        return (await c.post("/containers/web/resize?h=24&w=80")).status, \
            (await c.post("/containers/nosuch/resize?h=1&w=1")).status, \
            (await c.post("/containers/web/resize?h=x&w=1")).status

    assert run(app, go) == (200, 404, 400)
    assert ("resize", ("web", 24, 80), {}) in engine.calls


def test_exec_create_detached_start_inspect(app, engine):
    async def go(c):
        r = await c.post("/containers/web/exec", json={"Cmd": ["echo", "hi"], "AttachStdout": True})
        created = (r.status, await r.json())
        s = await c.post(f"/exec/{EID}/start", json={"Detach": True})
        i = await c.get(f"/exec/{EID}/json")
        missing = await c.get("/exec/nosuch/json")
        return created, s.status, (await i.json())["ExitCode"], missing.status

    assert run(app, go) == ((201, {"Id": EID}), 200, 0, 404)
    assert ("exec_start", (EID, True), {}) in engine.calls


async def _hijack(c: TestClient, path: str) -> tuple[bytes, asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw upgrade request, as the docker CLI sends it; returns the response head."""
    reader, writer = await asyncio.open_connection(c.server.host, c.server.port)
    writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
                 "Content-Length: 0\r\n\r\n".encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    return head, reader, writer


def test_attach_before_start_follows_the_log(app, engine):
    """A created container: the attach answers 101 at once, and output written to the log after
    the 'start' reaches the client, which ends when the container exits."""
    engine.status = "created"
    log_path = engine.log_path(CID)

    async def go(c):
        head, reader, writer = await _hijack(c, "/containers/web/attach?stream=1&stdout=1&stderr=1")
        assert head.startswith(b"HTTP/1.1 101 UPGRADED")
        assert b"application/vnd.docker.multiplexed-stream" in head
        with open(log_path, "a") as f:
            f.write(json.dumps({"log": "hi\n", "stream": "stdout", "time": "2024-01-01T00:00:01Z"}) + "\n")
            f.write(json.dumps({"log": "oops\n", "stream": "stderr", "time": "2024-01-01T00:00:01Z"}) + "\n")
        engine.status = "exited"
        engine.started_at = "2024-01-01T00:00:01Z"
        body = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        return body

    assert _frames(run(app, go)) == [(1, b"hi\n"), (2, b"oops\n")]


def test_attach_to_a_removed_container_ends_with_what_the_log_held(app, engine):
    engine.status = "created"
    log_path = engine.log_path(CID)

    async def go(c):
        _head, reader, writer = await _hijack(c, "/containers/web/attach?stream=1&stdout=1")
        with open(log_path, "a") as f:
            f.write(json.dumps({"log": "bye\n", "stream": "stdout", "time": "2024-01-01T00:00:01Z"}) + "\n")
            f.write(json.dumps({"log": "skip\n", "stream": "stderr", "time": "2024-01-01T00:00:01Z"}) + "\n")
        os.unlink(log_path)
        engine.removed = True  # AutoRemove
        body = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        return body

    assert _frames(run(app, go)) == [(1, b"bye\n")]


def test_info_counts_from_engine(engine, tmp_path):
    counts = EngineCounts(EngineBackend(engine=engine), ImageBackend(str(tmp_path / "d")))
    c = counts.containers()
    assert (c.total, c.running, c.paused, c.stopped) == (1, 1, 0, 0)


def test_engine_not_running_is_503(tmp_path):
    app = create_app(HOST, images=ImageBackend(str(tmp_path / "data")))

    async def go(c):
        return (await c.get("/containers/json")).status

    assert run(app, go) == 503


def test_pure_parsers():
    assert parse_filters('{"a": {"x": true, "y": false}}') == {"a": ["x"]}
    assert parse_tail("all") is None and parse_tail("5") == 5
    assert parse_timestamp("0", "since") is None
    assert parse_timestamp("1970-01-01T00:00:10Z", "since") == 10.0
    with pytest.raises(InvalidArgument):
        parse_tail("x")


