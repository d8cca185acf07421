"""500 start/stop cycles of a container's networking leave nothing behind (root, real kernel).

What one cycle covers: the engine's networking layer (pallet.engine.networking.EngineNetworking,
the code the engine runs at start and at exit) on a real NetworkManager, without the OCI
runtime and the monitor: a network namespace file (util-linux unshare + bind mount), IPv4 and
IPv6 addresses from IPAM, a veth pair with its peer moved into the namespace, published ports (a
TCP port on every address, IPv4 and IPv6, and a UDP port on 127.0.0.1) held as sockets, the
userland proxy listening on the IPv6 one, the nftables table rebuilt (DNAT, masquerade,
isolation), the embedded DNS server's records, and the container's /etc/hosts and resolv.conf.
A neighbour endpoint keeps the bridge and the DNS listener up during the loop, as on a daemon
with other containers; the bridge's own make/delete is in the first and last cycle here and in
every full-container cycle of test_bridge_networks.py. After the loop the test checks that no
link, address, route, IPAM allocation, nft table or iptables rule, DNS record or listener,
proxy, namespace file or mount, and no file descriptor of the test process is left.

Full containers (runtime + monitor) cycle 25 times in test_bridge_networks.py
(test_start_stop_cycles_leak_nothing); a full cycle costs about three times more, so the 500
cycles run here, at the layer that owns every kernel object networking makes.

Safety: a private data root (its own bridge and table names, see pallet.network.manager),
subnets the IPAM picks clear of the host's routes, no traffic at all.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import shutil
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pallet.engine.networking import EngineNetworking
from pallet.errors import NotFound
from pallet.network.ports import PortRequest

if os.geteuid() != 0:
    pytest.skip("needs root (namespaces, veths, nftables)", allow_module_level=True)
if shutil.which("nft") is None or shutil.which("unshare") is None:
    pytest.skip("needs nftables and util-linux", allow_module_level=True)

pytestmark = pytest.mark.root

CYCLES = int(os.environ.get("PALLET_LEAK_CYCLES", "500"))


class _Engine:
    """What EngineNetworking needs of an Engine: its roots, and no containers to look up."""

    def __init__(self, root: Path) -> None:
        self.data_root, self.exec_root = str(root / "data"), str(root / "run")
        self.containers_dir = str(root / "data" / "containers")

    def get(self, ref: str) -> Any:
        raise NotFound(f"No such container: {ref}")


def _sh(*args: str) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=False).stdout


def _links() -> set[str]:
    out = _sh("ip", "-o", "link").splitlines()
    return {ln.split(":")[1].strip().split("@")[0] for ln in out if ":" in ln}


def _in(subnets: list[str], text: str) -> list[str]:
    """The addresses and routes in `text` (ip -o addr / ip route output) inside `subnets`."""
    nets = [ipaddress.ip_network(s) for s in subnets]
    found = []
    for word in text.split():
        with contextlib.suppress(ValueError):
            a = ipaddress.ip_interface(word)
            if any(a.network.version == n.version and a.network.subnet_of(n) for n in nets):  # type: ignore
                found.append(word)
    return found


def _fds() -> set[str]:
    return {os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
            if os.path.exists(f"/proc/self/fd/{fd}")}


def _mounts_under(path: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [ln for ln in f if path in ln]


def test_500_setup_teardown_cycles_leak_nothing(tmp_path):
    engine = _Engine(tmp_path)
    os.makedirs(engine.containers_dir)
    en = EngineNetworking(engine)  # type: ignore[arg-type]
    mgr = en.manager
    nid = mgr.create({"Name": "pt-leak", "EnableIPv6": True})["Id"]
    net = mgr.get(nid)
    subnets = [c["Subnet"] for c in net["IPAM"]["Config"]]
    bridge, table = net["bridge"], mgr.firewall.table
    cid = "c0ffee" + "0" * 58
    os.makedirs(os.path.join(engine.containers_dir, cid))
    mgr.configure(cid, "leaky", "pt-leak", {"pt-leak": {"Aliases": ["web"]}},
                  [PortRequest("tcp", 80, "", 0, 0), PortRequest("udp", 53, "127.0.0.1", 0, 0)])
    c = SimpleNamespace(id=cid, name="leaky", host_config={"NetworkMode": "pt-leak"},
                        config={"Hostname": cid[:12]})
    # the neighbour (see the module docstring)
    anchor = "a" * 64
    mgr.configure(anchor, "anchor", "pt-leak", {}, [])
    try:
        # one cycle first: lazily opened things (pyroute2's sockets, the DNS loop) are not leaks
        en.setup(c)  # type: ignore[arg-type]
        en.teardown(cid)
        fds0 = _fds()
        mgr.setup(anchor)
        t0 = time.monotonic()
        for i in range(CYCLES):
            en.setup(c)  # type: ignore[arg-type]
            if i % 100 == 0:  # the work is real: the kernel objects exist while it runs
                st = mgr.container(cid)
                ep = st["endpoints"][nid]
                assert {bridge, ep["veth"]} <= _links()
                assert f"dport {st['bound'][0]['HostPort']}" in _sh("nft", "list", "table", "inet", table)
                assert ep["IPAddress"] and ep["GlobalIPv6Address"]
                assert [b["HostIp"] for b in st["bound"]] == ["0.0.0.0", "::", "127.0.0.1"]
                assert mgr.proxy.owners() == [cid]  # [::]:port forwarded by the userland proxy
                assert en.dns is None or en.dns.server.endpoints(nid)
                hosts = Path(engine.containers_dir, cid, "hosts").read_text()
                assert ep["IPAddress"] in hosts
            en.teardown(cid)
        elapsed = time.monotonic() - t0
        mgr.teardown(anchor)
        print(f"{CYCLES} cycles in {elapsed:.1f} s ({elapsed / max(CYCLES, 1) * 1000:.0f} ms per cycle)")
        st = mgr.container(cid)
        assert st["endpoints"] == {} and st["bound"] == [] and st["netns"] == ""
        # only our own names: other engines on this host make and drop links meanwhile
        veths = {"veth" + hashlib.sha256(f"{x}{nid}".encode()).hexdigest()[:7] for x in (cid, anchor)}
        ours = {bridge, *veths}
        assert not ours & _links()
        assert _in(subnets, _sh("ip", "-o", "addr")) == []
        assert _in(subnets, _sh("ip", "-4", "route") + _sh("ip", "-6", "route")) == []
        assert all(not p.get("allocated") for p in mgr.get(nid)["pools"].values())
        assert table not in _sh("nft", "list", "tables")
        assert mgr.proxy.owners() == []
        assert f"pallet:{table}" not in _sh("iptables", "-S")
        if en.dns is not None:  # the network's listener and records are gone
            with pytest.raises(NotFound):
                en.dns.server.endpoints(nid)
        assert _fds() == fds0
        assert os.listdir(os.path.join(engine.exec_root, "netns")) == []
        assert _mounts_under(engine.exec_root) == []
    finally:
        mgr.forget(cid)
        mgr.remove(nid)
        en.close()
