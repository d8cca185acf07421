"""The per-container monitor: a small process that outlives palletd and owns a container's stdio.

    python -S .../pallet/engine/monitor.py <exec-dir>/monitor.json <sync-fd>

The engine starts it for each start of a container. It double-forks and calls setsid (so it is
nobody's child and has no terminal), makes itself a child subreaper (prctl(2)
PR_SET_CHILD_SUBREAPER: the container's init, forked by the runtime, is re-parented to it),
then runs `<runtime> run --detach` (create and start) with the container's stdio connected to
pipes it owns (or, for a Tty container, receives the pty master over --console-socket), and reports
`{"monitor": pid, "pid": init-pid, "started_at": ...}` (or `{"error": ...}`) on the sync fd.

From then on it copies stdout/stderr into the json-file log (pallet.engine.logs) and to attach
clients, feeds stdin from them, and waits for the init. When the init exits it drains the
output, writes exit.json atomically and exits; the engine (now or after its restart) runs
`<runtime> delete` and the rest of the cleanup.

Files in the exec dir (<exec-root>/containers/<id>/), version 1:
    monitor.json   the engine's instructions (below), written before the monitor starts
    monitor.log    the monitor's own errors
    attach.sock    attach clients: they receive the output (raw for a Tty, else Docker's
                   8-byte-header multiplexed frames: stream 1 stdout, 2 stderr) and what they
                   send goes to the container's stdin (when OpenStdin)
    ctl            a FIFO of control lines from the engine (conmon has the same): "resize ROWS
                   COLS\n" sets a Tty container's window size (TIOCSWINSZ on the pty master; the
                   kernel then sends SIGWINCH to the foreground process group); other lines are
                   ignored
    (the --console-socket of a Tty container is /tmp/pallet-console-<random>/console.sock,
    short enough for sun_path wherever the exec root is; gone once the pty is received)
    init.pid       the runtime's --pid-file
    runtime.log    the runtime's --log (JSON lines); its last error is the start failure reason
    exit.json      {"version": 1, "exit_code", "finished_at" (RFC 3339 nano), "pid", "error"}

monitor.json: {"id", "runtime": [argv...], "runtime_root", "bundle", "log_path" ("" for no
log), "log_max_size", "log_max_files", "tty", "open_stdin", "stdin_once"}.

It imports only the standard library, pallet.engine.logs and the syscalls door (for prctl), and
is started with `python -S` so that site-packages are not scanned: an idle monitor is a
Python interpreter with a handful of modules (measured in docs/design/engine.md).
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys
import time

if __name__ == "__main__" and __package__ in (None, ""):
    # Run by path with -S: make `pallet` importable from the tree this file lives in.
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pallet.engine.logs import JsonFileWriter, last_runtime_error, rfc3339nano

EXIT_VERSION = 1
DRAIN_SECONDS = 2.0  # how long output is still read after the init exits (orphans may hold it)
CLIENT_BUFFER = 1 << 20  # an attach client that falls this far behind is dropped
IGNORED = (signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
RESET_SIGNALS = (*IGNORED, signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD)


def write_atomic(path: str, data: dict) -> None:
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, json.dumps(data).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def frame(stream: int, data: bytes) -> bytes:
    """Docker's multiplexed stream frame (api/stdcopy): [stream, 0, 0, 0, size32 BE] + data."""
    return bytes((stream, 0, 0, 0)) + len(data).to_bytes(4, "big") + data


