"""The last steps before a container process runs its program: limits, user, capabilities,
no_new_privs, seccomp, closing inherited descriptors, execve.

Shared by the container init and by `exec`. Runs after fork, before execve: plain code only.
The order is runc's (standard_init_linux.go): without no_new_privs, loading a seccomp filter
needs CAP_SYS_ADMIN, so it happens before the capabilities are dropped; with no_new_privs it
happens last, so the filter need not allow the setup calls.
"""

from __future__ import annotations

import os
import resource

from pallet.errors import InvalidArgument, NotFound, PermissionDenied
from pallet.runtime import capabilities
from pallet.syscalls import flags as F

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def rlimit_resource(name: str) -> int:
    value = getattr(resource, name, None)
    if not isinstance(value, int):
        raise InvalidArgument(f"unknown rlimit type {name!r}")
    return value


def set_rlimits(rlimits: list[dict]) -> None:
    for i, r in enumerate(rlimits):
        res = rlimit_resource(r["type"])
        try:
            resource.setrlimit(res, (r["soft"], r["hard"]))
        except (ValueError, OSError) as exc:
            raise InvalidArgument(
                f"process.rlimits[{i}]: setrlimit {r['type']} soft={r['soft']} hard={r['hard']}: {exc}"
            ) from exc


def set_oom_score_adj(value: int) -> None:
    with open("/proc/self/oom_score_adj", "w") as f:
        f.write(str(value))


def env_dict(env: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in env:
        key, sep, value = item.partition("=")
        if sep:
            out[key] = value
    return out


def find_executable(arg0: str, env: dict[str, str]) -> str:
    """Resolve args[0] in the (already pivoted) root, as execvp would with the process's PATH."""
    if "/" in arg0:
        if not os.path.exists(arg0):
            raise NotFound(f"exec: {arg0!r}: no such file or directory")
        # runc refuses at create, and podman maps "permission denied" to exit status 126.
        if os.path.isdir(arg0) or not os.access(arg0, os.X_OK):
            raise PermissionDenied(f"exec: {arg0!r}: permission denied")
        return arg0
    for d in env.get("PATH", DEFAULT_PATH).split(":"):
        cand = os.path.join(d or ".", arg0)
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    raise NotFound(f"exec: {arg0!r}: executable file not found in $PATH")


def finalize_and_exec(process: dict, compiled_seccomp, syscalls, keep_fds: int = 3,
                      executable: str | None = None) -> None:
    """Switch to the process's user and privileges and execve; never returns.

    `compiled_seccomp` is the filter compiled before fork (pallet.runtime.seccomp.compile_filter):
    after pivot_root the runtime's own files, libseccomp included, are out of reach, so nothing
    here may import a module or load a library for the first time.
    """
    env = env_dict(process.get("env") or [])
    args = process["args"]
    path = executable or find_executable(args[0], env)
    nnp = bool(process.get("noNewPrivileges"))
    caps = process.get("capabilities")
    user = process.get("user") or {}
    if compiled_seccomp is not None:
        from pallet.runtime.seccomp import load_compiled  # imported by compile_filter already
    if compiled_seccomp is not None and not nnp:
        load_compiled(compiled_seccomp)
    if caps is not None:
        capabilities.drop_bounding(caps, syscalls)
    uid, gid = user.get("uid", 0), user.get("gid", 0)
    os.setgroups(list(user.get("additionalGids") or []))
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if "umask" in user:
        os.umask(user["umask"])
    if caps is not None:
        capabilities.apply_after_user_switch(caps, syscalls)
    if nnp:
        syscalls.prctl(F.PR_SET_NO_NEW_PRIVS, 1)
    if compiled_seccomp is not None and nnp:
        load_compiled(compiled_seccomp)
    # Nothing of the runtime's may reach the container: runc CVE-2019-5736 came through a leaked
    # descriptor and /proc/self/exe. Close everything above the kept range.
    os.closerange(keep_fds, 1 << 20)
    os.execve(path, args, env)
