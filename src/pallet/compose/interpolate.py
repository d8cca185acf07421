"""Variable interpolation in Compose files (Compose Specification, "Interpolation").

Every string value (not mapping keys) is scanned for:

    $VAR  ${VAR}          the value, empty when unset
    ${VAR:-default}       default when VAR is unset or empty;  ${VAR-default}: only when unset
    ${VAR:?message}       error when VAR is unset or empty;    ${VAR?message}: only when unset
    ${VAR:+replacement}   replacement when VAR is set and not empty; ${VAR+replacement}: when set
    $$                    a literal $

Defaults, messages and replacements are interpolated themselves, so `${A:-${B}}` nests, as
compose-go's template package allows. A `$` followed by anything else is an error with
docker-compose's hint (escape it as `$$`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pallet.errors import InvalidArgument

Lookup = Callable[[str], str | None]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPS = (":-", ":?", ":+", "-", "?", "+")


class MissingVariable(InvalidArgument):
    """A `${VAR:?message}` whose variable is missing."""


def substitute(text: str, lookup: Lookup, where: str = "") -> str:
    """`text` with its variables replaced; InvalidArgument (naming `where`) for bad syntax or a
    required variable that is missing."""
    if "$" not in text:
        return text
    out: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c != "$":
            out.append(c)
            i += 1
            continue
        nxt = text[i + 1] if i + 1 < n else ""
        if nxt == "$":
            out.append("$")
            i += 2
            continue
        if nxt == "{":
            end = _closing_brace(text, i + 2)
            if end < 0:
                raise _invalid(text, where)
            out.append(_braced(text[i + 2:end], text, lookup, where))
            i = end + 1
            continue
        m = _NAME.match(text, i + 1)
        if not m:
            raise _invalid(text, where)
        out.append(lookup(m.group()) or "")
        i = m.end()
    return "".join(out)


def _closing_brace(text: str, start: int) -> int:
    depth = 1
    j = start
    while j < len(text):
        if text[j] == "$" and j + 1 < len(text) and text[j + 1] == "{":
            depth += 1
            j += 2
            continue
        if text[j] == "}":
            depth -= 1
            if depth == 0:
                return j
        j += 1
    return -1


def _braced(inner: str, text: str, lookup: Lookup, where: str) -> str:
    m = _NAME.match(inner)
    if not m:
        raise _invalid(text, where)
    name, rest = m.group(), inner[m.end():]
    value = lookup(name)
    if not rest:
        return value or ""
    op = next((o for o in _OPS if rest.startswith(o)), None)
    if op is None:
        raise _invalid(text, where)
    arg = rest[len(op):]
    unset, empty = value is None, not value
    if op in (":-", "-"):
        if (empty if op == ":-" else unset):
            return substitute(arg, lookup, where)
        return value or ""
    if op in (":?", "?"):
        if (empty if op == ":?" else unset):
            message = substitute(arg, lookup, where)
            place = f" in {where}" if where else ""
            raise MissingVariable(f"required variable {name} is missing a value{place}: {message}"
                                  if message else f"required variable {name} is missing a value{place}")
        return value or ""
    # ":+" and "+"
    if (not empty) if op == ":+" else (not unset):
        return substitute(arg, lookup, where)
    return ""


def _invalid(text: str, where: str) -> InvalidArgument:
    place = f" for {where}" if where else ""
    return InvalidArgument(f'invalid interpolation format{place}: "{text}"; '
                           "you may need to escape any $ with another $")


def interpolate(obj: Any, lookup: Lookup, path: str = "") -> Any:
    """A copy of a loaded YAML tree with every string value interpolated; errors carry the key
    path (`services.web.environment.A`)."""
    if isinstance(obj, str):
        return substitute(obj, lookup, path)
    if isinstance(obj, dict):
        return {k: interpolate(v, lookup, f"{path}.{k}" if path else str(k)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [interpolate(v, lookup, f"{path}[{i}]") for i, v in enumerate(obj)]
    from pallet.compose.merge import Override

    if isinstance(obj, Override):
        return Override(interpolate(obj.value, lookup, path))
    return obj
