"""`pallet history`: an image's history, laid out like `docker history`."""

from __future__ import annotations

import argparse
import sys

from pallet.cli.commands.container import HelpFormatter
from pallet.errors import InvalidArgument

TYPE_CHECKING = False  # typing costs ~3 ms of CLI start-up; mypy reads this name as typing's
if TYPE_CHECKING:
    from pallet.cli.main import Context

HEADERS = {"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "CreatedBy": "CREATED BY",
           "Size": "SIZE", "Comment": "COMMENT"}


def main(ctx: Context, argv: list[str], prog: str = "pallet history") -> int:
    p = argparse.ArgumentParser(prog=prog, description="Show the history of an image",
                                formatter_class=HelpFormatter)
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("-q", "--quiet", action="store_true", help="Only show image IDs")
    p.add_argument("--no-trunc", action="store_true", help="Don't truncate output")
    p.add_argument("-H", "--human", action=argparse.BooleanOptionalAction, default=True,
                   help="Print sizes and dates in human readable format (default true)")
    p.add_argument("--format", help="'table', 'table TEMPLATE', 'json' or a Go template")
    args = p.parse_args(argv)
    from pallet.api.client import quote
    from pallet.cli.format import created_at, human_size, render, short_id, since

    items = ctx.client().get_json(f"/images/{quote(args.image, safe='/:@')}/history")

    def ident(i: str) -> str:
        return i if args.no_trunc or not i.startswith("sha256:") else short_id(i)

    if args.quiet:
        sys.stdout.write("".join(f"{ident(i['Id'])}\n" for i in items))
        return 0
    rows = []
    for i in items:
        created_by = " ".join(i.get("CreatedBy", "").split()) if not args.no_trunc else i.get("CreatedBy", "")
        if not args.no_trunc and len(created_by) > 45:
            created_by = created_by[:44] + "…"  # the docker CLI's Ellipsis(.., 45)
        created = int(i.get("Created") or 0)
        rows.append({"ID": ident(i["Id"]), "CreatedBy": created_by, "Comment": i.get("Comment", ""),
                     "CreatedSince": since(created) if args.human else created_at(created),
                     "CreatedAt": created_at(created),
                     "Size": human_size(i.get("Size") or 0) if args.human else str(i.get("Size") or 0)})
    try:
        sys.stdout.write(render(args.format, ["ID", "CreatedSince", "CreatedBy", "Size", "Comment"],
                                HEADERS, rows))
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from exc
    return 0
