"""Table tests for pallet.runtime.mountopts.parse: OCI mount options -> flags, propagation, data."""

from __future__ import annotations

import pytest

from pallet.runtime import mountopts
from pallet.runtime.mountopts import MountOptions, parse
from pallet.syscalls.flags import (
    MS_BIND,
    MS_DIRSYNC,
    MS_LAZYTIME,
    MS_MANDLOCK,
    MS_NOATIME,
    MS_NODEV,
    MS_NODIRATIME,
    MS_NOEXEC,
    MS_NOSUID,
    MS_NOSYMFOLLOW,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_RELATIME,
    MS_REMOUNT,
    MS_SHARED,
    MS_SILENT,
    MS_SLAVE,
    MS_STRICTATIME,
    MS_SYNCHRONOUS,
    MS_UNBINDABLE,
)

MS_I_VERSION = 1 << 23  # include/uapi/linux/mount.h


@pytest.mark.parametrize("options,flags", [
    ([], 0),
    (["ro"], MS_RDONLY),
    (["nosuid"], MS_NOSUID),
    (["nodev"], MS_NODEV),
    (["noexec"], MS_NOEXEC),
    (["sync"], MS_SYNCHRONOUS),
    (["dirsync"], MS_DIRSYNC),
    (["remount"], MS_REMOUNT),
    (["mand"], MS_MANDLOCK),
    (["noatime"], MS_NOATIME),
    (["nodiratime"], MS_NODIRATIME),
    (["relatime"], MS_RELATIME),
    (["strictatime"], MS_STRICTATIME),
    (["lazytime"], MS_LAZYTIME),
    (["nosymfollow"], MS_NOSYMFOLLOW),
    (["bind"], MS_BIND),
    (["rbind"], MS_BIND | MS_REC),
    (["nosuid", "noexec", "nodev"], MS_NOSUID | MS_NOEXEC | MS_NODEV),
    (["nosuid", "noexec", "nodev", "relatime", "ro"],
     MS_NOSUID | MS_NOEXEC | MS_NODEV | MS_RELATIME | MS_RDONLY),
])
def test_flag_options(options, flags):
    opts = parse(options)
    assert opts.flags == flags
    assert opts.data == ""
    assert opts.propagation == ()


@pytest.mark.parametrize("options,flags", [
    (["ro", "rw"], 0),
    (["rw", "ro"], MS_RDONLY),
    (["nosuid", "suid"], 0),
    (["nodev", "dev"], 0),
    (["noexec", "exec"], 0),
    (["sync", "async"], 0),
    (["mand", "nomand"], 0),
    (["noatime", "atime"], 0),
    (["nodiratime", "diratime"], 0),
    (["relatime", "norelatime"], 0),
    (["strictatime", "nostrictatime"], 0),
    (["lazytime", "nolazytime"], 0),
    (["nosymfollow", "symfollow"], 0),
    (["rw"], 0),
    (["ro", "nosuid", "rw"], MS_NOSUID),
])
def test_later_options_win_and_negations_clear(options, flags):
    assert parse(options).flags == flags


@pytest.mark.parametrize("options,propagation", [
    (["private"], [MS_PRIVATE]),
    (["rprivate"], [MS_PRIVATE | MS_REC]),
    (["shared"], [MS_SHARED]),
    (["rshared"], [MS_SHARED | MS_REC]),
    (["slave"], [MS_SLAVE]),
    (["rslave"], [MS_SLAVE | MS_REC]),
    (["unbindable"], [MS_UNBINDABLE]),
    (["runbindable"], [MS_UNBINDABLE | MS_REC]),
    (["rbind", "rslave", "runbindable"], [MS_SLAVE | MS_REC, MS_UNBINDABLE | MS_REC]),
])
def test_propagation_is_kept_apart_from_the_flags(options, propagation):
    opts = parse(options)
    assert opts.propagation == tuple(propagation)
    assert opts.flags & (MS_PRIVATE | MS_SHARED | MS_SLAVE | MS_UNBINDABLE) == 0


@pytest.mark.parametrize("options,data", [
    (["mode=755"], "mode=755"),
    (["nosuid", "mode=755", "size=65536k"], "mode=755,size=65536k"),
    (["newinstance", "ptmxmode=0666", "mode=0620", "gid=5"], "newinstance,ptmxmode=0666,mode=0620,gid=5"),
    (["lowerdir=/a:/b", "upperdir=/u", "workdir=/w"], "lowerdir=/a:/b,upperdir=/u,workdir=/w"),
])
def test_unknown_options_are_filesystem_data_in_order(options, data):
    assert parse(options).data == data


def test_runtime_only_options_never_reach_mount():
    opts = parse(["tmpcopyup", "copy-symlink", "rbind"])
    assert opts == MountOptions(flags=MS_BIND | MS_REC)


@pytest.mark.parametrize("options,idmap,recursive", [
    (["idmap"], True, False),
    (["ridmap"], True, True),
    (["ridmap", "idmap"], True, True),
    (["rbind"], False, False),
])
def test_idmap_options(options, idmap, recursive):
    opts = parse(options)
    assert (opts.idmap, opts.recursive_idmap) == (idmap, recursive)
    assert opts.data == ""


def test_is_bind():
    assert parse(["bind"]).is_bind
    assert parse(["rbind", "ro"]).is_bind
    assert not parse(["ro"]).is_bind
    assert not parse(["rprivate"]).is_bind


def test_propagation_flag_names():
    assert mountopts.propagation_flag("rslave") == MS_SLAVE | MS_REC
    assert mountopts.propagation_flag("private") == MS_PRIVATE


def test_parse_does_not_share_state_between_calls():
    a = parse(["rprivate"])
    b = parse([])
    assert a.propagation is not b.propagation
    assert b.propagation == ()


@pytest.mark.parametrize("option,flags", [
    ("defaults", 0),
    ("silent", MS_SILENT),
    ("loud", 0),
    ("iversion", MS_I_VERSION),
    ("noiversion", 0),
])
def test_spec_must_options_are_flags_not_data(option, flags):
    opts = parse(["nosuid", option])
    assert opts.data == ""
    assert opts.flags == MS_NOSUID | flags


def test_x_options_never_reach_the_kernel_and_chdir_is_kept():
    opts = mountopts.parse(["lowerdir=2/fs:1/fs", "x-pallet.chdir=/var/lib/pallet/snapshots", "x-other",
                            "ro"])
    assert opts.data == "lowerdir=2/fs:1/fs"
    assert opts.chdir == "/var/lib/pallet/snapshots"
