"""Unit tests for pallet.runtime.seccomp: validation and the translation to libseccomp calls."""

from __future__ import annotations

import ctypes.util
import errno
import types
from typing import Any

import pytest

from pallet.errors import InvalidArgument, NotSupported
from pallet.runtime import seccomp as S
from pallet.runtime.profiles import default_seccomp
from pallet.syscalls import seccomp as lib

UNKNOWN_TO_LIBSECCOMP = {"brand_new_syscall"}


class FakeFilter:
    """Records what build_filter asks of a SeccompFilter."""

    instances: list[FakeFilter] = []

    def __init__(self, default_action: int) -> None:
        self.calls: list[tuple[Any, ...]] = [("init", default_action)]
        self.released = False
        FakeFilter.instances.append(self)

    def add_arch(self, arch_name: str) -> None:
        self.calls.append(("arch", arch_name))

    def add_rule(self, action: int, syscall: str, args: list[tuple[int, int, int, int]]) -> bool:
        if syscall in UNKNOWN_TO_LIBSECCOMP:
            return False
        self.calls.append(("rule", action, syscall, args))
        return True

    def set_attr(self, attr: int, value: int) -> None:
        self.calls.append(("attr", attr, value))

    def set_nnp(self, on: bool) -> None:
        self.calls.append(("nnp", on))

    def load(self) -> None:
        self.calls.append(("load",))

    def export_bpf(self) -> bytes:
        return b"\0" * 8

    def release(self) -> None:
        self.released = True


def fake_module(**overrides: Any) -> types.SimpleNamespace:
    ns = types.SimpleNamespace(
        SeccompFilter=FakeFilter, action=lib.action, OPS=lib.OPS,
        **{k: getattr(lib, k) for k in dir(lib) if k.startswith(("SCMP_FLTATR_", "SECCOMP_FILTER_FLAG_"))},
    )
    for k, v in overrides.items():
        setattr(ns, k, v)
    return ns


def build(seccomp: dict, skipped: list[str] | None = None) -> FakeFilter:
    flt = S.build_filter(seccomp, fake_module(), skipped)
    assert isinstance(flt, FakeFilter)
    return flt


# --- actions and operators (pure values from include/seccomp.h) ---

def test_action_values():
    assert lib.action("SCMP_ACT_ALLOW") == 0x7FFF0000
    assert lib.action("SCMP_ACT_ERRNO") == 0x00050000 | errno.EPERM
    assert lib.action("SCMP_ACT_ERRNO", errno.ENOSYS) == 0x00050026
    assert lib.action("SCMP_ACT_TRACE", 7) == 0x7FF00007
    assert lib.action("SCMP_ACT_KILL") == lib.action("SCMP_ACT_KILL_THREAD") == 0
    assert lib.action("SCMP_ACT_KILL_PROCESS") == 0x80000000
    assert lib.action("SCMP_ACT_LOG") == 0x7FFC0000
    assert lib.action("SCMP_ACT_TRAP") == 0x00030000
    assert lib.action("SCMP_ACT_NOTIFY") == 0x7FC00000
    with pytest.raises(ValueError):
        lib.action("SCMP_ACT_ALLOW", 1)
    with pytest.raises(ValueError):
        lib.action("SCMP_ACT_FOO")
    assert lib.describe_action(lib.action("SCMP_ACT_ERRNO", 38)) == "SCMP_ACT_ERRNO(38)"
    assert lib.OPS["SCMP_CMP_NE"] == 1 and lib.OPS["SCMP_CMP_MASKED_EQ"] == 7
    assert set(lib.OPS) == set(S.OPERATORS)
    assert set(lib.ACTION_NAMES) == set(S.ACTIONS)


# --- validation ---

