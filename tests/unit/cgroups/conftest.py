"""Fixtures over fake_cgroupfs: fake v1 and v2 roots, a write recorder, a bpf recorder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fake_cgroupfs import RecordingBpf, Writes, make_v1, make_v2

from pallet.cgroups import cgroupfs


@pytest.fixture
def v1_root(tmp_path: Path) -> Path:
    return make_v1(tmp_path / "cgroup")


@pytest.fixture
def v2_root(tmp_path: Path) -> Path:
    return make_v2(tmp_path / "cgroup")


@pytest.fixture
def writes(monkeypatch, tmp_path: Path) -> Writes:
    """Records the drivers' writes while still making them (one door: cgroupfs.write)."""
    record = Writes(tmp_path / "cgroup")
    real = cgroupfs.write

    def spy(path: Path, value: Any) -> None:
        real(path, value)
        record.append((str(Path(path).relative_to(record.base)), str(value)))

    monkeypatch.setattr(cgroupfs, "write", spy)
    return record


@pytest.fixture
def bpf() -> RecordingBpf:
    return RecordingBpf(attached=[7])
