"""The Engine API client the CLI uses: a small HTTP/1.1 client over a UNIX socket, or `http.client`
over TCP with TLS.

Kept to the standard library so that `pallet ps` starts fast (DESIGN.md, STYLE.md §10): no
aiohttp, no asyncio, and on the UNIX socket path not even `http.client` (it imports `email`,
~15 ms of start-up) or `ssl` (~5 ms): `_UnixConnection` writes the request line and headers
itself and reads Content-Length, chunked (RFC 9112 §7.1) or close-delimited bodies. Nor even
`socket`: the C module `_socket` that it wraps has every call this path makes, and `socket.py`
costs ~2 ms (it imports selectors); `_SocketReader` stands in for `socket.makefile`. TCP and TLS
hosts keep `http.client` and `ssl` (and with them `socket`), imported when first used.

Negotiates the API version like the docker CLI (client.NegotiateAPIVersion): ping once, then
speak min(server's Api-Version, ours), never below 1.24's floor guesses. For a UNIX socket the
answer is cached (see "Version cache" below) so that a command costs one round trip, not two.

Where the daemon is, first match wins: the `host` argument (the CLI's -H), $PALLET_HOST, then
$DOCKER_HOST only when $PALLET_USE_DOCKER_HOST=1 (the issue: fall back to DOCKER_HOST only when
asked, so a machine with both engines never talks to the wrong one), then the default socket.

Version cache, format 1: the file `api-versions` in $XDG_RUNTIME_DIR/pallet, else
/run/user/<uid>/pallet, else ~/.cache/pallet. UTF-8 text; the first line is
`pallet-api-versions 1`, then one line per socket, tab-separated:

    <socket path> <st_dev> <st_ino> <st_mtime_ns> <negotiated version>

An entry holds only while the socket file is the one that was pinged: a restarted daemon binds
a new socket file (new inode and mtime), so its first command pings again. A daemon that keeps
its socket across restarts (socket activation) and changed version answers 400 "client version
... is too new/old"; the client then drops the entry, pings and sends the request once more (the
daemon checks the version before it runs anything: api/server/versions.py). A request whose body
is a stream cannot be sent twice, so it never trusts the cache. The file is replaced atomically
(temp file + rename); a lost update only costs a ping. TCP hosts are not cached: nothing there
tells a restarted daemon apart. Each write keeps only the entries whose socket file still exists,
at most MAX_ENTRIES of them (the most recently stored), so that the file stays small: every
command reads it, and a lookup finds its line without parsing the others.
"""

from __future__ import annotations

import _socket
import io
import os
import sys

from pallet import jsonio
from pallet.api import API_VERSION, MIN_API_VERSION, version_tuple
from pallet.errors import (
    Conflict,
    InvalidArgument,
    NotFound,
    NotSupported,
    PalletError,
    PermissionDenied,
    Unavailable,
)

TYPE_CHECKING = False  # typing costs ~3 ms of start-up; mypy treats this name as typing's
if TYPE_CHECKING:
    import http.client
    import ssl
    from collections.abc import Callable, Iterator  # the `collections` package: ~1 ms
    from typing import Any, BinaryIO

DEFAULT_HOST = "unix:///run/pallet/pallet.sock"
DEFAULT_TIMEOUT = 60.0

# Statuses back to kinds: the inverse of pallet.api.server.errors (409 cannot tell AlreadyExists
# from Conflict apart; both come back as Conflict with the daemon's message).
_KIND_BY_STATUS: dict[int, type[PalletError]] = {
    400: InvalidArgument, 403: PermissionDenied, 404: NotFound, 409: Conflict,
    501: NotSupported, 503: Unavailable,
}


class APIError(PalletError):
    """An error answer of no finer kind (500 and others); `status` is the HTTP status."""

    def __init__(self, message: str, status: int = 500) -> None:
        super().__init__(message)
        self.status = status


def error_for(status: int, message: str) -> PalletError:
    """The kind for an error answer; `status` on the exception marks it as the daemon's word
    (the CLI prints those as the docker CLI does: "Error response from daemon: ...")."""
    kind = _KIND_BY_STATUS.get(status)
    exc = kind(message) if kind is not None else APIError(message, status)
    exc.status = status  # type: ignore[attr-defined]
    return exc


