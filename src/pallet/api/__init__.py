"""The Docker Engine API: `server/` (palletd's routes, aiohttp) and `client.py` (stdlib only).

This module stays import-free so that the CLI can read the version constants without loading
the server stack.
"""

from __future__ import annotations

# The API document Pallet implements (../shared/specs/docker-engine-api/v1.50.yaml) and the
# oldest version it still answers, as dockerd does (api/common.go: MinSupportedAPIVersion).
API_VERSION = "1.50"
MIN_API_VERSION = "1.24"


def version_tuple(version: str) -> tuple[int, int]:
    """(major, minor) of an API version "X.Y"; ValueError for anything else."""
    major, sep, minor = version.partition(".")
    if not sep or not major.isdigit() or not minor.isdigit():
        raise ValueError(f"invalid API version {version!r}: want MAJOR.MINOR, such as {API_VERSION}")
    return int(major), int(minor)
