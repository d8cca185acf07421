"""Build contexts without root: the client-side tar (with .dockerignore), the daemon-side
extraction of untrusted tars, git fragments, and the build cache's own records."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from pallet.build.cache import BuildCache, step_key
from pallet.build.context import (
    apply_ignore,
    extract_context,
    git_checkout,
    is_git_url,
    parse_git,
    tar_of_directory,
)
from pallet.errors import InvalidArgument, NotFound


def _tree(root: Path) -> None:
    (root / "src").mkdir()
    (root / "src" / "app.py").write_text("print(1)\n")
    (root / "src" / "app.pyc").write_bytes(b"\0")
    (root / "docs").mkdir()
    (root / "docs" / "keep.md").write_text("keep\n")
    (root / "docs" / "drop.md").write_text("drop\n")
    (root / "Dockerfile").write_text("FROM busybox\n")
    (root / ".dockerignore").write_text("**/*.pyc\ndocs\n!docs/keep.md\nDockerfile\n")
    os.symlink("src/app.py", root / "link")


def _names(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        return sorted(m.name for m in t.getmembers())


def test_context_tar_respects_dockerignore_but_sends_the_dockerfile(tmp_path):
    _tree(tmp_path)
    data, name = tar_of_directory(str(tmp_path))
    assert name == "Dockerfile"
    assert _names(data) == [".dockerignore", "Dockerfile", "docs", "docs/keep.md", "link", "src",
                            "src/app.py"]


def test_dockerfile_outside_the_context_gets_a_private_name(tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "a").write_text("a")
    other = tmp_path / "Other.Dockerfile"
    other.write_text("FROM scratch\n")
    data, name = tar_of_directory(str(ctx), str(other))
    assert name.startswith(".dockerfile.") and name in _names(data)
    with pytest.raises(NotFound, match="Cannot locate specified Dockerfile"):
        tar_of_directory(str(ctx), str(tmp_path / "missing"))


def test_extract_round_trip_and_daemon_side_ignore(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    _tree(src)
    (src / ".dockerignore").write_text("**/*.pyc\n")
    data, _ = tar_of_directory(str(src))
    dest = tmp_path / "dest"
    dest.mkdir()
    extract_context(io.BytesIO(data), str(dest))
    assert (dest / "src" / "app.py").read_text() == "print(1)\n"
    assert os.readlink(dest / "link") == "src/app.py"
    (dest / "extra.pyc").write_bytes(b"x")  # as if a client sent everything
    apply_ignore(str(dest), keep=("Dockerfile", ".dockerignore"))
    assert not (dest / "extra.pyc").exists() and (dest / "Dockerfile").exists()


def _tar(*members: tuple[str, bytes | str]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, body in members:
            ti = tarfile.TarInfo(name)
            if isinstance(body, str):
                ti.type, ti.linkname = tarfile.SYMTYPE, body
                t.addfile(ti)
            else:
                ti.size = len(body)
                t.addfile(ti, io.BytesIO(body))
    buf.seek(0)
    return buf


def test_hostile_context_members_stay_inside(tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(InvalidArgument, match=r"\.\."):
        extract_context(_tar(("../evil", b"x")), str(dest))
    outside = tmp_path / "outside"
    outside.mkdir()
    # A symlink to a directory outside, then a file through it: it lands inside the root.
    extract_context(_tar(("esc", str(outside)), ("esc/f", b"x"), ("/abs", b"y")), str(dest))
    assert not (outside / "f").exists()
    assert (dest / "abs").read_bytes() == b"y"
    with pytest.raises(InvalidArgument, match="not a tar"):
        extract_context(io.BytesIO(b"not a tar at all" * 40), str(dest))


def test_git_urls_and_fragments():
    assert is_git_url("https://example.com/x.git#main:sub")
    assert is_git_url("git@github.com:a/b.git") and is_git_url("github.com/a/b")
    assert not is_git_url("https://example.com/context.tar.gz") and not is_git_url(".")
    g = parse_git("https://h/r.git#v1.0:docker/app/")
    assert (g.url, g.ref, g.subdir) == ("https://h/r.git", "v1.0", "docker/app")
    assert parse_git("github.com/a/b").url == "https://github.com/a/b"
    with pytest.raises(InvalidArgument, match=r"\.\."):
        parse_git("https://h/r.git#:../x")


def test_git_checkout_of_a_local_repository(tmp_path):
    repo = tmp_path / "repo"
    (repo / "app").mkdir(parents=True)
    (repo / "app" / "Dockerfile").write_text("FROM busybox\n")
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@x"}
    for cmd in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-qm", "one"], ["tag", "v1"]):
        subprocess.run(["git", *cmd], cwd=repo, check=True, env=env)
    (repo / "app" / "Dockerfile").write_text("FROM scratch\n")
    subprocess.run(["git", "commit", "-qam", "two"], cwd=repo, check=True, env=env)
    ctx = git_checkout(f"git+file://{repo}#v1:app", str(tmp_path / "co"))
    assert Path(ctx, "Dockerfile").read_text() == "FROM busybox\n"
    assert not (tmp_path / "co" / ".git").exists()
    with pytest.raises(NotFound, match="no directory"):
        git_checkout(f"git+file://{repo}#main:nope", str(tmp_path / "co2"))


def test_cache_records_survive_reopening(tmp_path):
    c = BuildCache(tmp_path)
    key = step_key("sha256:parent", "/bin/sh -c true", "x")
    assert key != step_key("sha256:parent", "/bin/sh -c true", "y")
    assert c.get(key) is None
    c.put(key, "sha256:child", "/bin/sh -c true")
    c.close()
    c2 = BuildCache(tmp_path)
    assert c2.get(key) == "sha256:child"
    d = c2.mount_dir("npm", mode=0o700)
    (d / "f").write_text("cached")
    assert c2.mount_dir("npm") == d and [m["ID"] for m in c2.mounts()] == ["npm"]
    out = io.BytesIO()
    c2.export_mount("npm", out)
    c2.remove_mount("npm")
    assert not d.exists()
    out.seek(0)
    c2.import_mount("copy", out)
    assert (c2.mount_dir("copy") / "f").read_text() == "cached"
    with pytest.raises(NotFound):
        c2.mount_dir("npm", create=False)
