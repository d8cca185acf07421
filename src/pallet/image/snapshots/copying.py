"""The copying snapshotter: full trees copied per snapshot, for file systems without overlayfs.

Layout and metadata are pallet.image.snapshots.store's (format version 1); there is no `work/`.
Every snapshot's `fs/` holds its complete tree (containerd's "native" snapshotter):

    active, no parent   bind <id>/fs       rbind,rw    (empty)
    active, parent      bind <id>/fs       rbind,rw    (a copy of the parent's tree)
    view, no parent     bind <id>/fs       rbind,ro    (empty)
    view, parent        bind <parent>/fs   rbind,ro    (no copy: a committed tree never changes,
                                                        and cannot go away while the view exists)

`prepare` copies with `cp -a --reflink=auto`: hardlinks, xattrs, device nodes, owners, modes and
mtimes are kept (coreutils' --preserve=all), and on btrfs/xfs/bcachefs the data blocks are shared
(FICLONE) instead of copied. The copy runs in the snapshot's staging directory and inherits its
lock (see pallet.image.snapshots.store), so a crash mid-copy leaves only a `new-*` dir that
`cleanup` removes once cp is gone too. `commit` is a metadata update: the tree is frozen by
contract (a committed snapshot is only ever bound read-only or copied from).

`upper_dir` is the full tree, so the diff code compares it with the parent's (no whiteouts).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from pallet.image.snapshots import Kind
from pallet.image.snapshots.store import DirSnapshotter, Row
from pallet.oci.mount import Mount


def copy_tree(src: Path, dst: Path, *, pass_fds: tuple[int, ...] = ()) -> None:
    """Copy the tree `src` to the new directory `dst` (which must not exist), preserving all."""
    # "src/." copies the directory's contents and its own attributes onto dst (cp(1)).
    proc = subprocess.run(["cp", "-a", "--reflink=auto", "--", f"{src}/.", str(dst)],
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, pass_fds=pass_fds, check=False)
    if proc.returncode != 0:
        raise OSError(f"cp -a --reflink=auto {src}/. {dst} failed (exit {proc.returncode}): "
                      f"{proc.stderr.decode(errors='replace').strip()}")


class CopyingSnapshotter(DirSnapshotter):
    """Snapshotter that copies the parent's tree; works on any file system."""

    driver = "copying"

    def _populate(self, staging: Path, kind: Kind, chain: list[Row], lock_fd: int) -> None:
        fs = staging / "fs"
        if kind == Kind.ACTIVE and chain:
            copy_tree(self.fs_dir(chain[0].id), fs, pass_fds=(lock_fd,))
        else:
            fs.mkdir(mode=0o755)

    def _source(self, row: Row, chain: list[Row]) -> Path:
        if row.kind == Kind.VIEW and chain:
            return self.fs_dir(chain[0].id)
        return self.fs_dir(row.id)

    def _build_mounts(self, row: Row, chain: list[Row]) -> list[Mount]:
        mode = "ro" if row.kind == Kind.VIEW else "rw"
        return [Mount("bind", str(self._source(row, chain)), "", ("rbind", mode))]

    def _content_dir(self, row: Row, chain: list[Row]) -> Path:
        return self._source(row, chain)
