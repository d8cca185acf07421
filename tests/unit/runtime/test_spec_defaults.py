"""Unit tests for pallet.runtime.spec: the config.json `pallet-runtime spec` writes, and --rootless."""

from __future__ import annotations

import json

import pytest

from pallet.oci.runtime_spec import OCI_VERSION, validate_config
from pallet.runtime import seccomp
from pallet.runtime.capabilities import DOCKER_DEFAULT_CAPS
from pallet.runtime.spec import MASKED_PATHS, READONLY_PATHS, default_spec, rootless

# Docker's defaults (moby oci/defaults.go), spelled out so a change to the tables shows here.
DOCKER_CAPS = {
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
    "CAP_AUDIT_WRITE",
}
DOCKER_MASKED = {
    "/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
    "/sys/devices/virtual/powercap",
}
DOCKER_READONLY = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}


@pytest.fixture
def spec():
    return default_spec()


def test_default_spec_is_valid(spec):
    validate_config(spec)
    seccomp.validate(spec["linux"]["seccomp"])
    assert spec["ociVersion"] == OCI_VERSION


def test_default_spec_is_plain_json(spec):
    assert json.loads(json.dumps(spec)) == spec


def test_docker_default_capabilities(spec):
    caps = spec["process"]["capabilities"]
    assert set(DOCKER_DEFAULT_CAPS) == DOCKER_CAPS
    for kind in ("bounding", "effective", "permitted"):
        assert set(caps[kind]) == DOCKER_CAPS, kind
        assert len(caps[kind]) == len(DOCKER_CAPS)
    assert not caps.get("inheritable") and not caps.get("ambient")
    assert "CAP_SYS_ADMIN" not in caps["bounding"]


def test_capability_lists_are_not_shared(spec):
    caps = spec["process"]["capabilities"]
    caps["effective"].append("CAP_SYS_ADMIN")
    assert "CAP_SYS_ADMIN" not in caps["bounding"]


def test_no_new_privileges_and_process_defaults(spec):
    p = spec["process"]
    assert p["noNewPrivileges"] is True
    assert p["args"] == ["sh"]
    assert p["cwd"] == "/"
    assert p["user"] == {"uid": 0, "gid": 0}
    assert p["terminal"] is True
    assert any(e.startswith("PATH=") for e in p["env"])
    assert {"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024} in p["rlimits"]


def test_arguments():
    s = default_spec(["/bin/echo", "hi"], terminal=False, rootfs="/srv/rootfs")
    assert s["process"]["args"] == ["/bin/echo", "hi"]
    assert s["process"]["terminal"] is False
    assert s["root"] == {"path": "/srv/rootfs", "readonly": True}
    validate_config(s)


def test_masked_and_readonly_paths(spec):
    assert set(spec["linux"]["maskedPaths"]) == DOCKER_MASKED == set(MASKED_PATHS)
    assert set(spec["linux"]["readonlyPaths"]) == DOCKER_READONLY == set(READONLY_PATHS)
    spec["linux"]["maskedPaths"].append("/x")
    assert "/x" not in MASKED_PATHS


def test_seccomp_denies_by_default(spec):
    sc = spec["linux"]["seccomp"]
    assert sc["defaultAction"] == "SCMP_ACT_ERRNO"
    assert sc["architectures"]
    allowed = {n for r in sc["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" and not r.get("args")
               for n in r["names"]}
    assert {"read", "write", "execve", "exit_group"} <= allowed
    # Not in Docker's default profile without CAP_SYS_ADMIN / CAP_SYS_MODULE.
    assert not {"mount", "umount2", "init_module", "kexec_load", "bpf"} & allowed


def test_namespaces(spec):
    types = [n["type"] for n in spec["linux"]["namespaces"]]
    assert types == ["pid", "network", "ipc", "uts", "mount", "cgroup"]
    assert all("path" not in n for n in spec["linux"]["namespaces"])


def test_devices_are_denied_by_default(spec):
    assert spec["linux"]["resources"]["devices"] == [{"allow": False, "access": "rwm"}]


def test_default_mounts(spec):
    by_dest = {m["destination"]: m for m in spec["mounts"]}
    assert list(by_dest) == ["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"]
    assert by_dest["/proc"]["type"] == "proc"
    assert "ro" in by_dest["/sys"]["options"]
    assert "ro" in by_dest["/sys/fs/cgroup"]["options"]
    assert "newinstance" in by_dest["/dev/pts"]["options"]
    for m in spec["mounts"]:
        assert "nosuid" in m["options"], m["destination"]


def test_each_call_is_a_fresh_spec():
    a, b = default_spec(), default_spec()
    a["mounts"][0]["options"].append("ro")
    a["linux"]["namespaces"].append({"type": "user"})
    assert b == default_spec()


# -- rootless ----------------------------------------------------------------------------------------

@pytest.fixture
def rl():
    return rootless(default_spec(), 1000, 1001)


def test_rootless_is_valid(rl):
    validate_config(rl)


def test_rootless_adds_a_user_namespace_with_mappings(rl):
    linux = rl["linux"]
    types = [n["type"] for n in linux["namespaces"]]
    assert "user" in types
    assert types.count("user") == 1
    assert linux["uidMappings"] == [{"containerID": 0, "hostID": 1000, "size": 1}]
    assert linux["gidMappings"] == [{"containerID": 0, "hostID": 1001, "size": 1}]


def test_rootless_shares_the_network_namespace_and_drops_cgroup_settings(rl):
    # As runc spec --rootless: no network namespace (nobody could set up its interfaces),
    # no linux.resources (an unprivileged user cannot write the cgroup).
    assert "network" not in [n["type"] for n in rl["linux"]["namespaces"]]
    assert "resources" not in rl["linux"]


def test_rootless_mounts(rl):
    by_dest = {m["destination"]: m for m in rl["mounts"]}
    assert "/sys/fs/cgroup" not in by_dest
    assert by_dest["/sys"]["type"] == "none"
    assert by_dest["/sys"]["source"] == "/sys"
    assert {"rbind", "ro", "nosuid", "noexec", "nodev"} <= set(by_dest["/sys"]["options"])
    # gid=5 (tty) is not mapped in a one-id user namespace.
    assert not [o for o in by_dest["/dev/pts"]["options"] if o.startswith("gid=")]


def test_rootless_keeps_the_security_defaults(rl):
    assert rl["process"]["noNewPrivileges"] is True
    assert rl["linux"]["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"
    assert set(rl["linux"]["maskedPaths"]) == DOCKER_MASKED
