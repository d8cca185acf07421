"""The real docker CLI (and pallet's own) against palletd: `stats --no-stream` (table and
--format, CPU % from precpu_stats, a stopped container with -a) and `events --since/--until`
(history across the lifecycle, filters, --format), plus `events` following live until --until.

Safety: palletd runs on private roots with --cgroup-parent /pallet-test-<random>; every container
is removed through the API before it stops, and the cgroup parent is removed afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from compat_support import docker, docker_env, palletd_for_docker

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (overlay mounts, namespaces, cgroups)"),
    pytest.mark.skipif(not os.access("/bin/busybox", os.X_OK),
                       reason="needs Debian's busybox-static (/bin/busybox) to bootstrap busybox"),
]


@pytest.fixture(scope="module")
def sock() -> Iterator[Path]:
    with palletd_for_docker("pse", images=("busybox",)) as path:
        yield path


def _env(sock: Path) -> dict[str, str]:
    return docker_env(sock)

def pallet(sock: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pallet.cli.main", *args], capture_output=True, text=True,
                          env=_env(sock), timeout=timeout)


def test_docker_stats_no_stream(sock: Path):
    r = docker(sock, "run", "-d", "--name", "burn", "-m", "64m", "busybox", "sh", "-c",
               "dd if=/dev/zero of=/dev/shm/x bs=1M count=20 2>/dev/null; while :; do :; done")
    assert r.returncode == 0, r.stderr
    stopped = docker(sock, "create", "--name", "idle", "busybox", "true")
    assert stopped.returncode == 0, stopped.stderr
    try:
        time.sleep(1)
        table = docker(sock, "stats", "--no-stream")
        assert table.returncode == 0, table.stderr
        head, *rows = table.stdout.splitlines()
        assert head.split()[:4] == ["CONTAINER", "ID", "NAME", "CPU"] and "MEM USAGE / LIMIT" in head
        assert len(rows) == 1 and "burn" in rows[0] and "/ 64MiB" in rows[0]
        fmt = docker(sock, "stats", "--no-stream", "--format",
                     "{{.Name}}|{{.CPUPerc}}|{{.MemUsage}}|{{.MemPerc}}|{{.PIDs}}|{{.BlockIO}}", "burn")
        assert fmt.returncode == 0, fmt.stderr
        name, cpu, mem, mem_perc, pids, _blk = fmt.stdout.strip().split("|")
        assert name == "burn" and float(cpu.rstrip("%")) > 15.0  # one busy loop: up to 100 % of a CPU
        used = mem.split(" / ")[0]
        assert used.endswith("MiB") and float(used[:-3]) >= 19  # the 20 MiB in /dev/shm
        assert float(mem_perc.rstrip("%")) > 25 and int(pids) >= 1
        every = docker(sock, "stats", "--no-stream", "-a", "--format", "{{.Name}} {{.CPUPerc}} {{.MemUsage}}")
        assert "idle 0.00% 0B / 0B" in every.stdout.splitlines(), every.stdout
        ours = pallet(sock, "stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}", "burn")
        assert ours.returncode == 0 and ours.stdout.split()[0] == "burn", ours.stderr
        missing = docker(sock, "stats", "--no-stream", "nosuch")
        assert missing.returncode != 0 and "No such container" in missing.stderr
    finally:
        docker(sock, "rm", "-f", "burn", "idle")


def test_docker_events_since_until(sock: Path):
    t0 = time.time()
    r = docker(sock, "run", "--name", "ev", "-l", "team=a", "busybox", "sh", "-c", "exit 3")
    assert r.returncode == 3
    assert docker(sock, "rm", "ev").returncode == 0
    time.sleep(0.1)
    t1 = time.time()
    out = docker(sock, "events", "--since", f"{t0:.3f}", "--until", f"{t1:.3f}",
                 "--filter", "type=container", "--filter", "container=ev")
    assert out.returncode == 0, out.stderr
    actions = [line.split()[2] for line in out.stdout.splitlines()]
    assert actions[0] == "create" and "start" in actions and actions[-1] == "destroy", out.stdout
    assert actions.index("start") < actions.index("die") < actions.index("destroy")
    die = next(line for line in out.stdout.splitlines() if " die " in line)
    assert "exitCode=3" in die and "name=ev" in die and "team=a" in die and "image=busybox" in die
    js = docker(sock, "events", "--since", f"{t0:.3f}", "--until", f"{t1:.3f}",
                "--filter", "event=die", "--format", "{{json .}}")
    msgs = [json.loads(x) for x in js.stdout.splitlines()]
    assert [m["Action"] for m in msgs] == ["die"] and msgs[0]["Actor"]["Attributes"]["exitCode"] == "3"
    assert msgs[0]["status"] == "die" and msgs[0]["from"] == "busybox"
    ours = pallet(sock, "events", "--since", f"{t0:.3f}", "--until", f"{t1:.3f}", "--filter", "event=destroy",
                  "--format", "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}")
    assert (ours.returncode, ours.stdout) == (0, "container destroy ev\n"), ours.stderr
    # A relative --since and an --until in the future: the live stream ends by itself.
    start = time.monotonic()
    follow = subprocess.Popen(["docker", "events", "--since", "1s", "--until", f"{time.time() + 3:.3f}",
                               "--filter", "event=create"], stdout=subprocess.PIPE, text=True, env=_env(sock))
    time.sleep(1)
    assert docker(sock, "create", "--name", "late", "busybox", "true").returncode == 0
    text, _ = follow.communicate(timeout=20)
    assert follow.returncode == 0 and time.monotonic() - start < 10
    assert any("name=late" in line for line in text.splitlines()), text
    docker(sock, "rm", "late")
    bad = docker(sock, "events", "--since", "20", "--until", "10")
    assert bad.returncode != 0 and "cannot be after" in bad.stderr
