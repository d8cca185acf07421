"""The built-in images for real: the hello ELF runs (natively, under qemu-user, in a container),
the busybox layer survives GNU tar and runs, and (slow, PALLET_SLOW=1) mmdebstrap makes debian.

Safety: containers live in a private --root under tmp_path and in cgroups under
/pallet-test-<random>/; teardown force-deletes them and removes those cgroups in every hierarchy.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import uuid
from pathlib import Path

import pytest

from pallet.image.builtin import busybox_rootfs, debian_rootfs, files_tar, hello_elf, hello_files, layer_tar
from pallet.image.builtin.rootfs import normalize_machine
from pallet.runtime.spec import default_spec

HOST = normalize_machine(os.uname().machine)
FOREIGN = {"x86_64": "aarch64", "aarch64": "x86_64"}.get(HOST)
GREETING = "Hello from Pallet!"
CGROUP_ROOT = Path("/sys/fs/cgroup")

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (containers, mknod, trusted xattrs)")
slow = pytest.mark.skipif(os.environ.get("PALLET_SLOW") != "1",
                          reason="slow (minutes, downloads from the Debian archive): set PALLET_SLOW=1")


def _runtime() -> list[str]:
    script = Path(sys.executable).parent / "pallet-runtime"
    return [str(script)] if script.exists() else [sys.executable, "-m", "pallet.runtime.cli"]


def _write_hello(tmp_path: Path, machine: str) -> Path:
    path = tmp_path / f"hello-{machine}"
    path.write_bytes(hello_elf(machine))
    path.chmod(0o755)
    return path


@pytest.mark.skipif(HOST not in ("x86_64", "aarch64"), reason=f"no hello program for {HOST}")
def test_hello_runs_natively(tmp_path):
    proc = subprocess.run([str(_write_hello(tmp_path, HOST))], capture_output=True, timeout=10)
    assert proc.returncode == 0
    assert proc.stderr == b""
    out = proc.stdout.decode()
    assert out.startswith("\n" + GREETING + "\n") and f"({HOST})" in out


def test_hello_runs_under_qemu_user(tmp_path):
    if FOREIGN is None:
        pytest.skip(f"no foreign hello program to try on {HOST}")
    qemu = shutil.which(f"qemu-{FOREIGN}-static") or shutil.which(f"qemu-{FOREIGN}")
    if qemu is None:
        pytest.skip(f"no qemu-{FOREIGN}-static (apt-get install qemu-user-static)")
    proc = subprocess.run([qemu, str(_write_hello(tmp_path, FOREIGN))], capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert GREETING in proc.stdout.decode() and f"({FOREIGN})" in proc.stdout.decode()


class Containers:
    """Bundles under tmp_path run by pallet-runtime with a private --root; cleans up after itself."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.state = tmp / "state"
        self.cgroup_parent = f"pallet-test-{uuid.uuid4().hex[:8]}"
        self.ids: list[str] = []

    def run(self, rootfs: Path, args: list[str], cid: str, timeout: float = 60,
            ) -> subprocess.CompletedProcess:
        bundle = rootfs.parent
        spec = default_spec(args=args, terminal=False, rootfs=rootfs.name)
        spec["linux"]["cgroupsPath"] = f"/{self.cgroup_parent}/{cid}"
        (bundle / "config.json").write_text(json.dumps(spec))
        self.ids.append(cid)
        return subprocess.run([*_runtime(), "--root", str(self.state), "run", "--bundle", str(bundle), cid],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)

    def cleanup(self) -> None:
        for cid in self.ids:
            subprocess.run([*_runtime(), "--root", str(self.state), "delete", "--force", cid],
                           capture_output=True, timeout=60)
        dirs = [CGROUP_ROOT / self.cgroup_parent]
        if CGROUP_ROOT.is_dir():
            dirs += [hier / self.cgroup_parent for hier in CGROUP_ROOT.iterdir() if hier.is_dir()]
        for d in dirs:
            if d.is_dir():
                for sub in sorted((p for p in d.rglob("*") if p.is_dir()), reverse=True):
                    sub.rmdir()
                d.rmdir()


@pytest.fixture
def containers(tmp_path):
    c = Containers(tmp_path)
    yield c
    c.cleanup()


def _extract(tar_bytes: bytes, dest: Path) -> None:
    """Unpack with GNU tar (numeric owners, modes, xattrs): an independent reader of our tars."""
    dest.mkdir(parents=True)
    subprocess.run(["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-xpf", "-", "-C", str(dest)],
                   input=tar_bytes, check=True)


