"""The registry's file-system storage: content addressing, upload sessions, repository records,
and what a crash leaves behind."""

from __future__ import annotations

import json
import os
import time

import pytest

from pallet.errors import Conflict, InvalidArgument, NotFound
from pallet.oci.digest import Digest, Hasher
from pallet.registry.server.storage import FORMAT_VERSION, FilesystemStorage


def _d(data: bytes) -> Digest:
    return Digest.from_bytes(data)


@pytest.fixture
def store(tmp_path):
    return FilesystemStorage(tmp_path / "root")


def test_layout_and_version(tmp_path, store):
    root = tmp_path / "root"
    assert json.loads((root / "registry.json").read_text()) == {"version": FORMAT_VERSION}
    for d in ("blobs", "uploads", "tmp", "repositories"):
        assert (root / d).is_dir()
    (root / "registry.json").write_text('{"version": 99}')
    with pytest.raises(InvalidArgument, match="version 99"):
        FilesystemStorage(root)


def test_put_blob_verifies_and_is_idempotent(store):
    data = b"hello"
    store.put_blob(_d(data), data)
    store.put_blob(_d(data), data)
    assert store.stat_blob(_d(data)) == 5
    with store.open_blob(_d(data)) as f:
        assert f.read() == data
    with pytest.raises(InvalidArgument):
        store.put_blob(_d(b"other"), data)
    assert store.stat_blob(_d(b"other")) is None
    assert list(store.list_blobs()) == [_d(data)]
    store.delete_blob(_d(data))
    with pytest.raises(NotFound):
        store.delete_blob(_d(data))
    with pytest.raises(NotFound):
        store.open_blob(_d(data))


def test_upload_session_lifecycle(store):
    uid = store.new_upload("a/b", "sha256")
    assert store.upload_info("a/b", uid)["size"] == 0
    with pytest.raises(NotFound):
        store.upload_info("a/c", uid)  # another repository's session is unknown here
    for bad in ("../../etc", "x" * 36, uid.upper()):
        with pytest.raises(NotFound):
            store.upload_info("a/b", bad)
    with store.open_upload("a/b", uid) as f:
        f.write(b"hello ")
    with store.open_upload("a/b", uid) as f:
        f.write(b"world")
    assert store.upload_info("a/b", uid)["size"] == 11
    store.truncate_upload("a/b", uid, 6)
    with store.open_upload("a/b", uid) as f:
        f.write(b"there")
    data = b"hello there"
    assert store.finish_upload("a/b", uid, _d(data)) == len(data)
    assert store.stat_blob(_d(data)) == len(data) and store.has_blob_link("a/b", _d(data))
    with pytest.raises(NotFound):
        store.upload_info("a/b", uid)


def test_finish_uses_a_matching_hasher_and_rehashes_otherwise(store):
    data = os.urandom(3000)
    uid = store.new_upload("r", "sha256")
    with store.open_upload("r", uid) as f:
        f.write(data)
    stale = Hasher()
    stale.update(data[:10])  # covers only part: ignored, the file is hashed again
    assert store.finish_upload("r", uid, _d(data), stale) == 3000
    uid = store.new_upload("r", "sha256")
    with store.open_upload("r", uid) as f:
        f.write(data)
    with pytest.raises(InvalidArgument):
        store.finish_upload("r", uid, _d(data + b"!"), None)


def test_finish_with_wrong_digest_publishes_nothing_and_drops_the_session(store):
    uid = store.new_upload("r", "sha256")
    with store.open_upload("r", uid) as f:
        f.write(b"content")
    wrong = _d(b"not the content")
    with pytest.raises(InvalidArgument, match="digest"):
        store.finish_upload("r", uid, wrong)
    assert store.stat_blob(wrong) is None and store.stat_blob(_d(b"content")) is None
    assert not store.has_blob_link("r", wrong)
    with pytest.raises(NotFound):
        store.upload_info("r", uid)


def test_cancel_and_purge(store):
    uid = store.new_upload("r", "sha256")
    store.cancel_upload("r", uid)
    with pytest.raises(NotFound):
        store.cancel_upload("r", uid)
    old = store.new_upload("r", "sha256")
    fresh = store.new_upload("r", "sha256")
    info = store.uploads / old / "info.json"
    record = json.loads(info.read_text())
    record["started"] = time.time() - 7200
    info.write_text(json.dumps(record))
    (store.uploads / "garbage").mkdir()  # unreadable: removed
    assert sorted(store.purge_uploads(3600)) == sorted([old, "garbage"])
    assert store.upload_info("r", fresh)["size"] == 0


def test_recover_empties_tmp(store):
    (store.tmp / "x.tmp").write_bytes(b"half")
    (store.tmp / "upload-dir").mkdir()
    store.recover()
    assert not any(store.tmp.iterdir())


def test_lock_is_exclusive(tmp_path, store):
    store.lock()
    other = FilesystemStorage(tmp_path / "root")
    with pytest.raises(Conflict, match="in use"):
        other.lock()
    store.unlock()
    other.lock()
    other.unlock()


def test_repositories_manifests_tags_referrers(store):
    m1, m2 = b'{"a":1}', b'{"b":2}'
    store.put_manifest("team/app", _d(m1), "application/vnd.oci.image.manifest.v1+json", m1)
    store.put_manifest("team/app/sub", _d(m2), "application/vnd.oci.image.index.v1+json", m2)
    store.link_blob("lonely", _d(b"x"))
    assert store.list_repositories() == ["lonely", "team/app", "team/app/sub"]
    assert store.repository_exists("team/app") and not store.repository_exists("team")
    record = store.get_manifest("team/app", _d(m1))
    assert record is not None and record.media_type.endswith("manifest.v1+json") and record.size == len(m1)
    assert store.get_manifest("team/app", _d(m2)) is None
    for tag in ("b", "B", "a", "latest"):
        store.set_tag("team/app", tag, _d(m1))
    assert store.list_tags("team/app") == ["B", "a", "b", "latest"]  # ASCIIbetical
    assert store.get_tag("team/app", "a") == _d(m1) and store.get_tag("team/app", "zz") is None
    store.delete_tag("team/app", "a")
    with pytest.raises(NotFound):
        store.delete_tag("team/app", "a")
    store.add_referrer("team/app", _d(m2), _d(m1))
    store.add_referrer("team/app", _d(m2), _d(m1))
    assert store.list_referrers("team/app", _d(m2)) == [_d(m1)]
    store.remove_referrer("team/app", _d(m2), _d(m1))
    assert store.list_referrers("team/app", _d(m2)) == []
    assert [r.digest for r in store.list_manifests("team/app")] == [_d(m1)]
    store.delete_manifest("team/app", _d(m1))
    assert store.get_manifest("team/app", _d(m1)) is None
    with pytest.raises(NotFound):
        store.delete_manifest("team/app", _d(m1))
    # A manifest record whose content was collected serves nothing.
    store.put_manifest("team/app", _d(m1), "application/vnd.oci.image.manifest.v1+json", m1)
    store.delete_blob(_d(m1))
    assert store.get_manifest("team/app", _d(m1)) is None


def test_writes_leave_no_temporaries(store):
    data = b"abc"
    store.put_manifest("r", _d(data), "application/vnd.oci.image.manifest.v1+json", data)
    store.set_tag("r", "t", _d(data))
    assert not any(store.tmp.iterdir())
