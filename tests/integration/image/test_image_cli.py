"""`python -m pallet.image`, every subcommand run as a subprocess against a data root in tmp_path.

Root is needed for the overlay snapshotter and for the busybox image's device-free but
root-owned tree; busybox needs the host's busybox-static. debian is only tried with
PALLET_SLOW=1 (it downloads from the Debian archive).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from pallet.image.service import ImageService

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (overlay snapshots, root-owned trees)")
needs_busybox = pytest.mark.skipif(not os.access("/bin/busybox", os.X_OK),
                                   reason="needs busybox-static at /bin/busybox")
slow = pytest.mark.skipif(os.environ.get("PALLET_SLOW") != "1",
                          reason="slow (minutes, downloads from the Debian archive): set PALLET_SLOW=1")


def pallet(root: Path, *args: str, input: bytes | None = None, ok: bool = True,
           where: str = "before") -> subprocess.CompletedProcess[str]:
    """Run the command with --data-root before (or after) the verb; no traceback, ever."""
    argv = ["--data-root", str(root), *args] if where == "before" else [*args[:1], "--data-root", str(root),
                                                                          *args[1:]]
    proc = subprocess.run([sys.executable, "-m", "pallet.image", *argv], input=input,
                          capture_output=True, timeout=600)
    out = subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(errors="replace"),
                                      proc.stderr.decode(errors="replace"))
    assert "Traceback" not in out.stderr, out.stderr
    if ok:
        assert out.returncode == 0, out.stderr
    return out


def failed(proc: subprocess.CompletedProcess[str], match: str) -> None:
    """Exit 1 and one `pallet: ...` line on stderr that contains `match`."""
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pallet: ") and match in lines[0], proc.stderr


def rootfs_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def image_id(root: Path, ref: str) -> str:
    return json.loads(pallet(root, "inspect", ref).stdout)[0]["Id"]


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    """A data root holding hello-world."""
    r = tmp_path / "data"
    pallet(r, "bootstrap", "hello-world")
    return r


def test_bootstrap(tmp_path):
    r = tmp_path / "data"
    out = pallet(r, "bootstrap", "hello-world").stdout.split()
    assert out[0] == "hello-world:latest" and out[1].startswith("sha256:")
    # a second bootstrap keeps the image; --force makes it again (the same bytes, the same id)
    assert pallet(r, "bootstrap", "hello-world").stdout.split() == out
    assert pallet(r, "bootstrap", "--force", "hello-world").stdout.split()[0] == "hello-world:latest"
    failed(pallet(r, "bootstrap", "alpine", ok=False), "not a built-in image")
    failed(pallet(r, "bootstrap", "busybox", "--busybox", str(tmp_path / "none"), ok=False), "no busybox")


@needs_busybox
def test_bootstrap_busybox_and_hello_world_together(tmp_path):
    r = tmp_path / "data"
    lines = pallet(r, "bootstrap", "busybox", "hello-world").stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["busybox:latest", "hello-world:latest"]
    assert pallet(r, "images", "--format", "json").stdout.count("\n") == 2
    assert "pallet: busybox-static" in pallet(r, "history", "--no-trunc", "busybox").stdout


@slow
def test_bootstrap_debian(tmp_path):
    if not (shutil.which("mmdebstrap") or shutil.which("debootstrap")):
        pytest.skip("needs mmdebstrap or debootstrap")
    r = tmp_path / "data"
    assert pallet(r, "bootstrap", "debian:bookworm").stdout.startswith("debian:bookworm sha256:")
    assert "debian bookworm by" in pallet(r, "history", "--no-trunc", "debian:bookworm").stdout


def test_images(root):
    hello = image_id(root, "hello-world")
    table = pallet(root, "images").stdout.splitlines()
    assert table[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    row = table[1].split()
    assert row[:3] == ["hello-world", "latest", hello[7:19]] and row[-1].endswith("kB")
    assert "ago" in table[1]
    assert pallet(root, "images", "-q").stdout.split() == [hello[7:19]]
    assert pallet(root, "images", "-q", "--no-trunc").stdout.split() == [hello]
    (entry,) = [json.loads(line) for line in pallet(root, "images", "--format", "json").stdout.splitlines()]
    assert entry["Repository"] == "hello-world" and entry["Tag"] == "latest" and entry["ID"] == hello[7:19]
    # an untagged image shows as <none> <none>
    pallet(root, "import", "-", input=rootfs_tar({"f": b"x"}))
    rows = pallet(root, "images").stdout.splitlines()
    assert any(line.split()[:2] == ["<none>", "<none>"] for line in rows)
    # an empty store: only the header
    empty = root.parent / "empty"
    assert pallet(empty, "images").stdout.split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]


def test_data_root_after_the_verb(root):
    assert pallet(root, "images", "-q", where="after").stdout.strip()


def test_inspect(root):
    (doc,) = json.loads(pallet(root, "inspect", "hello-world").stdout)
    assert doc["RepoTags"] == ["hello-world:latest"] and doc["Id"].startswith("sha256:")
    both = json.loads(pallet(root, "inspect", "hello-world", doc["Id"][7:19]).stdout)
    assert [d["Id"] for d in both] == [doc["Id"]] * 2
    proc = pallet(root, "inspect", "nosuch", ok=False)
    failed(proc, "no such image: nosuch")
    assert json.loads(proc.stdout) == []


def test_history(root):
    table = pallet(root, "history", "hello-world").stdout.splitlines()
    assert table[0].split() == ["IMAGE", "CREATED", "CREATED", "BY", "SIZE", "COMMENT"]
    hello = image_id(root, "hello-world")
    assert table[1].startswith(hello[7:19])
    ids = pallet(root, "history", "-q", "hello-world").stdout.split()
    assert ids[0] == hello[7:19] and len(ids) == len(table) - 1
    items = [json.loads(line) for line in pallet(root, "history", "--format", "json", "--no-trunc",
                                                  "hello-world").stdout.splitlines()]
    assert items[0]["Id"] == hello and {"Created", "CreatedBy", "Size", "Comment"} <= set(items[0])
    failed(pallet(root, "history", "nosuch", ok=False), "no such image")


def test_tag(root):
    pallet(root, "tag", "hello-world", "localhost:5000/team/hi:1")
    rows = [line.split()[:2] for line in pallet(root, "images").stdout.splitlines()[1:]]
    assert sorted(rows) == [["hello-world", "latest"], ["localhost:5000/team/hi", "1"]]
    failed(pallet(root, "tag", "hello-world", "x@sha256:" + "a" * 64, ok=False), "digest")
    failed(pallet(root, "tag", "nosuch", "y:1", ok=False), "no such image")


def test_rmi(root):
    hello = image_id(root, "hello-world")
    pallet(root, "tag", "hello-world", "other:1")
    assert pallet(root, "rmi", "other:1").stdout.splitlines() == ["Untagged: other:1"]
    # a container uses it: refused without -f, untagged (the image stays) with it
    with ImageService(root) as svc:
        svc.prepare_container_rootfs("c1", "hello-world")
        assert svc.meta.get_image(hello).last_used is not None  # touched for the watermark gc
    failed(pallet(root, "rmi", "hello-world", ok=False), "container c1")
    assert pallet(root, "rmi", "-f", "hello-world").stdout.splitlines() == ["Untagged: hello-world:latest"]
    assert pallet(root, "images", "-q").stdout.split() == [hello[7:19]]
    with ImageService(root) as svc:
        svc.remove_container_rootfs("c1")
    # several refs: a missing one is reported, the others still go, exit 1
    proc = pallet(root, "rmi", "nosuch", hello[7:19], ok=False)
    failed(proc, "no such image: nosuch")
    assert proc.stdout.splitlines() == [f"Deleted: {hello}"]
    assert pallet(root, "images", "-q").stdout == ""


def test_import(root, tmp_path):
    tar = tmp_path / "rootfs.tar"
    tar.write_bytes(rootfs_tar({"etc/hostname": b"box\n"}))
    new = pallet(root, "import", str(tar), "imported:1", "-c", 'CMD ["/bin/true"]', "--change",
                 "ENV A=1", "-m", "from a file").stdout.strip()
    (doc,) = json.loads(pallet(root, "inspect", "imported:1").stdout)
    assert doc["Id"] == new and doc["Config"]["Cmd"] == ["/bin/true"] and "A=1" in doc["Config"]["Env"]
    assert doc["Comment"] == "from a file"
    piped = pallet(root, "import", "-", "piped", input=rootfs_tar({"a": b"b"})).stdout.strip()
    (doc,) = json.loads(pallet(root, "inspect", "piped").stdout)
    assert doc["Id"] == piped and doc["RepoTags"] == ["piped:latest"] and doc["Comment"] == "Imported from -"
    failed(pallet(root, "import", str(tmp_path / "missing.tar"), ok=False), "cannot open")
    failed(pallet(root, "import", "-", input=b"not a tar" * 200, ok=False), "tar")
    failed(pallet(root, "import", str(tar), "-c", "ONBUILD RUN x", ok=False), "ONBUILD")


@pytest.mark.parametrize("fmt", ["docker", "oci"])
def test_save_and_load(root, tmp_path, fmt):
    pallet(root, "import", "-", "second:2", input=rootfs_tar({"x": b"y"}))
    out = tmp_path / f"images-{fmt}.tar"
    pallet(root, "save", "-o", str(out), "--format", fmt, "hello-world", "second:2")
    with tarfile.open(out) as tar:
        names = tar.getnames()
    assert "index.json" in names and ("manifest.json" in names) == (fmt == "docker")
    other = tmp_path / "other"
    loaded = pallet(other, "load", "-i", str(out)).stdout.splitlines()
    assert sorted(loaded) == ["Loaded image: hello-world:latest", "Loaded image: second:2"]
    assert image_id(other, "second:2") == image_id(root, "second:2")
    assert pallet(other, "check").returncode == 0
    # through pipes: save to standard output, load from standard input
    data = subprocess.run([sys.executable, "-m", "pallet.image", "--data-root", str(root), "save",
                           "--format", fmt, "hello-world"], capture_output=True, check=True).stdout
    third = tmp_path / "third"
    assert pallet(third, "load", input=data).stdout == "Loaded image: hello-world:latest\n"
    assert pallet(third, "load", "-q", "-i", "-", input=data).stdout == ""


def test_save_and_load_failures(root, tmp_path):
    out = tmp_path / "nothing.tar"
    failed(pallet(root, "save", "-o", str(out), "nosuch", ok=False), "no such image")
    assert list(tmp_path.glob("*nothing.tar*")) == []  # no partial archive left behind
    failed(pallet(root, "save", "-o", str(out), "--format", "oci", "hello-world", "nosuch", ok=False),
           "no such image")
    failed(pallet(root, "load", "-i", str(tmp_path / "missing.tar"), ok=False), "cannot open")
    failed(pallet(root, "load", input=b"garbage" * 1000, ok=False), "not a tar")
    assert pallet(root, "images", "-q").stdout.count("\n") == 1  # the store is as it was


def test_prune(root):
    hello = image_id(root, "hello-world")
    dangling = pallet(root, "import", "-", input=rootfs_tar({"d": b"1"})).stdout.strip()
    pallet(root, "import", "-", "labelled:1", "-c", "LABEL keep=no", input=rootfs_tar({"l": b"2"}))
    dry = pallet(root, "prune", "--dry-run").stdout
    assert f"deleted: {dangling}" in dry and "would be reclaimed" in dry
    assert len(pallet(root, "images", "-q").stdout.split()) == 3
    out = pallet(root, "prune").stdout
    assert f"deleted: {dangling}" in out and "Total reclaimed space: " in out
    # every image is newer than an hour: the filter spares them all
    assert pallet(root, "prune", "-a", "--filter", "until=1h").stdout == "Total reclaimed space: 0B\n"
    assert len(pallet(root, "images", "-q").stdout.split()) == 2
    out = pallet(root, "prune", "-a").stdout.splitlines()
    assert {"untagged: labelled:1", "untagged: hello-world:latest", f"deleted: {hello}"} <= set(out)
    assert pallet(root, "images", "-q").stdout == ""
    assert pallet(root, "prune").stdout == "Total reclaimed space: 0B\n"
    failed(pallet(root, "prune", "--filter", "colour=red", ok=False), "invalid filter")
    failed(pallet(root, "prune", "--filter", "nonsense", ok=False), "KEY=VALUE")


def test_gc(root):
    pallet(root, "import", "-", "gone:1", input=rootfs_tar({"g": b"g" * 5000}))
    pallet(root, "rmi", "gone:1")
    dry = pallet(root, "gc", "--dry-run").stdout.splitlines()
    assert dry[-1].startswith("would remove 3 blobs")  # layer, config, manifest
    assert sum(line.startswith("blob sha256:") for line in dry) == 3
    assert pallet(root, "gc").stdout.splitlines()[-1].startswith("removed 3 blobs")
    assert pallet(root, "gc").stdout.splitlines() == ["removed 0 blobs, 0 snapshots, 0 ingests: 0B"]
    assert pallet(root, "check").returncode == 0


def test_check(root):
    out = pallet(root, "check").stdout.splitlines()
    assert out[-1].startswith("checked ") and out[-1].endswith("0 errors, 0 warnings")
    hello = image_id(root, "hello-world")
    blob = root / "content" / "blobs" / "sha256" / hello[7:]
    blob.chmod(0o644)
    blob.write_bytes(blob.read_bytes() + b" ")
    proc = pallet(root, "check", ok=False)
    assert proc.returncode == 1
    assert any(line.startswith(f"error: blob {hello}: corrupt") for line in proc.stdout.splitlines())
    assert pallet(root, "check", "--no-verify-blobs", ok=False).returncode in (0, 1)


def test_usage_errors(root):
    proc = pallet(root, "frobnicate", ok=False)
    assert proc.returncode == 2 and "invalid choice" in proc.stderr
    failed(pallet(Path("/proc/pallet-no"), "images", ok=False), "pallet-no")  # cannot be created
