"""Named network namespaces: one file per container under <exec-root>/netns/, as podman and CNI.

`create(cid)` makes a new network namespace and keeps it alive by a bind mount of its nsfs
file onto <exec-root>/netns/<cid>; the OCI spec then names that path
(linux.namespaces[type=network].path) and the runtime joins it. The namespace is made by
util-linux `unshare --net=<file> true` in a child process, so the daemon never calls
unshare(2) itself (STYLE.md §8). `remove` unmounts and unlinks it: the namespace dies with its
last user, and the veth ends inside it with it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from typing import Any

from pallet.errors import PalletError

MNT_DETACH = 0x2


class NetnsStore:
    """Namespace files under `root` (<exec-root>/netns). `syscalls` does the umount2."""

    def __init__(self, root: str, *, syscalls: Any = None, unshare: str = "unshare") -> None:
        self.root = root
        self.unshare = unshare
        if syscalls is None:
            from pallet.syscalls.linux import Syscalls

            syscalls = Syscalls()
        self.syscalls = syscalls

    def path(self, cid: str) -> str:
        return os.path.join(self.root, cid)

    def exists(self, cid: str) -> bool:
        return os.path.ismount(self.path(cid))

    def create(self, cid: str) -> str:
        """A new namespace at path(cid); idempotent (an existing one is kept)."""
        p = self.path(cid)
        if os.path.ismount(p):
            return p
        os.makedirs(self.root, mode=0o711, exist_ok=True)
        with open(p, "a"):
            pass
        r = subprocess.run([self.unshare, f"--net={p}", "true"], capture_output=True, text=True)
        if r.returncode != 0:
            with contextlib.suppress(OSError):
                os.unlink(p)
            raise PalletError(f"creating the network namespace {p}: {r.stderr.strip()}")
        return p

    def remove(self, cid: str) -> None:
        """Unmount and unlink path(cid); nothing when it is gone."""
        p = self.path(cid)
        if os.path.ismount(p):
            with contextlib.suppress(OSError):
                self.syscalls.umount2(p, MNT_DETACH)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(p)

    def list(self) -> list[str]:
        try:
            return sorted(os.listdir(self.root))
        except FileNotFoundError:
            return []
