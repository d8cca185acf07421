"""One function per pallet-runtime command: parse what argparse gave, call Runtime, print.

Imported by every command: it keeps to C modules and pallet's own (jsonio, not json; _signal, not
signal; try/except, not contextlib), see docs/design/runtime.md "Start-up".
"""

from __future__ import annotations

import _signal  # the C module: signal.py builds enums of every constant on import (~1 ms)
import os
import sys
import time

from pallet import jsonio
from pallet.errors import InvalidArgument, NotFound
from pallet.runtime.cli import parse_bytes, parse_signal


def _print_json(obj) -> None:
    sys.stdout.write(jsonio.dumps(obj, indent=2) + "\n")


def cmd_create(args, log, runtime) -> int:
    from pallet.runtime.container import CreateOptions

    runtime(args, log).create(args.id, CreateOptions(
        bundle=args.bundle, pid_file=args.pid_file, console_socket=args.console_socket,
        no_pivot=args.no_pivot, preserve_fds=args.preserve_fds))
    return 0


def cmd_start(args, log, runtime) -> int:
    rt = runtime(args, log)
    # palletd runs `start --after-stdin` while conmon runs `create`, so this interpreter's
    # start-up (~9 ms, most of a start) is off the critical path; it says "go" once the
    # container is created and its attach streams are connected. EOF: it gave up.
    if args.after_stdin and not os.read(0, 64):
        return 1
    rt.start(args.id)
    return 0


