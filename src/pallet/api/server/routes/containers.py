"""Container routes: the Docker Engine API's `/containers/*` and `POST /commit` (v1.50.yaml, tag
"Container").

Each handler parses the request, calls the daemon's one `Engine` (pallet.engine.containers) in a
worker thread (its methods block), and renders Docker's shapes; the engine owns the state machine
and Docker's wording ("No such container: x", the name conflict, "is not running"). Calls that block
for as long as a container runs (wait, logs with follow) get a thread of their own (`_blocking`)
rather than one of the default executor's few workers.

Streams: logs are Docker's multiplexed frames for a non-Tty container and raw bytes for a Tty one
(content types as dockerd: `application/vnd.docker.multiplexed-stream` / `...raw-stream`); attach
hijacks the connection (streams.hijack: `101 UPGRADED` when asked).

Attach before start (what `docker run` does: attach, wait, then start): with conmon as the monitor
the engine holds the attach and connects it at the start, after the runtime's create and before its
start (Engine.attach(before_start=True)), so it sees every byte and ends when the run does. With the
Python monitor, which exists only while the container runs (a short-lived container, `echo hi`, may be
gone before a client could connect), an attach to a container that
is not running follows the container's log instead (`_LogFollower`): the file is
created empty if needed and opened *before* the start (the monitor appends to it), so every byte
of output reaches the client even when AutoRemove deletes the file right after the exit; stdin,
when asked, goes through the monitor's attach socket once the container runs.

Waiting: `POST /containers/{id}/wait` sends its 200 and headers at once and the body when the
condition holds, as dockerd does (API >= 1.30): the docker CLI waits for those headers before it
starts the container, and the wait is armed in the engine before they are sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

from aiohttp import web

from pallet.api.detachkeys import DEFAULT_DETACH_KEYS, Detached, DetachMatcher, parse_detach_keys
from pallet.api.server.app import ENGINE_KEY, Router
from pallet.api.server.requests import bool_value, int_value, json_body, parse_filters
from pallet.api.server.streams import (
    HEADER_SIZE,
    MULTIPLEXED_STREAM,
    RAW_STREAM,
    STDERR,
    STDOUT,
    Hijacked,
    StreamWriter,
    hijack,
)
from pallet.engine.logs import parse_line
from pallet.errors import InvalidArgument, NotFound, NotSupported, PalletError

log = logging.getLogger("pallet.api.containers")

T = TypeVar("T")

STREAM_IDS = {"stdout": STDOUT, "stderr": STDERR}
# How often an attach that follows the log looks for new output and at the container's state.
FOLLOW_POLL = 0.05
# How often a followed log with nothing new to send checks that its client is still there.
CLIENT_CHECK = 0.5


def register(router: Router) -> None:
    router.add("POST", "/containers/create", create)
    router.add("GET", "/containers/json", list_containers)
    router.add("POST", "/containers/prune", prune)
    router.add("POST", "/commit", commit)
    router.add("GET", "/containers/{id}/json", inspect)
    router.add("POST", "/containers/{id}/start", start)
    router.add("POST", "/containers/{id}/stop", stop)
    router.add("POST", "/containers/{id}/restart", restart)
    router.add("POST", "/containers/{id}/kill", kill)
    router.add("POST", "/containers/{id}/pause", pause)
    router.add("POST", "/containers/{id}/unpause", unpause)
    router.add("POST", "/containers/{id}/wait", wait)
    router.add("POST", "/containers/{id}/rename", rename)
    router.add("POST", "/containers/{id}/update", update)
    router.add("POST", "/containers/{id}/resize", resize)
    router.add("POST", "/containers/{id}/attach", attach)
    router.add("GET", "/containers/{id}/logs", logs)
    router.add("GET", "/containers/{id}/top", top)
    # GET /containers/{id}/stats: routes/stats.py (from the cgroup, Docker's full shape)
    router.add("GET", "/containers/{id}/export", export)
    router.add("DELETE", "/containers/{id}", remove)


# --- helpers --------------------------------------------------------------------------------------

def engine_of(request: web.Request) -> Any:
    return request.app[ENGINE_KEY].get()


async def _call(request: web.Request, method: str, *args: Any, **kwargs: Any) -> Any:
    """`engine.<method>(*args, **kwargs)` in a worker thread."""
    fn = getattr(engine_of(request), method)
    return await asyncio.to_thread(fn, *args, **kwargs)


def resolve(fut: asyncio.Future[Any], value: Any = None) -> None:
    """Set a future's result unless it is done (a callback that may fire more than once)."""
    if not fut.done():
        fut.set_result(value)


