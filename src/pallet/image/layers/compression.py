"""Layer compression: detect gzip/zstd by magic, decompress with a bomb guard, compress.

gzip goes through stdlib zlib (wbits=31 writes a header with mtime 0 and no file name, so the
same tar always compresses to the same bytes). zstd needs the `zstandard` package, imported
lazily: without it, zstd layers raise NotSupported and everything else still works. xz and
bzip2 are decompressed too (stdlib) because `docker import` accepts them.

The decompression-ratio guard counts compressed bytes in and plain bytes out; once the output
passes `grace` bytes it must stay under `max_ratio` times the input, and under `max_output` in
all. Output is always produced in bounded pieces (zlib max_length, zstd stream_reader), so a
small bomb never allocates more than one read's worth.
"""

from __future__ import annotations

import enum
import os
import zlib
from typing import Any, Protocol, cast

from pallet.errors import InvalidArgument, NotSupported

CHUNK = 1 << 20
GZIP_DEFAULT_LEVEL = 1
ZSTD_DEFAULT_LEVEL = 3


class Reader(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class Writer(Protocol):
    def write(self, data: bytes, /) -> int | None: ...


class Compression(enum.StrEnum):
    NONE = "none"
    GZIP = "gzip"
    ZSTD = "zstd"
    XZ = "xz"
    BZIP2 = "bzip2"


_MAGIC = [
    (b"\x1f\x8b", Compression.GZIP),
    (b"\x28\xb5\x2f\xfd", Compression.ZSTD),
    (b"\xfd7zXZ\x00", Compression.XZ),
    (b"BZh", Compression.BZIP2),
]


def detect(head: bytes) -> Compression:
    """The compression of a stream from its first bytes (6 are enough)."""
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    return Compression.NONE


def _zstandard() -> Any:
    try:
        import zstandard
    except ImportError as exc:
        raise NotSupported("zstd layers need the 'zstandard' Python package, which is not "
                           "installed") from exc
    return zstandard


class _Counting:
    """Reads from raw, counting bytes; can push back a peeked head."""

    def __init__(self, raw: Reader, head: bytes = b"") -> None:
        self.raw = raw
        self.head = head
        self.count = 0

    def read(self, n: int = -1, /) -> bytes:
        if self.head:
            if n < 0 or n >= len(self.head):
                data, self.head = self.head, b""
                if n < 0:
                    data += self.raw.read()
            else:
                data, self.head = self.head[:n], self.head[n:]
        else:
            data = self.raw.read(n)
        self.count += len(data)
        return data

    def copy_into(self, fd: int, n: int) -> int:
        """Copy up to `n` bytes into the file `fd` (at its position) without them passing
        through Python, when `raw` offers `copy_into`; returns the count, 0 at the end."""
        if self.head:
            view = memoryview(self.head)[:n]
            done = os.write(fd, view)
            self.head = self.head[done:]
        else:
            done = self.raw.copy_into(fd, n)  # type: ignore[attr-defined]
        self.count += done
        return done


class _GzipInner:
    """Multi-member gzip via zlib, producing at most n bytes per call."""

    def __init__(self, src: _Counting) -> None:
        self.src = src
        self.d = zlib.decompressobj(31)
        self.tail = b""
        self.done = False

    def read(self, n: int) -> bytes:
        while not self.done:
            if self.tail:
                data, self.tail = self.tail, b""
            else:
                data = self.src.read(CHUNK)
                if not data:
                    if not self.d.eof:
                        raise InvalidArgument("gzip stream is truncated")
                    self.done = True
                    return b""
            try:
                out = self.d.decompress(data, n)
            except zlib.error as exc:
                raise InvalidArgument(f"gzip stream is corrupt: {exc}") from exc
            self.tail = self.d.unconsumed_tail
            if self.d.eof:
                rest = self.d.unused_data
                if rest.startswith(b"\x1f\x8b"):
                    self.d = zlib.decompressobj(31)
                    self.tail = rest
                elif rest.strip(b"\0"):
                    raise InvalidArgument("trailing garbage after gzip stream")
                elif not self.tail and not out:
                    # Only zero padding (or nothing) after the last member.
                    self._finish()
                    return b""
            if out:
                return out
        return b""

    def _finish(self) -> None:
        while True:
            data = self.src.read(CHUNK)
            if not data:
                break
            if data.strip(b"\0"):
                raise InvalidArgument("trailing garbage after gzip stream")
        self.done = True


class DecompressingReader:
    """A binary reader of the decompressed stream; see the module docstring for the guard."""

    def __init__(self, raw: Reader, *, max_ratio: float | None = None, max_output: int | None = None,
                 grace: int = 64 << 20) -> None:
        head = b""
        while len(head) < 6:
            more = raw.read(6 - len(head))
            if not more:
                break
            head += more
        self.kind = detect(head)
        self.src = _Counting(raw, head)
        self.max_ratio = max_ratio
        self.max_output = max_output
        self.grace = grace
        self.out = 0
        self._inner: Any
        if self.kind is Compression.NONE:
            self._inner = self.src
        elif self.kind is Compression.GZIP:
            self._inner = _GzipInner(self.src)
        elif self.kind is Compression.ZSTD:
            zstd = _zstandard()
            self._inner = zstd.ZstdDecompressor().stream_reader(
                self.src, read_size=CHUNK, read_across_frames=True, closefd=False)
        elif self.kind is Compression.XZ:
            import lzma

            self._inner = lzma.LZMAFile(cast(Any, self.src))  # noqa: SIM115 (lives as long as self)
        else:
            import bz2

            self._inner = bz2.BZ2File(cast(Any, self.src))

    @property
    def compressed_bytes(self) -> int:
        return self.src.count

    @property
    def can_copy(self) -> bool:
        """True when `copy_into` is offered: a plain (uncompressed) stream over a source that
        can copy its bytes into a file itself (a file being followed: copy_file_range(2))."""
        return self.kind is Compression.NONE and callable(getattr(self.src.raw, "copy_into", None))

    def copy_into(self, fd: int, n: int) -> int:
        """`read` straight into the file `fd`, for a plain stream (`can_copy`): the bytes go
        from file to file inside the kernel. Returns the count, 0 at the end."""
        done = self.src.copy_into(fd, n)
        self.out += done
        if self.max_output is not None and self.out > self.max_output:
            raise InvalidArgument(f"layer is larger than the limit of {self.max_output} bytes "
                                  "uncompressed")
        return done

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1, /) -> bytes:
        if n is None or n < 0:
            parts = []
            while chunk := self.read(CHUNK):
                parts.append(chunk)
            return b"".join(parts)
        if n == 0:
            return b""
        try:
            data = self._inner.read(n)
        except (InvalidArgument, NotSupported):
            raise
        except (EOFError, OSError, ValueError, zlib.error) as exc:
            raise InvalidArgument(f"{self.kind.value} stream is corrupt: {exc}") from exc
        except Exception as exc:  # zstandard.ZstdError and friends
            if type(exc).__module__.startswith("zstandard"):
                raise InvalidArgument(f"zstd stream is corrupt: {exc}") from exc
            raise
        self.out += len(data)
        if self.max_output is not None and self.out > self.max_output:
            raise InvalidArgument(f"layer is larger than the limit of {self.max_output} bytes "
                                  "uncompressed")
        if (self.max_ratio is not None and self.kind is not Compression.NONE
                and self.out > self.grace and self.out > self.max_ratio * max(self.src.count, 1)):
            raise InvalidArgument(
                f"decompression ratio over {self.max_ratio:g}:1 ({self.src.count} {self.kind.value} "
                f"bytes became more than {self.out}): refusing a likely decompression bomb")
        return data


