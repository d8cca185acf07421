"""The nftables ruleset as a pure function of networks and published ports."""

from __future__ import annotations

from pallet.network.firewall import FwNetwork, FwPort, IptablesForward, render


def test_empty_state_deletes_the_table():
    assert render("pallet_t", [], []) == "table inet pallet_t {}\ndelete table inet pallet_t\n"


def test_bridge_network_rules_tagged():
    out = render("pallet", [FwNetwork("a" * 64, "pl-a", ("172.18.0.0/16",))], [])
    lines = [ln.strip() for ln in out.splitlines()]
    tag = 'comment "pallet:network:aaaaaaaaaaaa"'
    assert lines[:2] == ["table inet pallet {}", "delete table inet pallet"]
    assert f'oifname "pl-a" iifname != "pl-a" ct state established,related accept {tag}' in lines
    assert f'oifname "pl-a" iifname != "pl-a" ct status dnat accept {tag}' in lines
    assert f'oifname "pl-a" iifname != "pl-a" drop {tag}' in lines
    assert f'ip saddr 172.18.0.0/16 oifname != "pl-a" masquerade {tag}' in lines
    assert f'oifname "pl-a" ip saddr 127.0.0.0/8 masquerade {tag}' in lines
    assert f'oifname "pl-a" ip saddr 172.18.0.0/16 ct status dnat masquerade {tag}' in lines
    # every rule in the chains carries a tag
    body = [ln for ln in lines if ln and not ln.startswith(("table", "delete", "chain", "type", "}"))
            and "jump published" not in ln]
    assert body and all("comment" in ln for ln in body)


def test_internal_network_has_no_way_out_and_no_nat():
    out = render("pallet", [FwNetwork("b" * 64, "pl-b", ("10.9.0.0/24",), internal=True)], [])
    assert 'iifname "pl-b" oifname != "pl-b" drop' in out
    assert "masquerade" not in out
    assert "ct status dnat accept" not in out


def test_masquerade_off_option():
    out = render("pallet", [FwNetwork("c" * 64, "pl-c", ("10.9.0.0/24",), masquerade=False)], [])
    assert 'ip saddr 10.9.0.0/24 oifname != "pl-c" masquerade' not in out


def test_published_ports():
    out = render("pallet", [FwNetwork("a" * 64, "pl-a", ("172.18.0.0/16",))],
                 [FwPort("d" * 64, "tcp", "127.0.0.1", 8080, "172.18.0.2", 80),
                  FwPort("d" * 64, "udp", "", 5353, "172.18.0.2", 53)])
    assert ('ip daddr 127.0.0.1 tcp dport 8080 dnat ip to 172.18.0.2:80 '
            'comment "pallet:container:dddddddddddd"') in out
    assert "meta nfproto ipv4 udp dport 5353 dnat ip to 172.18.0.2:53" in out
    assert out.count("fib daddr type local jump published") == 2  # prerouting and output


def test_iptables_forward_rules_per_bridge():
    rules = IptablesForward.wanted("pallet:pallet", ["pl-b", "pl-a", "pl-a"])
    assert rules == [
        ["-i", "pl-a", "-m", "comment", "--comment", "pallet:pallet", "-j", "ACCEPT"],
        ["-o", "pl-a", "-m", "comment", "--comment", "pallet:pallet", "-j", "ACCEPT"],
        ["-i", "pl-b", "-m", "comment", "--comment", "pallet:pallet", "-j", "ACCEPT"],
        ["-o", "pl-b", "-m", "comment", "--comment", "pallet:pallet", "-j", "ACCEPT"],
    ]


def test_owner_comment():
    out = render("pallet_x", [FwNetwork("a" * 64, "pl-a", ("10.0.0.0/24",))], [], owner="/var/lib/pallet")
    assert out.splitlines()[3] == '  comment "pallet data-root=/var/lib/pallet"'
