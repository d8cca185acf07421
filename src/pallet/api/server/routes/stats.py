"""`GET /containers/{id}/stats` (v1.50.yaml ContainerStats): Docker's stats, from the container's cgroup.

The samples come from pallet.engine.stats (cgroup v1 and v2, network counters of the container's
interfaces). As dockerd (daemon/stats.go, daemon/stats/collector.go):
- `stream=true` (the default): a 200, then one sample per second, each carrying the previous
  one's cpu_stats as precpu_stats, until the client leaves or the container is removed. A stopped
  container gets zeroed samples (its name and id only), as dockerd's collector publishes.
- `stream=false`: one answer; with `one-shot=false` (default) it waits for a second sample a
  second later so precpu_stats is filled (what `docker stats --no-stream` shows a CPU % from);
  `one-shot=true` answers at once with empty precpu_stats. A container that is not running
  answers at once with the zeroed sample (200), as dockerd.
- `stream=true&one-shot=true` is a 400, as dockerd.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from pallet.api.server.app import ENGINE_KEY, Router
from pallet.api.server.requests import bool_value
from pallet.engine.stats import ZERO_TIME, container_stats
from pallet.errors import InvalidArgument, NotFound

INTERVAL = 1.0  # dockerd's collector interval


def register(router: Router) -> None:
    router.add("GET", "/containers/{id}/stats", stats)


async def stats(request: web.Request) -> web.StreamResponse:
    stream = bool_value(request, "stream", True)
    one_shot = bool_value(request, "one-shot")
    if one_shot and stream:
        raise InvalidArgument("cannot have stream=true and one-shot=true")
    engine = request.app[ENGINE_KEY].get()
    cid = (await asyncio.to_thread(engine.get, request.match_info["id"])).id

    async def sample(pre: dict[str, Any] | None) -> dict[str, Any]:
        return await asyncio.to_thread(container_stats, engine, cid, pre)

    if not stream:
        first = await sample(None)
        if not one_shot and first["read"] != ZERO_TIME:
            await asyncio.sleep(INTERVAL)
            second = await sample(first)
            if second["read"] != ZERO_TIME:  # it may have stopped in between
                first = second
        return web.json_response(first)
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    await response.prepare(request)
    pre: dict[str, Any] | None = None
    try:
        while True:
            try:
                cur = await sample(pre)
            except NotFound:
                break  # removed: the stream ends, as dockerd's
            await response.write((json.dumps(cur) + "\n").encode())
            pre = cur if cur["read"] != ZERO_TIME else None
            await asyncio.sleep(INTERVAL)
            transport = request.transport
            if transport is None or transport.is_closing():
                return response
    except (ConnectionResetError, BrokenPipeError):
        return response
    await response.write_eof()
    return response
