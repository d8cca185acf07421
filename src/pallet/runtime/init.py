"""The code that runs between fork() and execve(): the two setup stages of a container process.

    pallet-runtime ──fork──▶ stage 1 ──fork──▶ stage 2 (container init, pid 1 of a new pid ns)
Stage 1 joins namespaces given by path, creates the user namespace (the runtime writes its id
maps from outside), then the other namespaces but the cgroup one, and forks: pid and time
namespaces apply to children only (unshare(2)). On cgroup v1 stage 1 first moves itself into the
container's cgroup (`_self_move`); on v2 the runtime moves stage 2 while stage 2 mounts the root
filesystem. Stage 2 waits for "continue" (sent after any move) before its cgroup mount, then
makes its cgroup namespace. Stage 2 sets up the root filesystem and the process and reports
"created"; the runtime records the state and exits; stage 2 then blocks opening the exec fifo
until `start`, and execs the user's program.

Rules for this module (STYLE.md §8): no threads, no logging handlers; every process here is
non-dumpable from its first instruction until execve, so no other process of the container can
open /proc/<pid>/exe or /proc/<pid>/fd of the runtime; failures go back over the sync channel.
"""

from __future__ import annotations

import _socket  # not socket.py: ~2 ms of imports on every create (see sync.py)
import fcntl
import os
import struct
import sys

from pallet.oci.runtime_spec import NAMESPACES
from pallet.runtime import process as proc
from pallet.runtime.hooks import run_hooks
from pallet.runtime.rootfs import Rootfs
from pallet.runtime.sync import Channel, send_fds
from pallet.syscalls import flags as F

TYPE_CHECKING = False  # typing costs ~2 ms of start-up; mypy treats this name as typing's
if TYPE_CHECKING:
    import socket
    from typing import Any


class InitPlan:
    """Everything the child stages need, computed and validated by the runtime before fork.

    A plain class, not a dataclass: dataclasses costs ~6 ms of imports (inspect, ast) on every
    create, run and exec (see docs/benchmarks.md)."""

    __slots__ = ("cgroup_binds", "cgroup_tasks", "config", "console", "fifo_fd", "hook_state", "join_fds",
                 "new_flags", "new_userns", "no_pivot", "preserve_fds", "rootfs", "seccomp")

    def __init__(self, *, config: dict, rootfs: str, join_fds: list[tuple[str, int]], new_flags: int,
                 new_userns: bool, fifo_fd: int = -1, console: socket.socket | None = None,
                 cgroup_binds: list[tuple[str, str]] | None = None, no_pivot: bool = False,
                 preserve_fds: int = 0, hook_state: dict | None = None, seccomp: object = None,
                 cgroup_tasks: list[str] | None = None) -> None:
        self.config = config
        self.rootfs = rootfs
        self.join_fds = join_fds            # (ns type, fd) to setns, non-user first
        self.new_flags = new_flags          # CLONE_NEW* to unshare, user excluded
        self.new_userns = new_userns
        self.fifo_fd = fifo_fd              # O_PATH fd of exec.fifo; -1 for exec
        self.console = console              # connected socket to send the pty master on
        self.cgroup_binds = cgroup_binds if cgroup_binds is not None else []
        self.no_pivot = no_pivot
        self.preserve_fds = preserve_fds
        self.hook_state = hook_state if hook_state is not None else {}
        self.seccomp: Any = seccomp         # pallet.runtime.seccomp.Compiled, built before fork
        # v1 `tasks` files stage 1 writes "0" to, moving itself (CgroupManager.self_move_files);
        # empty: the runtime moves the process by its pid.
        self.cgroup_tasks = cgroup_tasks if cgroup_tasks is not None else []


def child_main(stage, plan: InitPlan, chan: Channel, syscalls) -> None:
    """Entry point in a forked child: run `stage`, report any failure, never return."""
    code = 1
    try:
        syscalls.prctl(F.PR_SET_DUMPABLE, 0)
        stage(plan, chan, syscalls)
        code = 0
    except BaseException as exc:  # report everything; the runtime turns it into its error
        msg = str(exc) or type(exc).__name__
        if os.environ.get("PALLET_DEBUG_INIT"):
            import traceback

            msg += "\n" + traceback.format_exc()
        try:
            chan.send("error", message=msg)
        except OSError:
            print(f"pallet-runtime init: {msg}", file=sys.stderr)
    finally:
        os._exit(code)


