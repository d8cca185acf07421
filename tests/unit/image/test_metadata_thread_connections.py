"""MetadataStore: a thread's SQLite connection closes when the thread ends (palletd's worker
pool is renewed when idle, pallet.daemon.idle), and close() still closes the live ones."""

from __future__ import annotations

import gc
import sqlite3
import threading

import pytest

from pallet.image.metadata import MetadataStore


def test_a_threads_connection_goes_with_the_thread(tmp_path):
    store = MetadataStore(tmp_path / "meta.db")
    held: list[sqlite3.Connection] = []

    def work() -> None:
        held.append(store._conn())

    t = threading.Thread(target=work)
    t.start()
    t.join()
    conn = held.pop()
    assert conn in store._all
    del conn
    gc.collect()
    assert len(store._all) == 1  # only the creating thread's (the migration's)
    store.close()


def test_close_closes_the_live_connections(tmp_path):
    store = MetadataStore(tmp_path / "meta.db")
    conn = store._conn()
    store.close()
    with pytest.raises(sqlite3.ProgrammingError):
        conn.execute("SELECT 1")
    assert len(store._all) == 0
