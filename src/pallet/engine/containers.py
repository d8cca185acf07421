"""The container engine: the library palletd's container routes call.

`Engine(data_root, exec_root)` creates containers from images (ImageService snapshots), starts
each through a per-container monitor that runs the OCI runtime (conmon, pallet.engine.conmon, by
default; or the Python one, pallet.engine.monitor), and
finds them again after a restart of the process that owns it (live restore).

Methods are blocking and thread-safe; the API calls them through `asyncio.to_thread` (wait
and logs(follow=True) block for as long as the container runs: give them a thread each).
Every public method that changes a container takes that container's lock and checks its state
machine (pallet.engine.state) once; `_verb_locked` helpers assume the lock is held.

On disk, version 1:
    <data-root>/containers/<id>/container.json   the record (atomic: temp + fsync + rename):
        {"version": 1, "id", "name", "created", "image", "image_ref", "config", "host_config",
         "runtime", "state": ContainerState.to_dict(), "restart_count", "monitor_pid",
         "monitor_start", "init_start", "volumes": [{"Name", "Destination", "RW", "Anonymous"}],
         "monitor" ("conmon" or "pallet"; absent means "pallet")}
    <data-root>/volumes/                          named volumes (pallet.engine.volumes)
    <data-root>/containers/<id>/config.json      the OCI bundle's spec (written at each start)
    <data-root>/containers/<id>/rootfs/          the mount point of the container's snapshot
    <data-root>/containers/<id>/<id>-json.log    the log: k8s-file lines from conmon, json-file
                                                  lines from the Python monitor (pallet.engine.logs)
    <data-root>/containers/<id>/{attach,ctl,winsz}  conmon's socket and FIFOs (pallet.engine.conmon)
    <data-root>/containers/<id>/{hostname,hosts,resolv.conf}
    <data-root>/containers/<id>/restart.json      the manual-stop flag (pallet.engine.restart)
    <data-root>/containers/<id>/health.json       State.Health (pallet.engine.health)
    <data-root>/events/events.jsonl{,.1}         the event log (pallet.engine.events)
    <exec-root>/containers/<id>/                 the monitor's files (engine/conmon.py, monitor.py)
    <exec-root>/runtime/<runtime-name>/          each runtime's --root
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import secrets
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from pallet.engine import bundle as bundlemod
from pallet.engine import conmon as conmonmod
from pallet.engine import events as eventsmod
from pallet.engine import sysinit
from pallet.engine.health import HealthChecks
from pallet.engine.health import validate as validate_healthcheck
from pallet.engine.logs import last_runtime_error, read_logs, rfc3339nano
from pallet.engine.names import random_name, validate_name
from pallet.engine.networking import EngineNetworking
from pallet.engine.oom import OomWatcher
from pallet.engine.restart import RestartManager
from pallet.engine.runtimes import (
    DEFAULT_RUNTIME,
    Runtime,
    check_runtime,
    default_runtimes,
    signal_number,
)
from pallet.engine.state import ContainerState, Status, check_transition
from pallet.engine.userns import UsernsManager
from pallet.engine.volumes import VolumeStore
from pallet.errors import (
    Conflict,
    InvalidArgument,
    NotFound,
    NotSupported,
    PalletError,
    Unavailable,
)
from pallet.units import human_duration

RECORD_VERSION = 1
DEFAULT_STOP_TIMEOUT = 10
MONITOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "monitor.py")
MONITORS = ("conmon", "pallet")


def _now() -> str:
    return rfc3339nano(time.time_ns())


def _write_json_atomic(path: str, data: Any, durable: bool = True) -> None:
    """Write by rename (a kill -9 leaves the old file or the new one); `durable` fsyncs first:
    for records, not for the inputs of a process started right after (a spec rebuilt at every
    start), which a power loss has no use for."""
    tmp = f"{path}.tmp-{secrets.token_hex(4)}"
    # json.dumps, not json.dump: dump streams through the pure-Python encoder (the C one serves
    # only one-shot encoding, json/encoder.py iterencode): with dumps palletd used a fifth less
    # CPU over 100 concurrent starts (issue 4, docs/design/daemon.md).
    text = json.dumps(data)
    with open(tmp, "w") as f:
        f.write(text)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


def _proc_start(pid: int) -> int | None:
    from pallet.runtime.state import proc_start_time

    return proc_start_time(pid) if pid > 0 else None


@dataclass(eq=False, slots=True)
class Container:
    """One container as the engine holds it (the record's fields, plus this Engine's run-time
    bookkeeping). Slots and a condition made on first use: a hundred idle containers are a
    hundred of these, and each costs palletd memory for as long as it exists (issue 4,
    docs/design/engine.md "Memory per container")."""

    id: str
    name: str
    created: str
    image: str
    image_ref: str
    config: dict[str, Any]
    host_config: dict[str, Any]
    runtime: str
    state: ContainerState = field(default_factory=ContainerState)
    restart_count: int = 0
    monitor_pid: int = 0
    monitor_start: int = 0
    init_start: int = 0
    volumes: list[dict[str, Any]] = field(default_factory=list)  # volume_requests, names resolved
    monitor: str = "pallet"  # which monitor the current run has: "conmon" or "pallet" (MONITORS)
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    exits: int = 0  # how many exits were seen by this Engine (wait "next-exit")
    removed: bool = False
    # The runtime's `delete` of an exited run, still going (Engine._exited_locked); waited for
    # before anything else uses the runtime for this container (Engine._runtime).
    deleting: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _cond: threading.Condition | None = field(default=None, init=False, repr=False)

    @property
    def cond(self) -> threading.Condition:
        """The condition on `lock` that waiters of a state change wait on. Made on first use:
        waiting and notifying both need `lock` held, so it is never made twice; a container no
        one waits for has none (a Condition with its waiters' deque is ~1.3 KiB)."""
        cond = self._cond
        if cond is None:
            cond = self._cond = threading.Condition(self.lock)
        return cond

    def notify_all(self) -> None:
        """Wake whoever waits on `cond` (caller holds `lock`); nothing to do when no one ever did."""
        if self._cond is not None:
            self._cond.notify_all()

    def to_record(self) -> dict[str, Any]:
        return {"version": RECORD_VERSION, "id": self.id, "name": self.name, "created": self.created,
                "image": self.image, "image_ref": self.image_ref, "config": self.config,
                "host_config": self.host_config, "runtime": self.runtime, "state": self.state.to_dict(),
                "restart_count": self.restart_count, "monitor_pid": self.monitor_pid,
                "monitor_start": self.monitor_start, "init_start": self.init_start, "volumes": self.volumes,
                "monitor": self.monitor}

    @classmethod
    def from_record(cls, d: Mapping[str, Any]) -> Container:
        if d.get("version") != RECORD_VERSION:
            raise InvalidArgument(f"container record version {d.get('version')!r} is not {RECORD_VERSION}")
        return cls(id=d["id"], name=d["name"], created=d["created"], image=d["image"],
                   image_ref=d["image_ref"], config=d["config"], host_config=d["host_config"],
                   runtime=d["runtime"], state=ContainerState.from_dict(d["state"]),
                   restart_count=d.get("restart_count", 0), monitor_pid=d.get("monitor_pid", 0),
                   monitor_start=d.get("monitor_start", 0), init_start=d.get("init_start", 0),
                   volumes=list(d.get("volumes") or []), monitor=d.get("monitor", "pallet"))


@dataclass(eq=False)
class ExecSession:
    """A running exec: `stdin`/`stdout`/`stderr` are binary files (pipes), or `pty` is the
    terminal's master fd for a Tty exec; `wait()` returns the exit code."""

    id: str
    proc: subprocess.Popen[bytes]
    pty: int = -1
    stdin: BinaryIO | None = None
    stdout: BinaryIO | None = None
    stderr: BinaryIO | None = None
    on_exit: Callable[[int], None] | None = None

    def wait(self, timeout: float | None = None) -> int:
        code = self.proc.wait(timeout)
        if self.on_exit is not None:
            self.on_exit(code)
            self.on_exit = None
        return code

    def close(self) -> None:
        for f in (self.stdin, self.stdout, self.stderr):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()
        if self.pty >= 0:
            with contextlib.suppress(OSError):
                os.close(self.pty)
            self.pty = -1


@dataclass
class ExecConfig:
    id: str
    container_id: str
    config: dict[str, Any]
    running: bool = False
    exit_code: int | None = None
    pid: int = 0
    session: ExecSession | None = None


class _Watcher:
    """One thread that waits, through pidfds, for monitors to exit and tells the engine."""

    def __init__(self, on_exit: Callable[[str], None]) -> None:
        self.on_exit = on_exit
        self.poller = select.poll()
        self.fds: dict[int, str] = {}
        self.pending: list[str] = []  # exits to report that no pidfd will signal (`exited`)
        self.guard = threading.Lock()
        self.wake_r, self.wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self.poller.register(self.wake_r, select.POLLIN)
        self.closed = False
        self.thread = threading.Thread(target=self._loop, name="pallet-monitor-watcher", daemon=True)
        self.thread.start()

    def watch(self, cid: str, pid: int, start: int) -> bool:
        """Watch monitor `pid` (started at `start`); False when it is gone already."""
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return False
        if _proc_start(pid) != start:
            os.close(fd)
            return False
        with self.guard:
            self.fds[fd] = cid
            self.poller.register(fd, select.POLLIN)
        os.write(self.wake_w, b"x")
        return True

    def exited(self, cid: str) -> None:
        """Report `cid`'s exit from this thread, as for a watched monitor (one that was gone
        before it could be watched)."""
        with self.guard:
            self.pending.append(cid)
        os.write(self.wake_w, b"x")

    def close(self) -> None:
        if self.closed:  # idempotent: closing the pipe's numbers twice could close another file
            return
        self.closed = True
        with contextlib.suppress(OSError):
            os.write(self.wake_w, b"x")
        self.thread.join(5)
        with self.guard:
            for fd in self.fds:
                os.close(fd)
            self.fds.clear()
        os.close(self.wake_r)
        os.close(self.wake_w)

    def _loop(self) -> None:
        while not self.closed:
            for fd, _ev in self.poller.poll():
                if fd == self.wake_r:
                    with contextlib.suppress(OSError):
                        os.read(self.wake_r, 4096)
                    with self.guard:
                        pending, self.pending = self.pending, []
                    for gone in pending:
                        if not self.closed:
                            try:
                                self.on_exit(gone)
                            except Exception as exc:  # as below
                                sys.stderr.write(f"pallet engine: handling the exit of {gone}: {exc}\n")
                    continue
                with self.guard:
                    cid = self.fds.pop(fd, None)
                    with contextlib.suppress(KeyError):
                        self.poller.unregister(fd)
                os.close(fd)
                if cid is not None and not self.closed:
                    try:
                        self.on_exit(cid)
                    except Exception as exc:  # the watcher must survive one container's trouble
                        sys.stderr.write(f"pallet engine: handling the exit of {cid}: {exc}\n")


class Engine:
    """Containers under one data root and exec root (see the module docstring)."""

    def __init__(self, data_root: str | os.PathLike[str], exec_root: str | os.PathLike[str], *,
                 runtime: str = DEFAULT_RUNTIME, runtimes: Mapping[str, Sequence[str]] | None = None,
                 cgroup_parent: str = "/pallet", images: Any = None, monitor: str | None = None) -> None:
        from pallet.image.service import ImageService

        self.data_root, self.exec_root = os.path.abspath(data_root), os.path.abspath(exec_root)
        self.runtimes = {**default_runtimes(), **{k: list(v) for k, v in (runtimes or {}).items()}}
        if runtime not in self.runtimes:
            raise InvalidArgument(f"unknown runtime {runtime!r} (have {', '.join(sorted(self.runtimes))})")
        self.default_runtime = runtime
        if monitor is None:
            monitor = "conmon" if conmonmod.available() else "pallet"
        if monitor not in MONITORS:
            raise InvalidArgument(f"unknown monitor {monitor!r} (have {', '.join(MONITORS)})")
        if monitor == "conmon" and not conmonmod.available():
            raise NotSupported("monitor 'conmon': conmon is not installed (apt-get install conmon)")
        self.monitor = monitor
        self.cgroup_parent = "/" + cgroup_parent.strip("/")
        self.images = images if images is not None else ImageService(self.data_root)
        self._own_images = images is None
        for d in (self.containers_dir, os.path.join(self.exec_root, "containers")):
            os.makedirs(d, mode=0o710, exist_ok=True)
        self._guard = threading.RLock()  # the maps below and the name registry
        self._containers: dict[str, Container] = {}
        self._names: dict[str, str] = {}
        self._execs: dict[str, ExecConfig] = {}
        # Volumes of containers being created (not in _containers yet): in use all the same.
        self._pending_volumes: dict[str, builtins.list[str]] = {}
        # Attaches made before a start (conmon): socketpair ends bridged at the next start.
        self._pending_attach: dict[str, builtins.list[socket.socket]] = {}
        self.volumes = VolumeStore(self.data_root, self._volume_users)
        self._watcher = _Watcher(self._on_monitor_exit)
        self.events = eventsmod.open_log(self.data_root)  # engine/events.py
        self._restarts = RestartManager(self)  # engine/restart.py
        self._health = HealthChecks(self)  # engine/health.py
        self._oom = OomWatcher(self._on_oom)  # engine/oom.py
        self.userns = UsernsManager(self.data_root)  # --userns=auto ranges (engine/userns.py)
        self.networking = EngineNetworking(self)  # networks, namespaces, ports (engine/networking.py)
        self._load()
        self.userns.pool.reconcile(self._containers)  # ranges of creates that died half-way
        self._restarts.resume_on_boot()  # restart policies at daemon start

    # --- paths and helpers ------------------------------------------------------------------------
    @property
    def containers_dir(self) -> str:
        return os.path.join(self.data_root, "containers")

    def _dir(self, cid: str) -> str:
        return os.path.join(self.containers_dir, cid)

    def _xdir(self, cid: str) -> str:
        return os.path.join(self.exec_root, "containers", cid)

    def _rootfs(self, cid: str) -> str:
        return os.path.join(self._dir(cid), "rootfs")

    def rootfs_path(self, cid: str) -> str:
        """Where the container's rootfs is mounted while it runs (engine/archive.py mounts it
        there for a moment when it does not)."""
        return self._rootfs(cid)

    def log_path(self, cid: str) -> str:
        return os.path.join(self._dir(cid), f"{cid}-json.log")

    def _runtime(self, c: Container) -> Runtime:
        self._join_delete(c)
        root = os.path.join(self.exec_root, "runtime", c.runtime)
        return Runtime(c.runtime, self.runtimes[c.runtime], root)

    def _save(self, c: Container) -> None:
        _write_json_atomic(os.path.join(self._dir(c.id), "container.json"), c.to_record())

    def _on_oom(self, cid: str) -> None:
        """The kernel's OOM killer acted in a running container (engine/oom.py): OOMKilled and the
        `oom` event now, as dockerd on containerd's OOM event."""
        with self._guard:
            c = self._containers.get(cid)
        if c is None:
            return
        with c.lock:
            if not c.state.status.is_active or self._oom.reported(cid):
                return
            self._oom.mark_reported(cid)
            c.state.oom_killed = True
            self._save(c)
            self._event(c, "oom")

    def _event(self, c: Container, action: str, extra: Mapping[str, Any] | None = None) -> None:
        """A container event with dockerd's attributes (engine/events.py)."""
        self.events.emit("container", action, c.id, eventsmod.container_attributes(
            c.name, c.image_ref, c.config.get("Labels"), extra))

    def _volume_users(self, name: str) -> builtins.list[str]:
        """Ids of the containers that use volume `name` (VolumeStore's in-use check)."""
        with self._guard:
            users = [c.id for c in self._containers.values() if any(v["Name"] == name for v in c.volumes)]
            return users + [cid for cid, names in self._pending_volumes.items() if name in names]

    def _create_volumes(self, c: Container, image_config: Mapping[str, Any]) -> None:
        """Create (or find) the container's volumes and mark them in use, under the store's lock
        so that none is removed in between."""
        with self.volumes.lock:
            for req in bundlemod.volume_requests(image_config, c.config, c.host_config):
                v = self.volumes.create(req["Name"] or None, anonymous=not req["Name"])
                c.volumes.append({"Name": v["Name"], "Destination": req["Destination"], "RW": req["RW"],
                                  "Anonymous": not req["Name"]})
                with self._guard:
                    self._pending_volumes[c.id] = [x["Name"] for x in c.volumes]

    def _remove_anonymous_volumes(self, c: Container) -> None:
        for v in c.volumes:
            if v.get("Anonymous"):
                with contextlib.suppress(Conflict, NotFound, OSError):
                    self.volumes.remove(v["Name"])

    def close(self) -> None:
        """Stop watching (containers and their monitors keep running)."""
        self._restarts.close()
        self._health.close()
        self._oom.close()
        self._watcher.close()
        self.networking.close()  # the embedded DNS server's thread
        if self._own_images:
            self.images.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, ref: str) -> Container:
        """A container by full id, name (with or without '/') or unique id prefix."""
        with self._guard:
            if ref in self._containers:
                return self._containers[ref]
            name = ref.lstrip("/")
            if name in self._names:
                return self._containers[self._names[name]]
            found = [c for cid, c in self._containers.items() if ref and cid.startswith(ref)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise InvalidArgument(f"multiple containers found with provided prefix: {ref}")
        raise NotFound(f"No such container: {ref}")

    # --- create -----------------------------------------------------------------------------------
    def create(self, config: Mapping[str, Any], name: str | None = None, *,
               runtime: str | None = None) -> str:
        """Create a container from a ContainerCreateRequest body; returns its id. Nothing is left
        behind when it fails."""
        cfg, hc = bundlemod.validate_create(config)
        validate_healthcheck(cfg.get("Healthcheck"))
        rt = runtime or hc.get("Runtime") or self.default_runtime
        if rt not in self.runtimes:
            raise InvalidArgument(f"unknown runtime {rt!r} (have {', '.join(sorted(self.runtimes))})")
        check_runtime(rt, self.runtimes[rt])
        hc["Runtime"] = rt
        img = self.images.get(cfg["Image"])
        image_config = img.config.config or {}
        bundlemod.command_of(image_config, cfg)  # "no command specified" now, not at start
        net_mode, net_endpoints, net_ports = EngineNetworking.validate(cfg, hc)  # pops NetworkingConfig
        cid = secrets.token_hex(32)
        with self._guard:
            if name is not None:
                name = validate_name(name)
                if name in self._names:
                    other = self._names[name]
                    raise Conflict(f'Conflict. The container name "/{name}" is already in use by container '
                                   f'"{other}". You have to remove (or rename) that container to be able '
                                   "to reuse that name.")
            else:
                name = random_name(self._names)
            self._names[name] = cid  # reserved now; released below on failure
        c = Container(id=cid, name=name, created=_now(), image=str(img.id), image_ref=cfg["Image"],
                      config=self._full_config(cfg, image_config, cid), host_config=hc, runtime=rt)
        try:
            os.makedirs(self._rootfs(cid), mode=0o700)
            self._create_volumes(c, image_config)
            self._write_etc_files(c)
            self.networking.configure(cid, name, net_mode, net_endpoints, net_ports,
                                      list((c.config.get("ExposedPorts") or {}).keys()),
                                      bool(hc.get("PublishAllPorts")), hc.get("Links") or [])
            self.userns.on_create(c.id, hc, self._dir(cid), rt,
                                  [self.volumes.mountpoint(v["Name"]) for v in c.volumes])
            self.images.prepare_container_rootfs(cid, img)
            self._save(c)
        except BaseException:
            with contextlib.suppress(PalletError, OSError):
                self.images.remove_container_rootfs(cid)
            shutil.rmtree(self._dir(cid), ignore_errors=True)
            self.userns.release(cid)
            self.networking.forget(cid)
            with self._guard:
                self._names.pop(name, None)
                self._pending_volumes.pop(cid, None)
            self._remove_anonymous_volumes(c)
            raise
        with self._guard:
            self._containers[cid] = c
            self._pending_volumes.pop(cid, None)
        self._event(c, "create")
        return cid

    @staticmethod
    def _full_config(cfg: dict[str, Any], image_config: Mapping[str, Any], cid: str) -> dict[str, Any]:
        """Config as inspect shows it: the request merged with the image's defaults."""
        out = dict(cfg)
        out["Hostname"] = cfg.get("Hostname") or cid[:12]
        out.setdefault("Domainname", "")
        out["User"] = cfg.get("User") or image_config.get("User") or ""
        for k in ("AttachStdin", "AttachStdout", "AttachStderr", "Tty", "OpenStdin", "StdinOnce"):
            out[k] = bool(cfg.get(k, False))
        out["Env"] = bundlemod.merged_env(image_config, cfg)
        if cfg.get("Entrypoint") is None:
            out["Entrypoint"] = image_config.get("Entrypoint")
            if not cfg.get("Cmd"):
                out["Cmd"] = image_config.get("Cmd")
        out["WorkingDir"] = cfg.get("WorkingDir") or image_config.get("WorkingDir") or ""
        labels = dict(image_config.get("Labels") or {})
        labels.update(cfg.get("Labels") or {})
        out["Labels"] = labels
        out["Image"] = cfg["Image"]
        if not out.get("ExposedPorts") and image_config.get("ExposedPorts"):
            out["ExposedPorts"] = image_config["ExposedPorts"]
        return out

    def _write_etc_files(self, c: Container) -> None:
        d = self._dir(c.id)
        host = c.host_config.get("NetworkMode") == "host"
        hostname = socket.gethostname() if host and not c.config.get("Hostname") else c.config["Hostname"]
        with open(os.path.join(d, "hostname"), "w") as f:
            f.write(hostname + "\n")
        if host:
            shutil.copyfile("/etc/hosts", os.path.join(d, "hosts"))
        else:
            with open(os.path.join(d, "hosts"), "w") as f:
                f.write("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                        f"127.0.1.1\t{hostname}\n")
        try:
            resolv = open("/etc/resolv.conf").read()  # noqa: SIM115
        except OSError:
            resolv = ""
        if not host:
            # Loopback only (issue 5 brings the bridge): a host resolver on 127.0.0.x is out of reach.
            resolv = "".join(line + "\n" for line in resolv.splitlines()
                             if not line.strip().startswith("nameserver 127."))
        with open(os.path.join(d, "resolv.conf"), "w") as f:
            f.write(resolv)

    # --- start --------------------------------------------------------------------------------------
    def start(self, ref: str) -> bool:
        """Start a created or exited container; False if it was running already (Docker's 304)."""
        c = self.get(ref)
        with c.lock:
            if c.state.status in (Status.RUNNING, Status.PAUSED):
                return False
            if c.state.status.can_start():
                self._restarts.user_start(c)  # dockerd: a start by hand resets the restart policy
            self._start_locked(c)
            return True

    def _start_locked(self, c: Container) -> None:
        if not c.state.status.can_start():
            raise Conflict(f"cannot start container {c.id[:12]}: it is {c.state.status.value}")
        check_runtime(c.runtime, self.runtimes[c.runtime])
        rt = self._runtime(c)
        rt.delete(c.id)  # leftovers of a previous run (nothing to do, and no process, without any)
        xdir = self._xdir(c.id)
        shutil.rmtree(xdir, ignore_errors=True)
        os.makedirs(xdir, mode=0o700)
        os.makedirs(rt.root, mode=0o700, exist_ok=True)
        rootfs = self._rootfs(c.id)
        mounts = self.images.container_mounts(c.id)
        if not os.path.ismount(rootfs):
            self.userns.mount_rootfs(self.images, c.id, mounts, rootfs, os.path.join(self._dir(c.id), "l"))
        try:
            self.networking.setup(c)  # the network namespace first: the spec names it
            self._write_spec(c, rootfs)
            result = self._spawn_monitor(c)
        except BaseException as exc:
            self.networking.teardown(c.id)
            with contextlib.suppress(OSError, PalletError):
                self.images.unmount(mounts, rootfs)
            c.state.error = str(exc)
            self._save(c)
            raise
        if "error" in result:
            self.networking.teardown(c.id)
            with contextlib.suppress(OSError, PalletError):
                self.images.unmount(mounts, rootfs)
            c.state.error = result["error"]
            if c.state.status is Status.CREATED:
                c.state.exit_code = 128
            self._save(c)
            raise PalletError(f"failed to start container {c.id[:12]}: {result['error']}")
        c.monitor_pid = int(result["monitor"])
        c.monitor_start = _proc_start(c.monitor_pid) or 0
        c.init_start = _proc_start(int(result["pid"])) or 0
        c.state.set(Status.RUNNING)
        c.state.pid = int(result["pid"])
        c.state.started_at = result["started_at"]
        c.state.exit_code, c.state.error, c.state.oom_killed = 0, "", False
        self._save(c)
        self._event(c, "start")
        self._health.start_locked(c)
        self._oom.watch(c.id, f"{self.cgroup_parent}/{c.id}")
        if not c.monitor_start or not self._watcher.watch(c.id, c.monitor_pid, c.monitor_start):
            # Gone before it was watched (a quick command): the watcher's exit handling all the
            # same (restart policy, AutoRemove), on its thread once this start releases the lock.
            self._watcher.exited(c.id)

    def _write_spec(self, c: Container, rootfs: str) -> None:
        img = self.images.get(c.image)
        d = self._dir(c.id)
        spec = bundlemod.build_spec(
            img.config.config or {}, c.config, c.host_config, cid=c.id, rootfs=rootfs,
            cgroup_parent=self.cgroup_parent, hostname=c.config.get("Hostname", ""),
            files={"/etc/hostname": os.path.join(d, "hostname"), "/etc/hosts": os.path.join(d, "hosts"),
                   "/etc/resolv.conf": os.path.join(d, "resolv.conf")},
            lookup_user=lambda user: _lookup_user(rootfs, user), host_hostname=socket.gethostname(),
            volumes={v["Destination"]: self.volumes.mountpoint(v["Name"]) for v in c.volumes})
        stop = sysinit.apply(spec, c.config, img.config.config or {}, c.host_config, rootfs)
        if stop and not c.config.get("StopSignal"):
            c.config["StopSignal"] = stop  # a system container's init halts on its own signal
        self.userns.apply_spec(c.id, c.runtime, spec, {v["Destination"]: self.volumes.mountpoint(v["Name"])
                                                        for v in c.volumes})
        self.networking.amend_spec(c, spec)
        # Docker creates missing bind sources (Binds only, not Mounts).
        for b in c.host_config.get("Binds") or []:
            if not bundlemod.is_volume_source(b.split(":")[0]) and not os.path.exists(b.split(":")[0]):
                os.makedirs(b.split(":")[0])  # an existing source may be a file (a bound config)
        if os.path.basename(self.runtimes[c.runtime][0]) == "crun":
            spec["ociVersion"] = "1.0.2"  # crun 1.8 refuses any version not starting with "1.0"
        _write_json_atomic(os.path.join(d, "config.json"), spec, durable=False)

    def _spawn_monitor(self, c: Container) -> dict[str, Any]:
        c.monitor = self.monitor
        if c.monitor == "conmon":
            return self._spawn_conmon(c)
        ltype, max_size, max_files = bundlemod.log_options(c.host_config)
        xdir = self._xdir(c.id)
        cfg = {"id": c.id, "runtime": self.runtimes[c.runtime],
               "runtime_root": os.path.join(self.exec_root, "runtime", c.runtime), "bundle": self._dir(c.id),
               "log_path": self.log_path(c.id) if ltype == "json-file" else "",
               "log_max_size": max_size, "log_max_files": max_files, "tty": bool(c.config.get("Tty")),
               "open_stdin": bool(c.config.get("OpenStdin")), "stdin_once": bool(c.config.get("StdinOnce"))}
        cfg_path = os.path.join(xdir, "monitor.json")
        _write_json_atomic(cfg_path, cfg, durable=False)
        r, w = os.pipe()
        try:
            proc = subprocess.Popen([sys.executable, "-S", MONITOR, cfg_path, str(w)], pass_fds=(w,),
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, cwd="/")
            os.close(w)
            w = -1
            proc.wait(30)  # the double fork's first process exits at once
            data = conmonmod.read_pipe(r, conmonmod.SYNC_TIMEOUT)
            if data is None:
                raise Unavailable(f"container {c.id[:12]}: the monitor did not report in time")
        finally:
            os.close(r)
            if w >= 0:
                os.close(w)
        if not data:
            err = ""
            with contextlib.suppress(OSError):
                err = open(os.path.join(xdir, "monitor.log")).read().strip()  # noqa: SIM115
            return {"error": f"the monitor exited without a word{': ' + err if err else ''}"}
        out: dict[str, Any] = json.loads(data)
        return out

    def _spawn_conmon(self, c: Container) -> dict[str, Any]:
        """conmon runs the runtime's create; then the start is ours (engine/conmon.py)."""
        ltype, max_size, max_files = bundlemod.log_options(c.host_config)
        xdir, rt = self._xdir(c.id), self._runtime(c)
        # conmon keeps one file (no rotation): the same total bound as json-file's max-size x max-file.
        args = conmonmod.argv(
            cid=c.id, runtime=self.runtimes[c.runtime], runtime_root=rt.root, bundle=self._dir(c.id),
            exec_dir=xdir, log_path=self.log_path(c.id) if ltype == "json-file" else "",
            log_max_size=max_size * max(1, max_files), tty=bool(c.config.get("Tty")),
            open_stdin=bool(c.config.get("OpenStdin")), stdin_once=bool(c.config.get("StdinOnce")))
        starter = rt.start_after_stdin(c.id)
        try:
            result = conmonmod.spawn(args, xdir, self._dir(c.id))
        except BaseException:
            Runtime.start_given_up(starter)
            raise
        with self._guard:
            pending = self._pending_attach.pop(c.id, [])
        if "error" in result:
            Runtime.start_given_up(starter)
            rt.delete(c.id)
            for ours in pending:
                ours.close()
            return result
        # Created, not started: attaches made before the start see all of its output.
        for ours in pending:
            with contextlib.suppress(OSError):
                conmonmod.bridge(self._dir(c.id), bool(c.config.get("Tty")), ours)
        try:
            if starter is not None:
                rt.start_now(starter)
            else:
                rt.run("start", c.id)
        except PalletError as exc:
            rt.delete(c.id)  # conmon sees its init go and exits
            why = last_runtime_error(os.path.join(xdir, "runtime.log")) or str(exc)
            return {"error": why}
        return result

    # --- exits ---------------------------------------------------------------------------------------
    def _on_monitor_exit(self, cid: str) -> None:
        with self._guard:
            c = self._containers.get(cid)
        if c is None:
            return
        with c.lock:
            if not c.state.status.is_active:
                return
            self._exited_locked(c)
            self._restarts.on_exit_locked(c)  # engine/restart.py
            auto = bool(c.host_config.get("AutoRemove"))
        if auto:
            with contextlib.suppress(NotFound, Conflict):
                self.remove(cid, force=True, volumes=True)
        self._join_delete(c)

    @staticmethod
    def _join_delete(c: Container) -> None:
        """Wait for (and reap) the runtime's delete that _exited_locked started, if any."""
        deleting = c.deleting
        if deleting is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                deleting.wait(timeout=60)
            c.deleting = None

    def _exited_locked(self, c: Container) -> None:
        """The monitor is gone: record the exit, clean the runtime state and the mount."""
        xdir = self._xdir(c.id)
        code, finished, error = 255, _now(), ""
        if c.monitor == "conmon":
            ex_ = conmonmod.read_exit(xdir, c.id)
            if ex_ is not None:
                code, finished = ex_[0], rfc3339nano(ex_[1])
            else:
                error = "the container's monitor died: exit code unknown"
        else:
            try:
                with open(os.path.join(xdir, "exit.json")) as f:
                    ex = json.load(f)
                code, finished, error = int(ex["exit_code"]), ex["finished_at"], ex.get("error", "")
            except (OSError, ValueError, KeyError):
                error = "the container's monitor died: exit code unknown"
        c.state.oom_killed = _oom_killed(f"{self.cgroup_parent}/{c.id}")
        rt = self._runtime(c)
        if error:
            rt.delete(c.id)  # kills what is left (the init of a died monitor) by its recorded pid
        else:
            # The monitor saw the init exit: the runtime's delete (a process, ~12 ms) removes
            # its state and cgroup while the network, mount and records are done here; it is
            # waited for before the runtime is used again for this container (_runtime), the
            # removal of an AutoRemove container included.
            c.deleting = rt.delete_started(c.id)
        self.networking.teardown(c.id)  # veths, addresses, ports, rules, the namespace
        with contextlib.suppress(OSError, PalletError):
            self.images.unmount(self.images.container_mounts(c.id), self._rootfs(c.id))
        if c.state.status is not Status.EXITED:
            check_transition(c.state.status, Status.EXITED)
        c.state.status = Status.EXITED
        c.state.exit_code, c.state.finished_at, c.state.error = code, finished, error
        c.state.pid = 0
        c.monitor_pid = c.monitor_start = c.init_start = 0
        c.exits += 1
        self._save(c)
        self._health.stop_locked(c)
        self._oom.unwatch(c.id)
        if c.state.oom_killed and not self._oom.reported(c.id):
            self._event(c, "oom")
        self._event(c, "die", {"exitCode": code, "execDuration": int(
            max(0.0, _epoch_float(finished) - _epoch_float(c.state.started_at)))})
        c.notify_all()

    def _wait_inactive_locked(self, c: Container, timeout: float | None) -> bool:
        return c.cond.wait_for(lambda: not c.state.status.is_active, timeout)

    # --- stop, kill, restart, pause ---------------------------------------------------------------
    def stop(self, ref: str, timeout: int | None = None, signal: str | int | None = None) -> bool:
        """`signal` (default the container's StopSignal, else SIGTERM), then SIGKILL after
        `timeout` seconds (the container's StopTimeout or 10; -1 waits forever); False when it
        was not running (Docker's 304). A bad signal is InvalidArgument, before anything is sent."""
        num = signal_number(signal) if signal is not None and signal != "" else None
        c = self.get(ref)
        with c.lock:
            if not c.state.status.can_stop():
                return False
            self._restarts.user_stop(c)
            self._stop_locked(c, timeout, num)
            self._event(c, "stop")
            return True

    def _stop_locked(self, c: Container, timeout: int | None, sig: int | None = None) -> None:
        if self._restarts.abort_locked(c):
            return  # it was waiting to be restarted: now it is just exited
        if timeout is None:
            timeout = c.config.get("StopTimeout")
            timeout = DEFAULT_STOP_TIMEOUT if timeout is None else int(timeout)
        if sig is None:
            sig = signal_number(c.config.get("StopSignal") or "SIGTERM")
        with contextlib.suppress(Conflict, NotFound):
            self._signal_locked(c, sig)
        if self._wait_inactive_locked(c, None if timeout < 0 else timeout):
            return
        with contextlib.suppress(Conflict, NotFound):
            self._signal_locked(c, 9)
        if not self._wait_inactive_locked(c, 30):
            raise Unavailable(f"container {c.id[:12]} did not exit after SIGKILL")

    def _signal_locked(self, c: Container, sig: int) -> None:
        rt = self._runtime(c)
        rt.kill(c.id, sig)
        self._event(c, "kill", {"signal": sig})
        if c.state.status is Status.PAUSED and sig == 9:
            # A frozen task dies of SIGKILL only once thawed (moby: killWithSignal unpauses).
            with contextlib.suppress(PalletError):
                rt.resume(c.id)

    def kill(self, ref: str, sig: str | int = "SIGKILL") -> None:
        c = self.get(ref)
        num = signal_number(sig)
        with c.lock:
            if self._restarts.user_kill_locked(c, num):
                return
            if not c.state.status.can_kill():
                raise Conflict(f"Cannot kill container: {c.id[:12]}: container {c.id} is not running")
            self._signal_locked(c, num)
            if num == 9:
                self._wait_inactive_locked(c, 30)

    def restart(self, ref: str, timeout: int | None = None, signal: str | int | None = None) -> None:
        """Stop (as `stop`, with `signal` and `timeout`) when running, then start; under one
        hold of the container's lock, so no other call sees it in between."""
        num = signal_number(signal) if signal is not None and signal != "" else None
        c = self.get(ref)
        with c.lock:
            if c.state.status.can_stop():
                self._restarts.user_stop(c)
                self._stop_locked(c, timeout, num)
                self._event(c, "stop")
            self._restarts.user_start(c, reset_count=False)
            self._start_locked(c)
            c.restart_count += 1
            self._save(c)
            self._event(c, "restart")

    def pause(self, ref: str) -> None:
        c = self.get(ref)
        with c.lock:
            if not c.state.status.can_pause():
                raise Conflict(f"Container {c.id} is {c.state.status.value}, not running")
            self._runtime(c).pause(c.id)
            c.state.set(Status.PAUSED)
            self._save(c)
            self._event(c, "pause")

    def unpause(self, ref: str) -> None:
        c = self.get(ref)
        with c.lock:
            if not c.state.status.can_unpause():
                raise Conflict(f"Container {c.id} is not paused")
            self._runtime(c).resume(c.id)
            c.state.set(Status.RUNNING)
            self._save(c)
            self._event(c, "unpause")

    # --- wait ---------------------------------------------------------------------------------------
    def wait(self, ref: str, condition: str = "not-running", timeout: float | None = None) -> int:
        """Block until the condition holds; return the exit code. Conditions are Docker's:
        "not-running" (returns at once for a container that is not running), "next-exit", and
        "removed". Unavailable when `timeout` (seconds) passes first. From asyncio:
        `await asyncio.to_thread(engine.wait, id, condition)`."""
        if condition not in ("not-running", "next-exit", "removed"):
            raise InvalidArgument(f"invalid condition: {condition!r}")
        c = self.get(ref)
        with c.lock:
            if condition == "not-running":
                ok = c.cond.wait_for(lambda: not c.state.status.is_active, timeout)
            elif condition == "next-exit":
                seen = c.exits
                ok = c.cond.wait_for(lambda: c.exits > seen or c.removed, timeout)
            else:
                ok = c.cond.wait_for(lambda: c.removed, timeout)
            if not ok:
                raise Unavailable(f"timed out waiting for container {c.id[:12]} ({condition})")
            return c.state.exit_code

    # --- remove, rename, update -------------------------------------------------------------------
    def remove(self, ref: str, force: bool = False, volumes: bool = False) -> None:
        """Remove a container (force: kill it first; volumes: remove its anonymous volumes too,
        as dockerd: named ones stay)."""
        c = self.get(ref)
        with c.lock:
            if c.removed:
                raise NotFound(f"No such container: {ref}")
            if not c.state.status.can_remove(force):
                if c.state.status is Status.REMOVING:
                    raise Conflict(f"removal of container {c.id[:12]} is already in progress")
                raise Conflict(f"You cannot remove a {c.state.status.value} container {c.id}. Stop the "
                               "container before attempting removal or force remove")
            if not c.state.status.is_active:
                self._restarts.abort_locked(c)  # nothing to mark (and fsync) as stopped by hand
            elif not self._restarts.user_kill_locked(c, 9):  # no restart of the exit it causes
                # (True: it was only waiting to be restarted, and is exited now)
                with contextlib.suppress(Conflict, NotFound):
                    self._signal_locked(c, 9)
                if not self._wait_inactive_locked(c, 30):
                    raise Unavailable(f"container {c.id[:12]} did not exit after SIGKILL")
            c.state.set(Status.REMOVING)
            self._save(c)
            self._remove_locked(c)
        if volumes:
            self._remove_anonymous_volumes(c)

    def _remove_locked(self, c: Container) -> None:
        # The container is not running (remove() stopped it): its runtime state goes last, so
        # that an exit's delete still going (Container.deleting) overlaps the rest.
        rootfs = self._rootfs(c.id)
        with contextlib.suppress(NotFound):
            mounts = self.images.container_mounts(c.id)
            if os.path.ismount(rootfs):
                self.images.unmount(mounts, rootfs)
        with contextlib.suppress(NotFound):
            self.images.remove_container_rootfs(c.id)
        shutil.rmtree(self._xdir(c.id), ignore_errors=True)
        shutil.rmtree(self._dir(c.id), ignore_errors=True)
        self.userns.release(c.id)  # after the rootfs is gone: its upper dir holds ids of the range
        self.networking.forget(c.id)
        self._runtime(c).delete(c.id)
        with self._guard:
            self._containers.pop(c.id, None)
            for ours in self._pending_attach.pop(c.id, []):
                ours.close()  # attaches waiting for a start that will not come end now
            if self._names.get(c.name) == c.id:
                del self._names[c.name]
            for eid in [e for e, x in self._execs.items() if x.container_id == c.id]:
                del self._execs[eid]
        c.removed = True
        self._restarts.forget(c.id)
        self._health.forget(c.id)
        self._event(c, "destroy")
        c.notify_all()

    def prune(self, filters: Mapping[str, Sequence[str]] | None = None) -> builtins.list[str]:
        """Remove every container that is not running (`Status.can_prune`, checked under each
        container's lock, so one started meanwhile is kept) and matches Docker's prune filters:
        `until` (created before a timestamp, RFC 3339 or seconds, or a Go duration before now:
        "10m", "24h"), `label` (key or key=value; all must match) and `label!` (none may match).
        Returns the removed ids, oldest first."""
        flt = {k: [str(v) for v in vs] for k, vs in (filters or {}).items()}
        for k in flt:
            if k not in ("until", "label", "label!"):
                raise InvalidArgument(f"invalid filter '{k}'")
        until = _prune_until(flt["until"][0]) if flt.get("until") else None
        labels, not_labels = flt.get("label") or [], flt.get("label!") or []
        with self._guard:
            items = sorted(self._containers.values(), key=lambda c: c.created)
        deleted = []
        for c in items:
            with c.lock:
                if c.removed or not c.state.status.can_prune():
                    continue
                if until is not None and _epoch_float(c.created) >= until:
                    continue
                have = c.config.get("Labels") or {}
                if not all(_label_ok(have, spec) for spec in labels):
                    continue
                if any(_label_ok(have, spec) for spec in not_labels):
                    continue
                c.state.set(Status.REMOVING)
                self._save(c)
                self._remove_locked(c)
            deleted.append(c.id)
        return deleted

    def rename(self, ref: str, new_name: str) -> None:
        c = self.get(ref)
        new = validate_name(new_name)
        with c.lock, self._guard:
            if new == c.name:
                raise Conflict(f"Renaming a container with the same name as its current name: {new}")
            if new in self._names:
                raise Conflict(f'Conflict. The container name "/{new}" is already in use by container '
                               f'"{self._names[new]}"')
            del self._names[c.name]
            self._names[new] = c.id
            old, c.name = c.name, new
            self._save(c)
            self.networking.rename(c.id, new)
            self._event(c, "rename", {"oldName": f"/{old}"})

    def update(self, ref: str, resources: Mapping[str, Any]) -> list[str]:
        """Change resource limits (a ContainerUpdateRequest body); applied through the runtime's
        `update` when the container runs. Returns Docker's Warnings."""
        res, stored = bundlemod.resources_update(resources)
        c = self.get(ref)
        with c.lock:
            if not c.state.status.can_update():
                raise Conflict(f"Cannot update container {c.id}: it is {c.state.status.value}")
            hc = c.host_config
            if "Memory" in stored and "MemorySwap" not in stored and hc.get("MemorySwap", 0) > 0:
                # Docker keeps swap relative: the default (twice the old limit) follows the new one.
                default = hc["MemorySwap"] == 2 * hc.get("Memory", 0)
                swap = max(2 * stored["Memory"] if default else hc["MemorySwap"], stored["Memory"])
                stored["MemorySwap"] = swap
                res.setdefault("memory", {})["swap"] = swap
            if stored.get("NanoCpus"):
                hc.pop("CpuQuota", None)
                hc.pop("CpuPeriod", None)
            if c.state.status.is_active and res:
                self._runtime(c).update(c.id, res)
            hc.update(stored)
            self._save(c)
            self._event(c, "update")
        return []

    # --- exec ----------------------------------------------------------------------------------------
    def exec_create(self, ref: str, config: Mapping[str, Any]) -> str:
        """An exec instance (ExecConfig body: Cmd, Env, WorkingDir, User, Tty, Privileged,
        AttachStdin/out/err); returns its id. Exec instances live in memory, as in Docker."""
        c = self.get(ref)
        cmd = config.get("Cmd")
        if not cmd or not isinstance(cmd, list) or not all(isinstance(a, str) for a in cmd):
            raise InvalidArgument("exec: Cmd is required (a list of strings)")
        with c.lock:
            if c.state.status is Status.PAUSED:
                raise Conflict(f"Container {c.id} is paused, unpause the container before exec")
            if not c.state.status.can_exec():
                raise Conflict(f"Container {c.id} is not running")
        eid = secrets.token_hex(32)
        with self._guard:
            self._execs[eid] = ExecConfig(eid, c.id, dict(config))
        self._event(c, "exec_create: " + " ".join(cmd), {"execID": eid})
        return eid

    def exec_remove(self, exec_id: str) -> None:
        """Forget an exec instance (the healthcheck's probes: dockerd unregisters them too)."""
        with self._guard:
            self._execs.pop(exec_id, None)

    def exec_start(self, exec_id: str, detach: bool = False) -> ExecSession | None:
        """Run the exec; detached: return None at once (the exit code lands in exec_inspect);
        else an ExecSession whose streams the caller copies and whose `wait()` gives the code."""
        with self._guard:
            ex = self._execs.get(exec_id)
        if ex is None:
            raise NotFound(f"No such exec instance: {exec_id}")
        c = self.get(ex.container_id)
        with c.lock:
            if ex.running or ex.exit_code is not None:
                raise Conflict(f"Exec {exec_id[:12]} has already run")
            if not c.state.status.can_exec():
                raise Conflict(f"Container {c.id} is not running")
            process = self._exec_process(c, ex.config)
            xdir = self._xdir(c.id)
            pfile = os.path.join(xdir, f"exec-{exec_id[:12]}.json")
            _write_json_atomic(pfile, process, durable=False)
            pidfile = os.path.join(xdir, f"exec-{exec_id[:12]}.pid")
            rt = self._runtime(c)
            argv = [*rt.base(), "exec", "--process", pfile, "--pid-file", pidfile]
            tty = bool(process.get("terminal"))
            listener = None
            if tty:
                import tempfile

                cdir = tempfile.mkdtemp(prefix="pallet-exec-")  # short enough for sun_path
                csock = os.path.join(cdir, "console.sock")
                listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
                listener.bind(csock)
                listener.listen(1)
                argv += ["--console-socket", csock]
            argv.append(c.id)
            pipes = subprocess.DEVNULL if detach else subprocess.PIPE
            stdin = subprocess.PIPE if (not detach and not tty and ex.config.get("AttachStdin")) \
                else subprocess.DEVNULL
            proc = subprocess.Popen(argv, stdin=stdin, stdout=pipes, stderr=pipes)
            master = -1
            try:
                if listener is not None:
                    listener.settimeout(30)
                    conn, _ = listener.accept()
                    with conn:
                        _m, fds, _f, _a = socket.recv_fds(conn, 64, 1)
                    master = fds[0]
            except OSError as exc:
                proc.kill()
                proc.wait()
                raise PalletError(f"exec {exec_id[:12]}: no terminal from the runtime: {exc}") from exc
            finally:
                if listener is not None:
                    listener.close()
                    shutil.rmtree(cdir, ignore_errors=True)
            ex.running = True
            self._event(c, "exec_start: " + " ".join(ex.config["Cmd"]), {"execID": exec_id})

        def done(code: int) -> None:
            ex.running, ex.exit_code = False, code
            self._event(c, "exec_die", {"execID": exec_id, "exitCode": code})
            with contextlib.suppress(OSError), open(pidfile) as f:
                ex.pid = int(f.read().strip() or 0)

        session = ExecSession(exec_id, proc, pty=master, stdin=proc.stdin, stdout=proc.stdout,  # type: ignore[arg-type]
                              stderr=proc.stderr, on_exit=done)  # type: ignore[arg-type]
        ex.session = session
        if detach or tty:
            threading.Thread(target=lambda: session.wait(), daemon=True, name=f"exec-{exec_id[:12]}").start()
        return None if detach else session

    def _exec_process(self, c: Container, config: Mapping[str, Any]) -> dict[str, Any]:
        with open(os.path.join(self._dir(c.id), "config.json")) as f:
            spec = json.load(f)
        proc = dict(spec["process"])
        proc["args"] = list(config["Cmd"])
        proc["terminal"] = bool(config.get("Tty"))
        proc.pop("consoleSize", None)
        env = {e.split("=", 1)[0]: e for e in proc.get("env") or []}
        env.update({e.split("=", 1)[0]: e for e in config.get("Env") or []})
        proc["env"] = list(env.values())
        if config.get("WorkingDir"):
            proc["cwd"] = config["WorkingDir"]
        if config.get("User"):
            found = bundlemod.numeric_user(config["User"]) or _lookup_user(self._rootfs(c.id), config["User"])
            proc["user"] = {"uid": found[0], "gid": found[1],
                            **({"additionalGids": found[2]} if found[2] else {})}
        if config.get("Privileged"):
            every = list(bundlemod.ALL_CAPS)
            proc["capabilities"] = {k: every for k in ("bounding", "effective", "permitted")}
        return proc

    def exec_inspect(self, exec_id: str) -> dict[str, Any]:
        with self._guard:
            ex = self._execs.get(exec_id)
        if ex is None:
            raise NotFound(f"No such exec instance: {exec_id}")
        if ex.session is not None and ex.running and ex.session.proc.poll() is not None:
            ex.session.wait()
        cfg = ex.config
        return {"ID": ex.id, "ContainerID": ex.container_id, "Running": ex.running, "ExitCode": ex.exit_code,
                "Pid": ex.pid, "OpenStdin": bool(cfg.get("AttachStdin")),
                "OpenStderr": bool(cfg.get("AttachStderr")), "OpenStdout": bool(cfg.get("AttachStdout")),
                "CanRemove": False, "DetachKeys": cfg.get("DetachKeys", ""),
                "ProcessConfig": {"tty": bool(cfg.get("Tty")), "entrypoint": cfg["Cmd"][0],
                                  "arguments": cfg["Cmd"][1:], "privileged": bool(cfg.get("Privileged")),
                                  "user": cfg.get("User", "")}}

    # --- observing ------------------------------------------------------------------------------------
    @property
    def attach_before_start(self) -> bool:
        """Whether `attach(before_start=True)` works: with conmon, whose attach socket exists once
        the runtime's create is done, before the engine starts the container."""
        return self.monitor == "conmon"

    def attach(self, ref: str, *, before_start: bool = False) -> socket.socket:
        """A connection to the container's monitor: output arrives (raw for a Tty container, else in
        Docker's multiplexed frames), what is sent goes to stdin (with OpenStdin). Output from before
        the attach is in the logs. `before_start` (see attach_before_start): a container that is
        not running is attached at its next start, before its first output; the connection ends
        when that run does (what `docker run` and `docker start -a` need)."""
        c = self.get(ref)
        with c.lock:
            if not c.state.status.is_active and before_start and self.attach_before_start:
                ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
                with self._guard:
                    self._pending_attach.setdefault(c.id, []).append(ours)
                self._event(c, "attach")
                return theirs
            if not c.state.status.is_active:
                raise Conflict(f"You cannot attach to a stopped container {c.id[:12]}, start it first")
            if c.monitor == "conmon":
                try:
                    s = conmonmod.attach(self._dir(c.id), bool(c.config.get("Tty")))
                except OSError as exc:
                    raise Conflict(f"container {c.id[:12]}: attach: {exc}") from exc
                self._event(c, "attach")
                return s
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            # Through the directory's fd: sun_path holds 108 bytes, the exec root may be deep.
            dfd = os.open(self._xdir(c.id), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                s.connect(f"/proc/self/fd/{dfd}/attach.sock")
            except OSError as exc:
                s.close()
                raise Conflict(f"container {c.id[:12]}: attach: {exc}") from exc
            finally:
                os.close(dfd)
            self._event(c, "attach")
            return s

    def resize(self, ref: str, height: int, width: int) -> None:
        """Set a running Tty container's window size, through its monitor's ctl FIFO (see
        engine/monitor.py). A container without a Tty ignores it, as dockerd's does."""
        c = self.get(ref)
        with c.lock:
            if not c.state.status.is_active:
                raise Conflict(f"Container {c.id} is not running")
            if height <= 0 or width <= 0 or not c.config.get("Tty"):
                return
            if c.monitor == "conmon":
                conmonmod.resize(self._dir(c.id), height, width)
            else:
                conmonmod.write_fifo(os.path.join(self._xdir(c.id), "ctl"), f"resize {height} {width}\n")

    def logs(self, ref: str, *, follow: bool = False, since: float | None = None, until: float | None = None,
             timestamps: bool = False, tail: int | None = None, stdout: bool = True,
             stderr: bool = True, cancel: threading.Event | None = None) -> Iterator[tuple[str, bytes]]:
        """The json-file log as (stream, bytes) records; see pallet.engine.logs.read_logs. A
        follow ends when the container stops or is removed, or when `cancel` is set (the caller
        lost its client): the iterator then returns within the poll interval (0.1 s)."""
        c = self.get(ref)
        _ltype, _size, files = bundlemod.log_options(c.host_config)
        if _ltype == "none":
            raise NotSupported('configured logging driver does not support reading ("none")')
        return read_logs(self.log_path(c.id), max_files=files, follow=follow, since=since, until=until,
                         timestamps=timestamps, tail=tail, stdout=stdout, stderr=stderr,
                         running=lambda: c.state.status.is_active and not c.removed,
                         cancelled=cancel.is_set if cancel is not None else lambda: False)

    def top(self, ref: str, ps_args: str | Sequence[str] = "-ef") -> dict[str, Any]:
        c = self.get(ref)
        with c.lock:
            if not c.state.status.is_active:
                raise Conflict(f"Container {c.id} is not running")
            args = ps_args.split() if isinstance(ps_args, str) else list(ps_args)
            titles, rows = self._runtime(c).ps(c.id, args)
        return {"Titles": titles, "Processes": rows}

    def stats(self, ref: str) -> dict[str, Any]:
        """One `runtime events --stats` sample (runc's stats event JSON)."""
        c = self.get(ref)
        with c.lock:
            if not c.state.status.is_active:
                raise Conflict(f"Container {c.id} is not running")
            return self._runtime(c).stats(c.id)

    def commit(self, ref: str, repo_tag: str | None = None, *, author: str = "", message: str = "",
               changes: Sequence[str] = (), pause: bool = True) -> str:
        """`docker commit` through ImageService.commit, the container frozen while its change is read."""
        c = self.get(ref)

        @contextlib.contextmanager
        def frozen() -> Iterator[None]:
            with c.lock:
                do = pause and c.state.status is Status.RUNNING
                if do:
                    self._runtime(c).pause(c.id)
                try:
                    yield
                finally:
                    if do:
                        self._runtime(c).resume(c.id)

        view = self.userns.commit_view(c.id)  # --userns=auto: store container ids, not the range's
        image_id = str(self.images.commit(c.id, repo_tag, author=author, message=message, changes=changes,
                                          pause=frozen, upper_view=view))
        self._event(c, "commit", {"comment": message, "imageID": image_id, "imageRef": repo_tag or ""})
        return image_id

    def export(self, ref: str, out: Any) -> None:
        c = self.get(ref)
        view = self.userns.commit_view(c.id)
        self.images.export_container(c.id, out, upper_view=view)

    # --- listing --------------------------------------------------------------------------------------
    def list(self, all: bool = False, filters: Mapping[str, Sequence[str]] | None = None,
             limit: int = -1) -> builtins.list[dict[str, Any]]:
        """ContainerSummary objects, newest first (Docker's /containers/json)."""
        flt = {k: list(v) for k, v in (filters or {}).items()}
        health = self._health.filter_values(flt.pop("health", None))  # engine/health.py
        for k in flt:
            if k not in ("status", "name", "id", "label", "ancestor", "exited"):
                raise InvalidArgument(f"invalid filter '{k}'")
        with self._guard:
            items = list(self._containers.values())
        items.sort(key=lambda c: c.created, reverse=True)
        out = []
        for c in items:
            if not all and not c.state.status.is_active and "status" not in flt and "exited" not in flt:
                continue
            if not matches(c, flt, self._ancestors):
                continue
            if health and self._health.status_of(c) not in health:
                continue
            out.append(self._summary(c))
            if 0 < limit <= len(out):
                break
        return out

    def _ancestors(self, ref: str) -> set[str]:
        with contextlib.suppress(PalletError):
            return {str(self.images.get(ref).id)}
        return set()

    def _summary(self, c: Container) -> dict[str, Any]:
        cmd = [*(c.config.get("Entrypoint") or []), *(c.config.get("Cmd") or [])]
        net_ports, net_settings = self.networking.summary(c)
        return {"Id": c.id, "Names": [f"/{c.name}"], "Image": c.image_ref, "ImageID": c.image,
                "Command": " ".join(cmd), "Created": _epoch(c.created), "Ports": net_ports,
                "Labels": c.config.get("Labels") or {}, "State": c.state.status.value,
                "Status": self._health.status_text(c, _status_text(c.state)),
                "HostConfig": {"NetworkMode": c.host_config.get("NetworkMode")},
                "NetworkSettings": net_settings, "Mounts": self._mounts(c)}

    def sizes(self, ref: str) -> tuple[int, int]:
        """(SizeRw, SizeRootFs) as Docker's `?size=1` reports them: the bytes of the files in the
        container's writable layer, and those plus its image's (regular files, hard links
        counted once, as moby's pkg/directory.Size)."""
        c = self.get(ref)
        rw = 0
        with contextlib.suppress(PalletError, OSError, IndexError):
            m = self.images.container_mounts(c.id)[0]
            upper = m.option("upperdir") if m.type == "overlay" else m.source
            rw = _tree_size(upper) if upper else 0
        image_size = 0
        with contextlib.suppress(PalletError):
            image_size = int(self.images.inspect(c.image).get("Size") or 0)
        return rw, rw + image_size

    def _mounts(self, c: Container) -> builtins.list[dict[str, Any]]:
        out = []
        for b in c.host_config.get("Binds") or []:
            m = bundlemod.parse_bind(b)
            if bundlemod.is_volume_source(m["source"]):
                continue
            out.append({"Type": "bind", "Source": m["source"], "Destination": m["destination"], "Mode": "",
                        "RW": "ro" not in m["options"], "Propagation": m["options"][-1]})
        for v in c.volumes:
            out.append({"Type": "volume", "Name": v["Name"], "Source": self.volumes.mountpoint(v["Name"]),
                        "Destination": v["Destination"], "Driver": "local", "Mode": "", "RW": bool(v["RW"]),
                        "Propagation": ""})
        for d in (c.host_config.get("Tmpfs") or {}):
            out.append({"Type": "tmpfs", "Source": "", "Destination": d, "Mode": "", "RW": True,
                        "Propagation": ""})
        return out

    def inspect(self, ref: str) -> dict[str, Any]:
        """Docker's ContainerInspectResponse."""
        c = self.get(ref)
        with c.lock:
            path, *args = [*(c.config.get("Entrypoint") or []), *(c.config.get("Cmd") or [])] or [""]
            gd: dict[str, Any] = {"Name": getattr(self.images, "driver", "overlay"), "Data": None}
            with contextlib.suppress(PalletError, IndexError, AttributeError):
                m = self.images.container_mounts(c.id)[0]
                pairs = (("LowerDir", m.option("lowerdir")), ("UpperDir", m.option("upperdir")),
                         ("WorkDir", m.option("workdir")), ("MergedDir", self._rootfs(c.id)))
                gd["Data"] = {k: v for k, v in pairs if v}
            d = self._dir(c.id)
            return {
                "Id": c.id, "Created": c.created, "Path": path, "Args": args,
                "State": self._health.inspect_state(c, c.state.to_docker()),
                "Image": c.image, "ResolvConfPath": os.path.join(d, "resolv.conf"),
                "HostnamePath": os.path.join(d, "hostname"), "HostsPath": os.path.join(d, "hosts"),
                "LogPath": self.log_path(c.id), "Name": f"/{c.name}", "RestartCount": c.restart_count,
                "Driver": gd["Name"], "Platform": "linux", "MountLabel": "", "ProcessLabel": "",
                "AppArmorProfile": "", "ExecIDs": self._exec_ids(c.id) or None,
                "HostConfig": self.userns.inspect_host_config(c.id, c.host_config),
                "GraphDriver": gd, "Mounts": self._mounts(c), "Config": c.config,
                "NetworkSettings": self.networking.settings(c),
            }

    def _exec_ids(self, cid: str) -> builtins.list[str]:
        with self._guard:
            return [e for e, x in self._execs.items() if x.container_id == cid]

    # --- live restore ---------------------------------------------------------------------------------
    def _load(self) -> None:
        """Read every container record; reconcile the active ones with their monitors."""
        for cid in sorted(os.listdir(self.containers_dir)):
            path = os.path.join(self._dir(cid), "container.json")
            try:
                with open(path) as f:
                    c = Container.from_record(json.load(f))
            except (OSError, ValueError, KeyError, InvalidArgument) as exc:
                sys.stderr.write(f"pallet engine: skipping container {cid}: {exc}\n")
                continue
            self._containers[c.id] = c
            self._names[c.name] = c.id
        for c in list(self._containers.values()):
            with c.lock:
                if c.state.status is Status.REMOVING:
                    self._remove_locked(c)
                    continue
                if not c.state.status.is_active:
                    continue
                alive = c.monitor_pid and _proc_start(c.monitor_pid) == c.monitor_start
                if alive and self._watcher.watch(c.id, c.monitor_pid, c.monitor_start):
                    self._health.resume_locked(c)
                    self._oom.watch(c.id, f"{self.cgroup_parent}/{c.id}")
                    continue
                self._exited_locked(c)
                auto = bool(c.host_config.get("AutoRemove"))
            if auto:
                with contextlib.suppress(PalletError):
                    self.remove(c.id, force=True, volumes=True)
            self._join_delete(c)
        # What dead runs left in the kernel (veths, namespaces, rules), ports of live ones held again.
        self.networking.reconcile([c.id for c in list(self._containers.values()) if c.state.status.is_active])


# --- pure helpers ---------------------------------------------------------------------------------

def matches(c: Container, flt: Mapping[str, Sequence[str]], ancestors: Callable[[str], set[str]]) -> bool:
    """Docker's container filters: each key must match one of its values (status, name (substring
    or regexp), id (prefix), label (key or key=value), ancestor (image name or id), exited)."""
    import re

    for key, values in flt.items():
        if not values:
            continue
        if key == "status":
            bad = [v for v in values if v not in {s.value for s in Status}]
            if bad:
                raise InvalidArgument(f"invalid filter 'status={bad[0]}'")
            ok = c.state.status.value in values
        elif key == "name":
            ok = any(re.search(v, "/" + c.name) for v in values)
        elif key == "id":
            ok = any(c.id.startswith(v) for v in values)
        elif key == "label":
            labels = c.config.get("Labels") or {}
            ok = all(_label_ok(labels, v) for v in values)
        elif key == "ancestor":
            ok = any(v in (c.image_ref, c.image) or c.image in ancestors(v) for v in values)
        elif key == "exited":
            try:
                codes = {int(v) for v in values}
            except ValueError:
                raise InvalidArgument("invalid filter 'exited': want an integer") from None
            ok = c.state.status is Status.EXITED and c.state.exit_code in codes
        else:
            raise InvalidArgument(f"invalid filter '{key}'")
        if not ok:
            return False
    return True


def _label_ok(labels: Mapping[str, str], spec: str) -> bool:
    k, sep, v = spec.partition("=")
    return k in labels and (not sep or labels[k] == v)


def _epoch_float(ts: str) -> float:
    from pallet.engine.logs import parse_time

    return parse_time(ts) / 1e9


def _prune_until(raw: str, now: float | None = None) -> float:
    """Prune's `until` in seconds since the epoch: a Go duration before now ("10m", "1h30m"),
    seconds ("1700000000.5") or RFC 3339 (moby's GetTimestamp, as the events' since/until)."""
    from pallet.engine.events import parse_timestamp

    now_ns = time.time_ns() if now is None else int(now * 1e9)
    try:
        return parse_timestamp(raw, now_ns) / 1e9
    except InvalidArgument:
        raise InvalidArgument(f"invalid value for until: {raw.strip()!r}") from None


def _epoch(ts: str) -> int:
    from pallet.engine.logs import parse_time

    return parse_time(ts) // 10**9


def _status_text(st: ContainerState, now: float | None = None) -> str:
    """ContainerSummary.Status: "Up 5 minutes", "Exited (0) 2 seconds ago", "Created"..."""
    from pallet.engine.logs import parse_time

    now = time.time() if now is None else now
    if st.status in (Status.RUNNING, Status.PAUSED):
        up = f"Up {human_duration(now - parse_time(st.started_at) / 1e9)}"
        return up + " (Paused)" if st.status is Status.PAUSED else up
    if st.status is Status.EXITED:
        if st.finished_at.startswith("0001-"):
            return f"Exited ({st.exit_code})"
        return f"Exited ({st.exit_code}) {human_duration(now - parse_time(st.finished_at) / 1e9)} ago"
    if st.status is Status.RESTARTING:  # dockerd's State.String
        return f"Restarting ({st.exit_code}) {human_duration(now - parse_time(st.finished_at) / 1e9)} ago"
    return {Status.CREATED: "Created", Status.DEAD: "Dead",
            Status.REMOVING: "Removal In Progress"}[st.status]


def _lookup_user(rootfs: str, user: str) -> tuple[int, int, list[int]]:
    """user[:group] by name through the container's /etc/passwd and /etc/group (read through a
    secure join: the rootfs is untrusted)."""
    from pallet.oci.securejoin import secure_join

    name, _, group = user.partition(":")

    def entries(path: str) -> list[list[str]]:
        try:
            with open(secure_join(rootfs, path)) as f:
                return [line.rstrip("\n").split(":") for line in f if line.count(":") >= 2]
        except OSError:
            return []

    passwd, groups = entries("/etc/passwd"), entries("/etc/group")
    if name.isdigit():
        uid, gid = int(name), 0
        for p in passwd:
            if p[2] == name and len(p) > 3 and p[3].isdigit():
                gid = int(p[3])
    else:
        found = [p for p in passwd if p[0] == name and len(p) > 3]
        if not found:
            raise InvalidArgument(f"unable to find user {name}: no matching entries in passwd file")
        uid, gid = int(found[0][2]), int(found[0][3])
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            g = [e for e in groups if e[0] == group]
            if not g:
                raise InvalidArgument(f"unable to find group {group}: no matching entries in group file")
            gid = int(g[0][2])
    uname = name if not name.isdigit() else next((p[0] for p in passwd if p[2] == name), "")
    extra = sorted({int(e[2]) for e in groups if len(e) > 3 and uname and uname in e[3].split(",")} - {gid})
    return uid, gid, extra


def _oom_killed(cgroup_path: str, root: str = "/sys/fs/cgroup") -> bool:
    """Whether the kernel's OOM killer acted in the container's memory cgroup (v1 oom_control
    or v2 memory.events oom_kill counter)."""
    for path in (os.path.join(root, "memory", cgroup_path.lstrip("/"), "memory.oom_control"),
                 os.path.join(root, cgroup_path.lstrip("/"), "memory.events")):
        with contextlib.suppress(OSError, ValueError), open(path) as f:
            for line in f:
                k, _, v = line.partition(" ")
                if k == "oom_kill":
                    return int(v) > 0
    return False


def _tree_size(top: str) -> int:
    seen: set[tuple[int, int]] = set()
    total = 0
    for root, _dirs, files in os.walk(top):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if st.st_nlink > 1:
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total
