"""Registry routes: pull (`POST /images/create?fromImage=`), `POST /images/{name}/push`,
`GET /images/search` and `POST /auth` (v1.50.yaml, tags "Image" and "System").

The work runs in a worker thread (pallet.registry.client blocks on sockets and the disk). Its
progress crosses to the event loop through a queue and goes out as JSON lines, as dockerd
streams them. The response is committed to 200 only when the first progress message exists: an
error before that (no such repository, bad credentials, no such local image) is an ordinary
HTTP error with Docker's `{"message"}` body, as dockerd answers it; after that, errors go in the
stream as `{"errorDetail": {"message"}, "error"}`.

Credentials come per request in `X-Registry-Auth` (base64url JSON AuthConfig); palletd reads no
credential file of its own, as dockerd.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

from aiohttp import web

from pallet.api.server.app import HOST_KEY, IMAGES_KEY, Router
from pallet.api.server.requests import parse_filters
from pallet.api.server.streams import progress_line
from pallet.errors import InvalidArgument, PalletError
from pallet.oci.reference import parse_normalized

log = logging.getLogger("pallet.api.registry")

_END = object()
# How long progress messages are gathered before they wake the event loop (see _stream).
BATCH_DELAY = 0.02


def register(router: Router) -> None:
    # POST /images/create is routes/images.py's (it also imports); it calls `pull` here.
    router.add("GET", "/images/search", search)
    router.add("POST", "/images/{name:.+}/push", push)
    router.add("POST", "/auth", auth)


def _auth(request: web.Request) -> Any:
    from pallet.registry.client.auth import decode_header

    return decode_header(request.headers.get("X-Registry-Auth", ""))


def _insecure(request: web.Request) -> tuple[str, ...]:
    return tuple(getattr(request.app[HOST_KEY], "insecure_registries", ()) or ())


def _client(request: web.Request) -> Any:
    from pallet.registry.client import RegistryClient

    return RegistryClient(request.app[IMAGES_KEY].get(), insecure=_insecure(request))


def _events(request: web.Request) -> Any:
    from pallet.engine.events import open_log

    return open_log(request.app[IMAGES_KEY].data_root)


async def _stream(request: web.Request, work: Callable[[Callable[[dict[str, Any]], None]], Any],
                  finish: Callable[[Any], list[dict[str, Any]]] | None = None) -> web.StreamResponse:
    """Run `work(send)` in a thread, streaming what it `send`s (see the module docstring)."""
    from pallet.registry.client.progress import Cancelled

    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    gone = threading.Event()

    # Messages reach the loop in batches, at most one per BATCH_DELAY: a wake-up of the
    # loop's thread (which then contends for the GIL with the pull's threads) per batch, not
    # per message (a 50-layer pull reports ~450 times in ~0.4 s). The end of the work
    # delivers what is pending at once, before _END.
    pending: list[dict[str, Any]] = []
    pending_lock = threading.Lock()

    def deliver() -> None:
        with pending_lock:
            batch = pending[:]
            pending.clear()
        for msg in batch:
            queue.put_nowait(msg)

    def end() -> None:
        deliver()
        queue.put_nowait(_END)

    def send(msg: dict[str, Any]) -> None:
        # The worker's next progress report stops it once the client is gone (as dockerd
        # cancels a pull with its request's context); a pull's bytes stay for the next one.
        if gone.is_set():
            raise Cancelled("the client went away")
        with pending_lock:
            pending.append(msg)
            first = len(pending) == 1
        if first:  # else a deliver() is scheduled and not run yet: it takes this one too
            loop.call_soon_threadsafe(loop.call_later, BATCH_DELAY, deliver)

    def run() -> Any:
        try:
            return work(send)
        finally:
            loop.call_soon_threadsafe(end)

    task = asyncio.ensure_future(asyncio.to_thread(run))
    # A worker left behind by a client that went away ends with Cancelled: nothing to log.
    task.add_done_callback(lambda t: None if t.cancelled() else t.exception())
    item = await queue.get()
    if item is _END:
        await task  # an error before any output is raised as the route's error
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    await response.prepare(request)
    try:
        while item is not _END:
            # What the worker queued meanwhile goes out in the same write (a 50-layer pull
            # reports ~450 times: one send(2) and one read by the client per batch, not each).
            lines = [progress_line(item)]
            while not queue.empty() and (item := queue.get_nowait()) is not _END:
                lines.append(progress_line(item))
            await response.write(b"".join(lines))
            if item is not _END:
                item = await queue.get()
        try:
            result = await task
        except PalletError as exc:
            await response.write(progress_line({"errorDetail": {"message": str(exc)}, "error": str(exc)}))
        except Exception as exc:
            log.exception("registry operation")
            text = f"internal error: {type(exc).__name__}: {exc}"
            await response.write(progress_line({"errorDetail": {"message": text}, "error": text}))
        else:
            for msg in (finish(result) if finish else []):
                await response.write(progress_line(msg))
    except (ConnectionResetError, asyncio.CancelledError):
        gone.set()
        raise
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()
    return response


def _progress_fn(send: Callable[[dict[str, Any]], None]) -> Any:
    from pallet.registry.client.progress import message

    return lambda p: send(message(p))


async def pull(request: web.Request, image: str, tag: str) -> web.StreamResponse:
    """POST /images/create?fromImage=IMAGE&tag=TAG[&platform=os/arch]; an empty tag with no
    tag in `fromImage` pulls every tag (`docker pull --all-tags` sends that)."""
    if tag:
        image = f"{image}@{tag}" if ":" in tag else f"{image}:{tag}"
    ref = parse_normalized(image, default_tag=False)
    all_tags = ref.tag is None and ref.digest is None and not tag
    platform = request.query.get("platform", "").strip() or None
    auth = _auth(request)
    client = _client(request)

    def work(send: Callable[[dict[str, Any]], None]) -> Any:
        results = client.pull(image, auth=auth, platform=platform, all_tags=all_tags,
                              progress=_progress_fn(send))
        for r in results:  # moby LogImageEvent: the reference is the actor and its name
            name = parse_normalized(r.name, default_tag=False).familiar()
            _events(request).emit("image", "pull", name, {"name": name})
        return results

    response = await _stream(request, work)
    with contextlib.suppress(Exception):
        await asyncio.to_thread(request.app[IMAGES_KEY].enforce_policy)
    return response


async def push(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    tag = request.query.get("tag", "").strip() or None
    auth = _auth(request)
    client = _client(request)

    def work(send: Callable[[dict[str, Any]], None]) -> Any:
        results = client.push(name, tag=tag, auth=auth, progress=_progress_fn(send))
        for r in results:
            ref = parse_normalized(name, default_tag=False).name_only().with_tag(r.tag).familiar()
            _events(request).emit("image", "push", ref, {"name": ref})
        return results

    def finish(results: Any) -> list[dict[str, Any]]:
        return [{"progressDetail": {}, "aux": {"Tag": r.tag, "Digest": r.digest, "Size": r.size}}
                for r in results]

    return await _stream(request, work, finish)


async def search(request: web.Request) -> web.Response:
    q = request.query
    term = q.get("term", "")
    if not term.strip():
        raise InvalidArgument("search needs term=TERM")
    try:
        limit = int(q.get("limit") or 25)
    except ValueError:
        raise InvalidArgument(f"invalid limit {q.get('limit')!r}") from None
    filters = parse_filters(q.get("filters", ""), ("is-automated", "is-official", "stars"))
    auth = _auth(request)
    insecure = _insecure(request)

    def work() -> list[dict[str, Any]]:
        from pallet.registry.client import search as do_search

        return do_search(term, limit=limit, filters=filters, auth=auth, insecure=insecure)

    return web.json_response(await asyncio.to_thread(work))


async def auth(request: web.Request) -> web.Response:
    from pallet.registry.client import login
    from pallet.registry.client.auth import AuthConfig

    try:
        body = await request.json()
    except ValueError:
        raise InvalidArgument("POST /auth needs a JSON AuthConfig body") from None
    cfg = AuthConfig.from_json(body)
    insecure = _insecure(request)
    result = await asyncio.to_thread(login, cfg, insecure=insecure)
    return web.json_response(result)


__all__ = ["pull", "register"]
