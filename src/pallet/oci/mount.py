"""`Mount`: the plain value a snapshotter hands to whoever performs mounts (containerd's lingua franca).

A `Mount` says what to mount, not where the caller keeps it: `target` is relative to the place the
caller mounts the whole list at ("" is that place itself, e.g. the container's rootfs), so one list
serves the engine, the runtime and tests alike. Mounts are applied in list order.

Vocabulary of `options` is mount(8)'s, as in the OCI runtime spec (config.md, "Mounts"): flag
words (`ro`, `rbind`, `nosuid`...) become mount(2) flags, everything else is the filesystem's data
string (`lowerdir=...`). One more family is reserved to the consumer and never reaches the kernel:
options starting with `x-` (mount(8): "x-* options are interpreted as comments or as
userspace application-specific options"). Pallet defines one of them:

    x-pallet.chdir=<absolute dir>

It means "the paths in this mount's data string are relative to <dir>: perform mount(2) with the
current working directory set to <dir>". The overlay snapshotter uses it only when absolute
`lowerdir=` paths would not fit in the one page mount(2) copies from user space
(fs/namespace.c copy_mount_options, PAGE_SIZE), the same way docker's overlay2 (`mountFrom`) and
containerd (`mount_linux.go` compactLowerdirOption + chdir) solve it. The option rides along in
`options`, so it survives the trip through config.json (whose mount objects have no other room).

How a consumer performs such a mount (pallet-runtime, or a test helper):

    fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY)    # remember the cwd
    os.chdir(m.chdir)                                   # only in a single-threaded process
    try:     mount(m.source, absolute_target, m.type, flags(m.kernel_options()), data(...))
    finally: os.fchdir(fd); os.close(fd)

In a multi-threaded process (palletd) do it in a forked child instead, as containerd's
`mountAt` does: cwd is per process. A kernel with the new mount API (>= 6.8) can alternatively
pass each layer with fsconfig(FSCONFIG_SET_STRING, "lowerdir+", path), which has no page limit.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

CHDIR_OPTION = "x-pallet.chdir="

# mount(2) copies at most one page of data (copy_mount_options); the string needs its NUL too.
MOUNT_DATA_LIMIT = 4096

# Leave room for options the runtime may append (SELinux context=, ...): containerd switches to
# relative lowerdirs at `pagesize - 512` for the same reason (mount/mount_linux.go).
MOUNT_DATA_HEADROOM = 512

# Words mount(8) and the runtime treat as flags rather than filesystem data. Kept here as plain
# data so that `data_length` can be computed without the runtime's flag table.
_FLAG_WORDS = frozenset({
    "ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec", "sync", "async", "dirsync",
    "remount", "mand", "nomand", "atime", "noatime", "diratime", "nodiratime", "relatime",
    "norelatime", "strictatime", "nostrictatime", "lazytime", "nolazytime", "nosymfollow",
    "symfollow", "bind", "rbind", "defaults", "silent", "loud", "iversion", "noiversion",
    "private", "rprivate", "shared", "rshared", "slave", "rslave", "unbindable", "runbindable",
})


@dataclass(frozen=True)
class Mount:
    """One mount to perform; plain data, never performed by whoever builds it.

    `type`: filesystem type ("overlay", "bind", "tmpfs"...). `source`: for a bind the absolute
    host path, for overlay the conventional "overlay". `target`: relative path under the place
    the list is mounted at, "" for that place itself. `options`: mount(8) words, see module doc.
    """

    type: str
    source: str
    target: str = ""
    options: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not isinstance(self.options, tuple):
            object.__setattr__(self, "options", tuple(self.options))
        if not self.type:
            raise ValueError("Mount.type must not be empty")
        target = self.target
        if target.startswith("/") or ".." in target.split("/"):
            raise ValueError(f"Mount.target {target!r} must be relative and must not contain '..'")
        norm = posixpath.normpath(target) if target else ""
        object.__setattr__(self, "target", "" if norm == "." else norm)

    @property
    def readonly(self) -> bool:
        """True when the last of `ro`/`rw` is `ro` (mount(8): later options win)."""
        ro = False
        for opt in self.options:
            if opt in ("ro", "rw"):
                ro = opt == "ro"
        return ro

    @property
    def chdir(self) -> str | None:
        """The directory the data string's paths are relative to, or None if they are absolute."""
        for opt in self.options:
            if opt.startswith(CHDIR_OPTION):
                return opt[len(CHDIR_OPTION):]
        return None

    def kernel_options(self) -> tuple[str, ...]:
        """`options` without the consumer-only `x-` family: what mount(2) gets (flags + data)."""
        return tuple(o for o in self.options if not o.startswith("x-"))

    def option(self, name: str) -> str | None:
        """The value of `name=value` in options (the last one wins), or None."""
        prefix = name + "="
        value = None
        for opt in self.options:
            if opt.startswith(prefix):
                value = opt[len(prefix):]
        return value

    def to_oci(self, destination: str) -> dict[str, Any]:
        """An OCI runtime-spec `mounts` entry placing this mount at the absolute `destination`."""
        if not destination.startswith("/"):
            raise ValueError(f"destination {destination!r} must be absolute")
        dest = posixpath.join(destination, self.target) if self.target else destination
        return {"destination": dest, "type": self.type, "source": self.source,
                "options": list(self.options)}

    @classmethod
    def from_oci(cls, entry: dict[str, Any], base: str = "/") -> Mount:
        """The inverse of `to_oci`: `target` is the entry's destination relative to `base`."""
        dest = posixpath.normpath(entry["destination"])
        rel = posixpath.relpath(dest, base) if dest != base else ""
        if rel.startswith(".."):
            raise ValueError(f"destination {dest!r} is not under {base!r}")
        options = entry.get("options") or ()
        mtype = entry.get("type") or ("bind" if {"bind", "rbind"} & set(options) else "none")
        return cls(mtype, entry.get("source") or mtype, rel, tuple(options))


