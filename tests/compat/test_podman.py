"""podman (with conmon) drives pallet-runtime: `podman --runtime .venv/bin/pallet-runtime`.

Podman is configured to stay inside a private temporary directory: its own storage (vfs driver,
so no mounts), runroot, tmpdir, file locks, file events and network config dir (the CNI backend,
whose run directory is not hard-coded under /run like netavark's), `--network none`, cgroupfs
cgroups under --cgroup-parent /pallet-test-podman-<random>, and the ulimits this VM allows (root
lacks CAP_SYS_RESOURCE, so podman's default nofile/nproc limits cannot be set).
The pallet-runtime state of these containers lives in its default --root (/run/pallet-runtime):
podman's exit command (`podman container cleanup`) does not pass --runtime-flag on, so a private
root would leave the final `delete` looking in the wrong place.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from compat_support import (
    RUNTIME,
    Leftovers,
    need,
    random_cgroup_parent,
    remove_cgroup_tree,
    run_in_pty,
    skip_unless_usable,
    unmount_under,
)

skip_unless_usable()

IMAGE = "localhost/pallet-busybox:compat"


class Podman:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.cgroup_parent = random_cgroup_parent("podman")
        (tmp / "containers.conf").write_text(
            "[containers]\n"
            'default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n'
            "[engine]\n"
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            'lock_type = "file"\n'
            "[network]\n"
            'network_backend = "cni"\n'
            f'network_config_dir = "{tmp}/networks"\n')
        (tmp / "storage.conf").write_text(
            f'[storage]\ndriver = "vfs"\nrunroot = "{tmp}/runroot"\ngraphroot = "{tmp}/storage"\n')
        self.env = {**os.environ, "CONTAINERS_CONF": str(tmp / "containers.conf"),
                    "CONTAINERS_STORAGE_CONF": str(tmp / "storage.conf")}
        self.base = ["podman", "--root", f"{tmp}/storage", "--runroot", f"{tmp}/runroot",
                     "--tmpdir", f"{tmp}/tmp", "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs",
                     "--events-backend", "file"]
        self.run_opts = ["--runtime", str(RUNTIME), "--network", "none",
                         "--cgroup-parent", self.cgroup_parent]

    def __call__(self, *args: str, check: bool = True, timeout: float = 45, input: str | None = None,
                 ) -> subprocess.CompletedProcess:
        stdin = None if input is not None else subprocess.DEVNULL
        proc = subprocess.run([*self.base, *args], capture_output=True, text=True, env=self.env,
                              timeout=timeout, input=input, stdin=stdin)
        if check and proc.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} exited {proc.returncode}:\n"
                                 f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
        return proc

    def run(self, *args: str, **kw) -> subprocess.CompletedProcess:
        """podman run with pallet-runtime, our network and cgroup parent; args: [opts...] IMAGE CMD..."""
        return self("run", *self.run_opts, *args, **kw)

    def inspect(self, name: str) -> dict:
        return json.loads(self("inspect", "--type", "container", name).stdout)[0]

    def container_ids(self) -> list[str]:
        out = self("ps", "-a", "-q", "--no-trunc", check=False).stdout
        return out.split()


@pytest.fixture(scope="module")
def podman(rootfs_template):
    need("podman", "conmon")
    leftovers = Leftovers("/var/lib/containers/cache/blob-info-cache-v1.boltdb", "/var/lib/containers/cache",
                          "/var/lib/containers")
    tmp = Path(tempfile.mkdtemp(prefix="pallet-compat-podman-"))
    p = Podman(tmp)
    ids: list[str] = []
    try:
        tar = tmp / "busybox.tar"
        subprocess.run(["tar", "-C", str(rootfs_template), "-cf", str(tar), "."], check=True)
        p("import", "--change", "CMD [\"sh\"]", str(tar), IMAGE, timeout=60)
        tar.unlink()
        yield p
    finally:
        with contextlib.suppress(Exception):
            ids = p.container_ids()
        with contextlib.suppress(Exception):
            p("rm", "-f", "-a", "-t", "0", check=False, timeout=60)
        for cid in ids:  # anything podman failed to delete in the runtime
            subprocess.run([str(RUNTIME), "delete", "--force", cid], capture_output=True, timeout=30,
                           check=False)
        with contextlib.suppress(Exception):
            p("rmi", "-a", "-f", check=False, timeout=60)
        unmount_under(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        leftovers.cleanup()
        left = remove_cgroup_tree(p.cgroup_parent)
        assert not left, f"cgroups left behind: {left}"


def _name() -> str:
    return "compat-" + uuid.uuid4().hex[:8]


def test_run_rm_prints_output(podman):
    start = time.monotonic()
    proc = podman.run("--rm", IMAGE, "echo", "hi")
    elapsed = time.monotonic() - start
    assert proc.stdout == "hi\n", proc.stderr
    # podman waits up to 20 s for conmon's exit file when something goes wrong: a fast run shows
    # that create/start/exit/delete went the normal way.
    assert elapsed < 15, f"podman run took {elapsed:.1f}s: {proc.stderr}"
    assert podman.container_ids() == []


def test_run_exit_code(podman):
    proc = podman.run("--rm", IMAGE, "sh", "-c", "echo out; echo err >&2; exit 42", check=False)
    assert proc.returncode == 42, proc.stderr
    assert proc.stdout == "out\n"
    assert "err" in proc.stderr


def test_run_process_settings(podman):
    proc = podman.run("--rm", "-u", "65534:65534", "-w", "/tmp", "-e", "FOO=bar", "--hostname", "boxy",
                      IMAGE, "sh", "-c", 'id -u; id -g; pwd; echo "$FOO"; hostname; ulimit -n; '
                      "cat /proc/self/cgroup")
    lines = proc.stdout.splitlines()
    assert lines[:6] == ["65534", "65534", "/tmp", "bar", "boxy", "20000"], proc.stdout
    assert any(f":{podman.cgroup_parent}/libpod-" in line for line in lines[6:]), proc.stdout


def test_run_stdin(podman):
    proc = podman.run("--rm", "-i", IMAGE, "sh", "-c", "tr a-z A-Z", input="hello\n")
    assert proc.stdout == "HELLO\n"


def test_run_tty(podman):
    """podman run -t: conmon passes --console-socket and receives the pty master from the runtime."""
    rc, text = run_in_pty([*podman.base, "run", *podman.run_opts, "--rm", "-t", IMAGE,
                           "sh", "-c", "tty; echo tty-ok"], env=podman.env)
    assert rc == 0, text
    assert "/dev/pts/" in text and "tty-ok" in text, text


def test_run_missing_command_is_127(podman):
    proc = podman.run("--rm", IMAGE, "/nonexistent", check=False)
    assert proc.returncode == 127, proc.stderr
    assert "no such file or directory" in proc.stderr


def test_run_not_executable_is_126(podman):
    proc = podman.run("--rm", IMAGE, "/etc/passwd", check=False)
    assert proc.returncode == 126, proc.stderr


def test_detached_exec_stop_rm(podman):
    name = _name()
    cid = podman.run("-d", "--name", name, IMAGE, "sleep", "1000").stdout.strip()
    info = podman.inspect(name)
    assert info["State"]["Status"] == "running"
    assert info["OCIRuntime"] == str(RUNTIME)
    pid = info["State"]["Pid"]
    assert pid > 0
    state = json.loads(subprocess.run([str(RUNTIME), "state", cid], capture_output=True, text=True,
                                      check=True).stdout)
    assert state["status"] == "running" and state["pid"] == pid

    assert podman("exec", name, "echo", "from-exec").stdout == "from-exec\n"
    assert podman("exec", name, "sh", "-c", "exit 3", check=False).returncode == 3
    assert podman("exec", "-i", name, "cat", input="through stdin\n").stdout == "through stdin\n"
    out = podman("exec", "-u", "65534", "-w", "/tmp", name, "sh", "-c", "id -u; pwd").stdout
    assert out == "65534\n/tmp\n"
    assert podman("exec", name, "/nonexistent", check=False).returncode == 127
    # exec processes join the container's pid namespace: init is pid 1 there
    assert podman("exec", name, "cat", "/proc/1/cmdline").stdout.startswith("sleep")

    start = time.monotonic()
    podman("stop", "-t", "2", name)
    assert time.monotonic() - start < 20
    info = podman.inspect(name)
    assert info["State"]["Status"] == "exited"
    # sleep as pid 1 has no SIGTERM handler, so the kernel ignores SIGTERM: podman had to SIGKILL
    assert info["State"]["ExitCode"] == 137
    assert not os.path.exists(f"/proc/{pid}") or _is_not(pid, "sleep")

    podman("rm", name)
    assert cid not in podman.container_ids()
    assert not Path(f"/run/pallet-runtime/{cid}").exists()
    for hier in ("memory", "pids"):
        assert not Path(f"/sys/fs/cgroup/{hier}{podman.cgroup_parent}/libpod-{cid}").exists()


def test_pause_unpause(podman):
    name = _name()
    podman.run("-d", "--name", name, IMAGE, "sleep", "1000")
    try:
        podman("pause", name)
        assert podman.inspect(name)["State"]["Status"] == "paused"
        podman("unpause", name)
        assert podman.inspect(name)["State"]["Status"] == "running"
        assert podman("exec", name, "echo", "alive").stdout == "alive\n"
    finally:
        podman("rm", "-f", "-t", "0", name)


def _is_not(pid: int, comm: str) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() != comm
    except OSError:
        return True
