"""skopeo reads Pallet's content store as an OCI image layout, and Pallet reads one skopeo wrote.

Only local transports (oci:, docker-archive:); no network. What skopeo writes outside the test's
temporary directory (its blob-info cache) is removed afterwards if it was not there before.
"""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import tarfile

import pytest
from compat_support import Leftovers, need

from pallet.image.content import ContentStore
from pallet.oci import mediatypes as mt
from pallet.oci.descriptor import Descriptor
from pallet.oci.digest import Digest
from pallet.oci.manifest import (
    History,
    ImageConfig,
    Manifest,
    check_image,
    parse_config,
    parse_index,
    parse_manifest,
)
from pallet.oci.reference import parse_normalized


@pytest.fixture(autouse=True)
def _skopeo():
    need("skopeo")
    leftovers = Leftovers("/var/lib/containers/cache/blob-info-cache-v1.boltdb", "/var/lib/containers/cache",
                          "/var/lib/containers")
    yield
    leftovers.cleanup()


def skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["skopeo", "--insecure-policy", *args], capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, f"skopeo {' '.join(args)}: {proc.stderr}"
    return proc


def _layer_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        d = tarfile.TarInfo("etc")
        d.type, d.mode, d.mtime = tarfile.DIRTYPE, 0o755, 1_700_000_000
        tar.addfile(d)
        body = b"hello from pallet\n"
        f = tarfile.TarInfo("etc/greeting")
        f.size, f.mode, f.mtime = len(body), 0o644, 1_700_000_000
        tar.addfile(f, io.BytesIO(body))
    return buf.getvalue()


def _build_image(store: ContentStore, tag: str, docker: bool) -> Descriptor:
    raw = _layer_tar()
    compressed = gzip.compress(raw, mtime=0)
    layer_type = mt.DOCKER_LAYER_GZIP if docker else mt.OCI_LAYER_GZIP
    layer = store.put(compressed, layer_type)
    config = ImageConfig(
        architecture="amd64", os="linux", diff_ids=(Digest.from_bytes(raw),),
        created="2024-01-01T00:00:00Z",
        config={"Cmd": ["cat", "/etc/greeting"], "Env": ["PATH=/bin"], "Labels": {"made.by": "pallet"}},
        history=(History(created="2024-01-01T00:00:00Z", created_by="test"),),
    )
    config_desc = store.put(config.serialize(), mt.DOCKER_CONFIG if docker else mt.OCI_CONFIG)
    manifest = Manifest(mt.DOCKER_MANIFEST if docker else mt.OCI_MANIFEST, config_desc, (layer,))
    check_image(manifest, config)
    desc = store.put(manifest.serialize(), manifest.media_type)
    store.tag(tag, desc)
    return desc


def test_skopeo_inspects_and_copies_out_of_the_store(tmp_path):
    store = ContentStore(tmp_path / "content")
    desc = _build_image(store, "t1", docker=False)
    other = _build_image(store, "t2", docker=True)  # a second tag, another type, same index.json
    assert other.digest != desc.digest

    info = json.loads(skopeo("inspect", f"oci:{store.path}:t1").stdout)
    assert info["Digest"] == desc.digest
    assert info["Architecture"] == "amd64" and info["Os"] == "linux"
    assert info["Labels"] == {"made.by": "pallet"}
    manifest = parse_manifest(store.read(desc.digest))
    assert info["Layers"] == [str(layer.digest) for layer in manifest.layers]

    raw = json.loads(skopeo("inspect", "--raw", f"oci:{store.path}:t1").stdout)
    assert raw == json.loads(store.read(desc.digest))

    archive = tmp_path / "x.tar"
    skopeo("copy", f"oci:{store.path}:t1", f"docker-archive:{archive}:img:tag")
    with tarfile.open(archive) as tar:
        [entry] = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        assert [parse_normalized(t).familiar() for t in entry["RepoTags"]] == ["img:tag"]
        config = parse_config(tar.extractfile(entry["Config"]).read())  # type: ignore[union-attr]
        assert config.config is not None and config.config["Cmd"] == ["cat", "/etc/greeting"]
        layer = tar.extractfile(entry["Layers"][0]).read()  # type: ignore[union-attr]
        assert Digest.from_bytes(layer) == config.diff_ids[0]  # docker-archive layers are uncompressed


def test_skopeo_does_not_resolve_docker_manifests_by_tag(tmp_path):
    """A known limit of skopeo 1.9 (containers/image oci/layout getManifestDescriptor): a ref name
    in index.json is looked up only among OCI manifest descriptors. Docker schema 2 images in
    the store are complete and valid but not addressable as oci:<dir>:<tag>; if that changes,
    this test says so."""
    store = ContentStore(tmp_path / "content")
    _build_image(store, "d1", docker=True)
    proc = subprocess.run(["skopeo", "--insecure-policy", "inspect", f"oci:{store.path}:d1"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode != 0 and "no descriptor found" in proc.stderr


def test_pallet_reads_a_layout_skopeo_wrote(tmp_path):
    src = ContentStore(tmp_path / "src")
    _build_image(src, "t1", docker=False)
    out = tmp_path / "skopeo-layout"
    skopeo("copy", f"oci:{src.path}:t1", f"oci:{out}:copied")

    store = ContentStore(out)
    [entry] = [d for d in store.index() if d.ref_name == "copied"]
    for digest, _ in store.walk():
        store.verify(digest)
    manifest = parse_manifest(store.read(entry.digest), entry.media_type)
    config = parse_config(store.read(manifest.config.digest))
    check_image(manifest, config)
    assert config.labels == {"made.by": "pallet"}
    assert all(store.exists(layer.digest) for layer in manifest.layers)
    assert parse_index((out / "index.json").read_bytes()).manifests[0].digest == entry.digest


def test_docker_archive_round_trip_back_into_pallet_layout(tmp_path):
    src = ContentStore(tmp_path / "src")
    _build_image(src, "t1", docker=False)
    archive = tmp_path / "a.tar"
    skopeo("copy", f"oci:{src.path}:t1", f"docker-archive:{archive}:img:tag")
    dst = ContentStore(tmp_path / "dst")  # a Pallet-initialized layout that skopeo writes into
    skopeo("copy", f"docker-archive:{archive}", f"oci:{dst.path}:back")
    [entry] = [d for d in ContentStore(dst.path).index() if d.ref_name == "back"]
    manifest = parse_manifest(dst.read(entry.digest), entry.media_type)
    config = parse_config(dst.read(manifest.config.digest))
    check_image(manifest, config)
    assert config.config is not None and config.config["Cmd"] == ["cat", "/etc/greeting"]
