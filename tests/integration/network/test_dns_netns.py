"""The embedded DNS server seen from a real network namespace (root): busybox nslookup inside a
namespace asks the server listening on the host end of a veth pair.

Safety: the test makes its own namespace `pallet-test-<random>` and veth pair `pt<random>h/n`
on a 10.x.y.0/30 (and fdxx::/64) that no host route covers; the finalizer deletes both. Packets
go only to the namespace and, for forwarded names, to a fake upstream on 127.0.0.x.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import random
import secrets
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from pallet.errors import Unavailable
from pallet.network.dns import DnsServer

if os.geteuid() != 0:
    pytest.skip("needs root (network namespaces, veth pairs)", allow_module_level=True)
if not os.path.exists("/bin/busybox") or shutil.which("ip") is None:
    pytest.skip("needs Debian's busybox-static (/bin/busybox) and iproute2", allow_module_level=True)

pytestmark = pytest.mark.root


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=30, check=check)


def free_subnet() -> ipaddress.IPv4Network:
    """A 10.x.y.0/30 that no route on the host overlaps."""
    routes = []
    for line in sh("ip", "-4", "route", "show", "table", "all").stdout.splitlines():
        dest = line.split()[0] if line.split() else ""
        if dest in ("default", "broadcast", "local", "unreachable", "prohibit", "blackhole"):
            dest = line.split()[1] if len(line.split()) > 1 else ""
        try:
            routes.append(ipaddress.ip_network(dest, strict=False))
        except ValueError:
            continue
    for _ in range(100):
        net = ipaddress.ip_network(f"10.{random.randint(0, 255)}.{random.randint(0, 255) & 0xFC}.0/30")
        if not any(net.overlaps(r) for r in routes if r.prefixlen > 0):
            return net
    pytest.skip("no free 10.x.y.0/30 on this host")


@dataclass
class Netns:
    name: str
    host_if: str
    host4: str
    ns4: str
    host6: str
    ns6: str

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", self.name, *args, check=check)


@pytest.fixture
def netns() -> Iterator[Netns]:
    tag = secrets.token_hex(3)
    name, host_if, ns_if = f"pallet-test-{tag}", f"pt{tag}h", f"pt{tag}n"
    subnet = free_subnet()
    host4, ns4 = str(subnet[1]), str(subnet[2])
    v6 = ipaddress.ip_network(f"fd{secrets.token_hex(1)}:{secrets.token_hex(2)}:{secrets.token_hex(2)}::/64")
    host6, ns6 = str(v6[1]), str(v6[2])
    try:
        sh("ip", "netns", "add", name)
        sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if, "netns", name)
        sh("ip", "addr", "add", f"{host4}/30", "dev", host_if)
        sh("ip", "link", "set", host_if, "up")
        ns = Netns(name, host_if, host4, ns4, host6, ns6)
        ns.run("ip", "addr", "add", f"{ns4}/30", "dev", ns_if)
        ns.run("ip", "addr", "add", f"{ns6}/64", "dev", ns_if, "nodad")
        ns.run("ip", "link", "set", ns_if, "up")
        ns.run("ip", "link", "set", "lo", "up")
        yield ns
    finally:
        sh("ip", "link", "del", host_if, check=False)
        sh("ip", "netns", "del", name, check=False)


class FakeUpstream(asyncio.DatagramProtocol):
    """A UDP upstream on 127.0.0.2: `outside.test` is 192.0.2.77, anything else NXDOMAIN."""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        q = dns.message.from_wire(data)
        r = dns.message.make_response(q)
        qq = q.question[0]
        if qq.name.to_text() == "outside.test." and qq.rdtype == dns.rdatatype.A:
            r.answer.append(dns.rrset.from_text(qq.name, 30, "IN", "A", "192.0.2.77"))
        elif qq.name.to_text() != "outside.test.":
            r.set_rcode(dns.rcode.NXDOMAIN)
            r.flags |= dns.flags.AA
        self.transport.sendto(r.to_wire(), addr)


class LoopThread:
    """An asyncio loop in a thread, standing in for palletd's, so the test can block on busybox."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coro: Any) -> Any:
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout=30)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def nslookup(ns: Netns, name: str, server: str, port: int, qtype: str | None = "a") -> str:
    """busybox nslookup's output; qtype None lets it pick (an IP address becomes a PTR query)."""
    where = server if port == 53 else (f"[{server}]:{port}" if ":" in server else f"{server}:{port}")
    opts = [f"-type={qtype}"] if qtype else []
    out = ns.run("/bin/busybox", "nslookup", *opts, name, where, check=False)
    return out.stdout + out.stderr


def test_container_names_resolve_from_a_namespace(netns: Netns, tmp_path: Path):
    lt = LoopThread()
    resolv = tmp_path / "resolv.conf"
    try:
        async def setup() -> tuple[DnsServer, Any, int]:
            transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
                FakeUpstream, local_addr=("127.0.0.2", 0))
            up_port = transport.get_extra_info("sockname")[1]
            resolv.write_text("nameserver 127.0.0.2\n")
            for port in (53, 0):  # port 53 as in production, unless this host has it taken
                server = DnsServer(port=port, resolv_conf=resolv, upstream_port=up_port,
                                   fallback_upstreams=(), forward_timeout=1.0)
                await server.start()
                try:
                    # The IPv6 gateway address does not exist yet: IPV6_FREEBIND lets it bind.
                    await server.add_network("net1", [f"{netns.host4}/30", f"{netns.host6}/64"],
                                             name="mynet")
                    break
                except Unavailable:
                    await server.close()
            server.set_records("net1", "ab" * 32, ["web", "frontend", "ababababab"], "10.89.0.2", "fd00::2")
            server.set_records("net1", "cd" * 32, ["db"], netns.ns4)
            return server, transport, server.endpoints("net1")[0][1]

        server, transport, port = lt.call(setup())
        sh("ip", "addr", "add", f"{netns.host6}/64", "dev", netns.host_if, "nodad")

        out = nslookup(netns, "web", netns.host4, port)
        assert "10.89.0.2" in out, out
        out = nslookup(netns, "frontend.mynet", netns.host4, port)
        assert "10.89.0.2" in out, out
        out = nslookup(netns, "web", netns.host6, port, "aaaa")
        assert "fd00::2" in out, out
        out = nslookup(netns, netns.ns4, netns.host4, port, None)
        assert "db.mynet" in out, out
        # Not a container: forwarded to the host's resolver (the fake on 127.0.0.2).
        out = nslookup(netns, "outside.test", netns.host4, port)
        assert "192.0.2.77" in out, out
        out = nslookup(netns, "nowhere.test", netns.host4, port)
        assert "NXDOMAIN" in out, out

        # Records go away with the container, the listener with the network.
        lt.call(_remove_records(server))
        out = nslookup(netns, "web", netns.host4, port)
        assert "10.89.0.2" not in out and "NXDOMAIN" in out, out
        lt.call(server.remove_network("net1"))
        for family, addr in ((socket.AF_INET, netns.host4), (socket.AF_INET6, netns.host6)):
            for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                with socket.socket(family, kind) as s:
                    s.bind((addr, port))  # released: binding it again works
        lt.call(server.close())
        transport.close()
    finally:
        lt.stop()


async def _remove_records(server: DnsServer) -> None:
    server.remove_records("net1", "ab" * 32)
