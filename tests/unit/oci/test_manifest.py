"""Unit tests for pallet.oci.manifest and descriptor: OCI and Docker schema 2 documents, platforms."""

from __future__ import annotations

import json

import pytest

from pallet.errors import InvalidArgument, NotFound, NotSupported
from pallet.oci import mediatypes as mt
from pallet.oci.descriptor import Descriptor, Platform
from pallet.oci.digest import Digest
from pallet.oci.manifest import (
    History,
    ImageConfig,
    Index,
    Manifest,
    check_image,
    compatible_platforms,
    history_with_layers,
    host_platform,
    parse_any,
    parse_config,
    parse_index,
    parse_manifest,
    platform_matches,
    select_manifest,
)

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64
C = "sha256:" + "c" * 64

# The example of ../shared/specs/oci-image/manifest.md
OCI_MANIFEST = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
               "digest": "sha256:b5b2b2c507a0944348e0303114d8d93aaaa081732b86451d9bce1f432a537bc7",
               "size": 7023},
    "layers": [
        {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
         "digest": "sha256:9834876dcfb05cb167a5c24953eba58c4ac89b1adf57f28f2f9d09af107ee8f0", "size": 32654},
        {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
         "digest": "sha256:3c3a4604a545cdc127456d94e421cd355bca5b528f4a9c1905b15da2eb4a4c6b", "size": 16724},
    ],
    "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": "sha256:5b0bcabd1ed22e9fb1310cf6c2dec7cdef19f0ad69efa1f392e94a4333501270",
                "size": 7682},
    "annotations": {"com.example.key1": "value1"},
}

DOCKER_MANIFEST = {
    "schemaVersion": 2,
    "mediaType": mt.DOCKER_MANIFEST,
    "config": {"mediaType": mt.DOCKER_CONFIG, "size": 1470, "digest": A},
    "layers": [{"mediaType": mt.DOCKER_LAYER_GZIP, "size": 2, "digest": B},
               {"mediaType": mt.DOCKER_FOREIGN_LAYER_GZIP, "size": 3, "digest": C,
                "urls": ["https://example.com/layer"]}],
}

DOCKER_LIST = {
    "schemaVersion": 2,
    "mediaType": mt.DOCKER_MANIFEST_LIST,
    "manifests": [
        {"mediaType": mt.DOCKER_MANIFEST, "size": 7143, "digest": A,
         "platform": {"architecture": "ppc64le", "os": "linux"}},
        {"mediaType": mt.DOCKER_MANIFEST, "size": 7682, "digest": B,
         "platform": {"architecture": "amd64", "os": "linux", "features": ["sse4"]}},
    ],
}

CONFIG = {
    "created": "2015-10-31T22:22:56.015925234Z",
    "author": "Alyssa P. Hacker <alyspdev@example.com>",
    "architecture": "amd64",
    "os": "linux",
    "config": {"User": "alice", "ExposedPorts": {"8080/tcp": {}}, "Env": ["PATH=/bin"],
               "Entrypoint": ["/bin/my-app-binary"], "Cmd": ["--foreground"],
               "Volumes": {"/var/job-result-data": {}}, "WorkingDir": "/home/alice",
               "Labels": {"com.example.project": "x"}, "StopSignal": "SIGTERM"},
    "rootfs": {"diff_ids": [A, B], "type": "layers"},
    "history": [
        {"created": "2015-10-31T22:22:54.690851953Z", "created_by": "/bin/sh -c #(nop) ADD file in /"},
        {"created": "2015-10-31T22:22:55.613815829Z", "created_by": "/bin/sh -c #(nop) CMD [\"sh\"]",
         "empty_layer": True},
        {"created": "2015-10-31T22:22:56Z", "created_by": "/bin/sh -c apk add curl"},
    ],
    "container_config": {"Hostname": "x"},
    "docker_version": "1.8.2",
}


def _b(obj) -> bytes:
    return json.dumps(obj).encode()


def test_descriptor_round_trip_with_all_fields():
    obj = {"mediaType": mt.OCI_MANIFEST, "digest": A, "size": 7,
           "urls": ["https://example.com/x"], "annotations": {"k": "v"},
           "platform": {"architecture": "arm64", "os": "linux", "os.version": "1", "os.features": ["f"],
                        "variant": "v8"}, "artifactType": "application/vnd.example+type"}
    d = Descriptor.from_json(obj)
    assert d.platform == Platform("arm64", "linux", "v8", "1", ("f",))
    assert d.to_json() == obj
    assert hash(d) == hash(Descriptor(mt.OCI_MANIFEST, Digest(A), 7, platform=d.platform,
                                      urls=("https://example.com/x",),
                                      artifact_type="application/vnd.example+type"))
    assert Descriptor(mt.OCI_CONFIG, A, 1).to_json() == {"mediaType": mt.OCI_CONFIG, "digest": A, "size": 1}


