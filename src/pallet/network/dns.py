"""The embedded DNS server: containers on a user-defined network resolve each other by name.

It runs inside palletd's asyncio loop, in the host's network namespace, like podman's
aardvark-dns: for each user-defined network it listens on the network's gateway address(es),
port 53, UDP and TCP. Docker instead listens on 127.0.0.11 inside every container's namespace;
doing that needs setns and NAT rules per container, which STYLE.md §8 keeps out of the daemon.

What a query gets (the behaviour of moby's libnetwork/resolver.go unless said otherwise):

- Scoping: the socket a query arrives on names the network; only that network's records answer.
  When the network was added with a prefix (`10.89.0.1/24`), queries from sources outside that
  subnet are REFUSED, so a gateway address is not an open resolver for the rest of the world.
- A / AAAA for a container's names (container name, network aliases, compose service name, short
  id: whatever the engine passes), case-insensitive, also as `name.<network name>` (Docker) and
  `name.<domain>` (podman's dns_domain). Several containers sharing a name (aliases, compose
  replicas) give all their addresses, shuffled (Docker's round robin). TTL 600 s (Docker's respTTL).
- A known name asked for another type, or for a family it has no address in, gets NOERROR with
  no answer (NODATA): the name exists, so an upstream's NXDOMAIN would be wrong (Docker does this
  for AAAA and MX).
- PTR for the network's container addresses answers `<first name>.<domain or network name>.`.
- Names under the network's `domain` that are not containers get an authoritative NXDOMAIN.
- Everything else is forwarded: to the container's `--dns` servers when the engine gave some,
  else to the nameservers of the host's resolv.conf (re-read when it changes; loopback servers
  such as systemd-resolved's 127.0.0.53 work because we run in the host namespace), at most 3 of
  them in order, 4 s each; SERVFAIL/REFUSED/non-authoritative NXDOMAIN moves on to the next
  server; no answer at all gives SERVFAIL. Queries over UDP are forwarded over UDP (a truncated
  answer is passed through so the client retries over TCP), TCP over TCP. Internal networks
  (`forward=False`) answer SERVFAIL instead (Docker, for networks without proxyDNS).
- Malformed input never reaches further than one reply: unparseable queries get FORMERR when
  their header is readable, packets with the QR bit set are dropped (no reflection loops),
  opcodes other than QUERY get NOTIMP. At most 1024 forwarded queries are in flight (Docker's
  maxConcurrent); more get SERVFAIL at once.

Where this differs from Docker: `--dns` servers, loopback ones included, are asked from the host's
namespace (Docker asks them from the container's); a single-label name that is not a container
is forwarded even when the user set `ndots` (Docker then answers NODATA). The host's firewall
must let UDP and TCP port 53 from each bridge to its gateway address in (netavark adds the same
INPUT rules for aardvark-dns).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import os
import random
import secrets
import socket
import threading
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.reversename
import dns.rrset

from pallet.errors import Conflict, InvalidArgument, NotFound, PalletError, PermissionDenied, Unavailable
from pallet.network.etcfiles import DEFAULT_IPV4_NAMESERVERS, parse_resolv_conf

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DNS_PORT = 53
TTL = 600                  # moby libnetwork/resolver.go respTTL
MAX_UPSTREAMS = 3          # moby maxExtDNS
FORWARD_TIMEOUT = 4.0      # moby extIOTimeout, per upstream server
MAX_INFLIGHT = 1024        # moby maxConcurrent
UDP_MIN_SIZE = 512         # RFC 1035 §4.2.1; more only when the query's EDNS allows it
TCP_IDLE_TIMEOUT = 10.0    # RFC 7766 §6.2.3 suggests a few seconds idle before closing
MAX_TCP_CONNECTIONS = 128  # per listening address; a client holding more is refused

# linux/in6.h IPV6_FREEBIND (Linux 4.15+); the socket module does not export it. IPv4 listeners
# bind strictly, so a gateway address missing from the host is an error, not a silent no-op.
_IPV6_FREEBIND = 78

_HEADER = 12
_UNREADABLE = (-1, -1, -1)  # the resolv.conf cache key while the file cannot be read
_QR = 0x8000


class DnsServerProtocol(Protocol):
    """The embedded DNS server as the engine sees it.

    Threading: the async methods run in the loop the server was started in (from another thread,
    use `asyncio.run_coroutine_threadsafe`); `set_records` and `remove_records` may be called from
    any thread (palletd's engine runs in worker threads) and take effect for the next query.
    """

    async def start(self) -> None:
        """Get ready to serve in the running loop; idempotent. Raises Unavailable after close()."""

    async def close(self) -> None:
        """Stop every listener and in-flight query and drop all records; idempotent. A closed
        server cannot be started again."""

    async def add_network(self, net_id: str, addresses: Iterable[str], *, name: str | None = None,
                          domain: str | None = None, forward: bool = True) -> None:
        """Listen on each of `addresses` (UDP and TCP, one port) for network `net_id`.

        Idempotent: again with the same addresses it only updates the options; with other
        addresses it binds the new ones first and then closes the dropped ones, so a failure
        leaves the network as it was. Raises Conflict if an address serves another network,
        InvalidArgument for a malformed or non-local address, PermissionDenied without the right
        to bind the port, Unavailable when something else holds it or the server is not running."""

    async def remove_network(self, net_id: str) -> None:
        """Stop listening for `net_id` and drop its records; a no-op for an unknown id."""

    def set_records(self, net_id: str, container_id: str, names: Iterable[str],
                    ipv4: str | Sequence[str] | None = None, ipv6: str | Sequence[str] | None = None,
                    upstreams: Sequence[str] | None = None, links: Mapping[str, str] | None = None) -> None:
        """Replace `container_id`'s records on `net_id`. Atomic: on error nothing changes.
        `links` ({alias: container name}, legacy --link on a user-defined network) are names
        only this container's queries resolve, to the named container's records (Docker).

        Raises NotFound for a network not added, InvalidArgument for a bad name or address,
        Conflict when an address belongs to another container of the network."""

    def remove_records(self, net_id: str, container_id: str) -> None:
        """Drop `container_id`'s records on `net_id`; a no-op if either is unknown."""


@dataclass(frozen=True)
class _Entry:
    """One container's records on one network."""

    names: tuple[str, ...]              # lower-case, no trailing dot; names[0] answers PTR queries
    ipv4: tuple[ipaddress.IPv4Address, ...]
    ipv6: tuple[ipaddress.IPv6Address, ...]
    upstreams: tuple[str, ...]          # --dns servers; empty: the host's resolvers
    links: tuple[tuple[str, str], ...] = ()  # (alias, target name): --link, for this container's queries

    def addresses(self) -> list[IPAddress]:
        return [*self.ipv4, *self.ipv6]


@dataclass(frozen=True)
class _Records:
    """An immutable snapshot of a network's records with its indexes: writers build a new one
    and swap it in with one attribute store, so the loop thread never sees a half-made index."""

    entries: Mapping[str, _Entry] = field(default_factory=dict)
    by_name: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    by_addr: Mapping[IPAddress, str] = field(default_factory=dict)

    @classmethod
    def build(cls, entries: Mapping[str, _Entry]) -> _Records:
        by_name: dict[str, tuple[str, ...]] = {}
        by_addr: dict[IPAddress, str] = {}
        for cid, e in entries.items():
            for n in e.names:
                by_name[n] = (*by_name.get(n, ()), cid)
            for a in e.addresses():
                by_addr[a] = cid
        return cls(dict(entries), by_name, by_addr)


@dataclass
class _Listener:
    address: IPAddress
    port: int
    udp: asyncio.DatagramTransport
    tcp: asyncio.Server
    conns: set[asyncio.StreamWriter] = field(default_factory=set)

    def close(self) -> None:
        self.udp.close()
        self.tcp.close()
        for w in list(self.conns):
            w.close()


@dataclass
class _Network:
    net_id: str
    name: str | None = None                 # `c1.<name>` resolves too (Docker)
    domain: str | None = None               # authoritative zone (podman's dns_domain)
    forward: bool = True
    allowed: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    listeners: dict[IPAddress, _Listener] = field(default_factory=dict)
    records: _Records = field(default_factory=_Records)

    def lookup(self, records: _Records, name: str) -> list[_Entry]:
        cids = records.by_name.get(name)
        if cids is None:
            for suffix in (self.domain, self.name):
                if suffix and name.endswith("." + suffix):
                    cids = records.by_name.get(name[: -len(suffix) - 1])
                    if cids:
                        break
        return [records.entries[c] for c in cids or ()]

    def in_domain(self, name: str) -> bool:
        return bool(self.domain) and (name == self.domain or name.endswith(f".{self.domain}"))

    def ptr_target(self, entry: _Entry) -> str:
        suffix = self.domain or self.name
        return f"{entry.names[0]}.{suffix}." if suffix else f"{entry.names[0]}."


@dataclass(frozen=True)
class _Forward:
    """A query the network does not answer itself."""

    query: dns.message.Message
    wire: bytes
    upstreams: tuple[str, ...]  # the asking container's --dns servers, or empty


def _norm_name(name: str) -> str:
    """A record name, lower-case without the final dot; InvalidArgument unless it is a DNS name
    (labels of 1-63 printable characters, no spaces, at most 255 bytes)."""
    if not name or not name.isprintable() or any(c.isspace() or c in "\\@" for c in name):
        raise InvalidArgument(f"invalid DNS name {name!r}")
    try:
        parsed = dns.name.from_text(name)
    except dns.exception.DNSException as exc:
        raise InvalidArgument(f"invalid DNS name {name!r}: {exc}") from exc
    text = parsed.to_text(omit_final_dot=True).lower()
    if text in ("", "@", "."):
        raise InvalidArgument(f"invalid DNS name {name!r}")
    return text


def _parse_addresses(value: str | Sequence[str] | None, what: str) -> list[IPAddress]:
    out: list[IPAddress] = []
    for v in [] if value is None else [value] if isinstance(value, str) else value:
        try:
            out.append(ipaddress.ip_address(v.split("/", 1)[0]))
        except ValueError as exc:
            raise InvalidArgument(f"invalid {what} address {v!r}") from exc
    return out


def _ipv4s(value: str | Sequence[str] | None) -> tuple[ipaddress.IPv4Address, ...]:
    out = []
    for a in _parse_addresses(value, "IPv4"):
        if not isinstance(a, ipaddress.IPv4Address):
            raise InvalidArgument(f"IPv4 address {a} is not an IPv4 address")
        out.append(a)
    return tuple(out)


def _ipv6s(value: str | Sequence[str] | None) -> tuple[ipaddress.IPv6Address, ...]:
    out = []
    for a in _parse_addresses(value, "IPv6"):
        if not isinstance(a, ipaddress.IPv6Address):
            raise InvalidArgument(f"IPv6 address {a} is not an IPv6 address")
        out.append(a)
    return tuple(out)


def _raw_reply(data: bytes, rcode: int) -> bytes:
    """A header-only reply to the query `data` (at least 12 bytes): same id and opcode, QR set,
    RD copied, no sections (used when the query itself cannot be parsed)."""
    flags = int.from_bytes(data[2:4], "big")
    out = _QR | (flags & 0x7800) | (flags & 0x0100) | 0x0080 | (rcode & 0xF)  # opcode, RD, RA
    return data[:2] + out.to_bytes(2, "big") + bytes(8)


def _with_id(wire: bytes, qid: int) -> bytes:
    return qid.to_bytes(2, "big") + wire[2:]


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer, net: _Network) -> None:
        self.server, self.net = server, net
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # CPython's selector datagram transport is not a DatagramTransport subclass; it has sendto.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        try:
            self.server._udp_query(self, data, addr)
        except Exception:  # one query's bug must not stop the endpoint
            log.exception("dns: failed to answer a UDP query from %s", addr[0])

    def error_received(self, exc: Exception) -> None:
        # ICMP errors for earlier replies (a client that went away); nothing to do.
        log.debug("dns: udp error on %s: %s", self.net.net_id, exc)


