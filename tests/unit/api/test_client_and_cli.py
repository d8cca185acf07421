"""The stdlib client and the CLI edge: host resolution, status -> kind, global flags, templates,
and the fast-start rule (no aiohttp, no asyncio on the CLI path)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pallet.api import version_tuple
from pallet.api.client import DEFAULT_HOST, APIError, Client, error_for, resolve_host
from pallet.cli.main import parse_globals, render_template, usage
from pallet.errors import Conflict, InvalidArgument, NotFound, NotSupported, PermissionDenied, Unavailable


def test_host_resolution_order():
    env = {"PALLET_HOST": "unix:///p.sock", "DOCKER_HOST": "unix:///d.sock"}
    assert resolve_host("unix:///flag.sock", env) == "unix:///flag.sock"
    assert resolve_host(None, env) == "unix:///p.sock"
    assert resolve_host(None, {"DOCKER_HOST": "unix:///d.sock"}) == DEFAULT_HOST
    assert resolve_host(None, {"DOCKER_HOST": "unix:///d.sock", "PALLET_USE_DOCKER_HOST": "1"}) \
        == "unix:///d.sock"


@pytest.mark.parametrize(("status", "kind"), [(400, InvalidArgument), (403, PermissionDenied),
                                              (404, NotFound), (409, Conflict), (501, NotSupported),
                                              (503, Unavailable), (500, APIError), (418, APIError)])
def test_status_to_kind(status, kind):
    exc = error_for(status, "msg")
    assert type(exc) is kind and str(exc) == "msg"


def test_bad_hosts_are_invalid_arguments():
    with pytest.raises(InvalidArgument):
        Client("ftp://x")
    with pytest.raises(InvalidArgument):
        Client("tcp://")


def test_unreachable_daemon_is_unavailable_with_a_hint(tmp_path):
    with pytest.raises(Unavailable, match="is palletd running"):
        Client(f"unix://{tmp_path}/none.sock").ping()


def test_version_tuple():
    assert version_tuple("1.50") == (1, 50) and version_tuple("1.9") < version_tuple("1.24")
    for bad in ("1", "1.x", "v1.2", ""):
        with pytest.raises(ValueError):
            version_tuple(bad)


def test_global_flags():
    ctx, rest = parse_globals(["-H", "unix:///a.sock", "--tlsverify", "--tlscert=c.pem",
                               "version", "-f", "x"])
    assert (ctx.host, ctx.tlsverify, ctx.tlscert, rest) == ("unix:///a.sock", True, "c.pem",
                                                             ["version", "-f", "x"])
    with pytest.raises(ValueError, match="unknown flag"):
        parse_globals(["--bogus", "ps"])
    with pytest.raises(ValueError, match="needs an argument"):
        parse_globals(["-H"])


def test_usage_lists_verbs():
    text = usage()
    assert "  version " in text and "  info " in text and "  runtime " in text


@pytest.mark.parametrize(("template", "out"), [
    ("{{json .}}", '{"A":{"B":1},"C":"x","D":true}'),
    ("{{.A.B}} and {{.C}}", "1 and x"),
    ("{{json .A}}", '{"B":1}'),
    ("{{ .D }}\\t{{upper .C}}", "true\tX"),
])
def test_templates(template, out):
    assert render_template(template, {"A": {"B": 1}, "C": "x", "D": True}) == out


def test_template_errors():
    with pytest.raises(ValueError, match="can't evaluate field Nope"):
        render_template("{{.Nope}}", {})
    with pytest.raises(ValueError, match='"nosuchfunc" not defined'):
        render_template("{{nosuchfunc .A}}", {"A": 1})


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pallet.cli.main", *args], capture_output=True, text=True)


def test_unknown_verb_is_one_clear_line():
    r = _run(["frobnicate"])
    assert r.returncode == 1
    assert r.stderr == "pallet: 'frobnicate' is not a pallet command.\nSee 'pallet --help'\n"


def test_help_exits_zero():
    r = _run(["--help"])
    assert r.returncode == 0 and "Commands:" in r.stdout


def test_cli_path_imports_no_server_stack():
    code = ("import sys, pallet.cli.main, pallet.api.client, pallet.cli.commands.version, "
            "pallet.cli.commands.info; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'aiohttp', 'asyncio', 'ctypes'}))")
    r = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True,
                       check=True)
    assert r.stdout.strip() == "[]"
    assert "aiohttp" not in r.stderr and "asyncio" not in r.stderr
