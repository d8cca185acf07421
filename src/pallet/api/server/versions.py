"""API version handling: the `/vX.Y` path prefix and dockerd's answers to versions out of range.

dockerd routes every path twice, bare and under `/v{version:[0-9.]+}` (api/server/server.go),
and rejects versions outside [MinAPIVersion, APIVersion] with the messages below
(api/server/middleware/version.go, versionUnsupportedError).
"""

from __future__ import annotations

from pallet.api import API_VERSION, MIN_API_VERSION, version_tuple
from pallet.errors import InvalidArgument

VERSION_PREFIX = r"/v{version:[0-9.]+}"


def negotiate(requested: str | None) -> str:
    """The API version a request is served at: the one in its path, or the daemon's own."""
    if not requested:
        return API_VERSION
    try:
        wanted = version_tuple(requested)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from exc
    if wanted < version_tuple(MIN_API_VERSION):
        raise InvalidArgument(
            f"client version {requested} is too old. Minimum supported API version is "
            f"{MIN_API_VERSION}, please upgrade your client to a newer version")
    if wanted > version_tuple(API_VERSION):
        raise InvalidArgument(
            f"client version {requested} is too new. Maximum supported API version is {API_VERSION}")
    return requested


def at_least(request_version: str, version: str) -> bool:
    """True when the request's API version is `version` or newer (for version-gated fields)."""
    return version_tuple(request_version) >= version_tuple(version)
