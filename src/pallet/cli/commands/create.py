"""`pallet create`: create a container without starting it (prints its id), as `docker create`."""

from __future__ import annotations

import sys

from pallet.errors import InvalidArgument, PalletError

TYPE_CHECKING = False  # typing costs ~3 ms of CLI start-up; mypy reads this name as typing's
if TYPE_CHECKING:
    from pallet.cli.main import Context


def main(ctx: Context, argv: list[str], prog: str = "pallet create") -> int:
    from pallet.cli.commands.run import build_parser, create, create_request, report

    args = build_parser(prog, run=False).parse_args(argv)
    try:
        body = create_request(args, detach=True)
        # docker create keeps the stream flags: a later `start -a` attaches to them
        body.update(AttachStdin=args.interactive, AttachStdout=True, AttachStderr=True,
                    StdinOnce=args.interactive)
        print(create(ctx.client(), args, body))
    except InvalidArgument as exc:
        print(f"pallet: {exc}\nSee '{prog} --help'.", file=sys.stderr)
        return 125
    except PalletError as exc:
        report(prog, exc)
        return 125
    return 0



