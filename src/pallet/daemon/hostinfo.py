"""Facts about this host for GET /info and /version, read once at start-up from injectable roots.

`gather(config, proc=..., sys_root=..., etc=...)` reads /proc, /sys/fs/cgroup and /etc/os-release
through the roots given, so unit tests can point it at a fake tree (STYLE.md §9).
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pallet
from pallet.api.server.backend import HostInfo
from pallet.cgroups import detect_version
from pallet.daemon.config import DaemonConfig
from pallet.errors import InvalidArgument, NotSupported

# uname -m -> GOARCH, the spelling SystemVersion.Arch and `docker version` use.
_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "i386": "386",
           "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}

# Runtimes other than our own that palletd can drive, found on PATH (like dockerd's runc default).
_OTHER_RUNTIMES = ("runc", "crun")


def os_release(etc: Path = Path("/etc")) -> dict[str, str]:
    """KEY=value pairs of os-release(5), unquoted; /usr/lib/os-release when /etc has none."""
    for path in (etc / "os-release", etc.parent / "usr/lib/os-release"):
        try:
            text = path.read_text()
        except OSError:
            continue
        out = {}
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep and not key.startswith("#"):
                out[key.strip()] = value.strip().strip("\"'")
        return out
    return {}


def mem_total(proc: Path = Path("/proc")) -> int:
    try:
        for line in (proc / "meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def cgroup_features(root: Path, version: int) -> dict[str, bool]:
    """What the cgroup controllers here can limit, in SystemInfo's boolean names."""
    if version == 2:
        try:
            ctrls = set((root / "cgroup.controllers").read_text().split())
        except OSError:
            ctrls = set()
        mem = "memory" in ctrls
        return {"MemoryLimit": mem, "SwapLimit": mem,
                "KernelMemoryTCP": False, "CpuCfsPeriod": "cpu" in ctrls, "CpuCfsQuota": "cpu" in ctrls,
                "CPUShares": "cpu" in ctrls, "CPUSet": "cpuset" in ctrls, "PidsLimit": "pids" in ctrls,
                "OomKillDisable": False}
    return {
        "MemoryLimit": (root / "memory" / "memory.limit_in_bytes").exists(),
        "SwapLimit": (root / "memory" / "memory.memsw.limit_in_bytes").exists(),
        "KernelMemoryTCP": (root / "memory" / "memory.kmem.tcp.limit_in_bytes").exists(),
        "CpuCfsPeriod": (root / "cpu" / "cpu.cfs_period_us").exists(),
        "CpuCfsQuota": (root / "cpu" / "cpu.cfs_quota_us").exists(),
        "CPUShares": (root / "cpu" / "cpu.shares").exists(),
        "CPUSet": (root / "cpuset" / "cpuset.cpus").exists(),
        "PidsLimit": (root / "pids" / "pids.max").exists(),
        "OomKillDisable": (root / "memory" / "memory.oom_control").exists(),
    }


def engine_id(data_root: str) -> str:
    """A stable id for this daemon, kept in <data-root>/engine-id like dockerd's."""
    path = os.path.join(data_root, "engine-id")
    try:
        with open(path) as f:
            value = f.read().strip()
        if value:
            return value
    except FileNotFoundError:
        pass
    value = str(uuid.uuid4())
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(value + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return value


def _git_commit() -> str:
    """The commit of a source checkout Pallet runs from, else "unknown" (an installed wheel)."""
    src = Path(pallet.__file__).resolve().parents[2]
    if not (src / ".git").exists() or shutil.which("git") is None:
        return "unknown"
    try:
        out = subprocess.run(["git", "-C", str(src), "rev-parse", "--short=10", "HEAD"],
                             capture_output=True, text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def _build_time() -> str:
    """When this copy of Pallet was installed: the package's mtime, RFC 3339."""
    try:
        ts = os.stat(pallet.__file__).st_mtime
    except OSError:
        return ""
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000000+00:00", time.gmtime(ts))


def runtimes(config: DaemonConfig) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    ours = Path(sys.executable).with_name("pallet-runtime")
    found["pallet-runtime"] = {"path": str(ours) if ours.exists() else shutil.which("pallet-runtime") or
                               "pallet-runtime"}
    for name in _OTHER_RUNTIMES:
        path = shutil.which(name)
        if path:
            found[name] = {"path": path}
    for name, spec in config.runtimes.items():
        found[name] = {"path": spec["path"], **({"runtimeArgs": spec["runtimeArgs"]}
                                                if spec.get("runtimeArgs") else {})}
    return found


def gather(config: DaemonConfig, *, engine: str, warnings: tuple[str, ...] = (),
           proc: Path = Path("/proc"), cgroup_root: Path = Path("/sys/fs/cgroup"),
           etc: Path = Path("/etc")) -> HostInfo:
    uname = os.uname()
    release = os_release(etc)
    try:
        cg_version = detect_version(cgroup_root)
    except NotSupported:
        cg_version = 0
    try:
        ncpu = len(os.sched_getaffinity(0))
    except OSError:
        ncpu = os.cpu_count() or 1
    found = runtimes(config)
    if config.default_runtime not in found:
        raise InvalidArgument(f"default-runtime {config.default_runtime!r} is not one of the runtimes "
                              f"found or configured: {', '.join(sorted(found))}")
    security = ["name=seccomp,profile=default"]
    if cg_version == 2:
        security.append("name=cgroupns")
    env = os.environ
    return HostInfo(
        id=engine,
        name=socket.gethostname(),
        version=pallet.__version__,
        git_commit=_git_commit(),
        build_time=_build_time(),
        python_version=f"python{platform.python_version()}",
        kernel_version=uname.release,
        operating_system=release.get("PRETTY_NAME", "Linux"),
        os_version=release.get("VERSION_ID", ""),
        os_type="linux",
        architecture=uname.machine,
        arch=_GOARCH.get(uname.machine, uname.machine),
        ncpu=ncpu,
        mem_total=mem_total(proc),
        data_root=config.data_root,
        exec_root=config.exec_root,
        cgroup_version=str(cg_version) if cg_version else "",
        cgroup_features=cgroup_features(cgroup_root, cg_version) if cg_version else {},
        runtimes=found,
        default_runtime=config.default_runtime,
        runtime_version=pallet.__version__ if config.default_runtime == "pallet-runtime" else "",
        security_options=tuple(security),
        labels=config.labels,
        debug=config.debug or config.log_level == "debug",
        live_restore=config.live_restore,
        warnings=warnings,
        http_proxy=env.get("HTTP_PROXY", env.get("http_proxy", "")),
        https_proxy=env.get("HTTPS_PROXY", env.get("https_proxy", "")),
        no_proxy=env.get("NO_PROXY", env.get("no_proxy", "")),
    )
