"""Fake cgroupfs trees for unit tests: v1 (cpu and cpuacct apart, or combined), v2, and a bpf recorder.

The fakes hold what the kernel shows: hierarchy roots with their files; a test that needs a
cgroup's own interface files creates them with `populate_*`, as the kernel would on mkdir.
"""

from __future__ import annotations

from pathlib import Path

V1_ROOT_FILES = {
    "cpu": {"cpu.shares": "1024", "cpu.cfs_quota_us": "-1", "cpu.cfs_period_us": "100000",
            "cpu.cfs_burst_us": "0", "cpu.idle": "0", "cpu.stat": "nr_periods 0\n"},
    "cpuacct": {"cpuacct.usage": "0"},
    "cpuset": {"cpuset.cpus": "0-3\n", "cpuset.mems": "0\n"},
    "memory": {"memory.limit_in_bytes": "9223372036854771712", "memory.memsw.limit_in_bytes":
               "9223372036854771712", "memory.use_hierarchy": "1"},
    "devices": {"devices.allow": "", "devices.deny": "", "devices.list": "a *:* rwm\n"},
    "freezer": {},
    "blkio": {"blkio.throttle.read_bps_device": ""},
    "pids": {},
    "hugetlb": {"hugetlb.2MB.limit_in_bytes": "9223372036854771712"},
}

# Files the kernel creates in a new (non-root) cgroup, per hierarchy.
V1_CGROUP_FILES = {
    "cpu": ["cpu.shares", "cpu.cfs_quota_us", "cpu.cfs_period_us", "cpu.cfs_burst_us", "cpu.idle",
            "cpu.stat"],
    "cpuacct": ["cpuacct.usage", "cpuacct.usage_percpu", "cpuacct.usage_user", "cpuacct.usage_sys",
                "cpuacct.stat"],
    "cpuset": ["cpuset.cpus", "cpuset.mems"],
    "memory": ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "memory.soft_limit_in_bytes",
               "memory.swappiness", "memory.oom_control", "memory.stat", "memory.usage_in_bytes"],
    "devices": ["devices.allow", "devices.deny"],
    "freezer": ["freezer.state"],
    "blkio": ["blkio.bfq.weight", "blkio.bfq.weight_device", "blkio.throttle.read_bps_device",
              "blkio.throttle.write_bps_device", "blkio.throttle.read_iops_device",
              "blkio.throttle.write_iops_device"],
    "pids": ["pids.max", "pids.current"],
    "hugetlb": ["hugetlb.2MB.limit_in_bytes", "hugetlb.1GB.limit_in_bytes"],
}

V2_CONTROLLERS = "cpuset cpu io memory hugetlb pids rdma misc"
V2_CGROUP_FILES = ["cgroup.procs", "cgroup.controllers", "cgroup.subtree_control", "cgroup.events",
                   "cgroup.freeze", "cpu.weight", "cpu.max", "cpu.max.burst", "cpu.idle", "cpu.stat",
                   "cpuset.cpus", "cpuset.mems", "io.weight", "io.max", "io.stat", "memory.max",
                   "memory.low", "memory.high", "memory.swap.max", "memory.stat", "memory.events",
                   "memory.current", "pids.max", "pids.current", "hugetlb.2MB.max"]


def _files(d: Path, files: dict[str, str]) -> None:
    d.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (d / name).write_text(content)


def make_v1(root: Path, combined: bool = False) -> Path:
    """A v1 hybrid tree like this host: one dir per controller, plus name=systemd and unified."""
    for name, files in V1_ROOT_FILES.items():
        if combined and name in ("cpu", "cpuacct"):
            continue
        _files(root / name, {"cgroup.procs": "1\n", "tasks": "1\n", **files})
    if combined:
        both = root / "cpu,cpuacct"
        _files(both, {"cgroup.procs": "1\n", **V1_ROOT_FILES["cpu"], **V1_ROOT_FILES["cpuacct"]})
        (root / "cpu").symlink_to("cpu,cpuacct")
        (root / "cpuacct").symlink_to("cpu,cpuacct")
    _files(root / "systemd", {"cgroup.procs": "1\n"})
    _files(root / "unified", {"cgroup.controllers": "", "cgroup.procs": "1\n"})
    return root


def make_v2(root: Path) -> Path:
    _files(root, {"cgroup.controllers": V2_CONTROLLERS + "\n", "cgroup.subtree_control": "\n",
                  "cgroup.procs": "1\n", "cpu.stat": "usage_usec 0\n"})
    return root


def populate(d: Path, names: list[str]) -> None:
    """Create a cgroup's interface files (empty unless they exist), as the kernel does on mkdir."""
    d.mkdir(parents=True, exist_ok=True)
    for name in names:
        f = d / name
        if not f.exists():
            f.write_text("")
    if "cgroup.controllers" in names and not (d / "cgroup.controllers").read_text():
        (d / "cgroup.controllers").write_text(V2_CONTROLLERS + "\n")


def populate_v1(root: Path, rel: str) -> None:
    for name, files in V1_CGROUP_FILES.items():
        populate(root / name / rel.lstrip("/"), files)


def populate_v2(root: Path, rel: str) -> None:
    d = root
    for part in rel.strip("/").split("/"):
        d = d / part
        populate(d, V2_CGROUP_FILES)


def drop_interface_files(d: Path) -> None:
    """What rmdir(2) does to a cgroup's files in the kernel; plain directories need it done."""
    for f in d.rglob("*"):
        if f.is_file():
            f.unlink()


class Writes(list):
    """Every cgroupfs.write, as (path relative to the fake root, value) in order."""

    def __init__(self, base: Path) -> None:
        super().__init__()
        self.base = base

    def to(self, name: str) -> list[str]:
        """Values written to files named `name` (the basename), in order."""
        return [v for p, v in self if Path(p).name == name]


class RecordingBpf:
    """The pallet.syscalls.bpf.Bpf methods, recorded; `attached` plays the kernel's prog list."""

    def __init__(self, attached: list[int] | None = None) -> None:
        self.calls: list[tuple] = []
        self.attached = list(attached or [])
        self.loaded: list[bytes] = []
        self._fd = 100

    def _new_fd(self) -> int:
        self._fd += 1
        return self._fd

    def bpf_prog_query(self, target_fd: int) -> list[int]:
        self.calls.append(("query",))
        return list(self.attached)

    def bpf_prog_load_cgroup_device(self, insns: bytes, license: str = "Apache-2.0") -> int:
        self.loaded.append(insns)
        fd = self._new_fd()
        self.calls.append(("load", fd))
        return fd

    def bpf_prog_attach(self, prog_fd: int, target_fd: int) -> None:
        self.calls.append(("attach", prog_fd))

    def bpf_prog_get_fd_by_id(self, prog_id: int) -> int:
        fd = self._new_fd()
        self.calls.append(("get_fd_by_id", prog_id, fd))
        return fd

    def bpf_prog_detach(self, prog_fd: int, target_fd: int) -> None:
        self.calls.append(("detach", prog_fd))

    def close(self, fd: int) -> None:
        self.calls.append(("close", fd))