def reject(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)


async def _blocking(fn: Callable[[], T], started: Callable[[], None] | None = None) -> T:
    """`fn()` in a thread of its own (it may block for as long as a container runs); `started`
    is called in that thread just before `fn`."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[T] = loop.create_future()

    def run() -> None:
        if started is not None:
            started()
        try:
            result = fn()
        except BaseException as exc:  # handed to the awaiting coroutine
            loop.call_soon_threadsafe(reject, fut, exc)
        else:
            loop.call_soon_threadsafe(resolve, fut, result)

    threading.Thread(target=run, daemon=True, name="pallet-api-blocking").start()
    return await fut


def parse_timestamp(raw: str, name: str) -> float | None:
    """since/until as the docker CLI sends them: seconds since the epoch ("1700000000.123456789"),
    or RFC 3339; "" or "0" is unset."""
    raw = raw.strip()
    if raw in ("", "0"):
        return None
    try:
        return float(raw)
    except ValueError:
        pass
    from pallet.engine.logs import parse_time

    try:
        return parse_time(raw) / 1e9
    except (ValueError, IndexError) as exc:
        raise InvalidArgument(f"invalid value for {name}: {raw!r}") from exc


def parse_tail(raw: str) -> int | None:
    raw = raw.strip()
    if raw in ("", "all"):
        return None
    try:
        n = int(raw)
    except ValueError as exc:
        raise InvalidArgument(f"invalid value for tail: {raw!r}") from exc
    return None if n < 0 else n


def _no_content() -> web.Response:
    return web.Response(status=204)


# --- create, inspect, list ------------------------------------------------------------------------

async def create(request: web.Request) -> web.Response:
    body = await json_body(request, default=None)
    if not isinstance(body, dict):
        raise InvalidArgument("config cannot be empty in order to create a container")
    platform = request.query.get("platform", "")
    if platform and not platform.startswith("linux"):
        raise InvalidArgument(f"platform {platform!r} is not supported: this daemon runs linux containers")
    name = request.query.get("name") or None
    cid = await _call(request, "create", body, name)
    return web.json_response({"Id": cid, "Warnings": []}, status=201)


async def inspect(request: web.Request) -> web.Response:
    info = await _call(request, "inspect", request.match_info["id"])
    if bool_value(request, "size"):
        info["SizeRw"], info["SizeRootFs"] = await _call(request, "sizes", info["Id"])
    return web.json_response(info)


async def list_containers(request: web.Request) -> web.Response:
    filters = parse_filters(request.query.get("filters", ""))
    limit = int_value(request, "limit", -1)
    items = await _call(request, "list", bool_value(request, "all"), filters, limit)
    if bool_value(request, "size"):  # `docker ps -s`: walks every writable layer, so only on request
        for item in items:
            with contextlib.suppress(NotFound):
                item["SizeRw"], item["SizeRootFs"] = await _call(request, "sizes", item["Id"])
    return web.json_response(items)


# --- lifecycle ------------------------------------------------------------------------------------

async def start(request: web.Request) -> web.Response:
    started = await _call(request, "start", request.match_info["id"])
    return _no_content() if started else web.Response(status=304)


def _timeout(request: web.Request) -> int | None:
    return int_value(request, "t") if request.query.get("t", "") != "" else None


def _signal(request: web.Request) -> dict[str, str]:
    """`signal=` (API >= 1.42) for the engine's stop/restart; absent: the container's StopSignal."""
    sig = request.query.get("signal", "")
    return {"signal": sig} if sig else {}


async def stop(request: web.Request) -> web.Response:
    stopped = await _call(request, "stop", request.match_info["id"], _timeout(request), **_signal(request))
    return _no_content() if stopped else web.Response(status=304)


async def restart(request: web.Request) -> web.Response:
    await _call(request, "restart", request.match_info["id"], _timeout(request), **_signal(request))
    return _no_content()


async def kill(request: web.Request) -> web.Response:
    await _call(request, "kill", request.match_info["id"], request.query.get("signal") or "SIGKILL")
    return _no_content()


async def pause(request: web.Request) -> web.Response:
    await _call(request, "pause", request.match_info["id"])
    return _no_content()


async def unpause(request: web.Request) -> web.Response:
    await _call(request, "unpause", request.match_info["id"])
    return _no_content()


async def rename(request: web.Request) -> web.Response:
    await _call(request, "rename", request.match_info["id"], request.query.get("name", ""))
    return _no_content()


async def update(request: web.Request) -> web.Response:
    body = await json_body(request, default={})
    if not isinstance(body, dict):
        raise InvalidArgument("update: the body must be a JSON object")
    policy = body.get("RestartPolicy")
    if policy is not None and not (policy.get("Name") if isinstance(policy, dict) else policy):
        del body["RestartPolicy"]  # the docker CLI sends an empty one with every update
    warnings = await _call(request, "update", request.match_info["id"], body)
    return web.json_response({"Warnings": list(warnings or [])})


async def resize(request: web.Request) -> web.Response:
    """The docker CLI sends it after `run -it`/`attach` starts and on every SIGWINCH."""
    await _call(request, "resize", request.match_info["id"], int_value(request, "h"), int_value(request, "w"))
    return web.Response(status=200)


async def remove(request: web.Request) -> web.Response:
    if bool_value(request, "link"):
        raise NotSupported("links are not supported")
    await _call(request, "remove", request.match_info["id"], bool_value(request, "force"),
                bool_value(request, "v"))
    return _no_content()


async def prune(request: web.Request) -> web.Response:
    """Which containers count as stopped, and the filters (until, label, label!), are the
    engine's (Engine.prune)."""
    filters = parse_filters(request.query.get("filters", ""))
    deleted = await _call(request, "prune", filters)
    return web.json_response({"ContainersDeleted": list(deleted) or None, "SpaceReclaimed": 0})


