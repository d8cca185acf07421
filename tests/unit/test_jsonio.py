"""pallet.jsonio gives json's results without importing json: same text, same values, same errors."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pallet import jsonio
from pallet_testlib import python_output

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text()
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(values)
def test_dumps_is_json_dumps_byte_for_byte(value):
    for indent in (None, 1, 2):
        for sort_keys in (False, True):
            assert jsonio.dumps(value, indent=indent, sort_keys=sort_keys) == \
                json.dumps(value, indent=indent, sort_keys=sort_keys)


@settings(max_examples=200, deadline=None)
@given(values, st.sampled_from([(",", ":"), (", ", ": "), (";", "=")]))
def test_dumps_with_separators_is_json_dumps(value, separators):
    assert jsonio.dumps(value, separators=separators) == json.dumps(value, separators=separators)
    assert jsonio.dumps(value, indent=2, separators=separators) == \
        json.dumps(value, indent=2, separators=separators)


@settings(max_examples=300, deadline=None)
@given(values, st.sampled_from(["", " ", "\n\t "]))
def test_loads_reads_what_json_reads(value, ws):
    text = ws + json.dumps(value) + ws
    # Compare as text: NaN is not equal to itself.
    assert json.dumps(jsonio.loads(text)) == json.dumps(json.loads(text))


def test_constants_and_unicode():
    assert math.isnan(jsonio.loads("NaN"))
    assert jsonio.loads('[Infinity, -Infinity]') == [math.inf, -math.inf]
    assert jsonio.loads('"\\u00e9\\ud83d\\ude00"') == "é\U0001F600"
    assert jsonio.dumps({"k": "é"}) == '{"k": "\\u00e9"}'  # ensure_ascii, as json.dumps


@pytest.mark.parametrize("text", ["", "   ", "{", '{"a": }', "[1,]", "{} x", "nul", '{"a" 1}', "'a'",
                                  '"\\x"', "[1] [2]"])
def test_errors_are_jsons_own(text):
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(text)
    with pytest.raises(json.JSONDecodeError) as got:
        jsonio.loads(text)
    assert str(got.value) == str(expected.value)


def test_what_only_json_handles_goes_to_json():
    # Non-string keys become strings, as json spells them.
    assert jsonio.dumps({1: [2], None: 3}) == json.dumps({1: [2], None: 3})
    assert jsonio.dumps({2: [2], False: {}}, indent=2) == json.dumps({2: [2], False: {}}, indent=2)
    # Unknown types fail as in json, with json's message.
    with pytest.raises(TypeError, match="not JSON serializable"):
        jsonio.dumps({"a": {1, 2}})
    with pytest.raises(TypeError, match="not JSON serializable"):
        jsonio.dumps({"a": object()}, indent=2)
    cycle: list = []
    cycle.append(cycle)
    with pytest.raises(ValueError, match="Circular reference"):
        jsonio.dumps(cycle)
    # A failed call leaves nothing behind: the next one is fast-path and right.
    assert jsonio.dumps([[1], [1]]) == "[[1], [1]]"


def test_load_file_reads_utf8(tmp_path):
    path = tmp_path / "config.json"
    path.write_bytes('{"hostname": "caf\u00e9"}'.encode())
    assert jsonio.load_file(str(path)) == {"hostname": "café"}


@settings(max_examples=200, deadline=None)
@given(values, st.sampled_from(["", " ", "\n"]))
def test_loads_reads_utf8_bytes_as_json_does(value, ws):
    data = (ws + json.dumps(value, ensure_ascii=False) + ws).encode("utf-8", "surrogatepass")
    assert json.dumps(jsonio.loads(data)) == json.dumps(json.loads(data))
    assert json.dumps(jsonio.loads(bytearray(data))) == json.dumps(json.loads(bytearray(data)))


@pytest.mark.parametrize("data", ['{"a": "\u00e9"}'.encode("utf-16"), '["x"]'.encode("utf-16-le"),
                                  '["x"]'.encode("utf-32-be"), b'\xef\xbb\xbf{"a": 1}', b"[1]"])
def test_loads_detects_encodings_as_json_does(data):
    assert jsonio.loads(data) == json.loads(data)


@pytest.mark.parametrize("data", [b'"\xff"', b"", b"{", b'["\xc3"]'])
def test_bytes_errors_are_jsons_own(data):
    with pytest.raises(ValueError) as expected:
        json.loads(data)
    with pytest.raises(ValueError) as got:
        jsonio.loads(data)
    assert type(got.value) is type(expected.value)
    assert str(got.value) == str(expected.value)


def test_importing_it_loads_no_json_or_re():

    code = ("import sys\nfrom pallet import jsonio\n"
            "jsonio.loads(jsonio.dumps({'a': [1, 2.5, None]}, indent=2))\n"
            "jsonio.loads(b'{\"k\": \"v\"}')\n"
            "print([m for m in ('json', 're') if m in sys.modules])\n")
    assert python_output(code) == "[]"
