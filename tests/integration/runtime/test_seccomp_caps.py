"""Seccomp filters and capability drops against the real kernel, each in a forked child.

Every check runs in a child made with os.fork so the test process keeps its own privileges; the
child reports an error text through a pipe and leaves with os._exit.
"""

from __future__ import annotations

import ctypes.util
import errno
import os
import signal
import socket
import traceback
from collections.abc import Callable

import pytest

from pallet.runtime import capabilities as C
from pallet.runtime import seccomp as S
from pallet.runtime.profiles import default_seccomp
from pallet.syscalls import flags as F

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: loads seccomp filters, drops capabilities"),
    pytest.mark.skipif(ctypes.util.find_library("seccomp") is None, reason="libseccomp is not installed"),
]


def in_child(fn: Callable[[], None]) -> None:
    """Run fn in a forked child; fail the test with the child's traceback if it raised."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        code = 0
        try:
            fn()
        except BaseException:
            os.write(w, traceback.format_exc().encode())
            code = 1
        os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        report = f.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, report or f"child status {status:#x}"


def status_field(name: str) -> str:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return line.split()[1]
    raise AssertionError(f"{name} not in /proc/self/status")


def expect_errno(err: int, fn: Callable[[], object]) -> None:
    try:
        fn()
    except OSError as exc:
        assert exc.errno == err, f"expected errno {err}, got {exc!r}"
    else:
        raise AssertionError(f"expected errno {err}, call succeeded")


def host_mask(field: str) -> int:
    return int(status_field(field), 16)


def real_syscalls():
    from pallet.syscalls import real

    return real()


DENY_MKDIR = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}],
}


def test_filter_denies_mkdir_with_eperm(tmp_path):
    def child():
        # As root without NO_NEW_PRIVS: loading needs CAP_SYS_ADMIN, which root has.
        assert S.load(DENY_MKDIR) == []
        assert status_field("Seccomp") == "2"
        assert status_field("NoNewPrivs") == "0"
        expect_errno(errno.EPERM, lambda: os.mkdir(tmp_path / "d"))
        assert os.getpid() > 0
        (tmp_path / "f").write_text("still works")
        assert (tmp_path / "f").read_text() == "still works"

    in_child(child)
    assert not (tmp_path / "d").exists()


def test_errno_ret_and_arguments(tmp_path):
    seccomp = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EROFS},
            # Only kill(_, SIGUSR2) is refused: the rule compares the second argument.
            {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EACCES,
             "args": [{"index": 1, "value": signal.SIGUSR2, "op": "SCMP_CMP_EQ"}]},
        ],
    }

    def child():
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)
        S.load(seccomp)
        expect_errno(errno.EROFS, lambda: os.mkdir(tmp_path / "d"))
        os.kill(os.getpid(), 0)
        expect_errno(errno.EACCES, lambda: os.kill(os.getpid(), signal.SIGUSR2))

    in_child(child)


def test_default_profile_with_no_new_privs():
    profile = default_seccomp(list(C.DOCKER_DEFAULT_CAPS))
    sys = real_syscalls()

    def child():
        sys.prctl(F.PR_SET_NO_NEW_PRIVS, 1)
        S.load(profile)
        assert status_field("Seccomp") == "2"
        assert status_field("NoNewPrivs") == "1"
        assert os.getpid() > 0
        # CAP_SYS_ADMIN calls are refused by seccomp even though this child is still root.
        expect_errno(errno.EPERM, lambda: sys.unshare(F.CLONE_NEWUTS))
        expect_errno(errno.EPERM, lambda: sys.mount("none", "/mnt", "tmpfs", 0, None))
        expect_errno(errno.EPERM, lambda: socket.sethostname("nope"))
        # socket(2) argument rules: AF_VSOCK (40) and AF_ALG (38) are refused, AF_UNIX is fine.
        expect_errno(errno.EPERM, lambda: socket.socket(40, socket.SOCK_STREAM))
        expect_errno(errno.EPERM, lambda: socket.socket(38, socket.SOCK_SEQPACKET))
        for sock in socket.socketpair():
            sock.close()
        # fork (clone without namespace flags) still works.
        pid = os.fork()
        if pid == 0:
            os._exit(7)
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 7

    in_child(child)


def test_compiled_default_profile_loads_in_the_child():
    compiled = S.compile_filter(default_seccomp(list(C.DOCKER_DEFAULT_CAPS)))
    sys = real_syscalls()

    def child():
        sys.prctl(F.PR_SET_NO_NEW_PRIVS, 1)
        S.load_compiled(compiled)
        assert status_field("Seccomp") == "2"
        expect_errno(errno.EPERM, lambda: sys.unshare(F.CLONE_NEWNS))
        assert os.getpid() > 0

    in_child(child)


def test_load_without_nnp_or_cap_sys_admin_is_refused():
    sys = real_syscalls()

    def child():
        caps = {k: ["CAP_CHOWN"] for k in ("bounding", "effective", "permitted")}
        C.drop_bounding(caps, sys)
        C.apply_after_user_switch(caps, sys)
        expect_errno(errno.EACCES, lambda: S.load(DENY_MKDIR))

    in_child(child)


def test_drop_to_docker_default_caps():
    caps = {k: list(C.DOCKER_DEFAULT_CAPS) for k in ("bounding", "effective", "permitted")}
    sys = real_syscalls()
    # The test may itself run with a reduced bounding set (a container, a VM sandbox).
    expected = C.mask(C.DOCKER_DEFAULT_CAPS) & host_mask("CapBnd")

    def child():
        C.drop_bounding(caps, sys)
        assert C.apply_after_user_switch(caps, sys) == []
        assert int(status_field("CapBnd"), 16) == expected
        assert int(status_field("CapEff"), 16) == expected
        assert int(status_field("CapPrm"), 16) == expected
        assert int(status_field("CapInh"), 16) == 0
        assert int(status_field("CapAmb"), 16) == 0
        expect_errno(errno.EPERM, lambda: socket.sethostname("nope"))  # CAP_SYS_ADMIN is gone

    in_child(child)


def test_ambient_caps_survive_switch_to_uid_1000_and_execve():
    wanted = ["CAP_NET_BIND_SERVICE", "CAP_CHOWN"]
    caps = {k: wanted for k in C.SETS}
    sys = real_syscalls()
    mask = C.mask(wanted)
    grep = "/bin/grep" if os.path.exists("/bin/grep") else "/usr/bin/grep"
    r, w = os.pipe()

    def child():
        os.close(r)
        C.drop_bounding(caps, sys)
        os.setgroups([])
        os.setresgid(1000, 1000, 1000)
        os.setresuid(1000, 1000, 1000)
        assert C.apply_after_user_switch(caps, sys) == []
        assert int(status_field("CapAmb"), 16) == mask
        assert int(status_field("CapEff"), 16) == mask
        os.dup2(w, 1)
        os.execv(grep, [grep, "-E", "^(Uid|CapInh|CapPrm|CapEff|CapBnd|CapAmb):", "/proc/self/status"])

    pid = os.fork()
    if pid == 0:
        try:
            child()
        finally:
            traceback.print_exc()
            os._exit(1)
    os.close(w)
    with os.fdopen(r) as f:
        out = dict(line.split(":", 1) for line in f.read().splitlines())
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0, out
    # After execve as uid 1000, only ambient capabilities remain permitted and effective
    # (capabilities(7), "Transformation of capabilities during execve()").
    assert out["Uid"].split()[0] == "1000"
    assert {k: int(v, 16) for k, v in out.items() if k.startswith("Cap")} == {
        "CapInh": mask, "CapPrm": mask, "CapEff": mask, "CapBnd": mask, "CapAmb": mask}
