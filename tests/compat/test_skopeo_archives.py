"""skopeo reads the archives Pallet saves, and Pallet loads the archives skopeo writes.

- `skopeo copy docker-archive:<pallet save> oci:<dir>`: for each of two images (one with gzip
  layers, one with plain ones) in one archive;
- `skopeo copy oci-archive:<pallet save --format oci>:<name> oci:<dir>`;
- `skopeo copy oci:<Pallet's content store>:<tag> docker-archive:...` and `oci-archive:...`,
  then `pallet.image.archive.load` of what skopeo wrote.

Only local transports; no network, no root. What skopeo writes outside the test's temporary
directory (its blob-info cache) is removed afterwards if it was not there before.
"""

from __future__ import annotations

import gzip
import io
import subprocess
import tarfile
from pathlib import Path

import pytest
from compat_support import Leftovers, need

from pallet.image.archive import load, save
from pallet.image.content import ContentStore
from pallet.image.metadata import ImageRecord, MetadataStore
from pallet.oci import mediatypes as mt
from pallet.oci.digest import Digest
from pallet.oci.manifest import History, ImageConfig, Manifest, check_image, parse_config, parse_manifest


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


class Store:
    def __init__(self, root: Path) -> None:
        self.content = ContentStore(root / "content")
        self.metadata = MetadataStore(root / "metadata.db")


@pytest.fixture()
def stores(tmp_path):
    made: list[Store] = []

    def make(name: str) -> Store:
        s = Store(tmp_path / name)
        made.append(s)
        return s

    yield make
    for s in made:
        s.metadata.close()


def layer_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        d = tarfile.TarInfo("etc")
        d.type, d.mode, d.mtime = tarfile.DIRTYPE, 0o755, 1_700_000_000
        tar.addfile(d)
        for name, body in sorted(files.items()):
            f = tarfile.TarInfo(name)
            f.size, f.mode, f.mtime = len(body), 0o644, 1_700_000_000
            tar.addfile(f, io.BytesIO(body))
    return buf.getvalue()


BASE = layer_tar({"etc/os-release": b"NAME=pallet-test\n"})


def build_image(s: Store, name: str, top: bytes, *, compress: bool) -> tuple[Digest, Digest]:
    """An OCI image (skopeo 1.9 resolves oci:<dir>:<tag> only for OCI manifests) of BASE + top."""
    raws = [BASE, top]
    layers = [s.content.put(gzip.compress(r, mtime=0) if compress else r,
                            mt.OCI_LAYER_GZIP if compress else mt.OCI_LAYER) for r in raws]
    config = ImageConfig(architecture="amd64", os="linux", diff_ids=tuple(Digest.from_bytes(r) for r in raws),
                         created="2024-01-01T00:00:00Z",
                         config={"Cmd": ["cat", "/etc/greeting"], "Labels": {"made.by": "pallet"}},
                         history=(History(created="2024-01-01T00:00:00Z", created_by="base"),
                                  History(created="2024-01-01T00:00:00Z", created_by="top")))
    cdesc = s.content.put(config.serialize(), mt.OCI_CONFIG)
    manifest = Manifest(mt.OCI_MANIFEST, cdesc, tuple(layers))
    mdesc = s.content.put(manifest.serialize(), mt.OCI_MANIFEST)
    s.metadata.put_image(ImageRecord(cdesc.digest, mdesc.digest, mt.OCI_MANIFEST, "2024-01-01T00:00:00Z"))
    s.metadata.set_name(name, cdesc.digest, mdesc.digest)
    s.content.tag(name, mdesc)
    return cdesc.digest, mdesc.digest


def two_images(s: Store) -> dict[str, Digest]:
    a, _ = build_image(s, "docker.io/library/alpha:1", layer_tar({"etc/greeting": b"alpha\n"}),
                       compress=True)
    b, _ = build_image(s, "localhost:5000/team/beta:2", layer_tar({"etc/greeting": b"beta\n"}),
                       compress=False)
    return {"docker.io/library/alpha:1": a, "localhost:5000/team/beta:2": b}


def read_oci_dir(path: Path, tag: str) -> tuple[Manifest, ImageConfig]:
    layout = ContentStore(path)
    [entry] = [d for d in layout.index() if d.ref_name == tag]
    for digest, _ in layout.walk():
        layout.verify(digest)
    manifest = parse_manifest(layout.read(entry.digest), entry.media_type)
    config = parse_config(layout.read(manifest.config.digest))
    check_image(manifest, config)
    return manifest, config


def write_archive(s: Store, refs: list[str], path: Path, fmt: str) -> None:
    with open(path, "wb") as f:
        save(s.content, s.metadata, refs, f, fmt)


