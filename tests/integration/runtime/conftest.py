"""Fixtures for pallet-runtime integration tests: busybox bundles, a private --root, cleanup.

Safety: each test's containers live in a --root of their own and in cgroups under
/pallet-test-<random>/; teardown force-deletes every container the test made (which kills its
processes by pid through the runtime and removes its cgroup), then the parent cgroups.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from pallet.runtime.bundle import make_rootfs
from pallet.runtime.spec import default_spec

RUNTIME = [sys.executable, "-m", "pallet.runtime.cli"]

if os.geteuid() != 0:
    pytest.skip("pallet-runtime integration tests need root", allow_module_level=True)
if not os.path.exists("/bin/busybox"):
    pytest.skip("needs Debian's busybox-static (/bin/busybox)", allow_module_level=True)


@pytest.fixture(scope="session")
def rootfs_template(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("busybox") / "rootfs"
    make_rootfs(str(root))
    return root


class Env:
    """A private runtime root plus helpers to make bundles and run pallet-runtime."""

    def __init__(self, tmp: Path, template: Path) -> None:
        self.tmp = tmp
        self.root = tmp / "state"
        self.template = template
        self.cgroup_parent = f"/pallet-test-{uuid.uuid4().hex[:8]}"
        self.ids: list[str] = []

    def bundle(self, args: list[str], name: str = "b", **changes) -> tuple[Path, dict]:
        bundle = self.tmp / name
        if bundle.exists():
            shutil.rmtree(bundle)
        bundle.mkdir()
        shutil.copytree(self.template, bundle / "rootfs", symlinks=True)
        spec = default_spec(args=args, terminal=False)
        spec["linux"]["cgroupsPath"] = f"{self.cgroup_parent}/{name}"
        for key, value in changes.items():
            spec[key] = value
        self.write(bundle, spec)
        return bundle, spec

    def write(self, bundle: Path, spec: dict) -> None:
        (bundle / "config.json").write_text(json.dumps(spec))

    def run(self, *args: str, check: bool = True, input: str | None = None, timeout: float = 60,
            ) -> subprocess.CompletedProcess:
        proc = subprocess.run([*RUNTIME, "--root", str(self.root), *args], capture_output=True, text=True,
                              input=input, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"pallet-runtime {' '.join(args)} failed ({proc.returncode}):\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc

    def container(self, cid: str, bundle: Path, *extra: str) -> Path:
        """Create a container whose stdio goes to files (the init keeps them open, as with runc);
        returns the path of its output file."""
        self.ids.append(cid)
        out = self.tmp / f"{cid}.out"
        with open(out, "w") as f:
            proc = subprocess.run([*RUNTIME, "--root", str(self.root), "create", "--bundle", str(bundle),
                                   *extra, cid], stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                  timeout=60)
        if proc.returncode != 0:
            raise AssertionError(f"create {cid} failed: {out.read_text()}")
        return out

    def detached(self, *args: str) -> None:
        """Run a command that leaves a process behind holding its stdio: output to a file."""
        with open(self.tmp / "detached.out", "a") as f:
            proc = subprocess.run([*RUNTIME, "--root", str(self.root), *args], stdin=subprocess.DEVNULL,
                                  stdout=f, stderr=subprocess.STDOUT, timeout=60)
        assert proc.returncode == 0, (self.tmp / "detached.out").read_text()

    def state(self, cid: str) -> dict:
        return json.loads(self.run("state", cid).stdout)

    def cleanup(self) -> None:
        for cid in self.ids:
            self.run("delete", "--force", cid, check=False)
        for hier in Path("/sys/fs/cgroup").iterdir():
            d = hier / self.cgroup_parent.lstrip("/")
            if d.is_dir():
                for sub in sorted(d.rglob("*"), reverse=True):
                    if sub.is_dir():
                        sub.rmdir()
                d.rmdir()
        if (Path("/sys/fs/cgroup") / self.cgroup_parent.lstrip("/")).is_dir():
            (Path("/sys/fs/cgroup") / self.cgroup_parent.lstrip("/")).rmdir()


@pytest.fixture
def env(tmp_path, rootfs_template):
    e = Env(tmp_path, rootfs_template)
    yield e
    e.cleanup()
