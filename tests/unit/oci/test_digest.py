"""Unit tests for pallet.oci.digest: only verifiable digests pass, hashing streams agrees with hashlib."""

from __future__ import annotations

import hashlib
import io

import pytest

from pallet.errors import InvalidArgument
from pallet.oci.digest import Digest, DigestMismatch, Hasher, digest_stream, is_digest, verify

EMPTY_JSON = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"  # "{}", manifest.md


def test_valid_digests():
    d = Digest(EMPTY_JSON)
    assert d == EMPTY_JSON and isinstance(d, str)
    assert d.algorithm == "sha256" and d.encoded == EMPTY_JSON[7:]
    assert Digest("sha512:" + "a" * 128).algorithm == "sha512"
    assert Digest(d) is d


@pytest.mark.parametrize("bad", [
    "", "sha256", "sha256:", "sha256:" + "a" * 63, "sha256:" + "a" * 65, "sha256:" + "A" * 64,
    "sha384:" + "a" * 96, "md5:d41d8cd98f00b204e9800998ecf8427e", "sha256:../../etc/passwd",
    "sha256:" + "a" * 63 + "/", "SHA256:" + "a" * 64,
    "sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564",
    "blake3:" + "a" * 64, "sha256:" + "a" * 64 + "\n", " sha256:" + "a" * 64, "sha512:" + "a" * 64,
])
def test_invalid_digests_refused(bad):
    with pytest.raises(InvalidArgument):
        Digest(bad)
    assert not is_digest(bad)


def test_non_string_refused():
    with pytest.raises(InvalidArgument):
        Digest(b"sha256:" + b"a" * 64)  # type: ignore[arg-type]


def test_from_bytes_matches_spec_example():
    assert Digest.from_bytes(b"{}") == EMPTY_JSON
    assert Digest.from_bytes(b"x", "sha512") == "sha512:" + hashlib.sha512(b"x").hexdigest()


def test_hasher_streams_and_counts():
    h = Hasher()
    for chunk in (b"ab", b"", b"cd"):
        h.update(chunk)
    snapshot = h.copy()
    h.update(b"e")
    assert snapshot.digest() == Digest.from_bytes(b"abcd") and snapshot.size == 4
    assert h.digest() == Digest.from_bytes(b"abcde") and h.size == 5
    with pytest.raises(InvalidArgument):
        Hasher("md5")


def test_digest_stream():
    data = bytes(range(256)) * 10_000
    assert digest_stream(io.BytesIO(data), chunk_size=4096) == (Digest.from_bytes(data), len(data))


def test_verify():
    verify(b"{}", EMPTY_JSON, 2)
    with pytest.raises(DigestMismatch):
        verify(b"{ }", EMPTY_JSON)
    with pytest.raises(DigestMismatch, match="size"):
        verify(b"{}", EMPTY_JSON, 3)
    assert issubclass(DigestMismatch, InvalidArgument)