# --- wait -----------------------------------------------------------------------------------------

async def wait(request: web.Request) -> web.StreamResponse:
    condition = request.query.get("condition") or "not-running"
    if condition not in ("not-running", "next-exit", "removed"):
        raise InvalidArgument(f"invalid condition: {condition!r}")
    engine = engine_of(request)
    cid = request.match_info["id"]
    c = await asyncio.to_thread(engine.get, cid)  # 404 before the headers
    loop = asyncio.get_running_loop()
    armed = loop.create_future()

    def arm() -> None:
        loop.call_soon_threadsafe(resolve, armed)

    task = asyncio.ensure_future(_blocking(lambda: engine.wait(c.id, condition), started=arm))
    await asyncio.wait([armed, task], return_when=asyncio.FIRST_COMPLETED)
    if task.done() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    await response.prepare(request)
    try:
        code = await task
        body: dict[str, Any] = {"StatusCode": code}
    except PalletError as exc:
        body = {"StatusCode": -1, "Error": {"Message": str(exc)}}
    await response.write((json.dumps(body) + "\n").encode())
    await response.write_eof()
    return response


# --- logs -----------------------------------------------------------------------------------------

def _is_tty(info: dict[str, Any]) -> bool:
    return bool((info.get("Config") or {}).get("Tty"))


