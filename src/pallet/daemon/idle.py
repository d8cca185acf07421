"""Give memory back when palletd turns idle after a burst of requests.

A burst (a hundred `pallet run -d` at once) leaves palletd bigger than what stays live after it:
the requests' garbage cycles wait for the collector's oldest generation, and glibc keeps the
free chunks of the executor threads' arenas (docs/design/engine.md, "Memory per container").
`IdleReclaim` counts answered requests; once `min_requests` were answered since the last
reclaim and none for `quiet` seconds, it runs `reclaim` on the event loop: by default a full
`gc.collect()` then `malloc_trim(0)` (pallet.syscalls.malloc), ~15 ms on the event loop after
100 concurrent starts (palletd freezes its start-up objects, gc.freeze in daemon/main.py, so the
collection walks only what came after). The timer is armed once per burst and re-armed for the
rest of the quiet time, never per request; a request arriving during the reclaim waits that long.
After 100 concurrent `run -d` it gave back 0.3-0.4 MiB of the ~3.4 MiB palletd grew by: most of
the rest is pymalloc's, whose 1 MiB arenas return to the kernel only when wholly free, and the
executor threads' own (docs/design/engine.md, "Memory per container").

`WorkerPool` is that second part: palletd's default executor (asyncio.to_thread and
run_in_executor(None)), renewed at each idle reclaim. The old pool's threads finish what they
hold and exit, and with them their stacks, their glibc arena chunks and their per-thread SQLite
connections (pallet.image.metadata closes a thread's connection when the thread ends); the next
burst starts fresh threads, ~0.1 ms each. After 100 concurrent `run -d` that took palletd's
growth from ~28 to ~14 KiB per container (bench/run scale --quick).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import logging
import time
from collections.abc import Callable

log = logging.getLogger("palletd.memory")

QUIET = 1.0        # seconds without an answer before the daemon counts as idle
MIN_REQUESTS = 20  # answers since the last reclaim that make a burst worth reclaiming after


def reclaim_memory() -> None:
    """Collect garbage cycles, then hand glibc's free pages back to the kernel."""
    t0 = time.perf_counter()
    found = gc.collect()
    t1 = time.perf_counter()
    trimmed = False
    try:
        from pallet.syscalls.malloc import malloc_trim

        trimmed = malloc_trim(0)
    except (OSError, AttributeError) as exc:  # not glibc: the collection was still worth it
        log.debug("malloc_trim unavailable: %s", exc)
    log.debug("idle: collected %d objects in %.1f ms, malloc_trim (%.1f ms) gave back memory: %s", found,
              (t1 - t0) * 1000, (time.perf_counter() - t1) * 1000, trimmed)


SETTLE = 0.2  # seconds for the old pool's threads to exit before the memory is trimmed


class WorkerPool:
    """The event loop's default executor, which `renew` replaces by a fresh one."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.executor = self._install()

    def _install(self) -> concurrent.futures.ThreadPoolExecutor:
        ex = concurrent.futures.ThreadPoolExecutor(thread_name_prefix="palletd-worker")
        self.loop.set_default_executor(ex)
        return ex

    def renew(self) -> None:
        """New work goes to a new pool; the old one runs what it was given (a long pull or
        a blocking wait included: shutdown does not cancel), then its threads exit."""
        old, self.executor = self.executor, self._install()
        old.shutdown(wait=False)


def idle_reclaim_with(pool: WorkerPool, settle: float = SETTLE) -> Callable[[], None]:
    """The reclaim palletd runs: renew the worker pool, then (once its idle threads are gone)
    collect and trim."""

    def reclaim() -> None:
        pool.renew()
        pool.loop.call_later(settle, reclaim_memory)

    return reclaim


class IdleReclaim:
    """Runs `reclaim` once the daemon is quiet after at least `min_requests` answers; `note()`
    is called for each answer, on the event loop's thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, reclaim: Callable[[], None] = reclaim_memory, *,
                 quiet: float = QUIET, min_requests: int = MIN_REQUESTS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if quiet <= 0 or min_requests < 1:
            raise ValueError(f"IdleReclaim quiet={quiet} min_requests={min_requests}: must be > 0")
        self.loop, self.reclaim, self.quiet, self.min_requests = loop, reclaim, quiet, min_requests
        self.clock = clock
        self.answered = 0  # since the last reclaim
        self.reclaims = 0
        self._last = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def note(self) -> None:
        self.answered += 1
        self._last = self.clock()
        if self._timer is None and self.answered >= self.min_requests:
            self._timer = self.loop.call_later(self.quiet, self._check)

    def _check(self) -> None:
        self._timer = None
        wait = self._last + self.quiet - self.clock()
        if wait > 0:  # answers came meanwhile: wait for the rest of the quiet time
            self._timer = self.loop.call_later(wait, self._check)
            return
        self.answered = 0
        self.reclaims += 1
        try:
            self.reclaim()
        except Exception:  # a failed reclaim must not take the daemon down; it is only memory
            log.exception("reclaiming memory after a burst")

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
