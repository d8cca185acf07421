"""Image routes: the Docker Engine API's `/images/*` (v1.50.yaml, tag "Image") and Pallet's
`POST /pallet/images/bootstrap`.

Each handler parses the request, calls the daemon's one `ImageService` in a worker thread
(`asyncio.to_thread`: every library call blocks on SQLite, the disk or a tar stream), and
renders Docker's JSON. Bodies are streamed both ways: `POST /images/load` and
`POST /images/create?fromSrc=-` hand the request body to the library as a blocking reader
(`_BodyReader`), and `GET /images/.../get` hands it a blocking writer onto a chunked response
(`_ResponseSink`), so an archive is never held in memory.

Docker's wording is kept where clients show it: a missing image is `No such image: busybox:latest`
(moby daemon/images ErrImageDoesNotExist: the familiar reference with its default tag), a refused
removal starts with `conflict: ` (moby imageDeleteConflict). Pulling (`fromImage`) is
routes/registry.py's (the registry client).

Not Docker: `POST /pallet/images/bootstrap?name=busybox[&force=1][&arch=x86_64]` creates a
built-in image (hello-world, busybox, debian[:suite]) and answers JSON-lines progress ending in
`{"aux": {"ID": "sha256:...", "Name": "busybox:latest"}}` (docs/design/daemon.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from aiohttp import web

from pallet.api.server.app import IMAGES_KEY, Router
from pallet.api.server.middleware import api_version
from pallet.api.server.requests import bool_value, parse_filters
from pallet.api.server.streams import ProgressWriter, progress_line
from pallet.api.server.versions import at_least
from pallet.errors import (
    Conflict,
    InvalidArgument,
    NotFound,
    NotSupported,
    PalletError,
    Unavailable,
)
from pallet.image.service import ImageService, short_id
from pallet.oci.reference import parse_normalized

log = logging.getLogger("pallet.api.images")

T = TypeVar("T")

# Bytes handed across the thread boundary at a time, each way.
CHUNK = 256 * 1024
# A bootstrap still running after this long switches to a progress stream with keep-alive lines
# (debootstrap takes minutes; clients time out on an idle socket).
BOOTSTRAP_QUICK = 1.0
BOOTSTRAP_KEEPALIVE = 10.0
# A worker thread waits at most this long for the loop to move one chunk of a body: a client
# that stalls longer is given up on, and no thread is left waiting on a loop that has stopped.
BRIDGE_TIMEOUT = 600.0
LIST_FILTERS = ("before", "dangling", "label", "reference", "since", "until")


def register(router: Router) -> None:
    # Fixed paths first: aiohttp matches in registration order, and `{name:.+}` takes slashes
    # (`localhost:5000/a/b:t` is one name).
    router.add("GET", "/images/json", list_images)
    router.add("POST", "/images/create", create)
    router.add("GET", "/images/get", save)
    router.add("POST", "/images/load", load)
    router.add("POST", "/images/prune", prune)
    router.add("POST", "/pallet/images/bootstrap", bootstrap)
    router.add("GET", "/images/{name:.+}/json", inspect)
    router.add("GET", "/images/{name:.+}/history", history)
    router.add("GET", "/images/{name:.+}/get", save)
    router.add("POST", "/images/{name:.+}/tag", tag)
    router.add("DELETE", "/images/{name:.+}", remove)


async def _run(request: web.Request, fn: Callable[[ImageService], T]) -> T:
    """`fn(service)` in a worker thread (the service is opened there on first use)."""
    backend = request.app[IMAGES_KEY]
    return await asyncio.to_thread(lambda: fn(backend.get()))


async def _enforce_policy(request: web.Request) -> None:
    """Apply the daemon's automatic image-store policy after an operation that added images."""
    await asyncio.to_thread(request.app[IMAGES_KEY].enforce_policy)


def _docker_ref(name: str) -> str:
    """How Docker names what it did not find: `busybox` -> `busybox:latest`; ids as given."""
    hex_part = name.removeprefix("sha256:")
    if name.startswith("sha256:") or re.fullmatch(r"[0-9a-f]{64}", hex_part):
        return name
    try:
        return parse_normalized(name).familiar()
    except InvalidArgument:
        return name


@contextlib.contextmanager
def _docker_words(name: str) -> Iterator[None]:
    """Re-word the library's errors about the image `name` as dockerd words them."""
    try:
        yield
    except NotFound as exc:
        if str(exc).lower().startswith("no such image"):
            raise NotFound(f"No such image: {_docker_ref(name)}") from exc
        raise
    except Conflict as exc:
        message = str(exc)
        if message.startswith("unable to "):
            raise type(exc)(f"conflict: {message}") from exc
        raise


