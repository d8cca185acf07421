"""Pure conversions between OCI linux.resources values and cgroup v1 / v2 file contents.

Each is a small total function, table-tested in tests/unit/cgroups/test_conversions.py; the
formulas are the ones runc and crun use, so a container gets the same limits whichever runtime
starts it.
"""

from __future__ import annotations

from pallet.errors import InvalidArgument

# Documentation/admin-guide/cgroup-v2.rst: cpu.weight is in [1, 10000], default 100;
# v1 cpu.shares is clamped by the kernel to [2, 262144], default 1024.
MIN_SHARES, MAX_SHARES = 2, 262144
# blkio.weight (v1 CFQ/BFQ) is in [10, 1000]; io.weight (v2) in [1, 10000].
MIN_BLKIO_WEIGHT, MAX_BLKIO_WEIGHT = 10, 1000

# Syntax checks use str methods, not `re`: pallet-runtime create and delete load this module,
# and `re` costs them ~4 ms of imports (enum, functools).
_HUGEPAGE_UNITS = ("KB", "MB", "GB", "TB", "PB")
# A v1 memory limit at or above this is the kernel's "unlimited" (PAGE_COUNTER_MAX * page size).
_V1_UNLIMITED = 1 << 62


def shares_to_weight(shares: int) -> int:
    """cpu.shares -> cpu.weight: 1 + ((shares - 2) * 9999) / 262142 (runc, crun); 0 stays unset."""
    if shares == 0:
        return 0
    return 1 + ((shares - 2) * 9999) // 262142


def blkio_weight_to_io_weight(weight: int) -> int:
    """blkio.weight [10, 1000] -> io.weight [1, 10000], linear (runc ConvertBlkIOToIOWeightValue)."""
    if weight == 0:
        return 0
    return 1 + (weight - 10) * 9999 // 990


def cpu_max(quota: int | None, period: int | None) -> str | None:
    """OCI cpu quota/period (microseconds) -> v2 cpu.max "$MAX $PERIOD"; None when neither is set.

    A quota of 0 or unset with a period keeps "max"; a negative quota is "max" too
    (cgroup-v2.rst: "max" means no limit). The kernel default period is 100000.
    """
    if not quota and not period:
        return None
    limit = "max" if quota is None or quota <= 0 else str(quota)
    return f"{limit} {period or 100000}"


def memory_value(value: int) -> str:
    """An OCI memory value for a v2 file: -1 is "max"."""
    return "max" if value == -1 else str(value)


def swap_to_v2(swap: int, limit: int) -> int:
    """OCI memory.swap (memory+swap, the v1 memsw meaning) -> v2 memory.swap.max (swap only).

    Same rules as runc's ConvertMemorySwapToCgroupV2Value: -1 is unlimited, 0 unset, and a swap
    limit needs a memory limit no larger than itself. Returns -1 for "max", 0 for "leave alone".
    """
    if limit == -1 and swap == 0:
        return -1
    if swap in (-1, 0):
        return swap
    if limit in (0, -1):
        raise InvalidArgument("linux.resources.memory.swap: a swap limit needs a memory limit")
    if swap < limit:
        raise InvalidArgument(f"linux.resources.memory.swap: memory+swap limit {swap} must be "
                              f">= the memory limit {limit}")
    return swap - limit


def v1_memory_limit(value: int) -> int:
    """A v1 memory.limit_in_bytes read back: the kernel's huge 'unlimited' becomes 0."""
    return 0 if value >= _V1_UNLIMITED else value


def valid_cpu_list(text: str) -> bool:
    """cpuset syntax: comma separated numbers and ranges, "0-3,7" (cpuset(7) "List format")."""
    if not isinstance(text, str):
        return False
    for part in text.split(","):
        lo, dash, hi = part.partition("-")
        if not _digits(lo) or (dash and not _digits(hi)):
            return False
        if hi and int(hi) < int(lo):
            return False
    return True


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def hugepage_size_suffix(page_size: str) -> str:
    """OCI pageSize ("2MB", "1GB", "64KB") -> the kernel's hugetlb file infix ("2MB", "1GB", "64KB").

    Documentation/admin-guide/cgroup-v1/hugetlb.rst: files are hugetlb.<hugepagesize>.*, the size
    in the kernel's own units; the OCI spec uses the same spelling, so this only checks it.
    """
    if not (isinstance(page_size, str) and page_size[-2:] in _HUGEPAGE_UNITS and _digits(page_size[:-2])):
        raise InvalidArgument(f"linux.resources.hugepageLimits.pageSize: {page_size!r} is not "
                              f"like 2MB or 1GB")
    return page_size


def device_number(major: int | None, minor: int | None) -> str:
    """"major:minor" with "*" for a wildcard, as devices.allow and blkio files spell it."""
    return f"{'*' if major is None or major < 0 else major}:{'*' if minor is None or minor < 0 else minor}"
