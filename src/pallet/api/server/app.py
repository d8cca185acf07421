"""The aiohttp application: middlewares, Docker's response headers, and routes at both path forms."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from pallet.api import API_VERSION
from pallet.api.server.backend import HostInfo, ImageBackend, SystemCounts, ZeroCounts
from pallet.api.server.middleware import error_middleware, version_middleware
from pallet.api.server.versions import VERSION_PREFIX

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

HOST_KEY: web.AppKey[HostInfo] = web.AppKey("host", HostInfo)
COUNTS_KEY: web.AppKey[SystemCounts] = web.AppKey("counts", SystemCounts)
IMAGES_KEY: web.AppKey[ImageBackend] = web.AppKey("images", ImageBackend)


class Router:
    """Adds each route twice, bare and under the `/vX.Y` prefix, as dockerd's router does."""

    def __init__(self, app: web.Application) -> None:
        self._router = app.router

    def add(self, method: str, path: str, handler: Handler) -> None:
        for prefix in ("", VERSION_PREFIX):
            self._router.add_route(method, prefix + path, handler)


def create_app(host: HostInfo, counts: SystemCounts | None = None, *,
               images: ImageBackend | None = None,
               client_max_size: int = 1024 ** 2) -> web.Application:
    """The palletd application. Resource route modules each expose `register(router, app)`.
    `images` defaults to an image service on `host.data_root`, opened on first use."""
    from pallet.api.server.routes import images as image_routes
    from pallet.api.server.routes import system

    app = web.Application(middlewares=[error_middleware, version_middleware],
                          client_max_size=client_max_size)
    app[HOST_KEY] = host
    app[COUNTS_KEY] = counts if counts is not None else ZeroCounts()
    app[IMAGES_KEY] = images if images is not None else ImageBackend(host.data_root)

    async def close_images(app: web.Application) -> None:
        app[IMAGES_KEY].close()

    app.on_cleanup.append(close_images)
    server_header = f"Pallet/{host.version} ({host.os_type})"

    async def docker_headers(request: web.Request, response: web.StreamResponse) -> None:
        # dockerd's version middleware sets these on every answer, errors included.
        response.headers["Server"] = server_header
        response.headers["Api-Version"] = API_VERSION
        response.headers["Ostype"] = host.os_type

    app.on_response_prepare.append(docker_headers)
    router = Router(app)
    system.register(router)
    image_routes.register(router)
    return app
