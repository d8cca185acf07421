"""Set up a container's root filesystem inside its new mount namespace, then pivot into it.

Runs in the container init process, after fork and before execve (so: no threads, no logging).
The order follows runc's rootfs_linux.go: make the host mounts non-shared, bind the rootfs onto
itself, mount the spec's mounts inside it (destinations resolved with secure_join), create
devices, run createContainer hooks, pivot_root, then masked and read-only paths and a read-only
root. Every kernel call goes through the injected `syscalls`.
"""

from __future__ import annotations

import os
import stat

from pallet.errors import InvalidArgument
from pallet.oci.securejoin import secure_join
from pallet.runtime import mountopts
from pallet.syscalls import flags as F

TYPE_CHECKING = False  # collections.abc loads collections (~1 ms of every create); mypy reads this
if TYPE_CHECKING:
    from collections.abc import Callable

# (path, type, major, minor, mode): the devices every container has (runtime spec,
# config-linux.md "Default Devices"), plus /dev/tty. DEFAULT_DEVICE_RULES lets them (and
# /dev/console, /dev/pts/*, mknod of anything) through the devices cgroup, as runc does.
DEFAULT_DEVICES = [
    ("/dev/null", "c", 1, 3, 0o666),
    ("/dev/zero", "c", 1, 5, 0o666),
    ("/dev/full", "c", 1, 7, 0o666),
    ("/dev/random", "c", 1, 8, 0o666),
    ("/dev/urandom", "c", 1, 9, 0o666),
    ("/dev/tty", "c", 5, 0, 0o666),
]

DEFAULT_DEVICE_RULES = [
    {"allow": True, "type": "c", "access": "m"},
    {"allow": True, "type": "b", "access": "m"},
    *({"allow": True, "type": t, "major": ma, "minor": mi, "access": "rwm"}
      for _p, t, ma, mi, _m in DEFAULT_DEVICES),
    {"allow": True, "type": "c", "major": 5, "minor": 1, "access": "rwm"},   # /dev/console
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},   # /dev/ptmx
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},             # /dev/pts/*
]


def device_rules(linux: dict) -> list[dict]:
    """linux.resources.devices with the defaults and every linux.devices entry allowed after it."""
    rules = list((linux.get("resources") or {}).get("devices") or [])
    rules += DEFAULT_DEVICE_RULES
    # "u" (unbuffered) is a character device to the kernel and to the devices cgroup (runc).
    rules += [{"allow": True, "type": "c" if d["type"] == "u" else d["type"], "major": d.get("major"),
               "minor": d.get("minor"), "access": "rwm"}
              for d in linux.get("devices") or [] if d["type"] in ("c", "b", "u")]
    return rules


DEV_SYMLINKS = [
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
    ("pts/ptmx", "/dev/ptmx"),
]

# statvfs f_flag bit -> mount flag, for the flags a remount must keep: in a user namespace the
# kernel locks them and refuses a remount that would clear them (mount(2), EPERM). Most ST_* equal
# their MS_* twins, but ST_RELATIME (0x1000) does not (statvfs(3)).
_ST_TO_MS = {
    os.ST_NOSUID: F.MS_NOSUID, os.ST_NODEV: F.MS_NODEV, os.ST_NOEXEC: F.MS_NOEXEC,
    os.ST_NOATIME: F.MS_NOATIME, os.ST_NODIRATIME: F.MS_NODIRATIME, os.ST_RELATIME: F.MS_RELATIME,
}


def locked_flags(path: str) -> int:
    st = os.statvfs(path).f_flag
    return sum(ms for st_bit, ms in _ST_TO_MS.items() if st & st_bit)


