"""Volume routes: the Docker Engine API's `/volumes*` (v1.50.yaml, tag "Volume").

Each handler parses the request, calls the engine's `VolumeStore` (pallet.engine.volumes; the
engine knows which containers use a volume) in a worker thread and renders Docker's shapes.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from pallet.api.server.app import Router
from pallet.api.server.requests import bool_value, json_body, parse_filters
from pallet.api.server.routes.containers import engine_of
from pallet.errors import InvalidArgument


def register(router: Router) -> None:
    router.add("GET", "/volumes", list_volumes)
    router.add("POST", "/volumes/create", create)
    router.add("POST", "/volumes/prune", prune)
    router.add("GET", "/volumes/{name}", inspect)
    router.add("DELETE", "/volumes/{name}", remove)


async def _call(request: web.Request, method: str, *args: Any, **kwargs: Any) -> Any:
    fn = getattr(engine_of(request).volumes, method)
    return await asyncio.to_thread(fn, *args, **kwargs)


async def list_volumes(request: web.Request) -> web.Response:
    filters = parse_filters(request.query.get("filters", ""))
    volumes = await _call(request, "list", filters)
    return web.json_response({"Volumes": volumes, "Warnings": []})


async def create(request: web.Request) -> web.Response:
    body = await json_body(request, default={})
    if not isinstance(body, dict):
        raise InvalidArgument("the volume create request must be a JSON object")
    volume = await _call(request, "create", body.get("Name") or None, body.get("Driver"),
                         body.get("Labels"), body.get("DriverOpts"))
    return web.json_response(volume, status=201)


async def inspect(request: web.Request) -> web.Response:
    return web.json_response(await _call(request, "get", request.match_info["name"]))


async def remove(request: web.Request) -> web.Response:
    await _call(request, "remove", request.match_info["name"], bool_value(request, "force"))
    return web.Response(status=204)


async def prune(request: web.Request) -> web.Response:
    filters = parse_filters(request.query.get("filters", ""))
    deleted, space = await _call(request, "prune", filters)
    return web.json_response({"VolumesDeleted": deleted or None, "SpaceReclaimed": space})
