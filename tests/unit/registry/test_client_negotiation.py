"""The registry client's HTTP side against a fake registry on loopback: manifest negotiation and
platform choice, digest checks, the bearer and basic flows, tag pages, search and its filters."""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import threading
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from pallet.errors import InvalidArgument, NotFound, PermissionDenied
from pallet.oci import mediatypes as mt
from pallet.oci.digest import DigestMismatch
from pallet.oci.reference import parse_normalized
from pallet.registry.client import search
from pallet.registry.client.auth import AuthConfig
from pallet.registry.client.pull import ACCEPT, Puller, parse_platform
from pallet.registry.client.transport import Session


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def manifest(arch: str, media_type: str = mt.OCI_MANIFEST) -> bytes:
    config = json.dumps({"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}})
    cdesc = {"mediaType": mt.OCI_CONFIG if media_type == mt.OCI_MANIFEST else mt.DOCKER_CONFIG,
             "digest": digest(config.encode()), "size": len(config)}
    return json.dumps({"schemaVersion": 2, "mediaType": media_type, "config": cdesc, "layers": []}).encode()


class Fake:
    """What the fake registry serves and what it saw."""

    def __init__(self) -> None:
        self.manifests: dict[str, tuple[str, bytes]] = {}   # reference -> (content type, bytes)
        self.headers: dict[str, str] = {}                   # extra headers on manifest answers
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.auth: str | None = None                        # None, "basic" or "bearer"
        self.users = {"u": "p"}
        self.tokens_issued: list[dict[str, list[str]]] = []
        self.tags = ["a", "b", "c"]
        self.search_results: list[dict[str, Any]] = []

    def add(self, ref: str, content_type: str, data: bytes) -> str:
        self.manifests[ref] = (content_type, data)
        self.manifests[digest(data)] = (content_type, data)
        return digest(data)


@pytest.fixture
def fake() -> Iterator[tuple[Fake, str]]:
    state = Fake()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def authorized(self) -> bool:
            got = self.headers.get("Authorization") or ""
            if state.auth == "basic":
                if got == "Basic " + base64.b64encode(b"u:p").decode():
                    return True
                self.reply(401, b"{}", {"WWW-Authenticate": 'Basic realm="fake"'})
                return False
            if state.auth == "bearer":
                if got == "Bearer tok-repository:lib/app:pull":
                    return True
                host = self.headers["Host"]
                self.reply(401, b"{}", {"WWW-Authenticate": f'Bearer realm="http://{host}/token",'
                                                            f'service="fake",scope="repository:lib/app:pull"'})
                return False
            return True

        def do_GET(self) -> None:
            parts = urllib.parse.urlsplit(self.path)
            state.requests.append(("GET", parts.path, dict(self.headers)))
            q = urllib.parse.parse_qs(parts.query)
            if parts.path == "/token":
                state.tokens_issued.append(q)
                if self.headers.get("Authorization") != "Basic " + base64.b64encode(b"u:p").decode():
                    self.reply(401)
                    return
                self.reply(200, json.dumps({"token": "tok-" + " ".join(q["scope"])}).encode())
                return
            if parts.path == "/v1/search":
                body = {"query": q["q"][0], "num_results": len(state.search_results),
                        "results": state.search_results[:int(q["n"][0])]}
                self.reply(200, json.dumps(body).encode())
                return
            if not self.authorized():
                return
            if "/manifests/" in parts.path:
                ref = parts.path.rsplit("/", 1)[1]
                if ref not in state.manifests:
                    self.reply(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}')
                    return
                ctype, data = state.manifests[ref]
                self.reply(200, data, {"Content-Type": ctype, "Docker-Content-Digest": digest(data),
                                       **state.headers})
                return
            if parts.path.endswith("/tags/list"):
                last = q.get("last", [""])[0]
                rest = [t for t in state.tags if t > last]
                page, more = rest[:2], rest[2:]
                headers = {"Link": f'</v2/lib/app/tags/list?n=2&last={page[-1]}>; rel="next"'} if more else {}
                self.reply(200, json.dumps({"name": "lib/app", "tags": page}).encode(), headers)
                return
            self.reply(200, b"{}")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        yield state, f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def puller(host: str, platform: str | None = None, auth: AuthConfig | None = None) -> Puller:
    # scheme="http": the fake speaks no TLS, and http.server would sit on a TLS probe's bytes.
    session = Session(host, auth, scheme="http")
    return Puller(None, session, platform=parse_platform(platform) if platform else None)  # type: ignore[arg-type]


def test_index_negotiation_and_platform_choice(fake):
    state, host = fake
    amd, arm = manifest("amd64"), manifest("arm64")
    index = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [
        {"mediaType": mt.OCI_MANIFEST, "digest": digest(arm), "size": len(arm),
         "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
        {"mediaType": mt.OCI_MANIFEST, "digest": digest(amd), "size": len(amd),
         "platform": {"architecture": "amd64", "os": "linux"}}]}).encode()
    top = state.add("1", mt.OCI_INDEX, index)
    state.add("amd", mt.OCI_MANIFEST, amd)
    state.add("arm", mt.OCI_MANIFEST, arm)
    ref = parse_normalized(f"{host}/lib/app:1")
    data, m, got_top = puller(host, "linux/amd64").resolve(ref)
    assert data == amd and got_top == top and m.config.media_type == mt.OCI_CONFIG
    data, _, _ = puller(host, "linux/arm64").resolve(ref)
    assert data == arm
    assert all(h.get("Accept") == ACCEPT for _, p, h in state.requests if "/manifests/" in p)
    for t in (mt.OCI_INDEX, mt.OCI_MANIFEST, mt.DOCKER_MANIFEST_LIST, mt.DOCKER_MANIFEST):
        assert t in ACCEPT
    with pytest.raises(NotFound, match="no manifest for platform"):
        puller(host, "linux/s390x").resolve(ref)


def test_docker_manifest_list_and_schema2(fake):
    state, host = fake
    amd = manifest("amd64", mt.DOCKER_MANIFEST)
    lst = json.dumps({"schemaVersion": 2, "mediaType": mt.DOCKER_MANIFEST_LIST, "manifests": [
        {"mediaType": mt.DOCKER_MANIFEST, "digest": digest(amd), "size": len(amd),
         "platform": {"architecture": "amd64", "os": "linux"}}]}).encode()
    state.add("list", mt.DOCKER_MANIFEST_LIST, lst)
    state.add("one", mt.DOCKER_MANIFEST, amd)
    _, m, _ = puller(host, "linux/amd64").resolve(parse_normalized(f"{host}/lib/app:list"))
    assert m.media_type == mt.DOCKER_MANIFEST
    data, m, top = puller(host).resolve(parse_normalized(f"{host}/lib/app:one"))
    assert data == amd and top == digest(amd)


def test_digests_are_checked(fake):
    state, host = fake
    amd = manifest("amd64")
    state.add("t", mt.OCI_MANIFEST, amd)
    state.headers = {"Docker-Content-Digest": "sha256:" + "0" * 64}
    with pytest.raises(DigestMismatch):
        puller(host).resolve(parse_normalized(f"{host}/lib/app:t"))
    state.headers = {}
    other = "sha256:" + "1" * 64
    state.manifests[other] = (mt.OCI_MANIFEST, amd)  # serves content that is not what was asked
    with pytest.raises(DigestMismatch):
        puller(host).resolve(parse_normalized(f"{host}/lib/app@{other}"))
    with pytest.raises(NotFound, match=r"manifest for .*:nope not found: manifest unknown"):
        puller(host).resolve(parse_normalized(f"{host}/lib/app:nope"))


def test_bearer_flow_fetches_one_token_per_scope(fake):
    state, host = fake
    state.auth = "bearer"
    state.add("t", mt.OCI_MANIFEST, manifest("amd64"))
    p = puller(host, auth=AuthConfig("u", "p"))
    ref = parse_normalized(f"{host}/lib/app:t")
    p.resolve(ref)
    p.resolve(ref)
    assert len(state.tokens_issued) == 1
    assert state.tokens_issued[0]["service"] == ["fake"]
    assert state.tokens_issued[0]["scope"] == ["repository:lib/app:pull"]
    assert state.tokens_issued[0]["account"] == ["u"]
    with pytest.raises(PermissionDenied, match="incorrect username or password"):
        puller(host, auth=AuthConfig("u", "wrong")).resolve(ref)


def test_basic_flow_and_refused_credentials(fake):
    state, host = fake
    state.auth = "basic"
    state.add("t", mt.OCI_MANIFEST, manifest("amd64"))
    ref = parse_normalized(f"{host}/lib/app:t")
    puller(host, auth=AuthConfig("u", "p")).resolve(ref)
    with pytest.raises(PermissionDenied):
        puller(host, auth=AuthConfig("u", "bad")).resolve(ref)
    with pytest.raises(PermissionDenied):
        puller(host).resolve(ref)  # anonymous: nothing to answer the challenge with


def test_tag_list_follows_link_pages(fake):
    state, host = fake
    state.tags = ["a", "b", "c", "d", "e"]
    assert puller(host).tags(parse_normalized(f"{host}/lib/app")) == ["a", "b", "c", "d", "e"]


def test_search_filters_and_limit(fake):
    state, host = fake
    state.search_results = [
        {"name": "a/one", "description": "x", "star_count": 5, "is_official": True, "is_automated": False},
        {"name": "a/two", "star_count": 1, "is_official": False, "is_automated": True},
        {"bogus": True}]
    found = search(f"{host}/a")
    assert [r["name"] for r in found] == ["a/one", "a/two"]
    assert found[1] == {"description": "", "is_official": False, "is_automated": True, "name": "a/two",
                        "star_count": 1}
    assert [r["name"] for r in search(f"{host}/a", filters={"is-official": ["true"]})] == ["a/one"]
    assert [r["name"] for r in search(f"{host}/a", filters={"stars": ["2"]})] == ["a/one"]
    assert [r["name"] for r in search(f"{host}/a", filters={"is-automated": ["1"]})] == ["a/two"]
    assert len(search(f"{host}/a", limit=1)) == 1
    with pytest.raises(InvalidArgument):
        search(f"{host}/a", filters={"color": ["red"]})
    with pytest.raises(InvalidArgument):
        search(f"{host}/a", limit=0)


def test_parse_platform():
    assert str(parse_platform("linux/arm64")) == str(parse_platform("linux/arm64/v8"))
    assert parse_platform("arm64").os == "linux"
    with pytest.raises(InvalidArgument):
        parse_platform("a/b/c/d")
