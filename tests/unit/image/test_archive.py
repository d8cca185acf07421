"""Unit tests for pallet.image.archive: docker and OCI archives saved and loaded, legacy and
skopeo-style docker archives, and hostile archives that must leave the store as it was.

`build_image` and `Stores` are shared with test_gc.py and test_check.py.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import signal
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from pallet.errors import InvalidArgument, NotFound
from pallet.image import archive
from pallet.image.archive import Limits, load, save
from pallet.image.check import check_store
from pallet.image.content import ContentStore
from pallet.image.metadata import ImageRecord, MetadataStore
from pallet.oci import mediatypes as mt
from pallet.oci.descriptor import Descriptor, Platform
from pallet.oci.digest import Digest
from pallet.oci.manifest import History, ImageConfig, Manifest, host_platform, parse_manifest


@dataclass
class Stores:
    content: ContentStore
    metadata: MetadataStore
    root: Path

    def names(self) -> list[str]:
        return [n.name for n in self.metadata.names()]

    def tags(self) -> list[str]:
        return sorted(d.ref_name for d in self.content.index() if d.ref_name)


def make_stores(root: Path) -> Stores:
    root.mkdir(parents=True, exist_ok=True)
    return Stores(ContentStore(root / "content"), MetadataStore(root / "metadata.db"), root)


@pytest.fixture()
def src(tmp_path):
    s = make_stores(tmp_path / "src")
    yield s
    s.metadata.close()


@pytest.fixture()
def dst(tmp_path):
    s = make_stores(tmp_path / "dst")
    yield s
    s.metadata.close()


def layer_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, body in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(body), 0o644, 1_700_000_000
            tar.addfile(info, io.BytesIO(body))
    return buf.getvalue()


BASE = layer_tar({"etc/os-release": b"NAME=test\n"})


def build_image(s: Stores, names: list[str], layers: list[bytes], *, compress: bool = True,
                docker: bool = False, created: str = "2024-01-01T00:00:00Z",
                labels: dict[str, str] | None = None, tag: bool = True) -> tuple[Digest, Descriptor]:
    """An image in the store (blobs, image record, names, index.json tags); returns
    (image id, manifest descriptor)."""
    layer_descs = []
    for raw in layers:
        data = gzip.compress(raw, mtime=0) if compress else raw
        if docker:
            media_type = mt.DOCKER_LAYER_GZIP if compress else mt.DOCKER_LAYER
        else:
            media_type = mt.OCI_LAYER_GZIP if compress else mt.OCI_LAYER
        layer_descs.append(s.content.put(data, media_type))
    plat = host_platform()
    config = ImageConfig(
        architecture=plat.architecture, os="linux", variant=plat.variant,
        diff_ids=tuple(Digest.from_bytes(raw) for raw in layers), created=created,
        config={"Cmd": ["/bin/sh"], "Labels": dict(labels or {})},
        history=tuple(History(created=created, created_by=f"layer {i}") for i in range(len(layers))),
    )
    config_desc = s.content.put(config.serialize(), mt.DOCKER_CONFIG if docker else mt.OCI_CONFIG)
    manifest = Manifest(mt.DOCKER_MANIFEST if docker else mt.OCI_MANIFEST, config_desc, tuple(layer_descs))
    mdesc = s.content.put(manifest.serialize(), manifest.media_type)
    s.metadata.put_image(ImageRecord(config_desc.digest, mdesc.digest, manifest.media_type, created,
                                     dict(labels or {}), sum(len(x) for x in layers)))
    for name in names:
        s.metadata.set_name(name, config_desc.digest, mdesc.digest)
        if tag:
            s.content.tag(name, mdesc)
    return config_desc.digest, mdesc


def two_images(s: Stores) -> tuple[Digest, Digest]:
    a, _ = build_image(s, ["docker.io/library/alpha:1"], [BASE, layer_tar({"a": b"alpha"})])
    b, _ = build_image(s, ["localhost:5000/team/beta:2.0", "docker.io/library/beta:latest"],
                       [BASE, layer_tar({"b": b"beta"})], compress=False, docker=True)
    return a, b


def saved(s: Stores, refs: list[str], fmt: str = "docker") -> bytes:
    out = io.BytesIO()
    save(s.content, s.metadata, refs, out, fmt)
    return out.getvalue()


def members(data: bytes) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in tar:
            f = tar.extractfile(m) if m.isreg() else None
            out[m.name] = f.read() if f else None
    return out


def blob_digests(s: Stores) -> set[str]:
    return {str(d) for d, _ in s.content.walk()}


def assert_untouched(s: Stores) -> None:
    assert s.names() == []
    assert s.metadata.images() == []
    assert s.tags() == []
    assert s.metadata.leases() == []


# --- round trips -------------------------------------------------------------------------------


def test_docker_round_trip_two_images_shared_layer(src, dst):
    a, _ = two_images(src)
    data = saved(src, ["alpha:1", "localhost:5000/team/beta:2.0", "beta"])
    files = members(data)
    manifest_json = json.loads(files["manifest.json"])
    assert [e["RepoTags"] for e in manifest_json] == [["alpha:1"], ["localhost:5000/team/beta:2.0",
                                                                    "beta:latest"]]
    assert manifest_json[0]["Config"] == f"blobs/sha256/{a.encoded}"
    for entry in manifest_json:
        for path in [entry["Config"], *entry["Layers"]]:
            assert hashlib.sha256(files[path]).hexdigest() == path.rsplit("/", 1)[1]
    # The shared base layer is stored once per form: gzip for alpha, plain for beta.
    assert manifest_json[0]["Layers"][0] != manifest_json[1]["Layers"][0]
    assert files[manifest_json[0]["Layers"][0]][:2] == b"\x1f\x8b"
    repositories = json.loads(files["repositories"])
    assert set(repositories) == {"alpha", "localhost:5000/team/beta", "beta"}
    assert repositories["alpha"]["1"] == manifest_json[0]["Layers"][-1].rsplit("/", 1)[1]
    index = json.loads(files["index.json"])
    annotations = [d["annotations"] for d in index["manifests"]]
    assert {"io.containerd.image.name": "docker.io/library/alpha:1",
            "org.opencontainers.image.ref.name": "1"} in annotations
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    assert list(files)[:4] == ["oci-layout", "index.json", "manifest.json", "repositories"]

    loaded = load(dst.content, dst.metadata, io.BytesIO(data))
    assert loaded == ["docker.io/library/alpha:1", "localhost:5000/team/beta:2.0",
                      "docker.io/library/beta:latest"]
    for name in loaded:
        assert dst.metadata.get_name(name).image_id == src.metadata.get_name(name).image_id
        # the manifest found in index.json is reused: digests survive the round trip
        assert dst.metadata.get_name(name).manifest_digest == src.metadata.get_name(name).manifest_digest
    assert dst.tags() == sorted(loaded)
    assert blob_digests(dst) == blob_digests(src)
    assert dst.metadata.leases() == []
    img = dst.metadata.get_image(a)
    assert img.size == len(BASE) + len(layer_tar({"a": b"alpha"}))


def test_oci_round_trip_two_images_shared_layer(src, dst):
    two_images(src)
    # a second, shared-layer image in the same form as alpha: one base blob in the archive
    build_image(src, ["docker.io/library/gamma:1"], [BASE, layer_tar({"g": b"gamma"})])
    data = saved(src, ["alpha:1", "gamma:1", "localhost:5000/team/beta:2.0"], "oci")
    files = members(data)
    assert "manifest.json" not in files and "repositories" not in files
    index = json.loads(files["index.json"])
    assert [d["annotations"]["org.opencontainers.image.ref.name"] for d in index["manifests"]] == [
        "docker.io/library/alpha:1", "docker.io/library/gamma:1", "localhost:5000/team/beta:2.0"]
    base_blob = f"blobs/sha256/{hashlib.sha256(gzip.compress(BASE, mtime=0)).hexdigest()}"
    assert list(files).count(base_blob) == 1

    loaded = load(dst.content, dst.metadata, io.BytesIO(data))
    assert loaded == ["docker.io/library/alpha:1", "docker.io/library/gamma:1",
                      "localhost:5000/team/beta:2.0"]
    for name in loaded:
        assert dst.metadata.get_name(name).manifest_digest == src.metadata.get_name(name).manifest_digest
    assert dst.metadata.lookup("alpha:1").image_id == src.metadata.lookup("alpha:1").image_id


def test_save_repository_means_all_its_tags_and_id_means_no_names(src, dst):
    a, _ = build_image(src, ["docker.io/library/app:1", "docker.io/library/app:2"], [BASE])
    build_image(src, ["docker.io/library/app:3"], [BASE, layer_tar({"x": b"x"})])
    files = members(saved(src, ["app"]))
    tags = [e["RepoTags"] for e in json.loads(files["manifest.json"])]
    assert tags == [["app:1", "app:2"], ["app:3"]]

    data = saved(src, [a.encoded[:12]])
    entry = json.loads(members(data)["manifest.json"])[0]
    assert entry["RepoTags"] == []
    assert load(dst.content, dst.metadata, io.BytesIO(data)) == [str(a)]
    assert dst.names() == [] and dst.metadata.get_image(a).id == a


def test_save_unknown_and_bad_refs(src):
    with pytest.raises(NotFound):
        saved(src, ["nothing:here"])
    with pytest.raises(InvalidArgument):
        saved(src, [])
    build_image(src, ["docker.io/library/x:1"], [BASE])
    with pytest.raises(InvalidArgument, match="format"):
        save(src.content, src.metadata, ["x:1"], io.BytesIO(), "zip")


def test_save_refuses_a_corrupt_blob(src):
    _, mdesc = build_image(src, ["docker.io/library/x:1"], [BASE])
    layer = parse_manifest(src.content.read(mdesc.digest)).layers[0]
    path = src.content.path_of(layer.digest)
    path.chmod(0o644)
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(InvalidArgument, match="corrupt"):
        saved(src, ["x:1"])


def test_load_gzip_compressed_archive(src, dst):
    two_images(src)
    data = gzip.compress(saved(src, ["alpha:1"]))
    assert load(dst.content, dst.metadata, io.BytesIO(data)) == ["docker.io/library/alpha:1"]


def test_load_existing_blobs_and_retag(src, dst):
    a, _ = two_images(src)
    data = saved(src, ["alpha:1"])
    load(dst.content, dst.metadata, io.BytesIO(data))
    # loading again (blobs already there) is fine and moves nothing
    assert load(dst.content, dst.metadata, io.BytesIO(data)) == ["docker.io/library/alpha:1"]
    assert dst.metadata.lookup("alpha:1").image_id == a


# --- archives other tools write -------------------------------------------------------------


class ArchiveBuilder:
    """A tar written member by member, for archives in other tools' shapes and hostile ones."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)  # noqa: SIM115

    def file(self, name: str, data: bytes, size: int | None = None) -> ArchiveBuilder:
        info = tarfile.TarInfo(name)
        info.size = len(data) if size is None else size
        self.tar.addfile(info, io.BytesIO(data))
        return self

    def json(self, name: str, obj: object) -> ArchiveBuilder:
        return self.file(name, json.dumps(obj).encode())

    def blob(self, data: bytes) -> str:
        path = f"blobs/sha256/{hashlib.sha256(data).hexdigest()}"
        self.file(path, data)
        return path

    def link(self, name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> ArchiveBuilder:
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, target
        self.tar.addfile(info)
        return self

    def bytes(self) -> bytes:
        self.tar.close()
        return self.buf.getvalue()


def config_for(layers: list[bytes], labels: dict[str, str] | None = None) -> bytes:
    plat = host_platform()
    return ImageConfig(architecture=plat.architecture, os="linux", variant=plat.variant,
                       diff_ids=tuple(Digest.from_bytes(x) for x in layers),
                       created="2023-05-01T00:00:00Z",
                       config={"Labels": labels or {}}).serialize()


def test_load_legacy_docker_archive_creates_a_manifest(dst):
    top = layer_tar({"bin/app": b"app"})
    config = config_for([BASE, top])
    config_hex = hashlib.sha256(config).hexdigest()
    b = ArchiveBuilder()
    b.file("a" * 64 + "/VERSION", b"1.0").json("a" * 64 + "/json", {"id": "a" * 64})
    b.file("a" * 64 + "/layer.tar", BASE)
    b.file("b" * 64 + "/VERSION", b"1.0").json("b" * 64 + "/json", {"id": "b" * 64, "parent": "a" * 64})
    b.file("b" * 64 + "/layer.tar", gzip.compress(top))  # Docker loads compressed layers too
    b.file(f"{config_hex}.json", config)
    b.json("manifest.json", [{"Config": f"{config_hex}.json", "RepoTags": ["legacy/app:v1"],
                              "Layers": ["a" * 64 + "/layer.tar", "b" * 64 + "/layer.tar"]}])
    b.json("repositories", {"legacy/app": {"v1": "b" * 64}})
    assert load(dst.content, dst.metadata, io.BytesIO(b.bytes())) == ["docker.io/legacy/app:v1"]
    name = dst.metadata.get_name("docker.io/legacy/app:v1")
    assert name.image_id == f"sha256:{config_hex}"
    manifest = parse_manifest(dst.content.read(name.manifest_digest))
    assert manifest.media_type == mt.DOCKER_MANIFEST
    assert manifest.config.media_type == mt.DOCKER_CONFIG
    assert [d.media_type for d in manifest.layers] == [mt.DOCKER_LAYER, mt.DOCKER_LAYER_GZIP]
    assert dst.tags() == ["docker.io/legacy/app:v1"]
    assert dst.metadata.get_image(name.image_id).labels == {}


def test_load_skopeo_style_docker_archive(dst):
    # skopeo's docker-archive: <hex>.tar layers and <hex>.json config at the top level
    config = config_for([BASE], {"k": "v"})
    b = ArchiveBuilder()
    b.file(f"{hashlib.sha256(BASE).hexdigest()}.tar", BASE)
    b.file(f"{hashlib.sha256(config).hexdigest()}.json", config)
    b.json("manifest.json", [{"Config": f"{hashlib.sha256(config).hexdigest()}.json",
                              "RepoTags": ["example.com/s:1"],
                              "Layers": [f"{hashlib.sha256(BASE).hexdigest()}.tar"]}])
    assert load(dst.content, dst.metadata, io.BytesIO(b.bytes())) == ["example.com/s:1"]
    assert dst.metadata.get_image(dst.metadata.lookup("example.com/s:1").image_id).labels == {"k": "v"}


def test_load_docker25_legacy_symlinks(dst):
    # Docker 25+ keeps <id>/layer.tar as a symlink to the blob for old readers
    config = config_for([BASE])
    b = ArchiveBuilder()
    layer_path = b.blob(BASE)
    config_path = b.blob(config)
    b.link("c" * 64 + "/layer.tar", f"../{layer_path}")
    b.json("manifest.json", [{"Config": config_path, "RepoTags": ["x:1"],
                              "Layers": ["c" * 64 + "/layer.tar"]}])
    assert load(dst.content, dst.metadata, io.BytesIO(b.bytes())) == ["docker.io/library/x:1"]


def oci_archive(ref_names: list[dict[str, str] | None], layers: list[bytes] | None = None,
                layer_type: str = mt.OCI_LAYER) -> bytes:
    layers = layers or [BASE]
    b = ArchiveBuilder()
    descs = [Descriptor(layer_type, Digest("sha256:" + b.blob(x).rsplit("/", 1)[1]), len(x)) for x in layers]
    config = config_for(layers)
    b.blob(config)
    manifest = Manifest(mt.OCI_MANIFEST, Descriptor(mt.OCI_CONFIG, Digest.from_bytes(config), len(config)),
                        tuple(descs)).serialize()
    b.blob(manifest)
    entries = []
    for ann in ref_names:
        d = Descriptor(mt.OCI_MANIFEST, Digest.from_bytes(manifest), len(manifest), ann)
        entries.append(d.to_json())
    b.json("oci-layout", {"imageLayoutVersion": "1.0.0"})
    b.json("index.json", {"schemaVersion": 2, "manifests": entries})
    return b.bytes()


def test_load_oci_archive_names(dst):
    data = oci_archive([
        {"org.opencontainers.image.ref.name": "latest"},                     # a bare tag: by id
        {"org.opencontainers.image.ref.name": "example.com/a/b:1"},          # a full reference
        {"io.containerd.image.name": "docker.io/library/c:2",
         "org.opencontainers.image.ref.name": "2"},
        None,                                                                # unnamed: by id
    ])
    image_id = str(Digest.from_bytes(config_for([BASE])))
    assert load(dst.content, dst.metadata, io.BytesIO(data)) == [
        image_id, "example.com/a/b:1", "docker.io/library/c:2"]
    assert dst.names() == ["docker.io/library/c:2", "example.com/a/b:1"]


def test_load_oci_index_selects_host_platform(dst):
    b = ArchiveBuilder()
    layer = b.blob(BASE)
    config = config_for([BASE])
    b.blob(config)
    manifest = Manifest(mt.OCI_MANIFEST, Descriptor(mt.OCI_CONFIG, Digest.from_bytes(config), len(config)),
                        (Descriptor(mt.OCI_LAYER, Digest("sha256:" + layer.rsplit("/", 1)[1]),
                                    len(BASE)),)).serialize()
    b.blob(manifest)
    other = Descriptor(mt.OCI_MANIFEST, Digest("sha256:" + "9" * 64), 10,
                       platform=Platform("s390x", "linux"))
    here = Descriptor(mt.OCI_MANIFEST, Digest.from_bytes(manifest), len(manifest), platform=host_platform())
    index = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX,
                        "manifests": [other.to_json(), here.to_json()]}).encode()
    b.blob(index)
    b.json("oci-layout", {"imageLayoutVersion": "1.0.0"})
    b.json("index.json", {"schemaVersion": 2, "manifests": [
        {"mediaType": mt.OCI_INDEX, "digest": str(Digest.from_bytes(index)), "size": len(index),
         "annotations": {"org.opencontainers.image.ref.name": "multi/arch:1"}}]})
    assert load(dst.content, dst.metadata, io.BytesIO(b.bytes())) == ["docker.io/multi/arch:1"]
    name = dst.metadata.get_name("docker.io/multi/arch:1")
    assert name.manifest_digest == Digest.from_bytes(index)
    assert dst.metadata.get_image(name.image_id).manifest_digest == Digest.from_bytes(manifest)


