"""Congestion control on bridge subnet routes: the manager's policy and netlink's route rewrite.

The manager asks for `SUBNET_CONGCTL` on the bridge and on each container interface (or for
nothing with congctl=""); `_set_congctl` rewrites only the kernel's connected routes of the
given addresses, keeps their attributes, skips routes already set, and survives an algorithm
the kernel lacks. The kernel side is in tests/integration/network/test_congctl_kernel.py.
"""

from __future__ import annotations

import errno

from pallet.network import manager as managermod
from pallet.network.manager import NetworkManager
from pallet.network.netlink import IfAddr, RecordingNetlink, _set_congctl
from pallet_testlib import FakeNetns, NullFirewall


def _manager(tmp_path, **kw) -> tuple[NetworkManager, RecordingNetlink]:
    nl = RecordingNetlink()
    m = NetworkManager(str(tmp_path / "data"), str(tmp_path / "run"), netlink=nl,
                       firewall=NullFirewall(), netns=FakeNetns(),  # type: ignore[arg-type]
                       sysctl_root=str(tmp_path / "sys"), sys_root=str(tmp_path / "sys"), **kw)
    return m, nl


def test_manager_asks_for_cubic_on_bridge_and_container_routes(tmp_path):
    assert managermod.SUBNET_CONGCTL == "cubic"
    m, nl = _manager(tmp_path)
    nid = m.create({"Name": "app"})["Id"]
    cid = "c" * 64
    m.configure(cid, "web", "app", {"app": {}}, [])
    m.setup(cid)
    ep = m.container(cid)["endpoints"][nid]
    assert nl.congctl[m.get("app")["bridge"]] == "cubic"
    assert nl.links[ep["veth"]]["req"].congctl == "cubic"
    assert nl.links[ep["veth"]]["req"].mtu == 1500  # what the container sees is unchanged
    m.teardown(cid)


def test_manager_can_keep_the_host_default(tmp_path):
    m, nl = _manager(tmp_path, congctl="")
    nid = m.create({"Name": "app"})["Id"]
    cid = "d" * 64
    m.configure(cid, "web", "app", {"app": {}}, [])
    m.setup(cid)
    ep = m.container(cid)["endpoints"][nid]
    assert nl.congctl[m.get("app")["bridge"]] == ""
    assert nl.links[ep["veth"]]["req"].congctl == ""
    m.teardown(cid)


class FakeIpr:
    """The part of pyroute2's IPRoute `_set_congctl` uses, over a list of route dicts."""

    def __init__(self, routes: list[dict], fail: OSError | None = None) -> None:
        self.routes = routes
        self.replaced: list[dict] = []
        self.fail = fail

    def get_routes(self, family: int, table: int, oif: int) -> list[dict]:
        return [r for r in self.routes if r["family"] == family and r["oif"] == oif and table == 254]

    def route(self, cmd: str, **kw) -> None:
        assert cmd == "replace"
        if self.fail is not None:
            raise self.fail
        self.replaced.append(kw)


def _route(dst: str, plen: int, family: int = 2, proto: int = 2, oif: int = 7, **extra) -> dict:
    return {"dst": dst, "dst_len": plen, "family": family, "proto": proto, "oif": oif,
            "scope": 253 if family == 2 else 0, "type": 1, **extra}


def test_set_congctl_rewrites_only_connected_routes_of_the_addresses():
    ipr = FakeIpr([
        _route("172.18.0.0", 16, prefsrc="172.18.0.1"),
        _route("10.9.0.0", 24, prefsrc="10.9.0.1"),  # another subnet on the same link: kept
        _route("172.18.5.0", 24, proto=4),  # a static route inside the subnet (proto static)
        _route("fd00:1::", 64, family=10, priority=256),
        _route("fe80::", 64, family=10, priority=256),  # link-local: not one of ours
        _route("172.18.0.0", 16, oif=8, prefsrc="172.18.0.1"),  # another link
    ])
    _set_congctl(ipr, 7, (IfAddr("172.18.0.1", 16), IfAddr("fd00:1::1", 64)), "cubic")
    assert ipr.replaced == [
        {"metrics": {"cc_algo": "cubic"}, "dst": "172.18.0.0", "dst_len": 16, "oif": 7, "family": 2,
         "table": 254, "proto": 2, "scope": 253, "type": 1, "prefsrc": "172.18.0.1"},
        {"metrics": {"cc_algo": "cubic"}, "dst": "fd00:1::", "dst_len": 64, "oif": 7, "family": 10,
         "table": 254, "proto": 2, "scope": 0, "type": 1, "priority": 256},
    ]


def test_set_congctl_is_idempotent_and_optional():
    done = _route("172.18.0.0", 16, prefsrc="172.18.0.1",
                  metrics={"attrs": [("RTAX_CC_ALGO", "cubic")]})
    ipr = FakeIpr([done])
    _set_congctl(ipr, 7, (IfAddr("172.18.0.1", 16),), "cubic")
    assert ipr.replaced == []
    _set_congctl(ipr, 7, (IfAddr("172.18.0.1", 16),), "reno")  # another algorithm: rewritten
    assert [r["metrics"] for r in ipr.replaced] == [{"cc_algo": "reno"}]
    ipr = FakeIpr([_route("172.18.0.0", 16)])
    _set_congctl(ipr, 7, (IfAddr("172.18.0.1", 16),), "")
    _set_congctl(ipr, 7, (), "cubic")
    assert ipr.replaced == []


def test_set_congctl_tolerates_an_algorithm_the_kernel_lacks():
    ipr = FakeIpr([_route("172.18.0.0", 16)], fail=OSError(errno.ENOENT, "No such file or directory"))
    _set_congctl(ipr, 7, (IfAddr("172.18.0.2", 16),), "nosuchcc")  # no exception: best effort
