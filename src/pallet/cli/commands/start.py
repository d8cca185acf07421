"""`pallet start`: start stopped containers; `-a`/`-i` attach to one, as `docker start`."""

from __future__ import annotations

import sys

from pallet.errors import PalletError

TYPE_CHECKING = False  # typing costs ~3 ms of CLI start-up; mypy reads this name as typing's
if TYPE_CHECKING:
    from pallet.cli.args import Parser
    from pallet.cli.main import Context


def build_parser(prog: str = "pallet start") -> Parser:
    """The parser of `pallet start` (argparse's calls; pallet.cli.args reads the common command lines)."""
    from pallet.cli.commands.container import parser

    p = parser(prog, "Start one or more stopped containers")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.add_argument("-a", "--attach", action="store_true", help="Attach STDOUT/STDERR and forward signals")
    p.add_argument("-i", "--interactive", action="store_true", help="Attach container's STDIN")
    p.add_argument("--detach-keys", help="Override the key sequence for detaching a container")
    return p


def main(ctx: Context, argv: list[str], prog: str = "pallet start") -> int:
    from pallet.cli.commands.container import error_line, for_each, path

    args = build_parser(prog).parse_args(argv)
    client = ctx.client()
    if not (args.attach or args.interactive):
        return for_each(args.containers, lambda ref: client.request("POST", path(ref, "/start")).read())
    if len(args.containers) > 1:
        print("Error: you cannot start and attach multiple containers at once", file=sys.stderr)
        return 1
    from pallet.cli.commands.run import attach_start_wait

    try:
        info = client.get_json(path(args.containers[0], "/json"))
    except PalletError as exc:
        print(error_line(exc), file=sys.stderr)
        return 1
    config, host = info.get("Config") or {}, info.get("HostConfig") or {}
    return attach_start_wait(client, info["Id"], tty=bool(config.get("Tty")),
                             stdin=args.interactive and bool(config.get("OpenStdin")),
                             auto_remove=bool(host.get("AutoRemove")), detach_keys=args.detach_keys,
                             prog=prog)
