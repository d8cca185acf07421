"""Overlay mount building: the option strings for each snapshot shape, and long lower chains."""

from __future__ import annotations

import pytest

from pallet.errors import NotSupported
from pallet.image.snapshots import Kind
from pallet.image.snapshots.overlay import OVL_MAX_STACK, overlay_mounts
from pallet.oci.mount import MOUNT_DATA_LIMIT, Mount, data_length

D = "/var/lib/pallet/snapshots"


def test_active_without_parent_is_a_rw_bind_of_its_fs():
    assert overlay_mounts(D, 1, Kind.ACTIVE, []) == [
        Mount("bind", f"{D}/1/fs", "", ("rbind", "rw"))]


def test_active_on_a_chain_stacks_nearest_parent_first():
    assert overlay_mounts(D, 7, Kind.ACTIVE, [5, 3, 1]) == [Mount("overlay", "overlay", "", (
        f"lowerdir={D}/5/fs:{D}/3/fs:{D}/1/fs", f"upperdir={D}/7/fs", f"workdir={D}/7/work"))]


def test_index_off_comes_first():
    (m,) = overlay_mounts(D, 2, Kind.ACTIVE, [1], index_off=True)
    assert m.options[0] == "index=off"


def test_views():
    assert overlay_mounts(D, 4, Kind.VIEW, []) == [Mount("bind", f"{D}/4/fs", "", ("rbind", "ro"))]
    assert overlay_mounts(D, 4, Kind.VIEW, [2]) == [Mount("bind", f"{D}/2/fs", "", ("rbind", "ro"))]
    (m,) = overlay_mounts(D, 4, Kind.VIEW, [3, 2])
    assert m.type == "overlay" and m.readonly
    assert m.options == ("ro", f"lowerdir={D}/3/fs:{D}/2/fs")
    assert m.option("upperdir") is None and m.option("workdir") is None


def test_128_layers_under_a_long_root_switch_to_relative_paths_and_chdir():
    root = "/" + "/".join(["a-rather-long-directory-name"] * 4) + "/snapshots"
    lowers = list(range(1000, 1128))[::-1]
    absolute_len = len(":".join(f"{root}/{i}/fs" for i in lowers))
    assert absolute_len > MOUNT_DATA_LIMIT  # the situation the test is about
    (m,) = overlay_mounts(root, 2000, Kind.ACTIVE, lowers, index_off=True)
    assert m.chdir == root
    assert m.option("lowerdir") == ":".join(f"{i}/fs" for i in lowers)
    assert m.option("upperdir") == "2000/fs" and m.option("workdir") == "2000/work"
    assert data_length(m.kernel_options()) <= MOUNT_DATA_LIMIT - 512
    paths = [p for o in m.kernel_options() if "=" in o for p in o.split("=", 1)[1].split(":")]
    assert not any(p.startswith("/") for p in paths)


def test_relative_view_also_carries_chdir():
    root = "/" + "x" * 200
    (m,) = overlay_mounts(root, 900, Kind.VIEW, list(range(100, 130)))
    assert m.chdir == root and m.readonly
    assert (m.option("lowerdir") or "").startswith("100/fs:101/fs")


def test_short_chains_stay_absolute():
    (m,) = overlay_mounts(D, 60, Kind.ACTIVE, list(range(1, 60)))
    assert m.chdir is None


def test_too_many_layers_is_not_supported():
    with pytest.raises(NotSupported):
        overlay_mounts(D, 1, Kind.ACTIVE, list(range(2, OVL_MAX_STACK + 3)))


def test_even_relative_too_long_is_not_supported():
    # 450 lowers of 7-digit ids: 450 * 10 bytes > 3.5 KiB.
    with pytest.raises(NotSupported, match="relative"):
        overlay_mounts(D, 1, Kind.ACTIVE, list(range(1_000_000, 1_000_450)))
