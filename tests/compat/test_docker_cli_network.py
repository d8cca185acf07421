"""The real docker CLI against palletd's /networks routes and bridge networking: `docker network
create/ls/inspect/connect/disconnect/rm`, `docker run --network` with name resolution between
containers, `-p` and `docker port`. Same safety as test_docker_cli_containers (its `sock` fixture:
private roots, --cgroup-parent /pallet-test-<random>, cleaned afterwards); traffic goes only to
containers and 127.0.0.1; the networks made here are removed by each test."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

from test_docker_cli_containers import docker, pytestmark  # noqa: F401 - the marks apply here too
from test_docker_cli_containers import sock as _sock

sock = _sock  # the module-scoped palletd fixture, one daemon for this module

HTTPD = ["sh", "-c", "echo hi-from-$(hostname) > /tmp/index.html; exec httpd -f -p 80 -h /tmp"]


def _get(port: int, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                data = b""
                while chunk := s.recv(4096):
                    data += chunk
            return data.decode(errors="replace")
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_docker_network_lifecycle_and_name_resolution(sock: Path):
    r = docker(sock, "network", "create", "--label", "by=cli", "pt-cli")
    assert r.returncode == 0 and len(r.stdout.strip()) == 64, r.stderr
    try:
        ls = docker(sock, "network", "ls", "--format", "{{.Name}} {{.Driver}}").stdout.split("\n")
        assert {"bridge bridge", "host host", "none null", "pt-cli bridge"} <= set(ls)
        info = json.loads(docker(sock, "network", "inspect", "pt-cli").stdout)[0]
        assert info["Driver"] == "bridge" and info["Labels"] == {"by": "cli"} and info["Scope"] == "local"
        subnet = info["IPAM"]["Config"][0]["Subnet"]
        r = docker(sock, "network", "create", "--subnet", subnet, "pt-clash")
        assert r.returncode != 0 and "overlaps" in r.stderr
        r = docker(sock, "run", "-d", "--name", "web", "--network", "pt-cli", "--network-alias", "www",
                   "busybox", *HTTPD)
        assert r.returncode == 0, r.stderr
        web = r.stdout.strip()
        for name in ("web", "www"):
            r = docker(sock, "run", "--rm", "--network", "pt-cli", "busybox", "sh", "-c",
                       f"for i in 1 2 3 4 5 6 7 8 9 10; do wget -q -O- http://{name}/ && exit 0; "
                       "sleep 0.2; done; exit 1")
            assert r.returncode == 0 and f"hi-from-{web[:12]}" in r.stdout, r.stderr
        c = json.loads(docker(sock, "inspect", "web").stdout)[0]
        net = c["NetworkSettings"]["Networks"]["pt-cli"]
        assert net["NetworkID"] == info["Id"] and net["IPAddress"] and net["Aliases"] == ["www"]
        assert c["HostConfig"]["NetworkMode"] == "pt-cli"
        members = json.loads(docker(sock, "network", "inspect", "pt-cli").stdout)[0]["Containers"]
        assert members[web]["Name"] == "web"
        assert members[web]["IPv4Address"].startswith(net["IPAddress"] + "/")
        r = docker(sock, "network", "rm", "pt-cli")
        assert r.returncode != 0 and "active endpoints" in r.stderr
        # connect and disconnect a running container on the default bridge
        r = docker(sock, "run", "-d", "--name", "side", "busybox", "sleep", "300")
        assert r.returncode == 0, r.stderr
        assert docker(sock, "network", "connect", "pt-cli", "side").returncode == 0
        r = docker(sock, "exec", "side", "sh", "-c", "wget -q -O- http://web/ || exit 1")
        assert r.returncode == 0 and "hi-from" in r.stdout, r.stderr
        assert set(json.loads(docker(sock, "inspect", "side").stdout)[0]["NetworkSettings"]["Networks"]) \
            == {"bridge", "pt-cli"}
        assert docker(sock, "network", "disconnect", "pt-cli", "side").returncode == 0
        assert set(json.loads(docker(sock, "inspect", "side").stdout)[0]["NetworkSettings"]["Networks"]) \
            == {"bridge"}
    finally:
        docker(sock, "rm", "-f", "web", "side")
        r = docker(sock, "network", "rm", "pt-cli")
    assert (r.returncode, r.stdout) == (0, "pt-cli\n"), r.stderr
    r = docker(sock, "network", "inspect", "pt-cli")
    assert r.returncode != 0 and "not found" in r.stderr


def test_docker_run_publish_and_port(sock: Path):
    r = docker(sock, "run", "-d", "--name", "pub", "-p", "127.0.0.1::80", "busybox", *HTTPD)
    assert r.returncode == 0, r.stderr
    try:
        out = docker(sock, "port", "pub", "80").stdout.strip()
        assert out.startswith("127.0.0.1:"), out
        port = int(out.rpartition(":")[2])
        assert "hi-from-" in _get(port)
        ps = docker(sock, "ps", "--filter", "name=pub", "--format", "{{.Ports}}").stdout.strip()
        assert ps == f"127.0.0.1:{port}->80/tcp"
        r = docker(sock, "run", "-d", "--name", "pub2", "-p", f"127.0.0.1:{port}:80", "busybox", *HTTPD)
        assert r.returncode != 0 and "already allocated" in r.stderr
    finally:
        docker(sock, "rm", "-f", "pub", "pub2")


def test_docker_run_ipv6_port_mac_address_and_link(sock: Path):
    from pallet.network.ports import host_has_ipv6

    v6 = host_has_ipv6()
    r = docker(sock, "run", "-d", "--name", "lweb", "-e", "FOO=bar", "--expose", "80",
               *(["-p", "[::1]::80"] if v6 else []), "busybox", *HTTPD)
    assert r.returncode == 0, r.stderr
    try:
        if v6:  # [::1] is served by palletd's userland proxy
            out = docker(sock, "port", "lweb", "80").stdout.strip()
            assert out.startswith("[::1]:"), out
            port = int(out.rpartition(":")[2])
            with socket.create_connection(("::1", port), timeout=5) as s:
                s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                assert b"hi-from-" in s.recv(4096) + s.recv(4096)
        r = docker(sock, "run", "--rm", "--link", "lweb:w", "--mac-address", "02:aa:bb:cc:dd:02", "busybox",
                   "sh", "-c", "cat /sys/class/net/eth0/address; echo $W_ENV_FOO $W_PORT; "
                   "for i in 1 2 3 4 5; do wget -q -O- http://w/ && exit 0; sleep 0.2; done; exit 1")
        assert r.returncode == 0, r.stderr
        ip = json.loads(docker(sock, "inspect", "lweb").stdout)[0]["NetworkSettings"]["IPAddress"]
        assert r.stdout.startswith(f"02:aa:bb:cc:dd:02\nbar tcp://{ip}:80\nhi-from-"), r.stdout
    finally:
        docker(sock, "rm", "-f", "lweb")
