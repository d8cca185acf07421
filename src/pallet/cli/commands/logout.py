"""`pallet logout`: forget the stored credentials of a registry (docker's config.json)."""

from __future__ import annotations

import argparse

from pallet.cli.commands.container import HelpFormatter
from pallet.cli.commands.login import DockerConfig, server_key

TYPE_CHECKING = False  # typing costs ~3 ms of CLI start-up; mypy reads this name as typing's
if TYPE_CHECKING:
    from pallet.cli.main import Context


def main(ctx: Context, argv: list[str], prog: str = "pallet logout") -> int:
    p = argparse.ArgumentParser(prog=prog, description="Log out from a registry",
                                formatter_class=HelpFormatter)
    p.add_argument("server", nargs="?", default="", metavar="SERVER")
    args = p.parse_args(argv)
    server = server_key(args.server)
    if DockerConfig().remove(server):
        print(f"Removing login credentials for {server}")
    else:
        print(f"Not logged in to {server}")
    return 0
