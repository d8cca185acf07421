"""/etc/hosts, /etc/resolv.conf and /etc/hostname contents, and the docker CLI's validators."""

from __future__ import annotations

import pytest

from pallet.errors import InvalidArgument
from pallet.network import etcfiles as E

HOST_RESOLV = """# managed by someone
nameserver 127.0.0.53
nameserver 10.0.0.2
nameserver fd00::53
; another comment
domain corp.example
search corp.example lab.example
options edns0
options trust-ad
sortlist 130.155.160.0/255.255.240.0
nameserver bogus
"""

IPV6_BLOCK = ("::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\n"
              "ff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")


def body(text: str) -> list[str]:
    """The directive lines of a generated resolv.conf (comments and blanks dropped)."""
    return [line for line in text.splitlines() if line and not line.startswith("#")]


# --- validators ---------------------------------------------------------------------------------

@pytest.mark.parametrize("value,expected", [
    ("db:10.0.0.5", ("db", "10.0.0.5")),
    ("db=10.0.0.5", ("db", "10.0.0.5")),
    ("v6:::1", ("v6", "::1")),
    ("v6=::1", ("v6", "::1")),
    ("v6:[fd00::1]", ("v6", "fd00::1")),
    ("v4:[10.0.0.1]", ("v4", "10.0.0.1")),
    ("v6:0:0:0:0:0:0:0:1", ("v6", "0:0:0:0:0:0:0:1")),  # the user's spelling is kept
    ("gw:host-gateway", ("gw", "host-gateway")),
    ("a.b-c:1.2.3.4", ("a.b-c", "1.2.3.4")),
])
def test_parse_extra_host(value, expected):
    assert E.parse_extra_host(value) == expected
    assert E.normalize_extra_host(value) == ":".join(expected)


@pytest.mark.parametrize("value,message", [
    ("nocolon", "bad format for add-host: 'nocolon'"),
    (":1.2.3.4", "bad format for add-host: ':1.2.3.4'"),
    ("=1.2.3.4", "bad format for add-host: '=1.2.3.4'"),
    ("a:b=1.2.3.4", "bad format for add-host: 'a:b=1.2.3.4'"),
    ("db:", "invalid IP address in add-host: ''"),
    ("db:10.0.0.300", "invalid IP address in add-host: '10.0.0.300'"),
    ("db:[]", "invalid IP address in add-host: '[]'"),
    ("db:hostgateway", "invalid IP address in add-host: 'hostgateway'"),
])
def test_bad_extra_host(value, message):
    with pytest.raises(InvalidArgument) as exc:
        E.parse_extra_host(value)
    assert str(exc.value) == message


def test_dns_validators():
    assert E.validate_dns_server(" 10.0.0.1 ") == "10.0.0.1"
    assert E.validate_dns_server("0:0::1") == "::1"
    with pytest.raises(InvalidArgument, match=r"^dns\.example is not an ip address$"):
        E.validate_dns_server("dns.example")
    assert E.validate_dns_search("example.com") == "example.com"
    assert E.validate_dns_search("example.com.") == "example.com"
    assert E.validate_dns_search(".") == "."
    for bad in ("-bad.com", "123", "a..b", "exa mple.com", "a" * 256 + ".com"):
        with pytest.raises(InvalidArgument, match=r"is not a valid domain$"):
            E.validate_dns_search(bad)
    assert E.validate_dns_option("ndots:2") == "ndots:2"
    with pytest.raises(InvalidArgument):
        E.validate_dns_option("ndots:2 debug")


# --- hostname and hosts -------------------------------------------------------------------------

def test_hostname_file():
    assert E.hostname_file("a1b2c3d4e5f6") == "a1b2c3d4e5f6\n"
    with pytest.raises(InvalidArgument):
        E.hostname_file("")


def test_hosts_file_like_docker():
    text = E.hosts_file("a1b2c3d4e5f6", ["172.18.0.2"], extra_hosts=["db:10.0.0.5", "v6:[fd00::1]"])
    assert text == ("127.0.0.1\tlocalhost\n" + IPV6_BLOCK + "10.0.0.5\tdb\nfd00::1\tv6\n"
                    "172.18.0.2\ta1b2c3d4e5f6\n")


def test_hosts_file_fqdn_aliases_ipv6_off_and_no_network():
    text = E.hosts_file("web", ["172.18.0.2", "fd00::2"], domainname="corp.example", aliases=["app", "web"],
                        ipv6=False)
    assert text == ("127.0.0.1\tlocalhost\n172.18.0.2\tweb.corp.example web app\n"
                    "fd00::2\tweb.corp.example web app\n")
    assert E.hosts_file("box.lan", []) == "127.0.0.1\tlocalhost\n" + IPV6_BLOCK  # --network none
    assert E.hosts_file("box.lan", ["10.0.0.2"], ipv6=False).endswith("10.0.0.2\tbox.lan box\n")
    with pytest.raises(InvalidArgument):
        E.hosts_file("web", ["not-an-ip"])


def test_host_gateway():
    text = E.hosts_file("web", ["172.18.0.2"], extra_hosts=["host.docker.internal:host-gateway"],
                        host_gateway=["172.17.0.1", "fd00::1"], ipv6=False)
    assert "172.17.0.1\thost.docker.internal\nfd00::1\thost.docker.internal\n" in text
    with pytest.raises(InvalidArgument, match="unable to derive the IP value for host-gateway"):
        E.hosts_file("web", [], extra_hosts=["h:host-gateway"])


