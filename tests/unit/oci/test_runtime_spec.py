"""Unit tests for pallet.oci.runtime_spec: config.json validation names the bad field; ids are safe."""

from __future__ import annotations

import copy

import pytest

from pallet.errors import InvalidArgument, NotSupported
from pallet.oci.runtime_spec import NAMESPACES, check_id, namespace_flags, validate_config

MINIMAL = {
    "ociVersion": "1.2.0",
    "root": {"path": "rootfs"},
    "process": {"args": ["sh"], "cwd": "/"},
}

FULL = {
    "ociVersion": "1.0.2-dev",
    "root": {"path": "rootfs", "readonly": True},
    "hostname": "box",
    "domainname": "example.org",
    "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid"]},
        {"destination": "/data", "type": "bind", "source": "/srv", "options": ["rbind", "idmap"],
         "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
         "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}]},
    ],
    "process": {
        "terminal": False, "args": ["sh", "-c", "true"], "env": ["A=b"], "cwd": "/",
        "user": {"uid": 0, "gid": 0, "umask": 18, "additionalGids": [1, 2]},
        "noNewPrivileges": True, "oomScoreAdj": -500,
        "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 4096}],
        "consoleSize": {"height": 24, "width": 80},
    },
    "linux": {
        "namespaces": [{"type": t}
                       for t in ("pid", "network", "ipc", "uts", "mount", "user", "cgroup", "time")],
        "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
        "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
        "timeOffsets": {"monotonic": {"secs": 10}, "boottime": {"secs": 20, "nanosecs": 1}},
        "devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229},
                    {"path": "/dev/fifo", "type": "p"}],
        "maskedPaths": ["/proc/kcore"],
        "readonlyPaths": ["/proc/sys"],
        "sysctl": {"net.ipv4.ip_forward": "1"},
        "rootfsPropagation": "rslave",
        "cgroupsPath": "/pallet/c1",
    },
    "hooks": {"prestart": [{"path": "/usr/bin/hook", "args": ["hook"], "timeout": 5}],
              "poststop": [{"path": "/bin/true"}]},
}


def cfg(**changes):
    """A copy of FULL with dotted paths set (value None deletes the key)."""
    c = copy.deepcopy(FULL)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = c
        for p in parents:
            node = node[int(p)] if p.isdigit() else node[p]
        if value is None:
            del node[int(last) if last.isdigit() else last]
        elif last.isdigit():
            node[int(last)] = value
        else:
            node[last] = value
    return c


def test_minimal_config_is_valid():
    validate_config(MINIMAL)


def test_full_config_is_valid():
    validate_config(FULL)


def test_process_is_optional():
    validate_config({"ociVersion": "1.2.0", "root": {"path": "rootfs"}})


@pytest.mark.parametrize("version", ["2.0.0", "2.1", "0.9.0", "3"])
def test_other_major_versions_are_not_supported(version):
    with pytest.raises(NotSupported, match="ociVersion"):
        validate_config(cfg(ociVersion=version))


BAD = [
    # (changes, field named in the message)
    ({"ociVersion": None}, "ociVersion"),
    ({"ociVersion": 1}, "ociVersion"),
    ({"root": None}, "root"),
    ({"root": "rootfs"}, "root"),
    ({"root__path": None}, "root.path"),
    ({"root__path": 5}, "root.path"),
    ({"root__readonly": "yes"}, "root.readonly"),
    ({"hostname": 1}, "hostname"),
    ({"domainname": ["a"]}, "domainname"),
    ({"mounts__0": "proc"}, "mounts[0]"),
    ({"mounts__1__destination": None}, "mounts[1].destination"),
    ({"mounts__1__destination": 7}, "mounts[1].destination"),
    ({"mounts__0__options": "nosuid"}, "mounts[0].options"),
    ({"mounts__0__options": ["nosuid", 3]}, "mounts[0].options[1]"),
    ({"mounts__1__uidMappings__0__size": None}, "mounts[1].uidMappings[0].size"),
    ({"mounts__1__gidMappings__0__hostID": -1}, "mounts[1].gidMappings[0].hostID"),
    ({"process": ["sh"]}, "process"),
    ({"process__args": None}, "process.args"),
    ({"process__args": []}, "process.args"),
    ({"process__args": "sh"}, "process.args"),
    ({"process__args": ["sh", None]}, "process.args[1]"),
    ({"process__env": ["A=b", 1]}, "process.env[1]"),
    ({"process__cwd": "tmp"}, "process.cwd"),
    ({"process__cwd": 0}, "process.cwd"),
    ({"process__user": "root"}, "process.user"),
    ({"process__user__uid": "0"}, "process.user.uid"),
    ({"process__user__gid": True}, "process.user.gid"),
    ({"process__user__additionalGids": 1}, "process.user.additionalGids"),
    ({"process__terminal": "false"}, "process.terminal"),
    ({"process__noNewPrivileges": 1}, "process.noNewPrivileges"),
    ({"process__oomScoreAdj": 1001}, "process.oomScoreAdj"),
    ({"process__oomScoreAdj": "1"}, "process.oomScoreAdj"),
    ({"process__rlimits__0__type": "NOFILE"}, "process.rlimits[0].type"),
    ({"process__rlimits__0__soft": None}, "process.rlimits[0].soft"),
    ({"process__rlimits__0__soft": 5000}, "process.rlimits[0]"),
    ({"process__consoleSize": [24, 80]}, "process.consoleSize"),
    ({"linux": ["pid"]}, "linux"),
    ({"linux__namespaces__1": "network"}, "linux.namespaces[1]"),
    ({"linux__namespaces__1__type": "net"}, "linux.namespaces[1].type"),
    ({"linux__namespaces__2__type": "pid"}, "linux.namespaces[2].type"),
    ({"linux__namespaces__0__path": 3}, "linux.namespaces[0].path"),
    ({"linux__uidMappings": {"containerID": 0}}, "linux.uidMappings"),
    ({"linux__uidMappings__0__containerID": "0"}, "linux.uidMappings[0].containerID"),
    ({"linux__gidMappings": None}, "linux.uidMappings"),
    ({"linux__timeOffsets": {"realtime": {"secs": 1}}}, "linux.timeOffsets.realtime"),
    ({"linux__timeOffsets__monotonic": 10}, "linux.timeOffsets.monotonic"),
    ({"linux__devices__0__type": "x"}, "linux.devices[0].type"),
    ({"linux__devices__0__major": None}, "linux.devices[0].major"),
    ({"linux__devices__0__path": None}, "linux.devices[0].path"),
    ({"linux__maskedPaths": "/proc/kcore"}, "linux.maskedPaths"),
    ({"linux__readonlyPaths": ["/proc/sys", 1]}, "linux.readonlyPaths[1]"),
    ({"linux__sysctl__net.ipv4.ip_forward": 1}, "linux.sysctl.net.ipv4.ip_forward"),
    ({"linux__rootfsPropagation": "rslaves"}, "linux.rootfsPropagation"),
    ({"linux__cgroupsPath": 5}, "linux.cgroupsPath"),
    ({"hooks": ["/bin/true"]}, "hooks"),
    ({"hooks__prestop": []}, "hooks.prestop"),
    ({"hooks__prestart": {"path": "/x"}}, "hooks.prestart"),
    ({"hooks__prestart__0__path": "hook"}, "hooks.prestart[0].path"),
    ({"hooks__prestart__0__path": None}, "hooks.prestart[0].path"),
    ({"hooks__prestart__0__timeout": 0}, "hooks.prestart[0].timeout"),
    ({"hooks__poststop__0": "/bin/true"}, "hooks.poststop[0]"),
]


