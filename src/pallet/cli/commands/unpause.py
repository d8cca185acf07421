"""`pallet unpause`: unpause all processes within one or more containers, as `docker unpause`."""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs ~3 ms of CLI start-up; mypy reads this name as typing's
if TYPE_CHECKING:
    from pallet.cli.main import Context


def main(ctx: Context, argv: list[str], prog: str = "pallet unpause") -> int:
    from pallet.cli.commands.container import for_each, parser, path

    p = parser(prog, "Unpause all processes within one or more containers")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    args = p.parse_args(argv)
    client = ctx.client()
    return for_each(args.containers, lambda ref: client.request("POST", path(ref, "/unpause")).read())
