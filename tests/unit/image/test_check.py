"""Unit tests for pallet.image.check: a healthy store passes; corrupt and missing blobs, dangling
names, inconsistent images, broken snapshot chains and database problems are reported by name."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from test_archive import BASE, Stores, build_image, layer_tar, make_stores

from pallet.image.check import EXIT_OK, EXIT_PROBLEMS, check_store
from pallet.image.snapshots import Info, Kind
from pallet.image.snapshots.copying import CopyingSnapshotter
from pallet.oci.manifest import parse_manifest


@pytest.fixture()
def s(tmp_path):
    stores = make_stores(tmp_path / "store")
    yield stores
    stores.metadata.close()


def flip_byte(s: Stores, digest: str) -> None:
    path = s.content.path_of(digest)
    path.chmod(0o644)  # blobs are 0444
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_healthy_store(s, tmp_path):
    build_image(s, ["docker.io/library/a:1", "docker.io/library/a:2"], [BASE, layer_tar({"a": b"a"})])
    build_image(s, [], [BASE])
    with CopyingSnapshotter(tmp_path / "snap") as sn:
        sn.prepare("k", None)
        sn.commit("base", "k")
        sn.prepare("container-1", "base")
        s.metadata.add_container("1", "container-1")
        report = check_store(s.content, s.metadata, sn)
    assert report.problems == []
    assert report.ok and report.exit_code == EXIT_OK
    assert report.lines() == ["checked 6 blobs, 2 names, 2 images, 2 snapshots: 0 errors, 0 warnings"]


def test_corrupted_blob_is_named(s):
    _, m = build_image(s, ["docker.io/library/a:1"], [BASE])
    layer = parse_manifest(s.content.read(m.digest)).layers[0].digest
    flip_byte(s, layer)
    report = check_store(s.content, s.metadata)
    assert report.exit_code == EXIT_PROBLEMS
    lines = report.lines()
    assert any(line.startswith(f"error: blob {layer}: corrupt") for line in lines)
    assert f"error: manifest {m.digest}: layer 0 {layer} is corrupt" in lines
    assert f"error: name docker.io/library/a:1: manifest {m.digest} a layer is corrupt" not in lines
    assert any(line.startswith("error: name docker.io/library/a:1:") for line in lines)
    assert lines[-1].endswith("errors, 0 warnings")
    # without re-hashing, a flipped byte goes unseen (same size)
    assert check_store(s.content, s.metadata, verify_blobs=False).ok


def test_dangling_name_is_named(s):
    image_id, m = build_image(s, ["docker.io/library/gone:1"], [BASE])
    s.content.delete(m.digest)
    report = check_store(s.content, s.metadata)
    assert f"error: name docker.io/library/gone:1: manifest {m.digest} is missing" in report.lines()
    assert f"error: image {image_id}: manifest {m.digest} is missing" in report.lines()
    assert report.exit_code == EXIT_PROBLEMS


def test_missing_layer_and_config(s):
    _, m = build_image(s, ["docker.io/library/a:1"], [BASE, layer_tar({"x": b"x"})])
    manifest = parse_manifest(s.content.read(m.digest))
    s.content.delete(manifest.layers[1].digest)
    lines = check_store(s.content, s.metadata).lines()
    assert f"error: manifest {m.digest}: layer 1 {manifest.layers[1].digest} is missing" in lines
    s.content.delete(manifest.config.digest)
    lines = check_store(s.content, s.metadata).lines()
    assert f"error: manifest {m.digest}: config {manifest.config.digest} is missing" in lines


def test_name_pointing_to_another_images_manifest(s):
    _, ma = build_image(s, ["docker.io/library/a:1"], [BASE])
    b, _ = build_image(s, ["docker.io/library/b:1"], [layer_tar({"b": b"b"})])
    s.metadata.set_name("docker.io/library/b:1", b, ma.digest)
    s.content.tag("docker.io/library/b:1", ma)
    lines = check_store(s.content, s.metadata).lines()
    assert f"error: name docker.io/library/b:1: manifest {ma.digest} is not of image {b}" in lines


def test_index_json_and_names_disagree_is_a_warning(s):
    _, m = build_image(s, ["docker.io/library/a:1"], [BASE], tag=False)
    s.content.tag("example.com/stray:1", m)
    report = check_store(s.content, s.metadata)
    assert report.ok and report.exit_code == EXIT_OK
    assert report.lines()[:2] == [
        "warning: name docker.io/library/a:1: not tagged in index.json (skopeo and umoci do not see it)",
        "warning: index.json tag example.com/stray:1: no name in the metadata"]


def test_stray_file_under_blobs(s):
    (s.content.path / "blobs" / "sha256" / "notadigest").write_bytes(b"x")
    report = check_store(s.content, s.metadata)
    assert report.lines()[0] == "warning: file blobs/sha256/notadigest: not a blob (its name is not a digest)"


class FakeSnapshotter:
    root = None

    def __init__(self, infos: list[Info]) -> None:
        self.infos = infos

    def walk(self) -> Iterator[Info]:
        return iter(self.infos)


def test_snapshot_problems(s):
    image_id, _ = build_image(s, ["docker.io/library/a:1"], [BASE])
    sn = FakeSnapshotter([Info(Kind.COMMITTED, "sha256:top", "sha256:gone"),
                          Info(Kind.ACTIVE, "container-1", "sha256:top")])
    s.metadata.add_container("1", "container-1", image_id)
    s.metadata.add_container("2", "container-2")
    s.metadata.delete_image(image_id, force=True)
    lines = check_store(s.content, s.metadata, sn).lines()  # type: ignore[arg-type]
    assert "error: snapshot sha256:top: parent sha256:gone does not exist" in lines
    assert "error: container 2: snapshot container-2 does not exist" in lines
    assert f"warning: container 1: image {image_id} was removed" in lines


def test_metadata_problems_are_errors(s, monkeypatch):
    monkeypatch.setattr(s.metadata, "check", lambda: ["row 3 missing from index names_image"])
    report = check_store(s.content, s.metadata)
    assert report.lines()[0] == "error: metadata: row 3 missing from index names_image"
    assert report.exit_code == EXIT_PROBLEMS


def test_unparseable_manifest(s):
    build_image(s, ["docker.io/library/a:1"], [BASE])
    bad = s.content.put(b'{"schemaVersion": 2, "mediaType": "application/x-nope"}')
    s.metadata.set_name("docker.io/library/a:1", s.metadata.images()[0].id, bad.digest)
    lines = check_store(s.content, s.metadata).lines()
    assert any(line.startswith(f"error: manifest {bad.digest}: does not parse") for line in lines)
    assert f"error: name docker.io/library/a:1: manifest {bad.digest} does not parse" in lines
