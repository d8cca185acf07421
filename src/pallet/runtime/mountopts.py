"""Parse OCI mount `options` into mount(2) flags, propagation flags and filesystem data.

The vocabulary is mount(8)'s, as the runtime spec says (config.md, "Mounts"); options the
kernel does not know as flags are passed to the filesystem as its data string.
"""

from __future__ import annotations

from pallet.errors import NotSupported
from pallet.syscalls import flags as F

# option -> (clear?, flag)
_FLAGS: dict[str, tuple[bool, int]] = {
    "ro": (False, F.MS_RDONLY), "rw": (True, F.MS_RDONLY),
    "nosuid": (False, F.MS_NOSUID), "suid": (True, F.MS_NOSUID),
    "nodev": (False, F.MS_NODEV), "dev": (True, F.MS_NODEV),
    "noexec": (False, F.MS_NOEXEC), "exec": (True, F.MS_NOEXEC),
    "sync": (False, F.MS_SYNCHRONOUS), "async": (True, F.MS_SYNCHRONOUS),
    "dirsync": (False, F.MS_DIRSYNC),
    "remount": (False, F.MS_REMOUNT),
    "mand": (False, F.MS_MANDLOCK), "nomand": (True, F.MS_MANDLOCK),
    "atime": (True, F.MS_NOATIME), "noatime": (False, F.MS_NOATIME),
    "diratime": (True, F.MS_NODIRATIME), "nodiratime": (False, F.MS_NODIRATIME),
    "relatime": (False, F.MS_RELATIME), "norelatime": (True, F.MS_RELATIME),
    "strictatime": (False, F.MS_STRICTATIME), "nostrictatime": (True, F.MS_STRICTATIME),
    "lazytime": (False, F.MS_LAZYTIME), "nolazytime": (True, F.MS_LAZYTIME),
    "nosymfollow": (False, F.MS_NOSYMFOLLOW), "symfollow": (True, F.MS_NOSYMFOLLOW),
    "bind": (False, F.MS_BIND), "rbind": (False, F.MS_BIND | F.MS_REC),
    "defaults": (False, 0), "silent": (False, F.MS_SILENT), "loud": (True, F.MS_SILENT),
    "iversion": (False, F.MS_I_VERSION), "noiversion": (True, F.MS_I_VERSION),
}

# The recursive variants (rro, rnosuid...) need mount_setattr(AT_RECURSIVE); refused clearly for
# now rather than passed to the filesystem as data, where a bind mount would silently ignore them.
_RECURSIVE = {"r" + name for name in _FLAGS if name not in ("bind", "rbind", "defaults", "remount")}

_PROPAGATION: dict[str, int] = {
    "private": F.MS_PRIVATE, "rprivate": F.MS_PRIVATE | F.MS_REC,
    "shared": F.MS_SHARED, "rshared": F.MS_SHARED | F.MS_REC,
    "slave": F.MS_SLAVE, "rslave": F.MS_SLAVE | F.MS_REC,
    "unbindable": F.MS_UNBINDABLE, "runbindable": F.MS_UNBINDABLE | F.MS_REC,
}

# Options that steer the runtime itself and never reach mount(2).
_RUNTIME_ONLY = {"idmap", "ridmap", "tmpcopyup", "copy-symlink"}


class MountOptions:
    """flags, propagation (a tuple of flags), data, idmap, recursive_idmap, and chdir (from
    x-pallet.chdir=DIR: mount with DIR as the cwd, for relative overlay lowerdirs). A plain
    value class, not a dataclass or a namedtuple: dataclasses costs ~6 ms of imports on every
    create, and collections (for namedtuple) ~1 ms."""

    __slots__ = ("chdir", "data", "flags", "idmap", "propagation", "recursive_idmap")

    def __init__(self, flags: int = 0, propagation: tuple[int, ...] = (), data: str = "",
                 idmap: bool = False, recursive_idmap: bool = False, chdir: str = "") -> None:
        self.flags, self.propagation, self.data = flags, propagation, data
        self.idmap, self.recursive_idmap, self.chdir = idmap, recursive_idmap, chdir

    def _key(self) -> tuple:
        return (self.flags, self.propagation, self.data, self.idmap, self.recursive_idmap, self.chdir)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MountOptions) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (f"MountOptions(flags={self.flags:#x}, propagation={self.propagation!r}, data={self.data!r}, "
                f"idmap={self.idmap!r}, recursive_idmap={self.recursive_idmap!r}, chdir={self.chdir!r})")

    @property
    def is_bind(self) -> bool:
        return bool(self.flags & F.MS_BIND)


def parse(options: list[str]) -> MountOptions:
    flags = 0
    propagation: list[int] = []
    data: list[str] = []
    idmap = recursive = False
    chdir = ""
    for opt in options:
        if opt in _FLAGS:
            clear, bit = _FLAGS[opt]
            flags = flags & ~bit if clear else flags | bit
        elif opt in _PROPAGATION:
            propagation.append(_PROPAGATION[opt])
        elif opt in ("idmap", "ridmap"):
            idmap = True
            recursive = recursive or opt == "ridmap"
        elif opt in _RUNTIME_ONLY:
            continue
        elif opt.startswith("x-"):
            # mount(8) reserves x-* for userspace; the snapshotter's x-pallet.chdir is ours.
            if opt.startswith("x-pallet.chdir="):
                chdir = opt.partition("=")[2]
            continue
        elif opt in _RECURSIVE:
            raise NotSupported(f"mount option {opt!r}: recursive mount attributes are not supported yet")
        else:
            data.append(opt)
    return MountOptions(flags, tuple(propagation), ",".join(data), idmap, recursive, chdir)


def propagation_flag(name: str) -> int:
    return _PROPAGATION[name]
