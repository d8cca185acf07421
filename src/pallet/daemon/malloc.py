"""glibc malloc settings for palletd: two arenas and no per-thread caches, so a burst leaves less behind.

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
# No per-thread cache (tcache, glibc 2.26+): each thread keeps up to 7 freed chunks of each of
# 64 sizes up to 1 KiB for itself, and neither other threads nor malloc_trim(3) can use or
# return them; palletd's executor threads hoarded ~0.8 MiB that way after 100 concurrent
# `run -d` (busy anonymous memory 43.65, 43.70 MiB without against 44.48, 44.49 with, runs
# alternating; issue 4). Python's own allocator serves objects up to 512 bytes, so few calls
# reach glibc: `run --rm` took 93.3/94.5 against 91.2/93.5 ms (medians of 28, two alternating
# runs with each first), within this machine's noise, and palletd's CPU for the 100 starts was
# 1.28/1.69 against 1.96/1.52 s.
TCACHE_COUNT = 0
TUNABLES = f"glibc.malloc.arena_max={ARENA_MAX}:glibc.malloc.tcache_count={TCACHE_COUNT}"


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


def forget_tuned() -> None:
    """Running tuned: drop our GLIBC_TUNABLES from the environment palletd's children inherit.
    glibc read it when this process started, so this changes nothing here; but the Python
    processes palletd runs for every container (`pallet-runtime start`, `delete`, `state`) would
    otherwise start without tcache too, a daemon's setting they have no use for. A value the
    user set is left as it is (children inherited it before palletd, too)."""
    if os.environ.get("GLIBC_TUNABLES") == TUNABLES:
        del os.environ["GLIBC_TUNABLES"]
