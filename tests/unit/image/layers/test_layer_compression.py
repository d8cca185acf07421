"""Compression detection, streaming decompression with the bomb guard, and compression."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import sys
import zlib

import pytest

from pallet.errors import InvalidArgument, NotSupported
from pallet.image.layers import Compression, Compressor, DecompressingReader, detect

DATA = b"".join(b"line %d of a layer\n" % i for i in range(50_000))


def compress(data: bytes, kind: str, level: int | None = None) -> bytes:
    out = io.BytesIO()
    c = Compressor(out, kind, level)
    for i in range(0, len(data), 7777):
        c.write(data[i:i + 7777])
    c.finish()
    return out.getvalue()


def read_all(raw: bytes, **kw) -> tuple[Compression, bytes]:
    r = DecompressingReader(io.BytesIO(raw), **kw)
    parts = []
    while chunk := r.read(4096):
        parts.append(chunk)
    return r.kind, b"".join(parts)


def test_detect():
    assert detect(b"\x1f\x8b\x08") is Compression.GZIP
    assert detect(b"\x28\xb5\x2f\xfd") is Compression.ZSTD
    assert detect(b"\xfd7zXZ\x00") is Compression.XZ
    assert detect(b"BZh9") is Compression.BZIP2
    assert detect(b"ustar") is Compression.NONE
    assert detect(b"") is Compression.NONE


@pytest.mark.parametrize("level", [None, 1, 6])
def test_gzip_round_trip_and_determinism(level):
    raw = compress(DATA, "gzip", level)
    assert gzip.decompress(raw) == DATA
    assert compress(DATA, "gzip", level) == raw  # no timestamp or name in the header
    assert read_all(raw) == (Compression.GZIP, DATA)


def test_gzip_multi_member_and_zero_padding():
    raw = gzip.compress(b"abc") + gzip.compress(b"def") + bytes(512)
    assert read_all(raw)[1] == b"abcdef"


def test_gzip_truncated_and_garbage():
    raw = gzip.compress(DATA)
    with pytest.raises(InvalidArgument, match="truncated"):
        read_all(raw[:-100])
    with pytest.raises(InvalidArgument, match="trailing garbage"):
        read_all(raw + b"junk")
    bad = bytearray(raw)
    bad[100:110] = b"\xff" * 10
    with pytest.raises(InvalidArgument):
        read_all(bytes(bad))


def test_uncompressed_passes_through():
    assert read_all(DATA) == (Compression.NONE, DATA)


def test_xz_and_bzip2_are_read():
    assert read_all(lzma.compress(DATA)) == (Compression.XZ, DATA)
    assert read_all(bz2.compress(DATA)) == (Compression.BZIP2, DATA)


def test_ratio_guard_stops_a_gzip_bomb_early():
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(1 << 20)
    bomb = b"".join(c.compress(zeros) for _ in range(64)) + c.flush()  # 64 MiB -> ~64 KiB
    r = DecompressingReader(io.BytesIO(bomb), max_ratio=100, grace=1 << 20)
    with pytest.raises(InvalidArgument, match="decompression bomb"):
        while r.read(1 << 16):
            pass
    assert r.out < 8 << 20  # stopped long before the end


def test_max_output():
    with pytest.raises(InvalidArgument, match="larger than the limit"):
        read_all(gzip.compress(DATA), max_output=1000)


def test_zstd_round_trip():
    pytest.importorskip("zstandard")
    raw = compress(DATA, "zstd")
    assert detect(raw) is Compression.ZSTD
    assert read_all(raw) == (Compression.ZSTD, DATA)
    # Two frames back to back, as parallel compressors write them.
    assert read_all(compress(b"abc", "zstd") + compress(b"def", "zstd"))[1] == b"abcdef"


def test_zstd_bomb():
    zstandard = pytest.importorskip("zstandard")
    bomb = zstandard.ZstdCompressor(level=19).compress(bytes(256 << 20))
    r = DecompressingReader(io.BytesIO(bomb), max_ratio=100, grace=1 << 20)
    with pytest.raises(InvalidArgument, match="decompression bomb"):
        while r.read(1 << 16):
            pass


def test_zstd_without_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "zstandard", None)
    with pytest.raises(NotSupported, match="zstandard"):
        read_all(b"\x28\xb5\x2f\xfd" + bytes(20))
    with pytest.raises(NotSupported, match="zstandard"):
        Compressor(io.BytesIO(), "zstd")


def test_bad_level_and_kind():
    with pytest.raises(InvalidArgument):
        Compressor(io.BytesIO(), "gzip", 0)
    with pytest.raises(NotSupported):
        Compressor(io.BytesIO(), "xz")
    c = Compressor(io.BytesIO(), "gzip")
    c.finish()
    with pytest.raises(ValueError):
        c.write(b"late")