RULES = [
    {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
    {"names": ["write"], "action": "SCMP_ACT_ALLOW"},
    {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
]


def with_rule(rule: dict) -> dict:
    return {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [*RULES, rule]}


@pytest.mark.parametrize(
    ("seccomp", "message"),
    [
        (with_rule({"names": ["x"], "action": "SCMP_ACT_FOO"}),
         "linux.seccomp.syscalls[3].action: unknown action 'SCMP_ACT_FOO'"),
        (with_rule({"names": ["x"]}), "linux.seccomp.syscalls[3].action: required"),
        (with_rule({"names": [], "action": "SCMP_ACT_ALLOW"}),
         "linux.seccomp.syscalls[3].names: must contain at least one syscall name"),
        (with_rule({"names": ["x", 3], "action": "SCMP_ACT_ALLOW"}),
         "linux.seccomp.syscalls[3].names[1]: expected a string, got int"),
        (with_rule({"names": ["x"], "action": "SCMP_ACT_ALLOW", "errnoRet": 1}),
         "linux.seccomp.syscalls[3].errnoRet: SCMP_ACT_ALLOW takes no errno return value"),
        (with_rule({"names": ["x"], "action": "SCMP_ACT_ERRNO", "errnoRet": -1}),
         "linux.seccomp.syscalls[3].errnoRet: -1 out of range"),
        (with_rule({"names": ["x"], "action": "SCMP_ACT_ALLOW",
                    "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}),
         "linux.seccomp.syscalls[3].args[0].index: 6 out of range 0..5"),
        (with_rule({"names": ["x"], "action": "SCMP_ACT_ALLOW",
                    "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ALMOST"}]}),
         "linux.seccomp.syscalls[3].args[0].op: unknown operator 'SCMP_CMP_ALMOST'"),
        (with_rule({"names": ["x"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "op": "SCMP_CMP_EQ"}]}),
         "linux.seccomp.syscalls[3].args[0].value: required"),
        (with_rule({"names": ["x"], "action": "SCMP_ACT_ALLOW",
                    "args": [{"index": 0, "value": 1 << 64, "op": "SCMP_CMP_EQ"}]}),
         "linux.seccomp.syscalls[3].args[0].value: 18446744073709551616 out of range"),
        ({"syscalls": []}, "linux.seccomp.defaultAction: required"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1},
         "linux.seccomp.defaultErrnoRet: SCMP_ACT_ALLOW takes no errno return value"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_Z80"]},
         "linux.seccomp.architectures[1]: unknown architecture 'SCMP_ARCH_Z80'"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_FAST"]},
         "linux.seccomp.flags[0]: unknown flag 'SECCOMP_FILTER_FLAG_FAST'"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "listenerMetadata": "x"},
         "linux.seccomp.listenerMetadata: set without listenerPath"),
        ("SCMP_ACT_ALLOW", "linux.seccomp: expected an object, got str"),
    ],
)
def test_validate_names_the_field(seccomp, message):
    with pytest.raises(InvalidArgument) as exc:
        S.validate(seccomp)
    assert str(exc.value).startswith(message)


def test_notify_is_not_supported():
    with pytest.raises(NotSupported, match=r"linux.seccomp.syscalls\[3\].action: SCMP_ACT_NOTIFY"):
        S.validate(with_rule({"names": ["x"], "action": "SCMP_ACT_NOTIFY"}))
    # listenerPath alone is ignored when no rule notifies (config-linux.md).
    S.validate({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock"})


def test_validate_accepts_nulls_and_all_flags():
    S.validate({"defaultAction": "SCMP_ACT_ALLOW", "architectures": None, "syscalls": None,
                "flags": list(S.FLAGS)})
    S.validate({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
                "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": None}]})


# --- build_filter ---

def test_build_translates_default_archs_rules_and_args():
    skipped: list[str] = []
    flt = build({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": ["read", "brand_new_syscall", "write"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
            {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"},  # same as the default: skipped
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 0x7E020000, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["kill"], "action": "SCMP_ACT_TRACE"},
        ],
    }, skipped)
    allow = lib.action("SCMP_ACT_ALLOW")
    assert flt.calls == [
        ("init", lib.action("SCMP_ACT_ERRNO", 1)),
        ("arch", "x86_64"), ("arch", "x86"), ("arch", "x32"),
        ("nnp", False),
        ("rule", allow, "read", []),
        ("rule", allow, "write", []),
        ("rule", lib.action("SCMP_ACT_ERRNO", 38), "clone3", []),
        ("rule", allow, "clone", [(0, 7, 0x7E020000, 0)]),
        ("rule", lib.action("SCMP_ACT_TRACE", errno.EPERM), "kill", []),
    ]
    assert skipped == ["brand_new_syscall"]


def test_build_applies_flags_as_attributes():
    flt = build({"defaultAction": "SCMP_ACT_ALLOW", "flags": list(S.FLAGS)})
    assert flt.calls[1:] == [
        ("attr", lib.SCMP_FLTATR_CTL_TSYNC, 1),
        ("attr", lib.SCMP_FLTATR_CTL_LOG, 1),
        ("attr", lib.SCMP_FLTATR_CTL_SSB, 1),
        ("nnp", False),
    ]


