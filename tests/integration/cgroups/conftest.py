"""Fixtures for the cgroup integration tests: a throwaway cgroup, gated children, requires().

Safety: everything is created under /pallet-test-<random> in each hierarchy, only processes
started here are killed (by pid), and the cgroups are removed at teardown.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from pallet.cgroups import CgroupManager, create_cgroup_manager, detect_version, v1_hierarchies

ROOT = Path("/sys/fs/cgroup")


def _controllers() -> set[str]:
    try:
        if detect_version(ROOT) == 2:
            return set((ROOT / "cgroup.controllers").read_text().split())
        return set(v1_hierarchies(ROOT))
    except Exception:
        return set()


def _missing(feature: str) -> str | None:
    """Why `feature` is unavailable here, or None."""
    if feature == "root":
        return None if os.geteuid() == 0 else "needs root"
    if feature in ("cgroup1", "cgroup2"):
        try:
            version = detect_version(ROOT)
        except Exception as exc:
            return f"no cgroupfs: {exc}"
        return None if f"cgroup{version}" == feature else f"host runs cgroup v{version}"
    if feature.startswith("controller:"):
        name = feature.split(":", 1)[1]
        return None if name in _controllers() else f"the {name} controller is not available"
    if feature == "memsw":
        if detect_version(ROOT) == 2:
            return None
        mem = v1_hierarchies(ROOT).get("memory")
        ok = mem is not None and os.path.exists(os.path.join(mem, "memory.memsw.limit_in_bytes"))
        return None if ok else "no swap accounting (memory.memsw.*)"
    if feature.startswith("cmd:"):
        name = feature.split(":", 1)[1]
        return None if shutil.which(name) else f"{name} is not installed"
    raise ValueError(f"unknown feature {feature}")


def requires_now(*features: str) -> None:
    for feature in features:
        reason = _missing(feature)
        if reason:
            pytest.skip(f"requires {feature}: {reason}")


@pytest.fixture
def requires():
    """requires("controller:memory", ...) skips the test with the reason when a feature is missing."""
    return requires_now


class Children:
    """Processes started by a test, each blocked on stdin until go() so it can be moved first."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def shell(self, script: str) -> subprocess.Popen:
        return self._start(["/bin/sh", "-c", f"read _go; {script}"])

    def python(self, code: str) -> subprocess.Popen:
        return self._start([sys.executable, "-c", f"import sys; sys.stdin.readline()\n{code}"])

    def _start(self, argv: list[str]) -> subprocess.Popen:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        self.procs.append(proc)
        return proc

    @staticmethod
    def go(proc: subprocess.Popen) -> None:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()  # by pid: only what this fixture started
            proc.wait()
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()


@pytest.fixture
def children():
    kids = Children()
    yield kids
    kids.cleanup()


@pytest.fixture
def cgroup(children) -> CgroupManager:
    """A manager for /pallet-test-<random>/ctr; both levels removed afterwards."""
    requires_now("root")
    top = f"/pallet-test-{uuid.uuid4().hex[:12]}"
    manager = create_cgroup_manager(f"{top}/ctr")
    yield manager
    children.cleanup()
    if manager.frozen():
        manager.thaw()
    manager.destroy()
    create_cgroup_manager(top).destroy()


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process from /proc/<pid>/stat (proc(5), fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()
