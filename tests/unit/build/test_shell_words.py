"""Variable substitution and quote removal as Docker's shell lexer does them (cases from the
Dockerfile reference's "Environment replacement" and buildkit's shell/envVarTest)."""

from __future__ import annotations

import pytest

from pallet.build.shell import process_word, process_words, split_words
from pallet.errors import InvalidArgument

ENV = {"a": "A", "empty": "", "spaced": "x y", "PATH": "/bin"}


@pytest.mark.parametrize(("text", "want"), [
    ("$a", "A"),
    ("${a}", "A"),
    ("pre${a}post", "preApost"),
    ("$a$a", "AA"),
    ("$unset", ""),
    ("${unset:-def}", "def"),
    ("${empty:-def}", "def"),
    ("${empty-def}", ""),
    ("${unset-def}", "def"),
    ("${a:+alt}", "alt"),
    ("${empty:+alt}", ""),
    ("${empty+alt}", "alt"),
    ("${unset+alt}", ""),
    ("${unset:-$a}", "A"),
    ("${unset:-${a}x}", "Ax"),
    ("\\$a", "$a"),
    ("\\${a}", "${a}"),
    ("'$a'", "$a"),
    ('"$a"', "A"),
    ('"\\$a"', "$a"),
    ('"a\\b"', "a\\b"),          # inside double quotes the escape stays before other characters
    ('"\\""', '"'),
    ("a\\ b", "a b"),
    ("$", "$"),
    ("$1", "$1"),
    ("a$", "a$"),
    ("${PATH}:/usr/bin", "/bin:/usr/bin"),
    ('"${spaced}"', "x y"),
    ("it's", None),                # unterminated single quote
])
def test_process_word(text, want):
    if want is None:
        with pytest.raises(InvalidArgument):
            process_word(text, ENV)
    else:
        assert process_word(text, ENV) == want


def test_required_variables():
    assert process_word("${a:?must}", ENV) == "A"
    with pytest.raises(InvalidArgument, match="must be set"):
        process_word("${unset:?must be set}", ENV)
    with pytest.raises(InvalidArgument, match="empty"):
        process_word("${empty:?empty}", ENV)
    assert process_word("${empty?x}", ENV) == ""


def test_bad_substitutions():
    with pytest.raises(InvalidArgument, match="bad substitution"):
        process_word("${}", ENV)
    with pytest.raises(InvalidArgument, match="missing"):
        process_word("${a:-x", ENV)
    with pytest.raises(InvalidArgument, match="unsupported modifier"):
        process_word("${a/x/y}", ENV)


def test_backtick_escape():
    assert process_word("a`$b", {"b": "B"}, escape="`") == "a$b"
    assert process_word("c:\\dir", {}, escape="`") == "c:\\dir"


def test_process_words_splits_on_unquoted_space_only():
    assert process_words('80/tcp "x y" $spaced', ENV) == ["80/tcp", "x y", "x y"]
    assert process_words("  a   b  ", ENV) == ["a", "b"]
    assert process_words("", ENV) == []
    assert process_words("''", ENV) == [""]


def test_split_words_keeps_quotes():
    assert split_words('a="b c" d=e\\ f \'g h\'') == ['a="b c"', "d=e\\ f", "'g h'"]
    with pytest.raises(InvalidArgument, match="unmatched"):
        split_words('a="b')
