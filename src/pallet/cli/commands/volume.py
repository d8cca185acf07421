"""`pallet volume COMMAND`: manage volumes (Docker's `docker volume ...`), same output."""

from __future__ import annotations

import argparse
import sys

from pallet.api.client import quote
from pallet.cli.commands.container import HelpFormatter
from pallet.errors import InvalidArgument, PalletError

TYPE_CHECKING = False  # typing costs ~3 ms of CLI start-up; mypy reads this name as typing's
if TYPE_CHECKING:
    from pallet.cli.main import Context

USAGE = """Usage:  pallet volume COMMAND

Manage volumes

Commands:
  create      Create a volume
  inspect     Display detailed information on one or more volumes
  ls          List volumes
  prune       Remove unused local volumes
  rm          Remove one or more volumes

Run 'pallet volume COMMAND --help' for more information on a command.
"""


def create(ctx: Context, argv: list[str]) -> int:
    from pallet.cli.format import key_value_pairs

    p = argparse.ArgumentParser(prog="pallet volume create", description="Create a volume",
                                formatter_class=HelpFormatter)
    p.add_argument("name", nargs="?", metavar="VOLUME")
    p.add_argument("--name", dest="name_flag", help="Specify volume name")
    p.add_argument("-d", "--driver", default="local", help='Specify volume driver name (default "local")')
    p.add_argument("--label", action="append", default=[], help="Set metadata for a volume")
    p.add_argument("-o", "--opt", action="append", default=[], help="Set driver specific options")
    args = p.parse_args(argv)
    if args.name and args.name_flag and args.name != args.name_flag:
        raise InvalidArgument("conflicting options: either specify --name or provide positional arg, "
                              "not both")
    body = {"Name": args.name or args.name_flag or "", "Driver": args.driver,
            "DriverOpts": key_value_pairs(args.opt, "option"), "Labels": key_value_pairs(args.label, "label")}
    volume = ctx.client().post_json("/volumes/create", body=body)
    print(volume["Name"])
    return 0


def ls(ctx: Context, argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="pallet volume ls", description="List volumes",
                                formatter_class=HelpFormatter)
    p.add_argument("-q", "--quiet", action="store_true", help="Only display volume names")
    p.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="Provide filter values (e.g. 'dangling=true')")
    p.add_argument("--format", help="Format output using a Go template, 'table' or 'json'")
    args = p.parse_args(argv)
    from pallet.cli.commands.images import filters_param
    from pallet.cli.format import render

    filters = filters_param(args.filter)
    body = ctx.client().get_json("/volumes", params={"filters": filters or None})
    volumes = sorted(body.get("Volumes") or [], key=lambda v: v["Name"])
    for w in body.get("Warnings") or []:
        print(w, file=sys.stderr)
    if args.quiet:
        sys.stdout.write("".join(v["Name"] + "\n" for v in volumes))
        return 0
    rows = [{**v, "Labels": ",".join(f"{k}={val}" for k, val in sorted((v.get("Labels") or {}).items())),
             "Links": "N/A", "Size": "N/A"} for v in volumes]
    if args.format is None or args.format.strip() == "table":
        from pallet.cli.format import align

        sys.stdout.write(align([["DRIVER", "VOLUME NAME"], *([r["Driver"], r["Name"]] for r in rows)],
                               minwidth=10))
        return 0
    try:
        sys.stdout.write(render(args.format, ["Driver", "Name"],
                                {"Driver": "DRIVER", "Name": "VOLUME NAME", "Mountpoint": "MOUNTPOINT",
                                 "Scope": "SCOPE", "Labels": "LABELS", "CreatedAt": "CREATED"}, rows))
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from exc
    return 0


def inspect(ctx: Context, argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="pallet volume inspect", description="Display detailed information "
                                "on one or more volumes", formatter_class=HelpFormatter)
    p.add_argument("volumes", nargs="+", metavar="VOLUME")
    p.add_argument("-f", "--format", help="Format output using a Go template ('json' for JSON)")
    args = p.parse_args(argv)
    from pallet.cli.format import inspect_many

    return inspect_many(ctx.client(), [f"/volumes/{quote(n, safe='')}" for n in args.volumes], args.format)


def rm(ctx: Context, argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="pallet volume rm", description="Remove one or more volumes",
                                formatter_class=HelpFormatter)
    p.add_argument("volumes", nargs="+", metavar="VOLUME")
    p.add_argument("-f", "--force", action="store_true", help="Force the removal of one or more volumes")
    args = p.parse_args(argv)
    client = ctx.client()
    status = 0
    for name in args.volumes:
        try:
            client.request("DELETE", f"/volumes/{quote(name, safe='')}",
                           params={"force": "1" if args.force else None}).read()
        except PalletError as exc:
            print(f"Error: {exc}", file=sys.stderr)
            status = 1
            continue
        print(name)
    return status


def prune(ctx: Context, argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="pallet volume prune", description="Remove unused local volumes",
                                formatter_class=HelpFormatter)
    p.add_argument("-a", "--all", action="store_true",
                   help="Remove all unused volumes, not just anonymous ones")
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    p.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="Provide filter values (e.g. 'label=<label>')")
    args = p.parse_args(argv)
    from pallet.cli.commands.images import filters_param
    from pallet.cli.format import confirm, human_size

    filters = filters_param(args.filter)
    if args.all:
        filters.setdefault("all", {})["true"] = True
    if not args.force:
        warning = ("WARNING! This will remove all local volumes not used by at least one container."
                   if args.all else
                   "WARNING! This will remove anonymous local volumes not used by at least one container.")
        if not confirm(warning):
            return 0
    body = ctx.client().post_json("/volumes/prune", params={"filters": filters or None})
    names = body.get("VolumesDeleted") or []
    if names:
        print("Deleted Volumes:")
        for name in names:
            print(name)
        print()
    print(f"Total reclaimed space: {human_size(body.get('SpaceReclaimed') or 0)}")
    return 0


COMMANDS = {"create": create, "ls": ls, "list": ls, "inspect": inspect, "rm": rm, "remove": rm,
            "prune": prune}


def main(ctx: Context, argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0
    sub, rest = argv[0], argv[1:]
    if sub in COMMANDS:
        return COMMANDS[sub](ctx, rest)
    print(f"pallet volume: unknown command {sub!r}\nSee 'pallet volume --help'", file=sys.stderr)
    return 1
