"""A corpus of hostile layer tars, one per escape a layer might try.

Each Case builds its raw layer bytes from the sentinel directory's absolute path (the place an
escape would land), says whether apply must refuse it (`refuse`: InvalidArgument) or may accept
it as long as everything lands inside the target, and optionally checks the target afterwards.
Run `python hostile_corpus.py DIR SENTINEL` to write the corpus as files for other extractors.
"""

from __future__ import annotations

import functools
import io
import os
import sys
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pallet.image.layers import Limits


@dataclass
class Case:
    name: str
    build: Callable[[str], bytes]        # sentinel abs path -> raw (maybe compressed) layer
    refuse: bool                         # must raise InvalidArgument
    check: Callable[[Path, str], None] | None = None  # (target, sentinel) after a clean apply
    limits: Limits = field(default_factory=Limits)
    as_nobody: bool = False              # apply without privileges


def _info(name: str, kind: bytes = tarfile.REGTYPE, **kw) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    ti.mtime = 1_600_000_000
    for k, v in kw.items():
        setattr(ti, k, v)
    return ti


def tar(*entries: tuple) -> bytes:
    """Entries: ("f", name, data) ("d", name) ("l", name, target) ("h", name, target)
    ("c", name, major, minor)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for kind, name, *rest in entries:
            if kind == "f":
                data = rest[0] if rest else b"pwned"
                t.addfile(_info(name, size=len(data)), io.BytesIO(data))
            elif kind == "d":
                t.addfile(_info(name, tarfile.DIRTYPE))
            elif kind == "l":
                t.addfile(_info(name, tarfile.SYMTYPE, linkname=rest[0]))
            elif kind == "h":
                t.addfile(_info(name, tarfile.LNKTYPE, linkname=rest[0]))
            elif kind == "c":
                t.addfile(_info(name, tarfile.CHRTYPE, devmajor=rest[0], devminor=rest[1]))
    return buf.getvalue()


def _raw_header(ti: tarfile.TarInfo, fmt: int = tarfile.GNU_FORMAT) -> bytes:
    return ti.tobuf(fmt, "utf-8", "surrogateescape")


def huge_size_header(_: str) -> bytes:
    return _raw_header(_info("huge", size=1 << 40)) + b"tiny" + bytes(1020)


def huge_pax_sparse(_: str) -> bytes:
    """PAX sparse 1.0: a 32 TiB apparent size behind four bytes of data."""
    ti = _info("GNUSparseFile.0/sparse", size=512 + 512)
    ti.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0",
                      "GNU.sparse.name": "sparse", "GNU.sparse.realsize": str(1 << 45)}
    sparse_map = b"1\n0\n4\n".ljust(512, b"\0")
    return _raw_header(ti, tarfile.PAX_FORMAT) + sparse_map + b"data".ljust(512, b"\0") + bytes(1024)


def gzip_bomb(_: str) -> bytes:
    return _gzip_bomb()


@functools.cache
def _gzip_bomb() -> bytes:
    """One 1 GiB file of zeros, gzip -9: about 1 MiB on the wire."""
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = [c.compress(_raw_header(_info("zeros", size=1 << 30), tarfile.PAX_FORMAT))]
    zeros = bytes(1 << 20)
    out.extend(c.compress(zeros) for _ in range(1024))
    out.append(c.compress(bytes(1024)))
    out.append(c.flush())
    return b"".join(out)


def zstd_bomb(_: str) -> bytes:
    return _zstd_bomb()


@functools.cache
def _zstd_bomb() -> bytes:
    """One 1 GiB file of zeros, zstd: a few KiB on the wire."""
    import zstandard

    raw = io.BytesIO()
    with zstandard.ZstdCompressor(level=3).stream_writer(raw, closefd=False) as w:
        w.write(_raw_header(_info("zeros", size=1 << 30), tarfile.PAX_FORMAT))
        zeros = bytes(1 << 20)
        for _ in range(1024):
            w.write(zeros)
    return raw.getvalue()


def pax_header_bomb(_: str) -> bytes:
    ti = _info("f")
    ti.pax_headers = {"comment": "x" * (64 << 20)}
    return _raw_header(ti, tarfile.PAX_FORMAT) + bytes(1024)


def many_entries(_: str) -> bytes:
    return tar(*[("f", f"f{i}", b"") for i in range(1001)])


def _exists(rel: str) -> Callable[[Path, str], None]:
    def check(target: Path, sentinel: str) -> None:
        path = rel.replace("{S}", sentinel.lstrip("/"))
        assert os.path.lexists(target / path), f"expected {path} inside the target"
    return check


def _regular(rel: str) -> Callable[[Path, str], None]:
    def check(target: Path, sentinel: str) -> None:
        assert (target / rel).is_file() and not (target / rel).is_symlink()
    return check


def cases() -> list[Case]:
    deep_ok = "/".join(["d"] * 200) + "/f"
    deep_bad = "/".join(["d"] * 300) + "/f"
    return [
        Case("dotdot", lambda s: tar(("f", "../../../../../../../.." + s + "/evil")), refuse=True),
        Case("dotdot-middle", lambda s: tar(("d", "a"), ("f", "a/../../evil")), refuse=True),
        Case("absolute-path", lambda s: tar(("f", s + "/evil")), refuse=False,
             check=_exists("{S}/evil")),
        Case("symlink-abs-then-write", lambda s: tar(("l", "s", s), ("f", "s/evil")), refuse=False,
             check=_exists("{S}/evil")),
        Case("symlink-relative-climb-then-write",
             lambda s: tar(("d", "x"), ("l", "x/s", "../../../../../../../../" + s), ("f", "x/s/evil")),
             refuse=False, check=_exists("{S}/evil")),
        Case("symlink-chain-then-write",
             lambda s: tar(("l", "a", "b"), ("l", "b", s), ("f", "a/evil")), refuse=False,
             check=_exists("{S}/evil")),
        Case("symlink-to-root-then-etc-passwd",
             lambda s: tar(("l", "r", "/"), ("f", "r/etc/passwd", b"root::0:0::/:/bin/sh\n")),
             refuse=False, check=_exists("etc/passwd")),
        Case("symlink-to-file-then-overwrite",
             lambda s: tar(("l", "canary", s + "/canary"), ("f", "canary", b"pwned")), refuse=False,
             check=_regular("canary")),
        Case("symlink-loop", lambda s: tar(("l", "a", "b"), ("l", "b", "a"), ("f", "a/x")), refuse=True),
        Case("dir-replaced-by-symlink-then-write",
             lambda s: tar(("d", "d"), ("f", "d/ok"), ("l", "d", s), ("f", "d/evil")), refuse=False,
             check=_exists("{S}/evil")),
        Case("hardlink-etc-passwd", lambda s: tar(("h", "pw", "/etc/passwd")), refuse=True),
        Case("hardlink-dotdot", lambda s: tar(("h", "pw", "../../../../../../etc/passwd")), refuse=True),
        Case("hardlink-through-symlink-to-etc",
             lambda s: tar(("l", "e", "/etc"), ("h", "pw", "e/passwd")), refuse=True),
        Case("hardlink-through-symlink-to-sentinel",
             lambda s: tar(("l", "e", s), ("h", "c", "e/canary")), refuse=True),
        Case("hardlink-to-symlink-to-outside",
             lambda s: tar(("l", "l", s + "/canary"), ("h", "h", "l"), ("f", "h", b"pwned")),
             refuse=False, check=_regular("h")),
        Case("whiteout-through-symlink",
             lambda s: tar(("l", "s", s), ("f", "s/.wh.canary")), refuse=False),
        Case("opaque-through-symlink",
             lambda s: tar(("l", "s", s), ("f", "s/.wh..wh..opq")), refuse=False),
        Case("whiteout-dotdot-name", lambda s: tar(("f", ".wh..."), ("f", ".wh..")), refuse=True),
        Case("whiteout-traversal", lambda s: tar(("f", "../.wh.canary")), refuse=True),
        Case("device-node-as-non-root", lambda s: tar(("c", "null", 1, 3)), refuse=False,
             as_nobody=True),
        Case("huge-size-header", huge_size_header, refuse=True),
        Case("huge-pax-sparse-size", huge_pax_sparse, refuse=True),
        Case("gzip-bomb", gzip_bomb, refuse=True),
        Case("zstd-bomb", zstd_bomb, refuse=True),
        Case("pax-header-bomb", pax_header_bomb, refuse=True),
        Case("many-entries", many_entries, refuse=True, limits=Limits(max_entries=1000)),
        Case("deeply-nested-ok", lambda s: tar(("f", deep_ok)), refuse=False, check=_exists(deep_ok)),
        Case("deeply-nested-too-deep", lambda s: tar(("f", deep_bad)), refuse=True),
        Case("long-component", lambda s: tar(("f", "n" * 300)), refuse=True),
        Case("long-path", lambda s: tar(("f", "/".join(["p" * 200] * 25))), refuse=True),
    ]


if __name__ == "__main__":
    out_dir, sentinel = Path(sys.argv[1]), sys.argv[2]
    out_dir.mkdir(parents=True, exist_ok=True)
    for case in cases():
        (out_dir / f"{case.name}.tar").write_bytes(case.build(sentinel))
