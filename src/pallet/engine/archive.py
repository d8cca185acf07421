"""`docker cp`: stat, read and write paths of a container's file system (GET/HEAD/PUT
/containers/{id}/archive).

Every path here comes from a client and is an `unsafe_path` (STYLE.md §7). It is first cleaned
lexically as dockerd does (`filepath.Join("/", path)`: `..` cannot climb above `/`), then resolved
component by component under an open fd of the rootfs (safepath.SafeRoot): a symlink met on the
way is read and interpreted as the container would see it, never followed by the kernel, so no
path (nor a symlink the container plants meanwhile) reaches the host. The final component is not
followed (lstat, as dockerd), unless the path ends in `/` or `/.`.

Reading walks the tree with *at() calls and O_NOFOLLOW from directory fds. Writing hands the tar
to `apply_layer` in copy mode, with the resolved destination directory passed as
/proc/self/fd/<fd>, so that the extraction starts from the very directory we resolved and keeps
the layer-apply safety (no member escapes, limits on a hostile tar).

The rootfs: a running container's is mounted at `Engine.rootfs_path`; the SafeRoot fd is opened
under the container's lock, so the mount cannot go away between the check and the open (the fd
pins it afterwards). A created or stopped container's rootfs is mounted there for the duration of
the operation, the lock held throughout so that a `start` waits for it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import stat
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from pallet.errors import InvalidArgument, NotFound, PermissionDenied
from pallet.image.layers.apply import apply_layer
from pallet.image.layers.safepath import DIR_FLAGS, SafeRoot, lstat_at, proc_path, split_unsafe

# Go's os.FileMode type bits: the X-Docker-Container-Path-Stat header carries Go's FileMode and
# the docker CLI decides file-or-directory from it.
GO_MODE_DIR = 1 << 31
GO_MODE_SYMLINK = 1 << 27
GO_MODE_DEVICE = 1 << 26
GO_MODE_NAMED_PIPE = 1 << 25
GO_MODE_SOCKET = 1 << 24
GO_MODE_SETUID = 1 << 23
GO_MODE_SETGID = 1 << 22
GO_MODE_CHAR_DEVICE = 1 << 21
GO_MODE_STICKY = 1 << 20

CHUNK = 1 << 20
SPOOL_IN_MEMORY = 8 << 20


def go_file_mode(mode: int) -> int:
    """A stat st_mode as Go's os.FileMode."""
    out = stat.S_IMODE(mode) & 0o777
    if mode & stat.S_ISUID:
        out |= GO_MODE_SETUID
    if mode & stat.S_ISGID:
        out |= GO_MODE_SETGID
    if mode & stat.S_ISVTX:
        out |= GO_MODE_STICKY
    fmt = stat.S_IFMT(mode)
    out |= {stat.S_IFDIR: GO_MODE_DIR, stat.S_IFLNK: GO_MODE_SYMLINK, stat.S_IFIFO: GO_MODE_NAMED_PIPE,
            stat.S_IFSOCK: GO_MODE_SOCKET, stat.S_IFBLK: GO_MODE_DEVICE,
            stat.S_IFCHR: GO_MODE_DEVICE | GO_MODE_CHAR_DEVICE}.get(fmt, 0)
    return out


def rfc3339(t: float) -> str:
    ns = int(t * 1e9)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9))
    frac = f"{ns % 10**9:09d}".rstrip("0")
    return f"{base}.{frac}Z" if frac else f"{base}Z"


@dataclass(frozen=True)
class CleanPath:
    """A client's path made absolute and lexically clean; `want_dir` when it ended in / or /."""

    abs: str
    parts: list[str]
    want_dir: bool

    @classmethod
    def parse(cls, unsafe_path: str) -> CleanPath:
        if not unsafe_path:
            raise InvalidArgument("path is required")
        if "\x00" in unsafe_path:
            raise InvalidArgument("path contains a NUL byte")
        want_dir = unsafe_path.endswith("/") or unsafe_path.endswith("/.") or unsafe_path == "."
        clean = posixpath.normpath("/" + unsafe_path)
        if clean.startswith("//"):
            clean = "/" + clean.lstrip("/")
        parts = split_unsafe(clean)  # no '..' is left after normpath of an absolute path
        return cls(clean, parts, want_dir or not parts)

    @property
    def base(self) -> str:
        return self.parts[-1] if self.parts else "/"


# --- the container's rootfs -----------------------------------------------------------------------

@contextlib.contextmanager
def container_root(engine: Any, ref: str, *, write: bool = False) -> Iterator[SafeRoot]:
    """A SafeRoot on the container's mounted rootfs, mounting it for the duration when the
    container is not running."""
    c = engine.get(ref)
    if write and c.host_config.get("ReadonlyRootfs"):
        raise PermissionDenied(f"container {c.id[:12]} has a read-only root file system")
    rootfs = engine.rootfs_path(c.id)
    with contextlib.ExitStack() as stack:
        with c.lock:
            if c.removed:
                raise NotFound(f"No such container: {ref}")
            if os.path.ismount(rootfs):
                root = stack.enter_context(SafeRoot(rootfs))
            else:
                stack.enter_context(c.lock)  # held until the temporary mount is gone
                mounts = engine.images.container_mounts(c.id)
                engine.images.mount(mounts, rootfs)
                stack.callback(engine.images.unmount, mounts, rootfs)
                root = stack.enter_context(SafeRoot(rootfs))
        yield root


