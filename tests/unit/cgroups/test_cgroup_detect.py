"""Version detection through an injected root, and the cgroup path rules."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_cgroupfs import make_v1, make_v2, populate_v2

from pallet.cgroups import create_cgroup_manager, detect_version, v1_hierarchies
from pallet.errors import InvalidArgument, NotSupported


def test_v2(tmp_path):
    root = make_v2(tmp_path)
    assert detect_version(root) == 2
    assert create_cgroup_manager("/pallet/abc", root=root).version == 2


def test_v1_hybrid_with_separate_cpu_and_cpuacct(tmp_path):
    root = make_v1(tmp_path)
    assert (root / "unified" / "cgroup.controllers").exists()  # hybrid: still v1
    assert detect_version(root) == 1
    found = v1_hierarchies(root)
    assert found["cpu"] == str(root / "cpu") and found["cpuacct"] == str(root / "cpuacct")
    assert "systemd" not in found and "unified" not in found


def test_v1_combined_cpu_cpuacct(tmp_path):
    root = make_v1(tmp_path, combined=True)
    found = v1_hierarchies(root)
    shared = (root / "cpu,cpuacct").resolve()
    assert Path(found["cpu"]).resolve() == Path(found["cpuacct"]).resolve() == shared
    manager = create_cgroup_manager("/pallet/x", root=root)
    manager.apply(42)
    # One write for the shared hierarchy, not two.
    assert (root / "cpu,cpuacct" / "pallet" / "x" / "cgroup.procs").read_text() == "42"


def test_nothing_mounted(tmp_path):
    with pytest.raises(NotSupported, match="no cgroup hierarchy"):
        create_cgroup_manager("/pallet/x", root=tmp_path)


@pytest.mark.parametrize("path", ["", "/", "/pallet/../x", "../x", "/pallet/./x", "a\0b"])
def test_bad_paths(tmp_path, path):
    with pytest.raises(InvalidArgument, match="cgroupsPath"):
        create_cgroup_manager(path, root=make_v2(tmp_path))


def test_relative_path_is_below_the_root(tmp_path):
    root = make_v2(tmp_path)
    populate_v2(root, "pallet/rel")
    manager = create_cgroup_manager("pallet/rel", root=root)
    manager.apply(7)
    assert (root / "pallet" / "rel" / "cgroup.procs").read_text() == "7"
    assert manager.path == "pallet/rel"


def test_remove_if_empty_takes_only_empty_cgroups(tmp_path):
    from pallet.cgroups import remove_if_empty

    for hier in ("memory", "cpu,cpuacct", "pids"):
        (tmp_path / hier).mkdir()
        (tmp_path / hier / "cgroup.procs").write_text("")
    (tmp_path / "memory" / "pallet").mkdir()                 # empty: goes
    (tmp_path / "cpu,cpuacct" / "pallet" / "c1").mkdir(parents=True)  # a child left: stays
    remove_if_empty("/pallet", tmp_path)
    assert not (tmp_path / "memory" / "pallet").exists()
    assert (tmp_path / "cpu,cpuacct" / "pallet" / "c1").is_dir()
    remove_if_empty("/pallet", tmp_path)  # nothing there any more: no error
