"""`pallet search`: search a registry's index for images (GET /images/search), as docker search."""

from __future__ import annotations

import argparse
import json
import sys

from pallet.cli.commands.container import HelpFormatter
from pallet.cli.commands.login import auth_header
from pallet.errors import InvalidArgument

TYPE_CHECKING = False  # typing costs ~3 ms of CLI start-up; mypy reads this name as typing's
if TYPE_CHECKING:
    from typing import Any

    from pallet.cli.main import Context

DESCRIPTION_WIDTH = 45
HEADERS = {"Name": "NAME", "Description": "DESCRIPTION", "StarCount": "STARS", "IsOfficial": "OFFICIAL",
           "IsAutomated": "AUTOMATED"}
DEFAULT_FIELDS = ("Name", "Description", "StarCount", "IsOfficial")


def rows(results: list[dict[str, Any]], no_trunc: bool) -> list[dict[str, Any]]:
    """The docker CLI's search formatter fields: the description on one line, cut at 45
    characters with an ellipsis unless --no-trunc, [OK] for official images."""
    out = []
    for r in results:
        desc = " ".join(str(r.get("description") or "").split())
        if not no_trunc and len(desc) > DESCRIPTION_WIDTH:
            desc = desc[:DESCRIPTION_WIDTH - 1] + "…"
        out.append({"Name": r.get("name", ""), "Description": desc,
                    "StarCount": str(r.get("star_count", 0)),
                    "IsOfficial": "[OK]" if r.get("is_official") else "",
                    "IsAutomated": "[OK]" if r.get("is_automated") else ""})
    return out


def parse_filter_args(values: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for v in values:
        key, sep, value = v.partition("=")
        if not sep:
            raise InvalidArgument(f"bad format of filter (expected name=value): {v}")
        out.setdefault(key.strip().lower(), []).append(value.strip())
    return out


def main(ctx: Context, argv: list[str], prog: str = "pallet search") -> int:
    p = argparse.ArgumentParser(prog=prog, description="Search a registry for images",
                                formatter_class=HelpFormatter)
    p.add_argument("-f", "--filter", action="append", default=[],
                   help="Filter output based on conditions provided")
    p.add_argument("--format", help="Pretty-print search using a Go template")
    p.add_argument("--limit", type=int, default=None, help="Max number of search results")
    p.add_argument("--no-trunc", action="store_true", help="Don't truncate output")
    p.add_argument("term", metavar="TERM")
    args = p.parse_args(argv)
    filters = parse_filter_args(args.filter)
    params = {"term": args.term, "limit": args.limit,
              "filters": json.dumps(filters) if filters else None}
    results = ctx.client().request("GET", "/images/search", params=params,
                                   headers=auth_header(args.term)).json()
    from pallet.cli.format import render

    sys.stdout.write(render(args.format, DEFAULT_FIELDS, HEADERS, rows(results or [], args.no_trunc)))
    return 0