def cmd_run(args, log, runtime) -> int:
    from pallet.runtime.container import CreateOptions, wait_status
    from pallet.runtime.sync import recv_fds

    rt = runtime(args, log)
    console_path = args.console_socket
    listener = tmpdir = None
    if not args.detach and not console_path and _wants_terminal(args.bundle):
        # No console socket: hold the pty ourselves and copy it to our own terminal.
        import socket
        import tempfile

        tmpdir = tempfile.mkdtemp(prefix="pallet-runtime-console-")
        console_path = os.path.join(tmpdir, "console.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        listener.bind(console_path)
        listener.listen(1)
    try:
        st = rt.create(args.id, CreateOptions(
            bundle=args.bundle, pid_file=args.pid_file, console_socket=console_path,
            no_pivot=args.no_pivot, preserve_fds=args.preserve_fds, subreaper=not args.detach))
        master = None
        if listener is not None:
            conn, _ = listener.accept()
            _msg, fds = recv_fds(conn, 16, 1)
            conn.close()
            master = fds[0]
        try:
            rt.start(args.id, st)  # the state create returned: not read back from disk
        except BaseException:
            try:
                rt.delete(args.id, force=True)
            except Exception:  # the start failure is the error to report
                pass
            raise
        if args.detach:
            return 0
        _forward_signals(st.pid)
        if master is not None:
            _proxy_pty(master, st.pid)
        status = wait_status(st.pid)
        if not args.keep:
            rt.delete(args.id, force=True, st=st)
        return status
    finally:
        if listener is not None:
            listener.close()
        if tmpdir:
            import shutil

            shutil.rmtree(tmpdir, ignore_errors=True)


def _wants_terminal(bundle: str) -> bool:
    try:
        return bool(jsonio.load_file(os.path.join(bundle, "config.json")).get("process", {}).get("terminal"))
    except (OSError, ValueError):
        return False


def _forward_signals(pid: int) -> None:
    def forward(signum, _frame):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for sig in (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT, _signal.SIGUSR1,
                _signal.SIGUSR2, _signal.SIGWINCH):
        _signal.signal(sig, forward)


def _proxy_pty(master: int, pid: int) -> None:
    """Copy between our stdio and the container's pty until the container's side closes."""
    import select
    import termios
    import tty
    stdin_tty = os.isatty(0)
    saved = termios.tcgetattr(0) if stdin_tty else None
    if stdin_tty:
        tty.setraw(0, termios.TCSANOW)  # not TCSAFLUSH (the default): it drops what was typed ahead
        import fcntl

        try:
            fcntl.ioctl(master, termios.TIOCSWINSZ, fcntl.ioctl(0, termios.TIOCGWINSZ, b"\0" * 8))
        except OSError:
            pass  # no window size to copy
    fds = [master, 0]
    try:
        while True:
            try:
                ready, _, _ = select.select(fds, [], [], 0.2)
            except InterruptedError:
                continue
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    data = b""
                if not data:
                    break
                os.write(1, data)
            if 0 in ready:
                data = os.read(0, 65536)
                if not data:
                    fds.remove(0)
                else:
                    os.write(master, data)
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
        os.close(master)


def cmd_state(args, log, runtime) -> int:
    _print_json(runtime(args, log).state(args.id))
    return 0


def cmd_kill(args, log, runtime) -> int:
    runtime(args, log).kill(args.id, parse_signal(args.signal), all_processes=args.all)
    return 0


def cmd_delete(args, log, runtime) -> int:
    try:
        runtime(args, log).delete(args.id, force=args.force)
    except NotFound:
        if not args.force:
            raise
    return 0


def cmd_pause(args, log, runtime) -> int:
    runtime(args, log).pause(args.id)
    return 0


def cmd_resume(args, log, runtime) -> int:
    runtime(args, log).resume(args.id)
    return 0


def cmd_list(args, log, runtime) -> int:
    states = runtime(args, log).list_states()
    if args.quiet:
        for s in states:
            print(s["id"])
    elif args.format == "json":
        sys.stdout.write(jsonio.dumps(states) + "\n")
    else:
        print(f"{'ID':<20} {'PID':<8} {'STATUS':<10} {'BUNDLE':<40} {'CREATED':<32} OWNER")
        for s in states:
            print(f"{s['id']:<20} {s['pid']:<8} {s['status']:<10} {s['bundle']:<40} {s['created']:<32} "
                  f"{s['owner']}")
    return 0


def cmd_ps(args, log, runtime) -> int:
    import subprocess

    pids = runtime(args, log).pids(args.id)
    if args.format == "json":
        sys.stdout.write(jsonio.dumps(pids) + "\n")
        return 0
    ps_args = [a for a in args.ps_args if a != "--"] or ["-ef"]
    out = subprocess.run(["ps", *ps_args], capture_output=True, text=True, check=True).stdout.splitlines()
    header = out[0].split()
    if "PID" not in header:
        raise InvalidArgument("ps output has no PID column")
    col = header.index("PID")
    print(out[0])
    wanted = set(pids)
    for line in out[1:]:
        fields = line.split()
        if len(fields) > col and fields[col].isdigit() and int(fields[col]) in wanted:
            print(line)
    return 0


def cmd_exec(args, log, runtime) -> int:
    import shutil
    import socket
    import tempfile

    rt = runtime(args, log)
    st = rt.store.load(args.id)
    if args.process:
        process = jsonio.load_file(args.process)
    else:
        if not args.args:
            raise InvalidArgument("exec: give a command or --process")
        base = st.config.get("process") or {}
        process = {k: v for k, v in base.items() if k in (
            "env", "cwd", "user", "capabilities", "noNewPrivileges", "rlimits", "apparmorProfile")}
        process["args"] = [a for a in args.args if a != "--"] if args.args[0] == "--" else args.args
        process["terminal"] = args.tty
    if args.env:
        process["env"] = list(process.get("env") or []) + args.env
    if args.cwd:
        process["cwd"] = args.cwd
    if args.user:
        uid, _, gid = args.user.partition(":")
        process["user"] = {"uid": int(uid), "gid": int(gid or 0)}
    if args.additional_gids:
        process.setdefault("user", {})["additionalGids"] = [int(g) for g in args.additional_gids]
    if args.no_new_privs:
        process["noNewPrivileges"] = True
    if args.cap:
        caps = process.setdefault("capabilities", {})
        for key in ("bounding", "effective", "permitted", "ambient", "inheritable"):
            have = caps.setdefault(key, [])
            for c in args.cap:
                name = c if c.startswith("CAP_") else "CAP_" + c.upper()
                if name not in have and key != "inheritable":
                    have.append(name)
    console_path = args.console_socket
    listener = tmpdir = None
    if process.get("terminal") and not console_path and not args.detach:
        tmpdir = tempfile.mkdtemp(prefix="pallet-runtime-console-")
        console_path = os.path.join(tmpdir, "console.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        listener.bind(console_path)
        listener.listen(1)
    try:
        if listener is None:
            result = rt.exec(args.id, process, console_socket=console_path, detach=args.detach,
                             pid_file=args.pid_file, preserve_fds=args.preserve_fds)
            return 0 if args.detach else result
        pid = rt.exec(args.id, process, console_socket=console_path, detach=True,
                      pid_file=args.pid_file, preserve_fds=args.preserve_fds, subreaper=True)
        conn, _ = listener.accept()
        _msg, fds, _f, _a = socket.recv_fds(conn, 16, 1)
        conn.close()
        _forward_signals(pid)
        _proxy_pty(fds[0], pid)
        from pallet.runtime.container import wait_status

        return wait_status(pid)
    finally:
        if listener is not None:
            listener.close()
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)


def cmd_update(args, log, runtime) -> int:
    if args.resources:
        if args.resources == "-":
            resources = jsonio.loads(sys.stdin.read())
        else:
            resources = jsonio.load_file(args.resources)
    else:
        resources = {}
        mem = {}
        for flag, key in (("memory", "limit"), ("memory_reservation", "reservation"),
                          ("memory_swap", "swap")):
            v = getattr(args, flag)
            if v is not None:
                mem[key] = parse_bytes(v)
        if mem:
            resources["memory"] = mem
        cpu = {}
        for flag, key in (("cpu_shares", "shares"), ("cpu_quota", "quota"), ("cpu_period", "period"),
                          ("cpu_rt_period", "realtimePeriod"), ("cpu_rt_runtime", "realtimeRuntime"),
                          ("cpuset_cpus", "cpus"), ("cpuset_mems", "mems"), ("cpu_idle", "idle")):
            v = getattr(args, flag)
            if v is not None:
                cpu[key] = v
        if cpu:
            resources["cpu"] = cpu
        if args.pids_limit is not None:
            resources["pids"] = {"limit": args.pids_limit}
        if args.blkio_weight is not None:
            resources["blockIO"] = {"weight": args.blkio_weight}
    runtime(args, log).update(args.id, resources)
    return 0


def _stats_event(cid: str, stats) -> dict:
    """runc's `events --stats` JSON (types/events.go): cpu, memory, pids, blkio."""
    m, c, p, b = stats.memory, stats.cpu, stats.pids, stats.blkio

    def blk(entries):
        return [{"major": e.major, "minor": e.minor, "op": e.op, "value": e.value} for e in entries]

    return {"type": "stats", "id": cid, "data": {
        "cpu": {"usage": {"total": c.total_ns, "percpu": c.per_cpu_ns, "kernel": c.system_ns,
                          "user": c.user_ns},
                "throttling": {"periods": c.nr_periods, "throttledPeriods": c.nr_throttled,
                               "throttledTime": c.throttled_ns}},
        "memory": {"usage": {"usage": m.usage, "max": m.max_usage, "limit": m.limit, "failcnt": m.failcnt},
                   "swap": {"usage": m.swap}, "cache": m.cache, "raw": m.raw,
                   "oom_kill": m.oom_kill},
        "pids": {"current": p.current, "limit": p.limit},
        "blkio": {"ioServiceBytesRecursive": blk(b.io_service_bytes),
                  "ioServicedRecursive": blk(b.io_serviced)},
    }}


def cmd_events(args, log, runtime) -> int:
    rt = runtime(args, log)
    if args.stats:
        _print_json(_stats_event(args.id, rt.stats(args.id)))
        return 0
    interval = float(args.interval.rstrip("s") or 5)
    import gc

    gc.enable()  # a long-lived loop: the short commands' reason to switch it off (cli.run) is gone
    last_oom = None
    while True:
        try:
            stats = rt.stats(args.id)
        except Exception:
            return 0
        if last_oom is not None and stats.memory.oom_kill > last_oom:
            sys.stdout.write(jsonio.dumps({"type": "oom", "id": args.id}) + "\n")
        last_oom = stats.memory.oom_kill
        sys.stdout.write(jsonio.dumps(_stats_event(args.id, stats)) + "\n")
        sys.stdout.flush()
        time.sleep(interval)


def cmd_spec(args, log, runtime) -> int:
    from pallet.runtime.spec import default_spec, rootless

    path = os.path.join(args.bundle, "config.json")
    if os.path.exists(path):
        raise InvalidArgument(f"file {path} exists: remove it first")
    spec = default_spec()
    if args.rootless:
        spec = rootless(spec, os.getuid(), os.getgid())
    import json  # runc's tab indentation; `spec` is not on any engine's hot path

    with open(path, "w") as f:
        json.dump(spec, f, indent="\t")
        f.write("\n")
    return 0


def cmd_features(args, log, runtime) -> int:
    from pallet.runtime.features import features

    _print_json(features())
    return 0
