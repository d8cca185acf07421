"""One door to the kernel: every ctypes call of Pallet lives in this package.

`Syscalls` (pallet.syscalls.linux) is the real thing; `RecordingSyscalls`
(pallet.syscalls.recording) records calls for unit tests. Classes that touch the kernel take
`syscalls=` in their constructor. Importing this package does not load ctypes: the CLI path stays
light, and the real door is loaded by `real()` on first use.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs ~2 ms of start-up; mypy treats this name as typing's
if TYPE_CHECKING:
    from pallet.syscalls.linux import Syscalls

_real: Syscalls | None = None


def real() -> Syscalls:
    """The process-wide real Syscalls instance."""
    global _real
    if _real is None:
        from pallet.syscalls.linux import Syscalls

        _real = Syscalls()
    return _real