@pytest.mark.parametrize("changes,field", BAD, ids=[f for _, f in BAD])
def test_a_bad_field_is_named(changes, field):
    with pytest.raises(InvalidArgument) as info:
        validate_config(cfg(**changes))
    assert str(info.value).startswith(field + ":"), str(info.value)


@pytest.mark.parametrize("config", [None, [], "{}"])
def test_config_must_be_an_object(config):
    with pytest.raises(InvalidArgument, match=r"^config\.json"):
        validate_config(config)


def test_hostname_needs_a_uts_namespace():
    c = cfg()
    c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "uts"]
    with pytest.raises(InvalidArgument, match=r"^hostname: .*uts"):
        validate_config(c)


def test_mappings_need_a_user_namespace():
    c = cfg()
    c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "user"]
    with pytest.raises(InvalidArgument, match=r"^linux\.uidMappings: .*user namespace"):
        validate_config(c)


def test_joining_a_user_namespace_needs_no_mappings():
    c = cfg()
    del c["linux"]["uidMappings"], c["linux"]["gidMappings"]
    next(n for n in c["linux"]["namespaces"] if n["type"] == "user")["path"] = "/proc/1/ns/user"
    validate_config(c)


def test_time_offsets_need_a_time_namespace():
    c = cfg()
    c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "time"]
    with pytest.raises(InvalidArgument, match=r"^linux\.timeOffsets: .*time namespace"):
        validate_config(c)


@pytest.mark.parametrize("key", ["intelRdt", "personality"])
def test_unsupported_linux_features(key):
    with pytest.raises(NotSupported, match=rf"^linux\.{key}"):
        validate_config(cfg(**{f"linux__{key}": {"domain": "LINUX"}}))


def test_booleans_are_not_integers():
    with pytest.raises(InvalidArgument, match=r"process\.user\.uid: expected an integer, got boolean"):
        validate_config(cfg(process__user__uid=False))


def test_relative_mount_destination_is_accepted():
    validate_config(cfg(mounts__0__destination="proc"))


def test_namespace_flags():
    linux = {"namespaces": [{"type": "pid"}, {"type": "network", "path": "/proc/1/ns/net"},
                            {"type": "mount"}]}
    assert namespace_flags(linux) == NAMESPACES["pid"][0] | NAMESPACES["mount"][0]
    assert namespace_flags(linux, new_only=False) == (NAMESPACES["pid"][0] | NAMESPACES["mount"][0]
                                                      | NAMESPACES["network"][0])
    assert namespace_flags({}) == 0


# -- container ids -------------------------------------------------------------------------------

@pytest.mark.parametrize("cid", ["abc", "A1", "a_b.c+d-e", "0" * 64, "x" * 1024, "a..b"])
def test_good_ids(cid):
    check_id(cid)


@pytest.mark.parametrize("cid", ["", "../x", "..", ".", "a/b", "/abs", ".hidden", "-flag", "a b",
                                 "a\x00b", "x" * 1025, "é"])
def test_bad_ids(cid):
    with pytest.raises(InvalidArgument, match="invalid container id"):
        check_id(cid)


def test_id_with_a_trailing_newline_is_refused():
    with pytest.raises(InvalidArgument):
        check_id("abc\n")
