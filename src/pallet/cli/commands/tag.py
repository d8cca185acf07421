"""`pallet tag`: give an image another name, as `docker tag SOURCE TARGET`."""

from __future__ import annotations

import argparse

from pallet.cli.commands.container import HelpFormatter
from pallet.errors import InvalidArgument

TYPE_CHECKING = False  # typing costs ~3 ms of CLI start-up; mypy reads this name as typing's
if TYPE_CHECKING:
    from pallet.cli.main import Context


def split_target(target: str) -> tuple[str, str]:
    """(repo, tag) for the API's repo= and tag= (the docker CLI sends them apart); a digest
    cannot be a tag's target."""
    if "@" in target:
        raise InvalidArgument(f"refusing to create a tag with a digest reference: {target}")
    slash, colon = target.rfind("/"), target.rfind(":")
    if colon > slash:
        return target[:colon], target[colon + 1:]
    return target, ""


def main(ctx: Context, argv: list[str], prog: str = "pallet tag") -> int:
    p = argparse.ArgumentParser(prog=prog,
                                description="Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE",
                                formatter_class=HelpFormatter)
    p.add_argument("source", metavar="SOURCE_IMAGE[:TAG]")
    p.add_argument("target", metavar="TARGET_IMAGE[:TAG]")
    args = p.parse_args(argv)
    from urllib.parse import quote

    repo, tag = split_target(args.target)
    ctx.client().request("POST", f"/images/{quote(args.source, safe='/:@')}/tag",
                         params={"repo": repo, "tag": tag or None}).read()
    return 0
