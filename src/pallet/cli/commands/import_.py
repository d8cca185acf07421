"""`pallet import`: make an image from a rootfs tarball (file or `-`), as `docker import`.

The module is `import_` because `import` is a Python keyword; the dispatcher maps the verb."""

from __future__ import annotations

import argparse
import sys

from pallet.cli.commands.container import HelpFormatter

TYPE_CHECKING = False  # typing costs ~3 ms of CLI start-up; mypy reads this name as typing's
if TYPE_CHECKING:
    from pallet.cli.main import Context


def main(ctx: Context, argv: list[str], prog: str = "pallet import") -> int:
    p = argparse.ArgumentParser(prog=prog, description="Import the contents from a tarball to create a "
                                "filesystem image", formatter_class=HelpFormatter)
    p.add_argument("file", metavar="file|-")
    p.add_argument("reference", nargs="?", metavar="REPOSITORY[:TAG]")
    p.add_argument("-c", "--change", action="append", default=[],
                   help="Apply Dockerfile instruction to the created image (CMD, ENTRYPOINT, ENV, "
                        "EXPOSE, LABEL, USER, WORKDIR, VOLUME, ONBUILD, STOPSIGNAL)")
    p.add_argument("-m", "--message", default="", help="Set commit message for imported image")
    args = p.parse_args(argv)
    from urllib.parse import urlencode

    from pallet.cli.commands.load import open_input

    query = [("fromSrc", "-")]
    if args.reference:
        query.append(("repo", args.reference))
    if args.message:
        query.append(("message", args.message))
    query += [("changes", c) for c in args.change]  # repeated, as the docker CLI sends them
    tty = "no tarball on standard input: give a FILE or pipe one into `pallet import -`"
    with open_input(args.file, tty) as f:
        resp = ctx.client().request("POST", "/images/create?" + urlencode(query), data=f,
                                    headers={"Content-Type": "application/x-tar"})
        for msg in resp.iter_json():
            if "status" in msg:
                sys.stdout.write(f"{msg['status']}\n")
    return 0
