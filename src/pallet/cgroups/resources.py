"""Checks of an OCI linux.resources dict that hold whatever the cgroup version.

Drivers call `check(resources)` first and then add their own host checks (a controller missing,
a v1-only or v2-only field). Errors name the field as the spec spells it.
"""

from __future__ import annotations

from pallet.cgroups import conversions as conv
from pallet.cgroups.devices import parse_rules
from pallet.errors import InvalidArgument, NotSupported

TYPE_CHECKING = False  # typing costs ~2 ms of start-up; mypy treats this name as typing's
if TYPE_CHECKING:
    from typing import Any

P = "linux.resources"

_INT_FIELDS = {
    "memory": ("limit", "reservation", "swap", "kernel", "kernelTCP", "swappiness"),
    "cpu": ("shares", "quota", "burst", "period", "realtimeRuntime", "realtimePeriod", "idle"),
    "blockIO": ("weight", "leafWeight"),
    "pids": ("limit",),
}


def section(resources: dict, name: str) -> dict:
    value = resources.get(name) or {}
    if not isinstance(value, dict):
        raise InvalidArgument(f"{P}.{name}: must be an object")
    return value


def get_int(sec: dict, key: str) -> int | None:
    value = sec.get(key)
    return None if value is None else int(value)


def check(resources: dict) -> None:
    """Shape and range checks; raises InvalidArgument or NotSupported."""
    if not isinstance(resources, dict):
        raise InvalidArgument(f"{P}: must be an object")
    for name, keys in _INT_FIELDS.items():
        sec = section(resources, name)
        for key in keys:
            _int(sec.get(key), f"{P}.{name}.{key}")

    mem = section(resources, "memory")
    for key in ("limit", "reservation", "swap"):
        value = mem.get(key)
        if value is not None and value < -1:
            raise InvalidArgument(f"{P}.memory.{key}: {value} must be -1 (unlimited) or >= 0")
    swappiness = mem.get("swappiness")
    # The runtime spec types it uint64; Docker passes -1 for "not set", runc treats it so.
    if swappiness is not None and swappiness != -1 and not 0 <= swappiness <= 100:
        raise InvalidArgument(f"{P}.memory.swappiness: {swappiness} is not in [0, 100]")
    if not isinstance(mem.get("disableOOMKiller", False), bool):
        raise InvalidArgument(f"{P}.memory.disableOOMKiller: must be a boolean")

    cpu = section(resources, "cpu")
    shares = cpu.get("shares")
    if shares and not conv.MIN_SHARES <= shares <= conv.MAX_SHARES:
        raise InvalidArgument(f"{P}.cpu.shares: {shares} is not in [{conv.MIN_SHARES}, {conv.MAX_SHARES}]")
    quota, period = cpu.get("quota"), cpu.get("period")
    # Documentation/scheduler/sched-bwc.rst: quota and period are at least 1 ms, period at most 1 s.
    if quota is not None and quota > 0 and quota < 1000:
        raise InvalidArgument(f"{P}.cpu.quota: {quota} is below the kernel minimum of 1000 us")
    if period and not 1000 <= period <= 1_000_000:
        raise InvalidArgument(f"{P}.cpu.period: {period} is not in [1000, 1000000] us")
    if cpu.get("burst") is not None and cpu["burst"] < 0:
        raise InvalidArgument(f"{P}.cpu.burst: {cpu['burst']} is negative")
    for key in ("realtimeRuntime", "realtimePeriod"):
        if cpu.get(key):
            raise NotSupported(f"{P}.cpu.{key}: real-time CPU bandwidth is not supported")
    for key in ("cpus", "mems"):
        value = cpu.get(key)
        if value and (not isinstance(value, str) or not conv.valid_cpu_list(value)):
            raise InvalidArgument(f"{P}.cpu.{key}: {value!r} is not a list like 0-3,7")
    if cpu.get("idle") not in (None, 0, 1):
        raise InvalidArgument(f"{P}.cpu.idle: {cpu['idle']} is not 0 or 1")

    blk = section(resources, "blockIO")
    for key in ("weight", "leafWeight"):
        value = blk.get(key)
        if value and not conv.MIN_BLKIO_WEIGHT <= value <= conv.MAX_BLKIO_WEIGHT:
            raise InvalidArgument(f"{P}.blockIO.{key}: {value} is not in [10, 1000]")
    for key in ("weightDevice", "throttleReadBpsDevice", "throttleWriteBpsDevice",
                "throttleReadIOPSDevice", "throttleWriteIOPSDevice"):
        _device_list(blk.get(key), key)

    for i, entry in enumerate(resources.get("hugepageLimits") or []):
        if not isinstance(entry, dict) or not isinstance(entry.get("pageSize"), str):
            raise InvalidArgument(f"{P}.hugepageLimits[{i}].pageSize: required string")
        conv.hugepage_size_suffix(entry["pageSize"])
        _int(entry.get("limit"), f"{P}.hugepageLimits[{i}].limit", required=True)

    parse_rules(resources.get("devices") or [])

    unified = resources.get("unified") or {}
    if not isinstance(unified, dict):
        raise InvalidArgument(f"{P}.unified: must be an object")
    for key, value in unified.items():
        if not isinstance(key, str) or "/" in key or key.startswith(".") or "." not in key:
            raise InvalidArgument(f"{P}.unified: {key!r} is not a cgroup interface file name")
        if not isinstance(value, str):
            raise InvalidArgument(f"{P}.unified.{key}: value must be a string")
        if key.startswith("cgroup."):
            # The core files move processes and change the tree: not a resource knob.
            raise InvalidArgument(f"{P}.unified.{key}: cgroup core files cannot be set")

    if resources.get("rdma"):
        raise NotSupported(f"{P}.rdma: the rdma controller is not supported")


def _int(value: Any, where: str, required: bool = False) -> None:
    if value is None:
        if required:
            raise InvalidArgument(f"{where}: required integer")
        return
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidArgument(f"{where}: {value!r} is not an integer")


def _device_list(entries: Any, key: str) -> None:
    if entries is None:
        return
    if not isinstance(entries, list):
        raise InvalidArgument(f"{P}.blockIO.{key}: must be a list")
    value_keys = ("weight", "leafWeight") if key == "weightDevice" else ("rate",)
    for i, entry in enumerate(entries):
        where = f"{P}.blockIO.{key}[{i}]"
        if not isinstance(entry, dict):
            raise InvalidArgument(f"{where}: must be an object")
        for name in ("major", "minor"):
            _int(entry.get(name), f"{where}.{name}", required=True)
            if entry[name] < 0:
                raise InvalidArgument(f"{where}.{name}: {entry[name]} is negative")
        for name in value_keys:
            _int(entry.get(name), f"{where}.{name}", required=(name == "rate"))
            if entry.get(name) is not None and entry[name] < 0:
                raise InvalidArgument(f"{where}.{name}: {entry[name]} is negative")
