"""Table tests of the pure OCI -> cgroup conversions (runc and crun give the same numbers)."""

from __future__ import annotations

import pytest

from pallet.cgroups import conversions as conv
from pallet.errors import InvalidArgument


@pytest.mark.parametrize(("shares", "weight"), [
    (0, 0),            # unset stays unset
    (2, 1),            # kernel minimum -> cpu.weight minimum
    (1024, 39),        # v1 default -> runc's 39 (not v2's 100: the formula is linear)
    (512, 20),
    (2048, 79),
    (262144, 10000),   # kernel maximum -> cpu.weight maximum
])
def test_shares_to_weight(shares, weight):
    assert conv.shares_to_weight(shares) == weight


@pytest.mark.parametrize(("blkio", "io"), [(0, 0), (10, 1), (100, 910), (500, 4950), (1000, 10000)])
def test_blkio_weight_to_io_weight(blkio, io):
    assert conv.blkio_weight_to_io_weight(blkio) == io


@pytest.mark.parametrize(("quota", "period", "cpu_max"), [
    (None, None, None),
    (0, 0, None),
    (20000, 100000, "20000 100000"),
    (50000, None, "50000 100000"),     # kernel default period
    (-1, 100000, "max 100000"),
    (None, 50000, "max 50000"),
    (150000, 50000, "150000 50000"),   # more than one CPU
])
def test_cpu_max(quota, period, cpu_max):
    assert conv.cpu_max(quota, period) == cpu_max


@pytest.mark.parametrize(("swap", "limit", "swap_max"), [
    (0, 0, 0),                 # nothing set
    (0, -1, -1),               # unlimited memory: unlimited swap too
    (-1, 100, -1),
    (0, 100, 0),               # swap unset: leave memory.swap.max alone
    (100, 100, 0),             # memory+swap == memory: no swap
    (300, 100, 200),
])
def test_swap_to_v2(swap, limit, swap_max):
    assert conv.swap_to_v2(swap, limit) == swap_max


@pytest.mark.parametrize(("swap", "limit", "message"), [
    (100, 0, "needs a memory limit"),
    (100, -1, "needs a memory limit"),
    (50, 100, "must be >= the memory limit"),
])
def test_swap_to_v2_refuses(swap, limit, message):
    with pytest.raises(InvalidArgument, match=rf"linux\.resources\.memory\.swap: .*{message}"):
        conv.swap_to_v2(swap, limit)


@pytest.mark.parametrize(("value", "text"), [(-1, "max"), (0, "0"), (4096, "4096")])
def test_memory_value(value, text):
    assert conv.memory_value(value) == text


@pytest.mark.parametrize(("read", "limit"), [
    (9223372036854771712, 0), (1 << 62, 0), (67108864, 67108864), (0, 0)])
def test_v1_memory_limit(read, limit):
    assert conv.v1_memory_limit(read) == limit


@pytest.mark.parametrize(("text", "ok"), [
    ("0", True), ("0-3", True), ("0-3,7", True), ("1,3,5-6", True),
    ("", False), ("3-1", False), ("a", False), ("0,", False), ("0 - 3", False), ("-1", False)])
def test_valid_cpu_list(text, ok):
    assert conv.valid_cpu_list(text) is ok


@pytest.mark.parametrize("size", ["2MB", "1GB", "64KB"])
def test_hugepage_size(size):
    assert conv.hugepage_size_suffix(size) == size


@pytest.mark.parametrize("size", ["2M", "2mb", "huge", ""])
def test_hugepage_size_refuses(size):
    with pytest.raises(InvalidArgument, match="pageSize"):
        conv.hugepage_size_suffix(size)


@pytest.mark.parametrize(("major", "minor", "text"), [
    (8, 0, "8:0"), (None, None, "*:*"), (-1, 3, "*:3"), (1, -1, "1:*")])
def test_device_number(major, minor, text):
    assert conv.device_number(major, minor) == text
