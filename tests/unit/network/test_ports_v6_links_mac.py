"""IPv6 port publishing (reservation, rules, the userland proxy), legacy links and MAC addresses,
without root: sockets only on loopback, the proxy forwarding between ::1 and 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import dns.asyncquery
import dns.message
import dns.rcode
import pytest

from pallet.errors import InvalidArgument, PalletError
from pallet.network import links
from pallet.network.dns import DnsServer
from pallet.network.firewall import FwNetwork, FwPort, render
from pallet.network.manager import parse_mac
from pallet.network.ports import PortRequest, PortReserver, host_has_ipv6, requests, show
from pallet.network.proxy import UserlandProxy


def _v6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return host_has_ipv6()
    except OSError:
        return False


needs_v6 = pytest.mark.skipif(not _v6_loopback(), reason="no IPv6 loopback on this host")


# --- links -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("value", "want"), [
    ("web", ("web", "web")), ("web:w", ("web", "w")), ("/web:/client/w", ("web", "w")),
])
def test_link_parse(value, want):
    assert links.parse(value) == want


@pytest.mark.parametrize("value", ["", "a:b:c", ":w", "web:"])
def test_link_parse_refuses(value):
    with pytest.raises(InvalidArgument):
        links.parse(value)


def test_link_env_as_moby():
    env = links.env("db-1", "/client/db-1", "172.17.0.3", ["5432/tcp", "53/udp", "53/tcp"],
                    ["PATH=/bin", "HOME=/root", "PGDATA=/data", "EMPTY=", "NOVALUE"])
    assert env == [
        "DB_1_PORT=tcp://172.17.0.3:53",  # the lowest port, tcp before udp
        "DB_1_PORT_53_TCP=tcp://172.17.0.3:53", "DB_1_PORT_53_TCP_ADDR=172.17.0.3",
        "DB_1_PORT_53_TCP_PORT=53", "DB_1_PORT_53_TCP_PROTO=tcp",
        "DB_1_PORT_53_UDP=udp://172.17.0.3:53", "DB_1_PORT_53_UDP_ADDR=172.17.0.3",
        "DB_1_PORT_53_UDP_PORT=53", "DB_1_PORT_53_UDP_PROTO=udp",
        "DB_1_PORT_5432_TCP=tcp://172.17.0.3:5432", "DB_1_PORT_5432_TCP_ADDR=172.17.0.3",
        "DB_1_PORT_5432_TCP_PORT=5432", "DB_1_PORT_5432_TCP_PROTO=tcp",
        "DB_1_NAME=/client/db-1", "DB_1_ENV_PGDATA=/data", "DB_1_ENV_EMPTY="]


def test_link_env_port_ranges():
    env = links.env("w", "/c/w", "10.0.0.2", ["8000/tcp", "8001/tcp", "8002/tcp"], [])
    assert env[:7] == ["W_PORT=tcp://10.0.0.2:8000", "W_PORT_8000_TCP_START=tcp://10.0.0.2:8000",
                       "W_PORT_8000_TCP_ADDR=10.0.0.2", "W_PORT_8000_TCP_PROTO=tcp",
                       "W_PORT_8000_TCP_PORT_START=8000",
                       "W_PORT_8000_TCP_END=tcp://10.0.0.2:8002", "W_PORT_8000_TCP_PORT_END=8002"]
    assert env[-1] == "W_NAME=/c/w" and len(env) == 7 + 3 * 4 + 1


# --- MAC addresses -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("raw", "want"), [
    ("02:42:AC:11:00:09", "02:42:ac:11:00:09"), ("92-d0-c6-0a-29-33", "92:d0:c6:0a:29:33"),
    ("0242.ac11.0009", "02:42:ac:11:00:09"),
])
def test_parse_mac(raw, want):
    assert parse_mac(raw) == want


@pytest.mark.parametrize("raw", ["02:42:ac:11:00", "02:42:ac:11:00:09:01", "02:42-ac:11:00:09",
                                 "zz:42:ac:11:00:09", "01:00:5e:00:00:01", "00:00:00:00:00:00", 42])
def test_parse_mac_refuses(raw):
    with pytest.raises(InvalidArgument, match="invalid MAC address"):
        parse_mac(raw)


# --- IPv6 bindings -------------------------------------------------------------------------------------
def test_requests_keep_the_family_asked_for():
    reqs = requests({"80/tcp": [{"HostIp": "", "HostPort": "8080"}, {"HostIp": "0.0.0.0", "HostPort": "8081"},
                                {"HostIp": "::", "HostPort": "8082"},
                                {"HostIp": "0:0::1", "HostPort": "8083"}]})
    assert [r.host_ip for r in reqs] == ["", "0.0.0.0", "::", "::1"]
    for bad in ("::ffff:127.0.0.1", "fe80::1%lo"):
        with pytest.raises(InvalidArgument):
            requests({"80/tcp": [{"HostIp": bad}]})
    assert show("::", 80) == "[::]:80" and show("", 80) == "0.0.0.0:80"


@needs_v6
def test_reserver_binds_both_families_on_one_port_and_names_conflicts():
    r = PortReserver(ipv6=True)
    try:
        both = r.reserve("a", [PortRequest("tcp", 80, "", 0, 0)])
        assert [b.host_ip for b in both] == ["0.0.0.0", "::"] and both[0].host_port == both[1].host_port
        port = both[0].host_port
        taken = "failed: port is already allocated$"
        with pytest.raises(PalletError, match=rf"^Bind for \[::1\]:{port} {taken}"):
            r.reserve("b", [PortRequest("tcp", 80, "::1", port, port)])
        with pytest.raises(PalletError, match=rf"^Bind for 127.0.0.1:{port} {taken}"):
            r.reserve("b", [PortRequest("tcp", 80, "127.0.0.1", port, port)])
        assert r.held("b") == []
        udp = r.reserve("b", [PortRequest("udp", 80, "::1", port, port)])  # another protocol
        assert udp[0].host_ip == "::1"
        r.release("a")
        assert [b.host_ip for b in r.reserve("c", [PortRequest("tcp", 80, "::1", port, port)])] == ["::1"]
        v4 = r.reserve("d", [PortRequest("tcp", 80, "0.0.0.0", port, port)])  # IPv4 only: no clash
        assert [b.host_ip for b in v4] == ["0.0.0.0"]
    finally:
        for owner in "abcd":
            r.release(owner)
    assert [b.host_ip for b in PortReserver(ipv6=False).reserve("x", [PortRequest("tcp", 80, "", 0, 0)])] \
        == ["0.0.0.0"]


def test_firewall_renders_ip6_dnat_but_never_for_loopback():
    nets = [FwNetwork("n" * 64, "pl-n", ("10.9.0.0/24", "fd00:9::/64"))]
    ports = [FwPort("c" * 64, "tcp", "", 8080, "fd00:9::2", 80),
             FwPort("c" * 64, "udp", "fd00:1::5", 53, "fd00:9::2", 53),
             FwPort("c" * 64, "tcp", "", 8080, "10.9.0.2", 80)]
    text = render("pallet_t", nets, ports)
    tag = 'comment "pallet:container:cccccccccccc"'
    assert f"ip6 daddr != ::1 tcp dport 8080 dnat ip6 to [fd00:9::2]:80 {tag}" in text
    assert f"ip6 daddr fd00:1::5 udp dport 53 dnat ip6 to [fd00:9::2]:53 {tag}" in text
    assert f"meta nfproto ipv4 tcp dport 8080 dnat ip to 10.9.0.2:80 {tag}" in text
    assert 'oifname "pl-n" ip6 saddr fd00:9::/64 ct status dnat masquerade' in text  # hairpin


# --- the userland proxy -------------------------------------------------------------------------------
@pytest.fixture
def echo() -> Iterator[tuple[int, int]]:
    """TCP and UDP echo servers on 127.0.0.1 (the "container"): (tcp port, udp port)."""
    tcp = socket.create_server(("127.0.0.1", 0))
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    stop = threading.Event()

    def serve_tcp() -> None:
        tcp.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = tcp.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(5)
                data = b""
                while chunk := conn.recv(4096):  # until the client half-closes
                    data += chunk
                conn.sendall(b"echo:" + data)

    def serve_udp() -> None:
        udp.settimeout(0.2)
        while not stop.is_set():
            try:
                data, addr = udp.recvfrom(4096)
            except OSError:
                continue
            udp.sendto(b"echo:" + data, addr)

    threads = [threading.Thread(target=serve_tcp), threading.Thread(target=serve_udp)]
    for t in threads:
        t.start()
    try:
        yield tcp.getsockname()[1], udp.getsockname()[1]
    finally:
        stop.set()
        for t in threads:
            t.join()
        tcp.close()
        udp.close()


@needs_v6
def test_proxy_forwards_tcp_and_udp_from_ipv6_loopback_until_stopped(echo):
    tcp_port, udp_port = echo
    reserver, proxy = PortReserver(ipv6=True), UserlandProxy()
    try:
        tb, ub = reserver.reserve("c1", [PortRequest("tcp", tcp_port, "::1", 0, 0),
                                         PortRequest("udp", udp_port, "::1", 0, 0)])
        for b, sock in reserver.sockets("c1"):
            proxy.start("c1", b.proto, sock, ("127.0.0.1", b.container_port))
        assert proxy.owners() == ["c1"]
        for _ in range(3):
            with socket.create_connection(("::1", tb.host_port), timeout=5) as c:
                c.sendall(b"x" * 100000)
                c.shutdown(socket.SHUT_WR)  # the half-close reaches the server, the answer comes back
                data = b""
                while chunk := c.recv(65536):
                    data += chunk
            assert data == b"echo:" + b"x" * 100000
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as u:
            u.settimeout(5)
            for i in range(3):
                u.sendto(b"ping%d" % i, ("::1", ub.host_port))
                assert u.recvfrom(4096)[0] == b"echo:ping%d" % i
        proxy.stop("c1")
        reserver.release("c1")
        assert proxy.owners() == []
        with pytest.raises(OSError):
            socket.create_connection(("::1", tb.host_port), timeout=2).close()
    finally:
        proxy.close()
        reserver.release("c1")


# --- DNS names of links on user-defined networks -----------------------------------------------------------
def test_link_alias_resolves_only_for_the_linking_container(tmp_path: Path):
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.9\n")

    async def body() -> None:
        server = DnsServer(port=0, resolv_conf=resolv, forward_timeout=0.3, fallback_upstreams=())
        await server.start()
        try:
            await server.add_network("n", ["127.0.0.1/8"], name="net")
            server.set_records("n", "a" * 64, ["web"], "10.1.0.2")
            server.set_records("n", "b" * 64, ["client"], "127.0.0.5", links={"w": "web"})
            server.set_records("n", "c" * 64, ["other"], "127.0.0.6")
            addr, port = server.endpoints("n")[0]

            async def ask(source: str) -> dns.message.Message:
                q = dns.message.make_query("w", "A")
                return await dns.asyncquery.udp(q, addr, port=port, source=source, timeout=3)

            r = await ask("127.0.0.5")
            assert r.rcode() == dns.rcode.NOERROR
            assert {rd.to_text() for rs in r.answer for rd in rs} == {"10.1.0.2"}
            r = await ask("127.0.0.6")
            assert not r.answer
        finally:
            await server.close()

    asyncio.run(body())


# --- create requests: MacAddress and Links checked by the engine's networking -----------------------
def test_create_request_mac_address_goes_to_the_main_endpoint():
    from pallet.engine.networking import EngineNetworking

    cfg = {"MacAddress": "02:AA:bb:cc:dd:ee",
           "NetworkingConfig": {"EndpointsConfig": {"app": {"Aliases": ["x"]}}}}
    mode, eps, _ = EngineNetworking.validate(cfg, {"NetworkMode": "app"})
    assert mode == "app" and eps == {"app": {"Aliases": ["x"], "MacAddress": "02:aa:bb:cc:dd:ee"}}
    _, eps, _ = EngineNetworking.validate({"MacAddress": "02:aa:bb:cc:dd:ee"}, {})
    assert eps == {"bridge": {"MacAddress": "02:aa:bb:cc:dd:ee"}}
    with pytest.raises(InvalidArgument, match="must match the endpoint-specific MAC address"):
        EngineNetworking.validate({"MacAddress": "02:aa:bb:cc:dd:ee", "NetworkingConfig": {
            "EndpointsConfig": {"default": {"MacAddress": "02:aa:bb:cc:dd:ef"}}}}, {})
    with pytest.raises(InvalidArgument, match="conflicting options: mac-address and the network"):
        EngineNetworking.validate({"MacAddress": "02:aa:bb:cc:dd:ee"}, {"NetworkMode": "host"})
    with pytest.raises(InvalidArgument, match="invalid MAC address nope"):
        EngineNetworking.validate({"NetworkingConfig": {"EndpointsConfig": {"app": {"MacAddress": "nope"}}}},
                                  {"NetworkMode": "app"})


def test_create_request_links_checked():
    from pallet.engine.networking import EngineNetworking

    EngineNetworking.validate({}, {"Links": ["web:w", "db"]})
    with pytest.raises(InvalidArgument, match="bad format for links: a:b:c"):
        EngineNetworking.validate({}, {"Links": ["a:b:c"]})
    with pytest.raises(InvalidArgument, match="host type networking can't be used with links"):
        EngineNetworking.validate({}, {"Links": ["web"], "NetworkMode": "host"})
    with pytest.raises(InvalidArgument, match="container type network can't be used with links"):
        EngineNetworking.validate({}, {"Links": ["web"], "NetworkMode": "container:web"})
