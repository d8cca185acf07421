"""Published ports: HostConfig.PortBindings parsed, host ports chosen and held.

The kernel forwards a published port by DNAT (pallet.network.firewall), so nothing listens on
the host port; the daemon still binds a socket to it (without listening) for as long as the
container runs. That reserves the port against other programs and other containers, and
makes a port that something else holds fail at start with Docker's message, as dockerd 25+
does (it binds the port even without the userland proxy). -P and port 0 take a free port from
the kernel's ephemeral range (bind to port 0), a host-port range the first free one in it.

Address families, as dockerd 25+: a binding without HostIp publishes on 0.0.0.0 and on [::]
(the same host port; the IPv6 half only when the host has IPv6), "0.0.0.0" on IPv4 only, "::"
or an IPv6 address on IPv6 only. IPv6 sockets are V6ONLY so that [::]:8080 and 0.0.0.0:8080
are two bindings, as Docker shows them. An IPv6 binding's socket is what the userland proxy
(pallet.network.proxy) listens on: IPv6 has no route_localnet, so [::1] cannot be DNATed.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pallet.errors import InvalidArgument, PalletError


@dataclass(frozen=True)
class PortRequest:
    """One wanted binding: container port/proto on host_ip, host ports first..last (0: any).
    host_ip "" is every address of both families, "0.0.0.0" every IPv4 one, "::" every IPv6 one."""

    proto: str
    container_port: int
    host_ip: str
    first: int
    last: int


@dataclass(frozen=True)
class Binding:
    """A binding in force (what inspect's NetworkSettings.Ports shows). host_ip "" (state
    written before IPv6 publishing) and "0.0.0.0" are every IPv4 address, "::" every IPv6 one."""

    proto: str
    container_port: int
    host_ip: str
    host_port: int

    def to_dict(self) -> dict[str, Any]:
        return {"Proto": self.proto, "ContainerPort": self.container_port, "HostIp": self.host_ip,
                "HostPort": self.host_port}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Binding:
        return cls(d["Proto"], int(d["ContainerPort"]), d["HostIp"], int(d["HostPort"]))


def parse_port_key(key: str) -> tuple[int, str]:
    """"80/tcp" (or "80": tcp) as (80, "tcp")."""
    port, _, proto = str(key).partition("/")
    proto = proto or "tcp"
    if proto not in ("tcp", "udp", "sctp"):
        raise InvalidArgument(f"invalid proto: {proto}")
    if proto == "sctp":
        raise InvalidArgument("publishing sctp ports is not supported")
    try:
        n = int(port)
    except ValueError:
        raise InvalidArgument(f"invalid containerPort: {port}") from None
    if not 0 < n < 65536:
        raise InvalidArgument(f"invalid containerPort: {port}")
    return n, proto


def _host_ports(raw: str) -> tuple[int, int]:
    raw = (raw or "").strip()
    if not raw:
        return 0, 0
    a, sep, b = raw.partition("-")
    try:
        first, last = int(a), int(b) if sep else int(a)
    except ValueError:
        raise InvalidArgument(f"invalid hostPort: {raw}") from None
    if not (0 <= first <= 65535 and 0 <= last <= 65535 and first <= last):
        raise InvalidArgument(f"invalid hostPort: {raw}")
    return first, last


def requests(port_bindings: Mapping[str, Any] | None, exposed: Iterable[str] = (),
             publish_all: bool = False) -> list[PortRequest]:
    """The bindings a container wants: PortBindings ({"80/tcp": [{"HostIp", "HostPort"}]}),
    and with PublishAllPorts every exposed port not bound already, on a free host port."""
    out: list[PortRequest] = []
    seen: set[tuple[int, str]] = set()
    for key, binds in (port_bindings or {}).items():
        port, proto = parse_port_key(key)
        seen.add((port, proto))
        for b in binds or [{}]:
            host_ip = (b or {}).get("HostIp") or ""
            if host_ip:
                try:
                    ip = ipaddress.ip_address(host_ip)
                except ValueError:
                    raise InvalidArgument(f"invalid IP address: {host_ip}") from None
                if ip.version == 6 and ip.ipv4_mapped is not None:
                    raise InvalidArgument(f"invalid IP address: {host_ip} (an IPv4-mapped IPv6 address)")
                if "%" in host_ip:
                    raise InvalidArgument(f"invalid IP address: {host_ip} (a zone is not supported)")
                host_ip = str(ip)
            first, last = _host_ports((b or {}).get("HostPort") or "")
            out.append(PortRequest(proto, port, host_ip, first, last))
    if publish_all:
        for key in exposed:
            port, proto = parse_port_key(key)
            if (port, proto) not in seen:
                seen.add((port, proto))
                out.append(PortRequest(proto, port, "", 0, 0))
    return out


def is_v6(host_ip: str) -> bool:
    return ":" in host_ip


def is_any(host_ip: str) -> bool:
    """Every address of its family ("" and "0.0.0.0" for IPv4, "::" for IPv6)."""
    return host_ip in ("", "0.0.0.0", "::")


def host_has_ipv6(proc: str = "/proc") -> bool:
    """Whether the host can bind IPv6 sockets (dockerd skips the [::] half otherwise)."""
    try:
        with open(os.path.join(proc, "sys/net/ipv6/conf/all/disable_ipv6")) as f:
            return f.read().strip() == "0" and socket.has_ipv6
    except OSError:
        return False


def show(host_ip: str, port: int | str) -> str:
    """host:port as Go's net.JoinHostPort (what Docker's messages print): [::]:8080."""
    host = host_ip or "0.0.0.0"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class PortReserver:
    """Holds one bound socket per binding in force, by owner (a container id). Thread-safe use
    is the caller's (the network manager's lock). `ipv6` says whether a request without HostIp
    gets its [::] half (default: whether the host has IPv6)."""

    def __init__(self, ipv6: bool | None = None) -> None:
        self._held: dict[str, list[tuple[Binding, socket.socket]]] = {}
        self.ipv6 = host_has_ipv6() if ipv6 is None else ipv6

    def _bind(self, proto: str, host_ip: str, port: int) -> socket.socket:
        v6 = is_v6(host_ip)
        s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET,
                          socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
        try:
            if v6 and proto == "tcp":
                # The proxy listens on it: a port in TIME_WAIT from the last run binds again. Not
                # on the IPv4 sockets: never listening, they hold the port only because no one
                # else may bind it, which two non-listening SO_REUSEADDR sockets could.
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if v6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # [::] apart from 0.0.0.0
            s.bind((host_ip or "0.0.0.0", port))
        except OSError:
            s.close()
            raise
        return s

    def reserve(self, owner: str, reqs: Iterable[PortRequest]) -> list[Binding]:
        """Bind every request or none: PalletError (Docker's 500 at start) naming the port that
        is taken."""
        got: list[tuple[Binding, socket.socket]] = []
        try:
            for r in reqs:
                got.extend(self._request(r, got))
        except BaseException:
            for _b, s in got:
                s.close()
            raise
        self._held.setdefault(owner, []).extend(got)
        return [b for b, _s in got]

    def _request(self, r: PortRequest, pending: list[tuple[Binding, socket.socket]]
                 ) -> list[tuple[Binding, socket.socket]]:
        if r.host_ip or not self.ipv6:
            return [self._one(r, pending)]
        # Both families on one host port (dockerd 25+): IPv4 first, then the same port on [::];
        # an ephemeral port taken on IPv6 only is given back and another one tried.
        v4 = PortRequest(r.proto, r.container_port, "0.0.0.0", r.first, r.last)
        candidates = [0] * 8 if r.first == 0 else list(range(r.first, r.last + 1))
        last: PalletError | None = None
        for port in candidates:
            try:
                b4 = self._one(PortRequest(v4.proto, v4.container_port, v4.host_ip, port, port)
                               if port else v4, pending)
            except PalletError as exc:
                last = exc
                continue
            try:
                b6 = self._one(PortRequest(r.proto, r.container_port, "::", b4[0].host_port,
                                           b4[0].host_port), [*pending, b4])
            except PalletError as exc:
                b4[1].close()
                last = exc
                continue
            return [b4, b6]
        assert last is not None
        raise last

    def _taken(self, r: PortRequest, port: int, pending: list[tuple[Binding, socket.socket]]) -> bool:
        """Held by us already: same protocol and family, and one side every address or the same."""
        held = [b for v in self._held.values() for b, _s in v] + [b for b, _s in pending]
        return bool(port) and any(
            b.proto == r.proto and b.host_port == port and is_v6(b.host_ip) == is_v6(r.host_ip)
            and (is_any(b.host_ip) or is_any(r.host_ip) or b.host_ip == r.host_ip) for b in held)

    def _one(self, r: PortRequest, pending: list[tuple[Binding, socket.socket]] | None = None
             ) -> tuple[Binding, socket.socket]:
        addr = r.host_ip or "0.0.0.0"
        candidates = [0] if r.first == 0 else list(range(r.first, r.last + 1))
        last_exc: OSError | None = None
        for port in candidates:
            if self._taken(r, port, pending or []):
                last_exc = OSError(errno.EADDRINUSE, "port is already allocated")
                continue
            try:
                s = self._bind(r.proto, addr, port)
            except OSError as exc:
                last_exc = exc
                continue
            return Binding(r.proto, r.container_port, addr, s.getsockname()[1]), s
        shown = f"{r.first}-{r.last}" if r.last != r.first else str(r.first)
        if last_exc is not None and last_exc.strerror == "port is already allocated":
            raise PalletError(f"Bind for {show(addr, shown)} failed: port is already allocated")
        why = {errno.EADDRINUSE: "address already in use",
               errno.EADDRNOTAVAIL: "cannot assign requested address (not an address of this host)"}
        reason = why.get(last_exc.errno or 0, str(last_exc.strerror).lower()) if last_exc else "no port"
        raise PalletError(f"failed to bind host port {show(addr, shown)}/{r.proto}: {reason}")

    def release(self, owner: str) -> None:
        for _b, s in self._held.pop(owner, []):
            with contextlib.suppress(OSError):
                s.close()

    def release_all(self) -> None:
        """Close every socket (the daemon stops: its process exit would do the same)."""
        for owner in list(self._held):
            self.release(owner)

    def held(self, owner: str) -> list[Binding]:
        return [b for b, _s in self._held.get(owner, [])]

    def sockets(self, owner: str) -> list[tuple[Binding, socket.socket]]:
        """The bound sockets of `owner`'s bindings (the proxy listens on duplicates of them)."""
        return list(self._held.get(owner, []))
