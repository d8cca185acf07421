"""`start --after-stdin`, Pallet's extension that palletd uses to launch the start process while
conmon runs `create`: it starts the container when a line arrives, and starts nothing on EOF."""

from __future__ import annotations

import subprocess
import sys
import time

RUNTIME = [sys.executable, "-m", "pallet.runtime.cli"]  # as the runtime tests' conftest


def _starter(env, cid: str) -> subprocess.Popen:
    return subprocess.Popen([*RUNTIME, "--root", str(env.root), "start", "--after-stdin", cid],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_status(env, cid: str, want: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while env.state(cid)["status"] != want and time.monotonic() < deadline:
        time.sleep(0.02)
    assert env.state(cid)["status"] == want


def test_it_starts_only_when_told(env):
    bundle, _ = env.bundle(["sleep", "1000"], name="told")
    starter = _starter(env, "told")  # launched before the container exists, as palletd does
    env.container("told", bundle)
    time.sleep(0.3)
    assert env.state("told")["status"] == "created"  # loaded, waiting for its line
    _out, err = starter.communicate(b"go\n", timeout=30)
    assert starter.returncode == 0, err
    _wait_status(env, "told", "running")


def test_eof_starts_nothing(env):
    bundle, _ = env.bundle(["sleep", "1000"], name="eof")
    env.container("eof", bundle)
    starter = _starter(env, "eof")
    starter.communicate(timeout=30)  # stdin closed without a line: the engine gave up
    assert starter.returncode == 1
    assert env.state("eof")["status"] == "created"
