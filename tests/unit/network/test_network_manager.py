"""NetworkManager over recording fakes (netlink, firewall, namespaces): no root, no kernel."""

from __future__ import annotations

import json
import socket

import pytest

from pallet.errors import Conflict, InvalidArgument, NotFound, PalletError, PermissionDenied, Unavailable
from pallet.network import ports as portsmod
from pallet.network.manager import NetworkManager
from pallet.network.netlink import RecordingNetlink


class FakeFirewall:
    def __init__(self) -> None:
        self.applied: list[tuple[list, list]] = []

    def apply(self, networks, ports) -> None:
        self.applied.append((list(networks), list(ports)))


class FakeNetns:
    def __init__(self) -> None:
        self.live: set[str] = set()

    def path(self, cid: str) -> str:
        return f"/fake/netns/{cid}"

    def create(self, cid: str) -> str:
        self.live.add(cid)
        return self.path(cid)

    def remove(self, cid: str) -> None:
        self.live.discard(cid)

    def list(self) -> list[str]:
        return sorted(self.live)


class KernelishNetlink(RecordingNetlink):
    """RecordingNetlink that also makes the per-link sysctl and sysfs files, as the kernel does."""

    def __init__(self, sysroot, **kw) -> None:
        super().__init__(**kw)
        self.sysroot = sysroot

    def ensure_bridge(self, name, addresses, mtu=1500, congctl="") -> None:
        super().ensure_bridge(name, addresses, mtu, congctl)
        (self.sysroot / "net/ipv4/conf" / name).mkdir(parents=True, exist_ok=True)

    def add_veth(self, req) -> None:
        super().add_veth(req)
        (self.sysroot / "class/net" / req.host_name / "brport").mkdir(parents=True, exist_ok=True)


@pytest.fixture
def parts(tmp_path):
    nl = KernelishNetlink(tmp_path / "sys", routes=["192.0.2.0/24"])
    return nl, FakeFirewall(), FakeNetns()


def manager(tmp_path, parts) -> NetworkManager:
    nl, fw, ns = parts
    return NetworkManager(str(tmp_path / "data"), str(tmp_path / "run"), netlink=nl, firewall=fw,  # type: ignore[arg-type]
                          netns=ns, sysctl_root=str(tmp_path / "sys"), sys_root=str(tmp_path / "sys"))  # type: ignore[arg-type]


def test_predefined_networks(tmp_path, parts):
    m = manager(tmp_path, parts)
    nets = {n["Name"]: n for n in m.list()}
    assert set(nets) == {"bridge", "host", "none"}
    b = nets["bridge"]
    assert b["Driver"] == "bridge"
    assert b["IPAM"]["Config"] == [{"Subnet": "172.17.0.0/16", "Gateway": "172.17.0.1"}]
    assert b["Options"]["com.docker.network.bridge.name"].startswith("pallet")
    assert nets["none"]["Driver"] == "null" and nets["host"]["Driver"] == "host"
    with pytest.raises(PermissionDenied, match="pre-defined"):
        m.remove("bridge")


def test_create_inspect_and_errors(tmp_path, parts):
    m = manager(tmp_path, parts)
    out = m.create({"Name": "web", "Labels": {"a": "1"}, "Internal": True})
    assert set(out) == {"Id", "Warning"} and len(out["Id"]) == 64
    n = m.inspect("web")
    assert n["Id"] == out["Id"] and n["Internal"] is True and n["Containers"] == {}
    assert n["IPAM"]["Config"][0]["Subnet"] == "172.18.0.0/16"  # 172.17 taken by "bridge"
    assert m.inspect(out["Id"][:8])["Name"] == "web"
    with pytest.raises(Conflict, match="already exists"):
        m.create({"Name": "web"})
    with pytest.raises(PermissionDenied, match="Pool overlaps"):
        m.create({"Name": "x", "IPAM": {"Config": [{"Subnet": "172.18.3.0/24"}]}})
    with pytest.raises(NotFound, match="plugin"):
        m.create({"Name": "x", "Driver": "overlay"})
    with pytest.raises(InvalidArgument):
        m.create({"Name": "bad name"})
    with pytest.raises(InvalidArgument, match="not a host address"):
        m.create({"Name": "x", "IPAM": {"Config": [{"Subnet": "10.5.0.0/24", "Gateway": "10.6.0.1"}]}})
    with pytest.raises(NotFound):
        m.inspect("nope")
    assert [x["Name"] for x in m.list({"type": ["custom"]})] == ["web"]
    assert [x["Name"] for x in m.list({"label": ["a=1"]})] == ["web"]
    assert {x["Name"] for x in m.list({"driver": ["bridge"]})} == {"bridge", "web"}
    with pytest.raises(InvalidArgument):
        m.list({"bogus": ["1"]})


