"""containerd (the io.containerd.runc.v2 shim) drives pallet-runtime: `ctr run --runc-binary ...`.

A private containerd per module: its own root, state, sockets and `opt` directory in a temporary
directory, no CRI plugin, started and stopped by pid. The image is an OCI image-layout archive
built here (one layer: the busybox rootfs) and imported with `ctr images import`. Containers run
with --cgroup /pallet-test-ctr-<random>/<id>, --runc-root and --fifo-dir inside the temporary
directory. The shim passes pallet-runtime `--root <runc-root>/<namespace> --log <bundle>/log.json
--log-format json`, and reads the last error from that log when a command fails.
Not tested: piping stdin into `ctr run` without -t; ctr never closes the task's stdin on EOF, so
the process waits forever with runc as well.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
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
from ociarchive import write_oci_archive

skip_unless_usable()

NAMESPACE = "pallet-test"
IMAGE = "localhost/pallet-busybox:compat"


class Containerd:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.sock = tmp / "c.sock"
        self.runc_root = tmp / "runc-root"
        self.cgroup_parent = random_cgroup_parent("ctr")
        self.proc: subprocess.Popen | None = None
        self.config = tmp / "config.toml"
        self.config.write_text(f"""version = 2
root = "{tmp}/root"
state = "{tmp}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
                    "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "{self.sock}"
[ttrpc]
  address = "{self.sock}.ttrpc"
[debug]
  address = ""
  level = "info"
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{tmp}/opt"
""")

    def start(self) -> None:
        log = open(self.tmp / "containerd.log", "w")  # noqa: SIM115 - containerd holds it
        self.proc = subprocess.Popen(["containerd", "--config", str(self.config)], stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"containerd exited {self.proc.returncode}:\n{self.log()}")
            if self.sock.exists() and self.ctr("version", check=False, timeout=5).returncode == 0:
                return
            time.sleep(0.1)
        raise AssertionError(f"containerd did not come up in 20 s:\n{self.log()}")

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.tmp / "containerd.log").read_text()[-4000:]
        return ""

    def ctr(self, *args: str, check: bool = True, timeout: float = 45, input: str | None = None,
            ) -> subprocess.CompletedProcess:
        proc = subprocess.run(["ctr", "-a", str(self.sock), "-n", NAMESPACE, *args], capture_output=True,
                              text=True, timeout=timeout, input=input,
                              stdin=None if input is not None else subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise AssertionError(f"ctr {' '.join(args)} exited {proc.returncode}:\n"
                                 f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
        return proc

    def run_opts(self, cid: str) -> list[str]:
        return ["--runc-binary", str(RUNTIME), "--runc-root", str(self.runc_root),
                "--cgroup", f"{self.cgroup_parent}/{cid}", "--fifo-dir", str(self.tmp / "fifo")]

    def run(self, cid: str, *args: str, opts: tuple[str, ...] = (), **kw) -> subprocess.CompletedProcess:
        """ctr run [opts] --runc-binary pallet-runtime ... IMAGE ID args..."""
        return self.ctr("run", *opts, *self.run_opts(cid), IMAGE, cid, *args, **kw)

    def runtime(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(RUNTIME), "--root", str(self.runc_root / NAMESPACE), *args],
                              capture_output=True, text=True, timeout=30, check=False)

    def tasks(self) -> dict[str, tuple[int, str]]:
        out = {}
        for line in self.ctr("task", "ls").stdout.splitlines()[1:]:
            cid, pid, status = line.split()
            out[cid] = (int(pid), status)
        return out

    def shim_pids(self) -> list[int]:
        """Shims started by our containerd: their command line names our socket."""
        pids = []
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                argv = (d / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"containerd-shim-runc-v2") and str(self.sock).encode() in argv:
                pids.append(int(d.name))
        return pids

    def teardown(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(Exception):
                for cid in self.ctr("containers", "ls", "-q", check=False).stdout.split():
                    self.ctr("task", "kill", "-s", "SIGKILL", cid, check=False, timeout=15)
                    self.ctr("task", "rm", "-f", cid, check=False, timeout=30)
                    self.ctr("containers", "rm", cid, check=False, timeout=15)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in self.shim_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        ns_root = self.runc_root / NAMESPACE
        if ns_root.is_dir():  # containers the shims did not delete: the runtime kills them by pid
            for d in ns_root.iterdir():
                self.runtime("delete", "--force", d.name)


@pytest.fixture(scope="module")
def containerd(rootfs_template):
    need("containerd", "ctr", "containerd-shim-runc-v2")
    # The runc v2 shim puts its socket under /run/containerd/s whatever the configuration says.
    leftovers = Leftovers("/run/containerd/s", "/run/containerd/fifo", "/run/containerd")
    tmp = Path(tempfile.mkdtemp(prefix="pallet-compat-ctr-"))
    c = Containerd(tmp)
    try:
        c.start()
        archive = tmp / "busybox-oci.tar"
        write_oci_archive(rootfs_template, archive, IMAGE)
        out = c.ctr("images", "import", str(archive), timeout=60).stdout
        assert IMAGE in out, out
        archive.unlink()
        yield c
    finally:
        c.teardown()
        unmount_under(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        leftovers.cleanup()
        left = remove_cgroup_tree(c.cgroup_parent)
        assert not left, f"cgroups left behind: {left}"


def _id() -> str:
    return "c" + uuid.uuid4().hex[:8]


def test_run_rm_prints_output(containerd):
    cid = _id()
    start = time.monotonic()
    proc = containerd.run(cid, "echo", "hi", opts=("--rm",))
    assert proc.stdout == "hi\n", proc.stderr
    assert time.monotonic() - start < 20
    assert cid not in containerd.ctr("containers", "ls", "-q").stdout.split()
    assert not (containerd.runc_root / NAMESPACE / cid).exists()


def test_run_exit_code_and_stderr(containerd):
    proc = containerd.run(_id(), "sh", "-c", "echo out; echo err >&2; exit 7", opts=("--rm",), check=False)
    assert proc.returncode == 7, proc.stderr
    assert proc.stdout == "out\n"
    assert "err" in proc.stderr


def test_run_tty(containerd):
    """ctr run -t: the shim passes --console-socket and takes the pty master from the runtime."""
    cid = _id()
    rc, text = run_in_pty(["ctr", "-a", str(containerd.sock), "-n", NAMESPACE, "run", "--rm", "-t",
                           *containerd.run_opts(cid), IMAGE, cid, "sh", "-c", "tty; echo tty-ok"])
    assert rc == 0, text
    assert "/dev/pts/" in text and "tty-ok" in text, text


def test_create_error_reaches_ctr(containerd):
    """A failed create: the shim reads pallet-runtime's error from --log (JSON) and reports it."""
    cid = _id()
    proc = containerd.run(cid, "/nonexistent", opts=("--rm",), check=False)
    assert proc.returncode != 0
    assert "OCI runtime create failed" in proc.stderr, proc.stderr
    assert "/nonexistent" in proc.stderr and "no such file or directory" in proc.stderr, proc.stderr
    assert cid not in containerd.tasks()
    containerd.ctr("containers", "rm", cid, check=False)


