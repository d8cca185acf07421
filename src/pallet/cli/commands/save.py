"""`pallet save`: write images to a tar archive (`docker save` format), to a file or stdout."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile

from pallet.cli.commands.container import HelpFormatter
from pallet.errors import InvalidArgument

TYPE_CHECKING = False  # typing costs ~3 ms of CLI start-up; mypy reads this name as typing's
if TYPE_CHECKING:
    from pallet.cli.main import Context


def main(ctx: Context, argv: list[str], prog: str = "pallet save") -> int:
    p = argparse.ArgumentParser(prog=prog, description="Save one or more images to a tar archive "
                                "(streamed to STDOUT by default)", formatter_class=HelpFormatter)
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("-o", "--output", help="Write to a file, instead of STDOUT")
    args = p.parse_args(argv)
    to_stdout = not args.output or args.output == "-"
    if to_stdout and sys.stdout.isatty():
        raise InvalidArgument("cowardly refusing to save to a terminal. Use the -o flag or redirect")
    from urllib.parse import urlencode

    # names= repeated, one per image (GET /images/get).
    resp = ctx.client().request("GET", "/images/get?" + urlencode([("names", n) for n in args.images]))
    if to_stdout:
        out = sys.stdout.buffer
        for chunk in resp.iter_chunks():
            out.write(chunk)
        out.flush()
        return 0
    # Through a temporary file beside the target: a failed save leaves no partial archive.
    target = os.path.abspath(args.output)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", dir=os.path.dirname(target))
    except OSError as exc:
        resp.close()
        raise InvalidArgument(f"cannot write {args.output}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in resp.iter_chunks():
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)  # as `docker save -o`: the archive may hold private layers
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return 0
