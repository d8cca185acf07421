"""The event log keeps its history on disk, not in palletd's memory (issue 4)."""

from __future__ import annotations

import tracemalloc

from pallet.engine.events import EventLog, container_attributes


def test_history_is_on_disk_and_memory_stays_flat(tmp_path):
    log = EventLog(str(tmp_path), max_events=500)
    attrs = container_attributes("web", "busybox", {"app": "x"})
    log.emit("container", "create", "a" * 64, attrs)  # files open, first allocations done
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(1500):
            log.emit("container", "start", f"{n:064x}", attrs)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # ~0.8 KiB a message when they were kept in memory: 1500 would be ~1.2 MiB.
    assert grown < 64 * 1024
    kept = log.history()
    # Rotation bounds it as before: the current file (500 messages) and the previous one.
    assert 500 <= len(kept) <= 1000
    assert kept[-1]["Actor"]["ID"] == f"{1499:064x}"
    times = [m["timeNano"] for m in kept]
    assert times == sorted(times) and len(set(times)) == len(times)
    log.close()


def test_a_reopened_log_continues_time_and_rotation_count(tmp_path):
    log = EventLog(str(tmp_path), max_events=3, clock=lambda: 7)  # a clock that stands still
    last = [log.emit("container", "start", "c" * 64) for _ in range(2)][-1]
    log.close()
    again = EventLog(str(tmp_path), max_events=3, clock=lambda: 7)
    nxt = again.emit("container", "die", "c" * 64)
    assert nxt["timeNano"] == last["timeNano"] + 1  # strictly after the file's last message
    again.emit("container", "destroy", "c" * 64)  # the current file had 3: this one rotates
    assert (tmp_path / "events.jsonl.1").exists()
    assert [m["Action"] for m in again.history()] == ["start", "start", "die", "destroy"]
    again.close()
