"""`pallet`: the command people type. Starts fast: the standard library and pallet.api.client only.

Global options come before the verb (`pallet -H unix:///x.sock ps`); each verb is a module
`pallet.cli.commands.<verb>` with `main(ctx, argv) -> int`, imported only when run, so
`pallet --help` loads no verb and no verb loads the server stack (STYLE.md §10).
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing costs ~3 ms of start-up; mypy treats this name as typing's
if TYPE_CHECKING:
    from typing import Any

    from pallet.api.client import Client

# Verbs and their one-line summaries, for `pallet --help` without importing any verb module.
# A module under pallet/cli/commands/ runs as a verb even before it is listed here.
VERBS: dict[str, str] = {
    "attach": "Attach local standard input, output, and error streams to a running container",
    "build": "Build an image from a Dockerfile",
    "builder": "Manage builds (prune, cache mounts: cache ls|export|import|rm)",
    "commit": "Create a new image from a container's changes",
    "compose": "Define and run multi-container applications (up, down, ps, logs, ...)",
    "container": "Manage containers (ls, create, start, stop, rm, inspect, logs, exec, prune, ...)",
    "cp": "Copy files/folders between a container and the local filesystem",
    "create": "Create a new container",
    "events": "Get real time events from the server",
    "exec": "Execute a command in a running container",
    "export": "Export a container's filesystem as a tar archive",
    "history": "Show the history of an image",
    "image": "Manage images (ls, inspect, rm, tag, save, load, import, history, prune, bootstrap)",
    "images": "List images",
    "import": "Import the contents from a tarball to create a filesystem image",
    "info": "Display system-wide information",
    "inspect": "Return low-level information on containers or images",
    "kill": "Kill one or more running containers",
    "load": "Load an image from a tar archive or STDIN",
    "login": "Log in to a registry",
    "logout": "Log out from a registry",
    "logs": "Fetch the logs of a container",
    "network": "Manage networks (create, ls, inspect, rm, connect, disconnect, prune)",
    "pause": "Pause all processes within one or more containers",
    "port": "List port mappings or a specific mapping for the container",
    "ps": "List containers",
    "pull": "Download an image from a registry",
    "push": "Upload an image to a registry",
    "registry": "Run Pallet's own image registry server (serve, gc)",
    "rename": "Rename a container",
    "restart": "Restart one or more containers",
    "rm": "Remove one or more containers",
    "rmi": "Remove one or more images",
    "run": "Create and run a new container from an image",
    "save": "Save one or more images to a tar archive (streamed to STDOUT by default)",
    "stats": "Display a live stream of container(s) resource usage statistics",
    "search": "Search a registry for images",
    "start": "Start one or more stopped containers",
    "stop": "Stop one or more running containers",
    "tag": "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE",
    "top": "Display the running processes of a container",
    "unpause": "Unpause all processes within one or more containers",
    "update": "Update configuration of one or more containers",
    "version": "Show the Pallet version information",
    "volume": "Manage volumes (create, ls, inspect, rm, prune)",
    "wait": "Block until one or more containers stop, then print their exit codes",
}

USAGE = """Usage:  pallet [OPTIONS] COMMAND

A Linux container engine, Docker's commands and API.

