"""HTTP to one registry: the endpoint (HTTPS; plain HTTP only for insecure registries), answers
to auth challenges (basic, bearer tokens per scope), redirects, and the spec's error bodies.

Why `http.client` in worker threads and not aiohttp: everything a pull or push touches besides
the socket blocks (the content store's fsync'ed writes, SQLite, layer unpacking), so the work
runs in threads anyway; a synchronous client there keeps one call stack from socket to disk,
lets each layer's thread stream straight into its ingest file, and leaves the event loop of
palletd free. Each thread keeps its own keep-alive connection per host (`threading.local`), as
http.client connections are not thread-safe.

Insecure registries follow dockerd (registry/config.go): loopback hosts (localhost, 127.0.0.0/8,
::1) are insecure by default, plus those the daemon names with `--insecure-registry` (host[:port]
or a CIDR). For an insecure registry HTTPS is still tried first and plain HTTP used when the TLS
handshake or the connection fails, as dockerd's endpoint fallback does; a secure registry is only
ever spoken to over verified HTTPS.

Auth (distribution docs/spec/auth/token.md): a request is sent with what is known; a 401's
`WWW-Authenticate` challenge is answered once: `Basic` with the credentials, `Bearer` by fetching
a token from `realm` for `service` and the request's `scope` (GET with basic credentials, or the
OAuth2 POST with an identity token, or a registry token used as is), then the request is
repeated. Tokens are cached per scope for the session.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import ipaddress
import json
import logging
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any, BinaryIO

from pallet.errors import InvalidArgument, NotFound, PalletError, PermissionDenied, Unavailable
from pallet.registry.client.auth import AuthConfig, Challenge, parse_challenges

log = logging.getLogger("pallet.registry.client")

DOCKER_HUB_DOMAIN = "docker.io"
DOCKER_HUB_REGISTRY = "registry-1.docker.io"
USER_AGENT = "pallet (registry client)"
BLOCK = 1 << 20
MAX_REDIRECTS = 5
MAX_ERROR_BODY = 64 << 10

PROBE_TTL = 600.0
Body = bytes | Callable[[], BinaryIO] | None

# host -> (scheme, when found): an insecure registry's scheme is probed once per PROBE_TTL,
# not on every pull (each probe costs a failed TLS handshake and a request).
_PROBED: dict[str, tuple[str, float]] = {}
_PROBED_LOCK = threading.Lock()
_SSL_LOCK = threading.Lock()
_SNIFF: list[ssl.SSLContext] = []


def _tls_sniff_context() -> ssl.SSLContext:
    """A TLS client context that verifies nothing, made once: only for finding out whether an
    insecure registry speaks TLS (Session._probe_tls); no request is ever sent through it."""
    with _SSL_LOCK:
        if not _SNIFF:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            _SNIFF.append(ctx)
        return _SNIFF[0]


def split_host(host: str) -> tuple[str, int | None]:
    """`localhost:5000` -> ("localhost", 5000); `[::1]:5000` -> ("::1", 5000)."""
    if host.startswith("["):
        end = host.find("]")
        name, rest = host[1:end], host[end + 1:]
        return name, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit() and ":" not in name:
        return name, int(port)
    return host, None


def is_insecure(host: str, insecure: Sequence[str] = ()) -> bool:
    """True when `host` may be spoken to over plain HTTP (see the module docstring)."""
    name, _ = split_host(host)
    if name == "localhost":
        return True
    addr: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    with contextlib.suppress(ValueError):
        addr = ipaddress.ip_address(name)
    if addr is not None and addr.is_loopback:
        return True
    for entry in insecure:
        entry = entry.strip().removeprefix("http://").removeprefix("https://").rstrip("/")
        if "/" in entry:
            with contextlib.suppress(ValueError):
                if addr is not None and addr in ipaddress.ip_network(entry, strict=False):
                    return True
            continue
        if entry in (host, name):
            return True
    return False


def registry_host(domain: str) -> str:
    """The host to send API requests to: Docker Hub's API lives on registry-1.docker.io."""
    return DOCKER_HUB_REGISTRY if domain in (DOCKER_HUB_DOMAIN, "index.docker.io") else domain


def error_from(status: int, body: bytes, what: str) -> PalletError:
    """A registry error answer as a Pallet error kind, worded like docker's
    (`manifest unknown: manifest unknown`; distribution registry/api/errcode)."""
    message = ""
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        errors = json.loads(body).get("errors") or []
        parts = []
        for e in errors:
            code = str(e.get("code", "")).lower().replace("_", " ")
            parts.append(f"{code}: {e.get('message', '')}".strip(": ") if code else str(e.get("message", "")))
        message = "; ".join(p for p in parts if p)
    if not message:
        text = body[:200].decode(errors="replace").strip()
        message = f"{status} {http.client.responses.get(status, '')}".strip() + (f": {text}" if text else "")
    full = f"{what}: {message}" if what else message
    if status == 401:
        return PermissionDenied(full if "unauthorized" in message else f"{what}: unauthorized: {message}")
    if status == 403:
        return PermissionDenied(full)
    if status == 404:
        return NotFound(full)
    if status in (400, 405, 411, 413, 416):
        return InvalidArgument(full)
    if status in (429, 502, 503, 504):
        return Unavailable(full)
    return PalletError(full)


