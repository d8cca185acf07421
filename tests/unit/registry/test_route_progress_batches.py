"""The registry routes' progress stream (routes/registry.py `_stream`): messages a worker thread
sends in bursts and with pauses reach the client complete and in order, batched, and the last
ones are not held back by the batching delay."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pallet.api.server.routes import registry as routes


def _run(work: Any, finish: Any = None) -> tuple[list[dict[str, Any]], float]:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await routes._stream(request, work, finish)

    async def go() -> tuple[list[dict[str, Any]], float]:
        app = web.Application()
        app.router.add_post("/p", handler)
        async with TestClient(TestServer(app)) as client:
            resp = await client.post("/p")
            assert resp.status == 200
            body = await resp.read()
            done = time.monotonic()
        return [json.loads(line) for line in body.splitlines() if line.strip()], done

    return asyncio.run(go())


def test_bursts_and_pauses_arrive_complete_and_in_order():
    def work(send: Any) -> str:
        for i in range(300):
            send({"status": "burst", "n": i})
        time.sleep(0.05)
        for i in range(300, 310):
            send({"status": "slow", "n": i})
            time.sleep(0.005)
        return "done"

    msgs, _ = _run(work, finish=lambda result: [{"status": result}])
    assert [m.get("n") for m in msgs[:-1]] == list(range(310))
    assert msgs[-1] == {"status": "done"}


def test_the_last_messages_are_not_delayed_by_the_batching(monkeypatch):
    # A batching delay far longer than the work: the stream must still end as soon as the
    # work does (its end delivers what is pending at once), with every message.
    monkeypatch.setattr(routes, "BATCH_DELAY", 30.0)
    started = time.monotonic()

    def work(send: Any) -> None:
        send({"status": "first"})
        time.sleep(0.05)
        send({"status": "last"})

    msgs, done = _run(work)
    assert [m["status"] for m in msgs] == ["first", "last"]
    assert done - started < 10.0
