"""Linux capabilities of the container process: names, validation, and the apply sequence.

Spec: ../shared/specs/oci-runtime/config.md, process.capabilities (v1.2). Numbers are those of
include/uapi/linux/capability.h (CAP_CHOWN = 0 ... CAP_CHECKPOINT_RESTORE = 40). As runc does,
names the running kernel does not know (above /proc/sys/kernel/cap_last_cap) are dropped
silently, and, as the spec asks ("Runtimes SHOULD NOT fail if the container configuration
requests capabilities that cannot be granted"), capabilities this process does not hold are left
out and reported back instead of failing.

The container init calls, in this order (capabilities(7), "Effect of user ID changes on
capabilities"):

    drop_bounding(caps, syscalls)           # as root; keeps permitted across setresuid
    setgroups / setresgid / setresuid
    apply_after_user_switch(caps, syscalls)
"""

from __future__ import annotations

from pallet.errors import InvalidArgument

# prctl(2) options, include/uapi/linux/prctl.h (the lead's pallet.syscalls.flags has the same).
PR_SET_KEEPCAPS = 8
PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

_NAMES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
    "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
    "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)
CAPS: dict[str, int] = {name: number for number, name in enumerate(_NAMES)}
NAMES: dict[int, str] = dict(enumerate(_NAMES))
CAPABILITIES = CAPS  # the name pallet.runtime.features reads
CAP_LAST_KNOWN = len(_NAMES) - 1

# Docker's default set (moby oci/caps/defaults.go), also what `pallet-runtime spec` writes.
DOCKER_DEFAULT_CAPS: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)

SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")


TYPE_CHECKING = False  # typing costs ~2 ms of every create and exec; mypy treats this name as typing's
if TYPE_CHECKING:
    from typing import Any, Protocol

    class CapSyscalls(Protocol):
        """What this module needs of pallet.syscalls.linux.Syscalls (or RecordingSyscalls)."""

        def prctl(self, option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int: ...
        def capget(self) -> tuple[int, int, int]: ...
        def capset(self, effective: int, permitted: int, inheritable: int) -> None: ...


def number(name: str) -> int:
    """CAP_* name -> number; raises KeyError for an unknown name."""
    return CAPS[name]


def name(num: int) -> str:
    """Number -> CAP_* name; numbers this table does not know read as CAP_<n>."""
    return NAMES.get(num, f"CAP_{num}")


def last_cap(path: str = "/proc/sys/kernel/cap_last_cap") -> int:
    """The highest capability the running kernel knows; CAP_LAST_KNOWN if the file is missing."""
    try:
        with open(path) as f:
            return int(f.read())
    except (OSError, ValueError):
        return CAP_LAST_KNOWN


def validate(caps: Any, where: str = "process.capabilities") -> None:
    """Check process.capabilities; raise InvalidArgument naming the field for unknown names."""
    if not isinstance(caps, dict):
        raise InvalidArgument(f"{where}: expected an object, got {type(caps).__name__}")
    for key in caps:
        if key not in SETS:
            raise InvalidArgument(f"{where}.{key}: unknown capability set (expected one of "
                                  f"{', '.join(SETS)})")
    for key in SETS:
        values = caps.get(key)
        if values is None:
            continue
        if not isinstance(values, list):
            raise InvalidArgument(f"{where}.{key}: expected an array of strings, "
                                  f"got {type(values).__name__}")
        for i, value in enumerate(values):
            if not isinstance(value, str):
                raise InvalidArgument(f"{where}.{key}[{i}]: expected a string, got {type(value).__name__}")
            if value not in CAPS:
                raise InvalidArgument(f"{where}.{key}[{i}]: unknown capability {value!r}")


def mask(names: list[str] | tuple[str, ...] | None, last: int = CAP_LAST_KNOWN) -> int:
    """The bit mask of these names, leaving out capabilities above `last` (runc does the same)."""
    bits = 0
    for cap in names or ():
        num = CAPS[cap]
        if num <= last:
            bits |= 1 << num
    return bits


def names_of(bits: int) -> list[str]:
    """The CAP_* names of the bits set in a mask, in number order."""
    return [name(i) for i in range(bits.bit_length()) if bits >> i & 1]


def drop_bounding(caps: dict, syscalls: CapSyscalls, last: int | None = None) -> None:
    """Drop every capability not in caps["bounding"] from the bounding set, then set KEEPCAPS.

    Runs as root in the init, before setresuid: PR_CAPBSET_DROP needs CAP_SETPCAP (prctl(2)).
    PR_SET_KEEPCAPS 1 keeps the permitted set across the switch to a non-zero uid, which would
    otherwise clear it (capabilities(7)); apply_after_user_switch then narrows it.
    """
    top = last_cap() if last is None else last
    keep = mask(caps.get("bounding"), top)
    for num in range(top + 1):
        if not keep >> num & 1:
            syscalls.prctl(PR_CAPBSET_DROP, num)
    syscalls.prctl(PR_SET_KEEPCAPS, 1)


def apply_after_user_switch(caps: dict, syscalls: CapSyscalls, last: int | None = None) -> list[str]:
    """Set effective, permitted and inheritable, then the ambient set; return warnings.

    Requested capabilities this process cannot grant (not in its permitted set; an inheritable
    one outside the bounding set; an ambient one not both permitted and inheritable, which
    prctl(2) PR_CAP_AMBIENT_RAISE refuses) are left out, and each is named in the returned
    warnings for the runtime to log (config.md: "MUST be logged as a warning").
    """
    top = last_cap() if last is None else last
    warnings: list[str] = []
    syscalls.prctl(PR_SET_KEEPCAPS, 0)
    _, cur_permitted, cur_inheritable = syscalls.capget()

    def grant(key: str, allowed: int, why: str) -> int:
        want = mask(caps.get(key), top)
        for cap in names_of(want & ~allowed):
            warnings.append(f"process.capabilities.{key}: {cap} not granted: {why}")
        return want & allowed

    permitted = grant("permitted", cur_permitted, "not in the runtime's permitted set")
    effective = grant("effective", permitted, "not in the permitted set")
    # capset(2): the new inheritable set must lie within the old inheritable and the bounding
    # set, and without CAP_SETPCAP within the old inheritable and permitted sets.
    bounding = mask(caps.get("bounding"), top)
    inheritable = grant("inheritable", cur_inheritable | (cur_permitted & bounding),
                        "not in the bounding and permitted sets")
    syscalls.capset(effective, permitted, inheritable)

    syscalls.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    ambient = grant("ambient", permitted & inheritable, "not both permitted and inheritable")
    for num in range(ambient.bit_length()):
        if ambient >> num & 1:
            try:
                syscalls.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, num, 0, 0)
            except OSError as exc:
                # SECBIT_NO_CAP_AMBIENT_RAISE or an old kernel: runc warns and goes on too.
                warnings.append(f"process.capabilities.ambient: {name(num)} not granted: {exc}")
    return warnings