class Session:
    """Requests to one registry `domain` (as written in references: `localhost:5000`,
    `docker.io`) with `auth`; safe to use from several threads at once."""

    def __init__(self, domain: str, auth: AuthConfig | None = None, *, insecure: Sequence[str] = (),
                 timeout: float = 60.0, user_agent: str = USER_AGENT,
                 ssl_context: ssl.SSLContext | None = None, host: str | None = None,
                 scheme: str | None = None) -> None:
        self.domain = domain
        self.host = host or registry_host(domain)
        self.auth = auth or AuthConfig()
        self.insecure = is_insecure(self.host, insecure)
        self.timeout = timeout
        self.user_agent = user_agent
        # Made on first HTTPS use: loading the CA store takes ~25 ms, which a pull from a
        # plain-HTTP (insecure, loopback) registry would pay for nothing.
        self._ssl_context = ssl_context
        if scheme not in (None, "https", "http") or (scheme == "http" and not self.insecure):
            raise InvalidArgument(f"registry {self.host}: plain HTTP only for insecure registries")
        self._scheme: str | None = scheme
        self._local = threading.local()
        self._lock = threading.Lock()
        self._tokens: dict[str, str] = {}
        self._basic = False
        self._challenge: Challenge | None = None

    # --- connections ---------------------------------------------------------------------------

    @property
    def _ssl(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            with _SSL_LOCK:  # not self._lock: the scheme probe holds that one while it connects
                if self._ssl_context is None:
                    self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    def _conns(self) -> dict[tuple[str, str], http.client.HTTPConnection]:
        conns = getattr(self._local, "conns", None)
        if conns is None:
            conns = self._local.conns = {}
        return conns

    def _connect(self, scheme: str, host: str) -> http.client.HTTPConnection:
        conns = self._conns()
        conn = conns.get((scheme, host))
        if conn is None:
            if scheme == "https":
                conn = http.client.HTTPSConnection(host, timeout=self.timeout, context=self._ssl,
                                                   blocksize=BLOCK)
            else:
                conn = http.client.HTTPConnection(host, timeout=self.timeout, blocksize=BLOCK)
            conns[(scheme, host)] = conn
        return conn

    def _drop(self, scheme: str, host: str) -> None:
        conn = self._conns().pop((scheme, host), None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        for key in list(self._conns()):
            self._drop(*key)

    @property
    def scheme(self) -> str:
        """https, or http for an insecure registry that does not speak TLS (found on first use)."""
        if self._scheme is None:
            with self._lock:
                if self._scheme is None:
                    self._scheme = self._probe()
        return self._scheme

    def _probe(self) -> str:
        if not self.insecure:
            return "https"
        with _PROBED_LOCK:
            known = _PROBED.get(self.host)
        if known is not None and time.monotonic() - known[1] < PROBE_TTL:
            return known[0]
        scheme = self._probe_tls()
        with _PROBED_LOCK:
            _PROBED[self.host] = (scheme, time.monotonic())
        return scheme

    def _probe_tls(self) -> str:
        # Whether the host speaks TLS at all is asked first with a context that loads no CA
        # store (1.5 ms, against 40 ms for ssl.create_default_context(): the system CA bundle
        # parsed, on the critical path of the first pull of every palletd): a plain-HTTP
        # registry, the usual insecure one, fails that handshake and is answered "http"
        # without ever loading the CAs. A host that does speak TLS is then probed as before,
        # with the verifying context, so which scheme is chosen does not change.
        attempts: tuple[tuple[Callable[[], ssl.SSLContext], bool], ...] = (
            (_tls_sniff_context, False), (lambda: self._ssl, True))
        timeout = min(self.timeout, 10.0)
        for context, ask in attempts:
            try:
                conn = http.client.HTTPSConnection(self.host, timeout=timeout, context=context())
                try:
                    if ask:
                        conn.request("GET", "/v2/", headers={"User-Agent": self.user_agent})
                        conn.getresponse().read()
                    else:
                        conn.connect()
                finally:
                    conn.close()
            except (OSError, http.client.HTTPException) as exc:  # ssl.SSLError is an OSError
                log.debug("registry %s: %s (%s); insecure registry, using HTTP", self.host,
                          "HTTPS failed" if ask else "no TLS", exc)
                return "http"
        return "https"

    def url(self, path: str) -> str:
        return f"{self.scheme}://{self.host}{path}"

    # --- requests ------------------------------------------------------------------------------

    def request(self, method: str, path: str, *, scope: str = "", headers: dict[str, str] | None = None,
                body: Body = None, ok: tuple[int, ...] = (200,), what: str = "") -> http.client.HTTPResponse:
        """Send `method path` (a path on the registry, or an absolute URL it gave us), answering
        auth challenges and following redirects of GET/HEAD; returns the response with an `ok`
        status, its body unread (read it to the end, or `discard` it). Anything else raises
        the matching Pallet error, worded with `what`."""
        url = path if "://" in path else self.url(path)
        if url.startswith("http://") and not self.insecure:
            raise PermissionDenied(f"{what or url}: refusing plain HTTP to {url.split('/')[2]}, a secure "
                                   "registry's address (mark it with --insecure-registry to allow)")
        challenged = False
        redirects = 0
        # Credentials go to the registry itself only: not to another host an upload Location or a
        # redirect names (blob storage, a CDN).
        send_auth = urllib.parse.urlsplit(url).netloc == self.host
        while True:
            hdrs = {"User-Agent": self.user_agent, **(headers or {})}
            if send_auth:
                cred = self._credential(scope)
                if cred:
                    hdrs["Authorization"] = cred
            resp = self._send(method, url, hdrs, body)
            if resp.status == 401 and not challenged and send_auth:
                challenged = True
                challenges = parse_challenges(", ".join(resp.headers.get_all("WWW-Authenticate") or []))
                discard(resp)
                if not self._answer(challenges, scope):
                    raise error_from(401, b"", what or url)
                continue
            if resp.status in (301, 302, 303, 307, 308) and method in ("GET", "HEAD"):
                location = resp.headers.get("Location")
                discard(resp)
                redirects += 1
                if not location or redirects > MAX_REDIRECTS:
                    raise Unavailable(f"{what or url}: too many or empty redirects")
                new = urllib.parse.urljoin(url, location)
                send_auth = urllib.parse.urlsplit(new).netloc == self.host and send_auth
                if new.startswith("http://") and url.startswith("https://"):
                    raise PermissionDenied(f"{what or url}: refusing a redirect from HTTPS to HTTP ({new})")
                url = new
                continue
            if resp.status not in ok:
                data = resp.read(MAX_ERROR_BODY) if method != "HEAD" else b""
                discard(resp)
                raise error_from(resp.status, data, what)
            return resp

    def _send(self, method: str, url: str, headers: dict[str, str], body: Body) -> http.client.HTTPResponse:
        parts = urllib.parse.urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        for attempt in (1, 2):
            conn = self._connect(parts.scheme, parts.netloc)
            payload = body() if callable(body) else body
            try:
                conn.request(method, target, body=payload, headers=headers)
                resp = conn.getresponse()
            except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected,
                    http.client.CannotSendRequest, http.client.ResponseNotReady) as exc:
                # A kept-alive connection the server closed meanwhile: once more on a fresh one.
                self._drop(parts.scheme, parts.netloc)
                if attempt == 2:
                    raise Unavailable(f"{method} {url}: {exc}") from exc
                continue
            except (OSError, http.client.HTTPException) as exc:
                self._drop(parts.scheme, parts.netloc)
                raise Unavailable(f"{method} {url}: {exc}") from exc
            finally:
                if callable(body) and payload is not None and hasattr(payload, "close"):
                    with contextlib.suppress(Exception):
                        payload.close()
            if resp.headers.get("Connection", "").lower() == "close":
                resp.will_close = True
            return resp
        raise AssertionError("unreachable")

    # --- auth ------------------------------------------------------------------------------------

    def _credential(self, scope: str) -> str | None:
        with self._lock:
            token = self._tokens.get(scope)
            basic, challenge = self._basic, self._challenge
        if token:
            return f"Bearer {token}"
        if challenge is not None and challenge.scheme == "bearer":
            # The registry asked for tokens before: get one for this scope up front.
            token = self._fetch_token(challenge, scope)
            with self._lock:
                self._tokens[scope] = token
            return f"Bearer {token}"
        if basic and (self.auth.username or self.auth.password):
            raw = f"{self.auth.username}:{self.auth.password}".encode()
            return "Basic " + base64.b64encode(raw).decode()
        return None

    def _answer(self, challenges: list[Challenge], scope: str) -> bool:
        """Learn from a 401; True when the request is worth repeating."""
        for ch in challenges:
            if ch.scheme == "bearer" and ch.realm:
                # A challenge may name the scope the registry wants (insufficient_scope).
                want = ch.params.get("scope") or scope
                token = self._fetch_token(ch, want)
                with self._lock:
                    self._challenge = ch
                    self._tokens[scope] = token
                return True
        for ch in challenges:
            if ch.scheme == "basic" and (self.auth.username or self.auth.password):
                with self._lock:
                    if self._basic:
                        return False  # the credentials were sent and refused
                    self._basic = True
                return True
        return False

    def _fetch_token(self, ch: Challenge, scope: str) -> str:
        """A bearer token for `scope` from the challenge's realm (token.md, oauth.md)."""
        if self.auth.registry_token:
            return self.auth.registry_token
        realm = urllib.parse.urlsplit(ch.realm)
        if realm.scheme not in ("https", "http") or not realm.netloc:
            raise PermissionDenied(f"registry {self.domain}: bad token realm {ch.realm!r}")
        if realm.scheme == "http" and not is_insecure(realm.netloc) and not self.insecure:
            raise PermissionDenied(f"registry {self.domain}: refusing a token realm over plain HTTP "
                                   f"({ch.realm})")
        service = ch.params.get("service", "")
        scopes = [s for s in scope.split(" ") if s]
        headers = {"User-Agent": self.user_agent}
        if self.auth.identity_token:
            form = {"grant_type": "refresh_token", "refresh_token": self.auth.identity_token,
                    "service": service, "client_id": "pallet", "scope": " ".join(scopes)}
            method, body = "POST", urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            query = realm.query
        else:
            params = [("service", service)] if service else []
            params += [("scope", s) for s in scopes]
            if self.auth.username:
                params.append(("account", self.auth.username))
                raw = f"{self.auth.username}:{self.auth.password}".encode()
                headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
            query = "&".join(q for q in (realm.query, urllib.parse.urlencode(params)) if q)
            method, body = "GET", None
        conn: http.client.HTTPConnection
        if realm.scheme == "https":
            conn = http.client.HTTPSConnection(realm.netloc, timeout=self.timeout, context=self._ssl)
        else:
            conn = http.client.HTTPConnection(realm.netloc, timeout=self.timeout)
        try:
            conn.request(method, (realm.path or "/") + (f"?{query}" if query else ""), body=body,
                         headers=headers)
            resp = conn.getresponse()
            data = resp.read(MAX_ERROR_BODY)
        except (OSError, http.client.HTTPException) as exc:
            raise Unavailable(f"token server {ch.realm}: {exc}") from exc
        finally:
            conn.close()
        if resp.status in (401, 403):
            raise PermissionDenied(f"{self.domain}: unauthorized: incorrect username or password"
                                   if self.auth.username else
                                   f"{self.domain}: unauthorized: authentication required")
        if resp.status != 200:
            raise error_from(resp.status, data, f"token server {ch.realm}")
        try:
            obj: Any = json.loads(data)
            token = obj.get("token") or obj.get("access_token")
        except (ValueError, AttributeError) as exc:
            raise Unavailable(f"token server {ch.realm}: not a JSON token answer") from exc
        if not isinstance(token, str) or not token:
            raise Unavailable(f"token server {ch.realm}: the answer has no token")
        return token

    def login(self) -> None:
        """Check the credentials against the registry (`GET /v2/`, answering its challenge, as
        `docker login` does); PermissionDenied when refused."""
        resp = self.request("GET", "/v2/", what=f"login to {self.domain}", ok=(200,))
        discard(resp)
        if self.auth.username and not (self._basic or self._tokens or self.auth.registry_token):
            # The registry let us in without asking: nothing checked the credentials, as with
            # docker (it reports success too).
            log.info("registry %s requires no authentication", self.domain)


def discard(resp: http.client.HTTPResponse) -> None:
    """Finish with a response so its connection can carry the next request: small bodies are
    read to the end, a large remainder closes the connection instead."""
    try:
        left = resp.length
        if left is None or left <= MAX_ERROR_BODY:
            resp.read()
        else:
            resp.close()
    except (OSError, http.client.HTTPException):
        resp.close()


def read_limited(resp: http.client.HTTPResponse, limit: int, what: str) -> bytes:
    """The whole body of `resp`, refusing more than `limit` bytes (manifests, configs)."""
    if resp.length is not None and resp.length > limit:
        discard(resp)
        raise InvalidArgument(f"{what}: {resp.length} bytes is more than the {limit} allowed")
    try:
        data = resp.read(limit + 1)
    except (OSError, http.client.HTTPException) as exc:
        resp.close()
        raise Unavailable(f"{what}: {exc}") from exc
    if len(data) > limit:
        resp.close()
        raise InvalidArgument(f"{what}: more than the {limit} bytes allowed")
    if not resp.isclosed():
        resp.read()
    return data


__all__ = ["Session", "discard", "error_from", "is_insecure", "read_limited", "registry_host", "split_host"]
