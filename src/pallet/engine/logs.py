"""Container logs in Docker's json-file format (the writer, used by the Python monitor) and the
reader, which also reads conmon's k8s-file format (pallet.engine.conmon), line by line.

Format, version 1 (Docker's daemon/logger/jsonfilelog): one JSON object per line,

    {"log": "hello\n", "stream": "stdout", "time": "2024-05-01T10:00:00.123456789Z"}

`log` is one line of the container's output including its newline; a line longer than 16 KiB
is cut into entries without the newline (Docker's partial messages), and so is output left
without a newline when the stream ends. `time` is RFC 3339 with nanoseconds, UTC.

Rotation (max-size / max-file): when writing an entry would take `<name>` past max-size, the
files shift (`<name>.1` -> `<name>.2`, ..., `<name>` -> `<name>.1`) and the oldest beyond
max-file goes. Pallet bounds logs by default (10 MiB x 3 files) where Docker's default is
unbounded: a chatty container must not fill the data root, and the monitor's writes stay cheap.

conmon's k8s-file format (containers/conmon src/ctr_logging.c), one line per record:

    2024-05-01T10:00:00.123456789+00:00 stdout F hello

the time in RFC 3339 with nanoseconds and the local offset, the stream, F for a full line (its
newline taken off) or P for part of a line; conmon bounds the file by --log-size-max (it starts
the file again, keeping no older ones).

The writer runs inside the monitor, so this module imports only the standard library's
smallest parts at import time; the reader's extra needs are imported where used.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator

DEFAULT_MAX_SIZE = 10 * 1024 * 1024
DEFAULT_MAX_FILES = 3
MAX_LINE = 16 * 1024  # Docker's bufio size for a log line before it is cut (partial message)

def rfc3339nano(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + f".{ns % 10**9:09d}Z"


def parse_size(value: str | int) -> int:
    """Docker's log-opt sizes (go-units RAMInBytes, pallet.units): "10m", "512k", "1g", "2mb",
    a byte count; ValueError if it is not one."""
    from pallet.units import ram_in_bytes

    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return ram_in_bytes(str(value))


def parse_time(value: str) -> int:
    """RFC 3339 (with optional fraction, Z or +hh:mm) to nanoseconds since the epoch."""
    import calendar

    v = value.strip()
    offset = 0
    if v.endswith("Z"):
        v = v[:-1]
    elif len(v) > 6 and v[-6] in "+-" and v[-3] == ":":
        sign = 1 if v[-6] == "+" else -1
        offset = sign * (int(v[-5:-3]) * 3600 + int(v[-2:]) * 60)
        v = v[:-6]
    base, _, frac = v.partition(".")
    secs = calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S")) - offset
    return secs * 10**9 + int((frac + "000000000")[:9] or 0)


class JsonFileWriter:
    """Appends output records to a json-file log, cutting lines and rotating files.

    Not thread-safe: one writer (the monitor) per log. `max_size` 0 means unbounded."""

    def __init__(self, path: str, max_size: int = DEFAULT_MAX_SIZE, max_files: int = DEFAULT_MAX_FILES,
                 clock: Callable[[], int] = time.time_ns) -> None:
        self.path, self.max_size, self.max_files = path, max_size, max(1, max_files)
        self.clock = clock
        self._pending: dict[str, bytes] = {}
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self.size = os.fstat(self._fd).st_size

    def write(self, stream: str, data: bytes) -> None:
        buf = self._pending.get(stream, b"") + data
        now = self.clock()
        while True:
            nl = buf.find(b"\n")
            if nl < 0 or nl >= MAX_LINE:
                if len(buf) < MAX_LINE:
                    break
                self._entry(stream, buf[:MAX_LINE], now)
                buf = buf[MAX_LINE:]
                continue
            self._entry(stream, buf[: nl + 1], now)
            buf = buf[nl + 1 :]
        self._pending[stream] = buf

    def flush(self, stream: str | None = None) -> None:
        """Write out what is left without a newline (the stream ended)."""
        for s in [stream] if stream else list(self._pending):
            rest = self._pending.pop(s, b"")
            if rest:
                self._entry(s, rest, self.clock())

    def flush_partial(self, stream: str) -> None:
        """Write out a line still without its newline now, as a record of its own (moby's partial
        messages): a Tty container's prompt must reach the log, and the attach that follows it,
        before the user types anything. An incomplete UTF-8 sequence at the end waits for the
        rest of its bytes, so no character is split across records."""
        buf = self._pending.get(stream, b"")
        keep = _utf8_incomplete_tail(buf)
        if len(buf) > keep:
            self._entry(stream, buf[: len(buf) - keep], self.clock())
            self._pending[stream] = buf[len(buf) - keep:]

    def close(self) -> None:
        self.flush()
        os.close(self._fd)

    def _entry(self, stream: str, line: bytes, now: int) -> None:
        rec = (json.dumps({"log": line.decode("utf-8", "replace"), "stream": stream,
                           "time": rfc3339nano(now)}, ensure_ascii=False) + "\n").encode()
        if self.max_size and self.size and self.size + len(rec) > self.max_size:
            self._rotate()
        os.write(self._fd, rec)
        self.size += len(rec)

    def _rotate(self) -> None:
        os.close(self._fd)
        if self.max_files > 1:
            for i in range(self.max_files - 1, 0, -1):
                src = self.path if i == 1 else f"{self.path}.{i - 1}"
                if os.path.exists(src):
                    os.replace(src, f"{self.path}.{i}")
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        else:
            flags = os.O_WRONLY | os.O_TRUNC | os.O_CREAT | os.O_CLOEXEC
        self._fd = os.open(self.path, flags, 0o640)
        if self.max_files <= 1:
            os.lseek(self._fd, 0, os.SEEK_END)
        self.size = 0


# --- reading ---------------------------------------------------------------------------------

def last_runtime_error(path: str) -> str:
    """The message of the last error line of a runtime's --log (JSON lines, runc's format)."""
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and rec.get("level") in ("error", "fatal"):
            return str(rec.get("msg", ""))
    return ""


LogRecord = tuple[str, bytes]  # (stream, bytes as the client shows them)


def log_files(path: str, max_files: int = DEFAULT_MAX_FILES) -> list[str]:
    """The log's files, oldest first."""
    out = [f"{path}.{i}" for i in range(max(max_files, 1) + 8, 0, -1) if os.path.exists(f"{path}.{i}")]
    if os.path.exists(path):
        out.append(path)
    return out


