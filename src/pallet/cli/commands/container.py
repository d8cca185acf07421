"""`pallet container COMMAND`: Docker's management verb for containers, and the plumbing the
container verbs share (error lines in the docker CLI's words, acting on several containers).

Each sub-command runs the module of the top-level verb (`container ls` is `ps`, `container rm`
is `rm`...); only `prune` lives here."""

from __future__ import annotations

import sys

from pallet.errors import PalletError

TYPE_CHECKING = False  # typing costs ~3 ms of CLI start-up; mypy reads this name as typing's
if TYPE_CHECKING:
    from collections.abc import Callable  # the `collections` package: ~1 ms of start-up
    from typing import Any

    from pallet.cli.args import Parser
    from pallet.cli.helpformat import HelpFormatter as HelpFormatter
    from pallet.cli.main import Context

USAGE = """Usage:  pallet container COMMAND

Manage containers

Commands:
  attach      Attach local standard input, output, and error streams to a running container
  commit      Create a new image from a container's changes
  create      Create a new container
  exec        Execute a command in a running container
  export      Export a container's filesystem as a tar archive
  inspect     Display detailed information on one or more containers
  kill        Kill one or more running containers
  logs        Fetch the logs of a container
  ls          List containers
  pause       Pause all processes within one or more containers
  port        List port mappings or a specific mapping for the container
  prune       Remove all stopped containers
  rename      Rename a container
  restart     Restart one or more containers
  rm          Remove one or more containers
  run         Create and run a new container from an image
  start       Start one or more stopped containers
  stop        Stop one or more running containers
  top         Display the running processes of a container
  unpause     Unpause all processes within one or more containers
  update      Update configuration of one or more containers
  wait        Block until one or more containers stop, then print their exit codes

Run 'pallet container COMMAND --help' for more information on a command.
"""

SHARED = {"ls": "ps", "list": "ps", "ps": "ps", "rm": "rm", "remove": "rm"} | {
    v: v for v in ("attach", "commit", "create", "exec", "export", "inspect", "kill", "logs", "pause",
                   "port", "rename", "restart", "run", "start", "stop", "top", "unpause", "update", "wait")}


def path(ref: str, suffix: str = "") -> str:
    """`/containers/<ref><suffix>` with the reference quoted for a URL path."""
    from pallet.api.client import quote

    return f"/containers/{quote(ref)}{suffix}"


def error_line(exc: BaseException) -> str:
    """The docker CLI's words: the daemon's refusals as "Error response from daemon: ...",
    everything else (cannot connect, bad input) as "Error: ..."."""
    if getattr(exc, "status", None) is not None:
        return f"Error response from daemon: {exc}"
    return f"Error: {exc}"


def for_each(refs: list[str], op: Callable[[str], Any], *, echo: bool = True) -> int:
    """Run `op` on every container as `docker stop a b` does: print each reference done, one
    error line for each failure, exit 1 if any failed."""
    rc = 0
    for ref in refs:
        try:
            op(ref)
        except PalletError as exc:
            print(error_line(exc), file=sys.stderr)
            rc = 1
            continue
        if echo:
            print(ref, flush=True)
    return rc


def __getattr__(name: str) -> Any:
    """`HelpFormatter`, imported from here by many verbs, loaded when first asked for (it is
    what imports argparse: ~9 ms that the container verbs' fast parser saves)."""
    if name == "HelpFormatter":
        from pallet.cli.helpformat import HelpFormatter

        return HelpFormatter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def parser(prog: str, description: str, usage: str | None = None) -> Parser:
    """A verb's parser: argparse's, with the fast path of pallet.cli.args for common command lines."""
    from pallet.cli.args import Parser

    return Parser(prog=prog, description=description, usage=usage)


def prune(ctx: Context, argv: list[str], prog: str = "pallet container prune") -> int:
    p = parser(prog, "Remove all stopped containers")
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    p.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="Provide filter values (e.g. 'until=<timestamp>', 'label=<key>=<value>')")
    args = p.parse_args(argv)
    from pallet.cli.commands.images import filters_param
    from pallet.cli.format import human_size

    filters = filters_param(args.filter)
    from pallet.cli.format import confirm

    if not args.force and not confirm("WARNING! This will remove all stopped containers."):
        return 0
    body = ctx.client().post_json("/containers/prune", params={"filters": filters or None}) or {}
    deleted = body.get("ContainersDeleted") or []
    if deleted:
        print("Deleted Containers:")
        print("\n".join(deleted))
        print()
    print(f"Total reclaimed space: {human_size(body.get('SpaceReclaimed') or 0)}")
    return 0


def main(ctx: Context, argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0
    sub, rest = argv[0], argv[1:]
    if sub == "prune":
        try:
            return prune(ctx, rest)
        except PalletError as exc:
            print(error_line(exc), file=sys.stderr)
            return 1
    if sub in SHARED:
        import importlib

        module = importlib.import_module(f"pallet.cli.commands.{SHARED[sub]}")
        return int(module.main(ctx, rest, prog=f"pallet container {sub}") or 0)
    print(f"pallet container: unknown command {sub!r}\nSee 'pallet container --help'", file=sys.stderr)
    return 1
