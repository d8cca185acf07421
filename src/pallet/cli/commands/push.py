"""`pallet push`: upload an image to a registry through the daemon (POST /images/{name}/push)."""

from __future__ import annotations

import argparse
import sys

from pallet.api.client import quote
from pallet.cli.commands.container import HelpFormatter
from pallet.cli.commands.login import auth_header
from pallet.cli.commands.pull import full_name, show_progress
from pallet.errors import InvalidArgument

TYPE_CHECKING = False  # typing costs ~3 ms of CLI start-up; mypy reads this name as typing's
if TYPE_CHECKING:
    from pallet.cli.main import Context


def main(ctx: Context, argv: list[str], prog: str = "pallet push") -> int:
    p = argparse.ArgumentParser(prog=prog, description="Upload an image to a registry",
                                formatter_class=HelpFormatter)
    p.add_argument("-a", "--all-tags", action="store_true",
                   help="Push all tags of an image to the repository")
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress verbose output")
    p.add_argument("--disable-content-trust", action="store_true", default=True, help=argparse.SUPPRESS)
    p.add_argument("image", metavar="NAME[:TAG]")
    args = p.parse_args(argv)
    image = args.image
    if "@" in image:
        raise InvalidArgument(f"cannot push a digest reference: {image}")
    slash, colon = image.rfind("/"), image.rfind(":")
    repo, tag = (image[:colon], image[colon + 1:]) if colon > slash else (image, "")
    if args.all_tags and tag:
        raise InvalidArgument("tag can't be used with --all-tags/-a")
    if not tag and not args.all_tags:
        tag = "latest"  # docker CLI 20.10+: only :latest unless -a
    resp = ctx.client().request("POST", f"/images/{quote(repo, safe='/:')}/push",
                                params={"tag": tag or None}, headers=auth_header(repo))
    messages = resp.iter_json()
    if args.quiet:
        for _ in messages:
            pass
        print(full_name(image) if tag else repo)
    else:
        show_progress(messages, sys.stdout)
    return 0
