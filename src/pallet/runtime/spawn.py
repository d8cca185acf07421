"""create and exec: the runtime operations that fork a container's processes (Runtime.create, .exec).

Loaded only by those two (pallet.runtime.container imports it on first use): with the init
protocol, seccomp, cgroup binds and id-mapped mounts it is most of the runtime's own code, and
the short commands on every container's path (start, state, kill, delete) do not load it.
See docs/design/runtime.md "Processes" for the stages and the sync protocol.
"""

from __future__ import annotations

import _signal  # the C module: signal.py builds enums of every constant on import (~1 ms)
import os
import time

from pallet import jsonio
from pallet.errors import Conflict, InvalidArgument, NotFound, PalletError
from pallet.oci.runtime_spec import NAMESPACES, validate_config, validate_process
from pallet.runtime.container import (
    CreateOptions,
    Runtime,
    _now,
    _reap,
    _suppress,
    _wait_cgroup_empty,
    _wait_gone,
    cgroup_path_for,
    wait_status,
)
from pallet.runtime.state import ContainerState, oci_state, proc_start_time
from pallet.syscalls import flags as F
from pallet.syscalls import real


def create(rt: Runtime, cid: str, opts: CreateOptions) -> ContainerState:
    """Runtime.create: everything is checked before anything is made, and undone on failure."""
    bundle = os.path.abspath(opts.bundle)
    config = _load_config(rt, bundle)
    linux = config.setdefault("linux", {})
    rootfs = config["root"]["path"]
    rootfs = rootfs if os.path.isabs(rootfs) else os.path.join(bundle, rootfs)
    if not os.path.isdir(rootfs):
        raise InvalidArgument(f"root.path: {rootfs} is not a directory")
    if "process" not in config:
        raise InvalidArgument("process: required for create")
    cg = rt._cgroup(cgroup_path_for(linux, cid))
    from pallet.runtime.rootfs import device_rules

    if "resources" in linux or linux.get("devices"):
        linux.setdefault("resources", {})["devices"] = device_rules(linux)
    resources = linux.get("resources") or {}
    cg.validate(resources)  # before anything is written
    created = not cg.exists()
    tasks = cg.self_move_files()  # v1: stage 1 joins by itself (init._self_move)
    from pallet.runtime import cgwarm  # create and exec only

    try:
        if not tasks:  # v2: the init is moved by pid, the helper holds the window open
            if created:
                cg.set({})  # the directories, no limit yet: the helper joins them
            cgwarm.start(cgwarm.procs_file(cg.dirs()))
        if created:
            # Our own cgroup: its limits go in now, while the rest is prepared; an existing
            # one is left alone until the whole config has been checked (_spawn).
            cg.set(resources)
        return _create(rt, cid, opts, bundle, config, linux, rootfs, cg, tasks, limits_set=created)
    except BaseException:
        cgwarm.reap()
        if created:
            with _suppress(PalletError, OSError):
                cg.destroy()
        raise


def _create(rt: Runtime, cid: str, opts: CreateOptions, bundle: str, config: dict, linux: dict,
            rootfs: str, cg, tasks: list[str], limits_set: bool) -> ContainerState:
    from pallet.runtime import init as initmod
    from pallet.runtime.rootfs import Rootfs

    _validate_security(rt, config["process"], linux)
    if _new_flags(linux) & F.CLONE_NEWUSER:
        # Root in a new user namespace is an unprivileged host uid: it cannot create mount points
        # in a rootfs owned by host root. Create them now, while we still are host root.
        Rootfs(rootfs, rt.sys).make_mountpoints(config.get("mounts") or [])
    join_fds = _open_ns_paths(rt, linux)
    console = None
    if config["process"].get("terminal"):
        if not opts.console_socket:
            for _, fd in join_fds:
                os.close(fd)
            raise InvalidArgument("process.terminal is true: --console-socket is required")
        console = _connect_console(rt, opts.console_socket)

    state_dir = rt.store.reserve(cid)
    st = ContainerState(id=cid, bundle=bundle, rootfs=rootfs, created=_now(), owner=_owner(),
                        cgroup_path=cg.path, config=config, cgroup_dirs=cg.dirs(),
                        annotations=config.get("annotations") or {})
    pid = 0
    try:
        fifo = rt.store.fifo(cid)
        os.mkfifo(fifo, 0o622)
        os.chmod(fifo, 0o622)  # not the umask's: root of a user namespace is "other" here
        fifo_fd = os.open(fifo, os.O_PATH | os.O_CLOEXEC)
        plan = initmod.InitPlan(
            config=config, rootfs=rootfs, join_fds=join_fds,
            new_flags=_new_flags(linux) & ~F.CLONE_NEWUSER,
            new_userns=bool(_new_flags(linux) & F.CLONE_NEWUSER),
            fifo_fd=fifo_fd, console=console,
            # Only a `cgroup` mount needs them (a read of /proc/self/mountinfo, 0.2-2 ms).
            cgroup_binds=_cgroup_binds(cg, linux) if _has_cgroup_mount(config) else [],
            cgroup_tasks=tasks,
            no_pivot=opts.no_pivot, preserve_fds=opts.preserve_fds,
            hook_state=oci_state(st, "creating"), seccomp=_seccomp(rt, linux),
        )
        if opts.subreaper:
            rt.sys.prctl(F.PR_SET_CHILD_SUBREAPER, 1)
        pid = _spawn(rt, plan, cg, linux, st, limits_set)
        os.close(fifo_fd)
    except BaseException:
        _undo_create(rt, st, pid, cg)
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


