"""Reading request input the way dockerd does: JSON bodies and query flags, errors as InvalidArgument."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from pallet.errors import InvalidArgument


async def json_body(request: web.Request, *, default: Any = None) -> Any:
    """The request's JSON body, or `default` when it is empty.

    Like dockerd's httputils.CheckForJSON + ReadJSON: a non-empty body must be declared as
    application/json and parse; otherwise 400 with a message naming the problem.
    """
    raw = await request.read()
    if not raw.strip():
        return default
    ctype = request.content_type
    if ctype not in ("application/json", "application/octet-stream") and not ctype.endswith("+json"):
        # application/octet-stream is what aiohttp reports when no Content-Type was sent; docker-py
        # and the docker CLI always send application/json with a body.
        raise InvalidArgument(f"unsupported Content-Type header ({ctype}): must be 'application/json'")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidArgument(f"invalid JSON: {exc}") from exc


def bool_value(request: web.Request, name: str, default: bool = False) -> bool:
    """A boolean query parameter as dockerd reads it (httputils.BoolValue): absent -> default;
    "", "0", "no", "false", "none" -> False; anything else -> True."""
    if name not in request.query:
        return default
    return request.query[name].strip().lower() not in ("", "0", "no", "false", "none")


def int_value(request: web.Request, name: str, default: int = 0) -> int:
    """An integer query parameter; 400 naming the parameter when it is not one."""
    raw = request.query.get(name, "")
    if raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise InvalidArgument(f"invalid value for {name}: {raw!r} is not an integer") from exc


def parse_filters(raw: str, allowed: Any = None) -> dict[str, list[str]]:
    """Docker's `filters` query value: `{"key": ["v", ...]}` or the old `{"key": {"v": true}}`
    (moby api/types/filters accepts both; a bare string is taken as one value). With `allowed`,
    any other key is refused, as dockerd does per endpoint."""
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise InvalidArgument(f"invalid filters: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidArgument("invalid filters: expected a JSON object")
    out: dict[str, list[str]] = {}
    for key, value in data.items():
        if allowed is not None and key not in allowed:
            raise InvalidArgument(f"invalid filter '{key}'")
        if isinstance(value, dict):
            out[key] = [str(k) for k, on in value.items() if on]
        elif isinstance(value, list):
            out[key] = [str(v) for v in value]
        elif isinstance(value, str):
            out[key] = [value]
        else:
            raise InvalidArgument(f"invalid filter '{key}': expected a list or a map of values")
    return out
