"""JSON for Pallet's short-lived commands (pallet-runtime, `pallet`) through `_json`, without `json`.

Importing the `json` package costs ~2-5 ms of every pallet-runtime call and `pallet` command
(json.decoder and json.encoder import `re`, which brings enum, functools and collections), more
than a runtime command's own work. The parsing and encoding themselves are C (Modules/_json.c,
the accelerator `json` uses too); this module drives it directly and gives the same results as
`json.loads` / `json.dumps`, output byte for byte (tests/unit/test_jsonio.py compares them).
Anything outside the fast path (a parse error, a non-string key, an unknown type, bytes in
UTF-16/32 or with a BOM) is handed to the `json` module itself, so errors and their messages
are exactly json's. A low-level module: it imports nothing from pallet, so both the runtime and
the CLI may use it.
"""

from __future__ import annotations

import _json

TYPE_CHECKING = False  # typing costs ~2 ms of start-up; mypy treats this name as typing's
if TYPE_CHECKING:
    from typing import Any

_WS = " \t\n\r"  # JSON's whitespace (RFC 8259 section 2)


class _ScanContext:
    """The attributes _json.make_scanner reads from a JSONDecoder (scanner_new in _json.c),
    set as json.loads() with no options sets them."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}.__getitem__
    memo: dict = {}


_scan = _json.make_scanner(_ScanContext())  # type: ignore[arg-type]  # typeshed wants a JSONDecoder


def _unsupported(o: object) -> object:
    raise _Fallback


class _Fallback(Exception):
    """The fast encoder met something only `json` handles (or reports); json takes over."""


def _encoder(sort_keys: bool, item_sep: str = ", ", key_sep: str = ": "):
    """The C encoder as json.dumps() makes it by default: ensure_ascii, check_circular (a fresh
    markers dict each time: one left half full by an error would see cycles that are not there),
    allow_nan, separators (", ", ": ") unless others are given."""
    return _json.make_encoder({}, _unsupported, _json.encode_basestring_ascii, None, key_sep, item_sep,
                              sort_keys, False, True)


def loads(text: str | bytes | bytearray) -> Any:
    """json.loads(text): a str, or bytes as json reads them (UTF-8 here; json.detect_encoding's
    other cases, a BOM or NUL bytes for UTF-16/32, go to json itself)."""
    if not isinstance(text, str):
        head = bytes(text[:4])
        if b"\x00" in head or head.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")):
            import json

            return json.loads(text)
        try:
            text = text.decode("utf-8", "surrogatepass")  # json.loads' own decode of UTF-8 bytes
        except UnicodeDecodeError:
            import json

            return json.loads(text)  # raises json's own error
    try:
        obj, end = _scan(text, len(text) - len(text.lstrip(_WS)))
        if end == len(text) or not text[end:].strip(_WS):
            return obj
    except Exception:  # json below raises the real error, with json's message
        pass
    import json

    return json.loads(text)


def load_file(path: str) -> Any:
    """json.load() of the file at path (UTF-8, as JSON requires: RFC 8259 section 8.1)."""
    with open(path, encoding="utf-8") as f:
        return loads(f.read())


def dumps(obj: object, indent: int | None = None, sort_keys: bool = False,
          separators: tuple[str, str] | None = None) -> str:
    """json.dumps(obj, indent=indent, sort_keys=sort_keys, separators=separators), same text
    (separators with an indent go to json itself)."""
    try:
        if separators is not None and indent is not None:
            raise _Fallback
        if indent is None:
            return "".join(_encoder(sort_keys, *(separators or (", ", ": ")))(obj, 0))
        out: list[str] = []
        _pretty(obj, " " * indent, "\n", sort_keys, out, 0)
        return "".join(out)
    except (_Fallback, RecursionError, ValueError):
        import json

        return json.dumps(obj, indent=indent, sort_keys=sort_keys, separators=separators)


def _pretty(o: object, step: str, nl: str, sort_keys: bool, out: list[str], depth: int) -> None:
    """json's indented layout (json.encoder._make_iterencode): item separator "," at line ends,
    ": " after keys, "{}" and "[]" for empty containers."""
    if isinstance(o, str):
        out.append(_json.encode_basestring_ascii(o))
    elif o is None or o is True or o is False or isinstance(o, (int, float)):
        out.append("".join(_encoder(False)(o, 0)))  # the C encoder's spelling (int, float, NaN)
    elif isinstance(o, (list, tuple)):
        if not o:
            out.append("[]")
            return
        inner = nl + step * (depth + 1)
        out.append("[")
        for i, v in enumerate(o):
            out.append(inner if i == 0 else "," + inner)
            _pretty(v, step, nl, sort_keys, out, depth + 1)
        out.append(nl + step * depth + "]")
    elif isinstance(o, dict):
        if not o:
            out.append("{}")
            return
        inner = nl + step * (depth + 1)
        out.append("{")
        items = sorted(o.items()) if sort_keys else o.items()
        for i, (k, v) in enumerate(items):
            if not isinstance(k, str):
                raise _Fallback  # json turns int, float, bool and None keys into strings
            out.append((inner if i == 0 else "," + inner) + _json.encode_basestring_ascii(k) + ": ")
            _pretty(v, step, nl, sort_keys, out, depth + 1)
        out.append(nl + step * depth + "}")
    else:
        raise _Fallback
