"""Build contexts: a directory sent as a tar (client side), a tar unpacked safely (daemon side),
and git repositories (`URL#ref:subdir`).

Client side (the `pallet build` CLI, standard library only so the CLI stays light):
`write_context_tar` walks a directory, leaves out what `.dockerignore` excludes (the
Dockerfile and .dockerignore are always sent: the daemon needs them), and writes a tar in a
fixed order. A Dockerfile outside the context is added under `.dockerfile.<random>`, as the
docker CLI does.

Daemon side: `extract_context` unpacks a tar stream (plain, gzip, bzip2 or xz) into a private
directory. Member names are untrusted: `..` is refused, a leading `/` dropped, and every parent
is resolved under the root with `SafeRoot` (no symlink leads outside). Only regular files,
directories, symlinks and hard links (copied) are made; ownership is not kept (COPY makes
files root's unless --chown); modes and file mtimes are. The daemon then applies the
context's .dockerignore again (docker-py and curl may send everything).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import secrets
import shutil
import stat
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from pallet.build.ignore import Matcher, read_patterns
from pallet.errors import InvalidArgument, NotFound

DOCKERIGNORE = ".dockerignore"


def load_ignore(context_dir: str) -> Matcher:
    try:
        with open(os.path.join(context_dir, DOCKERIGNORE), encoding="utf-8") as f:
            return Matcher(read_patterns(f.read()))
    except FileNotFoundError:
        return Matcher([])


def _walk(root: str, matcher: Matcher, rel: str = "") -> Iterator[tuple[str, os.stat_result]]:
    """(relative path, lstat) of what the context holds, parents first, sorted by name."""
    base = os.path.join(root, rel) if rel else root
    try:
        names = sorted(os.listdir(base))
    except PermissionError as exc:
        raise InvalidArgument(f"error checking context: can't stat '{base}': {exc.strerror}") from exc
    for name in names:
        path = f"{rel}/{name}" if rel else name
        st = os.lstat(os.path.join(root, path))
        excluded = matcher.excluded(path)
        if stat.S_ISDIR(st.st_mode):
            if not excluded:
                yield path, st
                yield from _walk(root, matcher, path)
            elif matcher.may_include_below(path):
                inner = list(_walk(root, matcher, path))
                if inner:
                    yield path, st
                    yield from inner
        elif not excluded:
            yield path, st


def write_context_tar(context_dir: str, out: IO[bytes], dockerfile: str | None = None) -> str:
    """Write the context directory to `out` as a tar; returns the Dockerfile's name inside the
    tar (relative), adding the file when it lies outside the context. `dockerfile` is a path
    (absolute, or relative to the current directory) or None for `<context>/Dockerfile`."""
    root = os.path.realpath(context_dir)
    if not os.path.isdir(root):
        raise InvalidArgument(f"unable to prepare context: path {context_dir!r} not found")
    df_path = os.path.realpath(dockerfile) if dockerfile else os.path.join(root, "Dockerfile")
    if not os.path.isfile(df_path):
        raise NotFound(f"unable to prepare context: Cannot locate specified Dockerfile: "
                       f"{dockerfile or 'Dockerfile'}")
    matcher = load_ignore(root)
    inside = df_path.startswith(root + os.sep)
    df_name = os.path.relpath(df_path, root) if inside else f".dockerfile.{secrets.token_hex(10)}"
    always = {df_name, DOCKERIGNORE}
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        seen = set()
        for rel, st in _walk(root, matcher):
            seen.add(rel)
            _add(tar, os.path.join(root, rel), rel, st)
        for rel in sorted(always - seen):
            full = df_path if rel == df_name else os.path.join(root, rel)
            if os.path.isfile(full):
                _add(tar, full, rel, os.lstat(full))
    return df_name


def _add(tar: tarfile.TarFile, full: str, rel: str, st: os.stat_result) -> None:
    ti = tarfile.TarInfo(rel)
    ti.mode = stat.S_IMODE(st.st_mode)
    ti.mtime = int(st.st_mtime)
    ti.uid = ti.gid = 0
    if stat.S_ISDIR(st.st_mode):
        ti.type = tarfile.DIRTYPE
        tar.addfile(ti)
    elif stat.S_ISLNK(st.st_mode):
        ti.type = tarfile.SYMTYPE
        ti.linkname = os.readlink(full)
        tar.addfile(ti)
    elif stat.S_ISREG(st.st_mode):
        ti.size = st.st_size
        with open(full, "rb") as f:
            tar.addfile(ti, f)


# --- daemon side -------------------------------------------------------------------------------

def _parts(unsafe_name: str) -> list[str]:
    parts = [p for p in unsafe_name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidArgument(f"build context: the tar member {unsafe_name!r} climbs out with '..'")
    return parts


def extract_context(stream: Any, dest: str) -> None:
    """Unpack a context tar stream (plain or compressed) into the existing directory `dest`."""
    from pallet.image.layers.safepath import SafeRoot

    try:
        tar = tarfile.open(fileobj=stream, mode="r|*")  # noqa: SIM115 - closed by the `with` below
    except tarfile.TarError as exc:
        raise InvalidArgument(f"the build context is not a tar archive: {exc}") from exc
    links: list[tuple[list[str], list[str]]] = []
    with SafeRoot(dest) as root, tar:
        try:
            for ti in tar:
                parts = _parts(ti.name)
                if not parts:
                    continue
                fd, _ = root.open_dir(parts[:-1], create=True)
                try:
                    name = parts[-1]
                    if ti.isdir():
                        with contextlib.suppress(FileExistsError):
                            os.mkdir(name, 0o755, dir_fd=fd)
                        os.chmod(name, stat.S_IMODE(ti.mode) | 0o700, dir_fd=fd)
                        continue
                    _remove(fd, name)
                    if ti.issym():
                        os.symlink(ti.linkname, name, dir_fd=fd)
                    elif ti.islnk():
                        links.append((parts, _parts(ti.linkname)))
                    elif ti.isreg():
                        src = tar.extractfile(ti)
                        assert src is not None
                        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
                        out = os.open(name, flags, 0o600, dir_fd=fd)
                        with os.fdopen(out, "wb") as f:
                            shutil.copyfileobj(src, f, 1 << 20)
                            os.fchmod(f.fileno(), stat.S_IMODE(ti.mode))
                            os.utime(f.fileno(), (ti.mtime, ti.mtime))
                finally:
                    os.close(fd)
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise InvalidArgument(f"unable to read the build context: {exc}") from exc
        for parts, target in links:
            _copy_link(root, parts, target)


def _remove(dir_fd: int, name: str) -> None:
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        raise InvalidArgument(f"build context: {name!r} is a directory and a file")
    os.unlink(name, dir_fd=dir_fd)


def _copy_link(root: Any, parts: list[str], target: list[str]) -> None:
    sfd, _ = root.open_dir(target[:-1])
    dfd, _ = root.open_dir(parts[:-1], create=True)
    try:
        src = os.open(target[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=sfd)
        with os.fdopen(src, "rb") as s:
            st = os.fstat(s.fileno())
            _remove(dfd, parts[-1])
            out = os.open(parts[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                          stat.S_IMODE(st.st_mode), dir_fd=dfd)
            with os.fdopen(out, "wb") as d:
                shutil.copyfileobj(s, d, 1 << 20)
    finally:
        os.close(sfd)
        os.close(dfd)


def apply_ignore(context_dir: str, keep: tuple[str, ...]) -> None:
    """Delete what the context's .dockerignore excludes (but `keep`: the Dockerfile and
    .dockerignore, which the daemon still reads)."""
    matcher = load_ignore(context_dir)
    if not matcher.patterns:
        return
    keep = tuple(k for k in keep if k)
    keep_set = {os.path.normpath(k) for k in keep}
    wanted = {rel for rel, _ in _walk(context_dir, matcher)}
    for dirpath, dirs, files in os.walk(context_dir, topdown=False):
        for name in files + dirs:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, context_dir)
            if rel in wanted or rel in keep_set or any(k.startswith(rel + "/") for k in keep_set):
                continue
            if os.path.isdir(full) and not os.path.islink(full):
                if not os.listdir(full):
                    os.rmdir(full)
            else:
                os.unlink(full)


# --- git contexts --------------------------------------------------------------------------------

_GIT_URL = re.compile(r"^(git://|git@|ssh://|(https?://.*\.git(#.*)?$)|github\.com/)")


def is_git_url(s: str) -> bool:
    """Docker's urlutil.IsGitURL, plus local repositories given as `git+file://` or a path
    with `.git` at its end."""
    return bool(_GIT_URL.match(s)) or s.startswith("git+file://")


@dataclass(frozen=True)
class GitSource:
    url: str
    ref: str
    subdir: str


def parse_git(s: str) -> GitSource:
    """`URL#ref:subdir` (both parts optional), as Docker's git fragment syntax."""
    url, _, fragment = s.partition("#")
    ref, _, subdir = fragment.partition(":")
    if url.startswith("github.com/"):
        url = "https://" + url
    url = url.removeprefix("git+")
    if ".." in subdir.split("/"):
        raise InvalidArgument(f"git context {s!r}: the subdirectory may not contain '..'")
    return GitSource(url, ref, subdir.strip("/"))


