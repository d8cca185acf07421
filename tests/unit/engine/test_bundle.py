"""HostConfig/Config -> OCI spec conversion (pure functions) and container filters."""

from __future__ import annotations

import pytest

from pallet.engine import bundle as B
from pallet.engine.containers import Container, _status_text, matches
from pallet.engine.state import ContainerState, Status
from pallet.errors import InvalidArgument, NotSupported

IMG = {"Cmd": ["sh"], "Env": ["PATH=/bin", "A=image"], "WorkingDir": "/w"}


def spec(cfg=None, hc=None, image=IMG, **kw):
    c, h = B.validate_create({"Image": "busybox", **(cfg or {}), "HostConfig": hc or {}})
    return B.build_spec(image, c, h, cid="ab" * 32, rootfs="/r", cgroup_parent="/p", **kw)


def mount(s, dst):
    return next(m for m in s["mounts"] if m["destination"] == dst)


@pytest.mark.parametrize("cfg,image,argv", [
    ({}, IMG, ["sh"]),
    ({"Cmd": ["echo", "x"]}, IMG, ["echo", "x"]),
    ({"Entrypoint": ["/e"]}, {"Cmd": ["c"], "Entrypoint": ["/old"]}, ["/e"]),
    ({}, {"Cmd": ["c"], "Entrypoint": ["/old"]}, ["/old", "c"]),
    ({"Cmd": ["x"]}, {"Cmd": ["c"], "Entrypoint": ["/old"]}, ["/old", "x"]),
    ({"Entrypoint": [""], "Cmd": ["ls"]}, {"Entrypoint": ["/old"]}, ["ls"]),
    ({"Entrypoint": "echo hi"}, {}, ["/bin/sh", "-c", "echo hi"]),
])
def test_command(cfg, image, argv):
    assert spec(cfg, image=image)["process"]["args"] == argv


def test_process_basics():
    s = spec({"Env": ["A=req", "B=2"], "User": "1000:100", "Tty": True, "Hostname": "h"},
             {"ReadonlyRootfs": True})
    p = s["process"]
    assert p["env"] == ["PATH=/bin", "A=req", "B=2", "TERM=xterm"]
    assert p["cwd"] == "/w" and p["user"] == {"uid": 1000, "gid": 100} and p["terminal"] is True
    assert p["noNewPrivileges"] is False and s["root"] == {"path": "/r", "readonly": True}
    assert s["hostname"] == "h" and s["linux"]["cgroupsPath"] == "/p/" + "ab" * 32
    assert spec()["hostname"] == ("ab" * 32)[:12]


def test_user_lookup_is_used_for_names():
    s = spec({"User": "nobody"}, lookup_user=lambda u: (65534, 65534, [5]))
    assert s["process"]["user"] == {"uid": 65534, "gid": 65534, "additionalGids": [5]}
    with pytest.raises(InvalidArgument):
        spec({"User": "nobody"})


@pytest.mark.parametrize("hc,resources", [
    ({"Memory": 64 << 20}, {"memory": {"limit": 64 << 20, "swap": 128 << 20}}),
    ({"Memory": 64 << 20, "MemorySwap": -1}, {"memory": {"limit": 64 << 20, "swap": -1}}),
    ({"NanoCpus": 1_500_000_000}, {"cpu": {"period": 100000, "quota": 150000}}),
    ({"CpuShares": 512, "CpusetCpus": "0"}, {"cpu": {"shares": 512, "cpus": "0"}}),
    ({"CpuQuota": 50000, "CpuPeriod": 100000}, {"cpu": {"quota": 50000, "period": 100000}}),
    ({"PidsLimit": 10}, {"pids": {"limit": 10}}),
    ({"PidsLimit": -1}, {}),
    ({"BlkioWeight": 300}, {"blockIO": {"weight": 300}}),
])
def test_resources(hc, resources):
    res = spec(hc=hc)["linux"]["resources"]
    res.pop("devices")
    assert res == resources


