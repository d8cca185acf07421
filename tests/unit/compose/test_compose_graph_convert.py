"""Dependency order and cycles; names, labels, the config hash and the create bodies."""

from __future__ import annotations

import textwrap

import pytest

from pallet.compose import convert, graph
from pallet.compose.loader import Options, load
from pallet.errors import InvalidArgument


def svc(*deps: str) -> dict:
    return {"image": "x", "depends_on": {d: {"condition": "service_started"} for d in deps}}


def test_start_and_stop_order():
    services = {"web": svc("api", "cache"), "api": svc("db"), "cache": svc(), "db": svc(), "tool": svc()}
    order = graph.start_order(services)
    assert order.index("db") < order.index("api") < order.index("web")
    assert order.index("cache") < order.index("web")
    assert graph.stop_order(services) == list(reversed(order))
    assert graph.start_order(services, ["api"]) == ["api", "db"][::-1]
    assert graph.closure(services, ["web"]) == {"web", "api", "cache", "db"}
    assert graph.dependents(services, ["db"]) == {"db", "api", "web"}


@pytest.mark.parametrize(("services", "cycle"), [
    ({"a": svc("a")}, "a -> a"),
    ({"a": svc("b"), "b": svc("a")}, "a -> b -> a"),
    ({"x": svc(), "a": svc("b"), "b": svc("c"), "c": svc("b")}, "b -> c -> b"),
])
def test_cycles_are_named(services, cycle):
    with pytest.raises(InvalidArgument, match=f"dependency cycle: {cycle}$"):
        graph.check_cycles(services)
    with pytest.raises(InvalidArgument, match="dependency cycle"):
        graph.start_order(services)


def _project(tmp_path, text, name="shop"):
    f = tmp_path / "compose.yaml"
    f.write_text(textwrap.dedent(text))
    return load(Options(files=(str(f),), project_name=name, environ={}, workdir=str(tmp_path)))


APP = """
    services:
      web:
        image: busybox
        command: httpd -f -p 80
        ports: ["127.0.0.1:8080:80", "9000:9000/udp"]
        expose: [81, "82/udp"]
        volumes: ["data:/data:ro", "./www:/www", "/anon", {type: tmpfs, target: /t, tmpfs: {size: 1m}}]
        environment: {A: "1", UNSET: null}
        labels: {own: label}
        networks: {front: {aliases: [www], ipv4_address: 10.5.0.5}, back: {priority: 10}}
        healthcheck: {test: wget -q localhost, interval: 1m30s, timeout: 500ms, retries: 2, start_period: 2s}
        restart: on-failure:3
        deploy: {resources: {limits: {cpus: "1.5", memory: 64m, pids: 50}}, replicas: 2}
        user: "1000:1000"
        working_dir: /www
        hostname: web
        init: true
        stop_signal: SIGINT
        stop_grace_period: 1m
        cap_add: [NET_ADMIN]
        cap_drop: [ALL]
        read_only: true
        tmpfs: ["/run:size=1m"]
        ulimits: {nofile: {soft: 100, hard: 200}}
        sysctls: {net.core.somaxconn: 1024}
        devices: ["/dev/null:/dev/mynull:r"]
        extra_hosts: {db: 10.0.0.2}
        dns: [10.0.0.53]
      api:
        build: ./api
        depends_on: {web: {condition: service_healthy}}
    networks:
      front: {labels: {tier: front}}
      back: {name: shared-back}
    volumes:
      data: {external: true, name: precious}
"""


def test_names(tmp_path):
    p = _project(tmp_path, APP)
    assert convert.container_name("shop", "web", p.services["web"], 2) == "shop-web-2"
    assert convert.container_name("shop", "x", {"container_name": "fixed"}, 1) == "fixed"
    assert convert.image_name("shop", "api", p.services["api"]) == "shop-api"
    assert convert.image_name("shop", "web", p.services["web"]) == "busybox"
    assert convert.network_name("shop", "front", p.networks["front"]) == "shop_front"
    assert convert.network_name("shop", "back", p.networks["back"]) == "shared-back"
    assert convert.network_name("shop", "ext", {"external": True}) == "ext"
    assert convert.volume_name("shop", "data", p.volumes["data"]) == "precious"
    assert convert.volume_name("shop", "cache", {}) == "shop_cache"
    assert convert.scale_of(p.services["web"]) == 2
    body = convert.network_body("shop", "front", p.networks["front"])
    assert body["Name"] == "shop_front" and body["Driver"] == "bridge"
    assert body["Labels"] == {"tier": "front", "com.docker.compose.project": "shop",
                              "com.docker.compose.network": "front",
                              "com.docker.compose.version": convert.VERSION}
    vol = convert.volume_body("shop", "cache", {})
    assert vol["Name"] == "shop_cache" and vol["Labels"]["com.docker.compose.volume"] == "cache"


def test_config_hash_is_stable_and_ignores_build_and_scale(tmp_path):
    p1 = _project(tmp_path, APP)
    p2 = _project(tmp_path, APP)
    h = convert.config_hash(p1.services["web"])
    assert len(h) == 64 and h == convert.config_hash(p2.services["web"])
    web = dict(p1.services["web"])
    reordered = dict(reversed(list(web.items())))
    assert convert.config_hash(reordered) == h  # key order does not matter
    assert convert.config_hash({**web, "scale": 5}) == h
    assert convert.config_hash({**web, "deploy": {**web["deploy"], "replicas": 7}}) == h
    assert convert.config_hash({**web, "build": {"context": "/else"}}) == h
    assert convert.config_hash({**web, "command": ["httpd"]}) != h
    assert convert.config_hash({**web, "environment": {"A": "2"}}) != h
    # sha256 of the compact, key-sorted JSON: the same on every machine and Python version.
    import hashlib

    assert convert.config_hash({"image": "busybox", "command": ["a"]}) == hashlib.sha256(
        b'{"command":["a"],"image":"busybox"}').hexdigest()


