"""`palletd` entry point. The daemon itself is issue 4; until it lands this says so plainly."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("--version", "-v"):
        from pallet import __version__

        print(f"palletd version {__version__}")
        return 0
    print("palletd: the Docker Engine API daemon is not built yet (issue 4); "
          "use pallet-runtime to run OCI bundles", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
