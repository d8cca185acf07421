"""The overlay snapshotter: one directory per layer, stacked by overlayfs; commit moves no data.

Layout and metadata are pallet.image.snapshots.store's (format version 1). An active snapshot
is `snapshots/<id>/fs` (the overlay upper dir) + `work/` (its workdir) over the `fs` dirs of
its committed ancestors as lower dirs; committing it only flips its row to committed, so its
upper dir becomes the layer (O(1), containerd's overlay snapshotter does the same).

Mounts returned (Documentation/filesystems/overlayfs.rst):

    active, no parent      bind  <id>/fs                        rbind,rw
    active, parents        overlay  [index=off,] lowerdir=P1:P2:...:Pn,upperdir=<id>/fs,workdir=<id>/work
    view, no parent        bind  <id>/fs (empty)                rbind,ro
    view, one parent       bind  P1                             rbind,ro
    view, parents          overlay  [index=off,] ro,lowerdir=P1:...:Pn   (no upper: read-only)

P1 is the nearest parent (overlay's leftmost lower dir is the top). Paths are absolute, unless
the data string would not fit in mount(2)'s page (about 60 layers under a 60-byte root): then
every path is relative to <root>/snapshots (`lowerdir=12/fs:11/fs:...`, 8-9 bytes a layer) and
the mount carries `x-pallet.chdir=<root>/snapshots`, which tells the consumer to mount with that
working directory (see pallet.oci.mount). That is docker overlay2's and containerd's answer too;
numeric ids keep the relative names short without docker's `l/` directory of symlinks, and 500
layers (overlayfs' OVL_MAX_STACK) fit as long as ids stay below 10^5.

`index=off` is added when the kernel's default is index=on (/sys/module/overlay/parameters/index),
as containerd does: with the index on, an upper dir is tied to the lower dirs' file handles and a
snapshot could not be mounted again over a re-created lower.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from pallet.errors import NotSupported
from pallet.image.snapshots import Kind
from pallet.image.snapshots.store import Checkpoint, DirSnapshotter, Row
from pallet.oci.mount import CHDIR_OPTION, Mount, fits_in_page

# fs/overlayfs/params.h: the most lower layers one overlay mount can stack.
OVL_MAX_STACK = 500

# File systems overlayfs refuses (or misbehaves on) as the upper: no d_type/xattrs/tmpfile, or
# overlay itself (fs/overlayfs/super.c ovl_get_upper, "filesystem not supported as upperdir").
_NOT_UPPER = frozenset({"overlay", "aufs", "ecryptfs", "nfs", "nfs4", "cifs", "smb3", "9p",
                        "vboxsf", "fuse.sshfs"})


class _MountSyscalls(Protocol):
    def mount(self, source: str | None, target: str, fstype: str | None = None, flags: int = 0,
              data: str | None = None) -> None: ...

    def umount2(self, target: str, flags: int = 0) -> None: ...


def overlay_mounts(snapshots_dir: str, sid: int, kind: Kind, lower_ids: Sequence[int], *,
                   index_off: bool = False) -> list[Mount]:
    """The mounts of snapshot `sid` of `kind` over `lower_ids` (nearest parent first)."""
    def fs(i: int, base: str) -> str:
        return f"{base}/{i}/fs" if base else f"{i}/fs"

    ro = kind == Kind.VIEW
    if not lower_ids:
        return [Mount("bind", fs(sid, snapshots_dir), "", ("rbind", "ro" if ro else "rw"))]
    if ro and len(lower_ids) == 1:
        return [Mount("bind", fs(lower_ids[0], snapshots_dir), "", ("rbind", "ro"))]
    if len(lower_ids) > OVL_MAX_STACK:
        raise NotSupported(f"{len(lower_ids)} layers: overlayfs stacks at most {OVL_MAX_STACK}")
    for base in (snapshots_dir, ""):
        opts: list[str] = ["index=off"] if index_off else []
        if ro:
            opts.append("ro")
        opts.append("lowerdir=" + ":".join(fs(i, base) for i in lower_ids))
        if not ro:
            opts += [f"upperdir={fs(sid, base)}",
                     f"workdir={base}/{sid}/work" if base else f"workdir={sid}/work"]
        if fits_in_page(opts):
            if not base:
                opts.append(CHDIR_OPTION + snapshots_dir)
            return [Mount("overlay", "overlay", "", tuple(opts))]
    raise NotSupported(f"{len(lower_ids)} layers: even relative lower dirs exceed mount(2)'s "
                       "page-sized option string")


def _fstype(path: Path, mountinfo: Path) -> str | None:
    """The type of the file system `path` lives on, from mountinfo (longest mount point wins)."""
    probe = path
    while not probe.exists():
        probe = probe.parent
    target = os.path.realpath(probe)
    best, best_type = "", None
    for line in mountinfo.read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields = left.split()
        if len(fields) < 5 or not right:
            continue
        # mountinfo escapes space, tab, newline and backslash as octal (proc(5)).
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, best_type = point, right.split()[0]
    return best_type


def _index_default_on(params: Path) -> bool:
    try:
        return (params / "index").read_text().strip() == "Y"
    except OSError:
        return False


def supported(root: Path | str, *, syscalls: _MountSyscalls | None = None,
              proc: Path = Path("/proc")) -> bool:
    """Whether an overlay snapshotter can work at `root`.

    Checks that the kernel knows overlay (`proc`/filesystems), that `root`'s file system can be
    an upper dir (`proc`/self/mountinfo), and then, with `syscalls` (as root: the real ones by
    default), mounts a two-layer overlay in a temporary directory under `root` and unmounts it:
    the kernel's own verdict. Not caught: xfs formatted with ftype=0, where the kernel mounts
    but only warns "upper fs needs to support d_type" (check `xfs_info` there).
    """
    root = Path(root)
    try:
        known = {line.split()[-1] for line in (proc / "filesystems").read_text().splitlines() if line}
    except OSError:
        return False
    if "overlay" not in known:
        return False
    try:
        fstype = _fstype(root, proc / "self" / "mountinfo")
    except OSError:
        fstype = None
    if fstype in _NOT_UPPER:
        return False
    if syscalls is None:
        if os.geteuid() != 0:
            return True  # cannot try; the checks above are all we can tell without root
        from pallet.syscalls import real

        syscalls = real()
    root.mkdir(parents=True, exist_ok=True)
    probe = Path(tempfile.mkdtemp(prefix="overlay-check-", dir=root))
    try:
        for d in ("l1", "l2", "upper", "work", "merged"):
            (probe / d).mkdir()
        data = f"lowerdir={probe}/l2:{probe}/l1,upperdir={probe}/upper,workdir={probe}/work"
        try:
            syscalls.mount("overlay", str(probe / "merged"), "overlay", 0, data)
        except OSError:
            return False
        syscalls.umount2(str(probe / "merged"), 0)
        return True
    finally:
        shutil.rmtree(probe, ignore_errors=True)


class OverlaySnapshotter(DirSnapshotter):
    """Snapshotter over overlayfs; see the module docstring for its mounts."""

    driver = "overlay"

    def __init__(self, root: Path | str, *, index_off: bool | None = None,
                 checkpoint: Checkpoint | None = None,
                 overlay_params: Path = Path("/sys/module/overlay/parameters")) -> None:
        super().__init__(root, checkpoint=checkpoint)
        self.index_off = _index_default_on(overlay_params) if index_off is None else index_off

    def _check_depth(self, depth: int) -> None:
        if depth > OVL_MAX_STACK:
            raise NotSupported(f"a chain of {depth} layers: overlayfs stacks at most {OVL_MAX_STACK}")

    def _populate(self, staging: Path, kind: Kind, chain: list[Row], lock_fd: int) -> None:
        fs = staging / "fs"
        fs.mkdir(mode=0o755)
        if kind == Kind.ACTIVE:
            (staging / "work").mkdir(mode=0o711)
        if chain:
            # The merged root takes the upper's root attributes: start from the parent's, so an
            # image whose / is not 0755 root:root keeps it (containerd copies uid/gid likewise).
            st = os.stat(self.fs_dir(chain[0].id))
            os.chown(fs, st.st_uid, st.st_gid)
            os.chmod(fs, st.st_mode & 0o7777)

    def _build_mounts(self, row: Row, chain: list[Row]) -> list[Mount]:
        return overlay_mounts(str(self.snapshots_dir), row.id, row.kind, [r.id for r in chain],
                              index_off=self.index_off)

    def _content_dir(self, row: Row, chain: list[Row]) -> Path:
        return self.fs_dir(row.id)
