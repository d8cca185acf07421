"""Stream framing: the 8-byte multiplexed header, splitting, demultiplexing at any chunk
boundary, JSON progress lines, and the HTTP 101 hijack with stdin half-close."""

from __future__ import annotations

import asyncio
import json
import random
import socket
import struct
import time

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from pallet.api.client import APIError, demux
from pallet.api.server import streams
from pallet.api.server.streams import (
    MULTIPLEXED_STREAM,
    RAW_STREAM,
    STDERR,
    STDOUT,
    StreamWriter,
    frame_header,
    frames,
    progress_line,
)


def test_header_layout_matches_stdcopy():
    assert frame_header(STDOUT, 5) == b"\x01\x00\x00\x00\x00\x00\x00\x05"
    assert frame_header(STDERR, 0x01020304) == b"\x02\x00\x00\x00\x01\x02\x03\x04"
    assert streams.HEADER_SIZE == 8


@pytest.mark.parametrize(("stream", "size"), [(4, 1), (-1, 1), (1, -1), (1, 2 ** 32)])
def test_header_rejects_bad_values(stream, size):
    with pytest.raises(ValueError):
        frame_header(stream, size)


def test_frames_split_large_writes_and_skip_empty():
    data = bytes(range(256)) * 300  # 76800 bytes
    out = frames(STDOUT, data, max_frame=32 * 1024)
    assert [struct.unpack(">BxxxL", f[:8]) for f in out] == [(1, 32768), (1, 32768), (1, 11264)]
    assert b"".join(f[8:] for f in out) == data
    assert frames(STDOUT, b"") == []


def test_demux_roundtrip_at_every_chunk_boundary():
    rng = random.Random(4)
    parts = [(rng.choice([STDOUT, STDERR]), rng.randbytes(rng.randrange(1, 100))) for _ in range(50)]
    wire = b"".join(f for s, d in parts for f in frames(s, d))
    for size in (1, 3, 8, 9, 64, len(wire)):
        chunks = iter([wire[i:i + size] for i in range(0, len(wire), size)])
        assert list(demux(chunks)) == parts


def test_demux_reports_a_truncated_frame():
    with pytest.raises(APIError, match="ended inside a frame"):
        list(demux(iter([frame_header(STDOUT, 10) + b"abc"])))


class Sink:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    async def write(self, data: bytes) -> None:
        self.writes.append(data)


def test_stream_writer_multiplexed_and_raw():
    mux, raw = Sink(), Sink()

    async def go() -> None:
        w = StreamWriter(mux, multiplexed=True)
        await w.write(STDOUT, b"out")
        await w.write(STDERR, b"err")
        await w.write(STDOUT, b"")
        r = StreamWriter(raw, multiplexed=False)
        await r.write(STDOUT, b"tty bytes")
        assert (w.content_type, r.content_type) == (MULTIPLEXED_STREAM, RAW_STREAM)

    asyncio.run(go())
    assert mux.writes == [frame_header(1, 3) + b"out", frame_header(2, 3) + b"err"]
    assert raw.writes == [b"tty bytes"]


def test_progress_line_is_one_json_object_per_line():
    line = progress_line({"status": "Pulling", "id": "abc"})
    assert line.endswith(b"\r\n") and json.loads(line) == {"status": "Pulling", "id": "abc"}


def _hijack_app() -> web.Application:
    """An exec-like endpoint: hijack, echo stdin to stdout framed, then 'exit' on stdin EOF."""

    async def attach(request: web.Request) -> web.StreamResponse:
        h = await streams.hijack(request, MULTIPLEXED_STREAM)
        out = StreamWriter(h, multiplexed=True)
        while True:
            data = await h.reader.read(4096)
            if not data:
                break
            await out.write(STDOUT, data.upper())
        await out.write(STDERR, b"bye")
        await h.close()
        return h.response

    app = web.Application()
    app.router.add_post("/exec/x/start", attach)
    return app


def _recv_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_hijack_upgrades_echoes_and_survives_stdin_half_close():
    async def go() -> bytes:
        server = TestServer(_hijack_app())
        await server.start_server()
        try:
            def client() -> bytes:
                s = socket.create_connection((server.host, server.port), timeout=10)
                # As the docker CLI and docker-py do: the request with its JSON body, then stdin
                # only once the 101 has arrived. (aiohttp's C parser drops bytes sent behind
                # an upgrade request's body before the 101; see docs/design/daemon.md.)
                s.sendall(b"POST /exec/x/start HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                          b"Upgrade: tcp\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
                          b"\r\n{}")
                head = b""
                while b"\r\n\r\n" not in head:
                    head += s.recv(1)
                s.sendall(b"hello ")
                time.sleep(0.05)
                s.sendall(b"world")
                s.shutdown(socket.SHUT_WR)  # docker's CloseWrite: stdin ends, output must continue
                rest = _recv_until_closed(s)
                s.close()
                return head + rest

            return await asyncio.get_running_loop().run_in_executor(None, client)
        finally:
            await server.close()

    reply = asyncio.run(go())
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 101 UPGRADED"
    hdrs = {k.lower(): v for k, _, v in (ln.partition(": ") for ln in lines[1:])}
    assert hdrs["content-type"] == MULTIPLEXED_STREAM
    assert hdrs["upgrade"] == "tcp" and hdrs["connection"].lower() == "upgrade"
    got = list(demux(iter([body])))
    assert b"".join(d for s, d in got if s == STDOUT) == b"HELLO WORLD"
    assert got[-1] == (STDERR, b"bye")
