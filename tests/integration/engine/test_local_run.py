"""The quick start's main job: hello-world from the embedded image, through the store and runtime."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from pallet.engine.local import run_image
from pallet.image.service import ImageService
from pallet_testlib import rm_cgroups

if os.geteuid() != 0:
    pytest.skip("needs root (overlay mounts, namespaces)", allow_module_level=True)


@pytest.fixture
def parent():
    name = f"/pallet-test-{uuid.uuid4().hex[:8]}"
    yield name
    rm_cgroups(name)


def mounts_under(path: Path) -> list[str]:
    return [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if line.split()[4].startswith(str(path))]


def test_hello_world_from_an_empty_store_leaves_nothing(tmp_path, parent):
    data, run = tmp_path / "data", tmp_path / "run"
    out = tmp_path / "out"
    with open(out, "w") as f:
        rc = run_image("hello-world", str(data), str(run), cgroup_parent=parent, stdout=f)
    assert rc == 0
    assert "Hello from Pallet!" in out.read_text()
    svc = ImageService(str(data))
    assert [c for c in svc.meta.containers()] == []
    assert mounts_under(tmp_path) == []
    assert os.listdir(run / "containers") == []
    # and its cgroup parent, which the run made
    assert not [h for h in Path("/sys/fs/cgroup").iterdir() if (h / parent.lstrip("/")).exists()]
    # A second run reuses the stored image and its unpacked layer.
    with open(out, "w") as f:
        assert run_image("hello-world", str(data), str(run), ["/hello"], cgroup_parent=parent, stdout=f) == 0


def test_command_exit_status_and_cli(tmp_path, parent):
    data, run = tmp_path / "data", tmp_path / "run"
    assert run_image("busybox", str(data), str(run), ["sh", "-c", "exit 3"], cgroup_parent=parent,
                     stdout=subprocess.DEVNULL) == 3
    proc = subprocess.run([sys.executable, "-m", "pallet.engine.local", "run", "--data-root", str(data),
                           "--exec-root", str(run), "nosuchimage"], capture_output=True, text=True,
                          )
    assert proc.returncode == 125 and "nosuchimage" in proc.stderr