def _self_move(plan: InitPlan) -> None:
    """Join the container's cgroup by writing "0" to each hierarchy's `tasks`: we are single-
    threaded (a child of fork), so this moves the whole process, and a thread that moves itself
    takes no cgroup_threadgroup_rwsem (cgroup_procs_write_start), so it does not wait for the
    RCU grace period that the runtime's cgroup.procs write of our pid would (4-25 ms here; 0.7
    ms for eight hierarchies this way). Before any namespace: we are still the host's root."""
    for path in plan.cgroup_tasks:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)
        except OSError as exc:
            raise OSError(exc.errno, f"joining the container's cgroup: {path}: {exc.strerror}") from None


def _join_and_unshare(plan: InitPlan, chan: Channel, syscalls) -> None:
    for nstype, fd in plan.join_fds:
        syscalls.setns(fd, NAMESPACES[nstype][0], path=nstype)
        os.close(fd)
    if plan.new_userns:
        syscalls.unshare(F.CLONE_NEWUSER)
        chan.send("userns")
        chan.recv("mapped")
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    # The cgroup namespace is stage 2's, once the runtime has moved it into its cgroup (the
    # namespace's root is the cgroup of whoever unshares it, at that moment).
    flags = plan.new_flags & ~F.CLONE_NEWCGROUP
    if flags:
        syscalls.unshare(flags)
    offsets = (plan.config.get("linux") or {}).get("timeOffsets")
    if offsets and plan.new_flags & F.CLONE_NEWTIME:
        # time_namespaces(7): offsets are written before the first process enters the namespace.
        with open("/proc/self/timens_offsets", "w") as f:
            for clock, off in offsets.items():
                f.write(f"{clock} {off.get('secs', 0)} {off.get('nanosecs', 0)}\n")


def stage1(plan: InitPlan, chan: Channel, syscalls) -> None:
    chan.recv("go")
    _self_move(plan)
    _join_and_unshare(plan, chan, syscalls)
    fds: list[int] = []
    if has_idmapped_mounts(plan.config):
        # The runtime makes the id-mapped trees now that our user namespace exists; without
        # such mounts the round trip is skipped (both sides read the same config).
        chan.send("ns-ready")
        _msg, fds = chan.recv("ns-ack")
    plan.config["_idmap_fds"] = fds
    pid = os.fork()
    if pid == 0:
        child_main(stage2, plan, chan, syscalls)
    chan.send("pid", pid=pid)


