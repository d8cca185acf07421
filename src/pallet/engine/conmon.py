"""conmon as the per-container monitor: how the engine starts it and speaks its protocols.

conmon (github.com/containers/conmon, Debian's `conmon`) is the monitor podman and CRI-O use: a
small C program that stays with each container for its whole life. It runs `<runtime> create`
with the container's stdio connected to pipes (or a pty) it owns, is the init's subreaper, copies
the output into a log file and to attach clients, feeds stdin, and writes the exit code to a file
when the init exits. An idle conmon costs about 0.4 MiB PSS, where a Python monitor
(pallet.engine.monitor, kept as `--monitor pallet`) costs about 6 MiB: this is why it is the
default (issue 4's memory target).

The engine's side, in order (podman's libpod/oci_conmon_common.go does the same):
1. spawn `conmon ... -r RUNTIME --runtime-arg ... -b BUNDLE -c ID`, with `_OCI_SYNCPIPE` naming a
   pipe; conmon forks (its first process exits at once) and runs `RUNTIME create`;
2. read `{"data": INIT_PID}` from the pipe (`{"data": -1, "message": ...}` when create failed);
3. run `RUNTIME start ID` ourselves; from then on conmon is on its own, and outlives palletd.

Files (the bundle is <data-root>/containers/<id>, the exec dir <exec-root>/containers/<id>):
    <bundle>/attach       conmon's attach socket (SOCK_SEQPACKET; --full-attach puts it in the
                          bundle, bound through /proc/self/fd so sun_path length never matters;
                          no --socket-dir-path, which full attach ignores).
                          Each message from conmon is one byte of pipe (2 stdout, 3 stderr) and
                          the data; what a client sends goes to the container's stdin, and its
                          EOF closes stdin unless conmon has --leave-stdin-open (not StdinOnce).
    <bundle>/ctl          FIFO of control lines "TYPE HEIGHT WIDTH\\n": type 1 resizes the pty
                          (TIOCSWINSZ), type 2 reopens the log.
    <bundle>/winsz        FIFO, "HEIGHT WIDTH\\n" (unused here)
    <exec-dir>/conmon.pid, init.pid    --conmon-pidfile, --container-pidfile
    <exec-dir>/<id>       --exit-dir: the exit code in decimal (128+N for a signal); its mtime
                          is the finish time
    <exec-dir>/runtime.log, monitor.log   the runtime's --log, conmon's own stderr
The log is conmon's k8s-file format (pallet.engine.logs reads it beside json-file).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from typing import Any

from pallet.engine.logs import last_runtime_error, rfc3339nano

CONMON = "conmon"
SYNC_TIMEOUT = 120.0  # a create on a loaded machine with a big seccomp profile
ATTACH_BUF = 8192 + 1  # conmon's CONN_SOCK_BUF_SIZE plus the pipe byte
STDOUT_PIPE, STDERR_PIPE = 2, 3


def available() -> bool:
    return _path() is not None


_found: list[str] = []


def _path() -> str | None:
    """conmon's absolute path, looked up in PATH once found (Popen with a bare name makes the
    vfork'ed child try execve in every PATH entry before the right one, while palletd's thread
    that spawns it holds the GIL)."""
    if not _found:
        import shutil

        path = shutil.which(CONMON)
        if path is None:
            return None
        _found.append(path)
    return _found[0]


def argv(*, cid: str, runtime: Sequence[str], runtime_root: str, bundle: str, exec_dir: str,
         log_path: str, log_max_size: int, tty: bool, open_stdin: bool, stdin_once: bool) -> list[str]:
    """conmon's command line for one start of container `cid`."""
    import shutil

    path = shutil.which(runtime[0]) or runtime[0]  # conmon wants a path ("runc is not valid")
    # Only what the engine uses: no -n (conmon's name is for journald), no -0 (its "exit" and
    # "oom" files duplicate the exit dir's and the cgroup's counter), no --socket-dir-path
    # (ignored with --full-attach, conmon's conn_sock.c socket_parent_dir). Each string is
    # copied onto conmon's heap: with the three, every idle conmon kept one 4 KiB heap page more
    # than podman's (52 vs 48 KiB private, same binary; issue 4).
    out = [CONMON, "--api-version", "1", "-c", cid, "-u", cid, "-r", os.path.abspath(path)]
    for arg in (*runtime[1:], "--root", runtime_root, "--log", os.path.join(exec_dir, "runtime.log"),
                "--log-format", "json"):
        out += ["--runtime-arg", arg]
    out += ["-b", bundle, "-p", os.path.join(exec_dir, "init.pid"),
            "-P", os.path.join(exec_dir, "conmon.pid"), "--exit-dir", exec_dir,
            "--full-attach", "--log-level", "error"]
    if log_path:
        out += ["-l", f"k8s-file:{log_path}"]
        if log_max_size > 0:
            out += ["--log-size-max", str(log_max_size)]
    else:
        out += ["-l", "none:"]
    if tty:
        out.append("-t")
    if open_stdin:
        out.append("-i")
        if not stdin_once:
            out.append("--leave-stdin-open")
    return out


