"""The runtime's operations on containers: create, start, state, kill, delete, exec and the rest.

This is the runtime library behind the `pallet-runtime` command line (runtime.md "Operations").
Each operation validates everything it can before it changes anything, and a failure part way
through create undoes what was done: no cgroup, state directory or process is left behind.
The two operations that fork a container's processes, create and exec, live in
pallet.runtime.spawn, loaded only by them: `start`, `state`, `kill` and `delete` run on every
container's path (conmon, containerd's shim) and do not pay for that code's loading.
"""

from __future__ import annotations

import _signal  # the C module: signal.py builds enums of every constant on import (~1 ms)
import builtins
import os
import select
import time

from pallet.errors import Conflict, NotFound, PalletError
from pallet.runtime.state import ContainerState, StateStore, oci_state, proc_start_time, status_of


class _suppress:
    """contextlib.suppress without contextlib, whose import (collections, functools) costs ~1.5 ms
    of every command; the same semantics: exceptions of the given types end the block silently."""

    __slots__ = ("_types",)

    def __init__(self, *types: type[BaseException]) -> None:
        self._types = types

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, _exc, _tb) -> bool:
        return exc_type is not None and issubclass(exc_type, self._types)


class CreateOptions:
    """Options of `create` and `run` (a plain class: see ContainerState for why)."""

    def __init__(self, bundle: str, pid_file: str | None = None, console_socket: str | None = None,
                 no_pivot: bool = False, preserve_fds: int = 0, subreaper: bool = False) -> None:
        self.bundle, self.pid_file, self.console_socket = bundle, pid_file, console_socket
        self.no_pivot, self.preserve_fds, self.subreaper = no_pivot, preserve_fds, subreaper


def cgroup_path_for(linux: dict, cid: str) -> str:
    """linux.cgroupsPath, or /pallet/<id>. A systemd-style "slice:prefix:name" becomes the path
    systemd would give it (/slice/prefix-name.scope); cgroups are still driven through cgroupfs."""
    path = linux.get("cgroupsPath")
    if not path:
        return f"/pallet/{cid}"
    if ":" in path and not path.startswith("/"):
        slice_, prefix, name = [*path.split(":"), "", ""][:3]
        slice_ = slice_ or "system.slice"
        return f"/{slice_}/{prefix}-{name}.scope" if prefix else f"/{slice_}/{name}"
    return path if path.startswith("/") else "/" + path


def _now() -> str:
    """RFC 3339 in UTC with nanoseconds, as runc writes `created` (no datetime import: start-up)."""
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + f".{ns % 10**9:09d}Z"


