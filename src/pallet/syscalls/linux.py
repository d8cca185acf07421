"""The real door to the kernel: libc loaded once, every call checked and named in its errors.

Calls the standard library already has (os.setresuid, os.mknod, socket.sethostname...) are used
from there by callers; this module holds only what needs ctypes. Each failure raises a
SyscallError subclass whose message names the operation and every argument, flags spelled out.
"""

from __future__ import annotations

import ctypes
import errno
import os

from pallet.syscalls import flags as F

# By soname, not ctypes.util.find_library: that runs /sbin/ldconfig -p on every start (~5 ms).
_libc = ctypes.CDLL("libc.so.6", use_errno=True)

# Syscall numbers for calls glibc 2.36 does not wrap everywhere (arch/*/entry/syscalls tables).
_NR = {
    "x86_64": {"pivot_root": 155, "open_tree": 428, "move_mount": 429, "mount_setattr": 442,
               "setns": 308, "unshare": 272, "capget": 125, "capset": 126},
    "aarch64": {"pivot_root": 41, "open_tree": 428, "move_mount": 429, "mount_setattr": 442,
                "setns": 268, "unshare": 97, "capget": 90, "capset": 91},
}[os.uname().machine]

_syscall = _libc.syscall
_syscall.restype = ctypes.c_long

_mount = _libc.mount
_mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_mount.restype = ctypes.c_int
_umount2 = _libc.umount2
_umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_umount2.restype = ctypes.c_int
_prctl = _libc.prctl
_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_prctl.restype = ctypes.c_int
_setdomainname = _libc.setdomainname
_setdomainname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_setdomainname.restype = ctypes.c_int


class SyscallError(OSError):
    """A system call failed; the message names the call and its arguments."""


class MountError(SyscallError):
    pass


class NamespaceError(SyscallError):
    pass


class ProcessError(SyscallError):
    pass


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _b(s: str | None) -> bytes | None:
    return None if s is None else os.fsencode(s)


def _check(ret: int, kind: type[SyscallError], what: str) -> int:
    if ret == -1:
        err = ctypes.get_errno()
        raise kind(err, f"{what}: [Errno {err}] {os.strerror(err)}")
    return ret


def _retry(fn, *args):
    while True:
        ret = fn(*args)
        if ret != -1 or ctypes.get_errno() != errno.EINTR:
            return ret


class Syscalls:
    """The real implementation. Unit tests pass pallet.syscalls.recording.RecordingSyscalls instead."""

    def mount(self, source: str | None, target: str, fstype: str | None = None, flags: int = 0,
              data: str | None = None) -> None:
        ret = _retry(_mount, _b(source), _b(target), _b(fstype), flags, _b(data))
        _check(ret, MountError, f"mount src={source} dst={target} type={fstype} "
               f"flags={F.describe(flags, F.MOUNT_FLAG_NAMES)} data={data or ''}")

    def umount2(self, target: str, flags: int = 0) -> None:
        _check(_retry(_umount2, _b(target), flags), MountError, f"umount2 {target} flags={flags:#x}")

    def pivot_root(self, new_root: str, put_old: str) -> None:
        ret = _retry(_syscall, ctypes.c_long(_NR["pivot_root"]), _b(new_root), _b(put_old))
        _check(ret, MountError, f"pivot_root new_root={new_root} put_old={put_old}")

    def unshare(self, flags: int) -> None:
        ret = _syscall(ctypes.c_long(_NR["unshare"]), ctypes.c_int(flags))
        _check(ret, NamespaceError, f"unshare flags={F.describe(flags, F.CLONE_FLAG_NAMES)}")

    def setns(self, fd: int, nstype: int = 0, path: str = "") -> None:
        ret = _syscall(ctypes.c_long(_NR["setns"]), ctypes.c_int(fd), ctypes.c_int(nstype))
        _check(ret, NamespaceError,
               f"setns path={path or fd} nstype={F.describe(nstype, F.CLONE_FLAG_NAMES)}")

    def prctl(self, option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
        return _check(_prctl(option, arg2, arg3, arg4, arg5), ProcessError,
                      f"prctl option={option} args={arg2},{arg3},{arg4},{arg5}")

    def setdomainname(self, name: str) -> None:
        raw = name.encode()
        _check(_setdomainname(raw, len(raw)), ProcessError, f"setdomainname {name}")

    def capget(self) -> tuple[int, int, int]:
        """(effective, permitted, inheritable) of this thread, as 64-bit masks."""
        hdr = _CapHeader(F.LINUX_CAPABILITY_VERSION_3, 0)
        data = (_CapData * 2)()
        _check(_syscall(ctypes.c_long(_NR["capget"]), ctypes.byref(hdr), data), ProcessError, "capget")
        return tuple(getattr(data[0], f) | (getattr(data[1], f) << 32)
                     for f in ("effective", "permitted", "inheritable"))

    def capset(self, effective: int, permitted: int, inheritable: int) -> None:
        hdr = _CapHeader(F.LINUX_CAPABILITY_VERSION_3, 0)
        data = (_CapData * 2)()
        for i in range(2):
            data[i].effective = (effective >> (32 * i)) & 0xFFFFFFFF
            data[i].permitted = (permitted >> (32 * i)) & 0xFFFFFFFF
            data[i].inheritable = (inheritable >> (32 * i)) & 0xFFFFFFFF
        ret = _syscall(ctypes.c_long(_NR["capset"]), ctypes.byref(hdr), data)
        _check(ret, ProcessError,
               f"capset effective={effective:#x} permitted={permitted:#x} inheritable={inheritable:#x}")

    def open_tree(self, path: str, flags: int, dirfd: int = F.AT_FDCWD) -> int:
        ret = _syscall(ctypes.c_long(_NR["open_tree"]), ctypes.c_int(dirfd), _b(path),
                       ctypes.c_uint(flags))
        return _check(ret, MountError, f"open_tree path={path} flags={flags:#x}")

    def mount_setattr_idmap(self, tree_fd: int, userns_fd: int, recursive: bool) -> None:
        attr = _MountAttr(F.MOUNT_ATTR_IDMAP, 0, 0, userns_fd)
        fl = F.AT_EMPTY_PATH | (F.AT_RECURSIVE if recursive else 0)
        ret = _syscall(ctypes.c_long(_NR["mount_setattr"]), ctypes.c_int(tree_fd), b"",
                       ctypes.c_uint(fl), ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)))
        _check(ret, MountError, f"mount_setattr MOUNT_ATTR_IDMAP fd={tree_fd} userns_fd={userns_fd}")

    def move_mount(self, from_fd: int, target: str) -> None:
        ret = _syscall(ctypes.c_long(_NR["move_mount"]), ctypes.c_int(from_fd), b"",
                       ctypes.c_int(F.AT_FDCWD), _b(target), ctypes.c_uint(F.MOVE_MOUNT_F_EMPTY_PATH))
        _check(ret, MountError, f"move_mount fd={from_fd} target={target}")
