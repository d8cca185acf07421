"""`pallet network COMMAND`: manage networks (Docker's `docker network ...`), same flags and output."""

from __future__ import annotations

import argparse
import sys
from urllib.parse import quote

from pallet.cli.commands.container import HelpFormatter
from pallet.errors import InvalidArgument, PalletError

TYPE_CHECKING = False  # typing costs ~3 ms of CLI start-up; mypy reads this name as typing's
if TYPE_CHECKING:
    from typing import Any

    from pallet.cli.main import Context

USAGE = """Usage:  pallet network COMMAND

Manage networks

Commands:
  connect     Connect a container to a network
  create      Create a network
  disconnect  Disconnect a container from a network
  inspect     Display detailed information on one or more networks
  ls          List networks
  prune       Remove all unused networks
  rm          Remove one or more networks

Run 'pallet network COMMAND --help' for more information on a command.
"""


def create_body(args: argparse.Namespace) -> dict[str, Any]:
    """The NetworkCreateRequest for `network create` flags. As the docker CLI: the i-th
    --gateway and --ip-range belong to the i-th --subnet."""
    from pallet.cli.format import key_value_pairs

    if len(args.gateway) > len(args.subnet) or len(args.ip_range) > len(args.subnet):
        raise InvalidArgument("every --gateway and --ip-range needs a --subnet")
    configs = []
    for i, subnet in enumerate(args.subnet):
        c = {"Subnet": subnet}
        if i < len(args.gateway):
            c["Gateway"] = args.gateway[i]
        if i < len(args.ip_range):
            c["IPRange"] = args.ip_range[i]
        configs.append(c)
    body: dict[str, Any] = {"Name": args.name, "Driver": args.driver, "Internal": args.internal,
                            "Attachable": args.attachable, "EnableIPv6": args.ipv6,
                            "Options": key_value_pairs(args.opt, "option"),
                            "Labels": key_value_pairs(args.label, "label"),
                            "IPAM": {"Driver": args.ipam_driver, "Config": configs,
                                     "Options": key_value_pairs(args.ipam_opt, "IPAM option")}}
    return body


def create(ctx: Context, argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="pallet network create", description="Create a network",
                                formatter_class=HelpFormatter)
    p.add_argument("name", metavar="NETWORK")
    p.add_argument("-d", "--driver", default="bridge", help='Driver to manage the Network (default "bridge")')
    p.add_argument("--subnet", action="append", default=[], help="Subnet in CIDR format")
    p.add_argument("--gateway", action="append", default=[], help="IPv4 or IPv6 Gateway for the subnet")
    p.add_argument("--ip-range", action="append", default=[], help="Allocate container ip from a sub-range")
    p.add_argument("--internal", action="store_true", help="Restrict external access to the network")
    p.add_argument("--attachable", action="store_true", help="Enable manual container attachment")
    p.add_argument("--ipv6", action="store_true", help="Enable or disable IPv6 networking")
    p.add_argument("--label", action="append", default=[], help="Set metadata on a network")
    p.add_argument("-o", "--opt", action="append", default=[], help="Set driver specific options")
    p.add_argument("--ipam-driver", default="default", help="IP Address Management Driver")
    p.add_argument("--ipam-opt", action="append", default=[], help="Set IPAM driver specific options")
    args = p.parse_args(argv)
    out = ctx.client().post_json("/networks/create", body=create_body(args))
    if out.get("Warning"):
        print(out["Warning"], file=sys.stderr)
    print(out["Id"])
    return 0


def _row(n: dict[str, Any]) -> dict[str, Any]:
    return {"ID": n["Id"][:12], "Name": n["Name"], "Driver": n["Driver"], "Scope": n.get("Scope", "local"),
            "IPv6": str(bool(n.get("EnableIPv6"))).lower(), "Internal": str(bool(n.get("Internal"))).lower(),
            "Labels": ",".join(f"{k}={v}" for k, v in sorted((n.get("Labels") or {}).items())),
            "CreatedAt": n.get("Created", "")}


