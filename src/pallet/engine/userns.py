"""Per-container host ID ranges (`--userns=auto`) and the idmapped rootfs and volumes that serve them.

Each container created with `HostConfig.UsernsMode` "auto" (or "auto:size=N", podman's form; or ""
when the daemon's default is auto) gets its own contiguous range of host uids and gids: container ids
0..size-1 map to host ids start..start+size-1. Ranges are `size` wide (default 2000) and handed out
first-fit from a pool starting at host id 10000, so the first container gets 10000-11999, the next
12000-13999. Root in one container is then an unprivileged host uid, and nobody to every other
container (kill(2) and ptrace(2) access checks compare host ids). A range belongs to a container from
create to removal (its writable layer keeps files owned by it), and is never handed to a second one
while the first exists. `UsernsMode` "host" opts out.

How the files line up, with no chown and no copy of image layers (overlayfs.rst, "Idmapped layers";
mount_setattr(2) MOUNT_ATTR_IDMAP):
- rootfs: every lower layer of the container's overlay is an idmapped clone of the snapshot
  directory (disk 0 -> host `start`), made with open_tree(OPEN_TREE_CLONE) + mount_setattr + move_mount,
  the overlay is mounted over those clones, and the clones are detached at once (overlayfs holds
  private clones of its layers). The upper dir is a plain directory whose root is chowned to the
  range's root once: what the container creates or copies up is stored with host ids of its range,
  as Docker's userns-remap and podman's --userns=auto store them. The same image layers serve any
  number of containers with different ranges at once.
- volumes: the volume's `_data` root owner says which ids its files are stored with (its "base"): a
  new, empty volume is chowned to the first user-namespaced container's range root (files then land
  as 10000+ on the host); a volume owned by host root keeps ids 0-based. Every container mounts it
  idmapped from that base to its own range (runtime-spec mounts[].uidMappings; containerID is the
  id on disk, hostID the id seen through the mount), so containers with other ranges share it.
- /etc/hostname, /etc/hosts, /etc/resolv.conf of the container are chowned to its range root, and the
  container's directory (which holds its rootfs mount point) is root:<range gid> 0710, as Docker does
  for its remapped root (the container's root must traverse to its rootfs; daemon/daemon_unix.go).
  Host bind sources must be reachable by that root too: one under a directory others cannot search
  is refused at create. Missing mount points are made owned by the container's root.
- commit and export read the writable layer through an idmapped view that shifts the range back
  (host start+n is seen as n): layers and tars hold container ids, as Docker's userns-remap stores.
- a system container (engine/sysinit.py) with a range gets its cgroup delegated by a createRuntime
  hook that chowns it to its root (podman does the same for --systemd).

Exhausting the pool is `Unavailable` (HTTP 503): the request is fine, the resource is not there now,
and frees up when a container is removed (moby's errdefs.Unavailable has that meaning; Conflict would
blame the caller's state).

On disk, version 1 (atomic write: temp + fsync + rename, under an flock of the lock file):
    <data-root>/userns/ranges.json   {"version": 1, "ranges": {"<container id>": [host start, size]}}
    <data-root>/userns/lock          flock(2) target, so that two processes never hand out one range
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pallet.errors import InvalidArgument, NotSupported, PalletError, Unavailable

RECORD_VERSION = 1
DEFAULT_BASE = 10000
DEFAULT_SIZE = 2000
DEFAULT_COUNT = 1000      # ranges of DEFAULT_SIZE in the default pool: host ids 10000..2009999
MAX_ID = 2**32 - 2        # (uid_t)-1 is never a valid id (user_namespaces(7))
MODES = ("host", "auto")
OWN_FILES = ("hostname", "hosts", "resolv.conf")  # the engine's per-container files, bound in


@dataclass(frozen=True)
class IdRange:
    """Container ids 0..size-1 <-> host ids start..start+size-1 (the same for uids and gids)."""

    start: int
    size: int

    @property
    def end(self) -> int:
        return self.start + self.size

    def mappings(self) -> list[dict[str, int]]:
        """linux.uidMappings / gidMappings of the OCI runtime spec."""
        return [{"containerID": 0, "hostID": self.start, "size": self.size}]

    def podman_view(self) -> dict[str, list[str]]:
        """HostConfig.IDMappings as podman's inspect shows it: "container:host:size"."""
        text = f"0:{self.start}:{self.size}"
        return {"UidMap": [text], "GidMap": [text]}


