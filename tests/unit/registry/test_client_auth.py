"""Registry client auth: WWW-Authenticate parsing, X-Registry-Auth, insecure-registry rules, error words."""

from __future__ import annotations

import base64
import json

import pytest

from pallet.errors import InvalidArgument, NotFound, PermissionDenied, Unavailable
from pallet.registry.client.auth import AuthConfig, Challenge, decode_header, parse_challenges, server_key
from pallet.registry.client.transport import Session, error_from, is_insecure, registry_host, split_host


@pytest.mark.parametrize(("header", "expected"), [
    ('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
     'scope="repository:library/busybox:pull"',
     [Challenge("bearer", {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                           "scope": "repository:library/busybox:pull"})]),
    ('Basic realm="Registry Realm"', [Challenge("basic", {"realm": "Registry Realm"})]),
    ("basic realm=x", [Challenge("basic", {"realm": "x"})]),
    ('Bearer realm="a\\"b", error="insufficient_scope"',
     [Challenge("bearer", {"realm": 'a"b', "error": "insufficient_scope"})]),
    ('Basic realm="r", Bearer realm="t",service="s"',
     [Challenge("basic", {"realm": "r"}), Challenge("bearer", {"realm": "t", "service": "s"})]),
    ("Negotiate", [Challenge("negotiate", {})]),
    ("", []),
])
def test_parse_challenges(header, expected):
    assert parse_challenges(header) == expected


def test_registry_auth_header_round_trip_and_variants():
    cfg = AuthConfig("alice", "pw", "localhost:5000")
    assert decode_header(cfg.header()) == cfg
    # padding stripped, standard alphabet, and the config.json "auth" form all decode
    raw = json.dumps({"username": "u?>", "password": "p~~~", "serveraddress": "h"}).encode()
    assert decode_header(base64.urlsafe_b64encode(raw).decode().rstrip("=")).username == "u?>"
    assert decode_header(base64.b64encode(raw).decode()).password == "p~~~"
    auth = base64.b64encode(b"bob:s:e:cret").decode()
    packed = base64.urlsafe_b64encode(json.dumps({"auth": auth}).encode()).decode()
    assert decode_header(packed) == AuthConfig("bob", "s:e:cret")
    assert decode_header("") == AuthConfig() and decode_header("bnVsbA==") == AuthConfig()  # "null"
    with pytest.raises(InvalidArgument):
        decode_header("!!!")
    with pytest.raises(InvalidArgument):
        decode_header(base64.b64encode(b'{"username": 3}').decode())
    assert AuthConfig().empty and not cfg.empty
    tok = AuthConfig(identity_token="t").to_json()
    assert tok["identitytoken"] == "t" and "registrytoken" not in tok


def test_server_keys_and_hosts():
    assert server_key("docker.io") == server_key("https://index.docker.io/v1/") == "https://index.docker.io/v1/"
    assert server_key("https://localhost:5000/v2/") == "localhost:5000"
    assert registry_host("docker.io") == "registry-1.docker.io"
    assert registry_host("localhost:5000") == "localhost:5000"
    assert split_host("[::1]:5000") == ("::1", 5000) and split_host("a.b") == ("a.b", None)


@pytest.mark.parametrize(("host", "extra", "insecure"), [
    ("localhost:5000", (), True), ("127.0.0.1:5000", (), True), ("127.8.9.1", (), True),
    ("[::1]:5000", (), True), ("registry.lan:5000", (), False),
    ("registry.lan:5000", ("registry.lan:5000",), True), ("registry.lan:5000", ("registry.lan",), True),
    ("10.1.2.3:5000", ("10.0.0.0/8",), True), ("11.1.2.3:5000", ("10.0.0.0/8",), False),
    ("registry-1.docker.io", (), False), ("10.1.2.3", ("http://10.1.2.3/",), True),
])
def test_insecure_registries(host, extra, insecure):
    assert is_insecure(host, extra) is insecure


def test_registry_errors_become_pallet_kinds_with_dockers_words():
    body = json.dumps({"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]}).encode()
    e = error_from(404, body, "")
    assert isinstance(e, NotFound) and str(e) == "manifest unknown: manifest unknown"
    assert isinstance(error_from(401, b"", "push"), PermissionDenied)
    assert isinstance(error_from(403, b"{}", "x"), PermissionDenied)
    assert isinstance(error_from(503, b"busy", "x"), Unavailable)
    body = b'{"errors":[{"code":"DIGEST_INVALID","message":"provided digest did not match"}]}'
    e = error_from(400, body, "up")
    assert isinstance(e, InvalidArgument) and str(e) == "up: digest invalid: provided digest did not match"


def test_palletd_insecure_registry_option(tmp_path):
    from pallet.daemon.main import load_config

    (tmp_path / "empty.json").write_text("{}")
    config, _ = load_config(["--insecure-registry", "reg.lan:5000", "--insecure-registry", "10.0.0.0/8",
                             "--config", str(tmp_path / "empty.json")])
    assert config is not None and config.insecure_registries == ("reg.lan:5000", "10.0.0.0/8")
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps({"insecure-registries": ["r.io"]}))
    config, _ = load_config(["--config", str(path)])
    assert config is not None and config.insecure_registries == ("r.io",)
    assert Session("reg.lan:5000", insecure=("reg.lan:5000",)).insecure
    assert not Session("reg.lan:5000").insecure
    with pytest.raises(InvalidArgument, match="plain HTTP only for insecure"):
        Session("reg.lan:5000", scheme="http")
