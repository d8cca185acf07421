"""CLI request building for `pallet network create` and `run --network/--ip/-P/-p ranges`."""

from __future__ import annotations

import argparse

import pytest

from pallet.cli.commands import network, run
from pallet.errors import InvalidArgument


def ns(**kw) -> argparse.Namespace:
    base = {"name": "n", "driver": "bridge", "subnet": [], "gateway": [], "ip_range": [],
            "internal": False, "attachable": False, "ipv6": False, "opt": [], "label": [],
            "ipam_driver": "default", "ipam_opt": []}
    return argparse.Namespace(**{**base, **kw})


def test_network_create_body():
    body = network.create_body(ns(subnet=["10.1.0.0/16", "fd00:1::/64"], gateway=["10.1.0.254"],
                                  ip_range=["10.1.2.0/24"], internal=True, ipv6=True,
                                  label=["a=b"], opt=["com.docker.network.driver.mtu=1400"]))
    assert body["IPAM"]["Config"] == [
        {"Subnet": "10.1.0.0/16", "Gateway": "10.1.0.254", "IPRange": "10.1.2.0/24"},
        {"Subnet": "fd00:1::/64"}]
    assert body["Internal"] and body["EnableIPv6"] and body["Labels"] == {"a": "b"}
    assert body["Options"] == {"com.docker.network.driver.mtu": "1400"}
    with pytest.raises(InvalidArgument):
        network.create_body(ns(gateway=["10.0.0.1"]))


def test_run_network_flags():
    args = run.build_parser().parse_args(["--network", "app", "--network-alias", "db", "--ip", "10.1.0.9",
                                          "--dns-search", "example.org", "-P", "-p", "8000-8001:80-81",
                                          "busybox"])
    req = run.create_request(args)
    assert req["HostConfig"]["NetworkMode"] == "app"
    ep = {"Aliases": ["db"], "IPAMConfig": {"IPv4Address": "10.1.0.9"}}
    assert req["NetworkingConfig"] == {"EndpointsConfig": {"app": ep}}
    assert req["HostConfig"]["PublishAllPorts"] is True
    assert req["HostConfig"]["DnsSearch"] == ["example.org"]
    assert req["HostConfig"]["PortBindings"] == {"80/tcp": [{"HostIp": "", "HostPort": "8000"}],
                                                 "81/tcp": [{"HostIp": "", "HostPort": "8001"}]}


def test_run_mac_address_link_and_ipv6_publish_flags():
    args = run.build_parser().parse_args(["--mac-address", "02:aa:bb:cc:dd:ee", "--link", "web:w",
                                          "--link", "db", "-p", "[::1]:8080:80", "busybox"])
    req = run.create_request(args)
    assert req["MacAddress"] == "02:aa:bb:cc:dd:ee"  # API < 1.44 reads this one
    assert req["NetworkingConfig"] == {"EndpointsConfig": {"default": {"MacAddress": "02:aa:bb:cc:dd:ee"}}}
    assert req["HostConfig"]["Links"] == ["web:w", "db"]
    assert req["HostConfig"]["PortBindings"] == {"80/tcp": [{"HostIp": "::1", "HostPort": "8080"}]}


def test_ipv6_bindings_printed_as_docker(capsys):
    from pallet.cli.commands import port, ps

    assert ps.format_ports([{"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
                            {"IP": "::", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"}]) \
        == "0.0.0.0:8080->80/tcp, [::]:8080->80/tcp"

    class Ctx:
        def client(self):
            return self

        def get_json(self, path):
            return {"NetworkSettings": {"Ports": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"},
                                                             {"HostIp": "::", "HostPort": "8080"}]}}}

    assert port.main(Ctx(), ["web"]) == 0  # type: ignore[arg-type]
    assert capsys.readouterr().out == "80/tcp -> 0.0.0.0:8080\n80/tcp -> [::]:8080\n"
