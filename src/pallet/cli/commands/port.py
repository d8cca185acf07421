"""`pallet port`: a container's published ports from NetworkSettings.Ports, as `docker port`
(empty until Pallet has networking that publishes ports)."""

from __future__ import annotations

import sys

from pallet.errors import PalletError

TYPE_CHECKING = False  # typing costs ~3 ms of CLI start-up; mypy reads this name as typing's
if TYPE_CHECKING:
    from pallet.cli.main import Context


def main(ctx: Context, argv: list[str], prog: str = "pallet port") -> int:
    from pallet.cli.commands.container import error_line, parser, path

    p = parser(prog, "List port mappings or a specific mapping for the container")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("port", nargs="?", metavar="PRIVATE_PORT[/PROTO]")
    args = p.parse_args(argv)
    try:
        info = ctx.client().get_json(path(args.container, "/json"))
    except PalletError as exc:
        print(error_line(exc), file=sys.stderr)
        return 1
    ports = (info.get("NetworkSettings") or {}).get("Ports") or {}
    if args.port:
        port, _, proto = args.port.partition("/")
        key = f"{port}/{proto or 'tcp'}"
        bindings = ports.get(key)
        if not bindings:
            print(f"Error: No public port '{key}' published for {args.container}", file=sys.stderr)
            return 1
        for b in bindings:
            print(_host_port(b))
        return 0
    for key in sorted(ports):
        for b in ports[key] or []:
            print(f"{key} -> {_host_port(b)}")
    return 0


def _host_port(b: dict[str, str]) -> str:
    """0.0.0.0:8080, [::]:8080 (Go's net.JoinHostPort, as the docker CLI prints them)."""
    ip = b.get("HostIp") or "0.0.0.0"
    return f"[{ip}]:{b.get('HostPort')}" if ":" in ip else f"{ip}:{b.get('HostPort')}"