@pytest.mark.parametrize("hc,message", [
    ({"Memory": 1024}, "Minimum memory"),
    ({"NanoCpus": 1, "CpuQuota": 1}, "Conflicting options"),
    ({"MemorySwap": 100 << 20}, "Memory limit"),
    ({"Binds": ["./rel:/x"]}, "invalid characters"),
    ({"Binds": ["/a:rel"]}, "destination"),
    ({"Binds": ["/a:/"]}, "destination"),
    ({"Binds": ["/a:/b:bogus"]}, "unknown option"),
    ({"CapAdd": ["NOT_A_CAP"]}, "unknown capability"),
    ({"Sysctls": {"kernel.panic": "1"}}, "not namespaced"),
    ({"NetworkMode": "host", "Sysctls": {"net.ipv4.ip_forward": "1"}}, "host network"),
    ({"SecurityOpt": ["seccomp=/file"]}, "seccomp"),
    ({"SecurityOpt": ["bogus"]}, "security-opt"),
    ({"Ulimits": [{"Name": "nofile", "Soft": 10, "Hard": 5}]}, "soft limit"),
    ({"LogConfig": {"Type": "json-file", "Config": {"max-size": "lots"}}}, "invalid size"),
    ({"LogConfig": {"Type": "json-file", "Config": {"max-file": "0"}}}, "max-file"),
    ({"Memory": "64m"}, "integer"),
])
def test_invalid_host_config(hc, message):
    with pytest.raises(InvalidArgument, match=message):
        spec(hc=hc)


@pytest.mark.parametrize("hc", [{"PidMode": "host"}, {"LogConfig": {"Type": "syslog"}},
                                {"Mounts": [{"Type": "volume", "Source": "vol", "Target": "/v",
                                             "VolumeOptions": {"DriverConfig": {"Name": "nfs"}}}]}])
def test_not_supported(hc):
    with pytest.raises(NotSupported):
        spec(hc=hc)


def test_mounts_binds_tmpfs_shm_files():
    s = spec(hc={"Binds": ["/srv/a:/a:ro", "/srv/b:/b"], "Tmpfs": {"/run": "size=1m"}, "ShmSize": 1 << 20},
             files={"/etc/hosts": "/h"})
    assert mount(s, "/a") == {"destination": "/a", "type": "bind", "source": "/srv/a",
                              "options": ["rbind", "ro", "rprivate"]}
    assert mount(s, "/b")["options"] == ["rbind", "rw", "rprivate"]
    assert mount(s, "/run")["options"] == ["noexec", "nosuid", "nodev", "size=1m"]
    assert f"size={1 << 20}" in mount(s, "/dev/shm")["options"]
    assert mount(s, "/etc/hosts")["source"] == "/h"
    with pytest.raises(InvalidArgument, match="Duplicate"):
        spec(hc={"Binds": ["/x:/a", "/y:/a"]})


def test_network_modes():
    ns = lambda s: {n["type"] for n in s["linux"]["namespaces"]}  # noqa: E731
    assert "network" in ns(spec(hc={"NetworkMode": "none"}))
    assert "network" in ns(spec(hc={"NetworkMode": "bridge"}))
    host = spec(hc={"NetworkMode": "host"}, host_hostname="myhost")
    assert "network" not in ns(host) and host["hostname"] == "myhost"


