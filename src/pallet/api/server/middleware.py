"""The middlewares every request passes: errors to `{"message"}` (outermost), then the API version.

Ordering matters: the error middleware wraps the version check, so a version out of range is
answered in Docker's JSON like any other error, and a bug in a handler becomes a logged 500
while the daemon keeps serving.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from pallet.api.server.errors import error_response, status_for
from pallet.api.server.versions import negotiate
from pallet.errors import PalletError

log = logging.getLogger("pallet.api")
# `palletd -D`: one line per request with its status and the time the daemon spent on it, from
# the first middleware to the handler's return (for a hijacked or streamed answer, until the
# stream ends). dockerd logs "Calling POST /v1.50/containers/create" at debug level; the time is
# what `pallet run` latency work needs (docs/design/daemon.md "Where the time goes").
timing_log = logging.getLogger("pallet.api.timing")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# aiohttp's own refusals, worded as dockerd words them (gorilla/mux NotFoundHandler answers
# "page not found" for unknown paths; api/server/router_swapper.go).
_HTTP_MESSAGES = {404: "page not found", 405: "method not allowed"}


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not timing_log.isEnabledFor(logging.DEBUG):
        return await _answer(request, handler)
    start = time.perf_counter()
    status = 500
    try:
        response = await _answer(request, handler)
        status = response.status
        return response
    finally:
        timing_log.debug("%s %s %d %.1f ms", request.method, request.path_qs, status,
                         (time.perf_counter() - start) * 1000)


async def _answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:  # redirects and the like pass through untouched
            raise
        message = _HTTP_MESSAGES.get(exc.status) or exc.text or exc.reason
        resp = error_response(exc.status, message)
        for name in ("Allow", "Retry-After"):
            if name in exc.headers:
                resp.headers[name] = exc.headers[name]
        return resp
    except PalletError as exc:
        status = status_for(exc)
        if status >= 500:
            log.error("%s %s: %s", request.method, request.path, exc)
        else:
            log.debug("%s %s: %d %s", request.method, request.path, status, exc)
        return error_response(status, str(exc))
    except (ConnectionResetError, BrokenPipeError):
        # The client went away mid-stream; nothing to answer.
        raise
    except Exception as exc:
        log.exception("%s %s: internal error", request.method, request.path)
        return error_response(500, f"internal error: {type(exc).__name__}: {exc}")


@web.middleware
async def version_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    negotiate(request.match_info.get("version"))  # 400 before the handler runs
    return await handler(request)


def api_version(request: web.Request) -> str:
    """The API version this request is served at: its `/vX.Y` prefix, or ours when it has none.
    Recomputed rather than stored (cheap, and needs no per-request key)."""
    return negotiate(request.match_info.get("version"))
