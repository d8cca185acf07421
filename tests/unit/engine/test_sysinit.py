"""System-container mode (pallet.engine.sysinit): detection, the spec it writes, the stop signal; no root."""

from __future__ import annotations

import os

import pytest

from pallet.engine import bundle as B
from pallet.engine import sysinit
from pallet.errors import InvalidArgument


@pytest.fixture
def rootfs(tmp_path):
    for d in ("bin", "sbin", "lib/systemd"):
        (tmp_path / d).mkdir(parents=True)
    (tmp_path / "bin" / "busybox").write_bytes(b"\x7fELF")
    os.symlink("busybox", tmp_path / "bin" / "init")
    (tmp_path / "lib" / "systemd" / "systemd").write_bytes(b"\x7fELF")
    os.symlink("/lib/systemd/systemd", tmp_path / "sbin" / "init")
    (tmp_path / "bin" / "tini").write_bytes(b"\x7fELF")
    os.symlink("../../../../bin/tini", tmp_path / "sbin" / "tini")  # climbs no higher than the root
    return tmp_path


def spec_for(argv):
    return {"process": {"args": argv, "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]},
            "linux": {"namespaces": [{"type": "pid"}, {"type": "cgroup"}]},
            "mounts": [{"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                        "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
                       {"destination": "/tmp", "type": "bind", "source": "/srv/x", "options": ["rbind"]}]}


@pytest.mark.parametrize("value, want", [(None, "true"), ("", "true"), (True, "true"), (False, "false"),
                                         ("always", "always"), ("FALSE", "false")])
def test_parse_systemd(value, want):
    assert sysinit.parse_systemd(value) == want


def test_parse_systemd_rejects():
    with pytest.raises(InvalidArgument):
        sysinit.parse_systemd("sometimes")
    with pytest.raises(InvalidArgument, match="--init"):
        B.validate_create({"Image": "x", "HostConfig": {"Systemd": "always", "Init": True}})
    _, hc = B.validate_create({"Image": "x", "HostConfig": {"Systemd": True}})
    assert hc["Systemd"] == "true"


@pytest.mark.parametrize("argv, hc, want", [
    (["/sbin/init"], {}, True), (["/usr/sbin/init"], {}, True), (["init"], {}, True),
    (["/lib/systemd/systemd", "--log-level=debug"], {}, True), (["sh"], {}, False),
    (["sh"], {"Systemd": "always"}, True), (["/sbin/init"], {"Systemd": "false"}, False),
    (["/sbin/init"], {"Init": True}, False),  # --init: catatonit is pid 1, not the image's init
])
def test_wanted(argv, hc, want):
    assert sysinit.wanted(hc, argv) is want


def test_init_kind_follows_links_inside_the_rootfs(rootfs):
    path = "/usr/sbin:/usr/bin:/sbin:/bin"
    assert sysinit.init_kind(str(rootfs), "/sbin/init", path) == "systemd"
    assert sysinit.init_kind(str(rootfs), "/bin/init", path) == "busybox"
    assert sysinit.init_kind(str(rootfs), "init", path) == "systemd"  # /sbin comes first in PATH
    assert sysinit.init_kind(str(rootfs), "init", "/bin") == "busybox"
    assert sysinit.init_kind(str(rootfs), "/sbin/tini", path) == ""
    assert sysinit.init_kind(str(rootfs), "/nope", path) == ""


def test_busybox_system_container(rootfs):
    spec = spec_for(["/bin/init"])
    assert sysinit.apply(spec, {}, {}, {}, str(rootfs)) == "SIGUSR2"
    assert "container=pallet" in spec["process"]["env"]
    tmpfs = {m["destination"]: m["options"] for m in spec["mounts"] if m["type"] == "tmpfs"}
    # /tmp is the user's bind here and stays so; busybox gets no journal directory.
    assert tmpfs == {"/run": ["rw", "rprivate", "nosuid", "nodev", "mode=755"],
                     "/run/lock": ["rw", "rprivate", "nosuid", "nodev", "mode=1777"]}
    cg = next(m for m in spec["mounts"] if m["type"] == "cgroup")
    assert "ro" not in cg["options"] and cg["options"][-1] == "rw"
    assert spec["annotations"]["org.opencontainers.image.stopSignal"] == "SIGUSR2"


def test_systemd_system_container(rootfs):
    spec = spec_for(["/sbin/init"])
    spec["mounts"].pop()
    spec["linux"]["namespaces"] = [{"type": "pid"}]
    assert sysinit.apply(spec, {}, {}, {}, str(rootfs)) == "37"  # SIGRTMIN+3
    assert {m["destination"] for m in spec["mounts"] if m["type"] == "tmpfs"} == \
        {"/run", "/run/lock", "/tmp", "/var/log/journal"}
    assert {"type": "cgroup"} in spec["linux"]["namespaces"]


def test_stop_signal_of_request_or_image_wins(rootfs):
    assert sysinit.apply(spec_for(["/bin/init"]), {"StopSignal": "SIGTERM"}, {}, {}, str(rootfs)) is None
    assert sysinit.apply(spec_for(["/bin/init"]), {}, {"StopSignal": "SIGINT"}, {}, str(rootfs)) is None


def test_plain_container_is_untouched(rootfs):
    spec = spec_for(["sh", "-c", "true"])
    before = repr(spec)
    assert sysinit.apply(spec, {}, {}, {}, str(rootfs)) is None
    assert repr(spec) == before
