""".dockerignore: which context paths a build leaves out, with Docker's pattern rules.

The rules are those of moby/patternmatcher (used by the docker CLI and dockerd) and
`dockerignore.ReadAll`:

- One pattern per line; lines starting with `#` are comments; surrounding white space is
  trimmed; empty lines are skipped. A leading `!` makes an exception (re-includes).
- Each pattern is cleaned as Go's `filepath.Clean` does (`a//b/./c/..` -> `a/b`; a trailing `/`
  goes), then a leading `/` is dropped: patterns are relative to the context root.
- Matching is Go's `filepath.Match` per path, extended with `**`: `*` is any run of non-`/`
  characters, `?` one non-`/` character, `[...]` a class (`^` negates), `\\` escapes; `**/`
  is any number of leading directories (zero included), a final `**` anything.
- Order matters: the last pattern that matches decides. A pattern also matches a path when it
  matches one of the path's parent directories (`dir` excludes `dir/a/b`).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass

from pallet.errors import InvalidArgument

_ESCAPE = set(".+()|{}$")


def clean(path: str) -> str:
    """Go's filepath.Clean for '/'-separated paths."""
    if not path:
        return "."
    out = posixpath.normpath(path)
    # normpath keeps a leading '//' (POSIX allows it to mean something else); Clean does not.
    if out.startswith("//"):
        out = "/" + out.lstrip("/")
    return out


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """The regular expression patternmatcher compiles a cleaned pattern to."""
    out = ["^"]
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            if i < n and pattern[i] == "*":
                i += 1
                if i < n and pattern[i] == "/":
                    i += 1
                out.append(".*" if i >= n else "(.*/)?")
            else:
                out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch in _ESCAPE:
            out.append("\\" + ch)
        elif ch == "\\":
            if i < n:
                out.append(re.escape(pattern[i]))
                i += 1
            else:
                out.append("\\\\")
        elif ch == "[":
            j = pattern.find("]", i + 1 if i < n and pattern[i] in "^]" else i)
            if j < 0:
                raise InvalidArgument(f"syntax error in pattern {pattern!r}: unterminated [")
            body = pattern[i:j]
            i = j + 1
            neg = body.startswith("^")
            if neg:
                body = body[1:]
            if not body:
                raise InvalidArgument(f"syntax error in pattern {pattern!r}: empty character class")
            cls = "".join("\\" + c if c in "\\[]^" else c for c in body)
            out.append(f"[^{cls}]" if neg else f"[{cls}]")
        else:
            out.append(re.escape(ch))
    out.append("$")
    try:
        return re.compile("".join(out), re.DOTALL)
    except re.error as exc:
        raise InvalidArgument(f"syntax error in pattern {pattern!r}: {exc}") from exc


@dataclass(frozen=True)
class Pattern:
    text: str          # cleaned, without '!'
    exclusion: bool    # a '!' exception
    regex: re.Pattern[str]
    dirs: tuple[str, ...]

    def match(self, path: str) -> bool:
        return self.regex.match(path) is not None


def read_patterns(text: str) -> list[str]:
    """The patterns of a .dockerignore file, in order (dockerignore.ReadAll)."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        neg = line.startswith("!")
        body = line[1:].strip() if neg else line
        if not body:
            continue
        body = clean(body)
        if len(body) > 1 and body.startswith("/"):
            body = body[1:]
        out.append(("!" if neg else "") + body)
    return out


class Matcher:
    """Compiled patterns; `excluded(path)` says whether a context path is left out."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns: list[Pattern] = []
        for raw in patterns:
            neg = raw.startswith("!")
            text = clean(raw[1:] if neg else raw)
            if len(text) > 1 and text.startswith("/"):
                text = text[1:]
            self.patterns.append(Pattern(text, neg, compile_pattern(text), tuple(text.split("/"))))

    @property
    def exclusions(self) -> bool:
        return any(p.exclusion for p in self.patterns)

    def excluded(self, path: str) -> bool:
        """Whether `path` (relative to the context, '/'-separated) matches, last pattern wins."""
        path = clean(path).lstrip("/")
        parents = path.split("/")[:-1]
        matched = False
        for p in self.patterns:
            if p.exclusion != matched:
                continue
            hit = p.match(path)
            if not hit and parents:
                for k in range(1, len(parents) + 1):
                    if p.match("/".join(parents[:k])):
                        hit = True
                        break
            if hit:
                matched = not p.exclusion
        return matched

    def may_include_below(self, directory: str) -> bool:
        """Whether an exception could re-include something under the excluded `directory`
        (a walk must then descend into it; Docker's walker does the same check)."""
        d = clean(directory).lstrip("/") + "/"
        for p in self.patterns:
            if not p.exclusion:
                continue
            if p.text.startswith(d) or "*" in p.text or "?" in p.text or "[" in p.text:
                return True
        return False


__all__ = ["Matcher", "clean", "compile_pattern", "read_patterns"]
