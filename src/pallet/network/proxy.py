"""The userland proxy: published ports on IPv6 host addresses forwarded by palletd itself.

Why a proxy at all: IPv4's 127.0.0.1 is DNATed to the container by the kernel (route_localnet
on the bridge, see pallet.network.firewall), but IPv6 has no route_localnet: a packet from ::1
may not leave the loopback interface (RFC 4291 §2.5.3), so [::1]:8080 cannot be DNATed. Docker
runs docker-proxy for it (--userland-proxy=true, the default); Pallet runs the same forwarding
in the daemon's process: one listener per IPv6 binding, on a duplicate of the socket the port
reservation (pallet.network.ports.PortReserver) already holds, so the port is never free in
between. Other IPv6 host addresses are DNATed by the kernel before they reach this listener
(when the container has an IPv6 address), so only what the kernel cannot do comes here.

TCP: each accepted connection opens one to the container (a refusal resets the client's) and
splices both ways (splice(2): socket -> pipe -> socket inside the kernel, in the loop thread
with add_reader/add_writer), half-closes passed on (a client's shutdown(SHUT_WR) reaches the
server). Measured before: asyncio protocols copying into each other's transports ran 64 MiB
through [::1] at 0.53x of direct 127.0.0.1, asyncio streams at 0.22x; the splice relay, on
127.0.0.1 against loopback, 0.8-1.0x (docs/design/network.md, "Throughput"). UDP: one upstream
socket per client address, dropped after 90 s without traffic, at most 1024 at once
(docker-proxy's UDPConnTrackTimeout and UDPBufSize limits). The target is the container's IPv6 address when it
has one, else its IPv4 address (as docker-proxy on an IPv4-only network).

The proxies run on an asyncio loop in a daemon thread of their own, started at the first
proxied binding: the network manager is blocking and runs in the engine's worker threads (and
without palletd in tests). `stop(owner)` closes an owner's listeners and connections; nothing
outlives a container's run. After a daemon restart the manager reserves the ports of running
containers again and starts their proxies (NetworkManager.reconcile).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import socket
import struct
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

UDP_TIMEOUT = 90.0       # docker-proxy: UDPConnTrackTimeout
UDP_MAX_CLIENTS = 1024   # docker-proxy: UDPBufSize bounds its conntrack table likewise
CONNECT_TIMEOUT = 10.0
PIPE_SIZE = 1 << 20      # each relay direction's pipe: the most one splice(2) call moves
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)  # fcntl(2); Python has the name since 3.10
SPLICE_FLAGS = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK
READ_ROUNDS = 16         # splices per readiness callback at most (fairness between relays)


@dataclass
class _Proxy:
    """One binding's listener and what it carries."""

    proto: str
    target: tuple[str, int]
    listener: socket.socket | None = None
    udp: asyncio.DatagramTransport | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    relays: set[_SpliceRelay] = field(default_factory=set)
    clients: dict[Any, _UdpUpstream] = field(default_factory=dict)


class UserlandProxy:
    """See the module docstring. Thread-safe: every method hands its work to the loop thread."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._proxies: dict[str, list[_Proxy]] = {}

    def _call(self, coro: Coroutine[Any, Any, Any], timeout: float = 10.0) -> Any:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=self._loop.run_forever, name="pallet-proxy",
                                                daemon=True)
                self._thread.start()
            loop = self._loop
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)

    def start(self, owner: str, proto: str, sock: socket.socket, target: tuple[str, int]) -> None:
        """Forward what arrives on `sock` (bound, not listening; the proxy listens on a duplicate,
        the caller keeps and closes its own) to `target`. OSError when it cannot listen."""
        dup = sock.dup()
        dup.setblocking(False)
        try:
            p = self._call(self._start(proto, dup, target))
        except BaseException:
            dup.close()
            raise
        with self._lock:
            self._proxies.setdefault(owner, []).append(p)

    def stop(self, owner: str) -> None:
        """Close `owner`'s listeners and every connection through them; idempotent."""
        with self._lock:
            ps = self._proxies.pop(owner, [])
        if ps:
            self._call(self._stop(ps))

    def owners(self) -> list[str]:
        with self._lock:
            return sorted(self._proxies)

    def close(self) -> None:
        """Stop every proxy and the loop thread."""
        for owner in self.owners():
            with contextlib.suppress(Exception):
                self.stop(owner)
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)
            if not thread.is_alive():
                loop.close()

    # --- on the loop thread -------------------------------------------------------------------
    async def _start(self, proto: str, sock: socket.socket, target: tuple[str, int]) -> _Proxy:
        loop = asyncio.get_running_loop()
        p = _Proxy(proto, target)
        if proto == "tcp":
            sock.listen(128)
            p.listener = sock
            loop.add_reader(sock.fileno(), _accept, p)
        else:
            transport, _ = await loop.create_datagram_endpoint(lambda: _UdpFront(p), sock=sock)
            p.udp = transport
        return p

    async def _stop(self, ps: list[_Proxy]) -> None:
        loop = asyncio.get_running_loop()
        for p in ps:
            if p.listener is not None:
                loop.remove_reader(p.listener.fileno())
                p.listener.close()
            if p.udp is not None:
                p.udp.close()
            for up in list(p.clients.values()):
                up.close()
            for r in list(p.relays):
                r.close()
            for t in list(p.tasks):
                t.cancel()
        for p in ps:
            if p.tasks:
                await asyncio.wait(list(p.tasks), timeout=2)