class _UpstreamUdp(asyncio.DatagramProtocol):
    def __init__(self, fut: asyncio.Future[bytes], check: _ResponseCheck) -> None:
        self.fut, self.check = fut, check

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        # A connected UDP socket only gets the server's datagrams; still drop anything that is not
        # the answer to our query (wrong id or question), as a resolver must (RFC 5452 §9.1).
        if not self.fut.done() and self.check(data):
            self.fut.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.fut.done():
            self.fut.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.fut.done():
            self.fut.set_exception(exc or ConnectionError("upstream socket closed"))


@dataclass(frozen=True)
class _ResponseCheck:
    qid: int
    question: tuple[dns.name.Name, int, int]

    def __call__(self, data: bytes) -> bool:
        if len(data) < _HEADER or int.from_bytes(data[:2], "big") != self.qid or not data[2] & 0x80:
            return False
        try:
            msg = dns.message.from_wire(data, question_only=True)
        except Exception:  # dnspython raises several kinds for garbage
            return False
        if len(msg.question) != 1:
            # A truncated reply may carry no question; accept it only when TC is set.
            return not msg.question and bool(msg.flags & dns.flags.TC)
        q = msg.question[0]
        return (q.name, q.rdtype, q.rdclass) == self.question


class DnsServer:
    """The embedded DNS server (implements DnsServerProtocol, which states the contract); the
    module docstring says what it answers.

    `port` is where it listens (53; 0 picks a free port per address, for tests: see
    `endpoints()`); `resolv_conf` is the host file with the upstream resolvers; `upstream_port`
    is the port upstreams listen on (53; tests point it at a fake upstream);
    `fallback_upstreams` are used when the host file lists none (Docker uses Google's public
    resolvers, see etcfiles); `bind_freebind` lets IPv6 addresses be bound while still in
    duplicate address detection (IPV6_FREEBIND), as a fresh bridge address is for a second."""

    def __init__(self, *, port: int = DNS_PORT, resolv_conf: Path = Path("/etc/resolv.conf"),
                 upstream_port: int = DNS_PORT, forward_timeout: float = FORWARD_TIMEOUT,
                 fallback_upstreams: Sequence[str] = DEFAULT_IPV4_NAMESERVERS,
                 max_inflight: int = MAX_INFLIGHT, ttl: int = TTL, bind_freebind: bool = True) -> None:
        self.port = port
        self.resolv_conf = resolv_conf
        self.upstream_port = upstream_port
        self.forward_timeout = forward_timeout
        self.fallback_upstreams = tuple(fallback_upstreams)
        self.max_inflight = max_inflight
        self.ttl = ttl
        self.bind_freebind = bind_freebind
        self._networks: dict[str, _Network] = {}
        self._owner: dict[IPAddress, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._inflight = 0
        self._lock: asyncio.Lock | None = None
        self._records_lock = threading.Lock()  # serialises record writers (any thread)
        self._state = "new"
        self._resolv_key: tuple[int, int, int] | None = None
        self._resolv_servers: tuple[str, ...] = ()

    # --- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        """Get ready to serve in the running loop; idempotent. Listening starts per network."""
        if self._state == "closed":
            raise Unavailable("the DNS server was closed")
        self._lock = self._lock or asyncio.Lock()
        self._state = "running"

    async def close(self) -> None:
        """Stop every listener and in-flight query and forget all records; idempotent."""
        if self._state == "closed":
            return
        self._state = "closed"
        for net in self._networks.values():
            for lst in net.listeners.values():
                lst.close()
        self._networks.clear()
        self._owner.clear()
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _running_lock(self) -> asyncio.Lock:
        if self._state != "running" or self._lock is None:
            raise Unavailable("the DNS server is not running")
        return self._lock

    # --- networks ----------------------------------------------------------------------------------
    async def add_network(self, net_id: str, addresses: Iterable[str], *, name: str | None = None,
                          domain: str | None = None, forward: bool = True) -> None:
        """Serve network `net_id` on `addresses` (its gateways, `10.89.0.1` or `10.89.0.1/24`; with
        a prefix, only sources in that subnet are answered). `name` makes `c1.<name>` resolve
        (Docker's network-name suffix); `domain` is an authoritative zone; `forward=False` (internal
        networks) answers SERVFAIL instead of forwarding. See DnsServerProtocol for the contract."""
        async with self._running_lock():
            addrs: list[IPAddress] = []
            allowed: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
            for text in addresses:
                try:
                    iface = ipaddress.ip_interface(text)
                except ValueError as exc:
                    raise InvalidArgument(f"invalid DNS listen address {text!r}") from exc
                if iface.ip not in addrs:
                    addrs.append(iface.ip)
                if "/" in text:
                    allowed.append(iface.network)
            if not addrs:
                raise InvalidArgument(f"network {net_id}: no address to serve DNS on")
            zone = _norm_name(domain) if domain else None
            suffix = _norm_name(name) if name else None
            for a in addrs:
                owner = self._owner.get(a)
                if owner is not None and owner != net_id:
                    raise Conflict(f"DNS address {a} is already used by network {owner}")
            net = self._networks.get(net_id) or _Network(net_id)
            new = [a for a in addrs if a not in net.listeners]
            bound: list[_Listener] = []
            try:
                for a in new:
                    bound.append(await self._listen(net, a))
            except BaseException:
                for lst in bound:
                    lst.close()
                raise
            net.name, net.domain = suffix, zone
            net.forward = forward
            net.allowed = tuple(allowed)
            for lst in bound:
                net.listeners[lst.address] = lst
                self._owner[lst.address] = net_id
            for a in [a for a in net.listeners if a not in addrs]:
                net.listeners.pop(a).close()
                self._owner.pop(a, None)
            self._networks[net_id] = net

    async def remove_network(self, net_id: str) -> None:
        """Stop serving `net_id` and drop its records; a no-op for an unknown id."""
        if self._state != "running":
            return
        async with self._running_lock():
            net = self._networks.pop(net_id, None)
            if net is None:
                return
            for a, lst in net.listeners.items():
                lst.close()
                self._owner.pop(a, None)

    def endpoints(self, net_id: str) -> list[tuple[str, int]]:
        """(address, port) the network is served on, UDP and TCP alike; NotFound if unknown."""
        net = self._network(net_id)
        return [(str(lst.address), lst.port) for lst in net.listeners.values()]

    def _network(self, net_id: str) -> _Network:
        net = self._networks.get(net_id)
        if net is None:
            raise NotFound(f"network {net_id} has no embedded DNS")
        return net

    # --- records -----------------------------------------------------------------------------------
    def set_records(self, net_id: str, container_id: str, names: Iterable[str],
                    ipv4: str | Sequence[str] | None = None, ipv6: str | Sequence[str] | None = None,
                    upstreams: Sequence[str] | None = None, links: Mapping[str, str] | None = None) -> None:
        """Replace `container_id`'s records on `net_id`: `names` (container name first: it answers
        PTR queries), its `ipv4` and `ipv6` address(es), `upstreams`, the container's `--dns`
        servers (None: the host's), and `links`, names only its own queries resolve (legacy
        --link aliases: {alias: target container name}). See DnsServerProtocol for the contract."""
        net = self._network(net_id)
        norm: list[str] = []
        for n in names:
            nn = _norm_name(n)
            if nn not in norm:
                norm.append(nn)
        if not norm:
            raise InvalidArgument(f"container {container_id[:12]}: no DNS name given")
        v4, v6 = _ipv4s(ipv4), _ipv6s(ipv6)
        ups: list[str] = []
        for u in upstreams or ():
            try:
                # A zone (fe80::1%eth0) is kept: link-local upstreams need it to be reachable.
                ipaddress.ip_address(u)
            except ValueError as exc:
                raise InvalidArgument(f"{u} is not an ip address") from exc
            ups.append(u)
        lk = tuple((_norm_name(a), _norm_name(t)) for a, t in (links or {}).items())
        entry = _Entry(tuple(norm), v4, v6, tuple(ups), lk)
        with self._records_lock:
            records = net.records
            for a in entry.addresses():
                other = records.by_addr.get(a)
                if other is not None and other != container_id:
                    raise Conflict(f"address {a} on network {net_id} belongs to container {other[:12]}")
            net.records = _Records.build({**records.entries, container_id: entry})

    def remove_records(self, net_id: str, container_id: str) -> None:
        """Forget `container_id`'s records on `net_id`; a no-op if either is unknown."""
        net = self._networks.get(net_id)
        if net is None:
            return
        with self._records_lock:
            if container_id in net.records.entries:
                net.records = _Records.build({k: v for k, v in net.records.entries.items()
                                              if k != container_id})

    # --- sockets -----------------------------------------------------------------------------------
    def _bind_error(self, exc: OSError, addr: IPAddress, port: int, proto: str) -> PalletError:
        where = f"cannot listen for DNS on {addr}:{port}/{proto}"
        if exc.errno == errno.EADDRINUSE:
            return Unavailable(f"{where}: the address is in use (another DNS server, e.g. dnsmasq or "
                               "systemd-resolved, holding port 53 on all addresses?)")
        if exc.errno == errno.EADDRNOTAVAIL:
            return InvalidArgument(f"{where}: {addr} is not an address of this host")
        if exc.errno in (errno.EACCES, errno.EPERM):
            return PermissionDenied(f"{where}: permission denied (needs CAP_NET_BIND_SERVICE)")
        return Unavailable(f"{where}: {exc.strerror or exc}")

    def _sockets(self, addr: IPAddress) -> tuple[socket.socket, socket.socket]:
        family = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
        attempts = 8 if self.port == 0 else 1
        for attempt in range(attempts):
            udp = socket.socket(family, socket.SOCK_DGRAM)
            tcp = socket.socket(family, socket.SOCK_STREAM)
            try:
                for s in (udp, tcp):
                    s.setblocking(False)
                    if family == socket.AF_INET6:
                        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                        if self.bind_freebind:
                            s.setsockopt(socket.IPPROTO_IPV6, _IPV6_FREEBIND, 1)
                # TIME_WAIT connections of a previous listener must not block a restart; UDP gets
                # no SO_REUSEADDR, so two servers can never split one address's queries.
                tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    udp.bind((str(addr), self.port))
                except OSError as exc:
                    raise self._bind_error(exc, addr, self.port, "udp") from exc
                port = udp.getsockname()[1]
                try:
                    tcp.bind((str(addr), port))
                    tcp.listen(128)
                except OSError as exc:
                    if self.port == 0 and exc.errno == errno.EADDRINUSE and attempt + 1 < attempts:
                        udp.close()
                        tcp.close()
                        continue
                    raise self._bind_error(exc, addr, port, "tcp") from exc
                return udp, tcp
            except BaseException:
                udp.close()
                tcp.close()
                raise
        raise AssertionError("unreachable")

    async def _listen(self, net: _Network, addr: IPAddress) -> _Listener:
        udp, tcp = self._sockets(addr)
        loop = asyncio.get_running_loop()
        port = udp.getsockname()[1]
        try:
            transport, _ = await loop.create_datagram_endpoint(lambda: _UdpProtocol(self, net), sock=udp)
        except BaseException:
            udp.close()
            tcp.close()
            raise
        holder: list[_Listener] = []

        async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._serve_tcp(net, holder[0], reader, writer)

        try:
            server = await asyncio.start_server(on_conn, sock=tcp)
        except BaseException:
            transport.close()
            tcp.close()
            raise
        lst = _Listener(addr, port, transport, server)
        holder.append(lst)
        log.info("dns: serving network %s on %s:%d", net.net_id, addr, port)
        return lst

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- queries -----------------------------------------------------------------------------------
    def _udp_query(self, proto: _UdpProtocol, data: bytes, addr: tuple[str | int, ...]) -> None:
        source = str(addr[0])
        result = self._answer(proto.net, data, source, max_size=None)
        if result is None:
            return
        if isinstance(result, bytes):
            if proto.transport is not None and not proto.transport.is_closing():
                proto.transport.sendto(result, addr)
            return

        async def forward(fwd: _Forward = result) -> None:
            reply = await self._forward(proto.net, fwd, tcp=False)
            if proto.transport is not None and not proto.transport.is_closing():
                proto.transport.sendto(reply, addr)

        self._spawn(forward())

    async def _serve_tcp(self, net: _Network, lst: _Listener, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        if len(lst.conns) >= MAX_TCP_CONNECTIONS:
            writer.close()
            return
        lst.conns.add(writer)
        peer = writer.get_extra_info("peername") or ("",)
        try:
            while True:
                try:
                    head = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE_TIMEOUT)
                    data = await asyncio.wait_for(reader.readexactly(int.from_bytes(head, "big")),
                                                  TCP_IDLE_TIMEOUT)
                except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
                    return
                result = self._answer(net, data, str(peer[0]), max_size=65535)
                if isinstance(result, _Forward):
                    result = await self._forward(net, result, tcp=True)
                if result is None:
                    continue
                writer.write(len(result).to_bytes(2, "big") + result)
                await writer.drain()
        except ConnectionError:
            return
        except Exception:
            log.exception("dns: failed to serve a TCP client %s", peer[0])
        finally:
            lst.conns.discard(writer)
            writer.close()

    def _answer(self, net: _Network, data: bytes, source: str, *,
                max_size: int | None) -> bytes | _Forward | None:
        """The reply to `data` from `source` (bytes), a query to forward, or None to drop it.
        `max_size` is None for UDP (the query's EDNS size decides) or the TCP limit."""
        if len(data) < _HEADER or int.from_bytes(data[2:4], "big") & _QR:
            return None  # not even a header, or a response: answering could start a loop
        try:
            query = dns.message.from_wire(data)
        except Exception:  # dnspython raises many kinds (FormError, ShortHeader, ValueError, ...)
            return _raw_reply(data, dns.rcode.FORMERR)
        if query.opcode() != dns.opcode.QUERY:
            return _raw_reply(data, dns.rcode.NOTIMP)
        if len(query.question) != 1:
            return _raw_reply(data, dns.rcode.FORMERR)
        if net.allowed:
            try:
                src = ipaddress.ip_address(source.split("%", 1)[0])
            except ValueError:
                return None
            if not any(src in n for n in net.allowed):
                return self._reply(query, dns.rcode.REFUSED, max_size=max_size)
        records = net.records
        try:
            cid = records.by_addr.get(ipaddress.ip_address(source.split("%", 1)[0]))
        except ValueError:
            cid = None
        links = dict(records.entries[cid].links) if cid is not None else {}
        response = self._local(net, query, max_size=max_size, links=links)
        if response is not None:
            return response
        if not net.forward:
            return self._reply(query, dns.rcode.SERVFAIL, max_size=max_size)
        upstreams = records.entries[cid].upstreams if cid is not None else ()
        return _Forward(query, data, upstreams)

    def _reply(self, query: dns.message.Message, rcode: dns.rcode.Rcode, *, max_size: int | None,
               answers: Sequence[dns.rdata.Rdata] = (), authoritative: bool = False) -> bytes:
        resp = dns.message.make_response(query, recursion_available=True)
        resp.set_rcode(rcode)
        if authoritative:
            resp.flags |= dns.flags.AA
        limit = max_size or max(UDP_MIN_SIZE, query.payload if query.edns >= 0 else 0)
        q = query.question[0]
        rdatas = list(answers)
        while True:
            resp.answer = [dns.rrset.from_rdata_list(q.name, self.ttl, rdatas)] if rdatas else []
            try:
                return resp.to_wire(max_size=limit)
            except dns.exception.TooBig:
                # moby truncateResp: drop answers until it fits; over UDP say so (TC) so the
                # client can retry over TCP.
                rdatas.pop()
                if max_size is None:
                    resp.flags |= dns.flags.TC

    def _local(self, net: _Network, query: dns.message.Message, *, max_size: int | None,
               links: Mapping[str, str] | None = None) -> bytes | None:
        q = query.question[0]
        if q.rdclass != dns.rdataclass.IN:
            return None
        name = q.name.to_text(omit_final_dot=True).lower()
        if q.rdtype == dns.rdatatype.PTR:
            return self._ptr(net, query, max_size=max_size)
        # a --link alias of the asking container first: it names that container for it alone
        entries = net.lookup(net.records, links[name]) if links and name in links else []
        entries = entries or net.lookup(net.records, name)
        if not entries:
            if name == net.domain:  # the zone's apex exists: NODATA, not NXDOMAIN (RFC 8020 §2)
                return self._reply(query, dns.rcode.NOERROR, max_size=max_size, authoritative=True)
            if net.in_domain(name):
                return self._reply(query, dns.rcode.NXDOMAIN, max_size=max_size, authoritative=True)
            return None
        rdatas: list[dns.rdata.Rdata] = []
        if q.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            v6 = q.rdtype == dns.rdatatype.AAAA
            seen: set[IPAddress] = set()
            for e in entries:
                for a in e.ipv6 if v6 else e.ipv4:
                    if a not in seen:
                        seen.add(a)
                        rdatas.append(dns.rdata.from_text(dns.rdataclass.IN, q.rdtype, str(a)))
            random.shuffle(rdatas)  # round robin between containers sharing a name, as Docker
        return self._reply(query, dns.rcode.NOERROR, max_size=max_size, answers=rdatas)

    def _ptr(self, net: _Network, query: dns.message.Message, *, max_size: int | None) -> bytes | None:
        try:
            addr = ipaddress.ip_address(dns.reversename.to_address(query.question[0].name))
        except (dns.exception.DNSException, ValueError):
            return None
        records = net.records
        cid = records.by_addr.get(addr)
        if cid is None:
            return None
        target = net.ptr_target(records.entries[cid])
        rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.PTR, target)
        return self._reply(query, dns.rcode.NOERROR, max_size=max_size, answers=[rdata])

    # --- forwarding --------------------------------------------------------------------------------
    def host_upstreams(self) -> tuple[str, ...]:
        """The host's nameservers from `resolv_conf`, re-read when the file changes."""
        try:
            st = os.stat(self.resolv_conf)
            key = (st.st_ino, st.st_size, st.st_mtime_ns)
            if key != self._resolv_key:
                self._resolv_servers = parse_resolv_conf(self.resolv_conf.read_text()).nameservers
                self._resolv_key = key
        except OSError as exc:
            if self._resolv_key != _UNREADABLE:  # say it once, not once per query
                log.warning("dns: cannot read %s: %s", self.resolv_conf, exc)
            self._resolv_key, self._resolv_servers = _UNREADABLE, ()
        return self._resolv_servers or self.fallback_upstreams

    def _is_self(self, upstream: str) -> bool:
        try:
            a = ipaddress.ip_address(upstream.split("%", 1)[0])
        except ValueError:
            return True
        return self.upstream_port == self.port and a in self._owner

    async def _forward(self, net: _Network, fwd: _Forward, *, tcp: bool) -> bytes:
        query = fwd.query
        servfail = self._reply(query, dns.rcode.SERVFAIL, max_size=65535 if tcp else None)
        servers = [u for u in fwd.upstreams or self.host_upstreams() if not self._is_self(u)][:MAX_UPSTREAMS]
        if not servers or self._inflight >= self.max_inflight:
            if servers:
                log.warning("dns: more than %d queries in flight; answering SERVFAIL", self.max_inflight)
            return servfail
        self._inflight += 1
        try:
            last: bytes | None = None
            for server in servers:
                qid = secrets.randbits(16)
                q = query.question[0]
                check = _ResponseCheck(qid, (q.name, q.rdtype, q.rdclass))
                wire = _with_id(fwd.wire, qid)
                try:
                    async with asyncio.timeout(self.forward_timeout):
                        reply = await (self._exchange_tcp if tcp else self._exchange_udp)(server, wire, check)
                except (OSError, TimeoutError, EOFError, ValueError) as exc:
                    log.debug("dns: upstream %s failed for %s: %r", server, q.name, exc)
                    continue
                rcode = reply[3] & 0xF
                authoritative = bool(reply[2] & 0x04)
                if rcode == dns.rcode.NOERROR or (rcode == dns.rcode.NXDOMAIN and authoritative):
                    return _with_id(reply, query.id)
                # SERVFAIL, REFUSED, a non-authoritative NXDOMAIN (RFC 8020 §2) or another error:
                # the next server may know better (moby resolver.go).
                last = reply
            return _with_id(last, query.id) if last is not None else servfail
        finally:
            self._inflight -= 1

    async def _exchange_udp(self, server: str, wire: bytes, check: _ResponseCheck) -> bytes:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bytes] = loop.create_future()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _UpstreamUdp(fut, check), remote_addr=(server, self.upstream_port))
        try:
            transport.sendto(wire)
            return await fut
        finally:
            transport.close()

    async def _exchange_tcp(self, server: str, wire: bytes, check: _ResponseCheck) -> bytes:
        reader, writer = await asyncio.open_connection(server, self.upstream_port)
        try:
            writer.write(len(wire).to_bytes(2, "big") + wire)
            await writer.drain()
            while True:
                size = int.from_bytes(await reader.readexactly(2), "big")
                data = await reader.readexactly(size)
                if check(data):
                    return data
        except asyncio.IncompleteReadError as exc:
            raise EOFError(f"upstream {server} closed the connection") from exc
        finally:
            writer.close()
