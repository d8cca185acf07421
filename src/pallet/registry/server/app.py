"""The registry's HTTP API (aiohttp): OCI distribution v1.1 under /v2/, search, and the token endpoint.

Routing is one catch-all under /v2/ matched here in distribution's order (registry/api/v2/
routes.go), because repository names contain '/': uploads before blobs, and the name is
validated (names.check_name) before anything else looks at it. Every /v2/ answer carries
`Docker-Distribution-API-Version: registry/2.0`; errors are the spec's JSON (errors.py).

Storage calls that touch the disk run in worker threads (asyncio.to_thread), so a slow fsync never
stalls other requests; blob GETs are served with sendfile (aiohttp FileResponse), Range included.
Uploads stream to disk in 1 MiB pieces, hashed as they arrive, never held whole in memory.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import contextlib
import json
import logging
import platform
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web

from pallet.errors import InvalidArgument, NotFound, PalletError, PermissionDenied
from pallet.oci import mediatypes as mt
from pallet.oci.digest import ALGORITHMS, Digest, Hasher
from pallet.registry.server import manifests as mf
from pallet.registry.server import names, search
from pallet.registry.server.auth import (
    Authorizer,
    challenge,
    parse_basic,
    parse_bearer,
    parse_scope,
    token_grants,
)
from pallet.registry.server.config import RegistryConfig
from pallet.registry.server.errors import RegistryError
from pallet.registry.server.notify import Notifier, make_event
from pallet.registry.server.storage import FilesystemStorage, ManifestRecord, Storage

log = logging.getLogger("pallet.registry")

API_VERSION_HEADER = "Docker-Distribution-API-Version"
API_VERSION = "registry/2.0"
CATALOG_MAX = 1000  # distribution's catalog.maxentries default
REFERRERS_PAGE = 250  # descriptors per referrers page (spec: a Link when more follow)
WRITE_PIECE = 1 << 20
PURGE_INTERVAL = 3600.0
_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
_CONTENT_RANGE = re.compile(r"^(?:bytes[ =])?([0-9]+)-([0-9]+)$")

_ROUTES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^$"), "base"),
    (re.compile(r"^_catalog$"), "catalog"),
    (re.compile(r"^(?P<name>.+)/tags/list$"), "tags"),
    (re.compile(r"^(?P<name>.+)/manifests/(?P<ref>[^/]+)$"), "manifest"),
    (re.compile(r"^(?P<name>.+)/blobs/uploads/?$"), "uploads"),
    (re.compile(r"^(?P<name>.+)/blobs/uploads/(?P<upload>[^/]+)$"), "upload"),
    (re.compile(r"^(?P<name>.+)/blobs/(?P<digest>[^/]+)$"), "blob"),
    (re.compile(r"^(?P<name>.+)/referrers/(?P<digest>[^/]+)$"), "referrers"),
]
_METHODS = {
    "base": {"GET", "HEAD"}, "catalog": {"GET"}, "tags": {"GET"},
    "manifest": {"GET", "HEAD", "PUT", "DELETE"}, "uploads": {"POST"},
    "upload": {"GET", "PATCH", "PUT", "DELETE"}, "blob": {"GET", "HEAD", "DELETE"}, "referrers": {"GET"},
}


def _needs(kind: str, method: str) -> frozenset[str]:
    """The actions a request needs on its repository (distribution's auth access records)."""
    if method in ("GET", "HEAD") and kind not in ("uploads", "upload"):  # an upload's status is push's
        return frozenset({"pull"})
    if method == "DELETE" and kind in ("manifest", "blob"):
        return frozenset({"delete"})
    return frozenset({"pull", "push"})


def _digest(value: str, code: str = "DIGEST_INVALID") -> Digest:
    try:
        return Digest(value)
    except InvalidArgument as exc:
        raise RegistryError(code, str(exc), {"digest": value[:200]}) from None


class Registry:
    """The request handlers, over a Storage; `make_app()` builds the aiohttp application."""

    def __init__(self, storage: Storage, config: RegistryConfig, root: Path) -> None:
        self.storage = storage
        self.config = config
        self.authorizer = Authorizer(config.auth, root) if config.auth else None
        self.notifier = Notifier(config.notifications)
        self.describer = search.Describer(storage)
        self._upload_locks: dict[str, asyncio.Lock] = {}
        self._hashers: dict[str, Hasher] = {}
        self._purger: asyncio.Task[None] | None = None

    # -- application ------------------------------------------------------------------------------
    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._errors_middleware], client_max_size=mf.MAX_MANIFEST_SIZE)
        app.router.add_route("*", "/v2", self._redirect_base)
        app.router.add_route("*", "/v2/{tail:.*}", self._dispatch)
        app.router.add_get("/v1/search", self.search)
        if self.authorizer is not None and self.authorizer.mode == "token":
            app.router.add_get("/token", self.token)
            app.router.add_post("/token", self.token)
        app.on_startup.append(self._on_startup)
        app.on_cleanup.append(self._on_cleanup)
        app.on_response_prepare.append(self._api_version_header)
        return app

    async def _on_startup(self, app: web.Application) -> None:
        await self.notifier.start()
        self._purger = asyncio.create_task(self._purge_loop())

    async def _on_cleanup(self, app: web.Application) -> None:
        if self._purger is not None:
            self._purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purger
        await self.notifier.close()

    async def _purge_loop(self) -> None:
        while True:
            purged = await asyncio.to_thread(self.storage.purge_uploads, self.config.upload_ttl)
            for upload_id in purged:
                self._hashers.pop(upload_id, None)
                self._upload_locks.pop(upload_id, None)
            if purged:
                log.info("removed %d stale upload(s)", len(purged))
            await asyncio.sleep(min(PURGE_INTERVAL, max(self.config.upload_ttl, 1.0)))

    @staticmethod
    async def _api_version_header(request: web.Request, response: web.StreamResponse) -> None:
        if request.path.startswith("/v2"):
            response.headers[API_VERSION_HEADER] = API_VERSION

    @web.middleware
    async def _errors_middleware(self, request: web.Request,
                                 handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                                 ) -> web.StreamResponse:
        try:
            return await handler(request)
        except RegistryError as exc:
            return web.Response(status=exc.status, body=exc.body(), content_type="application/json",
                                headers=exc.headers)
        except web.HTTPException:
            raise
        except ConnectionError as exc:
            # The client went away mid-request (what it sent was rolled back by the handler):
            # not a server error, so no traceback; the answer goes nowhere.
            log.info("%s %s: client went away: %s", request.method, request.path, exc)
            return web.Response(status=400)
        except (OSError, PalletError) as exc:
            # The disk failed us (ENOSPC, EIO, ...) or a record is damaged: say so in the spec's
            # error shape; distribution answers 500 with code UNKNOWN the same way.
            log.exception("%s %s failed", request.method, request.path)
            body = json.dumps({"errors": [{"code": "UNKNOWN", "message": f"internal error: {exc}"}]})
            return web.Response(status=500, text=body, content_type="application/json")

    async def _redirect_base(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPMovedPermanently("/v2/")

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        tail = request.match_info["tail"]
        for pattern, kind in _ROUTES:
            m = pattern.match(tail)
            if m is None:
                continue
            if request.method not in _METHODS[kind]:
                raise RegistryError("UNSUPPORTED", f"{request.method} is not supported here",
                                    headers={"Allow": ", ".join(sorted(_METHODS[kind]))})
            params = m.groupdict()
            name = params.pop("name", None)
            if name is not None:
                names.check_name(name)
            await self._authorize(request, kind, name)
            handler = getattr(self, f"_{kind}_{request.method.lower()}")
            if name is None:
                return await handler(request, **params)
            return await handler(request, name, **params)
        raise RegistryError("UNSUPPORTED", f"no such endpoint: {request.path[:200]}", status=404)

    # -- auth -------------------------------------------------------------------------------------
    def _realm(self, request: web.Request) -> str:
        assert self.authorizer is not None
        if self.authorizer.config.realm:
            return self.authorizer.config.realm
        if self.authorizer.mode == "basic":
            return "Pallet Registry"
        return f"{request.scheme}://{request.host}/token"

    def _unauthorized(self, request: web.Request, message: str, scope: str | None = None,
                      error: str | None = None, code: str = "UNAUTHORIZED") -> RegistryError:
        assert self.authorizer is not None
        header = challenge(self.authorizer.mode, self._realm(request), self.authorizer.config.service,
                           scope, error)
        detail = None
        if scope:
            type_, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            detail = [{"Type": type_, "Name": name, "Action": a} for a in actions.split(",")]
        return RegistryError(code, message, detail, status=401, headers={"WWW-Authenticate": header})

    async def _identify(self, request: web.Request) -> tuple[str | None, dict[str, Any] | None]:
        """(account, token claims) of the caller; RegistryError 401 for bad credentials."""
        auth = self.authorizer
        assert auth is not None
        header = request.headers.get("Authorization")
        if auth.mode == "token":
            token = parse_bearer(header)
            if token is None:
                return None, None
            try:
                claims = auth.check_token(token)
            except PermissionDenied as exc:
                raise self._unauthorized(request, str(exc), error="invalid_token") from None
            return (claims.get("sub") or None), claims
        try:
            return await asyncio.to_thread(auth.authenticate, header), None
        except PermissionDenied as exc:
            raise self._unauthorized(request, str(exc)) from None

    async def _authorize(self, request: web.Request, kind: str, name: str | None) -> None:
        auth = self.authorizer
        request["account"] = None
        if auth is None:
            return
        needs = _needs(kind, request.method)
        scope = None
        if name is not None:
            scope = f"repository:{name}:{','.join(sorted(needs))}"
        elif kind == "catalog":
            scope = "registry:catalog:*"
        try:
            account, claims = await self._identify(request)
        except RegistryError as exc:
            if scope is not None:  # say what to ask for on the next try
                raise self._unauthorized(request, exc.message, scope, "invalid_token"
                                         if auth.mode == "token" else None) from None
            raise
        request["account"] = account
        if auth.mode == "token":
            if claims is None:
                raise self._unauthorized(request, "authentication required", scope)
            if name is not None:
                granted = token_grants(claims, "repository", name)
            elif kind == "catalog":
                granted = frozenset({"pull"}) if token_grants(claims, "registry", "catalog") else frozenset()
                needs = frozenset({"pull"})
            else:
                return  # /v2/: any valid token
            if not needs <= granted:
                raise self._unauthorized(request, "insufficient scope: the token does not grant "
                                         f"{','.join(sorted(needs - granted))}", scope, "insufficient_scope")
            return
        # basic mode
        if name is None:
            if kind == "catalog" and auth.may_pull_anything(account):
                return
            if account is None:
                raise self._unauthorized(request, "authentication required")
            if kind == "catalog":
                raise RegistryError("DENIED", "you may not list the catalog")
            return
        if needs <= auth.allowed(account, name):
            return
        if account is None:
            raise self._unauthorized(request, "authentication required", scope)
        raise RegistryError("DENIED", f"{account} may not {','.join(sorted(needs))} {name}")

    def _may(self, request: web.Request, name: str, action: str) -> bool:
        """Whether the caller (already authorized for its request) may also do `action` on `name`."""
        if self.authorizer is None:
            return True
        if self.authorizer.mode == "token":
            token = parse_bearer(request.headers.get("Authorization"))
            try:
                claims = self.authorizer.check_token(token) if token else {}
            except PermissionDenied:
                return False
            return action in token_grants(claims, "repository", name)
        return action in self.authorizer.allowed(request.get("account"), name)

    # -- base, catalog, tags ----------------------------------------------------------------------
    async def _base_get(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({})

    _base_head = _base_get

    async def _catalog_get(self, request: web.Request) -> web.StreamResponse:
        n = names.parse_n(request.query.get("n"), CATALOG_MAX, CATALOG_MAX)
        repos = await asyncio.to_thread(self.storage.list_repositories)
        if self.authorizer is not None:
            account = request.get("account")
            repos = [r for r in repos if "pull" in self.authorizer.allowed(account, r)]
        page, more = names.paginate(repos, n, request.query.get("last"))
        headers = {}
        if more and n:
            headers["Link"] = names.link_header("/v2/_catalog", n, page[-1])
        return web.json_response({"repositories": page}, headers=headers)

    def _require_repo(self, name: str) -> None:
        if not self.storage.repository_exists(name):
            raise RegistryError("NAME_UNKNOWN", f"repository name not known to registry: {name}",
                                {"name": name})

    async def _tags_get(self, request: web.Request, name: str) -> web.StreamResponse:
        self._require_repo(name)
        n = names.parse_n(request.query.get("n"), None, 10_000)
        tags = await asyncio.to_thread(self.storage.list_tags, name)
        page, more = names.paginate(tags, n, request.query.get("last"))
        headers = {}
        if more and n:
            headers["Link"] = names.link_header(f"/v2/{name}/tags/list", n, page[-1])
        return web.json_response({"name": name, "tags": page}, headers=headers)

    # -- blobs ------------------------------------------------------------------------------------
    def _blob_visible(self, name: str, digest: Digest) -> bool:
        """A repository serves its linked blobs and its manifests (distribution's
        linkedBlobStore looks in both), and only while the content exists."""
        linked = self.storage.has_blob_link(name, digest) or \
            self.storage.get_manifest(name, digest) is not None
        return linked and self.storage.stat_blob(digest) is not None

    async def _blob_get(self, request: web.Request, name: str, digest: str) -> web.StreamResponse:
        d = _digest(digest)
        if not self._blob_visible(name, d):
            raise RegistryError("BLOB_UNKNOWN", f"blob unknown to registry: {d}", {"digest": d})
        headers = {"Docker-Content-Digest": d, "Content-Type": mt.OCTET_STREAM,
                   "Cache-Control": "max-age=31536000"}
        path = self.storage.local_blob_path(d)
        if path is not None:
            return web.FileResponse(path, chunk_size=1 << 18, headers=headers)
        size = self.storage.stat_blob(d) or 0
        response = web.StreamResponse(headers={**headers, "Content-Length": str(size)})
        await response.prepare(request)
        if request.method != "HEAD":
            f = await asyncio.to_thread(self.storage.open_blob, d)
            try:
                while chunk := await asyncio.to_thread(f.read, WRITE_PIECE):
                    await response.write(chunk)
            finally:
                f.close()
        await response.write_eof()
        return response

    _blob_head = _blob_get

    async def _blob_delete(self, request: web.Request, name: str, digest: str) -> web.StreamResponse:
        d = _digest(digest)
        if not self.config.delete_enabled:
            raise RegistryError("UNSUPPORTED", "deletion is disabled on this registry")
        try:
            await asyncio.to_thread(self.storage.unlink_blob, name, d)
        except NotFound:
            raise RegistryError("BLOB_UNKNOWN", f"blob unknown to registry: {d}", {"digest": d}) from None
        self._publish(request, "delete", name, mt.OCTET_STREAM, d, 0)
        return web.Response(status=202, headers={"Docker-Content-Digest": d, "Content-Length": "0"})

    # -- uploads ----------------------------------------------------------------------------------
    def _lock(self, upload_id: str) -> asyncio.Lock:
        lock = self._upload_locks.get(upload_id)
        if lock is None:
            lock = self._upload_locks[upload_id] = asyncio.Lock()
        return lock

    @staticmethod
    def _upload_headers(name: str, upload_id: str, size: int) -> dict[str, str]:
        # distribution writes "0-0" for an empty session too (registry/handlers/blobupload.go).
        return {"Location": f"/v2/{name}/blobs/uploads/{upload_id}", "Range": f"0-{max(size - 1, 0)}",
                "Docker-Upload-UUID": upload_id}

    async def _upload_info(self, name: str, upload_id: str) -> dict[str, Any]:
        try:
            return await asyncio.to_thread(self.storage.upload_info, name, upload_id)
        except NotFound:
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", f"blob upload unknown: {upload_id[:80]}",
                                {"uuid": upload_id[:80]}) from None

    async def _receive(self, request: web.Request, name: str, upload_id: str, offset: int,
                       algorithm: str, expected: int | None) -> int:
        """Append the request body to the session at `offset`; returns the new size. A body cut
        short (client gone, or fewer bytes than its range said) is dropped whole."""
        hasher = self._hashers.pop(upload_id, None)
        if hasher is not None and (hasher.size != offset or hasher.algorithm != algorithm):
            hasher = None
        if hasher is None and offset == 0:
            hasher = Hasher(algorithm)
        f = await asyncio.to_thread(self.storage.open_upload, name, upload_id)
        received = 0

        def write(piece: bytes) -> None:
            f.write(piece)
            if hasher is not None:
                hasher.update(piece)

        try:
            buf = bytearray()
            async for chunk in request.content.iter_chunked(WRITE_PIECE):
                buf += chunk
                if len(buf) >= WRITE_PIECE:
                    await asyncio.to_thread(write, bytes(buf))
                    received += len(buf)
                    buf.clear()
            if buf:
                await asyncio.to_thread(write, bytes(buf))
                received += len(buf)
            await asyncio.to_thread(f.flush)
            if expected is not None and received != expected:
                raise RegistryError("BLOB_UPLOAD_INVALID", f"received {received} bytes of a chunk of "
                                    f"{expected}", {"received": received, "expected": expected})
        except BaseException:
            await asyncio.to_thread(f.close)
            with contextlib.suppress(NotFound, OSError):
                await asyncio.to_thread(self.storage.truncate_upload, name, upload_id, offset)
            raise
        await asyncio.to_thread(f.close)
        if hasher is not None:
            self._hashers[upload_id] = hasher
        return offset + received

    @staticmethod
    def _content_range(request: web.Request, size: int, headers: dict[str, str]) -> int | None:
        """Check Content-Range against the session; the chunk's length when it names one."""
        value = request.headers.get("Content-Range")
        if not value:
            return None
        m = _CONTENT_RANGE.match(value.strip())
        if m is None:
            raise RegistryError("BLOB_UPLOAD_INVALID", f"malformed Content-Range {value[:100]!r}",
                                status=416, headers=headers)
        start, end = int(m.group(1)), int(m.group(2))
        # spec.md "Pushing a blob in chunks": out-of-order chunks get 416.
        if start != size or end < start:
            raise RegistryError("BLOB_UPLOAD_INVALID", f"chunk {start}-{end} does not continue the upload "
                                f"at offset {size}", {"offset": size}, status=416, headers=headers)
        length = end - start + 1
        declared = request.content_length
        if declared is not None and declared != length:
            raise RegistryError("SIZE_INVALID", f"Content-Length {declared} does not match Content-Range "
                                f"{value}", status=416, headers=headers)
        return length

    async def _uploads_post(self, request: web.Request, name: str) -> web.StreamResponse:
        query = request.query
        algorithm = query.get("digest-algorithm", "sha256")
        if algorithm not in ALGORITHMS:
            raise RegistryError("DIGEST_INVALID", f"unsupported digest algorithm {algorithm[:40]!r}")
        if "mount" in query:
            mounted = await self._mount(request, name, query["mount"], query.get("from"))
            if mounted is not None:
                return mounted
        digest = _digest(query["digest"]) if "digest" in query else None
        upload_id = await asyncio.to_thread(self.storage.new_upload, name,
                                            digest.algorithm if digest else algorithm)
        if digest is None:
            async with self._lock(upload_id):
                size = 0
                if request.content_length:  # a body without ?digest= starts the upload
                    size = await self._receive(request, name, upload_id, 0, algorithm, request.content_length)
            return web.Response(status=202, headers=self._upload_headers(name, upload_id, size))
        async with self._lock(upload_id):
            try:
                await self._receive(request, name, upload_id, 0, digest.algorithm, request.content_length)
            except BaseException:
                with contextlib.suppress(NotFound):
                    await asyncio.to_thread(self.storage.cancel_upload, name, upload_id)
                raise
            return await self._finish(request, name, upload_id, digest)

    async def _mount(self, request: web.Request, name: str, mount: str,
                     source: str | None) -> web.StreamResponse | None:
        """Cross-repository mount; None to fall back to a new upload session (spec: 202)."""
        try:
            d = Digest(mount)
            if source is None:
                return None
            names.check_name(source)
        except (InvalidArgument, RegistryError):
            return None
        if not self._may(request, source, "pull") or not self._blob_visible(source, d):
            return None
        await asyncio.to_thread(self.storage.link_blob, name, d)
        size = self.storage.stat_blob(d) or 0
        self._publish(request, "mount", name, mt.OCTET_STREAM, d, size)
        return web.Response(status=201, headers={"Location": f"/v2/{name}/blobs/{d}",
                                                 "Docker-Content-Digest": d, "Content-Length": "0"})

    async def _upload_get(self, request: web.Request, name: str, upload: str) -> web.StreamResponse:
        info = await self._upload_info(name, upload)
        return web.Response(status=204, headers=self._upload_headers(name, upload, int(info["size"])))

    async def _upload_patch(self, request: web.Request, name: str, upload: str) -> web.StreamResponse:
        async with self._lock(upload):
            info = await self._upload_info(name, upload)
            size = int(info["size"])
            length = self._content_range(request, size, self._upload_headers(name, upload, size))
            size = await self._receive(request, name, upload, size, str(info["algorithm"]),
                                       length if length is not None else request.content_length)
            return web.Response(status=202, headers=self._upload_headers(name, upload, size))

    async def _upload_put(self, request: web.Request, name: str, upload: str) -> web.StreamResponse:
        if "digest" not in request.query:
            raise RegistryError("DIGEST_INVALID", "the digest query parameter is required to finish "
                                "an upload")
        digest = _digest(request.query["digest"])
        async with self._lock(upload):
            info = await self._upload_info(name, upload)
            size = int(info["size"])
            length = self._content_range(request, size, self._upload_headers(name, upload, size))
            if request.content_length or request.headers.get("Transfer-Encoding", "").lower() == "chunked":
                await self._receive(request, name, upload, size, digest.algorithm,
                                    length if length is not None else request.content_length)
            return await self._finish(request, name, upload, digest)

    async def _finish(self, request: web.Request, name: str, upload_id: str,
                      digest: Digest) -> web.StreamResponse:
        hasher = self._hashers.pop(upload_id, None)
        self._upload_locks.pop(upload_id, None)
        try:
            size = await asyncio.to_thread(self.storage.finish_upload, name, upload_id, digest, hasher)
        except NotFound:
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", f"blob upload unknown: {upload_id}") from None
        except InvalidArgument as exc:
            raise RegistryError("DIGEST_INVALID", str(exc), {"digest": digest}) from None
        self._publish(request, "push", name, mt.OCTET_STREAM, digest, size)
        return web.Response(status=201, headers={"Location": f"/v2/{name}/blobs/{digest}",
                                                 "Docker-Content-Digest": digest, "Content-Length": "0"})

    async def _upload_delete(self, request: web.Request, name: str, upload: str) -> web.StreamResponse:
        async with self._lock(upload):
            try:
                await asyncio.to_thread(self.storage.cancel_upload, name, upload)
            except NotFound:
                raise RegistryError("BLOB_UPLOAD_UNKNOWN", f"blob upload unknown: {upload[:80]}") from None
        self._hashers.pop(upload, None)
        self._upload_locks.pop(upload, None)
        return web.Response(status=204, headers={"Content-Length": "0"})

    # -- manifests --------------------------------------------------------------------------------
    def _resolve(self, name: str, ref: str) -> ManifestRecord:
        self._require_repo(name)
        if ":" in ref:
            digest: Digest | None = _digest(ref, "MANIFEST_UNKNOWN")
        elif names.is_tag(ref):
            digest = self.storage.get_tag(name, ref)
        else:
            digest = None
        record = self.storage.get_manifest(name, digest) if digest is not None else None
        if record is None:
            raise RegistryError("MANIFEST_UNKNOWN", f"manifest unknown: {name}:{ref[:200]}",
                                {"name": name, "reference": ref[:200]})
        return record

    def _read_manifest(self, digest: Digest) -> bytes:
        with self.storage.open_blob(digest) as f:
            return f.read(mf.MAX_MANIFEST_SIZE + 1)

    def _negotiate(self, request: web.Request, name: str, ref: str, record: ManifestRecord,
                   data: bytes) -> tuple[ManifestRecord, bytes]:
        """Content negotiation for a manifest fetched by tag (../shared/specs/oci-distribution/
        content-negotiation.md). Served as stored when Accept allows it (or is absent, or by
        digest); an index whose type is not accepted is answered with its linux/<host arch>
        child when that child's type is, as distribution does for old clients; otherwise 404."""
        accept = [base for part in request.headers.getall("Accept", [])
                  for item in part.split(",") if (base := mf.base_media_type(item))]
        if ":" in ref or not accept or record.media_type in accept or "*/*" in accept:
            return record, data
        if record.media_type in mt.INDEXES:
            parsed = mf.parse(data, record.media_type)
            for child in parsed.manifests:
                p = child.platform or {}
                if p.get("os") == "linux" and p.get("architecture") == _ARCH and child.media_type in accept:
                    child_record = self.storage.get_manifest(name, child.digest)
                    if child_record is not None:
                        return child_record, self._read_manifest(child.digest)
        raise RegistryError("MANIFEST_UNKNOWN", f"manifest {name}:{ref} is {record.media_type}, which the "
                            f"request does not accept ({', '.join(accept)[:300]})",
                            {"mediaType": record.media_type}, status=404)

    async def _manifest_get(self, request: web.Request, name: str, ref: str) -> web.StreamResponse:
        def load() -> tuple[ManifestRecord, bytes]:
            record = self._resolve(name, ref)
            return self._negotiate(request, name, ref, record, self._read_manifest(record.digest))

        record, data = await asyncio.to_thread(load)
        return web.Response(body=data, headers={
            "Content-Type": record.media_type, "Docker-Content-Digest": record.digest,
            "ETag": f'"{record.digest}"'})

    _manifest_head = _manifest_get

    async def _read_body(self, request: web.Request, limit: int) -> bytes:
        if request.content_length is not None and request.content_length > limit:
            raise RegistryError("MANIFEST_INVALID", f"manifest of {request.content_length} bytes is larger "
                                f"than the {limit} allowed", {"limit": limit}, status=413)
        data = bytearray()
        async for chunk in request.content.iter_chunked(1 << 16):
            data += chunk
            if len(data) > limit:
                raise RegistryError("MANIFEST_INVALID", f"manifest is larger than the {limit} bytes allowed",
                                    {"limit": limit}, status=413)
        return bytes(data)

    async def _manifest_put(self, request: web.Request, name: str, ref: str) -> web.StreamResponse:
        by_digest = ":" in ref
        ref_digest = _digest(ref) if by_digest else None
        if not by_digest:
            names.check_tag(ref)
        extra_tags = request.query.getall("tag", []) if by_digest else []
        for tag in extra_tags:
            names.check_tag(tag)
        data = await self._read_body(request, mf.MAX_MANIFEST_SIZE)
        parsed = mf.parse(data, request.headers.get("Content-Type"))
        digest = Digest.from_bytes(data, ref_digest.algorithm if ref_digest else "sha256")
        if ref_digest is not None and digest != ref_digest:
            raise RegistryError("DIGEST_INVALID", f"manifest has digest {digest}, not the {ref_digest} "
                                "in the URL", {"digest": ref_digest})

        def store() -> None:
            for blob in parsed.blobs:
                if not blob.foreign and not self._blob_visible(name, blob.digest):
                    raise RegistryError("MANIFEST_BLOB_UNKNOWN", f"blob unknown to registry: {blob.digest}",
                                        {"digest": blob.digest})
            for child in parsed.manifests:
                if self.storage.get_manifest(name, child.digest) is None:
                    raise RegistryError("MANIFEST_BLOB_UNKNOWN", f"manifest unknown to registry: "
                                        f"{child.digest}", {"digest": child.digest})
            self.storage.put_manifest(name, digest, parsed.media_type, data)
            if parsed.subject is not None:
                self.storage.add_referrer(name, parsed.subject.digest, digest)
            for tag in ([] if by_digest else [ref]) + extra_tags:
                self.storage.set_tag(name, tag, digest)

        await asyncio.to_thread(store)
        headers = {"Location": f"/v2/{name}/manifests/{digest}", "Docker-Content-Digest": digest,
                   "Content-Length": "0"}
        if parsed.subject is not None:
            headers["OCI-Subject"] = parsed.subject.digest
        response = web.Response(status=201, headers=headers)
        for tag in extra_tags:
            response.headers.add("OCI-Tag", tag)
        pushed_tags: list[str | None] = [*([] if by_digest else [ref]), *extra_tags]
        for pushed in pushed_tags or [None]:
            self._publish(request, "push", name, parsed.media_type, digest, len(data), pushed)
        return response

    async def _manifest_delete(self, request: web.Request, name: str, ref: str) -> web.StreamResponse:
        if not self.config.delete_enabled:
            raise RegistryError("UNSUPPORTED", "deletion is disabled on this registry")

        def delete() -> tuple[ManifestRecord, list[str]]:
            record = self._resolve(name, ref)
            if ":" not in ref:
                self.storage.delete_tag(name, ref)
                return record, [ref]
            tags = [t for t in self.storage.list_tags(name) if self.storage.get_tag(name, t) == record.digest]
            for tag in tags:
                with contextlib.suppress(NotFound):
                    self.storage.delete_tag(name, tag)
            with contextlib.suppress(RegistryError, NotFound, OSError):
                parsed = mf.parse(self._read_manifest(record.digest), record.media_type)
                if parsed.subject is not None:
                    self.storage.remove_referrer(name, parsed.subject.digest, record.digest)
            self.storage.delete_manifest(name, record.digest)
            return record, []

        try:
            record, tags = await asyncio.to_thread(delete)
        except NotFound:
            raise RegistryError("MANIFEST_UNKNOWN", f"manifest unknown: {name}:{ref[:200]}") from None
        self._publish(request, "delete", name, record.media_type, record.digest, record.size,
                      tags[0] if tags else None)
        return web.Response(status=202, headers={"Content-Length": "0"})

    # -- referrers --------------------------------------------------------------------------------
    async def _referrers_get(self, request: web.Request, name: str, digest: str) -> web.StreamResponse:
        """spec.md "Listing Referrers": an OCI index of the referrers of `digest`, filtered by
        `artifactType` (then `OCI-Filters-Applied: artifactType`), in pages of at most `n`
        (default and maximum REFERRERS_PAGE) in digest order, with a `Link: <...>; rel="next"`
        to the rest (`last` = the last referrer digest of the page), as tags/list pages."""
        subject = _digest(digest)
        artifact_type = request.query.get("artifactType")
        n = names.parse_n(request.query.get("n"), REFERRERS_PAGE, REFERRERS_PAGE)
        last = request.query.get("last") or None
        if last is not None:
            last = str(_digest(last))

        def collect() -> tuple[list[dict[str, Any]], bool]:
            out: list[dict[str, Any]] = []
            referrers = self.storage.list_referrers(name, subject)  # sorted by digest
            start = 0 if last is None else bisect.bisect_right([str(r) for r in referrers], last)
            for referrer in referrers[start:]:
                record = self.storage.get_manifest(name, referrer)
                if record is None:
                    continue
                try:
                    parsed = mf.parse(self._read_manifest(referrer), record.media_type)
                except (RegistryError, NotFound, OSError):
                    continue
                desc = mf.referrer_descriptor(parsed, referrer, record.size)
                if artifact_type is None or desc.get("artifactType") == artifact_type:
                    if n is not None and len(out) == n:
                        return out, True  # one more matches: the page is full and a next follows
                    out.append(desc)
            return out, False

        descriptors, more = await asyncio.to_thread(collect)
        # spec.md "Listing Referrers": never 404 for a valid digest; an empty index instead.
        headers = {"OCI-Filters-Applied": "artifactType"} if artifact_type is not None else {}
        if more and n:
            link = names.link_header(f"/v2/{name}/referrers/{subject}", n, descriptors[-1]["digest"])
            if artifact_type is not None:
                link = link.replace(">;", f"&artifactType={quote(artifact_type, safe='')}>;", 1)
            headers["Link"] = link
        body = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": descriptors}
        return web.json_response(body, content_type=mt.OCI_INDEX, headers=headers)

    # -- search and token -------------------------------------------------------------------------
    async def search(self, request: web.Request) -> web.StreamResponse:
        query = request.query.get("q", "")
        n, page = search.parse_paging(request.query.get("n"), request.query.get("page"))
        account: str | None = None
        if self.authorizer is not None:
            try:
                account, _ = await self._identify(request)
            except RegistryError:
                account = None  # bad credentials search as anonymous, as Docker Hub does
            if self.authorizer.mode == "token" and account is None:
                creds = parse_basic(request.headers.get("Authorization"))
                if creds is not None:
                    with contextlib.suppress(PermissionDenied):
                        account = await asyncio.to_thread(self.authorizer.authenticate,
                                                          request.headers.get("Authorization"))

        def run() -> dict[str, Any]:
            repos = self.storage.list_repositories()
            if self.authorizer is not None:
                repos = [r for r in repos if "pull" in self.authorizer.allowed(account, r)]
            infos = [self.describer.info(r) for r in repos]
            return search.results_page(query, search.rank(query, infos), n, page)

        return web.json_response(await asyncio.to_thread(run))

    async def token(self, request: web.Request) -> web.StreamResponse:
        """The token endpoint: GET with Basic credentials (distribution docs/spec/auth/token.md), or
        POST of an OAuth2 password grant form (docs/spec/auth/oauth.md; containerd tries it first)."""
        auth = self.authorizer
        assert auth is not None
        if request.method == "POST":
            form = await request.post()
            params = {k: str(v) for k, v in form.items() if isinstance(v, str)}
            scope_values = [str(v) for v in form.getall("scope", []) if isinstance(v, str)]
            grant = params.get("grant_type")
            if grant != "password":
                raise RegistryError("UNSUPPORTED", f"grant_type {str(grant)[:40]!r} is not supported "
                                    "(only password)", status=400)
            pair = f"{params.get('username', '')}:{params.get('password', '')}".encode()
            header: str | None = "Basic " + base64.b64encode(pair).decode()
        else:
            params = dict(request.query)
            scope_values = request.query.getall("scope", [])
            header = request.headers.get("Authorization")
        service = params.get("service")
        if service is not None and service != auth.config.service:
            raise RegistryError("DENIED", f"unknown service {service[:100]!r}", status=400)
        try:
            account = await asyncio.to_thread(auth.authenticate, header)
        except PermissionDenied:
            realm = self._realm(request)
            raise RegistryError("UNAUTHORIZED", "invalid username or password", status=401,
                                headers={"WWW-Authenticate": f'Basic realm="{realm}"'}) from None
        scopes = []
        for value in scope_values:
            for part in value.split(" "):  # several scopes may share one parameter, space-separated
                if part:
                    try:
                        scopes.append(parse_scope(part))
                    except InvalidArgument as exc:
                        raise RegistryError("UNSUPPORTED", str(exc), status=400) from None
        answer = auth.issue_token(account, scopes)
        if request.method == "POST":
            answer["scope"] = " ".join(str(sc) for sc in scopes)
        return web.json_response(answer)

    # -- notifications ----------------------------------------------------------------------------
    def _publish(self, request: web.Request, action: str, name: str, media_type: str, digest: Digest,
                 size: int, tag: str | None = None) -> None:
        if not self.config.notifications:
            return
        kind = "blobs" if media_type == mt.OCTET_STREAM else "manifests"
        base = f"{request.scheme}://{request.host}"
        event = make_event(
            action, repository=name, media_type=media_type, digest=digest, size=size,
            url=f"{base}/v2/{name}/{kind}/{digest}", tag=tag,
            request={"id": str(id(request)), "addr": request.remote or "", "host": request.host,
                     "method": request.method, "useragent": request.headers.get("User-Agent", "")},
            actor=request.get("account"), source={"addr": request.host})
        self.notifier.publish(event)


def build_app(root: Path, config: RegistryConfig, storage: Storage | None = None) -> web.Application:
    """The aiohttp application for a registry rooted at `root` (a FilesystemStorage by default)."""
    if storage is None:
        storage = FilesystemStorage(root)
    return Registry(storage, config, root).make_app()


def startup_cleanup(storage: FilesystemStorage, upload_ttl: float) -> None:
    """Recovery after any stop, kill -9 included: drop temporaries and stale upload sessions."""
    storage.recover()
    started = time.monotonic()
    purged = storage.purge_uploads(upload_ttl)
    if purged:
        log.info("removed %d stale upload(s) in %.1fs", len(purged), time.monotonic() - started)
