"""`pallet images`: list images, laid out like `docker images` (also `pallet image ls`)."""

from __future__ import annotations

import sys

from pallet.errors import InvalidArgument

TYPE_CHECKING = False  # typing costs ~3 ms of CLI start-up; mypy reads this name as typing's
if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from typing import Any

    from pallet.cli.args import Parser
    from pallet.cli.main import Context

HEADERS = {"Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST", "ID": "IMAGE ID",
           "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE",
           "Containers": "CONTAINERS"}


def filters_param(values: Sequence[str]) -> dict[str, dict[str, bool]]:
    """`--filter KEY=VALUE`... as the API's filters map (`{"key": {"value": true}}`)."""
    out: dict[str, dict[str, bool]] = {}
    for v in values:
        key, sep, value = v.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"bad format of filter (expected name=value): {v}")
        out.setdefault(key, {})[value] = True
    return out


def rows(summaries: list[dict[str, Any]], *, no_trunc: bool = False) -> Iterator[dict[str, Any]]:
    """One row per tag (an untagged image: one row of <none>), as `docker images` shows them."""
    from pallet.cli.format import NONE, created_at, human_size, short_id, since, split_reference

    for s in summaries:
        digest = s["RepoDigests"][0].partition("@")[2] if s.get("RepoDigests") else NONE
        base = {
            "ID": s["Id"] if no_trunc else short_id(s["Id"]),
            "Digest": digest,
            "CreatedSince": since(int(s.get("Created") or 0)),
            "CreatedAt": created_at(int(s.get("Created") or 0)),
            "Size": human_size(s.get("Size") or 0),
            "Containers": str(s["Containers"]) if s.get("Containers", -1) >= 0 else "N/A",
        }
        refs = [split_reference(t) for t in s.get("RepoTags") or []]
        if not refs:
            refs = [(split_reference(d)[0], NONE) for d in s.get("RepoDigests") or []][:1] or [(NONE, NONE)]
        for repo, tag in refs:
            yield {"Repository": repo, "Tag": tag, **base}


def build_parser(prog: str = "pallet images") -> Parser:
    from pallet.cli.commands.container import parser

    p = parser(prog, "List images")
    p.add_argument("reference", nargs="?", metavar="REPOSITORY[:TAG]")
    p.add_argument("-a", "--all", action="store_true",
                   help="Show all images (default hides intermediate images)")
    p.add_argument("-q", "--quiet", action="store_true", help="Only show image IDs")
    p.add_argument("--no-trunc", action="store_true", help="Don't truncate output")
    p.add_argument("--digests", action="store_true", help="Show digests")
    p.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="Filter output (dangling, label, reference, before, since, until)")
    p.add_argument("--format", help="'table', 'table TEMPLATE', 'json' or a Go template")
    return p


def main(ctx: Context, argv: list[str], prog: str = "pallet images") -> int:
    args = build_parser(prog).parse_args(argv)
    filters = filters_param(args.filter)
    if args.reference:
        filters.setdefault("reference", {})[args.reference] = True
    summaries = ctx.client().get_json("/images/json", params={
        "all": args.all or None, "filters": filters or None})
    if args.quiet:
        from pallet.cli.format import short_id

        ids = dict.fromkeys(s["Id"] if args.no_trunc else short_id(s["Id"]) for s in summaries)
        sys.stdout.write("".join(f"{i}\n" for i in ids))
        return 0
    from pallet.cli.format import render

    columns = ["Repository", "Tag", *(["Digest"] if args.digests else []), "ID", "CreatedSince", "Size"]
    try:
        sys.stdout.write(render(args.format, columns, HEADERS, list(rows(summaries, no_trunc=args.no_trunc))))
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from exc
    return 0
