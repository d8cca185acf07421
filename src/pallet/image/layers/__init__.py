"""Layer changesets: apply an OCI layer tar to a snapshot, diff an overlay upper dir into one.

apply.apply_layer (whiteouts, secure extraction, limits, diff_id), diff.write_diff and
diff.write_tree (deterministic tar, diff_id and digest in one pass), compression (gzip, zstd
detection and streams with a bomb guard), safepath (fd-relative resolution under a root).
"""

from pallet.image.layers.apply import DEFAULT_LIMITS, ApplyResult, Limits, apply_layer, decompress_layer
from pallet.image.layers.compression import Compression, Compressor, DecompressingReader, detect
from pallet.image.layers.diff import DiffResult, write_diff, write_tree

__all__ = [
    "DEFAULT_LIMITS",
    "ApplyResult",
    "Compression",
    "Compressor",
    "DecompressingReader",
    "DiffResult",
    "Limits",
    "apply_layer",
    "decompress_layer",
    "detect",
    "write_diff",
    "write_tree",
]
