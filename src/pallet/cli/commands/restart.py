"""`pallet restart`: stop then start containers, as `docker restart`."""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs ~3 ms of CLI start-up; mypy reads this name as typing's
if TYPE_CHECKING:
    from pallet.cli.main import Context


def main(ctx: Context, argv: list[str], prog: str = "pallet restart") -> int:
    from pallet.cli.commands.stop import main as stop

    return stop(ctx, argv, prog, verb="restart")
