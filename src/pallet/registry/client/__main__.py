"""`python -m pallet.registry.client fetch`: the transfer half of a pull, from the command line.

    python -m pallet.registry.client fetch --root DATA_ROOT [--insecure-registry HOST] IMAGE

Fetches the manifest, config and layers of IMAGE into the content store of the image store at
DATA_ROOT (palletd's --data-root layout) without unpacking anything (RegistryClient.fetch), and
prints the manifest digest and the bytes transferred. For tools and benchmarks (bench/registry_bench.py
compares it with `skopeo copy`); palletd does not need it. It must not run against a data root a
running palletd uses with another snapshotter.
"""

from __future__ import annotations

import argparse
import sys

from pallet.errors import PalletError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pallet.registry.client", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("fetch", help="fetch an image's blobs into a content store")
    fetch.add_argument("--root", required=True, help="the image store's data root")
    fetch.add_argument("--insecure-registry", action="append", default=[], metavar="HOST",
                       help="also allow plain HTTP to HOST[:PORT] or a CIDR (loopback always is)")
    fetch.add_argument("image")
    a = ap.parse_args(argv)
    from pallet.image.service import ImageService
    from pallet.registry.client import RegistryClient

    try:
        with ImageService(a.root) as images:
            desc, result = RegistryClient(images, insecure=a.insecure_registry).fetch(a.image)
    except PalletError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{desc.digest} {sum(result.fetched.values())} bytes fetched")
    return 0


if __name__ == "__main__":
    sys.exit(main())