def _accept(p: _Proxy) -> None:
    """The listener is readable: accept what is queued and connect each to the container."""
    loop = asyncio.get_running_loop()
    assert p.listener is not None
    for _ in range(64):  # a bounded batch: other proxies' work is not starved
        try:
            client, _addr = p.listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # EMFILE and the like: the connection waits in the backlog for the next turn
        client.setblocking(False)
        task = loop.create_task(_connect(p, client))
        p.tasks.add(task)
        task.add_done_callback(p.tasks.discard)


async def _connect(p: _Proxy, client: socket.socket) -> None:
    """Open the container's side, then splice both ways. Until then the client's bytes wait in
    its socket's receive queue (nothing reads it)."""
    loop = asyncio.get_running_loop()
    up = socket.socket(socket.AF_INET6 if ":" in p.target[0] else socket.AF_INET, socket.SOCK_STREAM)
    up.setblocking(False)
    try:
        await asyncio.wait_for(loop.sock_connect(up, p.target), CONNECT_TIMEOUT)
    except (TimeoutError, OSError):
        up.close()
        # A reset, not an end of file: the client sees ECONNRESET, close to the refusal it would
        # get without a proxy, not an empty answer (docker-proxy just closes).
        with contextlib.suppress(OSError):
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
        return
    except BaseException:  # cancelled: the proxy stops
        up.close()
        client.close()
        raise
    p.relays.add(_SpliceRelay(p, client, up))


class _SpliceRelay:
    """A proxied TCP connection: two `_Splice` directions between the client's socket and the
    container's. An end of file is passed on as a half-close (shutdown(SHUT_WR)), so a client's
    shutdown reaches the server; the relay closes when both directions ended or either failed."""

    def __init__(self, p: _Proxy, client: socket.socket, upstream: socket.socket) -> None:
        self.p = p
        self.socks = (client, upstream)
        self.closed = False
        self.dirs: list[_Splice] = []
        try:
            for src, dst in ((client, upstream), (upstream, client)):
                self.dirs.append(_Splice(self, src, dst))
        except OSError:  # no pipe (EMFILE): drop this connection, not the proxy
            self.close()
            return
        for d in self.dirs:
            d.want_read(True)

    def ended(self) -> None:
        if all(d.eof_sent for d in self.dirs):
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for d in self.dirs:
            d.close()
        for sock in self.socks:
            sock.close()
        self.p.relays.discard(self)