def _parse(line: bytes) -> tuple[str, bytes, str] | None:
    """(stream, bytes, time) of one line of either format; None for a torn last line (the
    monitor is writing it) or foreign content."""
    if line[:1] != b"{":
        return _parse_k8s(line)
    try:
        d = json.loads(line)
        return d["stream"], d["log"].encode(), d["time"]
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _parse_k8s(line: bytes) -> tuple[str, bytes, str] | None:
    """conmon's k8s-file line: `TIME STREAM TAG CONTENT`, TAG F for a full line (its newline was
    taken off) or P for a part of one (partial output: a prompt, or a long line cut)."""
    parts = line.split(b" ", 3)
    if len(parts) < 3 or parts[1] not in (b"stdout", b"stderr") or parts[2] not in (b"F", b"P"):
        return None
    content = parts[3] if len(parts) == 4 else b""
    return parts[1].decode(), content + b"\n" if parts[2] == b"F" else content, parts[0].decode()


def parse_line(line: bytes) -> tuple[str, bytes] | None:
    """(stream, bytes) of one log line, json-file or k8s-file (for readers that follow a log)."""
    rec = _parse(line)
    return None if rec is None else (rec[0], rec[1])


def read_logs(path: str, *, max_files: int = DEFAULT_MAX_FILES, follow: bool = False,
              since: float | None = None, until: float | None = None, timestamps: bool = False,
              tail: int | None = None, stdout: bool = True, stderr: bool = True,
              running: Callable[[], bool] = lambda: False, poll: float = 0.1,
              cancelled: Callable[[], bool] = lambda: False) -> Iterator[LogRecord]:
    """The log's records as (stream, bytes), oldest first; `since`/`until` in seconds since the
    epoch; `tail` None is all; `follow` keeps reading new records while `running()` is true
    (and until a last read after it becomes false). A follow ends within `poll` seconds of
    `cancelled()` turning true (e.g. `threading.Event.is_set`: its caller lost its client), even
    when nothing new is written."""
    streams = {s for s, on in (("stdout", stdout), ("stderr", stderr)) if on}
    since_ns = int(since * 1e9) if since else None
    until_ns = int(until * 1e9) if until else None

    def keep(rec: tuple[str, bytes, str]) -> bool:
        if rec[0] not in streams:
            return False
        if since_ns is None and until_ns is None:
            return True
        t = parse_time(rec[2])
        return (since_ns is None or t >= since_ns) and (until_ns is None or t <= until_ns)

    def render(rec: tuple[str, bytes, str]) -> LogRecord:
        if not timestamps:
            return rec[0], rec[1]
        stamp = rec[2] if rec[2].endswith("Z") else rfc3339nano(parse_time(rec[2]))  # Docker's: UTC
        return rec[0], stamp.encode() + b" " + rec[1]

    # The current file is opened first, so that a rotation while the older ones are read is seen.
    cur = open(path, "rb") if os.path.exists(path) else None  # noqa: SIM115 - closed below
    try:
        older = [p for p in log_files(path, max_files) if p != path]
        backlog: list[tuple[str, bytes, str]] = []
        for p in older:
            try:
                with open(p, "rb") as f:
                    backlog.extend(r for r in map(_parse, f) if r is not None and keep(r))
            except FileNotFoundError:
                continue
        partial = b""
        if cur is not None:
            data = cur.read()
            lines = data.split(b"\n")
            partial = lines.pop()
            backlog.extend(r for r in map(_parse, lines) if r is not None and keep(r))
        if tail is not None and tail >= 0:
            backlog = backlog[len(backlog) - tail:] if tail else []
        for rec in backlog:
            yield render(rec)
        del backlog
        if not follow:
            return
        while True:
            if cancelled():
                return
            alive = running()
            if cur is None and os.path.exists(path):
                cur = open(path, "rb")  # noqa: SIM115
                partial = b""
            if cur is not None:
                data = partial + cur.read()
                lines = data.split(b"\n")
                partial = lines.pop()
                for r in map(_parse, lines):
                    if r is not None and keep(r):
                        if until_ns is not None and parse_time(r[2]) > until_ns:
                            return
                        yield render(r)
                try:
                    rotated = os.stat(path).st_ino != os.fstat(cur.fileno()).st_ino
                except FileNotFoundError:
                    rotated = True
                if rotated:
                    cur.close()
                    cur = None
                    continue
            if not alive:
                return
            time.sleep(poll)
    finally:
        if cur is not None:
            cur.close()


def _utf8_incomplete_tail(buf: bytes) -> int:
    """How many bytes at the end of `buf` begin a UTF-8 character that is not complete yet."""
    for back in range(1, min(3, len(buf)) + 1):
        b = buf[-back]
        if b & 0xC0 == 0x80:
            continue  # a continuation byte: look further back for the lead byte
        need = 2 if b & 0xE0 == 0xC0 else 3 if b & 0xF0 == 0xE0 else 4 if b & 0xF8 == 0xF0 else 1
        return back if need > back else 0
    return 0
