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

from pallet.api.detachkeys import DEFAULT_DETACH_KEYS, Detached, parse_detach_keys
from pallet.api.detachkeys import DetachMatcher as _DetachMatcher
from pallet.errors import InvalidArgument, PalletError

TYPE_CHECKING = False  # typing costs ~3 ms of CLI start-up; mypy reads this name as typing's
if TYPE_CHECKING:
    from typing import Any, BinaryIO

    from pallet.api.client import Client, Hijacked
    from pallet.cli.main import Context

class _ignore_oserror:
    """contextlib.suppress(OSError) without importing contextlib at CLI start-up."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, typ: object, exc: object, tb: object) -> bool:
        return typ is not None and issubclass(typ, OSError)  # type: ignore[arg-type]


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
                except Detached as exc:
                    if exc.before:
                        with _ignore_oserror():
                            h.send(exc.before)
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
            tty.setraw(self.fd, termios.TCSANOW)  # TCSAFLUSH would drop type-ahead
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
