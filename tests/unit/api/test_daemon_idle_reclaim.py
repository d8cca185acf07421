"""palletd gives memory back once idle after a burst (pallet/daemon/idle.py, pallet/syscalls/malloc.py)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from pallet.daemon.idle import IdleReclaim, reclaim_memory
from pallet.syscalls.malloc import malloc_trim

QUIET = 0.1


async def _burst(idle: IdleReclaim, n: int) -> None:
    for _ in range(n):
        idle.note()


def test_reclaims_once_after_a_burst_and_a_quiet_time():
    calls: list[float] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        idle = IdleReclaim(loop, lambda: calls.append(loop.time()), quiet=QUIET, min_requests=5)
        t0 = loop.time()
        await _burst(idle, 5)
        await asyncio.sleep(QUIET * 4)
        assert len(calls) == 1 and calls[0] - t0 >= QUIET
        assert idle.answered == 0 and idle.reclaims == 1
        await asyncio.sleep(QUIET * 3)  # quiet stays quiet: no second reclaim without answers
        assert len(calls) == 1
        idle.close()

    asyncio.run(scenario())


class FakeLoop:
    """call_later recorded, run by hand; time is `now`, also the IdleReclaim's clock."""

    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[tuple[float, object]] = []

    def call_later(self, delay, callback):
        loop = self

        class Handle:
            def cancel(self) -> None:
                loop.timers = [t for t in loop.timers if t[1] is not callback]

        self.timers.append((self.now + delay, callback))
        return Handle()

    def advance(self, seconds: float) -> None:
        """Move time on, running the timers that come due (in order)."""
        end = self.now + seconds
        while True:
            due = sorted((t for t in self.timers if t[0] <= end), key=lambda t: t[0])
            if not due:
                break
            when, cb = due[0]
            self.timers.remove(due[0])
            self.now = when
            cb()  # type: ignore[operator]
        self.now = end


def _fake(min_requests: int, reclaim=None):
    loop = FakeLoop()
    calls: list[float] = []
    idle = IdleReclaim(loop, reclaim or (lambda: calls.append(loop.now)), quiet=1.0,  # type: ignore[arg-type]
                       min_requests=min_requests, clock=lambda: loop.now)
    return loop, idle, calls


def test_a_trickle_below_the_threshold_never_reclaims():
    loop, idle, calls = _fake(5)
    for _ in range(4):
        idle.note()
        loop.advance(0.1)
    loop.advance(10)
    assert calls == [] and idle.answered == 4 and loop.timers == []


def test_answers_during_the_quiet_time_postpone_the_reclaim():
    loop, idle, calls = _fake(2)
    idle.note()
    idle.note()  # the threshold: one timer, armed for 1 s
    assert len(loop.timers) == 1
    for _ in range(9):  # an answer every 0.3 s for 2.7 s: never quiet for a whole second
        loop.advance(0.3)
        idle.note()
        assert len(loop.timers) == 1  # re-armed for the rest of the quiet time, never per answer
    last = loop.now
    assert calls == []
    loop.advance(5)
    assert calls == [last + 1.0]
    assert idle.answered == 0 and idle.reclaims == 1 and loop.timers == []


def test_a_failing_reclaim_is_logged_and_the_next_burst_still_reclaims(caplog):
    tries: list[int] = []

    def reclaim() -> None:
        tries.append(1)
        raise RuntimeError("boom")

    loop, idle, _ = _fake(1, reclaim)
    with caplog.at_level(logging.ERROR, logger="palletd.memory"):
        idle.note()
        loop.advance(2)
        idle.note()
        loop.advance(2)
    assert tries == [1, 1]
    assert "reclaiming memory after a burst" in caplog.text


def test_close_cancels_a_pending_reclaim():
    loop, idle, calls = _fake(1)
    idle.note()
    idle.close()
    loop.advance(5)
    assert calls == [] and loop.timers == []


@pytest.mark.parametrize("quiet, n", [(0, 1), (-1.0, 1), (1.0, 0)])
def test_bad_settings_are_refused(quiet, n):
    async def scenario() -> None:
        with pytest.raises(ValueError):
            IdleReclaim(asyncio.get_running_loop(), quiet=quiet, min_requests=n)

    asyncio.run(scenario())


def _anon_kib() -> int:
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            if line.startswith("Anonymous:"):
                return int(line.split()[1])
    raise AssertionError("no Anonymous line in smaps_rollup")


def test_malloc_trim_gives_back_freed_heap_memory():
    # 4 MiB in 64 KiB blocks (glibc's heap, below the mmap threshold, pages touched by the
    # zero fill), then free all but the last: it pins the heap's top, so free() cannot shrink
    # the heap and only malloc_trim's walk of the free chunks gives the pages back.
    blocks = [bytearray(64 * 1024) for _ in range(64)]
    keep = blocks.pop()
    held = _anon_kib()
    del blocks
    assert malloc_trim(0) is True
    assert held - _anon_kib() >= 2048
    assert keep[0] == 0
    with pytest.raises(ValueError):
        malloc_trim(-1)


def test_reclaim_memory_collects_cycles():
    import gc
    import weakref

    class Node:
        pass

    a, b = Node(), Node()
    a.other, b.other = b, a  # type: ignore[attr-defined]
    ref = weakref.ref(a)
    del a, b
    was = gc.isenabled()
    gc.disable()  # no automatic collection in between: the reclaim is what frees the cycle
    try:
        assert ref() is not None
        reclaim_memory()
        assert ref() is None
    finally:
        if was:
            gc.enable()


def test_worker_pool_renewal_lets_the_old_threads_exit_after_their_work():
    import threading
    import time

    from pallet.daemon.idle import WorkerPool

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        pool = WorkerPool(loop)
        release = threading.Event()
        names: list[str] = []

        def blocking() -> str:
            names.append(threading.current_thread().name)
            release.wait(5)
            return "done"

        held = asyncio.ensure_future(asyncio.to_thread(blocking))
        await asyncio.sleep(0.05)
        old_threads = set(pool.executor._threads)
        assert old_threads
        pool.renew()
        # new work goes to the new pool while the old one still runs what it was given
        assert await asyncio.to_thread(lambda: threading.current_thread()) not in old_threads
        release.set()
        assert await held == "done"  # shutdown(wait=False) does not cancel
        deadline = time.monotonic() + 5
        while any(t.is_alive() for t in old_threads) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert not any(t.is_alive() for t in old_threads)
        pool.executor.shutdown(wait=True)

    asyncio.run(scenario())


def test_idle_reclaim_renews_the_pool_then_trims(monkeypatch):
    from pallet.daemon import idle as idlemod

    events: list[str] = []
    monkeypatch.setattr(idlemod, "reclaim_memory", lambda: events.append("trim"))

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        pool = idlemod.WorkerPool(loop)
        first = pool.executor
        idlemod.idle_reclaim_with(pool, settle=0.01)()
        assert pool.executor is not first and first._shutdown and events == []
        await asyncio.sleep(0.05)
        assert events == ["trim"]
        pool.executor.shutdown(wait=True)

    asyncio.run(scenario())
