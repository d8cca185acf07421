"""The Dockerfile parser: text to a list of `Instruction`s, with line and column in every error.

It follows the Dockerfile reference (docs.docker.com/reference/dockerfile) and moby/buildkit's
`frontend/dockerfile/parser`:

- Parser directives (`# escape=`, `# syntax=`, `# check=`) are read only at the top, before
  any comment, blank line or instruction; `syntax` and `check` are accepted and recorded (no
  frontend is pulled: the built-in one is used).
- A line ending in the escape character continues on the next; comment lines and blank lines
  inside a continuation are dropped, as Docker does.
- Instructions are case-insensitive; an unknown one is an error (line:column of its word).
- Flags (`--name=value`, `--link`) come first and are checked against the instruction's known
  flags: an unknown flag is an error, never ignored.
- JSON (exec) form is used when the arguments parse as a JSON array of strings; otherwise the
  shell form, kept as written (a malformed array falls back to the shell form, as in Docker).
- Heredocs (`<<EOF`, `<<-EOF` stripping leading tabs, `<<"EOF"`/`<<'EOF'` without expansion,
  several per instruction) for RUN, COPY and ADD: their bodies are the following lines up to the
  delimiter.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from pallet.errors import InvalidArgument

# Instruction -> the flags it takes (the Dockerfile reference, one section per instruction).
FLAGS: dict[str, frozenset[str]] = {
    "FROM": frozenset({"platform"}),
    "RUN": frozenset({"mount", "network", "security"}),
    "CMD": frozenset(),
    "LABEL": frozenset(),
    "MAINTAINER": frozenset(),
    "EXPOSE": frozenset(),
    "ENV": frozenset(),
    "ADD": frozenset({"chown", "chmod", "checksum", "link", "keep-git-dir", "exclude"}),
    "COPY": frozenset({"from", "chown", "chmod", "link", "parents", "exclude"}),
    "ENTRYPOINT": frozenset(),
    "VOLUME": frozenset(),
    "USER": frozenset(),
    "WORKDIR": frozenset(),
    "ARG": frozenset(),
    "ONBUILD": frozenset(),
    "STOPSIGNAL": frozenset(),
    "HEALTHCHECK": frozenset({"interval", "timeout", "start-period", "start-interval", "retries"}),
    "SHELL": frozenset(),
}
# Flags that may be given more than once; boolean flags (no `=value` needed).
_REPEATABLE = frozenset({"mount", "exclude"})
_BOOLEAN = frozenset({"link", "parents", "keep-git-dir"})
_HEREDOC_INSTRUCTIONS = frozenset({"RUN", "COPY", "ADD"})
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
# BuildKit takes the whole word after `<<` (quotes removed) as the delimiter: `<<robots.txt`.
_HEREDOC = re.compile(r"(?<!<)<<(-?)(?:\"([^\"\s]+)\"|'([^'\s]+)'|([A-Za-z_][^\s\"'<>;|&()]*))")


class ParseError(InvalidArgument):
    """A Dockerfile syntax error; the message starts with `Dockerfile:LINE:COL:`."""

    def __init__(self, line: int, col: int, message: str, name: str = "Dockerfile") -> None:
        super().__init__(f"{name}:{line}:{col}: {message}")
        self.line, self.col = line, col


@dataclass(frozen=True)
class Heredoc:
    name: str
    content: str
    expand: bool = True       # an unquoted delimiter: variables in the body expand (RUN leaves it to sh)
    strip_tabs: bool = False  # <<-


@dataclass(frozen=True)
class Instruction:
    """One instruction. `args` is the JSON array for the exec form, else a single string: the
    rest of the line as written (continuations joined, flags removed)."""

    cmd: str
    args: list[str]
    json: bool
    flags: dict[str, list[str]]
    line: int
    original: str
    heredocs: tuple[Heredoc, ...] = ()
    end_line: int = 0

    @property
    def text(self) -> str:
        """The argument text for the shell form ('' for JSON)."""
        return "" if self.json else (self.args[0] if self.args else "")

    def flag(self, name: str, default: str = "") -> str:
        values = self.flags.get(name)
        return values[-1] if values else default


@dataclass
class Dockerfile:
    instructions: list[Instruction]
    escape: str = "\\"
    directives: dict[str, str] = field(default_factory=dict)


def _directives(lines: list[str]) -> tuple[dict[str, str], int]:
    found: dict[str, str] = {}
    i = 0
    for i, raw in enumerate(lines):
        m = _DIRECTIVE.match(raw.strip())
        if m is None:
            return found, i
        key = m.group(1).lower()
        if key not in ("escape", "syntax", "check"):
            return found, i  # an unknown directive is a comment, and ends the directives
        if key in found:
            raise ParseError(i + 1, 1, f"only one {key} parser directive can be used")
        found[key] = m.group(2)
    return found, len(lines)


def _parse_flags(cmd: str, rest: str, lineno: int, col: int) -> tuple[dict[str, list[str]], str, int]:
    flags: dict[str, list[str]] = {}
    allowed = FLAGS[cmd]
    while True:
        stripped = rest.lstrip()
        col += len(rest) - len(stripped)
        rest = stripped
        if not rest.startswith("--"):
            return flags, rest, col
        m = re.match(r"--([A-Za-z][A-Za-z0-9-]*)(=(\S*))?(\s|$)", rest)
        if m is None:
            raise ParseError(lineno, col, f"{cmd}: malformed flag {rest.split()[0]!r}")
        name = m.group(1)
        if name not in allowed:
            raise ParseError(lineno, col, f"unknown flag: --{name} (for {cmd}; it takes "
                                          f"{', '.join('--' + f for f in sorted(allowed)) or 'no flags'})")
        value = m.group(3)
        if value is None:
            if name not in _BOOLEAN:
                raise ParseError(lineno, col, f"{cmd}: flag --{name} needs a value (--{name}=...)")
            value = "true"
        if name in flags and name not in _REPEATABLE:
            raise ParseError(lineno, col, f"{cmd}: flag --{name} given twice")
        flags.setdefault(name, []).append(value)
        col += len(m.group(0).rstrip())
        rest = rest[len(m.group(0).rstrip()):]


def _json_args(text: str) -> list[str] | None:
    s = text.strip()
    if not s.startswith("["):
        return None
    try:
        value = json.loads(s)
    except ValueError:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None
    return value


def parse(text: str | bytes, name: str = "Dockerfile") -> Dockerfile:
    """Parse a Dockerfile; ParseError (an InvalidArgument) names line and column."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidArgument(f"{name}: not UTF-8 text: {exc}") from exc
    text = text.removeprefix("\ufeff")
    lines = text.splitlines()
    directives, i = _directives(lines)
    escape = directives.get("escape", "\\")
    if escape not in ("\\", "`"):
        raise ParseError(1, 1, f"invalid escape token {escape!r} does not match ` or \\", name)
    out: list[Instruction] = []
    n = len(lines)
    while i < n:
        raw = lines[i]
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            i += 1
            continue
        start = i
        col0 = len(raw) - len(raw.lstrip()) + 1
        parts: list[str] = []
        physical = [raw]
        cur = raw.lstrip()
        while True:
            body = cur.rstrip()
            if body.endswith(escape):
                parts.append(body[:-1])
                i += 1
                # Skip comment and blank lines inside a continuation (Docker drops them).
                while i < n and (not lines[i].strip() or lines[i].lstrip().startswith("#")):
                    i += 1
                if i >= n:
                    break
                cur = lines[i]
                physical.append(cur)
                continue
            parts.append(cur)
            break
        i += 1
        logical = "".join(parts)
        m = re.match(r"(\S+)", logical)
        assert m is not None
        word = m.group(1)
        cmd = word.upper()
        if cmd not in FLAGS:
            raise ParseError(start + 1, col0, f"unknown instruction: {word}", name)
        rest = logical[len(word):]
        col = col0 + len(word)
        flags, rest, col = _parse_flags(cmd, rest, start + 1, col) if cmd != "ONBUILD" else ({}, rest, col)
        rest = rest.strip()
        heredocs: list[Heredoc] = []
        js = _json_args(rest) if cmd not in ("ENV", "LABEL", "ARG", "ONBUILD", "USER", "WORKDIR",
                                             "MAINTAINER", "STOPSIGNAL", "EXPOSE", "FROM") else None
        if js is None and cmd in _HEREDOC_INSTRUCTIONS:
            for hm in _HEREDOC.finditer(rest):
                strip_tabs = hm.group(1) == "-"
                quote = hm.group(2) or hm.group(3)
                delim = quote or hm.group(4)
                lines_in: list[str] = []
                while True:
                    if i >= n:
                        raise ParseError(start + 1, col0, f"unterminated heredoc {delim!r}: no line "
                                                          f"'{delim}' before the end of the file", name)
                    line = lines[i]
                    physical.append(line)
                    i += 1
                    check = line.lstrip("\t") if strip_tabs else line
                    if check == delim:
                        break
                    lines_in.append(check)
                heredocs.append(Heredoc(delim, "".join(b + "\n" for b in lines_in), expand=not quote,
                                        strip_tabs=strip_tabs))
        if cmd == "ONBUILD":
            inner = rest.split(None, 1)
            if not inner:
                raise ParseError(start + 1, col, "ONBUILD needs an instruction", name)
            trig = inner[0].upper()
            if trig in ("ONBUILD", "FROM", "MAINTAINER"):
                raise ParseError(start + 1, col, f"{trig} isn't allowed as an ONBUILD trigger", name)
            if trig not in FLAGS:
                raise ParseError(start + 1, col, f"unknown instruction: {inner[0]}", name)
            parse(rest, name)  # the trigger must itself parse
        if not rest and not heredocs and cmd not in ("CMD", "ENTRYPOINT", "SHELL"):
            raise ParseError(start + 1, col0, f"{cmd} requires at least one argument", name)
        args = js if js is not None else [rest]
        original = " ".join(p.strip() for p in parts).strip() if len(parts) > 1 else logical.strip()
        out.append(Instruction(cmd=cmd, args=args, json=js is not None, flags=flags, line=start + 1,
                               original=original, heredocs=tuple(heredocs), end_line=i))
    return Dockerfile(out, escape, directives)


def heredoc_word(word: str) -> str | None:
    """The delimiter if `word` is a whole heredoc marker (`<<EOF`, `<<-"EOF"`), else None."""
    m = _HEREDOC.fullmatch(word)
    return (m.group(2) or m.group(3) or m.group(4)) if m else None


def parse_kv_flag(value: str) -> dict[str, str]:
    """`type=cache,target=/x,id=y,ro` (RUN --mount): comma-separated key=value, bare keys true."""
    out: dict[str, str] = {}
    for item in (v for v in value.split(",") if v):
        k, eq, v = item.partition("=")
        out[k.strip().lower()] = v.strip() if eq else "true"
    return out


__all__ = ["FLAGS", "Dockerfile", "Heredoc", "Instruction", "ParseError", "heredoc_word", "parse",
           "parse_kv_flag"]
