"""pallet.oci.mount: the Mount value, its consumer-only options and its OCI shapes."""

from __future__ import annotations

import pytest

from pallet.oci.mount import (
    CHDIR_OPTION,
    MOUNT_DATA_LIMIT,
    Mount,
    data_length,
    data_string,
    fits_in_page,
    mounts_from_json,
    mounts_to_json,
    rootfs_to_oci,
)


def test_mount_is_frozen_and_options_become_a_tuple():
    m = Mount("bind", "/src", "a/b/", ["rbind", "ro"])  # type: ignore[arg-type]
    assert m.options == ("rbind", "ro")
    assert m.target == "a/b"
    with pytest.raises(AttributeError):
        m.source = "/x"  # type: ignore[misc]
    assert hash(m) == hash(Mount("bind", "/src", "a/b", ("rbind", "ro")))


@pytest.mark.parametrize("target", ["/abs", "a/../b", ".."])
def test_target_must_be_relative_without_dotdot(target):
    with pytest.raises(ValueError):
        Mount("bind", "/src", target)


def test_target_dot_is_the_place_itself():
    assert Mount("tmpfs", "tmpfs", ".").target == ""


def test_readonly_last_word_wins():
    assert Mount("bind", "/s", "", ("rbind", "ro")).readonly
    assert not Mount("bind", "/s", "", ("ro", "rw")).readonly
    assert not Mount("overlay", "overlay", "", ("lowerdir=/a",)).readonly


def test_chdir_and_kernel_options():
    m = Mount("overlay", "overlay", "", ("lowerdir=1/fs:2/fs", "upperdir=3/fs", "workdir=3/work",
                                         CHDIR_OPTION + "/var/lib/pallet/snapshots", "x-other=1"))
    assert m.chdir == "/var/lib/pallet/snapshots"
    assert m.kernel_options() == ("lowerdir=1/fs:2/fs", "upperdir=3/fs", "workdir=3/work")
    assert m.option("upperdir") == "3/fs"
    assert m.option("nope") is None
    assert Mount("bind", "/s").chdir is None


def test_data_string_leaves_flags_and_x_options_out():
    opts = ("ro", "rbind", "nosuid", "index=off", "lowerdir=/a:/b", CHDIR_OPTION + "/x")
    assert data_string(opts) == "index=off,lowerdir=/a:/b"
    assert data_length(opts) == len("index=off,lowerdir=/a:/b") + 1


def test_fits_in_page_keeps_headroom():
    limit_ok = "lowerdir=" + "a" * (MOUNT_DATA_LIMIT - 512 - len("lowerdir=") - 1)
    assert fits_in_page([limit_ok])
    assert not fits_in_page([limit_ok + "a"])
    assert fits_in_page([limit_ok + "a"], headroom=0)


def test_to_oci_and_back():
    m = Mount("overlay", "overlay", "", ("lowerdir=/a", "upperdir=/b", "workdir=/c"))
    entry = m.to_oci("/run/c1/rootfs")
    assert entry == {"destination": "/run/c1/rootfs", "type": "overlay", "source": "overlay",
                     "options": ["lowerdir=/a", "upperdir=/b", "workdir=/c"]}
    assert Mount.from_oci(entry, "/run/c1/rootfs") == m
    sub = Mount("tmpfs", "tmpfs", "tmp", ("nosuid",))
    assert sub.to_oci("/") == {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                               "options": ["nosuid"]}
    assert Mount.from_oci(sub.to_oci("/")) == sub


def test_from_oci_without_type_is_a_bind_and_outside_base_is_refused():
    assert Mount.from_oci({"destination": "/data", "source": "/h", "options": ["rbind"]}).type == "bind"
    with pytest.raises(ValueError):
        Mount.from_oci({"destination": "/elsewhere", "type": "tmpfs"}, "/rootfs")
    with pytest.raises(ValueError):
        Mount("bind", "/s").to_oci("relative")


def test_rootfs_to_oci_gives_root_and_host_side_mounts():
    mounts = [Mount("overlay", "overlay", "", ("lowerdir=/l",)), Mount("tmpfs", "tmpfs", "run", ())]
    root, host = rootfs_to_oci(mounts, "/b/rootfs", readonly=True)
    assert root == {"path": "/b/rootfs", "readonly": True}
    assert [h["destination"] for h in host] == ["/b/rootfs", "/b/rootfs/run"]


def test_json_round_trip():
    mounts = [Mount("bind", "/s", "", ("rbind", "ro")), Mount("tmpfs", "tmpfs", "t", ())]
    assert mounts_from_json(mounts_to_json(mounts)) == mounts