def data_string(options: Iterable[str]) -> str:
    """The filesystem data string mount(2) would get for `options` (flags and `x-` words left out)."""
    return ",".join(o for o in options if o not in _FLAG_WORDS and not o.startswith("x-"))


def data_length(options: Iterable[str]) -> int:
    """Bytes of `data_string(options)` including the terminating NUL."""
    return len(data_string(options).encode()) + 1


def fits_in_page(options: Iterable[str], headroom: int = MOUNT_DATA_HEADROOM) -> bool:
    """Whether the data string leaves `headroom` bytes of mount(2)'s one-page limit free."""
    return data_length(options) <= MOUNT_DATA_LIMIT - headroom


def rootfs_to_oci(mounts: Iterable[Mount], rootfs: str,
                  readonly: bool = False) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The runtime-spec `root` object for `rootfs` and the mounts that make it, OCI-shaped.

    The runtime spec has no field for "how the rootfs is made": `root.path` must already hold the
    file system when the runtime starts (containerd's shim mounts the snapshot there before it
    runs runc). So the second value is not for config.json `mounts` (those are mounted inside the
    container): it lists host-side mounts with absolute host destinations, in order, for the
    component that prepares the bundle to perform (and later unmount in reverse order).
    """
    root = {"path": rootfs, "readonly": readonly}
    return root, [m.to_oci(rootfs) for m in mounts]


def mounts_to_json(mounts: Iterable[Mount]) -> list[dict[str, Any]]:
    """A JSON-friendly list (for state files and the API), the inverse of `mounts_from_json`."""
    return [{"type": m.type, "source": m.source, "target": m.target, "options": list(m.options)}
            for m in mounts]


def mounts_from_json(items: Iterable[dict[str, Any]]) -> list[Mount]:
    return [Mount(i["type"], i["source"], i.get("target", ""), tuple(i.get("options") or ()))
            for i in items]
