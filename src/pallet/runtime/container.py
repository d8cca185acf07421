"""The runtime's operations on containers: create, start, state, kill, delete, exec and the rest.

This is the runtime library behind the `pallet-runtime` command line (runtime.md "Operations").
Each operation validates everything it can before it changes anything, and a failure part way
through create undoes what was done: no cgroup, state directory or process is left behind.
"""

from __future__ import annotations

import _signal  # the C module: signal.py builds enums of every constant on import (~1 ms)
import builtins
import os
import pwd
import select
import time

from pallet.errors import Conflict, InvalidArgument, NotFound, PalletError
from pallet.oci.runtime_spec import NAMESPACES, validate_config, validate_process
from pallet.runtime import jsonio
from pallet.runtime.state import ContainerState, StateStore, oci_state, proc_start_time, status_of
from pallet.syscalls import flags as F
from pallet.syscalls import real


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

    @property
    def sys(self):
        """The syscall door, loaded on first use: start, state, kill and delete never need it
        (ctypes and libc's declarations cost ~2 ms of their start-up)."""
        if self._sys is None:
            self._sys = real()
        return self._sys

    def _cgroup(self, path: str):
        from pallet.cgroups import create_cgroup_manager

        return create_cgroup_manager(path, root=self.cgroup_root)

    # -- create ------------------------------------------------------------------------------
    def create(self, cid: str, opts: CreateOptions) -> ContainerState:
        bundle = os.path.abspath(opts.bundle)
        config = self._load_config(bundle)
        linux = config.setdefault("linux", {})
        rootfs = config["root"]["path"]
        rootfs = rootfs if os.path.isabs(rootfs) else os.path.join(bundle, rootfs)
        if not os.path.isdir(rootfs):
            raise InvalidArgument(f"root.path: {rootfs} is not a directory")
        if "process" not in config:
            raise InvalidArgument("process: required for create")
        cg = self._cgroup(cgroup_path_for(linux, cid))
        from pallet.runtime.rootfs import device_rules

        if "resources" in linux or linux.get("devices"):
            linux.setdefault("resources", {})["devices"] = device_rules(linux)
        resources = linux.get("resources") or {}
        cg.validate(resources)  # before anything is written
        created = not cg.exists()
        warm = None
        try:
            if created:
                # Our own cgroup: make (and seed) its directories first (set({}) writes no limit),
                # so that the limits go in below while the warm child waits to join it.
                cg.set({})
            warm = _warm_cgroup(cg)
            if created:
                cg.set(resources)
                warm.resources_set = True
            return self._create(cid, opts, bundle, config, linux, rootfs, cg, warm)
        except BaseException:
            if warm is not None:
                warm.reap()
            if created:
                with _suppress(PalletError, OSError):
                    cg.destroy()
            raise

    def _create(self, cid: str, opts: CreateOptions, bundle: str, config: dict, linux: dict, rootfs: str,
                cg, warm: _WarmCgroup) -> ContainerState:
        from pallet.runtime import init as initmod
        from pallet.runtime.rootfs import Rootfs

        self._validate_security(config["process"], linux)
        if _new_flags(linux) & F.CLONE_NEWUSER:
            # Root in a new user namespace is an unprivileged host uid: it cannot create mount points
            # in a rootfs owned by host root. Create them now, while we still are host root.
            Rootfs(rootfs, self.sys).make_mountpoints(config.get("mounts") or [])
        join_fds = self._open_ns_paths(linux)
        console = None
        if config["process"].get("terminal"):
            if not opts.console_socket:
                for _, fd in join_fds:
                    os.close(fd)
                raise InvalidArgument("process.terminal is true: --console-socket is required")
            console = self._connect_console(opts.console_socket)

        state_dir = self.store.reserve(cid)
        st = ContainerState(id=cid, bundle=bundle, rootfs=rootfs, created=_now(), owner=_owner(),
                            cgroup_path=cg.path, config=config,
                            annotations=config.get("annotations") or {})
        pid = 0
        try:
            fifo = self.store.fifo(cid)
            os.mkfifo(fifo, 0o622)
            os.chmod(fifo, 0o622)  # not the umask's: root of a user namespace is "other" here
            fifo_fd = os.open(fifo, os.O_PATH | os.O_CLOEXEC)
            plan = initmod.InitPlan(
                config=config, rootfs=rootfs, join_fds=join_fds,
                new_flags=_new_flags(linux) & ~F.CLONE_NEWUSER,
                new_userns=bool(_new_flags(linux) & F.CLONE_NEWUSER),
                fifo_fd=fifo_fd, console=console, cgroup_binds=_cgroup_binds(cg, linux),
                no_pivot=opts.no_pivot, preserve_fds=opts.preserve_fds,
                hook_state=oci_state(st, "creating"), seccomp=self._seccomp(linux),
            )
            if opts.subreaper:
                self.sys.prctl(F.PR_SET_CHILD_SUBREAPER, 1)
            pid = self._spawn(plan, cg, linux, st, warm)
            os.close(fifo_fd)
        except BaseException:
            self._undo_create(st, pid, cg)
            raise
        finally:
            for _, fd in join_fds:
                with _suppress(OSError):
                    os.close(fd)
            if console is not None:
                console.close()
        if opts.pid_file:
            _write_atomic(opts.pid_file, str(pid))
        del state_dir
        return st

    def _spawn(self, plan, cg, linux: dict, st: ContainerState, warm: _WarmCgroup | None = None) -> int:
        from pallet.runtime import init as initmod
        from pallet.runtime.hooks import prepare as prepare_hooks
        from pallet.runtime.hooks import run_hooks
        from pallet.runtime.sync import Channel, SyncError  # _socket: create and exec only

        prepare_hooks(plan.config.get("hooks") or {})
        parent, child = Channel.pair()
        stage1_pid = os.fork()
        if stage1_pid == 0:
            parent.close()
            initmod.child_main(initmod.stage1, plan, child, self.sys)
        child.close()
        try:
            if warm is not None:
                warm.reap()  # its move made the kernel's next ones cheap
            if warm is None or not warm.resources_set:
                cg.set(linux.get("resources") or {})  # limits in force before the init joins
            cg.apply(stage1_pid)
            parent.send("go")
            msg, _ = parent.recv()
            if msg["type"] == "userns":
                self._write_id_maps(stage1_pid, linux)
                parent.send("mapped")
                msg, _ = parent.recv()
            if msg["type"] != "ns-ready":
                raise SyncError(f"sync protocol: unexpected {msg['type']!r}")
            fds = self._idmapped_mounts(plan.config, stage1_pid)
            parent.send("ns-ack", fds=fds)
            for fd in fds:
                os.close(fd)
            msg, _ = parent.recv("pid")
            pid = msg["pid"]
            st.pid = pid
            st.pid_start = proc_start_time(pid) or 0
            _reap(stage1_pid)
            stage1_pid = 0
            parent.send("continue")
            while True:
                msg, _ = parent.recv()
                if msg["type"] == "hook":
                    hooks = plan.config.get("hooks") or {}
                    state = oci_state(st, "creating")
                    run_hooks("prestart", hooks.get("prestart") or [], state)
                    run_hooks("createRuntime", hooks.get("createRuntime") or [], state)
                    parent.send("hook-done")
                elif msg["type"] == "created":
                    break
            self.store.save(st)
            return pid
        except BaseException:
            if st.pid:
                with _suppress(ProcessLookupError):
                    os.kill(st.pid, _signal.SIGKILL)
            if stage1_pid:
                with _suppress(ProcessLookupError):
                    os.kill(stage1_pid, _signal.SIGKILL)
                _reap(stage1_pid)
            raise
        finally:
            parent.close()

    def _undo_create(self, st: ContainerState, pid: int, cg) -> None:
        if st.pid:
            _wait_gone(st.pid, st.pid_start)
        with _suppress(PalletError, OSError):
            for p in cg.pids():
                with _suppress(ProcessLookupError):
                    os.kill(p, _signal.SIGKILL)
            _wait_cgroup_empty(cg)
            cg.destroy()
        self.store.remove(st.id)

    def _write_id_maps(self, pid: int, linux: dict) -> None:
        for kind in ("uid", "gid"):
            lines = "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n"
                            for m in linux.get(f"{kind}Mappings") or [])
            try:
                with open(f"/proc/{pid}/{kind}_map", "w") as f:
                    f.write(lines)
            except OSError as exc:
                raise InvalidArgument(f"linux.{kind}Mappings: writing /proc/{pid}/{kind}_map: {exc}") from exc

    def _idmapped_mounts(self, config: dict, stage1_pid: int) -> list[int]:
        """Detached, id-mapped clones of the sources of idmap mounts (open_tree + mount_setattr)."""
        from pallet.runtime import init as initmod

        fds: list[int] = []
        for i, m in enumerate(config.get("mounts") or []):
            if not initmod._is_idmapped(m):
                continue
            opts = m.get("options") or []
            recursive = "ridmap" in opts or "rbind" in opts
            flags = F.OPEN_TREE_CLONE | F.OPEN_TREE_CLOEXEC | (F.AT_RECURSIVE if recursive else 0)
            try:
                tree = self.sys.open_tree(m["source"], flags)
                if m.get("uidMappings"):
                    userns = _userns_with_maps(m["uidMappings"], m.get("gidMappings") or m["uidMappings"])
                else:
                    if not (config.get("linux") or {}).get("uidMappings"):
                        raise InvalidArgument(f"mounts[{i}]: idmap needs uidMappings on the mount or a "
                                              "user namespace with mappings")
                    userns = os.open(f"/proc/{stage1_pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
                try:
                    self.sys.mount_setattr_idmap(tree, userns, "ridmap" in opts)
                finally:
                    os.close(userns)
            except OSError as exc:
                raise InvalidArgument(f"mounts[{i}] ({m['destination']}): idmapped mount: {exc}") from exc
            fds.append(tree)
        return fds

    # -- start -------------------------------------------------------------------------------
    def start(self, cid: str) -> None:
        st = self.store.load(cid)
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

    def delete(self, cid: str, force: bool = False) -> None:
        st = self.store.load(cid)
        status = self.status(st)
        if status in ("running", "paused") and not force:
            raise Conflict(f"cannot delete container {cid} that is not stopped: {status}")
        cg = self._cgroup(st.cgroup_path)
        if status != "stopped":
            with _suppress(ProcessLookupError):
                os.kill(st.pid, _signal.SIGKILL)
        with _suppress(PalletError, OSError):
            for p in cg.pids():
                with _suppress(ProcessLookupError):
                    os.kill(p, _signal.SIGKILL)
            if status == "paused":
                cg.thaw()
        _wait_gone(st.pid, st.pid_start)
        with _suppress(PalletError, OSError):
            _wait_cgroup_empty(cg)
        cg.destroy()
        hooks = st.config.get("hooks") or {}
        if hooks.get("poststop"):
            from pallet.runtime.hooks import run_poststop

            run_poststop(hooks["poststop"], oci_state(st, "stopped"), self.warn)
        self.store.remove(cid)

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

    # -- exec --------------------------------------------------------------------------------
    def exec(self, cid: str, process: dict, console_socket: str | None = None, detach: bool = False,
             pid_file: str | None = None, preserve_fds: int = 0, subreaper: bool | None = None) -> int:
        """Run `process` in the container; return its pid (detach) or wait and return its status."""
        from pallet.runtime import init as initmod
        from pallet.runtime.sync import Channel, SyncError  # _socket: create and exec only

        st = self.store.load(cid)
        status = self.status(st)
        if status not in ("running", "created"):
            raise Conflict(f"cannot exec in a {status} container")
        validate_process(process)
        linux = st.config.get("linux") or {}
        self._validate_security(process, linux)
        join_fds = []
        try:
            for ns in linux.get("namespaces") or []:
                t = ns["type"]
                name = NAMESPACES[t][1]
                join_fds.append((t, os.open(f"/proc/{st.pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)))
        except OSError as exc:
            for _, fd in join_fds:
                os.close(fd)
            raise Conflict(f"container {cid!r}: joining namespaces of pid {st.pid}: {exc}") from exc
        join_fds.sort(key=lambda item: item[0] == "user")
        console = None
        if process.get("terminal"):
            if not console_socket:
                raise InvalidArgument("process.terminal is true: --console-socket is required")
            console = self._connect_console(console_socket)
        config = {**st.config, "process": process}
        plan = initmod.InitPlan(config=config, rootfs="/", join_fds=join_fds, new_flags=0,
                                new_userns=False, console=console, preserve_fds=preserve_fds,
                                seccomp=self._seccomp(linux))
        if subreaper if subreaper is not None else not detach:
            self.sys.prctl(F.PR_SET_CHILD_SUBREAPER, 1)  # stage 2 is reparented to us: we wait for it
        parent, child = Channel.pair()
        stage1_pid = os.fork()
        if stage1_pid == 0:
            parent.close()
            initmod.child_main(initmod.exec_stage1, plan, child, self.sys)
        child.close()
        for _, fd in join_fds:
            os.close(fd)
        if console is not None:
            console.close()
        pid = 0
        try:
            self._cgroup(st.cgroup_path).apply(stage1_pid)
            parent.send("go")
            msg, _ = parent.recv("pid")
            pid = msg["pid"]
            _reap(stage1_pid)
            stage1_pid = 0
            # The sync socket closes on a successful execve (close-on-exec and closerange);
            # anything else is the child's error.
            try:
                parent.recv()
            except SyncError as exc:
                if "exited" not in str(exc):
                    raise
        except BaseException:
            for p in (stage1_pid, pid):
                if p:
                    with _suppress(ProcessLookupError):
                        os.kill(p, _signal.SIGKILL)
            if stage1_pid:
                _reap(stage1_pid)
            if pid and not detach:
                _reap(pid)
            raise
        finally:
            parent.close()
        if pid_file:
            _write_atomic(pid_file, str(pid))
        if detach:
            return pid
        return wait_status(pid)

    # -- helpers -----------------------------------------------------------------------------
    def _load_config(self, bundle: str) -> dict:
        path = os.path.join(bundle, "config.json")
        try:
            config = jsonio.load_file(path)
        except FileNotFoundError:
            raise NotFound(f"bundle {bundle}: config.json not found") from None
        except ValueError as exc:  # json.JSONDecodeError, or not UTF-8
            raise InvalidArgument(f"{path}: invalid JSON: {exc}") from exc
        validate_config(config)
        return config

    def _validate_security(self, process: dict, linux: dict) -> None:
        from pallet.runtime import process as procmod

        if process.get("capabilities") is not None:
            from pallet.runtime import capabilities

            capabilities.validate(process["capabilities"])
        if linux.get("seccomp"):
            from pallet.runtime import seccomp

            seccomp.validate(linux["seccomp"])
        for i, r in enumerate(process.get("rlimits") or []):
            try:
                procmod.rlimit_resource(r["type"])
            except InvalidArgument as exc:
                raise InvalidArgument(f"process.rlimits[{i}].type: {exc}") from None

    def _open_ns_paths(self, linux: dict) -> list[tuple[str, int]]:
        fds: list[tuple[str, int]] = []
        for i, ns in enumerate(linux.get("namespaces") or []):
            if "path" not in ns:
                continue
            try:
                fds.append((ns["type"], os.open(ns["path"], os.O_RDONLY | os.O_CLOEXEC)))
            except OSError as exc:
                for _, fd in fds:
                    os.close(fd)
                raise InvalidArgument(f"linux.namespaces[{i}].path: {exc}") from exc
        # Join the user namespace last: before it we still hold the host's capabilities, which
        # the other setns calls need for namespaces owned by the initial user namespace.
        fds.sort(key=lambda item: item[0] == "user")
        return fds

    def _seccomp(self, linux: dict):
        return _compile_seccomp(linux, os.path.join(self.store.root, ".seccomp"))

    def _connect_console(self, path: str):
        import socket

        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.connect(path)
        except OSError as exc:
            sock.close()
            raise InvalidArgument(f"--console-socket {path}: {exc}") from exc
        return sock


def _compile_seccomp(linux: dict, cache_dir: str | None = None):
    """The filter as BPF, compiled before fork (libseccomp is out of reach after pivot_root).

    Compiling the default profile costs ~14 ms; the result depends only on the profile and on
    this host's libseccomp, so it is cached under <root>/.seccomp, keyed by a hash of both.
    """
    if not linux.get("seccomp"):
        return None
    from _sha256 import sha256  # builtin; hashlib would load OpenSSL (~4 ms)

    from pallet.runtime.seccomp import Compiled, compile_filter
    from pallet.syscalls import seccomp as scmp

    scmp._libc()  # load it now: the init calls seccomp(2) through it after pivot_root
    key = sha256(jsonio.dumps([linux["seccomp"], scmp.version()], sort_keys=True).encode()).hexdigest()
    path = os.path.join(cache_dir, key) if cache_dir else None
    if path:
        try:
            with open(path, "rb") as f:
                flags = int.from_bytes(f.read(4), "little")
                return Compiled(f.read(), flags, ())
        except FileNotFoundError:
            pass
    compiled = compile_filter(linux["seccomp"])
    if path and cache_dir:
        os.makedirs(cache_dir, mode=0o700, exist_ok=True)
        tmp = f"{path}.{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(compiled.flags.to_bytes(4, "little") + compiled.program)
        os.rename(tmp, path)
    return compiled


def _new_flags(linux: dict) -> int:
    flags = 0
    for ns in linux.get("namespaces") or []:
        if "path" not in ns:
            flags |= NAMESPACES[ns["type"]][0]
    return flags


def _cgroup_binds(cg, linux: dict) -> list[tuple[str, str]]:
    """What a `cgroup` mount in the container shows: (host dir, name in /sys/fs/cgroup).
    v2: [("cgroup2" with a cgroup namespace, else the host dir, "")]. v1: one bind per hierarchy."""
    has_cgroupns = any(ns["type"] == "cgroup" for ns in linux.get("namespaces") or [])
    binds: list[tuple[str, str]] = []
    try:
        with open("/proc/self/mountinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return binds
    for line in lines:
        left, _, right = line.partition(" - ")
        fields = left.split()
        fstype = (right.split() or [""])[0]
        mountpoint, mount_root = fields[4], fields[3]
        if cg.version == 2 and fstype == "cgroup2" and mountpoint == "/sys/fs/cgroup":
            host = mountpoint + cg.path[len(mount_root.rstrip("/")):] if mount_root != "/" else \
                mountpoint + cg.path
            return [("cgroup2" if has_cgroupns else host, "")]
        if cg.version == 1 and fstype == "cgroup" and mountpoint.startswith("/sys/fs/cgroup/"):
            rel = cg.path if mount_root == "/" else cg.path.removeprefix(mount_root)
            binds.append((mountpoint + rel, os.path.basename(mountpoint)))
    return binds


def _userns_with_maps(uid_maps: list[dict], gid_maps: list[dict]) -> int:
    """A user namespace with the given maps, held by a short-lived child (mount_setattr(2))."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(w)
            real().unshare(F.CLONE_NEWUSER)
            os.read(r, 1)
        finally:
            os._exit(0)
    os.close(r)
    try:
        # The child must have unshared before we write the maps: wait for its user ns to differ.
        mine = os.readlink("/proc/self/ns/user")
        deadline = time.monotonic() + 5
        while os.readlink(f"/proc/{pid}/ns/user") == mine:
            if time.monotonic() > deadline:
                raise OSError("helper user namespace did not appear")
            time.sleep(0.001)
        for kind, maps in (("uid", uid_maps), ("gid", gid_maps)):
            with open(f"/proc/{pid}/{kind}_map", "w") as f:
                f.write("".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in maps))
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(w)
        _reap(pid)


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


def _owner() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


class _WarmCgroup:
    """A throwaway child that joins the container's cgroup while the runtime goes on.

    Moving a task between cgroups takes cgroup_threadgroup_rwsem for writing, and the first
    writer after a quiet spell waits for an RCU grace period (rcu_sync_enter; kernel/cgroup/
    cgroup.c, kernel/rcu/sync.c): 7-25 ms on this machine, the biggest single cost of `create`.
    Writers within about one grace period of the last one do not wait. So this child pays the
    wait on the other CPU while the runtime writes the limits, validates the rest of the config
    and compiles seccomp, and the real move of the init (`apply` in _spawn) comes inside that
    window and takes ~0.1 ms.

    The runtime writes the limits (~2.5 ms, mostly the devices rules) during that wait only into
    a cgroup it creates (`resources_set`); an existing cgroup is left alone until the whole
    config has been checked, and gets its limits in _spawn.
    """

    __slots__ = ("pid", "resources_set")

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.resources_set = False

    def reap(self) -> None:
        if self.pid:
            os.waitpid(self.pid, 0)  # its exit status does not matter: apply() in _spawn reports
            self.pid = 0


def _warm_cgroup(cg) -> _WarmCgroup:
    pid = os.fork()
    if pid == 0:
        try:
            cg.apply(os.getpid())
        finally:
            os._exit(0)
    return _WarmCgroup(pid)
