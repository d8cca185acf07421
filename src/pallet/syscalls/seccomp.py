"""A ctypes binding to libseccomp (libseccomp.so.2), loaded on first use.

Only the calls the runtime needs: seccomp_init, seccomp_arch_add, seccomp_syscall_resolve_name,
seccomp_rule_add_array, seccomp_attr_set, seccomp_load, seccomp_release. Constants are those of
libseccomp's include/seccomp.h (v2.5); libseccomp returns a negative errno value on failure, not
-1 with errno set (seccomp_rule_add(3), "RETURN VALUE"), so errors are read from the return value.
"""

from __future__ import annotations

import ctypes
import errno
import os

TYPE_CHECKING = False  # typing costs ~2 ms of every create; mypy treats this name as typing's
if TYPE_CHECKING:
    from typing import Any

# Actions, include/seccomp.h; ERRNO and TRACE carry a 16-bit data value in the low bits.
SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_ACT_KILL_THREAD = 0x00000000
SCMP_ACT_KILL = SCMP_ACT_KILL_THREAD
SCMP_ACT_TRAP = 0x00030000
SCMP_ACT_NOTIFY = 0x7FC00000
_SCMP_ACT_ERRNO = 0x00050000
_SCMP_ACT_TRACE = 0x7FF00000
SCMP_ACT_LOG = 0x7FFC0000
SCMP_ACT_ALLOW = 0x7FFF0000

_PLAIN_ACTIONS = {
    "SCMP_ACT_KILL": SCMP_ACT_KILL,
    "SCMP_ACT_KILL_PROCESS": SCMP_ACT_KILL_PROCESS,
    "SCMP_ACT_KILL_THREAD": SCMP_ACT_KILL_THREAD,
    "SCMP_ACT_TRAP": SCMP_ACT_TRAP,
    "SCMP_ACT_ALLOW": SCMP_ACT_ALLOW,
    "SCMP_ACT_LOG": SCMP_ACT_LOG,
    "SCMP_ACT_NOTIFY": SCMP_ACT_NOTIFY,
}
_DATA_ACTIONS = {"SCMP_ACT_ERRNO": _SCMP_ACT_ERRNO, "SCMP_ACT_TRACE": _SCMP_ACT_TRACE}
ACTION_NAMES = (*_PLAIN_ACTIONS, *_DATA_ACTIONS)

# enum scmp_compare, include/seccomp.h.
OPS = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}
_OP_NAMES = {v: k for k, v in OPS.items()}

# enum scmp_filter_attr, include/seccomp.h (v2.5; CTL_WAITKILL arrived in v2.6).
SCMP_FLTATR_ACT_DEFAULT = 1
SCMP_FLTATR_ACT_BADARCH = 2
SCMP_FLTATR_CTL_NNP = 3
SCMP_FLTATR_CTL_TSYNC = 4
SCMP_FLTATR_API_TSKIP = 5
SCMP_FLTATR_CTL_LOG = 6
SCMP_FLTATR_CTL_SSB = 7
SCMP_FLTATR_CTL_OPTIMIZE = 8
SCMP_FLTATR_API_SYSRAWRC = 9
_ATTR_NAMES = {v: k for k, v in dict(globals()).items() if k.startswith("SCMP_FLTATR_")}

# seccomp_syscall_resolve_name(3) returns this for a name libseccomp does not know at all.
_NR_SCMP_ERROR = -1

_SCMP_ARG_MAX = 6


class SeccompError(OSError):
    """A libseccomp call failed; the message names the call and its arguments."""


class _ArgCmp(ctypes.Structure):
    # struct scmp_arg_cmp, include/seccomp.h.
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


class _Version(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]


_lib: Any = None


def _load() -> Any:
    """libseccomp.so.2 with every function we call declared; loaded once, on first use."""
    global _lib
    if _lib is None:
        try:
            lib = ctypes.CDLL("libseccomp.so.2")
        except OSError as exc:
            raise SeccompError(errno.ENOENT, f"load libseccomp.so.2: {exc}") from exc
        lib.seccomp_init.argtypes = [ctypes.c_uint32]
        lib.seccomp_init.restype = ctypes.c_void_p
        lib.seccomp_release.argtypes = [ctypes.c_void_p]
        lib.seccomp_release.restype = None
        lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
        lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
        lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
        lib.seccomp_arch_add.restype = ctypes.c_int
        lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        lib.seccomp_syscall_resolve_name.restype = ctypes.c_int
        lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                               ctypes.c_uint, ctypes.POINTER(_ArgCmp)]
        lib.seccomp_rule_add_array.restype = ctypes.c_int
        lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
        lib.seccomp_attr_set.restype = ctypes.c_int
        lib.seccomp_load.argtypes = [ctypes.c_void_p]
        lib.seccomp_load.restype = ctypes.c_int
        lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.seccomp_export_bpf.restype = ctypes.c_int
        lib.seccomp_version.argtypes = []
        lib.seccomp_version.restype = ctypes.POINTER(_Version)
        _lib = lib
    return _lib


