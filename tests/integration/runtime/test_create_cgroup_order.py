"""create writes the cgroup limits early (while the rest of the config is prepared, and
pallet.runtime.cgwarm's child holds the cgroup lock's grace period open) only into a cgroup it
made, and a limit the kernel refuses fails create cleanly, naming the file."""

from __future__ import annotations

import os
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")


def _leftovers(env, name: str) -> list[str]:
    """Directories of the container's cgroup still present in any v1 hierarchy (or v2)."""
    rel = f"{env.cgroup_parent.lstrip('/')}/{name}"
    dirs = [CGROUP / rel] if (CGROUP / "cgroup.controllers").exists() else \
        [h / rel for h in CGROUP.iterdir() if h.name != "unified"]
    return [str(d) for d in dirs if d.is_dir()]


def test_limit_refused_by_the_kernel_fails_create_and_leaves_nothing(env):
    # Valid syntax, so validate() lets it through; the kernel refuses CPUs this host lacks.
    bundle, spec = env.bundle(["true"], name="badcpus")
    spec["linux"]["resources"]["cpu"] = {"cpus": f"0-{os.cpu_count() + 63}"}
    env.write(bundle, spec)
    proc = env.run("create", "--bundle", str(bundle), "badcpus", check=False)
    assert proc.returncode == 1
    assert "cpuset.cpus" in proc.stderr  # the kernel's refusal, naming the file
    assert _leftovers(env, "badcpus") == []
    assert not (env.root / "badcpus").exists()


def test_an_existing_cgroup_is_not_touched_by_a_config_that_fails_later(env):
    # The cgroup exists before create (a caller's own); the config's pids limit is valid, its
    # capability is not: create fails, and the existing cgroup keeps its limit.
    bundle, spec = env.bundle(["true"], name="existing")
    parent = env.cgroup_parent.lstrip("/")
    if (CGROUP / "cgroup.controllers").exists():
        # v2: a child shows pids.max only once its parent enables the controller for children.
        (CGROUP / parent).mkdir()
        (CGROUP / parent / "cgroup.subtree_control").write_text("+pids")
        pids_dir = CGROUP / parent / "existing"
    else:
        pids_dir = CGROUP / "pids" / parent / "existing"
    pids_dir.mkdir(parents=True)
    try:
        before = (pids_dir / "pids.max").read_text()
        spec["linux"]["resources"]["pids"] = {"limit": 7}
        spec["process"]["capabilities"]["bounding"].append("CAP_NO_SUCH_THING")
        env.write(bundle, spec)
        proc = env.run("create", "--bundle", str(bundle), "existing", check=False)
        assert proc.returncode == 1 and "CAP_NO_SUCH_THING" in proc.stderr
        assert (pids_dir / "pids.max").read_text() == before
        assert pids_dir.is_dir()  # not ours to remove
        assert not (env.root / "existing").exists()
    finally:
        pids_dir.rmdir()  # env.cleanup removes the parent (and, on v1, other hierarchies' dirs)


def test_limits_are_in_force_when_the_init_runs(env):
    bundle, spec = env.bundle(["sh", "-c", "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || "
                                           "cat /sys/fs/cgroup/pids.max"], name="limits")
    spec["linux"]["resources"]["pids"] = {"limit": 42}
    # The default spec has a cgroup namespace and a cgroup mount at /sys/fs/cgroup.
    env.write(bundle, spec)
    proc = env.run("run", "--bundle", str(bundle), "limits")
    assert proc.stdout.strip() == "42"