def _open_parent(root: SafeRoot, path: CleanPath, *, follow_last: bool) -> tuple[int, str, list[str]]:
    """(fd of the directory holding the target, the target's name in it, resolved components of
    that directory). With `follow_last` the whole path is resolved as a directory and the name is
    '.'. Raises NotFound for a missing path."""
    try:
        fd, resolved = root.open_dir(path.parts[:-1])
    except FileNotFoundError as exc:
        raise NotFound(f"Could not find the file {path.abs} in container") from exc
    except InvalidArgument as exc:
        if "not a directory" in str(exc):
            raise NotFound(f"Could not find the file {path.abs} in container: {exc}") from exc
        raise
    if not (follow_last or not path.parts):
        return fd, path.parts[-1], resolved
    os.close(fd)
    try:
        fd, resolved = root.open_dir(path.parts)
    except FileNotFoundError as exc:
        raise NotFound(f"Could not find the file {path.abs} in container") from exc
    except InvalidArgument as exc:
        if "not a directory" in str(exc):
            raise InvalidArgument(f"{path.abs} is not a directory") from exc
        raise
    return fd, ".", resolved


def _stat(root: SafeRoot, path: CleanPath) -> tuple[os.stat_result, dict[str, Any]]:
    fd, name, resolved = _open_parent(root, path, follow_last=path.want_dir)
    try:
        st = lstat_at(fd, name)
        if st is None:
            raise NotFound(f"Could not find the file {path.abs} in container")
        link_target = ""
        if stat.S_ISLNK(st.st_mode):
            target = os.readlink(name, dir_fd=fd)
            link_target = _resolve_link(root, resolved, target)
    finally:
        os.close(fd)
    return st, {"name": path.base, "size": st.st_size, "mode": go_file_mode(st.st_mode),
                "mtime": rfc3339(st.st_mtime), "linkTarget": link_target}


def _resolve_link(root: SafeRoot, parent: list[str], target: str) -> str:
    """The absolute path, in the container, a symlink in `parent` points at (dockerd's
    linkTarget): the target's directory resolved in the root, its last component kept."""
    joined = posixpath.normpath(target if target.startswith("/") else "/" + "/".join([*parent, target]))
    parts = [p for p in joined.split("/") if p]
    if not parts:
        return "/"
    try:
        fd, resolved = root.open_dir(parts[:-1])
    except (FileNotFoundError, InvalidArgument):
        return joined
    os.close(fd)
    return "/" + "/".join([*resolved, parts[-1]])


def stat_path(engine: Any, ref: str, unsafe_path: str) -> dict[str, Any]:
    """dockerd's ContainerPathStat for `unsafe_path` in the container (HEAD archive)."""
    path = CleanPath.parse(unsafe_path)
    with container_root(engine, ref) as root:
        st, info = _stat(root, path)
        if path.want_dir and not stat.S_ISDIR(st.st_mode):
            raise InvalidArgument(f"{path.abs} is not a directory")
        return info


# --- reading --------------------------------------------------------------------------------------

class _Exact:
    """A file's bytes cut or zero-padded to the size its tar header announced: a running container
    may change the file while we read it."""

    def __init__(self, f: IO[bytes], size: int) -> None:
        self.f, self.left = f, size

    def read(self, n: int = -1) -> bytes:
        if n < 0 or n > self.left:
            n = self.left
        data = self.f.read(n) if n else b""
        if len(data) < n:
            data += b"\0" * (n - len(data))
        self.left -= len(data)
        return data


class _Writer:
    def __init__(self, tar: tarfile.TarFile) -> None:
        self.tar = tar
        self.links: dict[tuple[int, int], str] = {}

    def add(self, dir_fd: int, name: str, arcname: str) -> None:
        st = lstat_at(dir_fd, name)
        if st is None:
            return  # removed meanwhile
        ti = tarfile.TarInfo(arcname)
        ti.mode, ti.uid, ti.gid, ti.mtime = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime
        mode = st.st_mode
        if stat.S_ISREG(mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in self.links:
                ti.type, ti.linkname = tarfile.LNKTYPE, self.links[key]
                self.tar.addfile(ti)
                return
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
                             dir_fd=dir_fd)
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.ELOOP):
                    return
                raise
            with os.fdopen(fd, "rb") as f:
                fst = os.fstat(fd)
                if not stat.S_ISREG(fst.st_mode):
                    return  # swapped for something else meanwhile
                ti.size = fst.st_size
                self.tar.addfile(ti, _Exact(f, ti.size))
            if st.st_nlink > 1:
                self.links[key] = arcname
        elif stat.S_ISDIR(mode):
            ti.type = tarfile.DIRTYPE
            self.tar.addfile(ti)
            try:
                fd = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
                    return
                raise
            try:
                for entry in sorted(os.listdir(fd)):
                    self.add(fd, entry, f"{arcname.rstrip('/')}/{entry}")
            finally:
                os.close(fd)
        elif stat.S_ISLNK(mode):
            ti.type, ti.linkname = tarfile.SYMTYPE, os.readlink(name, dir_fd=dir_fd)
            self.tar.addfile(ti)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            ti.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            self.tar.addfile(ti)
        elif stat.S_ISFIFO(mode):
            ti.type = tarfile.FIFOTYPE
            self.tar.addfile(ti)
        # sockets are not archived (as Go's archive/tar)


