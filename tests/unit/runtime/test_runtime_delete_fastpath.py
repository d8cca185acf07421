"""Runtime._remove_empty_cgroup: the driver-free removal `delete` uses for a stopped container,
on a fake cgroupfs in tmp_path (it never kills: a non-empty cgroup is left to the driver)."""

from __future__ import annotations

from pathlib import Path

from pallet.runtime.container import Runtime


def _rt(tmp_path: Path) -> Runtime:
    return Runtime(str(tmp_path / "state"), cgroup_root=str(tmp_path / "cg"))


def _dirs(tmp_path: Path, *hierarchies: str) -> list[str]:
    out = []
    for h in hierarchies:
        d = tmp_path / "cg" / h / "pallet" / "c1"
        d.mkdir(parents=True)
        out.append(str(d))
    return out


def test_empty_cgroup_dirs_are_removed(tmp_path: Path):
    dirs = _dirs(tmp_path, "pids", "memory")
    assert _rt(tmp_path)._remove_empty_cgroup(dirs) is True
    assert not any(Path(d).exists() for d in dirs)
    assert (tmp_path / "cg" / "pids" / "pallet").is_dir()  # never a parent


def test_a_dir_already_gone_is_no_obstacle(tmp_path: Path):
    dirs = _dirs(tmp_path, "pids", "memory")
    Path(dirs[0]).rmdir()
    assert _rt(tmp_path)._remove_empty_cgroup(dirs) is True
    assert not Path(dirs[1]).exists()


def test_processes_left_go_to_the_driver_untouched(tmp_path: Path):
    dirs = _dirs(tmp_path, "pids", "memory")
    (Path(dirs[0]) / "cgroup.procs").write_text("4242\n")
    assert _rt(tmp_path)._remove_empty_cgroup(dirs) is False
    assert all(Path(d).is_dir() for d in dirs)


def test_a_busy_or_nested_cgroup_goes_to_the_driver(tmp_path: Path):
    dirs = _dirs(tmp_path, "pids", "memory")
    (Path(dirs[1]) / "child").mkdir()  # rmdir fails: the driver removes trees, with retries
    assert _rt(tmp_path)._remove_empty_cgroup(dirs) is False


def test_dirs_outside_the_cgroup_root_or_none_are_refused(tmp_path: Path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    rt = _rt(tmp_path)
    assert rt._remove_empty_cgroup([str(outside)]) is False and outside.is_dir()
    assert rt._remove_empty_cgroup([]) is False
    assert rt._remove_empty_cgroup([str(tmp_path / "cg" / "pids" / ".." / "x")]) is False
