"""Compose interpolation (`${VAR}`, defaults, required, `$$`) and dotenv parsing."""

from __future__ import annotations

import pytest

from pallet.compose import envfile
from pallet.compose.interpolate import MissingVariable, interpolate, substitute
from pallet.errors import InvalidArgument

ENV = {"SET": "value", "EMPTY": "", "PORT": "8080"}


@pytest.mark.parametrize(("text", "expected"), [
    ("$SET", "value"), ("${SET}", "value"), ("pre-${SET}-post", "pre-value-post"),
    ("$SET/x", "value/x"), ("${UNSET}", ""), ("$UNSET", ""),
    ("${UNSET:-dflt}", "dflt"), ("${EMPTY:-dflt}", "dflt"), ("${EMPTY-dflt}", ""),
    ("${UNSET-dflt}", "dflt"), ("${SET:-dflt}", "value"),
    ("${SET:+alt}", "alt"), ("${EMPTY:+alt}", ""), ("${EMPTY+alt}", "alt"), ("${UNSET+alt}", ""),
    ("$$SET", "$SET"), ("$${SET}", "${SET}"), ("cost: $$5", "cost: $5"),
    ("${UNSET:-${PORT}}", "8080"), ("${UNSET:-${ALSO_UNSET:-deep}}", "deep"),
    ("${UNSET:-a b c}", "a b c"), ("no dollars", "no dollars"),
])
def test_substitute(text, expected):
    assert substitute(text, ENV.get) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("${UNSET:?you must set UNSET}", "required variable UNSET is missing a value in services.web.image: "
                                     "you must set UNSET"),
    ("${EMPTY:?empty is not enough}", "required variable EMPTY is missing a value in services.web.image: "
                                      "empty is not enough"),
    ("${UNSET?}", "required variable UNSET is missing a value in services.web.image"),
])
def test_required_variable_stops_with_its_message(text, message):
    with pytest.raises(MissingVariable) as exc:
        substitute(text, ENV.get, "services.web.image")
    assert str(exc.value) == message


def test_required_set_but_empty_passes_without_colon():
    assert substitute("${EMPTY?must be set}", ENV.get) == ""


@pytest.mark.parametrize("text", ["$1", "${", "${SET", "${1BAD}", "${SET:x}", "trailing $"])
def test_invalid_syntax_names_the_key(text):
    with pytest.raises(InvalidArgument, match=r"invalid interpolation format for services\.a\.command"):
        substitute(text, ENV.get, "services.a.command")


def test_interpolate_walks_values_not_keys_and_reports_paths():
    doc = {"services": {"web": {"image": "busybox:${TAG:-latest}", "ports": ["${PORT}:80", 81],
                                "environment": {"$KEY": "${SET}"}, "init": True}}}
    assert interpolate(doc, ENV.get) == {"services": {"web": {
        "image": "busybox:latest", "ports": ["8080:80", 81], "environment": {"$KEY": "value"},
        "init": True}}}
    with pytest.raises(MissingVariable, match=r"in services\.web\.ports\[1\]: need it"):
        interpolate({"services": {"web": {"ports": [1, "${X:?need it}"]}}}, ENV.get)


def test_dotenv_syntax():
    text = """
# a comment
export A=1
B = spaced value   # trailing comment
C='single $A # kept'
D="double ${A}\\n\\"q\\""
E="multi
line"
F=${A}-${B}
G=hash#inside
H
I=
"""
    got = envfile.parse(text, ".env", {"H": "from-env"}.get)
    assert got == {"A": "1", "B": "spaced value", "C": "single $A # kept", "D": 'double 1\n"q"',
                   "E": "multi\nline", "F": "1-spaced value", "G": "hash#inside", "H": "from-env", "I": ""}


def test_dotenv_missing_lookup_drops_bare_key_and_errors_name_the_line(tmp_path):
    assert envfile.parse("LONE\n", ".env", {}.get) == {}
    with pytest.raises(InvalidArgument, match=r"\.env:2: invalid variable name 'not valid'"):
        envfile.parse("OK=1\nnot valid=2\n", ".env")
    with pytest.raises(InvalidArgument, match="unterminated"):
        envfile.parse("X='open\n", ".env")
    with pytest.raises(InvalidArgument, match="not found"):
        envfile.read(str(tmp_path / "nope.env"))
