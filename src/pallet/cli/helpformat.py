"""argparse's help formatter for every `pallet` verb, with the terminal width read once per process.

Imported only when argparse is needed (`--help`, a usage error, a command line the fast parser in
pallet.cli.args leaves to argparse, verbs that build argparse parsers themselves): it is what
loads argparse. pallet.cli.commands.container re-exports `HelpFormatter` lazily for the verbs
that import it from there.
"""

from __future__ import annotations

import argparse
import sys


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter with the terminal width read once per process.

    argparse builds a formatter for every `add_argument` (to check the metavar) and, without a
    width, each one imports `shutil` (which loads bz2 and lzma: ~2.5 ms) and asks the terminal
    for its size; `pallet run` declares ~95 flags. The width is the same as argparse's own:
    $COLUMNS, else the terminal of stdout, else 80, minus 2 (shutil.get_terminal_size)."""

    _cached_width: int | None = None

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position,
                         width if width is not None else self.terminal_width())

    @classmethod
    def terminal_width(cls) -> int:
        width = HelpFormatter._cached_width
        if width is None:
            import os

            try:
                columns = int(os.environ.get("COLUMNS", ""))
            except ValueError:
                columns = 0
            if columns <= 0:
                try:
                    columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
                except (AttributeError, ValueError, OSError):
                    columns = 0
            width = HelpFormatter._cached_width = (columns or 80) - 2
        return width
