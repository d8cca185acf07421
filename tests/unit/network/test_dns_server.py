"""The embedded DNS server on loopback: local answers, scoping, forwarding to fake upstreams on
127.0.0.x, TCP, truncation and malformed input. No root: listeners use port 0."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.reversename
import pytest

from pallet.errors import Conflict, InvalidArgument, NotFound, Unavailable
from pallet.network.dns import DnsServer

CID1, CID2, CID3 = "a1" * 32, "b2" * 32, "c3" * 32


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


class FakeUpstream:
    """A tiny authoritative-ish server on one loopback address: `example.test` has 192.0.2.10,
    other names are NXDOMAIN; `mode` makes it fail in the ways real upstreams do."""

    def __init__(self, addr: str, port: int = 0, mode: str = "ok", answer: str = "192.0.2.10") -> None:
        self.addr, self.port, self.mode, self.answer = addr, port, mode, answer
        self.queries: list[tuple[str, str]] = []  # (proto, name)

    def reply(self, data: bytes, proto: str) -> bytes | None:
        q = dns.message.from_wire(data)
        name = q.question[0].name.to_text()
        self.queries.append((proto, name))
        if self.mode == "silent":
            return None
        r = dns.message.make_response(q)
        if self.mode == "servfail":
            r.set_rcode(dns.rcode.SERVFAIL)
        elif name == "example.test." and q.question[0].rdtype == dns.rdatatype.A:
            r.answer.append(dns.rrset.from_text(q.question[0].name, 30, "IN", "A", self.answer))
        elif name == "big.test." and q.question[0].rdtype == dns.rdatatype.TXT:
            if proto == "udp":
                r.flags |= dns.flags.TC
            else:
                r.answer.append(dns.rrset.from_text(q.question[0].name, 30, "IN", "TXT",
                                                    *[f'"{"x" * 200}{i}"' for i in range(10)]))
        else:
            r.set_rcode(dns.rcode.NXDOMAIN)
            r.flags |= dns.flags.AA
        return r.to_wire()

    async def start(self) -> FakeUpstream:
        loop = asyncio.get_running_loop()
        up = self

        class Proto(asyncio.DatagramProtocol):
            def connection_made(self, transport: Any) -> None:
                self.t = transport

            def datagram_received(self, data: bytes, addr: Any) -> None:
                out = up.reply(data, "udp")
                if out is not None:
                    self.t.sendto(out, addr)

        self.udp, _ = await loop.create_datagram_endpoint(Proto, local_addr=(self.addr, self.port))
        self.port = self.udp.get_extra_info("sockname")[1]

        async def conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while True:
                    n = int.from_bytes(await reader.readexactly(2), "big")
                    out = up.reply(await reader.readexactly(n), "tcp")
                    if out is not None:
                        writer.write(len(out).to_bytes(2, "big") + out)
                        await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        self.tcp = await asyncio.start_server(conn, self.addr, self.port)
        return self

    def close(self) -> None:
        self.udp.close()
        self.tcp.close()


def write_resolv(tmp_path: Path, *servers: str) -> Path:
    p = tmp_path / "resolv.conf"
    p.write_text("# host file\nsearch example.org\n" + "".join(f"nameserver {s}\n" for s in servers))
    return p


async def with_server(tmp_path: Path, body: Callable[..., Awaitable[Any]], *, upstreams: tuple[str, ...] = (),
                      modes: tuple[str, ...] = (), **kw: Any) -> Any:
    """Start fake upstreams on 127.0.0.2, .3, ... (one port), a DnsServer using them, run body."""
    fakes: list[FakeUpstream] = []
    port = 0
    for i, mode in enumerate(modes):
        fakes.append(await FakeUpstream(f"127.0.0.{2 + i}", port, mode).start())
        port = fakes[0].port
    resolv = write_resolv(tmp_path, *(upstreams or [f.addr for f in fakes]))
    server = DnsServer(port=0, resolv_conf=resolv, upstream_port=port or 53, forward_timeout=0.5,
                       fallback_upstreams=(), **kw)
    await server.start()
    try:
        return await body(server, fakes)
    finally:
        await server.close()
        for f in fakes:
            f.close()


async def query(server: DnsServer, net: str, name: str, rdtype: str = "A", *, tcp: bool = False,
                source: str | None = None, timeout: float = 3.0, **kw: Any) -> dns.message.Message:
    addr, port = server.endpoints(net)[0]
    q = dns.message.make_query(name, rdtype, **kw)
    if tcp:
        return await dns.asyncquery.tcp(q, addr, timeout=timeout, port=port, source=source)
    return await dns.asyncquery.udp(q, addr, timeout=timeout, port=port, source=source)


def addrs(resp: dns.message.Message) -> set[str]:
    return {rd.to_text() for rrset in resp.answer for rd in rrset}


async def two_containers(server: DnsServer) -> None:
    await server.add_network("net1", ["127.0.0.1/8"], name="mynet")
    server.set_records("net1", CID1, ["web", "frontend", CID1[:12]], "10.89.0.2", "fd00::2")
    server.set_records("net1", CID2, ["db", "Store", CID2[:12]], ["10.89.0.3"])


def test_answers_container_names_aliases_and_short_ids(tmp_path):
    async def body(server, fakes):
        await two_containers(server)
        for name in ("web", "frontend", CID1[:12], "WEB.", "web.mynet"):
            r = await query(server, "net1", name)
            assert r.rcode() == dns.rcode.NOERROR and addrs(r) == {"10.89.0.2"}, name
            assert r.answer[0].ttl == 600 and r.flags & dns.flags.RA
        assert addrs(await query(server, "net1", "store", tcp=True)) == {"10.89.0.3"}
        assert addrs(await query(server, "net1", "web", "AAAA")) == {"fd00::2"}
        # The name exists without IPv6 / for MX: NOERROR and no answer, never an upstream's NXDOMAIN.
        for name, rdtype in (("db", "AAAA"), ("web", "MX"), ("db", "TXT")):
            r = await query(server, "net1", name, rdtype)
            assert r.rcode() == dns.rcode.NOERROR and r.answer == [], (name, rdtype)
        assert fakes[0].queries == []
    run(with_server(tmp_path, body, modes=("ok",)))


def test_shared_alias_gives_every_address(tmp_path):
    async def body(server, fakes):
        await two_containers(server)
        server.set_records("net1", CID3, ["web-2", "frontend"], "10.89.0.4")
        assert addrs(await query(server, "net1", "frontend")) == {"10.89.0.2", "10.89.0.4"}
        server.remove_records("net1", CID3)
        server.remove_records("net1", CID3)  # idempotent
        server.remove_records("nonet", CID3)
        assert addrs(await query(server, "net1", "frontend")) == {"10.89.0.2"}
        # Replacing records drops old names.
        server.set_records("net1", CID1, ["web"], "10.89.0.2")
        r = await query(server, "net1", "frontend")
        assert r.rcode() == dns.rcode.NXDOMAIN and [q for q in fakes[0].queries if q[1] == "frontend."]
    run(with_server(tmp_path, body, modes=("ok",)))


def test_ptr_for_network_addresses(tmp_path):
    async def body(server, fakes):
        await two_containers(server)
        for ip, target in (("10.89.0.2", "web.mynet."), ("fd00::2", "web.mynet."),
                           ("10.89.0.3", "db.mynet.")):
            r = await query(server, "net1", dns.reversename.from_address(ip), "PTR")
            assert [rd.to_text() for rrset in r.answer for rd in rrset] == [target]
        # An address of no container is forwarded.
        r = await query(server, "net1", dns.reversename.from_address("10.89.0.99"), "PTR")
        assert r.rcode() == dns.rcode.NXDOMAIN and len(fakes[0].queries) == 1
    run(with_server(tmp_path, body, modes=("ok",)))


def test_names_are_scoped_to_the_network_the_query_arrives_on(tmp_path):
    async def body(server, fakes):
        await two_containers(server)
        await server.add_network("net2", ["127.0.0.5"], domain="dns.pallet")
        server.set_records("net2", CID3, ["other"], "10.90.0.2")
        assert addrs(await query(server, "net2", "other.dns.pallet")) == {"10.90.0.2"}
        r = await query(server, "net2", "web")          # net1's name: not local, forwarded
        assert r.rcode() == dns.rcode.NXDOMAIN and fakes[0].queries == [("udp", "web.")]
        r = await query(server, "net1", "other")
        assert r.rcode() == dns.rcode.NXDOMAIN
        # Unknown names in the network's own domain: authoritative NXDOMAIN, never forwarded.
        r = await query(server, "net2", "nothing.dns.pallet")
        assert r.rcode() == dns.rcode.NXDOMAIN and r.flags & dns.flags.AA and len(fakes[0].queries) == 2
    run(with_server(tmp_path, body, modes=("ok",)))


def test_forwards_other_names_over_udp_and_tcp(tmp_path):
    async def body(server, fakes):
        await two_containers(server)
        r = await query(server, "net1", "example.test")
        assert addrs(r) == {"192.0.2.10"} and r.answer[0].ttl == 30
        r = await query(server, "net1", "example.test", tcp=True)
        assert addrs(r) == {"192.0.2.10"}
        assert fakes[0].queries == [("udp", "example.test."), ("tcp", "example.test.")]
        # A truncated UDP answer is passed through; the client retries over TCP and gets it all.
        r = await query(server, "net1", "big.test", "TXT")
        assert r.flags & dns.flags.TC and not r.answer
        r = await query(server, "net1", "big.test", "TXT", tcp=True)
        assert len(r.answer[0]) == 10
    run(with_server(tmp_path, body, modes=("ok",)))


def test_next_upstream_after_servfail_or_timeout_then_servfail(tmp_path):
    async def body(server, fakes):
        await two_containers(server)
        r = await query(server, "net1", "example.test")
        assert addrs(r) == {"192.0.2.10"}
        assert [len(f.queries) for f in fakes] == [1, 1, 1]
        fakes[2].mode = "silent"
        r = await query(server, "net1", "example.test", tcp=True)
        assert r.rcode() == dns.rcode.SERVFAIL
    run(with_server(tmp_path, body, modes=("servfail", "silent", "ok")))


def test_no_upstream_answers_servfail(tmp_path):
    async def body(server, fakes):
        await two_containers(server)
        r = await query(server, "net1", "example.test")
        assert r.rcode() == dns.rcode.SERVFAIL
        # An empty host resolv.conf (and no fallback) is SERVFAIL too.
        server.resolv_conf.write_text("search x\n")
        assert server.host_upstreams() == ()
        r = await query(server, "net1", "example.test")
        assert r.rcode() == dns.rcode.SERVFAIL
    run(with_server(tmp_path, body, modes=("silent",)))


def test_container_dns_servers_and_host_file_changes(tmp_path):
    async def body(server, fakes):
        await server.add_network("net1", ["127.0.0.1"])
        # Only this container (matched by source address) uses --dns 127.0.0.3.
        server.set_records("net1", CID1, ["web"], "127.0.0.1", upstreams=["127.0.0.3"])
        r = await query(server, "net1", "example.test", source="127.0.0.1")
        assert addrs(r) == {"192.0.2.10"}
        assert [len(f.queries) for f in fakes] == [0, 1]
        r = await query(server, "net1", "example.test", source="127.0.0.9")
        assert r.rcode() == dns.rcode.SERVFAIL and len(fakes[0].queries) == 1
        # The host file is re-read when it changes.
        server.resolv_conf.write_text("nameserver 127.0.0.3\n")
        r = await query(server, "net1", "example.test", source="127.0.0.9")
        assert addrs(r) == {"192.0.2.10"} and [len(f.queries) for f in fakes] == [1, 2]
    run(with_server(tmp_path, body, modes=("silent", "ok"), upstreams=("127.0.0.2",)))


def test_internal_network_does_not_forward(tmp_path):
    async def body(server, fakes):
        await server.add_network("net1", ["127.0.0.1"], forward=False)
        server.set_records("net1", CID1, ["web"], "10.89.0.2")
        assert addrs(await query(server, "net1", "web")) == {"10.89.0.2"}
        r = await query(server, "net1", "example.test")
        assert r.rcode() == dns.rcode.SERVFAIL and fakes[0].queries == []
    run(with_server(tmp_path, body, modes=("ok",)))


def test_sources_outside_the_subnet_are_refused(tmp_path):
    async def body(server, fakes):
        await server.add_network("net1", ["127.0.0.1/32"])
        server.set_records("net1", CID1, ["web"], "10.89.0.2")
        assert addrs(await query(server, "net1", "web", source="127.0.0.1")) == {"10.89.0.2"}
        r = await query(server, "net1", "web", source="127.0.0.7")
        assert r.rcode() == dns.rcode.REFUSED and not r.answer
        r = await query(server, "net1", "example.test", source="127.0.0.7", tcp=True)
        assert r.rcode() == dns.rcode.REFUSED and fakes[0].queries == []
    run(with_server(tmp_path, body, modes=("ok",)))


def test_truncates_large_local_answers_over_udp(tmp_path):
    async def body(server, fakes):
        await server.add_network("net1", ["127.0.0.1"])
        for i in range(60):
            server.set_records("net1", f"{i:064x}", [f"c{i}", "svc"], f"10.89.{i // 200}.{i % 200 + 2}")
        r = await query(server, "net1", "svc")
        assert r.flags & dns.flags.TC and 0 < len(r.answer[0]) < 60
        r = await query(server, "net1", "svc", use_edns=0, payload=4096)
        assert not r.flags & dns.flags.TC and len(r.answer[0]) == 60
        r = await query(server, "net1", "svc", tcp=True)
        assert len(r.answer[0]) == 60
    run(with_server(tmp_path, body, modes=("ok",)))


def raw_udp(addr: tuple[str, int], data: bytes, timeout: float = 0.2) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(data, addr)
        try:
            return s.recv(4096)
        except TimeoutError:
            return None


def test_malformed_packets_never_break_the_server(tmp_path):
    async def body(server, fakes):
        await two_containers(server)
        ep = server.endpoints("net1")[0]
        good = dns.message.make_query("web", "A")
        bad_question = bytearray(good.to_wire())
        bad_question[12] = 60  # a label length running past the end
        header_only_two_questions = good.to_wire()[:4] + b"\x00\x02" + good.to_wire()[6:]
        notify = dns.message.make_query("web", "A")
        notify.set_opcode(dns.opcode.NOTIFY)
        response = dns.message.make_response(good).to_wire()
        cases = [
            (b"", None), (b"\x01", None), (b"\x12\x34" + b"\x00" * 5, None),   # shorter than a header
            (response, None),                                                      # QR set: dropped
            (bytes(bad_question), dns.rcode.FORMERR),
            (header_only_two_questions, dns.rcode.FORMERR),
            (b"\xab\xcd\x01\x00" + b"\xff" * 60, dns.rcode.FORMERR),
            (notify.to_wire(), dns.rcode.NOTIMP),
        ]
        for data, rcode in cases:
            reply = await asyncio.to_thread(raw_udp, ep, data)
            if rcode is None:
                assert reply is None, data
            else:
                assert reply is not None and reply[:2] == data[:2] and reply[2] & 0x80, data
                assert reply[3] & 0xF == rcode, data
        # TCP: a garbage message gets FORMERR, a truncated frame just closes the connection.
        reader, writer = await asyncio.open_connection(*ep)
        writer.write(b"\x00\x0e" + b"\xab\xcd\x01\x00" + b"\xff" * 10)
        n = int.from_bytes(await reader.readexactly(2), "big")
        assert (await reader.readexactly(n))[3] & 0xF == dns.rcode.FORMERR
        writer.write(b"\x00\x40abc")
        writer.write_eof()
        assert await reader.read() == b""
        writer.close()
        # Still serving.
        assert addrs(await query(server, "net1", "web")) == {"10.89.0.2"}
        assert addrs(await query(server, "net1", "web", tcp=True)) == {"10.89.0.2"}
    run(with_server(tmp_path, body, modes=("ok",)))


def test_network_lifecycle_and_contract(tmp_path):
    async def body(server, fakes):
        await two_containers(server)
        ep = server.endpoints("net1")
        await server.add_network("net1", ["127.0.0.1/8"], name="mynet")  # same: no-op
        assert server.endpoints("net1") == ep
        with pytest.raises(Conflict):
            await server.add_network("net2", ["127.0.0.1"])
        with pytest.raises(InvalidArgument):
            await server.add_network("net2", ["not-an-ip"])
        with pytest.raises(InvalidArgument):
            await server.add_network("net2", [])
        with pytest.raises(NotFound):
            server.set_records("net2", CID1, ["x"], "10.0.0.1")
        with pytest.raises(InvalidArgument):
            server.set_records("net1", CID3, ["bad name" * 20], "10.0.0.1")
        with pytest.raises(InvalidArgument):
            server.set_records("net1", CID3, [], "10.0.0.1")
        with pytest.raises(InvalidArgument):
            server.set_records("net1", CID3, ["x"], "fd00::9")
        with pytest.raises(InvalidArgument):
            server.set_records("net1", CID3, ["x"], "10.0.0.9", upstreams=["dns.example"])
        with pytest.raises(Conflict):
            server.set_records("net1", CID3, ["x"], "10.89.0.2")
        assert addrs(await query(server, "net1", "web")) == {"10.89.0.2"}  # nothing was lost
        # Moving the network to another address: the new one serves, the old one is released.
        await server.add_network("net1", ["127.0.0.6"], name="mynet")
        assert server.endpoints("net1")[0][0] == "127.0.0.6"
        assert addrs(await query(server, "net1", "web")) == {"10.89.0.2"}
        with pytest.raises(dns.exception.Timeout):
            await dns.asyncquery.udp(dns.message.make_query("web", "A"), ep[0][0], port=ep[0][1], timeout=0.3)
        await server.remove_network("net1")
        await server.remove_network("net1")
        with pytest.raises(NotFound):
            server.endpoints("net1")
        await server.add_network("net2", ["127.0.0.1"])  # the address is free again
    run(with_server(tmp_path, body, modes=("ok",)))


def test_bind_failures_are_clear_errors(tmp_path):
    async def body():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
            holder.bind(("127.0.0.1", 0))
            port = holder.getsockname()[1]
            server = DnsServer(port=port, resolv_conf=write_resolv(tmp_path))
            await server.start()
            with pytest.raises(Unavailable, match=r"127\.0\.0\.1:\d+/udp: the address is in use"):
                await server.add_network("net1", ["127.0.0.1"])
            # 192.0.2.1 (TEST-NET-1) is not on this host; bind fails before any packet is sent.
            with pytest.raises(InvalidArgument, match="not an address of this host"):
                await server.add_network("net1", ["192.0.2.1"])
            with pytest.raises(NotFound):
                server.endpoints("net1")
            await server.close()
            await server.close()
            with pytest.raises(Unavailable):
                await server.add_network("net1", ["127.0.0.1"])
    run(body())


def test_upstream_pointing_at_itself_is_skipped(tmp_path):
    async def body():
        server = DnsServer(port=0, resolv_conf=write_resolv(tmp_path, "127.0.0.1"), upstream_port=0,
                           fallback_upstreams=(), forward_timeout=0.5)
        await server.start()
        try:
            await server.add_network("net1", ["127.0.0.1"])
            r = await query(server, "net1", "example.test")
            assert r.rcode() == dns.rcode.SERVFAIL
        finally:
            await server.close()
    run(body())


def test_ipv6_loopback_listener(tmp_path):
    if not socket.has_ipv6:
        pytest.skip("no IPv6 support in this Python")
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError as exc:
        pytest.skip(f"::1 is not usable here: {exc}")

    async def body(server, fakes):
        await server.add_network("net6", ["::1/128"])
        server.set_records("net6", CID1, ["web"], None, "fd00::2")
        assert addrs(await query(server, "net6", "web", "AAAA")) == {"fd00::2"}
        assert addrs(await query(server, "net6", "web", "AAAA", tcp=True)) == {"fd00::2"}
        assert ipaddress.ip_address(server.endpoints("net6")[0][0]).version == 6
    run(with_server(tmp_path, body, modes=("ok",)))


def test_domain_apex_names_and_records_from_other_threads(tmp_path):
    async def body(server, fakes):
        await server.add_network("net1", ["127.0.0.1"], domain="dns.pallet")
        r = await query(server, "net1", "dns.pallet", "SOA")
        assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA and not r.answer
        for bad in ("has space", "back\\slash", "a..b", "x" * 64):
            with pytest.raises(InvalidArgument):
                server.set_records("net1", CID1, [bad], "10.89.0.2")
        # The engine calls set_records from worker threads while the loop answers queries.
        await asyncio.to_thread(server.set_records, "net1", CID1, ["web"], "10.89.0.2")
        assert addrs(await query(server, "net1", "web.dns.pallet")) == {"10.89.0.2"}
        await asyncio.to_thread(server.remove_records, "net1", CID1)
        r = await query(server, "net1", "web.dns.pallet")
        assert r.rcode() == dns.rcode.NXDOMAIN and fakes[0].queries == []
    run(with_server(tmp_path, body, modes=("ok",)))


def test_too_many_forwarded_queries_get_servfail_at_once(tmp_path):
    async def body(server, fakes):
        await server.add_network("net1", ["127.0.0.1"])
        slow = asyncio.ensure_future(query(server, "net1", "example.test"))
        await asyncio.sleep(0.1)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        r = await query(server, "net1", "example.test", tcp=True)
        assert r.rcode() == dns.rcode.SERVFAIL and loop.time() - t0 < 0.3
        assert (await slow).rcode() == dns.rcode.SERVFAIL and len(fakes[0].queries) == 1
    run(with_server(tmp_path, body, modes=("silent",), max_inflight=1))
