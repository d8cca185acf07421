"""File trees for COPY and ADD: content hashes for the cache and copies into a snapshot.

Both work on directory file descriptors with *at() calls and O_NOFOLLOW, so a symlink in the
source or in the destination tree is copied as a link, never followed out of its root."""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pallet.build.model import BuildError

Skip = Callable[[str], bool]


def hash_tree(h: Any, dir_fd: int, name: str, rel: str, skip: Skip | None = None,
              path: str | None = None) -> None:
    """Feed one entry (and what is below it) into `h`: path, type, mode bits, link target and
    content digest. Never mtimes or owners: those do not decide what COPY produces. `skip`
    (COPY --exclude) is asked with `path`, the entry's path relative to the copy's source
    (None: `name`; "" for a source directory itself, which is never skipped)."""
    path = name if path is None else path
    if skip is not None and path and skip(path):
        return
    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISDIR(st.st_mode):
        h.update(f"d {rel} {mode:o}\0".encode("utf-8", "surrogateescape"))
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        try:
            for child in sorted(os.listdir(fd)):
                hash_tree(h, fd, child, f"{rel}/{child}", skip, f"{path}/{child}" if path else child)
        finally:
            os.close(fd)
    elif stat.S_ISLNK(st.st_mode):
        h.update(f"l {rel} {os.readlink(name, dir_fd=dir_fd)}\0".encode("utf-8", "surrogateescape"))
    elif stat.S_ISREG(st.st_mode):
        fh = hashlib.sha256()
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        with os.fdopen(fd, "rb") as f:
            while chunk := f.read(1 << 20):
                fh.update(chunk)
        h.update(f"f {rel} {mode:o} {fh.hexdigest()}\0".encode("utf-8", "surrogateescape"))


@dataclass(frozen=True)
class CopyOpts:
    uid: int | None = None
    gid: int | None = None
    chmod: int | None = None


def _remove_at(dir_fd: int, name: str) -> None:
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        try:
            for child in os.listdir(fd):
                _remove_at(fd, child)
        finally:
            os.close(fd)
        os.rmdir(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)


def _own(dst_fd: int, name: str, st: os.stat_result, opts: CopyOpts, *, symlink: bool = False) -> None:
    uid = opts.uid if opts.uid is not None else 0
    gid = opts.gid if opts.gid is not None else 0
    os.chown(name, uid, gid, dir_fd=dst_fd, follow_symlinks=False)
    if not symlink:
        mode = opts.chmod if opts.chmod is not None else stat.S_IMODE(st.st_mode)
        os.chmod(name, mode, dir_fd=dst_fd)
    os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dst_fd, follow_symlinks=False)


def copy_entry(src_fd: int, name: str, dst_fd: int, dst_name: str, opts: CopyOpts,
               contents_only: bool = False, skip: Skip | None = None, path: str | None = None) -> None:
    """Copy `name` (under directory fd `src_fd`) to `dst_name` under `dst_fd`; with
    `contents_only` a directory's children go straight into `dst_fd` (COPY dir/ dest).
    `skip` and `path` as for `hash_tree`."""
    path = name if path is None else path
    if skip is not None and path and skip(path):
        return
    st = os.stat(name, dir_fd=src_fd, follow_symlinks=False)
    if stat.S_ISDIR(st.st_mode):
        sfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_fd)
        try:
            if contents_only:
                dfd = os.dup(dst_fd)
            else:
                try:
                    dst = os.stat(dst_name, dir_fd=dst_fd, follow_symlinks=False)
                    if not stat.S_ISDIR(dst.st_mode):
                        _remove_at(dst_fd, dst_name)
                        raise FileNotFoundError
                except FileNotFoundError:
                    os.mkdir(dst_name, 0o755, dir_fd=dst_fd)
                dfd = os.open(dst_name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                              dir_fd=dst_fd)
            try:
                for child in sorted(os.listdir(sfd)):
                    copy_entry(sfd, child, dfd, child, opts, skip=skip,
                               path=f"{path}/{child}" if path else child)
            finally:
                os.close(dfd)
        finally:
            os.close(sfd)
        if not contents_only:
            _own(dst_fd, dst_name, st, opts)
        return
    with contextlib.suppress(FileNotFoundError):
        dst = os.stat(dst_name, dir_fd=dst_fd, follow_symlinks=False)
        if stat.S_ISDIR(dst.st_mode):
            raise BuildError(f"cannot copy to non-directory: {dst_name!r} exists as a directory")
        os.unlink(dst_name, dir_fd=dst_fd)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(name, dir_fd=src_fd), dst_name, dir_fd=dst_fd)
        _own(dst_fd, dst_name, st, opts, symlink=True)
    elif stat.S_ISREG(st.st_mode):
        s = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_fd)
        d = os.open(dst_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                    dir_fd=dst_fd)
        try:
            while chunk := os.read(s, 1 << 20):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(d, view):]
        finally:
            os.close(s)
            os.close(d)
        _own(dst_fd, dst_name, st, opts)
    # Sockets, fifos and devices are not copied (Docker's COPY skips sockets; a context rarely
    # holds the others and a layer should not get device nodes from a build context).


__all__ = ["CopyOpts", "Skip", "copy_entry", "hash_tree"]
