"""Registry search ranking and paging, the config file, manifest reading, and offline gc."""

from __future__ import annotations

import json

import pytest

from pallet.errors import InvalidArgument
from pallet.oci.digest import Digest
from pallet.registry.server import manifests as mf
from pallet.registry.server.config import load_config, parse_config
from pallet.registry.server.errors import RegistryError
from pallet.registry.server.gc import collect
from pallet.registry.server.search import Describer, RepoInfo, parse_paging, rank, results_page
from pallet.registry.server.storage import FilesystemStorage

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def test_rank_orders_by_kind_of_match():
    repos = [
        RepoInfo("x/redis-tools", "", ()),
        RepoInfo("redis", "", ()),
        RepoInfo("team/redis", "", ()),
        RepoInfo("cache/thing", "an in-memory store like redis", ()),
        RepoInfo("misc/other", "", ("redis-7",)),
        RepoInfo("unrelated", "nothing", ("latest",)),
        RepoInfo("myredisfork", "", ()),
    ]
    assert [r.name for r in rank("redis", repos)] == [
        "redis", "team/redis", "x/redis-tools", "myredisfork", "misc/other", "cache/thing"]
    assert [r.name for r in rank("REDIS team", repos)] == ["team/redis"]  # every term must match
    assert [r.name for r in rank("", repos)] == sorted(r.name for r in repos)


def test_results_page_shape_and_paging():
    ranked = [RepoInfo(f"r{i}", f"d{i}", ()) for i in range(5)]
    page = results_page("q", ranked, 2, 3)
    assert page == {"query": "q", "num_results": 5, "num_pages": 3, "page": 3, "page_size": 2,
                    "results": [{"name": "r4", "description": "d4", "star_count": 0,
                                 "is_official": False, "is_automated": False}]}
    assert results_page("q", [], 25, 1)["num_pages"] == 0
    assert parse_paging(None, None) == (25, 1) and parse_paging("500", "2") == (100, 2)
    for n, p in (("0", "1"), ("x", "1"), ("1", "0")):
        with pytest.raises(RegistryError):
            parse_paging(n, p)


def _put_image(store, repo, tag, labels=None, annotations=None):
    config = json.dumps({"config": {"Labels": labels or {}}}).encode()
    layer = b"layer-" + repo.encode() + tag.encode()
    store.put_blob(Digest.from_bytes(config), config)
    store.put_blob(Digest.from_bytes(layer), layer)
    store.link_blob(repo, Digest.from_bytes(config))
    store.link_blob(repo, Digest.from_bytes(layer))
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": Digest.from_bytes(config), "size": len(config)},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                            "digest": Digest.from_bytes(layer), "size": len(layer)}]}
    if annotations:
        manifest["annotations"] = annotations
    data = json.dumps(manifest).encode()
    digest = Digest.from_bytes(data)
    store.put_manifest(repo, digest, OCI_MANIFEST, data)
    store.set_tag(repo, tag, digest)
    return digest, data


def test_describer_reads_the_label_of_latest(tmp_path):
    store = FilesystemStorage(tmp_path)
    _put_image(store, "a", "old", {"org.opencontainers.image.description": "old one"})
    _put_image(store, "a", "latest", {"org.opencontainers.image.description": "the latest"})
    _put_image(store, "b", "v1", annotations={"org.opencontainers.image.description": "from annotation"})
    info = Describer(store).info("a")
    assert info == RepoInfo("a", "the latest", ("latest", "old"))
    assert Describer(store).info("b").description == "from annotation"
    assert Describer(store).info("nothing").description == ""


