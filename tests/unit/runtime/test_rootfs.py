"""Unit tests for pallet.runtime.rootfs: the recorded mount(2) sequence, with tmp_path as the rootfs.

No root and no real mounts: the kernel door is a RecordingSyscalls, and the few os calls that
need privilege or change the test process (mknod, chown, chdir, fchdir, chroot) and statvfs
(whose answer depends on the host's mounts) are replaced by recorders.
"""

from __future__ import annotations

import errno
import os
import stat
from types import SimpleNamespace

import pytest

from pallet.errors import InvalidArgument
from pallet.runtime import rootfs as R
from pallet.runtime.rootfs import Rootfs
from pallet.syscalls.flags import (
    MNT_DETACH,
    MS_BIND,
    MS_MOVE,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_RELATIME,
    MS_REMOUNT,
    MS_SHARED,
    MS_SLAVE,
    MS_STRICTATIME,
)
from pallet.syscalls.recording import Call, RecordingSyscalls


def mount(source, target, fstype=None, flags=0, data=None) -> Call:
    return Call("mount", source=source, target=target, fstype=fstype, flags=flags, data=data)


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "rootfs"
    r.mkdir()
    return str(r)


@pytest.fixture
def rec():
    return RecordingSyscalls()


@pytest.fixture
def statvfs(monkeypatch):
    """os.statvfs answers with the f_flag a test sets (default: no flags)."""
    state = SimpleNamespace(f_flag=0, paths=[])

    def fake(path):
        state.paths.append(str(path))
        return SimpleNamespace(f_flag=state.f_flag)

    monkeypatch.setattr(os, "statvfs", fake)
    return state


def no_cgroups() -> list[tuple[str, str]]:
    raise AssertionError("cgroup_binds must only be called for a cgroup mount")


# -- prepare ---------------------------------------------------------------------------------

def test_prepare_default_makes_host_rslave_and_binds_rootfs_onto_itself(root, rec):
    Rootfs(root, rec).prepare(None)
    assert rec.calls == [
        mount(None, "/", None, MS_SLAVE | MS_REC),
        mount(root, root, None, MS_BIND | MS_REC),
    ]


@pytest.mark.parametrize("prop,flag", [
    ("private", MS_PRIVATE),
    ("rprivate", MS_PRIVATE | MS_REC),
    ("slave", MS_SLAVE),
    ("rslave", MS_SLAVE | MS_REC),
])
def test_prepare_uses_a_non_shared_rootfs_propagation_on_slash(root, rec, prop, flag):
    Rootfs(root, rec).prepare(prop)
    assert rec.calls == [mount(None, "/", None, flag), mount(root, root, None, MS_BIND | MS_REC)]


@pytest.mark.parametrize("prop", ["shared", "rshared"])
def test_prepare_never_makes_slash_shared(root, rec, prop):
    Rootfs(root, rec).prepare(prop)
    assert rec.calls[0] == mount(None, "/", None, MS_SLAVE | MS_REC)
    assert rec.calls[1] == mount(root, root, None, MS_BIND | MS_REC)


@pytest.mark.parametrize("prop", ["shared", "rshared"])
def test_prepare_leaves_shared_propagation_for_after_pivot_root(root, rec, prop):
    Rootfs(root, rec).prepare(prop)
    assert not [c for c in rec.calls if c.args["flags"] & MS_SHARED]


# -- mount_all: ordinary filesystems ------------------------------------------------------------

def test_proc_mount_creates_the_mount_point_and_passes_flags(root, rec):
    Rootfs(root, rec).mount_all(
        [{"destination": "/proc", "type": "proc", "source": "proc",
          "options": ["nosuid", "noexec", "nodev"]}], no_cgroups, {})
    assert rec.calls == [mount("proc", f"{root}/proc", "proc", MS_NOSUID | MS_NOEXEC | MS_NODEV)]
    assert os.path.isdir(f"{root}/proc")


