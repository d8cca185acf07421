"""Exec routes: `POST /containers/{id}/exec`, `POST /exec/{id}/start`, `GET /exec/{id}/json` and
`POST /exec/{id}/resize` (v1.50.yaml, tag "Exec").

The engine runs the process (`runtime exec`) and hands back an `ExecSession`: pipes, or the pty
master for a Tty exec. Starting it attached hijacks the connection (streams.hijack): output goes
out multiplexed (non-Tty) or raw (Tty), what the client sends goes to stdin, and the client's
half-close closes stdin. The stream ends when the process has exited and its output is drained;
the exit code is then in `GET /exec/{id}/json`, where the docker CLI reads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from pallet.api.server.app import Router
from pallet.api.server.requests import int_value, json_body
from pallet.api.server.routes.containers import engine_of, resolve
from pallet.api.server.streams import (
    MULTIPLEXED_STREAM,
    RAW_STREAM,
    STDERR,
    STDOUT,
    Hijacked,
    StreamWriter,
    hijack,
)
from pallet.errors import InvalidArgument, NotSupported

# Attached sessions being served, by exec id: resize finds a Tty exec's pty master here.
_SESSIONS: dict[str, Any] = {}


def register(router: Router) -> None:
    router.add("POST", "/containers/{id}/exec", create)
    router.add("POST", "/exec/{id}/start", start)
    router.add("GET", "/exec/{id}/json", inspect)
    router.add("POST", "/exec/{id}/resize", resize)


async def create(request: web.Request) -> web.Response:
    body = await json_body(request, default=None)
    if not isinstance(body, dict):
        raise InvalidArgument("exec: the body must be an ExecConfig JSON object")
    if body.get("DetachKeys"):
        raise NotSupported("detach keys are not supported yet")
    eid = await asyncio.to_thread(engine_of(request).exec_create, request.match_info["id"], body)
    return web.json_response({"Id": eid}, status=201)


async def inspect(request: web.Request) -> web.Response:
    info = await asyncio.to_thread(engine_of(request).exec_inspect, request.match_info["id"])
    return web.json_response(info)


async def resize(request: web.Request) -> web.Response:
    """Sets the window size of a running Tty exec's terminal (TIOCSWINSZ on its pty master)."""
    h, w = int_value(request, "h"), int_value(request, "w")
    engine = engine_of(request)
    info = await asyncio.to_thread(engine.exec_inspect, request.match_info["id"])  # 404 first
    session = _SESSIONS.get(info["ID"])
    if session is not None and session.pty >= 0 and h > 0 and w > 0:
        with contextlib.suppress(OSError):
            set_winsize(session.pty, h, w)
    return web.Response(status=200)


def set_winsize(fd: int, rows: int, cols: int) -> None:
    import fcntl
    import struct
    import termios

    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


async def start(request: web.Request) -> web.StreamResponse:
    body = await json_body(request, default={}) or {}
    if not isinstance(body, dict):
        raise InvalidArgument("exec start: the body must be a JSON object")
    engine = engine_of(request)
    eid = request.match_info["id"]
    info = await asyncio.to_thread(engine.exec_inspect, eid)
    detach = bool(body.get("Detach"))
    if detach:
        await asyncio.to_thread(engine.exec_start, eid, True)
        return web.Response(status=200)
    tty = bool(info["ProcessConfig"]["tty"])
    session = await asyncio.to_thread(engine.exec_start, eid, False)
    size = body.get("ConsoleSize")
    if tty and session.pty >= 0 and isinstance(size, list) and len(size) == 2 and all(size):
        with contextlib.suppress(OSError, TypeError, ValueError):
            set_winsize(session.pty, int(size[0]), int(size[1]))
    _SESSIONS[eid] = session
    try:
        hj = await hijack(request, RAW_STREAM if tty else MULTIPLEXED_STREAM)
    except BaseException:
        _SESSIONS.pop(eid, None)
        session.close()
        raise
    writer = StreamWriter(hj, multiplexed=not tty)
    try:
        if tty:
            await _run_tty(hj, writer, session)
        else:
            await _run_pipes(hj, writer, session)
    except (ConnectionResetError, BrokenPipeError):
        pass
    finally:
        _SESSIONS.pop(eid, None)
        await asyncio.to_thread(session.wait)
        session.close()
        await hj.close()
    return hj.response


async def _read_fd(fd: int) -> AsyncIterator[bytes]:
    """Chunks from a pipe or pty master, read when the loop says it is readable; ends at EOF
    (or EIO: a pty master once every slave is closed)."""
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    while True:
        ready = loop.create_future()
        loop.add_reader(fd, resolve, ready)
        try:
            await ready
        finally:
            loop.remove_reader(fd)
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            continue
        except OSError:
            return
        if not data:
            return
        yield data


async def _write_fd(fd: int, data: bytes) -> None:
    view = memoryview(data)
    loop = asyncio.get_running_loop()
    while view:
        try:
            n = os.write(fd, view)
            view = view[n:]
        except BlockingIOError:
            ready = loop.create_future()
            loop.add_writer(fd, resolve, ready)
            try:
                await ready
            finally:
                loop.remove_writer(fd)


async def _feed_stdin(hj: Hijacked, fd: int, *, close: bool) -> None:
    """Client -> the process's stdin until the client half-closes; then close the pipe."""
    os.set_blocking(fd, False)
    try:
        while True:
            data = await hj.reader.read(65536)
            if not data:
                break
            await _write_fd(fd, data)
    except OSError:
        pass
    finally:
        if close:
            with contextlib.suppress(OSError):
                os.close(fd)


async def _run_pipes(hj: Hijacked, writer: StreamWriter, session: Any) -> None:
    feeder = None
    if session.stdin is not None:
        fd = os.dup(session.stdin.fileno())
        session.stdin.close()
        session.stdin = None
        feeder = asyncio.ensure_future(_feed_stdin(hj, fd, close=True))

    async def pump(f: Any, stream: int) -> None:
        if f is None:
            return
        async for data in _read_fd(f.fileno()):
            await writer.write(stream, data)

    try:
        await asyncio.gather(pump(session.stdout, STDOUT), pump(session.stderr, STDERR))
    finally:
        if feeder is not None:
            feeder.cancel()


async def _run_tty(hj: Hijacked, writer: StreamWriter, session: Any) -> None:
    master = session.pty
    feeder = asyncio.ensure_future(_feed_stdin(hj, master, close=False))
    try:
        async for data in _read_fd(master):
            await writer.write(STDOUT, data)
    finally:
        feeder.cancel()
