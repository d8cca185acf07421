"""The userland proxy: published ports on IPv6 host addresses forwarded by palletd itself.

Why a proxy at all: IPv4's 127.0.0.1 is DNATed to the container by the kernel (route_localnet
on the bridge, see pallet.network.firewall), but IPv6 has no route_localnet: a packet from ::1
may not leave the loopback interface (RFC 4291 §2.5.3), so [::1]:8080 cannot be DNATed. Docker
runs docker-proxy for it (--userland-proxy=true, the default); Pallet runs the same forwarding
in the daemon's process: one listener per IPv6 binding, on a duplicate of the socket the port
reservation (pallet.network.ports.PortReserver) already holds, so the port is never free in
between. Other IPv6 host addresses are DNATed by the kernel before they reach this listener
(when the container has an IPv6 address), so only what the kernel cannot do comes here.

TCP: each accepted connection opens one to the container and copies both ways, half-closes
passed on (a client's shutdown(SHUT_WR) reaches the server). The copy is done by asyncio
protocols writing into each other's transports, with their flow control (a full write buffer
pauses the other side's reading): measured side by side, 64 MiB through [::1] ran at 0.53x of
direct 127.0.0.1 this way, 0.22x with asyncio streams (a read/write/drain loop). UDP: one upstream socket per
client address, dropped after 90 s without traffic, at most 1024 at once (docker-proxy's
UDPConnTrackTimeout and UDPBufSize limits). The target is the container's IPv6 address when it
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
import socket
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

UDP_TIMEOUT = 90.0       # docker-proxy: UDPConnTrackTimeout
UDP_MAX_CLIENTS = 1024   # docker-proxy: UDPBufSize bounds its conntrack table likewise
CONNECT_TIMEOUT = 10.0


@dataclass
class _Proxy:
    """One binding's listener and what it carries."""

    proto: str
    target: tuple[str, int]
    server: asyncio.AbstractServer | None = None
    udp: asyncio.DatagramTransport | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    relays: set[_TcpRelay] = field(default_factory=set)
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
            p.server = await loop.create_server(lambda: _TcpRelay(p), sock=sock, backlog=128)
        else:
            transport, _ = await loop.create_datagram_endpoint(lambda: _UdpFront(p), sock=sock)
            p.udp = transport
        return p

    async def _stop(self, ps: list[_Proxy]) -> None:
        for p in ps:
            if p.server is not None:
                p.server.close()
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
            if p.server is not None:
                await p.server.wait_closed()


class _TcpRelay(asyncio.Protocol):
    """One side of a proxied TCP connection, copying into its peer's transport: the accepted
    client's side opens the side towards the container. Flow control as asyncio's: a peer whose
    write buffer fills pauses our reading until it drains; an end of file is passed on as a
    half-close, so a client's shutdown(SHUT_WR) reaches the server."""

    def __init__(self, p: _Proxy, peer: _TcpRelay | None = None) -> None:
        self.p, self.peer = p, peer
        self.transport: asyncio.Transport | None = None
        self.eof = False
        self.pending: list[bytes] = []  # what the client sent before the container's side was up

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.p.relays.add(self)
        if self.peer is not None:  # the container's side, made by the client's
            client = self.peer
            client.peer = self
            for data in client.pending:
                transport.write(data)  # type: ignore[attr-defined]
            client.pending.clear()
            if client.eof:
                transport.write_eof()  # type: ignore[attr-defined]
        else:  # the client's side: connect to the container first
            transport.pause_reading()  # type: ignore[attr-defined]  # not always in time: `pending`
            task = asyncio.get_running_loop().create_task(self._connect())
            self.p.tasks.add(task)
            task.add_done_callback(self.p.tasks.discard)

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.create_connection(lambda: _TcpRelay(self.p, self), *self.p.target),
                                   CONNECT_TIMEOUT)
        except (TimeoutError, OSError):
            self.close()  # docker-proxy too just closes the client's connection
            return
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.p.relays.discard(self)
        if self.peer is not None:
            self.peer.close()

    def data_received(self, data: bytes) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.write(data)
        else:
            self.pending.append(data)

    def eof_received(self) -> bool:
        self.eof = True
        peer = self.peer.transport if self.peer is not None else None
        if peer is None:
            return True  # passed on once the container's side is up
        if peer.is_closing():
            return False
        if peer.can_write_eof():
            peer.write_eof()
        # both directions done: close; else keep the other direction open
        return not (self.peer is not None and self.peer.eof)

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        peer = self.peer.transport if self.peer is not None else None
        if peer is not None and not peer.is_closing():
            peer.resume_reading()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


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