def _filters(request: web.Request, allowed: Sequence[str]) -> dict[str, list[str]]:
    return parse_filters(request.query.get("filters", ""), allowed)


# --- list --------------------------------------------------------------------------------------

def path_match(pattern: str, name: str) -> bool:
    """Go's path.Match, which moby's reference filter uses: `*` and `?` stop at `/`."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 2)
            if end < 0:
                raise InvalidArgument(f"invalid reference filter {pattern!r}: unterminated [")
            body = pattern[i + 1:end]
            out.append("[" + ("^" + body[1:] if body.startswith("^") else body).replace("\\", "\\\\") + "]")
            i = end
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(c))
        i += 1
    return re.fullmatch("".join(out), name) is not None


def _reference_matches(patterns: Sequence[str], familiar: str) -> bool:
    """moby reference.FamiliarMatch: the pattern against `name:tag`, then against `name`."""
    name = familiar.split("@")[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    repo = name[:colon] if colon > slash else name
    return any(path_match(p, familiar) or path_match(p, repo) for p in patterns)


def _label_matches(labels: Mapping[str, str], expr: str) -> bool:
    key, sep, want = expr.partition("=")
    return key in labels and (not sep or labels[key] == want)


def filter_summaries(summaries: list[dict[str, Any]], filters: Mapping[str, Sequence[str]],
                     created_of: Callable[[str], int], now: float) -> list[dict[str, Any]]:
    """Docker's `GET /images/json` filters over ImageSummary objects (moby daemon/images/images.go):
    dangling, label (`k` or `k=v`), reference (path.Match on the familiar name; only the
    matching RepoTags are kept), before/since (an image, by its Created), until."""
    from pallet.image.gc import parse_until

    dangling: bool | None = None
    if "dangling" in filters:
        values = {v.lower() for v in filters["dangling"]}
        if not values <= {"true", "false", "1", "0"} or len(values) != 1:
            raise InvalidArgument(f"invalid filter 'dangling={','.join(filters['dangling'])}'")
        dangling = values <= {"true", "1"}
    before = min((created_of(v) for v in filters.get("before", [])), default=None)
    since = max((created_of(v) for v in filters.get("since", [])), default=None)
    until = min((parse_until(v, now) for v in filters.get("until", [])), default=None)
    patterns = filters.get("reference", [])
    out = []
    for s in summaries:
        tags, digests = list(s["RepoTags"]), list(s["RepoDigests"])
        if dangling is not None and dangling == bool(tags):
            continue
        if not all(_label_matches(s.get("Labels") or {}, e) for e in filters.get("label", [])):
            continue
        if before is not None and s["Created"] >= before:
            continue
        if since is not None and s["Created"] <= since:
            continue
        if until is not None and s["Created"] >= until:
            continue
        if patterns:
            tags = [t for t in tags if _reference_matches(patterns, t)]
            digests = [d for d in digests if _reference_matches(patterns, d)]
            if not tags and not digests:
                continue
        out.append({**s, "RepoTags": tags, "RepoDigests": digests})
    return out


def _list(svc: ImageService, all: bool, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
    def created_of(ref: str) -> int:
        with _docker_words(ref):
            return _created(svc, ref)

    summaries = svc.list_images(all=all or "dangling" in filters)
    return filter_summaries(summaries, filters, created_of, time.time()) if filters else summaries


def _created(svc: ImageService, ref: str) -> int:
    from pallet.image.inspect import unix_time

    return unix_time(svc.get(ref).config.created)


async def list_images(request: web.Request) -> web.Response:
    filters = _filters(request, LIST_FILTERS)
    all_ = bool_value(request, "all")
    summaries = await _run(request, lambda svc: _list(svc, all_, filters))
    if not at_least(api_version(request), "1.44"):
        for s in summaries:  # removed in API 1.44 (v1.50.yaml changelog); older clients read it
            s["VirtualSize"] = s["Size"]
    return web.json_response(summaries)


# --- inspect, history, tag, remove ---------------------------------------------------------------

async def inspect(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    with _docker_words(name):
        body = await _run(request, lambda svc: svc.inspect(name))
    if not at_least(api_version(request), "1.44"):
        body["VirtualSize"] = body.get("Size", 0)
    return web.json_response(body)


async def history(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    with _docker_words(name):
        items = await _run(request, lambda svc: svc.history(name))
    return web.json_response(items)


def tag_target(repo: str, tag: str) -> str:
    """The name `POST /images/{name}/tag?repo=&tag=` asks for (moby httputils.RepoTagReference:
    `tag` replaces a tag given in `repo`; no tag at all means `latest`)."""
    if not repo:
        raise InvalidArgument("repository name must be given (repo=NAME)")
    ref = parse_normalized(repo, default_tag=False)
    if ref.digest is not None:
        raise InvalidArgument(f"refusing to create a tag with a digest reference: {repo}")
    if tag:
        ref = ref.name_only().with_tag(tag)
    return ref.familiar() if ref.tag else ref.familiar() + ":latest"


async def tag(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    target = tag_target(request.query.get("repo", "").strip(), request.query.get("tag", "").strip())
    with _docker_words(name):
        await _run(request, lambda svc: svc.tag(name, target))
    return web.Response(status=201)


async def remove(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    force = bool_value(request, "force")
    noprune = bool_value(request, "noprune")
    with _docker_words(name):
        items = await _run(request, lambda svc: svc.remove(name, force=force, prune=not noprune))
    return web.json_response(items)


# --- prune ---------------------------------------------------------------------------------------

def _prune(svc: ImageService, filters: dict[str, list[str]]) -> dict[str, Any]:
    from pallet.image.gc import GarbageCollector

    result = GarbageCollector(svc.content, svc.meta, svc.snapshots, data_root=svc.root).prune(
        dangling_only=True, filters=filters)
    body = result.to_docker()
    for item in body["ImagesDeleted"] or []:
        if "Untagged" in item:
            item["Untagged"] = parse_normalized(item["Untagged"], default_tag=False).familiar()
    return body


async def prune(request: web.Request) -> web.Response:
    from pallet.image.gc import PRUNE_FILTERS

    filters = _filters(request, PRUNE_FILTERS)
    return web.json_response(await _run(request, lambda svc: _prune(svc, filters)))


# --- streaming bridges -----------------------------------------------------------------------------

class _BodyReader:
    """The request body as a blocking reader for a worker thread: each `read` waits for the
    event loop to deliver the bytes. `read(n)` returns n bytes unless the body ends first,
    as a regular file does."""

    def __init__(self, request: web.Request, loop: asyncio.AbstractEventLoop) -> None:
        self._content = request.content
        self._loop = loop
        self.total = 0

    async def _read(self, n: int) -> bytes:
        out = bytearray()
        while n < 0 or len(out) < n:
            chunk = await self._content.read(CHUNK if n < 0 else min(n - len(out), 4 * CHUNK))
            if not chunk:
                break
            out += chunk
        return bytes(out)

    def read(self, n: int | None = -1, /) -> bytes:
        fut = asyncio.run_coroutine_threadsafe(self._read(-1 if n is None else n), self._loop)
        try:
            data = fut.result(BRIDGE_TIMEOUT)
        except TimeoutError as exc:
            fut.cancel()
            raise Unavailable(f"the client sent nothing for {BRIDGE_TIMEOUT:.0f}s") from exc
        self.total += len(data)
        return data

    def readable(self) -> bool:
        return True


class _ResponseSink:
    """A blocking writer for a worker thread onto a chunked response: buffered, and the
    response is prepared (status 200 committed) only at the first flush, so an error found
    before any byte is written still gets its own status."""

    def __init__(self, request: web.Request, response: web.StreamResponse,
                 loop: asyncio.AbstractEventLoop) -> None:
        self._request = request
        self.response = response
        self._loop = loop
        self._buf = bytearray()

    async def _send(self, data: bytes) -> None:
        if not self.response.prepared:
            await self.response.prepare(self._request)
        await self.response.write(data)

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self._buf += view
        if len(self._buf) >= CHUNK:
            self.flush()
        return len(view)

    def flush(self) -> None:
        if self._buf:
            data, self._buf = bytes(self._buf), bytearray()
            fut = asyncio.run_coroutine_threadsafe(self._send(data), self._loop)
            try:
                fut.result(BRIDGE_TIMEOUT)
            except TimeoutError as exc:
                fut.cancel()
                raise Unavailable(f"the client read nothing for {BRIDGE_TIMEOUT:.0f}s") from exc


def _abort(request: web.Request, what: str, exc: BaseException) -> None:
    """A stream already answered 200 failed: cut the connection so the client sees a truncated
    transfer rather than a well-formed (and wrong) end of stream."""
    log.error("%s failed after the answer started: %s", what, exc)
    if request.transport is not None:
        request.transport.abort()


# --- save and load ---------------------------------------------------------------------------------

async def save(request: web.Request) -> web.StreamResponse:
    from pallet.image import archive

    if "name" in request.match_info:
        names = [request.match_info["name"]]
    else:
        names = [n for n in request.query.getall("names", []) if n]
    if not names:
        raise InvalidArgument("no images to save: give names=IMAGE (one or more)")
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/x-tar"})
    response.enable_chunked_encoding()
    sink = _ResponseSink(request, response, asyncio.get_running_loop())

    def work(svc: ImageService) -> None:
        # Resolve first, for Docker's "No such image" before any byte goes out.
        for n in names:
            with _docker_words(n):
                svc.resolve(n)
        archive.save(svc.content, svc.meta, names, sink)  # type: ignore[arg-type]
        sink.flush()

    try:
        await _run(request, work)
    except Exception as exc:
        if not response.prepared:
            raise
        _abort(request, "save", exc)
        return response
    if not response.prepared:
        await response.prepare(request)
    await response.write_eof()
    return response


async def load(request: web.Request) -> web.StreamResponse:
    from pallet.image import archive

    # `quiet` is accepted and changes nothing: dockerd writes the "Loaded image" lines either way
    # (quiet drops only the progress bars, which Pallet does not draw).
    body = _BodyReader(request, asyncio.get_running_loop())
    loaded = await _run(request, lambda svc: archive.load(svc.content, svc.meta, body))  # type: ignore[arg-type]
    await _enforce_policy(request)
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    await response.prepare(request)
    for item in loaded:
        if item.startswith("sha256:"):
            text = f"Loaded image ID: {item}\n"
        else:
            text = f"Loaded image: {parse_normalized(item, default_tag=False).familiar()}\n"
        await response.write(progress_line({"stream": text}))
    await response.write_eof()
    return response


# --- create: import (fromSrc) and pull (fromImage) -------------------------------------------------

def import_name(repo: str, tag: str) -> str | None:
    """The name `docker import` asks for: the CLI sends the whole reference as `repo`, docker-py
    may split it into `repo` and `tag`."""
    if not repo:
        return None
    return tag_target(repo, tag)


async def create(request: web.Request) -> web.StreamResponse:
    q = request.query
    if q.get("fromImage"):
        from pallet.api.server.routes import registry

        return await registry.pull(request, q["fromImage"], q.get("tag", ""))
    source = q.get("fromSrc", "")
    if not source:
        raise InvalidArgument("POST /images/create needs fromSrc=- (import) or fromImage=NAME (pull)")
    if source != "-":
        raise NotSupported(f"importing from a URL ({source[:200]}) is not supported: download it and "
                           "import the file (pallet import FILE)")
    name = import_name(q.get("repo", "").strip(), q.get("tag", "").strip())
    changes = [c for c in q.getall("changes", []) if c.strip()]
    message = q.get("message", "")
    body = _BodyReader(request, asyncio.get_running_loop())
    image_id = await _run(request, lambda svc: svc.import_image(
        body, name, changes, message, source="-"))  # type: ignore[arg-type]
    await _enforce_policy(request)
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    await response.prepare(request)
    # moby's import answers the new id as one progress status line.
    await response.write(progress_line({"status": image_id}))
    await response.write_eof()
    return response


# --- bootstrap (Pallet's own) ------------------------------------------------------------------------

async def bootstrap(request: web.Request) -> web.StreamResponse:
    name = request.query.get("name", "").strip()
    if not name:
        raise InvalidArgument("bootstrap needs name=IMAGE: hello-world, busybox or debian[:suite]")
    familiar = parse_normalized(name).familiar()
    force = bool_value(request, "force")
    arch = request.query.get("arch") or None
    task = asyncio.ensure_future(_run(request, lambda svc: svc.bootstrap(name, arch=arch, force=force)))
    progress = ProgressWriter(request)
    done, _ = await asyncio.wait({task}, timeout=BOOTSTRAP_QUICK)
    if not done:
        # Long (debootstrap): commit to 200 and keep the connection busy; errors go in-band.
        await progress.start()
        started = time.monotonic()
        await progress.status(f"Bootstrapping {familiar}")
        while not done:
            done, _ = await asyncio.wait({task}, timeout=BOOTSTRAP_KEEPALIVE)
            if not done:
                await progress.status(f"Bootstrapping {familiar}",
                                      progress=f"{time.monotonic() - started:.0f}s")
        try:
            image_id = task.result()
        except PalletError as exc:
            await progress.error(str(exc))
            await progress.finish()
            return progress.response
        except Exception as exc:
            log.exception("bootstrap %s", name)
            await progress.error(f"internal error: {type(exc).__name__}: {exc}")
            await progress.finish()
            return progress.response
    else:
        image_id = task.result()  # errors here still get their own status
        await progress.start()
    await _enforce_policy(request)
    await progress.status(f"Bootstrapped {familiar}", id=short_id(image_id))
    await progress.aux({"ID": image_id, "Name": familiar})
    await progress.finish()
    return progress.response


__all__ = ["filter_summaries", "import_name", "path_match", "register", "tag_target"]
