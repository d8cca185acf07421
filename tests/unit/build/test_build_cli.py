"""`pallet build` and `pallet builder` without a daemon: flag parsing, build args from the
environment, secrets, stdin contexts, and the query a fake client receives."""

from __future__ import annotations

import base64
import io
import json
import sys
import tarfile
from urllib.parse import parse_qs, urlsplit

import pytest

from pallet.cli.commands import build as build_cmd
from pallet.cli.commands import builder as builder_cmd
from pallet.errors import InvalidArgument


class FakeResponse:
    def __init__(self, lines: list[dict], body: object = None) -> None:
        self.lines, self.body = lines, body

    def iter_json(self):
        return iter(self.lines)

    def json(self):
        return self.body


class FakeClient:
    def __init__(self, response: FakeResponse) -> None:
        self.response = response
        self.calls: list[tuple[str, str, dict]] = []
        self.sent = b""

    def request(self, method, path, *, params=None, data=None, headers=None, **kw):
        self.calls.append((method, path, {"params": params, "headers": headers or {}}))
        if data is not None and hasattr(data, "read"):
            self.sent = data.read()
        return self.response


class Ctx:
    def __init__(self, client: FakeClient) -> None:
        self._c = client

    def client(self) -> FakeClient:
        return self._c


OK = [{"stream": "Step 1/1 : FROM busybox\n"}, {"aux": {"ID": "sha256:" + "ab" * 32}},
      {"stream": "Successfully built abababababab\n"}]


def test_build_sends_the_context_and_docker_query(tmp_path, monkeypatch, capsys):
    (tmp_path / "Dockerfile").write_text("FROM busybox\n")
    (tmp_path / "a.txt").write_text("a")
    monkeypatch.setenv("FROM_ENV", "env-value")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    client = FakeClient(FakeResponse(OK))
    rc = build_cmd.main(Ctx(client), ["-t", "a:1", "-t", "b", "--build-arg", "X=1", "--build-arg", "FROM_ENV",
                                      "--label", "l=v", "--no-cache", "--target", "t", "--cache-from", "c:1",
                                      "--network", "none", "--iidfile", str(tmp_path / "iid"), str(tmp_path)])
    assert rc == 0
    method, path, _ = client.calls[0]
    q = parse_qs(urlsplit(path).query)
    assert method == "POST" and urlsplit(path).path == "/build"
    assert q["t"] == ["a:1", "b"] and q["dockerfile"] == ["Dockerfile"]
    assert json.loads(q["buildargs"][0]) == {"X": "1", "FROM_ENV": "env-value",
                                             "SOURCE_DATE_EPOCH": "1700000000"}
    assert json.loads(q["labels"][0]) == {"l": "v"} and json.loads(q["cachefrom"][0]) == ["c:1"]
    assert q["nocache"] == ["1"] and q["target"] == ["t"] and q["networkmode"] == ["none"]
    with tarfile.open(fileobj=io.BytesIO(client.sent)) as t:
        assert sorted(t.getnames()) == ["Dockerfile", "a.txt"]
    assert (tmp_path / "iid").read_text() == "sha256:" + "ab" * 32
    assert "Step 1/1 : FROM busybox" in capsys.readouterr().out


def test_build_quiet_prints_only_the_id_and_errors_exit_1(tmp_path, capsys):
    (tmp_path / "Dockerfile").write_text("FROM busybox\n")
    assert build_cmd.main(Ctx(FakeClient(FakeResponse(OK))), ["-q", str(tmp_path)]) == 0
    assert capsys.readouterr().out == "sha256:" + "ab" * 32 + "\n"
    failing = [{"stream": "Step 1/1 : RUN false\n"},
               {"errorDetail": {"message": "boom", "code": 1}, "error": "boom"}]
    assert build_cmd.main(Ctx(FakeClient(FakeResponse(failing))), [str(tmp_path)]) == 1
    assert capsys.readouterr().err == "boom\n"


def test_stdin_dockerfile_becomes_a_one_file_context(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"FROM busybox\n")))
    spool = io.BytesIO()
    build_cmd._stdin_context(spool)
    with tarfile.open(fileobj=io.BytesIO(spool.getvalue())) as t:
        assert t.getnames() == ["Dockerfile"]
        assert t.extractfile("Dockerfile").read() == b"FROM busybox\n"


def test_secrets_header(tmp_path, monkeypatch):
    (tmp_path / "s").write_bytes(b"file-secret")
    monkeypatch.setenv("TOKEN", "env-secret")
    header = build_cmd._secrets([f"id=a,src={tmp_path / 's'}", "id=b,env=TOKEN"])
    decoded = json.loads(base64.b64decode(header))
    assert {k: base64.b64decode(v) for k, v in decoded.items()} == {"a": b"file-secret", "b": b"env-secret"}
    with pytest.raises(InvalidArgument, match="id= is required"):
        build_cmd._secrets(["src=/x"])


def test_builder_prune_asks_then_reports(monkeypatch, capsys):
    client = FakeClient(FakeResponse([], {"CachesDeleted": ["cachemount:x", "abc"], "SpaceReclaimed": 2048}))
    monkeypatch.setattr(sys, "stdin", io.StringIO("n\n"))
    assert builder_cmd.main(Ctx(client), ["prune"]) == 0 and client.calls == []
    assert builder_cmd.main(Ctx(client), ["prune", "-a", "-f"]) == 0
    assert client.calls[0][:2] == ("POST", "/build/prune") and client.calls[0][2]["params"] == {"all": "1"}
    out = capsys.readouterr().out
    assert "Deleted build cache objects:\ncachemount:x\nabc\n" in out
    assert "Total reclaimed space: 2.05kB" in out
