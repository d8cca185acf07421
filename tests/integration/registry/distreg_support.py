"""Debian's docker-registry (distribution 2.8) on 127.0.0.1, and a tiny bearer-token front for it.

`DistRegistry` runs `docker-registry serve CONFIG` on a free loopback port with its storage in
a temporary directory, optionally with htpasswd (bcrypt) basic auth; it is stopped by its pid.
`TokenFront` is a loopback HTTP proxy in front of it that speaks the token flow of distribution's
docs/spec/auth/token.md: requests without a token get `401` with
`WWW-Authenticate: Bearer realm=".../token",service="pallet-test",scope="repository:<name>:<actions>"`,
and `/token` hands out opaque tokens (basic credentials checked) granting the scopes asked for.
Only loopback traffic.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import http.server
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path

REGISTRY = shutil.which("docker-registry") or "/usr/bin/docker-registry"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def htpasswd_line(user: str, password: str) -> str:
    """A bcrypt htpasswd entry (docker-registry accepts only bcrypt)."""
    try:
        import bcrypt

        return f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(5)).decode()}"
    except ImportError:
        out = subprocess.run(["htpasswd", "-nbB", user, password], capture_output=True, text=True, check=True)
        return out.stdout.strip()


class DistRegistry:
    """One docker-registry process (see the module docstring)."""

    def __init__(self, root: Path, users: dict[str, str] | None = None) -> None:
        self.root = root
        self.port = free_port()
        self.users = users
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> DistRegistry:
        if self.proc is not None and self.proc.poll() is None:
            return self  # started already: a second process would leave the first one behind
        self.root.mkdir(parents=True, exist_ok=True)
        auth = ""
        if self.users:
            pw = self.root / "htpasswd"
            pw.write_text("".join(htpasswd_line(u, p) + "\n" for u, p in self.users.items()))
            auth = f"auth:\n  htpasswd:\n    realm: pallet-test\n    path: {pw}\n"
        (self.root / "config.yml").write_text(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.root / 'storage'}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.host}\n" + auth)
        log = open(self.root / "registry.log", "wb")  # noqa: SIM115 - the process owns it
        self.proc = subprocess.Popen([REGISTRY, "serve", str(self.root / "config.yml")],
                                     stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {(self.root / 'registry.log').read_text()}")
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("docker-registry did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def __enter__(self) -> DistRegistry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class TokenFront:
    """A bearer-token proxy in front of `backend` (see the module docstring)."""

    def __init__(self, backend: str, users: dict[str, str]) -> None:
        self.backend = backend
        self.users = users
        self.tokens: dict[str, set[str]] = {}    # token -> granted "repository:name:action"
        self.token_requests: list[dict[str, list[str]]] = []
        front = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                front.handle(self)

            do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> TokenFront:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _reply(self, h: http.server.BaseHTTPRequestHandler, status: int, body: bytes = b"",
               headers: dict[str, str] | None = None) -> None:
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)

    def handle(self, h: http.server.BaseHTTPRequestHandler) -> None:
        parts = urllib.parse.urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        if parts.path == "/token":
            self._token(h, urllib.parse.parse_qs(parts.query))
            return
        need = None
        segs = parts.path.split("/")
        if parts.path.startswith("/v2/") and len(segs) > 3:
            marker = next((i for i, s in enumerate(segs) if s in ("blobs", "manifests", "tags")), None)
            if marker is not None:
                repo = "/".join(segs[2:marker])
                need = f"repository:{repo}:{'pull' if h.command in ('GET', 'HEAD') else 'push'}"
        token = (h.headers.get("Authorization") or "").removeprefix("Bearer ")
        granted = self.tokens.get(token)
        if granted is None or (need is not None and need not in granted):
            scope = need.rsplit(":", 1)[0] + ":pull,push" if need and need.endswith("push") else need
            challenge = f'Bearer realm="http://{self.host}/token",service="pallet-test"'
            if scope:
                challenge += f',scope="{scope}"'
            self._reply(h, 401, b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
                        {"WWW-Authenticate": challenge, "Content-Type": "application/json"})
            return
        conn = http.client.HTTPConnection(self.backend, timeout=60)
        try:
            headers = {k: v for k, v in h.headers.items()
                       if k.lower() not in ("authorization", "connection", "content-length")}
            if body or h.command in ("PUT", "PATCH", "POST"):
                headers["Content-Length"] = str(len(body))
            conn.request(h.command, h.path, body=body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read() if h.command != "HEAD" else b""
            out = {k: v for k, v in resp.getheaders()
                   if k.lower() not in ("content-length", "transfer-encoding", "connection")}
            if h.command == "HEAD":
                h.send_response(resp.status)
                for k, v in out.items():
                    h.send_header(k, v)
                h.send_header("Content-Length", resp.getheader("Content-Length") or "0")
                h.end_headers()
            else:
                self._reply(h, resp.status, data, out)
        finally:
            conn.close()

    def _token(self, h: http.server.BaseHTTPRequestHandler, query: dict[str, list[str]]) -> None:
        self.token_requests.append(query)
        auth = h.headers.get("Authorization") or ""
        user, _, password = base64.b64decode(auth.removeprefix("Basic ") or b"").decode().partition(":")
        if not auth.startswith("Basic ") or self.users.get(user) != password:
            self._reply(h, 401, b'{"details":"incorrect username or password"}')
            return
        granted = set()
        for scope in query.get("scope", []):
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            granted |= {f"{kind}:{name}:{a}" for a in actions.split(",")}
        token = secrets.token_hex(16)
        self.tokens[token] = granted
        self._reply(h, 200, f'{{"token":"{token}","expires_in":300}}'.encode(),
                    {"Content-Type": "application/json"})
