"""Unit tests for pallet.image.gc: mark and sweep from names, containers, leases and index.json;
snapshots by chain ID (copying snapshotter, no root needed); image prune and its filters; the
size and free-space watermark."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from test_archive import BASE, Stores, build_image, layer_tar, make_stores

from pallet.errors import Conflict, InvalidArgument, NotFound
from pallet.image.gc import GarbageCollector, chain_ids, parse_prune_filters, parse_until
from pallet.image.snapshots.copying import CopyingSnapshotter
from pallet.oci import mediatypes as mt
from pallet.oci.digest import Digest
from pallet.oci.manifest import Index, parse_manifest


@pytest.fixture()
def s(tmp_path):
    stores = make_stores(tmp_path / "store")
    yield stores
    stores.metadata.close()


@pytest.fixture()
def snap(tmp_path):
    sn = CopyingSnapshotter(tmp_path / "snapshots")
    yield sn
    sn.close()


def blobs(s: Stores) -> set[Digest]:
    return {d for d, _ in s.content.walk()}


def image_blobs(s: Stores, manifest_digest: Digest) -> set[Digest]:
    m = parse_manifest(s.content.read(manifest_digest))
    return {manifest_digest, m.config.digest, *(layer.digest for layer in m.layers)}


def days_ago(n: float) -> str:
    return (datetime.now(UTC) - timedelta(days=n)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


LAYER_A = layer_tar({"a": b"alpha"})
LAYER_B = layer_tar({"b": b"beta"})


# --- mark and sweep ---------------------------------------------------------------------------


def test_collect_keeps_what_roots_reach_and_removes_the_rest(s):
    _, ma = build_image(s, ["docker.io/library/a:1"], [BASE, LAYER_A])
    _, mb = build_image(s, [], [BASE, LAYER_B])                         # dangling: still a root
    junk = s.content.put(b"nobody wants me").digest
    keep = image_blobs(s, ma.digest) | image_blobs(s, mb.digest)
    gc = GarbageCollector(s.content, s.metadata)

    dry = gc.collect(dry_run=True)
    assert dry.blobs == (junk,) and dry.dry_run and dry.bytes_freed == len(b"nobody wants me")
    assert junk in blobs(s)
    result = gc.collect()
    assert result.blobs == (junk,)
    assert blobs(s) == keep


def test_collect_after_image_removal_keeps_shared_layers(s):
    ida, ma = build_image(s, ["docker.io/library/a:1"], [BASE, LAYER_A])
    _, mb = build_image(s, ["docker.io/library/b:1"], [BASE, LAYER_B])
    s.metadata.delete_image(ida, force=True)
    s.content.untag("docker.io/library/a:1")
    only_a = image_blobs(s, ma.digest) - image_blobs(s, mb.digest)
    assert len(only_a) == 3  # a's manifest, config and top layer; the base is b's too
    result = GarbageCollector(s.content, s.metadata).collect()
    assert set(result.blobs) == only_a
    assert blobs(s) == image_blobs(s, mb.digest)


def test_leases_protect_content_until_deleted_or_expired(s):
    junk = s.content.put(b"leased").digest
    other = s.content.put(b"expired lease").digest
    lease = s.metadata.create_lease()
    s.metadata.add_lease_resource(lease.id, "content", junk)
    old = s.metadata.create_lease(expires=days_ago(1))
    s.metadata.add_lease_resource(old.id, "content", other)
    gc = GarbageCollector(s.content, s.metadata)
    result = gc.collect()
    assert result.expired_leases == (old.id,)
    assert result.blobs == (other,)
    assert junk in blobs(s)
    s.metadata.delete_lease(lease.id)
    assert gc.collect().blobs == (junk,)


def test_index_json_tags_are_roots(s):
    _, m = build_image(s, ["docker.io/library/a:1"], [BASE], tag=True)
    its_blobs = image_blobs(s, m.digest)
    # a tag written into the layout by another tool, with no metadata behind it
    s.metadata.delete_image(s.metadata.images()[0].id, force=True)
    assert GarbageCollector(s.content, s.metadata).collect().blobs == ()
    s.content.untag("docker.io/library/a:1")
    assert set(GarbageCollector(s.content, s.metadata).collect().blobs) == its_blobs


def test_collect_follows_indexes(s):
    _, m = build_image(s, [], [BASE], tag=False)
    s.metadata.delete_image(s.metadata.images()[0].id)
    idx = Index(mt.OCI_INDEX, (m,)).serialize()
    idesc = s.content.put(idx, mt.OCI_INDEX)
    s.content.tag("docker.io/library/multi:1", idesc)
    assert GarbageCollector(s.content, s.metadata).collect().blobs == ()


def test_min_age_spares_fresh_blobs(s):
    junk = s.content.put(b"fresh").digest
    gc = GarbageCollector(s.content, s.metadata)
    assert gc.collect(min_age=3600).blobs == ()
    assert gc.collect().blobs == (junk,)


def test_corrupt_manifest_stops_gc_before_deleting(s):
    _, m = build_image(s, ["docker.io/library/a:1"], [BASE])
    junk = s.content.put(b"junk").digest
    path = s.content.path_of(m.digest)
    path.chmod(0o644)
    path.write_bytes(b"{" + path.read_bytes()[1:-1] + b"x")
    with pytest.raises(Conflict, match="store check"):
        GarbageCollector(s.content, s.metadata).collect()
    assert junk in blobs(s)


def test_missing_manifest_is_no_obstacle(s):
    _, m = build_image(s, ["docker.io/library/a:1"], [BASE])
    layer = parse_manifest(s.content.read(m.digest)).layers[0].digest
    s.content.delete(m.digest)
    result = GarbageCollector(s.content, s.metadata).collect()
    # without the manifest nothing says the layer is used: it goes; the config is the image id
    assert result.blobs == (layer,)


# --- snapshots ----------------------------------------------------------------------------------


def commit_chain(sn, layers: list[bytes]) -> str:
    parent = None
    for chain in chain_ids([Digest.from_bytes(x) for x in layers]):
        try:
            sn.stat(chain)
        except NotFound:
            sn.prepare(f"extract-{chain}", parent)
            sn.commit(chain, f"extract-{chain}")
        parent = chain
    assert parent is not None
    return parent


def snapshot_names(sn) -> set[str]:
    return {i.name for i in sn.walk()}


def test_chain_ids_formula():
    d1, d2 = Digest("sha256:" + "1" * 64), Digest("sha256:" + "2" * 64)
    assert chain_ids([d1]) == [d1]
    assert chain_ids([d1, d2])[1] == Digest.from_bytes(f"{d1} {d2}".encode())


def test_snapshots_kept_for_images_and_containers_removed_otherwise(s, snap):
    ida, _ = build_image(s, ["docker.io/library/a:1"], [BASE, LAYER_A])
    idb, _ = build_image(s, ["docker.io/library/b:1"], [BASE, LAYER_B])
    top_a = commit_chain(snap, [BASE, LAYER_A])
    top_b = commit_chain(snap, [BASE, LAYER_B])
    orphan_top = commit_chain(snap, [BASE, LAYER_B, layer_tar({"c": b"c"})])
    snap.prepare("container-1", top_b)
    s.metadata.add_container("1", "container-1", idb)
    snap.prepare("stale-unpack", top_a)
    snap.prepare("leased-unpack", top_a)
    lease = s.metadata.create_lease()
    s.metadata.add_lease_resource(lease.id, "snapshot", "leased-unpack")

    gc = GarbageCollector(s.content, s.metadata, snap)
    dry = gc.collect(dry_run=True)
    assert set(dry.snapshots) == {orphan_top, "stale-unpack"}
    assert snapshot_names(snap) >= {orphan_top, "stale-unpack"}
    result = gc.collect()
    assert set(result.snapshots) == {orphan_top, "stale-unpack"}
    assert snapshot_names(snap) == {*chain_ids([Digest.from_bytes(x) for x in (BASE, LAYER_A)]), top_b,
                                    "container-1", "leased-unpack"}

    # the image goes, the container keeps its image's layers; then the container goes too
    s.metadata.delete_image(idb, force=True)
    gc.collect()
    assert {top_b, "container-1"} <= snapshot_names(snap)
    s.metadata.remove_container("1")
    s.metadata.delete_image(ida, force=True)
    for tag in ("docker.io/library/a:1", "docker.io/library/b:1"):
        s.content.untag(tag)
    s.metadata.delete_lease(lease.id)
    result = gc.collect()
    # children first: the top layers before the base they share
    assert result.snapshots.index(top_b) < result.snapshots.index(chain_ids([Digest.from_bytes(BASE)])[0])
    assert snapshot_names(snap) == set()
    assert blobs(s) == set()


# --- prune ----------------------------------------------------------------------------------


def test_prune_dangling_all_and_in_use(s):
    named, _ = build_image(s, ["docker.io/library/a:1"], [BASE, LAYER_A])
    dangling, _ = build_image(s, [], [BASE, LAYER_B])
    used, _ = build_image(s, [], [layer_tar({"u": b"u"})])
    used_named, _ = build_image(s, ["docker.io/library/u:1"], [layer_tar({"v": b"v"})])
    s.metadata.add_container("c1", "container-c1", used)
    s.metadata.add_container("c2", "container-c2", used_named)
    gc = GarbageCollector(s.content, s.metadata)

    dry = gc.prune(dry_run=True)
    assert dry.deleted == (dangling,) and dry.dry_run and dry.space_reclaimed > 0
    assert len(s.metadata.images()) == 4
    result = gc.prune()
    assert result.deleted == (dangling,) and result.untagged == ()
    assert result.space_reclaimed == dry.space_reclaimed
    assert result.to_docker() == {"ImagesDeleted": [{"Deleted": str(dangling)}],
                                  "SpaceReclaimed": result.space_reclaimed}

    result = gc.prune(dangling_only=False)
    assert result.deleted == (named,)
    assert result.untagged == ("docker.io/library/a:1",)
    assert [d.ref_name for d in s.content.index()] == ["docker.io/library/u:1"]
    assert {i.id for i in s.metadata.images()} == {used, used_named}
    assert gc.prune(dangling_only=False).to_docker() == {"ImagesDeleted": None, "SpaceReclaimed": 0}


def test_prune_filters(s):
    old, _ = build_image(s, [], [layer_tar({"1": b"1"})], created=days_ago(10), labels={"team": "a"})
    mid, _ = build_image(s, [], [layer_tar({"2": b"2"})], created=days_ago(5), labels={"team": "b"})
    new, _ = build_image(s, [], [layer_tar({"3": b"3"})], created=days_ago(0.01), labels={"keep": "yes"})
    gc = GarbageCollector(s.content, s.metadata)
    assert gc.prune(filters={"until": "168h"}, dry_run=True).deleted == (old,)
    assert set(gc.prune(filters={"until": "24h"}, dry_run=True).deleted) == {old, mid}
    assert gc.prune(filters={"label": ["team=b"]}, dry_run=True).deleted == (mid,)
    assert set(gc.prune(filters={"label": {"team": True}}, dry_run=True).deleted) == {old, mid}
    assert set(gc.prune(filters={"label!": "keep"}, dry_run=True).deleted) == {old, mid}
    assert set(gc.prune(filters={"until": "72h", "label": "team"}, dry_run=True).deleted) == {old, mid}
    assert gc.prune(filters={"until": "168h", "label": "team"}, dry_run=True).deleted == (old,)
    assert set(gc.prune(filters={"label!": "keep=yes", "until": "72h"}).deleted) == {old, mid}
    assert [i.id for i in s.metadata.images()] == [new]


def test_prune_dangling_filter_overrides(s):
    named, _ = build_image(s, ["docker.io/library/a:1"], [BASE])
    gc = GarbageCollector(s.content, s.metadata)
    assert gc.prune(filters={"dangling": "false"}, dry_run=True).deleted == (named,)
    assert gc.prune(dangling_only=False, filters={"dangling": ["true"]}, dry_run=True).deleted == ()


@pytest.mark.parametrize("filters", [{"colour": "red"}, {"until": "yesterday"}, {"until": ["1", "2"]},
                                     {"dangling": "maybe"}, {"label": 5}])
def test_prune_refuses_bad_filters(s, filters):
    with pytest.raises(InvalidArgument):
        GarbageCollector(s.content, s.metadata).prune(filters=filters)


def test_parse_until():
    now = 1_700_000_000.0
    assert parse_until("3600", now) == 3600.0
    assert parse_until("1h30m", now) == now - 5400
    assert parse_until("10m", now) == now - 600
    assert parse_until("2023-11-14T22:13:20Z", now) == now
    assert parse_until("2023-11-14T23:13:20.123456789+01:00", now) == pytest.approx(now + 0.123456)
    assert parse_until("2023-11-14", now) == now - (22 * 3600 + 13 * 60 + 20)
    assert parse_prune_filters(None, now).until is None


# --- watermark ----------------------------------------------------------------------------


def big_layer(tag: str, size: int = 64 << 10) -> bytes:
    return layer_tar({tag: os.urandom(size)})


def test_watermark_deletes_least_recently_used_unused_images(s):
    oldest, _ = build_image(s, ["docker.io/library/old:1"], [big_layer("o")], compress=False,
                            created=days_ago(30))
    used, _ = build_image(s, ["docker.io/library/used:1"], [big_layer("u")], compress=False,
                          created=days_ago(40))
    middle, _ = build_image(s, [], [big_layer("m")], compress=False, created=days_ago(20))
    newest, _ = build_image(s, ["docker.io/library/new:1"], [big_layer("n")], compress=False,
                            created=days_ago(1))
    s.metadata.add_container("c", "container-c", used)
    gc = GarbageCollector(s.content, s.metadata)
    total = gc.store_bytes()
    per_image = total // 4
    assert [i.id for i in gc.lru_candidates()] == [oldest, middle, newest]

    dry = gc.enforce_watermark(max_bytes=total - per_image - 1, dry_run=True)
    assert dry.deleted == (oldest, middle) and dry.satisfied and dry.dry_run
    assert dry.untagged == ("docker.io/library/old:1",)
    assert len(s.metadata.images()) == 4

    result = gc.enforce_watermark(max_bytes=total - per_image - 1)
    assert result.deleted == (oldest, middle) and result.satisfied
    assert result.store_bytes_after == dry.store_bytes_after == gc.store_bytes()
    assert {i.id for i in s.metadata.images()} == {used, newest}

    # the image a container uses is never deleted, even when the target cannot be met
    result = gc.enforce_watermark(max_bytes=0)
    assert result.deleted == (newest,) and not result.satisfied
    assert [i.id for i in s.metadata.images()] == [used]


def test_watermark_min_free_bytes_uses_statvfs_of_the_data_root(s, tmp_path):
    ids = [build_image(s, [], [big_layer(str(i))], compress=False, created=days_ago(10 - i))[0]
           for i in range(3)]
    capacity = 10 << 20
    seen = []

    class FakeStatvfs:
        def __init__(self, path: str) -> None:
            seen.append(path)
            self.f_frsize = 1
            self.f_bavail = capacity - gc.store_bytes()

    gc = GarbageCollector(s.content, s.metadata, data_root=tmp_path, statvfs=FakeStatvfs)  # type: ignore[arg-type]
    free = gc.free_bytes()
    result = gc.enforce_watermark(min_free_bytes=free + 1)
    assert result.deleted == (ids[0],) and result.satisfied
    assert result.free_bytes_after > free
    assert set(seen) == {str(tmp_path)}
    assert gc.enforce_watermark(min_free_bytes=0).deleted == ()


def test_watermark_refuses_bad_arguments(s):
    gc = GarbageCollector(s.content, s.metadata)
    with pytest.raises(InvalidArgument):
        gc.enforce_watermark()
    with pytest.raises(InvalidArgument):
        gc.enforce_watermark(max_bytes=-1)


def test_free_bytes_is_real_statvfs_by_default(s):
    st = os.statvfs(s.content.path)
    assert abs(GarbageCollector(s.content, s.metadata).free_bytes() - st.f_bavail * st.f_frsize) < (64 << 20)


def test_parents_of_kept_images_are_kept(s):
    parent, _ = build_image(s, [], [BASE])
    child, _ = build_image(s, ["docker.io/library/child:1"], [BASE, LAYER_A])
    # the label lives on the image record (as pallet.image.service writes it), not the config
    rec = s.metadata.get_image(child)
    s.metadata.put_image(replace(rec, labels={"pallet.image.parent": str(parent)}))
    gc = GarbageCollector(s.content, s.metadata)
    assert gc.prune(dry_run=True).deleted == ()                        # not dangling: it has a child
    assert set(gc.prune(dangling_only=False, dry_run=True).deleted) == {parent, child}
    assert [i.id for i in gc.lru_candidates()] == [child]
    assert gc.enforce_watermark(max_bytes=0, dry_run=True).deleted == (child, parent)
    assert gc.enforce_watermark(max_bytes=0).deleted == (child, parent)


def test_watermark_orders_by_last_used_before_created(s):
    """An image a container was made from recently goes after an unused newer one."""
    old_but_used, _ = build_image(s, ["docker.io/library/a:1"], [big_layer("a")], compress=False,
                                  created=days_ago(30))
    newer, _ = build_image(s, ["docker.io/library/b:1"], [big_layer("b")], compress=False,
                           created=days_ago(10))
    never, _ = build_image(s, ["docker.io/library/c:1"], [big_layer("c")], compress=False,
                           created=days_ago(20))
    gc = GarbageCollector(s.content, s.metadata)
    assert [i.id for i in gc.lru_candidates()] == [old_but_used, never, newer]
    s.metadata.touch_image(old_but_used, days_ago(1))
    s.metadata.touch_image(newer, days_ago(5))
    assert [i.id for i in gc.lru_candidates()] == [never, newer, old_but_used]
    per_image = gc.store_bytes() // 3
    result = gc.enforce_watermark(max_bytes=gc.store_bytes() - per_image - 1)
    assert result.deleted == (never, newer) and result.satisfied
    assert [i.id for i in s.metadata.images()] == [old_but_used]
