"""The content store's ingest format version 2: one file per write in progress, its ref and
target in an xattr (or a `<key>.json` sidecar where the file system has no user xattrs), the
upgrade of a version 1 store, and what a crash can leave around an ingest."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from pallet.errors import Unavailable
from pallet.image.content import FORMAT_VERSION, INGEST_XATTR, ContentStore
from pallet.oci import mediatypes as mt
from pallet.oci.descriptor import Descriptor
from pallet.oci.digest import Digest
from pallet_testlib import kill_after


def _desc(data: bytes) -> Descriptor:
    return Descriptor(mt.OCI_LAYER, Digest.from_bytes(data), len(data))


def _xattrs_work(path) -> bool:
    probe = path / ".probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, "user.pallet.probe", b"1")
        return True
    except OSError:
        return False
    finally:
        probe.unlink()


@pytest.fixture(params=["xattr", "sidecar"])
def store(request, tmp_path) -> ContentStore:
    if request.param == "xattr" and not _xattrs_work(tmp_path):
        pytest.skip(f"{tmp_path}: no user xattrs on this file system")
    return ContentStore(tmp_path / "content", xattrs=request.param == "xattr")


def _ingest_entries(store: ContentStore) -> list[str]:
    return sorted(os.listdir(store.path / "ingest"))


def test_a_resumable_write_is_one_file_plus_at_most_a_sidecar(store):
    data = os.urandom(100_000)
    expected = _desc(data)
    _, w = store.resume("pull-a", expected)
    w.write(data[:40_000])
    key = hashlib.sha256(b"pull-a").hexdigest()
    if store._xattrs:
        assert _ingest_entries(store) == [key]
        meta = json.loads(os.getxattr(store.path / "ingest" / key, INGEST_XATTR))
    else:
        assert _ingest_entries(store) == [key, f"{key}.json"]
        meta = json.loads((store.path / "ingest" / f"{key}.json").read_bytes())
    assert meta == {"expected": expected.to_json(), "ref": "pull-a"}
    assert store.ingest_data("pull-a") == store.path / "ingest" / key
    w.close()
    [status] = store.ingests()
    assert (status.key, status.ref, status.offset, status.expected) == (key, "pull-a", 40_000, expected)
    offset, w = store.resume("pull-a")
    assert offset == 40_000
    w.write(data[offset:])
    w.commit()
    assert _ingest_entries(store) == []  # the sidecar went before the rename
    blob = store.path / "blobs" / "sha256" / expected.digest.encoded
    assert blob.read_bytes() == data and oct(blob.stat().st_mode & 0o777) == "0o444"
    if store._xattrs:
        assert INGEST_XATTR not in os.listxattr(blob)


def test_an_anonymous_write_has_no_metadata(store):
    w = store.writer(_desc(b"abc"))
    w.write(b"ab")
    w._f.flush()  # type: ignore[attr-defined]
    [name] = _ingest_entries(store)
    assert name.startswith("tmp-")
    [status] = store.ingests()
    assert status.ref is None and status.offset == 2
    w.write(b"c")
    w.commit()
    assert _ingest_entries(store) == []


def test_an_ingest_without_metadata_starts_over(store):
    """Bytes whose ref or target is unknown (metadata lost to a power loss, a kill between the
    sidecar's removal and the rename) are not trusted: the next writer truncates them."""
    key = hashlib.sha256(b"pull-b").hexdigest()
    (store.path / "ingest" / key).write_bytes(b"stale bytes")
    offset, w = store.resume("pull-b", _desc(b"fresh"))
    assert offset == 0
    w.write(b"fresh")
    assert w.commit() == _desc(b"fresh")


def test_a_second_writer_is_refused_while_the_first_holds_the_lock(store):
    _, w = store.resume("pull-c", _desc(b"x"))
    with pytest.raises(Unavailable, match="locked"):
        store.resume("pull-c", _desc(b"x"))
    w.write(b"x")
    w.commit()
    # The path is free again: a new writer makes a new file, not the blob's inode.
    _, w2 = store.resume("pull-c", _desc(b"y"))
    assert w2.offset == 0
    w2.abort()
    assert store.read(_desc(b"x").digest) == b"x"


def test_upgrade_from_version_1(tmp_path):
    root = tmp_path / "content"
    ContentStore(root)
    (root / "pallet-content.json").write_text('{"version":1}')
    old = root / "ingest" / hashlib.sha256(b"pull-old").hexdigest()
    old.mkdir()
    for name, body in (("data", b"partial"), ("ref", b"pull-old"), ("lock", b"")):
        (old / name).write_bytes(body)
    os.utime(old / "data", (0, 0))
    os.utime(old / "lock", (0, 0))
    store = ContentStore(root)
    assert json.loads((root / "pallet-content.json").read_text()) == {"version": FORMAT_VERSION}
    assert store.ingests() == []  # version 1 ingests are not resumed...
    assert store.clean_ingests(older_than=3600) == 1  # ...but collected
    assert _ingest_entries(store) == []
    offset, w = store.resume("pull-old", _desc(b"new"))
    assert offset == 0
    w.write(b"new")
    w.commit()


def test_a_version_1_ingest_of_the_same_ref_is_replaced(tmp_path):
    root = tmp_path / "content"
    ContentStore(root)
    (root / "pallet-content.json").write_text('{"version":1}')
    old = root / "ingest" / hashlib.sha256(b"pull-same").hexdigest()
    old.mkdir()
    for name in ("data", "ref", "lock"):
        (old / name).write_bytes(b"pull-same" if name == "ref" else b"")
    store = ContentStore(root)
    offset, w = store.resume("pull-same", _desc(b"v2"))
    assert offset == 0 and store.ingest_data("pull-same").is_file()
    w.write(b"v2")
    w.commit()
    assert store.read(_desc(b"v2").digest) == b"v2"


def test_clean_ingests_removes_what_a_crash_left(store):
    ingest = store.path / "ingest"
    orphan = ingest / f"{'ab' * 32}.json"  # a sidecar whose ingest was committed
    orphan.write_text('{"ref": "x", "expected": null}')
    tmp = ingest / ".x.json.0123.tmp"     # an atomic_write killed half way
    tmp.write_text("{")
    fresh_orphan = ingest / f"{'cd' * 32}.json"
    fresh_orphan.write_text("{}")
    for p in (orphan, tmp):
        os.utime(p, (0, 0))
    _, kept = store.resume("kept", _desc(b"k"))  # held: neither it nor its sidecar goes
    os.utime(store.ingest_data("kept"), (0, 0))
    assert store.clean_ingests() == 0
    left = set(_ingest_entries(store))
    assert orphan.name not in left and tmp.name not in left
    assert fresh_orphan.name in left  # young: maybe a writer between its two steps
    assert store.ingest_data("kept").name in left
    kept.close()
    assert store.clean_ingests() == 1
    assert set(_ingest_entries(store)) == {fresh_orphan.name}


def test_writer_killed_with_the_lock_held_is_resumed(store):
    data = os.urandom(300_000)
    expected = _desc(data)
    def step() -> object:
        _, w = store.resume("pull-k", expected)
        w.write(data[:123_456])
        w._f.flush()  # type: ignore[attr-defined]
        return w

    kill_after(step)
    offset, w = store.resume("pull-k")  # the flock died with the process
    assert offset == 123_456
    w.write(data[offset:])
    assert w.commit() == expected
