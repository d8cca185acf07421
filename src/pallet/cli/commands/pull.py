"""`pallet pull`: download an image from a registry through the daemon, with docker's progress display.

`show_progress` renders the daemon's JSON progress stream as the docker CLI does
(pkg/jsonmessage DisplayJSONMessagesStream): on a terminal each layer keeps one line, updated
in place with cursor movements, and byte counts show as bars; elsewhere every message without a
bar is one plain line (`<id>: Pull complete`) and bars are left out.
"""

from __future__ import annotations

import argparse
import sys

from pallet.cli.commands.container import HelpFormatter
from pallet.cli.commands.login import auth_header

TYPE_CHECKING = False  # typing costs ~3 ms of CLI start-up; mypy reads this name as typing's
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any, TextIO

    from pallet.cli.main import Context


def _line(msg: dict[str, Any], tty: bool) -> str | None:
    """One message as jsonmessage.Display writes it; None when it shows nothing here."""
    has_progress = "progressDetail" in msg
    bar = msg.get("progress") or ""
    if not tty and bar:
        return None  # bars only on a terminal
    text = f"{msg['id']}: " if msg.get("id") else ""
    status = msg.get("status", "")
    if has_progress and tty and bar:
        return text + f"{status} {bar}"
    if "stream" in msg:
        return text + str(msg["stream"]).rstrip("\n")
    return text + status


def show_progress(messages: Iterable[dict[str, Any]], out: TextIO,
                  tty: bool | None = None) -> list[dict[str, Any]]:
    """Display a JSON progress stream on `out` (see the module docstring); returns the aux
    messages. An in-band error is raised by the client's iter_json."""
    tty = out.isatty() if tty is None else tty
    ids: dict[str, int] = {}
    aux: list[dict[str, Any]] = []
    for msg in messages:
        if "aux" in msg:
            aux.append(msg)
            continue
        diff = 0
        mid = msg.get("id")
        if mid and "progressDetail" in msg:
            if mid not in ids:
                ids[mid] = len(ids)
                if tty:
                    out.write("\n")
            diff = len(ids) - ids[mid]
            if tty:
                out.write(f"\x1b[{diff}A")
        else:
            ids = {}
        text = _line(msg, tty)
        if text is not None:
            if tty and "progressDetail" in msg:
                out.write(f"\x1b[2K\r{text}\r")
            else:
                out.write(text + "\n")
        if tty and mid and "progressDetail" in msg:
            out.write(f"\x1b[{diff}B")
        out.flush()
    return aux


def full_name(image: str) -> str:
    """What docker pull prints at the end: the full reference (docker.io/library/busybox:latest)."""
    first, sep, _ = image.partition("/")
    domain_given = sep and ("." in first or ":" in first or first == "localhost")
    name = image if domain_given else f"docker.io/{image if sep else 'library/' + image}"
    last = name.rsplit("/", 1)[-1]
    if "@" not in last and ":" not in last:
        name += ":latest"
    return name


def pull(ctx: Context, image: str, *, platform: str | None = None, all_tags: bool = False,
         quiet: bool = False, out: TextIO | None = None) -> None:
    """POST /images/create?fromImage=... with the stored credentials, showing progress."""
    out = out or sys.stdout
    if "@" in image:
        repo, tag = image.split("@", 1)
    else:
        slash, colon = image.rfind("/"), image.rfind(":")
        repo, tag = (image[:colon], image[colon + 1:]) if colon > slash else (image, "")
    if not tag and not all_tags:
        tag = "latest"
    resp = ctx.client().request("POST", "/images/create",
                                params={"fromImage": repo, "tag": tag or None, "platform": platform},
                                headers=auth_header(image))
    messages = resp.iter_json()
    if quiet:
        for _ in messages:
            pass
    else:
        show_progress(messages, out)


def main(ctx: Context, argv: list[str], prog: str = "pallet pull") -> int:
    p = argparse.ArgumentParser(prog=prog, description="Download an image from a registry",
                                formatter_class=HelpFormatter)
    p.add_argument("-a", "--all-tags", action="store_true",
                   help="Download all tagged images in the repository")
    p.add_argument("--platform", help="Set platform if server is multi-platform capable (os/arch[/variant])")
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress verbose output")
    p.add_argument("--disable-content-trust", action="store_true", default=True, help=argparse.SUPPRESS)
    p.add_argument("image", metavar="NAME[:TAG|@DIGEST]")
    args = p.parse_args(argv)
    if args.all_tags and (":" in args.image.rsplit("/", 1)[-1] or "@" in args.image):
        from pallet.errors import InvalidArgument

        raise InvalidArgument("tag can't be used with --all-tags/-a")
    pull(ctx, args.image, platform=args.platform, all_tags=args.all_tags, quiet=args.quiet)
    if not args.all_tags:
        print(full_name(args.image))
    return 0
