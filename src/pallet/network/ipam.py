"""IP address management: subnet choice from address pools and address allocation in a subnet.

Pure functions and one small class over plain data, so that the network manager can keep the
state in its versioned JSON file (pallet.network.manager) and unit tests need no kernel.

Pools follow Docker's defaults (libnetwork/ipamutils): 172.17.0.0/16 through 172.31.0.0/16,
then 192.168.0.0/20 through 192.168.240.0/20. A pool subnet is skipped when it overlaps one
in use by another network or a route of the host (what Docker's `netutils.FindAvailableNetwork`
also avoids), so a daemon next to Docker or a VPN picks a free one. IPv6 subnets without an
explicit --subnet come from fd00::/8 (a unique-local /64 derived from the network id), as
Docker 27 does for `--ipv6` without a subnet.

Addresses are handed out in order after the last one given (libnetwork's bitseq "serial"
allocation), wrapping around, so that an address just released is not reused at once (ARP
caches of peers still point at the old MAC); an address in the allocation map is never handed
out twice.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from pallet.errors import InvalidArgument, PermissionDenied, Unavailable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def default_pools() -> Iterator[ipaddress.IPv4Network]:
    """Docker's default address pools, in order."""
    for second in range(17, 32):
        yield ipaddress.IPv4Network(f"172.{second}.0.0/16")
    for third in range(0, 256, 16):
        yield ipaddress.IPv4Network(f"192.168.{third}.0/20")


def parse_network(raw: str, what: str = "subnet") -> Network:
    try:
        net = ipaddress.ip_network(raw, strict=False)
    except ValueError:
        raise InvalidArgument(f"invalid {what} {raw!r}: want CIDR notation such as 172.28.0.0/16") from None
    if str(net) != raw.strip() and "/" in raw:
        # Docker keeps what was given but the host bits must be zero for a subnet.
        host_bits = ipaddress.ip_interface(raw).ip != net.network_address
        if host_bits:
            raise InvalidArgument(f"invalid {what} {raw!r}: it has host bits set (did you mean {net}?)")
    if net.max_prefixlen - net.prefixlen < 2:
        raise InvalidArgument(f"invalid {what} {raw!r}: too small for a gateway and one container")
    return net


def pick_subnet(used: Iterable[str], pools: Iterable[Network] | None = None) -> Network:
    """The first pool subnet that overlaps none of `used` (CIDRs of other networks and host
    routes). Unavailable when every pool subnet is taken."""
    taken = [ipaddress.ip_network(u, strict=False) for u in used]
    for cand in pools if pools is not None else default_pools():
        if not any(cand.version == t.version and cand.overlaps(t) for t in taken):
            return cand
    raise Unavailable("could not find an available, non-overlapping IPv4 address pool among the defaults "
                      "to assign to the network")


def ula_subnet(network_id: str) -> ipaddress.IPv6Network:
    """A unique-local /64 for a network without an IPv6 subnet (RFC 4193: fd + 40 bits)."""
    h = hashlib.sha256(network_id.encode()).digest()
    prefix = bytes([0xFD]) + h[:5] + b"\x00\x00" + bytes(8)
    return ipaddress.IPv6Network((prefix, 64))


def check_overlap(subnet: Network, others: Mapping[str, str]) -> None:
    """PermissionDenied (Docker's 403, libnetwork ErrPoolOverlap) when `subnet` overlaps the
    subnet of another network (`others`: subnet -> network name)."""
    for raw, name in others.items():
        o = ipaddress.ip_network(raw, strict=False)
        if o.version == subnet.version and o.overlaps(subnet):
            raise PermissionDenied("invalid pool request: Pool overlaps with other one on this address "
                                   f"space ({subnet} overlaps {o} of network {name})")


def pool_config(subnet: Network, gateway: str = "", ip_range: str = "") -> dict[str, str]:
    """An IPAM.Config entry, checked: the gateway and the range lie inside the subnet; the
    gateway defaults to the first address."""
    gw: Address
    if gateway:
        try:
            gw = ipaddress.ip_address(gateway)
        except ValueError:
            raise InvalidArgument(f"invalid gateway address {gateway!r}") from None
        if gw not in subnet or gw in (subnet.network_address, subnet.broadcast_address):
            raise InvalidArgument(f"invalid gateway {gateway}: it is not a host address of subnet {subnet}")
    else:
        gw = subnet.network_address + 1
    out = {"Subnet": str(subnet), "Gateway": str(gw)}
    if ip_range:
        rng = parse_network(ip_range, "ip-range")
        if rng.version != subnet.version or not rng.subnet_of(subnet):  # type: ignore[arg-type]
            raise InvalidArgument(f"invalid ip-range {ip_range}: it is not inside subnet {subnet}")
        out["IPRange"] = str(rng)
    return out


class Allocator:
    """Addresses of one pool (an IPAM.Config entry) over `state`, a JSON-able dict this class
    owns: {"allocated": {address: owner}, "last": address}. Not thread-safe: the manager
    calls it under its lock and saves `state` after each change."""

    def __init__(self, config: Mapping[str, str], state: dict[str, Any]) -> None:
        self.subnet = ipaddress.ip_network(config["Subnet"])
        self.gateway = ipaddress.ip_address(config["Gateway"])
        self.range = ipaddress.ip_network(config["IPRange"]) if config.get("IPRange") else self.subnet
        self.state = state
        state.setdefault("allocated", {})
        state.setdefault("last", "")

    def _usable(self, a: Address) -> bool:
        if a == self.gateway or a == self.subnet.network_address:
            return False
        return not (self.subnet.version == 4 and a == self.subnet.broadcast_address)

    def request(self, owner: str, address: str = "") -> str:
        """Allocate `address` (InvalidArgument outside the subnet, PermissionDenied when taken:
        Docker answers 403 "Address already in use") or the next free one (Unavailable when
        the pool is exhausted)."""
        alloc: dict[str, str] = self.state["allocated"]
        if address:
            try:
                a = ipaddress.ip_address(address)
            except ValueError:
                raise InvalidArgument(f"invalid IP address {address!r}") from None
            if a not in self.subnet or not self._usable(a):
                raise InvalidArgument(f"no configured subnet or ip-range contain the IP address {address}")
            if str(a) in alloc and alloc[str(a)] != owner:
                raise PermissionDenied(f"Address already in use: {a}")
            alloc[str(a)] = owner
            return str(a)
        first, last = int(self.range.network_address), int(self.range.broadcast_address)
        size = last - first + 1
        start = int(ipaddress.ip_address(self.state["last"])) + 1 if self.state["last"] else first
        if not first <= start <= last:
            start = first
        # Walk the range at most once (a million candidates at most: an IPv6 /64 is sparse).
        for i in range(min(size, 1 << 20)):
            cand = ipaddress.ip_address(first + (start - first + i) % size)
            if self._usable(cand) and str(cand) not in alloc:
                alloc[str(cand)] = owner
                self.state["last"] = str(cand)
                return str(cand)
        raise Unavailable(f"no available IPv{self.subnet.version} addresses on this network's address pools: "
                          f"{self.range} is exhausted")

    def release(self, address: str) -> None:
        self.state["allocated"].pop(address, None)

    def release_owner(self, owner: str) -> list[str]:
        return self.release_owner_state(self.state, owner)

    @staticmethod
    def release_owner_state(state: dict[str, Any], owner: str) -> list[str]:
        """Free every address of `owner` in an Allocator `state` (no pool config needed)."""
        alloc = state.get("allocated") or {}
        gone = [a for a, o in alloc.items() if o == owner]
        for a in gone:
            del alloc[a]
        return gone
