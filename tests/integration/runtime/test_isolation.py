"""What a container sees from inside, checked with busybox against the real kernel."""

from __future__ import annotations

import json
import os
import socket
import stat
import time
from pathlib import Path

import pytest

from pallet.runtime.capabilities import DOCKER_DEFAULT_CAPS, mask


def run_out(env, bundle, cid, check_rc=0):
    env.ids.append(cid)
    proc = env.run("run", "--bundle", str(bundle), cid, check=False)
    assert proc.returncode == check_rc, proc.stderr
    return proc.stdout


def test_pid_namespace_and_process_count(env):
    bundle, _ = env.bundle(["sh", "-c", "echo $$; ls /proc | grep -c '^[0-9]'"])
    out = run_out(env, bundle, "pidns").split()
    assert out[0] == "1"
    host_count = sum(1 for p in os.listdir("/proc") if p.isdigit())
    assert 1 <= int(out[1]) <= 4 < host_count


def test_hostname_domainname_sysctl_rlimits(env):
    bundle, spec = env.bundle(["sh", "-c", "hostname; cat /proc/sys/kernel/domainname; "
                                           "cat /proc/sys/net/ipv4/ip_forward; ulimit -n"])
    spec["hostname"] = "box7"
    spec["domainname"] = "example.test"
    spec["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
    spec["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1000}]
    env.write(bundle, spec)
    assert run_out(env, bundle, "uts").split() == ["box7", "example.test", "1", "512"]


def test_mounts_readonly_root_and_masked_paths(env):
    bundle, _ = env.bundle(["sh", "-c",
                            "touch /x 2>&1; cat /proc/keys | wc -c; ls /sys/firmware | wc -l; "
                            "(echo 1 > /proc/sys/kernel/panic) 2>&1; grep -c ' /dev/pts ' /proc/mounts; "
                            "grep ' / ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1; ls /dev/pts/ptmx"])
    out = run_out(env, bundle, "mnt").splitlines()
    assert "Read-only file system" in out[0]
    assert out[1] == "0"            # /proc/keys masked by /dev/null
    assert out[2] == "0"            # /sys/firmware masked by an empty tmpfs
    assert "Read-only file system" in out[3]
    assert out[4] == "1"
    assert out[5] == "ro"
    assert out[6] == "/dev/pts/ptmx"


def test_capabilities_seccomp_nnp_in_status(env):
    bundle, _ = env.bundle(["sh", "-c", "grep -E '^(CapBnd|CapEff|CapPrm|CapInh|CapAmb|NoNewPrivs|Seccomp):'"
                                        " /proc/self/status"])
    fields = dict(line.split(":\t") for line in run_out(env, bundle, "caps").splitlines())
    want = mask(sorted(DOCKER_DEFAULT_CAPS))
    assert int(fields["CapBnd"], 16) == want
    assert int(fields["CapEff"], 16) == want
    assert int(fields["CapPrm"], 16) == want
    assert int(fields["CapAmb"], 16) == 0
    assert fields["NoNewPrivs"] == "1"
    assert fields["Seccomp"] == "2"


def test_seccomp_denies_and_caps_deny(env):
    # unshare is refused by the default profile without CAP_SYS_ADMIN; mount needs CAP_SYS_ADMIN.
    bundle, _ = env.bundle(["sh", "-c", "unshare -n true 2>&1; mount -t tmpfs t /tmp 2>&1; echo done"])
    out = run_out(env, bundle, "secc")
    assert "Operation not permitted" in out.splitlines()[0]
    assert "Operation not permitted" in out.splitlines()[1] or "denied" in out.splitlines()[1]
    assert out.splitlines()[-1] == "done"


def test_devices_cgroup_denies_unlisted_device(env):
    bundle, _ = env.bundle(["sh", "-c", "mknod /dev/kmsg2 c 1 11 && head -c1 /dev/kmsg2 2>&1; "
                                        "head -c1 /dev/zero | wc -c"])
    out = run_out(env, bundle, "dev").splitlines()
    assert "Operation not permitted" in out[0]
    assert out[1] == "1"


def test_no_host_descriptors_and_init_not_inspectable(env):
    bundle, _ = env.bundle(["sleep", "1000"])
    env.container("fd1", bundle)  # init blocked on the fifo: still the runtime's python
    proc = env.run("exec", "fd1", "sh", "-c", "ls /proc/self/fd | wc -l; readlink /proc/1/exe; echo rc=$?",
                   check=False)
    lines = proc.stdout.split()
    assert lines[0] in ("3", "4")  # 0, 1, 2 and ls's own directory descriptor
    assert lines[-1] != "rc=0", "the runtime's init must be non-dumpable until execve"


@pytest.fixture
def uid_dirs(env):
    """Two host directories, owned by the two containers' root: 10000 and 12000."""
    made = []
    for host_uid in (10000, 12000):
        d = env.tmp / f"vol{host_uid}"
        d.mkdir()
        os.chown(d, host_uid, host_uid)
        made.append(d)
    return made


def userns_spec(env, name, host_base, args, vol):
    bundle, spec = env.bundle(args, name=name)
    # The container's root (host uid 10000...) must be able to reach its rootfs, as with runc.
    for d in [bundle, *bundle.parents]:
        if str(d) in ("/", "/tmp"):
            break
        os.chmod(d, 0o755)
    spec["linux"]["namespaces"].append({"type": "user"})
    spec["linux"]["uidMappings"] = [{"containerID": 0, "hostID": host_base, "size": 2000}]
    spec["linux"]["gidMappings"] = [{"containerID": 0, "hostID": host_base, "size": 2000}]
    spec["mounts"].append({"destination": "/data", "type": "bind", "source": str(vol),
                           "options": ["rbind", "rw"]})
    env.write(bundle, spec)
    return bundle


def test_user_namespaces_disjoint_uid_ranges(env, uid_dirs):
    b1 = userns_spec(env, "u1", 10000, ["sh", "-c", "touch /data/f; sleep 1000"], uid_dirs[0])
    b2 = userns_spec(env, "u2", 12000, ["sh", "-c", "touch /data/f; sleep 1000"], uid_dirs[1])
    env.container("u1", b1)
    env.container("u2", b2)
    env.run("start", "u1")
    env.run("start", "u2")
    deadline = time.monotonic() + 10
    while not all((d / "f").exists() for d in uid_dirs) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert os.stat(uid_dirs[0] / "f").st_uid == 10000
    assert os.stat(uid_dirs[1] / "f").st_uid == 12000
    for cid, base in (("u1", 10000), ("u2", 12000)):
        pid = env.state(cid)["pid"]
        assert Path(f"/proc/{pid}/uid_map").read_text().split() == ["0", str(base), "2000"]
        assert os.stat(f"/proc/{pid}").st_uid == base
        out = env.run("exec", cid, "sh", "-c", "id -u; cat /proc/self/uid_map").stdout.split()
        assert out == ["0", "0", str(base), "2000"]


def test_idmapped_mount_needs_no_chown(env, uid_dirs):
    vol = env.tmp / "rootowned"
    vol.mkdir()
    (vol / "owned-by-root").write_text("x")
    bundle = userns_spec(env, "idm", 10000, ["sh", "-c",
                         "stat -c %u /idm/owned-by-root; stat -c %u /data; touch /idm/new && echo ok"],
                         uid_dirs[0])
    spec = json.loads((bundle / "config.json").read_text())
    spec["mounts"].append({"destination": "/idm", "type": "bind", "source": str(vol),
                           "options": ["rbind", "rw", "idmap"]})
    env.write(bundle, spec)
    out = run_out(env, bundle, "idm").split()
    assert out == ["0", "0", "ok"]
    assert os.stat(vol / "new").st_uid == 0  # written through the mapping: root on disk


def test_time_namespace_offsets(env):
    bundle, spec = env.bundle(["cat", "/proc/uptime"])
    spec["linux"]["namespaces"].append({"type": "time"})
    spec["linux"]["timeOffsets"] = {"boottime": {"secs": 864000, "nanosecs": 0},
                                    "monotonic": {"secs": 864000}}
    env.write(bundle, spec)
    uptime = float(run_out(env, bundle, "timens").split()[0])
    host = float(Path("/proc/uptime").read_text().split()[0])
    assert 863999 <= uptime - host < 864000 + 60


def test_join_namespace_by_path(env):
    bundle, _ = env.bundle(["sleep", "1000"], name="holder")
    env.container("holder", bundle)
    pid = env.state("holder")["pid"]
    b2, spec = env.bundle(["hostname"], name="joiner")
    spec["hostname"] = ""
    for ns in spec["linux"]["namespaces"]:
        if ns["type"] == "uts":
            ns["path"] = f"/proc/{pid}/ns/uts"
    env.write(b2, spec)
    assert run_out(env, b2, "joiner").strip() == "pallet"


def test_console_socket_gets_the_pty(env):
    bundle, spec = env.bundle(["sh", "-c", "tty; echo size $(stty size)"])
    spec["process"]["terminal"] = True
    spec["process"]["consoleSize"] = {"height": 30, "width": 100}
    env.write(bundle, spec)
    path = str(env.tmp / "console.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    env.container("tty1", bundle, "--console-socket", path)
    conn, _ = srv.accept()
    _msg, fds, _f, _a = socket.recv_fds(conn, 64, 1)
    master = fds[0]
    assert stat.S_ISCHR(os.fstat(master).st_mode)
    env.run("start", "tty1")
    data = b""
    deadline = time.monotonic() + 10
    while (b"size" not in data or not data.endswith(b"\n")) and time.monotonic() < deadline:
        try:
            chunk = os.read(master, 1024)
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    os.close(master)
    conn.close()
    srv.close()
    text = data.decode().replace("\r", "")
    assert "/dev/pts/0" in text or "/dev/console" in text
    assert "size 30 100" in text


def test_hooks_run_with_state(env):
    bundle, spec = env.bundle(["true"])
    out = env.tmp / "hooks"
    out.mkdir()
    def hook(name):
        return {"path": "/bin/sh", "args": ["sh", "-c", f"cat > {out}/{name}"]}
    spec["hooks"] = {k: [hook(k)] for k in ("prestart", "createRuntime", "poststart", "poststop")}
    spec["hooks"]["createContainer"] = [hook("createContainer")]
    env.write(bundle, spec)
    run_out(env, bundle, "hooks")
    for kind in ("prestart", "createRuntime", "createContainer", "poststart", "poststop"):
        state = json.loads((out / kind).read_text())
        assert state["id"] == "hooks" and state["bundle"] == str(bundle), kind


def test_failing_hook_fails_create_and_leaves_nothing(env):
    bundle, spec = env.bundle(["true"])
    spec["hooks"] = {"createRuntime": [{"path": "/bin/false"}]}
    env.write(bundle, spec)
    proc = env.run("create", "--bundle", str(bundle), "hookfail", check=False, timeout=20)
    assert proc.returncode == 1 and "createRuntime" in proc.stderr
    assert not (env.root / "hookfail").exists()
    assert not (cgroup_dirs(env.cgroup_parent + "/b"))


def cgroup_dirs(path):
    return [h / path.lstrip("/") for h in Path("/sys/fs/cgroup").iterdir() if (h / path.lstrip("/")).is_dir()]


@pytest.mark.parametrize("mutate, field", [
    (lambda s: s["linux"]["namespaces"].append({"type": "bogus"}), "linux.namespaces[6].type"),
    (lambda s: s["process"].update(args=[]), "process.args"),
    (lambda s: s["process"]["rlimits"].append({"type": "RLIMIT_NOFILE", "soft": 30000, "hard": 30000}),
     "process.rlimits[1]"),
    (lambda s: s["mounts"].append({"destination": "/x"}), "mounts[7].type"),
    (lambda s: s["linux"]["seccomp"].update(defaultAction="SCMP_ACT_FOO"), "linux.seccomp.defaultAction"),
    (lambda s: s["process"]["capabilities"]["bounding"].append("CAP_FOO"), "process.capabilities.bounding"),
    (lambda s: s["linux"]["resources"].update(memory={"limit": "lots"}), "linux.resources.memory.limit"),
])
def test_bad_config_names_field_and_leaves_nothing(env, mutate, field):
    bundle, spec = env.bundle(["true"])
    mutate(spec)
    env.write(bundle, spec)
    proc = env.run("create", "--bundle", str(bundle), "bad", check=False, timeout=20)
    assert proc.returncode == 1
    assert field in proc.stderr, proc.stderr
    assert not (env.root / "bad").exists()
    assert not cgroup_dirs(env.cgroup_parent + "/b")


def test_devices_user_oom_score_umask_groups_propagation(env):
    bundle, spec = env.bundle(["sh", "-c", "ls -l /dev/fuse | cut -c1; cat /proc/self/oom_score_adj; umask; "
                                           "id -G; grep ' / ' /proc/self/mountinfo | grep -c shared; true"])
    spec["linux"]["devices"] = [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229,
                                 "fileMode": 0o666, "uid": 0, "gid": 0}]
    spec["process"]["oomScoreAdj"] = 500
    spec["process"]["user"] = {"uid": 0, "gid": 0, "umask": 0o027, "additionalGids": [10, 20]}
    spec["linux"]["rootfsPropagation"] = "rprivate"
    env.write(bundle, spec)
    out = run_out(env, bundle, "misc").split()
    assert out[0] == "c"
    assert out[1] == "500"
    assert out[2] == "0027"
    assert out[3:6] == ["0", "10", "20"]
    assert out[6] == "0"  # rprivate: no shared peer group on /


def test_start_container_hook_runs_inside(env):
    bundle, spec = env.bundle(["cat", "/dev/shm/started"])
    spec["hooks"] = {"startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "cat > /dev/shm/started"]}]}
    env.write(bundle, spec)
    out = run_out(env, bundle, "sc")
    state = json.loads(out)
    assert state["id"] == "sc" and state["status"] == "running"