@pytest.mark.parametrize(("obj", "field"), [
    ({"digest": A, "size": 1}, "mediaType"),
    ({"mediaType": "not a type", "digest": A, "size": 1}, "mediaType"),
    ({"mediaType": mt.OCI_CONFIG, "size": 1}, "digest"),
    ({"mediaType": mt.OCI_CONFIG, "digest": "sha256:../x", "size": 1}, "digest"),
    ({"mediaType": mt.OCI_CONFIG, "digest": A, "size": -1}, "size"),
    ({"mediaType": mt.OCI_CONFIG, "digest": A, "size": True}, "size"),
    ({"mediaType": mt.OCI_CONFIG, "digest": A, "size": "1"}, "size"),
    ({"mediaType": mt.OCI_CONFIG, "digest": A, "size": 1, "annotations": {"a": 1}}, "annotations"),
    ({"mediaType": mt.OCI_CONFIG, "digest": A, "size": 1, "urls": "x"}, "urls"),
    ({"mediaType": mt.OCI_CONFIG, "digest": A, "size": 1, "platform": {"os": "linux"}}, "architecture"),
])
def test_descriptor_errors_name_the_field(obj, field):
    with pytest.raises(InvalidArgument, match=field):
        Descriptor.from_json(obj)


def test_parse_oci_manifest_from_spec():
    m = parse_manifest(_b(OCI_MANIFEST))
    assert m.media_type == mt.OCI_MANIFEST
    assert m.config.size == 7023 and len(m.layers) == 2
    assert m.subject is not None and m.annotations == {"com.example.key1": "value1"}
    assert parse_manifest(m.serialize()) == m
    assert json.loads(m.serialize()) == OCI_MANIFEST


def test_oci_manifest_without_media_type_field():
    obj = dict(OCI_MANIFEST)
    del obj["mediaType"]
    assert parse_manifest(_b(obj), mt.OCI_MANIFEST).media_type == mt.OCI_MANIFEST
    with pytest.raises(InvalidArgument, match="mediaType"):
        parse_manifest(_b(obj))


def test_parse_docker_manifest():
    m = parse_manifest(_b(DOCKER_MANIFEST))
    assert m.is_docker and m.layers[1].urls == ("https://example.com/layer",)
    assert mt.is_foreign_layer(m.layers[1].media_type)
    assert json.loads(m.serialize()) == DOCKER_MANIFEST


def test_docker_manifest_needs_media_type_in_document():
    obj = dict(DOCKER_MANIFEST)
    del obj["mediaType"]
    with pytest.raises(InvalidArgument, match="Docker"):
        parse_manifest(_b(obj), mt.DOCKER_MANIFEST)


def test_media_type_mismatch_refused():
    with pytest.raises(InvalidArgument, match="does not match"):
        parse_manifest(_b(OCI_MANIFEST), mt.DOCKER_MANIFEST)


def test_unknown_media_type_named():
    obj = dict(OCI_MANIFEST, mediaType="application/vnd.example.thing+json")
    with pytest.raises(InvalidArgument, match=r"application/vnd\.example\.thing"):
        parse_manifest(_b(obj))
    with pytest.raises(InvalidArgument, match=r"application/vnd\.example\.thing"):
        parse_any(_b(obj))


def test_schema1_not_supported():
    with pytest.raises(NotSupported):
        parse_manifest(_b({"schemaVersion": 1, "name": "x", "tag": "y", "fsLayers": []}))
    with pytest.raises(NotSupported):
        parse_any(b"{}", mt.DOCKER_MANIFEST_V1_SIGNED)


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda o: o.update(schemaVersion=3), "schemaVersion"),
    (lambda o: o.pop("config"), "config"),
    (lambda o: o.update(layers={}), "layers"),
    (lambda o: o["layers"][0].update(digest="sha256:abc"), r"layers\[0\].digest"),
    (lambda o: o["layers"][1].update(size=-5), r"layers\[1\].size"),
    (lambda o: o.update(annotations={"a": ["b"]}), "annotations"),
])
def test_manifest_errors_name_the_field(mutate, field):
    obj = json.loads(json.dumps(OCI_MANIFEST))
    mutate(obj)
    with pytest.raises(InvalidArgument, match=field):
        parse_manifest(_b(obj))


