"""The daemon's event log: Docker's event messages, kept across restarts, filtered and streamed.

One `EventLog` per data root (`open_log(data_root)` hands every caller of one process the same
instance, so the engine, the image routes and the registry publish into one stream). A message
has Docker's shape (moby api/types/events.Message, daemon/events/events.go `Log`):

    {"status": "die", "id": "<id>", "from": "busybox",          # legacy fields: containers and
     "Type": "container", "Action": "die",                       # images only (no "from" for
     "Actor": {"ID": "<id>", "Attributes": {"exitCode": "0", ...}},   # images), as dockerd
     "scope": "local", "time": 1700000000, "timeNano": 1700000000123456789}

On disk, version 1: `<data-root>/events/events.jsonl` and `events.jsonl.1`, one message per
line (JSON, UTF-8), oldest first; the first line of each file is `{"pallet-events": 1}`. When the
current file holds `max_events` messages it becomes `.1` (replacing the older one) and a new file
starts, so between `max_events` and `2 * max_events` messages are kept: dockerd keeps only 256
in memory and loses them at a restart, which makes `events --since` useless after one. Writes
are appends of whole lines followed by a flush (no fsync: an event lost in a power cut is not
worth an fsync per container start); a torn last line is skipped when read.

The history lives in those files only: a query with `since`/`until` reads them again (under the
log's lock, so that it sees whole lines), and memory holds only the current file's message count
and the last timeNano. Kept in memory, a message is ~0.8 KiB of Python objects: 20000 of them
were 16 MiB of palletd, and two per container start were part of palletd's growth per idle
container (issue 4). A message whose write failed (a full disk) reaches live subscribers but
not the history.

Queries (`since`/`until`, `filters`) follow moby daemon/events/filter.go: keys are AND-ed,
values of one key OR-ed; `container`, `volume`, `network`, ... match the actor's id by prefix or
its `name` attribute; `image` matches the id or name attribute with or without its tag; `event`
matches the action exactly, or by prefix when it is one of health_status, exec_create,
exec_start (their actions carry a suffix: "health_status: healthy"); `label` matches the
attributes (key or key=value).

Publishing is thread-safe (`emit` from any thread); `subscribe()` returns a `Subscription` whose
`get(timeout)` blocks (threads) and whose `on_event` hook lets an asyncio consumer attach with
`loop.call_soon_threadsafe`.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from pallet.errors import InvalidArgument
from pallet.units import go_duration_ns

FORMAT_VERSION = 1
DEFAULT_MAX_EVENTS = 10000

# The filter keys dockerd accepts on /events (daemon/events/filter.go).
FILTER_KEYS = frozenset({"container", "event", "image", "label", "type", "volume", "network", "daemon",
                         "plugin", "node", "service", "secret", "config", "scope"})
# Event types (api/types/events.Type).
TYPES = frozenset({"builder", "config", "container", "daemon", "image", "network", "node", "plugin",
                   "secret", "service", "volume"})
_FUZZY_ACTIONS = ("health_status", "exec_create", "exec_start")



def parse_timestamp(value: str, now_ns: int | None = None) -> int:
    """moby api/types/time.GetTimestamp, in nanoseconds since the epoch: a unix time with an
    optional fraction ("1700000000.5"), a Go duration before now ("10m", "1h30m"), or RFC 3339
    with or without a fraction and zone ("2024-05-07T20:33:45Z", "2024-05-07T20:33:45",
    "2024-05-07"): a time without a zone is UTC here (dockerd takes the daemon's local zone,
    which is UTC on servers). InvalidArgument otherwise."""
    v = str(value).strip()
    now_ns = time.time_ns() if now_ns is None else now_ns
    if not v:
        raise InvalidArgument("empty timestamp")
    m = re.fullmatch(r"(-?\d+)(?:\.(\d{1,9}))?", v)
    if m:
        secs = int(m.group(1))
        frac = int((m.group(2) or "").ljust(9, "0")) if m.group(2) else 0
        return secs * 10**9 + (frac if secs >= 0 else -frac)
    with contextlib.suppress(ValueError):
        return now_ns - go_duration_ns(v)
    from datetime import UTC, datetime

    try:
        dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidArgument(f"failed to parse value as time or duration: {value!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    secs = int(dt.timestamp() // 1)
    return secs * 10**9 + dt.microsecond * 1000


def message(type_: str, action: str, actor_id: str, attributes: Mapping[str, str] | None = None, *,
            scope: str = "local", now_ns: int | None = None) -> dict[str, Any]:
    """One event message in Docker's shape (see the module docstring)."""
    ns = time.time_ns() if now_ns is None else now_ns
    attrs = {str(k): str(v) for k, v in (attributes or {}).items()}
    msg: dict[str, Any] = {}
    if type_ in ("container", "image"):
        # daemon/events/events.go fills the deprecated fields for these two types only.
        msg["status"] = action
        msg["id"] = actor_id
        if type_ == "container" and "image" in attrs:
            msg["from"] = attrs["image"]
    msg.update({"Type": type_, "Action": action, "Actor": {"ID": actor_id, "Attributes": attrs},
                "scope": scope, "time": ns // 10**9, "timeNano": ns})
    return msg


def check_filters(filters: Mapping[str, Sequence[str]]) -> None:
    for key in filters:
        if key not in FILTER_KEYS:
            raise InvalidArgument(f"invalid filter '{key}'")
    for t in filters.get("type") or []:
        if t not in TYPES:
            raise InvalidArgument(f"invalid filter 'type={t}'")


def _strip_tag(ref: str) -> str:
    # reference.ParseNormalizedNamed + TrimNamed in moby; a digest or tag after the last "/".
    name = ref.split("@", 1)[0]
    head, slash, last = name.rpartition("/")
    if ":" in last:
        last = last.split(":", 1)[0]
    return head + slash + last


def _labels_match(attrs: Mapping[str, str], specs: Sequence[str]) -> bool:
    # filters.Args.MatchKVList: every spec must hold.
    for spec in specs:
        k, sep, v = spec.partition("=")
        if k not in attrs or (sep and attrs[k] != v):
            return False
    return True


def matches(msg: Mapping[str, Any], filters: Mapping[str, Sequence[str]]) -> bool:
    """Whether `msg` passes Docker's event filters (moby daemon/events/filter.go Include)."""
    typ, action = msg.get("Type", ""), msg.get("Action", "")
    actor = msg.get("Actor") or {}
    aid, attrs = actor.get("ID", ""), actor.get("Attributes") or {}

    def fuzzy_name(key: str) -> bool:
        values = filters.get(key)
        if not values:
            return True
        name = attrs.get("name", "")
        return any(aid.startswith(v) or (name and name.startswith(v)) for v in values)

    if filters.get("scope") and msg.get("scope") not in filters["scope"]:
        return False
    events = filters.get("event")
    if events:
        if any(e in _FUZZY_ACTIONS for e in events):
            if not any(action.startswith(e) for e in events):
                return False
        elif action not in events:
            return False
    if filters.get("type") and typ not in filters["type"]:
        return False
    for key in ("container", "volume", "network", "plugin", "node", "service", "secret", "config"):
        if not fuzzy_name(key):
            return False
    daemons = filters.get("daemon")
    if daemons and (typ != "daemon" or not (aid in daemons or attrs.get("name") in daemons)):
        return False
    images = filters.get("image")
    if images:
        name = attrs.get("name" if typ == "image" else "image", "")
        candidates = {aid, name, _strip_tag(aid), _strip_tag(name)} - {""}
        if not candidates & set(images):
            return False
    return not (filters.get("label") and not _labels_match(attrs, filters["label"]))


class Subscription:
    """A live feed of the messages that pass `filters`. `get(timeout)` blocks for the next one
    (None on timeout or once closed); `on_event`, when set, is called (from the publisher's
    thread, without the log's lock) after each message is queued: an asyncio consumer sets it to
    wake its loop with call_soon_threadsafe. A consumer that falls `limit` messages behind is
    closed (the log must not grow without bound for a stuck client); `overflowed` says so."""

    def __init__(self, log: EventLog, filters: Mapping[str, Sequence[str]], limit: int = 10000) -> None:
        self._log, self.filters, self.limit = log, {k: list(v) for k, v in filters.items()}, limit
        self._queue: collections.deque[dict[str, Any]] = collections.deque()
        self._cond = threading.Condition()
        self.closed = False
        self.overflowed = False
        self.on_event: Callable[[], None] | None = None

    def _push(self, msg: dict[str, Any]) -> None:
        with self._cond:
            if self.closed:
                return
            if len(self._queue) >= self.limit:
                self.overflowed = True
                self.closed = True
            else:
                self._queue.append(msg)
            self._cond.notify_all()
        hook = self.on_event
        if hook is not None:
            hook()

    def get(self, timeout: float | None = None) -> dict[str, Any] | None:
        with self._cond:
            self._cond.wait_for(lambda: bool(self._queue) or self.closed, timeout)
            return self._queue.popleft() if self._queue else None

    def get_nowait(self) -> dict[str, Any] | None:
        with self._cond:
            return self._queue.popleft() if self._queue else None

    def close(self) -> None:
        self._log._unsubscribe(self)
        with self._cond:
            self.closed = True
            self._cond.notify_all()
        hook = self.on_event
        if hook is not None:
            hook()


class EventLog:
    """The bounded, persisted event history of one data root, and its live subscribers."""

    def __init__(self, directory: str, *, max_events: int = DEFAULT_MAX_EVENTS,
                 clock: Callable[[], int] = time.time_ns) -> None:
        if max_events < 1:
            raise InvalidArgument("max_events must be at least 1")
        self.directory, self.max_events, self.clock = directory, max_events, clock
        self.path = os.path.join(directory, "events.jsonl")
        self._lock = threading.Lock()
        self._subs: list[Subscription] = []
        os.makedirs(directory, mode=0o700, exist_ok=True)
        old, cur = (_parse_file(_read_bytes(p)) for p in (self.path + ".1", self.path))
        self._count = len(cur)  # messages in the current file
        self._last_ns = cur[-1]["timeNano"] if cur else (old[-1]["timeNano"] if old else 0)
        self._fd = -1
        self._open_current(fresh=not cur and not os.path.exists(self.path))

    def _open_current(self, fresh: bool) -> None:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        self._fd = os.open(self.path, flags | (os.O_TRUNC if fresh else 0), 0o600)
        size = os.fstat(self._fd).st_size
        if fresh or size == 0:
            os.write(self._fd, json.dumps({"pallet-events": FORMAT_VERSION}).encode() + b"\n")
        else:
            with open(self.path, "rb") as f:
                f.seek(size - 1)
                if f.read(1) != b"\n":  # a torn last line: end it, so the next one stands alone
                    os.write(self._fd, b"\n")

    def close(self) -> None:
        with self._lock:
            subs, self._subs = self._subs, []
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
        for s in subs:
            s.close()

    def emit(self, type_: str, action: str, actor_id: str, attributes: Mapping[str, str] | None = None,
             *, scope: str = "local") -> dict[str, Any]:
        """Record one event and hand it to the subscribers whose filters it passes; returns the
        message. Never raises for a disk problem (an event is not worth failing a container
        operation): the message still reaches live subscribers."""
        with self._lock:
            # timeNano strictly increases within one log, so since/until and de-duplication
            # between history and the live feed are exact.
            ns = max(self.clock(), self._last_ns + 1)
            self._last_ns = ns
            msg = message(type_, action, actor_id, attributes, scope=scope, now_ns=ns)
            if self._fd >= 0:
                with contextlib.suppress(OSError):
                    if self._count >= self.max_events:
                        os.close(self._fd)
                        self._fd = -1
                        os.replace(self.path, self.path + ".1")
                        self._count = 0
                        self._open_current(fresh=True)
                    os.write(self._fd, json.dumps(msg, separators=(",", ":")).encode() + b"\n")
                    self._count += 1
            subs = [s for s in self._subs if matches(msg, s.filters)]
        for s in subs:
            s._push(msg)
        return msg

    def history(self, since_ns: int | None = None, until_ns: int | None = None,
                filters: Mapping[str, Sequence[str]] | None = None) -> list[dict[str, Any]]:
        """Kept messages with since <= timeNano <= until that pass `filters`, oldest first."""
        flt = filters or {}
        check_filters(flt)
        with self._lock:
            raw = self._kept_bytes()
        return _select(_parse(raw), since_ns, until_ns, flt)

    def subscribe(self, filters: Mapping[str, Sequence[str]] | None = None, *,
                  since_ns: int | None = None, until_ns: int | None = None,
                  ) -> tuple[list[dict[str, Any]], Subscription]:
        """The history since `since_ns` (empty when None) and a live subscription, taken under
        one hold of the lock so that no message is missed or seen twice."""
        flt = dict(filters or {})
        check_filters(flt)
        sub = Subscription(self, flt)
        with self._lock:
            raw = self._kept_bytes() if since_ns is not None else []
            self._subs.append(sub)
        return _select(_parse(raw), since_ns, until_ns, flt), sub

    def _kept_bytes(self) -> list[bytes]:
        """The files' bytes, oldest first (the lock is held: no half line). Parsed by the caller
        once the lock is released: emit, on every container start and exit, takes it too."""
        return [_read_bytes(self.path + ".1"), _read_bytes(self.path)]

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self._subs.remove(sub)


def _select(items: Iterable[dict[str, Any]], since_ns: int | None, until_ns: int | None,
            flt: Mapping[str, Sequence[str]]) -> list[dict[str, Any]]:
    out = []
    for m in items:
        ns = m.get("timeNano", 0)
        if since_ns is not None and ns < since_ns:
            continue
        if until_ns is not None and ns > until_ns:
            continue
        if matches(m, flt):
            out.append(m)
    return out


def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def _parse(files: Iterable[bytes]) -> list[dict[str, Any]]:
    """The messages of the event files' contents, in order."""
    out: list[dict[str, Any]] = []
    for data in files:
        out += _parse_file(data)
    return out


def _parse_file(data: bytes) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for n, line in enumerate(data.splitlines()):
        try:
            item = json.loads(line)
        except ValueError:
            continue  # a torn line from a crash mid-write
        if n == 0 and isinstance(item, dict) and "pallet-events" in item:
            if item["pallet-events"] != FORMAT_VERSION:
                return []  # a format this code does not know: start afresh, do not misread
            continue
        if isinstance(item, dict) and "timeNano" in item:
            out.append(item)
    return out


_LOGS: dict[str, EventLog] = {}
_LOGS_LOCK = threading.Lock()


def open_log(data_root: str, *, max_events: int = DEFAULT_MAX_EVENTS) -> EventLog:
    """The one EventLog of `data_root` in this process (created on first use, reopened when a
    previous one was closed)."""
    key = os.path.abspath(data_root)
    with _LOGS_LOCK:
        log = _LOGS.get(key)
        if log is None or log._fd < 0:
            log = EventLog(os.path.join(key, "events"), max_events=max_events)
            _LOGS[key] = log
        return log


def container_attributes(name: str, image: str, labels: Mapping[str, str] | None,
                         extra: Mapping[str, Any] | None = None) -> dict[str, str]:
    """A container event's attributes as dockerd builds them (daemon/events.go
    LogContainerEventWithAttributes): the container's labels, then image and name, then extras."""
    attrs = {str(k): str(v) for k, v in (labels or {}).items()}
    attrs["image"] = image
    attrs["name"] = name.lstrip("/")
    for k, v in (extra or {}).items():
        attrs[k] = str(v)
    return attrs
