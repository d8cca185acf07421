"""The OCI linux.seccomp object: validated, then translated into a libseccomp filter.

Spec: ../shared/specs/oci-runtime/config-linux.md, "Seccomp" (v1.2). This module is pure logic;
the libseccomp calls are in pallet.syscalls.seccomp, passed in as `syscalls_module` so unit tests
can record them. The filter is built in the container's init between fork and execve, so
build_filter does no I/O and keeps its work to one pass over the rules.

What the init does with it, and in which order, is in `load`'s docstring.
"""

from __future__ import annotations

from pallet.errors import InvalidArgument, NotSupported

ACTIONS = (
    "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP",
    "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY",
)
# Only these carry a return value (config-linux.md, errnoRet: "When the action doesn't support
# an errno, the runtime MUST print and error and fail").
_ACTIONS_WITH_RET = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")

OPERATORS = (
    "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
)

# OCI architecture -> libseccomp's name for it (seccomp_arch_resolve_name(3)).
ARCHITECTURES = {
    f"SCMP_ARCH_{a.upper()}": a for a in (
        "x86", "x86_64", "x32", "arm", "aarch64", "mips", "mips64", "mips64n32", "mipsel",
        "mipsel64", "mipsel64n32", "ppc", "ppc64", "ppc64le", "s390", "s390x", "parisc",
        "parisc64", "riscv64", "loongarch64", "m68k", "sh", "sheb",
    )
}

# OCI flag -> libseccomp filter attribute (seccomp_attr_set(3)); each maps to the seccomp(2)
# SECCOMP_FILTER_FLAG_* of the same name when libseccomp loads the filter.
_FLAG_ATTRS = {
    "SECCOMP_FILTER_FLAG_TSYNC": "SCMP_FLTATR_CTL_TSYNC",
    "SECCOMP_FILTER_FLAG_LOG": "SCMP_FLTATR_CTL_LOG",
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": "SCMP_FLTATR_CTL_SSB",
}
# Accepted and ignored: WAIT_KILLABLE_RECV changes only how a notify listener's wait may be
# interrupted (seccomp(2)); without SCMP_ACT_NOTIFY, which this runtime refuses, it has no effect.
# (libseccomp 2.5 has no attribute for it either; SCMP_FLTATR_CTL_WAITKILL is 2.6.)
_IGNORED_FLAGS = ("SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",)
FLAGS = (*_FLAG_ATTRS, *_IGNORED_FLAGS)

_MAX_ARGS = 6  # a syscall has at most six arguments (seccomp(2), struct seccomp_data.args)
_U64 = (1 << 64) - 1


TYPE_CHECKING = False  # typing costs ~2 ms of every create; mypy treats this name as typing's
if TYPE_CHECKING:
    from typing import Any, Protocol

    class Filter(Protocol):
        """What build_filter needs of pallet.syscalls.seccomp.SeccompFilter."""

        def add_arch(self, arch_name: str) -> None: ...
        def add_rule(self, action: int, syscall: str, args: list[tuple[int, int, int, int]]) -> bool: ...
        def set_attr(self, attr: int, value: int) -> None: ...
        def set_nnp(self, on: bool) -> None: ...
        def load(self) -> None: ...
        def export_bpf(self) -> bytes: ...
        def release(self) -> None: ...


def _where_type(where: str, value: Any, kind: type, name: str) -> None:
    if isinstance(value, bool) and kind is int:
        raise InvalidArgument(f"{where}: expected {name}, got boolean")
    if not isinstance(value, kind):
        raise InvalidArgument(f"{where}: expected {name}, got {type(value).__name__}")


def _uint(where: str, value: Any, top: int) -> None:
    _where_type(where, value, int, "an unsigned integer")
    if not 0 <= value <= top:
        raise InvalidArgument(f"{where}: {value} out of range 0..{top}")


def _action(where: str, name: Any, ret: Any, ret_where: str) -> None:
    _where_type(where, name, str, "a string")
    if name not in ACTIONS:
        raise InvalidArgument(f"{where}: unknown action {name!r}")
    if name == "SCMP_ACT_NOTIFY":
        raise NotSupported(f"{where}: SCMP_ACT_NOTIFY (seccomp user notification) is not "
                           "supported by pallet-runtime")
    if ret is not None:
        if name not in _ACTIONS_WITH_RET:
            raise InvalidArgument(f"{ret_where}: {name} takes no errno return value")
        _uint(ret_where, ret, 0xFFFF)