def test_skopeo_copies_images_out_of_our_docker_archive(stores, tmp_path):
    src = stores("src")
    ids = two_images(src)
    archive = tmp_path / "saved.tar"
    write_archive(src, list(ids), archive, "docker")
    for i, (name, image_id) in enumerate(ids.items()):
        out = tmp_path / f"oci-{i}"
        # by name, and by position (docker-archive:path:@N)
        skopeo("copy", f"docker-archive:{archive}:{name}", f"oci:{out}:by-name")
        skopeo("copy", f"docker-archive:{archive}:@{i}", f"oci:{out}:by-index")
        for tag in ("by-name", "by-index"):
            manifest, config = read_oci_dir(out, tag)
            assert manifest.config.digest == image_id  # the config bytes come through unchanged
            assert config.labels == {"made.by": "pallet"}


def test_skopeo_copies_out_of_our_oci_archive(stores, tmp_path):
    src = stores("src")
    ids = two_images(src)
    archive = tmp_path / "saved-oci.tar"
    write_archive(src, list(ids), archive, "oci")
    for i, (name, image_id) in enumerate(ids.items()):
        out = tmp_path / f"oci-{i}"
        skopeo("copy", f"oci-archive:{archive}:{name}", f"oci:{out}:x")
        manifest, _ = read_oci_dir(out, "x")
        # the config bytes are kept (same image id); skopeo gzips plain layers on the way to
        # oci:, so only the gzip image keeps its manifest bytes too
        assert manifest.config.digest == image_id
        same = ContentStore(out).index()[0].digest == src.metadata.get_name(name).manifest_digest
        assert same == (name == "docker.io/library/alpha:1")


def test_we_load_a_docker_archive_skopeo_wrote(stores, tmp_path):
    src = stores("src")
    ids = two_images(src)
    archive = tmp_path / "skopeo-docker.tar"
    skopeo("copy", f"oci:{src.content.path}:docker.io/library/alpha:1",
           f"docker-archive:{archive}:example.com/copied/alpha:7")
    dst = stores("dst")
    with open(archive, "rb") as f:
        assert load(dst.content, dst.metadata, f) == ["example.com/copied/alpha:7"]
    name = dst.metadata.get_name("example.com/copied/alpha:7")
    # skopeo decompresses layers into a docker-archive; the config (the image id) is kept
    assert name.image_id == ids["docker.io/library/alpha:1"]
    manifest = parse_manifest(dst.content.read(name.manifest_digest))
    assert manifest.media_type == mt.DOCKER_MANIFEST
    assert [layer.media_type for layer in manifest.layers] == [mt.DOCKER_LAYER] * 2
    assert [d.ref_name for d in dst.content.index()] == ["example.com/copied/alpha:7"]


def test_we_load_an_oci_archive_skopeo_wrote(stores, tmp_path):
    src = stores("src")
    ids = two_images(src)
    archive = tmp_path / "skopeo-oci.tar"
    skopeo("copy", f"oci:{src.content.path}:localhost:5000/team/beta:2",
           f"oci-archive:{archive}:example.com/copied/beta:3")
    dst = stores("dst")
    with open(archive, "rb") as f:
        assert load(dst.content, dst.metadata, f) == ["example.com/copied/beta:3"]
    name = dst.metadata.get_name("example.com/copied/beta:3")
    assert name.image_id == ids["localhost:5000/team/beta:2"]
    # skopeo gzipped the plain layers: a new manifest, checked against the config's diff_ids
    manifest = parse_manifest(dst.content.read(name.manifest_digest))
    assert [layer.media_type for layer in manifest.layers] == [mt.OCI_LAYER_GZIP] * 2
    assert [d.ref_name for d in dst.content.index()] == ["example.com/copied/beta:3"]


def test_full_circle_save_skopeo_load(stores, tmp_path):
    """Pallet docker-archive -> skopeo -> docker-archive -> Pallet: the image id survives."""
    src = stores("src")
    ids = two_images(src)
    ours = tmp_path / "ours.tar"
    write_archive(src, ["docker.io/library/alpha:1"], ours, "docker")
    theirs = tmp_path / "theirs.tar"
    skopeo("copy", f"docker-archive:{ours}", f"docker-archive:{theirs}:docker.io/library/alpha:1")
    dst = stores("dst")
    with open(theirs, "rb") as f:
        assert load(dst.content, dst.metadata, f) == ["docker.io/library/alpha:1"]
    assert dst.metadata.get_name("docker.io/library/alpha:1").image_id == ids["docker.io/library/alpha:1"]