async def logs(request: web.Request) -> web.StreamResponse:
    cid = request.match_info["id"]
    stdout, stderr = bool_value(request, "stdout"), bool_value(request, "stderr")
    if not (stdout or stderr):
        raise InvalidArgument("Bad parameters: you must choose at least one stream")
    engine = engine_of(request)
    info = await asyncio.to_thread(engine.inspect, cid)
    follow = bool_value(request, "follow")
    # Set when the client goes away (or the handler ends): the engine's follow stops polling.
    cancel = threading.Event()
    records = await asyncio.to_thread(
        engine.logs, cid, follow=follow, since=parse_timestamp(request.query.get("since", ""), "since"),
        until=parse_timestamp(request.query.get("until", ""), "until"),
        timestamps=bool_value(request, "timestamps"), tail=parse_tail(request.query.get("tail", "")),
        stdout=stdout, stderr=stderr, cancel=cancel)
    tty = _is_tty(info)
    response = web.StreamResponse(status=200, headers={
        "Content-Type": RAW_STREAM if tty else MULTIPLEXED_STREAM})
    try:
        await response.prepare(request)
        writer = StreamWriter(response, multiplexed=not tty)
        async for stream, data in _iterate(records, cancel, gone=lambda: _client_gone(request)):
            await writer.write(STREAM_IDS.get(stream, STDOUT), data)
        if _client_gone(request):
            return response
        await response.write_eof()
    except (ConnectionResetError, BrokenPipeError):
        pass
    finally:
        cancel.set()
    return response


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def _iterate(records: Iterator[tuple[str, bytes]], cancel: threading.Event | None = None, *,
                   gone: Callable[[], bool] | None = None) -> AsyncIterator[tuple[str, bytes]]:
    """A blocking iterator read in a thread of its own, one record at a time handed to the loop
    (so a slow client holds the reader back instead of filling memory). `cancel` is set when the
    consumer stops (the iterator's producer, e.g. Engine.logs, stops too); `gone()` is asked every
    CLIENT_CHECK seconds while nothing arrives: true ends the iteration (a client that hung up on
    a quiet followed log)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, bytes] | BaseException | None] = asyncio.Queue(maxsize=64)
    stop = cancel if cancel is not None else threading.Event()

    def put(item: tuple[str, bytes] | BaseException | None) -> None:
        fut = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                fut.result(timeout=1)
                return
        fut.cancel()

    def run() -> None:
        try:
            for rec in records:
                if stop.is_set():
                    return
                put(rec)
            put(None)
        except BaseException as exc:
            put(exc)
        finally:
            close = getattr(records, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()

    threading.Thread(target=run, daemon=True, name="pallet-api-logs").start()
    try:
        while True:
            if gone is None:
                item = await queue.get()
            else:
                try:
                    item = await asyncio.wait_for(queue.get(), CLIENT_CHECK)
                except TimeoutError:
                    if gone():
                        return
                    continue
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


# --- attach ---------------------------------------------------------------------------------------

class _FrameFilter:
    """Re-frames a multiplexed byte stream, keeping only the wanted stream ids."""

    def __init__(self, wanted: set[int]) -> None:
        self.wanted = wanted
        self.buf = b""

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self.buf += data
        out = []
        while len(self.buf) >= HEADER_SIZE:
            size = int.from_bytes(self.buf[4:8], "big")
            if len(self.buf) < HEADER_SIZE + size:
                break
            stream, payload = self.buf[0], self.buf[HEADER_SIZE:HEADER_SIZE + size]
            self.buf = self.buf[HEADER_SIZE + size:]
            if stream in self.wanted:
                out.append((stream, payload))
        return out


class _LogFollower:
    """Reads a container's log (json-file or conmon's k8s-file lines) from an open file: new
    records as they are written, through a rotation (the path's inode changes), and after the
    file is unlinked (AutoRemove)."""

    def __init__(self, path: str, *, from_start: bool) -> None:
        self.path = path
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self.file = os.fdopen(fd, "rb")
        if not from_start:
            self.file.seek(0, os.SEEK_END)
        self.partial = b""

    def read(self) -> list[tuple[str, bytes]]:
        out: list[tuple[str, bytes]] = []
        while True:
            data = self.partial + self.file.read()
            lines = data.split(b"\n")
            self.partial = lines.pop()
            out.extend(rec for rec in map(parse_line, lines) if rec is not None)
            try:
                rotated = os.stat(self.path).st_ino != os.fstat(self.file.fileno()).st_ino
            except FileNotFoundError:
                rotated = False  # removed: what we hold is all there is
            if not rotated:
                return out
            self.file.close()
            self.file = open(self.path, "rb")  # noqa: SIM115 - closed in close()
            self.partial = b""

    def close(self) -> None:
        self.file.close()


async def attach(request: web.Request) -> web.StreamResponse:
    cid = request.match_info["id"]
    # dockerd matches the detach keys (ctrl-p,ctrl-q unless given) on a Tty container's stdin
    # and ends the attach there (container/stream/attach.go copyEscapable).
    detach_keys = parse_detach_keys(request.query.get("detachKeys") or DEFAULT_DETACH_KEYS)
    want_stdin = bool_value(request, "stdin")
    wanted = {sid for name, sid in STREAM_IDS.items() if bool_value(request, name)}
    replay = bool_value(request, "logs")
    stream = bool_value(request, "stream")
    engine = engine_of(request)
    info = await asyncio.to_thread(engine.inspect, cid)
    tty = _is_tty(info)
    state = info["State"]
    active = state.get("Running") or state.get("Paused") or state.get("Restarting")
    conn: socket.socket | None = None
    follower: _LogFollower | None = None
    if stream and active:
        conn = await asyncio.to_thread(engine.attach, info["Id"])
    elif stream and getattr(engine, "attach_before_start", False):
        # The engine connects it at the next start, before the container's first output.
        conn = await asyncio.to_thread(functools.partial(engine.attach, info["Id"], before_start=True))
    elif stream:
        if (info.get("HostConfig") or {}).get("LogConfig", {}).get("Type", "json-file") == "none":
            raise NotSupported("attach to a container that is not running needs its json-file log "
                               '(this one has LogConfig "none"): start it first')
        follower = await asyncio.to_thread(_LogFollower, engine.log_path(info["Id"]), from_start=replay)
    hj = await hijack(request, RAW_STREAM if tty else MULTIPLEXED_STREAM)
    writer = StreamWriter(hj, multiplexed=not tty)
    try:
        if replay and follower is None:
            records = await asyncio.to_thread(engine.logs, info["Id"], stdout=STDOUT in wanted,
                                              stderr=STDERR in wanted)
            async for name, data in _iterate(records):
                await writer.write(STREAM_IDS.get(name, STDOUT), data)
        if conn is not None:
            await _attach_running(hj, writer, conn, wanted, tty=tty, stdin=want_stdin,
                                  detach_keys=detach_keys if tty else b"")
        elif follower is not None:
            await _attach_from_log(engine, info, hj, writer, follower, wanted, stdin=want_stdin,
                                   detach_keys=detach_keys if tty else b"")
    except (ConnectionResetError, BrokenPipeError):
        pass
    finally:
        if conn is not None:
            conn.close()
        if follower is not None:
            follower.close()
        await hj.close()
    return hj.response


async def _copy_stdin(hj: Hijacked, sock_writer: asyncio.StreamWriter, detach_keys: bytes = b"") -> bool:
    """Client -> container stdin; the client's half-close becomes ours (StdinOnce closes stdin).
    Typing `detach_keys` ends the attach (returns True): the monitor connection closes, and
    with it the loop that copies output, so the client's stream ends and the container runs on."""
    matcher = DetachMatcher(detach_keys)
    try:
        while True:
            data = await hj.reader.read(65536)
            if not data:
                break
            try:
                data = matcher.feed(data)
            except Detached as exc:
                sock_writer.write(exc.before)
                await sock_writer.drain()
                sock_writer.close()
                return True
            sock_writer.write(data)
            await sock_writer.drain()
        if sock_writer.can_write_eof():
            sock_writer.write_eof()
    except (ConnectionError, OSError):
        pass
    return False


async def _attach_running(hj: Hijacked, writer: StreamWriter, conn: socket.socket, wanted: set[int], *,
                          tty: bool, stdin: bool, detach_keys: bytes = b"") -> None:
    reader, sock_writer = await asyncio.open_unix_connection(sock=conn)
    feeder = asyncio.ensure_future(_copy_stdin(hj, sock_writer, detach_keys)) if stdin else None
    frames = _FrameFilter(wanted)
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            if tty:
                if wanted:
                    await writer.write(STDOUT, data)
                continue
            for sid, payload in frames.feed(data):
                await writer.write(sid, payload)
    finally:
        if feeder is not None:
            feeder.cancel()
        sock_writer.close()


async def _attach_from_log(engine: Any, info: dict[str, Any], hj: Hijacked, writer: StreamWriter,
                           follower: _LogFollower, wanted: set[int], *, stdin: bool,
                           detach_keys: bytes = b"") -> None:
    """Output of a container that starts after the attach, from its log (module docstring)."""
    cid, started_before = info["Id"], info["State"].get("StartedAt", "")
    feeder: asyncio.Future[bool] | None = None
    sock_writer: asyncio.StreamWriter | None = None
    drain: asyncio.Future[None] | None = None

    async def flush() -> None:
        for name, data in await asyncio.to_thread(follower.read):
            sid = STREAM_IDS.get(name, STDOUT)
            if sid in wanted:
                await writer.write(sid, data)

    try:
        seen_running = False
        while True:
            await flush()
            try:
                st = (await asyncio.to_thread(engine.inspect, cid))["State"]
            except NotFound:
                break  # removed (AutoRemove): the file we hold has everything
            running = bool(st.get("Running") or st.get("Paused") or st.get("Restarting"))
            if running and not seen_running:
                seen_running = True
                if stdin and feeder is None:
                    with contextlib.suppress(PalletError, OSError):
                        conn = await asyncio.to_thread(engine.attach, cid)
                        reader, sock_writer = await asyncio.open_unix_connection(sock=conn)
                        drain = asyncio.ensure_future(_discard(reader))
                        feeder = asyncio.ensure_future(_copy_stdin(hj, sock_writer, detach_keys))
            if not running and (seen_running or st.get("StartedAt", "") != started_before):
                break  # it ran and exited: the monitor wrote all output before the exit
            if feeder is not None and feeder.done() and not feeder.cancelled() and feeder.result():
                return  # the detach keys
            await asyncio.sleep(FOLLOW_POLL)
        await flush()
    finally:
        for fut in (feeder, drain):
            if fut is not None:
                fut.cancel()
        if sock_writer is not None:
            sock_writer.close()


async def _discard(reader: asyncio.StreamReader) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while await reader.read(65536):
            pass


# --- top, export, commit (stats: routes/stats.py) -----------------------------------------------

async def top(request: web.Request) -> web.Response:
    ps_args = request.query.get("ps_args") or "-ef"
    return web.json_response(await _call(request, "top", request.match_info["id"], ps_args))


class _ResponseSink:
    """A blocking file-like writer onto a chunked response, for the engine's export (which runs
    in a worker thread)."""

    def __init__(self, response: web.StreamResponse, loop: asyncio.AbstractEventLoop) -> None:
        self.response, self.loop = response, loop

    def write(self, data: Any) -> int:
        b = bytes(data)
        if b:
            asyncio.run_coroutine_threadsafe(self.response.write(b), self.loop).result(600)
        return len(b)

    def flush(self) -> None:
        pass


async def export(request: web.Request) -> web.StreamResponse:
    engine = engine_of(request)
    cid = (await asyncio.to_thread(engine.get, request.match_info["id"])).id
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/x-tar"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    sink = _ResponseSink(response, asyncio.get_running_loop())
    try:
        await asyncio.to_thread(engine.export, cid, sink)
    except Exception as exc:
        # The 200 is gone: cut the connection so the client sees a truncated transfer.
        log.error("export of %s failed after the first byte: %s", cid[:12], exc)
        if request.transport is not None:
            request.transport.abort()
        return response
    await response.write_eof()
    return response


def _changes(request: web.Request) -> list[str]:
    out: list[str] = []
    for value in request.query.getall("changes", []):
        out += [line for line in value.splitlines() if line.strip()]
    return out


async def commit(request: web.Request) -> web.Response:
    container = request.query.get("container", "")
    if not container:
        raise InvalidArgument("container is required")
    await json_body(request, default=None)  # a ContainerConfig to merge is not supported: read it
    repo, tag = request.query.get("repo", ""), request.query.get("tag", "")
    if tag and not repo:
        raise InvalidArgument("tag requires a repository (repo)")
    ref = f"{repo}:{tag}" if repo and tag else (repo or None)
    image_id = await _call(request, "commit", container, ref, author=request.query.get("author", ""),
                           message=request.query.get("comment", ""), changes=_changes(request),
                           pause=bool_value(request, "pause", True))
    return web.json_response({"Id": image_id}, status=201)
