"""The default seccomp policy of Pallet containers, the same policy as Docker's default profile.

Docker's profile (moby profiles/seccomp/default.json; a copy for reference is in
../shared/specs/docker-engine-api/seccomp-default.json) is a deny-by-default list: every syscall
returns EPERM unless a rule allows it. Rules are conditional on the container's bounding
capabilities (a container with CAP_SYS_ADMIN may mount, so seccomp does not stop it), on the
architecture, and on the kernel version. `default_seccomp` resolves those conditions into a
concrete OCI linux.seccomp object, as Docker does when it writes config.json:

- `caps`: every listed capability is in the bounding set; `not_caps`: none of them is.
- `arches`: the native architecture (Docker's Go-style names: amd64, arm64...) is listed;
  `not_arches`: it is not.
- `min_kernel`: the running kernel is at least this version.

Syscall names unknown to the host's libseccomp are skipped when the filter is built
(pallet.runtime.seccomp), so listing newer syscalls here is harmless.
"""

from __future__ import annotations

import errno
import platform
import re
from dataclasses import dataclass
from typing import Any


def _names(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# Allowed in every container; what they can reach is bounded by capabilities, namespaces and
# the kernel's own checks (e.g. adjtimex only reads the clock without CAP_SYS_TIME).
ALWAYS_ALLOWED: dict[str, tuple[str, ...]] = {
    "files": _names("""
        access chdir chmod chown chown32 close close_range copy_file_range creat dup dup2 dup3
        faccessat faccessat2 fadvise64 fadvise64_64 fallocate fchdir fchmod fchmodat fchmodat2
        fchown fchown32 fchownat fcntl fcntl64 fdatasync flock fstat fstat64 fstatat64 fstatfs
        fstatfs64 fsync ftruncate ftruncate64 futimesat getcwd getdents getdents64 ioctl lchown
        lchown32 link linkat _llseek lseek lstat lstat64 mkdir mkdirat mknod mknodat
        name_to_handle_at newfstatat open openat openat2 pread64 preadv preadv2 pwrite64 pwritev
        pwritev2 read readahead readlink readlinkat readv rename renameat renameat2 rmdir
        sendfile sendfile64 splice stat stat64 statfs statfs64 statx symlink symlinkat sync
        sync_file_range syncfs tee truncate truncate64 umask unlink unlinkat utime utimensat
        utimensat_time64 utimes vmsplice write writev
    """),
    "xattrs": _names("""
        fgetxattr flistxattr fremovexattr fsetxattr getxattr getxattrat lgetxattr listxattr
        listxattrat llistxattr lremovexattr lsetxattr removexattr removexattrat setxattr
        setxattrat
    """),
    "mount information": _names("listmount statmount"),
    "waiting and events": _names("""
        epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait
        epoll_wait_old eventfd eventfd2 fanotify_mark inotify_add_watch inotify_init
        inotify_init1 inotify_rm_watch _newselect pause pipe pipe2 poll ppoll ppoll_time64
        pselect6 pselect6_time64 select signalfd signalfd4 timerfd_create timerfd_gettime
        timerfd_gettime64 timerfd_settime timerfd_settime64
    """),
    "asynchronous I/O": _names("""
        io_cancel io_destroy io_getevents io_pgetevents io_pgetevents_time64 io_setup io_submit
        ioprio_get ioprio_set
    """),
    "processes and credentials": _names("""
        capget capset execve execveat exit exit_group fork get_thread_area getcpu getegid
        getegid32 geteuid geteuid32 getgid getgid32 getgroups getgroups32 getpgid getpgrp getpid
        getppid getpriority getrandom getresgid getresgid32 getresuid getresuid32 getrlimit
        getrusage getsid gettid getuid getuid32 landlock_add_rule landlock_create_ruleset
        landlock_restrict_self map_shadow_stack membarrier pidfd_open pidfd_send_signal prctl
        prlimit64 process_mrelease restart_syscall riscv_hwprobe rseq seccomp set_thread_area
        set_tid_address setfsgid setfsgid32 setfsuid setfsuid32 setgid setgid32 setgroups
        setgroups32 setpgid setpriority setregid setregid32 setresgid setresgid32 setresuid
        setresuid32 setreuid setreuid32 setrlimit setsid setuid setuid32 sysinfo times ugetrlimit
        uname uretprobe vfork wait4 waitid waitpid
    """),
    "scheduling": _names("""
        sched_get_priority_max sched_get_priority_min sched_getaffinity sched_getattr
        sched_getparam sched_getscheduler sched_rr_get_interval sched_rr_get_interval_time64
        sched_setaffinity sched_setattr sched_setparam sched_setscheduler sched_yield
    """),
    "signals": _names("""
        kill rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn
        rt_sigsuspend rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo sigaltstack
        sigprocmask sigreturn tgkill tkill
    """),
    "futexes": _names("""
        futex futex_requeue futex_time64 futex_wait futex_waitv futex_wake get_robust_list
        set_robust_list
    """),
    "memory": _names("""
        brk cachestat madvise memfd_create memfd_secret mincore mlock mlock2 mlockall mmap mmap2
        mprotect mremap mseal msync munlock munlockall munmap pkey_alloc pkey_free pkey_mprotect
        remap_file_pages
    """),
    "time": _names("""
        adjtimex alarm clock_adjtime clock_adjtime64 clock_getres clock_getres_time64
        clock_gettime clock_gettime64 clock_nanosleep clock_nanosleep_time64 getitimer
        gettimeofday nanosleep setitimer time timer_create timer_delete timer_getoverrun
        timer_gettime timer_gettime64 timer_settime timer_settime64
    """),
    "System V and POSIX IPC": _names("""
        ipc mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedreceive_time64 mq_timedsend
        mq_timedsend_time64 mq_unlink msgctl msgget msgrcv msgsnd semctl semget semop semtimedop
        semtimedop_time64 shmat shmctl shmdt shmget
    """),
    # socket(2) itself is in RULES below, with its address family checked.
    "sockets": _names("""
        accept accept4 bind connect getpeername getsockname getsockopt listen recv recvfrom
        recvmmsg recvmmsg_time64 recvmsg send sendmmsg sendmsg sendto setsockopt shutdown
        socketcall socketpair
    """),
}


@dataclass(frozen=True)
class Rule:
    """One conditional rule; see the module docstring for the conditions."""

    names: tuple[str, ...]
    action: str = "SCMP_ACT_ALLOW"
    errno_ret: int | None = None
    # (index, op, value, value_two) as in OCI linux.seccomp.syscalls[].args.
    args: tuple[tuple[int, str, int, int], ...] = ()
    caps: tuple[str, ...] = ()
    not_caps: tuple[str, ...] = ()
    arches: tuple[str, ...] = ()
    not_arches: tuple[str, ...] = ()
    min_kernel: tuple[int, int] | None = None


def _eq(index: int, value: int) -> tuple[tuple[int, str, int, int], ...]:
    return ((index, "SCMP_CMP_EQ", value, 0),)


# Namespace flags of clone(2), include/uapi/linux/sched.h: NEWNS|NEWCGROUP|NEWUTS|NEWIPC|
# NEWUSER|NEWPID|NEWNET = 0x7e020000. Without CAP_SYS_ADMIN, clone may create none of them.
_CLONE_NS_FLAGS = 0x7E020000

RULES: tuple[Rule, ...] = (
    # Before Linux 4.8 seccomp ran before ptrace, so a tracer could rewrite an allowed syscall
    # into a forbidden one (fixed by the 4.8 series "seccomp: run seccomp after ptrace").
    Rule(_names("process_vm_readv process_vm_writev ptrace"), min_kernel=(4, 8)),
    # Every address family but AF_ALG (38) and AF_VSOCK (40), include/linux/socket.h.
    Rule(("socket",), args=((0, "SCMP_CMP_LT", 38, 0),)),
    Rule(("socket",), args=_eq(0, 39)),
    Rule(("socket",), args=((0, "SCMP_CMP_GT", 40, 0),)),
    # personality(2) only for PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32, and the
    # 0xffffffff query (include/uapi/linux/personality.h); the others weaken ASLR and the like.
    Rule(("personality",), args=_eq(0, 0x0)),
    Rule(("personality",), args=_eq(0, 0x8)),
    Rule(("personality",), args=_eq(0, 0x20000)),
    Rule(("personality",), args=_eq(0, 0x20008)),
    Rule(("personality",), args=_eq(0, 0xFFFFFFFF)),
    # Architecture-specific calls.
    Rule(_names("sync_file_range2 swapcontext"), arches=("ppc64le",)),
    Rule(_names("arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint cacheflush set_tls"),
         arches=("arm", "arm64")),
    Rule(("arch_prctl",), arches=("amd64", "x32")),
    Rule(("modify_ldt",), arches=("amd64", "x32", "x86")),
    Rule(_names("s390_pci_mmio_read s390_pci_mmio_write s390_runtime_instr"), arches=("s390", "s390x")),
    Rule(("riscv_flush_icache",), arches=("riscv64",)),
    # What a capability permits, seccomp does not forbid again (capabilities(7)).
    Rule(("open_by_handle_at",), caps=("CAP_DAC_READ_SEARCH",)),
    Rule(_names("""
        bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie
        lsm_get_self_attr lsm_list_modules lsm_set_self_attr mount mount_setattr move_mount
        open_tree perf_event_open quotactl quotactl_fd setdomainname sethostname setns syslog
        umount umount2 unshare
    """), caps=("CAP_SYS_ADMIN",)),
    # Without CAP_SYS_ADMIN, clone may not create namespaces; s390 swaps clone's first two
    # arguments (arch/s390/kernel/process.c), hence the flags at index 1 there.
    Rule(("clone",), args=((0, "SCMP_CMP_MASKED_EQ", _CLONE_NS_FLAGS, 0),),
         not_caps=("CAP_SYS_ADMIN",), not_arches=("s390", "s390x")),
    Rule(("clone",), args=((1, "SCMP_CMP_MASKED_EQ", _CLONE_NS_FLAGS, 0),),
         not_caps=("CAP_SYS_ADMIN",), arches=("s390", "s390x")),
    # clone3 passes its flags in a struct that seccomp cannot read (seccomp(2): no pointer
    # dereference), so it cannot be filtered like clone; ENOSYS, not EPERM, makes glibc 2.34+ and
    # others fall back to clone, which is filtered (as in moby's default.json).
    Rule(("clone3",), action="SCMP_ACT_ERRNO", errno_ret=errno.ENOSYS, not_caps=("CAP_SYS_ADMIN",)),
    Rule(("reboot",), caps=("CAP_SYS_BOOT",)),
    Rule(("chroot",), caps=("CAP_SYS_CHROOT",)),
    Rule(_names("delete_module init_module finit_module"), caps=("CAP_SYS_MODULE",)),
    Rule(("acct",), caps=("CAP_SYS_PACCT",)),
    Rule(_names("kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev ptrace"),
         caps=("CAP_SYS_PTRACE",)),
    Rule(_names("iopl ioperm"), caps=("CAP_SYS_RAWIO",)),
    Rule(_names("settimeofday stime clock_settime clock_settime64"), caps=("CAP_SYS_TIME",)),
    Rule(("vhangup",), caps=("CAP_SYS_TTY_CONFIG",)),
    Rule(_names("get_mempolicy mbind set_mempolicy set_mempolicy_home_node"), caps=("CAP_SYS_NICE",)),
    Rule(("syslog",), caps=("CAP_SYSLOG",)),
    Rule(("bpf",), caps=("CAP_BPF",)),
    Rule(("perf_event_open",), caps=("CAP_PERFMON",)),
)

# uname -m -> the architecture names RULES use (Docker's, after Go's GOARCH).
_MACHINES = {
    "x86_64": "amd64", "amd64": "amd64", "i386": "x86", "i686": "x86", "x86": "x86",
    "aarch64": "arm64", "arm64": "arm64", "armv6l": "arm", "armv7l": "arm", "armv8l": "arm",
    "arm": "arm", "ppc64le": "ppc64le", "ppc64": "ppc64", "s390x": "s390x", "s390": "s390",
    "riscv64": "riscv64", "loongarch64": "loong64", "mips": "mips", "mips64": "mips64",
}
_OCI_ARCH = {
    "amd64": "SCMP_ARCH_X86_64", "x86": "SCMP_ARCH_X86", "arm64": "SCMP_ARCH_AARCH64",
    "arm": "SCMP_ARCH_ARM", "ppc64le": "SCMP_ARCH_PPC64LE", "ppc64": "SCMP_ARCH_PPC64",
    "s390x": "SCMP_ARCH_S390X", "s390": "SCMP_ARCH_S390", "riscv64": "SCMP_ARCH_RISCV64",
    "loong64": "SCMP_ARCH_LOONGARCH64", "mips": "SCMP_ARCH_MIPS", "mips64": "SCMP_ARCH_MIPS64",
}
# A native architecture and the others its kernel also runs (compat syscall ABIs), from Docker's
# archMap. Architectures not listed get no list: libseccomp then filters the native one only.
ARCH_FAMILIES: dict[str, tuple[str, ...]] = {
    "SCMP_ARCH_X86_64": ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"),
    "SCMP_ARCH_AARCH64": ("SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"),
    "SCMP_ARCH_MIPS64": ("SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64N32"),
    "SCMP_ARCH_S390X": ("SCMP_ARCH_S390X", "SCMP_ARCH_S390"),
    "SCMP_ARCH_RISCV64": ("SCMP_ARCH_RISCV64",),
    "SCMP_ARCH_LOONGARCH64": ("SCMP_ARCH_LOONGARCH64",),
}


def _kernel_version(release: str) -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", release)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def _applies(rule: Rule, caps: set[str], arch: str, kernel: tuple[int, int]) -> bool:
    if any(c in caps for c in rule.not_caps) or arch in rule.not_arches:
        return False
    if rule.arches and arch not in rule.arches:
        return False
    if not all(c in caps for c in rule.caps):
        return False
    return rule.min_kernel is None or kernel >= rule.min_kernel


def default_seccomp(capabilities: list[str], arch: str | None = None,
                    kernel: str | None = None) -> dict[str, Any]:
    """The OCI linux.seccomp object for a container with this bounding capability set.

    `arch` is a `uname -m` name (default: this host's); `kernel` a kernel release such as
    "6.1.0-18-amd64" (default: the running kernel). The result is fresh and may be modified.
    """
    machine = arch or platform.machine()
    native = _MACHINES.get(machine, machine)
    kver = _kernel_version(kernel if kernel is not None else platform.release())
    caps = set(capabilities)
    syscalls: list[dict[str, Any]] = [
        {"names": [n for group in ALWAYS_ALLOWED.values() for n in group], "action": "SCMP_ACT_ALLOW"}
    ]
    for rule in RULES:
        if not _applies(rule, caps, native, kver):
            continue
        entry: dict[str, Any] = {"names": list(rule.names), "action": rule.action}
        if rule.errno_ret is not None:
            entry["errnoRet"] = rule.errno_ret
        if rule.args:
            entry["args"] = [
                {"index": i, "value": v, **({"valueTwo": v2} if v2 else {}), "op": op}
                for i, op, v, v2 in rule.args
            ]
        syscalls.append(entry)
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": errno.EPERM,
        "architectures": list(ARCH_FAMILIES.get(_OCI_ARCH.get(native, ""), ())),
        "syscalls": syscalls,
    }
