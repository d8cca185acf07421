"""--userns=auto for real: two busybox containers from one image, each in its own range of host ids (root).

What a Docker or podman user would check from the host: the files each container makes (in its
writable layer and in its volume) are owned by its own range (10000.., 12000..); `ps -o user`
shows those uids; a process holding one container's root uid can neither signal nor read the
other container's processes; ranges come back on rm; an exhausted pool is a clear 503-kind error
that leaves nothing behind.

Safety: a private data root (so the pool is this test's own), exec root and cgroup parent
/pallet-test-<random>; teardown force-removes every container and the cgroups.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from pallet.engine.containers import Engine
from pallet.engine.userns import UsernsSettings
from pallet.errors import InvalidArgument, NotSupported, Unavailable
from pallet.image.service import ImageService
from pallet_testlib import rm_cgroups

if os.geteuid() != 0:
    pytest.skip("needs root (user namespaces, idmapped mounts, cgroups)", allow_module_level=True)
if not os.path.exists("/bin/busybox"):
    pytest.skip("needs Debian's busybox-static (/bin/busybox)", allow_module_level=True)
if shutil.which("unshare") is None:
    pytest.skip("needs util-linux's unshare", allow_module_level=True)


@pytest.fixture(scope="module")
def data_root():
    # Not pytest's tmp_path: its parents are 0700, and a container's root (an unprivileged host
    # uid) must traverse to its rootfs, as under /var/lib/pallet (0711).
    top = tempfile.mkdtemp(prefix="pallet-userns-")
    os.chmod(top, 0o711)
    root = os.path.join(top, "data")
    with ImageService(root) as svc:
        svc.bootstrap("busybox")
    yield root
    shutil.rmtree(top, ignore_errors=True)


@pytest.fixture
def engine(data_root):
    run = tempfile.mkdtemp(prefix="pallet-userns-run-")
    parent = f"/pallet-test-{uuid.uuid4().hex[:8]}"
    e = Engine(data_root, run, cgroup_parent=parent)
    yield e
    for c in e.list(all=True):
        with contextlib.suppress(Exception):
            e.remove(c["Id"], force=True, volumes=True)
    for v in e.volumes.list():
        with contextlib.suppress(Exception):
            e.volumes.remove(v["Name"], force=True)
    e.userns.configure(UsernsSettings())
    e.close()
    rm_cgroups(parent)
    shutil.rmtree(run, ignore_errors=True)


def until(pred, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def _as_uid(uid: int, code: str) -> str:
    """Run Python `code` on the host as `uid` (what root of one container is to the host)."""
    return subprocess.run([sys.executable, "-S", "-c", code], user=uid, group=uid, extra_groups=[],
                          capture_output=True, text=True, timeout=30, check=True).stdout.strip()


def _probe(uid: int, pid: int) -> tuple[str, str]:
    """(kill -0, read environ) of `pid` by a host process with `uid`: "ok" or the error name."""
    code = f"""
import os
out = []
try:
    os.kill({pid}, 0); out.append("ok")
except OSError as e:
    out.append(type(e).__name__)
try:
    open("/proc/{pid}/environ", "rb").read(); out.append("ok")
except OSError as e:
    out.append(type(e).__name__)