def test_create_body(tmp_path):
    p = _project(tmp_path, APP)
    body = convert.create_body(p, "web", p.services["web"], 1, "shop-web-1")
    labels = body["Labels"]
    assert labels["own"] == "label"
    assert {k: labels[k] for k in labels if k.startswith("com.docker.compose.") and k not in (
        "com.docker.compose.config-hash", "com.docker.compose.version")} == {
        "com.docker.compose.project": "shop", "com.docker.compose.service": "web",
        "com.docker.compose.container-number": "1", "com.docker.compose.oneoff": "False",
        "com.docker.compose.project.working_dir": str(tmp_path),
        "com.docker.compose.project.config_files": str(tmp_path / "compose.yaml"),
        "com.docker.compose.depends_on": ""}
    assert labels["com.docker.compose.config-hash"] == convert.config_hash(p.services["web"])
    assert body["Image"] == "busybox" and body["Cmd"] == ["httpd", "-f", "-p", "80"]
    assert body["Env"] == ["A=1"]
    assert body["ExposedPorts"] == {"80/tcp": {}, "9000/udp": {}, "81/tcp": {}, "82/udp": {}}
    assert body["User"] == "1000:1000" and body["WorkingDir"] == "/www" and body["Hostname"] == "web"
    assert body["StopSignal"] == "SIGINT" and body["StopTimeout"] == 60
    assert body["Healthcheck"] == {"Test": ["CMD-SHELL", "wget -q localhost"], "Interval": 90_000_000_000,
                                   "Timeout": 500_000_000, "StartPeriod": 2_000_000_000, "Retries": 2}
    hc = body["HostConfig"]
    assert hc["PortBindings"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}],
                                  "9000/udp": [{"HostIp": "", "HostPort": "9000"}]}
    assert hc["Binds"] == [f"{tmp_path}/www:/www:rw"]
    assert hc["Mounts"] == [
        {"Type": "volume", "Target": "/data", "ReadOnly": True, "Source": "precious"},
        {"Type": "volume", "Target": "/anon", "ReadOnly": False},
        {"Type": "tmpfs", "Target": "/t", "ReadOnly": False, "TmpfsOptions": {"SizeBytes": 1 << 20}}]
    assert hc["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert (hc["NanoCpus"], hc["Memory"], hc["PidsLimit"]) == (1_500_000_000, 64 << 20, 50)
    assert hc["Init"] is True and hc["ReadonlyRootfs"] is True
    assert hc["CapAdd"] == ["NET_ADMIN"] and hc["CapDrop"] == ["ALL"]
    assert hc["Tmpfs"] == {"/run": "size=1m"}
    assert hc["Ulimits"] == [{"Name": "nofile", "Soft": 100, "Hard": 200}]
    assert hc["Sysctls"] == {"net.core.somaxconn": "1024"}
    assert hc["Devices"] == [{"PathOnHost": "/dev/null", "PathInContainer": "/dev/mynull",
                              "CgroupPermissions": "r"}]
    assert hc["ExtraHosts"] == ["db:10.0.0.2"] and hc["Dns"] == ["10.0.0.53"]
    # back has priority 10: it is the network the container is created on.
    assert hc["NetworkMode"] == "shared-back"
    assert body["NetworkingConfig"] == {"EndpointsConfig": {
        "shared-back": {"Aliases": ["web", "shop-web-1"]}}}
    front = convert.endpoint_config(p, "web", p.services["web"], "front", "shop-web-1")
    assert front == {"Aliases": ["web", "shop-web-1", "www"], "IPAMConfig": {"IPv4Address": "10.5.0.5"}}


def test_oneoff_body(tmp_path):
    p = _project(tmp_path, APP)
    body = convert.create_body(p, "web", p.services["web"], 1, "shop-web-run-abc", oneoff=True,
                               command=["sh"], env={"B": "2"}, tty=True, stdin_open=True, publish=False)
    assert body["Labels"]["com.docker.compose.oneoff"] == "True"
    assert body["Cmd"] == ["sh"] and body["Env"] == ["A=1", "B=2"]
    assert body["Tty"] and body["OpenStdin"] and body["AttachStdin"] and body["StdinOnce"]
    assert "PortBindings" not in body["HostConfig"]
    api = convert.create_body(p, "api", p.services["api"], 1, "shop-api-1")
    assert api["Image"] == "shop-api"
    assert api["Labels"]["com.docker.compose.depends_on"] == "web:service_healthy:false"
    assert api["HostConfig"]["NetworkMode"] == "shop_default"


def test_recreated_container_keeps_its_anonymous_volumes(tmp_path):
    p = _project(tmp_path, APP)
    body = convert.create_body(p, "web", p.services["web"], 1, "shop-web-1",
                               anonymous={"/anon": "a1", "/from-image": "a2", "/data": "a3", "/www": "a4"})
    mounts = {m["Target"]: m.get("Source") for m in body["HostConfig"]["Mounts"]}
    assert mounts["/anon"] == "a1"  # the file's anonymous volume, same volume again
    assert mounts["/from-image"] == "a2"  # an image VOLUME the file does not mention
    assert mounts["/data"] == "precious"  # a named volume stays itself
    assert "/www" not in mounts  # a bind stays a bind
