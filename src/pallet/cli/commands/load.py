"""`pallet load`: load images from a tar archive (docker or OCI), from a file or stdin."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator

from pallet.cli.commands.container import HelpFormatter
from pallet.errors import InvalidArgument

TYPE_CHECKING = False  # typing costs ~3 ms of CLI start-up; mypy reads this name as typing's
if TYPE_CHECKING:
    from typing import BinaryIO

    from pallet.cli.main import Context


@contextlib.contextmanager
def open_input(path: str | None, tty_message: str) -> Iterator[BinaryIO]:
    """`path`, or stdin for None or "-" (refused with `tty_message` when it is a terminal)."""
    if not path or path == "-":
        if sys.stdin.isatty():
            raise InvalidArgument(tty_message)
        yield sys.stdin.buffer
        return
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise InvalidArgument(f"cannot open {path}: {exc.strerror or exc}") from exc
    with f:
        yield f


def main(ctx: Context, argv: list[str], prog: str = "pallet load") -> int:
    p = argparse.ArgumentParser(prog=prog, description="Load an image from a tar archive or STDIN",
                                formatter_class=HelpFormatter)
    p.add_argument("-i", "--input", help="Read from tar archive file, instead of STDIN")
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress the load output")
    args = p.parse_args(argv)
    tty = "requested load from stdin, but stdin is empty: use -i FILE or redirect"
    with open_input(args.input, tty) as f:
        resp = ctx.client().request("POST", "/images/load", params={"quiet": True}, data=f,
                                    headers={"Content-Type": "application/x-tar"})
        for msg in resp.iter_json():
            if args.quiet:
                continue
            if "stream" in msg:
                sys.stdout.write(str(msg["stream"]))
            elif "status" in msg:
                print(msg["status"])
    return 0