class Monitor:
    def __init__(self, cfg: dict, exec_dir: str) -> None:
        self.cfg, self.dir = cfg, exec_dir
        self.cid: str = cfg["id"]
        self.tty = bool(cfg.get("tty"))
        self.open_stdin = bool(cfg.get("open_stdin"))
        self.stdin_once = bool(cfg.get("stdin_once"))
        self.log = (JsonFileWriter(cfg["log_path"], cfg.get("log_max_size", 0), cfg.get("log_max_files", 1))
                    if cfg.get("log_path") else None)
        self.init_pid = 0
        self.exit_code: int | None = None
        self.stdin_fd = -1
        self.master = -1  # a Tty container's pty master
        self.outputs: dict[int, tuple[str, int]] = {}  # fd -> (stream name, frame number)
        self.clients: dict[int, socket.socket] = {}
        self.client_buf: dict[int, bytearray] = {}
        self.half_closed: set[int] = set()
        self.poller = select.poll()

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def runtime(self, *args: str, stdio: tuple[int, int, int] | None = None) -> int:
        """Run the runtime with `args`; return its exit status (the monitor is a subreaper:
        it waits for this pid only, the init is waited for by the loop)."""
        argv = [*self.cfg["runtime"], "--root", self.cfg["runtime_root"], "--log", self.path("runtime.log"),
                "--log-format", "json", *args]
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        fds = stdio or (null, null, null)
        actions = [(os.POSIX_SPAWN_DUP2, fd, i) for i, fd in enumerate(fds)]
        try:
            # Dispositions set to SIG_IGN survive execve: the monitor's own (and Python's SIGPIPE,
            # SIGXFSZ) must not reach the container, or its init could not trap SIGTERM.
            pid = os.posix_spawnp(argv[0], argv, dict(os.environ), file_actions=actions,
                                  setsigdef=RESET_SIGNALS)
        finally:
            os.close(null)
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
        return os.waitstatus_to_exitcode(status)

    # -- start ---------------------------------------------------------------------------------
    def start(self) -> dict:
        attach = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        with _suppress():
            os.unlink(self.path("attach.sock"))
        attach.bind("attach.sock")  # relative: the cwd is the exec dir (sun_path holds 108 bytes)
        attach.listen(16)
        attach.setblocking(False)
        self.attach = attach
        with _suppress():
            os.unlink(self.path("ctl"))
        os.mkfifo(self.path("ctl"), 0o600)
        # Read-write, so that the FIFO never reports EOF when the engine's writer closes it.
        self.ctl = os.open(self.path("ctl"), os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        self.ctl_buf = b""
        console = None
        child: list[int] = []
        if self.tty:
            # The runtime connects by path (runc from the bundle dir): a short absolute one, in a
            # private directory of /tmp, as conmon does.
            self.console_dir = f"/tmp/pallet-console-{os.urandom(6).hex()}"
            os.mkdir(self.console_dir, 0o700)
            console = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            console.bind(os.path.join(self.console_dir, "console.sock"))
            console.listen(1)
            null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
            stdio = (null, null, null)
            child.append(null)
        else:
            if self.open_stdin:
                r, w = os.pipe2(os.O_CLOEXEC)
                self.stdin_fd = w
                child.append(r)
                in_fd = r
            else:
                in_fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
                child.append(in_fd)
            out_r, out_w = os.pipe2(os.O_CLOEXEC)
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
            child += [out_w, err_w]
            self.outputs = {out_r: ("stdout", 1), err_r: ("stderr", 2)}
            stdio = (in_fd, out_w, err_w)
        # `run --detach` is create then start in one runtime process (runc's, crun's and
        # pallet-runtime's alike): one interpreter start-up less than create + start. A pty
        # sent over the console socket waits in the listen backlog until accepted below, and
        # output waits in the pipes or the pty until the loop reads it.
        args = ["run", "--detach", "--bundle", self.cfg["bundle"], "--pid-file", self.path("init.pid")]
        if console is not None:
            args += ["--console-socket", os.path.join(self.console_dir, "console.sock")]
        rc = self.runtime(*args, self.cid, stdio=stdio)
        for fd in child:
            os.close(fd)
        if console is not None and rc != 0:
            console.close()
            with _suppress():
                os.unlink(os.path.join(self.console_dir, "console.sock"))
            with _suppress():
                os.rmdir(self.console_dir)
        if rc != 0:
            reason = last_runtime_error(self.path("runtime.log")) or self._early_stderr()
            return {"error": reason or f"runtime run exited with status {rc}"}
        if console is not None:
            console.settimeout(5)
            try:
                conn, _ = console.accept()
                with conn:
                    _msg, fds, _flags, _addr = socket.recv_fds(conn, 64, 1)
            except OSError as exc:
                self.runtime("delete", "--force", self.cid)
                return {"error": f"no pty from the runtime's console socket: {exc}"}
            finally:
                console.close()
                with _suppress():
                    os.unlink(os.path.join(self.console_dir, "console.sock"))
                with _suppress():
                    os.rmdir(self.console_dir)
            master = fds[0]
            os.set_inheritable(master, False)
            self.outputs = {master: ("stdout", 1)}
            self.master = master
            self.stdin_fd = master if self.open_stdin else -1
        with open(self.path("init.pid")) as f:
            self.init_pid = int(f.read().strip())
        return {"monitor": os.getpid(), "pid": self.init_pid, "started_at": rfc3339nano(time.time_ns())}

    def _early_stderr(self) -> str:
        for fd, (name, _) in self.outputs.items():
            if name == "stderr":
                os.set_blocking(fd, False)
                try:
                    return os.read(fd, 4096).decode("utf-8", "replace").strip()
                except BlockingIOError:
                    return ""
        return ""

    # -- the loop ------------------------------------------------------------------------------
    def run(self, wake: int) -> None:
        for fd in self.outputs:
            self.poller.register(fd, select.POLLIN)
        self.poller.register(wake, select.POLLIN)
        self.poller.register(self.attach.fileno(), select.POLLIN)
        self.poller.register(self.ctl, select.POLLIN)
        deadline = None
        self.reap()
        while self.outputs or self.exit_code is None:
            if self.exit_code is not None and deadline is None:
                deadline = time.monotonic() + DRAIN_SECONDS
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic()) * 1000
            if deadline is not None and timeout == 0:
                break
            try:
                events = self.poller.poll(timeout)
            except InterruptedError:
                continue
            for fd, ev in events:
                if fd == wake:
                    with _suppress():
                        os.read(wake, 512)
                    self.reap()
                elif fd in self.outputs:
                    self.on_output(fd)
                elif fd == self.attach.fileno():
                    self.on_accept()
                elif fd == self.ctl:
                    self.on_control()
                elif fd in self.clients:
                    self.on_client(fd, ev)
        for fd in list(self.outputs):
            self.close_output(fd)

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.init_pid:
                code = os.waitstatus_to_exitcode(status)
                self.exit_code = 128 - code if code < 0 else code

    def on_control(self) -> None:
        try:
            self.ctl_buf += os.read(self.ctl, 4096)
        except BlockingIOError:
            return
        *lines, self.ctl_buf = self.ctl_buf.split(b"\n")
        for line in lines:
            words = line.split()
            resize = len(words) == 3 and words[0] == b"resize" and words[1].isdigit() and words[2].isdigit()
            if resize and self.master >= 0 and self.master in self.outputs:
                with _suppress():
                    set_winsize(self.master, int(words[1]), int(words[2]))

    def on_output(self, fd: int) -> None:
        name, num = self.outputs[fd]
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO: the pty's other side is closed everywhere
            data = b""
        if not data:
            self.close_output(fd)
            return
        if self.log is not None:
            self.log.write(name, data)
            if self.tty:
                self.log.flush_partial(name)
        if self.clients:
            payload = data if self.tty else frame(num, data)
            for cfd in list(self.clients):
                self.send(cfd, payload)

    def close_output(self, fd: int) -> None:
        name, _ = self.outputs.pop(fd)
        self.poller.unregister(fd)
        if self.log is not None:
            self.log.flush(name)
        if fd != self.stdin_fd:
            os.close(fd)

    def on_accept(self) -> None:
        try:
            conn, _ = self.attach.accept()
        except BlockingIOError:
            return
        conn.setblocking(False)
        self.clients[conn.fileno()] = conn
        self.client_buf[conn.fileno()] = bytearray()
        self.poller.register(conn.fileno(), select.POLLIN)

    def send(self, cfd: int, payload: bytes) -> None:
        buf = self.client_buf[cfd]
        buf += payload
        try:
            n = self.clients[cfd].send(buf)
            del buf[:n]
        except BlockingIOError:
            pass
        except OSError:
            self.drop(cfd)
            return
        if len(buf) > CLIENT_BUFFER:
            self.drop(cfd)
        elif buf:
            both = select.POLLIN | select.POLLOUT
            self.poller.modify(cfd, select.POLLOUT if cfd in self.half_closed else both)

    def on_client(self, cfd: int, ev: int) -> None:
        conn = self.clients[cfd]
        if ev & select.POLLOUT:
            buf = self.client_buf[cfd]
            try:
                del buf[: conn.send(buf)]
            except BlockingIOError:
                pass
            except OSError:
                self.drop(cfd)
                return
            if not buf:
                self.poller.modify(cfd, 0 if cfd in self.half_closed else select.POLLIN)
        if cfd in self.half_closed:
            if ev & (select.POLLHUP | select.POLLERR):
                self.drop(cfd)
            return
        if ev & (select.POLLIN | select.POLLHUP | select.POLLERR):
            try:
                data = conn.recv(65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if data:
                if self.stdin_fd >= 0:
                    try:
                        os.write(self.stdin_fd, data)  # blocking: stdin back-pressure reaches the client
                    except OSError:
                        self.close_stdin()
                return
            # The client closed its sending side: it still gets the output (docker attach
            # with stdin from a file), until it goes away.
            if self.stdin_once and self.stdin_fd >= 0:
                self.close_stdin()
            self.half_closed.add(cfd)
            self.poller.modify(cfd, select.POLLOUT if self.client_buf[cfd] else 0)

    def close_stdin(self) -> None:
        if self.stdin_fd >= 0 and self.stdin_fd not in self.outputs:
            os.close(self.stdin_fd)
        elif self.tty and self.stdin_fd >= 0:
            with _suppress():
                os.write(self.stdin_fd, b"\x04")  # EOF for the terminal's line discipline
        self.stdin_fd = -1

    def drop(self, cfd: int) -> None:
        conn = self.clients.pop(cfd)
        self.client_buf.pop(cfd, None)
        self.half_closed.discard(cfd)
        with _suppress():
            self.poller.unregister(cfd)
        conn.close()

    def finish(self, error: str = "") -> None:
        write_atomic(self.path("exit.json"), {
            "version": EXIT_VERSION, "exit_code": 255 if self.exit_code is None else self.exit_code,
            "finished_at": rfc3339nano(time.time_ns()), "pid": self.init_pid, "error": error})
        if self.log is not None:
            self.log.close()
        for cfd in list(self.clients):
            conn = self.clients[cfd]
            with _suppress():
                conn.setblocking(True)
                conn.settimeout(1)
                conn.sendall(self.client_buf[cfd])
            self.drop(cfd)
        self.attach.close()
        with _suppress():
            os.unlink(self.path("attach.sock"))
        os.close(self.ctl)
        with _suppress():
            os.unlink(self.path("ctl"))


def set_winsize(fd: int, rows: int, cols: int) -> None:
    import fcntl
    import struct
    import termios

    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class _suppress:
    """contextlib.suppress(OSError) without importing contextlib."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, typ: object, exc: object, tb: object) -> bool:
        return typ is not None and issubclass(typ, OSError)  # type: ignore[arg-type]


def daemonize(sync_fd: int, exec_dir: str) -> None:
    """Double fork and setsid: the intermediate exits at once, so the engine's child returns
    fast and the monitor is re-parented (to init or the nearest subreaper) for good."""
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    os.chdir(exec_dir)  # attach.sock is bound relative to it
    null = os.open(os.devnull, os.O_RDWR)
    err = os.open(os.path.join(exec_dir, "monitor.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.dup2(err, 2)
    for fd in (null, err):
        if fd > 2:
            os.close(fd)


def main(argv: list[str]) -> int:
    cfg_path, sync_fd = argv[1], int(argv[2])
    exec_dir = os.path.dirname(os.path.abspath(cfg_path))
    with open(cfg_path) as f:
        cfg = json.load(f)
    os.set_inheritable(sync_fd, False)  # the runtime and the container must not hold it open
    daemonize(sync_fd, exec_dir)
    for sig in IGNORED:
        signal.signal(sig, signal.SIG_IGN)  # the monitor goes when its container does
    wake_r, wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda _s, _f: None)
    from pallet.syscalls import flags as F
    from pallet.syscalls import real

    real().prctl(F.PR_SET_CHILD_SUBREAPER, 1)
    mon = Monitor(cfg, exec_dir)
    try:
        result = mon.start()
    except Exception as exc:
        result = {"error": f"monitor: {exc}"}
    os.write(sync_fd, json.dumps(result).encode())
    os.close(sync_fd)
    if "error" in result:
        mon.attach.close()
        for name in ("attach.sock", "ctl"):
            with _suppress():
                os.unlink(mon.path(name))
        return 1
    error = ""
    try:
        mon.run(wake_r)
    except Exception as exc:
        error = f"monitor: {exc}"
        sys.stderr.write(f"{error}\n")
    mon.finish(error)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
