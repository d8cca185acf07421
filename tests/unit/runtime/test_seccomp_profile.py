"""Unit tests for the default seccomp profile (pallet.runtime.profiles): resolution by caps, arch, kernel."""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any

import pytest

from pallet.runtime import seccomp as S
from pallet.runtime.capabilities import CAPS, DOCKER_DEFAULT_CAPS
from pallet.runtime.profiles import default_seccomp

DOCKER = list(DOCKER_DEFAULT_CAPS)
DOCKER_PROFILE = Path(__file__).parents[4] / "shared/specs/docker-engine-api/seccomp-default.json"


def allowed(profile: dict, name: str) -> bool:
    """Whether some rule allows `name` unconditionally (no argument checks)."""
    return any(name in r["names"] and r["action"] == "SCMP_ACT_ALLOW" and not r.get("args")
               for r in profile["syscalls"])


def rules_for(profile: dict, name: str) -> list[dict]:
    return [r for r in profile["syscalls"] if name in r["names"]]


def test_default_profile_is_deny_by_default_with_eperm():
    p = default_seccomp(DOCKER, "x86_64", "6.1.0")
    assert p["defaultAction"] == "SCMP_ACT_ERRNO"
    assert p["defaultErrnoRet"] == errno.EPERM
    S.validate(p)


@pytest.mark.parametrize("name", ["mount", "umount2", "unshare", "setns", "sethostname", "clone3",
                                  "open_tree", "move_mount", "fsopen"])
def test_sys_admin_allows_mount_and_namespaces(name):
    assert allowed(default_seccomp([*DOCKER, "CAP_SYS_ADMIN"], "x86_64", "6.1.0"), name)
    assert not allowed(default_seccomp(DOCKER, "x86_64", "6.1.0"), name)


def test_clone3_returns_enosys_without_sys_admin():
    assert rules_for(default_seccomp(DOCKER, "x86_64", "6.1.0"), "clone3") == [
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS}
    ]
    with_admin = rules_for(default_seccomp([*DOCKER, "CAP_SYS_ADMIN"], "x86_64", "6.1.0"), "clone3")
    assert [r["action"] for r in with_admin] == ["SCMP_ACT_ALLOW"]


def test_clone_without_sys_admin_may_not_create_namespaces():
    assert rules_for(default_seccomp(DOCKER, "x86_64", "6.1.0"), "clone") == [
        {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 0x7E020000, "op": "SCMP_CMP_MASKED_EQ"}]}
    ]
    # s390 takes clone's flags as the second argument.
    s390 = rules_for(default_seccomp(DOCKER, "s390x", "6.1.0"), "clone")
    assert [a["index"] for r in s390 for a in r["args"]] == [1]


def test_socket_and_personality_argument_rules():
    p = default_seccomp(DOCKER, "x86_64", "6.1.0")
    socket = [(a["op"], a["value"]) for r in rules_for(p, "socket") for a in r["args"]]
    assert socket == [("SCMP_CMP_LT", 38), ("SCMP_CMP_EQ", 39), ("SCMP_CMP_GT", 40)]
    pers = [a["value"] for r in rules_for(p, "personality") for a in r["args"]]
    assert pers == [0, 8, 0x20000, 0x20008, 0xFFFFFFFF]


def test_capability_groups():
    base = default_seccomp(DOCKER, "x86_64", "6.1.0")
    assert allowed(base, "chroot")  # CAP_SYS_CHROOT is in Docker's set
    for cap, name in [("CAP_SYS_PTRACE", "kcmp"), ("CAP_SYS_MODULE", "init_module"),
                      ("CAP_SYS_TIME", "settimeofday"), ("CAP_SYS_BOOT", "reboot"),
                      ("CAP_DAC_READ_SEARCH", "open_by_handle_at"), ("CAP_BPF", "bpf"),
                      ("CAP_PERFMON", "perf_event_open"), ("CAP_SYS_NICE", "mbind")]:
        assert not allowed(base, name), name
        assert allowed(default_seccomp([*DOCKER, cap], "x86_64", "6.1.0"), name), name
    assert not allowed(default_seccomp(["CAP_CHOWN"], "x86_64", "6.1.0"), "chroot")


def test_ptrace_needs_kernel_4_8():
    assert allowed(default_seccomp(DOCKER, "x86_64", "4.8.0"), "ptrace")
    assert not allowed(default_seccomp(DOCKER, "x86_64", "4.4.0-210-generic"), "ptrace")


