"""`pallet image COMMAND`: manage images (Docker's `docker image ...`, plus `bootstrap`).

ls, rm, tag, save, load, import and history run the same modules as the top-level verbs
(`pallet images`, `pallet rmi`, ...); inspect, prune and bootstrap live here."""

from __future__ import annotations

import argparse
import sys

from pallet.cli.commands.container import HelpFormatter

TYPE_CHECKING = False  # typing costs ~3 ms of CLI start-up; mypy reads this name as typing's
if TYPE_CHECKING:
    from typing import Any

    from pallet.cli.main import Context

USAGE = """Usage:  pallet image COMMAND

Manage images

Commands:
  bootstrap   Create built-in images: hello-world, busybox, debian[:suite] (no registry needed)
  history     Show the history of an image
  import      Import the contents from a tarball to create a filesystem image
  inspect     Display detailed information on one or more images
  load        Load an image from a tar archive or STDIN
  ls          List images
  prune       Remove unused images
  rm          Remove one or more images
  save        Save one or more images to a tar archive (streamed to STDOUT by default)
  tag         Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE

Run 'pallet image COMMAND --help' for more information on a command.
"""

# Sub-commands that are top-level verbs too: module name in pallet.cli.commands.
SHARED = {"ls": "images", "list": "images", "rm": "rmi", "remove": "rmi", "tag": "tag", "save": "save",
          "load": "load", "import": "import_", "history": "history"}


def inspect(ctx: Context, argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="pallet image inspect", description="Display detailed information "
                                "on one or more images", formatter_class=HelpFormatter)
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("-f", "--format", help="Format output using a Go template ('json' for JSON)")
    args = p.parse_args(argv)
    from pallet.api.client import quote
    from pallet.cli.format import inspect_many

    return inspect_many(ctx.client(), [f"/images/{quote(i, safe='/:@')}/json" for i in args.images],
                        args.format)


def prune(ctx: Context, argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="pallet image prune", description="Remove unused images",
                                formatter_class=HelpFormatter)
    p.add_argument("-a", "--all", action="store_true",
                   help="Remove all unused images, not just dangling ones")
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    p.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="Provide filter values (e.g. 'until=<timestamp>', 'label=<key>=<value>')")
    args = p.parse_args(argv)
    from pallet.cli.commands.images import filters_param
    from pallet.cli.format import confirm, human_size

    filters = filters_param(args.filter)
    if args.all:
        filters.setdefault("dangling", {})["false"] = True
    if not args.force:
        warning = ("WARNING! This will remove all images without at least one container associated to them."
                   if args.all else "WARNING! This will remove all dangling images.")
        if not confirm(warning):
            return 0
    body = ctx.client().post_json("/images/prune", params={"filters": filters or None})
    items = body.get("ImagesDeleted") or []
    if items:
        print("Deleted Images:")
        for item in items:
            for key, value in item.items():
                print(f"{key.lower()}: {value}")
        print()
    print(f"Total reclaimed space: {human_size(body.get('SpaceReclaimed') or 0)}")
    return 0


def bootstrap(ctx: Context, argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="pallet image bootstrap", description="Create built-in images from "
                                "this host, no registry needed: hello-world, busybox, debian[:suite]",
                                formatter_class=HelpFormatter)
    p.add_argument("names", nargs="+", metavar="NAME")
    p.add_argument("--force", action="store_true", help="Recreate the image even if the name exists")
    p.add_argument("--arch", help="Machine to build for (x86_64, aarch64; default: the daemon's)")
    args = p.parse_args(argv)
    client = ctx.client()
    for name in args.names:
        # A long bootstrap (debootstrap) streams keep-alive lines; no socket timeout applies.
        resp = client.request("POST", "/pallet/images/bootstrap",
                              params={"name": name, "force": args.force or None, "arch": args.arch})
        result: dict[str, Any] = {}
        for msg in resp.iter_json():
            if isinstance(msg.get("aux"), dict):
                result = msg["aux"]
            elif msg.get("progress") and sys.stderr.isatty():
                print(f"{msg.get('status', '')} {msg['progress']}", file=sys.stderr)
        print(f"{result.get('Name', name)} {result.get('ID', '')}".rstrip())
    return 0


OWN = {"inspect": inspect, "prune": prune, "bootstrap": bootstrap}


def main(ctx: Context, argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0
    sub, rest = argv[0], argv[1:]
    if sub in OWN:
        return OWN[sub](ctx, rest)
    if sub in SHARED:
        import importlib

        module = importlib.import_module(f"pallet.cli.commands.{SHARED[sub]}")
        return int(module.main(ctx, rest, prog=f"pallet image {sub}") or 0)
    print(f"pallet image: unknown command {sub!r}\nSee 'pallet image --help'", file=sys.stderr)
    return 1
