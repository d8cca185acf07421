"""Helpers shared by the test tiers (importable from any test: pytest puts this directory, the
one of the root conftest.py, on sys.path)."""

from __future__ import annotations

import contextlib
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def rm_cgroups(parent: str) -> None:
    """Remove the cgroup `parent` (a test's own /pallet-test-<random>) and what is below it, in
    the v2 root and in every v1 hierarchy; a directory still in use stays (rmdir fails)."""
    rel = parent.strip("/")
    if not rel or not CGROUP_ROOT.is_dir():
        return
    dirs = [CGROUP_ROOT / rel] + [h / rel for h in CGROUP_ROOT.iterdir() if h.is_dir()]
    for d in dirs:
        if d.is_dir():
            for sub in sorted((p for p in d.rglob("*") if p.is_dir()), reverse=True):
                with contextlib.suppress(OSError):
                    sub.rmdir()
            with contextlib.suppress(OSError):
                d.rmdir()
