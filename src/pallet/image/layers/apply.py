"""Apply an OCI layer (an uncompressed tar changeset) to a snapshot directory.

Spec: OCI image-spec layer.md ("Applying Changesets", "Whiteouts", "Opaque Whiteout").

Two targets, chosen by the snapshotter:
- overlay_whiteouts=True: `target_dir` is an empty overlay upper dir that will be stacked on
  the parent layers. `.wh.<name>` becomes a 0/0 character device (overlayfs.rst "whiteouts and
  opaque directories"; mknod needs CAP_MKNOD) and `.wh..wh..opq` sets trusted.overlay.opaque=y.
- overlay_whiteouts=False: `target_dir` already holds the parent's files (copying
  snapshotter); whiteouts delete for real.
In both modes a whiteout applies only to lower layers: what this same layer wrote is kept,
whatever order the entries come in (layer.md: "Files that are present in the same layer as a
whiteout file can only be hidden by whiteout files in subsequent layers").

Security (STYLE.md §7): every member name is an `unsafe_path`. Parents are opened component by
component with O_NOFOLLOW relative to a directory fd (safepath.SafeRoot), symlinks met on the
way are resolved as if the target were '/', and the final component is created with *at()
calls and O_EXCL|O_NOFOLLOW after removing what was there, so no entry (nor a symlink planted by
an earlier entry) can make us write outside the target. Hardlink targets are resolved the same
way and must already exist inside the target. The limits below bound the work a hostile tar can
cause; exceeding one raises InvalidArgument and the caller discards the snapshot.

The diff_id (sha256 of the uncompressed tar, the config's rootfs.diff_ids) is computed while
reading, including the padding after the end-of-archive marker.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pallet.errors import InvalidArgument, NotSupported
from pallet.image.layers.compression import DecompressingReader, Reader
from pallet.image.layers.safepath import (
    DIR_FLAGS,
    SafeRoot,
    lstat_at,
    proc_path,
    remove_at,
    split_unsafe,
)

log = logging.getLogger(__name__)

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
OPAQUE_WHITEOUT = ".wh..wh..opq"
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"

CHUNK = 1 << 20
COPY_READAHEAD = 64 << 10
SPARSE_BLOCK = 64 << 10
# Headers (with PAX records and GNU long names) of one entry may not take more than this;
# tarfile reads a whole extended header into memory, so it must be bounded before that.
MAX_HEADER_BYTES = 16 << 20

# xattr namespaces taken from a layer. security.* other than capabilities describes the host
# (SELinux/SMACK labels) and is not ours to copy; overlay's own xattrs would let a layer forge
# whiteouts, redirects or metacopy in an upper dir; system.* (ACLs) is not carried by OCI layers.
_XATTR_ALLOWED_PREFIXES = ("user.", "trusted.")
_XATTR_ALLOWED_EXACT = ("security.capability",)
_XATTR_DENIED_PREFIXES = ("trusted.overlay.", "user.overlay.")


@dataclass(frozen=True)
class Limits:
    """Bounds on what one layer may make us do; defaults fit real images with room to spare."""

    max_size: int = 32 << 30           # uncompressed tar bytes
    max_entries: int = 1_000_000        # tar members
    max_file_size: int = 16 << 30       # one regular file (apparent size, sparse included)
    max_ratio: float = 200.0            # decompressed/compressed, checked past `ratio_grace`
    ratio_grace: int = 64 << 20
    max_path_bytes: int = 4096          # PATH_MAX
    max_depth: int = 256                # path components


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class ApplyResult:
    size: int                  # bytes of regular file content written (apparent size)
    diff_id: str               # "sha256:<hex>" of the uncompressed tar stream
    tar_size: int = 0          # bytes of the uncompressed tar stream
    entries: int = 0
    warnings: tuple[str, ...] = field(default=())


class _HashingReader:
    """The tar stream as tarfile sees it: buffered, forward-seekable, hashed and counted.

    Handing tarfile a seekable object (mode "r:") instead of a pipe (mode "r|") avoids its
    _Stream buffer, which re-copies the whole buffer on every 512-byte header read. Backward
    seeks are refused: the input is a stream. Bytes are hashed as they are pulled from `raw`,
    and `budget` bounds what one header may consume.
    """

    def __init__(self, raw: Reader, max_size: int, hash: bool = True) -> None:
        self.raw = raw
        self.h = hashlib.sha256() if hash else None
        self.count = 0          # pulled from raw
        self.pos = 0            # served to the caller
        self.buf = b""
        self.off = 0
        self.max_size = max_size
        self.budget: int | None = None
        # Reading ahead a whole CHUNK would pull the start of each file's data through Python
        # when the rest goes file to file (`copy_into`): read ahead little, for the headers.
        self._fill_size = COPY_READAHEAD if self.can_copy else CHUNK

    def _fill(self) -> bool:
        data = self.raw.read(self._fill_size)
        if not data:
            return False
        if self.h is not None:
            self.h.update(data)
        self.count += len(data)
        if self.count > self.max_size:
            raise InvalidArgument(f"layer is larger than the limit of {self.max_size} bytes")
        self.buf, self.off = data, 0
        return True

    def read(self, n: int = -1, /) -> bytes:
        if n is None or n < 0:
            n = self.max_size
        out: list[bytes] = []
        want = n
        while want:
            if self.off >= len(self.buf) and not self._fill():
                break
            piece = self.buf[self.off:self.off + want]
            self.off += len(piece)
            want -= len(piece)
            out.append(piece)
        data = out[0] if len(out) == 1 else b"".join(out)
        self.pos += len(data)
        if self.budget is not None:
            self.budget -= len(data)
            if self.budget < 0:
                raise InvalidArgument(
                    f"a tar header takes more than {MAX_HEADER_BYTES} bytes (PAX or long name)")
        return data

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence == 1:
            pos += self.pos
        elif whence != 0:
            raise InvalidArgument("layer streams cannot seek from the end")
        if pos < self.pos:
            raise InvalidArgument("layer tar needs a backward seek; it is not a stream-ordered tar")
        while self.pos < pos:
            if not self.read(min(pos - self.pos, CHUNK)):
                break
        return self.pos

    @property
    def can_copy(self) -> bool:
        """True when file data can go from the source to the target file without passing
        through Python (`copy_into`): nothing to hash here (the caller verifies these bytes
        itself) and a raw stream that offers it (DecompressingReader.can_copy)."""
        return self.h is None and bool(getattr(self.raw, "can_copy", False))

    def copy_into(self, fd: int, n: int) -> int:
        """Up to `n` bytes of the stream into the file `fd` (at its position): what is buffered
        here first, then straight from the source (`can_copy` must be true). Returns the count,
        0 at the end of the stream."""
        if self.off < len(self.buf):
            view = memoryview(self.buf)[self.off:self.off + n]
            done = os.write(fd, view)
            self.off += done
        else:
            done = self.raw.copy_into(fd, n)  # type: ignore[attr-defined]  # can_copy said so
            self.count += done
            if self.count > self.max_size:
                raise InvalidArgument(f"layer is larger than the limit of {self.max_size} bytes")
        self.pos += done
        return done

    def drain(self) -> None:
        self.budget = None
        while self.off < len(self.buf) or self._fill():
            self.off = len(self.buf)


class _StrictTarInfo(tarfile.TarInfo):
    """tarfile ends the archive silently on a corrupt or truncated header past offset 0; a
    layer with a damaged middle must fail instead. A clean EOF at a member boundary is accepted
    (Go's archive/tar does the same)."""

    @classmethod
    def fromtarfile(cls, tarfile_obj: tarfile.TarFile) -> Any:
        try:
            return super().fromtarfile(tarfile_obj)
        except tarfile.HeaderError as exc:
            # EOFHeaderError (zero block) and EmptyHeaderError (clean EOF) end the archive.
            if type(exc).__name__ in ("EOFHeaderError", "EmptyHeaderError"):
                raise
            raise InvalidArgument(f"layer tar is corrupt at byte {tarfile_obj.offset}: {exc}") from exc


def _key(parts: Sequence[str]) -> str:
    return "/".join(parts)


def _xattrs(ti: tarfile.TarInfo) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    for k, v in ti.pax_headers.items():
        if k.startswith("SCHILY.xattr."):
            out.append((k[len("SCHILY.xattr."):], v.encode("utf-8", "surrogateescape")))
        elif k.startswith("LIBARCHIVE.xattr."):
            import base64
            import urllib.parse

            name = urllib.parse.unquote(k[len("LIBARCHIVE.xattr."):])
            out.append((name, base64.b64decode(v + "=" * (-len(v) % 4))))
    return out


def _xattr_allowed(name: str) -> bool:
    if name.startswith(_XATTR_DENIED_PREFIXES):
        return False
    return name.startswith(_XATTR_ALLOWED_PREFIXES) or name in _XATTR_ALLOWED_EXACT


def _ns(t: float) -> int:
    return int(t * 1_000_000_000) if isinstance(t, float) else int(t) * 1_000_000_000


class _Applier:
    def __init__(self, target_dir: str, overlay: bool, limits: Limits,
                 lower_dirs: Sequence[str] | Callable[[], Sequence[str]]) -> None:
        self.root = SafeRoot(target_dir)
        self.overlay = overlay
        self.limits = limits
        self._lowers = lower_dirs
        self.is_root = os.geteuid() == 0
        self.created: set[str] = set()      # paths this layer wrote (resolved)
        self.prefixes: set[str] = set()     # their ancestors
        self.whiteouts: set[str] = set()    # overlay whiteouts this layer made
        self.dir_times: list[tuple[list[str], int, int, int | None]] = []
        self.warnings: dict[str, None] = {}
        self.size = 0

    def close(self) -> None:
        self.root.close()

    def lower_dirs(self) -> list[str]:
        """The lower dirs, asked for only when a hardlink needs a copy-up (a layer unpacked in
        parallel with its parents waits there until they are in place)."""
        if callable(self._lowers):
            self._lowers = list(self._lowers())
        return list(self._lowers)

    def warn(self, msg: str) -> None:
        if msg not in self.warnings:
            self.warnings[msg] = None
            log.warning("%s", msg)

    # -- bookkeeping -------------------------------------------------------------------------
    def _mark(self, key: str) -> None:
        self.created.add(key)
        while "/" in key:
            key = key.rsplit("/", 1)[0]
            if key in self.prefixes:
                return
            self.prefixes.add(key)

    def _mark_prefix(self, parts: Sequence[str]) -> None:
        key = _key(parts)
        while key and key not in self.prefixes:
            self.prefixes.add(key)
            key = key.rsplit("/", 1)[0] if "/" in key else ""

    def _parent(self, parts: list[str], create: bool = True) -> tuple[int, list[str]]:
        fd, resolved = self.root.open_dir(parts[:-1], create=create,
                                          on_create=lambda p: self._mark(_key(p)))
        self._mark_prefix(resolved)
        return fd, resolved

    # -- entry point -------------------------------------------------------------------------
    def entry(self, ti: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        unsafe_path = ti.name
        if len(os.fsencode(unsafe_path)) > self.limits.max_path_bytes:
            raise InvalidArgument(f"layer entry name is longer than {self.limits.max_path_bytes} bytes")
        parts = split_unsafe(unsafe_path)
        if len(parts) > self.limits.max_depth:
            raise InvalidArgument(f"layer entry {unsafe_path[:200]!r}... is nested deeper than "
                                  f"{self.limits.max_depth} directories")
        if any(len(os.fsencode(p)) > 255 for p in parts):
            raise InvalidArgument(f"layer entry {unsafe_path[:200]!r} has a component longer than "
                                  "255 bytes")
        if ti.isreg() and ti.size > self.limits.max_file_size:
            raise InvalidArgument(f"layer entry {unsafe_path[:200]!r} claims {ti.size} bytes, over the "
                                  f"single-file limit of {self.limits.max_file_size}")
        if not parts:
            return  # the root itself ("./"): the snapshotter owns its attributes
        name = parts[-1]
        if name.startswith(WHITEOUT_PREFIX):
            self._whiteout(parts, unsafe_path)
            return
        pfd, resolved = self._parent(parts)
        try:
            key = _key([*resolved, name])
            if ti.isreg():
                self._regular(pfd, name, key, ti, tar)
            elif ti.isdir():
                self._directory(pfd, name, key, resolved, ti)
            elif ti.issym():
                self._replace(pfd, name, key)
                os.symlink(ti.linkname, name, dir_fd=pfd)
                self._mark(key)
                self._meta_path(pfd, name, ti, symlink=True)
            elif ti.islnk():
                self._hardlink(pfd, name, key, ti)
            elif ti.ischr() or ti.isblk() or ti.isfifo():
                self._special(pfd, name, key, ti)
            else:
                self.warn(f"skipping layer entry {unsafe_path!r} of unsupported tar type {ti.type!r}")
        finally:
            os.close(pfd)

    # -- kinds -------------------------------------------------------------------------------
    def _replace(self, pfd: int, name: str, key: str, keep_dir: bool = False) -> os.stat_result | None:
        """Remove what is at name unless it is a directory and keep_dir (then return its stat)."""
        st = lstat_at(pfd, name)
        if st is None:
            return None
        if keep_dir and stat.S_ISDIR(st.st_mode):
            return st
        remove_at(pfd, name, st)
        return None

    def _regular(self, pfd: int, name: str, key: str, ti: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        self._replace(pfd, name, key)
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                     dir_fd=pfd)
        self._mark(key)
        try:
            if ti.sparse is not None:
                self._copy_sparse(fd, ti, tar)
            else:
                self._copy(fd, ti.size, tar)
            self.size += ti.size
            self._meta_fd(fd, ti)
        finally:
            os.close(fd)

    def _copy(self, fd: int, size: int, tar: tarfile.TarFile) -> None:
        stream = tar.fileobj
        assert stream is not None
        remaining = size
        if isinstance(stream, _HashingReader) and stream.can_copy:
            # The bytes of a plain layer go from the blob's file to this one in the kernel
            # (copy_file_range(2)): no second pass through Python's buffers, half the copying.
            while remaining:
                done = stream.copy_into(fd, remaining)
                if not done:
                    raise InvalidArgument("layer tar is truncated inside a file")
                remaining -= done
            return
        while remaining:
            data = stream.read(min(remaining, CHUNK))
            if not data:
                raise InvalidArgument("layer tar is truncated inside a file")
            remaining -= len(data)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]

    def _copy_sparse(self, fd: int, ti: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        src = tar.extractfile(ti)
        assert src is not None
        pos = 0
        while True:
            data = src.read(CHUNK)
            if not data:
                break
            view = memoryview(data)
            for off in range(0, len(data), SPARSE_BLOCK):
                piece = view[off:off + SPARSE_BLOCK]
                if data.count(0, off, off + SPARSE_BLOCK) == len(piece):
                    os.lseek(fd, len(piece), os.SEEK_CUR)  # keep the hole
                    continue
                while piece:
                    piece = piece[os.write(fd, piece):]
            pos += len(data)
        if pos != ti.size:
            raise InvalidArgument(f"sparse layer entry {ti.name!r} is truncated")
        os.ftruncate(fd, ti.size)

    def _directory(self, pfd: int, name: str, key: str, resolved: list[str], ti: tarfile.TarInfo) -> None:
        existing = self._replace(pfd, name, key, keep_dir=True)
        if existing is None:
            os.mkdir(name, 0o700, dir_fd=pfd)
        fd = os.open(name, DIR_FLAGS, dir_fd=pfd)
        try:
            if self.overlay and key in self.whiteouts:
                # A directory recreated where this layer left a whiteout must not show the lower
                # directory's contents through it.
                os.setxattr(fd, OVERLAY_OPAQUE_XATTR, b"y")
            self._mark(key)
            mode = ti.mode & 0o7777
            deferred_mode = None
            if not self.is_root and mode & 0o700 != 0o700:
                # Without CAP_DAC_OVERRIDE we still need to write into it; restored at the end.
                deferred_mode, mode = mode, mode | 0o700
            self._meta_fd(fd, ti, mode=mode, times=False)
        finally:
            os.close(fd)
        self.dir_times.append(([*resolved, name], _ns(ti.mtime), _ns(ti.mtime), deferred_mode))

    def _special(self, pfd: int, name: str, key: str, ti: tarfile.TarInfo) -> None:
        self._replace(pfd, name, key)
        mode = ti.mode & 0o7777
        if ti.isfifo():
            os.mkfifo(name, mode, dir_fd=pfd)
        else:
            kind = stat.S_IFCHR if ti.ischr() else stat.S_IFBLK
            try:
                os.mknod(name, mode | kind, os.makedev(ti.devmajor, ti.devminor), dir_fd=pfd)
            except PermissionError:
                self.warn("skipping device nodes: creating them needs CAP_MKNOD")
                return
        self._mark(key)
        self._meta_path(pfd, name, ti, symlink=False)

    def _hardlink(self, pfd: int, name: str, key: str, ti: tarfile.TarInfo) -> None:
        unsafe_link = ti.linkname
        lparts = split_unsafe(unsafe_link)
        if not lparts:
            raise InvalidArgument(f"hardlink {ti.name!r} points at the root")
        try:
            lfd, _ = self.root.open_dir(lparts[:-1])
        except FileNotFoundError:
            lfd, _ = self._copy_up(lparts, unsafe_link)
        try:
            lst = lstat_at(lfd, lparts[-1])
            if lst is None:
                os.close(lfd)
                lfd = -1
                lfd, _ = self._copy_up(lparts, unsafe_link)
                lst = lstat_at(lfd, lparts[-1])
                assert lst is not None
            if stat.S_ISDIR(lst.st_mode):
                raise InvalidArgument(f"hardlink {ti.name!r} points at a directory {unsafe_link!r}")
            st = lstat_at(pfd, name)
            if st is not None and (st.st_dev, st.st_ino) == (lst.st_dev, lst.st_ino):
                return
            self._replace(pfd, name, key)
            os.link(lparts[-1], name, src_dir_fd=lfd, dst_dir_fd=pfd, follow_symlinks=False)
            self._mark(key)
        finally:
            if lfd >= 0:
                os.close(lfd)

    def _copy_up(self, lparts: list[str], unsafe_link: str) -> tuple[int, list[str]]:
        """Overlay mode: a hardlink to a file of a lower layer. Like overlayfs copy-up, copy the
        file (and its parents' attributes) into the upper dir so the link has something to
        point at. Returns the parent fd in the target."""
        missing = InvalidArgument(f"hardlink target {unsafe_link!r} does not exist in the layer")
        if not self.overlay:
            raise missing
        lower_dirs = self.lower_dirs()
        if not lower_dirs:
            raise missing
        for lower in lower_dirs:
            with SafeRoot(lower) as lroot:
                try:
                    sfd, _ = lroot.open_dir(lparts[:-1])
                except (FileNotFoundError, InvalidArgument):
                    continue
                try:
                    st = lstat_at(sfd, lparts[-1])
                    if st is None:
                        continue
                    if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                        raise missing  # deleted by a whiteout in that layer
                    if not stat.S_ISREG(st.st_mode):
                        raise InvalidArgument(f"hardlink target {unsafe_link!r} in a lower layer is "
                                              "not a regular file")
                    dfd, resolved = self.root.open_dir(lparts[:-1], create=True)
                    self._mark_prefix(resolved)
                    src = os.open(lparts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=sfd)
                    try:
                        dst = os.open(lparts[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                                      | os.O_CLOEXEC, 0o600, dir_fd=dfd)
                        try:
                            while data := os.read(src, CHUNK):
                                os.write(dst, data)
                            try:
                                os.fchown(dst, st.st_uid, st.st_gid)
                            except PermissionError:
                                pass
                            os.fchmod(dst, stat.S_IMODE(st.st_mode))
                            for xname in os.listxattr(src):
                                if _xattr_allowed(xname):
                                    os.setxattr(dst, xname, os.getxattr(src, xname))
                            os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
                        finally:
                            os.close(dst)
                    finally:
                        os.close(src)
                    return dfd, resolved
                finally:
                    os.close(sfd)
        raise missing

    def _whiteout(self, parts: list[str], unsafe_path: str) -> None:
        name = parts[-1]
        if name == OPAQUE_WHITEOUT:
            self._opaque(parts[:-1])
            return
        if name.startswith(WHITEOUT_META_PREFIX):
            log.debug("ignoring aufs metadata entry %r", unsafe_path)
            return
        victim = name[len(WHITEOUT_PREFIX):]
        if not victim or victim in (".", ".."):
            raise InvalidArgument(f"whiteout {unsafe_path!r} names nothing to delete")
        if self.overlay:
            pfd, resolved = self._parent(parts)
        else:
            try:
                pfd, resolved = self.root.open_dir(parts[:-1])
            except FileNotFoundError:
                return  # nothing below to delete
        try:
            key = _key([*resolved, victim])
            if not self.overlay:
                self._prune(pfd, victim, key)
                return
            st = lstat_at(pfd, victim)
            if st is None:
                try:
                    os.mknod(victim, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=pfd)
                except PermissionError as exc:
                    raise NotSupported("overlay whiteouts are 0/0 character devices and need "
                                       "CAP_MKNOD; use the copying snapshotter") from exc
                self.whiteouts.add(key)
            elif stat.S_ISDIR(st.st_mode) and key not in self.created:
                # Made implicitly by this layer's own entries below it: keep them, hide the rest.
                fd = os.open(victim, DIR_FLAGS, dir_fd=pfd)
                try:
                    os.setxattr(fd, OVERLAY_OPAQUE_XATTR, b"y")
                finally:
                    os.close(fd)
            # else: written by this layer, which a whiteout in the same layer does not hide.
        finally:
            os.close(pfd)

    def _opaque(self, dparts: list[str]) -> None:
        if self.overlay:
            fd, resolved = self.root.open_dir(dparts, create=True,
                                              on_create=lambda p: self._mark(_key(p)))
            self._mark_prefix(resolved)
            try:
                os.setxattr(fd, OVERLAY_OPAQUE_XATTR, b"y")
            finally:
                os.close(fd)
            return
        try:
            fd, resolved = self.root.open_dir(dparts)
        except FileNotFoundError:
            return
        try:
            base = _key(resolved)
            for child in os.listdir(fd):
                self._prune(fd, child, f"{base}/{child}" if base else child)
        finally:
            os.close(fd)

    def _prune(self, pfd: int, name: str, key: str) -> None:
        """Copy mode: delete `name` as far as it comes from lower layers."""
        st = lstat_at(pfd, name)
        if st is None:
            return
        if stat.S_ISDIR(st.st_mode) and (key in self.created or key in self.prefixes):
            fd = os.open(name, DIR_FLAGS, dir_fd=pfd)
            try:
                for child in os.listdir(fd):
                    self._prune(fd, child, f"{key}/{child}")
            finally:
                os.close(fd)
        elif key not in self.created:
            remove_at(pfd, name, st)

    # -- metadata ----------------------------------------------------------------------------
    def _chown(self, fn: Any, *args: Any, **kw: Any) -> None:
        try:
            fn(*args, **kw)
        except PermissionError:
            if self.is_root:
                raise
            self.warn("file owners from the layer were not applied: chown needs CAP_CHOWN")

    def _set_xattrs(self, target: int | str, ti: tarfile.TarInfo, follow: bool = True) -> None:
        for xname, value in _xattrs(ti):
            if not _xattr_allowed(xname):
                log.debug("skipping xattr %s on %r", xname, ti.name)
                continue
            try:
                os.setxattr(target, xname, value, follow_symlinks=follow)
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EACCES, errno.EINVAL):
                    raise
                self.warn(f"could not set xattr {xname} (first on {ti.name!r}): {exc.strerror}")

    def _meta_fd(self, fd: int, ti: tarfile.TarInfo, *, mode: int | None = None, times: bool = True) -> None:
        self._chown(os.fchown, fd, ti.uid, ti.gid)
        # chmod after chown: chown clears setuid/setgid (chown(2)).
        os.fchmod(fd, ti.mode & 0o7777 if mode is None else mode)
        self._set_xattrs(fd, ti)
        if times:
            mt = _ns(ti.mtime)
            at = _ns(float(ti.pax_headers["atime"])) if "atime" in ti.pax_headers else mt
            os.utime(fd, ns=(at, mt))

    def _meta_path(self, pfd: int, name: str, ti: tarfile.TarInfo, *, symlink: bool) -> None:
        self._chown(os.chown, name, ti.uid, ti.gid, dir_fd=pfd, follow_symlinks=False)
        if symlink:
            self._set_xattrs(proc_path(pfd, name), ti, follow=False)
        else:
            # A fifo or device node: chmod through an O_PATH fd, never opening the node itself.
            fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
            try:
                os.chmod(proc_path(fd), ti.mode & 0o7777)
                self._set_xattrs(proc_path(fd), ti)
            finally:
                os.close(fd)
        mt = _ns(ti.mtime)
        os.utime(name, ns=(mt, mt), dir_fd=pfd, follow_symlinks=False)

    def finish(self) -> None:
        """Directory mtimes (and deferred modes) last: writing entries changed them."""
        for parts, at, mt, mode in reversed(self.dir_times):
            try:
                fd, _ = self.root.open_dir(parts, follow=False)
            except (FileNotFoundError, InvalidArgument):
                continue  # replaced or deleted by a later entry
            try:
                if mode is not None:
                    os.fchmod(fd, mode)
                os.utime(fd, ns=(at, mt))
            finally:
                os.close(fd)


def apply_layer(stream: Reader, target_dir: str, *, overlay_whiteouts: bool,
                limits: Limits = DEFAULT_LIMITS,
                lower_dirs: Sequence[str] | Callable[[], Sequence[str]] = (),
                syscalls: object | None = None, verified_diff_id: str | None = None) -> ApplyResult:
    """Extract the uncompressed layer tar `stream` into `target_dir`.

    `lower_dirs` (overlay mode only, topmost first) lets a hardlink to a file of a parent layer
    be satisfied by copying that file up, as overlayfs itself would; it may be a callable,
    called only when such a hardlink comes (so the parents can still be unpacking meanwhile).
    `verified_diff_id`: the caller verifies these exact bytes against that digest itself (an
    uncompressed layer whose blob digest is its diff_id, checked by the content store), so the
    stream is not hashed a second time and the result reports it. `syscalls` is accepted for
    the kernel-door seam (STYLE.md §2); every call made here has a stdlib `os` form, so nothing
    goes through it today. Not atomic: on any exception the target is half-written and the
    caller discards the snapshot. Raises InvalidArgument for a malformed or hostile tar or a
    limit exceeded, NotSupported when overlay whiteouts cannot be created.
    """
    del syscalls
    reader = _HashingReader(stream, limits.max_size, hash=verified_diff_id is None)
    applier = _Applier(target_dir, overlay_whiteouts, limits, lower_dirs)
    entries = 0
    try:
        try:
            reader.budget = MAX_HEADER_BYTES + CHUNK
            with tarfile.open(fileobj=reader, mode="r:",  # type: ignore[call-overload]
                              tarinfo=_StrictTarInfo) as tar:
                while True:
                    reader.budget = MAX_HEADER_BYTES + CHUNK
                    ti = tar.next()
                    reader.budget = None
                    if ti is None:
                        break
                    tar.members.clear()  # tarfile would keep every TarInfo otherwise
                    entries += 1
                    if entries > limits.max_entries:
                        raise InvalidArgument(f"layer has more than {limits.max_entries} entries")
                    # Regular file data is consumed by the applier; tar.next() then skips the
                    # padding to tar.offset (header-only types carry no data, as in Go's reader).
                    applier.entry(ti, tar)
            reader.budget = None
            applier.finish()
        except tarfile.TarError as exc:
            raise InvalidArgument(f"layer tar is malformed: {exc}") from exc
        except OSError as exc:
            if exc.errno in (errno.ENAMETOOLONG, errno.ELOOP, errno.ENOTDIR, errno.EISDIR,
                             errno.EEXIST, errno.EMLINK, errno.EXDEV):
                raise InvalidArgument(f"cannot apply layer entry: {exc}") from exc
            raise
        reader.drain()
    finally:
        applier.close()
    if verified_diff_id is not None:
        diff_id = verified_diff_id
    else:
        assert reader.h is not None
        diff_id = f"sha256:{reader.h.hexdigest()}"
    return ApplyResult(size=applier.size, diff_id=diff_id,
                       tar_size=reader.count, entries=entries, warnings=tuple(applier.warnings))


def decompress_layer(raw: Reader, limits: Limits = DEFAULT_LIMITS) -> DecompressingReader:
    """A reader of the uncompressed tar in `raw` (gzip, zstd, xz, bzip2 or plain, detected by
    magic) that enforces the size and decompression-ratio limits; pass it to apply_layer."""
    return DecompressingReader(raw, max_ratio=limits.max_ratio, max_output=limits.max_size,
                               grace=limits.ratio_grace)
