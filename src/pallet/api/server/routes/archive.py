"""Archive routes: `HEAD|GET|PUT /containers/{id}/archive?path=` (v1.50.yaml, `docker cp`).

HEAD and GET carry the path's stat as `X-Docker-Container-Path-Stat` (base64 of JSON
{name, size, mode, mtime, linkTarget}); GET streams an uncompressed tar of the path; PUT extracts
the request body (a tar) into the directory at `path` (`noOverwriteDirNonDir`, `copyUIDGID`).
The engine (pallet.engine.archive) owns path resolution; errors before the first byte get their
own status (404 no such container or path, 400 bad parameters), a failure mid-stream cuts the
connection as export does.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from typing import Any

from aiohttp import web

from pallet.api.server.app import Router
from pallet.api.server.requests import bool_value
from pallet.api.server.routes.containers import _ResponseSink, engine_of
from pallet.api.server.routes.images import _BodyReader
from pallet.errors import InvalidArgument

log = logging.getLogger(__name__)

STAT_HEADER = "X-Docker-Container-Path-Stat"


def register(router: Router) -> None:
    router.add("HEAD", "/containers/{id}/archive", head)
    router.add("GET", "/containers/{id}/archive", get)
    router.add("PUT", "/containers/{id}/archive", put)


def _path(request: web.Request) -> str:
    path = request.query.get("path", "")
    if not path:
        raise InvalidArgument("path is required")
    return path


def stat_header(info: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(info).encode()).decode()


async def head(request: web.Request) -> web.Response:
    from pallet.engine.archive import stat_path

    info = await asyncio.to_thread(stat_path, engine_of(request), request.match_info["id"], _path(request))
    return web.Response(status=200, headers={STAT_HEADER: stat_header(info),
                                             "Content-Type": "application/json"})


async def get(request: web.Request) -> web.StreamResponse:
    from pallet.engine.archive import open_archive

    engine, ref, path = engine_of(request), request.match_info["id"], _path(request)
    loop = asyncio.get_running_loop()
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/x-tar"})
    response.enable_chunked_encoding()

    async def prepare(info: dict[str, Any]) -> None:
        response.headers[STAT_HEADER] = stat_header(info)
        await response.prepare(request)

    def run() -> None:
        with open_archive(engine, ref, path) as (info, write):
            asyncio.run_coroutine_threadsafe(prepare(info), loop).result(60)
            write(_ResponseSink(response, loop))

    try:
        await asyncio.to_thread(run)
    except Exception as exc:
        if not response.prepared:
            raise
        log.error("archive of %s in %s failed after the first byte: %s", path, ref, exc)
        if request.transport is not None:
            request.transport.abort()
        return response
    await response.write_eof()
    return response


async def put(request: web.Request) -> web.Response:
    from pallet.engine.archive import put_archive

    engine, ref, path = engine_of(request), request.match_info["id"], _path(request)
    body = _BodyReader(request, asyncio.get_running_loop())
    await asyncio.to_thread(put_archive, engine, ref, path, body,
                            no_overwrite_dir_non_dir=bool_value(request, "noOverwriteDirNonDir"),
                            copy_uid_gid=bool_value(request, "copyUIDGID"))
    return web.Response(status=200)