@pytest.mark.parametrize("data", [b"", b"not json", b"[]", b"\xff\xfe", b"{" * 10])
def test_garbage_is_invalid_argument(data):
    for parser in (parse_manifest, parse_index, parse_config, parse_any):
        with pytest.raises(InvalidArgument):
            parser(data)


def test_oversized_manifest_refused():
    with pytest.raises(InvalidArgument, match="allowed"):
        parse_manifest(b" " * (5 << 20))


def test_unknown_layer_types_are_kept_but_not_runnable():
    obj = json.loads(json.dumps(OCI_MANIFEST))
    obj["layers"][0]["mediaType"] = "application/vnd.example.layer"
    m = parse_manifest(_b(obj))
    cfg = parse_config(_b(dict(CONFIG, history=[])))
    with pytest.raises(InvalidArgument, match="unknown layer media type"):
        check_image(m, cfg)


def test_parse_docker_manifest_list_and_select():
    idx = parse_index(_b(DOCKER_LIST))
    assert idx.media_type == mt.DOCKER_MANIFEST_LIST
    assert select_manifest(idx, Platform("amd64", "linux")).digest == B
    assert select_manifest(idx, Platform("ppc64le", "linux")).digest == A
    with pytest.raises(NotFound, match=r"linux/arm64/v8.*available: linux/ppc64le, linux/amd64"):
        select_manifest(idx, Platform("arm64", "linux", "v8"))
    assert json.loads(idx.serialize())["manifests"][0] == DOCKER_LIST["manifests"][0]


def test_manifest_list_needs_platforms():
    obj = json.loads(json.dumps(DOCKER_LIST))
    del obj["manifests"][0]["platform"]
    with pytest.raises(InvalidArgument, match=r"manifests\[0\].platform"):
        parse_index(_b(obj))


def test_oci_index_without_media_type_and_parse_any():
    obj = {"schemaVersion": 2, "manifests": [{"mediaType": mt.OCI_MANIFEST, "digest": A, "size": 1}]}
    idx = parse_index(_b(obj))
    assert idx.media_type == mt.OCI_INDEX
    assert isinstance(parse_any(_b(obj)), Index)
    assert isinstance(parse_any(_b(OCI_MANIFEST)), Manifest)
    assert isinstance(parse_any(_b(DOCKER_LIST)), Index)
    with pytest.raises(InvalidArgument, match="index"):
        parse_manifest(_b(obj))


def _entry(digest, arch, variant=None, os="linux", media_type=mt.OCI_MANIFEST):
    return Descriptor(media_type, digest, 1, platform=Platform(arch, os, variant))


def test_select_prefers_exact_variant_then_first():
    entries = [_entry(A, "arm", "v6"), _entry(B, "arm", "v7"), _entry(C, "arm", "v7")]
    assert select_manifest(entries, Platform("arm", "linux", "v7")).digest == B
    assert select_manifest(entries, Platform("arm", "linux", "v6")).digest == A
    assert select_manifest(entries[:1], Platform("arm", "linux", "v7")).digest == A
    with pytest.raises(NotFound):
        select_manifest(entries[1:], Platform("arm", "linux", "v6"))


def test_select_arm64_variant_normalization():
    # arm64 without variant is v8; a host v8 matches both spellings
    assert select_manifest([_entry(A, "arm64")], Platform("arm64", "linux", "v8")).digest == A
    assert select_manifest([_entry(A, "arm64", "v8")], Platform("arm64", "linux")).digest == A


def test_select_skips_attestations_and_other_os():
    entries = [
        _entry(A, "unknown", os="unknown"),
        Descriptor("application/vnd.in-toto+json", Digest(C), 1, platform=Platform("amd64", "linux")),
        _entry(B, "amd64", os="windows"),
        _entry(C, "amd64"),
    ]
    assert select_manifest(entries, Platform("amd64", "linux")).digest == C


