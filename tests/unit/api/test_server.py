"""The palletd application in-process (aiohttp's test server): routing with and without the
version prefix, Docker's version errors, /_ping headers, the error table, JSON bodies."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pallet.api.server import HostInfo, create_app
from pallet.api.server.app import Router
from pallet.api.server.backend import ContainerCounts
from pallet.api.server.errors import STATUS_BY_KIND, status_for
from pallet.api.server.requests import json_body
from pallet.errors import (
    AlreadyExists,
    Conflict,
    InvalidArgument,
    NotFound,
    NotSupported,
    PalletError,
    PermissionDenied,
    Unavailable,
)

HOST = HostInfo(id="test-id", name="testhost", version="0.1.0", kernel_version="6.1.0", arch="amd64",
                architecture="x86_64", ncpu=4, mem_total=1 << 30, cgroup_version="2",
                runtimes={"pallet-runtime": {"path": "/usr/bin/pallet-runtime"}},
                security_options=("name=seccomp,profile=default",))


class Counts:
    def containers(self) -> ContainerCounts:
        return ContainerCounts(total=3, running=1, paused=1, stopped=1)

    def images(self) -> int:
        return 7


def requests(app: web.Application, *calls: tuple[Any, ...]) -> list[tuple[int, dict[str, str], bytes]]:
    """Run (method, path[, kwargs]) calls against `app`, in order, on one server."""

    async def go() -> list[tuple[int, dict[str, str], bytes]]:
        out = []
        async with TestClient(TestServer(app)) as client:
            for call in calls:
                method, path, kw = (*call, {})[:3]
                resp = await client.request(method, path, **kw)
                out.append((resp.status, dict(resp.headers), await resp.read()))
        return out

    return asyncio.run(go())


def one(app: web.Application, method: str, path: str, **kw: Any) -> tuple[int, dict[str, str], bytes]:
    return requests(app, (method, path, kw))[0]


@pytest.mark.parametrize("path", ["/_ping", "/v1.50/_ping", "/v1.24/_ping", "/v1.41/_ping"])
def test_ping_get_with_and_without_prefix(path):
    status, headers, body = one(create_app(HOST), "GET", path)
    assert (status, body) == (200, b"OK")
    assert headers["Api-Version"] == "1.50"
    assert headers["Docker-Experimental"] == "false"
    assert headers["Ostype"] == "linux"
    assert headers["Builder-Version"] == "1"
    assert "no-cache" in headers["Cache-Control"]


def test_ping_head_has_headers_and_no_body():
    status, headers, body = one(create_app(HOST), "HEAD", "/_ping")
    assert (status, body) == (200, b"")
    assert headers["Api-Version"] == "1.50"


@pytest.mark.parametrize("path", ["/version", "/v1.50/version", "/v1.24/version"])
def test_version_shape(path):
    status, headers, body = one(create_app(HOST), "GET", path)
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    v = json.loads(body)
    assert v["ApiVersion"] == "1.50" and v["MinAPIVersion"] == "1.24"
    assert v["Version"] == "0.1.0" and v["Os"] == "linux" and v["Arch"] == "amd64"
    assert v["Platform"]["Name"]
    assert v["Components"][0]["Name"] == "Engine"
    assert v["Components"][0]["Details"]["ApiVersion"] == "1.50"
    assert v["GoVersion"] == HOST.python_version and v["KernelVersion"] == "6.1.0"


def test_version_too_new_and_too_old_use_dockers_messages():
    app = create_app(HOST)
    (s1, h1, b1), (s2, _, b2), (s3, _, b3) = requests(
        app, ("GET", "/v1.51/version"), ("GET", "/v1.23/info"), ("GET", "/v2.0/_ping"))
    assert s1 == 400 and json.loads(b1) == {
        "message": "client version 1.51 is too new. Maximum supported API version is 1.50"}
    assert h1["Api-Version"] == "1.50"  # the error still tells the client what we speak
    assert s2 == 400 and json.loads(b2) == {
        "message": "client version 1.23 is too old. Minimum supported API version is 1.24, "
                   "please upgrade your client to a newer version"}
    assert s3 == 400 and "too new" in json.loads(b3)["message"]


def test_malformed_version_is_400():
    status, _, body = one(create_app(HOST), "GET", "/v1.2.3/version")
    assert status == 400 and "invalid API version" in json.loads(body)["message"]


@pytest.mark.parametrize("path", ["/nope", "/v1.50/nope", "/containers/json/extra"])
def test_unknown_route_is_404_page_not_found(path):
    status, headers, body = one(create_app(HOST), "GET", path)
    assert status == 404
    assert headers["Content-Type"].startswith("application/json")
    assert json.loads(body) == {"message": "page not found"}


def test_wrong_method_is_json_error():
    status, _, body = one(create_app(HOST), "DELETE", "/version")
    assert status == 405 and json.loads(body) == {"message": "method not allowed"}


def test_info_shape_and_injected_counts():
    status, _, body = one(create_app(HOST, Counts()), "GET", "/v1.44/info")
    assert status == 200
    info = json.loads(body)
    assert (info["Containers"], info["ContainersRunning"], info["ContainersPaused"],
            info["ContainersStopped"], info["Images"]) == (3, 1, 1, 1, 7)
    assert info["ID"] == "test-id" and info["Name"] == "testhost"
    assert info["Driver"] == "overlayfs" and info["CgroupDriver"] == "cgroupfs"
    assert info["CgroupVersion"] == "2" and info["OSType"] == "linux"
    assert info["NCPU"] == 4 and info["MemTotal"] == 1 << 30
    assert info["Runtimes"] == {"pallet-runtime": {"path": "/usr/bin/pallet-runtime"}}
    assert info["DefaultRuntime"] == "pallet-runtime"
    assert info["SecurityOptions"] == ["name=seccomp,profile=default"]
    assert info["Swarm"]["LocalNodeState"] == "inactive"
    assert info["SystemTime"].endswith("Z")


def test_info_without_engine_counts_zero():
    info = json.loads(one(create_app(HOST), "GET", "/info")[2])
    assert info["Containers"] == 0 and info["Images"] == 0


def test_status_table_is_complete_and_ordered():
    assert {k for k, _ in STATUS_BY_KIND} == {NotFound, AlreadyExists, Conflict, InvalidArgument,
                                              NotSupported, PermissionDenied, Unavailable}
    assert status_for(ValueError("x")) == 500
    assert status_for(PalletError("x")) == 500


def _app_raising() -> web.Application:
    app = create_app(HOST)
    kinds = {"notfound": NotFound, "exists": AlreadyExists, "conflict": Conflict,
             "invalid": InvalidArgument, "unsupported": NotSupported, "denied": PermissionDenied,
             "unavailable": Unavailable, "pallet": PalletError}

    async def boom(request: web.Request) -> web.Response:
        name = request.match_info["kind"]
        if name == "bug":
            raise RuntimeError("a bug")
        raise kinds[name](f"{name} happened")

    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"got": await json_body(request)})

    router = Router(app)
    router.add("GET", "/raise/{kind}", boom)
    router.add("POST", "/echo", echo)
    return app


@pytest.mark.parametrize(("kind", "status"), [
    ("notfound", 404), ("exists", 409), ("conflict", 409), ("invalid", 400), ("unsupported", 501),
    ("denied", 403), ("unavailable", 503), ("pallet", 500)])
def test_error_kinds_map_through_one_table(kind, status):
    got, _, body = one(_app_raising(), "GET", f"/v1.50/raise/{kind}")
    assert got == status
    assert json.loads(body) == {"message": f"{kind} happened"}


def test_a_bug_is_a_logged_500_and_the_server_keeps_serving(caplog):
    results = requests(_app_raising(), ("GET", "/raise/bug"), ("GET", "/_ping"))
    (s1, _, b1), (s2, _, b2) = results
    assert s1 == 500 and "a bug" in json.loads(b1)["message"]
    assert (s2, b2) == (200, b"OK")
    assert any("internal error" in r.getMessage() and r.exc_info for r in caplog.records)


def test_json_bodies():
    app = _app_raising()
    hdr = {"Content-Type": "application/json"}
    (s1, _, b1), (s2, _, b2), (s3, _, b3), (s4, _, b4) = requests(
        app,
        ("POST", "/echo", {"data": b'{"a": 1}', "headers": hdr}),
        ("POST", "/echo", {"data": b'{"a": ', "headers": hdr}),
        ("POST", "/echo", {"data": b""}),
        ("POST", "/echo", {"data": b'{"a": 1}', "headers": {"Content-Type": "text/plain"}}))
    assert (s1, json.loads(b1)) == (200, {"got": {"a": 1}})
    assert s2 == 400 and json.loads(b2)["message"].startswith("invalid JSON")
    assert (s3, json.loads(b3)) == (200, {"got": None})
    assert s4 == 400 and "Content-Type" in json.loads(b4)["message"]


def test_every_answer_carries_server_and_api_headers():
    _, headers, _ = one(create_app(HOST), "GET", "/nope")
    assert headers["Server"] == "Pallet/0.1.0 (linux)"
    assert headers["Api-Version"] == "1.50"