# --- hostile archives ---------------------------------------------------------------------


def good_docker_archive(extra: list[tuple[str, bytes]] | None = None, repo_tags=None,
                        manifest: object = None) -> bytes:
    b = ArchiveBuilder()
    for name, data in extra or []:
        b.file(name, data)
    config = config_for([BASE])
    layer_path, config_path = b.blob(BASE), b.blob(config)
    b.json("manifest.json", manifest if manifest is not None else
           [{"Config": config_path, "RepoTags": repo_tags or ["ok:1"], "Layers": [layer_path]}])
    return b.bytes()


def hostile(dst: Stores, data: bytes, match: str, **kw) -> None:
    before = blob_digests(dst)
    with pytest.raises(InvalidArgument, match=match):
        load(dst.content, dst.metadata, io.BytesIO(data), **kw)
    assert_untouched(dst)
    # whatever blobs were written are unreferenced (gc takes them); no ingest is left behind
    assert before <= blob_digests(dst)
    assert dst.content.ingests() == []


@pytest.mark.parametrize("name", ["../evil", "a/../../evil", "/etc/evil", "blobs/../../x"])
def test_load_refuses_traversal_names(dst, name):
    hostile(dst, good_docker_archive([(name, b"x")]), r"'\.\.' in path|absolute path")


