"""The aiohttp application: middlewares, Docker's response headers, and routes at both path forms."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

from pallet.api import API_VERSION
from pallet.api.server.backend import (
    BuildBackend,
    EngineBackend,
    EngineCounts,
    HostInfo,
    ImageBackend,
    SystemCounts,
    ZeroCounts,
)
from pallet.api.server.middleware import error_middleware, version_middleware
from pallet.api.server.versions import VERSION_PREFIX

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

HOST_KEY: web.AppKey[HostInfo] = web.AppKey("host", HostInfo)
COUNTS_KEY: web.AppKey[SystemCounts] = web.AppKey("counts", SystemCounts)
IMAGES_KEY: web.AppKey[ImageBackend] = web.AppKey("images", ImageBackend)
ENGINE_KEY: web.AppKey[EngineBackend] = web.AppKey("engine", EngineBackend)
BUILD_KEY: web.AppKey[BuildBackend] = web.AppKey("build", BuildBackend)


class Router:
    """Adds each route twice, bare and under the `/vX.Y` prefix, as dockerd's router does."""

    def __init__(self, app: web.Application) -> None:
        self._router = app.router

    def add(self, method: str, path: str, handler: Handler) -> None:
        for prefix in ("", VERSION_PREFIX):
            self._router.add_route(method, prefix + path, handler)


def create_app(host: HostInfo, counts: SystemCounts | None = None, *,
               images: ImageBackend | None = None, engine: EngineBackend | None = None,
               client_max_size: int = 1024 ** 2,
               on_answer: Callable[[], None] | None = None) -> web.Application:
    """The palletd application. Resource route modules each expose `register(router, app)`.
    `images` defaults to an image service on `host.data_root`, opened on first use. `engine` is
    built at start-up (sharing that image service) and closed at cleanup; palletd passes
    `EngineBackend(default_engine_factory(host, ...))`; without one the container routes answer
    503 (an app for other routes' tests touches no container state). `counts` defaults to
    counts from both when an engine is given (else zeros). `on_answer` is called as each answer
    starts (palletd's IdleReclaim.note, pallet/daemon/idle.py)."""
    from pallet.api.server.routes import archive as archive_routes
    from pallet.api.server.routes import build as build_routes
    from pallet.api.server.routes import containers as container_routes
    from pallet.api.server.routes import events as event_routes
    from pallet.api.server.routes import exec as exec_routes
    from pallet.api.server.routes import images as image_routes
    from pallet.api.server.routes import networks as network_routes
    from pallet.api.server.routes import registry as registry_routes
    from pallet.api.server.routes import stats as stats_routes
    from pallet.api.server.routes import system
    from pallet.api.server.routes import volumes as volume_routes

    app = web.Application(middlewares=[error_middleware, version_middleware, event_routes.image_events],
                          client_max_size=client_max_size)
    app[HOST_KEY] = host
    app[IMAGES_KEY] = images if images is not None else ImageBackend(host.data_root)
    app[ENGINE_KEY] = engine if engine is not None else EngineBackend()
    app[BUILD_KEY] = BuildBackend()
    if counts is None:
        counts = EngineCounts(app[ENGINE_KEY], app[IMAGES_KEY]) if engine is not None else ZeroCounts()
    app[COUNTS_KEY] = counts

    async def start_engine(app: web.Application) -> None:
        await asyncio.to_thread(app[ENGINE_KEY].start, app[IMAGES_KEY])
        await asyncio.to_thread(app[IMAGES_KEY].enforce_policy)

    async def close_backends(app: web.Application) -> None:
        # The builder and the engine first: they use the image service.
        app[BUILD_KEY].close()
        await asyncio.to_thread(app[ENGINE_KEY].close)
        app[IMAGES_KEY].close()

    app.on_startup.append(start_engine)
    app.on_cleanup.append(close_backends)
    server_header = f"Pallet/{host.version} ({host.os_type})"

    async def docker_headers(request: web.Request, response: web.StreamResponse) -> None:
        # dockerd's version middleware sets these on every answer, errors included.
        response.headers["Server"] = server_header
        response.headers["Api-Version"] = API_VERSION
        response.headers["Ostype"] = host.os_type
        if on_answer is not None:
            on_answer()

    app.on_response_prepare.append(docker_headers)
    router = Router(app)
    system.register(router)
    image_routes.register(router)
    container_routes.register(router)
    exec_routes.register(router)
    volume_routes.register(router)
    archive_routes.register(router)
    network_routes.register(router)
    build_routes.register(router)
    event_routes.register(router)
    stats_routes.register(router)
    registry_routes.register(router)
    return app


def default_engine_factory(host: HostInfo, *, cgroup_parent: str = "/pallet",
                           runtimes: dict[str, list[str]] | None = None,
                           monitor: str | None = None) -> Callable[..., object]:
    """Builds the daemon's Engine on `host`'s roots with its default runtime; palletd passes
    its --cgroup-parent and configured runtimes."""

    def build(image_service: object) -> object:
        from pallet.engine.containers import Engine

        return Engine(host.data_root, host.exec_root, runtime=host.default_runtime, runtimes=runtimes,
                      cgroup_parent=cgroup_parent, images=image_service, monitor=monitor)

    return build
