"""glibc malloc settings for palletd: fewer arenas, so that a burst of requests leaves less behind.

glibc gives every thread that allocates its own arena (up to 8 per CPU, mallopt(3) M_ARENA_MAX):
palletd has about ten threads (the event loop, the default executor's workers, the monitor and
OOM watchers, the DNS server), and after 100 concurrent container starts each worker's arena
keeps the free chunks of what that burst allocated. With two arenas the same burst grew palletd's
anonymous memory by 3.5, 4.0, 3.6 MiB instead of 5.0, 4.5, 4.7 MiB (bench/scale_bench.py's
setting, runs alternating; issue 4), about 0.01 MiB less per idle container, at no cost in
time: five alternating pairs took 7.3 s against 7.7 s (medians) for the 100 starts, with 1.75
against 1.80 s of palletd's CPU. Most of palletd's allocations go through Python's own allocator
under the GIL anyway, so two arenas see little contention.

glibc reads the setting once, at process start, from the environment (GLIBC_TUNABLES,
tunables(7)); the one-door rule (STYLE.md §1) keeps ctypes, and so mallopt(3), out of the daemon.
So `palletd` started from its command line re-executes itself once with the tunable set, which
keeps its pid (systemd's Type=notify and pid files see one process). A GLIBC_TUNABLES given by
the user is left as it is: whatever they chose wins, and it also ends the re-exec.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

ARENA_MAX = 2
TUNABLES = f"glibc.malloc.arena_max={ARENA_MAX}"


def tuned_environ(environ: Mapping[str, str]) -> dict[str, str] | None:
    """The environment to re-execute with, or None when there is nothing to do (GLIBC_TUNABLES is
    set already: by us on the first pass, or by the user)."""
    if "GLIBC_TUNABLES" in environ:
        return None
    return {**environ, "GLIBC_TUNABLES": TUNABLES}


def reexec_argv() -> list[str] | None:
    """This process's command line for execv (the interpreter and its own options, then the
    script or `-m module` and the arguments), or None when it cannot be told (an embedded
    interpreter)."""
    orig = getattr(sys, "orig_argv", None)
    if not sys.executable or not orig:
        return None
    return [sys.executable, *orig[1:]]


def reexec_tuned() -> None:
    """Re-execute palletd with the malloc tunable unless it is set; returns only when nothing
    was done (or execv failed, which leaves glibc's defaults: not worth failing start-up)."""
    env = tuned_environ(os.environ)
    argv = reexec_argv()
    if env is None or argv is None:
        return
    try:
        os.execve(argv[0], argv, env)
    except OSError:
        return