def test_load_refuses_symlink_out_of_the_archive(dst):
    b = ArchiveBuilder().link("x/layer.tar", "../../etc/passwd")
    b.json("manifest.json", [])
    hostile(dst, b.bytes(), "leaves the archive")
    b = ArchiveBuilder().link("x/layer.tar", "/etc/passwd")
    hostile(dst, b.bytes(), "absolute")


def test_load_refuses_device_nodes(dst):
    b = ArchiveBuilder()
    info = tarfile.TarInfo("dev")
    info.type = tarfile.CHRTYPE
    b.tar.addfile(info)
    hostile(dst, b.bytes(), "unexpected member type")


def test_load_refuses_manifest_pointing_to_missing_blob(dst):
    b = ArchiveBuilder()
    config_path = b.blob(config_for([BASE]))
    b.json("manifest.json", [{"Config": config_path, "RepoTags": ["x:1"],
                              "Layers": [f"blobs/sha256/{hashlib.sha256(BASE).hexdigest()}"]}])
    hostile(dst, b.bytes(), "not in the archive")


def test_load_refuses_wrong_digest_blob(dst):
    b = ArchiveBuilder()
    config_path = b.blob(config_for([BASE]))
    fake = f"blobs/sha256/{hashlib.sha256(BASE).hexdigest()}"
    b.file(fake, BASE[:-1] + b"\x01")
    b.json("manifest.json", [{"Config": config_path, "RepoTags": ["x:1"], "Layers": [fake]}])
    hostile(dst, b.bytes(), f"archive member {fake}")