class Runtime:
    def __init__(self, root: str, syscalls=None, cgroup_root: str = "/sys/fs/cgroup", warn=None) -> None:
        self.store = StateStore(root)
        self._sys = syscalls
        self.cgroup_root = cgroup_root
        self.warn = warn or (lambda msg: None)
        self._cgroups: dict[str, object] = {}

    @property
    def sys(self):
        """The syscall door, loaded on first use: start, state, kill and delete never need it
        (ctypes and libc's declarations cost ~2 ms of their start-up)."""
        if self._sys is None:
            from pallet.syscalls import real

            self._sys = real()
        return self._sys

    def _cgroup(self, path: str):
        """The manager of cgroup `path`, made once per Runtime: `run` creates, starts and deletes
        with one, and each costs a listing of the cgroupfs root and a stat per hierarchy."""
        cg = self._cgroups.get(path)
        if cg is None:
            from pallet.cgroups import create_cgroup_manager

            cg = self._cgroups[path] = create_cgroup_manager(path, root=self.cgroup_root)
        return cg

    # -- create and exec (pallet.runtime.spawn) ------------------------------------------------
    def create(self, cid: str, opts: CreateOptions) -> ContainerState:
        """Create container `cid` from the bundle in opts: its init waits on the exec fifo."""
        from pallet.runtime import spawn

        return spawn.create(self, cid, opts)

    def exec(self, cid: str, process: dict, console_socket: str | None = None, detach: bool = False,
             pid_file: str | None = None, preserve_fds: int = 0, subreaper: bool | None = None) -> int:
        """Run `process` in the container; return its pid (detach) or wait and return its status."""
        from pallet.runtime import spawn

        return spawn.exec_process(self, cid, process, console_socket, detach, pid_file, preserve_fds,
                                  subreaper)

    # -- start -------------------------------------------------------------------------------
    def start(self, cid: str, st: ContainerState | None = None) -> None:
        """Let a created container run its process. `st`: its state when the caller (`run`) holds
        it already, read again otherwise."""
        st = st if st is not None else self.store.load(cid)
        status = self.status(st)
        if status != "created":
            raise Conflict(f"cannot start a container that is {status}: container {cid!r}")
        fifo = self.store.fifo(cid)
        # O_RDWR never blocks on a fifo and unblocks the init's open(O_WRONLY); then wait for its
        # byte, watching that the init is still alive (runc: handleFifoResult).
        fd = os.open(fifo, os.O_RDWR | os.O_CLOEXEC)
        try:
            while True:
                ready, _, _ = select.select([fd], [], [], 0.05)
                if ready:
                    os.read(fd, 1)
                    break
                if proc_start_time(st.pid) != st.pid_start:
                    raise Conflict(f"container {cid!r}: init process exited before start")
        finally:
            os.close(fd)
            with _suppress(FileNotFoundError):
                os.unlink(fifo)
        hooks = st.config.get("hooks") or {}
        if hooks.get("poststart"):
            from pallet.runtime.hooks import run_hooks

            try:
                run_hooks("poststart", hooks["poststart"], oci_state(st, "running"))
            except PalletError:
                self.kill(cid, _signal.SIGKILL, all_processes=True)
                raise

    # -- queries -----------------------------------------------------------------------------
    def status(self, st: ContainerState) -> str:
        def frozen() -> bool:
            try:
                return bool(self._cgroup(st.cgroup_path).frozen())
            except (PalletError, OSError):
                return False

        return status_of(self.store, st, frozen)

    def state(self, cid: str) -> dict:
        st = self.store.load(cid)
        return oci_state(st, self.status(st))

    def list_states(self) -> list[dict]:
        out = []
        for cid in self.store.list():
            with _suppress(NotFound):
                out.append(self.state(cid))
        return out

    def pids(self, cid: str) -> builtins.list[int]:
        st = self.store.load(cid)
        return sorted(self._cgroup(st.cgroup_path).pids())

    # -- signals and teardown ------------------------------------------------------------------
    def kill(self, cid: str, sig: int, all_processes: bool = False) -> None:
        st = self.store.load(cid)
        status = self.status(st)
        if status == "stopped" and not all_processes:
            raise Conflict("container not running")
        if all_processes:
            cg = self._cgroup(st.cgroup_path)
            if sig == _signal.SIGKILL and status == "paused":
                pass  # a frozen task still dies of SIGKILL once thawed; thaw below
            for p in cg.pids():
                with _suppress(ProcessLookupError):
                    os.kill(p, sig)
            if status == "paused":
                cg.thaw()
            return
        os.kill(st.pid, sig)

    def delete(self, cid: str, force: bool = False, st: ContainerState | None = None) -> None:
        """Remove a stopped container (any container with force): kill what is left in its
        cgroup, rmdir the cgroup, run poststop hooks, remove the state directory. `st`: its
        state when the caller (`run`) holds it already.

        For a stopped container (the common case: conmon and containerd delete after the exit)
        that is one read of cgroup.procs, which is empty when the init ran in its own pid
        namespace (the kernel killed the rest with it), then one rmdir per hierarchy, in the
        directories create recorded: no cgroup driver is loaded. Anything else (processes
        left, sub-cgroups, a busy cgroup, a state file without the directories) takes the
        driver's path: kill, wait, remove the tree with retries."""
        st = st if st is not None else self.store.load(cid)
        status = self.status(st)
        if status in ("running", "paused") and not force:
            raise Conflict(f"cannot delete container {cid} that is not stopped: {status}")
        if not (status == "stopped" and self._remove_empty_cgroup(st.cgroup_dirs)):
            self._kill_and_destroy_cgroup(st, status)
        hooks = st.config.get("hooks") or {}
        if hooks.get("poststop"):
            from pallet.runtime.hooks import run_poststop

            run_poststop(hooks["poststop"], oci_state(st, "stopped"), self.warn)
        self.store.remove(cid)

    def _remove_empty_cgroup(self, dirs: builtins.list[str]) -> bool:
        """rmdir the cgroup's directories if it holds no process and no sub-cgroup; False
        (having changed nothing that matters) when the driver's path must do it."""
        root = self.cgroup_root.rstrip("/") + "/"
        if not dirs or not all(isinstance(d, str) and d.startswith(root) and "/../" not in d
                               for d in dirs):
            return False  # an older state file, or not ours to touch
        try:
            with open(os.path.join(dirs[0], "cgroup.procs"), "rb") as f:
                if f.read().strip():
                    return False
        except FileNotFoundError:
            pass  # gone in that hierarchy; the others are still ours to remove
        except OSError:
            return False
        for d in dirs:
            try:
                os.rmdir(d)
            except FileNotFoundError:
                continue
            except OSError:  # busy for a moment after the last exit, or sub-cgroups: EBUSY
                return False
        return True

    def _kill_and_destroy_cgroup(self, st: ContainerState, status: str) -> None:
        cg = self._cgroup(st.cgroup_path)
        if status != "stopped":
            with _suppress(ProcessLookupError):
                os.kill(st.pid, _signal.SIGKILL)
        left: builtins.list[int] = []
        with _suppress(PalletError, OSError):
            left = cg.pids()
            for p in left:
                with _suppress(ProcessLookupError):
                    os.kill(p, _signal.SIGKILL)
            if status == "paused":
                cg.thaw()
        if status != "stopped":  # a stopped init is gone already (status_of read its /proc entry)
            _wait_gone(st.pid, st.pid_start)
        if left:
            with _suppress(PalletError, OSError):
                _wait_cgroup_empty(cg)
        cg.destroy()

    def pause(self, cid: str) -> None:
        st = self.store.load(cid)
        status = self.status(st)
        if status != "running":
            raise Conflict(f"container {cid!r} is {status}, not running")
        self._cgroup(st.cgroup_path).freeze()

    def resume(self, cid: str) -> None:
        st = self.store.load(cid)
        if self.status(st) != "paused":
            raise Conflict(f"container {cid!r} is not paused")
        self._cgroup(st.cgroup_path).thaw()

    def update(self, cid: str, resources: dict) -> None:
        st = self.store.load(cid)
        if self.status(st) == "stopped":
            raise Conflict(f"container {cid!r} is stopped")
        cg = self._cgroup(st.cgroup_path)
        merged = _merge(st.config.setdefault("linux", {}).get("resources") or {}, resources)
        cg.validate(merged)
        cg.set(resources)
        st.config["linux"]["resources"] = merged
        self.store.save(st)

    def stats(self, cid: str):
        st = self.store.load(cid)
        if self.status(st) == "stopped":
            raise Conflict(f"container {cid!r} is stopped")
        return self._cgroup(st.cgroup_path).stats()


def _reap(pid: int) -> int:
    try:
        _, status = os.waitpid(pid, 0)
        return status
    except ChildProcessError:
        return 0


def wait_status(pid: int) -> int:
    """Wait for a child (or an orphan adopted as subreaper) and return a shell-style status."""
    while True:
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            return 0
        except InterruptedError:
            continue
        if os.WIFEXITED(status):
            return os.WEXITSTATUS(status)
        if os.WIFSIGNALED(status):
            return 128 + os.WTERMSIG(status)


def _wait_gone(pid: int, start: int, timeout: float = 10.0) -> None:
    if not pid:
        return
    deadline = time.monotonic() + timeout
    while proc_start_time(pid) == start and time.monotonic() < deadline:
        time.sleep(0.005)


def _wait_cgroup_empty(cg, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while cg.exists() and cg.pids() and time.monotonic() < deadline:
        time.sleep(0.005)


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for k, v in update.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
