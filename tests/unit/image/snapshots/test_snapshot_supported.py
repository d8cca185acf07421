"""overlay.supported(): detection through an injectable /proc and a recording syscalls door."""

from __future__ import annotations

from pathlib import Path

import pytest

from pallet.image.snapshots import create_snapshotter
from pallet.image.snapshots.overlay import OverlaySnapshotter, supported
from pallet.syscalls.recording import RecordingSyscalls

FILESYSTEMS = "nodev\tsysfs\nnodev\ttmpfs\n\text4\nnodev\toverlay\n"


def fake_proc(tmp_path: Path, mount_point: str, fstype: str, filesystems: str = FILESYSTEMS) -> Path:
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "filesystems").write_text(filesystems)
    escaped = mount_point.replace(" ", "\\040")
    (proc / "self" / "mountinfo").write_text(
        "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
        f"40 27 0:50 / {escaped} rw,relatime - {fstype} {fstype} rw\n")
    return proc


def test_supported_mounts_a_probe_overlay_and_unmounts_it(tmp_path):
    rec = RecordingSyscalls()
    root = tmp_path / "store"
    assert supported(root, syscalls=rec, proc=fake_proc(tmp_path, "/elsewhere", "tmpfs"))
    mount, umount = rec.calls
    assert mount.call == "mount" and mount.args["fstype"] == "overlay"
    assert "lowerdir=" in mount.args["data"] and "upperdir=" in mount.args["data"]
    assert umount.call == "umount2" and umount.args["target"] == mount.args["target"]
    assert list(root.iterdir()) == []  # the probe directory is gone


def test_a_refused_probe_mount_means_unsupported(tmp_path):
    rec = RecordingSyscalls(fail={"mount": OSError(22, "Invalid argument")})
    assert not supported(tmp_path / "s", syscalls=rec, proc=fake_proc(tmp_path, "/x", "tmpfs"))
    assert [c.call for c in rec.calls] == ["mount"]


def test_kernel_without_overlay(tmp_path):
    rec = RecordingSyscalls()
    proc = fake_proc(tmp_path, "/x", "tmpfs", filesystems="nodev\tsysfs\n\text4\n")
    assert not supported(tmp_path / "s", syscalls=rec, proc=proc)
    assert rec.calls == []


@pytest.mark.parametrize("fstype", ["overlay", "nfs4", "aufs"])
def test_backing_filesystem_that_cannot_be_an_upper(tmp_path, fstype):
    rec = RecordingSyscalls()
    root = tmp_path / "with space" / "store"
    root.parent.mkdir()
    proc = fake_proc(tmp_path, str(tmp_path / "with space"), fstype)
    assert not supported(root, syscalls=rec, proc=proc)
    assert rec.calls == []


def test_index_off_follows_the_module_default(tmp_path):
    params = tmp_path / "params"
    params.mkdir()
    (params / "index").write_text("Y\n")
    s = OverlaySnapshotter(tmp_path / "a", overlay_params=params)
    assert s.index_off
    s.prepare("k")
    s.commit("c", "k")
    assert s.prepare("k2", "c")[0].options[0] == "index=off"
    s.close()
    (params / "index").write_text("N\n")
    with OverlaySnapshotter(tmp_path / "b", overlay_params=params) as s2:
        assert not s2.index_off


def test_auto_picks_a_snapshotter(tmp_path):
    with create_snapshotter("auto", tmp_path / "auto") as s:
        assert type(s).__name__ in ("OverlaySnapshotter", "CopyingSnapshotter")