class Compressor:
    """Compresses what is written into `out`; finish() flushes the trailer (out stays open)."""

    def __init__(self, out: Writer, kind: Compression | str = Compression.GZIP,
                 level: int | None = None) -> None:
        self.kind = Compression(kind)
        self.out = out
        self._obj: Any = None
        self._finished = False
        if self.kind is Compression.GZIP:
            lvl = GZIP_DEFAULT_LEVEL if level is None else level
            if not 1 <= lvl <= 9:
                raise InvalidArgument(f"gzip level must be 1-9, not {lvl}")
            self._obj = zlib.compressobj(lvl, zlib.DEFLATED, 31)
        elif self.kind is Compression.ZSTD:
            zstd = _zstandard()
            lvl = ZSTD_DEFAULT_LEVEL if level is None else level
            self._obj = zstd.ZstdCompressor(level=lvl).compressobj()
        elif self.kind is not Compression.NONE:
            raise NotSupported(f"writing {self.kind.value} layers is not supported; use gzip or zstd")

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._finished:
            raise ValueError("write after finish()")
        if self._obj is None:
            self.out.write(data)  # type: ignore[arg-type]
        else:
            chunk = self._obj.compress(data)
            if chunk:
                self.out.write(chunk)
        return len(data)

    def finish(self) -> None:
        self._finished = True
        if self._obj is not None:
            tail = self._obj.flush()
            if tail:
                self.out.write(tail)
            self._obj = None
