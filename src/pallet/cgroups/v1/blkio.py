"""The v1 blkio controller: proportional weights (CFQ or BFQ) and throttling, and IO stats.

Documentation/admin-guide/cgroup-v1/blkio-controller.rst. CFQ is gone since Linux 5.0; BFQ puts
its weight in blkio.bfq.weight (Documentation/block/bfq-iosched.rst, section 4), so the first of
the two files that exists takes the weight.
"""

from __future__ import annotations

import os

from pallet.cgroups import cgroupfs as fs
from pallet.errors import NotSupported

TYPE_CHECKING = False  # the stats dataclasses load only when stats are read (start-up cost)
if TYPE_CHECKING:
    from pallet.cgroups.stats import BlkioEntry, BlkioStats

_THROTTLE = {
    "throttleReadBpsDevice": "blkio.throttle.read_bps_device",
    "throttleWriteBpsDevice": "blkio.throttle.write_bps_device",
    "throttleReadIOPSDevice": "blkio.throttle.read_iops_device",
    "throttleWriteIOPSDevice": "blkio.throttle.write_iops_device",
}


def _first(d: str, names: tuple[str, ...], field: str) -> str:
    for name in names:
        if os.path.exists(os.path.join(d, name)):
            return os.path.join(d, name)
    raise NotSupported(f"linux.resources.blockIO.{field}: no IO scheduler with weights "
                       f"(none of {', '.join(names)}); is BFQ the disk's scheduler?")


def set(d: str, blk: dict) -> None:
    if blk.get("weight"):
        fs.write(_first(d, ("blkio.weight", "blkio.bfq.weight"), "weight"), blk["weight"])
    if blk.get("leafWeight"):
        fs.write(_first(d, ("blkio.leaf_weight",), "leafWeight"), blk["leafWeight"])
    for entry in blk.get("weightDevice") or []:
        dev = f"{entry['major']}:{entry['minor']}"
        if entry.get("weight"):
            target = _first(d, ("blkio.weight_device", "blkio.bfq.weight_device"), "weightDevice")
            fs.write(target, f"{dev} {entry['weight']}")
        if entry.get("leafWeight"):
            target = _first(d, ("blkio.leaf_weight_device",), "weightDevice.leafWeight")
            fs.write(target, f"{dev} {entry['leafWeight']}")
    for key, name in _THROTTLE.items():
        for entry in blk.get(key) or []:
            # blkio-controller.rst: a rate of 0 removes the device's limit.
            fs.write(os.path.join(d, name), f"{entry['major']}:{entry['minor']} {entry['rate']}")


def parse_entries(text: str) -> list[BlkioEntry]:
    """Lines "8:0 Read 4096"; the closing "Total N" line (all devices) is dropped."""
    from pallet.cgroups.stats import BlkioEntry

    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 3 or ":" not in parts[0]:
            continue
        major, minor = parts[0].split(":")
        out.append(BlkioEntry(int(major), int(minor), parts[1], int(parts[2])))
    return out


def stats(d: str) -> BlkioStats:
    from pallet.cgroups.stats import BlkioStats

    # The first policy with numbers wins: CFQ (blkio.io_*), BFQ (blkio.bfq.io_*), then the
    # throttle layer, which sees every bio whether or not a limit is set.
    for prefix in ("blkio.", "blkio.bfq.", "blkio.throttle."):
        served = _read(d, f"{prefix}io_service_bytes")
        count = _read(d, f"{prefix}io_serviced")
        if served or count:
            return BlkioStats(io_service_bytes=served, io_serviced=count)
    return BlkioStats()


def _read(d: str, name: str) -> list[BlkioEntry]:
    for candidate in (os.path.join(d, f"{name}_recursive"), os.path.join(d, name)):
        if os.path.exists(candidate):
            return parse_entries(fs.read(candidate))
    return []
