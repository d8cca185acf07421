"""The registry client against Debian's docker-registry on loopback: push, pull into a fresh store,
chunked uploads, cross-repository mounts, --all-tags, basic and bearer-token auth, and a pull
killed half way that resumes with only the rest transferred."""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pallet.errors import NotFound, PermissionDenied
from pallet.image.service import ImageService
from pallet.registry.client import RegistryClient, login, search
from pallet.registry.client.auth import AuthConfig

sys.path.insert(0, str(Path(__file__).parent))
from distreg_support import REGISTRY, DistRegistry, TokenFront

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="unpacking layers with overlay whiteouts needs root"),
    pytest.mark.skipif(not os.access(REGISTRY, os.X_OK), reason="needs Debian's docker-registry"),
    pytest.mark.skipif(not os.access("/bin/busybox", os.X_OK), reason="needs Debian's busybox-static"),
]


@pytest.fixture(scope="module")
def work() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="pallet-regc-"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def source(work: Path) -> Iterator[ImageService]:
    svc = ImageService(work / "source", "overlay")
    svc.bootstrap("busybox")
    try:
        yield svc
    finally:
        svc.close()


@pytest.fixture(scope="module")
def registry(work: Path) -> Iterator[DistRegistry]:
    with DistRegistry(work / "registry") as reg:
        yield reg


def fresh(work: Path, name: str) -> ImageService:
    return ImageService(work / name, "overlay")


def test_push_then_pull_into_a_fresh_store(work: Path, source: ImageService, registry: DistRegistry):
    name = f"{registry.host}/pallet/busybox:1"
    source.tag("busybox", name)
    pushed = RegistryClient(source).push(name)
    assert len(pushed) == 1 and pushed[0].tag == "1"
    assert pushed[0].digest == str(source.get(name).manifest_desc.digest)
    assert len(pushed[0].uploaded) == 2  # the layer and the config
    assert f"{registry.host}/pallet/busybox@{pushed[0].digest}" in source.inspect(name)["RepoDigests"]

    messages = []
    dest = fresh(work, "pulled")
    try:
        [res] = RegistryClient(dest).pull(name, progress=messages.append)
        assert res.updated and res.digest == pushed[0].digest
        assert res.image_id == str(source.get(name).id)
        info = dest.inspect(name)
        assert info["RepoDigests"] == [f"{registry.host}/pallet/busybox@{pushed[0].digest}"]
        assert info["RepoTags"] == [name]
        assert (Path(info["GraphDriver"]["Data"]["UpperDir"]) / "bin" / "busybox").exists()
        statuses = [m.status for m in messages]
        assert statuses[0] == "Pulling from pallet/busybox" and "Pull complete" in statuses
        assert statuses[-2:] == [f"Digest: {pushed[0].digest}", f"Status: Downloaded newer image for {name}"]

        # Again: nothing is transferred, and the image is up to date.
        messages.clear()
        [again] = RegistryClient(dest).pull(name, progress=messages.append)
        assert not again.updated and again.fetched == {}
        assert "Already exists" in [m.status for m in messages]
        assert messages[-1].status == f"Status: Image is up to date for {name}"

        # By digest, into the same store: the digest name is there, no new tag.
        [by_digest] = RegistryClient(dest).pull(f"{registry.host}/pallet/busybox@{pushed[0].digest}")
        assert by_digest.image_id == res.image_id

        # Removing the last tag takes the repository's digest reference with it, as dockerd does.
        removed = dest.remove(name)
        assert removed[:2] == [{"Untagged": name}, {"Untagged": info["RepoDigests"][0]}]
        assert removed[2] == {"Deleted": res.image_id}
    finally:
        dest.close()


def test_pull_errors_name_what_is_missing(work: Path, registry: DistRegistry):
    dest = fresh(work, "errors")
    try:
        with pytest.raises(NotFound, match=r"manifest for .*nothing:latest not found"):
            RegistryClient(dest).pull(f"{registry.host}/nothing")
        with pytest.raises(NotFound, match="An image does not exist locally"):
            RegistryClient(dest).push(f"{registry.host}/nothing:1")
    finally:
        dest.close()


def test_chunked_push_and_cross_repository_mount(work: Path, source: ImageService, registry: DistRegistry):
    first = f"{registry.host}/chunked/a:latest"
    _random_layer_image(source, first, 1 << 20)  # a layer no other repository has
    [r1] = RegistryClient(source, chunk_size=256 * 1024).push(first)  # 5 PATCHes, then PUT
    assert len(r1.uploaded) == 2
    second = f"{registry.host}/chunked/b:latest"
    source.tag(first, second)
    messages = []
    [r2] = RegistryClient(source).push(second, progress=messages.append)
    assert set(r2.mounted) == set(r1.uploaded) and not r2.uploaded
    assert any(m.status.startswith("Mounted from ") for m in messages)
    dest = fresh(work, "chunked")
    try:
        [res] = RegistryClient(dest).pull(second)
        assert res.image_id == str(source.get(first).id)
    finally:
        dest.close()


def test_all_tags(work: Path, source: ImageService, registry: DistRegistry):
    repo = f"{registry.host}/every/tag"
    for t in ("x", "y"):
        source.tag("busybox", f"{repo}:{t}")
    pushed = RegistryClient(source).push(repo)  # no tag: every local tag of the repository
    assert sorted(r.tag for r in pushed) == ["x", "y"]
    dest = fresh(work, "alltags")
    try:
        pulled = RegistryClient(dest).pull(repo, all_tags=True)
        assert sorted(r.name for r in pulled) == [f"{repo}:x", f"{repo}:y"]
        assert sorted(dest.inspect(f"{repo}:x")["RepoTags"]) == [f"{repo}:x", f"{repo}:y"]
    finally:
        dest.close()


