"""Helpers shared by the compat tests: cgroup, mount and leftover cleanup, tool checks."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

RUNTIME = Path(sys.executable).with_name("pallet-runtime")
CGROUP_ROOT = Path("/sys/fs/cgroup")


def skip_unless_usable() -> None:
    """Skip the calling test module unless we are root with busybox and pallet-runtime installed."""
    if os.geteuid() != 0:
        pytest.skip("compat tests need root (podman and containerd run rootful here)",
                    allow_module_level=True)
    if not os.path.exists("/bin/busybox"):
        pytest.skip("needs Debian's busybox-static (/bin/busybox)", allow_module_level=True)
    if not RUNTIME.exists():
        pytest.skip(f"{RUNTIME} missing: install the project into the venv (pip install -e .)",
                    allow_module_level=True)


def random_cgroup_parent(kind: str) -> str:
    return f"/pallet-test-{kind}-{uuid.uuid4().hex[:8]}"


def cgroup_dirs(parent: str) -> list[Path]:
    """The directories of `parent` in every mounted hierarchy (v1 controllers, name=systemd, v2)."""
    rel = parent.strip("/")
    assert rel.startswith("pallet-test-"), parent
    out = []
    if (CGROUP_ROOT / "cgroup.controllers").exists():  # pure v2
        out.append(CGROUP_ROOT / rel)
    else:
        for hier in CGROUP_ROOT.iterdir():
            if hier.is_dir() and not hier.is_symlink():
                out.append(hier / rel)
    return [d for d in out if d.is_dir()]


def remove_cgroup_tree(parent: str, timeout: float = 10.0) -> list[str]:
    """rmdir `parent` and its children, deepest first, retrying while tasks finish exiting.
    Returns the directories that could not be removed."""
    left: list[str] = []
    for top in cgroup_dirs(parent):
        dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
        for d in [*dirs, top]:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        left.append(str(d))
                        break
                    time.sleep(0.05)
    return left


def mounts_under(path: Path) -> list[str]:
    prefix = str(path).rstrip("/") + "/"
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            target = line.split()[4].replace("\\040", " ")
            if target.startswith(prefix) or target == prefix.rstrip("/"):
                out.append(target)
    return out


def unmount_under(path: Path) -> None:
    """Lazily unmount everything mounted at or below `path`, deepest first."""
    for _ in range(5):
        targets = mounts_under(path)
        if not targets:
            return
        for t in sorted(targets, key=len, reverse=True):
            subprocess.run(["umount", "-l", t], capture_output=True, check=False)


class Leftovers:
    """Paths an engine creates outside our temporary directory: remember which already existed,
    and at teardown remove only the ones that did not (files, then empty directories)."""

    def __init__(self, *paths: str) -> None:
        self.paths = [Path(p) for p in paths]
        self.existed = {p for p in self.paths if os.path.lexists(p)}

    def cleanup(self) -> None:
        for p in self.paths:  # listed children before parents
            if p in self.existed or not os.path.lexists(p):
                continue
            with contextlib.suppress(OSError):
                if p.is_dir() and not p.is_symlink():
                    p.rmdir()  # only when empty
                else:
                    p.unlink()


def need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")


def run_in_pty(argv: list[str], env: dict | None = None, timeout: float = 45) -> tuple[int, str]:
    """Run `argv` with a new pty as its stdio and controlling terminal; return (status, output)."""
    import pty
    import select

    master, slave = pty.openpty()
    out = b""
    try:
        proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                                start_new_session=True)
        os.close(slave)
        slave = -1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 4096)
                except OSError:  # EIO: every holder of the slave is gone
                    break
                if not data:
                    break
                out += data
            elif proc.poll() is not None:
                break
        try:
            rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    return rc, out.decode(errors="replace")


# --- palletd for the docker CLI ------------------------------------------------------------------

def docker_env(sock: Path, **extra: str) -> dict[str, str]:
    """An environment pointing the docker CLI (and pallet) at `sock`, with a private docker config
    beside it, and none of the caller's DOCKER_*/PALLET_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "PALLET_"))}
    env.update(DOCKER_HOST=f"unix://{sock}", DOCKER_CONFIG=str(sock.parent / "docker-config"),
               PALLET_HOST=f"unix://{sock}", **extra)
    return env


def docker(sock: Path, *args: str, input: bytes | str | None = None, cwd: Path | None = None,
           timeout: float = 120, **extra_env: str) -> subprocess.CompletedProcess[str]:
    """The real docker CLI against `sock`; output decoded (undecodable bytes replaced). Skips the
    test when the CLI is not on PATH."""
    if shutil.which("docker") is None:
        pytest.skip("the docker CLI is not on PATH")
    data = input.encode() if isinstance(input, str) else input
    r = subprocess.run(["docker", *args], input=data, capture_output=True, cwd=cwd, timeout=timeout,
                       env=docker_env(sock, **extra_env))
    return subprocess.CompletedProcess(r.args, r.returncode, r.stdout.decode(errors="replace"),
                                       r.stderr.decode(errors="replace"))


@contextlib.contextmanager
def palletd_for_docker(prefix: str, images: tuple[str, ...] = ("busybox",)):
    """A palletd on private roots in /tmp/<prefix>..., its containers under a cgroup parent
    /pallet-test-docker-<random>, with `images` bootstrapped; yields its socket path. At the
    end every container is removed, palletd stopped (SIGTERM, then SIGKILL) and the roots and
    the cgroup parent removed."""
    import tempfile

    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))  # short: sun_path is 108 bytes
    parent = random_cgroup_parent("docker")
    (root / "daemon.json").write_text("{}")
    path = root / "s.sock"
    pallet = [sys.executable, "-m", "pallet.cli.main", "-H", f"unix://{path}"]
    log = open(root / "log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "pallet.daemon.main",
                             "--config", str(root / "daemon.json"), "-H", f"unix://{path}",
                             "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
                             "--cgroup-parent", parent],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while "ready" not in (root / "log").read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"palletd did not start:\n{(root / 'log').read_text()}")
            time.sleep(0.05)
        if images:
            r = subprocess.run([*pallet, "image", "bootstrap", *images], capture_output=True, text=True,
                               timeout=120)
            assert r.returncode == 0, r.stderr
        yield path
    finally:
        with contextlib.suppress(Exception):
            ids = subprocess.run([*pallet, "ps", "-aq"], capture_output=True, text=True,
                                 timeout=60).stdout.split()
            if ids:
                subprocess.run([*pallet, "rm", "-f", *ids], capture_output=True, timeout=120)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()
        remove_cgroup_tree(parent)
        shutil.rmtree(root, ignore_errors=True)
