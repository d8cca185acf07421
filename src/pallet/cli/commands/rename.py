"""`pallet rename`: rename a container, as `docker rename`."""

from __future__ import annotations

import sys

from pallet.errors import PalletError

TYPE_CHECKING = False  # typing costs ~3 ms of CLI start-up; mypy reads this name as typing's
if TYPE_CHECKING:
    from pallet.cli.main import Context


def main(ctx: Context, argv: list[str], prog: str = "pallet rename") -> int:
    from pallet.cli.commands.container import error_line, parser, path

    p = parser(prog, "Rename a container")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("new_name", metavar="NEW_NAME")
    args = p.parse_args(argv)
    try:
        ctx.client().request("POST", path(args.container, "/rename"), params={"name": args.new_name}).read()
    except PalletError as exc:
        print(error_line(exc), file=sys.stderr)
        return 1
    return 0
