"""The /networks routes in-process over a NetworkManager with recording fakes: Docker's shapes and
status codes (201, 204, 400, 403, 404, 409), filters, connect/disconnect bodies. No root."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from test_network_manager import FakeFirewall, FakeNetns, KernelishNetlink

from pallet.api.server import HostInfo, create_app
from pallet.api.server.backend import EngineBackend, ImageBackend
from pallet.errors import NotFound
from pallet.network.manager import NetworkManager

CID = "c" * 64


class FakeNetworking:
    """What the routes use of EngineNetworking; containers are known by the name "web"."""

    def __init__(self, manager: NetworkManager) -> None:
        self.manager = manager
        self.calls: list[tuple[str, Any]] = []

    def _cid(self, ref: str) -> str:
        if ref not in ("web", CID):
            raise NotFound(f"No such container: {ref}")
        return CID

    def connect(self, net: str, ref: str, ep: dict[str, Any]) -> None:
        self.calls.append(("connect", (net, ref, ep)))
        self.manager.connect(net, self._cid(ref), ep)

    def disconnect(self, net: str, ref: str, force: bool) -> None:
        self.calls.append(("disconnect", (net, ref, force)))
        self.manager.disconnect(net, self._cid(ref), force)

    def prune(self, filters: dict[str, list[str]]) -> list[str]:
        return self.manager.prune(filters)


class FakeEngine:
    def __init__(self, networking: FakeNetworking) -> None:
        self.networking = networking


@pytest.fixture
def net(tmp_path: Path) -> FakeNetworking:
    m = NetworkManager(str(tmp_path / "data"), str(tmp_path / "run"),
                       netlink=KernelishNetlink(tmp_path / "sys"), firewall=FakeFirewall(),  # type: ignore[arg-type]
                       netns=FakeNetns(), sysctl_root=str(tmp_path / "sys"), sys_root=str(tmp_path / "sys"))  # type: ignore[arg-type]
    m.configure(CID, "web", "default", {}, [])
    return FakeNetworking(m)


def call(tmp_path: Path, net: FakeNetworking, method: str, path: str, **kw: Any) -> tuple[int, Any]:
    app = create_app(HostInfo(), images=ImageBackend(str(tmp_path / "data")),
                     engine=EngineBackend(engine=FakeEngine(net)))

    async def go() -> tuple[int, Any]:
        async with TestClient(TestServer(app)) as client:
            r = await client.request(method, path, **kw)
            body = await r.read()
            import json

            return r.status, json.loads(body) if body.strip() else None

    return asyncio.run(go())


def test_create_list_inspect_delete(tmp_path, net):
    status, body = call(tmp_path, net, "POST", "/v1.50/networks/create",
                        json={"Name": "app", "Labels": {"k": "v"},
                              "IPAM": {"Config": [{"Subnet": "10.3.0.0/24"}]}})
    assert status == 201 and set(body) == {"Id", "Warning"}
    nid = body["Id"]
    status, nets = call(tmp_path, net, "GET", "/networks", params={"filters": '{"label": ["k=v"]}'})
    assert status == 200 and [n["Name"] for n in nets] == ["app"]
    n = nets[0]
    for key in ("Name", "Id", "Created", "Scope", "Driver", "EnableIPv4", "EnableIPv6", "IPAM", "Internal",
                "Attachable", "Ingress", "ConfigFrom", "ConfigOnly", "Containers", "Options", "Labels"):
        assert key in n
    assert n["IPAM"] == {"Driver": "default", "Options": {}, "Config": [{"Subnet": "10.3.0.0/24",
                                                                          "Gateway": "10.3.0.1"}]}
    status, body = call(tmp_path, net, "GET", f"/networks/{nid[:10]}")
    assert status == 200 and body["Id"] == nid
    assert call(tmp_path, net, "DELETE", "/networks/app") == (204, None)
    status, body = call(tmp_path, net, "GET", "/networks/app")
    assert status == 404 and body == {"message": "network app not found"}


@pytest.mark.parametrize("payload, status, words", [
    ({"Name": "bridge"}, 403, "pre-defined"),
    ({"Name": "x", "Driver": "weird"}, 404, "plugin"),
    ({"Name": "x", "IPAM": {"Config": [{"Subnet": "no"}]}}, 400, "invalid subnet"),
    ({"Driver": "bridge"}, 400, "name is required"),
])
def test_create_errors(tmp_path, net, payload, status, words):
    got, body = call(tmp_path, net, "POST", "/networks/create", json=payload)
    assert got == status and words in body["message"]


def test_conflicts(tmp_path, net):
    call(tmp_path, net, "POST", "/networks/create",
         json={"Name": "a", "IPAM": {"Config": [{"Subnet": "10.4.0.0/16"}]}})
    status, body = call(tmp_path, net, "POST", "/networks/create", json={"Name": "a"})
    assert status == 409 and body["message"] == "network with name a already exists"
    status, body = call(tmp_path, net, "POST", "/networks/create",
                        json={"Name": "b", "IPAM": {"Config": [{"Subnet": "10.4.1.0/24"}]}})
    assert status == 403 and "Pool overlaps" in body["message"]
    assert call(tmp_path, net, "DELETE", "/networks/host")[0] == 403


def test_connect_disconnect_prune(tmp_path, net):
    call(tmp_path, net, "POST", "/networks/create", json={"Name": "side"})
    status, body = call(tmp_path, net, "POST", "/networks/side/connect",
                        json={"Container": "web", "EndpointConfig": {"Aliases": ["w"]}})
    assert (status, body) == (200, None)
    assert net.manager.container(CID)["networks"][net.manager.get("side")["Id"]]["Aliases"] == ["w"]
    status, body = call(tmp_path, net, "POST", "/networks/side/connect", json={"Container": "web"})
    assert status == 403 and "already exists" in body["message"]
    assert call(tmp_path, net, "POST", "/networks/side/connect", json={"Container": "nosuch"})[0] == 404
    assert call(tmp_path, net, "POST", "/networks/side/connect", json={})[0] == 400
    status, body = call(tmp_path, net, "POST", "/networks/prune")
    assert (status, body) == (200, {"NetworksDeleted": None})  # "side" is used
    assert call(tmp_path, net, "POST", "/networks/side/disconnect", json={"Container": "web"})[0] == 200
    status, body = call(tmp_path, net, "POST", "/networks/prune")
    assert (status, body) == (200, {"NetworksDeleted": ["side"]})