Options:
  -H, --host string     Daemon socket to connect to (default $PALLET_HOST, else
                        unix:///run/pallet/pallet.sock; $DOCKER_HOST with PALLET_USE_DOCKER_HOST=1)
      --tlsverify       Use TLS and verify the daemon (with --tlscacert --tlscert --tlskey)
      --tlscacert file  CA certificate
      --tlscert file    Client certificate
      --tlskey file     Client key
  -v, --version         Print version information and quit
  -h, --help            Print this help

Commands:
{commands}
  runtime     Run the OCI runtime (same as pallet-runtime ...)

Run 'pallet COMMAND --help' for more information on a command.
"""


class Context:
    """What every verb gets: the daemon address and TLS options from the global flags.
    (A plain class: importing dataclasses costs ~5 ms of CLI start-up.)"""

    def __init__(self) -> None:
        self.host: str | None = None
        self.tlsverify = False
        self.tlscacert: str | None = None
        self.tlscert: str | None = None
        self.tlskey: str | None = None
        self._client: Client | None = None

    def client(self) -> Client:
        if self._client is None:
            from pallet.api.client import Client, TLSConfig

            tls = None
            if self.tlsverify or self.tlscert:
                tls = TLSConfig(self.tlscacert, self.tlscert, self.tlskey, verify=self.tlsverify)
            self._client = Client(self.host, tls=tls)
        return self._client


def _verb_modules() -> list[str]:
    """Verb module names present on disk (a directory listing; nothing is imported). os.listdir
    rather than pkgutil.iter_modules, which loads importlib.util, typing and re (~10 ms of
    `pallet --help`); the verbs are plain modules, no packages."""
    import os

    from pallet.cli import commands

    return sorted({name[:-3] for d in commands.__path__ for name in os.listdir(d)
                   if name.endswith(".py") and not name.startswith("_")})


def usage() -> str:
    names = sorted(set(VERBS) | {m.rstrip("_").replace("_", "-") for m in _verb_modules()})
    lines = [f"  {name:<11} {VERBS.get(name, '')}".rstrip() for name in names]
    return USAGE.format(commands="\n".join(lines))


_KEYWORD_VERBS = frozenset({"import"})

_VALUE_OPTS = {"-H": "host", "--host": "host", "--tlscacert": "tlscacert", "--tlscert": "tlscert",
               "--tlskey": "tlskey"}


def parse_globals(args: list[str]) -> tuple[Context, list[str]]:
    """Global options up to the verb; raises ValueError with a message for bad ones."""
    ctx = Context()
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("-") or arg == "-":
            break
        name, eq, value = arg.partition("=")
        if name in _VALUE_OPTS:
            if not eq:
                i += 1
                if i >= len(args):
                    raise ValueError(f"flag needs an argument: {name}")
                value = args[i]
            setattr(ctx, _VALUE_OPTS[name], value)
        elif arg == "--tlsverify":
            ctx.tlsverify = True
        elif arg in ("-h", "--help", "-v", "--version"):
            break
        else:
            raise ValueError(f"unknown flag: {arg}")
        i += 1
    return ctx, args[i:]


# A verb is a module name, [a-z][a-z0-9_]* (checked without `re`: the CLI's `--help` and
# `--version` then load nothing beyond sys).
_LOWER = "abcdefghijklmnopqrstuvwxyz"
_VERB_CHARS = frozenset(_LOWER + "0123456789_")


def run_verb(ctx: Context, verb: str, argv: list[str]) -> int:
    module_name = verb.replace("-", "_")
    if module_name in _KEYWORD_VERBS:  # `import` is a Python keyword: its module is import_.py
        module_name += "_"
    qualified = f"pallet.cli.commands.{module_name}"
    module = None
    if module_name[:1] in _LOWER and module_name[:1] and set(module_name) <= _VERB_CHARS:
        try:
            __import__(qualified)
            module = sys.modules[qualified]
        except ModuleNotFoundError as exc:
            if exc.name != qualified:  # the verb exists but something it imports does not
                raise
    if module is None:
        print(f"pallet: '{verb}' is not a pallet command.\nSee 'pallet --help'", file=sys.stderr)
        return 1
    from pallet.errors import PalletError

    try:
        return int(module.main(ctx, argv) or 0)
    except PalletError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


# Modules whose work at interpreter exit must not be skipped: handlers registered with atexit,
# temporary files and directories removed by finalizers, logging handlers flushed, worker
# processes and threads joined; and `pallet runtime ...`, the OCI runtime, which keeps its own
# exit path.
_EXIT_DUTIES = ("atexit", "tempfile", "logging", "multiprocessing", "concurrent.futures", "asyncio",
                "pallet.runtime.cli")


def main(argv: list[str] | None = None) -> int:
    """The `pallet` command. Called without `argv` (the console script), it ends the process
    itself once the verb is done (`exit_now`); with `argv` (tests), it returns the status."""
    if argv is not None:
        return _main(argv)
    code = _main(sys.argv[1:])
    exit_now(code)
    return code


def exit_now(code: int) -> None:
    """End the process with `code` after flushing stdout and stderr, skipping the interpreter's
    teardown (freeing every module and object: ~3-4 ms of each `pallet` command, measured with
    the modules `pallet run` loads). The Go docker CLI has no teardown either. Returns instead
    when a module with exit-time duties is loaded (`_EXIT_DUTIES`) or a non-daemon thread still
    runs (the normal exit joins it)."""
    import os

    if any(name in sys.modules for name in _EXIT_DUTIES):
        return
    threading = sys.modules.get("threading")
    if threading is not None and any(t is not threading.main_thread() and not t.daemon
                                     for t in threading.enumerate()):
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass  # a closed pipe (`pallet ps | head -1`): what the normal exit ignores too
    os._exit(code)


def _main(args: list[str]) -> int:
    try:
        ctx, rest = parse_globals(args)
    except ValueError as exc:
        print(f"pallet: {exc}\nSee 'pallet --help'", file=sys.stderr)
        return 125
    if not rest or rest[0] in ("-h", "--help", "help"):
        sys.stdout.write(usage())
        return 0
    verb, *verb_args = rest
    if verb in ("-v", "--version"):
        from pallet import __version__

        print(f"Pallet version {__version__}")
        return 0
    if verb == "runtime":
        from pallet.runtime.cli import main as runtime_main

        return runtime_main(verb_args)
    return run_verb(ctx, verb, verb_args)


# -- `--format` templates ------------------------------------------------------------------------
# The Go-template subset lives in cli/format.py (fields, variables, pipelines, range/if/with,
# json/index/join/...); imported only by verbs that take --format.


def render_template(template: str, data: Any) -> str:
    """Render `template` over `data`; ValueError with Go's wording for what it cannot do."""
    from pallet.cli.format import execute_template

    return execute_template(template, data)


if __name__ == "__main__":
    sys.exit(main())
