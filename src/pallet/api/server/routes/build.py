"""Build routes: `POST /build` as Docker's classic builder speaks it, `POST /build/prune`, and
Pallet's cache-mount export/import.

POST /build: the body is the context as a tar (plain, gzip, bzip2 or xz), or empty with
`remote=`: a git URL (`URL#ref:subdir`), or an http(s) URL of a tar context or of a lone
Dockerfile (moby's remotecontext rules: a tar by its magic, anything else is the Dockerfile).
Query (v1.50.yaml, ImageBuild): `dockerfile`, `t` (repeatable), `buildargs` (JSON object),
`labels` (JSON object), `nocache`, `target`, `q`, `pull`, `cachefrom` (JSON array),
`networkmode`, `platform`, `rm`, `forcerm`, `version`. `X-Registry-Config` is ignored (base
images are pulled without credentials). RUN steps never become engine containers, so
`rm`/`forcerm` change nothing: their containers are always removed. `version=2` (BuildKit's
session protocol) is refused: the docker CLI must use the classic builder (DOCKER_BUILDKIT=0).
Not Docker: `X-Pallet-Build-Secrets` carries `--secret` values (base64 of a JSON object
id -> base64 content; the header's size bounds them to a few KiB).

The answer is 200 and a JSON-lines stream as dockerd's: `{"stream": "Step 1/5 : ..."}`,
`{"aux": {"ID": "sha256:..."}}`, and errors in-band as
`{"errorDetail": {"message": m, "code": c}, "error": m}` once the stream has started. Bad query
values are answered with 400 before anything starts. A client that goes away cancels the
build: its RUN container is killed, its snapshot removed, and no cache entry is written for
the unfinished step.

POST /build/prune (`all`, `filters` accepted, `keep-storage` ignored):
`{"CachesDeleted": [...], "SpaceReclaimed": N}`.
Pallet only: `GET /pallet/build/cache-mounts` (list), `GET /pallet/build/cache-mounts/export?id=`
(a tar of the mount), `POST /pallet/build/cache-mounts/import?id=` (a tar body replaces it),
`DELETE /pallet/build/cache-mounts?id=` (204).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import os
import secrets
import shutil
import threading
from typing import TYPE_CHECKING, Any

from aiohttp import web

from pallet.api.server.requests import bool_value
from pallet.api.server.streams import progress_line
from pallet.errors import InvalidArgument, NotSupported, PalletError

if TYPE_CHECKING:
    from pallet.api.server.app import Router

CHUNK = 1 << 20


def register(router: Router) -> None:
    router.add("POST", "/build", build)
    router.add("POST", "/build/prune", prune)
    router.add("GET", "/pallet/build/cache-mounts", list_mounts)
    router.add("GET", "/pallet/build/cache-mounts/export", export_mount)
    router.add("POST", "/pallet/build/cache-mounts/import", import_mount)
    router.add("DELETE", "/pallet/build/cache-mounts", remove_mount)


def _builder(request: web.Request) -> Any:
    from pallet.api.server.app import BUILD_KEY, ENGINE_KEY, IMAGES_KEY

    app = request.app
    return app[BUILD_KEY].get(app[IMAGES_KEY], app[ENGINE_KEY])


def _json_param(request: web.Request, name: str, kind: type) -> Any:
    raw = request.query.get(name, "")
    if not raw:
        return kind()
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise InvalidArgument(f"invalid {name} value: not JSON: {exc}") from exc
    if not isinstance(value, kind):
        raise InvalidArgument(f"invalid {name} value: want a JSON {kind.__name__}")
    return value


def _options(request: web.Request) -> Any:
    from pallet.build.builder import BuildOptions

    q = request.query
    if q.get("version", "1") == "2":
        raise NotSupported("BuildKit (version=2) is not supported by Pallet's builder: use the classic "
                           "builder (DOCKER_BUILDKIT=0 docker build ...)")
    build_args = _json_param(request, "buildargs", dict)
    labels = _json_param(request, "labels", dict)
    for what, d in (("buildargs", build_args), ("labels", labels)):
        for k, v in d.items():
            if not isinstance(v, str | None) or (what == "labels" and v is None):
                raise InvalidArgument(f"invalid {what} value for {k!r}: want a string")
    cache_from = _json_param(request, "cachefrom", list)
    network = q.get("networkmode", "") or "default"
    if network not in ("default", "none", "host", "bridge"):
        raise InvalidArgument(f"networkmode {network!r} is not supported for builds (default, none, host)")
    tags = [t for t in q.getall("t", []) if t]
    from pallet.oci.reference import parse_normalized

    for t in tags:
        ref = parse_normalized(t)
        if ref.digest is not None:
            raise InvalidArgument(f"invalid reference format: {t} (a build cannot be tagged with a digest)")
    platform = q.get("platform", "")
    secrets_raw = request.headers.get("X-Pallet-Build-Secrets", "")
    build_secrets: dict[str, bytes] = {}
    if secrets_raw:
        try:
            decoded = json.loads(base64.b64decode(secrets_raw))
            build_secrets = {str(k): base64.b64decode(v) for k, v in decoded.items()}
        except (ValueError, binascii.Error, AttributeError) as exc:
            raise InvalidArgument(f"invalid X-Pallet-Build-Secrets header: {exc}") from exc
    from pallet.api.server.app import HOST_KEY

    insecure = tuple(getattr(request.app[HOST_KEY], "insecure_registries", ()) or ())
    return BuildOptions(dockerfile=q.get("dockerfile", "") or "Dockerfile", tags=tags,
                        insecure_registries=insecure,
                        build_args=build_args, labels=labels, target=q.get("target", ""),
                        no_cache=bool_value(request, "nocache"), cache_from=[str(c) for c in cache_from],
                        network_mode=network, pull=bool_value(request, "pull"), platform=platform,
                        secrets=build_secrets)


class _Body:
    """The request body as a blocking reader for the worker thread that unpacks it."""

    def __init__(self, request: web.Request, loop: asyncio.AbstractEventLoop) -> None:
        self._content = request.content
        self._loop = loop

    def read(self, n: int = -1, /) -> bytes:
        async def more() -> bytes:
            if n < 0:
                return await self._content.read()
            out = bytearray()
            while len(out) < n:
                chunk = await self._content.read(n - len(out))
                if not chunk:
                    break
                out += chunk
            return bytes(out)

        return asyncio.run_coroutine_threadsafe(more(), self._loop).result(300)

    def readable(self) -> bool:
        return True


def _error_line(exc: BaseException) -> bytes:
    msg = str(exc) or type(exc).__name__
    code = getattr(exc, "code", None)
    detail: dict[str, Any] = {"message": msg}
    if isinstance(code, int):
        detail["code"] = code
    return progress_line({"errorDetail": detail, "error": msg})


async def build(request: web.Request) -> web.StreamResponse:
    from pallet.build import context as ctxmod

    options = _options(request)
    quiet = bool_value(request, "q")
    remote = request.query.get("remote", "")
    builder = await asyncio.to_thread(_builder, request)
    loop = asyncio.get_running_loop()
    work = os.path.join(str(builder.cache.tmp), f"ctx-{secrets.token_hex(8)}")
    os.makedirs(work, mode=0o700)
    ctx_dir = os.path.join(work, "context")
    os.mkdir(ctx_dir, 0o755)
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    cancel = threading.Event()
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    def send(item: bytes | None) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: palletd is stopping; stop the build too
            cancel.set()

    def emit(msg: dict[str, Any]) -> None:
        if quiet and "stream" in msg:
            return
        send(progress_line(msg))

    def work_fn() -> None:
        try:
            context_dir = ctx_dir
            if remote and ctxmod.is_git_url(remote):
                context_dir = ctxmod.git_checkout(remote, os.path.join(work, "git"))
            elif remote:
                ctxmod.fetch_remote(remote, ctx_dir, options.dockerfile)
            else:
                ctxmod.extract_context(_Body(request, loop), ctx_dir)
            # The Dockerfile is read before .dockerignore applies: an ignored Dockerfile still
            # builds, but COPY does not see it (Docker's rule for it and for .dockerignore).
            df_path = os.path.realpath(os.path.join(context_dir, options.dockerfile))
            if df_path.startswith(os.path.realpath(context_dir) + os.sep) and os.path.isfile(df_path):
                with open(df_path, "rb") as f:
                    options.dockerfile_text = f.read()
            ctxmod.apply_ignore(context_dir, keep=())
            image_id = builder.build(context_dir, options, emit, cancel)
            if quiet:
                send(progress_line({"stream": f"{image_id}\n"}))
        except PalletError as exc:
            send(_error_line(exc))
        except Exception as exc:  # an unexpected failure still ends the stream with an error line
            import logging

            logging.getLogger("palletd.build").exception("build failed")
            send(_error_line(exc))
        finally:
            send(None)

    await response.prepare(request)
    # A thread of its own, not the default executor: a build holds it for minutes, and the
    # executor's few threads serve every other route.
    task: asyncio.Future[None] = loop.create_future()

    def finish() -> None:
        if not task.done():
            task.set_result(None)

    def thread_main() -> None:
        try:
            work_fn()
        finally:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(finish)

    threading.Thread(target=thread_main, name="pallet-build", daemon=True).start()
    try:
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), 0.25)
            except TimeoutError:
                transport = request.transport
                if transport is None or transport.is_closing():
                    cancel.set()
                continue
            if item is None:
                break
            try:
                await response.write(item)
            except (ConnectionError, RuntimeError):
                cancel.set()
    finally:
        # The client may be gone (the handler is cancelled): stop the build and wait for it,
        # so that its container and snapshot are cleaned up before the context goes.
        if not task.done():
            cancel.set()
        with contextlib.suppress(BaseException):
            await asyncio.shield(task)
        shutil.rmtree(work, ignore_errors=True)
    with contextlib.suppress(ConnectionError, RuntimeError):
        await response.write_eof()
    return response


async def prune(request: web.Request) -> web.Response:
    from pallet.api.server.app import IMAGES_KEY

    everything = bool_value(request, "all")
    builder = await asyncio.to_thread(_builder, request)
    svc = request.app[IMAGES_KEY]
    deleted, space = await asyncio.to_thread(lambda: builder.cache.prune(svc.get(), all=everything))
    return web.json_response({"CachesDeleted": deleted or None, "SpaceReclaimed": space})


async def list_mounts(request: web.Request) -> web.Response:
    builder = await asyncio.to_thread(_builder, request)
    return web.json_response(await asyncio.to_thread(builder.cache.mounts))


async def export_mount(request: web.Request) -> web.StreamResponse:
    mount_id = request.query.get("id", "")
    builder = await asyncio.to_thread(_builder, request)
    await asyncio.to_thread(builder.cache.mount_dir, mount_id, create=False)  # NotFound -> 404 first
    path = os.path.join(str(builder.cache.tmp), f"export-{secrets.token_hex(8)}.tar")
    try:
        with open(path, "wb") as f:
            await asyncio.to_thread(builder.cache.export_mount, mount_id, f)
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/x-tar"})
        await response.prepare(request)
        with open(path, "rb") as f:
            while chunk := await asyncio.to_thread(f.read, CHUNK):
                await response.write(chunk)
        await response.write_eof()
        return response
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


async def import_mount(request: web.Request) -> web.Response:
    mount_id = request.query.get("id", "")
    if not mount_id:
        raise InvalidArgument("import needs ?id=<cache mount id>")
    builder = await asyncio.to_thread(_builder, request)
    body = _Body(request, asyncio.get_running_loop())
    await asyncio.to_thread(builder.cache.import_mount, mount_id, body)
    return web.json_response({"ID": mount_id})


async def remove_mount(request: web.Request) -> web.Response:
    builder = await asyncio.to_thread(_builder, request)
    await asyncio.to_thread(builder.cache.remove_mount, request.query.get("id", ""))
    return web.Response(status=204)
