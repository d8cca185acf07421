"""IPAM: pool choice around used subnets and routes, address allocation that never repeats."""

from __future__ import annotations

import ipaddress

import pytest

from pallet.errors import InvalidArgument, PermissionDenied, Unavailable
from pallet.network import ipam


def test_pick_subnet_skips_used_and_routed():
    assert str(ipam.pick_subnet([])) == "172.17.0.0/16"
    assert str(ipam.pick_subnet(["172.17.0.0/16", "172.18.5.0/24"])) == "172.19.0.0/16"
    # a host route inside the whole 172.16/12 block pushes to 192.168.x/20
    assert str(ipam.pick_subnet(["172.16.0.0/12"])) == "192.168.0.0/20"
    # IPv6 routes do not collide with IPv4 candidates
    assert str(ipam.pick_subnet(["fd00::/8"])) == "172.17.0.0/16"


def test_pick_subnet_exhausted():
    used = ["172.16.0.0/12", "192.168.0.0/16"]
    with pytest.raises(Unavailable, match="non-overlapping"):
        ipam.pick_subnet(used)


@pytest.mark.parametrize("raw, message", [
    ("nonsense", "CIDR"), ("10.0.0.1/24", "host bits"), ("10.0.0.0/31", "too small"),
])
def test_parse_network_errors(raw, message):
    with pytest.raises(InvalidArgument, match=message):
        ipam.parse_network(raw)


def test_overlap_is_docker_403():
    net = ipam.parse_network("10.10.0.0/16")
    ipam.check_overlap(net, {"10.11.0.0/16": "other"})
    with pytest.raises(PermissionDenied, match="Pool overlaps"):
        ipam.check_overlap(net, {"10.10.4.0/24": "other"})


def test_pool_config_gateway_and_range():
    net = ipam.parse_network("10.20.0.0/16")
    assert ipam.pool_config(net) == {"Subnet": "10.20.0.0/16", "Gateway": "10.20.0.1"}
    c = ipam.pool_config(net, "10.20.0.254", "10.20.5.0/24")
    assert c == {"Subnet": "10.20.0.0/16", "Gateway": "10.20.0.254", "IPRange": "10.20.5.0/24"}
    with pytest.raises(InvalidArgument, match="not a host address"):
        ipam.pool_config(net, "10.21.0.1")
    with pytest.raises(InvalidArgument, match="not inside"):
        ipam.pool_config(net, "", "10.30.0.0/24")


def test_allocator_serial_and_never_twice():
    state: dict = {}
    a = ipam.Allocator({"Subnet": "10.0.0.0/29", "Gateway": "10.0.0.1"}, state)
    got = [a.request(f"c{i}") for i in range(5)]
    assert got == ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]
    with pytest.raises(Unavailable, match="exhausted"):
        a.request("c5")  # .0 network, .1 gateway, .7 broadcast are never handed out
    a.release("10.0.0.3")
    # The state is plain JSON data: a new Allocator over it (a daemon restart) continues.
    b = ipam.Allocator({"Subnet": "10.0.0.0/29", "Gateway": "10.0.0.1"}, state)
    assert b.request("c6") == "10.0.0.3"
    assert len(set(state["allocated"])) == len(state["allocated"]) == 5


def test_allocator_does_not_reuse_a_released_address_at_once():
    state: dict = {}
    a = ipam.Allocator({"Subnet": "10.0.0.0/24", "Gateway": "10.0.0.1"}, state)
    first = a.request("x")
    a.release(first)
    assert a.request("y") != first


def test_allocator_static_and_range():
    state: dict = {}
    a = ipam.Allocator({"Subnet": "10.1.0.0/16", "Gateway": "10.1.0.1", "IPRange": "10.1.7.0/30"}, state)
    assert a.request("s", "10.1.0.50") == "10.1.0.50"
    with pytest.raises(PermissionDenied, match="already in use"):
        a.request("t", "10.1.0.50")
    with pytest.raises(InvalidArgument):
        a.request("t", "10.2.0.1")
    with pytest.raises(InvalidArgument):
        a.request("t", "10.1.0.1")  # the gateway
    assert a.request("d") in {"10.1.7.0", "10.1.7.1", "10.1.7.2", "10.1.7.3"}
    assert a.release_owner("s") == ["10.1.0.50"]


def test_ula_subnet_is_stable_unique_local():
    s = ipam.ula_subnet("abc")
    assert s == ipam.ula_subnet("abc") and s != ipam.ula_subnet("abd")
    assert s.prefixlen == 64 and s.subnet_of(ipaddress.IPv6Network("fd00::/8"))
