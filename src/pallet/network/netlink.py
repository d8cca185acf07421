"""The one door to rtnetlink: bridges, veth pairs, addresses and routes, through pyroute2.

This is the only module that imports pyroute2 (STYLE.md §1, checked by
tests/unit/test_architecture.py). The driver (pallet.network.bridge) talks to the `Netlink`
protocol below; unit tests pass `RecordingNetlink` and assert on its calls, integration tests
run `PyrouteNetlink` against the kernel.

Configuring an interface inside a container's network namespace needs a netlink socket opened
in that namespace. pyroute2's `IPRoute(netns=path)` gets one from a short-lived forked child
that calls setns(2) and passes the socket back over a unix socket; the daemon itself never
changes namespace (STYLE.md §8), as with podman's netavark, which also forks for this.

Subnet routes may carry a TCP congestion control (`congctl`, the route attribute RTAX_CC_ALGO,
ip-route(8) "congctl"): the driver asks for it on the bridge's connected routes on the host and
on the container's own, so that TCP between the host and its containers does not use a host
default made for long paths (why: docs/design/network.md, "Throughput"). Setting it is best
effort: a kernel without that algorithm keeps the plain route and the network works as before.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
from dataclasses import dataclass, field
from typing import Any, Protocol

from pallet.errors import NotFound, PalletError


@dataclass(frozen=True)
class IfAddr:
    """An interface address: "172.18.0.2" with its prefix length."""

    address: str
    prefixlen: int

    @property
    def family(self) -> int:
        return 6 if ":" in self.address else 4


@dataclass(frozen=True)
class VethRequest:
    """One container interface: the host end `host_name` joins `bridge`; the peer moves into the
    namespace at `netns_path` and is named `ifname` there with `mac`, `addresses`, and default
    routes through `gateways` (one per family at most)."""

    host_name: str
    bridge: str
    netns_path: str
    ifname: str
    mac: str
    addresses: tuple[IfAddr, ...]
    gateways: tuple[str, ...] = ()
    mtu: int = 1500
    congctl: str = ""  # congestion control for the interface's subnet routes; "" the default


class Netlink(Protocol):
    """What the bridge driver needs from the kernel's routing and link layer.

    Every method is idempotent where its docstring says so; errors are PalletError with the
    operation and the object named (the cause kept)."""

    def link_names(self) -> list[str]:
        """Names of the links of the host's (the caller's) network namespace."""
        ...

    def routed_networks(self) -> list[str]:
        """Destination networks (CIDR) of the host's IPv4 and IPv6 routes, main table, default
        route excluded; what an IPAM pool must not hand out."""
        ...

    def ensure_bridge(self, name: str, addresses: tuple[IfAddr, ...], mtu: int = 1500,
                      congctl: str = "") -> None:
        """Create bridge `name` if it is missing, add the addresses it lacks, set it up; with
        `congctl`, its connected routes use that TCP congestion control. Idempotent."""
        ...

    def delete_link(self, name: str) -> None:
        """Delete link `name` (a bridge, or a veth with its peer); nothing if it is gone."""
        ...

    def add_veth(self, req: VethRequest) -> None:
        """Create and configure one container interface (see VethRequest). On failure nothing
        of it is left on the host."""
        ...


def _err(what: str, exc: BaseException) -> PalletError:
    return PalletError(f"netlink {what}: {exc}")


def _set_congctl(ipr: Any, idx: int, addresses: tuple[IfAddr, ...], congctl: str) -> None:
    """Replace the kernel's connected routes of `addresses` on link `idx` (main table, proto
    kernel) by the same routes with RTAX_CC_ALGO `congctl`. Only routes that exist are replaced:
    a replace that created an IPv6 prefix route before addrconf adds its own would leave two.
    Best effort (see the module docstring): an unknown algorithm leaves the route as it was."""
    if not congctl or not addresses:
        return
    from pyroute2.netlink.exceptions import NetlinkError  # not an OSError in pyroute2 0.9

    nets = {ipaddress.ip_interface(f"{a.address}/{a.prefixlen}").network for a in addresses}
    for family in sorted({10 if a.family == 6 else 2 for a in addresses}):
        for r in ipr.get_routes(family=family, table=254, oif=idx):
            dst, plen = r.get("dst"), r["dst_len"]
            if not dst or r["proto"] != 2:  # RTPROT_KERNEL
                continue
            if ipaddress.ip_network(f"{dst}/{plen}", strict=False) not in nets:
                continue
            if (r.get("metrics") or {}).get("attrs") and dict(r.get("metrics")["attrs"]).get(
                    "RTAX_CC_ALGO") == congctl:
                continue
            spec: dict[str, Any] = {"dst": dst, "dst_len": plen, "oif": idx, "family": family,
                                    "table": 254, "proto": 2, "scope": r["scope"], "type": r["type"]}
            for attr in ("prefsrc", "priority"):
                if r.get(attr) is not None:
                    spec[attr] = r.get(attr)
            with contextlib.suppress(OSError, NetlinkError):
                ipr.route("replace", metrics={"cc_algo": congctl}, **spec)


class PyrouteNetlink:
    """`Netlink` on the real kernel, through pyroute2's IPRoute."""

    def _ipr(self, netns: str | None = None) -> Any:
        from pyroute2 import IPRoute, config

        # The forked child that opens a socket in `netns` inherits the daemon's signal handlers
        # and asyncio's signal wakeup fd; pyroute2 stops it with SIGTERM, which the inherited
        # handler would write into that fd: the daemon's loop would take it for its own SIGTERM
        # and shut down. With this, the child resets SIGTERM to the default (it just dies).
        config.disable_mp_signal = True
        return IPRoute(netns=netns) if netns else IPRoute()

    def link_names(self) -> list[str]:
        with self._ipr() as ipr:
            return [str(link.get("ifname")) for link in ipr.get_links()]

    def routed_networks(self) -> list[str]:
        out: list[str] = []
        with self._ipr() as ipr:
            for family in (2, 10):  # AF_INET, AF_INET6
                for r in ipr.get_routes(family=family, table=254):
                    dst, plen = r.get("dst"), r["dst_len"]
                    if dst and plen:
                        with contextlib.suppress(ValueError):
                            out.append(str(ipaddress.ip_network(f"{dst}/{plen}", strict=False)))
        return out

    def ensure_bridge(self, name: str, addresses: tuple[IfAddr, ...], mtu: int = 1500,
                      congctl: str = "") -> None:
        try:
            with self._ipr() as ipr:
                found = ipr.link_lookup(ifname=name)
                if not found:
                    with contextlib.suppress(OSError):
                        ipr.link("add", ifname=name, kind="bridge", mtu=mtu)
                    found = ipr.link_lookup(ifname=name)
                    if not found:
                        raise NotFound(f"bridge {name} vanished after its creation")
                idx = found[0]
                have = {(a.get("address"), a["prefixlen"]) for a in ipr.get_addr(index=idx)}
                for a in addresses:
                    if (a.address, a.prefixlen) in have:
                        continue
                    extra = {"flags": 0x02} if a.family == 6 else {}  # IFA_F_NODAD, as below
                    try:
                        ipr.addr("add", index=idx, address=a.address, prefixlen=a.prefixlen,
                                 family=10 if a.family == 6 else 2, **extra)
                    except OSError as exc:
                        if exc.errno != errno.EEXIST:
                            raise
                ipr.link("set", index=idx, state="up")
                _set_congctl(ipr, idx, addresses, congctl)
        except (OSError, ValueError) as exc:
            raise _err(f"ensure bridge {name}", exc) from exc

    def delete_link(self, name: str) -> None:
        try:
            with self._ipr() as ipr:
                found = ipr.link_lookup(ifname=name)
                if found:
                    try:
                        ipr.link("del", index=found[0])
                    except OSError as exc:
                        if exc.errno != errno.ENODEV:
                            raise
        except OSError as exc:
            raise _err(f"delete link {name}", exc) from exc

    def add_veth(self, req: VethRequest) -> None:
        # The peer gets a temporary host-side name (unique: derived from the host end's), and
        # its final name only inside the namespace, where "eth0" cannot collide.
        peer = req.host_name[:-1] + "p" if len(req.host_name) >= 15 else req.host_name + "p"
        try:
            with self._ipr() as ipr:
                br = ipr.link_lookup(ifname=req.bridge)
                if not br:
                    raise NotFound(f"bridge {req.bridge} does not exist")
                ipr.link("add", ifname=req.host_name, kind="veth", peer={"ifname": peer, "mtu": req.mtu},
                         mtu=req.mtu)
                try:
                    host_idx = ipr.link_lookup(ifname=req.host_name)[0]
                    peer_idx = ipr.link_lookup(ifname=peer)[0]
                    ipr.link("set", index=host_idx, master=br[0])
                    ipr.link("set", index=host_idx, state="up")
                    fd = os.open(req.netns_path, os.O_RDONLY | os.O_CLOEXEC)
                    try:
                        ipr.link("set", index=peer_idx, net_ns_fd=fd)
                    finally:
                        os.close(fd)
                except BaseException:
                    with contextlib.suppress(OSError):
                        ipr.link("del", ifname=req.host_name)
                    raise
            try:
                with self._ipr(req.netns_path) as ns:
                    idx = ns.link_lookup(ifname=peer)[0]
                    ns.link("set", index=idx, ifname=req.ifname, address=req.mac)
                    for a in req.addresses:
                        # nodad: the address is ours by IPAM; DAD would delay IPv6 use by seconds.
                        extra = {"flags": 0x02} if a.family == 6 else {}  # IFA_F_NODAD
                        ns.addr("add", index=idx, address=a.address, prefixlen=a.prefixlen,
                                family=10 if a.family == 6 else 2, **extra)
                    ns.link("set", index=idx, state="up")
                    _set_congctl(ns, idx, req.addresses, req.congctl)
                    lo = ns.link_lookup(ifname="lo")
                    if lo:
                        ns.link("set", index=lo[0], state="up")
                    for gw in req.gateways:
                        v6 = ":" in gw
                        ns.route("add", dst="::/0" if v6 else "0.0.0.0/0", gateway=gw,
                                 family=10 if v6 else 2, oif=idx)
            except BaseException:
                self.delete_link(req.host_name)
                raise
        except (OSError, ValueError, IndexError) as exc:
            raise _err(f"add veth {req.host_name} -> {req.netns_path}:{req.ifname}", exc) from exc


