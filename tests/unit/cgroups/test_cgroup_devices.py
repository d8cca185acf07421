"""Device rules: parsing, v1 lines, and the v2 eBPF program run through a small interpreter.

The interpreter executes the handful of opcodes pallet.cgroups.v2.devices emits, so the table
below checks the compiled program against the Python reference `evaluate` on every case.
"""

from __future__ import annotations

import struct

import pytest

from pallet.cgroups.devices import DeviceRule, effective, parse_rules
from pallet.cgroups.v2 import devices as ebpf
from pallet.errors import InvalidArgument

DOCKER_DEFAULT = [
    {"allow": False, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},    # /dev/null
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},    # /dev/zero
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},              # /dev/pts/*
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},    # /dev/ptmx
    {"allow": True, "type": "b", "access": "m"},                              # mknod any block
    {"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"},  # /dev/fuse
]


def test_parse_defaults_and_canonical_access():
    rules = parse_rules([{"allow": True}, {"allow": False, "type": "c", "major": 1, "access": "wr"}])
    assert rules == [DeviceRule(True, "a", -1, -1, "rwm"), DeviceRule(False, "c", 1, -1, "rw")]


@pytest.mark.parametrize(("entry", "field"), [
    ({}, "allow"), ({"allow": "yes"}, "allow"), ({"allow": True, "type": "x"}, "type"),
    ({"allow": True, "major": "1"}, "major"), ({"allow": True, "minor": -5}, "minor"),
    ({"allow": True, "access": "rwx"}, "access"), ({"allow": True, "access": "rr"}, "access"),
])
def test_parse_refuses(entry, field):
    with pytest.raises(InvalidArgument, match=rf"linux\.resources\.devices\[0\]\.{field}"):
        parse_rules([entry])


@pytest.mark.parametrize(("rule", "line"), [
    (DeviceRule(False), "a"),
    (DeviceRule(True, "c", 1, 3, "rwm"), "c 1:3 rwm"),
    (DeviceRule(True, "c", 136, -1, "rw"), "c 136:* rw"),
    (DeviceRule(True, "b", -1, -1, "m"), "b *:* m"),
])
def test_v1_line(rule, line):
    assert rule.v1_line() == line


def test_effective_drops_rules_before_the_last_all_rule():
    rules = parse_rules([{"allow": True, "type": "c", "major": 1, "minor": 3},
                         {"allow": False}, {"allow": True, "type": "c", "major": 1, "minor": 5}])
    assert effective(rules) == (False, [rules[2]])
    assert effective([]) == (True, [])


def run(program: bytes, dev_type: str, major: int, minor: int, access: str) -> int:
    """Interpret the program on a struct bpf_cgroup_dev_ctx."""
    access_bits = sum(ebpf.ACC[c] for c in access)
    ctx = struct.pack("<III", (access_bits << 16) | ebpf.DEV_TYPE[dev_type], major, minor)
    regs = [0] * 11
    pc = 0
    insns = [struct.unpack("<BBhi", program[i:i + 8]) for i in range(0, len(program), 8)]
    for _ in range(1000):
        code, regbyte, off, imm = insns[pc]
        dst, src = regbyte & 0xF, regbyte >> 4
        pc += 1
        if code == ebpf.LDX_MEM_W:
            assert src == ebpf.R1
            regs[dst] = struct.unpack_from("<I", ctx, off)[0]
        elif code == ebpf.ALU_AND_K:
            regs[dst] = regs[dst] & imm & 0xFFFFFFFF
        elif code == ebpf.ALU_RSH_K:
            regs[dst] = (regs[dst] & 0xFFFFFFFF) >> imm
        elif code == ebpf.ALU_MOV_X:
            regs[dst] = regs[src] & 0xFFFFFFFF
        elif code == ebpf.ALU64_MOV_K:
            regs[dst] = imm
        elif code == ebpf.JMP_JEQ_K:
            pc += off if regs[dst] == imm else 0
        elif code == ebpf.JMP_JNE_K:
            pc += off if regs[dst] != imm else 0
        elif code == ebpf.JMP_JNE_X:
            pc += off if regs[dst] != regs[src] else 0
        elif code == ebpf.JMP_EXIT:
            return regs[0]
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")
    raise AssertionError("program did not exit")


RULE_SETS = {
    "docker": DOCKER_DEFAULT,
    "deny-null": [{"allow": False, "type": "c", "major": 1, "minor": 3, "access": "rwm"}],
    "deny-write-zero": [{"allow": False, "type": "c", "major": 1, "minor": 5, "access": "w"}],
    "allow-read-zero": [{"allow": False}, {"allow": True, "type": "c", "major": 1, "minor": 5,
                                           "access": "r"}],
    "reallow": [{"allow": False}, {"allow": True, "type": "c", "major": 1},
                {"allow": False, "type": "c", "major": 1, "minor": 3},
                {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "r"}],
    "empty": [],
    "allow-all-at-end": [{"allow": False}, {"allow": True}],
}
PROBES = [(t, ma, mi, acc) for t in "bc" for ma, mi in [(1, 3), (1, 5), (136, 4), (8, 0), (10, 229),
                                                         (5, 2)]
          for acc in ("r", "w", "rw", "m", "rwm")]


@pytest.mark.parametrize("name", sorted(RULE_SETS))
def test_program_agrees_with_reference(name):
    rules = parse_rules(RULE_SETS[name])
    program = ebpf.program(rules)
    assert len(program) % 8 == 0
    for probe in PROBES:
        assert bool(run(program, *probe)) == ebpf.evaluate(rules, *probe), probe


@pytest.mark.parametrize(("name", "probe", "allowed"), [
    ("docker", ("c", 1, 3, "rw"), True),
    ("docker", ("c", 136, 4, "rw"), True),
    ("docker", ("c", 10, 229, "rw"), False),
    ("docker", ("b", 8, 0, "m"), True),
    ("docker", ("b", 8, 0, "r"), False),
    ("deny-null", ("c", 1, 3, "w"), False),
    ("deny-null", ("c", 1, 5, "w"), True),
    ("deny-write-zero", ("c", 1, 5, "r"), True),
    ("deny-write-zero", ("c", 1, 5, "rw"), False),
    ("allow-read-zero", ("c", 1, 5, "rw"), False),
    ("reallow", ("c", 1, 3, "r"), True),
    ("reallow", ("c", 1, 3, "w"), False),
    ("reallow", ("c", 1, 7, "rw"), True),
    ("empty", ("b", 8, 0, "rwm"), True),
    ("allow-all-at-end", ("b", 8, 0, "rwm"), True),
])
def test_program_decisions(name, probe, allowed):
    assert bool(run(ebpf.program(parse_rules(RULE_SETS[name])), *probe)) is allowed
