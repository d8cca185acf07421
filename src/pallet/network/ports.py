"""Published ports: HostConfig.PortBindings parsed, host ports chosen and held.

The kernel forwards a published port by DNAT (pallet.network.firewall), so nothing listens on
the host port; the daemon still binds a socket to it (without listening) for as long as the
container runs. That reserves the port against other programs and other containers, and
makes a port that something else holds fail at start with Docker's message, as dockerd 25+
does (it binds the port even without the userland proxy). -P and port 0 take a free port from
the kernel's ephemeral range (bind to port 0), a host-port range the first free one in it.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pallet.errors import InvalidArgument, PalletError


@dataclass(frozen=True)
class PortRequest:
    """One wanted binding: container port/proto on host_ip, host ports first..last (0: any)."""

    proto: str
    container_port: int
    host_ip: str
    first: int
    last: int


@dataclass(frozen=True)
class Binding:
    """A binding in force (what inspect's NetworkSettings.Ports shows)."""

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
                if ip.version == 6:
                    if ip.is_unspecified:
                        continue  # "::" with "0.0.0.0": the IPv4 binding covers it here
                    raise InvalidArgument(f"publishing on IPv6 address {host_ip} is not supported")
                host_ip = "" if ip.is_unspecified else str(ip)
            first, last = _host_ports((b or {}).get("HostPort") or "")
            out.append(PortRequest(proto, port, host_ip, first, last))
    if publish_all:
        for key in exposed:
            port, proto = parse_port_key(key)
            if (port, proto) not in seen:
                seen.add((port, proto))
                out.append(PortRequest(proto, port, "", 0, 0))
    return out


class PortReserver:
    """Holds one bound socket per binding in force, by owner (a container id). Thread-safe use
    is the caller's (the network manager's lock)."""

    def __init__(self) -> None:
        self._held: dict[str, list[tuple[Binding, socket.socket]]] = {}

    def _bind(self, proto: str, host_ip: str, port: int) -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
        try:
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
                got.append(self._one(r))
        except BaseException:
            for _b, s in got:
                s.close()
            raise
        self._held.setdefault(owner, []).extend(got)
        return [b for b, _s in got]

    def _one(self, r: PortRequest) -> tuple[Binding, socket.socket]:
        addr = r.host_ip or "0.0.0.0"
        candidates = [0] if r.first == 0 else list(range(r.first, r.last + 1))
        last_exc: OSError | None = None
        for port in candidates:
            if any(b.proto == r.proto and b.host_port == port and (not b.host_ip or not r.host_ip
                                                                   or b.host_ip == r.host_ip)
                   for held in self._held.values() for b, _s in held) and port:
                last_exc = OSError(errno.EADDRINUSE, "port is already allocated")
                continue
            try:
                s = self._bind(r.proto, r.host_ip, port)
            except OSError as exc:
                last_exc = exc
                continue
            return Binding(r.proto, r.container_port, r.host_ip, s.getsockname()[1]), s
        shown = f"{r.first}-{r.last}" if r.last != r.first else str(r.first)
        if last_exc is not None and last_exc.strerror == "port is already allocated":
            raise PalletError(f"Bind for {addr}:{shown} failed: port is already allocated")
        raise PalletError(f"failed to bind host port {addr}:{shown}/{r.proto}: "
                          f"{last_exc.strerror if last_exc else 'no port'}: address already in use")

    def release(self, owner: str) -> None:
        for _b, s in self._held.pop(owner, []):
            with contextlib.suppress(OSError):
                s.close()

    def held(self, owner: str) -> list[Binding]:
        return [b for b, _s in self._held.get(owner, [])]