def git_checkout(source: str, dest: str) -> str:
    """Clone `source` (URL#ref:subdir) into `dest` (shallow when the ref is a branch or tag);
    returns the context directory (dest or its subdir)."""
    if shutil.which("git") is None:
        raise NotFound("git context: git is not installed")
    g = parse_git(source)
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}

    def git(*args: str, cwd: str | None = None) -> None:
        r = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            why = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}"
            raise InvalidArgument(f"git context {source!r}: git {args[0]} failed: {why}")

    git("init", "-q", dest)
    git("remote", "add", "origin", g.url, cwd=dest)
    ref = g.ref or "HEAD"
    try:
        git("fetch", "-q", "--depth", "1", "origin", ref, cwd=dest)
    except InvalidArgument:
        git("fetch", "-q", "origin", cwd=dest)  # a commit id not advertised: fetch everything
        git("checkout", "-q", ref, cwd=dest)
    else:
        git("checkout", "-q", "FETCH_HEAD", cwd=dest)
    with contextlib.suppress(InvalidArgument):
        git("submodule", "update", "--init", "--recursive", "--depth", "1", cwd=dest)
    shutil.rmtree(os.path.join(dest, ".git"), ignore_errors=True)
    ctx = os.path.realpath(os.path.join(dest, g.subdir)) if g.subdir else dest
    if not (ctx == os.path.realpath(dest) or ctx.startswith(os.path.realpath(dest) + os.sep)) \
            or not os.path.isdir(ctx):
        raise NotFound(f"git context {source!r}: no directory {g.subdir!r} in the repository")
    return ctx


