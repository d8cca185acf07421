"""Network routes: the Docker Engine API's `/networks*` (v1.50.yaml, tag "Network").

Each handler parses the request, calls the engine's networking (pallet.engine.networking, whose
`manager` is pallet.network.manager.NetworkManager) in a worker thread, and renders Docker's
shapes: a Network object per network, `{"Id", "Warning"}` with 201 from create, 200 with an
empty body from connect and disconnect, 204 from delete, `{"NetworksDeleted"}` from prune.
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
    router.add("GET", "/networks", list_networks)
    router.add("POST", "/networks/create", create)
    router.add("POST", "/networks/prune", prune)
    router.add("GET", "/networks/{id}", inspect)
    router.add("DELETE", "/networks/{id}", remove)
    router.add("POST", "/networks/{id}/connect", connect)
    router.add("POST", "/networks/{id}/disconnect", disconnect)


def _networking(request: web.Request) -> Any:
    return engine_of(request).networking


async def _manager_call(request: web.Request, method: str, *args: Any, **kwargs: Any) -> Any:
    net = _networking(request)
    return await asyncio.to_thread(lambda: getattr(net.manager, method)(*args, **kwargs))


async def list_networks(request: web.Request) -> web.Response:
    filters = parse_filters(request.query.get("filters", ""))
    return web.json_response(await _manager_call(request, "list", filters))


async def inspect(request: web.Request) -> web.Response:
    scope = request.query.get("scope", "")
    if scope and scope != "local":
        # dockerd: a network of another scope is not found in this one
        from pallet.errors import NotFound

        raise NotFound(f"network {request.match_info['id']} not found")
    return web.json_response(await _manager_call(request, "inspect", request.match_info["id"],
                                                 bool_value(request, "verbose")))


async def create(request: web.Request) -> web.Response:
    body = await json_body(request, default=None)
    if not isinstance(body, dict):
        raise InvalidArgument("the network create request must be a JSON object")
    return web.json_response(await _manager_call(request, "create", body), status=201)


async def remove(request: web.Request) -> web.Response:
    await _manager_call(request, "remove", request.match_info["id"])
    return web.Response(status=204)


async def _container_body(request: web.Request) -> dict[str, Any]:
    body = await json_body(request, default=None)
    if not isinstance(body, dict) or not isinstance(body.get("Container"), str) or not body["Container"]:
        raise InvalidArgument("the request must name a Container")
    return body


async def connect(request: web.Request) -> web.Response:
    body = await _container_body(request)
    net = _networking(request)
    await asyncio.to_thread(net.connect, request.match_info["id"], body["Container"],
                            body.get("EndpointConfig") or {})
    return web.Response(status=200)


async def disconnect(request: web.Request) -> web.Response:
    body = await _container_body(request)
    net = _networking(request)
    await asyncio.to_thread(net.disconnect, request.match_info["id"], body["Container"],
                            bool(body.get("Force")))
    return web.Response(status=200)


async def prune(request: web.Request) -> web.Response:
    filters = parse_filters(request.query.get("filters", ""))
    net = _networking(request)
    deleted = await asyncio.to_thread(net.prune, filters)
    return web.json_response({"NetworksDeleted": deleted or None})
