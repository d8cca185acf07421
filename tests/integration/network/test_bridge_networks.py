"""Bridge networks for real (root): busybox containers through the engine, real netlink and nftables.

Safety: the engine runs on a private data root, so its kernel objects carry its own instance tag
(bridge "pallet<tag>", user bridges "pl-<id>", table "inet pallet_<tag>"), under the cgroup parent
/pallet-test-<random>. Traffic goes only to containers, to 127.0.0.1 and the bridges' gateway
addresses, and to a namespace the test makes ("outside": a veth pair on a 10.x.y.0/30 no host
route covers). Each test removes its containers and networks; the fixture then checks that no
link, namespace or rule of the engine is left, and removes the cgroups.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pallet.engine.containers import Engine
from pallet.errors import InvalidArgument, PalletError, PermissionDenied
from pallet.image.service import ImageService
from pallet.network.netns import NetnsStore

if os.geteuid() != 0:
    pytest.skip("needs root (namespaces, veths, nftables)", allow_module_level=True)
if not os.path.exists("/bin/busybox") or shutil.which("nft") is None or shutil.which("unshare") is None:
    pytest.skip("needs busybox-static, nftables and util-linux", allow_module_level=True)

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("net-data")
    with ImageService(str(root)) as svc:
        svc.bootstrap("busybox")
    return root


def _links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    return {ln.split(":")[1].strip().split("@")[0] for ln in out.splitlines() if ":" in ln}


def _tables() -> str:
    return subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout


class Env:
    def __init__(self, data_root: Path, tmp: Path) -> None:
        self.data_root, self.exec_root = str(data_root), str(tmp / "run")
        self.parent = f"/pallet-test-{uuid.uuid4().hex[:8]}"
        self.veths: set[str] = set()  # every host-side veth this test's engines made
        self.new_engine()

    def new_engine(self) -> Engine:
        self.engine = Engine(self.data_root, self.exec_root, cgroup_parent=self.parent)
        self.engine.networking.manager.hooks.append(self._seen)
        return self.engine

    def _seen(self, nid: str, cid: str, names, addrs) -> None:
        ep = (self.engine.networking.manager.container(cid) or {}).get("endpoints", {}).get(nid)
        if ep:
            self.veths.add(ep["veth"])

    def run(self, cmd: list[str], name: str | None = None, **hc) -> str:
        cid = self.engine.create({"Image": "busybox", "Cmd": cmd, "HostConfig": hc}, name=name)
        self.engine.start(cid)
        return cid

    def output(self, cmd: str, timeout: float = 60, **hc) -> tuple[int, str]:
        cid = self.run(["sh", "-c", cmd], **hc)
        code = self.engine.wait(cid, timeout=timeout)
        out = b"".join(d for _s, d in self.engine.logs(cid)).decode()
        self.engine.remove(cid)
        return code, out

    def ip(self, cid: str, net: str) -> str:
        return str(self.engine.inspect(cid)["NetworkSettings"]["Networks"][net]["IPAddress"])

    def cleanup(self) -> None:
        e = self.engine
        for c in e.list(all=True):
            with contextlib.suppress(Exception):
                e.remove(c["Id"], force=True)
        mgr = e.networking.manager
        tag = mgr.tag
        for n in mgr.list({"type": ["custom"]}):
            with contextlib.suppress(Exception):
                mgr.remove(n["Id"])
        bridges = set(mgr.bridge_names())
        e.close()
        for hier in Path("/sys/fs/cgroup").iterdir():
            d = hier / self.parent.lstrip("/")
            with contextlib.suppress(OSError):
                for sub in sorted((p for p in d.rglob("*") if p.is_dir()), reverse=True):
                    sub.rmdir()
                d.rmdir()
        # nothing of the engine's is left in the kernel
        # (other engines on this host may have links of their own: only ours are checked)
        assert not (_links() & (bridges | self.veths))
        assert f"pallet_{tag}" not in _tables()
        assert NetnsStore(os.path.join(self.exec_root, "netns")).list() == []


@pytest.fixture
def env(data_root, tmp_path) -> Iterator[Env]:
    e = Env(data_root, tmp_path)
    try:
        yield e
    finally:
        e.cleanup()


HTTPD = ["sh", "-c", "echo hello-from-$(hostname) > /tmp/index.html; exec httpd -f -p 80 -h /tmp"]
# busybox wget retried: the server may need a moment; `timeout` bounds a blackholed connect.
WGET = "for i in 1 2 3 4 5 6 7 8 9 10; do timeout 4 wget -q -O- http://{}/ && exit 0; sleep 0.3; done; exit 1"
# Not the shell's last command: sh would exec it as pid 1, which SIGTERM from `timeout` cannot kill.
WGET_ONCE = "timeout 3 wget -q -O- http://{}/ || exit 1"


def host_get(url: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            host, _, port = url.rpartition(":")
            with socket.create_connection((host, int(port)), timeout=2) as s:
                s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                data = b""
                while chunk := s.recv(4096):
                    data += chunk
            return data.decode(errors="replace")
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_containers_on_a_network_talk_by_ip_and_name(env):
    mgr = env.engine.networking.manager
    mgr.create({"Name": "pt-app"})
    web = env.run(HTTPD, name="web", NetworkMode="pt-app")
    ip = env.ip(web, "pt-app")
    assert ipaddress.ip_address(ip) in ipaddress.ip_network(mgr.get("pt-app")["IPAM"]["Config"][0]["Subnet"])
    code, out = env.output(WGET.format(ip), NetworkMode="pt-app")
    assert code == 0 and f"hello-from-{web[:12]}" in out
    if env.engine.networking.dns is not None:
        code, out = env.output(WGET.format("web"), NetworkMode="pt-app")
        assert code == 0 and f"hello-from-{web[:12]}" in out, out
    info = env.engine.inspect(web)["NetworkSettings"]
    net = info["Networks"]["pt-app"]
    assert net["NetworkID"] == mgr.get("pt-app")["Id"] and len(net["EndpointID"]) == 64
    assert net["MacAddress"].startswith("02:42:") and net["IPPrefixLen"] == 16
    assert info["SandboxKey"].endswith(web) and info["IPAddress"] == ""  # top level: default bridge only
    inspect = mgr.inspect("pt-app")
    assert inspect["Containers"][web]["Name"] == "web"
    with pytest.raises(PermissionDenied, match="active endpoints"):
        mgr.remove("pt-app")
    env.engine.remove(web, force=True)
    mgr.remove("pt-app")


def test_published_ports_loopback_gateway_and_hairpin(env):
    web = env.run(HTTPD, PortBindings={"80/tcp": [{"HostIp": "", "HostPort": ""}]})
    s = env.engine.inspect(web)["NetworkSettings"]
    binding = s["Ports"]["80/tcp"][0]
    port, gw = int(binding["HostPort"]), s["Gateway"]
    assert binding["HostIp"] == "0.0.0.0" and port > 0 and s["IPAddress"]  # the default bridge
    assert f"hello-from-{web[:12]}" in host_get(f"127.0.0.1:{port}")
    assert f"hello-from-{web[:12]}" in host_get(f"{gw}:{port}")
    # hairpin: another container, and the container itself, through the host's address
    code, out = env.output(WGET.format(f"{gw}:{port}"))
    assert code == 0 and f"hello-from-{web[:12]}" in out, out
    summary = next(c for c in env.engine.list() if c["Id"] == web)
    assert {"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": port, "Type": "tcp"} in summary["Ports"]
    env.engine.stop(web, timeout=1)
    with pytest.raises(OSError):
        host_get(f"127.0.0.1:{port}", timeout=0.5)
    # the host port is free again once the container stopped
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_port_taken_by_another_program_is_refused(env):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        cid = env.engine.create({"Image": "busybox", "Cmd": HTTPD, "HostConfig": {
            "PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}}})
        with pytest.raises(PalletError, match="address already in use"):
            env.engine.start(cid)
        assert env.engine.inspect(cid)["NetworkSettings"]["Networks"]["bridge"]["IPAddress"] == ""
    env.engine.remove(cid)


def test_overlapping_subnet_refused(env):
    mgr = env.engine.networking.manager
    mgr.create({"Name": "pt-one", "IPAM": {"Config": [{"Subnet": "10.231.0.0/16"}]}})
    with pytest.raises(PermissionDenied, match="overlaps"):
        mgr.create({"Name": "pt-two", "IPAM": {"Config": [{"Subnet": "10.231.8.0/24"}]}})
    mgr.remove("pt-one")


@pytest.fixture
def outside(tmp_path) -> Iterator[tuple[str, str]]:
    """A namespace with an HTTP server on a 10.x.y.2/30 behind a veth; (address, host end)."""
    routes = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True,
                            text=True).stdout
    used = []
    for line in routes.split("\n"):
        with contextlib.suppress(ValueError, IndexError):
            used.append(ipaddress.ip_network(line.split()[0], strict=False))
    for _ in range(100):
        net = ipaddress.ip_network(f"10.{random.randint(1, 254)}.{random.randint(0, 255) & 0xFC}.0/30")
        if not any(net.overlaps(u) for u in used):
            break
    host_ip, ns_ip = str(net.network_address + 1), str(net.network_address + 2)
    suffix = uuid.uuid4().hex[:6]
    host_end, ns_end = f"pto{suffix}h", f"pto{suffix}n"
    store = NetnsStore(str(tmp_path / "outside-ns"))
    path = store.create("out")
    proc = None
    try:
        subprocess.run(["ip", "link", "add", host_end, "type", "veth", "peer", "name", ns_end], check=True)
        subprocess.run(["ip", "link", "set", ns_end, "netns", path], check=True)
        subprocess.run(["ip", "addr", "add", f"{host_ip}/30", "dev", host_end], check=True)
        subprocess.run(["ip", "link", "set", host_end, "up"], check=True)
        # Replies from the namespace come in here: forwarding on this interface only (the host-wide
        # switch stays as it is).
        Path(f"/proc/sys/net/ipv4/conf/{host_end}/forwarding").write_text("1")
        ns = ["nsenter", f"--net={path}"]
        subprocess.run([*ns, "ip", "addr", "add", f"{ns_ip}/30", "dev", ns_end], check=True)
        subprocess.run([*ns, "ip", "link", "set", ns_end, "up"], check=True)
        subprocess.run([*ns, "ip", "link", "set", "lo", "up"], check=True)
        www = tmp_path / "www"
        www.mkdir()
        (www / "index.html").write_text("outside\n")
        proc = subprocess.Popen([*ns, "/bin/busybox", "httpd", "-f", "-p", "8000", "-h", str(www)])
        yield f"{ns_ip}:8000", host_end
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        subprocess.run(["ip", "link", "del", host_end], capture_output=True)
        store.remove("out")


def test_internal_network_has_no_way_out(env, outside):
    target, _host_end = outside
    mgr = env.engine.networking.manager
    mgr.create({"Name": "pt-open"})
    mgr.create({"Name": "pt-closed", "Internal": True})
    code, out = env.output(WGET.format(target), NetworkMode="pt-open")
    assert code == 0 and "outside" in out, out  # the control: a normal network gets out (NAT)
    code, out = env.output(WGET_ONCE.format(target), NetworkMode="pt-closed")
    assert code != 0 and "outside" not in out
    mgr.remove("pt-open")
    mgr.remove("pt-closed")


def test_two_networks_cannot_reach_each_other(env):
    mgr = env.engine.networking.manager
    mgr.create({"Name": "pt-a"})
    mgr.create({"Name": "pt-b"})
    web = env.run(HTTPD, NetworkMode="pt-b")
    ip = env.ip(web, "pt-b")
    code, out = env.output(WGET.format(ip), NetworkMode="pt-b")
    assert code == 0, out
    code, out = env.output(WGET_ONCE.format(ip), NetworkMode="pt-a")
    assert code != 0 and "hello" not in out
    env.engine.remove(web, force=True)
    mgr.remove("pt-a")
    mgr.remove("pt-b")


def test_start_stop_cycles_leak_nothing(env):
    mgr = env.engine.networking.manager
    mgr.create({"Name": "pt-cycle"})
    cid = env.engine.create({"Image": "busybox", "Cmd": ["true"], "HostConfig": {
        "NetworkMode": "pt-cycle", "PortBindings": {"80/tcp": [{"HostPort": ""}]}}})
    env.engine.start(cid)  # first: lazily made things (the proxy's loop, netlink sockets) are no leak
    env.engine.wait(cid, timeout=20)
    fds = len(os.listdir("/proc/self/fd"))
    for _ in range(25):
        env.engine.start(cid)
        env.engine.wait(cid, timeout=20)
    env.engine.wait(cid, timeout=20)
    st = mgr.container(cid)
    assert st["endpoints"] == {} and st["bound"] == [] and st["netns"] == ""
    pools = mgr.get("pt-cycle")["pools"]
    assert all(not p.get("allocated") for p in pools.values())
    assert mgr.get("pt-cycle")["bridge"] not in _links()
    assert len(os.listdir("/proc/self/fd")) <= fds + 2
    env.engine.remove(cid)
    mgr.remove("pt-cycle")


def test_restart_after_crash_releases_what_a_dead_run_took(env):
    mgr = env.engine.networking.manager
    cid = env.run(["sleep", "300"], PortBindings={"80/tcp": [{"HostPort": ""}]})
    veth = next(iter(mgr.container(cid)["endpoints"].values()))["veth"]
    assert veth in _links() and veth in env.veths
    # the daemon dies (its Engine object is dropped without stopping anything), then the
    # container's monitor and process die too, while nobody watches
    monitor, pid = env.engine.get(cid).monitor_pid, env.engine.get(cid).state.pid
    env.engine.close()
    os.kill(monitor, 9)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, 9)
    time.sleep(0.3)
    env.new_engine()
    assert env.engine.inspect(cid)["State"]["Status"] == "exited"
    assert veth not in _links()
    assert env.engine.networking.manager.container(cid)["endpoints"] == {}
    env.engine.remove(cid)


def test_ipv6_network(env):
    mgr = env.engine.networking.manager
    mgr.create({"Name": "pt-v6", "EnableIPv6": True, "IPAM": {"Config": [{"Subnet": "fd42:7a11:9c3e::/64"}]}})
    web = env.run(HTTPD, NetworkMode="pt-v6")
    net = env.engine.inspect(web)["NetworkSettings"]["Networks"]["pt-v6"]
    assert net["GlobalIPv6Address"] == "fd42:7a11:9c3e::2" and net["IPv6Gateway"] == "fd42:7a11:9c3e::1"
    assert net["GlobalIPv6PrefixLen"] == 64 and net["IPAddress"]  # IPv4 too, from the pool
    code, out = env.output(WGET.format(f"[{net['GlobalIPv6Address']}]"), NetworkMode="pt-v6")
    assert code == 0 and f"hello-from-{web[:12]}" in out, out
    env.engine.remove(web, force=True)
    mgr.remove("pt-v6")


def test_orphaned_rules_of_a_vanished_data_root_are_swept(tmp_path):
    from pallet.network.firewall import Firewall, FwNetwork
    from pallet.network.netlink import IfAddr, PyrouteNetlink

    suffix = uuid.uuid4().hex[:6]
    bridge, table = f"ptorph{suffix}", f"pallet_t{suffix}"
    gone_root = str(tmp_path / "deleted-data-root")
    nl = PyrouteNetlink()
    try:
        nl.ensure_bridge(bridge, (IfAddr("10.254.254.1", 30),))
        Firewall(table, owner=gone_root).apply([FwNetwork("f" * 64, bridge, ("10.254.254.0/30",))], [])
        assert table in _tables()
        live = Firewall(f"pallet_l{suffix}", owner=str(tmp_path))  # its data root exists: kept
        (tmp_path / "network").mkdir()
        live.apply([FwNetwork("e" * 64, bridge, ("10.254.254.0/30",))], [])
        swept = Firewall("pallet_other").sweep_orphans(nl.delete_link)
        assert table in swept and f"pallet_l{suffix}" not in swept
        assert table not in _tables() and bridge not in _links()
        assert f"pallet_l{suffix}" in _tables()
    finally:
        nl.delete_link(bridge)
        subprocess.run(["nft", "delete", "table", "inet", table], capture_output=True)
        subprocess.run(["nft", "delete", "table", "inet", f"pallet_l{suffix}"], capture_output=True)


def host_get6(host: str, port: int, timeout: float = 5.0) -> str:
    """GET / from [host]:port over IPv6 (host: ::1 or a bridge's gateway address)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.socket(socket.AF_INET6) as s:
                s.settimeout(2)
                s.connect((host, port))
                s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                data = b""
                while chunk := s.recv(4096):
                    data += chunk
            if data:
                return data.decode(errors="replace")
            raise ConnectionResetError("empty reply")
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_ipv6_published_ports_proxy_dnat_and_conflict(env):
    from pallet.network.ports import host_has_ipv6

    if not host_has_ipv6():
        pytest.skip("IPv6 is disabled on this host")
    # the default bridge (IPv4 only): [::] is published too, the proxy forwards to the IPv4 address
    web = env.run(HTTPD, PortBindings={"80/tcp": [{"HostPort": ""}]})
    ports = env.engine.inspect(web)["NetworkSettings"]["Ports"]["80/tcp"]
    port = int(ports[0]["HostPort"])
    assert ports == [{"HostIp": "0.0.0.0", "HostPort": str(port)}, {"HostIp": "::", "HostPort": str(port)}]
    assert f"hello-from-{web[:12]}" in host_get6("::1", port)
    # a daemon restart: the container runs on, the new daemon proxies its IPv6 binding again
    env.engine.close()
    env.new_engine()
    assert f"hello-from-{web[:12]}" in host_get6("::1", port)
    # an IPv6 binding already held gives Docker's message, and the second container keeps nothing
    other = env.engine.create({"Image": "busybox", "Cmd": HTTPD, "HostConfig": {
        "PortBindings": {"80/tcp": [{"HostIp": "::1", "HostPort": str(port)}]}}})
    with pytest.raises(PalletError, match=rf"Bind for \[::1\]:{port} failed: port is already allocated"):
        env.engine.start(other)
    env.engine.remove(other)
    env.engine.stop(web, timeout=1)
    with pytest.raises(OSError):
        host_get6("::1", port, timeout=0.3)
    with socket.socket(socket.AF_INET6) as sock:  # free again (the proxied connection's TIME_WAIT aside)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("::1", port))
    env.engine.remove(web)
    # an IPv6 network: [::1] through the proxy to the container's IPv6 address, the gateway's
    # IPv6 address (a local address) by ip6 DNAT
    mgr = env.engine.networking.manager
    mgr.create({"Name": "pt-v6p", "EnableIPv6": True,
                "IPAM": {"Config": [{"Subnet": "fd42:7a11:9c3f::/64"}]}})
    web = env.run(HTTPD, NetworkMode="pt-v6p", PortBindings={"80/tcp": [{"HostIp": "::", "HostPort": ""}]})
    s = env.engine.inspect(web)["NetworkSettings"]
    assert [b["HostIp"] for b in s["Ports"]["80/tcp"]] == ["::"]
    port = int(s["Ports"]["80/tcp"][0]["HostPort"])
    assert f"hello-from-{web[:12]}" in host_get6("::1", port)
    assert f"hello-from-{web[:12]}" in host_get6(s["Networks"]["pt-v6p"]["IPv6Gateway"], port)
    table = subprocess.run(["nft", "list", "table", "inet", mgr.firewall.table], capture_output=True,
                           text=True).stdout
    assert f"dnat ip6 to [{s['Networks']['pt-v6p']['GlobalIPv6Address']}]:80" in table
    env.engine.remove(web, force=True)
    assert web not in mgr.proxy.owners()
    mgr.remove("pt-v6p")


def test_mac_address(env):
    code, out = env.output("cat /sys/class/net/eth0/address")
    assert code == 0 and out.strip().startswith("02:42:")
    cid = env.engine.create({"Image": "busybox", "Cmd": ["cat", "/sys/class/net/eth0/address"],
                             "MacAddress": "02:AA:bb:cc:dd:01"})
    env.engine.start(cid)
    assert env.engine.wait(cid, timeout=30) == 0
    assert b"".join(d for _s, d in env.engine.logs(cid)).decode().strip() == "02:aa:bb:cc:dd:01"
    net = env.engine.inspect(cid)["NetworkSettings"]["Networks"]["bridge"]
    assert net["MacAddress"] == "02:aa:bb:cc:dd:01"
    env.engine.remove(cid)
    for bad in ("02:aa:bb:cc:dd", "zz:aa:bb:cc:dd:ee", "01:00:5e:00:00:01"):
        with pytest.raises(InvalidArgument, match="invalid MAC address"):
            env.engine.create({"Image": "busybox", "Cmd": ["true"], "NetworkingConfig": {
                "EndpointsConfig": {"bridge": {"MacAddress": bad}}}})
    assert env.engine.list(all=True) == []


def test_legacy_links(env):
    with pytest.raises(InvalidArgument, match="could not get container for nosuch"):  # at create, as moby
        env.engine.create({"Image": "busybox", "Cmd": ["true"], "HostConfig": {"Links": ["nosuch:x"]}})
    web = env.engine.create({"Image": "busybox", "Cmd": HTTPD, "Env": ["FOO=bar"],
                             "ExposedPorts": {"80/tcp": {}}}, name="web")
    cmd = ["sh", "-c", "env; cat /etc/hosts; " + WGET.format("w")]
    client = env.engine.create({"Image": "busybox", "Cmd": cmd, "HostConfig": {"Links": ["web:w"]}},
                               name="client")
    with pytest.raises(PalletError, match="Cannot link to a non running container: /web AS /client/w"):
        env.engine.start(client)
    env.engine.start(web)
    ip = env.ip(web, "bridge")
    env.engine.start(client)
    assert env.engine.wait(client, timeout=60) == 0
    out = b"".join(d for _s, d in env.engine.logs(client)).decode()
    for line in (f"W_PORT=tcp://{ip}:80", f"W_PORT_80_TCP=tcp://{ip}:80", f"W_PORT_80_TCP_ADDR={ip}",
                 "W_PORT_80_TCP_PORT=80", "W_PORT_80_TCP_PROTO=tcp", "W_NAME=/client/w", "W_ENV_FOO=bar",
                 f"{ip}\tw {web[:12]} web", f"hello-from-{web[:12]}"):
        assert line in out, (line, out)
    assert env.engine.inspect(client)["HostConfig"]["Links"] == ["/web:/client/w"]
    env.engine.remove(client)
    env.engine.remove(web, force=True)
    # a user-defined network: the alias is a DNS name for the linking container only
    if env.engine.networking.dns is None:
        return
    mgr = env.engine.networking.manager
    mgr.create({"Name": "pt-link"})
    web = env.run(HTTPD, name="web2", NetworkMode="pt-link")
    code, out = env.output(WGET.format("w2"), NetworkMode="pt-link", Links=["web2:w2"])
    assert code == 0 and f"hello-from-{web[:12]}" in out, out
    code, out = env.output(WGET_ONCE.format("w2"), NetworkMode="pt-link")
    assert code != 0
    # EndpointSettings.Links (API clients, `network connect --link`) work the same
    cid = env.engine.create({"Image": "busybox", "Cmd": ["sh", "-c", WGET.format("w3")],
                             "HostConfig": {"NetworkMode": "pt-link"},
                             "NetworkingConfig": {"EndpointsConfig": {"pt-link": {"Links": ["web2:w3"]}}}})
    env.engine.start(cid)
    assert env.engine.wait(cid, timeout=60) == 0
    assert env.engine.inspect(cid)["NetworkSettings"]["Networks"]["pt-link"]["Links"] == ["web2:w3"]
    env.engine.remove(cid)
    env.engine.remove(web, force=True)
    mgr.remove("pt-link")


def test_default_mtu_and_subnet_congctl_reach_the_kernel(env):
    """palletd's --mtu gives the default bridge's interfaces that MTU; the bridge's and the
    container's subnet routes carry `congctl cubic` (docs/design/network.md, "Throughput")."""
    mgr = env.engine.networking.manager
    env.engine.networking.set_default_mtu(9000)
    try:
        cid = env.run(["sleep", "60"])
        c = mgr.container(cid)
        (ep,) = c["endpoints"].values()
        subnet = str(ipaddress.ip_interface(f"{ep['IPAddress']}/{ep['IPPrefixLen']}").network)
        inside = ["nsenter", f"--net={c['netns']}", "ip"]
        link = subprocess.run([*inside, "-o", "link", "show", "eth0"], capture_output=True, text=True).stdout
        assert " mtu 9000 " in link, link
        host, inner = (subprocess.run([*ip, "-4", "route", "show", subnet], capture_output=True,
                                      text=True).stdout for ip in (["ip"], inside))
        assert "congctl cubic" in host and "congctl cubic" in inner, (host, inner)
        env.engine.remove(cid, force=True)
    finally:
        env.engine.networking.set_default_mtu(0)  # the module's data root is shared: back to 1500
    assert mgr.inspect("bridge")["Options"]["com.docker.network.driver.mtu"] == "1500"