def _fork_stage1(rt: Runtime, stage, plan):
    """Stage 1 of the init (pallet.runtime.init) in a child; our end of its channel and its pid."""
    from pallet.runtime import init as initmod
    from pallet.runtime.sync import Channel

    parent, child = Channel.pair()
    pid = os.fork()
    if pid == 0:
        parent.close()
        initmod.child_main(stage, plan, child, rt.sys)
    child.close()
    return parent, pid


def _spawn(rt: Runtime, plan, cg, linux: dict, st: ContainerState, limits_set: bool = False) -> int:
    from pallet.runtime import cgwarm
    from pallet.runtime import init as initmod
    from pallet.runtime.hooks import prepare as prepare_hooks
    from pallet.runtime.hooks import run_hooks
    from pallet.runtime.sync import SyncError  # _socket: create and exec only

    prepare_hooks(plan.config.get("hooks") or {})
    parent, stage1_pid = _fork_stage1(rt, initmod.stage1, plan)
    try:
        if not limits_set:
            cg.set(linux.get("resources") or {})  # limits in force before the init joins
        parent.send("go")
        msg, _ = parent.recv()
        if msg["type"] == "userns":
            _write_id_maps(rt, stage1_pid, linux)
            parent.send("mapped")
            msg, _ = parent.recv()
        if initmod.has_idmapped_mounts(plan.config):  # the handshake of init.stage1
            if msg["type"] != "ns-ready":
                raise SyncError(f"sync protocol: unexpected {msg['type']!r}")
            fds = _idmapped_mounts(rt, plan.config, stage1_pid)
            parent.send("ns-ack", fds=fds)
            for fd in fds:
                os.close(fd)
            msg, _ = parent.recv("pid")
        elif msg["type"] != "pid":
            raise SyncError(f"sync protocol: expected 'pid', got {msg['type']!r}")
        pid = msg["pid"]
        st.pid = pid
        st.pid_start = proc_start_time(pid) or 0
        if not plan.cgroup_tasks:
            # v2: the init joins its cgroup now, while it sets up its root filesystem: the
            # kernel's grace period of this first move (pallet.runtime.cgwarm) overlaps that
            # work. The init waits for "continue" before its cgroup mount, its cgroup namespace
            # and anything that forks (pallet.runtime.init.stage2). On v1 stage 1 moved itself.
            cg.apply(pid)
            cgwarm.reap()  # out of the cgroup before the init can fork
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
        rt.store.save(st)
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


def _undo_create(rt: Runtime, st: ContainerState, pid: int, cg) -> None:
    if st.pid:
        _wait_gone(st.pid, st.pid_start)
    with _suppress(PalletError, OSError):
        for p in cg.pids():
            with _suppress(ProcessLookupError):
                os.kill(p, _signal.SIGKILL)
        _wait_cgroup_empty(cg)
        cg.destroy()
    rt.store.remove(st.id)


def _write_id_maps(rt: Runtime, pid: int, linux: dict) -> None:
    for kind in ("uid", "gid"):
        lines = "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n"
                        for m in linux.get(f"{kind}Mappings") or [])
        try:
            with open(f"/proc/{pid}/{kind}_map", "w") as f:
                f.write(lines)
        except OSError as exc:
            raise InvalidArgument(f"linux.{kind}Mappings: writing /proc/{pid}/{kind}_map: {exc}") from exc


