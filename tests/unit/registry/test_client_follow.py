"""A layer is unpacked while it downloads: the follower reads the ingest file as it grows,
and stops on a restarted or failed download."""

from __future__ import annotations

import time

import pytest

from pallet.errors import Unavailable
from pallet.registry.client.pull import _Download, _Follower, _Restarted
from pallet_testlib import grow_file


def test_follower_reads_while_the_file_grows(tmp_path):
    path = tmp_path / "data"
    path.write_bytes(b"")
    chunks = [bytes([i]) * 1000 for i in range(20)]
    total = sum(map(len, chunks))
    state = _Download()
    first_read_at: list[float] = []
    finished_at: list[float] = []

    reports: list[int] = []
    t = grow_file(path, chunks, state, pause=0.005, finished_at=finished_at)
    assert state.wait_started()
    got = b""
    with open(path, "rb") as f:
        follower = _Follower(f, total, state, reports.append)
        while data := follower.read(700):
            first_read_at.append(time.monotonic())
            got += data
    t.join()
    assert got == b"".join(chunks)
    assert first_read_at[0] < finished_at[0]  # reading overlapped the writing
    state.wait_done()


def test_follower_stops_on_restart_and_failure(tmp_path):
    path = tmp_path / "data"
    path.write_bytes(b"abc")
    state = _Download()
    state.start()
    with open(path, "rb") as f:
        follower = _Follower(f, 10, state, lambda n: None)
        assert follower.read(100) == b"abc"
        state.restart()
        with pytest.raises(_Restarted):
            follower.read(100)
    state = _Download()
    state.start()
    with open(path, "rb") as f:
        follower = _Follower(f, 10, state, lambda n: None)
        follower.read(100)
        state.fail(Unavailable("connection reset"))
        with pytest.raises(Unavailable, match="connection reset"):
            follower.read(100)
    with pytest.raises(Unavailable):
        state.wait_done()


def test_a_complete_blob_is_not_followed():
    state = _Download()
    state.finish()
    assert state.wait_started() is False
