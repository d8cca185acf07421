""".dockerignore patterns: examples from Docker's documentation, and property tests (hypothesis)
comparing pallet.build.ignore against reference implementations written from the documented
semantics: Go's `filepath.Match` (a backtracking matcher, no regular expressions) extended with
`**` as moby/patternmatcher documents it, "the last matching pattern wins, a pattern matching a
parent directory matches its contents", and Go's `filepath.Clean` lexical rules."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pallet.build.ignore import Matcher, clean, read_patterns

# --- reference implementations ------------------------------------------------------------------


def ref_clean(path: str) -> str:
    """Go's filepath.Clean, rule by rule (path/filepath docs): 1. multiple separators -> one;
    2. drop `.` elements; 3. drop an inner `..` with the non-`..` element before it; 4. drop
    `..` that begin a rooted path. An empty result is `.`."""
    rooted = path.startswith("/")
    out: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append("..")
            continue
        out.append(part)
    s = "/".join(out)
    if rooted:
        return "/" + s
    return s or "."


def _class(pattern: str, i: int, ch: str) -> tuple[bool, int]:
    """Match `ch` against the class starting after '[' at pattern[i]; (matched, index after ']')."""
    neg = pattern[i] == "^"
    if neg:
        i += 1
    hit = False
    first = True
    while first or pattern[i] != "]":
        first = False
        lo = pattern[i]
        i += 1
        hi = lo
        if pattern[i] == "-" and pattern[i + 1] != "]":
            hi = pattern[i + 1]
            i += 2
        if lo <= ch <= hi:
            hit = True
    return hit != neg, i + 1


def ref_match(pattern: str, name: str) -> bool:
    """filepath.Match semantics (`*`, `?` never match '/'; `[...]` classes; `\\` escapes) plus
    `**`: `**/` (or `**` before more pattern) matches any run of whole leading directories,
    zero included, and a final `**` anything."""

    def m(p: int, s: int) -> bool:
        if p == len(pattern):
            return s == len(name)
        if pattern.startswith("**", p):
            q = p + 2
            if q < len(pattern) and pattern[q] == "/":
                q += 1
            if q == len(pattern):
                return True
            starts = [s] + [k + 1 for k in range(s, len(name)) if name[k] == "/"]
            return any(m(q, k) for k in starts)
        c = pattern[p]
        if c == "*":
            k = s
            while True:
                if m(p + 1, k):
                    return True
                if k == len(name) or name[k] == "/":
                    return False
                k += 1
        if s == len(name):
            return False
        if c == "?":
            return name[s] != "/" and m(p + 1, s + 1)
        if c == "[":
            hit, after = _class(pattern, p + 1, name[s])
            return hit and m(after, s + 1)
        if c == "\\" and p + 1 < len(pattern):
            return name[s] == pattern[p + 1] and m(p + 2, s + 1)
        return name[s] == c and m(p + 1, s + 1)

    return m(0, 0)


def ref_excluded(patterns: list[str], path: str) -> bool:
    """The last pattern that matches the path or one of its parent directories decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[:k]) for k in range(1, len(parts) + 1)]
    result = False
    for raw in patterns:
        neg = raw.startswith("!")
        pat = ref_clean(raw[1:] if neg else raw)
        if len(pat) > 1 and pat.startswith("/"):
            pat = pat[1:]
        if any(ref_match(pat, c) for c in candidates):
            result = not neg
    return result


# --- strategies -----------------------------------------------------------------------------------

segment = st.text(alphabet="ab.", min_size=1, max_size=3).filter(lambda s: s not in (".", ".."))
paths = st.lists(segment, min_size=1, max_size=4).map("/".join)
pattern_atoms = st.sampled_from(["a", "b", ".", "*", "?", "**", "/", "[ab]", "[^a]", "[a-b]", "\\*"])
patterns = st.lists(pattern_atoms, min_size=1, max_size=6).map("".join).filter(
    lambda p: p.strip("/") != "" and "//" not in p)
pattern_lists = st.lists(st.tuples(st.booleans(), patterns), min_size=1, max_size=4).map(
    lambda items: [("!" if neg else "") + p for neg, p in items])


@settings(max_examples=400, deadline=None)
@given(pattern=patterns, path=paths)
def test_single_pattern_matches_like_the_reference(pattern, path):
    ours = Matcher([pattern]).patterns[0]
    cleaned = ref_clean(pattern)
    if len(cleaned) > 1 and cleaned.startswith("/"):
        cleaned = cleaned[1:]
    assert ours.match(path) == ref_match(cleaned, path), (pattern, path)


@settings(max_examples=400, deadline=None)
@given(pats=pattern_lists, path=paths)
def test_pattern_lists_decide_like_the_reference(pats, path):
    assert Matcher(pats).excluded(path) == ref_excluded(pats, path), (pats, path)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab./", max_size=12))
def test_clean_is_go_filepath_clean(path):
    assert clean(path) == ref_clean(path)


# --- documented examples -----------------------------------------------------------------------------

DOCS = """
# comment
*/temp*
*/*/temp*
temp?
**/*.go
!keep.go
/rooted/
"""


@pytest.mark.parametrize(("path", "excluded"), [
    ("somedir/temporary.txt", True),     # */temp*
    ("somedir/temp", True),
    ("somedir/subdir/temporary.txt", True),  # */*/temp*
    ("tempa", True),                     # temp?
    ("tempab", False),
    ("main.go", True),                   # **/*.go, zero directories
    ("a/b/c/x.go", True),
    ("keep.go", False),                  # the exception comes later
    ("rooted/file", True),               # leading / dropped, trailing / cleaned, parent matches
    ("rootedx", False),
    ("README.md", False),
])
def test_docker_documentation_examples(path, excluded):
    m = Matcher(read_patterns(DOCS))
    assert m.excluded(path) is excluded


def test_read_patterns_cleans_and_keeps_order():
    assert read_patterns("  # c\n\n/a//b/./c/../\n!  x/\n*.md\n") == ["a/b", "!x", "*.md"]


def test_exception_order_and_reinclusion_under_excluded_dir():
    m = Matcher(["docs", "!docs/keep.md"])
    assert m.excluded("docs/a.md") and not m.excluded("docs/keep.md")
    assert m.may_include_below("docs")
    m = Matcher(["!docs/keep.md", "docs"])  # order matters: the later pattern wins
    assert m.excluded("docs/keep.md")
    assert not Matcher(["a"]).may_include_below("a")
