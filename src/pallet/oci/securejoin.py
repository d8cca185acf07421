"""Resolve an untrusted path inside a root directory without ever leaving it.

Used for mount destinations in a container rootfs and, later, for every path of a layer tar.
Like filepath-securejoin (used by runc and umoci): each component is resolved in turn, a symlink
is read and its target is interpreted *relative to root* (an absolute target restarts at root,
`..` never climbs above root). The result is a host path inside root. Callers that then create
files must still guard against races with O_NOFOLLOW; the rootfs of a container being created is
not yet reachable by its processes, so this resolution is sufficient there.
"""

from __future__ import annotations

import errno
import os
import stat

MAX_SYMLINKS = 255


def secure_join(root: str, unsafe_path: str) -> str:
    """Return root + unsafe_path with symlinks resolved as if root were '/'."""
    root = os.path.abspath(root)
    pending = [c for c in unsafe_path.split("/") if c]
    pending.reverse()
    resolved: list[str] = []
    links = 0
    while pending:
        part = pending.pop()
        if part == ".":
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            resolved.append(part)
            continue
        if not stat.S_ISLNK(st.st_mode):
            resolved.append(part)
            continue
        links += 1
        if links > MAX_SYMLINKS:
            raise OSError(errno.ELOOP, f"too many symlinks resolving {unsafe_path!r} in {root}")
        target = os.readlink(candidate)
        if target.startswith("/"):
            resolved = []
        more = [c for c in target.split("/") if c]
        more.reverse()
        pending.extend(more)
    return os.path.join(root, *resolved) if resolved else root