def test_capabilities_security_and_privileged():
    s = spec(hc={"CapAdd": ["sys_admin"], "CapDrop": ["CAP_CHOWN"], "SecurityOpt": ["no-new-privileges"]})
    caps = s["process"]["capabilities"]["bounding"]
    assert "CAP_SYS_ADMIN" in caps and "CAP_CHOWN" not in caps and s["process"]["noNewPrivileges"] is True
    assert s["linux"]["seccomp"]["syscalls"]
    assert spec(hc={"CapDrop": ["ALL"]})["process"]["capabilities"]["bounding"] == []
    assert "seccomp" not in spec(hc={"SecurityOpt": ["seccomp=unconfined"]})["linux"]
    p = spec(hc={"Privileged": True})
    assert set(p["process"]["capabilities"]["bounding"]) == set(B.ALL_CAPS)
    assert "seccomp" not in p["linux"] and p["linux"]["maskedPaths"] == []
    assert p["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    assert "rw" in mount(p, "/sys")["options"]
    prof = ('{"defaultAction": "SCMP_ACT_ALLOW", '
            '"syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}')
    s = spec(hc={"SecurityOpt": [f"seccomp={prof}"]})
    assert s["linux"]["seccomp"] == {"defaultAction": "SCMP_ACT_ALLOW",
                                     "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}


def test_ulimits_sysctls_devices_init():
    s = spec(hc={"Ulimits": [{"Name": "nofile", "Soft": 10, "Hard": 20}],
                 "Sysctls": {"net.ipv4.ip_forward": "1"},
                 "Devices": [{"PathOnHost": "/dev/null", "PathInContainer": "/dev/mynull",
                              "CgroupPermissions": "rw"}]})
    assert {"type": "RLIMIT_NOFILE", "soft": 10, "hard": 20} in s["process"]["rlimits"]
    assert s["linux"]["sysctl"] == {"net.ipv4.ip_forward": "1"}
    dev = s["linux"]["devices"][0]
    assert (dev["path"], dev["type"], dev["major"], dev["minor"]) == ("/dev/mynull", "c", 1, 3)
    rule = {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"}
    assert rule in s["linux"]["resources"]["devices"]
    if __import__("os").path.exists(B.CATATONIT):
        i = spec({"Cmd": ["x"]}, hc={"Init": True})
        assert i["process"]["args"] == [B.INIT_PATH, "--", "x"]
        assert mount(i, B.INIT_PATH)["source"] == B.CATATONIT


def test_resources_update():
    res, stored = B.resources_update({"Memory": 32 << 20, "CpuShares": 100, "PidsLimit": 5, "CpusetCpus": ""})
    assert res == {"memory": {"limit": 32 << 20}, "cpu": {"shares": 100}, "pids": {"limit": 5}}
    assert stored == {"Memory": 32 << 20, "CpuShares": 100, "PidsLimit": 5}
    with pytest.raises(InvalidArgument):
        B.resources_update({"Binds": ["/a:/b"]})


def container(name="web", status=Status.RUNNING, code=0, labels=None, image="busybox"):
    return Container(id=name * 8, name=name, created="2024-01-01T00:00:00Z", image="sha256:" + "1" * 64,
                     image_ref=image, config={"Labels": labels or {}}, host_config={}, runtime="runc",
                     state=ContainerState(status=status, exit_code=code))


@pytest.mark.parametrize("flt,ok", [
    ({"status": ["running"]}, True), ({"status": ["exited"]}, False), ({"name": ["we"]}, True),
    ({"name": ["^/web$"]}, True), ({"name": ["db"]}, False), ({"id": ["webweb"]}, True),
    ({"id": ["x"]}, False),
    ({"label": ["a"]}, True), ({"label": ["a=1"]}, True), ({"label": ["a=2"]}, False),
    ({"label": ["a", "b"]}, False), ({"ancestor": ["busybox"]}, True), ({"ancestor": ["alpine"]}, False),
    ({"ancestor": ["other-name"]}, True), ({"exited": ["0"]}, False),
])
def test_filters(flt, ok):
    anc = lambda ref: {"sha256:" + "1" * 64} if ref == "other-name" else set()  # noqa: E731
    assert matches(container(labels={"a": "1"}), flt, anc) is ok


def test_filter_errors_and_exited():
    assert matches(container(status=Status.EXITED, code=3), {"exited": ["3"]}, lambda r: set())
    with pytest.raises(InvalidArgument):
        matches(container(), {"status": ["bogus"]}, lambda r: set())
    with pytest.raises(InvalidArgument):
        matches(container(), {"exited": ["x"]}, lambda r: set())


def test_status_text():
    st = ContainerState(status=Status.EXITED, exit_code=2, finished_at="1970-01-01T00:00:00Z")
    assert _status_text(st, now=5) == "Exited (2) 5 seconds ago"
    st = ContainerState(status=Status.PAUSED, started_at="1970-01-01T00:00:00Z")
    assert _status_text(st, now=7200) == "Up 2 hours (Paused)"
    assert _status_text(ContainerState()) == "Created"


def test_console_size_from_host_config():
    assert spec({"Tty": True}, {"ConsoleSize": [40, 120]})["process"]["consoleSize"] == \
        {"height": 40, "width": 120}
    assert spec({"Tty": True}, {"ConsoleSize": [0, 0]})["process"]["consoleSize"] == \
        {"height": 24, "width": 80}
    assert "consoleSize" not in spec({"Tty": False}, {"ConsoleSize": [40, 120]})["process"]
