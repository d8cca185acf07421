"""The scheme probe of an insecure registry: a plain-HTTP one is found without loading the CA
store (a TLS client context that verifies nothing only asks whether the host speaks TLS), and
a TLS one is still judged by the verifying context, as before."""

from __future__ import annotations

import http.server
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pallet.registry.client import transport
from pallet.registry.client.transport import Session


class _V2(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"{}"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _serve(tls: ssl.SSLContext | None = None) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _V2)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(autouse=True)
def _fresh_probe_cache(monkeypatch):
    monkeypatch.setattr(transport, "_PROBED", {})


@pytest.fixture()
def plain() -> Iterator[str]:
    yield from _serve()


@pytest.fixture()
def cert(tmp_path) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command (scripts/install-deps installs it)")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")],
                   check=True, capture_output=True, timeout=60)
    return tmp_path


@pytest.fixture()
def tls(cert) -> Iterator[str]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert / "cert.pem", cert / "key.pem")
    yield from _serve(ctx)


def test_a_plain_http_registry_is_found_without_the_ca_store(plain, monkeypatch):
    def no_ca_store(*args, **kwargs):
        raise AssertionError("the CA store was loaded for a plain-HTTP registry")

    monkeypatch.setattr(ssl, "create_default_context", no_ca_store)
    session = Session(plain)  # loopback: insecure
    assert session.scheme == "http"
    assert session._ssl_context is None
    resp = session.request("GET", "/v2/")
    assert resp.read() == b"{}"
    session.close()


def test_a_tls_registry_is_still_judged_by_the_verifying_context(tls, cert):
    # Self-signed, not trusted: the verifying probe fails, so plain HTTP is chosen, as before.
    assert Session(tls).scheme == "http"
    transport._PROBED.clear()
    trusted = ssl.create_default_context(cafile=str(cert / "cert.pem"))
    session = Session(tls, ssl_context=trusted)
    assert session.scheme == "https"
    assert session.request("GET", "/v2/").read() == b"{}"
    session.close()


def test_a_secure_registry_is_never_probed():
    assert Session("registry.example.com").scheme == "https"
