"""`pallet kill`: send a signal (SIGKILL by default) to containers, as `docker kill`."""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs ~3 ms of CLI start-up; mypy reads this name as typing's
if TYPE_CHECKING:
    from pallet.cli.args import Parser
    from pallet.cli.main import Context


def build_parser(prog: str = "pallet kill") -> Parser:
    """The parser of `pallet kill` (argparse's calls; pallet.cli.args reads the common command lines)."""
    from pallet.cli.commands.container import parser

    p = parser(prog, "Kill one or more running containers")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.add_argument("-s", "--signal", help="Signal to send to the container")
    return p


def main(ctx: Context, argv: list[str], prog: str = "pallet kill") -> int:
    from pallet.cli.commands.container import for_each, path

    args = build_parser(prog).parse_args(argv)
    client = ctx.client()
    return for_each(args.containers, lambda ref: client.request(
        "POST", path(ref, "/kill"), params={"signal": args.signal}).read())