def test_gc_marks_index_children_and_sweeps_the_rest(tmp_path):
    store = FilesystemStorage(tmp_path)
    child, child_bytes = _put_image(store, "app", "child")
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": child, "size": len(child_bytes)}]}).encode()
    store.put_manifest("app", Digest.from_bytes(index), OCI_INDEX, index)
    store.delete_tag("app", "child")
    store.delete_manifest("app", child)  # only the index refers to it now
    gone, _ = _put_image(store, "app", "gone")
    store.delete_manifest("app", gone)
    orphan = b"orphan"
    store.put_blob(Digest.from_bytes(orphan), orphan)
    store.link_blob("app", Digest.from_bytes(orphan))
    before = set(store.list_blobs())
    report = collect(store, dry_run=True)
    assert set(store.list_blobs()) == before
    expected = {gone, Digest.from_bytes(orphan), Digest.from_bytes(b"layer-appgone")}
    assert set(report.deleted) == expected
    report = collect(store)
    assert set(store.list_blobs()) == before - expected
    assert store.stat_blob(child) is not None and store.stat_blob(Digest.from_bytes(b"layer-appchild"))
    assert not store.has_blob_link("app", Digest.from_bytes(orphan))


def test_manifest_parse():
    parsed = mf.parse(json.dumps({"schemaVersion": 2, "config": {
        "mediaType": "application/vnd.example+type", "digest": "sha256:" + "a" * 64, "size": 2},
        "layers": [{"mediaType": "x/y", "digest": "sha256:" + "b" * 64, "size": 3, "urls": ["http://x"]}],
        "artifactType": "application/vnd.example.sig"}).encode(), OCI_MANIFEST)
    assert parsed.media_type == OCI_MANIFEST and parsed.blobs[1].foreign and parsed.artifact_type
    desc = mf.referrer_descriptor(parsed, Digest("sha256:" + "c" * 64), 10)
    assert desc["artifactType"] == "application/vnd.example.sig"
    for bad in (b"[]", b'{"schemaVersion": 1}', b'{"schemaVersion": 2, "mediaType": "text/plain"}',
                b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", '
                b'"config": {"mediaType": "a/b", "digest": "sha256:zz", "size": 1}}',
                b'{"schemaVersion": 2, "manifests": [{"mediaType": "a/b", "digest": "sha256:' + b"a" * 64
                + b'", "size": -1}]}'):
        with pytest.raises(RegistryError) as exc:
            mf.parse(bad, None)
        assert exc.value.code == "MANIFEST_INVALID"
    assert mf.base_media_type("Application/JSON; charset=utf-8") == "application/json"


def test_config_file(tmp_path):
    (tmp_path / "c.yaml").write_text("""
version: 1
addr: 0.0.0.0:5001
root: data
tls: {certificate: c.pem, key: k.pem}
storage: {delete: false, upload_ttl: 60}
auth:
  mode: token
  htpasswd: htpasswd
  anonymous: [pull]
  access:
    - {account: alice, repository: "*", actions: ["*"]}
notifications:
  - http://127.0.0.1:9/x
  - {url: "https://h/y", headers: {X-A: [1, 2]}, retries: 2}
""")
    config = load_config(tmp_path / "c.yaml")
    assert config.addr == "0.0.0.0:5001" and config.root == tmp_path / "data"
    assert config.tls_cert == tmp_path / "c.pem" and not config.delete_enabled and config.upload_ttl == 60
    assert config.auth is not None and config.auth.mode == "token"
    assert config.auth.access is not None and config.auth.access[0].actions == {"pull", "push", "delete"}
    assert [e.url for e in config.notifications] == ["http://127.0.0.1:9/x", "https://h/y"]
    assert config.notifications[1].headers == {"X-A": "1, 2"} and config.notifications[1].retries == 2
    for bad, message in (({"nope": 1}, "unknown key"), ({"version": 2}, "version"),
                         ({"auth": {"mode": "basic"}}, "htpasswd"),
                         ({"auth": {"htpasswd": "h", "anonymous": ["fly"]}}, "unknown action"),
                         ({"notifications": ["ftp://x"]}, "http"),
                         ({"storage": {"delete": "yes"}}, "true or false")):
        with pytest.raises(InvalidArgument, match=message):
            parse_config(bad, tmp_path)
    (tmp_path / "bad.yaml").write_text("a: [")
    with pytest.raises(InvalidArgument, match="YAML"):
        load_config(tmp_path / "bad.yaml")
