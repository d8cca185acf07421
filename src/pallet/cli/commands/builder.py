"""`pallet builder`: manage the build cache (`prune`) and its cache mounts (`cache ls|export|import|rm`).

`builder prune` is `docker builder prune`: every cache mount goes, with the cached steps no named
image builds on (`-a`: all cached steps). Cache mounts (`RUN --mount=type=cache,id=ID`) can be
saved as a tar and restored, e.g. to warm a CI machine: `pallet builder cache export ID FILE`,
`pallet builder cache import ID FILE` (`-` for stdout/stdin).
"""

from __future__ import annotations

import argparse
import shutil
import sys

from pallet.cli.commands.container import HelpFormatter
from pallet.errors import InvalidArgument

TYPE_CHECKING = False  # typing costs ~3 ms of CLI start-up; mypy reads this name as typing's
if TYPE_CHECKING:
    from pallet.cli.main import Context

USAGE = """Usage:  pallet builder COMMAND

Manage builds

Commands:
  prune       Remove build cache
  cache       Manage cache mounts (ls, export ID FILE|-, import ID FILE|-, rm ID)
"""


def main(ctx: Context, argv: list[str], prog: str = "pallet builder") -> int:
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write(USAGE)
        return 0 if argv else 1
    verb, rest = argv[0], argv[1:]
    if verb == "prune":
        return _prune(ctx, rest, f"{prog} prune")
    if verb == "cache":
        return _cache(ctx, rest, f"{prog} cache")
    raise InvalidArgument(f"unknown builder command {verb!r} (prune, cache)")


def _prune(ctx: Context, argv: list[str], prog: str) -> int:
    p = argparse.ArgumentParser(prog=prog, description="Remove build cache", formatter_class=HelpFormatter)
    p.add_argument("-a", "--all", action="store_true", help="Remove all unused build cache, not just "
                   "dangling ones")
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    args = p.parse_args(argv)
    from pallet.cli.format import confirm, human_size

    if not args.force and not confirm("WARNING! This will remove all dangling build cache."
                                      if not args.all else "WARNING! This will remove all build cache."):
        return 0
    body = ctx.client().request("POST", "/build/prune", params={"all": "1"} if args.all else None).json()
    deleted = body.get("CachesDeleted") or []
    if deleted:
        print("Deleted build cache objects:")
        for d in deleted:
            print(d)
        print()
    print(f"Total reclaimed space: {human_size(int(body.get('SpaceReclaimed') or 0))}")
    return 0


def _cache(ctx: Context, argv: list[str], prog: str) -> int:
    p = argparse.ArgumentParser(prog=prog, description="Manage build cache mounts",
                                formatter_class=HelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("ls", help="List cache mounts")
    e = sub.add_parser("export", help="Write a cache mount as a tar to FILE (- for stdout)")
    e.add_argument("id")
    e.add_argument("file")
    i = sub.add_parser("import", help="Replace a cache mount with a tar from FILE (- for stdin)")
    i.add_argument("id")
    i.add_argument("file")
    r = sub.add_parser("rm", help="Remove a cache mount")
    r.add_argument("id")
    args = p.parse_args(argv)
    client = ctx.client()
    if args.command == "ls":
        from pallet.cli.format import human_size

        mounts = client.request("GET", "/pallet/build/cache-mounts", versioned=False).json()
        print(f"{'ID':<40} SIZE")
        for m in mounts:
            print(f"{m['ID']:<40} {human_size(int(m.get('Size') or 0))}")
        return 0
    if args.command == "export":
        resp = client.request("GET", "/pallet/build/cache-mounts/export", params={"id": args.id},
                              versioned=False)
        if args.file == "-":
            if sys.stdout.isatty():
                raise InvalidArgument("refusing to write a tar to a terminal: give a FILE or redirect")
            for chunk in resp.iter_chunks():
                sys.stdout.buffer.write(chunk)
            return 0
        tmp = args.file + ".tmp"
        with open(tmp, "wb") as f:
            for chunk in resp.iter_chunks():
                f.write(chunk)
        shutil.move(tmp, args.file)
        return 0
    if args.command == "rm":
        client.request("DELETE", "/pallet/build/cache-mounts", params={"id": args.id}, versioned=False)
        print(args.id)
        return 0
    from pallet.cli.commands.load import open_input

    with open_input(args.file, "no tar on standard input: give a FILE or pipe one in") as f:
        client.request("POST", "/pallet/build/cache-mounts/import", params={"id": args.id}, data=f,
                       headers={"Content-Type": "application/x-tar"}, versioned=False)
    return 0
