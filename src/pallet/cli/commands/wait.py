"""`pallet wait`: block until containers stop and print their exit codes, as `docker wait`."""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs ~3 ms of CLI start-up; mypy reads this name as typing's
if TYPE_CHECKING:
    from pallet.cli.args import Parser
    from pallet.cli.main import Context


def build_parser(prog: str = "pallet wait") -> Parser:
    """The parser of `pallet wait` (argparse's calls; pallet.cli.args reads the common command lines)."""
    from pallet.cli.commands.container import parser

    p = parser(prog, "Block until one or more containers stop, then print their exit codes")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    return p


def main(ctx: Context, argv: list[str], prog: str = "pallet wait") -> int:
    from pallet.cli.commands.container import for_each, path

    args = build_parser(prog).parse_args(argv)
    client = ctx.client()

    def wait(ref: str) -> None:
        result = client.post_json(path(ref, "/wait")) or {}
        if (result.get("Error") or {}).get("Message"):
            from pallet.api.client import APIError

            raise APIError(result["Error"]["Message"])
        print(result.get("StatusCode"), flush=True)

    return for_each(args.containers, wait, echo=False)
