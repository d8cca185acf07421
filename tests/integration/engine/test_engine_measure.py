"""Measurements (printed with -s): create+start+stop+rm latency and the monitor's memory per idle
container (RSS and PSS from /proc/<pid>/smaps_rollup) for 10 idle containers."""

from __future__ import annotations

import contextlib
import os
import statistics
import time
import uuid
from pathlib import Path

import pytest

from pallet.engine.containers import Engine
from pallet.image.service import ImageService

if os.geteuid() != 0:
    pytest.skip("needs root (overlay mounts, namespaces, cgroups)", allow_module_level=True)
if not os.path.exists("/bin/busybox"):
    pytest.skip("needs Debian's busybox-static (/bin/busybox)", allow_module_level=True)


def _rollup(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in KiB."""
    vals = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        k, v = line.split(":", 1)
        vals[k] = int(v.split()[0])
    return vals["Rss"], vals["Pss"]


@pytest.fixture
def engine(tmp_path):
    parent = f"/pallet-test-{uuid.uuid4().hex[:8]}"
    with ImageService(str(tmp_path / "data")) as svc:
        svc.bootstrap("busybox")
    e = Engine(str(tmp_path / "data"), str(tmp_path / "run"), cgroup_parent=parent)
    yield e
    for c in e.list(all=True):
        with contextlib.suppress(Exception):
            e.remove(c["Id"], force=True)
    e.close()
    for hier in Path("/sys/fs/cgroup").iterdir():
        d = hier / parent.lstrip("/")
        if d.is_dir():
            with contextlib.suppress(OSError):
                d.rmdir()


def test_lifecycle_latency_and_idle_monitor_memory(engine):
    lat = {"create": [], "start": [], "stop": [], "rm": []}
    for _ in range(5):
        t0 = time.perf_counter()
        cid = engine.create({"Image": "busybox", "Cmd": ["sleep", "1000"]})
        t1 = time.perf_counter()
        engine.start(cid)
        t2 = time.perf_counter()
        engine.stop(cid, timeout=0)  # SIGTERM is ignored by sleep as pid 1: straight to SIGKILL
        t3 = time.perf_counter()
        engine.remove(cid)
        t4 = time.perf_counter()
        for k, v in zip(lat, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            lat[k].append(v * 1000)
    med = {k: statistics.median(v) for k, v in lat.items()}
    ids = [engine.create({"Image": "busybox", "Cmd": ["sleep", "1000"]}) for _ in range(10)]
    for cid in ids:
        engine.start(cid)
    time.sleep(1)
    mem = [_rollup(engine.get(cid).monitor_pid) for cid in ids]
    rss = statistics.mean(m[0] for m in mem)
    pss = statistics.mean(m[1] for m in mem)
    print(f"\nmedian ms over 5: create {med['create']:.0f}, start {med['start']:.0f}, "
          f"stop {med['stop']:.0f}, rm {med['rm']:.0f}, total {sum(med.values()):.0f}")
    print(f"monitor per idle container (10 running): RSS {rss / 1024:.1f} MiB, PSS {pss / 1024:.1f} MiB")
    assert pss < 32 * 1024
