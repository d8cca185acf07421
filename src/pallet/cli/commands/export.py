"""`pallet export`: a container's filesystem as a tar archive, to -o FILE or a non-terminal stdout."""

from __future__ import annotations

import os
import sys

from pallet.errors import InvalidArgument, PalletError

TYPE_CHECKING = False  # typing costs ~3 ms of CLI start-up; mypy reads this name as typing's
if TYPE_CHECKING:
    from pallet.cli.main import Context


def main(ctx: Context, argv: list[str], prog: str = "pallet export") -> int:
    from pallet.cli.commands.container import error_line, parser, path

    p = parser(prog, "Export a container's filesystem as a tar archive")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("-o", "--output", help="Write to a file, instead of STDOUT")
    args = p.parse_args(argv)
    if not args.output and sys.stdout.isatty():
        raise InvalidArgument("cowardly refusing to save to a terminal. Use the -o flag or redirect")
    try:
        resp = ctx.client().request("GET", path(args.container, "/export"))
        if args.output:  # through a temporary file so that a failure leaves no half archive
            tmp = f"{args.output}.{os.getpid()}.tmp"
            try:
                with open(tmp, "wb") as fh:
                    for chunk in resp.iter_chunks(256 * 1024):
                        fh.write(chunk)
                os.replace(tmp, args.output)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        else:
            for chunk in resp.iter_chunks(256 * 1024):
                sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
    except PalletError as exc:
        print(error_line(exc), file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"Error: writing {args.output or 'stdout'}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0
