"""`GET /events` (v1.50.yaml, tag "System"), and the image events the image routes' work implies.

The stream is what dockerd's getEvents sends (api/server/router/system/system_routes.go): a 200
with Content-Type application/json at once, then one JSON message per line: the kept history
from `since` (none without it), then live messages, until `until` passes (a past `until` ends the
answer after the history) or the client goes away. `since`/`until` take Docker's timestamps
(engine/events.py parse_timestamp); `since` after `until` is a 400 as with dockerd; `filters` is
Docker's JSON with the keys dockerd knows.

Image events: the image store cannot import the engine (STYLE.md §11), and moby logs them in
its image service. Here `image_events` is a middleware that, after an image route answered with
success, emits what dockerd would: tag (name = the new reference), untag and delete (from the
removal's own answer, which lists each), save (per saved image), load and import (the images the
call added or moved a name to; a load of images already present adds nothing new and is not
reported). pull and push are the registry code's to emit, through
`pallet.engine.events.open_log(data_root).emit("image", "pull", id, {"name": ref})`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from typing import Any

from aiohttp import web

from pallet.api.server.app import IMAGES_KEY, Handler, Router
from pallet.api.server.requests import parse_filters
from pallet.engine.events import FILTER_KEYS, EventLog, open_log, parse_timestamp
from pallet.errors import InvalidArgument

CLIENT_CHECK = 0.5  # how often a quiet stream looks whether its client is still there


def register(router: Router) -> None:
    router.add("GET", "/events", events)


def event_log(request: web.Request) -> EventLog:
    """The daemon's log, under the image store's data root (palletd's engine shares it; an app
    in a unit test has its own there, never the host's /var/lib/pallet)."""
    return open_log(request.app[IMAGES_KEY].data_root)


def _stamp(ns: int) -> str:
    return f"{ns // 10**9}.{ns % 10**9:09d}"


async def events(request: web.Request) -> web.StreamResponse:
    q = request.query
    now = time.time_ns()
    since = parse_timestamp(q["since"], now) if q.get("since") else None
    until = parse_timestamp(q["until"], now) if q.get("until") else None
    if since is not None and until is not None and since > until:
        raise InvalidArgument(f"`since` time ({_stamp(since)}) cannot be after `until` time "
                              f"({_stamp(until)})")
    filters = parse_filters(q.get("filters", ""), FILTER_KEYS)
    past, sub = event_log(request).subscribe(filters, since_ns=since, until_ns=until)
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()

    def woken() -> None:
        loop.call_soon_threadsafe(wake.set)

    sub.on_event = woken
    try:
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        await response.prepare(request)
        for old in past:
            await response.write(json.dumps(old).encode() + b"\n")
        if until is not None and until <= time.time_ns():
            await response.write_eof()
            return response
        while True:
            wake.clear()  # before the look: a message queued after it sets `wake` again
            msg = sub.get_nowait()
            if msg is not None:
                if until is not None and msg["timeNano"] > until:
                    break
                await response.write(json.dumps(msg).encode() + b"\n")
                continue
            if sub.closed:
                break  # the consumer fell too far behind (or the log closed)
            wait = CLIENT_CHECK
            if until is not None:
                left = (until - time.time_ns()) / 1e9
                if left <= 0:
                    break
                wait = min(wait, left)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), wait)
            transport = request.transport
            if transport is None or transport.is_closing():
                return response
        await response.write_eof()
    except (ConnectionResetError, BrokenPipeError):
        pass
    finally:
        sub.close()
    return response


# --- image events ----------------------------------------------------------------------------------

_PREFIX = re.compile(r"^/v\d+\.\d+(?=/)")


def _image_summary(svc: Any) -> dict[str, set[str]]:
    """id -> its names, for load and import (what the call added)."""
    out: dict[str, set[str]] = {}
    for item in svc.list_images(all=True):
        out[item["Id"]] = set(item.get("RepoTags") or [])
    return out


def _labels(svc: Any, image_id: str) -> dict[str, str]:
    with contextlib.suppress(Exception):
        return dict((svc.get(image_id).config.config or {}).get("Labels") or {})
    return {}


def _emit_image(log: EventLog, svc: Any, action: str, image_id: str, name: str) -> None:
    attrs = _labels(svc, image_id)
    attrs["name"] = name
    log.emit("image", action, image_id, attrs)


def _resolve(svc: Any, name: str) -> str | None:
    with contextlib.suppress(Exception):
        return str(svc.get(name).id)
    return None


@web.middleware
async def image_events(request: web.Request, handler: Handler) -> web.StreamResponse:
    path = _PREFIX.sub("", request.path)
    method = request.method
    kind = None
    if method == "POST" and re.fullmatch(r"/images/.+/tag", path):
        kind = "tag"
    elif method == "DELETE" and path.startswith("/images/"):
        kind = "delete"
    elif method == "POST" and path == "/images/load":
        kind = "load"
    elif method == "POST" and path == "/images/create" and request.query.get("fromSrc"):
        kind = "import"
    elif method == "GET" and (path == "/images/get" or re.fullmatch(r"/images/.+/get", path)):
        kind = "save"
    if kind is None:
        return await handler(request)
    svc = await asyncio.to_thread(request.app[IMAGES_KEY].get)
    before: dict[str, set[str]] = {}
    target_id = None
    if kind in ("load", "import"):
        before = await asyncio.to_thread(_image_summary, svc)
    elif kind == "delete":
        target_id = await asyncio.to_thread(_resolve, svc, path[len("/images/"):])
    response = await handler(request)
    if response.status >= 300:
        return response
    log = event_log(request)
    with contextlib.suppress(Exception):  # an event must never turn a success into an error
        await asyncio.to_thread(_after, log, svc, kind, request, path, response, before, target_id)
    return response


def _after(log: EventLog, svc: Any, kind: str, request: web.Request, path: str,
           response: web.StreamResponse, before: dict[str, set[str]], target_id: str | None) -> None:
    if kind == "tag":
        from pallet.api.server.routes.images import tag_target

        name = path[len("/images/"):-len("/tag")]
        image_id = _resolve(svc, name)
        target = tag_target(request.query.get("repo", "").strip(), request.query.get("tag", "").strip())
        if image_id:
            _emit_image(log, svc, "tag", image_id, target)
    elif kind == "delete":
        body = getattr(response, "body", None)
        items = json.loads(bytes(body)) if isinstance(body, (bytes, bytearray)) else []
        for item in items or []:
            if "Untagged" in item and target_id:
                # moby image_delete.go: untag events name the image by its id.
                _emit_image(log, svc, "untag", target_id, target_id)
            if "Deleted" in item:
                log.emit("image", "delete", item["Deleted"], {"name": item["Deleted"]})
    elif kind == "save":
        names = [path[len("/images/"):-len("/get")]] if path != "/images/get" else \
            [n for n in request.query.getall("names", []) if n]
        for n in names:
            image_id = _resolve(svc, n)
            if image_id:
                _emit_image(log, svc, "save", image_id, image_id)
    else:
        after = _image_summary(svc)
        for image_id, tags in after.items():
            if image_id not in before or tags - before[image_id]:
                # moby tarexport and import log the id as both actor and name.
                _emit_image(log, svc, kind, image_id, image_id)