@dataclass(frozen=True)
class UsernsSettings:
    """The daemon's choices: the default mode for UsernsMode "" and the pool of host ids."""

    default: str = "host"
    base: int = DEFAULT_BASE
    size: int = DEFAULT_SIZE
    count: int = DEFAULT_COUNT

    def __post_init__(self) -> None:
        if self.default not in MODES:
            raise InvalidArgument(f"userns-default {self.default!r}: want one of {', '.join(MODES)}")
        if self.base < 1:
            raise InvalidArgument(f"userns-base {self.base}: must be at least 1 (host root stays out)")
        if self.size < 1 or self.count < 1:
            raise InvalidArgument("userns-size and userns-count must be at least 1")
        if self.base + self.size * self.count > MAX_ID:
            raise InvalidArgument(f"the userns pool {self.base}+{self.size}x{self.count} passes the "
                                  f"largest id {MAX_ID}")

    @property
    def pool_end(self) -> int:
        return self.base + self.size * self.count


def parse_mode(value: Any) -> tuple[str, int | None]:
    """HostConfig.UsernsMode as (mode, size): "" -> ("", None) (the daemon's default), "host",
    "private" (Docker's word for the daemon's default), "auto", "auto:size=N"."""
    if value in (None, "", "private"):
        return "", None
    if not isinstance(value, str):
        raise InvalidArgument(f"HostConfig.UsernsMode: want a string, got {value!r}")
    if value == "host":
        return "host", None
    mode, _, opts = value.partition(":")
    if mode != "auto":
        raise NotSupported(f"HostConfig.UsernsMode {value!r} is not supported (host, auto, auto:size=N)")
    size: int | None = None
    for opt in filter(None, opts.split(",")):
        key, _, raw = opt.partition("=")
        if key != "size":
            raise InvalidArgument(f"HostConfig.UsernsMode {value!r}: unknown option {key!r} (know size=N)")
        if not raw.isdigit() or not 1 <= int(raw) <= 2**31:
            raise InvalidArgument(f"HostConfig.UsernsMode {value!r}: size must be a positive integer")
        size = int(raw)
    return "auto", size