def _opt(obj: dict, key: str, default: Any) -> Any:
    """An OPTIONAL field; JSON null counts as absent."""
    value = obj.get(key)
    return default if value is None else value


def validate(seccomp: Any, where: str = "linux.seccomp") -> None:
    """Check a linux.seccomp object; raise InvalidArgument naming the field, NotSupported for notify."""
    _where_type(where, seccomp, dict, "an object")
    if "defaultAction" not in seccomp:
        raise InvalidArgument(f"{where}.defaultAction: required")
    _action(f"{where}.defaultAction", seccomp["defaultAction"], seccomp.get("defaultErrnoRet"),
            f"{where}.defaultErrnoRet")
    for key, known in (("architectures", ARCHITECTURES), ("flags", FLAGS)):
        values = _opt(seccomp, key, [])
        _where_type(f"{where}.{key}", values, list, "an array of strings")
        for i, value in enumerate(values):
            _where_type(f"{where}.{key}[{i}]", value, str, "a string")
            if value not in known:
                raise InvalidArgument(f"{where}.{key}[{i}]: unknown {key[:-1]} {value!r}")
    for key in ("listenerPath", "listenerMetadata"):
        if key in seccomp:
            _where_type(f"{where}.{key}", seccomp[key], str, "a string")
    if seccomp.get("listenerMetadata") and not seccomp.get("listenerPath"):
        raise InvalidArgument(f"{where}.listenerMetadata: set without listenerPath")
    rules = _opt(seccomp, "syscalls", [])
    _where_type(f"{where}.syscalls", rules, list, "an array")
    for i, rule in enumerate(rules):
        w = f"{where}.syscalls[{i}]"
        _where_type(w, rule, dict, "an object")
        names = rule.get("names")
        if not names:
            raise InvalidArgument(f"{w}.names: must contain at least one syscall name")
        _where_type(f"{w}.names", names, list, "an array of strings")
        for j, name in enumerate(names):
            _where_type(f"{w}.names[{j}]", name, str, "a string")
            if not name:
                raise InvalidArgument(f"{w}.names[{j}]: empty syscall name")
        if "action" not in rule:
            raise InvalidArgument(f"{w}.action: required")
        _action(f"{w}.action", rule["action"], rule.get("errnoRet"), f"{w}.errnoRet")
        args = _opt(rule, "args", [])
        _where_type(f"{w}.args", args, list, "an array")
        for j, arg in enumerate(args):
            aw = f"{w}.args[{j}]"
            _where_type(aw, arg, dict, "an object")
            for key in ("index", "value", "op"):
                if key not in arg:
                    raise InvalidArgument(f"{aw}.{key}: required")
            _uint(f"{aw}.index", arg["index"], _MAX_ARGS - 1)
            _uint(f"{aw}.value", arg["value"], _U64)
            _uint(f"{aw}.valueTwo", arg.get("valueTwo", 0), _U64)
            _where_type(f"{aw}.op", arg["op"], str, "a string")
            if arg["op"] not in OPERATORS:
                raise InvalidArgument(f"{aw}.op: unknown operator {arg['op']!r}")


def _attr(mod: Any, name: str) -> int:
    value: int = getattr(mod, name)
    return value


def _module(syscalls_module: Any) -> Any:
    if syscalls_module is None:
        from pallet.syscalls import seccomp as syscalls_module
    return syscalls_module


def build_filter(seccomp: dict, syscalls_module: Any = None,
                 skipped: list[str] | None = None) -> Filter:
    """Translate a linux.seccomp object into a libseccomp filter, not yet loaded.

    `syscalls_module` is pallet.syscalls.seccomp unless a test passes a fake with the same
    `SeccompFilter`, `action`, `OPS` and `SCMP_FLTATR_*` names. Syscall names libseccomp does not
    know are skipped, as runc does, and appended to `skipped`. NO_NEW_PRIVS is left to the caller
    (set_nnp(False)). The caller loads and releases the filter; see `load`.
    """
    validate(seccomp)
    mod = _module(syscalls_module)
    default = mod.action(seccomp["defaultAction"], seccomp.get("defaultErrnoRet"))
    flt = mod.SeccompFilter(default)
    try:
        for arch in seccomp.get("architectures") or []:
            flt.add_arch(ARCHITECTURES[arch])
        for flag in seccomp.get("flags") or []:
            if flag in _FLAG_ATTRS:
                flt.set_attr(_attr(mod, _FLAG_ATTRS[flag]), 1)
        flt.set_nnp(False)
        for rule in seccomp.get("syscalls") or []:
            act = mod.action(rule["action"], rule.get("errnoRet"))
            # libseccomp refuses a rule whose action is the default one (EACCES,
            # seccomp_rule_add(3)); it would change nothing, so runc skips it, and so do we.
            if act == default:
                continue
            args = [(a["index"], mod.OPS[a["op"]], a["value"], a.get("valueTwo", 0))
                    for a in rule.get("args") or []]
            indexes = [a[0] for a in args]
            # libseccomp refuses two comparisons of one argument in one rule (EINVAL); runc
            # then adds one rule per comparison (libcontainer/seccomp/seccomp_linux.go).
            groups = [args] if len(set(indexes)) == len(indexes) else [[a] for a in args]
            for name in rule["names"]:
                for group in groups:
                    if not flt.add_rule(act, name, group):
                        if skipped is not None:
                            skipped.append(name)
                        break
    except BaseException:
        flt.release()
        raise
    return flt