def test_load_refuses_a_truncated_blob(dst):
    data = good_docker_archive()
    offset = data.index(BASE[:100])
    hostile(dst, data[:offset + 200], "truncated")


def test_load_refuses_a_truncated_gzip_archive(dst):
    # Cut mid-member, it is a truncated tar; cut at a member boundary, the tar reads as a shorter
    # archive (tar has no length), and what it lacks is reported instead.
    data = gzip.compress(good_docker_archive())
    for cut in (len(data) // 3, len(data) // 2, 2 * len(data) // 3):
        hostile(dst, data[:cut], "truncated|corrupt|not an image archive|not in the archive")


def test_load_refuses_huge_manifest_json(dst):
    big = [{"Config": "x", "RepoTags": [], "Layers": ["y" * 100]}] * 100
    hostile(dst, good_docker_archive(manifest=big), "manifest.json: .* more than the 4096 allowed",
            limits=Limits(max_metadata_size=4096))


def test_load_refuses_huge_member(dst):
    hostile(dst, good_docker_archive(), "more than the 1000 allowed", limits=Limits(max_member_size=1000))


def test_load_refuses_duplicate_names(dst):
    b = ArchiveBuilder()
    config = config_for([BASE])
    layer_path, config_path = b.blob(BASE), b.blob(config)
    entry = {"Config": config_path, "RepoTags": ["dup:1"], "Layers": [layer_path]}
    b.json("manifest.json", [entry, {**entry, "RepoTags": ["other:1", "docker.io/library/dup:1"]}])
    hostile(dst, b.bytes(), "more than once")
    hostile(dst, oci_archive([{"org.opencontainers.image.ref.name": "a/b:1"},
                              {"io.containerd.image.name": "docker.io/a/b:1"}]), "more than once")


def test_load_refuses_duplicate_members(dst):
    b = ArchiveBuilder().json("manifest.json", []).json("manifest.json", [])
    hostile(dst, b.bytes(), "appears twice")


def test_load_refuses_unknown_media_types(dst):
    hostile(dst, oci_archive([None], layer_type="application/x-unknown"), "unknown layer media type")
    b = ArchiveBuilder()
    thing = b.blob(b"{}")
    b.json("oci-layout", {"imageLayoutVersion": "1.0.0"})
    b.json("index.json", {"schemaVersion": 2, "manifests": [
        {"mediaType": "application/x-unknown", "digest": "sha256:" + thing.rsplit("/", 1)[1], "size": 2}]})
    hostile(dst, b.bytes(), "unknown media type")


def test_load_refuses_diff_id_mismatch(dst):
    b = ArchiveBuilder()
    other = layer_tar({"other": b"o"})
    layer_path, config_path = b.blob(other), b.blob(config_for([BASE]))
    b.json("manifest.json", [{"Config": config_path, "RepoTags": ["x:1"], "Layers": [layer_path]}])
    hostile(dst, b.bytes(), "diff_id")


def test_load_refuses_bad_names_and_shapes(dst):
    hostile(dst, good_docker_archive(repo_tags=["UPPER:1"]), "lowercase")
    hostile(dst, good_docker_archive(manifest={"not": "a list"}), "expected an array")
    hostile(dst, good_docker_archive(manifest=[{"Config": 5, "Layers": []}]), "path string")
    hostile(dst, ArchiveBuilder().file("readme", b"hi").bytes(), "not an image archive")
    hostile(dst, b"this is not a tar at all" * 100, "not a tar")
    hostile(dst, good_docker_archive([("blobs/sha256/nothex", b"x")]), "not a blob name")


@pytest.mark.parametrize("where", ["transaction", "index.json"])
def test_load_failure_in_last_step_is_undone(src, dst, monkeypatch, where):
    """A failure while recording: inside the metadata transaction it rolls back; while tagging
    index.json (after it) it is compensated."""
    two_images(src)
    data = saved(src, ["localhost:5000/team/beta:2.0", "beta", "alpha:1"])
    # an earlier, different image holds one of the names: it must get it back
    old_id, old_manifest = build_image(dst, ["docker.io/library/beta:latest"], [layer_tar({"o": b"o"})])
    calls = {"n": 0}
    obj, attr = (dst.metadata, "_put_name") if where == "transaction" else (dst.content, "tag")
    real = getattr(obj, attr)

    def flaky(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise InvalidArgument("disk on fire")
        return real(*args, **kw)

    monkeypatch.setattr(obj, attr, flaky)
    with pytest.raises(InvalidArgument, match="disk on fire"):
        load(dst.content, dst.metadata, io.BytesIO(data))
    assert calls["n"] >= 3  # (the undo tags index.json again)
    assert dst.names() == ["docker.io/library/beta:latest"]
    assert dst.metadata.get_name("docker.io/library/beta:latest").image_id == old_id
    assert [i.id for i in dst.metadata.images()] == [old_id]
    assert [(d.ref_name, d.digest) for d in dst.content.index()] == [
        ("docker.io/library/beta:latest", old_manifest.digest)]
    assert dst.metadata.leases() == []


# Where a forked loader is killed (SIGKILL, i.e. kill -9): (object, method, nth call).
KILL_POINTS = [
    ("content", "writer", 1),          # streaming the first member into the store
    ("content", "writer", 3),          # streaming a later member
    ("metadata", "images", 1),         # archive read and checked, nothing recorded
    ("metadata", "_put_name", 1),      # inside the transaction, before the first name
    ("metadata", "_put_name", 3),      # inside the transaction, two names written
    ("content", "tag", 1),             # transaction committed, no index.json tag yet
    ("content", "tag", 3),             # some index.json tags written
    ("metadata", "delete_lease", 1),   # everything done but dropping the lease
]


@pytest.mark.parametrize(("obj", "attr", "nth"), KILL_POINTS, ids=[f"{o}.{a}#{n}" for o, a, n in KILL_POINTS])
def test_load_killed_leaves_all_names_or_none(src, tmp_path, obj, attr, nth):
    two_images(src)
    data = saved(src, ["localhost:5000/team/beta:2.0", "beta", "alpha:1"])
    want = ["docker.io/library/alpha:1", "docker.io/library/beta:latest", "localhost:5000/team/beta:2.0"]
    root = tmp_path / "killed"
    make_stores(root).metadata.close()  # create the database before the fork
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child, killed before it returns
        try:
            child = make_stores(root)
            target = getattr(child, obj)
            real = getattr(target, attr)
            calls = {"n": 0}

            def hook(*args, **kw):
                calls["n"] += 1
                if calls["n"] == nth:
                    os.kill(os.getpid(), signal.SIGKILL)
                return real(*args, **kw)

            setattr(target, attr, hook)
            load(child.content, child.metadata, io.BytesIO(data))
        finally:
            os._exit(3)  # the kill point was not reached
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status
    after = make_stores(root)
    try:
        names = after.names()
        assert names in ([], want)
        for n in after.metadata.names():  # each name points to a complete image
            assert after.metadata.get_image(n.image_id).manifest_digest
        report = check_store(after.content, after.metadata)
        assert report.errors == [], [str(p) for p in report.problems]
        # the killed load's lease expires; a new load of the same archive completes the work
        assert load(after.content, after.metadata, io.BytesIO(data))
        assert after.names() == want
        assert after.tags() == want
    finally:
        after.metadata.close()


def test_clean_member_name():
    assert archive.clean_member_name("./a//b/./c") == "a/b/c"
    assert archive.clean_member_name("./") == ""
    for bad in ("/a", "a/../b", "..", "a\0b"):
        with pytest.raises(InvalidArgument):
            archive.clean_member_name(bad)