class _Splice:
    """One direction of a relay, src -> pipe -> dst with splice(2): the bytes move between the
    sockets' buffers inside the kernel, never copied through Python (asyncio's protocols copy
    every chunk twice and cost half the throughput; see the module docstring). Flow control:
    src is read only while the pipe is empty; a dst that cannot take more (EAGAIN) stops the
    reading and is waited for with add_writer."""

    def __init__(self, relay: _SpliceRelay, src: socket.socket, dst: socket.socket) -> None:
        self.relay, self.src, self.dst = relay, src, dst
        self.loop = asyncio.get_running_loop()
        self.r, self.w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        with contextlib.suppress(OSError):  # a larger pipe: fewer calls; fs.pipe-max-size caps it
            fcntl.fcntl(self.w, F_SETPIPE_SZ, PIPE_SIZE)
        self.fill = 0
        self.eof = self.eof_sent = False
        self.reading = self.writing = False

    def want_read(self, on: bool) -> None:
        if on and not self.reading:
            self.loop.add_reader(self.src.fileno(), self._readable)
        elif not on and self.reading:
            self.loop.remove_reader(self.src.fileno())
        self.reading = on

    def want_write(self, on: bool) -> None:
        if on and not self.writing:
            self.loop.add_writer(self.dst.fileno(), self._writable)
        elif not on and self.writing:
            self.loop.remove_writer(self.dst.fileno())
        self.writing = on

    def _writable(self) -> None:
        if self._flush():
            self._readable()  # what arrived while dst was full

    def _readable(self) -> None:
        # Several rounds per wake-up while data flows: a round trip through the selector for
        # every pipe-full costs more than the splices themselves.
        for _ in range(READ_ROUNDS):
            try:
                n = os.splice(self.src.fileno(), self.w, PIPE_SIZE, flags=SPLICE_FLAGS)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.relay.close()  # reset by the peer and the like
                return
            if n == 0:
                self.eof = True
                self.want_read(False)
            self.fill += n
            if not self._flush() or self.eof:
                return

    def _flush(self) -> bool:
        """Move the pipe's bytes to dst; True when it is empty and src may be read again."""
        while self.fill:
            try:
                m = os.splice(self.r, self.dst.fileno(), self.fill, flags=SPLICE_FLAGS)
            except (BlockingIOError, InterruptedError):
                self.want_read(False)
                self.want_write(True)
                return False
            except OSError:
                self.relay.close()
                return False
            if m == 0:
                self.relay.close()
                return False
            self.fill -= m
        self.want_write(False)
        if not self.eof:
            self.want_read(True)
            return True
        if not self.eof_sent:
            self.eof_sent = True
            with contextlib.suppress(OSError):
                self.dst.shutdown(socket.SHUT_WR)
            self.relay.ended()
        return False

    def close(self) -> None:
        self.want_read(False)
        self.want_write(False)
        os.close(self.r)
        os.close(self.w)


class _UdpFront(asyncio.DatagramProtocol):
    """The proxied binding's socket: datagrams from clients go out through their upstream."""

    def __init__(self, p: _Proxy) -> None:
        self.p = p
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        up = self.p.clients.get(addr)
        if up is not None:
            up.send(data)
            return
        if len(self.p.clients) >= UDP_MAX_CLIENTS:
            return  # dropped, as docker-proxy does when its table is full
        up = _UdpUpstream(self, addr)
        self.p.clients[addr] = up
        up.pending.append(data)
        loop = asyncio.get_running_loop()
        task = loop.create_task(up.open(self.p.target))
        self.p.tasks.add(task)
        task.add_done_callback(self.p.tasks.discard)


class _UdpUpstream(asyncio.DatagramProtocol):
    """One client's socket towards the container; replies go back to the client."""

    def __init__(self, front: _UdpFront, client: Any) -> None:
        self.front, self.client = front, client
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: list[bytes] = []
        self.last = time.monotonic()
        self.timer: asyncio.TimerHandle | None = None
        self.closed = False

    async def open(self, target: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.create_datagram_endpoint(lambda: self, remote_addr=target)
        except OSError:
            self.close()
            return
        if self.closed:  # stopped meanwhile
            self.transport.close() if self.transport is not None else None
            return
        for d in self.pending:
            self.send(d)
        self.pending.clear()
        self.timer = loop.call_later(UDP_TIMEOUT, self._expire)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, data: bytes) -> None:
        self.last = time.monotonic()
        if self.transport is None:
            self.pending.append(data)
        else:
            self.transport.sendto(data)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.last = time.monotonic()
        if self.front.transport is not None:
            self.front.transport.sendto(data, self.client)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP unreachable from the container: the client times out, as with the kernel's NAT

    def _expire(self) -> None:
        idle = time.monotonic() - self.last
        if idle >= UDP_TIMEOUT:
            self.close()
        else:
            self.timer = asyncio.get_running_loop().call_later(UDP_TIMEOUT - idle, self._expire)

    def close(self) -> None:
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
        if self.transport is not None:
            self.transport.close()
        self.front.p.clients.pop(self.client, None)
