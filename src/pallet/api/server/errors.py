"""The one table from Pallet's error kinds to HTTP statuses (STYLE.md §3), and the JSON body.

Docker answers every error as `{"message": "..."}`; docker-py and the docker CLI print that
message. Statuses follow moby's errdefs/http_helpers.go (FromError):

| kind             | status | note |
|------------------|--------|------|
| NotFound         | 404    | |
| AlreadyExists    | 409    | moby has no separate kind: a name in use is errdefs.Conflict |
| Conflict         | 409    | |
| InvalidArgument  | 400    | |
| NotSupported     | 501    | errdefs.NotImplemented; an unsupported *option* is InvalidArgument (400) |
| PermissionDenied | 403    | errdefs.Forbidden |
| Unavailable      | 503    | |
| PalletError      | 500    | a deliberate error of no finer kind |
| anything else    | 500    | a bug: logged with its traceback, the daemon keeps serving |
"""

from __future__ import annotations

import json

from aiohttp import web

from pallet.errors import (
    AlreadyExists,
    Conflict,
    InvalidArgument,
    NotFound,
    NotSupported,
    PalletError,
    PermissionDenied,
    Unavailable,
)

STATUS_BY_KIND: tuple[tuple[type[PalletError], int], ...] = (
    (NotFound, 404),
    (AlreadyExists, 409),
    (Conflict, 409),
    (InvalidArgument, 400),
    (NotSupported, 501),
    (PermissionDenied, 403),
    (Unavailable, 503),
)


def status_for(exc: BaseException) -> int:
    """The HTTP status for an exception: the table above, 500 for anything else."""
    for kind, status in STATUS_BY_KIND:
        if isinstance(exc, kind):
            return status
    return 500


def error_response(status: int, message: str) -> web.Response:
    """Docker's error body: `{"message": "..."}` with a trailing newline, as dockerd writes it.

    The Content-Type is exactly `application/json`, without `; charset=utf-8`: the docker CLI
    decodes the message only on that exact value (client/request.go checkResponseErr) and
    otherwise prints the raw JSON."""
    return web.Response(status=status, body=(json.dumps({"message": message}) + "\n").encode(),
                        content_type="application/json")