def test_host_network_hosts_file():
    host = "127.0.0.1 localhost\n10.1.1.1 myhost"
    assert E.host_network_hosts_file(host) == host + "\n"
    assert E.host_network_hosts_file(host, extra_hosts=["db=10.0.0.5"]) == host + "\n10.0.0.5\tdb\n"


# --- resolv.conf --------------------------------------------------------------------------------

def test_parse_resolv_conf():
    rc = E.parse_resolv_conf(HOST_RESOLV)
    assert rc.nameservers == ("127.0.0.53", "10.0.0.2", "fd00::53")
    assert rc.search == ("corp.example", "lab.example")
    assert rc.options == ("edns0", "trust-ad")
    assert rc.other == ("sortlist 130.155.160.0/255.255.240.0",)
    assert rc.invalid_nameservers == ("bogus",)


def test_internal_resolver_mode():
    rc = E.resolv_conf(HOST_RESOLV, mode="internal", internal_nameservers=["172.18.0.1"])
    assert body(rc.content) == ["nameserver 172.18.0.1", "search corp.example lab.example",
                                "options edns0 trust-ad ndots:0", "sortlist 130.155.160.0/255.255.240.0"]
    assert rc.content.startswith("# Generated by Pallet.\n")
    assert "# ExtServers: [host(127.0.0.53) 10.0.0.2 fd00::53]" in rc.content
    assert "# Option ndots from: internal" in rc.content
    assert rc.upstreams == () and rc.nameservers == ("172.18.0.1",)


def test_internal_resolver_with_overrides():
    rc = E.resolv_conf(HOST_RESOLV, mode="internal", internal_nameservers=["172.18.0.1", "fd00:18::1"],
                       dns=["9.9.9.9", "127.0.0.1"], dns_search=["."], dns_options=["ndots:3", "rotate"])
    assert body(rc.content) == ["nameserver 172.18.0.1", "nameserver fd00:18::1", "options ndots:3 rotate",
                                "sortlist 130.155.160.0/255.255.240.0"]
    # --dns servers go to the embedded server for this container; none is marked host loopback.
    assert rc.upstreams == ("9.9.9.9", "127.0.0.1")
    assert "# ExtServers: [9.9.9.9 127.0.0.1]" in rc.content
    assert "# Overrides: [nameservers search options]" in rc.content
    assert "# Option ndots from: override" in rc.content
    # An invalid ndots from the host is dropped and replaced by ndots:0.
    rc = E.resolv_conf("nameserver 10.0.0.2\noptions ndots:x\n", mode="internal",
                       internal_nameservers=["172.18.0.1"])
    assert body(rc.content)[-1] == "options ndots:0"
    with pytest.raises(InvalidArgument):
        E.resolv_conf(HOST_RESOLV, mode="internal")


def test_legacy_bridge_mode_filters_loopback_and_ipv6():
    rc = E.resolv_conf(HOST_RESOLV, mode="legacy")
    assert rc.nameservers == ("10.0.0.2",)
    assert body(rc.content)[:3] == ["nameserver 10.0.0.2", "search corp.example lab.example",
                                    "options edns0 trust-ad"]
    assert E.resolv_conf(HOST_RESOLV, mode="legacy", ipv6=True).nameservers == ("10.0.0.2", "fd00::53")
    # --dns is taken as given, loopback included (Docker does not filter overrides).
    assert E.resolv_conf(HOST_RESOLV, mode="legacy", dns=["127.0.0.1"]).nameservers == ("127.0.0.1",)
    assert E.resolv_conf(HOST_RESOLV, mode="legacy", dns_search=["a.example"]).search == ("a.example",)


def test_legacy_mode_falls_back_to_dockers_defaults():
    # Only the file is written: no test sends a packet to these addresses.
    rc = E.resolv_conf("nameserver 127.0.0.53\n", mode="legacy")
    assert rc.nameservers == E.DEFAULT_IPV4_NAMESERVERS
    assert "# Used default nameservers." in rc.content
    rc = E.resolv_conf("", mode="legacy", ipv6=True)
    assert rc.nameservers == E.DEFAULT_IPV4_NAMESERVERS + E.DEFAULT_IPV6_NAMESERVERS


def test_host_mode():
    assert E.resolv_conf(HOST_RESOLV, mode="host").content == HOST_RESOLV
    rc = E.resolv_conf(HOST_RESOLV, mode="host", dns_search=["x.example"])
    assert rc.nameservers == ("127.0.0.53", "10.0.0.2", "fd00::53") and rc.search == ("x.example",)


def test_bad_overrides_are_refused():
    with pytest.raises(InvalidArgument, match=r"^8\.8\.8 is not an ip address$"):
        E.resolv_conf(HOST_RESOLV, mode="legacy", dns=["8.8.8"])
    with pytest.raises(InvalidArgument, match="is not a valid domain"):
        E.resolv_conf(HOST_RESOLV, mode="legacy", dns_search=["bad_domain!"])


def test_host_resolv_conf_path(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/resolv.conf").write_text("nameserver 127.0.0.53\noptions edns0\n")
    assert E.host_resolv_conf_path(tmp_path) == tmp_path / "etc/resolv.conf"
    (tmp_path / "run/systemd/resolve").mkdir(parents=True)
    (tmp_path / "run/systemd/resolve/resolv.conf").write_text("nameserver 10.0.0.2\n")
    assert E.host_resolv_conf_path(tmp_path) == tmp_path / "run/systemd/resolve/resolv.conf"
    (tmp_path / "etc/resolv.conf").write_text("nameserver 10.0.0.9\n")
    assert E.host_resolv_conf_path(tmp_path) == tmp_path / "etc/resolv.conf"
