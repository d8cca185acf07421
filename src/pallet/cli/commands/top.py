"""`pallet top`: the processes of a container (`ps` options pass through), as `docker top`."""

from __future__ import annotations

import sys

from pallet.errors import PalletError

TYPE_CHECKING = False  # typing costs ~3 ms of CLI start-up; mypy reads this name as typing's
if TYPE_CHECKING:
    from pallet.cli.main import Context


def main(ctx: Context, argv: list[str], prog: str = "pallet top") -> int:
    import argparse

    from pallet.cli.commands.container import error_line, parser, path
    from pallet.cli.format import align

    p = parser(prog, "Display the running processes of a container")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("ps_args", nargs=argparse.REMAINDER, metavar="[ps OPTIONS]")
    args = p.parse_args(argv)
    try:
        body = ctx.client().get_json(path(args.container, "/top"),
                                     params={"ps_args": " ".join(args.ps_args) or None})
    except PalletError as exc:
        print(error_line(exc), file=sys.stderr)
        return 1
    sys.stdout.write(align([body.get("Titles") or [], *(body.get("Processes") or [])]))
    return 0
