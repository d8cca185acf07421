"""`pallet inspect`: low-level JSON of containers or images (containers first, as docker
does when --type is not given), or a Go template of it with --format."""

from __future__ import annotations

import sys

from pallet import jsonio
from pallet.api.client import quote
from pallet.errors import InvalidArgument, NotFound, PalletError

TYPE_CHECKING = False  # typing costs ~3 ms of CLI start-up; mypy reads this name as typing's
if TYPE_CHECKING:
    from typing import Any

    from pallet.api.client import Client
    from pallet.cli.args import Parser
    from pallet.cli.main import Context


def _get(client: Client, ref: str, kind: str | None, size: bool) -> Any:
    if kind in (None, "container"):
        try:
            return client.get_json(f"/containers/{quote(ref, safe='')}/json", params={"size": size or None})
        except NotFound:
            if kind == "container":
                raise
    if kind in (None, "image"):
        try:
            return client.get_json(f"/images/{quote(ref, safe='/:@')}/json")
        except NotFound:
            if kind == "image":
                raise
    raise NotFound(f"No such object: {ref}")


def build_parser(prog: str = "pallet inspect") -> Parser:
    """The parser of `pallet inspect` (argparse's calls; pallet.cli.args reads the common command lines)."""
    from pallet.cli.commands.container import parser

    p = parser(prog, "Return low-level information on Docker objects")
    p.add_argument("names", nargs="+", metavar="NAME|ID")
    p.add_argument("-f", "--format", help="Format output using a custom template ('json' for JSON)")
    p.add_argument("-s", "--size", action="store_true",
                   help="Display total file sizes if the type is container")
    p.add_argument("--type", choices=["container", "image"], help="Only inspect objects of the given type")
    return p


def main(ctx: Context, argv: list[str], prog: str = "pallet inspect") -> int:
    from pallet.cli.commands.container import error_line

    args = build_parser(prog).parse_args(argv)
    if prog.endswith("container inspect"):
        args.type = "container"
    client = ctx.client()
    found: list[Any] = []
    rc = 0
    for name in args.names:
        try:
            found.append(_get(client, name, args.type, args.size))
        except NotFound as exc:
            # docker: "Error: No such object: x" / "Error: No such container: x"
            what = {"container": "container", "image": "image"}.get(args.type or "", "object")
            msg = str(exc) if args.type == "image" else f"No such {what}: {name}"
            print(f"Error: {msg}", file=sys.stderr)
            rc = 1
        except PalletError as exc:
            print(error_line(exc), file=sys.stderr)
            rc = 1
    if args.format and args.format != "json":
        from pallet.cli.format import execute_template

        try:
            sys.stdout.write("".join(execute_template(args.format, obj) + "\n" for obj in found))
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from exc
    else:
        sys.stdout.write(jsonio.dumps(found, indent=4) + "\n")
    return rc