def test_host_platform():
    assert host_platform("x86_64") == Platform("amd64", "linux")
    assert host_platform("aarch64") == Platform("arm64", "linux", "v8")
    assert host_platform("armv7l") == Platform("arm", "linux", "v7")
    assert host_platform().os == "linux"
    assert platform_matches(Platform("amd64", "linux", "v1"), Platform("amd64", "linux", "v3"))
    assert not platform_matches(Platform("amd64", "linux", "v3"), Platform("amd64", "linux"))
    assert [str(p) for p in compatible_platforms(Platform("arm", "linux", "v7"))] == [
        "linux/arm/v7", "linux/arm/v6", "linux/arm/v5"]


def test_parse_config_with_history_and_docker_extras():
    cfg = parse_config(_b(CONFIG))
    assert cfg.platform == Platform("amd64", "linux")
    assert cfg.diff_ids == (Digest(A), Digest(B))
    assert cfg.history[1] == History(created="2015-10-31T22:22:55.613815829Z",
                                     created_by='/bin/sh -c #(nop) CMD ["sh"]', empty_layer=True)
    assert cfg.labels == {"com.example.project": "x"}
    assert cfg.extra == {"container_config": {"Hostname": "x"}, "docker_version": "1.8.2"}
    out = json.loads(cfg.serialize())
    assert out == CONFIG
    assert parse_config(cfg.serialize()) == cfg
    assert cfg.digest() == Digest.from_bytes(cfg.serialize())
    assert cfg.serialize() == cfg.serialize()  # deterministic


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda o: o.pop("architecture"), "architecture"),
    (lambda o: o.update(os=""), "os"),
    (lambda o: o.pop("rootfs"), "rootfs"),
    (lambda o: o["rootfs"].update(type="other"), "rootfs.type"),
    (lambda o: o["rootfs"].update(diff_ids=["nope"]), r"diff_ids\[0\]"),
    (lambda o: o["config"].update(Env="PATH=/bin"), "config.config.Env"),
    (lambda o: o["config"].update(Labels={"a": 1}), "Labels"),
    (lambda o: o["config"].update(User=0), "User"),
    (lambda o: o["history"][0].update(empty_layer="yes"), r"history\[0\].empty_layer"),
    (lambda o: o.update(history={}), "history"),
])
def test_config_errors_name_the_field(mutate, field):
    obj = json.loads(json.dumps(CONFIG))
    mutate(obj)
    with pytest.raises(InvalidArgument, match=field):
        parse_config(_b(obj))


def test_check_image_counts():
    cfg = parse_config(_b(CONFIG))
    m = Manifest(mt.OCI_MANIFEST, Descriptor(mt.OCI_CONFIG, A, 1),
                 (Descriptor(mt.OCI_LAYER_GZIP, A, 1), Descriptor(mt.OCI_LAYER_ZSTD, B, 1)))
    check_image(m, cfg)
    with pytest.raises(InvalidArgument, match="1 layers but the config has 2"):
        check_image(Manifest(m.media_type, m.config, m.layers[:1]), cfg)
    short_history = ImageConfig(cfg.architecture, cfg.os, diff_ids=cfg.diff_ids,
                                history=(History(created_by="x"),))
    check_image(m, short_history)  # tolerated, as Docker does
    with pytest.raises(InvalidArgument, match="not an image config"):
        check_image(Manifest(m.media_type, Descriptor("application/vnd.example+json", A, 1), m.layers), cfg)


def test_history_with_layers():
    cfg = parse_config(_b(CONFIG))
    assert [(h.created_by, d) for h, d in history_with_layers(cfg)] == [
        ("/bin/sh -c #(nop) ADD file in /", A), ('/bin/sh -c #(nop) CMD ["sh"]', None),
        ("/bin/sh -c apk add curl", B)]
    more = ImageConfig("amd64", "linux", diff_ids=(Digest(A),), history=(History(), History()))
    assert [d for _, d in history_with_layers(more)] == [A, None]


def test_minimal_config_serializes_in_spec_order():
    cfg = ImageConfig("arm64", "linux", diff_ids=(Digest(A),), variant="v8")
    assert cfg.serialize() == (b'{"architecture":"arm64","variant":"v8","os":"linux",'
                               b'"rootfs":{"type":"layers","diff_ids":["' + A.encode() + b'"]}}')


def test_layer_compression():
    assert mt.layer_compression(mt.OCI_LAYER) == "none"
    assert mt.layer_compression(mt.DOCKER_LAYER_GZIP) == "gzip"
    assert mt.layer_compression(mt.OCI_LAYER_ZSTD) == "zstd"
    with pytest.raises(InvalidArgument, match="application/x-nope"):
        mt.layer_compression("application/x-nope")