def test_basic_auth(work: Path, source: ImageService):
    users = {"alice": "s3cret"}
    with DistRegistry(work / "basic", users=users) as reg:
        name = f"{reg.host}/private/busybox:latest"
        source.tag("busybox", name)
        with pytest.raises(PermissionDenied, match="unauthorized"):
            RegistryClient(source).push(name)
        with pytest.raises(PermissionDenied):
            RegistryClient(source).push(name, auth=AuthConfig("alice", "wrong"))
        with pytest.raises(PermissionDenied):
            login(AuthConfig("alice", "wrong", reg.host))
        assert login(AuthConfig("alice", "s3cret", reg.host)) == {"Status": "Login Succeeded",
                                                                   "IdentityToken": ""}
        [pushed] = RegistryClient(source).push(name, auth=AuthConfig("alice", "s3cret"))
        dest = fresh(work, "basic-pulled")
        try:
            with pytest.raises(PermissionDenied):
                RegistryClient(dest).pull(name)
            [res] = RegistryClient(dest).pull(name, auth=AuthConfig("alice", "s3cret"))
            assert res.digest == pushed.digest
        finally:
            dest.close()


def test_bearer_token_flow(work: Path, source: ImageService, registry: DistRegistry):
    users = {"bob": "hunter2"}
    with TokenFront(registry.host, users) as front:
        name = f"{front.host}/tokens/busybox:latest"
        source.tag("busybox", name)
        with pytest.raises(PermissionDenied, match="incorrect username or password"):
            RegistryClient(source).push(name, auth=AuthConfig("bob", "nope"))
        [pushed] = RegistryClient(source).push(name, auth=AuthConfig("bob", "hunter2"))
        scopes = {s for q in front.token_requests for s in q.get("scope", [])}
        assert "repository:tokens/busybox:pull,push" in scopes
        assert all(q.get("service") == ["pallet-test"] for q in front.token_requests)
        assert login(AuthConfig("bob", "hunter2", front.host))["Status"] == "Login Succeeded"
        dest = fresh(work, "token-pulled")
        try:
            [res] = RegistryClient(dest).pull(name, auth=AuthConfig("bob", "hunter2"))
            assert res.digest == pushed.digest
        finally:
            dest.close()


def _random_layer_image(svc: ImageService, name: str, size: int) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("random.bin")
        info.size = size
        tar.addfile(info, io.BytesIO(os.urandom(size)))
    buf.seek(0)
    svc.import_image(buf, name)


_PULL_AND_STALL = """
import sys, time
from pallet.image.service import ImageService
from pallet.registry.client import RegistryClient
root, name, threshold = sys.argv[1], sys.argv[2], int(sys.argv[3])
t0 = time.monotonic()
def progress(p):
    # Progress is reported from the downloading thread: sleeping here slows the download to a
    # chunk per call, and stops it at the threshold until the test kills us.
    if p.status == "Downloading":
        if p.current >= threshold:
            print("STALLED", p.current, time.monotonic() - t0, flush=True)
            time.sleep(120)
        time.sleep(0.1)
RegistryClient(ImageService(root, "overlay")).pull(name, progress=progress)
"""


def test_interrupted_pull_resumes_with_only_the_rest(work: Path, source: ImageService,
                                                     registry: DistRegistry):
    size = 24 << 20
    name = f"{registry.host}/big/random:latest"
    _random_layer_image(source, name, size)
    RegistryClient(source).push(name)
    layer = source.get(name).manifest.layers[0]

    root = work / "resumed"
    fresh(root.parent, root.name).close()
    proc = subprocess.Popen([sys.executable, "-c", _PULL_AND_STALL, str(root), name, str(8 << 20)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("STALLED"), line
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # as a crash of the daemon would
        proc.wait()
    dest = fresh(root.parent, root.name)
    try:
        [ingest] = [i for i in dest.content.ingests() if i.ref == f"pull-{layer.digest}"]
        assert 8 << 20 <= ingest.offset < layer.size
        started = time.monotonic()
        [res] = RegistryClient(dest).pull(name)
        assert res.resumed == {str(layer.digest): ingest.offset}
        assert res.fetched[str(layer.digest)] == layer.size - ingest.offset
        assert dest.content.exists(layer.digest) and not dest.content.ingests()
        info = dest.inspect(name)
        assert info["Id"] == str(source.get(name).id)
        assert (Path(info["GraphDriver"]["Data"]["UpperDir"]) / "random.bin").stat().st_size == size
        assert time.monotonic() - started < 30
    finally:
        dest.close()


def test_against_pallets_own_registry_server(work: Path, source: ImageService):
    """Push, pull and search against `pallet registry serve` (the server half of issue 7)."""
    pytest.importorskip("pallet.registry.server", reason="Pallet's registry server is not built yet")
    from regserver_support import Server

    server = Server(work / "own-registry").start()
    try:
        host = f"127.0.0.1:{server.port}"
        name = f"{host}/own/busybox:latest"
        source.tag("busybox", name)
        [pushed] = RegistryClient(source).push(name)
        dest = fresh(work, "own-pulled")
        try:
            [res] = RegistryClient(dest).pull(name)
            assert res.digest == pushed.digest and res.image_id == str(source.get(name).id)
        finally:
            dest.close()
        found = [r["name"] for r in search(f"{host}/busybox")]
        assert "own/busybox" in found
    finally:
        server.stop()
