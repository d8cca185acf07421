"""The v1 cpuset controller: CPUs and memory nodes.

Documentation/admin-guide/cgroup-v1/cpusets.rst: a new cpuset starts with empty cpuset.cpus and
cpuset.mems and refuses tasks until both are set, so every directory created is seeded from its
parent before anything joins it.
"""

from __future__ import annotations

from pathlib import Path

from pallet.cgroups import cgroupfs as fs


def seed_from_parent(d: Path) -> None:
    for name in ("cpuset.cpus", "cpuset.mems"):
        mine = d / name
        try:
            current = mine.read_text().strip()
        except FileNotFoundError:
            current = ""
        if not current:
            parent = fs.read(d.parent / name).strip()
            if parent:
                fs.write(mine, parent)


def set(d: Path, cpu: dict) -> None:
    if cpu.get("cpus"):
        fs.write(d / "cpuset.cpus", cpu["cpus"])
    if cpu.get("mems"):
        fs.write(d / "cpuset.mems", cpu["mems"])