def version() -> tuple[int, int, int]:
    """The (major, minor, micro) version of the loaded libseccomp."""
    v = _load().seccomp_version().contents
    return (v.major, v.minor, v.micro)


def action(name: str, errno_ret: int | None = None) -> int:
    """The libseccomp action value for an OCI action name; ERRNO and TRACE take errno_ret.

    ERRNO and TRACE default to EPERM, as config-linux.md says for errnoRet. Raises ValueError
    for an unknown name, or an errno_ret given to an action that carries no data.
    """
    if name in _DATA_ACTIONS:
        ret = errno.EPERM if errno_ret is None else errno_ret
        if not 0 <= ret <= 0xFFFF:
            raise ValueError(f"{name}: return value {ret} out of range 0..65535")
        return _DATA_ACTIONS[name] | ret
    if name in _PLAIN_ACTIONS:
        if errno_ret is not None:
            raise ValueError(f"{name} takes no errno return value (got {errno_ret})")
        return _PLAIN_ACTIONS[name]
    raise ValueError(f"unknown seccomp action {name!r}")


def describe_action(value: int) -> str:
    """Spell an action value out, e.g. SCMP_ACT_ERRNO(1), for error messages."""
    for name, base in _DATA_ACTIONS.items():
        if value & 0xFFFF0000 == base:
            return f"{name}({value & 0xFFFF})"
    for name, v in _PLAIN_ACTIONS.items():
        if v == value and name != "SCMP_ACT_KILL":
            return name
    return hex(value)


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = -ret
        raise SeccompError(err, f"{what}: [Errno {err}] {os.strerror(err)}")
    return ret


class SeccompFilter:
    """A libseccomp filter context (scmp_filter_ctx); release() it, or use it as a context manager.

    libseccomp starts the filter with the native architecture; add_arch adds others.
    """

    def __init__(self, default_action: int) -> None:
        self._lib = _load()
        self._ctx: int | None = self._lib.seccomp_init(default_action)
        if not self._ctx:
            # seccomp_init(3) returns NULL on failure, without saying why; a bad action is the cause.
            raise SeccompError(errno.EINVAL,
                               f"seccomp_init default_action={describe_action(default_action)}: failed")
        self.default_action = default_action
        # Return the kernel's own errno from seccomp_load (e.g. EACCES without NNP or
        # CAP_SYS_ADMIN) instead of libseccomp's generic ECANCELED (seccomp_attr_set(3)).
        self._lib.seccomp_attr_set(self._ctx, SCMP_FLTATR_API_SYSRAWRC, 1)

    def _handle(self) -> int:
        if not self._ctx:
            raise SeccompError(errno.EBADF, "seccomp filter used after release")
        return self._ctx

    def add_arch(self, arch_name: str) -> None:
        """Add a libseccomp architecture ("x86_64", "x86", "x32", "aarch64"...); present already is fine."""
        token = self._lib.seccomp_arch_resolve_name(arch_name.encode())
        if token == 0:
            raise SeccompError(errno.EINVAL,
                               f"seccomp_arch_add arch={arch_name}: unknown to libseccomp "
                               f"{'.'.join(map(str, version()))}")
        ret = self._lib.seccomp_arch_add(self._handle(), token)
        if ret == -errno.EEXIST:
            return
        _check(ret, f"seccomp_arch_add arch={arch_name}")

    def add_rule(self, action: int, syscall: str, args: list[tuple[int, int, int, int]]) -> bool:
        """Add a rule; args are (index, op, value, value_two) compared with AND.

        Returns False, adding nothing, when libseccomp does not know the syscall name on any of
        its architectures (a newer syscall than this libseccomp): runc skips those too.
        """
        nr = self._lib.seccomp_syscall_resolve_name(syscall.encode())
        if nr == _NR_SCMP_ERROR:
            return False
        arr = (_ArgCmp * max(len(args), 1))()
        for i, (index, op, value, value_two) in enumerate(args):
            if not 0 <= index < _SCMP_ARG_MAX:
                raise SeccompError(errno.EINVAL, f"seccomp_rule_add syscall={syscall}: "
                                                 f"argument index {index} out of range 0..5")
            arr[i] = _ArgCmp(index, op, value, value_two)
        ret = self._lib.seccomp_rule_add_array(self._handle(), action, nr, len(args), arr)
        if ret < 0:  # the message is built only on failure: this runs ~400 times per container
            _check(ret, f"seccomp_rule_add action={describe_action(action)} syscall={syscall} "
                        f"args=[{', '.join(_describe_arg(a) for a in args)}]")
        return True

    def set_attr(self, attr: int, value: int) -> None:
        """seccomp_attr_set; the runtime uses CTL_NNP, CTL_TSYNC, CTL_LOG, CTL_SSB."""
        ret = self._lib.seccomp_attr_set(self._handle(), attr, value)
        _check(ret, f"seccomp_attr_set attr={_ATTR_NAMES.get(attr, attr)} value={value}")

    def set_nnp(self, on: bool) -> None:
        """Whether seccomp_load sets NO_NEW_PRIVS itself (libseccomp's default is on).

        The runtime sets NO_NEW_PRIVS itself, when process.noNewPrivileges says so, and passes False.
        """
        self.set_attr(SCMP_FLTATR_CTL_NNP, 1 if on else 0)

    def load(self) -> None:
        """Load the filter into the kernel for this thread (all threads with CTL_TSYNC)."""
        _check(self._lib.seccomp_load(self._handle()), "seccomp_load")

    def export_bpf(self) -> bytes:
        """The BPF program libseccomp generates for this filter (seccomp_export_bpf(3)).

        Generating it is most of the cost of seccomp_load; a caller can do it before fork and
        hand the bytes to load_bpf in the child. Flags set as attributes (TSYNC, LOG, SSB) and
        NO_NEW_PRIVS are not part of the program: pass them to load_bpf.
        """
        fd = os.memfd_create("pallet-seccomp-bpf", os.MFD_CLOEXEC)
        try:
            _check(self._lib.seccomp_export_bpf(self._handle(), fd), "seccomp_export_bpf")
            size = os.lseek(fd, 0, os.SEEK_END)
            return os.pread(fd, size, 0)
        finally:
            os.close(fd)

    def release(self) -> None:
        """Free the context; idempotent."""
        if getattr(self, "_ctx", None):
            self._lib.seccomp_release(self._ctx)
            self._ctx = None

    def __enter__(self) -> SeccompFilter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()


