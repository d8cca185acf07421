"""The v2 io controller: io.weight or io.bfq.weight, io.max, and io.stat.

cgroup-v2.rst, "IO". With BFQ as the scheduler the weight goes to io.bfq.weight in BFQ's own
[1, 1000] range (Documentation/block/bfq-iosched.rst), which is blkio's range: written as is.
Otherwise io.weight takes the [1, 10000] value of conversions.blkio_weight_to_io_weight.
"""

from __future__ import annotations

import os

from pallet.cgroups import cgroupfs as fs
from pallet.cgroups.conversions import blkio_weight_to_io_weight
from pallet.errors import NotSupported

TYPE_CHECKING = False  # the stats dataclasses load only when stats are read (start-up cost)
if TYPE_CHECKING:
    from pallet.cgroups.cgroupfs import StrPath
    from pallet.cgroups.stats import BlkioEntry, BlkioStats

P = "linux.resources.blockIO"
_MAX_KEYS = {"throttleReadBpsDevice": "rbps", "throttleWriteBpsDevice": "wbps",
             "throttleReadIOPSDevice": "riops", "throttleWriteIOPSDevice": "wiops"}


def check(blk: dict) -> None:
    if blk.get("leafWeight") or any(e.get("leafWeight") for e in blk.get("weightDevice") or []):
        raise NotSupported(f"{P}.leafWeight: cgroup v2 has no leaf weights")


def set(d: StrPath, blk: dict) -> None:
    bfq = os.path.exists(os.path.join(d, "io.bfq.weight"))
    weight = blk.get("weight")
    if weight:
        if bfq:
            fs.write(os.path.join(d, "io.bfq.weight"), weight)
        elif os.path.exists(os.path.join(d, "io.weight")):
            fs.write(os.path.join(d, "io.weight"), f"default {blkio_weight_to_io_weight(weight)}")
        else:
            raise NotSupported(f"{P}.weight: no io.weight or io.bfq.weight (no weight-based "
                               f"IO controller such as BFQ or io.cost on this host)")
    for entry in blk.get("weightDevice") or []:
        w = entry.get("weight")
        if not w:
            continue
        dev = f"{entry['major']}:{entry['minor']}"
        if bfq:
            fs.write(os.path.join(d, "io.bfq.weight"), f"{dev} {w}")
        else:
            fs.write(os.path.join(d, "io.weight"), f"{dev} {blkio_weight_to_io_weight(w)}")
    for line in io_max_lines(blk):
        fs.write(os.path.join(d, "io.max"), line)


def io_max_lines(blk: dict) -> list[str]:
    """One io.max line per device, "8:0 rbps=1048576 wiops=max"; a rate of 0 lifts the limit."""
    per_dev: dict[str, list[str]] = {}
    for key, name in _MAX_KEYS.items():
        for entry in blk.get(key) or []:
            rate = entry["rate"]
            per_dev.setdefault(f"{entry['major']}:{entry['minor']}", []).append(
                f"{name}={rate if rate else 'max'}")
    return [f"{dev} {' '.join(settings)}" for dev, settings in per_dev.items()]


def parse_stat(text: str) -> BlkioStats:
    """io.stat lines "8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0"."""
    from pallet.cgroups.stats import BlkioEntry, BlkioStats

    served: list[BlkioEntry] = []
    count: list[BlkioEntry] = []
    for line in text.splitlines():
        parts = line.split()
        if not parts or ":" not in parts[0]:
            continue
        major, minor = (int(x) for x in parts[0].split(":"))
        values = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        for key, op, target in (("rbytes", "Read", served), ("wbytes", "Write", served),
                                ("rios", "Read", count), ("wios", "Write", count)):
            if key in values:
                target.append(BlkioEntry(major, minor, op, int(values[key])))
    return BlkioStats(io_service_bytes=served, io_serviced=count)


def stats(d: StrPath) -> BlkioStats:
    from pallet.cgroups.stats import BlkioStats

    try:
        return parse_stat(fs.read_text(os.path.join(d, "io.stat")))
    except FileNotFoundError:
        return BlkioStats()
