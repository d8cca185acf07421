"""Live OOM notifications: the `oom` event at the moment the kernel's OOM killer acts in a container.

dockerd hears OOM kills from containerd as they happen, also when the victim is not the container's
pid 1 (which may survive). The kernel offers the same without polling the counters:

- cgroup v1 (Documentation/admin-guide/cgroup-v1/memory.rst, "Memory thresholds" / "OOM control"):
  an eventfd registered by writing "<eventfd> <fd of memory.oom_control>" to cgroup.event_control
  becomes readable on each OOM (and when the cgroup is removed).
- cgroup v2 (Documentation/admin-guide/cgroup-v2.rst, "memory.events ... a value change in this
  file generates a file modified event"): kernfs wakes poll(2) on memory.events with POLLPRI.

Either wake-up only says "look": the watcher then reads the oom_kill counter (memory.oom_control
or memory.events) and reports the container when it grew, so a cgroup removal or an unrelated
memory event is never an `oom`. One thread polls every watched container's descriptor.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("pallet.engine.oom")

RECHECK = 0.02       # seconds between looks at a woken watch's counter
RECHECK_LOOKS = 100  # for up to 2 s


def read_oom_kills(path: str) -> int:
    """The oom_kill counter of memory.oom_control (v1) or memory.events (v2); 0 when unknown."""
    with contextlib.suppress(OSError, ValueError), open(path) as f:
        for line in f:
            k, _, v = line.partition(" ")
            if k == "oom_kill":
                return int(v)
    return 0


@dataclass(slots=True)  # one per running container: no per-instance dict
class _Watch:
    cid: str
    fd: int            # what poll waits on: the eventfd (v1) or memory.events (v2)
    counter: str       # the file with the oom_kill counter
    seen: int          # the counter when the watch began (or at the last report)
    extra: int = -1    # v1: the memory.oom_control fd kept open for the registration


class OomWatcher:
    """Watches containers' memory cgroups; `on_oom(cid)` runs in the watcher's thread."""

    def __init__(self, on_oom: Callable[[str], None], root: str = "/sys/fs/cgroup") -> None:
        self.on_oom, self.root = on_oom, root
        self._guard = threading.Lock()
        self._watches: dict[str, _Watch] = {}
        self._reported: set[str] = set()  # containers whose OOM was reported live in this run
        self._by_fd: dict[int, _Watch] = {}
        self._poller = select.poll()
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._poller.register(self._wake_r, select.POLLIN)
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="pallet-oom-watcher", daemon=True)
        self._thread.start()

    def watch(self, cid: str, cgroup_path: str) -> bool:
        """Start watching the memory cgroup `cgroup_path` of container `cid`; False when the host
        offers no notification for it (the exit-time check still reports the OOM)."""
        self.unwatch(cid)
        with self._guard:
            self._reported.discard(cid)
        rel = cgroup_path.strip("/")
        v1 = os.path.join(self.root, "memory", rel)
        v2 = os.path.join(self.root, rel)
        try:
            if os.path.exists(os.path.join(v1, "memory.oom_control")):
                counter = os.path.join(v1, "memory.oom_control")
                ofd = os.open(counter, os.O_RDONLY | os.O_CLOEXEC)
                efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
                try:
                    with open(os.path.join(v1, "cgroup.event_control"), "w") as ctl:
                        ctl.write(f"{efd} {ofd}")
                except OSError:
                    os.close(efd)
                    os.close(ofd)
                    raise
                w = _Watch(cid, efd, counter, read_oom_kills(counter), ofd)
                events = select.POLLIN
            elif os.path.exists(os.path.join(v2, "memory.events")):
                counter = os.path.join(v2, "memory.events")
                fd = os.open(counter, os.O_RDONLY | os.O_CLOEXEC)
                w = _Watch(cid, fd, counter, read_oom_kills(counter))
                events = select.POLLPRI | select.POLLERR
            else:
                return False
        except OSError as exc:
            log.debug("no OOM notification for %s: %s", cid[:12], exc)
            return False
        with self._guard:
            self._watches[cid] = w
            self._by_fd[w.fd] = w
            self._poller.register(w.fd, events)
        os.write(self._wake_w, b"x")
        return True

    def unwatch(self, cid: str) -> None:
        with self._guard:
            w = self._watches.pop(cid, None)
            if w is None:
                return
            self._by_fd.pop(w.fd, None)
            with contextlib.suppress(KeyError, ValueError):
                self._poller.unregister(w.fd)
        for fd in (w.fd, w.extra):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def mark_reported(self, cid: str) -> None:
        with self._guard:
            self._reported.add(cid)

    def reported(self, cid: str) -> bool:
        """Whether an `oom` of this run was reported live already (the exit need not repeat it)."""
        with self._guard:
            return cid in self._reported

    def close(self) -> None:
        """Stop watching; idempotent (a second close must not close descriptor numbers that
        another part of the process may own by then)."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        self._thread.join(5)
        for cid in list(self._watches):
            self.unwatch(cid)
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _loop(self) -> None:
        # v1 signals the eventfd when the OOM condition starts, before the victim is killed and
        # oom_kill counted: a woken watch is looked at again for a moment (RECHECK x RECHECK_FOR).
        pending: dict[str, int] = {}  # cid -> looks left
        while not self._closed:
            try:
                ready = self._poller.poll(int(RECHECK * 1000) if pending else None)
            except OSError:
                continue
            for fd, _ev in ready:
                if fd == self._wake_r:
                    with contextlib.suppress(OSError):
                        os.read(self._wake_r, 4096)
                    continue
                with self._guard:
                    w = self._by_fd.get(fd)
                if w is None:
                    continue
                if w.extra >= 0:  # v1: consume the eventfd's count
                    with contextlib.suppress(OSError):
                        os.eventfd_read(fd)
                else:  # v2: re-arm kernfs' notification by reading the file from the start
                    with contextlib.suppress(OSError):
                        os.pread(fd, 4096, 0)
                pending[w.cid] = RECHECK_LOOKS
            for cid in list(pending):
                with self._guard:
                    w = self._watches.get(cid)
                if w is None or not os.path.exists(w.counter):
                    pending.pop(cid, None)
                    if w is not None:
                        self.unwatch(cid)  # the cgroup is gone (v1 signals its removal)
                    continue
                now = read_oom_kills(w.counter)
                if now > w.seen:
                    w.seen = now
                    pending.pop(cid, None)
                    try:
                        self.on_oom(cid)
                    except Exception as exc:  # the watcher must outlive one container's trouble
                        log.error("reporting the OOM of %s: %s", cid[:12], exc)
                    continue
                pending[cid] -= 1
                if pending[cid] <= 0:
                    pending.pop(cid, None)