class RangePool:
    """The allocation of host id ranges to owners (container ids), persisted in `directory`.

    `allocate` is idempotent for an owner that has a range; `release` of an owner without one does
    nothing. Both are atomic on disk and safe between threads and processes (a lock + flock)."""

    def __init__(self, directory: str | os.PathLike[str], settings: UsernsSettings | None = None) -> None:
        self.dir = os.fspath(directory)
        self.settings = settings or UsernsSettings()
        self.path = os.path.join(self.dir, "ranges.json")
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, list[int]]]:
        """The table, read under both locks; whatever the body leaves in it is written back."""
        with self._lock:
            os.makedirs(self.dir, mode=0o700, exist_ok=True)
            fd = os.open(os.path.join(self.dir, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                table = self._read()
                before = dict(table)
                yield table
                if table != before:
                    self._write(table)
            finally:
                os.close(fd)

    def _read(self) -> dict[str, list[int]]:
        try:
            with open(self.path) as f:
                data = json.load(f)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise PalletError(f"userns ranges {self.path}: unreadable: {exc}") from exc
        if not isinstance(data, dict) or data.get("version") != RECORD_VERSION:
            got = data.get("version") if isinstance(data, dict) else None
            raise PalletError(f"userns ranges {self.path}: version {got!r} is not {RECORD_VERSION}")
        return {str(k): [int(v[0]), int(v[1])] for k, v in (data.get("ranges") or {}).items()}

    def _write(self, table: Mapping[str, list[int]]) -> None:
        tmp = f"{self.path}.tmp-{secrets.token_hex(4)}"
        with open(tmp, "w") as f:
            json.dump({"version": RECORD_VERSION, "ranges": dict(sorted(table.items()))}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def allocate(self, owner: str, size: int | None = None) -> IdRange:
        """The owner's range, allocated first-fit now if it has none. Unavailable when no gap of
        `size` ids is left in the pool."""
        want = size or self.settings.size
        s = self.settings
        if want > s.pool_end - s.base:
            raise InvalidArgument(f"a user namespace of {want} ids is larger than the whole pool "
                                  f"({s.pool_end - s.base} ids from {s.base})")
        with self._locked() as table:
            if owner in table:
                return IdRange(*table[owner])
            start = s.base
            for a_start, a_size in sorted(table.values()):
                if a_start - start >= want:
                    break
                start = max(start, a_start + a_size)
            if start + want > s.pool_end:
                raise Unavailable(
                    f"no free range of {want} host ids for a user namespace: the pool {s.base}-"
                    f"{s.pool_end - 1} is taken by {len(table)} containers; remove a container or "
                    "start palletd with a larger --userns-count")
            table[owner] = [start, want]
            return IdRange(start, want)

    def get(self, owner: str) -> IdRange | None:
        if not os.path.exists(self.path):  # no range was ever handed out: no lock, no files
            return None
        with self._locked() as table:
            found = table.get(owner)
        return IdRange(*found) if found else None

    def release(self, owner: str) -> None:
        if not os.path.exists(self.path):
            return
        with self._locked() as table:
            table.pop(owner, None)

    def allocations(self) -> dict[str, IdRange]:
        if not os.path.exists(self.path):
            return {}
        with self._locked() as table:
            return {k: IdRange(*v) for k, v in table.items()}

    def reconcile(self, live: Iterable[str]) -> list[str]:
        """Free the ranges of owners not in `live` (a create that died half-way, a record removed
        while no daemon ran); returns their names."""
        keep = set(live)
        if not os.path.exists(self.path):
            return []
        with self._locked() as table:
            gone = [k for k in table if k not in keep]
            for k in gone:
                del table[k]
        return gone


# --- the kernel side: a user namespace to idmap with, idmapped layers ---------------------------------

@contextlib.contextmanager
def userns_fd(uid_maps: Sequence[Mapping[str, int]], gid_maps: Sequence[Mapping[str, int]]) -> Iterator[int]:
    """An fd of a new user namespace with these maps, for mount_setattr(MOUNT_ATTR_IDMAP).

    The namespace is made by a short-lived `unshare --user` child (util-linux): the daemon never
    calls unshare itself (it is multi-threaded; STYLE.md §8). As its parent and host root we write
    its maps (user_namespaces(7): a process in the parent namespace with CAP_SETUID may), then keep
    the namespace alive through the fd alone."""
    proc = subprocess.Popen(["unshare", "--user", "cat"], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True)
    fd = -1
    try:
        mine = os.readlink("/proc/self/ns/user")
        deadline = time.monotonic() + 5
        while os.readlink(f"/proc/{proc.pid}/ns/user") == mine:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise PalletError("could not make a user namespace for an idmapped mount (unshare --user)")
            time.sleep(0.001)
        for kind, maps in (("uid", uid_maps), ("gid", gid_maps)):
            with open(f"/proc/{proc.pid}/{kind}_map", "w") as f:
                f.write("".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in maps))
        fd = os.open(f"/proc/{proc.pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait()
    try:
        yield fd
    finally:
        os.close(fd)


def idmapped_overlay(mount: Any, rng: IdRange, workspace: str, syscalls: Any) -> Any:
    """Attach idmapped clones of `mount`'s lower layers under `workspace` (as 0, 1, ...: short
    relative lowerdirs, see pallet.oci.mount's x-pallet.chdir) and return the overlay Mount to
    perform over them; the caller mounts it, then calls `detach_layers(workspace)`."""
    from pallet.oci.mount import CHDIR_OPTION, Mount
    from pallet.syscalls import flags as F

    lower = mount.option("lowerdir") or ""
    base = mount.chdir
    layers = [p if os.path.isabs(p) or base is None else os.path.join(base, p) for p in lower.split(":") if p]
    if not layers:
        raise NotSupported("an overlay rootfs without lower layers cannot be idmapped")
    detach_layers(workspace, syscalls)
    os.makedirs(workspace, mode=0o700, exist_ok=True)
    with userns_fd(rng.mappings(), rng.mappings()) as ns:
        for i, layer in enumerate(layers):
            target = os.path.join(workspace, str(i))
            os.makedirs(target, exist_ok=True)
            tree = syscalls.open_tree(layer, F.OPEN_TREE_CLONE | F.OPEN_TREE_CLOEXEC)
            try:
                syscalls.mount_setattr_idmap(tree, ns, False)
                syscalls.move_mount(tree, target)
            finally:
                os.close(tree)
    keep = [o for o in mount.options if not o.startswith(("lowerdir=", CHDIR_OPTION))]
    rel = ":".join(str(i) for i in range(len(layers)))
    return Mount(mount.type, mount.source, mount.target, (*keep, f"lowerdir={rel}", CHDIR_OPTION + workspace))


def detach_layers(workspace: str, syscalls: Any) -> None:
    """Lazily unmount and remove what `idmapped_overlay` attached (idempotent)."""
    from pallet.syscalls import flags as F

    if not os.path.isdir(workspace):
        return
    for name in os.listdir(workspace):
        path = os.path.join(workspace, name)
        try:
            syscalls.umount2(path, F.MNT_DETACH)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENOENT):
                raise
        with contextlib.suppress(OSError):
            os.rmdir(path)
    with contextlib.suppress(OSError):
        os.rmdir(workspace)


# --- what the engine calls -------------------------------------------------------------------------

class UsernsManager:
    """The engine's side of user namespaces: the pool under `<data-root>/userns`, the decision per
    container, its spec, rootfs and volumes. Engine methods call it under the container's lock."""

    def __init__(self, data_root: str, settings: UsernsSettings | None = None, syscalls: Any = None) -> None:
        self.data_root = data_root
        self.pool = RangePool(os.path.join(data_root, "userns"), settings)
        self._syscalls = syscalls

    @property
    def settings(self) -> UsernsSettings:
        return self.pool.settings

    def configure(self, settings: UsernsSettings) -> None:
        """New defaults for containers created from now on (ranges held keep their size)."""
        self.pool.settings = settings

    @property
    def syscalls(self) -> Any:
        if self._syscalls is None:
            from pallet.syscalls import real

            self._syscalls = real()
        return self._syscalls

    def resolve(self, hc: dict[str, Any]) -> tuple[str, int | None]:
        """Fix the container's mode at create: "" becomes the daemon's default, so that a later
        change of the default never strands a container's writable layer in another range."""
        mode, size = parse_mode(hc.get("UsernsMode"))
        if not mode:
            mode = self.settings.default
            hc["UsernsMode"] = "auto" if mode == "auto" else ""
        if mode == "auto":
            for key, bad in (("PidMode", "host"), ("NetworkMode", "host"), ("IpcMode", "host")):
                if hc.get(key) == bad:
                    raise InvalidArgument(f"HostConfig.{key} {bad!r} cannot be combined with UsernsMode "
                                          "auto: use UsernsMode host")
            if hc.get("Privileged"):
                raise InvalidArgument("a privileged container cannot have a user namespace: "
                                      "use --userns=host")
        return mode, size

    def on_create(self, cid: str, hc: dict[str, Any], container_dir: str, runtime: str,
                  volume_dirs: Iterable[str]) -> IdRange | None:
        """Allocate the range of a new container (None: it uses host ids) and prepare its
        directory, its own files there (hostname, hosts, resolv.conf) and its new volumes. The
        caller releases the range if its create fails later."""
        mode, size = self.resolve(hc)
        if mode != "auto":
            return None
        if runtime == "crun":
            raise NotSupported("--userns=auto with crun is not supported here (crun is refused on this host)")
        volume_dirs = list(volume_dirs)
        self.check_runtime(runtime, bool(volume_dirs))
        check_bind_sources(hc)
        rng = self.pool.allocate(cid, size)
        try:
            self._make_traversable(container_dir)
            os.chown(container_dir, 0, rng.start)
            os.chmod(container_dir, 0o710)
            self.chown_files(rng, [os.path.join(container_dir, n) for n in OWN_FILES])
            for d in volume_dirs:
                st = os.stat(d)
                if st.st_uid == 0 and st.st_gid == 0 and not os.listdir(d):
                    os.chown(d, rng.start, rng.start)  # a new volume: stored with this range's ids
        except BaseException:
            self.pool.release(cid)
            raise
        return rng

    def inspect_host_config(self, cid: str, hc: Mapping[str, Any]) -> dict[str, Any]:
        """HostConfig as inspect shows it: with podman's IDMappings when the container has a range."""
        rng = self.pool.get(cid)
        return {**hc, "IDMappings": rng.podman_view()} if rng else dict(hc)

    def _make_traversable(self, container_dir: str) -> None:
        """The container's root (an unprivileged host uid) must look up its rootfs path, which
        the runtime binds from inside the user namespace: the data root and containers/ get o+x
        (Docker sets its data root to 0711 with userns-remap); ancestors above must have it."""
        containers = os.path.dirname(container_dir)
        for d in (containers, os.path.dirname(containers)):
            mode = os.stat(d).st_mode & 0o7777
            if not mode & 0o001:
                os.chmod(d, mode | 0o001)
        d = os.path.dirname(os.path.dirname(containers))
        while True:
            if not os.stat(d).st_mode & 0o001:
                raise NotSupported(f"--userns=auto: {d} (above the data root) is not searchable by other "
                                   "users; the container's root could not reach its rootfs (chmod o+x it)")
            if d == "/":
                break
            d = os.path.dirname(d)

    def get(self, cid: str) -> IdRange | None:
        return self.pool.get(cid)

    def release(self, cid: str) -> None:
        self.pool.release(cid)

    def chown_files(self, rng: IdRange, paths: Iterable[str]) -> None:
        """Per-container files bound into the container (/etc/hosts...) belong to its root."""
        for p in paths:
            with contextlib.suppress(FileNotFoundError):
                os.chown(p, rng.start, rng.start)

    def apply_spec(self, cid: str, runtime: str, spec: dict[str, Any],
                   volume_dirs: Mapping[str, str]) -> None:
        """A user namespace with the range's maps, and idmapped volume mounts (module doc); nothing
        for a container without a range."""
        rng = self.pool.get(cid)
        if rng is None:
            return
        linux = spec.setdefault("linux", {})
        if not any(n.get("type") == "user" for n in linux.get("namespaces") or []):
            linux.setdefault("namespaces", []).append({"type": "user"})
        linux["uidMappings"] = rng.mappings()
        linux["gidMappings"] = rng.mappings()
        self._make_mountpoints(spec, rng)
        mounts = spec.get("mounts") or []
        if any(m.get("type") == "cgroup" and "rw" in (m.get("options") or []) for m in mounts):
            delegate_cgroup(spec, rng)  # a system container (engine/sysinit.py) manages its cgroup
        dirs = {os.path.normpath(d) for d in volume_dirs.values()}
        for m in spec.get("mounts") or []:
            if m.get("type") != "bind" or os.path.normpath(m.get("source", "")) not in dirs:
                continue
            maps = [{"containerID": self.volume_base(m["source"]), "hostID": rng.start, "size": rng.size}]
            m["options"] = [*(o for o in m.get("options") or [] if o not in ("idmap", "ridmap")), "idmap"]
            m["uidMappings"] = maps
            m["gidMappings"] = [dict(x) for x in maps]
        if runtime != "pallet-runtime":
            # A new sysfs in a user namespace is refused (EPERM) when the host's /sys has mounts
            # over it (fs/namespace.c mount_too_revealing); pallet-runtime binds the host's /sys
            # itself in that case, for runc the spec says so (runc's rootless spec does the same).
            for m in spec.get("mounts") or []:
                if m.get("type") == "sysfs":
                    m.update(type="bind", source="/sys", options=["rbind", "nosuid", "noexec", "nodev", "ro"])
    def _make_mountpoints(self, spec: Mapping[str, Any], rng: IdRange) -> None:
        """Create missing mount points in the (mounted) rootfs owned by the container's root: the
        runtime would make them as host root, which inside is nobody (and a commit would store
        them so). Like the runtime's: a file for a bind of a file, else a directory."""
        from pallet.oci.securejoin import secure_join

        root = (spec.get("root") or {}).get("path") or ""
        if not root or not os.path.ismount(root):
            return
        for m in spec.get("mounts") or []:
            dest = secure_join(root, m["destination"])
            if os.path.lexists(dest):
                continue
            parent = dest
            while not os.path.lexists(os.path.dirname(parent)):
                parent = os.path.dirname(parent)
            src = m.get("source") or ""
            is_file = m.get("type") == "bind" and os.path.exists(src) and not os.path.isdir(src)
            if is_file:
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                os.close(os.open(dest, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644))
            else:
                os.makedirs(dest, exist_ok=True)
            # parent: the first component that did not exist; chown it and what is below it.
            for d, _dirs, files in os.walk(parent) if os.path.isdir(parent) else [(parent, [], [])]:
                os.lchown(d, rng.start, rng.start)
                for f in files:
                    os.lchown(os.path.join(d, f), rng.start, rng.start)

    def commit_view(self, cid: str) -> Callable[[str], contextlib.AbstractContextManager[str]] | None:
        """For a container with a range: a view of its upper dir with the range shifted back to
        0-based ids (an idmapped bind: disk start+n is seen as n), so a committed layer holds
        container ids as Docker's userns-remap commits do. None for a host-ids container."""
        rng = self.pool.get(cid)
        if rng is None:
            return None
        back = [{"containerID": rng.start, "hostID": 0, "size": rng.size}]

        @contextlib.contextmanager
        def view(upper: str) -> Iterator[str]:
            from pallet.syscalls import flags as F

            target = os.path.join(self.pool.dir, f"view-{cid[:12]}-{secrets.token_hex(4)}")
            os.makedirs(target, mode=0o700)
            try:
                with userns_fd(back, back) as ns:
                    tree = self.syscalls.open_tree(upper, F.OPEN_TREE_CLONE | F.OPEN_TREE_CLOEXEC)
                    try:
                        self.syscalls.mount_setattr_idmap(tree, ns, False)
                        self.syscalls.move_mount(tree, target)
                    finally:
                        os.close(tree)
                try:
                    yield target
                finally:
                    self.syscalls.umount2(target, F.MNT_DETACH)
            finally:
                with contextlib.suppress(OSError):
                    os.rmdir(target)

        return view

    def volume_base(self, path: str) -> int:
        """The id a volume stores its root with: its root's owner when that is the start of a range
        of the pool, else 0 (host-root files, shifted like image layers)."""
        uid = os.stat(path).st_uid
        s = self.settings
        if uid >= s.base and (uid - s.base) % s.size == 0:
            return uid
        return 0

    def check_runtime(self, runtime: str, has_volumes: bool) -> None:
        """runc 1.1 (Debian 12) has no idmapped mounts (runc 1.2 does): a volume it would mount
        without the idmap would show its files as nobody; refuse that clearly, at create."""
        if runtime == "runc" and has_volumes:
            from pallet.engine.runtimes import default_runtimes

            argv = default_runtimes().get("runc") or ["runc"]
            try:
                out = subprocess.run([argv[0], "--version"], capture_output=True, text=True,
                                     timeout=10).stdout
            except OSError:
                out = ""
            ver = out.split()[2] if len(out.split()) > 2 else ""
            major_minor = tuple(int(x) for x in ver.split("+")[0].split(".")[:2] if x.isdigit())
            if major_minor < (1, 2):
                raise NotSupported(f"runc {ver or '?'} cannot mount volumes idmapped (runc >= 1.2 can): "
                                   "use pallet-runtime for --userns=auto containers with volumes")

    def mount_rootfs(self, images: Any, cid: str, mounts: Sequence[Any], rootfs: str, workspace: str) -> None:
        """Mount the container's snapshot at `rootfs`: as is for a container without a range,
        else with idmapped lower layers over a plain upper dir owned by the range (module doc)."""
        rng = self.pool.get(cid)
        if rng is None:
            images.mount(mounts, rootfs)
            return
        if len(mounts) != 1 or mounts[0].type not in ("overlay", "bind"):
            raise NotSupported("--userns=auto needs the overlay snapshotter (one overlay or bind mount)")
        m = mounts[0]
        upper = m.option("upperdir") if m.type == "overlay" else m.source
        if upper:
            st = os.stat(upper)
            if (st.st_uid, st.st_gid) == (0, 0):
                os.chown(upper, rng.start, rng.start)  # once: the root of the container's own layer
        if m.type == "bind":
            images.mount(mounts, rootfs)  # no lower layers: the directory is the container's own
            return
        overlay = idmapped_overlay(m, rng, workspace, self.syscalls)
        try:
            images.mount([overlay], rootfs)
        finally:
            detach_layers(workspace, self.syscalls)


def check_bind_sources(hc: Mapping[str, Any]) -> None:
    """Host bind sources must be reachable by the container's root, an unprivileged host uid that
    looks them up from inside its user namespace (as with Docker's userns-remap): refuse, at create
    and with the directory to fix, a source under a directory others cannot search."""
    from pallet.engine.bundle import is_volume_source

    sources = [b.split(":")[0] for b in hc.get("Binds") or []]
    sources += [m.get("Source") or "" for m in hc.get("Mounts") or [] if m.get("Type") == "bind"]
    for src in sources:
        if not src or is_volume_source(src):
            continue
        d = os.path.dirname(os.path.normpath(src))
        while True:
            try:
                searchable = bool(os.stat(d).st_mode & 0o001)
            except FileNotFoundError:
                searchable = True  # made at start (Docker's legacy -v), 0755 like makedirs makes it
            if not searchable:
                raise InvalidArgument(f"--userns=auto: the bind source {src} is out of reach of the "
                                      f"container's root (an unprivileged host uid): {d} is not searchable "
                                      "by others (chmod o+x it, or use --userns=host)")
            if d == "/":
                break
            d = os.path.dirname(d)


def delegate_cgroup(spec: dict[str, Any], rng: IdRange) -> None:
    """Give the container's root its cgroup (a system container's init manages a subtree): a
    createRuntime hook, which runs on the host once the runtime made the cgroup and before the
    container's mounts, chowns the directory and the files that move processes and enable
    controllers (Documentation/admin-guide/cgroup-v2.rst, "Delegation Containment"; v1 the same
    for tasks/cgroup.procs), as podman does for --systemd in a user namespace. Through a hook, so
    that runc runs it the same way."""
    path = str((spec.get("linux") or {}).get("cgroupsPath") or "")
    if not path.startswith("/") or ".." in path.split("/") or "'" in path:
        return  # a systemd-style "slice:prefix:name" path: not ours to guess here
    script = (f"for d in /sys/fs/cgroup{path} /sys/fs/cgroup/*{path}; do [ -d \"$d\" ] || continue; "
              f"chown {rng.start}:{rng.start} \"$d\"; for f in cgroup.procs tasks cgroup.threads "
              f"cgroup.subtree_control; do [ -e \"$d/$f\" ] && chown {rng.start}:{rng.start} \"$d/$f\"; "
              "done; done; exit 0")
    hooks = spec.setdefault("hooks", {})
    hooks.setdefault("createRuntime", []).append({"path": "/bin/sh", "args": ["sh", "-c", script]})


def with_settings(factory: Callable[[Any], Any], settings: UsernsSettings) -> Callable[[Any], Any]:
    """Wrap palletd's engine factory so that the Engine it builds uses the daemon's settings."""
    def build(images: Any) -> Any:
        engine = factory(images)
        engine.userns.configure(settings)
        return engine

    return build