def stage2(plan: InitPlan, chan: Channel, syscalls) -> None:
    config = plan.config
    linux = config.get("linux") or {}
    process = config["process"]
    # The root filesystem is set up at once, while stage 1 reports our pid and exits and the
    # runtime reaps it; only speaking waits for "continue" below.
    os.setsid()
    idx = [i for i, m in enumerate(config.get("mounts") or []) if _is_idmapped(m)]
    idmapped = dict(zip(idx, config.pop("_idmap_fds")))
    in_userns = plan.new_userns or any(t == "user" for t, _ in plan.join_fds)
    newns = plan.new_flags & F.CLONE_NEWNS or any(t == "mount" for t, _ in plan.join_fds)
    rootfs = Rootfs(plan.rootfs, syscalls, in_userns=in_userns)
    moved: list[bool] = []

    def in_cgroup() -> None:
        """Wait until the runtime has moved us into the container's cgroup ("continue"), then
        make the cgroup namespace: before the first cgroup mount, else after the others.
        Stage 1 and we share the channel: we speak only after this, once the runtime has stage
        1's "pid" message, or our first message could overtake it (seen under load: "expected
        'pid', got 'created'"); an error before this point may overtake it: the runtime reports
        any "error" it receives."""
        if moved:
            return
        chan.recv("continue")
        moved.append(True)
        if plan.new_flags & F.CLONE_NEWCGROUP:
            syscalls.unshare(F.CLONE_NEWCGROUP)

    if newns:
        rootfs.prepare(linux.get("rootfsPropagation"))
        rootfs.mount_all(config.get("mounts") or [], lambda: plan.cgroup_binds, idmapped,
                         before_cgroup=in_cgroup)
        if _has_dev_tmpfs(config):
            rootfs.create_devices(linux.get("devices") or [])
    in_cgroup()
    hooks = config.get("hooks") or {}
    if hooks.get("prestart") or hooks.get("createRuntime"):
        chan.send("hook", kind="createRuntime")
        chan.recv("hook-done")
    if hooks.get("createContainer"):
        run_hooks("createContainer", hooks["createContainer"], {**plan.hook_state, "pid": 1})
    if newns:
        rootfs.pivot(plan.no_pivot)
    else:
        os.chroot(plan.rootfs)
        os.chdir("/")
    if process.get("terminal"):
        _setup_console(plan, rootfs if newns else None)
    if linux.get("sysctl"):
        for key, value in linux["sysctl"].items():
            with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
                f.write(value)
    if newns:
        rootfs.mask_paths(linux.get("maskedPaths") or [])
        rootfs.readonly_paths(linux.get("readonlyPaths") or [])
        if (config.get("root") or {}).get("readonly"):
            rootfs.readonly_root()
    if config.get("hostname"):
        _socket.sethostname(config["hostname"])
    if config.get("domainname"):
        syscalls.setdomainname(config["domainname"])
    proc.set_rlimits(process.get("rlimits") or [])
    if "oomScoreAdj" in process:
        proc.set_oom_score_adj(process["oomScoreAdj"])
    os.chdir(process.get("cwd", "/"))
    exe = proc.find_executable(process["args"][0], proc.env_dict(process.get("env") or []))
    chan.send("created")
    chan.close()
    # Block here until `start` opens the fifo for reading (runc's exec.fifo).
    fd = os.open(f"/proc/self/fd/{plan.fifo_fd}", os.O_WRONLY | os.O_CLOEXEC)
    os.write(fd, b"0")
    os.close(fd)
    os.close(plan.fifo_fd)
    if hooks.get("startContainer"):
        run_hooks("startContainer", hooks["startContainer"], {**plan.hook_state, "pid": 1,
                                                              "status": "running"})
    proc.finalize_and_exec(process, plan.seccomp, syscalls, 3 + plan.preserve_fds, exe)


def exec_stage1(plan: InitPlan, chan: Channel, syscalls) -> None:
    """Join every namespace of a running container, then fork the process that execs."""
    chan.recv("go")
    _self_move(plan)
    _join_and_unshare(plan, chan, syscalls)
    pid = os.fork()
    if pid == 0:
        child_main(exec_stage2, plan, chan, syscalls)
    chan.send("pid", pid=pid)


def exec_stage2(plan: InitPlan, chan: Channel, syscalls) -> None:
    process = plan.config["process"]
    if process.get("terminal"):
        os.setsid()
        _setup_console(plan, None)
    proc.set_rlimits(process.get("rlimits") or [])
    os.chdir(process.get("cwd", "/"))
    exe = proc.find_executable(process["args"][0], proc.env_dict(process.get("env") or []))
    proc.finalize_and_exec(process, plan.seccomp, syscalls, 3 + plan.preserve_fds, exe)


def has_idmapped_mounts(config: dict) -> bool:
    return any(_is_idmapped(m) for m in config.get("mounts") or [])


def _is_idmapped(m: dict) -> bool:
    opts = m.get("options") or []
    return "idmap" in opts or "ridmap" in opts or "uidMappings" in m


def _has_dev_tmpfs(config: dict) -> bool:
    return any(m.get("destination") == "/dev" for m in config.get("mounts") or [])


def _setup_console(plan: InitPlan, rootfs) -> None:
    """Open a pty in the container's devpts, send the master out, make the slave our stdio."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, F.TIOCSPTLCK, struct.pack("i", 0))
    n = struct.unpack("I", fcntl.ioctl(master, F.TIOCGPTN, struct.pack("I", 0)))[0]
    slave_path = f"/dev/pts/{n}"
    slave = os.open(slave_path, os.O_RDWR | os.O_NOCTTY)
    size = plan.config["process"].get("consoleSize")
    if size:
        fcntl.ioctl(slave, 0x5414, struct.pack("HHHH", size.get("height", 24), size.get("width", 80), 0, 0))
    if plan.console is None:
        raise RuntimeError("process.terminal is true but no console socket was given")
    send_fds(plan.console, b"pty", [master])
    plan.console.close()
    os.close(master)
    if rootfs is not None:
        rootfs.bind_console(slave_path)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    fcntl.ioctl(0, F.TIOCSCTTY, 0)
    if slave > 2:
        os.close(slave)
