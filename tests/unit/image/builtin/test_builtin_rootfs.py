"""busybox_rootfs (no root needed) and debian_rootfs's refusals (the real build is an integration test)."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import pytest

from pallet.errors import InvalidArgument, NotSupported
from pallet.image.builtin import rootfs
from pallet.image.builtin.rootfs import busybox_rootfs, debian_rootfs, layer_tar

needs_busybox = pytest.mark.skipif(not os.path.exists("/bin/busybox"),
                                   reason="needs Debian's busybox-static (/bin/busybox)")


@needs_busybox
def test_busybox_layout(tmp_path):
    root = tmp_path / "rootfs"
    busybox_rootfs(root)
    assert (root / "bin" / "busybox").read_bytes() == Path("/bin/busybox").read_bytes()
    assert os.readlink(root / "bin" / "sh") == "busybox"
    assert stat.S_IMODE((root / "tmp").stat().st_mode) == 0o1777
    assert stat.S_IMODE((root / "root").stat().st_mode) == 0o700
    for d in ("proc", "sys", "dev", "etc"):
        assert (root / d).is_dir()
    assert (root / "etc" / "passwd").read_text().startswith("root:x:0:0:")
    assert "nogroup:x:65534:" in (root / "etc" / "group").read_text()
    mtimes = {os.lstat(p).st_mtime for p in root.rglob("*")}
    assert mtimes == {int(os.stat("/bin/busybox").st_mtime)}


@needs_busybox
def test_busybox_tar_is_reproducible_across_builds(tmp_path):
    tars = []
    for name in ("one", "two"):
        busybox_rootfs(tmp_path / name)
        out = io.BytesIO()
        layer_tar(tmp_path / name, out, owner=(0, 0))
        tars.append(out.getvalue())
    assert tars[0] == tars[1]


def test_busybox_missing_binary(tmp_path):
    with pytest.raises(NotSupported, match="busybox"):
        busybox_rootfs(tmp_path / "r", busybox=str(tmp_path / "nope"))


def test_debian_needs_a_tool(tmp_path, monkeypatch):
    monkeypatch.setattr(rootfs.shutil, "which", lambda name: None)
    with pytest.raises(NotSupported, match="mmdebstrap"):
        debian_rootfs(tmp_path / "deb")


def test_debian_refuses_non_empty_dir(tmp_path):
    (tmp_path / "deb").mkdir()
    (tmp_path / "deb" / "x").write_text("")
    with pytest.raises(InvalidArgument, match="not empty"):
        debian_rootfs(tmp_path / "deb")


def test_debian_reports_tool_failure(tmp_path, monkeypatch):
    from pallet.errors import Unavailable

    calls = []

    class Proc:
        returncode = 1
        stdout = ""
        stderr = "E: cannot reach mirror\n"

    def fake_run(cmd, **kw):
        calls.append(cmd)
        return Proc()

    def which(name):
        return f"/usr/bin/{name}" if name == "mmdebstrap" else None

    monkeypatch.setattr(rootfs.shutil, "which", which)
    monkeypatch.setattr(rootfs.subprocess, "run", fake_run)
    monkeypatch.setattr(rootfs.os.path, "isdir", lambda p: p == rootfs._MERGED_USR_HOOK)
    with pytest.raises(Unavailable, match="cannot reach mirror"):
        debian_rootfs(tmp_path / "deb", suite="trixie", mirror="http://mirror.example/debian", arch="aarch64")
    assert calls == [["mmdebstrap", "--variant=minbase", "--architectures=arm64", "--format=directory",
                      "--quiet", f"--hook-dir={rootfs._MERGED_USR_HOOK}", "trixie", str(tmp_path / "deb"), "http://mirror.example/debian"]]
