"""A staged layer's usage measured by its filler (`DirSnapshotter.seal_staged`) is what the
commit records, without walking the tree again; an unsealed one is measured by the commit."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pallet.image.snapshots import create_snapshotter
from pallet.image.snapshots.store import DirSnapshotter, disk_usage


@pytest.fixture
def snap(tmp_path) -> Iterator[DirSnapshotter]:
    s = create_snapshotter("overlay", tmp_path / "store", index_off=False)
    assert isinstance(s, DirSnapshotter)
    yield s
    s.close()


def test_sealed_usage_is_recorded_without_a_walk(snap, monkeypatch):
    sealed = snap.stage()
    (sealed.fs / "data").mkdir()
    (sealed.fs / "data" / "f").write_bytes(b"x" * 50_000)
    snap.seal_staged(sealed)
    assert sealed.usage == disk_usage(sealed.fs)
    plain = snap.stage()
    (plain.fs / "g").write_bytes(b"y" * 10_000)
    walked: list[str] = []
    real = disk_usage

    def counting(path):
        walked.append(str(path))
        return real(path)

    monkeypatch.setattr("pallet.image.snapshots.store.disk_usage", counting)
    expected_plain = real(plain.fs)
    assert snap.commit_staged_many([("l1", None, sealed, None), ("l2", "l1", plain, None)]) == ["l1", "l2"]
    assert walked == [str(plain.fs)]  # only the unsealed one was walked
    assert snap.usage("l1") == sealed.usage
    assert snap.usage("l2") == expected_plain
