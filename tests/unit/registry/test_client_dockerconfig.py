"""The CLI's docker config.json handling: lookup by registry, store, remove, X-Registry-Auth."""

from __future__ import annotations

import base64
import json
import os
import stat

import pytest

from pallet.cli.commands.login import DockerConfig, auth_header, encode_auth, registry_of, server_key
from pallet.errors import InvalidArgument
from pallet.registry.client.auth import AuthConfig, decode_header
from pallet_testlib import install_credential_helper


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def test_lookup_store_remove(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": {"https://localhost:5000/v2/": {"auth": b64("a:b:c")},
                                          "https://index.docker.io/v1/": {"auth": b64("hub:pw")}},
                                "psFormat": "table {{.ID}}"}))
    cfg = DockerConfig(path)
    assert cfg.get("localhost:5000") == {"serveraddress": "localhost:5000", "username": "a",
                                         "password": "b:c"}
    assert cfg.get("docker.io")["username"] == "hub"
    assert cfg.get("other:1") == {"serveraddress": "other:1"}
    cfg.store("localhost:5000", "new", "pw")
    data = json.loads(path.read_text())
    assert data["auths"] == {"localhost:5000": {"auth": b64("new:pw")},
                             "https://index.docker.io/v1/": {"auth": b64("hub:pw")}}
    assert data["psFormat"] == "table {{.ID}}"  # other keys kept
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert DockerConfig(path).remove("localhost:5000") and not DockerConfig(path).remove("localhost:5000")
    cfg = DockerConfig(path)
    cfg.store("", "u", "", identity_token="tok")
    assert cfg.get("docker.io") == {"serveraddress": "https://index.docker.io/v1/", "username": "u",
                                    "password": "", "identitytoken": "tok"}


def test_bad_files_are_reported(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{nope")
    with pytest.raises(InvalidArgument, match="not valid JSON"):
        DockerConfig(path)
    path.write_text(json.dumps({"auths": {"h:1": {"auth": b64("nocolon")}}}))
    with pytest.raises(InvalidArgument, match="no ':'"):
        DockerConfig(path).get("h:1")
    assert DockerConfig(tmp_path / "absent.json").get("x.io") == {"serveraddress": "x.io"}


def test_registry_of_and_header(tmp_path, monkeypatch):
    assert [registry_of(i) for i in ("busybox", "me/app", "localhost/a", "r.io:5000/a/b", "Up/x")] == \
        ["docker.io", "docker.io", "localhost", "r.io:5000", "Up"]
    assert server_key("") == "https://index.docker.io/v1/"
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    DockerConfig().store("r.io:5000", "u", "p")
    header = auth_header("r.io:5000/a/b:1")["X-Registry-Auth"]
    assert decode_header(header) == AuthConfig("u", "p", "r.io:5000")
    assert decode_header(encode_auth({"serveraddress": "x"})) == AuthConfig(server_address="x")


@pytest.fixture
def helper(tmp_path, monkeypatch):
    bindir = install_credential_helper(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    return bindir


def test_creds_store_helper_keeps_the_secrets(tmp_path, helper):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"credsStore": "fake"}))
    cfg = DockerConfig(path)
    assert cfg.get("localhost:5000") == {"serveraddress": "localhost:5000"}  # not found: anonymous
    cfg.store("localhost:5000", "alice", "s3cret")
    data = json.loads(path.read_text())
    assert data["auths"] == {"localhost:5000": {}}  # the docker CLI's empty entry; no secret in the file
    assert "s3cret" not in path.read_text()
    assert DockerConfig(path).get("localhost:5000") == {"serveraddress": "localhost:5000",
                                                          "username": "alice", "password": "s3cret"}
    cfg.store("", "bob", "", identity_token="tok")  # an identity token goes as Username "<token>"
    assert DockerConfig(path).get("docker.io") == {"serveraddress": "https://index.docker.io/v1/",
                                                    "identitytoken": "tok"}
    assert DockerConfig(path).remove("localhost:5000")
    assert DockerConfig(path).get("localhost:5000") == {"serveraddress": "localhost:5000"}
    assert json.loads(path.read_text())["auths"] == {"https://index.docker.io/v1/": {}}
    calls = (helper / "calls.log").read_text().splitlines()
    assert calls[0] == "get localhost:5000"
    assert json.loads(calls[1].partition(" ")[2]) == {"ServerURL": "localhost:5000", "Username": "alice",
                                                      "Secret": "s3cret"}
    assert "erase localhost:5000" in calls


def test_cred_helpers_per_registry_and_missing_helper(tmp_path, helper):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"credHelpers": {"localhost:5000": "fake", "other:1": "nosuch"},
                                "auths": {"plain:1": {"auth": b64("p:q")}}}))
    cfg = DockerConfig(path)
    assert cfg.helper("localhost:5000") == "fake" and cfg.helper("plain:1") == ""
    cfg.store("localhost:5000", "u", "pw")
    assert DockerConfig(path).get("localhost:5000")["password"] == "pw"
    assert DockerConfig(path).get("plain:1")["username"] == "p"  # the file keeps the others
    with pytest.raises(InvalidArgument, match='exec: "docker-credential-nosuch": executable file not found'):
        DockerConfig(path).get("other:1")
