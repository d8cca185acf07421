"""`pallet stop`: stop containers (their stop signal, then SIGKILL after the timeout), as `docker stop`."""

from __future__ import annotations

from pallet.api import version_tuple

TYPE_CHECKING = False  # typing costs ~3 ms of CLI start-up; mypy reads this name as typing's
if TYPE_CHECKING:
    from pallet.cli.args import Parser
    from pallet.cli.main import Context


def build_parser(prog: str = "pallet stop", verb: str = "stop") -> Parser:
    """The parser of `pallet stop` (argparse's calls; pallet.cli.args reads the common command lines)."""
    from pallet.cli.commands.container import parser

    p = parser(prog, f"{verb.capitalize()} one or more {'running ' if verb == 'stop' else ''}containers")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.add_argument("-t", "--time", "--timeout", dest="time", type=int,
                   help="Seconds to wait before killing the container")
    p.add_argument("-s", "--signal", help="Signal to send to the container")
    return p


def main(ctx: Context, argv: list[str], prog: str = "pallet stop", verb: str = "stop") -> int:
    from pallet.cli.commands.container import for_each, path

    args = build_parser(prog, verb).parse_args(argv)
    client = ctx.client()
    params = {"t": args.time}
    if args.signal and version_tuple(client.api_version) >= (1, 42):
        params["signal"] = args.signal
    return for_each(args.containers,
                    lambda ref: client.request("POST", path(ref, f"/{verb}"), params=params).read())
