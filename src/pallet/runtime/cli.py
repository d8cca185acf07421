"""`pallet-runtime`: an OCI runtime with runc's command line, so podman and containerd can use it.

    pallet-runtime [--root DIR] [--log FILE] [--log-format text|json] [--debug] COMMAND ...
Errors print one line to stderr (and to --log in the chosen format, where containerd and conmon
look for them) and exit with status 1, as runc does.
"""

from __future__ import annotations

import os
import sys
import time

from pallet import __version__
from pallet.errors import InvalidArgument, PalletError

TYPE_CHECKING = False  # typing costs ~2 ms of start-up; mypy treats this name as typing's
if TYPE_CHECKING:
    import argparse
    from typing import Any

DEFAULT_ROOT = "/run/pallet-runtime"


class _Log:
    def __init__(self, path: str | None, fmt: str, debug: bool) -> None:
        self.path, self.fmt, self.debug_on = path, fmt, debug

    def write(self, level: str, msg: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if self.path:
            from pallet import jsonio

            line = (jsonio.dumps({"level": level, "msg": msg, "time": stamp}) if self.fmt == "json"
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
    # The C module's constants, the names signal.Signals has (signal.py builds its enums from
    # them on import, ~1 ms with enum); SIG_DFL, SIG_IGN, SIG_BLOCK... are not signals.
    import _signal

    number = getattr(_signal, v, None) if not v.startswith("SIG_") else None
    if not isinstance(number, int):
        raise InvalidArgument(f"unknown signal {value!r}")
    return number


def parse_bytes(value: str) -> int:
    """A size as runc's update takes it (go-units RAMInBytes: binary units, 512m, 1GiB), or -1."""
    if value.strip() == "-1":
        return -1
    from pallet import units

    try:
        return units.ram_in_bytes(value)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None


# The command line as data: the fast parser below reads it on every call, and build_parser()
# turns it into argparse for --help (and for the test that both agree). An option is
# (flags, dest, kind, default, choices, help): kind "flag" (store_true), "str", "int" or
# "append"; a positional is (dest, nargs): "1", "?" (with the default) or "..." (the rest).
Opt = tuple[tuple[str, ...], str, str, object, tuple[str, ...] | None, str]

GLOBAL: list[Opt] = [
    (("--root",), "root", "str", DEFAULT_ROOT, None, "directory for container state"),
    (("--log",), "log", "str", None, None, "log file (default: stderr only)"),
    (("--log-format",), "log_format", "str", "text", ("text", "json"), "format of --log"),
    (("--debug",), "debug", "flag", False, None, "accepted; errors are always logged"),
    (("--systemd-cgroup",), "systemd_cgroup", "flag", False, None,
     "accepted for compatibility: cgroups paths in slice:prefix:name form are mapped"),
    (("--rootless",), "rootless", "str", "auto", None, "accepted for compatibility"),
    (("--criu",), "criu", "str", None, None, ""),
    (("-v", "--version"), "version", "flag", False, None, "print the version"),
]

_CREATE: list[Opt] = [
    (("-b", "--bundle"), "bundle", "str", ".", None, "the bundle directory"),
    (("--console-socket",), "console_socket", "str", None, None, "unix socket that receives the pty master"),
    (("--pid-file",), "pid_file", "str", None, None, "file to write the init's pid to"),
    (("--no-pivot",), "no_pivot", "flag", False, None, "use chroot(2)-free MS_MOVE instead of pivot_root"),
    (("--no-new-keyring",), "no_new_keyring", "flag", False, None, "accepted"),
    (("--preserve-fds",), "preserve_fds", "int", 0, None, "pass this many fds after 2 to the init"),
]
_UPDATE: list[Opt] = [
    (("-r", "--resources"), "resources", "str", None, None, "JSON file of linux.resources ('-' for stdin)"),
    *[((f"--{f}",), f.replace("-", "_"), "str", None, None, "") for f in
      ("memory", "memory-reservation", "memory-swap", "kernel-memory")],
    *[((f"--{f}",), f.replace("-", "_"), "int", None, None, "") for f in
      ("cpu-shares", "cpu-quota", "cpu-period", "cpu-rt-period", "cpu-rt-runtime", "pids-limit",
       "blkio-weight")],
    (("--cpuset-cpus",), "cpuset_cpus", "str", None, None, ""),
    (("--cpuset-mems",), "cpuset_mems", "str", None, None, ""),
    (("--cpu-idle",), "cpu_idle", "int", None, None, ""),
]
ID = [("id", "1")]

COMMANDS: dict[str, tuple[str, list[Opt], list[tuple[str, str]]]] = {
    "create": ("create a container", _CREATE, ID),
    "run": ("create and start a container, and wait for it unless -d", [
        *_CREATE,
        (("-d", "--detach"), "detach", "flag", False, None, "return once it started"),
        (("--keep",), "keep", "flag", False, None, "do not delete it when it exits")], ID),
    "start": ("start a created container", [
        (("--after-stdin",), "after_stdin", "flag", False, None,
         "Pallet's extension: load, then start once a line arrives on stdin (nothing on EOF)")], ID),
    "state": ("print a container's state as JSON", [], ID),
    "kill": ("send a signal to a container's init (or all its processes)", [
        (("-a", "--all"), "all", "flag", False, None, "signal every process of the container")],
        [("id", "1"), ("signal", "?")]),
    "delete": ("delete a container", [
        (("-f", "--force"), "force", "flag", False, None, "kill it first if it runs")], ID),
    "exec": ("run a process in a container", [
        (("-p", "--process"), "process", "str", None, None, "process.json to run"),
        (("--console-socket",), "console_socket", "str", None, None, ""),
        (("--cwd",), "cwd", "str", None, None, ""),
        (("-e", "--env"), "env", "append", [], None, ""),
        (("-t", "--tty"), "tty", "flag", False, None, ""),
        (("-u", "--user"), "user", "str", None, None, "uid[:gid]"),
        (("-g", "--additional-gids"), "additional_gids", "append", [], None, ""),
        (("--cap", "-c"), "cap", "append", [], None, ""),
        (("--no-new-privs",), "no_new_privs", "flag", False, None, ""),
        (("--preserve-fds",), "preserve_fds", "int", 0, None, ""),
        (("--pid-file",), "pid_file", "str", None, None, ""),
        (("-d", "--detach"), "detach", "flag", False, None, ""),
        (("--process-label",), "process_label", "str", None, None, ""),
        (("--apparmor",), "apparmor", "str", None, None, ""),
        (("--ignore-paused",), "ignore_paused", "flag", False, None, ""),
        (("--cgroup",), "cgroup", "str", None, None, "")], [("id", "1"), ("args", "...")]),
    "ps": ("list the processes of a container", [
        (("-f", "--format"), "format", "str", "table", ("table", "json"), "")],
        [("id", "1"), ("ps_args", "...")]),
    "pause": ("freeze all processes of a container", [], ID),
    "resume": ("thaw a paused container", [], ID),
    "update": ("change the resource limits of a container", _UPDATE, ID),
    "events": ("print container events and stats", [
        (("--stats",), "stats", "flag", False, None, "one stats sample, then exit"),
        (("--interval",), "interval", "str", "5s", None, "")], ID),
    "spec": ("write a default config.json", [
        (("-b", "--bundle"), "bundle", "str", ".", None, ""),
        (("--rootless",), "rootless", "flag", False, None, "")], []),
    "features": ("print the features this runtime supports", [], []),
    "list": ("list containers", [
        (("-f", "--format"), "format", "str", "table", ("table", "json"), ""),
        (("-q", "--quiet"), "quiet", "flag", False, None, "")], []),
}
_DEFAULTS = {"signal": "SIGTERM", "args": [], "ps_args": []}  # of optional and remainder positionals

VERSION = f"pallet-runtime version {__version__}\nspec: 1.2.0"


class UsageError(Exception):
    """A bad command line; main() prints it as argparse would and exits with status 2."""


class Args:
    """The parsed command line: an attribute per dest (argparse.Namespace without argparse)."""

    def __init__(self, **values: object) -> None:
        self.__dict__.update(values)

    def __getattr__(self, name: str) -> Any:  # for mypy: attributes are set from the tables
        raise AttributeError(name)


def parse_args(argv: list[str]) -> Args:
    """runc's grammar: global options, the command, its options and positionals. `--opt=value`
    and `--opt value` both work; `--` ends options; after the id, `exec` and `ps` take the
    rest as is (the process's own arguments). -h/--help and -v/--version are handled by the
    caller. Raises UsageError."""
    values: dict[str, object] = {}
    for opt in GLOBAL:
        values[opt[1]] = _copy(opt[3])
    values["command"] = None
    i = _parse_options(argv, 0, GLOBAL, values, stop_at_positional=True)
    if i == len(argv):
        return Args(**values)
    command = argv[i]
    if command not in COMMANDS:
        raise UsageError(f"argument COMMAND: invalid choice: {command!r}")
    values["command"] = command
    _help, opts, positionals = COMMANDS[command]
    for opt in opts:
        values[opt[1]] = _copy(opt[3])
    rest: list[str] = []
    i += 1
    remainder = positionals and positionals[-1][1] == "..."
    while i < len(argv):
        arg = argv[i]
        if remainder and len(rest) == len(positionals) - 1:
            tail = argv[i:]
            rest.append(tail[1:] if tail[:1] == ["--"] else tail)  # type: ignore[arg-type]
            break
        if arg == "--":
            rest.extend(argv[i + 1:])
            break
        if arg.startswith("-") and arg != "-":
            i = _parse_options(argv, i, opts, values, stop_at_positional=True, one=True)
            continue
        rest.append(arg)
        i += 1
    for n, (dest, nargs) in enumerate(positionals):
        if n < len(rest):
            values[dest] = rest[n] if nargs != "..." else list(rest[n])
        elif nargs == "1":
            raise UsageError(f"the following arguments are required: {dest}")
        else:
            values[dest] = _copy(_DEFAULTS.get(dest))
    if len(rest) > len(positionals):
        raise UsageError(f"unrecognized arguments: {' '.join(map(str, rest[len(positionals):]))}")
    return Args(**values)


def _copy(value: object) -> object:
    return list(value) if isinstance(value, list) else value


def _parse_options(argv: list[str], i: int, opts: list[Opt], values: dict[str, object], *,
                   stop_at_positional: bool, one: bool = False) -> int:
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("-") or arg == "-":
            return i
        name, eq, inline = arg.partition("=")
        opt = next((o for o in opts if name in o[0]), None)
        if opt is None:
            raise UsageError(f"unrecognized arguments: {arg}")
        flags, dest, kind, _default, choices, _help = opt
        if kind == "flag":
            if eq:
                raise UsageError(f"argument {'/'.join(flags)}: ignored explicit argument {inline!r}")
            values[dest] = True
            i += 1
        else:
            if eq:
                value, i = inline, i + 1
            elif i + 1 < len(argv):
                value, i = argv[i + 1], i + 2
            else:
                raise UsageError(f"argument {'/'.join(flags)}: expected one argument")
            if choices and value not in choices:
                raise UsageError(f"argument {'/'.join(flags)}: invalid choice: {value!r} "
                                 f"(choose from {', '.join(repr(c) for c in choices)})")
            if kind == "int":
                try:
                    values[dest] = int(value)
                except ValueError:
                    raise UsageError(f"argument {'/'.join(flags)}: invalid int value: {value!r}") from None
            elif kind == "append":
                values[dest].append(value)  # type: ignore[attr-defined]
            else:
                values[dest] = value
        if one:
            return i
    return i


def build_parser() -> argparse.ArgumentParser:
    """The same command line as argparse, for --help (argparse, gettext and their regexes cost
    ~5 ms of every call, so parse_args() does the parsing)."""
    import argparse

    p = argparse.ArgumentParser(prog="pallet-runtime", description="An OCI container runtime (runc's CLI).")
    _add(p, GLOBAL)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_, opts, positionals) in COMMANDS.items():
        c = sub.add_parser(name, help=help_)
        _add(c, opts)
        for dest, nargs in positionals:
            if nargs == "1":
                c.add_argument(dest)
            elif nargs == "?":
                c.add_argument(dest, nargs="?", default=_DEFAULTS.get(dest))
            else:
                c.add_argument(dest, nargs=argparse.REMAINDER)
    return p


def _add(p: argparse.ArgumentParser, opts: list[Opt]) -> None:
    import argparse

    for flags, dest, kind, default, choices, help_ in opts:
        if dest == "version":
            p.add_argument(*flags, action="version", version=VERSION)
            continue
        kw: dict[str, Any] = {"dest": dest, "help": help_ or (argparse.SUPPRESS if dest == "criu" else None)}
        if kind == "flag":
            kw["action"] = "store_true"
        elif kind == "append":
            kw.update(action="append", default=[])
        else:
            kw.update(default=default, type=int if kind == "int" else None,
                      choices=list(choices) if choices else None)
        p.add_argument(*flags, **kw)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "-h" in argv or "--help" in argv:
        build_parser().parse_args(argv)  # prints the help and exits (SystemExit)
    try:
        args = parse_args(argv)
    except UsageError as exc:
        print("usage: pallet-runtime [global options] COMMAND [options] ID ...\n"
              f"pallet-runtime: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if args.version:
        print(VERSION)
        return 0
    log = _Log(args.log, args.log_format, args.debug)
    if not args.command:
        build_parser().print_help()
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
    modules that a short-lived command does not need; nothing here relies on atexit).

    The cyclic garbage collector is off: a command lives milliseconds and makes few cycles, and
    the collections that its imports' allocations trigger cost ~1.5 ms of CPU per `run` (measured
    side by side); the forked container setup processes also touch fewer copy-on-write pages.
    `events`, the one command that loops for long, turns it back on."""
    import gc  # builtin

    gc.disable()
    try:
        rc = main()
    except SystemExit as exc:  # argparse's --help, --version and usage errors
        rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    warm = sys.modules.get("pallet.runtime.cgwarm")
    if warm is not None:
        warm.reap()  # stopped after the cgroup move, or still running if create failed before it
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)


if __name__ == "__main__":
    run()
