"""`pallet rmi`: remove images, as `docker rmi` (untag; delete with the last name)."""

from __future__ import annotations

import argparse
import sys

from pallet.cli.commands.container import HelpFormatter
from pallet.errors import PalletError

TYPE_CHECKING = False  # typing costs ~3 ms of CLI start-up; mypy reads this name as typing's
if TYPE_CHECKING:
    from pallet.cli.main import Context


def main(ctx: Context, argv: list[str], prog: str = "pallet rmi") -> int:
    p = argparse.ArgumentParser(prog=prog, description="Remove one or more images",
                                formatter_class=HelpFormatter)
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("-f", "--force", action="store_true", help="Force removal of the image")
    p.add_argument("--no-prune", action="store_true", help="Do not delete untagged parents")
    args = p.parse_args(argv)
    from pallet.api.client import quote

    client = ctx.client()
    status = 0
    for image in args.images:  # as `docker rmi`: go on after a failure, exit 1 at the end
        try:
            items = client.request("DELETE", f"/images/{quote(image, safe='/:@')}", params={
                "force": args.force, "noprune": args.no_prune}).json()
        except PalletError as exc:
            print(f"Error: {exc}", file=sys.stderr)
            status = 1
            continue
        for item in items or []:
            for key, value in item.items():
                print(f"{key}: {value}")
    return status
