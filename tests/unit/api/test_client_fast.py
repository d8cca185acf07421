"""The hand-written HTTP/1.1 client on a UNIX socket, against a tiny threaded server on a tmp socket:
Content-Length, chunked and close-delimited bodies, errors, uploads, streaming, hijack, and the
cached API version (including a daemon that changed version behind the same socket file)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pallet.api import API_VERSION
from pallet.api.client import APIError, Client, _urlencode
from pallet.errors import InvalidArgument, NotFound, Unavailable
from pallet_testlib import FakeDaemon, Handler


def answer(status: int, body: bytes = b"", *, ctype: str = "application/json",
           chunks: list[bytes] | None = None, extra: str = "", api: str = API_VERSION) -> bytes:
    head = f"HTTP/1.1 {status} X\r\nApi-Version: {api}\r\nContent-Type: {ctype}\r\n{extra}"
    if chunks is not None:
        data = b"".join(b"%x\r\n%b\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
        return (head + "Transfer-Encoding: chunked\r\n\r\n").encode() + data
    return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Callable[[Handler], FakeDaemon]]:
    started: list[FakeDaemon] = []

    def start(handler: Handler) -> FakeDaemon:
        d = FakeDaemon(tmp_path / "d.sock", handler)
        started.append(d)
        return d

    yield start
    for d in started:
        d.close()


def client(d: FakeDaemon, **kw: object) -> Client:
    return Client(f"unix://{d.path}", **kw)  # type: ignore[arg-type]


def test_content_length_json(daemon):
    d = daemon(lambda m, t, h, b, s: answer(200, b'[{"Id": "abc"}]'))
    c = client(d, version="1.50")
    assert c.get_json("/containers/json", params={"all": True, "size": None}) == [{"Id": "abc"}]
    method, target, headers, _ = d.requests[0]
    assert (method, target) == ("GET", "/v1.50/containers/json?all=1")
    assert headers["host"] == "localhost" and headers["user-agent"] == "pallet-cli"


def test_chunked_body_and_lines_across_chunks(daemon):
    lines = [b'{"status": "one"}\n{"sta', b'tus": "two"}\n', b"\n", b'{"status": "three"}']
    d = daemon(lambda m, t, h, b, s: answer(200, chunks=lines))
    c = client(d, version="1.50")
    assert c.request("GET", "/x").read() == b"".join(lines)
    assert [o["status"] for o in c.request("GET", "/x").iter_json()] == ["one", "two", "three"]
    assert b"".join(c.request("GET", "/x").iter_chunks(3)) == b"".join(lines)


def test_close_delimited_body_and_headers(daemon):
    def h(m, t, hd, b, s):
        return b"HTTP/1.1 200 OK\r\nX-Thing: yes\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nto the end"

    c = client(daemon(h), version="1.50")
    resp = c.request("GET", "/x")
    assert resp.headers.get("x-thing") == "yes" and resp.headers["X-THING"] == "yes"
    assert resp.content_type == "text/plain"
    assert resp.read() == b"to the end"


def test_no_body_statuses(daemon):
    d = daemon(lambda m, t, h, b, s: b"HTTP/1.1 204 No Content\r\n\r\n")
    resp = client(d, version="1.50").request("POST", "/containers/x/start", ok=(304,))
    assert (resp.status, resp.read()) == (204, b"")
    assert d.requests[0][2]["content-length"] == "0"


def test_error_answers_raise_their_kind(daemon):
    def h(m, t, hd, b, s):
        if t.endswith("/missing"):
            return answer(404, b'{"message": "no such container: missing"}')
        if t.endswith("/broken"):
            return answer(500, chunks=[b"plain ", b"text"], ctype="text/plain")
        return answer(409, b"")

    c = client(daemon(h), version="1.50")
    with pytest.raises(NotFound, match="no such container: missing") as exc:
        c.request("GET", "/containers/missing")
    assert exc.value.status == 404  # type: ignore[attr-defined]
    with pytest.raises(APIError, match="plain text"):
        c.request("GET", "/broken")
    assert c.request("GET", "/other", ok=(409,)).status == 409


def test_unreachable_and_mute_daemons_are_unavailable(tmp_path, daemon):
    with pytest.raises(Unavailable, match="is palletd running"):
        Client(f"unix://{tmp_path}/none.sock").ping()
    d = daemon(lambda m, t, h, b, s: b"")  # closes without answering
    with pytest.raises(Unavailable, match="before answering"):
        client(d, version="1.50").request("GET", "/x")


def test_uploads_bytes_json_and_streams(daemon):
    d = daemon(lambda m, t, h, b, s: answer(200, b"{}"))
    c = client(d, version="1.50")
    c.request("POST", "/a", data=b"raw bytes")
    c.post_json("/b", {"Image": "busybox"})
    c._connection = lambda: _small_blocks(c)  # type: ignore[method-assign]
    c.request("POST", "/images/load", data=io.BytesIO(b"x" * 10000))
    (_, _, h1, b1), (_, _, h2, b2), (_, _, h3, b3) = d.requests
    assert (h1["content-length"], b1) == ("9", b"raw bytes")
    assert (h2["content-type"], json.loads(b2)) == ("application/json", {"Image": "busybox"})
    assert (h3["transfer-encoding"], b3) == ("chunked", b"x" * 10000)


def _small_blocks(c: Client):
    conn = c._open()
    conn.blocksize = 4096
    return conn


def test_query_encoding_matches_urllib():
    query = {"filters": json.dumps({"label": {"a=b c": True}}), "name": "ü/&+~_.-", "all": "1"}
    assert _urlencode(query) == urllib.parse.urlencode(query)


def test_send_then_answer_later(daemon):
    release = threading.Event()

    def h(m, t, hd, b, s):
        release.wait(5)
        return answer(200, b'{"StatusCode": 0}')

    pending = client(daemon(h), version="1.50").send("POST", "/containers/x/wait")
    assert not pending.answered(0.05)
    release.set()
    assert pending.answered(5)
    assert pending.response().json() == {"StatusCode": 0}


def test_hijack_upgrades_and_carries_both_ways(daemon):
    def h(m, t, hd, b, s):
        assert hd["upgrade"] == "tcp" and json.loads(b) == {"Detach": False}
        s.sendall(b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\n"
                  b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\nhello ")
        while data := s.recv(1024):
            s.sendall(data.upper())
        return None

    conn = client(daemon(h), version="1.50").hijack("POST", "/exec/x/start", body={"Detach": False})
    assert not conn.multiplexed
    conn.send(b"world")
    conn.close_write()
    out = b""
    while data := conn.recv():
        out += data
    conn.close()
    assert out == b"hello WORLD"


def test_hijack_errors_raise(daemon):
    d = daemon(lambda m, t, h, b, s: answer(404, b'{"message": "no such exec"}'))
    with pytest.raises(NotFound, match="no such exec"):
        client(d, version="1.50").hijack("POST", "/exec/x/start", body={})


# -- the cached API version ------------------------------------------------------------------------


def versioned_daemon(api: str) -> Handler:
    def h(m, t, hd, b, s):
        if t == "/_ping":
            return answer(200, b"OK", ctype="text/plain", api=api)
        requested = t.split("/")[1][1:]
        if tuple(map(int, requested.split("."))) > tuple(map(int, api.split("."))):
            return answer(400, json.dumps({"message": f"client version {requested} is too new. Maximum "
                                                      f"supported API version is {api}"}).encode(), api=api)
        return answer(200, b"[]", api=api)
    return h


def test_version_is_negotiated_once_per_socket_file(daemon):
    d = daemon(versioned_daemon("1.45"))
    assert client(d).get_json("/containers/json") == []
    assert client(d).get_json("/images/json") == []
    assert d.targets == ["/_ping", "/v1.45/containers/json", "/v1.45/images/json"]
    assert client(d).api_version == "1.45"


def test_restarted_daemon_is_pinged_again(daemon):
    d = daemon(versioned_daemon(API_VERSION))
    client(d).get_json("/containers/json")
    d.close()
    time.sleep(0.01)
    d2 = daemon(versioned_daemon("1.41"))  # a new socket file at the same path
    assert client(d2).get_json("/containers/json") == []
    assert d2.targets == ["/_ping", "/v1.41/containers/json"]


def test_refused_cached_version_is_renegotiated_and_the_request_resent(daemon):
    d = daemon(versioned_daemon(API_VERSION))
    assert client(d).api_version
    d.handler = versioned_daemon("1.41")  # same socket file, another version (socket activation)
    c = client(d)
    assert c.get_json("/containers/json") == []
    assert d.targets[1:] == [f"/v{API_VERSION}/containers/json", "/_ping", "/v1.41/containers/json"]
    assert client(d).get_json("/images/json") == [] and d.targets[-1] == "/v1.41/images/json"


def test_a_negotiated_version_refused_is_not_retried(daemon):
    d = daemon(lambda m, t, h, b, s: answer(200, b"OK", api="1.50") if t == "/_ping" else
               answer(400, b'{"message": "client version 1.50 is too new. Maximum supported API '
                           b'version is 1.41"}'))
    with pytest.raises(InvalidArgument, match="too new"):
        client(d).get_json("/containers/json")
    assert d.targets == ["/_ping", "/v1.50/containers/json"]


def test_a_streamed_upload_never_trusts_the_cache(daemon):
    d = daemon(versioned_daemon("1.45"))
    assert client(d).api_version
    client(d).request("POST", "/images/load", data=io.BytesIO(b"tar"))
    assert d.targets == ["/_ping", "/_ping", "/v1.45/images/load"]


def test_corrupt_cache_means_a_ping(daemon, tmp_path):
    d = daemon(versioned_daemon("1.45"))
    assert client(d).api_version
    cache = tmp_path / "run" / "pallet" / "api-versions"
    cache.write_text(cache.read_text().replace("1.45", "9.99"))
    assert client(d).api_version == "1.45"
    cache.write_text("garbage")
    assert client(d).api_version == "1.45"
    assert d.targets == ["/_ping"] * 3


def test_the_unix_path_imports_no_http_client_email_ssl():
    code = ("import sys, pallet.api.client, pallet.cli.main; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('http', 'email', 'ssl', 'urllib', 'typing')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert r.stdout.strip() == "[]"
