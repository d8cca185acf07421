"""glibc's malloc_trim(3): hand the free memory of the heap and of every arena back to the kernel.

palletd calls it once it turns idle after a burst of requests (pallet/daemon/idle.py). Since
glibc 2.8 it does more than shrink the top of the main heap: it walks every arena's free chunks
and releases their whole pages with madvise(MADV_DONTNEED) (malloc/malloc.c, mtrim), which is
what a burst of concurrent container starts leaves behind in the executor threads' arenas.
"""

from __future__ import annotations

import ctypes

_libc: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        # By soname (not ctypes.util.find_library, which runs ldconfig), as syscalls/linux.py.
        lib = ctypes.CDLL("libc.so.6", use_errno=True)
        lib.malloc_trim.argtypes = [ctypes.c_size_t]
        lib.malloc_trim.restype = ctypes.c_int
        _libc = lib
    return _libc


def malloc_trim(pad: int = 0) -> bool:
    """malloc_trim(pad): True when some memory was given back. Never fails (the call has no
    error return); a libc without it (musl) raises AttributeError from the first call."""
    if pad < 0:
        raise ValueError(f"malloc_trim pad={pad}: must be >= 0")
    return bool(_lib().malloc_trim(pad))
