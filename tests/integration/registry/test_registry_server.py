"""Pallet's registry server as a real process on 127.0.0.1, driven over HTTP for the spec's cases.

Spec: ../shared/specs/oci-distribution/spec.md. Each server runs in its own process with its root
in tmp_path; traffic stays on loopback (the webhook receiver is a local http.server too).
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from regserver_support import Server, digest_of, image, push_blob, push_image

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("registry") / "root").start()
    yield srv
    srv.stop()


def _start(tmp_path: Path, config: dict | None = None, **kw) -> Server:
    cfg = None
    if config is not None:
        cfg = tmp_path / "config.json"
        cfg.write_text(json.dumps(config))
    return Server(tmp_path / "root", cfg, **kw).start()


# -- basics and errors -----------------------------------------------------------------------------

def test_base_endpoint_and_errors(server):
    r = server.request("GET", "/v2/")
    assert r.status == 200 and r.headers["docker-distribution-api-version"] == "registry/2.0"
    r = server.request("GET", "/v2/UPPER/tags/list")
    assert r.status == 400 and r.error_code() == "NAME_INVALID"
    for bad in ("a/%2e%2e/b", "a//b", "-a", "a/_manifests", "a" * 256):
        r = server.request("GET", f"/v2/{bad}/tags/list")
        assert r.status == 400 and r.error_code() == "NAME_INVALID", bad
    r = server.request("GET", "/v2/nothere/tags/list")
    assert r.status == 404 and r.error_code() == "NAME_UNKNOWN"
    r = server.request("GET", "/v2/nothere/blobs/sha256:" + "0" * 64)
    assert r.status == 404 and r.error_code() == "BLOB_UNKNOWN"
    r = server.request("GET", "/v2/nothere/blobs/sha256:xyz")
    assert r.status == 400 and r.error_code() == "DIGEST_INVALID"
    r = server.request("PATCH", "/v2/x/manifests/latest")
    assert r.status == 405 and r.error_code() == "UNSUPPORTED"
    body = r.json()["errors"][0]
    assert set(body) >= {"code", "message"}


# -- blob uploads ----------------------------------------------------------------------------------

def test_post_then_put_and_blob_get_head_range(server):
    data = os.urandom(300_000)
    d = digest_of(data)
    r = server.request("POST", "/v2/up/mono/blobs/uploads/")
    assert r.status == 202 and r.headers["range"] == "0-0"
    location = r.headers["location"]
    assert location.startswith("/v2/up/mono/blobs/uploads/")
    r = server.request("PUT", f"{location}?digest={d}", data, {"Content-Type": "application/octet-stream"})
    assert r.status == 201, r
    assert r.headers["location"] == f"/v2/up/mono/blobs/{d}" and r.headers["docker-content-digest"] == d
    r = server.request("HEAD", f"/v2/up/mono/blobs/{d}")
    assert r.status == 200 and r.headers["content-length"] == str(len(data)) and r.body == b""
    assert r.headers["docker-content-digest"] == d
    r = server.request("GET", f"/v2/up/mono/blobs/{d}")
    assert r.status == 200 and r.body == data
    r = server.request("GET", f"/v2/up/mono/blobs/{d}", headers={"Range": "bytes=1000-1999"})
    assert r.status == 206 and r.body == data[1000:2000]
    assert r.headers["content-range"] == f"bytes 1000-1999/{len(data)}"
    r = server.request("GET", f"/v2/up/mono/blobs/{d}", headers={"Range": f"bytes={len(data) + 5}-"})
    assert r.status == 416
    # Another repository has not got it (no link) until it mounts it.
    assert server.request("HEAD", f"/v2/up/other/blobs/{d}").status == 404


def test_single_post_and_digest_mismatch_leaves_nothing(server):
    data = b"monolithic" * 1000
    push_blob(server, "up/single", data)
    wrong = digest_of(b"something else")
    r = server.request("POST", f"/v2/up/single/blobs/uploads/?digest={wrong}", data)
    assert r.status == 400 and r.error_code() == "DIGEST_INVALID"
    assert server.request("HEAD", f"/v2/up/single/blobs/{wrong}").status == 404
    # POST+PUT with a wrong digest: refused, and the session is gone.
    location = server.request("POST", "/v2/up/single/blobs/uploads/").headers["location"]
    r = server.request("PUT", f"{location}?digest={wrong}", b"abc")
    assert r.status == 400 and r.error_code() == "DIGEST_INVALID"
    assert server.request("GET", location).status == 404
    assert not any(server.root.joinpath("uploads").iterdir())
    r = server.request("POST", "/v2/up/single/blobs/uploads/?digest=md5:abc")
    assert r.status == 400 and r.error_code() == "DIGEST_INVALID"
    r = server.request("POST", "/v2/up/single/blobs/uploads/?digest-algorithm=md5")
    assert r.status == 400 and r.error_code() == "DIGEST_INVALID"


def test_chunked_upload_order_status_and_cancel(server):
    data = os.urandom(5 << 20)
    d = digest_of(data)
    r = server.request("POST", "/v2/up/chunks/blobs/uploads/", b"", {"Content-Length": "0"})
    location = r.headers["location"]
    step = 2 << 20
    r = server.request("PATCH", location, data[:step],
                       {"Content-Range": f"0-{step - 1}", "Content-Type": "application/octet-stream"})
    assert r.status == 202 and r.headers["range"] == f"0-{step - 1}"
    location = r.headers["location"]
    # Out of order: 416, and the session is unchanged.
    r = server.request("PATCH", location, data[step + 10:2 * step],
                       {"Content-Range": f"{step + 10}-{2 * step - 1}"})
    assert r.status == 416 and r.error_code() == "BLOB_UPLOAD_INVALID"
    r = server.request("GET", location)
    assert r.status == 204 and r.headers["range"] == f"0-{step - 1}"
    # Content-Length disagreeing with Content-Range.
    r = server.request("PATCH", location, data[step:step + 10], {"Content-Range": f"{step}-{step + 99}"})
    assert r.status == 416
    r = server.request("PATCH", location, data[step:2 * step], {"Content-Range": f"{step}-{2 * step - 1}"})
    assert r.status == 202 and r.headers["range"] == f"0-{2 * step - 1}"
    # The last chunk in the closing PUT.
    r = server.request("PUT", f"{location}?digest={d}", data[2 * step:],
                       {"Content-Range": f"{2 * step}-{len(data) - 1}"})
    assert r.status == 201, r
    assert server.request("GET", f"/v2/up/chunks/blobs/{d}").body == data
    # Cancel.
    location = server.request("POST", "/v2/up/chunks/blobs/uploads/").headers["location"]
    server.request("PATCH", location, b"x" * 100)
    r = server.request("DELETE", location)
    assert r.status == 204
    r = server.request("GET", location)
    assert r.status == 404 and r.error_code() == "BLOB_UPLOAD_UNKNOWN"
    # A session belongs to its repository.
    location = server.request("POST", "/v2/up/chunks/blobs/uploads/").headers["location"]
    other = location.replace("/up/chunks/", "/up/elsewhere/")
    assert server.request("GET", other).status == 404
    assert server.request("GET", location.rsplit("/", 1)[0] + "/../../x").status in (400, 404)


def _raw_partial_patch(server: Server, location: str, declared: int, sent: bytes) -> socket.socket:
    """A PATCH that promises `declared` bytes and sends only `sent`; returns the open socket."""
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(f"PATCH {location} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {declared}\r\n"
                 f"Content-Type: application/octet-stream\r\n\r\n".encode() + sent)
    return sock


def _wait_size(server: Server, location: str, size: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = server.request("GET", location)
        if r.headers.get("range") == f"0-{size - 1}":
            return
        time.sleep(0.05)
    raise AssertionError(f"upload did not reach {size} bytes: {r.headers}")


def test_truncated_chunk_is_dropped_whole(server):
    location = server.request("POST", "/v2/up/trunc/blobs/uploads/").headers["location"]
    first = os.urandom(1000)
    assert server.request("PATCH", location, first).status == 202
    sock = _raw_partial_patch(server, location, 1 << 20, os.urandom(300_000))
    time.sleep(0.3)
    sock.close()  # the client goes away mid-chunk
    _wait_size(server, location, len(first))
    rest = os.urandom(500)
    r = server.request("PUT", f"{location}?digest={digest_of(first + rest)}", rest)
    assert r.status == 201, r


def test_cross_repository_mount(server):
    data = os.urandom(10_000)
    d = push_blob(server, "mount/src", data)
    r = server.request("POST", f"/v2/mount/dst/blobs/uploads/?mount={d}&from=mount/src")
    assert r.status == 201 and r.headers["location"] == f"/v2/mount/dst/blobs/{d}"
    assert server.request("GET", f"/v2/mount/dst/blobs/{d}").body == data
    # Unknown blob, or a source without it: a new upload session instead (202).
    missing = digest_of(b"not pushed")
    r = server.request("POST", f"/v2/mount/dst/blobs/uploads/?mount={missing}&from=mount/src")
    assert r.status == 202 and "/blobs/uploads/" in r.headers["location"]
    r = server.request("POST", f"/v2/mount/dst/blobs/uploads/?mount={d}&from=../../etc")
    assert r.status == 202


def test_parallel_uploads_and_repository_isolation(server):
    from concurrent.futures import ThreadPoolExecutor

    blobs = [os.urandom(200_000 + i) for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        digests = list(pool.map(lambda b: push_blob(server, "par/app", b), blobs))
    for data, d in zip(blobs, digests):
        assert server.request("GET", f"/v2/par/app/blobs/{d}").body == data
    # Blobs of another repository do not satisfy a manifest here, nor are they served here.
    _, manifest = image(blobs[:1])
    push_blob(server, "par/other", b"unrelated")
    r = server.request("PUT", "/v2/par/other/manifests/v1", manifest, {"Content-Type": OCI_MANIFEST})
    assert r.status == 400 and r.error_code() == "MANIFEST_BLOB_UNKNOWN"
    assert server.request("HEAD", f"/v2/par/other/blobs/{digests[0]}").status == 404


def test_blob_delete(server):
    d = push_blob(server, "del/blob", b"to delete")
    r = server.request("DELETE", f"/v2/del/blob/blobs/{d}")
    assert r.status == 202
    assert server.request("HEAD", f"/v2/del/blob/blobs/{d}").status == 404
    r = server.request("DELETE", f"/v2/del/blob/blobs/{d}")
    assert r.status == 404 and r.error_code() == "BLOB_UNKNOWN"


# -- manifests -------------------------------------------------------------------------------------

def test_manifest_push_pull_by_tag_and_digest(server):
    layer = os.urandom(4000)
    _, manifest = image([layer])
    digest = push_image(server, "man/img", "v1", [layer])
    assert digest == digest_of(manifest)
    for ref in ("v1", digest):
        r = server.request("GET", f"/v2/man/img/manifests/{ref}", headers={"Accept": OCI_MANIFEST})
        assert r.status == 200 and r.body == manifest
        assert r.headers["content-type"] == OCI_MANIFEST and r.headers["docker-content-digest"] == digest
        r = server.request("HEAD", f"/v2/man/img/manifests/{ref}")
        assert r.status == 200 and r.headers["content-length"] == str(len(manifest)) and r.body == b""
    # A manifest's digest is also a blob of its repository.
    assert server.request("GET", f"/v2/man/img/blobs/{digest}").body == manifest
    r = server.request("GET", "/v2/man/img/manifests/v2")
    assert r.status == 404 and r.error_code() == "MANIFEST_UNKNOWN"
    # Docker schema 2 keeps its own type.
    ddigest = push_image(server, "man/img", "docker", [layer], media_type=DOCKER_MANIFEST)
    r = server.request("GET", "/v2/man/img/manifests/docker", headers={"Accept": DOCKER_MANIFEST})
    assert r.headers["content-type"] == DOCKER_MANIFEST and r.headers["docker-content-digest"] == ddigest
    # An OCI manifest asked for by tag with only the Docker type accepted: not served.
    r = server.request("GET", "/v2/man/img/manifests/v1", headers={"Accept": DOCKER_MANIFEST})
    assert r.status == 404 and r.error_code() == "MANIFEST_UNKNOWN"


def test_manifest_refusals(server):
    layer = os.urandom(100)
    _, manifest = image([layer])
    r = server.request("PUT", "/v2/man/bad/manifests/v1", manifest, {"Content-Type": OCI_MANIFEST})
    assert r.status == 400 and r.error_code() == "MANIFEST_BLOB_UNKNOWN"
    assert server.request("GET", "/v2/man/bad/manifests/v1").status == 404
    r = server.request("PUT", "/v2/man/bad/manifests/v1", b"{not json", {"Content-Type": OCI_MANIFEST})
    assert r.status == 400 and r.error_code() == "MANIFEST_INVALID"
    r = server.request("PUT", "/v2/man/bad/manifests/v1", manifest, {"Content-Type": DOCKER_MANIFEST})
    assert r.status == 400 and r.error_code() == "MANIFEST_INVALID"  # mediaType vs Content-Type
    big = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "pad": "x" * (4 << 20)}).encode()
    r = server.request("PUT", "/v2/man/bad/manifests/v1", big, {"Content-Type": OCI_MANIFEST})
    assert r.status == 413 and r.error_code() == "MANIFEST_INVALID"
    r = server.request("PUT", f"/v2/man/bad/manifests/{digest_of(b'other')}", manifest,
                       {"Content-Type": OCI_MANIFEST})
    assert r.status == 400 and r.error_code() == "DIGEST_INVALID"
    r = server.request("PUT", "/v2/man/bad/manifests/bad:tag:x", manifest, {"Content-Type": OCI_MANIFEST})
    assert r.status == 400
    r = server.request("PUT", "/v2/man/bad/manifests/.tag", manifest, {"Content-Type": OCI_MANIFEST})
    assert r.status == 400 and r.error_code() == "MANIFEST_INVALID"


def test_index_negotiation_tags_param_and_delete(server):
    layer = os.urandom(500)
    child = push_image(server, "man/multi", "child", [layer])
    _, child_bytes = image([layer])
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": child, "size": len(child_bytes),
         "platform": {"architecture": "amd64", "os": "linux"}}]}).encode()
    idx = digest_of(index)
    r = server.request("PUT", f"/v2/man/multi/manifests/{idx}?tag=1.0&tag=latest", index,
                       {"Content-Type": OCI_INDEX})
    assert r.status == 201 and r.all("OCI-Tag") == ["1.0", "latest"]
    r = server.request("GET", "/v2/man/multi/manifests/latest",
                       headers={"Accept": f"{OCI_INDEX}, {OCI_MANIFEST}"})
    assert r.headers["content-type"] == OCI_INDEX and r.body == index
    if os.uname().machine == "x86_64":  # the child is amd64
        r = server.request("GET", "/v2/man/multi/manifests/latest", headers={"Accept": OCI_MANIFEST})
        assert r.status == 200 and r.headers["docker-content-digest"] == child
    # An index naming a manifest the repository lacks.
    bad = index.replace(child.encode(), digest_of(b"nope").encode())
    r = server.request("PUT", "/v2/man/multi/manifests/bad", bad, {"Content-Type": OCI_INDEX})
    assert r.status == 400 and r.error_code() == "MANIFEST_BLOB_UNKNOWN"
    # Delete a tag, then the manifest by digest (which takes its other tags along).
    assert server.request("DELETE", "/v2/man/multi/manifests/1.0").status == 202
    assert server.request("GET", "/v2/man/multi/manifests/1.0").status == 404
    assert server.request("GET", "/v2/man/multi/manifests/latest").status == 200
    assert server.request("DELETE", f"/v2/man/multi/manifests/{idx}").status == 202
    assert server.request("GET", "/v2/man/multi/manifests/latest").status == 404
    assert server.request("GET", f"/v2/man/multi/manifests/{idx}").status == 404
    r = server.request("DELETE", f"/v2/man/multi/manifests/{idx}")
    assert r.status == 404 and r.error_code() == "MANIFEST_UNKNOWN"
    assert server.request("GET", "/v2/man/multi/tags/list").json()["tags"] == ["child"]


def test_tags_and_catalog_pagination(server):
    layer = os.urandom(64)
    tags = ["b", "a", "c", "A1", "d"]
    for tag in tags:
        push_image(server, "page/one", tag, [layer])
    r = server.request("GET", "/v2/page/one/tags/list")
    assert r.json() == {"name": "page/one", "tags": sorted(tags)}
    r = server.request("GET", "/v2/page/one/tags/list?n=2")
    assert r.json()["tags"] == ["A1", "a"]
    assert r.headers["link"] == '</v2/page/one/tags/list?last=a&n=2>; rel="next"'
    r = server.request("GET", "/v2/page/one/tags/list?n=2&last=a")
    assert r.json()["tags"] == ["b", "c"]
    r = server.request("GET", "/v2/page/one/tags/list?n=2&last=c")
    assert r.json()["tags"] == ["d"] and "link" not in r.headers
    r = server.request("GET", "/v2/page/one/tags/list?n=0")
    assert r.json()["tags"] == [] and "link" not in r.headers
    r = server.request("GET", "/v2/page/one/tags/list?n=-1")
    assert r.status == 400
    push_blob(server, "page/two", b"x")
    repos = server.request("GET", "/v2/_catalog").json()["repositories"]
    assert "page/one" in repos and "page/two" in repos and repos == sorted(repos)
    seen, path = [], "/v2/_catalog?n=3"
    while path:
        r = server.request("GET", path)
        seen += r.json()["repositories"]
        link = r.headers.get("link")
        path = link[1:link.index(">")] if link else ""
    assert seen == repos


def test_referrers(server):
    layer = os.urandom(300)
    subject = push_image(server, "ref/app", "v1", [layer])
    _, subject_bytes = image([layer])
    empty = b"{}"
    push_blob(server, "ref/app", empty)
    sbom = os.urandom(50)
    push_blob(server, "ref/app", sbom)
    artifact = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.sbom.v1",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": digest_of(empty), "size": 2},
        "layers": [{"mediaType": "application/spdx+json", "digest": digest_of(sbom), "size": len(sbom)}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": len(subject_bytes)},
        "annotations": {"org.example.kind": "sbom"}}).encode()
    r = server.request("PUT", f"/v2/ref/app/manifests/{digest_of(artifact)}", artifact,
                       {"Content-Type": OCI_MANIFEST})
    assert r.status == 201 and r.headers["oci-subject"] == subject
    r = server.request("GET", f"/v2/ref/app/referrers/{subject}")
    assert r.status == 200 and r.headers["content-type"].startswith(OCI_INDEX)
    assert r.json()["manifests"] == [{
        "mediaType": OCI_MANIFEST, "digest": digest_of(artifact), "size": len(artifact),
        "artifactType": "application/vnd.example.sbom.v1", "annotations": {"org.example.kind": "sbom"}}]
    r = server.request("GET", f"/v2/ref/app/referrers/{subject}?artifactType=application/x-other")
    assert r.json()["manifests"] == [] and r.headers["oci-filters-applied"] == "artifactType"
    # A subject that does not exist: an empty list, never 404; a bad digest: 400.
    r = server.request("GET", f"/v2/ref/app/referrers/{digest_of(b'none')}")
    assert r.status == 200 and r.json()["manifests"] == []
    assert server.request("GET", "/v2/ref/app/referrers/sha256:zz").status == 400
    # Deleting the referrer takes it off the list.
    assert server.request("DELETE", f"/v2/ref/app/manifests/{digest_of(artifact)}").status == 202
    assert server.request("GET", f"/v2/ref/app/referrers/{subject}").json()["manifests"] == []


def test_search(server):
    layer = os.urandom(100)
    push_image(server, "search/webserver", "latest", [layer],
               labels={"org.opencontainers.image.description": "A tiny web server"})
    push_image(server, "tools/web", "stable", [layer])
    push_image(server, "misc/thing", "webbish", [layer])
    r = server.request("GET", "/v1/search?q=web&n=25")
    body = r.json()
    names = [x["name"] for x in body["results"]]
    assert names[:2] == ["tools/web", "search/webserver"] and "misc/thing" in names
    assert body["query"] == "web" and body["page"] == 1 and body["page_size"] == 25
    assert body["num_results"] == len(names) and body["num_pages"] == 1
    hit = body["results"][1]
    assert hit == {"name": "search/webserver", "description": "A tiny web server", "star_count": 0,
                   "is_official": False, "is_automated": False}
    r = server.request("GET", "/v1/search?q=tiny")
    assert [x["name"] for x in r.json()["results"]] == ["search/webserver"]
    r = server.request("GET", "/v1/search?q=web&n=1&page=2")
    assert r.json()["num_pages"] == len(names) and len(r.json()["results"]) == 1
    assert server.request("GET", "/v1/search?q=web&n=0").status == 400


# -- crash safety and gc ---------------------------------------------------------------------------

def test_sigkill_mid_upload_restarts_consistent(tmp_path):
    srv = _start(tmp_path)
    try:
        data = os.urandom(3 << 20)
        location = srv.request("POST", "/v2/crash/app/blobs/uploads/").headers["location"]
        assert srv.request("PATCH", location, data[:1 << 20]).status == 202
        sock = _raw_partial_patch(srv, location, 2 << 20, data[1 << 20:(1 << 20) + 700_000])
        time.sleep(0.5)
        srv.kill()
        sock.close()
        assert not any((tmp_path / "root" / "blobs").rglob("*")) or all(
            p.is_dir() for p in (tmp_path / "root" / "blobs").rglob("*"))
        srv.start()  # the lock died with the process; start-up recovers
        assert not any((tmp_path / "root" / "tmp").iterdir())
        r = srv.request("GET", location)
        assert r.status == 204
        size = int(r.headers["range"].split("-")[1]) + 1
        assert (1 << 20) <= size <= (1 << 20) + 700_000  # whatever reached the disk, in order
        r = srv.request("HEAD", f"/v2/crash/app/blobs/{digest_of(data)}")
        assert r.status == 404
        # The client resumes from the offset the registry reports and finishes.
        r = srv.request("PUT", f"{location}?digest={digest_of(data)}", data[size:],
                        {"Content-Range": f"{size}-{len(data) - 1}"})
        assert r.status == 201, r
        assert srv.request("GET", f"/v2/crash/app/blobs/{digest_of(data)}").body == data
    finally:
        srv.stop()


def test_second_server_on_same_root_is_refused(tmp_path):
    srv = _start(tmp_path)
    try:
        proc = subprocess.run([sys.executable, "-m", "pallet.registry.server", "serve", "--addr",
                               "127.0.0.1:0", "--root", str(tmp_path / "root")],
                              capture_output=True, text=True, timeout=30, check=False)
        assert proc.returncode == 1 and "in use" in proc.stderr
    finally:
        srv.stop()


def test_gc_removes_unreferenced_blobs(tmp_path):
    srv = _start(tmp_path)
    shared, only_old, only_new = os.urandom(1000), os.urandom(1000), os.urandom(1000)
    try:
        old = push_image(srv, "gc/app", "old", [shared, only_old])
        push_image(srv, "gc/app", "new", [shared, only_new])
        orphan = push_blob(srv, "gc/app", b"pushed, never used")
        assert srv.request("DELETE", f"/v2/gc/app/manifests/{old}").status == 202
    finally:
        srv.stop()
    old_config, _ = image([shared, only_old])
    expected_gone = {digest_of(only_old), digest_of(old_config), old, orphan}
    gc = [sys.executable, "-m", "pallet.registry.server", "gc", "--root", str(tmp_path / "root")]
    dry = subprocess.run([*gc, "--dry-run"], capture_output=True, text=True, timeout=60, check=True)
    listed = {line.split()[-1] for line in dry.stdout.splitlines() if "would remove blob" in line}
    assert listed == expected_gone
    blobs = tmp_path / "root" / "blobs" / "sha256"
    assert all((blobs / d.split(":")[1]).exists() for d in expected_gone)
    subprocess.run(gc, capture_output=True, text=True, timeout=60, check=True)
    assert not any((blobs / d.split(":")[1]).exists() for d in expected_gone)
    srv.start()
    try:
        r = srv.request("GET", "/v2/gc/app/manifests/new")
        assert r.status == 200
        for layer in json.loads(r.body)["layers"]:
            assert srv.request("GET", f"/v2/gc/app/blobs/{layer['digest']}").status == 200
        assert srv.request("HEAD", f"/v2/gc/app/blobs/{digest_of(only_old)}").status == 404
        # gc refuses to run beside a live server.
        proc = subprocess.run(gc, capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 1 and "in use" in proc.stderr
    finally:
        srv.stop()


def test_delete_disabled(tmp_path):
    srv = _start(tmp_path, {"storage": {"delete": False}})
    try:
        digest = push_image(srv, "nodel/app", "v1", [b"layer"])
        r = srv.request("DELETE", f"/v2/nodel/app/manifests/{digest}")
        assert r.status == 405 and r.error_code() == "UNSUPPORTED"
        assert srv.request("GET", "/v2/nodel/app/manifests/v1").status == 200
    finally:
        srv.stop()


# -- webhooks --------------------------------------------------------------------------------------

class _Hook(http.server.BaseHTTPRequestHandler):
    received: list[dict] = []
    fail_first = 0

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if _Hook.fail_first > 0:
            _Hook.fail_first -= 1
            self.send_response(500)
            self.end_headers()
            return
        _Hook.received.append({"content_type": self.headers["Content-Type"], "body": json.loads(body)})
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_webhook_delivered_on_push_and_delete(tmp_path):
    _Hook.received, _Hook.fail_first = [], 1  # the first delivery fails: retried
    hook = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{hook.server_address[1]}/events"
    srv = _start(tmp_path, {"notifications": [{"url": url, "backoff": 0.1, "retries": 3}]})
    try:
        digest = push_image(srv, "hooks/app", "v1", [b"layer-bytes"])
        assert srv.request("DELETE", f"/v2/hooks/app/manifests/{digest}").status == 202

        def manifest_events():
            return [e for m in _Hook.received for e in m["body"]["events"]
                    if e["target"]["mediaType"] == OCI_MANIFEST]

        deadline = time.monotonic() + 10
        while len(manifest_events()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        push, delete = manifest_events()
        assert _Hook.received[0]["content_type"] == "application/vnd.docker.distribution.events.v1+json"
        assert push["action"] == "push" and delete["action"] == "delete"
        target = push["target"]
        assert target["digest"] == digest and target["repository"] == "hooks/app" and target["tag"] == "v1"
        assert target["url"].endswith(f"/v2/hooks/app/manifests/{digest}") and target["size"] > 0
        assert {"id", "timestamp", "action", "target"} <= set(push)
    finally:
        srv.stop()
        hook.shutdown()
        hook.server_close()


# -- auth ------------------------------------------------------------------------------------------

def _htpasswd(path: Path, users: dict[str, str]) -> Path:
    import bcrypt

    path.write_text("".join(f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(4)).decode()}\n"
                            for u, p in users.items()))
    return path


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _tls_pair(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=60)
    return cert, key


def test_basic_auth_over_tls(tmp_path):
    htpasswd = _htpasswd(tmp_path / "htpasswd", {"alice": "wonderland", "bob": "builder"})
    cert, key = _tls_pair(tmp_path)
    config = {"auth": {"mode": "basic", "htpasswd": str(htpasswd), "realm": "test realm",
                       "access": [{"account": "alice", "repository": "*", "actions": ["*"]},
                                  {"account": "anonymous", "repository": "team/*", "actions": ["pull"]},
                                  {"account": "bob", "repository": "bob/*", "actions": ["pull", "push"]}]}}
    srv = _start(tmp_path, config, extra=["--tls-cert", str(cert), "--tls-key", str(key)])
    srv.ssl_context = ssl.create_default_context(cafile=str(cert))
    try:
        assert srv.scheme == "https"
        r = srv.request("GET", "/v2/")
        assert r.status == 401 and r.headers["www-authenticate"] == 'Basic realm="test realm"'
        assert r.error_code() == "UNAUTHORIZED"
        r = srv.request("GET", "/v2/", headers=_basic("alice", "wrong"))
        assert r.status == 401
        assert srv.request("GET", "/v2/", headers=_basic("alice", "wonderland")).status == 200
        push_image(srv, "team/app", "v1", [b"x"], headers=_basic("alice", "wonderland"))
        # Anonymous pull is allowed, anonymous push is not.
        assert srv.request("GET", "/v2/team/app/manifests/v1").status == 200
        r = srv.request("POST", "/v2/team/app/blobs/uploads/")
        assert r.status == 401 and r.headers["www-authenticate"].startswith("Basic")
        # bob may push only under bob/.
        r = srv.request("POST", "/v2/team/app/blobs/uploads/", headers=_basic("bob", "builder"))
        assert r.status == 403 and r.error_code() == "DENIED"
        push_image(srv, "bob/tool", "v1", [b"y"], headers=_basic("bob", "builder"))
        r = srv.request("DELETE", "/v2/bob/tool/manifests/v1", headers=_basic("bob", "builder"))
        assert r.status == 403
        assert srv.request("GET", "/v2/bob/tool/manifests/v1").status == 401  # not anonymous's
        # Search and the catalog list only what the caller may pull.
        def found(headers=None):
            return [x["name"] for x in srv.request("GET", "/v1/search?q=", headers=headers).json()["results"]]

        assert found() == ["team/app"]
        assert found(_basic("bob", "builder")) == ["bob/tool"]
        assert found(_basic("alice", "wonderland")) == ["bob/tool", "team/app"]
        r = srv.request("GET", "/v2/_catalog", headers=_basic("bob", "builder"))
        assert r.json() == {"repositories": ["bob/tool"]}
    finally:
        srv.stop()


def test_token_auth(tmp_path):
    htpasswd = _htpasswd(tmp_path / "htpasswd", {"alice": "wonderland", "eve": "reader"})
    config = {"auth": {"mode": "token", "htpasswd": str(htpasswd), "service": "test-registry",
                       "anonymous": ["pull"],
                       "access": [{"account": "alice", "repository": "*", "actions": ["*"]},
                                  {"account": "eve", "repository": "*", "actions": ["pull"]}]}}
    srv = _start(tmp_path, config)
    try:
        r = srv.request("GET", "/v2/")
        assert r.status == 401
        realm = f"http://127.0.0.1:{srv.port}/token"
        assert r.headers["www-authenticate"] == f'Bearer realm="{realm}",service="test-registry"'
        r = srv.request("POST", "/v2/tok/app/blobs/uploads/")
        assert r.status == 401 and r.headers["www-authenticate"] == (
            f'Bearer realm="{realm}",service="test-registry",scope="repository:tok/app:pull,push"')

        def token(scope: str, creds: dict[str, str] | None = None) -> dict[str, str]:
            r = srv.request("GET", f"/token?service=test-registry&scope={scope}", headers=creds or {})
            assert r.status == 200, r
            body = r.json()
            assert set(body) == {"token", "access_token", "expires_in", "issued_at"}
            return {"Authorization": f"Bearer {body['token']}"}

        assert srv.request("GET", "/token?scope=repository:tok/app:pull",
                           headers=_basic("alice", "nope")).status == 401
        alice = token("repository:tok/app:pull,push", _basic("alice", "wonderland"))
        assert srv.request("GET", "/v2/", headers=alice).status == 200
        push_image(srv, "tok/app", "v1", [b"layer"], headers=alice)
        # eve gets a token, but only with pull: push is refused with insufficient_scope.
        eve = token("repository:tok/app:pull,push", _basic("eve", "reader"))
        assert srv.request("GET", "/v2/tok/app/manifests/v1", headers=eve).status == 200
        r = srv.request("POST", "/v2/tok/app/blobs/uploads/", headers=eve)
        assert r.status == 401 and 'error="insufficient_scope"' in r.headers["www-authenticate"]
        # Anonymous: a token with pull, no credentials needed.
        anon = token("repository:tok/app:pull")
        assert srv.request("GET", "/v2/tok/app/manifests/v1", headers=anon).status == 200
        # A forged token is refused.
        forged = alice["Authorization"][:-4] + "AAAA"
        r = srv.request("GET", "/v2/tok/app/manifests/v1", headers={"Authorization": forged})
        assert r.status == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]
        # The OAuth2 password grant (POST), as containerd asks first.
        form = b"grant_type=password&service=test-registry&client_id=t&username=alice&password=wonderland" \
            b"&scope=repository%3Atok%2Fapp%3Apull"
        r = srv.request("POST", "/token", form, {"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status == 200 and r.json()["scope"] == "repository:tok/app:pull"
        bearer = {"Authorization": f"Bearer {r.json()['access_token']}"}
        assert srv.request("GET", "/v2/tok/app/manifests/v1", headers=bearer).status == 200
        r = srv.request("POST", "/token", form.replace(b"wonderland", b"x"),
                        {"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status == 401
        # Catalog needs its own scope.
        assert srv.request("GET", "/v2/_catalog", headers=alice).status == 401
        cat = token("registry:catalog:*", _basic("alice", "wonderland"))
        assert srv.request("GET", "/v2/_catalog", headers=cat).json() == {"repositories": ["tok/app"]}
    finally:
        srv.stop()


def test_cli_verb_help():
    proc = subprocess.run([sys.executable, "-m", "pallet.cli.main", "registry", "--help"],
                          capture_output=True, text=True, timeout=30, check=True)
    assert "serve" in proc.stdout and "gc" in proc.stdout
