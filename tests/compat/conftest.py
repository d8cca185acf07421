"""Fixtures for the compatibility tests: podman and containerd driving pallet-runtime.

Safety, for every test here:
- cgroups are created only under /pallet-test-podman-<random> or /pallet-test-ctr-<random>
  (podman --cgroup-parent, ctr run --cgroup), and teardown removes those trees;
- processes are stopped through the engine (podman rm -f, ctr task kill/rm), and the only
  processes signalled directly are ones these fixtures started: containerd by its pid, and
  shims whose command line names our private containerd socket;
- every directory lives in a fresh temporary directory (short paths: unix sockets are limited to
  108 bytes); what the engines insist on writing outside it (podman's blob-info cache,
  containerd's shim socket directory) is removed at teardown only if it did not exist before.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pallet.runtime.bundle import make_rootfs


@pytest.fixture(scope="session")
def rootfs_template(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("compat-busybox") / "rootfs"
    make_rootfs(str(root))
    return root
