"""The pull's durability path: blobs verified by the downloads and committed (fsync, rename) by
the publisher thread, and a followed ingest copied file to file in the kernel."""

from __future__ import annotations

import errno
import os

import pytest

from pallet.errors import Unavailable
from pallet.image.content import ContentStore
from pallet.oci.descriptor import Descriptor
from pallet.oci.digest import Digest, DigestMismatch
from pallet.registry.client.pull import _Download, _Follower, _open_verified, _Publisher, _PublisherClosed
from pallet_testlib import grow_file


def _desc(data: bytes) -> Descriptor:
    return Descriptor("application/octet-stream", Digest.from_bytes(data), len(data))


def test_verified_blobs_appear_only_once_the_publisher_committed_them(tmp_path):
    store = ContentStore(tmp_path / "content")
    blobs = [os.urandom(100_000 + i) for i in range(5)]
    writers = []
    for i, data in enumerate(blobs):
        w = store.writer(_desc(data), ref=f"pull-{i}", sync_dir=False)
        w.write(data)
        assert w.verify() == _desc(data)
        writers.append(w)
    # Verified but not committed: still in the ingest (resumable), not in the store.
    assert not any(store.exists(_desc(d).digest) for d in blobs)
    assert all(store.ingest_data(f"pull-{i}").stat().st_size == len(d) for i, d in enumerate(blobs))
    pub = _Publisher()
    for w in writers:
        pub.submit(w)
    pub.finish()
    store.sync_blobs()
    for data in blobs:
        assert store.read(_desc(data).digest) == data
    assert store.ingests() == []


def test_an_abandoned_publisher_keeps_the_verified_bytes_for_the_next_pull(tmp_path):
    store = ContentStore(tmp_path / "content")
    data = os.urandom(50_000)
    w = store.writer(_desc(data), ref="pull-x", sync_dir=False)
    w.write(data)
    w.verify()
    pub = _Publisher()
    pub.abandon()
    with pytest.raises(_PublisherClosed):
        pub.submit(w)  # no more blobs taken after abandon
    w.close()  # what a download does when the hand-over fails
    assert not store.exists(_desc(data).digest)
    offset, again = store.resume("pull-x", _desc(data))
    assert offset == len(data)  # nothing left to transfer
    again.commit()
    assert store.read(_desc(data).digest) == data


def test_a_failed_commit_is_raised_by_finish_and_the_rest_is_kept(tmp_path):
    store = ContentStore(tmp_path / "content")
    good, other = os.urandom(1000), os.urandom(1000)

    class Failing:
        def start_writeback(self) -> None:
            pass

        def commit(self) -> None:
            raise OSError(errno.EIO, "fsync failed")

        def close(self) -> None:
            pass

    w = store.writer(_desc(good), ref="pull-good", sync_dir=False)
    w.write(good)
    w.verify()
    w2 = store.writer(_desc(other), ref="pull-other", sync_dir=False)
    w2.write(other)
    w2.verify()
    pub = _Publisher()
    pub.submit(w)
    pub.wait()
    pub.submit(Failing())
    pub.submit(w2)
    with pytest.raises(OSError, match="fsync failed"):
        pub.finish()
    assert store.exists(_desc(good).digest)
    # After the error the publisher closed the next writer instead: its bytes wait in the ingest.
    assert not store.exists(_desc(other).digest)
    assert store.resume("pull-other", _desc(other))[0] == len(other)


def test_verify_refuses_a_mismatch_and_further_writes(tmp_path):
    store = ContentStore(tmp_path / "content")
    data = b"x" * 1000
    w = store.writer(_desc(data), ref="pull-bad", sync_dir=False)
    w.write(b"y" * 1000)
    with pytest.raises(DigestMismatch):
        w.verify()
    assert store.ingests() == []  # discarded, as a failed commit discards
    w = store.writer(_desc(data), ref="pull-ok", sync_dir=False)
    w.write(data)
    w.verify()
    with pytest.raises(Exception, match="verified"):
        w.write(b"more")
    w.commit()
    assert store.read(_desc(data).digest) == data


def test_open_verified_reads_the_ingest_then_the_blob(tmp_path):
    from pallet.image.service import ImageService

    data = os.urandom(10_000)
    with ImageService(tmp_path / "root", snapshotter="copying") as images:
        digest = _desc(data).digest
        w = images.content.writer(_desc(data), ref=f"pull-{digest}", sync_dir=False)
        w.write(data)
        w.verify()
        with _open_verified(images, digest) as f:
            assert f.read() == data
        w.commit()
        with _open_verified(images, digest) as f:
            assert f.read() == data




@pytest.mark.parametrize("kernel", [True, False], ids=["copy_file_range", "fallback"])
def test_follower_copies_into_a_file_while_the_source_grows(tmp_path, monkeypatch, kernel):
    if not kernel:
        def refuse(*a: object, **k: object) -> int:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        monkeypatch.setattr(os, "copy_file_range", refuse)
    src = tmp_path / "data"
    src.write_bytes(b"")
    chunks = [bytes([i]) * 3000 for i in range(30)]
    total = sum(map(len, chunks))
    state = _Download()
    t = grow_file(src, chunks, state)
    assert state.wait_started()
    out = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT, 0o644)
    reports: list[int] = []
    try:
        with open(src, "rb") as f:
            follower = _Follower(f, total, state, reports.append)
            # A read, then copies, then a read again: one position for both.
            head = follower.read(100)
            os.write(out, head)
            copied = len(head)
            while copied < total - 500:
                n = follower.copy_into(out, min(7000, total - 500 - copied))
                assert n > 0
                copied += n
            t.join()  # the download is over: the last read reports the extraction's progress
            os.write(out, follower.read(1000))
            assert follower.read(10) == b"" and follower.copy_into(out, 10) == 0
    finally:
        os.close(out)
        t.join()
    assert (tmp_path / "out").read_bytes() == b"".join(chunks)
    assert reports and reports[-1] == total


def test_follower_copy_stops_on_a_failed_download(tmp_path):
    src = tmp_path / "data"
    src.write_bytes(b"abc")
    state = _Download()
    state.start()
    out = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        with open(src, "rb") as f:
            follower = _Follower(f, 10, state, lambda n: None)
            assert follower.copy_into(out, 10) == 3
            state.fail(RuntimeError("connection reset"))
            with pytest.raises(Unavailable, match="connection reset"):
                follower.copy_into(out, 10)
    finally:
        os.close(out)
