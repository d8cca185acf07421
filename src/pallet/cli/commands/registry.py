"""`pallet registry serve|gc`: run Pallet's own registry server (a server: it may import aiohttp,
but only when run, so the rest of the CLI stays light)."""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs ~3 ms of CLI start-up; mypy reads this name as typing's
if TYPE_CHECKING:
    from pallet.cli.main import Context


def main(ctx: Context, argv: list[str]) -> int:
    from pallet.registry.server.main import main as registry_main

    return registry_main(argv)
