"""--init (catatonit as pid 1) and system containers (busybox init as pid 1: engine/sysinit.py), as root.

Safety: a private data root, exec root and cgroup parent /pallet-test-<random>; teardown
force-removes every container and the cgroups (with any sub-cgroup a system container made).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from pallet.engine.containers import Engine
from pallet.errors import InvalidArgument
from pallet.image.service import ImageService
from pallet_testlib import rm_cgroups

if os.geteuid() != 0:
    pytest.skip("needs root (namespaces, overlay, cgroups)", allow_module_level=True)
if not os.path.exists("/bin/busybox"):
    pytest.skip("needs Debian's busybox-static (/bin/busybox)", allow_module_level=True)
if not os.path.exists("/usr/bin/catatonit"):
    pytest.skip("needs Debian's catatonit (--init)", allow_module_level=True)


@pytest.fixture(scope="module")
def data_root():
    top = tempfile.mkdtemp(prefix="pallet-sysinit-")
    os.chmod(top, 0o711)  # --userns=auto roots (plain host uids) traverse it to their rootfs
    root = os.path.join(top, "data")
    with ImageService(root) as svc:
        svc.bootstrap("busybox")
    yield root
    shutil.rmtree(top, ignore_errors=True)


@pytest.fixture
def engine(data_root, tmp_path):
    parent = f"/pallet-test-{uuid.uuid4().hex[:8]}"
    e = Engine(data_root, str(tmp_path / "run"), cgroup_parent=parent)
    yield e
    for c in e.list(all=True):
        with contextlib.suppress(Exception):
            e.remove(c["Id"], force=True)
    e.close()
    rm_cgroups(parent)


def until(pred, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def sh(engine: Engine, cid: str, script: str) -> str:
    eid = engine.exec_create(cid, {"Cmd": ["sh", "-c", script], "AttachStdout": True, "AttachStderr": True})
    s = engine.exec_start(eid)
    assert s is not None
    out = s.stdout.read().decode() + s.stderr.read().decode()
    s.wait(10)
    s.close()
    return out


def logs(engine: Engine, cid: str) -> str:
    return b"".join(d for _s, d in engine.logs(cid)).decode()


def procs(engine: Engine, cid: str) -> dict[int, tuple[str, str]]:
    """pid -> (state, comm) inside the container, from its /proc."""
    out = sh(engine, cid, "for f in /proc/[0-9]*/stat; do cat $f 2>/dev/null; echo; done")
    found = {}
    for line in out.splitlines():
        if ") " in line:
            head, rest = line.rsplit(") ", 1)
            pid, comm = head.split(" (", 1)
            found[int(pid)] = (rest.split()[0], comm)
    return found


ORPHAN = "(sleep 0.2 &); exec sleep 1000"  # the subshell exits: its sleep is left to pid 1


def test_init_reaps_orphans_and_forwards_stop(engine):
    with_init = engine.create({"Image": "busybox", "Cmd": ["sh", "-c", ORPHAN], "HostConfig": {"Init": True}})
    without = engine.create({"Image": "busybox", "Cmd": ["sh", "-c", ORPHAN]})
    engine.start(with_init)
    engine.start(without)
    time.sleep(0.6)
    p_init, p_plain = procs(engine, with_init), procs(engine, without)
    assert p_init[1][1] == "docker-init"  # catatonit, bound at /sbin/docker-init
    assert not [p for p, (st, _c) in p_init.items() if st == "Z"]
    # The control: `sleep` as pid 1 never waits, the orphan stays a zombie.
    assert p_plain[1] == ("S", "sleep")
    assert [c for st, c in p_plain.values() if st == "Z"] == ["sleep"]
    t0 = time.monotonic()
    engine.stop(with_init, timeout=10)  # SIGTERM to catatonit, forwarded to `sleep`
    assert time.monotonic() - t0 < 5
    assert engine.inspect(with_init)["State"]["ExitCode"] == 143  # sleep's SIGTERM, as 128+15


INITTAB = """\
::sysinit:/bin/sh -c 'echo booted as $$; grep -E " /(run|tmp) " /proc/mounts | cut -d" " -f2,3'
::shutdown:/bin/echo shutting down cleanly
"""


def test_busybox_init_system_container(engine, tmp_path):
    inittab = tmp_path / "inittab"
    inittab.write_text(INITTAB)
    cid = engine.create({"Image": "busybox", "Cmd": ["/bin/init"],
                         "HostConfig": {"Binds": [f"{inittab}:/etc/inittab:ro"]}})
    engine.start(cid)
    until(lambda: "/tmp tmpfs" in logs(engine, cid))
    text = logs(engine, cid)
    assert "booted as 1" not in text  # sysinit actions run as children of init (pid 1)
    assert "/run tmpfs" in text and "/tmp tmpfs" in text
    info = engine.inspect(cid)
    assert info["Config"]["StopSignal"] == "SIGUSR2"  # busybox init: poweroff
    assert procs(engine, cid)[1][1] == "init"
    assert "container=pallet" in sh(engine, cid, "tr '\\0' '\\n' < /proc/1/environ")
    # A cgroup subtree it may manage: its own cgroup, writable, inside a private cgroup namespace.
    out = sh(engine, cid, "cat /proc/self/cgroup | head -3; d=/sys/fs/cgroup/pids/svc; mkdir $d && "
                          "echo $$ > $d/cgroup.procs && echo moved; rmdir $d 2>/dev/null; echo done")
    assert "moved" in out
    t0 = time.monotonic()
    engine.stop(cid)  # default timeout 10 s: a clean shutdown is much quicker than the SIGKILL
    took = time.monotonic() - t0
    assert "shutting down cleanly" in logs(engine, cid)
    assert took < 8
    assert engine.inspect(cid)["State"]["ExitCode"] == 0


def test_systemd_always_on_a_shell_and_false_on_init(engine):
    always = engine.create({"Image": "busybox", "Cmd": ["sh", "-c", "grep -c ' /run tmpfs' /proc/mounts"],
                            "HostConfig": {"Systemd": "always"}})
    off = engine.create({"Image": "busybox", "Cmd": ["sh", "-c", "grep -c ' /run tmpfs' /proc/mounts; true"],
                         "HostConfig": {"Systemd": "false"}})
    for c in (always, off):
        engine.start(c)
        engine.wait(c, timeout=20)
    assert logs(engine, always).split() == ["1"]
    assert logs(engine, off).split() == ["0"]
    assert engine.inspect(always)["HostConfig"]["Systemd"] == "always"


def test_busybox_init_in_a_user_namespace_manages_its_cgroup(engine, data_root, tmp_path):
    """With --userns=auto the container's root is host uid 10000: its cgroup is delegated to it."""
    unreachable = tmp_path / "inittab"  # pytest's tmp dirs are 0700: the container's root cannot look
    unreachable.write_text(INITTAB)
    with pytest.raises(InvalidArgument, match="is not searchable by others"):
        engine.create({"Image": "busybox", "Cmd": ["/bin/init"],
                       "HostConfig": {"UsernsMode": "auto", "Binds": [f"{unreachable}:/etc/inittab:ro"]}})
    inittab = Path(data_root).parent / f"inittab-{uuid.uuid4().hex[:8]}"  # under a 0711 directory
    inittab.write_text(INITTAB)
    cid = engine.create({"Image": "busybox", "Cmd": ["/bin/init"],
                         "HostConfig": {"UsernsMode": "auto", "Binds": [f"{inittab}:/etc/inittab:ro"]}})
    engine.start(cid)
    until(lambda: "/tmp tmpfs" in logs(engine, cid))
    out = sh(engine, cid, "d=/sys/fs/cgroup/pids/svc; mkdir $d && echo $$ > $d/cgroup.procs && echo moved; "
                          "echo $$ > /sys/fs/cgroup/pids/cgroup.procs; rmdir $d; cat /proc/self/uid_map")
    assert "moved" in out and out.split()[-3:] == ["0", "10000", "2000"]
    t0 = time.monotonic()
    engine.stop(cid)
    assert time.monotonic() - t0 < 8 and "shutting down cleanly" in logs(engine, cid)
