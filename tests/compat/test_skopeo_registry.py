"""skopeo against Pallet's registry server: copy in and out, inspect, list-tags, delete; and the same
copy into Debian's docker-registry (the reference implementation) gives the same bytes.

The image is busybox-static in an OCI archive (ociarchive.write_oci_archive). Servers listen on
127.0.0.1 only and are stopped by pid; skopeo's blob-info cache outside tmp is removed afterwards
if it was not there before.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from compat_support import Leftovers, need
from ociarchive import write_oci_archive


@pytest.fixture(autouse=True)
def _skopeo():
    need("skopeo")
    leftovers = Leftovers("/var/lib/containers/cache/blob-info-cache-v1.boltdb", "/var/lib/containers/cache",
                          "/var/lib/containers")
    yield
    leftovers.cleanup()


def skopeo(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["skopeo", "--insecure-policy", *args], capture_output=True, text=True, timeout=120,
                          check=False)
    if check:
        assert proc.returncode == 0, f"skopeo {' '.join(args)}: {proc.stderr}"
    return proc


@pytest.fixture
def pallet_registry(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "pallet.registry.server", "serve", "--addr", "127.0.0.1:0",
                             "--root", str(tmp_path / "registry")], stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    try:
        assert "listening on" in line, line
        yield f"127.0.0.1:{line.strip().rsplit(':', 1)[1]}"
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(10)


def _serve(tmp_path: Path, config: dict | None = None):
    cmd = [sys.executable, "-m", "pallet.registry.server", "serve", "--addr", "127.0.0.1:0",
           "--root", str(tmp_path / "registry")]
    if config is not None:
        (tmp_path / "registry.json").write_text(json.dumps(config))
        cmd += ["--config", str(tmp_path / "registry.json")]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert "listening on" in line, line
    return proc, f"127.0.0.1:{line.strip().rsplit(':', 1)[1]}"


@pytest.mark.parametrize("mode", ["basic", "token"])
def test_skopeo_with_credentials(tmp_path, oci_archive, mode):
    import bcrypt

    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(f"alice:{bcrypt.hashpw(b'wonderland', bcrypt.gensalt(4)).decode()}\n")
    proc, host = _serve(tmp_path, {"auth": {"mode": mode, "htpasswd": str(htpasswd), "anonymous": ["pull"]}})
    try:
        archive, digest = oci_archive
        ref = f"docker://{host}/auth/busybox:1"
        denied = skopeo("copy", "--dest-tls-verify=false", f"oci-archive:{archive}", ref, check=False)
        assert denied.returncode != 0 and "unauthorized" in denied.stderr.lower()
        wrong = skopeo("copy", "--dest-tls-verify=false", "--dest-creds", "alice:nope",
                       f"oci-archive:{archive}", ref, check=False)
        assert wrong.returncode != 0
        skopeo("copy", "--dest-tls-verify=false", "--dest-creds", "alice:wonderland",
               f"oci-archive:{archive}", ref)
        # Anonymous pull is allowed by the config.
        info = json.loads(skopeo("inspect", "--tls-verify=false", "--no-creds", ref).stdout)
        assert info["Digest"] == digest
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(10)


@pytest.fixture
def oci_archive(tmp_path, rootfs_template) -> tuple[Path, str]:
    path = tmp_path / "busybox.tar"
    digest = write_oci_archive(rootfs_template, path, "localhost/busybox:1", cmd=["sh"])
    return path, digest


def test_copy_in_inspect_list_and_copy_out(tmp_path, pallet_registry, oci_archive):
    archive, digest = oci_archive
    ref = f"docker://{pallet_registry}/compat/busybox"
    skopeo("copy", "--dest-tls-verify=false", f"oci-archive:{archive}", f"{ref}:1")
    skopeo("copy", "--src-tls-verify=false", "--dest-tls-verify=false", f"{ref}:1", f"{ref}:latest")
    info = json.loads(skopeo("inspect", "--tls-verify=false", f"{ref}:1").stdout)
    assert info["Digest"] == digest and info["Os"] == "linux" and len(info["Layers"]) == 1
    raw = skopeo("inspect", "--raw", "--tls-verify=false", f"{ref}:latest").stdout
    with tarfile.open(archive) as tar:
        stored = tar.extractfile(f"blobs/sha256/{digest.split(':')[1]}").read()  # type: ignore[union-attr]
    assert raw.encode() == stored  # the exact bytes pushed
    tags = json.loads(skopeo("list-tags", "--tls-verify=false", ref).stdout)
    assert tags == {"Repository": f"{pallet_registry}/compat/busybox", "Tags": ["1", "latest"]}
    # Out again, into an OCI layout and a docker archive.
    skopeo("copy", "--src-tls-verify=false", f"{ref}:1", f"oci:{tmp_path / 'out'}:copied")
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert index["manifests"][0]["digest"] == digest
    skopeo("copy", "--src-tls-verify=false", f"{ref}:1", f"docker-archive:{tmp_path / 'd.tar'}:busybox:1")
    with tarfile.open(tmp_path / "d.tar") as tar:
        entry = json.load(tar.extractfile("manifest.json"))[0]  # type: ignore[arg-type]
        assert entry["RepoTags"] == ["docker.io/library/busybox:1"]  # skopeo writes the normalized name
    # Delete by digest: gone from both tags.
    skopeo("delete", "--tls-verify=false", f"{ref}@{digest}")
    proc = skopeo("inspect", "--tls-verify=false", f"{ref}:1", check=False)
    assert proc.returncode != 0 and "manifest unknown" in proc.stderr.lower()


def test_docker_archive_to_schema2(tmp_path, pallet_registry, oci_archive):
    """A docker-archive source is pushed as Docker schema 2; the registry keeps that media type."""
    archive, _ = oci_archive
    docker_tar = tmp_path / "docker.tar"
    skopeo("copy", f"oci-archive:{archive}", f"docker-archive:{docker_tar}:busybox:1")
    ref = f"docker://{pallet_registry}/compat/schema2:1"
    skopeo("copy", "--dest-tls-verify=false", f"docker-archive:{docker_tar}", ref)
    raw = json.loads(skopeo("inspect", "--raw", "--tls-verify=false", ref).stdout)
    assert raw["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"


def test_same_bytes_as_docker_registry(tmp_path, pallet_registry, oci_archive):
    need("docker-registry")
    archive, digest = oci_archive
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "distribution.yml"
    config.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path / 'dist'}\n"
                      f"  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n"
                      "log:\n  level: error\n")
    proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        for host in (pallet_registry, f"127.0.0.1:{port}"):
            skopeo("copy", "--dest-tls-verify=false", f"oci-archive:{archive}", f"docker://{host}/x/busybox:1")
        ours = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{pallet_registry}/x/busybox:1").stdout
        theirs = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://127.0.0.1:{port}/x/busybox:1").stdout
        assert ours == theirs
        # And skopeo copies from one registry straight into the other.
        skopeo("copy", "--src-tls-verify=false", "--dest-tls-verify=false",
               f"docker://127.0.0.1:{port}/x/busybox:1", f"docker://{pallet_registry}/from/dist:1")
        info = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{pallet_registry}/from/dist:1").stdout)
        assert info["Digest"] == digest
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(10)
