"""The registry routes in-process (aiohttp's test server) against a fake registry on loopback:
POST /images/create?fromImage= streams dockerd's progress, errors before output are HTTP errors,
X-Registry-Auth reaches the registry, GET /images/search and POST /auth answer Docker's shapes."""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import http.server
import io
import json
import os
import tarfile
import threading
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp.test_utils import TestClient, TestServer

from pallet.api.server import HostInfo, create_app
from pallet.api.server.backend import ImageBackend
from pallet.oci import mediatypes as mt

T = TypeVar("T")
HOST = HostInfo(id="test-id", name="testhost", version="0.1.0")
BASIC = "Basic " + base64.b64encode(b"u:p").decode()


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def image(data: bytes = b"hi\n") -> dict[str, tuple[str, bytes]]:
    """path suffix -> (content type, bytes) of a one-layer image under tag "1"."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("etc/hello")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    tar_bytes = buf.getvalue()
    layer = gzip.compress(tar_bytes, mtime=0)
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                         "rootfs": {"type": "layers", "diff_ids": [digest(tar_bytes)]}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
                           "config": {"mediaType": mt.OCI_CONFIG, "digest": digest(config),
                                      "size": len(config)},
                           "layers": [{"mediaType": mt.OCI_LAYER_GZIP, "digest": digest(layer),
                                       "size": len(layer)}]}).encode()
    return {"manifests/1": (mt.OCI_MANIFEST, manifest),
            f"manifests/{digest(manifest)}": (mt.OCI_MANIFEST, manifest),
            f"blobs/{digest(config)}": (mt.OCTET_STREAM, config),
            f"blobs/{digest(layer)}": (mt.OCTET_STREAM, layer)}


@pytest.fixture
def registry() -> Iterator[tuple[str, dict[str, Any]]]:
    repos = {"lib/app": image(), "lib/big": image(os.urandom(2 << 20))}
    state: dict[str, Any] = {"basic": False, "auth_seen": [], "sent": 0}

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def slow(self, data: bytes) -> None:
            """A blob served slowly (64 KiB every 20 ms), counting what got out."""
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            try:
                for i in range(0, len(data), 64 << 10):
                    self.wfile.write(data[i:i + (64 << 10)])
                    self.wfile.flush()
                    state["sent"] += len(data[i:i + (64 << 10)])
                    time.sleep(0.02)
            except OSError:
                pass

        def do_GET(self) -> None:
            parts = urllib.parse.urlsplit(self.path)
            state["auth_seen"].append(self.headers.get("Authorization"))
            if parts.path == "/v1/search":
                q = urllib.parse.parse_qs(parts.query)["q"][0]
                results = [{"name": f"lib/{q}", "description": "d", "star_count": 3, "is_official": False,
                            "is_automated": False}]
                self.reply(200, json.dumps({"query": q, "results": results}).encode(), {})
                return
            if state["basic"] and self.headers.get("Authorization") != BASIC:
                self.reply(401, b"{}", {"WWW-Authenticate": 'Basic realm="fake"'})
                return
            repo, _, key = parts.path.removeprefix("/v2/").rpartition("/manifests/")
            kind = "manifests/"
            if not repo:
                repo, _, key = parts.path.removeprefix("/v2/").rpartition("/blobs/")
                kind = "blobs/"
            content = repos.get(repo, {})
            if kind + key in content and repo == "lib/big" and len(content[kind + key][1]) > 1 << 20:
                self.slow(content[kind + key][1])  # the big layer
            elif kind + key in content:
                ctype, data = content[kind + key]
                self.reply(200, data, {"Content-Type": ctype, "Docker-Content-Digest": digest(data)})
            elif parts.path == "/v2/":
                self.reply(200, b"{}", {})
            else:
                self.reply(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}', {})

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()


def run(tmp_path: Path, fn: Callable[[TestClient], Awaitable[T]]) -> T:
    backend = ImageBackend(str(tmp_path / "data"))

    async def go() -> T:
        async with TestClient(TestServer(create_app(HOST, images=backend))) as client:
            return await fn(client)

    try:
        return asyncio.run(go())
    finally:
        backend.close()


def test_pull_streams_dockerds_progress(tmp_path, registry):
    host, _ = registry

    async def go(c: TestClient) -> tuple[Any, ...]:
        r = await c.post("/v1.50/images/create", params={"fromImage": f"{host}/lib/app", "tag": "1"})
        lines = [json.loads(x) for x in (await r.text()).splitlines()]
        info = await (await c.get(f"/images/{host}/lib/app:1/json")).json()
        again = await c.post("/images/create", params={"fromImage": f"{host}/lib/app:1"})
        again_lines = [json.loads(x) for x in (await again.text()).splitlines()]
        return r.status, r.headers["Content-Type"], lines, info, again_lines

    status, ctype, lines, info, again = run(tmp_path, go)
    assert status == 200 and ctype == "application/json"
    assert lines[0] == {"status": "Pulling from lib/app", "id": "1"}
    layer = lines[1]["id"]
    assert lines[1] == {"status": "Pulling fs layer", "progressDetail": {}, "id": layer}
    assert {"status": "Pull complete", "progressDetail": {}, "id": layer} in lines
    assert lines[-2]["status"].startswith("Digest: sha256:")
    assert lines[-1] == {"status": f"Status: Downloaded newer image for {host}/lib/app:1"}
    assert info["RepoTags"] == [f"{host}/lib/app:1"]
    assert info["RepoDigests"] == [f"{host}/lib/app@{lines[-2]['status'].split()[1]}"]
    assert again[-1] == {"status": f"Status: Image is up to date for {host}/lib/app:1"}
    assert {"status": "Already exists", "progressDetail": {}, "id": layer} in again
    from pallet.engine.events import open_log

    pulls = [e for e in open_log(str(tmp_path / "data")).history() if e["Action"] == "pull"]
    assert [e["Actor"]["ID"] for e in pulls] == [f"{host}/lib/app:1"] * 2  # moby logs every pull
    assert pulls[0]["Actor"]["Attributes"]["name"] == f"{host}/lib/app:1"


def test_errors_before_output_are_http_errors_and_auth_is_passed(tmp_path, registry):
    host, state = registry
    state["basic"] = True
    header = base64.urlsafe_b64encode(json.dumps({"username": "u", "password": "p"}).encode()).decode()

    async def go(c: TestClient) -> tuple[Any, ...]:
        missing = await c.post("/images/create", params={"fromImage": f"{host}/lib/app", "tag": "nope"},
                               headers={"X-Registry-Auth": header})
        anon = await c.post("/images/create", params={"fromImage": f"{host}/lib/app", "tag": "1"})
        authed = await c.post("/images/create", params={"fromImage": f"{host}/lib/app", "tag": "1"},
                              headers={"X-Registry-Auth": header})
        bad = await c.post("/images/create", params={"fromImage": "no spaces allowed", "tag": "1"})
        return (missing.status, (await missing.json())["message"], anon.status, authed.status,
                (await authed.text()).splitlines()[-1], bad.status)

    m_status, m_message, anon, authed, last, bad = run(tmp_path, go)
    assert m_status == 404
    assert m_message == f"manifest for {host}/lib/app:nope not found: manifest unknown: manifest unknown"
    assert anon == 403 and authed == 200 and "Downloaded newer image" in last
    assert BASIC in state["auth_seen"]
    assert bad == 400


def test_search_and_auth(tmp_path, registry):
    host, state = registry

    async def go(c: TestClient) -> tuple[Any, ...]:
        found = await c.get("/images/search", params={"term": f"{host}/app", "limit": "5"})
        empty = await c.get("/images/search", params={"term": f"{host}/app",
                                                      "filters": json.dumps({"is-official": ["true"]})})
        badf = await c.get("/images/search", params={"term": "x", "filters": json.dumps({"color": ["red"]})})
        state["basic"] = True
        ok = await c.post("/v1.50/auth", json={"username": "u", "password": "p", "serveraddress": host})
        no = await c.post("/auth", json={"username": "u", "password": "x", "serveraddress": host})
        return (await found.json(), await empty.json(), badf.status, ok.status, await ok.json(), no.status)

    found, empty, badf, ok_status, ok_body, no = run(tmp_path, go)
    assert found == [{"description": "d", "is_official": False, "is_automated": False, "name": "lib/app",
                      "star_count": 3}]
    assert empty == [] and badf == 400
    assert ok_status == 200 and ok_body == {"Status": "Login Succeeded", "IdentityToken": ""}
    assert no == 403


def test_a_client_that_goes_away_stops_the_pull_which_keeps_its_bytes(tmp_path, registry):
    host, state = registry

    async def go(c: TestClient) -> None:
        r = await c.post("/images/create", params={"fromImage": f"{host}/lib/big", "tag": "1"})
        while line := await r.content.readline():
            if json.loads(line).get("status") == "Downloading":
                break
        r.close()  # the client goes away mid-download
        for _ in range(100):
            sent = state["sent"]
            await asyncio.sleep(0.1)
            if state["sent"] == sent:
                break

    run(tmp_path, go)
    assert 0 < state["sent"] < 2 << 20  # stopped before the end
    backend = ImageBackend(str(tmp_path / "data"))
    try:
        partial = [i for i in backend.get().content.ingests() if (i.ref or "").startswith("pull-")]
        assert len(partial) == 1 and 0 < partial[0].offset < 2 << 20
    finally:
        backend.close()
