"""Subnet routes with a congestion control, on the real kernel (root): the bridge's and the
container interface's connected routes carry `congctl`, and TCP sockets between the host and the
namespace pick it up in both directions whatever the host's default.

Safety: one bridge "ptcc<hex>" on 10.254.253.0/29 and fd42:cc::/64 (ULA), one namespace made
with `ip netns add` and removed after; traffic only between the host and that namespace.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import uuid

import pytest

from pallet.network.netlink import IfAddr, PyrouteNetlink, VethRequest

if os.geteuid() != 0:
    pytest.skip("needs root (bridges, veths, namespaces)", allow_module_level=True)
if shutil.which("ip") is None:
    pytest.skip("needs iproute2", allow_module_level=True)
with open("/proc/sys/net/ipv4/tcp_available_congestion_control") as _f:
    if "reno" not in _f.read().split():
        pytest.skip("the kernel offers no reno (always built in)", allow_module_level=True)

pytestmark = pytest.mark.root

# reno: always built into the kernel, and surely not the host's default, so the test shows the
# route's choice is what a socket gets (the manager's real choice is cubic, maybe the default).
ALG = "reno"
TCP_CONGESTION = socket.TCP_CONGESTION
SERVER = """
import socket
s = socket.socket(socket.AF_INET)
s.bind(("10.254.253.2", 0)); s.listen(1)
print(s.getsockname()[1], flush=True)
c, _ = s.accept()
print(c.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16).rstrip(b"\\0").decode(), flush=True)
"""


@pytest.fixture
def wired():
    suffix = uuid.uuid4().hex[:6]
    bridge, veth, ns = f"ptcc{suffix}", f"vtcc{suffix}", f"ptcc-{suffix}"
    nl = PyrouteNetlink()
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        v6 = (IfAddr("fd42:cc::1", 64),) if os.path.exists("/proc/sys/net/ipv6") else ()
        nl.ensure_bridge(bridge, (IfAddr("10.254.253.1", 29), *v6), congctl=ALG)
        nl.ensure_bridge(bridge, (IfAddr("10.254.253.1", 29), *v6), congctl=ALG)  # idempotent
        nl.add_veth(VethRequest(veth, bridge, f"/run/netns/{ns}", "eth0", "02:42:0a:fe:fd:02",
                                (IfAddr("10.254.253.2", 29), *(IfAddr("fd42:cc::2", 64) for _ in v6)),
                                ("10.254.253.1",), congctl=ALG))
        yield bridge, ns, bool(v6)
    finally:
        nl.delete_link(veth)
        nl.delete_link(bridge)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def _routes(*args: str) -> list[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=True).stdout.splitlines()


def test_connected_routes_carry_the_algorithm(wired):
    bridge, ns, v6 = wired
    host4 = [r for r in _routes("-4", "route", "show", "dev", bridge) if r.startswith("10.254.253.0/29")]
    assert len(host4) == 1 and f"congctl {ALG}" in host4[0] and "src 10.254.253.1" in host4[0], host4
    inner4 = [r for r in _routes("-n", ns, "-4", "route") if r.startswith("10.254.253.0/29")]
    assert len(inner4) == 1 and f"congctl {ALG}" in inner4[0], inner4
    assert any(r.startswith("default via 10.254.253.1") for r in _routes("-n", ns, "-4", "route"))
    if v6:
        host6 = [r for r in _routes("-6", "route", "show", "dev", bridge) if r.startswith("fd42:cc::/64")]
        assert len(host6) == 1 and f"congctl {ALG}" in host6[0], host6
        inner6 = [r for r in _routes("-n", ns, "-6", "route") if r.startswith("fd42:cc::/64")]
        assert len(inner6) == 1 and f"congctl {ALG}" in inner6[0], inner6


def test_sockets_both_ways_use_the_route_algorithm(wired):
    _bridge, ns, _v6 = wired
    server = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", SERVER],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        with socket.create_connection(("10.254.253.2", port), timeout=10) as c:
            mine = c.getsockopt(socket.IPPROTO_TCP, TCP_CONGESTION, 16).rstrip(b"\0").decode()
            theirs = server.stdout.readline().strip()
        assert (mine, theirs) == (ALG, ALG)
        assert server.wait(timeout=10) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_an_unknown_algorithm_leaves_a_working_route():
    suffix = uuid.uuid4().hex[:6]
    bridge = f"ptcx{suffix}"
    nl = PyrouteNetlink()
    try:
        nl.ensure_bridge(bridge, (IfAddr("10.254.253.9", 29),), congctl="nosuchcc")
        routes = [r for r in _routes("-4", "route", "show", "dev", bridge) if r.startswith("10.254.253.8/29")]
        assert len(routes) == 1 and "congctl" not in routes[0], routes
    finally:
        nl.delete_link(bridge)