def fetch_remote(url: str, dest: str, dockerfile: str = "Dockerfile", max_size: int = 1 << 30) -> None:
    """`remote=<http(s) URL>`: download it; a tar (plain or compressed, told by its magic) is
    unpacked into `dest` as the context, anything else becomes `dest/<dockerfile>` alone."""
    import tempfile
    import urllib.request

    if not re.match(r"^https?://", url):
        raise InvalidArgument(f"remote {url!r}: want a git URL or an http(s) URL")
    with tempfile.TemporaryFile() as spool:
        try:
            with urllib.request.urlopen(url, timeout=60) as resp:
                size = 0
                while chunk := resp.read(1 << 20):
                    size += len(chunk)
                    if size > max_size:
                        raise InvalidArgument(f"remote {url}: larger than {max_size} bytes")
                    spool.write(chunk)
        except OSError as exc:
            raise InvalidArgument(f"remote {url}: {exc}") from exc
        spool.seek(0)
        head = spool.read(512)
        spool.seek(0)
        magic = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ")
        if head.startswith(magic) or (len(head) >= 262 and head[257:262] == b"ustar"):
            extract_context(spool, dest)
            return
        name = _parts(dockerfile)
        if len(name) != 1:
            raise InvalidArgument(f"remote {url}: a lone Dockerfile needs a plain file name, "
                                  f"not {dockerfile!r}")
        with open(os.path.join(dest, name[0]), "wb") as f:
            shutil.copyfileobj(spool, f)


def tar_of_directory(path: str, dockerfile: str | None = None) -> tuple[bytes, str]:
    """A context directory as tar bytes (small contexts, tests)."""
    buf = io.BytesIO()
    name = write_context_tar(path, buf, dockerfile)
    return buf.getvalue(), name


__all__ = ["DOCKERIGNORE", "GitSource", "apply_ignore", "extract_context", "fetch_remote", "git_checkout",
           "is_git_url", "load_ignore", "parse_git", "tar_of_directory", "write_context_tar"]