def test_build_splits_comparisons_of_one_argument_like_runc():
    flt = build({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [
            {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
            {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"},
        ]},
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [
            {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"},
            {"index": 1, "value": 3, "valueTwo": 9, "op": "SCMP_CMP_NE"},
        ]},
    ]})
    allow = lib.action("SCMP_ACT_ALLOW")
    assert [c for c in flt.calls if c[0] == "rule"] == [
        ("rule", allow, "socket", [(0, 4, 1, 0)]),
        ("rule", allow, "socket", [(0, 4, 2, 0)]),
        ("rule", allow, "personality", [(0, 4, 8, 0), (1, 1, 3, 9)]),
    ]


def test_build_releases_the_filter_on_error():
    FakeFilter.instances.clear()

    def bad_arch(self, arch_name):
        raise OSError(errno.EINVAL, f"seccomp_arch_add arch={arch_name}")

    mod = fake_module(SeccompFilter=type("Bad", (FakeFilter,), {"add_arch": bad_arch}))
    with pytest.raises(OSError):
        S.build_filter({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86"]}, mod)
    assert FakeFilter.instances[-1].released


def test_build_validates_first():
    with pytest.raises(InvalidArgument):
        build({"defaultAction": "SCMP_ACT_NOPE"})


def test_load_builds_loads_and_releases():
    FakeFilter.instances.clear()
    skipped = S.load({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["brand_new_syscall", "mkdir"], "action": "SCMP_ACT_ERRNO"}]}, fake_module())
    assert skipped == ["brand_new_syscall"]
    flt = FakeFilter.instances[-1]
    assert flt.calls[-1] == ("load",) and flt.released


def test_compile_filter_carries_flags():
    flags = ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]
    compiled = S.compile_filter({"defaultAction": "SCMP_ACT_ALLOW", "flags": flags}, fake_module())
    assert compiled.flags == lib.SECCOMP_FILTER_FLAG_LOG
    assert compiled.program == b"\0" * 8


def test_compile_filter_asks_libseccomp_for_a_binary_tree():
    FakeFilter.instances.clear()
    S.compile_filter({"defaultAction": "SCMP_ACT_ALLOW"}, fake_module())
    flt = FakeFilter.instances[-1]
    assert ("attr", lib.SCMP_FLTATR_CTL_OPTIMIZE, 2) in flt.calls and flt.released


def test_compile_filter_without_the_tree_on_an_older_libseccomp():
    class OldFilter(FakeFilter):
        def set_attr(self, attr: int, value: int) -> None:
            if attr == lib.SCMP_FLTATR_CTL_OPTIMIZE:
                raise lib.SeccompError(22, "seccomp_attr_set attr=SCMP_FLTATR_CTL_OPTIMIZE: EINVAL")
            super().set_attr(attr, value)

    compiled = S.compile_filter({"defaultAction": "SCMP_ACT_ALLOW"}, fake_module(SeccompFilter=OldFilter))
    assert compiled.program == b"\0" * 8


def test_features():
    f = S.features()
    assert f["enabled"] is True
    assert "SCMP_ACT_NOTIFY" not in f["actions"]
    assert "SCMP_ARCH_X86_64" in f["archs"]
    assert f["supportedFlags"] == ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                                   "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]


# --- the real libseccomp, without loading anything (no root needed) ---

needs_libseccomp = pytest.mark.skipif(ctypes.util.find_library("seccomp") is None,
                                      reason="libseccomp is not installed")


@needs_libseccomp
def test_real_libseccomp_builds_the_default_profile():
    profile = default_seccomp(["CAP_CHOWN", "CAP_SYS_ADMIN"], "x86_64", "6.1.0")
    skipped: list[str] = []
    flt = S.build_filter(profile, skipped=skipped)
    try:
        program = flt.export_bpf()
    finally:
        flt.release()
    assert program and len(program) % 8 == 0
    # Names newer than the host's libseccomp are skipped, never the classics.
    assert not {"read", "mount", "clone", "socket", "personality"} & set(skipped)


@needs_libseccomp
def test_real_libseccomp_errors_name_the_call():
    with lib.SeccompFilter(lib.action("SCMP_ACT_ALLOW")) as flt:
        with pytest.raises(lib.SeccompError) as exc:
            flt.add_rule(lib.action("SCMP_ACT_ALLOW"), "mkdir", [])
        assert exc.value.errno == errno.EACCES
        assert "seccomp_rule_add action=SCMP_ACT_ALLOW syscall=mkdir" in str(exc.value)
        with pytest.raises(lib.SeccompError, match="seccomp_arch_add arch=z80"):
            flt.add_arch("z80")
        flt.add_arch("x86_64")
        flt.add_arch("x86_64")  # present already (EEXIST) is fine
        assert flt.add_rule(lib.action("SCMP_ACT_ERRNO"), "brand_new_syscall", []) is False
    with pytest.raises(lib.SeccompError, match="after release"):
        flt.load()
