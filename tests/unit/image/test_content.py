"""Unit tests for pallet.image.content: verified writes and reads, resumable ingests, index.json,
and crash safety (a writer killed at any moment leaves no partial blob visible)."""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time

import pytest

from pallet.errors import AlreadyExists, InvalidArgument, NotFound, Unavailable
from pallet.image.content import FORMAT_VERSION, ContentStore, open_content_store
from pallet.oci import mediatypes as mt
from pallet.oci.descriptor import ANNOTATION_REF_NAME, Descriptor
from pallet.oci.digest import Digest, DigestMismatch
from pallet_testlib import fork_child, kill_after


@pytest.fixture()
def store(tmp_path) -> ContentStore:
    return ContentStore(tmp_path / "content")


def _desc(data: bytes, media_type: str = mt.OCI_LAYER) -> Descriptor:
    return Descriptor(media_type, Digest.from_bytes(data), len(data))


def _visible_files(store: ContentStore) -> list[str]:
    return sorted(str(p.relative_to(store.path)) for p in (store.path / "blobs").rglob("*") if p.is_file())


def test_layout_files(tmp_path):
    store = open_content_store(tmp_path)
    assert store.path == tmp_path / "content"
    assert json.loads((store.path / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    assert json.loads((store.path / "index.json").read_text()) == {
        "schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}
    assert json.loads((store.path / "pallet-content.json").read_text()) == {"version": FORMAT_VERSION}
    assert (store.path / "blobs" / "sha256").is_dir() and (store.path / "ingest").is_dir()
    ContentStore(store.path)  # reopening keeps everything


def test_unsupported_versions_refused(tmp_path):
    (tmp_path / "oci-layout").write_text('{"imageLayoutVersion": "2.0.0"}')
    with pytest.raises(InvalidArgument, match="imageLayoutVersion"):
        ContentStore(tmp_path)
    (tmp_path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (tmp_path / "pallet-content.json").write_text('{"version": 99}')
    with pytest.raises(InvalidArgument, match="99"):
        ContentStore(tmp_path)


def test_put_read_info_exists_delete(store):
    data = b"hello layer"
    desc = store.put(data, mt.OCI_LAYER)
    assert desc == _desc(data)
    path = store.path / "blobs" / "sha256" / desc.digest.encoded
    assert path.read_bytes() == data
    assert path.stat().st_mode & 0o777 == 0o444
    assert store.exists(desc.digest) and store.info(desc.digest) == len(data)
    assert store.read(desc.digest) == data
    assert store.put(data, mt.OCI_LAYER) == desc  # idempotent
    assert list(store.walk()) == [(desc.digest, len(data))]
    store.delete(desc.digest)
    assert not store.exists(desc.digest)
    for op in (store.info, store.read, store.delete, store.open):
        with pytest.raises(NotFound):
            op(desc.digest)


def test_put_verifies_expected(store):
    with pytest.raises(DigestMismatch):
        store.put(b"abc", expected=_desc(b"abd"))
    assert list(store.walk()) == []


def test_empty_blob(store):
    desc = store.put(b"")
    assert store.read(desc.digest) == b"" and desc.size == 0


@pytest.mark.parametrize("bad", ["sha256:../../../etc/passwd", "sha256:" + "A" * 64, "md5:" + "a" * 32,
                                 "sha256:" + "a" * 63, "../x", ""])
def test_every_entry_point_validates_digests(store, bad):
    for op in (store.exists, store.info, store.read, store.delete, store.open, store.path_of,
               store.verify):
        with pytest.raises(InvalidArgument):
            op(bad)


def test_writer_streams_and_commits(store):
    data = os.urandom(3 << 20)
    with store.writer(_desc(data)) as w:
        for i in range(0, len(data), 65536):
            w.write(data[i:i + 65536])
        assert w.offset == len(data)
        desc = w.commit()
    assert desc == _desc(data) and desc.media_type == mt.OCI_LAYER
    assert store.read(desc.digest, max_size=len(data)) == data
    assert list((store.path / "ingest").iterdir()) == []


def test_writer_keeps_expected_descriptor_extras(store):
    data = b"x"
    expected = Descriptor(mt.OCI_MANIFEST, Digest.from_bytes(data), 1, annotations={"a": "b"})
    with store.writer(expected) as w:
        w.write(data)
        assert w.commit() == expected


def test_writer_digest_mismatch_leaves_nothing(store):
    with store.writer(_desc(b"good")) as w:
        w.write(b"evil")
        with pytest.raises(DigestMismatch):
            w.commit()
    assert _visible_files(store) == [] and list((store.path / "ingest").iterdir()) == []


def test_writer_size_mismatch(store):
    with store.writer(_desc(b"four")) as w:
        w.write(b"fou")
        with pytest.raises(DigestMismatch, match="3 bytes"):
            w.commit()
    with store.writer(_desc(b"four")) as w, pytest.raises(DigestMismatch, match="more than"):
        w.write(b"fourfive")  # refused before it lands: a hostile server cannot fill the disk
    assert _visible_files(store) == []


def test_writer_without_commit_leaves_nothing(store):
    with store.writer() as w:
        w.write(b"abandoned")
    with pytest.raises(RuntimeError), store.writer() as w:
        w.write(b"failed")
        raise RuntimeError("boom")
    assert _visible_files(store) == [] and store.ingests() == []


def test_commit_with_media_type_and_no_expected(store):
    with store.writer(media_type=mt.OCI_CONFIG) as w:
        w.write(b"{}")
        desc = w.commit()
    assert desc.media_type == mt.OCI_CONFIG and desc.digest == Digest.from_bytes(b"{}")
    with pytest.raises(InvalidArgument):
        w.write(b"more")


def test_read_verifies_corrupt_blob(store):
    desc = store.put(b"original content")
    path = store.path / "blobs" / "sha256" / desc.digest.encoded
    path.chmod(0o644)
    path.write_bytes(b"tampered content")
    with pytest.raises(DigestMismatch, match="corrupt"):
        store.read(desc.digest)
    with pytest.raises(DigestMismatch):
        store.verify(desc.digest)
    with store.open(desc.digest) as r, pytest.raises(DigestMismatch):
        while r.read(4):
            pass
    path.write_bytes(b"short")
    with pytest.raises(DigestMismatch):
        store.read(desc.digest)


def test_reader_verifies_on_last_byte(store):
    desc = store.put(b"0123456789")
    with store.open(desc.digest) as r:
        assert r.size == 10
        assert r.read(4) + r.read(6) == b"0123456789"
        assert r.read(4) == b""


def test_read_max_size(store):
    desc = store.put(b"x" * 100)
    with pytest.raises(InvalidArgument, match="more than"):
        store.read(desc.digest, max_size=99)


def test_walk_skips_foreign_files(store):
    desc = store.put(b"a")
    (store.path / "blobs" / "sha256" / "not-a-digest").write_text("x")
    (store.path / "blobs" / "sha512").mkdir()
    (store.path / "blobs" / "sha1").mkdir()
    (store.path / "blobs" / "sha1" / ("a" * 40)).write_text("x")
    assert list(store.walk()) == [(desc.digest, 1)]


def test_sha512_content(store):
    data = b"sha512 blob"
    expected = Descriptor(mt.OCI_LAYER, Digest.from_bytes(data, "sha512"), len(data))
    with store.writer(expected) as w:
        w.write(data)
        desc = w.commit()
    assert (store.path / "blobs" / "sha512" / desc.digest.encoded).is_file()
    assert store.read(desc.digest) == data
    assert (desc.digest, len(data)) in list(store.walk())


def test_concurrent_puts_of_one_blob(store):
    data = os.urandom(1 << 20)
    errors: list[BaseException] = []

    def put() -> None:
        try:
            for _ in range(5):
                assert store.put(data) == _desc(data, mt.OCTET_STREAM)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=put) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.read(Digest.from_bytes(data), max_size=len(data)) == data
    assert store.ingests() == []


# --- resumable ingests ----------------------------------------------------------------------

def test_resume_continues_at_offset(store):
    data = os.urandom(200_000)
    expected = _desc(data, mt.OCI_LAYER_GZIP)
    offset, w = store.resume("pull-layer-1", expected)
    assert offset == 0
    w.write(data[:70_000])
    w.close()  # e.g. the connection dropped
    [status] = store.ingests()
    assert (status.ref, status.offset, status.expected) == ("pull-layer-1", 70_000, expected)
    assert not store.exists(expected.digest)

    offset, w = store.resume("pull-layer-1")  # expected remembered from the first attempt
    assert offset == 70_000
    with w:
        w.write(data[offset:])
        desc = w.commit()
    assert desc == expected and store.read(desc.digest) == data
    assert store.ingests() == []


def test_resume_with_other_expected_restarts(store):
    _, w = store.resume("r", _desc(b"first"))
    w.write(b"fir")
    w.close()
    offset, w = store.resume("r", _desc(b"second"))
    assert offset == 0
    w.write(b"second")
    assert w.commit() == _desc(b"second")


def test_resumable_ref_is_locked(store):
    _, w = store.resume("busy")
    with pytest.raises(Unavailable, match="locked"):
        store.resume("busy")
    with pytest.raises(Unavailable):
        store.abort_ingest("busy")
    w.close()
    _, w2 = store.resume("busy")
    w2.abort()
    assert store.ingests() == []
    with pytest.raises(NotFound):
        store.abort_ingest("busy")


def test_abort_ingest_and_invalid_refs(store):
    _, w = store.resume("x")
    w.write(b"abc")
    w.close()
    store.abort_ingest("x")
    assert store.ingests() == []
    for bad in ("", "a" * 2000, "a\0b"):
        with pytest.raises(InvalidArgument):
            store.writer(ref=bad)


def test_clean_ingests(store):
    _, held = store.resume("held")
    held.write(b"h")
    _, old = store.resume("old")
    old.write(b"o")
    old.close()
    os.utime(store.path / "ingest" / old.key, (0, 0))
    _, fresh = store.resume("fresh")
    fresh.close()
    assert store.clean_ingests(older_than=3600) == 1
    assert sorted(i.ref or "" for i in store.ingests()) == ["fresh", "held"]
    assert store.clean_ingests() == 1  # "fresh"; "held" is locked by its writer
    held.close()


# --- index.json -----------------------------------------------------------------------------

def test_set_index_tag_untag(store):
    m1, m2 = store.put(b"m1", mt.OCI_MANIFEST), store.put(b"m2", mt.OCI_MANIFEST)
    store.set_index([m1.with_annotations({ANNOTATION_REF_NAME: "v1"})])
    assert [d.ref_name for d in store.index()] == ["v1"]
    store.tag("v2", m2)
    store.tag("v1", m2)  # moves the tag
    entries = store.index()
    assert [(d.ref_name, d.digest) for d in entries] == [("v2", m2.digest), ("v1", m2.digest)]
    raw = json.loads((store.path / "index.json").read_text())
    assert raw["manifests"][0]["annotations"] == {ANNOTATION_REF_NAME: "v2"}
    store.untag("v2")
    assert [d.ref_name for d in store.index()] == ["v1"]
    with pytest.raises(NotFound):
        store.untag("v2")
    with pytest.raises(AlreadyExists):
        store.set_index([m1.with_annotations({ANNOTATION_REF_NAME: "t"}),
                         m2.with_annotations({ANNOTATION_REF_NAME: "t"})])
    assert [d.ref_name for d in store.index()] == ["v1"]  # the refused write changed nothing


def test_tag_many_names_in_one_index_write(store):
    m1, m2 = store.put(b"m1", mt.OCI_MANIFEST), store.put(b"m2", mt.OCI_MANIFEST)
    store.tag_many(["a", "b"], m1)
    before = (store.path / "index.json").stat().st_ino
    store.tag_many(["b", "c", "c"], m2)  # moves b, adds c once
    assert (store.path / "index.json").stat().st_ino != before  # rewritten (atomically)
    assert [(d.ref_name, d.digest) for d in store.index()] == [("a", m1.digest), ("b", m2.digest),
                                                              ("c", m2.digest)]
    store.tag_many([], m1)
    assert len(store.index()) == 3


# --- crash safety ---------------------------------------------------------------------------

def _check_consistent(store: ContentStore) -> None:
    for digest, _size in store.walk():
        store.verify(digest)  # every visible blob is complete and correct
    store.index()


def test_writer_killed_mid_write_leaves_nothing_visible(store):
    data = os.urandom(4 << 20)
    expected = _desc(data)

    def step():
        wr = store.writer(expected)
        wr.write(data[: len(data) // 2])
        wr._f.flush()  # type: ignore[attr-defined]
        return wr

    kill_after(step)
    assert not store.exists(expected.digest)
    assert _visible_files(store) == []
    [status] = store.ingests()  # the dead write is only an ingest, collectable
    assert status.ref is None and status.offset == len(data) // 2
    _check_consistent(store)
    assert store.clean_ingests() == 1
    assert store.put(data) .digest == expected.digest  # the store still works


def test_writer_killed_between_verify_and_rename(store, monkeypatch):
    data = b"almost committed"

    def child() -> None:
        real_rename = os.rename

        def die(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGKILL)
            real_rename(*args, **kwargs)  # pragma: no cover

        monkeypatch.setattr(os, "rename", die)
        with store.writer(_desc(data)) as wr:
            wr.write(data)
            wr.commit()

    pid = fork_child(child)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert not store.exists(Digest.from_bytes(data)) and _visible_files(store) == []
    _check_consistent(store)


def test_writer_killed_after_verify_keeps_a_complete_resumable_ingest(store):
    """The two-step commit a pull uses (verify in the download thread, fsync and rename later
    in another): a kill in between leaves the verified bytes in the ingest, invisible, and the
    next writer of that ref starts at their end."""
    data = os.urandom(9 << 20)  # past WRITEBACK_CHUNK: the writeback was started on the way
    expected = _desc(data)

    def step():
        wr = store.writer(expected, ref="pull-x", sync_dir=False)
        wr.write(data)
        wr.verify()
        return wr

    kill_after(step)
    assert not store.exists(expected.digest) and _visible_files(store) == []
    _check_consistent(store)
    offset, wr = store.resume("pull-x", expected)
    assert offset == len(data)
    wr.verify()
    wr.commit()
    store.sync_blobs()
    assert store.read(expected.digest) == data and store.ingests() == []


def test_resumable_writer_killed_then_resumed(store):
    data = os.urandom(1 << 20)
    expected = _desc(data)

    def step():
        _, wr = store.resume("pull", expected)
        wr.write(data[:300_000])
        wr._f.flush()  # type: ignore[attr-defined]
        return wr

    kill_after(step)
    offset, wr = store.resume("pull")  # the dead writer's flock died with it
    assert offset == 300_000
    wr.write(data[offset:])
    assert wr.commit() == expected
    _check_consistent(store)


def test_random_kills_during_many_writes(store):
    """Kill a busy writer at random moments; every blob that is visible must verify."""
    rng = random.Random(1234)
    for round_ in range(6):
        def child(round_: int = round_) -> None:
            i = 0
            while True:
                data = f"{round_}-{i}-".encode() * rng.randrange(1, 20_000)
                store.put(data)
                i += 1

        pid = fork_child(child)
        time.sleep(rng.uniform(0.01, 0.15))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        _check_consistent(store)
    assert len(list(store.walk())) > 0
    store.clean_ingests()
    assert store.ingests() == []


def test_concurrent_tags_from_threads_keep_every_tag(store):
    descs = [store.put(f"m{i}".encode(), mt.OCI_MANIFEST) for i in range(16)]
    threads = [threading.Thread(target=store.tag, args=(f"t{i}", d)) for i, d in enumerate(descs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(d.ref_name or "" for d in store.index()) == sorted(f"t{i}" for i in range(16))


def test_concurrent_tags_from_processes_keep_every_tag(store):
    descs = [store.put(f"p{i}".encode(), mt.OCI_MANIFEST) for i in range(6)]
    pids = [fork_child(lambda i=i, d=d: [ContentStore(store.path).tag(f"p{i}-{k}", d) for k in range(5)])
            for i, d in enumerate(descs)]
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert len(store.index()) == 30
