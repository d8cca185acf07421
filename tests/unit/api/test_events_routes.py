"""GET /events in-process (aiohttp's test server): history with since/until, live messages,
filters, Docker's 400s, and the image events the image routes imply (import, tag, untag, delete,
save)."""

from __future__ import annotations

import asyncio
import io
import json
import tarfile
import time
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pallet.api.server import HostInfo, create_app
from pallet.api.server.backend import ImageBackend
from pallet.engine.events import open_log

HOST = HostInfo(id="test-id", name="testhost", version="0.1.0")


def rootfs_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("etc/hello")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"hi\n"))
    return buf.getvalue()


@pytest.fixture
def backend(tmp_path: Path):
    b = ImageBackend(str(tmp_path / "data"))
    yield b
    b.close()


@pytest.fixture
def app(backend: ImageBackend) -> web.Application:
    return create_app(HOST, images=backend)


def run(app: web.Application, fn):
    async def go():
        async with TestClient(TestServer(app)) as client:
            return await fn(client)

    return asyncio.run(go())


def lines(body: bytes) -> list[dict]:
    return [json.loads(x) for x in body.splitlines() if x.strip()]


def test_image_routes_emit_docker_image_events(app, backend):
    async def go(c: TestClient):
        r = await c.post("/images/create", params={"fromSrc": "-", "repo": "imp:1"}, data=rootfs_tar())
        await r.read()
        await (await c.post("/images/imp:1/tag", params={"repo": "other", "tag": "2"})).read()
        await (await c.get("/images/imp:1/get")).read()
        await (await c.delete("/images/other:2")).read()
        await (await c.delete("/images/imp:1")).read()
        r = await c.get("/v1.50/events", params={"since": "0", "until": str(time.time() + 0.001)})
        return r.status, r.headers["Content-Type"], lines(await r.read())

    status, ctype, events = run(app, go)
    assert status == 200 and ctype.startswith("application/json")
    assert [(e["Type"], e["Action"]) for e in events] == [
        ("image", "import"), ("image", "tag"), ("image", "save"), ("image", "untag"), ("image", "untag"),
        ("image", "delete")]
    image_id = events[0]["Actor"]["ID"]
    assert image_id.startswith("sha256:") and events[0]["status"] == "import" and events[0]["id"] == image_id
    assert events[1]["Actor"]["Attributes"]["name"] == "other:2"
    assert events[3]["Actor"] == {"ID": image_id, "Attributes": {"name": image_id}}
    assert all(e["scope"] == "local" and e["time"] == e["timeNano"] // 10**9 for e in events)


def test_history_filters_and_live_stream(app, backend):
    log = open_log(backend.data_root)
    log.emit("container", "create", "a" * 64, {"name": "web", "image": "busybox"})
    log.emit("container", "start", "a" * 64, {"name": "web", "image": "busybox"})
    log.emit("volume", "create", "data", {"driver": "local"})

    async def go(c: TestClient):
        flt = json.dumps({"type": ["container"], "event": ["start"]})
        r = await c.get("/events", params={"since": "0", "until": str(time.time()), "filters": flt})
        past = lines(await r.read())
        old = json.dumps({"container": {"web": True}})  # the old map form of filters
        r = await c.get("/events", params={"since": "1h", "until": "0s", "filters": old})
        named = lines(await r.read())
        live = await c.get("/events", params={"filters": json.dumps({"type": ["volume"]})})
        assert live.status == 200
        await asyncio.sleep(0.05)
        await asyncio.to_thread(log.emit, "container", "die", "a" * 64, {"name": "web"})
        await asyncio.to_thread(log.emit, "volume", "destroy", "data", {"driver": "local"})
        got = json.loads(await asyncio.wait_for(live.content.readline(), 5))
        live.close()
        return past, named, got

    past, named, got = run(app, go)
    assert [e["Action"] for e in past] == ["start"]
    assert [e["Action"] for e in named] == ["create", "start"]
    assert (got["Type"], got["Action"]) == ("volume", "destroy")


def test_until_in_the_future_ends_the_stream_then(app, backend):
    log = open_log(backend.data_root)

    async def go(c: TestClient):
        t0 = time.monotonic()
        r = await c.get("/events", params={"until": str(time.time() + 0.6)})
        await asyncio.sleep(0.1)
        await asyncio.to_thread(log.emit, "container", "start", "b" * 64, {"name": "x"})
        body = await asyncio.wait_for(r.read(), 5)
        return lines(body), time.monotonic() - t0

    events, took = run(app, go)
    assert [e["Action"] for e in events] == ["start"] and 0.4 < took < 3


@pytest.mark.parametrize(("params", "message"), [
    ({"since": "20", "until": "10"}, "cannot be after `until`"),
    ({"filters": json.dumps({"colour": ["red"]})}, "invalid filter 'colour'"),
    ({"since": "last tuesday"}, "failed to parse value"),
    ({"filters": json.dumps({"type": ["boat"]})}, "type=boat"),
])
def test_bad_requests_are_400(app, params, message):
    async def go(c: TestClient):
        r = await c.get("/events", params=params)
        return r.status, await r.json()

    status, body = run(app, go)
    assert status == 400 and message in body["message"]