def test_state_persists_across_restart(tmp_path, parts):
    m = manager(tmp_path, parts)
    nid = m.create({"Name": "keep", "IPAM": {"Config": [{"Subnet": "10.44.0.0/24"}]}})["Id"]
    m.configure("c" * 64, "one", "keep", {}, [])
    m.setup("c" * 64)
    data = json.loads((tmp_path / "data" / "network" / "networks.json").read_text())
    assert data["version"] == 1 and nid in data["networks"]
    m2 = manager(tmp_path, parts)
    assert m2.inspect("keep")["Id"] == nid
    # the address handed out before the restart is not handed out again
    m2.configure("d" * 64, "two", "keep", {}, [])
    m2.setup("d" * 64)
    ips = {m2.container(x)["endpoints"][nid]["IPAddress"] for x in ("c" * 64, "d" * 64)}
    assert ips == {"10.44.0.2", "10.44.0.3"}


def test_setup_teardown_records_kernel_calls(tmp_path, parts):
    nl, fw, ns = parts
    m = manager(tmp_path, parts)
    nid = m.create({"Name": "app"})["Id"]
    cid = "e" * 64
    m.configure(cid, "web", "app", {"app": {"Aliases": ["www"]}},
                [portsmod.PortRequest("tcp", 80, "127.0.0.1", 0, 0)])
    seen = []
    m.hooks.append(lambda *a: seen.append(a))
    path = m.setup(cid)
    assert path == ns.path(cid) and cid in ns.live
    st = m.container(cid)
    ep = st["endpoints"][nid]
    assert ep["IPAddress"] == "172.18.0.2" and ep["MacAddress"] == "02:42:ac:12:00:02"
    bridge = m.get("app")["bridge"]
    assert bridge in nl.links and nl.links[ep["veth"]]["master"] == bridge
    req = nl.links[ep["veth"]]["req"]
    assert req.ifname == "eth0" and req.gateways == ("172.18.0.1",) and req.netns_path == path
    assert (tmp_path / "sys" / "net/ipv4/conf" / bridge / "route_localnet").read_text() == "1"
    assert (tmp_path / "sys" / "net/ipv4/conf" / bridge / "forwarding").read_text() == "1"
    assert (tmp_path / "sys" / "class/net" / ep["veth"] / "brport/hairpin_mode").read_text() == "1"
    assert not (tmp_path / "sys" / "net/ipv4/ip_forward").exists()  # host-wide only with ip_forward=True
    nets, published = fw.applied[-1]
    assert [n.bridge for n in nets] == [bridge]
    assert len(published) == 1 and published[0].container_ip == "172.18.0.2"
    assert published[0].host_ip == "127.0.0.1" and published[0].host_port > 0
    assert seen == [(nid, cid, ["web", cid[:12], "www"], ["172.18.0.2"])]
    assert m.inspect("app")["Containers"][cid]["IPv4Address"] == "172.18.0.2/16"
    with pytest.raises(PermissionDenied, match="active endpoints"):
        m.remove("app")
    m.teardown(cid)
    assert nl.links == {} and ns.live == set()  # bridge dropped with its last endpoint
    assert fw.applied[-1] == ([], [])
    assert seen[-1] == (nid, cid, (), ())
    assert m.container(cid)["networks"]  # the configuration stays for the next start
    m.forget(cid)
    m.remove("app")
    assert m.container(cid) is None


def test_setup_failure_leaves_nothing(tmp_path, parts):
    nl, _fw, ns = parts
    nl.fail["add_veth"] = PalletError("boom")
    m = manager(tmp_path, parts)
    m.configure("f" * 64, "x", "default", {}, [])
    with pytest.raises(PalletError, match="boom"):
        m.setup("f" * 64)
    assert ns.live == set() and m.container("f" * 64)["endpoints"] == {}
    st = m.get("bridge")
    assert all(not p.get("allocated") for p in st["pools"].values())


def test_port_conflict_between_containers(tmp_path, parts):
    m = manager(tmp_path, parts)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        m.configure("a" * 64, "a", "default", {}, [portsmod.PortRequest("tcp", 80, "127.0.0.1", port, port)])
        with pytest.raises(PalletError, match="address already in use"):
            m.setup("a" * 64)
    m.configure("b" * 64, "b", "default", {}, [portsmod.PortRequest("tcp", 80, "127.0.0.1", 0, 0)])
    m.setup("b" * 64)
    taken = m.container("b" * 64)["bound"][0]["HostPort"]
    m.configure("c" * 64, "c", "default", {}, [portsmod.PortRequest("tcp", 80, "127.0.0.1", taken, taken)])
    with pytest.raises(PalletError, match="port is already allocated"):
        m.setup("c" * 64)
    m.teardown("b" * 64)


