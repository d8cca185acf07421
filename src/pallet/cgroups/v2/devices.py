"""The v2 device controller: OCI device rules compiled to a BPF_PROG_TYPE_CGROUP_DEVICE program.

cgroup-v2.rst, "Device controller": there are no interface files; the kernel runs every
eBPF program attached to the cgroup (and its ancestors) on open(2) and mknod(2) of a device
node with a `struct bpf_cgroup_dev_ctx` {u32 access_type; u32 major; u32 minor} and denies
access if a program returns 0. The idea follows runc's libcontainer/cgroups/devices/
devicefilter.go; the code is our own, a tiny assembler over include/uapi/linux/bpf.h opcodes.

The program reproduces v1 semantics (pallet.cgroups.devices.effective): the rules after the last
"a" rule are checked newest first, the first match decides, else the default applies.
"""

from __future__ import annotations

import errno
import os
import struct

from pallet.cgroups.devices import WILDCARD, DeviceRule, effective
from pallet.errors import NotSupported, PermissionDenied, Unavailable

TYPE_CHECKING = False  # typing costs ~2 ms of start-up; mypy treats this name as typing's
if TYPE_CHECKING:
    from typing import Any

    from pallet.cgroups.cgroupfs import StrPath

# include/uapi/linux/bpf.h: BPF_DEVCG_ACC_* and BPF_DEVCG_DEV_*.
ACC = {"m": 1, "r": 2, "w": 4}
DEV_TYPE = {"b": 1, "c": 2}

# Opcodes (include/uapi/linux/bpf_common.h, bpf.h): class | op | source.
LDX_MEM_W = 0x61     # BPF_LDX | BPF_MEM | BPF_W: dst = *(u32 *)(src + off)
ALU_AND_K = 0x54     # BPF_ALU | BPF_AND | BPF_K (32-bit)
ALU_RSH_K = 0x74     # BPF_ALU | BPF_RSH | BPF_K
ALU_MOV_X = 0xBC     # BPF_ALU | BPF_MOV | BPF_X
ALU64_MOV_K = 0xB7   # BPF_ALU64 | BPF_MOV | BPF_K
JMP_JEQ_K = 0x15
JMP_JNE_K = 0x55
JMP_JNE_X = 0x5D
JMP_EXIT = 0x95

R0, R1, R2, R3, R4, R5 = range(6)


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    """One struct bpf_insn: u8 code, u8 dst:4 src:4 (dst in the low nibble), s16 off, s32 imm."""
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def _rule_block(rule: DeviceRule) -> list[bytes]:
    # Each check is (instructions before the jump, jump opcode, dst, src, imm); a failing check
    # jumps over the rest of the block to the next rule.
    checks: list[tuple[list[bytes], int, int, int, int]] = []
    if rule.type != "a":
        checks.append(([], JMP_JNE_K, R2, 0, DEV_TYPE[rule.type]))
    if set(rule.access) != set("rwm"):
        mask = sum(ACC[c] for c in rule.access)
        prep = [insn(ALU_MOV_X, R1, R3), insn(ALU_AND_K, R1, imm=mask)]
        if rule.allow:
            # An allow matches only when it covers every access asked for (v1 checks all bits).
            checks.append((prep, JMP_JNE_X, R1, R3, 0))
        else:
            # A deny matches as soon as it covers any access asked for.
            checks.append((prep, JMP_JEQ_K, R1, 0, 0))
    if rule.major != WILDCARD:
        checks.append(([], JMP_JNE_K, R4, 0, rule.major))
    if rule.minor != WILDCARD:
        checks.append(([], JMP_JNE_K, R5, 0, rule.minor))
    tail = [insn(ALU64_MOV_K, R0, imm=int(rule.allow)), insn(JMP_EXIT)]
    total = sum(len(prep) + 1 for prep, *_ in checks) + len(tail)
    out: list[bytes] = []
    for prep, code, dst, src, imm in checks:
        out.extend(prep)
        # off counts instructions after the jump itself.
        out.append(insn(code, dst, src, off=total - len(out) - 1, imm=imm))
    out.extend(tail)
    return out


def program(rules: list[DeviceRule]) -> bytes:
    """The eBPF instructions for an OCI device rule list."""
    default_allow, exceptions = effective(rules)
    out = [
        insn(LDX_MEM_W, R2, R1, off=0), insn(ALU_AND_K, R2, imm=0xFFFF),  # device type
        insn(LDX_MEM_W, R3, R1, off=0), insn(ALU_RSH_K, R3, imm=16),      # access bits
        insn(LDX_MEM_W, R4, R1, off=4),                                   # major
        insn(LDX_MEM_W, R5, R1, off=8),                                   # minor
    ]
    for rule in reversed(exceptions):
        out.extend(_rule_block(rule))
    out.extend([insn(ALU64_MOV_K, R0, imm=int(default_allow)), insn(JMP_EXIT)])
    return b"".join(out)


def evaluate(rules: list[DeviceRule], dev_type: str, major: int, minor: int, access: str) -> bool:
    """What the program decides, computed in Python: a reference for the tests and for callers."""
    default_allow, exceptions = effective(rules)
    want = {c for c in access}
    for rule in reversed(exceptions):
        if rule.type != "a" and rule.type != dev_type:
            continue
        if rule.major not in (WILDCARD, major) or rule.minor not in (WILDCARD, minor):
            continue
        have = set(rule.access)
        if rule.allow and want <= have:
            return True
        if not rule.allow and want & have:
            return False
    return default_allow


def attach(directory: StrPath, rules: list[DeviceRule], bpf: Any) -> None:
    """Load the program and make it the cgroup's only device program.

    The new program is attached with BPF_F_ALLOW_MULTI before the old ones are detached, so the
    cgroup is never left without a filter (runc does the same on update). An attached program
    lives as long as the cgroup; our fds are closed.
    """
    code = program(rules)
    try:
        dirfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise Unavailable(f"open {directory}: {exc.strerror}") from exc
    try:
        old = bpf.bpf_prog_query(dirfd)
        prog = bpf.bpf_prog_load_cgroup_device(code)
        try:
            bpf.bpf_prog_attach(prog, dirfd)
        finally:
            bpf.close(prog)
        for prog_id in old:
            fd = bpf.bpf_prog_get_fd_by_id(prog_id)
            try:
                bpf.bpf_prog_detach(fd, dirfd)
            finally:
                bpf.close(fd)
    except OSError as exc:
        kind = PermissionDenied if exc.errno in (errno.EPERM, errno.EACCES) else NotSupported
        raise kind(f"linux.resources.devices: eBPF device filter on {directory}: {exc}") from exc
    finally:
        os.close(dirfd)