@needs_root
@pytest.mark.skipif(HOST not in ("x86_64", "aarch64"), reason=f"no hello program for {HOST}")
def test_hello_world_image_runs_in_a_container(tmp_path, containers):
    out = io.BytesIO()
    files_tar(hello_files(HOST), out)
    rootfs = tmp_path / "bundle" / "rootfs"
    _extract(out.getvalue(), rootfs)
    # The image holds only /hello; the runtime's default mounts need their mount points, which an
    # engine's snapshot would provide. The rootfs is read-only in the default spec.
    for d in ("proc", "dev", "sys"):
        (rootfs / d).mkdir()
    proc = containers.run(rootfs, ["/hello"], "hello")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("\n" + GREETING + "\n")
    assert "Pallet wrote by hand" in proc.stdout


@needs_root
@pytest.mark.skipif(not os.path.exists("/bin/busybox"), reason="needs Debian's busybox-static (/bin/busybox)")
def test_busybox_layer_round_trips_and_runs(tmp_path, containers):
    src = tmp_path / "src"
    busybox_rootfs(src)
    out = io.BytesIO()
    layer_tar(src, out, mtime=1_700_000_000)
    rootfs = tmp_path / "bundle" / "rootfs"
    _extract(out.getvalue(), rootfs)
    assert os.readlink(rootfs / "bin" / "sh") == "busybox"
    assert (rootfs / "tmp").stat().st_mode & 0o7777 == 0o1777
    assert (rootfs / "bin" / "busybox").stat().st_mtime == 1_700_000_000
    proc = containers.run(rootfs, ["/bin/sh", "-c", "id -un; ls -ld /tmp | cut -c1-10"], "bb")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["root", "drwxrwxrwt"]


@needs_root
def test_devices_owners_and_trusted_xattrs_survive_gnu_tar(tmp_path):
    src = tmp_path / "src"
    (src / "dev").mkdir(parents=True)
    os.mknod(src / "dev" / "null", 0o666 | 0o020000, os.makedev(1, 3))
    os.mknod(src / "dev" / "loop9", 0o660 | 0o060000, os.makedev(7, 9))
    os.chmod(src / "dev" / "null", 0o666)         # mknod(2) applies the umask
    (src / "f").write_text("x")
    os.chown(src / "f", 1234, 5678)
    try:
        os.setxattr(src / "f", "trusted.pallet", b"\x01\x02\xff")
    except OSError as exc:
        pytest.skip(f"no trusted xattrs on {tmp_path}: {exc}")
    out = io.BytesIO()
    layer_tar(src, out)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        null = tar.getmember("dev/null")
        assert null.ischr() and (null.devmajor, null.devminor, null.mode) == (1, 3, 0o666)
        loop = tar.getmember("dev/loop9")
        assert loop.isblk() and (loop.devmajor, loop.devminor) == (7, 9)
    dest = tmp_path / "dest"
    _extract(out.getvalue(), dest)
    st = os.lstat(dest / "dev" / "null")
    assert os.major(st.st_rdev) == 1 and os.minor(st.st_rdev) == 3
    assert (os.stat(dest / "f").st_uid, os.stat(dest / "f").st_gid) == (1234, 5678)
    assert os.getxattr(dest / "f", "trusted.pallet") == b"\x01\x02\xff"


def _ensure_debootstrapper() -> None:
    if shutil.which("mmdebstrap") or shutil.which("debootstrap"):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    proc = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "mmdebstrap"],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0 or not shutil.which("mmdebstrap"):
        pytest.skip(f"cannot install mmdebstrap: {proc.stderr.strip().splitlines()[-1:]}")


@slow
@needs_root
def test_debian_rootfs_builds_and_runs(tmp_path, containers):
    _ensure_debootstrapper()
    rootfs = tmp_path / "bundle" / "rootfs"
    started = time.monotonic()
    tool = debian_rootfs(rootfs, suite="bookworm")
    elapsed = time.monotonic() - started
    assert (rootfs / "etc" / "debian_version").read_text().startswith("12.")
    assert (rootfs / "usr" / "bin" / "apt-get").exists()
    assert (rootfs / "usr" / "sbin" / "policy-rc.d").read_text().endswith("exit 101\n")
    assert (rootfs / "etc" / "resolv.conf").read_text() == ""
    assert not [p for p in (rootfs / "var" / "lib" / "apt" / "lists").glob("*_*")]
    sink = io.BytesIO()
    diff_id = layer_tar(rootfs, sink, mtime=1_700_000_000)
    size_mb = len(sink.getvalue()) / 1e6
    print(f"\n{tool}: bookworm minbase in {elapsed:.0f}s, layer {size_mb:.1f} MB, {diff_id}")
    proc = containers.run(rootfs, ["/bin/sh", "-c", ". /etc/os-release; echo $VERSION_CODENAME"], "deb")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "bookworm"