def test_configure_validation(tmp_path, parts):
    m = manager(tmp_path, parts)
    with pytest.raises(NotFound):
        m.configure("a" * 64, "a", "nosuchnet", {}, [])
    with pytest.raises(InvalidArgument, match="user defined networks"):
        m.configure("a" * 64, "a", "default", {"default": {"Aliases": ["x"]}}, [])
    m.create({"Name": "n", "IPAM": {"Config": [{"Subnet": "10.7.0.0/24"}]}})
    with pytest.raises(InvalidArgument, match="contain the IP"):
        m.configure("a" * 64, "a", "n", {"n": {"IPAMConfig": {"IPv4Address": "10.8.0.5"}}}, [])
    m.configure("a" * 64, "a", "n", {"n": {"IPAMConfig": {"IPv4Address": "10.7.0.5"}}}, [])
    m.setup("a" * 64)
    assert m.container("a" * 64)["endpoints"][m.get("n")["Id"]]["IPAddress"] == "10.7.0.5"
    m.configure("b" * 64, "b", "n", {"n": {"IPAMConfig": {"IPv4Address": "10.7.0.5"}}}, [])
    with pytest.raises(PermissionDenied, match="already in use"):
        m.setup("b" * 64)
    m.teardown("a" * 64)


def test_connect_disconnect_and_prune(tmp_path, parts):
    nl, _fw, _ns = parts
    m = manager(tmp_path, parts)
    m.create({"Name": "one"})
    m.create({"Name": "two", "Labels": {"keep": "yes"}})
    cid = "9" * 64
    m.configure(cid, "c", "one", {}, [])
    m.setup(cid)
    m.connect("two", cid, {"Aliases": ["db"]})
    st = m.container(cid)
    assert len(st["endpoints"]) == 2
    assert sorted(ep["ifname"] for ep in st["endpoints"].values()) == ["eth0", "eth1"]
    with pytest.raises(PermissionDenied, match="already exists"):
        m.connect("two", cid)
    with pytest.raises(InvalidArgument):
        m.connect("host", cid)
    m.disconnect("two", cid)
    assert len(m.container(cid)["endpoints"]) == 1
    assert m.get("two")["bridge"] not in nl.links
    m.create({"Name": "three"})
    assert m.prune({"label!": ["keep=yes"]}) == ["three"]
    assert m.prune() == ["two"]  # "one" is used by the container
    m.teardown(cid)


def test_reconcile_tears_down_dead_containers(tmp_path, parts):
    nl, _fw, ns = parts
    m = manager(tmp_path, parts)
    m.configure("1" * 64, "live", "default", {}, [])
    m.configure("2" * 64, "dead", "default", {}, [])
    m.setup("1" * 64)
    m.setup("2" * 64)
    ns.live.add("stray")
    m2 = manager(tmp_path, parts)
    m2.reconcile(["1" * 64])
    assert ns.live == {"1" * 64}
    assert m2.container("2" * 64)["endpoints"] == {}
    assert m2.container("1" * 64)["endpoints"]
    m2.teardown("1" * 64)
    assert nl.links == {}


def test_port_requests_parsing():
    reqs = portsmod.requests({"80/tcp": [{"HostIp": "", "HostPort": "8080"}],
                              "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "5300-5310"}],
                              "81": None}, ["80/tcp", "443/tcp"], publish_all=True)
    assert portsmod.PortRequest("tcp", 80, "", 8080, 8080) in reqs
    assert portsmod.PortRequest("udp", 53, "127.0.0.1", 5300, 5310) in reqs
    assert portsmod.PortRequest("tcp", 81, "", 0, 0) in reqs
    assert portsmod.PortRequest("tcp", 443, "", 0, 0) in reqs
    assert len(reqs) == 4
    for bad in ({"x/tcp": []}, {"80/icmp": []}, {"80/tcp": [{"HostPort": "9-1"}]},
                {"80/tcp": [{"HostIp": "nope"}]}):
        with pytest.raises(InvalidArgument):
            portsmod.requests(bad)


def test_subnet_taken_on_the_host_since_creation(tmp_path, parts):
    nl, _fw, _ns = parts
    m = manager(tmp_path, parts)
    m.create({"Name": "late", "IPAM": {"Config": [{"Subnet": "10.60.0.0/24"}]}})
    nl.routes += ["172.17.0.0/16", "10.60.0.0/16"]  # another daemon's bridge, a VPN
    m.configure("a" * 64, "a", "default", {}, [])
    m.setup("a" * 64)  # the default bridge moves to a free pool subnet
    assert m.get("bridge")["IPAM"]["Config"][0]["Subnet"] == "172.18.0.0/16"
    assert m.container("a" * 64)["endpoints"][m.get("bridge")["Id"]]["IPAddress"] == "172.18.0.2"
    m.configure("b" * 64, "b", "late", {}, [])
    with pytest.raises(Unavailable, match="routed on the host"):
        m.setup("b" * 64)  # a subnet the user chose does not move
    assert m.container("b" * 64)["endpoints"] == {}
    m.create({"Name": "auto"})  # 172.19.0.0/16 from the pool
    nl.routes.append("172.19.0.0/16")
    m.configure("c" * 64, "c", "auto", {}, [])
    m.setup("c" * 64)  # a pool subnet does, while unused
    assert m.inspect("auto")["IPAM"]["Config"][0]["Subnet"] == "172.20.0.0/16"
    m.teardown("a" * 64)
    m.teardown("c" * 64)