class TLSConfig:
    """Client side of mutual TLS, as the docker CLI's --tlsverify --tlscacert --tlscert --tlskey.
    (A plain class: importing dataclasses costs ~5 ms of CLI start-up.)"""

    def __init__(self, ca: str | None = None, cert: str | None = None, key: str | None = None,
                 verify: bool = True) -> None:
        self.ca, self.cert, self.key, self.verify = ca, cert, key, verify

    @classmethod
    def from_env(cls) -> TLSConfig | None:
        """$PALLET_TLS_VERIFY=1 with certificates in $PALLET_CERT_PATH (ca.pem, cert.pem, key.pem)."""
        if os.environ.get("PALLET_TLS_VERIFY", "") in ("", "0", "false"):
            return None
        d = os.environ.get("PALLET_CERT_PATH") or os.path.expanduser("~/.pallet")
        return cls(os.path.join(d, "ca.pem"), os.path.join(d, "cert.pem"), os.path.join(d, "key.pem"))

    def context(self) -> ssl.SSLContext:
        import ssl

        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca)
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert:
            try:
                ctx.load_cert_chain(self.cert, self.key)
            except (OSError, ssl.SSLError) as exc:
                raise InvalidArgument(f"cannot load the client certificate {self.cert} / key {self.key}: "
                                      f"{exc}") from exc
        return ctx


def resolve_host(host: str | None = None, env: dict[str, str] | None = None) -> str:
    e = os.environ if env is None else env
    if host:
        return host
    if e.get("PALLET_HOST"):
        return e["PALLET_HOST"]
    if e.get("PALLET_USE_DOCKER_HOST", "") not in ("", "0", "false") and e.get("DOCKER_HOST"):
        return e["DOCKER_HOST"]
    return DEFAULT_HOST


