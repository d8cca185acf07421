"""The `--format` template scanners of pallet.cli.format are the regular expressions they replace
(kept here as the reference), on written and random text: same matches, same groups."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pallet.cli import format as fmt
from pallet_testlib import python_output

FIELD = re.compile(r"\{\{\s*\.(\w+)\s*\}\}")
TOKEN = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)
WORD = re.compile(r'"(?:[^"\\]|\\.)*"|`[^`]*`|\(|\)|\||:=|,|[^\s()|,]+')
HEADERS = {"ID": "CONTAINER ID", "Names": "NAMES"}

# Text made mostly of the characters the expressions care about, plus any character at all.
PIECES = ["{{", "}}", "{", "}", "-", " ", "\n", "\t", "\u00a0", "\u2003", ".", "ID", "Names", "x_1",
          "\u00e9t\u00e9", "\u0661", '"', "\\", "`", "(", ")", "|", ",", ":=", ":", "=", "$v", "json", "a b"]
text = st.lists(st.sampled_from(PIECES) | st.text(max_size=2), max_size=14).map("".join)


def reference_actions(template: str) -> list[tuple[int, int, bool, str, bool]]:
    return [(m.start(), m.end(), bool(m.group(1)), m.group(2), bool(m.group(3)))
            for m in TOKEN.finditer(template)]


def reference_headers(template: str) -> str:
    return FIELD.sub(lambda m: HEADERS.get(m.group(1), m.group(1).upper()), template)


WRITTEN = ["", "{{.ID}}", "{{ .ID }}\t{{.Names}}", "table {{.ID}}\t{{.Image}}", "{{- .A -}}", "{{-.A}}",
           "{{- -}}", "{{ -}}", "{{-\n}}", "{{}}", "{{{.A}}}", "{{.A}", "{{.A", "a}}b{{", "{{.A}}{{.B}}",
           "{{range $k, $v := .Labels}}{{$k}}={{$v}} {{end}}", '{{index .Labels "a b"}}',
           '{{printf "%s \\" x" .ID | upper}}', "{{json .}}", "{{ . }}", "{{.Ünïcode}}", "{{.\u0661}}",
           '"unterminated', '"a\\\nb"', "`raw", "`raw` x", "$x:=.A", "$x := .A", "a,b|c(d)e",
           '"a\\\\"b"', '"\\', "{{/* c */}}"]


@pytest.mark.parametrize("template", WRITTEN)
def test_written_templates(template):
    assert list(fmt._actions(template)) == reference_actions(template)
    assert fmt._field_headers(template, HEADERS) == reference_headers(template)
    assert fmt._words(template) == WORD.findall(template)


@settings(max_examples=600, deadline=None, database=None)
@given(text)
def test_random_text_scans_as_the_expressions_do(template):
    assert list(fmt._actions(template)) == reference_actions(template)
    assert fmt._field_headers(template, HEADERS) == reference_headers(template)
    assert fmt._words(template) == WORD.findall(template)


def test_templates_render_without_re():

    code = ("import sys\n"
            "from pallet.cli.format import execute_template, render\n"
            "out = execute_template('{{range $k, $v := .L}}{{$k}}={{$v | upper}},{{end}} {{json .N}}', "
            "{'L': {'a': 'x', 'b': 'y'}, 'N': [1, 2]})\n"
            "table = render('table {{.ID}}\\t{{.Names}}', ['ID'], {'ID': 'CONTAINER ID', 'Names': 'NAMES'}, "
            "[{'ID': 'abc', 'Names': 'web'}])\n"
            "print(repr(out), repr(table), [m for m in ('re', 'json') if m in sys.modules])\n")
    assert python_output(code) == "'a=X,b=Y, [1,2]' 'CONTAINER ID   NAMES\\nabc            web\\n' []"
