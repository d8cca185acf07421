"""The v1 cpuset controller: CPUs and memory nodes.

Documentation/admin-guide/cgroup-v1/cpusets.rst: a new cpuset starts with empty cpuset.cpus and
cpuset.mems and refuses tasks until both are set, so every directory created is seeded from its
parent before anything joins it.
"""

from __future__ import annotations

import os

from pallet.cgroups import cgroupfs as fs


def seed_from_parent(d: str) -> None:
    for name in ("cpuset.cpus", "cpuset.mems"):
        mine = os.path.join(d, name)
        try:
            current = fs.read_text(mine).strip()
        except FileNotFoundError:
            current = ""
        if not current:
            parent = fs.read(os.path.join(os.path.dirname(d), name)).strip()
            if parent:
                fs.write(mine, parent)


def set(d: str, cpu: dict) -> None:
    if cpu.get("cpus"):
        fs.write(os.path.join(d, "cpuset.cpus"), cpu["cpus"])
    if cpu.get("mems"):
        fs.write(os.path.join(d, "cpuset.mems"), cpu["mems"])