class _Headers:
    """Response header fields: lookups ignore case, `items()` keeps the daemon's spelling (the
    part of `http.client.HTTPMessage` that callers use)."""

    def __init__(self, fields: list[tuple[str, str]]) -> None:
        self._fields = fields
        self._lower = {k.lower(): v for k, v in fields}

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._lower.get(name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return self._lower[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._lower

    def items(self) -> list[tuple[str, str]]:
        return list(self._fields)


class _UnixResponse:
    """The answer read from a `_UnixConnection`: the subset of `http.client.HTTPResponse` that
    `Response` uses (status, reason, headers, read, read1, line iteration, close). The body ends
    where Content-Length says, at the chunked encoding's last chunk, or when the daemon closes."""

    def __init__(self, fp: Any, method: str) -> None:
        self._fp = fp
        line = fp.readline(65537)
        if not line:
            raise ConnectionResetError("the daemon closed the connection before answering")
        while True:
            parts = line.decode("latin-1").rstrip("\r\n").split(None, 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
                raise APIError(f"the daemon answered a bad status line: {line!r}")
            self.status, self.reason = int(parts[1]), (parts[2] if len(parts) > 2 else "")
            fields = self._read_fields()
            if self.status != 100:  # skip an interim 100 Continue (RFC 9110 §15.2.1)
                break
            line = fp.readline(65537)
        self.headers = _Headers(fields)
        self._chunked = (self.headers.get("Transfer-Encoding") or "").lower().endswith("chunked")
        self._chunk_left = 0
        length = self.headers.get("Content-Length")
        self._left: int | None = int(length) if length is not None and not self._chunked else None
        self._done = method == "HEAD" or self.status in (204, 304) or self._left == 0

    def _read_fields(self) -> list[tuple[str, str]]:
        fields: list[tuple[str, str]] = []
        while True:
            line = self._fp.readline(65537)
            if line in (b"\r\n", b"\n", b""):
                return fields
            name, sep, value = line.decode("latin-1").partition(":")
            if sep:
                fields.append((name.strip(), value.strip()))

    def read1(self, size: int = 32 * 1024) -> bytes:
        """Up to `size` bytes of the body, waiting only for the first; b"" at its end."""
        if self._done or self._fp is None:
            return b""
        if self._chunked:
            if not self._chunk_left:
                line = self._fp.readline(65537)
                try:
                    self._chunk_left = int(line.split(b";")[0], 16)
                except ValueError:
                    raise APIError(f"the daemon sent a bad chunk header: {line!r}") from None
                if not self._chunk_left:
                    self._read_fields()  # trailer section, then the final CRLF
                    self._done = True
                    return b""
            data = self._fp.read1(min(size, self._chunk_left))
            if not data:
                raise ConnectionResetError("the daemon closed the connection inside a chunk")
            self._chunk_left -= len(data)
            if not self._chunk_left:
                self._fp.readline(65537)  # the CRLF after the chunk's data
            return bytes(data)
        if self._left is not None:
            data = self._fp.read1(min(size, self._left))
            if not data:
                raise ConnectionResetError(f"the daemon closed the connection {self._left} bytes "
                                           "before the end of its answer")
            self._left -= len(data)
            self._done = not self._left
            return bytes(data)
        data = self._fp.read1(size)
        self._done = not data
        return bytes(data)

    def read(self) -> bytes:
        """The rest of the body."""
        out = bytearray()
        while chunk := self.read1(256 * 1024):
            out += chunk
        return bytes(out)

    def __iter__(self) -> Iterator[bytes]:
        """The body line by line (b"\\n" kept), each as soon as it is whole."""
        buf = b""
        while chunk := self.read1(64 * 1024):
            buf += chunk
            while (i := buf.find(b"\n")) >= 0:
                line, buf = buf[:i + 1], buf[i + 1:]
                yield line
        if buf:
            yield buf

    def close(self) -> None:
        if self._fp is not None:
            self._fp.close()
            self._fp = None


class _SocketReader(io.RawIOBase):
    """The raw side of a buffered reader on a `_socket.socket` (what `socket.makefile("rb")`
    builds from `socket.SocketIO`). Closing it leaves the socket to its owner."""

    def __init__(self, sock: _socket.socket) -> None:
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        return self._sock.recv_into(buf)

    def fileno(self) -> int:
        return self._sock.fileno()


class _UnixConnection:
    """One HTTP/1.1 exchange on a UNIX socket, with `http.client.HTTPConnection`'s method names
    (connect, request, getresponse, close, sock, blocksize). No keep-alive: the client opens a
    connection per request. A file body goes out in chunked transfer encoding, as http.client
    sends a body of unknown length."""

    def __init__(self, path: str, timeout: float | None) -> None:
        self._path = path
        self.timeout = timeout
        self.sock: _socket.socket | None = None
        self.blocksize = 8192
        self._method = "GET"

    def connect(self) -> None:
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock

    def request(self, method: str, url: str, body: bytes | BinaryIO | None = None,
                headers: dict[str, str] | None = None) -> None:
        if self.sock is None:
            self.connect()
        assert self.sock is not None
        self._method = method
        hdrs = {"Host": "localhost", "Accept-Encoding": "identity", **(headers or {})}
        given = {k.lower() for k in hdrs}
        stream = body is not None and not isinstance(body, bytes | bytearray | memoryview)
        if "content-length" not in given and "transfer-encoding" not in given:
            if stream:
                hdrs["Transfer-Encoding"] = "chunked"
            elif body is not None or method in ("POST", "PUT", "PATCH"):
                hdrs["Content-Length"] = str(len(body or b""))  # type: ignore[arg-type]
        chunked = stream and hdrs.get("Transfer-Encoding") == "chunked"
        head = f"{method} {url} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
        if not stream:
            self.sock.sendall(head.encode("latin-1") + b"\r\n" + bytes(body or b""))  # type: ignore[arg-type]
            return
        self.sock.sendall(head.encode("latin-1") + b"\r\n")
        while block := body.read(self.blocksize):  # type: ignore[union-attr]
            if isinstance(block, str):
                block = block.encode("latin-1")
            self.sock.sendall(b"%X\r\n%b\r\n" % (len(block), block) if chunked else block)
        if chunked:
            self.sock.sendall(b"0\r\n\r\n")

    def getresponse(self) -> _UnixResponse:
        assert self.sock is not None
        fp = io.BufferedReader(_SocketReader(self.sock))
        try:
            return _UnixResponse(fp, self._method)
        except BaseException:
            fp.close()
            raise

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class Response:
    """A streaming answer: read it whole (`json()`, `read()`) or iterate it as it arrives."""

    def __init__(self, raw: http.client.HTTPResponse | _UnixResponse,
                 conn: http.client.HTTPConnection | _UnixConnection) -> None:
        self.raw = raw
        self._conn = conn
        self.status = raw.status
        self.headers = raw.headers

    @property
    def content_type(self) -> str:
        return (self.headers.get("Content-Type") or "").split(";")[0].strip()

    def read(self) -> bytes:
        try:
            return self.raw.read()
        finally:
            self.close()

    def json(self) -> Any:
        data = self.read()
        try:
            return jsonio.loads(data) if data.strip() else None
        except ValueError as exc:  # json.JSONDecodeError, or UnicodeDecodeError for bad UTF-8
            raise APIError(f"the daemon answered invalid JSON: {exc}", self.status) from exc

    def iter_chunks(self, size: int = 32 * 1024) -> Iterator[bytes]:
        try:
            while True:
                chunk = self.raw.read1(size)
                if not chunk:
                    return
                yield chunk
        finally:
            self.close()

    def iter_lines(self) -> Iterator[bytes]:
        try:
            for line in self.raw:
                if line.strip():
                    yield line.rstrip(b"\r\n")
        finally:
            self.close()

    def iter_json(self) -> Iterator[Any]:
        """JSON-lines progress; an in-band `{"error": ...}` is raised as APIError."""
        for line in self.iter_lines():
            obj = jsonio.loads(line)
            if isinstance(obj, dict) and obj.get("error"):
                raise APIError(str(obj["error"]), self.status)
            yield obj

    def iter_frames(self) -> Iterator[tuple[int, bytes]]:
        """(stream id, payload) from a multiplexed stream; see `demux`."""
        return demux(self.iter_chunks())

    def close(self) -> None:
        self.raw.close()
        self._conn.close()


def demux(chunks: Iterator[bytes]) -> Iterator[tuple[int, bytes]]:
    """Split a multiplexed stream (8-byte headers: stream id, 3 zero bytes, big-endian uint32
    size; moby pkg/stdcopy) into (stream id, payload) pairs, whatever the chunk boundaries."""
    import struct  # only the streams that are multiplexed

    buf = bytearray()
    for chunk in chunks:
        buf += chunk
        while len(buf) >= 8:
            stream, size = struct.unpack(">BxxxL", buf[:8])
            if len(buf) < 8 + size:
                break
            yield stream, bytes(buf[8:8 + size])
            del buf[:8 + size]
    if buf:
        raise APIError(f"multiplexed stream ended inside a frame ({len(buf)} bytes left over)")


class PendingRequest:
    """A request sent whose answer is read later (`Client.send`). `resend` sends it again
    (at a freshly negotiated version) when its version came from the cache and the daemon
    turned that version down."""

    def __init__(self, client: Client, conn: http.client.HTTPConnection | _UnixConnection,
                 resend: Callable[[], PendingRequest] | None = None) -> None:
        self._client, self._conn, self._resend = client, conn, resend

    def answered(self, timeout: float) -> bool:
        """True once the daemon has started to answer (waits up to `timeout` seconds)."""
        import select

        sock = self._conn.sock
        return sock is None or bool(select.select([sock], [], [], timeout)[0])

    def response(self, ok: tuple[int, ...] = ()) -> Response:
        try:
            raw = self._conn.getresponse()
        except BaseException as exc:
            self._conn.close()
            raise self._client._connect_error(exc) from exc
        resp = Response(raw, self._conn)
        if resp.status >= 400 and resp.status not in ok:
            message = _error_message(resp)
            if self._resend is not None and self._client._version_refused(resp.status, message):
                return self._resend().response(ok)
            raise error_for(resp.status, message)
        return resp

    def close(self) -> None:
        self._conn.close()


class Hijacked:
    """Both directions of an upgraded connection: `recv` gives what the daemon sends (the
    bytes read with the answer's header first), `send` goes to the container's stdin,
    `close_write` ends stdin (a half-close, as the docker CLI's CloseWrite)."""

    def __init__(self, sock: _socket.socket, buffered: bytes = b"", *, chunked: bool = False,
                 content_type: str = "") -> None:
        self.sock = sock
        self._buffered = buffered
        self._chunked = chunked
        self._chunk_left = 0
        self._pending = b""
        self.content_type = content_type.split(";")[0].strip()

    @property
    def multiplexed(self) -> bool:
        return self.content_type == "application/vnd.docker.multiplexed-stream"

    def fileno(self) -> int:
        return self.sock.fileno()

    def pending(self) -> bool:
        """Bytes already read from the socket (or held by TLS) that `recv` returns at once."""
        tls_pending = getattr(self.sock, "pending", None)
        return bool(self._buffered) or bool(tls_pending and tls_pending())

    def _raw_recv(self, size: int) -> bytes:
        if self._buffered:
            data, self._buffered = self._buffered[:size], self._buffered[size:]
            return data
        try:
            return self.sock.recv(size)
        except ConnectionResetError:
            return b""

    def recv(self, size: int = 32 * 1024) -> bytes:
        """Some bytes, b"" at the end of the stream."""
        if not self._chunked:
            return self._raw_recv(size)
        while True:  # decode chunked transfer encoding (a daemon that did not upgrade)
            if self._chunk_left:
                data = self._pending[:self._chunk_left] or self._raw_recv(min(size, self._chunk_left))
                self._pending = self._pending[len(data):] if self._pending else b""
                if not data:
                    return b""
                self._chunk_left -= len(data)
                return data
            while b"\r\n" not in self._pending.lstrip(b"\r\n"):
                more = self._raw_recv(4096)
                if not more:
                    return b""
                self._pending += more
            self._pending = self._pending.lstrip(b"\r\n")
            line, _, self._pending = self._pending.partition(b"\r\n")
            self._chunk_left = int(line.split(b";")[0], 16)
            if self._chunk_left == 0:
                return b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close_write(self) -> None:
        try:
            self.sock.shutdown(_socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        self.sock.close()


class Client:
    """One daemon address; a fresh connection per request (the UNIX socket makes that cheap)."""

    def __init__(self, host: str | None = None, *, tls: TLSConfig | None = None,
                 version: str | None = None, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        self.host = resolve_host(host)
        self.timeout = timeout
        self._tls = tls if tls is not None else TLSConfig.from_env()
        self._version = version  # None: negotiate on first use
        self._version_from_cache = False
        scheme, sep, rest = self.host.partition("://")
        if not sep or scheme not in ("unix", "tcp", "https", "http"):
            raise InvalidArgument(f"host {self.host!r}: want unix:///PATH or tcp://HOST:PORT")
        self._scheme = scheme
        if scheme == "unix":
            self._path = rest or DEFAULT_HOST.removeprefix("unix://")
        else:
            import urllib.parse

            parsed = urllib.parse.urlsplit(f"//{rest}")
            if not parsed.hostname:
                raise InvalidArgument(f"host {self.host!r}: no address")
            self._addr = (parsed.hostname, parsed.port or (2376 if self._use_tls else 2375))

    @property
    def _use_tls(self) -> bool:
        return self._scheme == "https" or (self._scheme == "tcp" and self._tls is not None)

    def _connection(self) -> http.client.HTTPConnection | _UnixConnection:
        conn = self._open()
        # Uploads (load, import) are read from their file in blocks of this size (default 8 KiB).
        conn.blocksize = 256 * 1024
        return conn

    def _open(self) -> http.client.HTTPConnection | _UnixConnection:
        if self._scheme == "unix":
            return _UnixConnection(self._path, self.timeout)
        import http.client

        if self._use_tls:
            tls = self._tls or TLSConfig()
            return http.client.HTTPSConnection(*self._addr, timeout=self.timeout, context=tls.context())
        return http.client.HTTPConnection(*self._addr, timeout=self.timeout)

    # -- version negotiation -------------------------------------------------------------------

    @property
    def api_version(self) -> str:
        if self._version is None:
            cached = self._cache.lookup() if self._scheme == "unix" else None
            if cached is not None:
                self._version, self._version_from_cache = cached, True
            else:
                self._version = self.negotiate()
        return self._version

    @property
    def _cache(self) -> _VersionCache:
        return _VersionCache(self._path)

    def ping(self) -> dict[str, str]:
        """GET /_ping: the daemon's headers (Api-Version, Ostype, Builder-Version...)."""
        resp = self.request("GET", "/_ping", versioned=False)
        resp.read()
        return {k: v for k, v in resp.headers.items()}

    def negotiate(self) -> str:
        """min(server's Api-Version, ours); the docker CLI falls back to 1.24 when the daemon does
        not say (client/client.go, negotiateAPIVersionPing). Remembered for a UNIX socket."""
        if self._scheme == "unix":
            before = self._cache.socket_identity()
        server = self.ping().get("Api-Version") or MIN_API_VERSION
        try:
            version = server if version_tuple(server) < version_tuple(API_VERSION) else API_VERSION
        except ValueError:
            return MIN_API_VERSION
        # Only when the socket file pinged is still the one there (no restart in between).
        if self._scheme == "unix" and before is not None and self._cache.socket_identity() == before:
            self._cache.store(before, version)
        return version

    def _version_refused(self, status: int, message: str) -> bool:
        """True when the daemon refused a version that came from the cache (it restarted at
        another version but kept its socket): the cache entry is dropped and the version
        negotiated again, so that the caller can send its request once more."""
        if not (self._version_from_cache and status == 400 and message.startswith("client version ")
                and ("is too new" in message or "is too old" in message)):
            return False
        self._cache.forget()
        self._version, self._version_from_cache = None, False
        self._version = self.negotiate()
        return True

    # -- requests ------------------------------------------------------------------------------

    def request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                body: Any = None, data: bytes | BinaryIO | None = None,
                headers: dict[str, str] | None = None, versioned: bool = True,
                ok: tuple[int, ...] = ()) -> Response:
        """Send one request; an error status raises the matching PalletError kind. `data` may be
        a binary file: it is then streamed with chunked transfer encoding."""
        return self.send(method, path, params=params, body=body, data=data, headers=headers,
                         versioned=versioned).response(ok)

    def send(self, method: str, path: str, *, params: dict[str, Any] | None = None,
             body: Any = None, data: bytes | BinaryIO | None = None,
             headers: dict[str, str] | None = None, versioned: bool = True) -> PendingRequest:
        """Send a request and return before its answer: `docker run` posts its wait before it
        starts the container and reads the answer after the container's output ends."""
        streamed = data is not None and not isinstance(data, bytes | bytearray | memoryview)
        if versioned and streamed and self.api_version and self._version_from_cache:
            self._version, self._version_from_cache = self.negotiate(), False  # cannot resend
        conn = self._connection()
        url, hdrs, payload = self._prepare(path, params, body, data, headers, versioned)
        resend = None
        if versioned and self._version_from_cache:
            def resend() -> PendingRequest:
                return self.send(method, path, params=params, body=body, data=data, headers=headers)
        try:
            conn.request(method, url, body=payload, headers=hdrs)
        except BaseException as exc:
            conn.close()
            raise self._connect_error(exc) from exc
        return PendingRequest(self, conn, resend)

    def _prepare(self, path: str, params: dict[str, Any] | None, body: Any,
                 data: bytes | BinaryIO | None, headers: dict[str, str] | None,
                 versioned: bool) -> tuple[str, dict[str, str], bytes | BinaryIO | None]:
        url = (f"/v{self.api_version}" if versioned else "") + path
        if params:
            query = {k: _query_value(v) for k, v in params.items() if v is not None}
            if query:
                url += "?" + _urlencode(query)
        hdrs = {"User-Agent": "pallet-cli", **(headers or {})}
        if body is not None:
            data = jsonio.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        return url, hdrs, data

    def _connect_error(self, exc: BaseException) -> BaseException:
        if isinstance(exc, FileNotFoundError | ConnectionRefusedError):
            return Unavailable(f"cannot connect to palletd at {self.host}: {exc.strerror or exc}; "
                               "is palletd running?")
        if isinstance(exc, PermissionError):
            return PermissionDenied(f"permission denied connecting to {self.host}: run as root or join "
                                    "the group that owns the socket (pallet)")
        ssl = sys.modules.get("ssl")  # only loaded for a TLS host; no TLS, no SSLError
        if ssl is not None and isinstance(exc, ssl.SSLError):
            return Unavailable(f"TLS with {self.host} failed: {exc}")
        if isinstance(exc, OSError):
            return Unavailable(f"cannot talk to palletd at {self.host}: {exc}")
        return exc

    def hijack(self, method: str, path: str, *, params: dict[str, Any] | None = None,
               body: Any = None) -> Hijacked:
        """A request answered with `101 UPGRADED` (attach, exec start): the connection then
        carries raw bytes both ways (moby client/hijack.go: `Connection: Upgrade`,
        `Upgrade: tcp`). An error status raises as `request` does; a daemon that answers 200
        instead of upgrading gives an output-only stream (chunked bodies are decoded)."""
        url, hdrs, data = self._prepare(path, params, body, None, None, True)
        hdrs.update({"Connection": "Upgrade", "Upgrade": "tcp", "Host": "localhost"})
        payload = data if isinstance(data, bytes) else b""
        hdrs["Content-Length"] = str(len(payload))
        head = f"{method} {url} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
        conn = self._open()
        try:
            conn.connect()
            sock = conn.sock
            assert sock is not None
            sock.settimeout(None)
            sock.sendall(head.encode("latin-1") + b"\r\n" + payload)
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = sock.recv(65536)
                if not chunk:
                    raise APIError("the daemon closed the connection before answering")
                buf += chunk
        except BaseException as exc:
            conn.close()
            raise self._connect_error(exc) from exc
        header, _, rest = buf.partition(b"\r\n\r\n")
        lines = header.decode("latin-1").split("\r\n")
        try:
            status = int(lines[0].split()[1])
        except (IndexError, ValueError):
            conn.close()
            raise APIError(f"the daemon answered a bad status line: {lines[0]!r}") from None
        fields = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        if status >= 400:
            raw = rest
            length = int(fields.get("content-length", "-1"))
            while length < 0 or len(raw) < length:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                raw += chunk
            conn.close()
            if fields.get("transfer-encoding") == "chunked":
                raw = _dechunk(raw)
            message = _message_of(raw, status)
            if self._version_refused(status, message):
                return self.hijack(method, path, params=params, body=body)
            raise error_for(status, message)
        chunked = status != 101 and fields.get("transfer-encoding") == "chunked"
        return Hijacked(sock, rest, chunked=chunked, content_type=fields.get("content-type", ""))

    def get_json(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw).json()

    def post_json(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.request("POST", path, body=body, **kw).json()

    def version(self) -> dict[str, Any]:
        return dict(self.get_json("/version"))

    def info(self) -> dict[str, Any]:
        return dict(self.get_json("/info"))


class _VersionCache:
    """The negotiated API version per UNIX socket; the file's format is in the module docstring.
    Every failure to read or write it is ignored: the client then pings, as without a cache."""

    MAGIC = "pallet-api-versions 1"
    MAX_ENTRIES = 64

    def __init__(self, socket_path: str) -> None:
        self.socket_path = os.path.abspath(socket_path)

    @staticmethod
    def directory() -> str:
        runtime = os.environ.get("XDG_RUNTIME_DIR")
        if not runtime and os.path.isdir(f"/run/user/{os.getuid()}"):
            runtime = f"/run/user/{os.getuid()}"
        if runtime:
            return os.path.join(runtime, "pallet")
        return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "pallet")

    @property
    def file(self) -> str:
        return os.path.join(self.directory(), "api-versions")

    def socket_identity(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.socket_path)
        except OSError:
            return None
        return st.st_dev, st.st_ino, st.st_mtime_ns

    def _text(self) -> str:
        """The file's entries after its first line ("" if it is missing or not this format)."""
        try:
            with open(self.file, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError):
            return ""
        return text[len(self.MAGIC):] if text.startswith(self.MAGIC + "\n") else ""

    def _entries(self) -> dict[str, list[str]]:
        lines = self._text().splitlines()
        return {fields[0]: fields[1:] for fields in (ln.split("\t") for ln in lines) if len(fields) == 5}

    def _entry(self) -> list[str] | None:
        """This socket's fields, found by its line's start (each line follows a newline)."""
        text = self._text()
        start = text.find(f"\n{self.socket_path}\t")
        if start < 0:
            return None
        end = text.find("\n", start + 1)
        fields = text[start + 1:end if end >= 0 else len(text)].split("\t")
        return fields[1:] if len(fields) == 5 else None

    def lookup(self) -> str | None:
        """The version cached for this socket file, if it is still the same file."""
        entry = self._entry()
        identity = self.socket_identity()
        if entry is None or identity is None or entry[:3] != [str(n) for n in identity]:
            return None
        version = entry[3]
        try:
            if not version_tuple(MIN_API_VERSION) <= version_tuple(version) <= version_tuple(API_VERSION):
                return None
        except ValueError:
            return None
        return version

    def store(self, identity: tuple[int, int, int], version: str) -> None:
        entries = self._entries()
        entries.pop(self.socket_path, None)  # re-added last: the most recent
        live = [(path, fields) for path, fields in entries.items() if os.path.exists(path)]
        live = live[-(self.MAX_ENTRIES - 1):]
        live.append((self.socket_path, [*map(str, identity), version]))
        self._write(dict(live))

    def forget(self) -> None:
        entries = self._entries()
        if entries.pop(self.socket_path, None) is not None:
            self._write(entries)

    def _write(self, entries: dict[str, list[str]]) -> None:
        text = "".join(f"{path}\t" + "\t".join(fields) + "\n" for path, fields in entries.items()
                       if "\t" not in path and "\n" not in path)
        tmp = f"{self.file}.{os.getpid()}.tmp"
        try:
            os.makedirs(self.directory(), mode=0o700, exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(f"{self.MAGIC}\n{text}")
            os.replace(tmp, self.file)
        except OSError:
            try:
                os.unlink(tmp)
            except OSError:
                pass


# RFC 3986 unreserved characters: what urllib.parse.quote always leaves as is.
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")


def quote(s: str, safe: str = "") -> str:
    """urllib.parse.quote(s, safe) for text (UTF-8), without importing urllib.parse (~2 ms of
    start-up, most of it ipaddress): for ids, names and references in the CLI's paths."""
    ok = _UNRESERVED.union(safe.encode())
    return "".join(chr(b) if b in ok else f"%{b:02X}" for b in s.encode())


def _urlencode(query: dict[str, str]) -> str:
    """urllib.parse.urlencode for str values (quote_plus: quote, then spaces as "+")."""
    def plus(s: str) -> str:
        return quote(s, " ").replace(" ", "+")
    return "&".join(f"{plus(k)}={plus(v)}" for k, v in query.items())


def _query_value(v: Any) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, dict | list):
        return jsonio.dumps(v)
    return str(v)


def _error_message(resp: Response) -> str:
    raw = resp.read()
    return _message_of(raw, resp.status, resp.raw.reason)


def _dechunk(raw: bytes) -> bytes:
    out = bytearray()
    while raw:
        line, _, raw = raw.partition(b"\r\n")
        try:
            size = int(line.split(b";")[0], 16)
        except ValueError:
            break
        if size == 0:
            break
        out += raw[:size]
        raw = raw[size + 2:]
    return bytes(out)


def _message_of(raw: bytes, status: int, reason: str = "") -> str:
    try:
        obj = jsonio.loads(raw)
        if isinstance(obj, dict) and "message" in obj:
            return str(obj["message"])
    except (ValueError, UnicodeDecodeError):
        pass
    text = raw.decode(errors="replace").strip()
    return text or f"HTTP {status} {reason}".rstrip()