print(" ".join(out))
"""
    kill, environ = _as_uid(uid, code).split()
    return kill, environ


def test_two_auto_containers_get_disjoint_ranges(engine):
    ids = []
    for n in ("a", "b"):
        cid = engine.create({"Image": "busybox", "Env": [f"SECRET={n}-secret"],
                             "Cmd": ["sh", "-c", "echo x > /made-here; touch /data/f; id -u > /data/id; "
                                     "touch /bin/copied-up; exec sleep 1000"],
                             "HostConfig": {"UsernsMode": "auto", "Binds": [f"uvol-{n}:/data"]}},
                            name=f"u{n}")
        engine.start(cid)
        ids.append(cid)
    infos = [engine.inspect(c) for c in ids]
    assert [i["HostConfig"]["IDMappings"] for i in infos] == [
        {"UidMap": ["0:10000:2000"], "GidMap": ["0:10000:2000"]},
        {"UidMap": ["0:12000:2000"], "GidMap": ["0:12000:2000"]}]
    assert [i["HostConfig"]["UsernsMode"] for i in infos] == ["auto", "auto"]
    for info, base, n in zip(infos, (10000, 12000), "ab", strict=True):
        pid = info["State"]["Pid"]
        upper = Path(info["GraphDriver"]["Data"]["UpperDir"])
        vol = Path(engine.volumes.mountpoint(f"uvol-{n}"))
        until(lambda vol=vol: (vol / "id").exists() and (vol / "id").read_text())
        assert (vol / "id").read_text() == "0\n"  # root inside
        assert os.stat(vol / "f").st_uid == base and os.stat(vol / "f").st_gid == base
        until(lambda upper=upper: (upper / "bin" / "copied-up").exists())
        assert os.stat(upper / "made-here").st_uid == base
        assert os.stat(upper / "data").st_uid == base  # the volume's mount point, made for its root
        # Copy-up through the idmapped lower layer keeps the shifted owner of /bin.
        assert os.stat(upper / "bin").st_uid == base
        assert Path(f"/proc/{pid}/uid_map").read_text().split() == ["0", str(base), "2000"]
        user = subprocess.run(["ps", "-o", "user=", "-p", str(pid)], capture_output=True,
                              text=True, check=True).stdout.strip()
        import pwd

        with contextlib.suppress(KeyError):
            assert user == pwd.getpwuid(base).pw_name
            continue
        assert user == str(base)
    # The image's files, stored owned by 0, are root's inside both containers at once.
    for cid in ids:
        eid = engine.exec_create(cid, {"Cmd": ["stat", "-c", "%u %g", "/bin/busybox", "/etc/hostname"],
                                       "AttachStdout": True})
        s = engine.exec_start(eid)
        assert s is not None
        out = s.stdout.read().decode().split("\n")
        assert s.wait(10) == 0 and out[:2] == ["0 0", "0 0"]
        s.close()
    # Root of container a (host uid 10000) vs the processes of container b (12000), and back.
    pa, pb = (i["State"]["Pid"] for i in infos)
    assert _probe(10000, pb) == ("PermissionError", "PermissionError")
    assert _probe(12000, pa) == ("PermissionError", "PermissionError")
    assert _probe(10000, pa)[0] == "ok"  # the control: its own process
    # Inside, the other container's processes are not even visible (own pid namespace).
    eid = engine.exec_create(ids[0], {"Cmd": ["sh", "-c", f"kill -0 {pb}; echo $?"], "AttachStdout": True,
                                      "AttachStderr": True})
    s = engine.exec_start(eid)
    assert s is not None
    assert s.stdout.read().decode().strip().endswith("1")
    s.wait(10)
    s.close()
    # rm frees the ranges: the next container starts again at 10000.
    for cid in ids:
        engine.remove(cid, force=True)
    assert engine.userns.pool.allocations() == {}
    cid = engine.create({"Image": "busybox", "Cmd": ["true"], "HostConfig": {"UsernsMode": "auto:size=500"}})
    assert engine.inspect(cid)["HostConfig"]["IDMappings"]["UidMap"] == ["0:10000:500"]


def test_volume_shared_across_ranges_is_idmapped(engine):
    """A volume made by one range is seen as its own by a container of another range."""
    first = engine.create({"Image": "busybox", "Cmd": ["sh", "-c", "echo hi > /v/file"],
                           "HostConfig": {"UsernsMode": "auto", "Binds": ["shared-v:/v"]}})
    holder = engine.create({"Image": "busybox", "Cmd": ["true"], "HostConfig": {"UsernsMode": "auto"}})
    engine.start(first)
    assert engine.wait(first, timeout=20) == 0
    vol = Path(engine.volumes.mountpoint("shared-v"))
    assert os.stat(vol / "file").st_uid == 10000
    engine.start(first)  # a second start mounts the idmapped layers again, same range
    assert engine.wait(first, timeout=20) == 0
    assert engine.inspect(first)["HostConfig"]["IDMappings"]["UidMap"] == ["0:10000:2000"]
    rootfs = engine.rootfs_path(first)
    assert not [m for m in Path("/proc/self/mountinfo").read_text().splitlines()
                if m.split()[4].startswith(os.path.dirname(rootfs))]  # nothing left mounted
    second = engine.create({"Image": "busybox",
                            "Cmd": ["sh", "-c", "stat -c %u /v/file; echo more >> /v/file; touch /v/new"],
                            "HostConfig": {"UsernsMode": "auto", "Binds": ["shared-v:/v"]}})
    assert engine.inspect(second)["HostConfig"]["IDMappings"]["UidMap"] == ["0:14000:2000"]
    engine.start(second)
    assert engine.wait(second, timeout=20) == 0
    logs = b"".join(d for _s, d in engine.logs(second)).decode()
    assert logs.split() == ["0"]
    # Stored with the volume's ids (10000..), whoever wrote them.
    assert os.stat(vol / "new").st_uid == 10000
    assert (vol / "file").read_text() == "hi\nmore\n"
    for c in (first, holder, second):
        engine.remove(c)


def test_exhausted_pool_is_unavailable_and_leaks_nothing(engine):
    engine.userns.configure(UsernsSettings(count=1))
    one = engine.create({"Image": "busybox", "Cmd": ["true"], "HostConfig": {"UsernsMode": "auto"}})
    before = sorted(os.listdir(engine.containers_dir))
    with pytest.raises(Unavailable, match="no free range of 2000 host ids"):
        engine.create({"Image": "busybox", "Cmd": ["true"], "HostConfig": {"UsernsMode": "auto"}},
                      name="nope")
    assert sorted(os.listdir(engine.containers_dir)) == before
    assert list(engine.userns.pool.allocations()) == [one]
    with pytest.raises(InvalidArgument):
        engine.create({"Image": "busybox", "Cmd": ["true"], "HostConfig": {"UsernsMode": "auto:size=5000"}})
    # A failed create after the range was taken gives it back (the name is taken here).
    engine.userns.configure(UsernsSettings(count=3))
    with pytest.raises(Exception, match="already in use"):
        engine.create({"Image": "busybox", "Cmd": ["true"], "HostConfig": {"UsernsMode": "auto"}},
                      name=engine.inspect(one)["Name"].lstrip("/"))
    with pytest.raises(InvalidArgument, match="privileged"):
        engine.create({"Image": "busybox", "Cmd": ["true"],
                       "HostConfig": {"UsernsMode": "auto", "Privileged": True}})
    assert list(engine.userns.pool.allocations()) == [one]
    assert "nope" not in {c["Names"][0].lstrip("/") for c in engine.list(all=True)}
    engine.remove(one)
    assert engine.userns.pool.allocations() == {}


def test_daemon_default_auto_and_host_opt_out(engine):
    engine.userns.configure(UsernsSettings(default="auto"))
    auto = engine.create({"Image": "busybox", "Cmd": ["true"]})
    host = engine.create({"Image": "busybox", "Cmd": ["sh", "-c", "cat /proc/self/uid_map"],
                          "HostConfig": {"UsernsMode": "host"}})
    assert engine.inspect(auto)["HostConfig"]["UsernsMode"] == "auto"
    assert "IDMappings" not in engine.inspect(host)["HostConfig"]
    engine.start(host)
    assert engine.wait(host, timeout=20) == 0
    assert b"".join(d for _s, d in engine.logs(host)).split() == [b"0", b"0", b"4294967295"]


@pytest.mark.skipif(shutil.which("runc") is None, reason="needs Debian's runc")
def test_runc_runs_auto_containers_and_refuses_what_it_cannot(engine):
    cid = engine.create({"Image": "busybox", "Cmd": ["sh", "-c", "cat /proc/self/uid_map; touch /x"],
                         "HostConfig": {"UsernsMode": "auto", "Runtime": "runc"}})
    engine.start(cid)
    assert engine.wait(cid, timeout=20) == 0
    assert b"".join(d for _s, d in engine.logs(cid)).split() == [b"0", b"10000", b"2000"]
    upper = Path(engine.inspect(cid)["GraphDriver"]["Data"]["UpperDir"])
    assert os.stat(upper / "x").st_uid == 10000
    ver = subprocess.run(["runc", "--version"], capture_output=True, text=True).stdout.split()[2]
    if tuple(int(x) for x in ver.split("+")[0].split(".")[:2]) < (1, 2):
        with pytest.raises(NotSupported, match="cannot mount volumes idmapped"):
            engine.create({"Image": "busybox", "Cmd": ["true"],
                           "HostConfig": {"UsernsMode": "auto", "Runtime": "runc", "Binds": ["rv:/v"]}})
        assert list(engine.userns.pool.allocations()) == [cid]


def test_commit_stores_container_ids(engine):
    """A layer committed from an auto container holds container ids (0, 5), not host ones (10000+)."""
    cid = engine.create({"Image": "busybox", "HostConfig": {"UsernsMode": "auto"},
                         "Cmd": ["sh", "-c", "echo hi > /committed; mkdir /d; chown 5:5 /d"]})
    engine.start(cid)
    assert engine.wait(cid, timeout=20) == 0
    upper = Path(engine.inspect(cid)["GraphDriver"]["Data"]["UpperDir"])
    assert (os.stat(upper / "committed").st_uid, os.stat(upper / "d").st_uid) == (10000, 10005)
    image = engine.commit(cid, "userns-commit:1")
    try:
        check = engine.create({"Image": "userns-commit:1", "HostConfig": {"UsernsMode": "host"},
                               "Cmd": ["stat", "-c", "%u %g %n", "/committed", "/d"]})
        engine.start(check)
        assert engine.wait(check, timeout=20) == 0
        out = b"".join(d for _s, d in engine.logs(check)).decode().splitlines()
        assert out == ["0 0 /committed", "5 5 /d"]
        engine.remove(check)
    finally:
        engine.remove(cid)
        engine.images.remove(image, force=True)
    assert not [n for n in os.listdir(engine.userns.pool.dir) if n.startswith("view-")]


def test_export_shows_container_ids(engine):
    import io
    import tarfile

    cid = engine.create({"Image": "busybox", "HostConfig": {"UsernsMode": "auto"},
                         "Cmd": ["sh", "-c", "echo hi > /exported; mkdir /d; chown 7:7 /d"]})
    engine.start(cid)
    assert engine.wait(cid, timeout=20) == 0
    buf = io.BytesIO()
    engine.export(cid, buf)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        owners = {m.name: (m.uid, m.gid) for m in tar.getmembers()}
    assert owners["exported"] == (0, 0) and owners["d"] == (7, 7) and owners["bin/busybox"] == (0, 0)
    engine.remove(cid)