@dataclass
class RecordingNetlink:
    """A `Netlink` that keeps links in memory and records every call, for unit tests."""

    routes: list[str] = field(default_factory=list)
    links: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    fail: dict[str, Exception] = field(default_factory=dict)
    congctl: dict[str, str] = field(default_factory=dict)  # bridge -> its routes' congctl

    def _rec(self, name: str, arg: Any) -> None:
        self.calls.append((name, arg))
        if name in self.fail:
            raise self.fail[name]

    def link_names(self) -> list[str]:
        return ["lo", *self.links]

    def routed_networks(self) -> list[str]:
        return list(self.routes)

    def ensure_bridge(self, name: str, addresses: tuple[IfAddr, ...], mtu: int = 1500,
                      congctl: str = "") -> None:
        self._rec("ensure_bridge", (name, addresses, mtu))
        self.congctl[name] = congctl
        link = self.links.setdefault(name, {"kind": "bridge", "addresses": set()})
        link["addresses"] |= set(addresses)

    def delete_link(self, name: str) -> None:
        self._rec("delete_link", name)
        self.links.pop(name, None)

    def add_veth(self, req: VethRequest) -> None:
        self._rec("add_veth", req)
        if req.bridge not in self.links:
            raise NotFound(f"bridge {req.bridge} does not exist")
        self.links[req.host_name] = {"kind": "veth", "master": req.bridge, "req": req}
