"""Race-free path resolution under a root directory fd, for extracting untrusted layer tars.

`pallet.oci.securejoin.secure_join` answers with a host path string, which a later `open()`
resolves again: between the two, an earlier entry of the same tar may have swapped a directory
for a symlink. Here every component is opened relative to the previous directory's fd with
O_NOFOLLOW|O_DIRECTORY, so the kernel never follows a link on our behalf. A symlink met on the
way is read and interpreted as the container would see it: relative to the directory holding
it, an absolute target restarting at the root, and `..` never climbing above the root (the
semantics of filepath-securejoin and of openat2(RESOLVE_IN_ROOT), which we cannot call without
ctypes). Callers then act on the final component with *at() calls relative to the returned fd.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Sequence

from pallet.errors import InvalidArgument

# Linux's MAXSYMLINKS (include/linux/namei.h): the same budget the kernel gives one lookup.
MAX_SYMLINKS = 40

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def split_unsafe(unsafe_path: str) -> list[str]:
    """Components of a tar member name, relative to the root.

    A leading '/' is dropped (GNU tar and containerd treat absolute names as relative to the
    extraction root); '.' and empty components vanish. A '..' component is refused outright:
    no legitimate layer needs one and clamping it would hide a hostile archive.
    """
    parts = [p for p in unsafe_path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidArgument(f"layer entry {unsafe_path!r}: '..' is not allowed in a member name")
    return parts


class SafeRoot:
    """An open directory that untrusted paths are resolved under; close() when done."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self.fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> SafeRoot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open_dir(self, parts: Sequence[str], *, create: bool = False, follow: bool = True,
                 mode: int = 0o755,
                 on_create: Callable[[list[str]], None] | None = None) -> tuple[int, list[str]]:
        """Open the directory at `parts` (untrusted) and return (fd, resolved components).

        Symlinks are followed inside the root when `follow`; otherwise meeting one raises
        InvalidArgument. With `create`, missing directories are made with `mode` and reported
        to `on_create` with their resolved components. Raises FileNotFoundError when a component
        is missing and not `create`, InvalidArgument when a component is not a directory or the
        symlink budget runs out. The caller closes the returned fd.
        """
        pending = list(reversed(parts))
        resolved: list[str] = []
        fd = os.dup(self.fd)
        links = 0
        try:
            while pending:
                part = pending.pop()
                if part in ("", "."):
                    continue
                if part == "..":
                    # Never above the root; reopen from the root rather than keeping one fd per
                    # level, so a deep tree does not exhaust the fd table.
                    if resolved:
                        resolved.pop()
                        os.close(fd)
                        fd = -1
                        fd = self._reopen(resolved)
                    continue
                try:
                    nfd = os.open(part, DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    try:
                        os.mkdir(part, mode, dir_fd=fd)
                        if on_create is not None:
                            on_create([*resolved, part])
                    except FileExistsError:
                        pass
                    pending.append(part)
                    continue
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    st = os.stat(part, dir_fd=fd, follow_symlinks=False)
                    if not stat.S_ISLNK(st.st_mode):
                        where = "/".join([*resolved, part])
                        raise InvalidArgument(f"{where!r} is not a directory") from exc
                    if not follow:
                        raise InvalidArgument(
                            f"{'/'.join([*resolved, part])!r} is a symlink where a directory "
                            "was expected") from exc
                    links += 1
                    if links > MAX_SYMLINKS:
                        raise InvalidArgument(f"too many symlinks resolving {'/'.join(parts)!r}") \
                            from exc
                    target = os.readlink(part, dir_fd=fd)
                    if target.startswith("/"):
                        resolved = []
                        os.close(fd)
                        fd = -1
                        fd = os.dup(self.fd)
                    pending.extend(reversed(target.split("/")))
                    continue
                os.close(fd)
                fd = nfd
                resolved.append(part)
            return fd, resolved
        except BaseException:
            if fd >= 0:
                os.close(fd)
            raise

    def _reopen(self, resolved: Sequence[str]) -> int:
        """Open an already resolved chain of real directories, refusing any symlink."""
        fd = os.dup(self.fd)
        try:
            for part in resolved:
                nfd = os.open(part, DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = nfd
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise InvalidArgument(f"{'/'.join(resolved)!r} changed while resolving") from exc
            raise
        return fd


def lstat_at(dir_fd: int, name: str) -> os.stat_result | None:
    """lstat of `name` in `dir_fd`, or None when it does not exist."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def remove_at(dir_fd: int, name: str, st: os.stat_result | None = None) -> None:
    """Remove `name` in `dir_fd` whatever it is, never following a symlink (a directory tree
    goes through shutil.rmtree's fd-based, symlink-attack-resistant walk)."""
    import shutil

    if st is None:
        st = lstat_at(dir_fd, name)
        if st is None:
            return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)


def proc_path(dir_fd: int, name: str | None = None) -> str:
    """A path that reaches `name` in `dir_fd` (or the fd itself) through /proc/self/fd, for
    calls that have no *at() form (setxattr, chmod of an O_PATH fd). Used with
    follow_symlinks=False the final component is never followed."""
    base = f"/proc/self/fd/{dir_fd}"
    return base if name is None else f"{base}/{name}"
