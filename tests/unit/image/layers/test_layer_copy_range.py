"""A plain layer whose bytes the caller verifies itself is applied with file data copied from
the source file into the target files inside the kernel (copy_into): the same tree as the
read path, and the same errors."""

from __future__ import annotations

import hashlib
import os
import tarfile

import pytest
from layertar import TarBuilder, tree

from pallet.errors import InvalidArgument
from pallet.image.layers import apply_layer
from pallet.image.layers.apply import decompress_layer


class FileSource:
    """A reader of a file that can also copy its next bytes into another file (the shape of
    the pull's _Follower), counting how many bytes went each way."""

    def __init__(self, f) -> None:
        self.f = f
        self.pos = 0
        self.copied = 0
        self.read_bytes = 0

    def read(self, n: int = -1, /) -> bytes:
        data = self.f.read(n)
        self.pos += len(data)
        self.read_bytes += len(data)
        return data

    def copy_into(self, fd: int, n: int) -> int:
        done = os.copy_file_range(self.f.fileno(), fd, n, self.pos)
        self.pos += done
        self.f.seek(self.pos)
        self.copied += done
        return done


def _layer() -> bytes:
    big = os.urandom(3 << 20)  # spans several of the reader's 1 MB buffers
    return (TarBuilder().dir("d").file("d/small", b"hello").file("d/big", big, mode=0o600)
            .file("empty", b"").hardlink("d/link", "d/big").symlink("s", "d/small")
            .file("d/after", os.urandom(70_000)).raw())


@pytest.mark.parametrize("copy", [True, False], ids=["kernel-copy", "read"])
def test_same_tree_as_the_read_path(tmp_path, copy):
    raw = _layer()
    blob = tmp_path / "blob"
    blob.write_bytes(raw)
    diff_id = "sha256:" + hashlib.sha256(raw).hexdigest()
    reference = tmp_path / "reference"
    reference.mkdir()
    import io

    apply_layer(io.BytesIO(raw), str(reference), overlay_whiteouts=False)
    target = tmp_path / "target"
    target.mkdir()
    with open(blob, "rb") as f:
        src = FileSource(f)
        # Only a verified plain layer may skip the hashing that the copy would bypass.
        result = apply_layer(decompress_layer(src), str(target), overlay_whiteouts=False,
                             verified_diff_id=diff_id if copy else None)
    assert result.diff_id == diff_id
    assert tree(target) == tree(reference)
    assert result.tar_size == len(raw) and result.size == (3 << 20) + 5 + 70_000
    if copy:
        assert src.copied > (3 << 20) - (128 << 10)  # most file data never came up to Python
    else:
        assert src.copied == 0 and src.read_bytes == len(raw)


def test_a_layer_cut_inside_a_file_is_refused(tmp_path):
    raw = _layer()
    cut = raw[:raw.index(b"hello") + 5 + 512 + 1000]  # inside d/big
    blob = tmp_path / "blob"
    blob.write_bytes(cut)
    target = tmp_path / "target"
    target.mkdir()
    with open(blob, "rb") as f, pytest.raises((InvalidArgument, tarfile.TarError)):
        apply_layer(decompress_layer(FileSource(f)), str(target), overlay_whiteouts=False,
                    verified_diff_id="sha256:" + "0" * 64)


def test_a_compressed_layer_is_never_copied(tmp_path):
    import gzip

    raw = _layer()
    blob = tmp_path / "blob.gz"
    blob.write_bytes(gzip.compress(raw, 1))
    target = tmp_path / "target"
    target.mkdir()
    with open(blob, "rb") as f:
        src = FileSource(f)
        reader = decompress_layer(src)
        assert not reader.can_copy
        apply_layer(reader, str(target), overlay_whiteouts=False,
                    verified_diff_id="sha256:" + hashlib.sha256(raw).hexdigest())
    assert src.copied == 0
    assert (target / "d" / "small").read_bytes() == b"hello"