class Rootfs:
    def __init__(self, rootfs: str, syscalls, in_userns: bool = False) -> None:
        self.root = os.path.abspath(rootfs)
        self.sys = syscalls
        self.in_userns = in_userns
        self.propagation = 0  # a shared propagation to apply to / after pivot_root

    # -- before mounts ---------------------------------------------------------------------
    def prepare(self, propagation: str | None) -> None:
        """Keep our mounts from leaking to the host, then make the rootfs a mount point."""
        flag = mountopts.propagation_flag(propagation) if propagation else F.MS_SLAVE | F.MS_REC
        # pivot_root(2) refuses a shared new root (EINVAL): with (r)shared asked, start from
        # rslave and make the new / shared after the pivot, as runc does.
        base = flag if not flag & F.MS_SHARED else F.MS_SLAVE | F.MS_REC
        self.propagation = flag if flag & F.MS_SHARED else 0
        self.sys.mount(None, "/", None, base, None)
        self.sys.mount(self.root, self.root, None, F.MS_BIND | F.MS_REC, None)

    # -- the spec's mounts -----------------------------------------------------------------
    def mount_all(self, mounts: list[dict], cgroup_binds: Callable[[], list[tuple[str, str]]],
                  idmapped: dict[int, int], before_cgroup: Callable[[], None] | None = None) -> None:
        """The spec's mounts in order; `before_cgroup` runs before the first `cgroup` mount."""
        for i, m in enumerate(mounts):
            if before_cgroup is not None and m.get("type") == "cgroup":
                before_cgroup()
                before_cgroup = None
            try:
                self._mount_one(m, cgroup_binds, idmapped.get(i))
            except OSError as exc:
                raise InvalidArgument(f"mounts[{i}] ({m.get('destination')}): {exc}") from exc

    def _mount_one(self, m: dict, cgroup_binds, tree_fd: int | None) -> None:
        opts = mountopts.parse(m.get("options") or [])
        mtype = m.get("type") or ("bind" if opts.is_bind else None)
        dest = secure_join(self.root, m["destination"])
        source = m.get("source") or mtype or "none"
        if tree_fd is not None:
            self._mkdest(dest, source)
            self.sys.move_mount(tree_fd, dest)
            os.close(tree_fd)
            self._remount_bind(dest, opts.flags)
        elif opts.is_bind or mtype == "bind":
            if not os.path.isabs(source):
                raise InvalidArgument(f"bind mount source {source!r} must be an absolute path")
            self._mkdest(dest, source)
            self.sys.mount(source, dest, None, F.MS_BIND | (opts.flags & F.MS_REC), None)
            self._remount_bind(dest, opts.flags)
        elif mtype == "cgroup":
            self._mount_cgroup(dest, opts.flags, cgroup_binds)
            return
        else:
            os.makedirs(dest, exist_ok=True)
            flags = opts.flags
            data = opts.data
            if mtype == "sysfs" and self.in_userns:
                # sysfs in a user namespace needs a net namespace owned by it; with a shared
                # network namespace the kernel refuses, so bind the host's /sys (runc: same fallback).
                self.sys.mount("/sys", dest, None, F.MS_BIND | F.MS_REC, None)
                self._remount_bind(dest, flags)
            elif opts.chdir:
                # Overlay lowerdirs relative to the snapshot root keep a long chain under the
                # one-page limit of mount data (pallet.oci.mount); mount from there, then come back.
                here = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                try:
                    os.chdir(opts.chdir)
                    self.sys.mount(source, dest, mtype, flags, data or None)
                finally:
                    os.fchdir(here)
                    os.close(here)
            else:
                self.sys.mount(source, dest, mtype, flags, data or None)
        for p in opts.propagation:
            self.sys.mount(None, dest, None, p, None)

    def make_mountpoints(self, mounts: list[dict]) -> None:
        """Create each mount's destination (directory or file, like its source) ahead of time."""
        for m in mounts:
            opts = mountopts.parse(m.get("options") or [])
            dest = secure_join(self.root, m["destination"])
            if opts.is_bind or m.get("type") == "bind":
                self._mkdest(dest, m.get("source") or "")
            elif m.get("type") != "cgroup" or not os.path.lexists(dest):
                os.makedirs(dest, exist_ok=True)

    def _remount_bind(self, dest: str, flags: int) -> None:
        wanted = flags & ~(F.MS_BIND | F.MS_REC | F.MS_REMOUNT)
        if not wanted:
            return
        self.sys.mount(None, dest, None, F.MS_BIND | F.MS_REMOUNT | wanted | locked_flags(dest), None)

    def _mkdest(self, dest: str, source: str) -> None:
        """Create the mount point: a directory for a directory source, a file otherwise."""
        if os.path.lexists(dest):
            return
        if not os.path.exists(source) or os.path.isdir(source):
            os.makedirs(dest, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            os.close(os.open(dest, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))

    def _mount_cgroup(self, dest: str, flags: int, cgroup_binds) -> None:
        """Mount the container's own cgroups: cgroup2 directly, v1 as a tmpfs of binds (runc)."""
        binds = cgroup_binds()
        os.makedirs(dest, exist_ok=True)
        if binds and binds[0][1] == "":
            # v2: one hierarchy; with a cgroup namespace the new mount is rooted at our cgroup.
            src = binds[0][0]
            if src == "cgroup2":
                self.sys.mount("cgroup2", dest, "cgroup2", flags, None)
            else:
                self.sys.mount(src, dest, None, F.MS_BIND | F.MS_REC, None)
                self._remount_bind(dest, flags)
            return
        self.sys.mount("tmpfs", dest, "tmpfs", F.MS_NOSUID | F.MS_NODEV | F.MS_NOEXEC, "mode=755")
        for host_dir, name in binds:
            target = os.path.join(dest, name)
            os.makedirs(target, exist_ok=True)
            if os.path.isdir(host_dir):
                self.sys.mount(host_dir, target, None, F.MS_BIND | F.MS_REC, None)
                self._remount_bind(target, flags | F.MS_NOSUID | F.MS_NODEV | F.MS_NOEXEC)
        for name in [n for _, n in binds if "," in n]:
            for part in name.split(","):
                link = os.path.join(dest, part)
                if not os.path.lexists(link):
                    os.symlink(name, link)
        if flags & F.MS_RDONLY:
            self.sys.mount(None, dest, None, F.MS_BIND | F.MS_REMOUNT | F.MS_RDONLY | F.MS_NOSUID
                           | F.MS_NODEV | F.MS_NOEXEC, None)

    # -- /dev --------------------------------------------------------------------------------
    def create_devices(self, devices: list[dict]) -> None:
        """Default devices plus linux.devices: mknod, or bind mounts inside a user namespace."""
        wanted = [{"path": p, "type": t, "major": ma, "minor": mi, "fileMode": mode}
                  for p, t, ma, mi, mode in DEFAULT_DEVICES]
        names = {d["path"] for d in devices}
        wanted = [d for d in wanted if d["path"] not in names] + list(devices)
        for d in wanted:
            try:
                self._device(d)
            except OSError as exc:
                raise OSError(exc.errno, f"creating device {d['path']} ({d['type']} "
                              f"{d.get('major')}:{d.get('minor')}): {exc.strerror}") from exc
        for target, link in DEV_SYMLINKS:
            path = secure_join(self.root, link)
            if not os.path.lexists(path) and os.path.isdir(os.path.dirname(path)):
                os.symlink(target, path)

    def _device(self, d: dict) -> None:
        dest = secure_join(self.root, d["path"])
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        if self.in_userns:
            # mknod of a device is never allowed in a user namespace (mknod(2)); bind the host's.
            if not os.path.lexists(dest):
                os.close(os.open(dest, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
            self.sys.mount(d["path"], dest, None, F.MS_BIND, None)
            return
        kind = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}[d["type"]]
        mode = d.get("fileMode", 0o666) & 0o7777
        if os.path.lexists(dest):
            os.unlink(dest)
        dev = os.makedev(d.get("major", 0), d.get("minor", 0)) if d["type"] != "p" else 0
        os.mknod(dest, kind | mode, dev)
        os.chmod(dest, mode)  # mknod applies the umask
        os.chown(dest, d.get("uid", 0), d.get("gid", 0))

    def bind_console(self, slave_path: str) -> None:
        """Bind the pty slave on /dev/console; called after pivot_root, so paths are the container's."""
        dest = "/dev/console"
        if not os.path.lexists(dest):
            os.close(os.open(dest, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
        self.sys.mount(slave_path, dest, None, F.MS_BIND, None)

    # -- switch root ------------------------------------------------------------------------
    def pivot(self, no_pivot: bool = False) -> None:
        """pivot_root(".", ".") then detach the old root: runc's trick, no temp directory needed."""
        if no_pivot:
            os.chdir(self.root)
            self.sys.mount(self.root, "/", None, F.MS_MOVE, None)
            os.chroot(".")
            os.chdir("/")
            if self.propagation:
                self.sys.mount(None, "/", None, self.propagation, None)
            return
        old = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
        new = os.open(self.root, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fchdir(new)
            self.sys.pivot_root(".", ".")
            os.fchdir(old)
            # The old root may be shared with the host: make it a slave before detaching it so the
            # unmount does not propagate back (runc: pivotRoot).
            self.sys.mount(None, ".", None, F.MS_SLAVE | F.MS_REC, None)
            self.sys.umount2(".", F.MNT_DETACH)
            os.chdir("/")
            if self.propagation:
                self.sys.mount(None, "/", None, self.propagation, None)
        finally:
            os.close(old)
            os.close(new)

    # -- after pivot (paths are container paths now) -------------------------------------------
    def mask_paths(self, paths: list[str]) -> None:
        for p in paths:
            try:
                st = os.stat(p)
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(st.st_mode):
                self.sys.mount("tmpfs", p, "tmpfs", F.MS_RDONLY, None)
            else:
                self.sys.mount("/dev/null", p, None, F.MS_BIND, None)

    def readonly_paths(self, paths: list[str]) -> None:
        for p in paths:
            if not os.path.exists(p):
                continue
            self.sys.mount(p, p, None, F.MS_BIND | F.MS_REC, None)
            self.sys.mount(None, p, None, F.MS_BIND | F.MS_REMOUNT | F.MS_RDONLY | F.MS_REC | locked_flags(p),
                           None)

    def readonly_root(self) -> None:
        self.sys.mount(None, "/", None, F.MS_BIND | F.MS_REMOUNT | F.MS_RDONLY | locked_flags("/"), None)
