"""`pallet-runtime`: an OCI runtime with runc's command line, so podman and containerd can use it.

    pallet-runtime [--root DIR] [--log FILE] [--log-format text|json] [--debug] COMMAND ...
Errors print one line to stderr (and to --log in the chosen format, where containerd and conmon
look for them) and exit with status 1, as runc does.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import time

from pallet import __version__
from pallet.errors import InvalidArgument, PalletError

DEFAULT_ROOT = "/run/pallet-runtime"


class _Log:
    def __init__(self, path: str | None, fmt: str, debug: bool) -> None:
        self.path, self.fmt, self.debug_on = path, fmt, debug

    def write(self, level: str, msg: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if self.path:
            line = (json.dumps({"level": level, "msg": msg, "time": stamp}) if self.fmt == "json"
                    else f'time="{stamp}" level={level} msg="{msg}"')
            try:
                with open(self.path, "a") as f:
                    f.write(line + "\n")
            except OSError:
                pass

    def error(self, msg: str) -> None:
        self.write("error", msg)
        print(f"pallet-runtime: {msg}", file=sys.stderr)

    def warn(self, msg: str) -> None:
        self.write("warning", msg)
        print(f"pallet-runtime: warning: {msg}", file=sys.stderr)


def parse_signal(value: str) -> int:
    v = value.upper()
    if v.isdigit():
        return int(v)
    if not v.startswith("SIG"):
        v = "SIG" + v
    try:
        return int(signal.Signals[v])
    except KeyError:
        raise InvalidArgument(f"unknown signal {value!r}") from None


_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?) ?([kmgtp])?i?b?$", re.IGNORECASE)


def parse_bytes(value: str) -> int:
    """A size as runc's update takes it (go-units RAMInBytes: binary units, 512m, 1GiB), or -1."""
    v = value.strip()
    if v == "-1":
        return -1
    m = _SIZE_RE.match(v)
    if not m:
        raise InvalidArgument(f"invalid size {value!r}")
    power = " kmgtp".index((m.group(2) or " ").lower())
    return int(float(m.group(1)) * 1024**power)


class _Formatter(argparse.HelpFormatter):
    """argparse's formatter without its `import shutil` for the terminal width (~2 ms: every
    add_argument builds one to check the metavar)."""

    def __init__(self, prog: str) -> None:
        try:
            width = int(os.environ.get("COLUMNS", "")) - 2
        except ValueError:
            width = 78
        super().__init__(prog, width=max(width, 40))


class _Skip:
    """Stands in for the subparsers of the commands not being run: building all 17 costs ~6 ms."""

    def add_argument(self, *args, **kwargs) -> None:
        pass


_GLOBAL_WITH_VALUE = {"--root", "--log", "--log-format", "--criu", "--rootless"}


