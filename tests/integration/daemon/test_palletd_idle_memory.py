"""palletd gives memory back once it turns idle after a burst of answers (pallet/daemon/idle.py)."""

from __future__ import annotations

import time

from palletd_support import palletd, wait_for

from pallet.api.client import Client
from pallet.daemon.idle import MIN_REQUESTS, QUIET


def test_a_burst_then_quiet_runs_one_reclaim_and_the_daemon_keeps_serving():
    with palletd("-l", "debug") as d:
        client = Client(d.host)
        for _ in range(MIN_REQUESTS - 1):
            assert client.ping().get("Api-Version") == "1.50"
        time.sleep(QUIET * 2)
        assert "idle: collected" not in d.log()  # below the threshold: nothing to reclaim after
        client.ping()  # the threshold's answer
        wait_for(lambda: "idle: collected" in d.log(), timeout=QUIET * 10, what="the idle reclaim")
        line = next(ln for ln in d.log().splitlines() if "idle: collected" in ln)
        assert "malloc_trim" in line
        time.sleep(QUIET * 2)
        assert d.log().count("idle: collected") == 1  # once per burst, not per quiet second
        assert client.ping().get("Api-Version") == "1.50"