def test_detached_task_lifecycle(containerd):
    cid = _id()
    containerd.run(cid, "sleep", "1000", opts=("-d",))
    try:
        pid, status = containerd.tasks()[cid]
        assert status == "RUNNING" and pid > 0
        state = json.loads(containerd.runtime("state", cid).stdout)
        assert state["status"] == "running" and state["pid"] == pid
        cgroup = Path(f"/proc/{pid}/cgroup").read_text()
        assert f":{containerd.cgroup_parent}/{cid}\n" in cgroup, cgroup

        ex = containerd.ctr("task", "exec", "--exec-id", "e1", "--fifo-dir", str(containerd.tmp / "fifo"),
                            cid, "sh", "-c", "echo in-exec; cat /proc/1/cmdline")
        assert ex.stdout.startswith("in-exec\nsleep"), ex.stdout
        ex = containerd.ctr("task", "exec", "--exec-id", "e2", "--fifo-dir", str(containerd.tmp / "fifo"),
                            cid, "sh", "-c", "exit 5", check=False)
        assert ex.returncode == 5, ex.stderr

        ps = containerd.ctr("task", "ps", cid).stdout  # pallet-runtime ps --format json
        assert str(pid) in ps.split(), ps

        containerd.ctr("task", "pause", cid)
        assert containerd.tasks()[cid][1] == "PAUSED"
        assert containerd.runtime("state", cid).stdout.count('"paused"') == 1
        containerd.ctr("task", "resume", cid)
        assert containerd.tasks()[cid][1] == "RUNNING"

        containerd.ctr("task", "kill", "-s", "SIGKILL", cid)
        deadline = time.monotonic() + 15
        while containerd.tasks()[cid][1] != "STOPPED":
            assert time.monotonic() < deadline, containerd.tasks()
            time.sleep(0.1)
        rm = containerd.ctr("task", "rm", cid)
        assert "137" in rm.stdout + rm.stderr or rm.returncode == 0
        assert cid not in containerd.tasks()
        assert not (containerd.runc_root / NAMESPACE / cid).exists()
        assert not Path(f"/sys/fs/cgroup/memory{containerd.cgroup_parent}/{cid}").exists()
    finally:
        containerd.ctr("task", "rm", "-f", cid, check=False)
        containerd.ctr("containers", "rm", cid, check=False)