def spawn(args: Sequence[str], exec_dir: str, bundle: str) -> dict[str, Any]:
    """Start conmon and wait until the runtime's create is done: {"monitor": conmon pid,
    "pid": init pid} or {"error": why}. The caller then runs the runtime's start."""
    for name in ("attach", "ctl", "winsz"):  # a previous run's, made again by conmon
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(bundle, name))
    r, w = os.pipe()
    try:
        err = os.open(os.path.join(exec_dir, "monitor.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        try:
            proc = subprocess.Popen(args, executable=_path() or args[0], pass_fds=(w,),
                                    env={**_env(), "_OCI_SYNCPIPE": str(w)},
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                    cwd=exec_dir)
        finally:
            os.close(err)
        os.close(w)
        w = -1
        proc.wait(30)  # conmon's first process exits once it has forked
        data = read_pipe(r, SYNC_TIMEOUT, line=True)
        if data is None:
            return {"error": "conmon did not report the container's creation in time"}
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)
    try:
        msg = json.loads(data.split(b"\n")[0]) if data.strip() else {}
        pid = int(msg.get("data", -1))
    except (ValueError, TypeError, AttributeError):
        msg, pid = {}, -1
    if pid <= 0:
        why = last_runtime_error(os.path.join(exec_dir, "runtime.log")) or str(msg.get("message") or "")
        if not why:
            with contextlib.suppress(OSError):
                why = open(os.path.join(exec_dir, "monitor.log")).read().strip()  # noqa: SIM115
        return {"error": why or "conmon exited without a word"}
    try:
        with open(os.path.join(exec_dir, "conmon.pid")) as f:
            monitor = int(f.read().strip())
    except (OSError, ValueError):
        return {"error": "conmon wrote no pid file"}
    return {"monitor": monitor, "pid": pid, "started_at": rfc3339nano(time.time_ns())}


def read_pipe(fd: int, timeout: float, *, line: bool = False) -> bytes | None:
    """What a monitor reports on its sync pipe: until EOF, or until the first newline with
    `line`; None when `timeout` seconds pass first."""
    data = b""
    deadline = time.monotonic() + timeout
    while not (line and b"\n" in data):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return None
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
    return data


# conmon's environment (and so the runtime's under it; the container's own comes from its spec).
# No locale variables (LANG, LC_*): with LANG=C.UTF-8 glibc's setlocale in conmon loaded the
# locale's LC_CTYPE and each idle conmon kept 12-16 KiB more private memory (heap 48 vs 40 KiB,
# stack 24 vs 16 KiB; /proc/PID/smaps of three conmons each way, issue 4). conmon copies the
# container's output as bytes and its own messages are ASCII, so the C locale changes nothing it
# writes; pallet-runtime (Python) coerces the C locale to C.UTF-8 itself (PEP 538), and runc and
# crun do not look at the locale. TZ stays: conmon stamps k8s-file log lines in local time.
CONMON_ENV = ("PATH", "TZ", "XDG_RUNTIME_DIR", "PYTHONPATH", "NOTIFY_SOCKET")


def _env() -> dict[str, str]:
    return {k: os.environ[k] for k in CONMON_ENV if k in os.environ} | {"PATH": os.environ.get(
        "PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")}


def read_exit(exec_dir: str, cid: str) -> tuple[int, int] | None:
    """(exit code, finish time in ns) from conmon's exit file, or None when there is none (conmon
    was killed, or the container has not exited)."""
    path = os.path.join(exec_dir, cid)
    try:
        with open(path) as f:
            text = f.read().strip()
        return int(text), os.stat(path).st_mtime_ns
    except (OSError, ValueError):
        return None


def resize(bundle: str, height: int, width: int) -> None:
    """Set the pty's size through conmon's ctl FIFO (message type 1)."""
    write_fifo(os.path.join(bundle, "ctl"), f"1 {height} {width}\n")


def write_fifo(path: str, line: str) -> None:
    """One line to a monitor's control FIFO (conmon's, or the Python monitor's). Nobody reading
    (a monitor that is finishing, or one from before the FIFO) is not an error."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.write(fd, line.encode())
    except OSError:
        pass
    finally:
        os.close(fd)


def attach(bundle: str, tty: bool) -> socket.socket:
    """A stream socket onto conmon's attach socket, speaking what the engine's attach promises
    (pallet.engine.containers.Engine.attach): raw output for a Tty container, else Docker's
    multiplexed frames; what is sent goes to stdin, and a shutdown(SHUT_WR) is stdin's EOF.

    conmon's socket keeps message boundaries (SEQPACKET, one pipe byte per message); a thread
    re-frames them onto one end of a socketpair, whose other end the caller gets."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        bridge(bundle, tty, ours)
    except OSError:
        theirs.close()
        raise
    return theirs


def bridge(bundle: str, tty: bool, ours: socket.socket) -> None:
    """Connect to conmon's attach socket and bridge it onto `ours` (one end of a socketpair) in a
    thread; `ours` is closed when conmon goes (the other end then reads EOF). OSError (and `ours`
    closed) when conmon's socket is not there."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    dfd = os.open(bundle, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        conn.connect(f"/proc/self/fd/{dfd}/attach")
    except OSError:
        conn.close()
        ours.close()
        raise
    finally:
        os.close(dfd)
    threading.Thread(target=_bridge, args=(conn, ours, tty), name="pallet-conmon-attach", daemon=True).start()


def _bridge(conn: socket.socket, ours: socket.socket, tty: bool) -> None:
    """Copy conmon -> caller (re-framed) and caller -> conmon until conmon closes or the caller
    goes away. Writes block: the caller's back-pressure reaches conmon, as with a direct socket."""
    poller = select.poll()
    poller.register(conn, select.POLLIN)
    poller.register(ours, select.POLLIN)
    stdin_open = True
    try:
        while True:
            for fd, ev in poller.poll():
                if fd == conn.fileno():
                    msg = conn.recv(ATTACH_BUF)
                    if not msg:
                        return
                    pipe, data = msg[0], msg[1:]
                    if not data:
                        continue
                    if tty:
                        ours.sendall(data)
                    else:
                        stream = 2 if pipe == STDERR_PIPE else 1
                        ours.sendall(bytes((stream, 0, 0, 0)) + len(data).to_bytes(4, "big") + data)
                elif not stdin_open:
                    if ev & (select.POLLHUP | select.POLLERR):
                        return  # the caller is gone altogether
                else:
                    data = ours.recv(8192) if ev & (select.POLLIN | select.POLLHUP) else b""
                    if data:
                        conn.sendall(data)
                        continue
                    # The caller half-closed (stdin's EOF) or went away: conmon closes the
                    # container's stdin unless --leave-stdin-open; output keeps coming until
                    # the caller closes altogether (POLLHUP, reported even with no events asked).
                    stdin_open = False
                    poller.modify(ours, 0)
                    with contextlib.suppress(OSError):
                        conn.shutdown(socket.SHUT_WR)
    except OSError:
        return
    finally:
        conn.close()
        ours.close()