def _idmapped_mounts(rt: Runtime, config: dict, stage1_pid: int) -> list[int]:
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
            tree = rt.sys.open_tree(m["source"], flags)
            if m.get("uidMappings"):
                userns = _userns_with_maps(m["uidMappings"], m.get("gidMappings") or m["uidMappings"])
            else:
                if not (config.get("linux") or {}).get("uidMappings"):
                    raise InvalidArgument(f"mounts[{i}]: idmap needs uidMappings on the mount or a "
                                          "user namespace with mappings")
                userns = os.open(f"/proc/{stage1_pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
            try:
                rt.sys.mount_setattr_idmap(tree, userns, "ridmap" in opts)
            finally:
                os.close(userns)
        except OSError as exc:
            raise InvalidArgument(f"mounts[{i}] ({m['destination']}): idmapped mount: {exc}") from exc
        fds.append(tree)
    return fds


def exec_process(rt: Runtime, cid: str, process: dict, console_socket: str | None = None,
                 detach: bool = False, pid_file: str | None = None, preserve_fds: int = 0,
                 subreaper: bool | None = None) -> int:
    """Runtime.exec: run `process` in the container; its pid (detach), or its exit status."""
    from pallet.runtime import cgwarm
    from pallet.runtime import init as initmod
    from pallet.runtime.sync import SyncError  # _socket: create and exec only

    st = rt.store.load(cid)
    status = rt.status(st)
    if status not in ("running", "created"):
        raise Conflict(f"cannot exec in a {status} container")
    cg = rt._cgroup(st.cgroup_path)
    tasks = cg.self_move_files()  # v1: stage 1 joins by itself (init._self_move)
    if not tasks:  # v2: the runtime moves it by pid, after the grace period (pallet.runtime.cgwarm)
        cgwarm.start(cgwarm.procs_file(cg.dirs()))
    validate_process(process)
    linux = st.config.get("linux") or {}
    _validate_security(rt, process, linux)
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
        console = _connect_console(rt, console_socket)
    config = {**st.config, "process": process}
    plan = initmod.InitPlan(config=config, rootfs="/", join_fds=join_fds, new_flags=0,
                            new_userns=False, console=console, preserve_fds=preserve_fds,
                            seccomp=_seccomp(rt, linux), cgroup_tasks=tasks)
    if subreaper if subreaper is not None else not detach:
        rt.sys.prctl(F.PR_SET_CHILD_SUBREAPER, 1)  # stage 2 is reparented to us: we wait for it
    parent, stage1_pid = _fork_stage1(rt, initmod.exec_stage1, plan)
    for _, fd in join_fds:
        os.close(fd)
    if console is not None:
        console.close()
    pid = 0
    try:
        if not tasks:
            cg.apply(stage1_pid)
            cgwarm.reap()  # out of the cgroup's pids count before stage 1 forks
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


def _load_config(rt: Runtime, bundle: str) -> dict:
    path = os.path.join(bundle, "config.json")
    try:
        config = jsonio.load_file(path)
    except FileNotFoundError:
        raise NotFound(f"bundle {bundle}: config.json not found") from None
    except ValueError as exc:  # json.JSONDecodeError, or not UTF-8
        raise InvalidArgument(f"{path}: invalid JSON: {exc}") from exc
    validate_config(config)
    return config


def _validate_security(rt: Runtime, process: dict, linux: dict) -> None:
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


def _open_ns_paths(rt: Runtime, linux: dict) -> list[tuple[str, int]]:
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


def _seccomp(rt: Runtime, linux: dict):
    return _compile_seccomp(linux, os.path.join(rt.store.root, ".seccomp"))


def _connect_console(rt: Runtime, path: str):
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
    # "tree": programs compiled with SCMP_FLTATR_CTL_OPTIMIZE=2 (compile_filter), so that a
    # cache written by an older pallet-runtime is not taken for one.
    text = jsonio.dumps([linux["seccomp"], scmp.version(), "tree"], sort_keys=True)
    key = sha256(text.encode()).hexdigest()
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


def _has_cgroup_mount(config: dict) -> bool:
    """As Rootfs._mount_one tells a cgroup mount: by its type."""
    return any(m.get("type") == "cgroup" for m in config.get("mounts") or [])


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


def _owner(passwd: str = "/etc/passwd") -> str:
    """The name of our uid for state.json's `owner`, from /etc/passwd (passwd(5)) when it is there.

    pwd.getpwuid goes through NSS: glibc first tries nscd's socket (twice when it is absent),
    then reads nsswitch.conf, then the files; ~0.3-1 ms of every create for a name that is in
    /etc/passwd on any host a runtime runs on. Other sources (LDAP, systemd-userdb) are asked
    only when the file has no entry for the uid."""
    uid = os.getuid()
    try:
        with open(passwd, "rb") as f:
            data = f.read()
    except OSError:
        data = b""
    want = str(uid).encode()
    for line in data.split(b"\n"):
        fields = line.split(b":", 3)
        if len(fields) == 4 and fields[2] == want:
            return fields[0].decode(errors="replace")
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)
