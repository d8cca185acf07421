"""Run `python -m pallet.registry.server serve` as a subprocess on 127.0.0.1 and talk to it.

Only loopback traffic; the server process is stopped by its pid (SIGTERM, then SIGKILL) and its
root lives in the test's tmp_path.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SERVER = [sys.executable, "-m", "pallet.registry.server"]


class Server:
    """One registry server process."""

    def __init__(self, root: Path, config: Path | None = None, extra: list[str] | None = None) -> None:
        self.root = root
        self.config = config
        self.extra = extra or []
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0
        self.scheme = "http"
        self.ssl_context: ssl.SSLContext | None = None
        self.log: list[str] = []

    def start(self, timeout: float = 15.0) -> Server:
        cmd = [*SERVER, "serve", "--addr", "127.0.0.1:0", "--root", str(self.root), *self.extra]
        if self.config is not None:
            cmd += ["--config", str(self.config)]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        assert self.proc.stderr is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.log.append(line)
            if "listening on" in line:
                url = line.strip().rsplit(" ", 1)[-1]
                self.scheme = url.split(":", 1)[0]
                self.port = int(url.rsplit(":", 1)[-1])
                # Keep draining stderr so the server never blocks on a full pipe.
                import threading

                threading.Thread(target=self._drain, daemon=True).start()
                return self
        self.stop()
        raise AssertionError(f"registry did not start: {''.join(self.log)}")

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None

    def connection(self) -> http.client.HTTPConnection:
        if self.scheme == "https":
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=30, context=self.ssl_context)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> Response:
        conn = self.connection()
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return Response(resp.status, resp.getheaders(), resp.read())
        finally:
            conn.close()


class Response:
    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.header_list = headers
        self.headers = {k.lower(): v for k, v in headers}
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.header_list if k.lower() == name.lower()]

    def error_code(self) -> str:
        return self.json()["errors"][0]["code"]

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.body[:300]!r}>"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_blob(server: Server, repo: str, data: bytes, headers: dict[str, str] | None = None) -> str:
    d = digest_of(data)
    r = server.request("POST", f"/v2/{repo}/blobs/uploads/?digest={d}", data,
                       {"Content-Type": "application/octet-stream", **(headers or {})})
    assert r.status == 201, r
    return d


def image(layers: list[bytes], labels: dict[str, str] | None = None,
          media_type: str = "application/vnd.oci.image.manifest.v1+json") -> tuple[bytes, bytes]:
    """(config, manifest) bytes of an image over `layers` (treated as opaque blobs)."""
    docker = "docker" in media_type
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Labels": labels or {}},
                         "rootfs": {"type": "layers", "diff_ids": [digest_of(x) for x in layers]}}).encode()
    manifest = {
        "schemaVersion": 2, "mediaType": media_type,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json" if docker
                   else "application/vnd.oci.image.config.v1+json",
                   "digest": digest_of(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip" if docker
                    else "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": digest_of(x), "size": len(x)} for x in layers],
    }
    return config, json.dumps(manifest).encode()


def push_image(server: Server, repo: str, tag: str, layers: list[bytes],
               labels: dict[str, str] | None = None, headers: dict[str, str] | None = None,
               media_type: str = "application/vnd.oci.image.manifest.v1+json") -> str:
    config, manifest = image(layers, labels, media_type)
    for blob in [*layers, config]:
        push_blob(server, repo, blob, headers)
    r = server.request("PUT", f"/v2/{repo}/manifests/{tag}", manifest,
                       {"Content-Type": media_type, **(headers or {})})
    assert r.status == 201, r
    return r.headers["docker-content-digest"]
