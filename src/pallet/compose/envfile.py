"""Dotenv files: the project's `.env`, `--env-file`, and a service's `env_file`.

The syntax Compose reads (compose-go `dotenv`, after godotenv, and the Compose
Specification's "env_file format"):

- one `KEY=VALUE` per line; blank lines and lines starting with `#` are skipped; an
  `export ` prefix is allowed;
- an unquoted value is trimmed and ends at ` #` (an inline comment);
- a single-quoted value is taken literally;
- a double-quoted value may span lines and understands `\\n \\r \\t \\\\ \\"`;
- unquoted and double-quoted values are interpolated (`${VAR}`...) against the variables
  defined above them in the same file, then the lookup given (the environment);
- a lone `KEY` takes its value from the lookup, and is left out when the lookup lacks it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from pallet.errors import InvalidArgument

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", '"': '"', "$": "$"}


def parse(text: str, source: str = "<env>",
          lookup: Callable[[str], str | None] | None = None) -> dict[str, str]:
    """The variables of a dotenv text, in file order; InvalidArgument names the line."""
    from pallet.compose.interpolate import substitute

    out: dict[str, str] = {}

    def resolve(name: str) -> str | None:
        if name in out:
            return out[name]
        return lookup(name) if lookup is not None else None

    i, lines = 0, text.splitlines()
    while i < len(lines):
        lineno, line = i + 1, lines[i].strip()
        i += 1
        if not line or line.startswith("#"):
            continue
        if line.startswith("export ") or line.startswith("export\t"):
            line = line[7:].lstrip()
        key, eq, raw = line.partition("=")
        key = key.strip()
        if not _KEY.fullmatch(key):
            raise InvalidArgument(f"{source}:{lineno}: invalid variable name {key!r}")
        if not eq:
            value = resolve(key)
            if value is not None:
                out[key] = value
            continue
        raw = raw.lstrip()
        if raw.startswith("'"):
            end = raw.find("'", 1)
            while end < 0 and i < len(lines):  # a quoted value may span lines
                raw += "\n" + lines[i]
                i += 1
                end = raw.find("'", 1)
            if end < 0:
                raise InvalidArgument(f"{source}:{lineno}: unterminated single-quoted value for {key}")
            out[key] = raw[1:end]
            continue
        if raw.startswith('"'):
            value, end = _double_quoted(raw)
            while end < 0 and i < len(lines):
                raw += "\n" + lines[i]
                i += 1
                value, end = _double_quoted(raw)
            if end < 0:
                raise InvalidArgument(f"{source}:{lineno}: unterminated double-quoted value for {key}")
            out[key] = substitute(value, resolve, f"{source}:{lineno}")
            continue
        comment = re.search(r"\s#", raw)
        value = (raw[:comment.start()] if comment else raw).strip()
        out[key] = substitute(value, resolve, f"{source}:{lineno}")
    return out


def _double_quoted(raw: str) -> tuple[str, int]:
    """The value inside a leading double quote and the index of the closing quote (-1: none).
    `\\$` stays `$$` so that interpolation leaves a literal dollar."""
    value: list[str] = []
    j = 1
    while j < len(raw):
        c = raw[j]
        if c == "\\" and j + 1 < len(raw):
            nxt = raw[j + 1]
            value.append("$$" if nxt == "$" else _ESCAPES.get(nxt, "\\" + nxt))
            j += 2
            continue
        if c == '"':
            return "".join(value), j
        value.append(c)
        j += 1
    return "", -1


def read(path: str, lookup: Callable[[str], str | None] | None = None) -> dict[str, str]:
    """Parse the file at `path`; a missing or unreadable file is an InvalidArgument naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise InvalidArgument(f"env file {path} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"cannot read env file {path}: {exc}") from exc
    return parse(text, path, lookup)
