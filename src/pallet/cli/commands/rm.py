"""`pallet rm`: remove containers (`-f` kills a running one first, `-v` its anonymous volumes)."""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs ~3 ms of CLI start-up; mypy reads this name as typing's
if TYPE_CHECKING:
    from pallet.cli.args import Parser
    from pallet.cli.main import Context


def build_parser(prog: str = "pallet rm") -> Parser:
    """The parser of `pallet rm` (argparse's calls; pallet.cli.args reads the common command lines)."""
    from pallet.cli.commands.container import parser

    p = parser(prog, "Remove one or more containers")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.add_argument("-f", "--force", action="store_true",
                   help="Force the removal of a running container (uses SIGKILL)")
    p.add_argument("-v", "--volumes", action="store_true",
                   help="Remove anonymous volumes associated with the container")
    p.add_argument("-l", "--link", action="store_true", help="Remove the specified link")
    return p


def main(ctx: Context, argv: list[str], prog: str = "pallet rm") -> int:
    from pallet.cli.commands.container import for_each, path

    args = build_parser(prog).parse_args(argv)
    client = ctx.client()
    params = {"force": args.force or None, "v": args.volumes or None, "link": args.link or None}
    return for_each(args.containers, lambda ref: client.request("DELETE", path(ref), params=params).read())
