"""`pallet commit`: a new image from a container's changes, as `docker commit` (prints its id)."""

from __future__ import annotations

import sys
from urllib.parse import urlencode

from pallet.errors import PalletError

TYPE_CHECKING = False  # typing costs ~3 ms of CLI start-up; mypy reads this name as typing's
if TYPE_CHECKING:
    from pallet.cli.main import Context


def commit_query(container: str, reference: str | None, *, author: str | None, message: str | None,
                 changes: list[str], pause: bool) -> str:
    """The /commit query; `changes` repeats (moby reads r.Form["changes"])."""
    from pallet.cli.format import split_reference

    q: list[tuple[str, str]] = [("container", container)]
    if reference:
        repo, tag = split_reference(reference)
        q.append(("repo", repo))
        if tag != "<none>":
            q.append(("tag", tag))
    if message:
        q.append(("comment", message))
    if author:
        q.append(("author", author))
    q.append(("pause", "1" if pause else "0"))
    q += [("changes", c) for c in changes]
    return urlencode(q)


def main(ctx: Context, argv: list[str], prog: str = "pallet commit") -> int:
    from pallet.cli.commands.container import error_line, parser

    p = parser(prog, "Create a new image from a container's changes")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("reference", nargs="?", metavar="REPOSITORY[:TAG]")
    p.add_argument("-a", "--author", help='Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")')
    p.add_argument("-m", "--message", help="Commit message")
    p.add_argument("-c", "--change", action="append", default=[],
                   help="Apply Dockerfile instruction to the image")
    p.add_argument("-p", "--pause", default="true", choices=["true", "false"],
                   help="Pause container during commit (default true)")
    args = p.parse_args(argv)
    query = commit_query(args.container, args.reference, author=args.author, message=args.message,
                         changes=args.change, pause=args.pause == "true")
    try:
        result = ctx.client().post_json(f"/commit?{query}") or {}
    except PalletError as exc:
        print(error_line(exc), file=sys.stderr)
        return 1
    print(result.get("Id", ""))
    return 0
