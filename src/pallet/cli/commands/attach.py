"""`pallet attach`, and the terminal plumbing `run`, `start -a` and `exec` share: proxy a
hijacked connection to the local stdin/stdout/stderr.

With a TTY the local terminal goes to raw mode, output is copied as it comes and the window size
follows SIGWINCH (POST .../resize); without one the output is Docker's multiplexed frames
(pallet.api.client.demux) split to stdout and stderr. Detach keys (ctrl-p,ctrl-q by default at
a terminal) are matched here on what is typed, and also passed to the daemon as the docker CLI
does. termios/tty/select are imported here only, never at CLI start-up (STYLE.md §10).
"""

from __future__ import annotations

import os
import struct
import sys
from typing import TYPE_CHECKING, Any, BinaryIO

from pallet.errors import InvalidArgument, PalletError

if TYPE_CHECKING:
    from pallet.api.client import Client, Hijacked
    from pallet.cli.main import Context

DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"


def parse_detach_keys(spec: str) -> bytes:
    """moby pkg/term ToBytes: `ctrl-a`..`ctrl-z`, `ctrl-@`, `ctrl-[`, `ctrl-\\`, `ctrl-]`,
    `ctrl-^`, `ctrl-_`, or single characters, comma separated."""
    out = bytearray()
    for key in spec.split(","):
        key = key.strip()
        if len(key) == 1:
            out.append(ord(key))
        elif key.lower().startswith("ctrl-") and len(key) == 6:
            c = key[5].lower()
            if "a" <= c <= "z":
                out.append(ord(c) - ord("a") + 1)
            elif c in "@[\\]^_":
                out.append({"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}[c])
            else:
                raise InvalidArgument(f"invalid detach keys {spec!r}: unknown character {key}")
        else:
            raise InvalidArgument(f"invalid detach keys {spec!r}: want ctrl-<value> or a single character")
    return bytes(out)


class Detached(Exception):
    """The user typed the detach keys."""


class _DetachMatcher:
    """Holds back typed bytes that may begin the detach sequence; raises Detached on a match."""

    def __init__(self, keys: bytes) -> None:
        self.keys, self.held = keys, b""

    def feed(self, data: bytes) -> bytes:
        if not self.keys:
            return data
        out = bytearray()
        for b in data:
            cand = self.held + bytes([b])
            if self.keys.startswith(cand):
                if cand == self.keys:
                    raise Detached
                self.held = cand
            else:
                out += cand
                self.held = b""
        return bytes(out)


class _Demuxer:
    """Incremental split of multiplexed frames (8-byte header: stream, 0, 0, 0, BE uint32)."""

    def __init__(self, out: BinaryIO, err: BinaryIO) -> None:
        self.buf = bytearray()
        self.out, self.err = out, err

    def feed(self, data: bytes) -> None:
        self.buf += data
        while len(self.buf) >= 8:
            stream, size = struct.unpack(">BxxxL", self.buf[:8])
            if len(self.buf) < 8 + size:
                return
            dest = self.err if stream == 2 else self.out
            dest.write(bytes(self.buf[8:8 + size]))
            dest.flush()
            del self.buf[:8 + size]


def terminal_size(fd: int) -> tuple[int, int] | None:
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return None
    return size.lines, size.columns


def pump(h: Hijacked, *, tty: bool, stdin: bool, detach_keys: bytes = b"",
         out: BinaryIO | None = None, err: BinaryIO | None = None, in_fd: int = 0) -> bool:
    """Copy stdin to the connection and its output to stdout/stderr until the daemon ends the
    stream. Returns False when the user detached. stdin's end is a half-close (the container
    sees EOF, output keeps coming)."""
    import select

    out = out if out is not None else sys.stdout.buffer
    err = err if err is not None else sys.stderr.buffer
    demux = None if (tty and not h.multiplexed) else _Demuxer(out, err)
    matcher = _DetachMatcher(detach_keys)
    reading = stdin
    try:
        while True:
            waiting: list[Any] = [h, in_fd] if reading else [h]
            ready = [h] if h.pending() else select.select(waiting, [], [])[0]
            if h in ready:
                data = h.recv(64 * 1024)
                if not data:
                    return True
                if demux is not None:
                    demux.feed(data)
                else:
                    out.write(data)
                    out.flush()
            if reading and in_fd in ready:
                data = os.read(in_fd, 32 * 1024)
                if not data:
                    reading = False
                    h.close_write()
                    continue
                try:
                    data = matcher.feed(data)
                except Detached:
                    return False
                if data:
                    try:
                        h.send(data)
                    except OSError:
                        reading = False
    finally:
        h.close()


class RawTerminal:
    """The local terminal in raw mode while the block runs (restored on the way out, also on
    errors), when stdin is a terminal; otherwise nothing."""

    def __init__(self, fd: int = 0, enabled: bool = True) -> None:
        self.fd = fd
        self.enabled = enabled and os.isatty(fd)
        self._saved: Any = None

    def __enter__(self) -> RawTerminal:
        if self.enabled:
            import termios
            import tty

            self._saved = termios.tcgetattr(self.fd)
            tty.setraw(self.fd)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._saved is not None:
            import termios

            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)


def follow_resize(client: Client, resize_path: str, fd: int = 1) -> None:
    """Send the terminal's size now and on every SIGWINCH (docker's MonitorTtySize)."""
    if not os.isatty(fd):
        return
    import signal

    def resize(*_: object) -> None:
        size = terminal_size(fd)
        if size:
            try:
                client.request("POST", resize_path, params={"h": size[0], "w": size[1]}).read()
            except PalletError:
                pass

    resize()
    signal.signal(signal.SIGWINCH, resize)


def main(ctx: Context, argv: list[str], prog: str = "pallet attach") -> int:
    from pallet.cli.commands.container import error_line, parser, path

    p = parser(prog, "Attach local standard input, output, and error streams to a running container")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("--no-stdin", action="store_true", help="Do not attach STDIN")
    p.add_argument("--sig-proxy", default="true", help="Proxy all received signals to the process")
    p.add_argument("--detach-keys", help="Override the key sequence for detaching a container")
    args = p.parse_args(argv)
    client = ctx.client()
    try:
        info = client.get_json(path(args.container, "/json"))
        state = info.get("State") or {}
        if not state.get("Running"):
            raise InvalidArgument("You cannot attach to a stopped container, start it first")
        if state.get("Paused"):
            raise InvalidArgument("You cannot attach to a paused container, unpause it first")
        config = info.get("Config") or {}
        tty = bool(config.get("Tty"))
        stdin = bool(config.get("OpenStdin")) and not args.no_stdin
        keys_spec = args.detach_keys or DEFAULT_DETACH_KEYS
        keys = parse_detach_keys(keys_spec) if (stdin and os.isatty(0)) else b""
        waiter = client.send("POST", path(info["Id"], "/wait"))
        h = client.hijack("POST", path(info["Id"], "/attach"), params={
            "stream": True, "stdin": stdin, "stdout": True, "stderr": True,
            "detachKeys": args.detach_keys})
        if tty:
            follow_resize(client, path(info["Id"], "/resize"))
        with RawTerminal(0, enabled=tty and stdin):
            finished = pump(h, tty=tty, stdin=stdin, detach_keys=keys)
        if not finished:
            waiter.close()
            print("\nread escape sequence", file=sys.stderr)
            return 0
        result = waiter.response().json() or {}
        return int(result.get("StatusCode") or 0)
    except PalletError as exc:
        print(error_line(exc), file=sys.stderr)
        return 1
