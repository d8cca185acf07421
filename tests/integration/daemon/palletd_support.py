"""Start palletd as a subprocess on a short temporary directory and stop it by its pid."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PALLETD = [sys.executable, "-m", "pallet.daemon.main"]
PALLET = [sys.executable, "-m", "pallet.cli.main"]


@dataclass
class Daemon:
    proc: subprocess.Popen[str]
    root: Path
    socket: Path

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def log(self) -> str:
        return (self.root / "palletd.log").read_text()


def wait_for(pred, timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what}")


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
    if proc.poll() is None:
        os.kill(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode


@contextlib.contextmanager
def palletd(*extra: str, root: Path | None = None, wait: bool = True) -> Iterator[Daemon]:
    """A running palletd on <tmp>/s.sock (short path: sun_path is 108 bytes)."""
    own = root is None
    root = Path(tempfile.mkdtemp(prefix="pd", dir="/tmp")) if root is None else root
    sock = root / "s.sock"
    (root / "daemon.json").write_text("{}")
    args = [*PALLETD, "--config", str(root / "daemon.json"), "--data-root", str(root / "data"),
            "--exec-root", str(root / "exec")]
    if not any(a == "-H" for a in extra):
        args += ["-H", f"unix://{sock}"]
    log = open(root / "palletd.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([*args, *extra], stdout=log, stderr=subprocess.STDOUT, text=True)
    d = Daemon(proc, root, sock)
    try:
        if wait:
            wait_for(lambda: "ready" in d.log() or proc.poll() is not None, what="palletd to start")
            if proc.poll() is not None:
                raise RuntimeError(f"palletd exited {proc.returncode}:\n{d.log()}")
        yield d
    finally:
        stop(proc)
        log.close()
        if own:
            shutil.rmtree(root, ignore_errors=True)
