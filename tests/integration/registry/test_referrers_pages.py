"""The referrers API of Pallet's registry in pages (distribution-spec 1.1 "Listing Referrers":
a `Link: <...>; rel="next"` when the list does not fit one answer, the `artifactType` filter with
`OCI-Filters-Applied`), and the client following those pages."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pallet.image.service import ImageService
from pallet.registry.client import RegistryClient

sys.path.insert(0, str(Path(__file__).parent))
from regserver_support import Server, digest_of, image, push_blob, push_image

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
SBOM = "application/vnd.example.sbom.v1"
SIG = "application/vnd.example.signature.v1"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("registry") / "root").start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def subject(server: Server) -> tuple[str, dict[str, str]]:
    """An image with 7 referrers (4 SBOMs, 3 signatures); (subject digest, referrer -> type)."""
    layer = os.urandom(200)
    subject = push_image(server, "refs/app", "v1", [layer])
    _, subject_bytes = image([layer])
    empty = b"{}"
    push_blob(server, "refs/app", empty)
    kinds: dict[str, str] = {}
    for i in range(7):
        blob = os.urandom(40)
        push_blob(server, "refs/app", blob)
        kind = SBOM if i % 2 == 0 else SIG
        artifact = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": kind,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": digest_of(empty),
                       "size": 2},
            "layers": [{"mediaType": "application/octet-stream", "digest": digest_of(blob), "size": 40}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": len(subject_bytes)},
            "annotations": {"n": str(i)}}).encode()
        r = server.request("PUT", f"/v2/refs/app/manifests/{digest_of(artifact)}", artifact,
                           {"Content-Type": OCI_MANIFEST})
        assert r.status == 201, r
        kinds[digest_of(artifact)] = kind
    return subject, kinds


def _pages(server: Server, path: str) -> list[list[str]]:
    pages = []
    while path:
        r = server.request("GET", path)
        assert r.status == 200
        assert r.headers["content-type"].startswith("application/vnd.oci.image.index.v1+json")
        pages.append([d["digest"] for d in r.json()["manifests"]])
        link = r.headers.get("link", "")
        path = link[1:link.index(">")] if link else ""
        if link:
            assert link.endswith('>; rel="next"')
    return pages


def test_referrers_come_in_pages_in_digest_order(server, subject):
    digest, kinds = subject
    pages = _pages(server, f"/v2/refs/app/referrers/{digest}?n=3")
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [d for p in pages for d in p] == sorted(kinds)
    # Without n: one page (the server's page size is far above 7), no Link.
    r = server.request("GET", f"/v2/refs/app/referrers/{digest}")
    assert "link" not in r.headers and len(r.json()["manifests"]) == 7
    # An exact fit has no next page.
    assert [len(p) for p in _pages(server, f"/v2/refs/app/referrers/{digest}?n=7")] == [7]
    # A bad `last` is a bad request, as a bad subject digest is.
    assert server.request("GET", f"/v2/refs/app/referrers/{digest}?last=nope").status == 400


def test_the_filter_applies_before_paging_and_the_link_keeps_it(server, subject):
    digest, kinds = subject
    r = server.request("GET", f"/v2/refs/app/referrers/{digest}?artifactType={SBOM}&n=3")
    assert r.headers["oci-filters-applied"] == "artifactType"
    assert "artifactType=application%2Fvnd.example.sbom.v1" in r.headers["link"]
    pages = _pages(server, f"/v2/refs/app/referrers/{digest}?artifactType={SBOM}&n=3")
    assert [len(p) for p in pages] == [3, 1]
    assert [d for p in pages for d in p] == sorted(d for d, k in kinds.items() if k == SBOM)


def test_the_client_lists_referrers_with_and_without_a_filter(server, subject, tmp_path):
    # Following Link pages is tested against a fake registry (test_client_referrers.py).
    digest, kinds = subject
    svc = ImageService(tmp_path / "store", "overlay")
    try:
        client = RegistryClient(svc)
        ref = f"127.0.0.1:{server.port}/refs/app"
        everything = client.referrers(f"{ref}@{digest}")
        assert sorted(str(d.digest) for d in everything) == sorted(kinds)
        sigs = client.referrers(f"{ref}:v1", artifact_type=SIG)  # a tag resolves to its digest
        assert sorted(str(d.digest) for d in sigs) == sorted(d for d, k in kinds.items() if k == SIG)
        assert all(d.artifact_type == SIG for d in sigs)
    finally:
        svc.close()
