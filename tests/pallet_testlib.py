"""Helpers shared by the test tiers (importable from any test: pytest puts this directory, the
one of the root conftest.py, on sys.path)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

CGROUP_ROOT = Path("/sys/fs/cgroup")


def rm_cgroups(parent: str) -> None:
    """Remove the cgroup `parent` (a test's own /pallet-test-<random>) and what is below it, in
    the v2 root and in every v1 hierarchy; a directory still in use stays (rmdir fails)."""
    rel = parent.strip("/")
    if not rel or not CGROUP_ROOT.is_dir():
        return
    dirs = [CGROUP_ROOT / rel] + [h / rel for h in CGROUP_ROOT.iterdir() if h.is_dir()]
    for d in dirs:
        if d.is_dir():
            for sub in sorted((p for p in d.rglob("*") if p.is_dir()), reverse=True):
                with contextlib.suppress(OSError):
                    sub.rmdir()
            with contextlib.suppress(OSError):
                d.rmdir()


CREDENTIAL_HELPER = """#!/usr/bin/python3
# A docker-credential helper keeping its credentials in a JSON file beside itself, and recording
# every call: the protocol of docker/docker-credential-helpers.
import json, os, sys
here = os.path.dirname(os.path.abspath(__file__))
store = os.path.join(here, "store.json")
creds = json.load(open(store)) if os.path.exists(store) else {}
action, data = sys.argv[1], sys.stdin.read().strip()
with open(os.path.join(here, "calls.log"), "a") as log:
    log.write(f"{action} {data}\\n")
if action == "get":
    if data not in creds:
        print("credentials not found in native keychain")
        sys.exit(1)
    print(json.dumps({"ServerURL": data, **creds[data]}))
elif action == "store":
    rec = json.loads(data)
    creds[rec["ServerURL"]] = {"Username": rec["Username"], "Secret": rec["Secret"]}
elif action == "erase":
    if creds.pop(data, None) is None:
        print("credentials not found in native keychain")
        sys.exit(1)
elif action == "list":
    print(json.dumps({k: v["Username"] for k, v in creds.items()}))
json.dump(creds, open(store, "w"))
"""


def install_credential_helper(bindir: Path, name: str = "fake") -> Path:
    """Write `docker-credential-NAME` (CREDENTIAL_HELPER, a recording stand-in for a real
    helper such as docker-credential-pass) into `bindir`; its calls go to bindir/calls.log."""
    bindir.mkdir(parents=True, exist_ok=True)
    exe = bindir / f"docker-credential-{name}"
    exe.write_text(CREDENTIAL_HELPER)
    exe.chmod(0o755)
    return bindir


class NullFirewall:
    """A pallet.network firewall that applies nothing: for NetworkManager unit tests."""

    def apply(self, networks, ports) -> None:
        pass


class FakeNetns:
    """A pallet.network NetnsStore that makes no namespace: paths only."""

    def path(self, cid: str) -> str:
        return f"/fake/netns/{cid}"

    def create(self, cid: str) -> str:
        return self.path(cid)

    def remove(self, cid: str) -> None:
        pass

    def list(self) -> list[str]:
        return []


# --- a scripted daemon on a UNIX socket (the CLI's and the API client's unit tests) -------------------

Handler = Callable[[str, str, dict[str, str], bytes, socket.socket], bytes | None]


def read_request(f: io.BufferedReader) -> tuple[str, str, dict[str, str], bytes] | None:
    line = f.readline()
    if not line:
        return None
    method, target, _ = line.decode().split(" ", 2)
    headers: dict[str, str] = {}
    while (h := f.readline()) not in (b"\r\n", b""):
        k, _, v = h.decode().partition(":")
        headers[k.strip().lower()] = v.strip()
    body = b""
    if headers.get("transfer-encoding") == "chunked":
        while size := int(f.readline().split(b";")[0], 16):
            body += f.read(size)
            f.readline()
        f.readline()
    elif "content-length" in headers:
        body = f.read(int(headers["content-length"]))
    return method, target, headers, body


class FakeDaemon:
    """Accepts on `path`; each request goes to `handler`, whose bytes are sent back raw (None:
    the handler wrote to the socket itself). Records (method, target, headers, body)."""

    def __init__(self, path: Path, handler: Handler) -> None:
        self.path, self.handler = path, handler
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(16)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as f:
            req = read_request(f)
            if req is None:
                return
            self.requests.append(req)
            out = self.handler(*req, conn)
            if out is not None:
                conn.sendall(out)

    @property
    def targets(self) -> list[str]:
        return [r[1] for r in self.requests]

    @staticmethod
    def send_chunked_wait(conn: socket.socket, started: threading.Event, status_code: int) -> None:
        """A container wait as dockerd answers it: the headers at once (the wait is armed), the
        chunked status once `started` is set (the container ran)."""
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        started.wait(10)
        body = json.dumps({"StatusCode": status_code}).encode()
        conn.sendall(b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body))

    def close(self) -> None:
        self.sock.close()
        self.path.unlink(missing_ok=True)


def grow_file(path: Path, chunks: list[bytes], state: Any, pause: float = 0.003,
              finished_at: list[float] | None = None) -> threading.Thread:
    """A started thread that appends `chunks` to `path` as a download does, `pause` apart,
    telling `state` (pallet.registry.client.pull._Download: start, advance, finish); the
    time it wrote the last one goes into `finished_at`."""

    def writer() -> None:
        state.start()
        with open(path, "ab") as f:
            for c in chunks:
                f.write(c)
                f.flush()
                state.advance()
                time.sleep(pause)
        if finished_at is not None:
            finished_at.append(time.monotonic())
        state.finish()

    t = threading.Thread(target=writer)
    t.start()
    return t


def python_output(code: str, env: dict[str, str] | None = None) -> str:
    """The stripped standard output of `code` run by a fresh interpreter (this test's Python),
    which must succeed: what a test of start-up imports or of a process's environment reads."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def fork_child(child: Callable[[], object]) -> int:
    """Fork; the child runs `child` and exits 0, or 1 if it raised."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 0
        try:
            child()
        except BaseException:
            code = 1
        os._exit(code)
    return pid


def kill_after(step: Callable[[], object]) -> None:
    """Run `step` in a child, then SIGKILL the child at that point (it signals, then sleeps,
    holding what `step` returned: a writer in use)."""
    r, w = os.pipe()

    def child() -> None:
        held = step()  # noqa: F841 - alive until the kill
        os.write(w, b"x")
        time.sleep(60)

    pid = fork_child(child)
    try:
        assert os.read(r, 1) == b"x"
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(r)
        os.close(w)
