"""Takes the kernel's RCU grace period of a cgroup move off create's critical path, in a helper child.

Moving a task between cgroups (a write to cgroup.procs) takes cgroup_threadgroup_rwsem for
writing, a percpu_rw_semaphore: the first writer after a quiet spell waits in rcu_sync_enter()
for an RCU grace period (kernel/cgroup/cgroup.c cgroup_attach_lock, kernel/rcu/sync.c), 4-25 ms
on the 2-CPU test VM; a writer that comes while another is in, or within about one grace period
after the last one left, does not wait. The lock is one for every hierarchy, and a write of a
task's pid to the cgroup.procs of the cgroup it is already in takes it too.

So `start()`, called by create and exec once the container's cgroup exists, forks a child
that writes its own pid to that cgroup's cgroup.procs in one hierarchy (`procs_file`: one
without limits or accounting that could matter for a few ms of a sleeping helper, devices or
freezer first) and repeats the write every 2 ms, keeping the semaphore's fast path off, until
the runtime has moved the container's first process (CgroupManager.apply) and `reap()`s it,
or the runtime's end of the pipe closes, or 10 s passed. The helper is gone before that
process forks anything, so it never counts against pids.max when it matters. It only ever
writes to the container's own cgroup, which the runtime creates or was given: never to the
cgroup the runtime itself runs in (a cgroup of the caller's, not ours to write).

Measured in-process before this module, the runtime waited 3-5 ms for the single-shot
warm-up child of the previous design, and up to 19 ms without one.

Everything here is best effort: a child that cannot fork, read /proc/self/cgroup or write
leaves the runtime as it was (the move then pays the wait itself).
"""

from __future__ import annotations

import os

# s between writes: half the shortest grace period seen here (4 ms; a write 12 ms after the
# last one still did not wait, one 20 ms after did), and ~50 us of work each.
_INTERVAL = 0.002
_MAX_SECONDS = 10.0

_state: list[int] = []  # [pid, write end of the pipe] while a child runs
_pending: list[int] = []  # children told to stop, not reaped yet


def running() -> bool:
    return bool(_state)


# Hierarchies to hold the helper in, best first: no accounting and no limit that a sleeping
# helper could trip or distort (memory, pids and cpu accounting come last).
_PREFERRED = ("devices", "freezer", "perf_event", "net_cls", "blkio", "cpuset")


def procs_file(dirs: list[str]) -> str:
    """The cgroup.procs file the helper writes to, among the container's cgroup directories
    (CgroupManager.dirs(): one per v1 hierarchy, or the one v2 directory); "" if none."""
    def rank(d: str) -> int:
        parts = d.split("/")
        for i, name in enumerate(_PREFERRED):
            if any(name in p.split(",") for p in parts):
                return i
        return len(_PREFERRED)

    return os.path.join(min(dirs, key=rank), "cgroup.procs") if dirs else ""


def start(procs: str) -> None:
    """Fork the helper, writing to the cgroup.procs file `procs`, unless one runs; returns at once."""
    if _state:
        return
    try:
        r, w = os.pipe()  # close-on-exec (PEP 446); our end's closing tells the child to stop
    except OSError:
        return
    try:
        pid = os.fork()
    except OSError:
        os.close(r)
        os.close(w)
        return
    if pid == 0:  # the child: no Python-level cleanup, no flushing of the parent's buffers
        try:
            # Only the pipe stays open: the caller's stdio may be a container's pipes, or a
            # conmon's sync pipe, whose readers wait for every writer to close.
            os.closerange(0, r)
            os.closerange(r + 1, 1 << 20)
            _hold(r, procs)
        finally:
            os._exit(0)
    os.close(r)
    _state[:] = [pid, w]


def stop() -> None:
    """Tell the helper to stop; reap it if it has exited, else leave that to reap(). Does not
    wait: on a busy machine the child may need a few ms to be scheduled, and the runtime's
    next step (the container's setup) must not wait for that. Idempotent."""
    if not _state:
        return
    pid, w = _state
    _state.clear()
    # A byte, not only the close: children forked since (the container's stages) hold copies
    # of this end until they exec, so the child would not see end-of-file.
    try:
        os.write(w, b"x")
    except OSError:
        pass
    os.close(w)
    _pending.append(pid)
    _reap(os.WNOHANG)


def reap() -> None:
    """Stop the helper and wait for it to exit (it does at once: it sleeps in select on the
    pipe): right after the runtime's own move, before the moved process forks, and before the
    runtime exits, so that no zombie is left to whoever adopts it (conmon, a subreaper)."""
    stop()
    _reap(0)


def _reap(options: int) -> None:
    for pid in list(_pending):
        try:
            done, _status = os.waitpid(pid, options)
        except ChildProcessError:
            done = pid
        if done:
            _pending.remove(pid)


def _hold(r: int, procs: str) -> None:
    import select
    import time

    me = str(os.getpid()).encode()
    if not procs or not _write(procs, me):
        return
    deadline = time.monotonic() + _MAX_SECONDS
    while time.monotonic() < deadline:
        if select.select([r], [], [], _INTERVAL)[0]:
            return  # told to stop, or the runtime closed its end (or exited)
        _write(procs, me)


def _write(path: str, data: bytes) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        os.write(fd, data)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