def test_tmpfs_data_options_go_to_the_filesystem(root, rec):
    Rootfs(root, rec).mount_all(
        [{"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
          "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}], no_cgroups, {})
    assert rec.calls == [mount("tmpfs", f"{root}/dev", "tmpfs", MS_NOSUID | MS_STRICTATIME,
                               "mode=755,size=65536k")]


def test_missing_source_defaults_to_the_type(root, rec):
    Rootfs(root, rec).mount_all([{"destination": "/run", "type": "tmpfs"}], no_cgroups, {})
    assert rec.calls == [mount("tmpfs", f"{root}/run", "tmpfs", 0)]


def test_propagation_options_are_separate_mount_calls(root, rec):
    Rootfs(root, rec).mount_all(
        [{"destination": "/mnt", "type": "tmpfs", "source": "tmpfs", "options": ["rprivate", "noexec"]}],
        no_cgroups, {})
    assert rec.calls == [
        mount("tmpfs", f"{root}/mnt", "tmpfs", MS_NOEXEC),
        mount(None, f"{root}/mnt", None, MS_PRIVATE | MS_REC),
    ]


def test_mounts_run_in_order(root, rec):
    Rootfs(root, rec).mount_all(
        [{"destination": "/proc", "type": "proc"}, {"destination": "/dev", "type": "tmpfs"},
         {"destination": "/dev/shm", "type": "tmpfs", "source": "shm"}], no_cgroups, {})
    assert [c.args["target"] for c in rec.calls] == [f"{root}/proc", f"{root}/dev", f"{root}/dev/shm"]


# -- mount_all: bind mounts ----------------------------------------------------------------------

def test_bind_mount_of_a_directory(root, rec, tmp_path, statvfs):
    src = tmp_path / "data"
    src.mkdir()
    Rootfs(root, rec).mount_all(
        [{"destination": "/data", "type": "bind", "source": str(src), "options": ["rbind"]}], no_cgroups, {})
    # Nothing beyond the bind was asked for: no remount.
    assert rec.calls == [mount(str(src), f"{root}/data", None, MS_BIND | MS_REC)]
    assert os.path.isdir(f"{root}/data")


def test_read_only_bind_is_a_bind_then_a_remount(root, rec, tmp_path, statvfs):
    src = tmp_path / "data"
    src.mkdir()
    Rootfs(root, rec).mount_all(
        [{"destination": "/data", "type": "none", "source": str(src), "options": ["bind", "ro", "nosuid"]}],
        no_cgroups, {})
    assert rec.calls == [
        mount(str(src), f"{root}/data", None, MS_BIND),
        mount(None, f"{root}/data", None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID),
    ]


def test_bind_remount_keeps_the_flags_the_kernel_locked(root, rec, tmp_path, statvfs):
    # In a user namespace nosuid/nodev/noexec of the source mount are locked: the remount must
    # repeat them or the kernel answers EPERM.
    src = tmp_path / "data"
    src.mkdir()
    statvfs.f_flag = os.ST_NOSUID | os.ST_NODEV | os.ST_NOEXEC | os.ST_RDONLY
    Rootfs(root, rec, in_userns=True).mount_all(
        [{"destination": "/data", "source": str(src), "options": ["rbind", "ro"]}], no_cgroups, {})
    assert rec.calls[1] == mount(None, f"{root}/data", None,
                                 MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    assert statvfs.paths == [f"{root}/data"]


def test_bind_remount_keeps_a_locked_relatime(root, rec, tmp_path, statvfs):
    src = tmp_path / "data"
    src.mkdir()
    statvfs.f_flag = os.ST_RELATIME | os.ST_NOSUID
    Rootfs(root, rec, in_userns=True).mount_all(
        [{"destination": "/data", "source": str(src), "options": ["rbind", "ro"]}], no_cgroups, {})
    assert rec.calls[1] == mount(None, f"{root}/data", None,
                                 MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_RELATIME)


def test_bind_of_a_file_creates_a_file_mount_point(root, rec, tmp_path):
    src = tmp_path / "resolv.conf"
    src.write_text("nameserver 127.0.0.1\n")
    Rootfs(root, rec).mount_all(
        [{"destination": "/etc/resolv.conf", "type": "bind", "source": str(src), "options": ["rbind"]}],
        no_cgroups, {})
    assert os.path.isfile(f"{root}/etc/resolv.conf")
    assert rec.calls == [mount(str(src), f"{root}/etc/resolv.conf", None, MS_BIND | MS_REC)]


def test_bind_keeps_an_existing_mount_point(root, rec, tmp_path):
    src = tmp_path / "hosts"
    src.write_text("")
    os.makedirs(f"{root}/etc")
    with open(f"{root}/etc/hosts", "w") as f:
        f.write("keep me")
    Rootfs(root, rec).mount_all([{"destination": "/etc/hosts", "source": str(src), "options": ["bind"]}],
                                no_cgroups, {})
    with open(f"{root}/etc/hosts") as f:
        assert f.read() == "keep me"


def test_bind_with_a_relative_source_is_refused(root, rec):
    with pytest.raises(InvalidArgument, match="must be an absolute path"):
        Rootfs(root, rec).mount_all(
            [{"destination": "/data", "type": "bind", "source": "data", "options": ["rbind"]}],
            no_cgroups, {})
    assert rec.calls == []


def test_destination_symlink_cannot_leave_the_rootfs(root, rec, tmp_path):
    outside = tmp_path / "host-etc"
    outside.mkdir()
    os.symlink(str(outside), f"{root}/etc")           # absolute: restarts at the rootfs
    os.symlink("../../../../../../..", f"{root}/up")  # relative: stops at the rootfs
    Rootfs(root, rec).mount_all(
        [{"destination": "/etc/shadow-dir", "type": "tmpfs"}, {"destination": "/up/x", "type": "tmpfs"}],
        no_cgroups, {})
    targets = [c.args["target"] for c in rec.calls]
    assert targets == [root + str(outside) + "/shadow-dir", f"{root}/x"]
    assert os.listdir(outside) == []


class FailSecondMount(RecordingSyscalls):
    def mount(self, source, target, fstype=None, flags=0, data=None) -> None:
        super().mount(source, target, fstype, flags, data)
        if len(self.calls) == 2:
            raise OSError(errno.ENODEV, "No such device")


def test_a_failed_mount_names_the_mount(root):
    rec = FailSecondMount()
    with pytest.raises(InvalidArgument, match=r"^mounts\[1\] \(/weird\): .*No such device") as info:
        Rootfs(root, rec).mount_all(
            [{"destination": "/proc", "type": "proc"}, {"destination": "/weird", "type": "weirdfs"}],
            no_cgroups, {})
    assert isinstance(info.value.__cause__, OSError)
    assert len(rec.calls) == 2


def test_sysfs_in_a_user_namespace_binds_the_hosts_sys(root, rec, statvfs):
    Rootfs(root, rec, in_userns=True).mount_all(
        [{"destination": "/sys", "type": "sysfs", "source": "sysfs",
          "options": ["nosuid", "noexec", "nodev", "ro"]}], no_cgroups, {})
    assert rec.calls == [
        mount("/sys", f"{root}/sys", None, MS_BIND | MS_REC),
        mount(None, f"{root}/sys", None, MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NOEXEC | MS_NODEV | MS_RDONLY),
    ]


def test_sysfs_without_a_user_namespace_is_a_real_sysfs(root, rec):
    Rootfs(root, rec).mount_all(
        [{"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["ro"]}], no_cgroups, {})
    assert rec.calls == [mount("sysfs", f"{root}/sys", "sysfs", MS_RDONLY)]


def test_idmapped_mount_is_moved_into_place_and_its_fd_closed(root, rec, tmp_path, statvfs):
    src = tmp_path / "data"
    src.mkdir()
    fd = os.open(str(src), os.O_RDONLY | os.O_DIRECTORY)
    Rootfs(root, rec).mount_all(
        [{"destination": "/data", "type": "bind", "source": str(src), "options": ["rbind", "idmap", "ro"]}],
        no_cgroups, {0: fd})
    assert rec.calls == [
        Call("move_mount", target=f"{root}/data"),
        mount(None, f"{root}/data", None, MS_BIND | MS_REMOUNT | MS_RDONLY),
    ]
    with pytest.raises(OSError) as info:
        os.fstat(fd)
    assert info.value.errno == errno.EBADF


# -- mount_all: cgroups ------------------------------------------------------------------------

CG = {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
      "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
CG_FLAGS = MS_NOSUID | MS_NOEXEC | MS_NODEV | MS_RELATIME | MS_RDONLY


def test_cgroup2_with_a_cgroup_namespace_is_a_new_cgroup2_mount(root, rec):
    Rootfs(root, rec).mount_all([CG], lambda: [("cgroup2", "")], {})
    assert rec.calls == [mount("cgroup2", f"{root}/sys/fs/cgroup", "cgroup2", CG_FLAGS)]


def test_cgroup2_without_a_namespace_binds_the_containers_cgroup(root, rec, statvfs):
    Rootfs(root, rec).mount_all([CG], lambda: [("/sys/fs/cgroup/pallet/c1", "")], {})
    dest = f"{root}/sys/fs/cgroup"
    assert rec.calls == [
        mount("/sys/fs/cgroup/pallet/c1", dest, None, MS_BIND | MS_REC),
        mount(None, dest, None, MS_BIND | MS_REMOUNT | CG_FLAGS),
    ]


def test_cgroup_v1_is_a_tmpfs_of_binds_with_symlinks_for_comounts(root, rec, tmp_path, statvfs):
    cpu = tmp_path / "host" / "cpu,cpuacct" / "c1"
    mem = tmp_path / "host" / "memory" / "c1"
    cpu.mkdir(parents=True)
    mem.mkdir(parents=True)
    missing = tmp_path / "host" / "pids" / "c1"
    Rootfs(root, rec).mount_all(
        [CG], lambda: [(str(cpu), "cpu,cpuacct"), (str(mem), "memory"), (str(missing), "pids")], {})
    dest = f"{root}/sys/fs/cgroup"
    bind_ro = MS_BIND | MS_REMOUNT | CG_FLAGS
    assert rec.calls == [
        mount("tmpfs", dest, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755"),
        mount(str(cpu), f"{dest}/cpu,cpuacct", None, MS_BIND | MS_REC),
        mount(None, f"{dest}/cpu,cpuacct", None, bind_ro),
        mount(str(mem), f"{dest}/memory", None, MS_BIND | MS_REC),
        mount(None, f"{dest}/memory", None, bind_ro),
        mount(None, dest, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC),
    ]
    assert os.readlink(f"{dest}/cpu") == "cpu,cpuacct"
    assert os.readlink(f"{dest}/cpuacct") == "cpu,cpuacct"


# -- devices -------------------------------------------------------------------------------------

@pytest.fixture
def fake_mknod(monkeypatch):
    """mknod needs CAP_MKNOD: record it and leave a regular file so chmod has something to act on."""
    made: list[tuple] = []

    def mknod(path, mode=0o600, device=0):
        made.append(("mknod", str(path), mode, device))
        with open(path, "w"):
            pass

    def chown(path, uid, gid):
        made.append(("chown", str(path), uid, gid))

    monkeypatch.setattr(os, "mknod", mknod)
    monkeypatch.setattr(os, "chown", chown)
    return made


def test_default_devices_are_created_with_their_numbers(root, rec, fake_mknod):
    Rootfs(root, rec).create_devices([])
    mknods = [m for m in fake_mknod if m[0] == "mknod"]
    assert mknods == [("mknod", f"{root}{p}", stat.S_IFCHR | mode, os.makedev(ma, mi))
                      for p, _t, ma, mi, mode in R.DEFAULT_DEVICES]
    assert [m for m in fake_mknod if m[0] == "chown"] == [("chown", f"{root}{p}", 0, 0)
                                                           for p, *_ in R.DEFAULT_DEVICES]
    # chmod after mknod, because mknod applies the umask.
    assert stat.S_IMODE(os.stat(f"{root}/dev/null").st_mode) == 0o666
    assert rec.calls == []


def test_dev_symlinks(root, rec, fake_mknod):
    Rootfs(root, rec).create_devices([])
    assert os.readlink(f"{root}/dev/fd") == "/proc/self/fd"
    assert os.readlink(f"{root}/dev/stdin") == "/proc/self/fd/0"
    assert os.readlink(f"{root}/dev/stdout") == "/proc/self/fd/1"
    assert os.readlink(f"{root}/dev/stderr") == "/proc/self/fd/2"
    assert os.readlink(f"{root}/dev/ptmx") == "pts/ptmx"


def test_spec_devices_override_defaults_and_add_their_own(root, rec, fake_mknod):
    Rootfs(root, rec).create_devices([
        {"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o600, "uid": 0, "gid": 0},
        {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o620, "uid": 7, "gid": 8},
        {"path": "/dev/sda", "type": "b", "major": 8, "minor": 0},
        {"path": "/dev/myfifo", "type": "p"},
    ])
    mknods = {m[1][len(root):]: m[2:] for m in fake_mknod if m[0] == "mknod"}
    assert list(mknods).count("/dev/null") == 1
    assert mknods["/dev/null"] == (stat.S_IFCHR | 0o600, os.makedev(1, 3))
    assert mknods["/dev/fuse"] == (stat.S_IFCHR | 0o620, os.makedev(10, 229))
    assert mknods["/dev/sda"] == (stat.S_IFBLK | 0o666, os.makedev(8, 0))
    assert mknods["/dev/myfifo"] == (stat.S_IFIFO | 0o666, 0)
    assert ("chown", f"{root}/dev/fuse", 7, 8) in fake_mknod
    assert stat.S_IMODE(os.stat(f"{root}/dev/null").st_mode) == 0o600


def test_an_existing_file_is_replaced_by_the_device(root, rec, fake_mknod):
    os.makedirs(f"{root}/dev")
    with open(f"{root}/dev/null", "w") as f:
        f.write("not a device")
    Rootfs(root, rec).create_devices([])
    with open(f"{root}/dev/null") as f:
        assert f.read() == ""


def test_devices_in_a_user_namespace_are_bind_mounted_from_the_host(root, rec, monkeypatch):
    def no_mknod(*a, **k):
        raise AssertionError("mknod in a user namespace")

    monkeypatch.setattr(os, "mknod", no_mknod)
    Rootfs(root, rec, in_userns=True).create_devices([{"path": "/dev/fuse", "type": "c", "major": 10,
                                                       "minor": 229}])
    paths = [p for p, *_ in R.DEFAULT_DEVICES] + ["/dev/fuse"]
    assert rec.calls == [mount(p, f"{root}{p}", None, MS_BIND) for p in paths]
    assert all(os.path.isfile(f"{root}{p}") for p in paths)


def test_a_failed_mknod_names_the_device(root, rec, monkeypatch):
    def mknod(path, mode=0o600, device=0):
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "mknod", mknod)
    with pytest.raises(OSError, match=r"creating device /dev/null \(c 1:3\)") as info:
        Rootfs(root, rec).create_devices([])
    assert info.value.errno == errno.EPERM


def test_device_path_symlink_stays_in_the_rootfs(root, rec, tmp_path, fake_mknod):
    outside = tmp_path / "host-dev"
    outside.mkdir()
    os.symlink(str(outside), f"{root}/dev")
    Rootfs(root, rec).create_devices([])
    assert os.listdir(outside) == []
    assert all(m[1].startswith(root + "/") for m in fake_mknod)


# -- device cgroup rules ---------------------------------------------------------------------------

def test_device_rules_order_spec_rules_then_defaults_then_spec_devices():
    deny = {"allow": False, "access": "rwm"}
    rules = R.device_rules({"resources": {"devices": [deny]},
                            "devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229},
                                        {"path": "/dev/fifo", "type": "p"}]})
    assert rules[0] == deny
    assert rules[1:-1] == R.DEFAULT_DEVICE_RULES
    assert rules[-1] == {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rwm"}


def test_device_rules_allow_every_default_device_and_the_console_and_ptys():
    allowed = {(r["type"], r.get("major"), r.get("minor")) for r in R.device_rules({}) if r["allow"]}
    for _p, t, ma, mi, _m in R.DEFAULT_DEVICES:
        assert (t, ma, mi) in allowed
    assert ("c", 5, 1) in allowed      # /dev/console
    assert ("c", 5, 2) in allowed      # /dev/ptmx
    assert ("c", 136, None) in allowed  # /dev/pts/*


def test_device_rules_with_no_linux_section():
    assert R.device_rules({}) == R.DEFAULT_DEVICE_RULES


def test_device_rules_allow_unbuffered_char_devices_as_c():
    rules = R.device_rules({"devices": [{"path": "/dev/x", "type": "u", "major": 42, "minor": 7}]})
    assert {"allow": True, "type": "c", "major": 42, "minor": 7, "access": "rwm"} in rules


# -- pivot --------------------------------------------------------------------------------------

@pytest.fixture
def fake_cwd(monkeypatch, rec):
    """chdir/fchdir/chroot would move the test process: record them among the syscalls instead."""

    def fd_path(fd):
        return os.readlink(f"/proc/self/fd/{fd}")

    monkeypatch.setattr(os, "fchdir", lambda fd: rec.calls.append(Call("fchdir", path=fd_path(fd))))
    monkeypatch.setattr(os, "chdir", lambda p: rec.calls.append(Call("chdir", path=str(p))))
    monkeypatch.setattr(os, "chroot", lambda p: rec.calls.append(Call("chroot", path=str(p))))


def test_pivot_root_dot_dot_then_detach_the_old_root(root, rec, fake_cwd):
    before = len(os.listdir("/proc/self/fd"))
    Rootfs(root, rec).pivot()
    assert rec.calls == [
        Call("fchdir", path=root),
        Call("pivot_root", new_root=".", put_old="."),
        Call("fchdir", path="/"),
        mount(None, ".", None, MS_SLAVE | MS_REC),
        Call("umount2", target=".", flags=MNT_DETACH),
        Call("chdir", path="/"),
    ]
    assert len(os.listdir("/proc/self/fd")) == before


def test_pivot_closes_its_fds_when_pivot_root_fails(root, monkeypatch):
    rec = RecordingSyscalls(fail={"pivot_root": OSError(errno.EINVAL, "Invalid argument")})
    monkeypatch.setattr(os, "fchdir", lambda fd: None)
    monkeypatch.setattr(os, "chdir", lambda p: None)
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(OSError):
        Rootfs(root, rec).pivot()
    assert len(os.listdir("/proc/self/fd")) == before


def test_no_pivot_moves_the_rootfs_onto_slash_and_chroots(root, rec, fake_cwd):
    Rootfs(root, rec).pivot(no_pivot=True)
    assert rec.calls == [
        Call("chdir", path=root),
        mount(root, "/", None, MS_MOVE),
        Call("chroot", path="."),
        Call("chdir", path="/"),
    ]


# -- after pivot -----------------------------------------------------------------------------------

def test_mask_paths_tmpfs_over_directories_dev_null_over_files(tmp_path, rec):
    (tmp_path / "acpi").mkdir()
    (tmp_path / "kcore").write_text("")
    Rootfs("/", rec).mask_paths([str(tmp_path / "acpi"), str(tmp_path / "kcore"), str(tmp_path / "absent")])
    assert rec.calls == [
        mount("tmpfs", str(tmp_path / "acpi"), "tmpfs", MS_RDONLY),
        mount("/dev/null", str(tmp_path / "kcore"), None, MS_BIND),
    ]


def test_readonly_paths_bind_then_remount_keeping_locked_flags(tmp_path, rec, statvfs):
    (tmp_path / "sys").mkdir()
    statvfs.f_flag = os.ST_NOSUID | os.ST_NOEXEC
    p = str(tmp_path / "sys")
    Rootfs("/", rec).readonly_paths([p, str(tmp_path / "absent")])
    assert rec.calls == [
        mount(p, p, None, MS_BIND | MS_REC),
        mount(None, p, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC | MS_NOSUID | MS_NOEXEC),
    ]


def test_readonly_root(rec, statvfs):
    statvfs.f_flag = os.ST_NODEV
    Rootfs("/", rec).readonly_root()
    assert rec.calls == [mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NODEV)]
    assert statvfs.paths == ["/"]
