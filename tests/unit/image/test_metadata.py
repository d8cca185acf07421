"""Unit tests for pallet.image.metadata: images, names, leases, snapshots, containers, gc roots;
schema versioning; thread safety; consistency after a kill -9 mid-transaction."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time

import pytest

from pallet.errors import AlreadyExists, Conflict, InvalidArgument, NotFound, NotSupported
from pallet.image.metadata import SCHEMA_VERSION, ImageRecord, MetadataStore
from pallet.oci import mediatypes as mt
from pallet.oci.digest import Digest

IMG = Digest("sha256:" + "1" * 64)
IMG2 = Digest("sha256:" + "2" * 64)
MAN = Digest("sha256:" + "a" * 64)
MAN2 = Digest("sha256:" + "b" * 64)


def _image(image_id=IMG, manifest=MAN, **kw) -> ImageRecord:
    return ImageRecord(image_id, manifest, mt.OCI_MANIFEST, kw.pop("created", "2024-01-01T00:00:00Z"), **kw)


def test_schema_and_wal(db, tmp_path):
    assert db.schema_version() == SCHEMA_VERSION
    conn = sqlite3.connect(tmp_path / "metadata.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"schema_version", "images", "names", "leases", "lease_resources", "snapshots",
            "containers"} <= tables
    conn.close()
    MetadataStore(tmp_path / "metadata.db").close()  # reopening does not migrate again
    assert db.check() == []


def test_newer_schema_refused(tmp_path):
    MetadataStore(tmp_path / "m.db").close()
    conn = sqlite3.connect(tmp_path / "m.db")
    conn.execute("UPDATE schema_version SET version = 99")
    conn.commit()
    conn.close()
    with pytest.raises(NotSupported, match="99"):
        MetadataStore(tmp_path / "m.db")


def test_images(db):
    db.put_image(_image(labels={"a": "b"}, size=10))
    assert db.get_image(IMG) == _image(labels={"a": "b"}, size=10)
    db.put_image(_image(manifest=MAN2, size=11))  # upsert
    assert db.get_image(IMG).manifest_digest == MAN2 and db.get_image(IMG).labels == {}
    db.put_image(_image(IMG2, created="2024-02-01T00:00:00Z"))
    assert [i.id for i in db.images()] == [IMG, IMG2]
    assert db.find_image_ids("111") == [IMG] and db.find_image_ids("sha256:2") == [IMG2]
    assert db.find_image_ids("zz") == [] and db.find_image_ids("") == []
    with pytest.raises(NotFound):
        db.get_image("sha256:" + "3" * 64)
    with pytest.raises(InvalidArgument):
        db.get_image("sha256:nope")
    with pytest.raises(InvalidArgument):
        db.put_image(_image(labels={"a": 1}))


def test_names(db):
    db.put_image(_image())
    db.put_image(_image(IMG2, MAN2))
    assert db.set_name("docker.io/library/busybox:latest", IMG, MAN) is None
    db.set_name("localhost:5000/a/b:t", IMG, MAN)
    db.set_name("docker.io/library/busybox@" + MAN, IMG, MAN)
    assert db.lookup("busybox").image_id == IMG
    assert db.lookup("busybox@" + MAN).manifest_digest == MAN
    old = db.set_name("docker.io/library/busybox:latest", IMG2, MAN2)  # retag moves the name
    assert old is not None and old.image_id == IMG
    assert db.lookup("docker.io/library/busybox").image_id == IMG2
    assert [n.name for n in db.names(IMG)] == ["docker.io/library/busybox@" + MAN, "localhost:5000/a/b:t"]
    assert len(db.names()) == 3
    db.delete_name("localhost:5000/a/b:t")
    with pytest.raises(NotFound):
        db.get_name("localhost:5000/a/b:t")
    with pytest.raises(NotFound):
        db.delete_name("localhost:5000/a/b:t")


@pytest.mark.parametrize("bad", ["busybox", "busybox:latest", "docker.io/library/busybox",
                                 "index.docker.io/library/busybox:latest", "docker.io/busybox:latest", ""])
def test_names_must_be_normalized(db, bad):
    db.put_image(_image())
    with pytest.raises(InvalidArgument):
        db.set_name(bad, IMG, MAN)


def test_name_needs_image(db):
    with pytest.raises(NotFound):
        db.set_name("docker.io/library/busybox:latest", IMG, MAN)


def test_delete_image_refused_while_named_or_used(db):
    db.put_image(_image())
    db.set_name("docker.io/library/busybox:latest", IMG, MAN)
    with pytest.raises(Conflict, match="names"):
        db.delete_image(IMG)
    db.delete_name("docker.io/library/busybox:latest")
    db.add_container("c1", "snap-c1", IMG)
    with pytest.raises(Conflict, match="containers"):
        db.delete_image(IMG)
    db.set_name("docker.io/library/busybox:latest", IMG, MAN)
    assert db.delete_image(IMG, force=True) == ["docker.io/library/busybox:latest"]
    assert db.names() == [] and db.images() == []
    with pytest.raises(NotFound):
        db.delete_image(IMG)


def test_leases(db):
    lease = db.create_lease("pull-1", labels={"ref": "busybox"})
    assert lease.id == "pull-1" and db.leases() == [lease]
    with pytest.raises(AlreadyExists):
        db.create_lease("pull-1")
    db.add_lease_resource("pull-1", "content", MAN)
    db.add_lease_resource("pull-1", "content", MAN)  # idempotent
    db.add_lease_resource("pull-1", "snapshot", "sha256:chain")
    db.add_lease_resource("pull-1", "ingest", "pull-layer-1")
    assert db.lease_resources("pull-1") == [("pull-1", "content", MAN), ("pull-1", "ingest", "pull-layer-1"),
                                            ("pull-1", "snapshot", "sha256:chain")]
    with pytest.raises(InvalidArgument):
        db.add_lease_resource("pull-1", "volume", "x")
    with pytest.raises(InvalidArgument):
        db.add_lease_resource("pull-1", "content", "not-a-digest")
    with pytest.raises(NotFound):
        db.add_lease_resource("nope", "content", MAN)
    db.remove_lease_resource("pull-1", "ingest", "pull-layer-1")
    assert len(db.lease_resources()) == 2
    db.delete_lease("pull-1")
    assert db.leases() == [] and db.lease_resources() == []  # cascaded
    with pytest.raises(NotFound):
        db.delete_lease("pull-1")
    generated = db.create_lease()
    assert generated.id.startswith("lease-")


def test_expire_leases(db):
    db.create_lease("old", expires="2000-01-01T00:00:00Z")
    db.create_lease("future", expires="2999-01-01T00:00:00Z")
    db.create_lease("forever")
    assert db.expire_leases() == ["old"]
    assert sorted(lease.id for lease in db.leases()) == ["forever", "future"]


def test_snapshots(db):
    base = db.add_snapshot("extract-1", "active")
    assert base.kind == "active" and base.name is None
    committed = db.commit_snapshot("extract-1", "sha256:chain1")
    assert (committed.kind, committed.name) == ("committed", "sha256:chain1")
    with pytest.raises(Conflict):
        db.commit_snapshot("extract-1", "again")
    db.add_snapshot("ctr-1", "active", parent="sha256:chain1")
    with pytest.raises(NotFound, match="not a committed"):
        db.add_snapshot("ctr-2", "active", parent="extract-1")
    with pytest.raises(AlreadyExists):
        db.add_snapshot("ctr-1", "active")
    db.add_snapshot("x", "active")
    with pytest.raises(AlreadyExists):
        db.commit_snapshot("x", "sha256:chain1")
    with pytest.raises(InvalidArgument):
        db.add_snapshot("y", "weird")
    with pytest.raises(InvalidArgument):
        db.add_snapshot("y", "committed")
    assert db.snapshot_by_name("sha256:chain1").key == "extract-1"
    with pytest.raises(Conflict, match="parent"):
        db.remove_snapshot("extract-1")
    db.add_container("c1", "ctr-1", None)
    with pytest.raises(Conflict, match="container"):
        db.remove_snapshot("ctr-1")
    db.remove_container("c1")
    db.remove_snapshot("ctr-1")
    db.remove_snapshot("extract-1")
    assert [s.key for s in db.snapshots()] == ["x"]
    with pytest.raises(NotFound):
        db.get_snapshot("ctr-1")


def test_containers(db):
    c = db.add_container("abc", "snap-abc", IMG, labels={"k": "v"})
    assert db.get_container("abc") == c and db.containers() == [c]
    with pytest.raises(AlreadyExists):
        db.add_container("abc", "other")
    db.remove_container("abc")
    with pytest.raises(NotFound):
        db.remove_container("abc")
    with pytest.raises(NotFound):
        db.get_container("abc")


def test_gc_roots(db):
    db.put_image(_image())
    db.put_image(_image(IMG2, MAN2))
    db.set_name("docker.io/library/busybox:latest", IMG, MAN)
    db.add_container("c", "snap-c", IMG)
    db.create_lease("l")
    db.add_lease_resource("l", "content", "sha256:" + "c" * 64)
    db.add_lease_resource("l", "snapshot", "snap-l")
    db.add_lease_resource("l", "ingest", "ref-l")
    roots = db.gc_roots()
    assert roots.manifests == {MAN, MAN2}
    assert roots.images == {IMG, IMG2}
    assert roots.snapshots == {"snap-c", "snap-l"}
    assert roots.content == {"sha256:" + "c" * 64}
    assert roots.ingests == {"ref-l"}


def test_threads(db):
    db.put_image(_image())
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(20):
                db.set_name(f"docker.io/library/t{n}:{i}", IMG, MAN)
                db.create_lease(f"l-{n}-{i}")
                assert db.get_name(f"docker.io/library/t{n}:{i}").image_id == IMG
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(db.names()) == 160 and len(db.leases()) == 160


def test_failed_transaction_rolls_back(db):
    db.put_image(_image())
    db.set_name("docker.io/library/a:1", IMG, MAN)
    db.add_container("c", "s", IMG)
    with pytest.raises(Conflict):
        db.delete_image(IMG)
    assert db.get_image(IMG) and db.get_name("docker.io/library/a:1")


def test_kill_mid_transaction_leaves_database_consistent(tmp_path):
    path = tmp_path / "metadata.db"
    MetadataStore(path).close()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            store = MetadataStore(path)
            store.put_image(_image())
            conn = store._conn()
            conn.execute("BEGIN IMMEDIATE")
            for i in range(500):
                conn.execute("INSERT INTO names (name, image_id, manifest_digest, updated) "
                             "VALUES (?, ?, ?, 'x')", (f"docker.io/library/n:{i}", str(IMG), str(MAN)))
            os.write(w, b"x")
            time.sleep(60)
        finally:
            os._exit(1)
    assert os.read(r, 1) == b"x"
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    os.close(r)
    os.close(w)
    store = MetadataStore(path)
    try:
        assert store.check() == []
        assert [i.id for i in store.images()] == [IMG]  # committed before the kill
        assert store.names() == []  # the open transaction is gone entirely
        store.set_name("docker.io/library/n:1", IMG, MAN)  # and the write lock was released
    finally:
        store.close()


# --- schema v2: last_used ----------------------------------------------------------------------


def _v1_database(path) -> None:
    """A database as Pallet with schema version 1 left it, holding one image and its name."""
    from pallet.image.metadata import MIGRATIONS

    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version (version) VALUES (1)")
    for statement in MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute("INSERT INTO images (id, manifest_digest, media_type, created, labels, size) "
                 "VALUES (?, ?, ?, ?, '{}', 5)",
                 (str(IMG), str(MAN), mt.OCI_MANIFEST, "2024-01-01T00:00:00Z"))
    conn.execute("INSERT INTO names VALUES (?, ?, ?, ?)",
                 ("docker.io/library/busybox:latest", str(IMG), str(MAN), "2024-01-01T00:00:00Z"))
    conn.commit()
    conn.close()


def test_v1_database_is_migrated_in_place(tmp_path):
    path = tmp_path / "metadata.db"
    _v1_database(path)
    store = MetadataStore(path)
    try:
        assert SCHEMA_VERSION == 2 and store.schema_version() == 2
        assert store.get_image(IMG) == _image(size=5)  # kept, with last_used NULL
        assert store.get_image(IMG).last_used is None
        assert store.lookup("busybox").image_id == IMG
        store.touch_image(IMG, "2024-05-01T00:00:00Z")
        assert store.get_image(IMG).last_used == "2024-05-01T00:00:00Z"
        assert store.check() == []
    finally:
        store.close()
    MetadataStore(path).close()  # a second open finds version 2 and changes nothing
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(2,)]
    assert conn.execute("SELECT last_used FROM images").fetchall() == [("2024-05-01T00:00:00Z",)]
    conn.close()


def test_touch_image(db):
    db.put_image(_image())
    assert db.get_image(IMG).last_used is None
    db.touch_image(IMG)
    first = db.get_image(IMG).last_used
    assert first is not None and first.endswith("Z")
    db.put_image(_image(size=9))  # an update of the record keeps last_used
    assert db.get_image(IMG).last_used == first and db.get_image(IMG).size == 9
    with pytest.raises(NotFound):
        db.touch_image(IMG2)
    with pytest.raises(InvalidArgument):
        db.touch_image("sha256:nope")


# --- several records in one transaction -------------------------------------------------------


def test_put_images_and_names(db):
    db.put_image(_image(IMG2, MAN2, created="2024-03-03T00:00:00Z", size=7))
    db.set_name("docker.io/library/b:1", IMG2, MAN2)
    old = db.put_images_and_names(
        [_image(), _image(IMG2, MAN, created="2030-01-01T00:00:00Z")],
        [("docker.io/library/a:1", IMG, MAN), ("docker.io/library/b:1", IMG, MAN),
         ("localhost:5000/c:2", IMG2, MAN2)])
    assert old[0] is None and old[2] is None
    assert old[1] is not None and old[1].image_id == IMG2
    assert [(n.name, n.image_id) for n in db.names()] == [
        ("docker.io/library/a:1", IMG), ("docker.io/library/b:1", IMG), ("localhost:5000/c:2", IMG2)]
    # an image already recorded is left as it was
    assert db.get_image(IMG2).created == "2024-03-03T00:00:00Z" and db.get_image(IMG2).size == 7
    assert db.put_images_and_names([], []) == []


@pytest.mark.parametrize(("images", "names", "error"), [
    ([], [("docker.io/library/a:1", IMG, MAN)], NotFound),                    # unknown image
    ([_image()], [("docker.io/library/a:1", IMG, MAN), ("a:2", IMG, MAN)], InvalidArgument),
    ([_image()], [("docker.io/library/a:1", IMG, MAN)] * 2, InvalidArgument),  # a name twice
    ([_image(), _image(IMG2, "sha256:bad")], [], InvalidArgument),
])
def test_put_images_and_names_is_all_or_nothing(db, images, names, error):
    db.put_image(_image(IMG2, MAN2))
    db.set_name("docker.io/library/keep:1", IMG2, MAN2)
    with pytest.raises(error):
        db.put_images_and_names(images, names)
    assert [i.id for i in db.images()] == [IMG2]
    assert [n.name for n in db.names()] == ["docker.io/library/keep:1"]


def test_put_images_and_names_rolls_back_on_a_late_failure(db, monkeypatch):
    real = db._put_name
    calls = {"n": 0}

    def failing(*args):
        calls["n"] += 1
        if calls["n"] == 2:
            raise sqlite3.OperationalError("disk I/O error")
        return real(*args)

    monkeypatch.setattr(db, "_put_name", failing)
    with pytest.raises(sqlite3.OperationalError):
        db.put_images_and_names([_image()], [("docker.io/library/a:1", IMG, MAN),
                                             ("docker.io/library/a:2", IMG, MAN)])
    assert db.images() == [] and db.names() == []
