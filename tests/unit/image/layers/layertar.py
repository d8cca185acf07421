"""Layer tars built in memory, and a tree summary, for the apply/diff unit tests."""

from __future__ import annotations

import io
import tarfile


class TarBuilder:
    """Collects tar members; .stream() returns a readable uncompressed tar."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)  # noqa: SIM115

    def _add(self, ti: tarfile.TarInfo, data: bytes | None = None, **attrs) -> TarBuilder:
        ti.mtime = attrs.pop("mtime", 1_600_000_000)
        ti.uid = attrs.pop("uid", 0)
        ti.gid = attrs.pop("gid", 0)
        for k, v in attrs.items():
            setattr(ti, k, v)
        self.tar.addfile(ti, io.BytesIO(data) if data is not None else None)
        return self

    def file(self, name: str, data: bytes = b"", mode: int = 0o644, **attrs) -> TarBuilder:
        ti = tarfile.TarInfo(name)
        ti.size = len(data)
        ti.mode = mode
        return self._add(ti, data, **attrs)

    def dir(self, name: str, mode: int = 0o755, **attrs) -> TarBuilder:
        ti = tarfile.TarInfo(name)
        ti.type = tarfile.DIRTYPE
        ti.mode = mode
        return self._add(ti, **attrs)

    def symlink(self, name: str, target: str, **attrs) -> TarBuilder:
        ti = tarfile.TarInfo(name)
        ti.type = tarfile.SYMTYPE
        ti.linkname = target
        ti.mode = 0o777
        return self._add(ti, **attrs)

    def hardlink(self, name: str, target: str, **attrs) -> TarBuilder:
        ti = tarfile.TarInfo(name)
        ti.type = tarfile.LNKTYPE
        ti.linkname = target
        ti.mode = 0o644
        return self._add(ti, **attrs)

    def node(self, name: str, kind: bytes, major: int = 0, minor: int = 0, mode: int = 0o600) -> TarBuilder:
        ti = tarfile.TarInfo(name)
        ti.type = kind
        ti.devmajor, ti.devminor = major, minor
        ti.mode = mode
        return self._add(ti)

    def raw(self) -> bytes:
        self.tar.close()
        return self.buf.getvalue()

    def stream(self) -> io.BytesIO:
        return io.BytesIO(self.raw())


def tree(root) -> dict[str, tuple]:
    """Everything apply and diff should preserve, per relative path (dir mtimes included)."""
    import hashlib
    import os
    import stat

    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            content: object = None
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    content = hashlib.sha256(f.read()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(p)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                content = st.st_rdev
            try:
                xattrs = tuple(sorted((x, os.getxattr(p, x, follow_symlinks=False))
                                      for x in os.listxattr(p, follow_symlinks=False)))
            except OSError:
                xattrs = ()
            mtime = int(st.st_mtime) if not stat.S_ISLNK(st.st_mode) else None
            out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                        content, mtime, xattrs)
    return out
