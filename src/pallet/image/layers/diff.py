"""Turn an overlay upper dir (a container's change) into an OCI layer, or a tree into a tar.

Output format: a POSIX.1-2001 (PAX) tar as Go's archive/tar writes layers: numeric uid/gid with
empty uname/gname, whole-second mtimes (PAX records only where ustar cannot hold a value),
xattrs as SCHILY.xattr.* records, no entry for the root, and two zero blocks at the end with no
record padding. Entries are in a fixed order, so the same tree gives the same bytes: depth
first, a directory before its contents, children sorted by name bytes, and within a directory
the opaque marker first, then the whiteouts (layer.md: "whiteout files appear before sibling
directory entries"), then the rest.

Overlay to OCI (write_diff): a 0/0 character device is a whiteout -> `.wh.<name>`; a directory
with trusted.overlay.opaque=y (or user.overlay.opaque=y, the userxattr mount option) -> the
directory entry plus `<dir>/.wh..wh..opq`. Overlay's own xattrs are never copied. Only the
upper dir is walked, so a commit costs what the change costs, not what the image does.

The diff_id (sha256 of the tar) and the digest (sha256 of the compressed blob) are computed in
the same pass that writes `out`.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass

from pallet.errors import InvalidArgument, NotSupported
from pallet.image.layers.compression import Compression, Compressor, Writer
from pallet.image.layers.safepath import DIR_FLAGS, SafeRoot, proc_path

CHUNK = 1 << 20
_ZERO = bytes(CHUNK)

_OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")
_UNSUPPORTED_XATTRS = ("trusted.overlay.metacopy", "trusted.overlay.redirect",
                       "user.overlay.metacopy", "user.overlay.redirect")
# The same policy as apply: host labels (security.selinux...) and ACLs stay on the host.
_XATTR_KEEP_PREFIXES = ("user.", "trusted.")
_XATTR_KEEP_EXACT = ("security.capability",)
_XATTR_DROP_PREFIXES = ("trusted.overlay.", "user.overlay.")


@dataclass(frozen=True)
class DiffResult:
    diff_id: str              # sha256 of the uncompressed tar
    digest: str               # sha256 of what was written to out
    size: int                 # bytes written to out
    uncompressed_size: int
    compression: str = "gzip"


class _Sink:
    """tar bytes -> diff_id hash -> compressor -> digest hash -> out."""

    def __init__(self, out: Writer, compression: Compression, level: int | None) -> None:
        self.diff_h = hashlib.sha256()
        self.raw_count = 0
        self.out = out
        self.comp_h = hashlib.sha256()
        self.comp_count = 0
        self.compressor = Compressor(self, compression, level)

    # The compressor writes here.
    def write(self, data: bytes) -> int:
        self.comp_h.update(data)
        self.comp_count += len(data)
        self.out.write(data)
        return len(data)

    def put(self, data: bytes | memoryview) -> None:
        self.diff_h.update(data)
        self.raw_count += len(data)
        self.compressor.write(data)

    def finish(self, compression: Compression) -> DiffResult:
        self.compressor.finish()
        return DiffResult(diff_id=f"sha256:{self.diff_h.hexdigest()}",
                          digest=f"sha256:{self.comp_h.hexdigest()}", size=self.comp_count,
                          uncompressed_size=self.raw_count, compression=compression.value)


class _TreeWriter:
    def __init__(self, sink: _Sink, *, overlay: bool, source_date_epoch: int | None,
                 lower_dirs: Sequence[str]) -> None:
        self.sink = sink
        self.overlay = overlay
        self.epoch = source_date_epoch
        self.lowers = [SafeRoot(d) for d in lower_dirs]
        self.links: dict[tuple[int, int], str] = {}
        self.buf = bytearray(CHUNK)

    def close(self) -> None:
        for r in self.lowers:
            r.close()

    def _mtime(self, st: os.stat_result) -> int:
        mt = int(st.st_mtime)
        return min(mt, self.epoch) if self.epoch is not None else mt

    def _header(self, ti: tarfile.TarInfo) -> None:
        ti.uname = ti.gname = ""
        self.sink.put(ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))

    def _info(self, name: str, st: os.stat_result, xattrs: dict[str, bytes]) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.mode = stat.S_IMODE(st.st_mode)
        ti.uid, ti.gid = st.st_uid, st.st_gid
        ti.mtime = self._mtime(st)
        ti.pax_headers = {f"SCHILY.xattr.{k}": xattrs[k].decode("utf-8", "surrogateescape")
                          for k in sorted(xattrs)}
        return ti

    def _whiteout_entry(self, name: str, st: os.stat_result) -> None:
        ti = tarfile.TarInfo(name)
        ti.mode = 0o644
        ti.mtime = self._mtime(st)
        self._header(ti)

    def _xattrs(self, dfd: int, name: str) -> dict[str, bytes]:
        path = proc_path(dfd, name)
        try:
            names = os.listxattr(path, follow_symlinks=False)
        except OSError:
            return {}
        out: dict[str, bytes] = {}
        for x in names:
            if self.overlay and x in _UNSUPPORTED_XATTRS:
                raise NotSupported(f"{name!r} in the upper dir carries {x}: diffs of overlay mounts "
                                   "with metacopy or redirect_dir are not supported")
            if x.startswith(_XATTR_DROP_PREFIXES):
                continue
            if x.startswith(_XATTR_KEEP_PREFIXES) or x in _XATTR_KEEP_EXACT:
                out[x] = os.getxattr(path, x, follow_symlinks=False)
        return out

    def _opaque(self, dfd: int) -> bool:
        for x in _OPAQUE_XATTRS:
            try:
                if os.getxattr(dfd, x) == b"y":
                    return True
            except OSError:
                pass
        return False

    def _whiteout_needed(self, rel: str) -> bool:
        """With lower dirs given, drop whiteouts that hide nothing (a cheap lstat each)."""
        if not self.lowers:
            return True
        parts = rel.split("/")
        for lower in self.lowers:
            try:
                fd, _ = lower.open_dir(parts[:-1])
            except (FileNotFoundError, InvalidArgument):
                continue
            try:
                os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
                return True
            except FileNotFoundError:
                continue
            finally:
                os.close(fd)
        return False

    def walk(self, dfd: int, prefix: str) -> None:
        entries = []
        with os.scandir(dfd) as it:
            for e in it:
                entries.append((os.fsencode(e.name), e.name, e.stat(follow_symlinks=False)))
        entries.sort()
        if self.overlay:
            rest = []
            for _, name, st in entries:
                if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                    if self._whiteout_needed(prefix + name):
                        self._whiteout_entry(f"{prefix}.wh.{name}", st)
                else:
                    rest.append((name, st))
        else:
            rest = [(name, st) for _, name, st in entries]
        for name, st in rest:
            self.entry(dfd, prefix, name, st)

    def entry(self, dfd: int, prefix: str, name: str, st: os.stat_result) -> None:
        rel = prefix + name
        mode = st.st_mode
        if stat.S_ISSOCK(mode):
            return  # tar cannot carry sockets; they are recreated by whoever listens
        xattrs = self._xattrs(dfd, name)
        ti = self._info(rel, st, xattrs)
        if stat.S_ISDIR(mode):
            fd = os.open(name, DIR_FLAGS, dir_fd=dfd)
            try:
                ti.type = tarfile.DIRTYPE
                self._header(ti)
                if self.overlay and self._opaque(fd):
                    marker = tarfile.TarInfo(f"{rel}/.wh..wh..opq")
                    marker.mode = 0o644
                    marker.mtime = ti.mtime
                    self._header(marker)
                self.walk(fd, rel + "/")
            finally:
                os.close(fd)
            return
        if st.st_nlink > 1:
            first = self.links.get((st.st_dev, st.st_ino))
            if first is not None:
                ti.type = tarfile.LNKTYPE
                ti.linkname = first
                ti.pax_headers = {}
                self._header(ti)
                return
            self.links[(st.st_dev, st.st_ino)] = rel
        if stat.S_ISLNK(mode):
            ti.type = tarfile.SYMTYPE
            ti.linkname = os.readlink(name, dir_fd=dfd)
            self._header(ti)
        elif stat.S_ISREG(mode):
            self._regular(dfd, name, ti)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            ti.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            self._header(ti)
        elif stat.S_ISFIFO(mode):
            ti.type = tarfile.FIFOTYPE
            self._header(ti)

    def _regular(self, dfd: int, name: str, ti: tarfile.TarInfo) -> None:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise InvalidArgument(f"{ti.name!r} changed type while committing")
            ti.type = tarfile.REGTYPE
            ti.size = st.st_size
            self._header(ti)
            # Exactly the size in the header: a file that grows or shrinks while a running
            # container writes it is cut or zero-filled, as GNU tar does.
            remaining = st.st_size
            view = memoryview(self.buf)
            with open(fd, "rb", buffering=0, closefd=False) as f:
                while remaining:
                    n = f.readinto(view[:min(remaining, CHUNK)])
                    if not n:
                        break
                    self.sink.put(view[:n])
                    remaining -= n
            while remaining:
                n = min(remaining, CHUNK)
                self.sink.put(_ZERO[:n])
                remaining -= n
            pad = -st.st_size % tarfile.BLOCKSIZE
            if pad:
                self.sink.put(bytes(pad))
        finally:
            os.close(fd)


def _write(root_dir: str, out: Writer, *, overlay: bool, lower_dirs: Sequence[str],
           compression: str | Compression, level: int | None,
           source_date_epoch: int | None) -> DiffResult:
    kind = Compression(compression)
    sink = _Sink(out, kind, level)
    writer = _TreeWriter(sink, overlay=overlay, source_date_epoch=source_date_epoch,
                         lower_dirs=lower_dirs)
    try:
        fd = os.open(root_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            writer.walk(fd, "")
        finally:
            os.close(fd)
    finally:
        writer.close()
    sink.put(bytes(2 * tarfile.BLOCKSIZE))
    return sink.finish(kind)


def write_diff(upper_dir: str, out: Writer, *, lower_dirs: Sequence[str] | None = None,
               compression: str | Compression = "gzip", level: int | None = None,
               source_date_epoch: int | None = None) -> DiffResult:
    """Write the overlay upper dir `upper_dir` to `out` as an OCI layer.

    `lower_dirs`, if given, are consulted only to drop whiteouts that hide nothing (one lstat
    per whiteout); they are never walked. `source_date_epoch` clamps mtimes for reproducible
    builds (reproducible-builds.org SOURCE_DATE_EPOCH). Raises NotSupported for an upper dir
    made with metacopy or redirect_dir. The container should be paused: files changing under
    the walk are captured at an arbitrary point.
    """
    return _write(upper_dir, out, overlay=True, lower_dirs=lower_dirs or (),
                  compression=compression, level=level, source_date_epoch=source_date_epoch)


def write_tree(root_dir: str, out: Writer, *, compression: str | Compression = "none",
               level: int | None = None, source_date_epoch: int | None = None) -> DiffResult:
    """Write a whole directory tree to `out` as a tar (export, import, base layers); no
    whiteout conversion."""
    return _write(root_dir, out, overlay=False, lower_dirs=(), compression=compression,
                  level=level, source_date_epoch=source_date_epoch)
