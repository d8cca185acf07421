"""Session-wide guards for every test tier: what the tests change on the host is put back.

palletd, like dockerd, sets net.ipv4.ip_forward=1 when a container joins a bridge network
with outbound NAT (its --ip-forward, on by default). The test daemons are real palletd
processes, so the host's value is recorded when the session starts and restored when it ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")


@pytest.fixture(scope="session", autouse=True)
def _restore_ip_forward() -> Iterator[None]:
    try:
        before = IP_FORWARD.read_text()
    except OSError:
        yield
        return
    yield
    with contextlib.suppress(OSError):
        if IP_FORWARD.read_text() != before:
            IP_FORWARD.write_text(before)
