"""`pallet`: the command people type. Starts fast: only the standard library on this path."""

from __future__ import annotations

import sys

USAGE = """usage: pallet [--version] COMMAND

Pallet is a Linux container engine. Available now:
  version      print the version
  runtime ...  run the OCI runtime (same as pallet-runtime ...)
The daemon commands (run, ps, images, ...) come with palletd.
"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0
    if args[0] in ("--version", "-v", "version"):
        from pallet import __version__

        print(f"pallet version {__version__}")
        return 0
    if args[0] == "runtime":
        from pallet.runtime.cli import main as runtime_main

        return runtime_main(args[1:])
    print(f"pallet: unknown command {args[0]!r}; see 'pallet --help'", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
