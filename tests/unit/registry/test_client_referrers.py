"""The client's referrers listing against a fake registry on loopback: `Link` pages followed,
the filter applied by the client when the registry did not, and a registry without the
referrers API (404) read through the referrers tag schema."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from collections.abc import Iterator

import pytest

from pallet.oci import mediatypes as mt
from pallet.oci.reference import parse_normalized
from pallet.registry.client.pull import Puller
from pallet.registry.client.transport import Session

SUBJECT = "sha256:" + "a" * 64


def _desc(i: int, kind: str) -> dict:
    return {"mediaType": mt.OCI_MANIFEST, "digest": "sha256:" + hashlib.sha256(bytes([i])).hexdigest(),
            "size": 100 + i, "artifactType": kind}


REFERRERS = [_desc(i, "application/x-sbom" if i % 2 else "application/x-sig") for i in range(5)]


class State:
    def __init__(self) -> None:
        self.api = True            # False: the registry has no referrers API (404)
        self.filters = True        # False: it ignores artifactType
        self.tag_index: bytes | None = None
        self.paths: list[str] = []


@pytest.fixture
def fake() -> Iterator[tuple[State, str]]:
    state = State()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            state.paths.append(self.path)
            path, _, query = self.path.partition("?")
            params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
            if path == "/v2/":
                self.reply(200, b"{}")
            elif path == f"/v2/r/app/referrers/{SUBJECT}" and state.api:
                items = REFERRERS
                headers = {"Content-Type": mt.OCI_INDEX}
                kind = params.get("artifactType", "").replace("%2F", "/")
                if kind and state.filters:
                    items = [d for d in items if d["artifactType"] == kind]
                    headers["OCI-Filters-Applied"] = "artifactType"
                start = int(params.get("page", "0"))
                page = items[start:start + 2]
                if start + 2 < len(items):
                    extra = f"&artifactType={params['artifactType']}" if "artifactType" in params else ""
                    headers["Link"] = f'</v2/r/app/referrers/{SUBJECT}?page={start + 2}{extra}>; rel="next"'
                body = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": page})
                self.reply(200, body.encode(), headers)
            elif path == f"/v2/r/app/manifests/sha256-{'a' * 64}" and state.tag_index is not None:
                self.reply(200, state.tag_index, {"Content-Type": mt.OCI_INDEX})
            else:
                self.reply(404, b'{"errors":[{"code":"NOT_FOUND","message":"not found"}]}',
                           {"Content-Type": "application/json"})

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def _list(host: str, kind: str | None = None) -> list[str]:
    ref = parse_normalized(f"{host}/r/app")
    session = Session(host, None)
    try:
        return [str(d.digest) for d in Puller(None, session).referrers(ref, SUBJECT, kind)]  # type: ignore[arg-type]
    finally:
        session.close()


def test_every_link_page_is_followed(fake):
    state, host = fake
    assert _list(host) == [d["digest"] for d in REFERRERS]
    assert len([p for p in state.paths if "/referrers/" in p]) == 3


def test_the_filter_is_sent_and_applied_here_when_the_registry_did_not(fake):
    state, host = fake
    sboms = [d["digest"] for d in REFERRERS if d["artifactType"] == "application/x-sbom"]
    assert _list(host, "application/x-sbom") == sboms
    assert "artifactType=application%2Fx-sbom" in state.paths[-1]
    state.filters = False
    assert _list(host, "application/x-sbom") == sboms


def test_without_the_api_the_referrers_tag_is_read(fake):
    state, host = fake
    state.api = False
    assert _list(host) == []  # neither the API nor the tag: no referrers
    state.tag_index = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX,
                                  "manifests": REFERRERS[:3]}).encode()
    assert _list(host) == [d["digest"] for d in REFERRERS[:3]]
    assert _list(host, "application/x-sig") == [REFERRERS[0]["digest"], REFERRERS[2]["digest"]]
    state.tag_index = b"not an index"
    assert _list(host) == []
