"""Content digests: parse and validate `<algorithm>:<hex>` strings, and hash streams into them.

Only the registered algorithms Pallet can verify are accepted: `sha256` (64 lowercase hex
digits) and `sha512` (128). The OCI grammar allows more (descriptor.md "Digests"), but a digest
becomes a file name under `blobs/<alg>/`, so anything we cannot verify is refused before a path
is ever built from it (STYLE.md §7).
Spec: ../shared/specs/oci-image/descriptor.md#digests.
"""

from __future__ import annotations

import hashlib
import re
from typing import BinaryIO

from pallet.errors import InvalidArgument

SHA256 = "sha256"
SHA512 = "sha512"
CANONICAL = SHA256

# algorithm -> length of its lowercase hex encoding; "[A-F] MUST NOT be used" (descriptor.md).
ALGORITHMS: dict[str, int] = {SHA256: 64, SHA512: 128}
_ENCODED = {alg: re.compile(f"[a-f0-9]{{{n}}}") for alg, n in ALGORITHMS.items()}


class DigestMismatch(InvalidArgument):
    """Content does not hash to the digest (or size) it was named by."""


class Digest(str):
    """A validated digest string such as ``sha256:<64 hex>``; compares and serializes as a str.

    Constructing one validates it, so a `Digest` value is always safe to turn into a path.
    """

    __slots__ = ()

    def __new__(cls, value: str) -> Digest:
        if isinstance(value, Digest):
            return value
        if not isinstance(value, str):
            raise InvalidArgument(f"digest: expected a string, got {type(value).__name__}")
        alg, sep, encoded = value.partition(":")
        if not sep:
            raise InvalidArgument(f"invalid digest {value[:150]!r}: expected <algorithm>:<hex>")
        pattern = _ENCODED.get(alg)
        if pattern is None:
            raise InvalidArgument(f"invalid digest {value[:150]!r}: unsupported algorithm {alg[:20]!r} "
                                  f"(supported: {', '.join(ALGORITHMS)})")
        if not pattern.fullmatch(encoded):
            raise InvalidArgument(f"invalid digest {value[:150]!r}: {alg} needs "
                                  f"{ALGORITHMS[alg]} lowercase hex digits")
        return super().__new__(cls, value)

    @property
    def algorithm(self) -> str:
        return self.partition(":")[0]

    @property
    def encoded(self) -> str:
        return self.partition(":")[2]

    @classmethod
    def from_bytes(cls, data: bytes, algorithm: str = CANONICAL) -> Digest:
        hasher = Hasher(algorithm)
        hasher.update(data)
        return hasher.digest()


def parse_digest(value: str) -> Digest:
    """Validate `value` and return it as a Digest; InvalidArgument names what is wrong."""
    return Digest(value)


def is_digest(value: str) -> bool:
    try:
        Digest(value)
    except InvalidArgument:
        return False
    return True


class Hasher:
    """Hash bytes as they stream past and count them; `digest()` may be called at any point."""

    def __init__(self, algorithm: str = CANONICAL) -> None:
        if algorithm not in ALGORITHMS:
            raise InvalidArgument(f"unsupported digest algorithm {algorithm!r}")
        self.algorithm = algorithm
        self._h = hashlib.new(algorithm)
        self.size = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._h.update(data)
        self.size += len(data)

    def digest(self) -> Digest:
        return Digest(f"{self.algorithm}:{self._h.hexdigest()}")

    def copy(self) -> Hasher:
        other = Hasher.__new__(Hasher)
        other.algorithm, other._h, other.size = self.algorithm, self._h.copy(), self.size
        return other


def digest_stream(stream: BinaryIO, algorithm: str = CANONICAL,
                  chunk_size: int = 1 << 20) -> tuple[Digest, int]:
    """Read `stream` to its end; return (digest, size)."""
    hasher = Hasher(algorithm)
    while chunk := stream.read(chunk_size):
        hasher.update(chunk)
    return hasher.digest(), hasher.size


def verify(data: bytes, expected: str, size: int | None = None) -> None:
    """Raise DigestMismatch unless `data` has digest `expected` (and `size`, when given)."""
    want = Digest(expected)
    if size is not None and len(data) != size:
        raise DigestMismatch(f"{want}: size {len(data)} does not match the expected {size}")
    got = Digest.from_bytes(data, want.algorithm)
    if got != want:
        raise DigestMismatch(f"content has digest {got}, expected {want}")
