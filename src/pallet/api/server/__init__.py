"""palletd's HTTP side: the aiohttp application serving the Docker Engine API."""

from pallet.api.server.app import create_app
from pallet.api.server.backend import HostInfo, SystemCounts, ZeroCounts

__all__ = ["HostInfo", "SystemCounts", "ZeroCounts", "create_app"]
