"""The cgroup v2 driver: one unified hierarchy, controllers enabled top-down, one module each.

cgroup-v2.rst: a controller's files appear in a cgroup only once its parent lists it in
cgroup.subtree_control ("Top-down Constraint"), and a cgroup with processes may not enable
controllers for children ("No Internal Process Constraint"), so controllers are enabled in every
ancestor of the container's cgroup and never in the cgroup itself.

Paths are os.path strings and each controller's module loads where it is used, as in the v1
driver: pallet-runtime's `delete`, `state` and `kill` construct a manager, and pathlib, typing
and the controllers cost them ~5 ms of imports (docs/design/runtime.md "Start-up").
"""

from __future__ import annotations

import os

from pallet.cgroups import cgroupfs as fs
from pallet.errors import NotSupported, PalletError

TYPE_CHECKING = False  # the stats dataclasses load only when stats are read (start-up cost)
if TYPE_CHECKING:
    from typing import Any

    from pallet.cgroups.stats import Stats

P = "linux.resources"
# The order systemd and runc enable them in; cpuset first since cpu may depend on it.
CONTROLLERS = ("cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc")
_CPU_KEYS = ("shares", "quota", "period", "burst", "idle")


class V2Manager:
    """CgroupManager for the unified hierarchy."""

    version = 2

    def __init__(self, path: str, rel: str, root: str | os.PathLike[str], syscalls: Any = None) -> None:
        self.path = path
        self._root = os.fspath(root)
        self._rel = rel
        self._dir = os.path.join(self._root, rel)
        self._syscalls = syscalls

    def _bpf(self) -> Any:
        if self._syscalls is None:
            from pallet.syscalls.bpf import Bpf

            self._syscalls = Bpf()
        return self._syscalls

    def _available(self) -> set[str]:
        try:
            return set(fs.read(os.path.join(self._root, "cgroup.controllers")).split())
        except PalletError:
            return set()

    def _need(self, available: set[str], controller: str, field: str) -> None:
        if controller not in available:
            raise NotSupported(f"{P}.{field}: the {controller} controller is not available "
                               f"(not in {self._root}/cgroup.controllers)")

    def validate(self, resources_: dict) -> None:
        from pallet.cgroups import resources
        from pallet.cgroups.resources import section
        from pallet.cgroups.v2 import io, memory

        resources.check(resources_)
        available = self._available()
        mem = section(resources_, "memory")
        memory.check(mem)
        if any(mem.get(k) for k in ("limit", "reservation", "swap")):
            self._need(available, "memory", "memory")
        cpu_ = section(resources_, "cpu")
        if any(cpu_.get(k) for k in _CPU_KEYS):
            self._need(available, "cpu", "cpu")
        if cpu_.get("cpus") or cpu_.get("mems"):
            self._need(available, "cpuset", "cpu.cpus")
        blk = section(resources_, "blockIO")
        io.check(blk)
        if any(v for v in blk.values()):
            self._need(available, "io", "blockIO")
        if section(resources_, "pids").get("limit"):
            self._need(available, "pids", "pids")
        if resources_.get("hugepageLimits"):
            self._need(available, "hugetlb", "hugepageLimits")
        network = section(resources_, "network")
        if network.get("classID") is not None or network.get("priorities"):
            raise NotSupported(f"{P}.network: cgroup v2 has no net_cls or net_prio controller")
        for key in resources_.get("unified") or {}:
            self._need(available, key.split(".", 1)[0], f"unified.{key}")

    def _create(self) -> None:
        fs.make_dirs(self._dir)
        # Enable controllers from the root down to the parent of our cgroup.
        ancestor = self._root
        for part in self._rel.split("/"):
            self._enable_controllers(ancestor)
            ancestor = os.path.join(ancestor, part)

    def _enable_controllers(self, d: str) -> None:
        available = set(fs.read(os.path.join(d, "cgroup.controllers")).split())
        enabled = set(fs.read(os.path.join(d, "cgroup.subtree_control")).split())
        for name in CONTROLLERS:
            if name in available and name not in enabled:
                try:
                    fs.write(os.path.join(d, "cgroup.subtree_control"), f"+{name}")
                except PalletError:
                    # e.g. cpu refuses while a real-time task sits outside the root (EINVAL);
                    # the container still runs, set() says NotSupported if it needs the knob.
                    continue

    def apply(self, pid: int) -> None:
        self._create()
        fs.write(os.path.join(self._dir, "cgroup.procs"), pid)

    def set(self, resources_: dict) -> None:
        from pallet.cgroups.resources import section

        self.validate(resources_)
        self._create()
        d = self._dir
        cpu_ = section(resources_, "cpu")
        if any(cpu_.get(k) is not None for k in (*_CPU_KEYS, "cpus", "mems")):
            from pallet.cgroups.v2 import cpu

            cpu.set(d, cpu_)
        mem = section(resources_, "memory")
        if mem:
            from pallet.cgroups.v2 import memory

            memory.set(d, mem)
        blk = section(resources_, "blockIO")
        if any(v for v in blk.values()):
            from pallet.cgroups.v2 import io

            io.set(d, blk)
        if section(resources_, "pids"):
            from pallet.cgroups import pids

            pids.set(d, section(resources_, "pids"))
        if resources_.get("hugepageLimits"):
            from pallet.cgroups import hugetlb

            hugetlb.set(d, resources_["hugepageLimits"], "max")
        for key, value in (resources_.get("unified") or {}).items():
            if not os.path.exists(os.path.join(d, key)):
                raise NotSupported(f"{P}.unified.{key}: no such file in {d}")
            fs.write(os.path.join(d, key), value)
        if resources_.get("devices"):
            from pallet.cgroups.devices import parse_rules
            from pallet.cgroups.v2 import devices

            devices.attach(d, parse_rules(resources_["devices"]), self._bpf())

    def stats(self) -> Stats:
        from pallet.cgroups import pids
        from pallet.cgroups.stats import Stats
        from pallet.cgroups.v2 import cpu, io, memory

        d = self._dir
        return Stats(memory=memory.stats(d), cpu=cpu.stats(d), blkio=io.stats(d),
                     pids=pids.stats(d))

    def freeze(self) -> None:
        from pallet.cgroups.v2 import freezer

        freezer.freeze(self._dir)

    def thaw(self) -> None:
        from pallet.cgroups.v2 import freezer

        freezer.thaw(self._dir)

    def frozen(self) -> bool:
        if not os.path.isdir(self._dir):
            return False
        from pallet.cgroups.v2 import freezer

        return freezer.is_frozen(self._dir)

    def pids(self) -> list[int]:
        return fs.read_pids(self._dir)

    def exists(self) -> bool:
        return os.path.isdir(self._dir)

    def dirs(self) -> list[str]:
        return [self._dir]

    def self_move_files(self) -> list[str]:
        return []  # cgroup.threads moves only within a threaded domain: cgroup.procs it is

    def destroy(self) -> None:
        fs.remove_tree(self._dir)