def ls(ctx: Context, argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="pallet network ls", description="List networks",
                                formatter_class=HelpFormatter)
    p.add_argument("-q", "--quiet", action="store_true", help="Only display network IDs")
    p.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="Provide filter values (e.g. 'driver=bridge')")
    p.add_argument("--format", help="Format output using a Go template, 'table' or 'json'")
    p.add_argument("--no-trunc", action="store_true", help="Do not truncate the output")
    args = p.parse_args(argv)
    from pallet.cli.commands.images import filters_param
    from pallet.cli.format import render

    filters = filters_param(args.filter)
    nets = sorted(ctx.client().get_json("/networks", params={"filters": filters or None}),
                  key=lambda n: n["Name"])
    rows = [_row(n) for n in nets]
    if args.no_trunc:
        for r, n in zip(rows, nets):
            r["ID"] = n["Id"]
    if args.quiet:
        sys.stdout.write("".join(r["ID"] + "\n" for r in rows))
        return 0
    fmt = args.format
    if fmt is None or fmt.strip() == "table":
        fmt = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"
    headers = {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE", "IPv6": "IPV6",
               "Internal": "INTERNAL", "Labels": "LABELS", "CreatedAt": "CREATED AT"}
    try:
        sys.stdout.write(render(fmt, ["ID", "Name", "Driver", "Scope"], headers, rows))
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from exc
    return 0


def inspect(ctx: Context, argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="pallet network inspect",
                                description="Display detailed information on one or more networks",
                                formatter_class=HelpFormatter)
    p.add_argument("networks", nargs="+", metavar="NETWORK")
    p.add_argument("-f", "--format", help="Format output using a Go template ('json' for JSON)")
    p.add_argument("-v", "--verbose", action="store_true", help="Verbose output for diagnostics")
    args = p.parse_args(argv)
    from pallet.cli.format import inspect_many

    return inspect_many(ctx.client(), [f"/networks/{quote(n, safe='')}" for n in args.networks], args.format)


def rm(ctx: Context, argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="pallet network rm", description="Remove one or more networks",
                                formatter_class=HelpFormatter)
    p.add_argument("networks", nargs="+", metavar="NETWORK")
    p.add_argument("-f", "--force", action="store_true", help="Do not error if the network does not exist")
    args = p.parse_args(argv)
    client = ctx.client()
    status = 0
    for name in args.networks:
        try:
            client.request("DELETE", f"/networks/{quote(name, safe='')}").read()
        except PalletError as exc:
            if args.force and "not found" in str(exc):
                continue
            print(f"Error response from daemon: {exc}", file=sys.stderr)
            status = 1
            continue
        print(name)
    return status


def connect(ctx: Context, argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="pallet network connect", description="Connect a container to a network",
                                formatter_class=HelpFormatter)
    p.add_argument("network", metavar="NETWORK")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("--alias", action="append", default=[], help="Add network-scoped alias for the container")
    p.add_argument("--ip", help="IPv4 address (e.g., 172.30.100.104)")
    p.add_argument("--ip6", help="IPv6 address (e.g., 2001:db8::33)")
    args = p.parse_args(argv)
    ep: dict[str, Any] = {"Aliases": args.alias}
    if args.ip or args.ip6:
        ep["IPAMConfig"] = {k: v for k, v in (("IPv4Address", args.ip), ("IPv6Address", args.ip6)) if v}
    ctx.client().request("POST", f"/networks/{quote(args.network, safe='')}/connect",
                         body={"Container": args.container, "EndpointConfig": ep}).read()
    return 0


def disconnect(ctx: Context, argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="pallet network disconnect",
                                description="Disconnect a container from a network",
                                formatter_class=HelpFormatter)
    p.add_argument("network", metavar="NETWORK")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("-f", "--force", action="store_true",
                   help="Force the container to disconnect from a network")
    args = p.parse_args(argv)
    ctx.client().request("POST", f"/networks/{quote(args.network, safe='')}/disconnect",
                         body={"Container": args.container, "Force": args.force}).read()
    return 0


def prune(ctx: Context, argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="pallet network prune", description="Remove all unused networks",
                                formatter_class=HelpFormatter)
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    p.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="Provide filter values (e.g. 'until=<timestamp>')")
    args = p.parse_args(argv)
    from pallet.cli.commands.images import filters_param
    from pallet.cli.format import confirm

    if not args.force and not confirm("WARNING! This will remove all custom networks not used by at least "
                                      "one container."):
        return 0
    filters = filters_param(args.filter)
    body = ctx.client().post_json("/networks/prune", params={"filters": filters or None})
    names = body.get("NetworksDeleted") or []
    if names:
        print("Deleted Networks:")
        for name in names:
            print(name)
    return 0


COMMANDS = {"create": create, "ls": ls, "list": ls, "inspect": inspect, "rm": rm, "remove": rm,
            "connect": connect, "disconnect": disconnect, "prune": prune}


def main(ctx: Context, argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0
    sub, rest = argv[0], argv[1:]
    if sub in COMMANDS:
        return COMMANDS[sub](ctx, rest)
    print(f"pallet network: unknown command {sub!r}\nSee 'pallet network --help'", file=sys.stderr)
    return 1
