"""The cgroup v1 driver: one directory per controller hierarchy, one module per controller.

Documentation/admin-guide/cgroup-v1/cgroups.rst. A process joins every hierarchy by writing its
pid to cgroup.procs in each; limits go to the hierarchy that owns the controller.
"""

from __future__ import annotations

import os

from pallet.cgroups import cgroupfs as fs
from pallet.errors import NotSupported

TYPE_CHECKING = False  # the stats dataclasses load only when stats are read (start-up cost)
if TYPE_CHECKING:
    from pallet.cgroups.stats import Stats

P = "linux.resources"


class V1Manager:
    """CgroupManager for cgroup v1 and hybrid hosts."""

    version = 1

    def __init__(self, path: str, rel: str, hierarchies: dict[str, str]) -> None:
        self.path = path
        self._rel = rel
        self._hierarchies = hierarchies
        self._dirs: list[str] | None = None

    # -- where things are

    def _dir(self, controller: str) -> str | None:
        base = self._hierarchies.get(controller)
        return None if base is None else os.path.join(base, self._rel)

    def _need(self, controller: str, field: str) -> str:
        d = self._dir(controller)
        if d is None:
            raise NotSupported(f"{P}.{field}: the {controller} controller is not mounted on this host")
        return d

    def _all_dirs(self) -> list[str]:
        """One directory per hierarchy: cpu and cpuacct may share one. Worked out once per
        manager: realpath lstats every component, and create asks five times."""
        if self._dirs is None:
            seen: dict[str, str] = {}
            for base in self._hierarchies.values():
                seen.setdefault(os.path.realpath(base), os.path.join(base, self._rel))
            self._dirs = list(seen.values())
        return self._dirs

    # -- CgroupManager

    def validate(self, resources_: dict) -> None:
        # The controllers' modules load where they are used (here, set(), the freezer calls):
        # `delete`, `state` and `kill` need none of them (start-up cost, docs/design/runtime.md).
        from pallet.cgroups import resources
        from pallet.cgroups.resources import section

        resources.check(resources_)
        mem = section(resources_, "memory")
        if _memory_requested(mem):
            self._need("memory", "memory")
            from pallet.cgroups.v1 import memory

            memory.check(mem, self._hierarchies["memory"])
        cpu_ = section(resources_, "cpu")
        if any(cpu_.get(k) for k in ("shares", "quota", "period", "burst", "idle")):
            self._need("cpu", "cpu")
        if cpu_.get("cpus") or cpu_.get("mems"):
            self._need("cpuset", "cpu.cpus")
        if any(v for v in section(resources_, "blockIO").values()):
            self._need("blkio", "blockIO")
        if section(resources_, "pids").get("limit"):
            self._need("pids", "pids")
        if resources_.get("hugepageLimits"):
            self._need("hugetlb", "hugepageLimits")
        if resources_.get("devices"):
            self._need("devices", "devices")
        network = section(resources_, "network")
        if network.get("classID") is not None:
            self._need("net_cls", "network.classID")
        if network.get("priorities"):
            self._need("net_prio", "network.priorities")
        if resources_.get("unified"):
            raise NotSupported(f"{P}.unified: needs cgroup v2, this host runs cgroup v1")

    def _create(self) -> None:
        from pallet.cgroups.v1 import cpuset

        cpuset_base = self._hierarchies.get("cpuset")
        for d in self._all_dirs():
            seed = cpuset_base is not None and d.startswith(cpuset_base + "/")
            fs.make_dirs(d, on_create=cpuset.seed_from_parent if seed else None)

    def apply(self, pid: int) -> None:
        self._create()
        for d in self._all_dirs():
            fs.write(os.path.join(d, "cgroup.procs"), pid)

    def set(self, resources_: dict) -> None:
        # Each controller's module loads when its section is set (~0.1 ms each): a container
        # with the defaults sets only devices.
        from pallet.cgroups.resources import section

        self.validate(resources_)
        self._create()
        cpu_ = section(resources_, "cpu")
        if cpu_.get("cpus") or cpu_.get("mems"):
            from pallet.cgroups.v1 import cpuset

            cpuset.set(self._need("cpuset", "cpu"), cpu_)
        mem = section(resources_, "memory")
        if _memory_requested(mem):
            from pallet.cgroups.v1 import memory

            memory.set(self._need("memory", "memory"), mem)
        cpu_keys = ("shares", "quota", "period", "burst", "idle")
        # Zeros mean "unset" except for burst and idle, which they reset on update; they need
        # no cpu hierarchy when there is none (validate() agrees).
        if any(cpu_.get(k) for k in cpu_keys) or (
                "cpu" in self._hierarchies and any(cpu_.get(k) is not None for k in cpu_keys)):
            from pallet.cgroups.v1 import cpu

            cpu.set(self._need("cpu", "cpu"), cpu_)
        blk = section(resources_, "blockIO")
        if any(v for v in blk.values()):
            from pallet.cgroups.v1 import blkio

            blkio.set(self._need("blkio", "blockIO"), blk)
        if section(resources_, "pids").get("limit"):
            from pallet.cgroups import pids

            pids.set(self._need("pids", "pids"), section(resources_, "pids"))
        if resources_.get("hugepageLimits"):
            from pallet.cgroups import hugetlb

            hugetlb.set(self._need("hugetlb", "hugepageLimits"), resources_["hugepageLimits"],
                        "limit_in_bytes")
        if resources_.get("devices"):
            from pallet.cgroups.devices import parse_rules
            from pallet.cgroups.v1 import devices

            devices.set(self._need("devices", "devices"), parse_rules(resources_["devices"]))
        network = section(resources_, "network")
        if network.get("classID") is not None:
            from pallet.cgroups.v1 import net

            net.set_classid(self._need("net_cls", "network"), network["classID"])
        if network.get("priorities"):
            from pallet.cgroups.v1 import net

            net.set_priorities(self._need("net_prio", "network"), network["priorities"])

    def stats(self) -> Stats:
        from pallet.cgroups import pids
        from pallet.cgroups.stats import BlkioStats, CpuStats, MemoryStats, PidsStats, Stats
        from pallet.cgroups.v1 import blkio, cpu, memory

        mem = self._dir("memory")
        blk = self._dir("blkio")
        pid_dir = self._dir("pids")
        cpu_dir, cpuacct_dir = self._dir("cpu"), self._dir("cpuacct")
        return Stats(
            memory=memory.stats(mem) if mem and os.path.isdir(mem) else MemoryStats(),
            cpu=cpu.stats(cpu_dir, cpuacct_dir) if cpu_dir or cpuacct_dir else CpuStats(),
            blkio=blkio.stats(blk) if blk and os.path.isdir(blk) else BlkioStats(),
            pids=pids.stats(pid_dir) if pid_dir and os.path.isdir(pid_dir) else PidsStats(),
        )

    def _freezer(self) -> str:
        d = self._dir("freezer")
        if d is None:
            raise NotSupported("cannot freeze or thaw: the freezer controller is not mounted on this host")
        return d

    def freeze(self) -> None:
        from pallet.cgroups.v1 import freezer

        freezer.freeze(self._freezer())

    def thaw(self) -> None:
        from pallet.cgroups.v1 import freezer

        freezer.thaw(self._freezer())

    def frozen(self) -> bool:
        d = self._dir("freezer")
        if d is None or not os.path.isdir(d):
            return False
        from pallet.cgroups.v1 import freezer

        return freezer.state(d) == "FROZEN"

    def pids(self) -> list[int]:
        # Every hierarchy holds every process; pids or freezer are the usual, any will do.
        for name in ("pids", "freezer", "memory", "cpu"):
            d = self._dir(name)
            if d is not None:
                return fs.read_pids(d)
        dirs = self._all_dirs()
        return fs.read_pids(dirs[0]) if dirs else []

    def exists(self) -> bool:
        return any(os.path.isdir(d) for d in self._all_dirs())

    def dirs(self) -> list[str]:
        return list(self._all_dirs())

    def self_move_files(self) -> list[str]:
        return [os.path.join(d, "tasks") for d in self._all_dirs()]

    def destroy(self) -> None:
        for d in self._all_dirs():
            fs.remove_tree(d)


def _memory_requested(mem: dict) -> bool:
    # kernel and kernelTCP are ignored (see memory.set), so they alone need no memory controller.
    return any(mem.get(k) is not None for k in ("limit", "reservation", "swap", "swappiness",
                                                 "disableOOMKiller"))
