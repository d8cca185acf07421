"""The userland proxy's TCP relay (splice(2) through a pipe per direction), on loopback only:
megabytes both ways with a half-close in between, a target that refuses, and a stop that ends
live connections without leaving a file descriptor behind."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from pallet.network.ports import PortRequest, PortReserver
from pallet.network.proxy import UserlandProxy

PAYLOAD = os.urandom(1 << 16) * 64  # 4 MiB: many pipe-fulls and EAGAINs on the way


@pytest.fixture
def upper() -> Iterator[int]:
    """A TCP server on 127.0.0.1 (the "container") answering each connection with the upper-cased
    bytes it got, after the client half-closed. Yields its port."""
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(10)
                data = bytearray()
                while chunk := conn.recv(1 << 16):
                    data += chunk
                conn.sendall(bytes(data).upper())

    t = threading.Thread(target=serve)
    t.start()
    try:
        yield srv.getsockname()[1]
    finally:
        stop.set()
        t.join()
        srv.close()


def _proxy(reserver: PortReserver, proxy: UserlandProxy, target_port: int) -> int:
    (b,) = reserver.reserve("c1", [PortRequest("tcp", target_port, "127.0.0.1", 0, 0)])
    for bb, sock in reserver.sockets("c1"):
        proxy.start("c1", bb.proto, sock, ("127.0.0.1", bb.container_port))
    return b.host_port


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_megabytes_both_ways_with_half_close(upper):
    reserver, proxy = PortReserver(ipv6=False), UserlandProxy()
    try:
        port = _proxy(reserver, proxy, upper)
        before = _fds()
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
                sender = threading.Thread(target=lambda: (c.sendall(PAYLOAD), c.shutdown(socket.SHUT_WR)))
                sender.start()
                got = bytearray()
                while chunk := c.recv(1 << 16):
                    got += chunk
                sender.join()
            assert bytes(got) == PAYLOAD.upper()
        proxy.stop("c1")
        assert _fds() <= before  # relays' sockets and pipes closed
    finally:
        proxy.close()
        reserver.release("c1")


def test_a_refusing_target_closes_the_client():
    with socket.create_server(("127.0.0.1", 0)) as gone:
        dead = gone.getsockname()[1]  # closed below: nothing listens there
    reserver, proxy = PortReserver(ipv6=False), UserlandProxy()
    try:
        port = _proxy(reserver, proxy, dead)
        got = b"not closed"
        try:  # the reset may come back before connect() returns, or at the first read
            with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
                c.settimeout(10)
                got = c.recv(10)
        except ConnectionResetError:
            got = b""
        assert got == b""
    finally:
        proxy.close()
        reserver.release("c1")


def test_stop_ends_live_connections(upper):
    reserver, proxy = PortReserver(ipv6=False), UserlandProxy()
    try:
        port = _proxy(reserver, proxy, upper)
        c = socket.create_connection(("127.0.0.1", port), timeout=10)
        c.sendall(b"still open")
        (p,) = proxy._proxies["c1"]
        deadline = time.monotonic() + 10
        while not p.relays and time.monotonic() < deadline:  # accepted and connected upstream
            time.sleep(0.01)
        assert p.relays
        proxy.stop("c1")
        c.settimeout(10)
        try:
            assert c.recv(10) == b""  # the proxy closed its side
        except ConnectionResetError:
            pass
        c.close()
        reserver.release("c1")  # the listening socket is the reservation's (as the manager does)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    finally:
        proxy.close()
        reserver.release("c1")