def test_architectures():
    assert default_seccomp(DOCKER, "x86_64")["architectures"] == [
        "SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert default_seccomp(DOCKER, "aarch64")["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert default_seccomp(DOCKER, "ppc64le")["architectures"] == []
    x86 = default_seccomp(DOCKER, "x86_64", "6.1.0")
    assert allowed(x86, "arch_prctl") and allowed(x86, "modify_ldt")
    arm = default_seccomp(DOCKER, "aarch64", "6.1.0")
    assert not allowed(arm, "arch_prctl") and allowed(arm, "cacheflush")


def test_rule_count_is_stable():
    # 1 base list + ptrace(4.8) + 3 socket + 5 personality + arch_prctl + modify_ldt + chroot
    # + masked clone + clone3 ENOSYS; a change here is a policy change: review it.
    p = default_seccomp(DOCKER, "x86_64", "6.1.0")
    assert len(p["syscalls"]) == 15
    assert len(p["syscalls"][0]["names"]) == 361
    assert len(default_seccomp(list(CAPS), "x86_64", "6.1.0")["syscalls"]) == 26


def test_result_is_fresh():
    p = default_seccomp(DOCKER, "x86_64", "6.1.0")
    p["syscalls"][0]["names"].clear()
    assert len(default_seccomp(DOCKER, "x86_64", "6.1.0")["syscalls"][0]["names"]) == 361


# --- the same policy as Docker's profile, resolved the way moby's setupSeccomp does ---

_GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "s390x": "s390x", "ppc64le": "ppc64le",
            "riscv64": "riscv64"}
_SECCOMP_ARCH = {"amd64": "SCMP_ARCH_X86_64", "arm64": "SCMP_ARCH_AARCH64", "s390x": "SCMP_ARCH_S390X",
                 "ppc64le": "SCMP_ARCH_PPC64LE", "riscv64": "SCMP_ARCH_RISCV64"}


def docker_resolve(profile: dict, caps: list[str], machine: str, kernel: tuple[int, int]) -> dict:
    arch = _GO_ARCH[machine]

    def kver(s: str) -> tuple[int, int]:
        major, minor = s.split(".")[:2]
        return int(major), int(minor)

    out: list[dict[str, Any]] = []
    for call in profile["syscalls"]:
        inc, exc = call.get("includes") or {}, call.get("excludes") or {}
        if arch in (exc.get("arches") or []) or any(c in caps for c in exc.get("caps") or []):
            continue
        if exc.get("minKernel") and kernel >= kver(exc["minKernel"]):
            continue
        if inc.get("arches") and arch not in inc["arches"]:
            continue
        if not all(c in caps for c in inc.get("caps") or []):
            continue
        if inc.get("minKernel") and kernel < kver(inc["minKernel"]):
            continue
        rule: dict[str, Any] = {"names": sorted(call["names"]), "action": call["action"]}
        if call.get("errnoRet") is not None:
            rule["errnoRet"] = call["errnoRet"]
        if call.get("args"):
            rule["args"] = [(a["index"], a["op"], a["value"], a.get("valueTwo", 0)) for a in call["args"]]
        out.append(rule)
    archs: list[str] = []
    for m in profile["archMap"]:
        if m["architecture"] == _SECCOMP_ARCH[arch]:
            archs = [m["architecture"], *(m["subArchitectures"] or [])]
    return {"defaultAction": profile["defaultAction"], "defaultErrnoRet": profile["defaultErrnoRet"],
            "architectures": archs, "syscalls": out}


def normalized(p: dict) -> dict:
    rules = []
    for r in p["syscalls"]:
        rule = {**r, "names": sorted(r["names"])}
        if "args" in r:
            rule["args"] = [(a["index"], a["op"], a["value"], a.get("valueTwo", 0)) for a in r["args"]]
        rules.append(rule)
    return {**p, "syscalls": rules}


@pytest.mark.skipif(not DOCKER_PROFILE.exists(), reason=f"Docker's profile not at {DOCKER_PROFILE}")
@pytest.mark.parametrize("machine", ["x86_64", "aarch64", "s390x", "ppc64le", "riscv64"])
@pytest.mark.parametrize("caps", [[], DOCKER, [*DOCKER, "CAP_SYS_ADMIN"], list(CAPS)], ids=len)
@pytest.mark.parametrize("kernel", ["4.4.0", "6.1.0"])
def test_same_policy_as_docker(machine, caps, kernel):
    docker = json.loads(DOCKER_PROFILE.read_text())
    major, minor = kernel.split(".")[:2]
    expected = docker_resolve(docker, caps, machine, (int(major), int(minor)))
    assert normalized(default_seccomp(caps, machine, kernel)) == expected