@contextlib.contextmanager
def open_archive(engine: Any, ref: str, unsafe_path: str) -> Iterator[tuple[dict[str, Any], Any]]:
    """Yields (stat of the path, write(out)): the stat first so that the API can answer 404 and
    set X-Docker-Container-Path-Stat before the first byte; `write(out)` then streams an
    uncompressed tar of the path to the binary file `out`. Entries are named after the path's
    last component (`.` for a path ending in `/.`: its contents)."""
    path = CleanPath.parse(unsafe_path)
    with container_root(engine, ref) as root:
        st, info = _stat(root, path)
        if path.want_dir and not stat.S_ISDIR(st.st_mode):
            raise InvalidArgument(f"{path.abs} is not a directory")

        def write(out: Any) -> None:
            fd, name, _ = _open_parent(root, path, follow_last=path.want_dir)
            try:
                if unsafe_path.endswith("/."):
                    arcname = "."
                elif path.parts:
                    arcname = path.base
                else:
                    arcname = "."
                with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                    _Writer(tar).add(fd, name, arcname)
            finally:
                os.close(fd)

        yield info, write


def get_archive(engine: Any, ref: str, unsafe_path: str, out: Any) -> dict[str, Any]:
    """Write a tar of `unsafe_path` in the container to `out`; returns the path's stat."""
    with open_archive(engine, ref, unsafe_path) as (info, write):
        write(out)
        return info


# --- writing --------------------------------------------------------------------------------------

def _check_no_overwrite(root: SafeRoot, dest: list[str], spool: IO[bytes]) -> None:
    """dockerd's noOverwriteDirNonDir: refuse a tar that would replace a directory with a
    non-directory or the reverse."""
    try:
        with tarfile.open(fileobj=spool, mode="r|") as tar:
            for ti in tar:
                parts = split_unsafe(ti.name)
                if not parts:
                    continue
                try:
                    fd, _ = root.open_dir([*dest, *parts[:-1]], follow=True)
                except (FileNotFoundError, InvalidArgument):
                    continue
                try:
                    st = lstat_at(fd, parts[-1])
                finally:
                    os.close(fd)
                if st is None:
                    continue
                if stat.S_ISDIR(st.st_mode) and not ti.isdir():
                    raise InvalidArgument(f"cannot overwrite directory {ti.name!r} with non-directory")
                if not stat.S_ISDIR(st.st_mode) and ti.isdir():
                    raise InvalidArgument(f"cannot overwrite non-directory {ti.name!r} with directory")
    except tarfile.TarError as exc:
        raise InvalidArgument(f"archive is malformed: {exc}") from exc
    spool.seek(0)


def put_archive(engine: Any, ref: str, unsafe_path: str, stream: Any, *,
                no_overwrite_dir_non_dir: bool = False, copy_uid_gid: bool = False) -> None:
    """Extract the uncompressed tar `stream` into the directory `unsafe_path` of the container
    (which must exist: NotFound otherwise, InvalidArgument when it is not a directory).
    Ownership comes from the tar (`copy_uid_gid` is accepted; dockerd's chown to the container's
    user is not done). The tar goes through apply_layer's copy mode: `.wh.` entries delete."""
    del copy_uid_gid
    path = CleanPath.parse(unsafe_path)
    with container_root(engine, ref, write=True) as root:
        try:
            fd, resolved = root.open_dir(path.parts)
        except FileNotFoundError as exc:
            raise NotFound(f"Could not find the file {path.abs} in container") from exc
        except InvalidArgument as exc:
            if "not a directory" in str(exc):
                raise InvalidArgument(f"extraction point is not a directory: {path.abs}") from exc
            raise
        try:
            if no_overwrite_dir_non_dir:
                spool_dir = getattr(engine, "data_root", None)
                with tempfile.SpooledTemporaryFile(SPOOL_IN_MEMORY, dir=spool_dir) as spool:
                    while chunk := stream.read(CHUNK):
                        spool.write(chunk)
                    spool.seek(0)
                    _check_no_overwrite(root, resolved, spool)
                    apply_layer(spool, proc_path(fd), overlay_whiteouts=False)
            else:
                apply_layer(stream, proc_path(fd), overlay_whiteouts=False)
        finally:
            os.close(fd)