def _describe_arg(arg: tuple[int, int, int, int]) -> str:
    index, op, value, value_two = arg
    return f"arg{index} {_OP_NAMES.get(op, op)} {value:#x}" + (f",{value_two:#x}" if value_two else "")


# seccomp(2) flags for SECCOMP_SET_MODE_FILTER, include/uapi/linux/seccomp.h.
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_TSYNC = 1 << 0
SECCOMP_FILTER_FLAG_LOG = 1 << 1
SECCOMP_FILTER_FLAG_SPEC_ALLOW = 1 << 2
_FILTER_FLAG_NAMES = {v: k for k, v in dict(globals()).items() if k.startswith("SECCOMP_FILTER_FLAG_")}
_NR_SECCOMP = {"x86_64": 317, "aarch64": 277}  # arch/*/entry/syscalls tables
_BPF_INSN_SIZE = 8  # struct sock_filter: u16 code, u8 jt, u8 jf, u32 k


_libc_handle: Any = None


def _libc() -> Any:
    global _libc_handle
    if _libc_handle is None:
        _libc_handle = ctypes.CDLL(None, use_errno=True)
        _libc_handle.syscall.restype = ctypes.c_long
    return _libc_handle


class _SockFprog(ctypes.Structure):
    # struct sock_fprog, include/uapi/linux/filter.h.
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def load_bpf(program: bytes, flags: int = 0) -> None:
    """Install a BPF program from SeccompFilter.export_bpf with seccomp(2) SECCOMP_SET_MODE_FILTER.

    Like seccomp_load, it needs NO_NEW_PRIVS or CAP_SYS_ADMIN (seccomp(2)); with
    SECCOMP_FILTER_FLAG_TSYNC a positive return is the id of a thread that could not sync.
    """
    what = (f"seccomp SECCOMP_SET_MODE_FILTER len={len(program) // _BPF_INSN_SIZE} "
            f"flags={_describe_flags(flags)}")
    if not program or len(program) % _BPF_INSN_SIZE or len(program) // _BPF_INSN_SIZE > 0xFFFF:
        raise SeccompError(errno.EINVAL, f"{what}: not a BPF program")
    libc = _libc()
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // _BPF_INSN_SIZE, ctypes.cast(buf, ctypes.c_void_p))
    ret = libc.syscall(ctypes.c_long(_NR_SECCOMP[os.uname().machine]),
                       ctypes.c_uint(SECCOMP_SET_MODE_FILTER), ctypes.c_uint(flags), ctypes.byref(prog))
    if ret == -1:
        err = ctypes.get_errno()
        raise SeccompError(err, f"{what}: [Errno {err}] {os.strerror(err)}")
    if ret > 0:
        raise SeccompError(errno.EBUSY, f"{what}: thread {ret} could not be synchronized")


def _describe_flags(flags: int) -> str:
    names = [n for bit, n in _FILTER_FLAG_NAMES.items() if flags & bit]
    rest = flags & ~sum(_FILTER_FLAG_NAMES)
    return "|".join(names + ([hex(rest)] if rest or not names else []))
