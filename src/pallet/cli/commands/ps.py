"""`pallet ps`: list containers in the docker CLI's table (also `pallet container ls`).

Truncation as cli/command/formatter/container.go: ids to 12 hex digits, COMMAND quoted and cut
to 20 characters with an ellipsis, an image given by digest shown as a short id, a reference's
digest dropped, NAMES the first name without its slash. --no-trunc keeps everything."""

from __future__ import annotations

import sys

from pallet.errors import InvalidArgument

TYPE_CHECKING = False  # typing costs ~3 ms of CLI start-up; mypy reads this name as typing's
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from pallet.cli.args import Parser
    from pallet.cli.main import Context

HEADERS = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "RunningFor": "CREATED",
           "CreatedAt": "CREATED AT", "Status": "STATUS", "Ports": "PORTS", "Names": "NAMES",
           "Size": "SIZE", "Labels": "LABELS", "Mounts": "MOUNTS", "Networks": "NETWORKS",
           "State": "STATE", "LocalVolumes": "LOCAL VOLUMES"}
DEFAULT = ["ID", "Image", "Command", "RunningFor", "Status", "Ports", "Names"]


def ellipsis(s: str, maxlen: int) -> str:
    """docker's formatter.Ellipsis: cut to maxlen characters, the last one an ellipsis."""
    return s if len(s) <= maxlen else s[:maxlen - 1] + "…"


def format_ports(ports: list[Mapping[str, Any]]) -> str:
    """`0.0.0.0:8080->80/tcp, 443/tcp` (api/types DisplayablePorts, without range folding)."""
    out = []
    for p in sorted(ports or [], key=lambda p: (p.get("PrivatePort", 0), p.get("Type", ""))):
        inner = f"{p.get('PrivatePort')}/{p.get('Type', 'tcp')}"
        if p.get("PublicPort"):
            ip = p.get("IP", "")
            out.append(f"{f'[{ip}]' if ':' in ip else ip}:{p['PublicPort']}->{inner}")  # net.JoinHostPort
        else:
            out.append(inner)
    return ", ".join(dict.fromkeys(out))


def row(c: Mapping[str, Any], *, no_trunc: bool = False, now: float | None = None) -> dict[str, str]:
    from pallet.cli.format import created_at, human_size, since

    image = str(c.get("Image") or "")
    if not no_trunc:
        if image.startswith("sha256:"):
            image = image[7:19]
        elif "@" in image:
            image = image.split("@")[0]
    command = str(c.get("Command") or "")
    names = [n.lstrip("/") for n in c.get("Names") or []]
    if not no_trunc:  # the first name that is not a link (links hold a second slash)
        names = [n for n in names if "/" not in n][:1] or names[:1]
    size = ""
    if c.get("SizeRw") is not None or c.get("SizeRootFs") is not None:
        size = human_size(c.get("SizeRw") or 0)
        if c.get("SizeRootFs"):
            size += f" (virtual {human_size(c['SizeRootFs'])})"
    labels = c.get("Labels") or {}
    mounts = [m.get("Name") or m.get("Source") or "" for m in c.get("Mounts") or []]
    networks = ((c.get("NetworkSettings") or {}).get("Networks") or {}).keys()
    return {
        "ID": str(c.get("Id", "")) if no_trunc else str(c.get("Id", ""))[:12],
        "Image": image,
        "Command": f'"{command if no_trunc else ellipsis(command, 20)}"',
        "RunningFor": since(int(c.get("Created") or 0), now),
        "CreatedAt": created_at(int(c.get("Created") or 0)),
        "Status": str(c.get("Status") or ""),
        "State": str(c.get("State") or ""),
        "Ports": format_ports(c.get("Ports") or []),
        "Names": ",".join(names),
        "Size": size,
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        "Mounts": ",".join(mounts if no_trunc else [ellipsis(m, 15) for m in mounts]),
        "Networks": ",".join(sorted(networks)),
        "LocalVolumes": str(sum(1 for m in c.get("Mounts") or [] if m.get("Driver") == "local")),
    }


def build_parser(prog: str = "pallet ps") -> Parser:
    """The parser of `pallet ps` (argparse's calls; pallet.cli.args reads the common command lines)."""
    from pallet.cli.commands.container import parser

    p = parser(prog, "List containers")
    p.add_argument("-a", "--all", action="store_true",
                   help="Show all containers (default shows just running)")
    p.add_argument("-q", "--quiet", action="store_true", help="Only display container IDs")
    p.add_argument("-n", "--last", type=int, default=-1,
                   help="Show n last created containers (includes all states)")
    p.add_argument("-l", "--latest", action="store_true",
                   help="Show the latest created container (includes all states)")
    p.add_argument("-s", "--size", action="store_true", help="Display total file sizes")
    p.add_argument("--no-trunc", action="store_true", help="Don't truncate output")
    p.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="Filter output based on conditions provided")
    p.add_argument("--format", help="'table', 'table TEMPLATE', 'json' or a Go template")
    return p


def main(ctx: Context, argv: list[str], prog: str = "pallet ps") -> int:
    from pallet.cli.commands.images import filters_param

    args = build_parser(prog).parse_args(argv)
    limit = 1 if args.latest else args.last
    want_size = args.size or bool(args.format and "{{.Size}}" in args.format.replace(" ", ""))
    containers = ctx.client().get_json("/containers/json", params={
        "all": args.all or limit > 0 or None, "limit": limit if limit > 0 else None,
        "size": want_size or None, "filters": filters_param(args.filter) or None}) or []
    if args.quiet:
        sys.stdout.write("".join((c["Id"] if args.no_trunc else c["Id"][:12]) + "\n" for c in containers))
        return 0
    from pallet.cli.format import align, render

    rows = [row(c, no_trunc=args.no_trunc) for c in containers]
    fmt = args.format
    try:
        if fmt is None or fmt.strip() == "table":
            cols = DEFAULT + (["Size"] if args.size else [])
            # the docker CLI's tabwriter: minwidth 10, padding 3 (cli/command/formatter)
            sys.stdout.write(align([[HEADERS[f] for f in cols], *([r[f] for f in cols] for r in rows)],
                                   minwidth=10))
        else:
            sys.stdout.write(render(fmt, DEFAULT, HEADERS, rows))
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from exc
    return 0
