"""Docker's stream framings, for the routes that stream (logs, attach, exec, pull, build).

- Multiplexed stream (`application/vnd.docker.multiplexed-stream`, and what dockerd sends for a
  non-TTY attach/exec/logs): each frame is an 8-byte header `[stream, 0, 0, 0, size (uint32 big
  endian)]` then `size` bytes; stream 0 stdin, 1 stdout, 2 stderr, 3 systemerr (moby
  pkg/stdcopy/stdcopy.go).
- Raw stream (`application/vnd.docker.raw-stream`): the bytes as they are, for a TTY.
- JSON progress (pull, push, load, build): one JSON object per line (moby pkg/jsonmessage),
  errors as `{"errorDetail": {"message": ...}, "error": ...}` once the 200 is sent.
- Hijack: attach and exec start answer `101 UPGRADED` with `Connection: Upgrade` and
  `Upgrade: tcp`, then the connection carries the raw or multiplexed stream both ways
  (v1.50.yaml, "Hijacking"). `hijack()` does that on an aiohttp request.
"""

from __future__ import annotations

import asyncio
import json
import struct
from typing import Any

from aiohttp import web

RAW_STREAM = "application/vnd.docker.raw-stream"
MULTIPLEXED_STREAM = "application/vnd.docker.multiplexed-stream"

STDIN, STDOUT, STDERR, SYSTEMERR = 0, 1, 2, 3

_HEADER = struct.Struct(">BxxxL")
HEADER_SIZE = _HEADER.size  # 8
# dockerd splits writes into frames of at most 32 KiB (stdcopy's buffer); clients handle any size
# up to 2**32-1, but smaller frames keep latency even on big writes.
MAX_FRAME = 32 * 1024


def frame_header(stream: int, size: int) -> bytes:
    if stream not in (STDIN, STDOUT, STDERR, SYSTEMERR):
        raise ValueError(f"stream id {stream} is not 0 (stdin), 1 (stdout), 2 (stderr) or 3 (systemerr)")
    if not 0 <= size < 2 ** 32:
        raise ValueError(f"frame size {size} does not fit the 32-bit length field")
    return _HEADER.pack(stream, size)


def frames(stream: int, data: bytes, max_frame: int = MAX_FRAME) -> list[bytes]:
    """`data` framed for `stream`, split into frames of at most `max_frame` bytes; no empty frames."""
    out = []
    view = memoryview(data)
    for start in range(0, len(view), max_frame):
        chunk = view[start:start + max_frame]
        out.append(frame_header(stream, len(chunk)) + bytes(chunk))
    return out


class StreamWriter:
    """Writes a container's output to a prepared response or hijacked stream: framed with the
    8-byte header when `multiplexed`, as raw bytes otherwise (TTY)."""

    def __init__(self, sink: Any, *, multiplexed: bool) -> None:
        self._sink = sink  # anything with `async write(bytes)`
        self.multiplexed = multiplexed

    @property
    def content_type(self) -> str:
        return MULTIPLEXED_STREAM if self.multiplexed else RAW_STREAM

    async def write(self, stream: int, data: bytes) -> None:
        if not data:
            return
        if not self.multiplexed:
            await self._sink.write(data)
            return
        for piece in frames(stream, data):
            await self._sink.write(piece)


def progress_line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\r\n"


class ProgressWriter:
    """JSON-lines progress (docker pull/push/load output). Call `start()` first; after that the
    status is committed to 200, so failures are reported in-band with `error()`."""

    def __init__(self, request: web.Request) -> None:
        self._request = request
        self.response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})

    async def start(self) -> None:
        await self.response.prepare(self._request)

    async def status(self, status: str, *, id: str | None = None, progress: str | None = None,
                     current: int | None = None, total: int | None = None) -> None:
        obj: dict[str, Any] = {"status": status}
        if id is not None:
            obj["id"] = id
        if current is not None:
            obj["progressDetail"] = {"current": current, **({"total": total} if total is not None else {})}
        if progress is not None:
            obj["progress"] = progress
        await self.response.write(progress_line(obj))

    async def stream(self, text: str) -> None:
        """A line of build output ({"stream": ...})."""
        await self.response.write(progress_line({"stream": text}))

    async def aux(self, value: Any) -> None:
        await self.response.write(progress_line({"aux": value}))

    async def error(self, message: str) -> None:
        await self.response.write(progress_line({"errorDetail": {"message": message}, "error": message}))

    async def finish(self) -> None:
        await self.response.write_eof()


class _Feeder:
    """Takes the place of aiohttp's payload parser after the upgrade: bytes from the client go
    into a StreamReader (`set_parser` also hands over what arrived with the request head)."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if data:
            self._reader.feed_data(data)
        return False, b""

    def feed_eof(self) -> None:
        if not self._reader.at_eof():
            self._reader.feed_eof()


class _HalfCloseProtocol(asyncio.Protocol):
    """Wraps aiohttp's protocol after a hijack so that the client's half-close (docker's
    CloseWrite when stdin ends) ends only stdin: asyncio closes a transport whose protocol's
    eof_received() returns a false value, which aiohttp's does; this one returns True."""

    def __init__(self, inner: Any, feeder: _Feeder) -> None:
        self._inner = inner
        self._feeder = feeder

    def data_received(self, data: bytes) -> None:
        self._feeder.feed_data(data)

    def eof_received(self) -> bool:
        self._feeder.feed_eof()
        return True

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._feeder.feed_eof()
        self._inner.connection_lost(exc)


class Hijacked:
    """A hijacked connection: `reader` yields the client's bytes (stdin), `write()` sends ours."""

    def __init__(self, response: web.StreamResponse, reader: asyncio.StreamReader, upgraded: bool) -> None:
        self.response = response
        self.reader = reader
        self.upgraded = upgraded

    async def write(self, data: bytes) -> None:
        await self.response.write(data)

    async def close(self) -> None:
        """Finish the stream; aiohttp then closes the connection (keep-alive is off)."""
        try:
            await self.response.write_eof()
        except (ConnectionResetError, RuntimeError):
            pass


def wants_upgrade(request: web.Request) -> bool:
    conn = {t.strip().lower() for t in request.headers.get("Connection", "").split(",")}
    return "upgrade" in conn and request.headers.get("Upgrade", "").lower() == "tcp"


async def hijack(request: web.Request, content_type: str) -> Hijacked:
    """Take over the connection of an attach/exec request, as dockerd does.

    A client that asked for `Upgrade: tcp` gets `101 UPGRADED` and a bidirectional stream. An
    old client that did not ask gets `200 OK` and the output stream only (dockerd then also
    hijacks, but aiohttp has already parsed such a request's body; stdin is not available).
    """
    upgraded = wants_upgrade(request)
    if upgraded:
        response = web.StreamResponse(status=101, reason="UPGRADED", headers={
            "Content-Type": content_type, "Connection": "Upgrade", "Upgrade": "tcp"})
    else:
        response = web.StreamResponse(status=200, headers={"Content-Type": content_type})
    response.force_close()
    reader = asyncio.StreamReader(limit=2 ** 20)
    if upgraded:
        feeder = _Feeder(reader)
        protocol = request.protocol
        protocol.set_parser(feeder)  # type: ignore[arg-type]  # duck-typed like WebSocketReader
        transport = request.transport
        if transport is not None:
            transport.set_protocol(_HalfCloseProtocol(protocol, feeder))
    else:
        reader.feed_eof()
    await response.prepare(request)
    return Hijacked(response, reader, upgraded)