def load(seccomp: dict, syscalls_module: Any = None) -> list[str]:
    """Build, load and release the filter for this process; return the syscall names skipped.

    Called by the container init right before execve. Loading a filter needs NO_NEW_PRIVS or
    CAP_SYS_ADMIN in the caller (seccomp(2), "SECCOMP_SET_MODE_FILTER"): with
    process.noNewPrivileges the init sets NO_NEW_PRIVS and then loads, after the user switch;
    without it the init loads before dropping to the container user, as runc does.
    """
    skipped: list[str] = []
    flt = build_filter(seccomp, syscalls_module, skipped)
    try:
        flt.load()
    finally:
        flt.release()
    return skipped


class Compiled:
    """A filter compiled to BPF before fork: `program` (bytes) for seccomp(2), `flags`
    SECCOMP_FILTER_FLAG_*, `skipped` (a tuple of names). A plain class: dataclasses costs ~6 ms
    of imports on every create, collections (for namedtuple) ~1 ms."""

    __slots__ = ("flags", "program", "skipped")

    def __init__(self, program: bytes, flags: int, skipped: tuple[str, ...]) -> None:
        self.program, self.flags, self.skipped = program, flags, skipped

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Compiled) and (self.program, self.flags, self.skipped) == \
            (other.program, other.flags, other.skipped)

    __hash__ = None  # type: ignore[assignment]


def compile_filter(seccomp: dict, syscalls_module: Any = None) -> Compiled:
    """Build the filter and generate its BPF, in the runtime before it forks the init.

    libseccomp spends most of its time generating BPF (about 10 ms for the default profile with
    its three x86 ABIs); done here, the init only makes one seccomp(2) call (`load_compiled`).
    """
    skipped: list[str] = []
    mod = _module(syscalls_module)
    flt = build_filter(seccomp, syscalls_module, skipped)
    try:
        # A binary tree of syscall numbers instead of a linear list (seccomp_attr_set(3),
        # SCMP_FLTATR_CTL_OPTIMIZE=2, libseccomp >= 2.5): the same decisions in a few dozen
        # instructions per syscall instead of up to ~1000. It matters at load time: the kernel
        # runs the filter for every syscall number to build its action cache
        # (kernel/seccomp.c seccomp_cache_prepare), so seccomp(2) of Docker's profile took
        # 1.15 ms with the list and 0.45 ms with the tree here, between `start` and execve.
        # An older libseccomp refuses the attribute; the list is then what it makes.
        try:
            flt.set_attr(mod.SCMP_FLTATR_CTL_OPTIMIZE, 2)
        except OSError:
            pass
        program = flt.export_bpf()
    finally:
        flt.release()
    flags = 0
    for flag in _opt(seccomp, "flags", []):
        if flag in _FLAG_ATTRS:
            flags |= _attr(mod, flag)
    return Compiled(program, flags, tuple(skipped))


def load_compiled(compiled: Compiled, syscalls_module: Any = None) -> None:
    """Install a compiled filter in this process; the same ordering rules as `load` apply."""
    _module(syscalls_module).load_bpf(compiled.program, compiled.flags)


def features() -> dict[str, Any]:
    """The `seccomp` object of `pallet-runtime features` (runtime-spec features.md)."""
    return {
        "enabled": True,
        "actions": [a for a in ACTIONS if a != "SCMP_ACT_NOTIFY"],
        "operators": list(OPERATORS),
        "archs": list(ARCHITECTURES),
        "knownFlags": list(FLAGS),
        "supportedFlags": list(_FLAG_ATTRS),
    }
