"""One CgroupManager interface over cgroup v1 and v2, detected through an injectable root.

Paths are str (os.path), and `root` may be a str or a pathlib.Path: pallet-runtime's create and
delete load this package, and pathlib costs them ~4 ms of imports (docs/design/runtime.md).

`create_cgroup_manager(path)` looks at /sys/fs/cgroup (or the `root` given, a fake tree in unit
tests): a cgroup.controllers file there means the unified v2 hierarchy; per-controller
directories mean v1, and a v1 layout with root/unified beside it (hybrid) is driven as v1 since
the controllers live on the v1 side (Documentation/admin-guide/cgroup-v2.rst, "Support for
cgroup v1 and v2 coexistence" is per controller).
"""

from __future__ import annotations

import os

from pallet.errors import InvalidArgument, NotSupported

__all__ = ["BlkioEntry", "BlkioStats", "CgroupManager", "CpuStats", "MemoryStats", "PidsStats",
           "Stats", "create_cgroup_manager", "detect_version"]

TYPE_CHECKING = False  # mypy treats this name as typing's
if TYPE_CHECKING:
    from typing import Any

    from pallet.cgroups.cgroupfs import StrPath
    from pallet.cgroups.interface import CgroupManager
    from pallet.cgroups.stats import BlkioEntry, BlkioStats, CpuStats, MemoryStats, PidsStats, Stats


def __getattr__(name: str) -> object:
    """The stats classes and the CgroupManager protocol, loaded on first use: pallet-runtime's
    create and delete need neither, and they cost ~8 ms of imports (dataclasses, typing)."""
    if name in ("BlkioEntry", "BlkioStats", "CpuStats", "MemoryStats", "PidsStats", "Stats"):
        from pallet.cgroups import stats

        return getattr(stats, name)
    if name == "CgroupManager":
        from pallet.cgroups.interface import CgroupManager

        return CgroupManager
    raise AttributeError(f"module 'pallet.cgroups' has no attribute {name!r}")


# The v1 controllers a container joins (Documentation/admin-guide/cgroup-v1/*.rst); named
# hierarchies such as name=systemd belong to the init system and are left alone.
V1_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids",
                  "hugetlb", "net_cls", "net_prio", "perf_event", "rdma", "misc")


def detect_version(root: StrPath = "/sys/fs/cgroup") -> int:
    """2 for a unified hierarchy at root, 1 for v1 or hybrid."""
    if os.path.exists(os.path.join(root, "cgroup.controllers")):
        return 2
    if v1_hierarchies(root):
        return 1
    raise NotSupported(f"no cgroup hierarchy found under {root}")


def v1_hierarchies(root: StrPath) -> dict[str, str]:
    """Controller name -> directory of its v1 hierarchy under root.

    A hierarchy may carry several controllers ("cpu,cpuacct", with "cpu" and "cpuacct" symlinks
    beside it) or one each (cpu and cpuacct mounted separately); both spell the same map.
    """
    found: dict[str, str] = {}
    root = os.fspath(root)
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return found
    for entry in names:
        wanted = [name for name in entry.split(",") if name in V1_CONTROLLERS]
        # Only controller directories are checked for being hierarchies (one stat each): not
        # name=systemd, unified or anything else mounted there.
        if not wanted or not os.path.exists(os.path.join(root, entry, "cgroup.procs")):
            continue
        for name in wanted:
            found.setdefault(name, os.path.join(root, entry))
    return found


def remove_if_empty(path: str, root: StrPath = "/sys/fs/cgroup") -> None:
    """rmdir cgroup `path` in every hierarchy where it exists and is empty: a parent such as
    /pallet that its last container left. One with tasks or children stays (EBUSY), and
    nothing is killed, unlike CgroupManager.destroy."""
    rel = relative_path(path)
    root = os.fspath(root)
    dirs = ([root] if detect_version(root) == 2 else []) + list(dict.fromkeys(v1_hierarchies(root).values()))
    unified = os.path.join(root, "unified")
    if os.path.ismount(unified):
        dirs.append(unified)
    for d in dirs:
        try:
            os.rmdir(os.path.join(d, rel))
        except OSError:
            pass  # absent, busy or not empty: not ours to force


def relative_path(path: str) -> str:
    """The cgroup path below a hierarchy root; refuses the root itself and any "..".

    OCI linux.cgroupsPath is absolute to the hierarchy root; a relative one is taken the same
    way here (the runtime spec lets a runtime interpret it relative to its own cgroup).
    """
    if not isinstance(path, str) or not path.strip("/"):
        raise InvalidArgument(f"linux.cgroupsPath: {path!r} does not name a cgroup below the root")
    if any(part in ("..", ".") for part in path.split("/")) or "\0" in path:
        raise InvalidArgument(f"linux.cgroupsPath: {path!r} must not contain '.' or '..'")
    return "/".join(part for part in path.split("/") if part)  # as PurePosixPath spelled it


def create_cgroup_manager(path: str, root: StrPath = "/sys/fs/cgroup",
                          syscalls: Any = None) -> CgroupManager:
    """The manager for cgroup `path` on the host whose cgroupfs is mounted at root.

    syscalls: an object with the pallet.syscalls.bpf.Bpf methods (v2 device filter); default the
    real one, loaded on first use.
    """
    rel = relative_path(path)
    if os.path.exists(os.path.join(root, "cgroup.controllers")):  # detect_version, listing once
        from pallet.cgroups.v2 import V2Manager

        return V2Manager(path, rel, root, syscalls)
    hierarchies = v1_hierarchies(root)
    if not hierarchies:
        raise NotSupported(f"no cgroup hierarchy found under {root}")
    from pallet.cgroups.v1 import V1Manager

    return V1Manager(path, rel, hierarchies)