def _command_of(argv: list[str]) -> str | None:
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in _GLOBAL_WITH_VALUE:
            i += 2
            continue
        if not arg.startswith("-"):
            return arg
        i += 1
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pallet-runtime", description="An OCI container runtime (runc's CLI).",
                                formatter_class=_Formatter)
    p.add_argument("--root", default=DEFAULT_ROOT, help="directory for container state")
    p.add_argument("--log", default=None, help="log file (default: stderr only)")
    p.add_argument("--log-format", default="text", choices=["text", "json"])
    p.add_argument("--debug", action="store_true")
    p.add_argument("--systemd-cgroup", action="store_true",
                   help="accepted for compatibility: cgroups paths in slice:prefix:name form are mapped")
    p.add_argument("--rootless", default="auto")
    p.add_argument("--criu", default=None, help=argparse.SUPPRESS)
    p.add_argument("-v", "--version", action="version",
                   version=f"pallet-runtime version {__version__}\nspec: 1.2.0")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def cmd(name: str, help: str):
        if only is not None and name != only:
            return _Skip()
        return sub.add_parser(name, help=help, formatter_class=_Formatter)

    for name in ("create", "run"):
        c = cmd(name, f"{name} a container")
        c.add_argument("id")
        c.add_argument("-b", "--bundle", default=".")
        c.add_argument("--console-socket")
        c.add_argument("--pid-file")
        c.add_argument("--no-pivot", action="store_true")
        c.add_argument("--no-new-keyring", action="store_true")
        c.add_argument("--preserve-fds", type=int, default=0)
        if name == "run":
            c.add_argument("-d", "--detach", action="store_true")
            c.add_argument("--keep", action="store_true")
    c = cmd("start", "start a created container")
    c.add_argument("id")
    c = cmd("state", "print a container's state as JSON")
    c.add_argument("id")
    c = cmd("kill", "send a signal to a container's init (or all its processes)")
    c.add_argument("-a", "--all", action="store_true")
    c.add_argument("id")
    c.add_argument("signal", nargs="?", default="SIGTERM")
    c = cmd("delete", "delete a container")
    c.add_argument("-f", "--force", action="store_true")
    c.add_argument("id")
    c = cmd("exec", "run a process in a container")
    c.add_argument("-p", "--process")
    c.add_argument("--console-socket")
    c.add_argument("--cwd")
    c.add_argument("-e", "--env", action="append", default=[])
    c.add_argument("-t", "--tty", action="store_true")
    c.add_argument("-u", "--user")
    c.add_argument("-g", "--additional-gids", action="append", default=[])
    c.add_argument("--cap", "-c", action="append", default=[])
    c.add_argument("--no-new-privs", action="store_true")
    c.add_argument("--preserve-fds", type=int, default=0)
    c.add_argument("--pid-file")
    c.add_argument("-d", "--detach", action="store_true")
    c.add_argument("--process-label", default=None)
    c.add_argument("--apparmor", default=None)
    c.add_argument("--ignore-paused", action="store_true")
    c.add_argument("--cgroup", default=None)
    c.add_argument("id")
    c.add_argument("args", nargs=argparse.REMAINDER)
    c = cmd("ps", "list the processes of a container")
    c.add_argument("-f", "--format", default="table", choices=["table", "json"])
    c.add_argument("id")
    c.add_argument("ps_args", nargs=argparse.REMAINDER)
    cmd("pause", "freeze all processes of a container").add_argument("id")
    cmd("resume", "thaw a paused container").add_argument("id")
    c = cmd("update", "change the resource limits of a container")
    c.add_argument("-r", "--resources", help="JSON file of linux.resources ('-' for stdin)")
    for flag in ("memory", "memory-reservation", "memory-swap", "kernel-memory"):
        c.add_argument(f"--{flag}")
    for flag in ("cpu-shares", "cpu-quota", "cpu-period", "cpu-rt-period", "cpu-rt-runtime", "pids-limit",
                 "blkio-weight"):
        c.add_argument(f"--{flag}", type=int)
    c.add_argument("--cpuset-cpus")
    c.add_argument("--cpuset-mems")
    c.add_argument("--cpu-idle", type=int)
    c.add_argument("id")
    c = cmd("events", "print container events and stats")
    c.add_argument("--stats", action="store_true")
    c.add_argument("--interval", default="5s")
    c.add_argument("id")
    c = cmd("spec", "write a default config.json")
    c.add_argument("-b", "--bundle", default=".")
    c.add_argument("--rootless", action="store_true")
    cmd("features", "print the features this runtime supports")
    c = cmd("list", "list containers")
    c.add_argument("-f", "--format", default="table", choices=["table", "json"])
    c.add_argument("-q", "--quiet", action="store_true")
    return p


_COMMANDS = {"create", "run", "start", "state", "kill", "delete", "exec", "ps", "pause", "resume", "update",
             "events", "spec", "features", "list"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    only = _command_of(argv)
    parser = build_parser(only if only in _COMMANDS else None)
    args = parser.parse_args(argv)
    log = _Log(args.log, args.log_format, args.debug)
    if not args.command:
        parser.print_help()
        return 0
    try:
        return _dispatch(args, log) or 0
    except PalletError as exc:
        log.error(str(exc))
        return 1
    except OSError as exc:
        log.error(str(exc))
        return 1
    except KeyboardInterrupt:
        return 130


def _runtime(args, log):
    from pallet.runtime.container import Runtime

    return Runtime(args.root, warn=log.warn)


def _dispatch(args, log) -> int:
    from pallet.runtime import commands

    return getattr(commands, "cmd_" + args.command.replace("-", "_"))(args, log, _runtime)


def run() -> None:
    """Console-script entry: flush and leave without the interpreter's teardown (~12 ms of freeing
    modules that a short-lived command does not need; nothing here relies on atexit)."""
    try:
        rc = main()
    except SystemExit as exc:  # argparse's --help, --version and usage errors
        rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)


if __name__ == "__main__":
    run()
