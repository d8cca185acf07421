"""palletd's per-request timing lines (`palletd -D`, logger pallet.api.timing): one line per
request with its status and milliseconds, errors included; nothing when debug is off."""

from __future__ import annotations

import asyncio
import logging
import re

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pallet.api.server import HostInfo, create_app

HOST = HostInfo(id="test-id", name="testhost", version="0.1.0", kernel_version="6.1.0", arch="amd64",
                architecture="x86_64", ncpu=4, mem_total=1 << 30, cgroup_version="2",
                runtimes={"pallet-runtime": {"path": "/usr/bin/pallet-runtime"}},
                security_options=("name=seccomp,profile=default",))


def statuses(app: web.Application, *paths: str) -> list[int]:
    async def go() -> list[int]:
        async with TestClient(TestServer(app)) as client:
            return [(await client.get(p)).status for p in paths]

    return asyncio.run(go())


def test_each_request_logs_its_status_and_time(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="pallet.api.timing")
    assert statuses(create_app(HOST), "/_ping", "/v1.50/version?x=1", "/v9.99/version", "/nowhere") == [
        200, 200, 400, 404]
    lines = [r.getMessage() for r in caplog.records if r.name == "pallet.api.timing"]
    assert len(lines) == 4
    for line, (path, status) in zip(lines, [("/_ping", 200), ("/v1.50/version?x=1", 200),
                                            ("/v9.99/version", 400), ("/nowhere", 404)]):
        assert re.fullmatch(rf"GET {re.escape(path)} {status} \d+\.\d ms", line), line


def test_no_timing_lines_without_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pallet.api.timing")
    assert statuses(create_app(HOST), "/_ping") == [200]
    assert not [r for r in caplog.records if r.name == "pallet.api.timing"]
