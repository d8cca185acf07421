"""Snapshotters: copy-on-write file system trees for image layers and containers, as `Mount` lists.

The seam is containerd's Snapshotter, with its vocabulary:

- a *key* names an **active** snapshot (writable; a container's rootfs, or a layer being
  unpacked) or a **view** (read-only);
- a *name* names a **committed** snapshot (immutable; one image layer, addressed by chain ID);
- a *parent* is always a committed snapshot; a snapshot with children cannot be removed.

Keys and names share one namespace per store. Two implementations, one contract, one
conformance suite (tests/integration/image/test_snapshotter_conformance.py):

- `overlay` (pallet.image.snapshots.overlay): one directory per layer stacked by overlayfs;
  commit is a metadata update;
- `copying` (pallet.image.snapshots.copying): for file systems without overlay; prepare copies
  the parent's full tree (reflinks where the file system has them).

Both share the on-disk layout and the SQLite metadata of pallet.image.snapshots.store.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import NamedTuple, Protocol, runtime_checkable

from pallet.errors import InvalidArgument
from pallet.oci.mount import Mount


class Kind(enum.StrEnum):
    ACTIVE = "active"
    VIEW = "view"
    COMMITTED = "committed"


@dataclass(frozen=True)
class Info:
    """What `stat` and `walk` report about one snapshot."""

    kind: Kind
    name: str                      # the key of an active/view snapshot, the name of a committed one
    parent: str | None             # name of the committed parent, None for a base snapshot
    labels: Mapping[str, str] = field(default_factory=dict)
    created: datetime | None = None
    updated: datetime | None = None


class Usage(NamedTuple):
    """Disk usage of one snapshot's own directory: allocated bytes and inodes, hardlinks once."""

    size: int
    inodes: int


@runtime_checkable
class Snapshotter(Protocol):
    """A store of snapshots that hands out `Mount` lists and never mounts anything itself.

    Errors (pallet.errors): `NotFound` for an unknown key, name or parent; `AlreadyExists` when
    a key or name is taken (keys and names share one namespace); `Conflict` when the snapshot's
    state forbids the operation (commit of a view or of a committed snapshot, `mounts` of a
    committed snapshot, remove of a snapshot that has children); `InvalidArgument` for an empty
    key, a parent that is not committed, or labels that are not str -> str; `NotSupported` for a
    chain deeper than the backend can stack.

    Atomicity: every operation that changes the store is one metadata transaction (SQLite,
    synchronous=FULL) and that transaction's COMMIT is the point of no return. Directories are
    made under a temporary name and renamed into place before it, removed only after it; a
    kill -9 at any moment leaves the metadata consistent, with at most orphan directories that
    `cleanup` removes and that no query ever reports.

    Idempotency: `prepare`, `view` and `commit` are not idempotent: a second call with the same
    key/name raises `AlreadyExists` (so two unpackers racing for one layer can tell that the
    other won). `remove` of an unknown key raises `NotFound`. `cleanup`, `stat`, `walk`,
    `mounts`, `usage` and `upper_dir` do not change anything the caller can observe.

    The caller owns mounting: it must unmount a snapshot before `commit` or `remove` of it.
    """

    root: Path

    def prepare(self, key: str, parent: str | None = None,
                labels: Mapping[str, str] | None = None) -> list[Mount]:
        """Create an active, writable snapshot on top of committed `parent`; return its mounts."""
        ...

    def view(self, key: str, parent: str | None = None,
             labels: Mapping[str, str] | None = None) -> list[Mount]:
        """Create a read-only snapshot of committed `parent`; return its mounts (all `ro`)."""
        ...

    def mounts(self, key: str) -> list[Mount]:
        """The mounts of an existing active snapshot or view, as `prepare`/`view` returned them."""
        ...

    def commit(self, name: str, key: str, labels: Mapping[str, str] | None = None) -> None:
        """Turn active `key` into committed, immutable `name`; `key` stops existing.

        `labels`, when given, replace the snapshot's labels; otherwise they are kept.
        """
        ...

    def remove(self, key: str) -> None:
        """Remove the snapshot `key` (active or view) or `name` (committed) and its directory."""
        ...

    def stat(self, key: str) -> Info:
        ...

    def walk(self) -> Iterator[Info]:
        """Every snapshot, parents before their children (creation order)."""
        ...

    def usage(self, key: str) -> Usage:
        """Disk usage of the snapshot's own layer (recorded at commit for committed snapshots)."""
        ...

    def upper_dir(self, key: str) -> Path:
        """The directory holding the snapshot's content, for the diff and apply code.

        overlay: the snapshot's own layer (the upper dir of an active snapshot, with overlay
        whiteouts); copying: the full tree.
        """
        ...

    def cleanup(self) -> list[str]:
        """Remove directories that no snapshot owns (leftovers of a crash); return their names.

        Safe to run while other processes prepare: a directory still being made is locked by
        its maker (and by a `cp` it runs) and is left alone. Run it at start-up and from gc.
        """
        ...

    def close(self) -> None:
        """Release the metadata database; the snapshotter is unusable afterwards."""
        ...

    def __enter__(self) -> Snapshotter:
        ...

    def __exit__(self, *exc: object) -> None:
        ...


KINDS = ("overlay", "copying")


def create_snapshotter(kind: str, root: Path | str, **options: object) -> Snapshotter:
    """The snapshotter `kind` ("overlay", "copying" or "auto": overlay where supported) at `root`."""
    root = Path(root)
    if kind == "auto":
        from pallet.image.snapshots import overlay

        kind = "overlay" if overlay.supported(root) else "copying"
    if kind == "overlay":
        from pallet.image.snapshots.overlay import OverlaySnapshotter

        return OverlaySnapshotter(root, **options)  # type: ignore[arg-type]
    if kind == "copying":
        from pallet.image.snapshots.copying import CopyingSnapshotter

        return CopyingSnapshotter(root, **options)  # type: ignore[arg-type]
    raise InvalidArgument(f"unknown snapshotter {kind!r}: expected one of {', '.join(KINDS)} or auto")


__all__ = ["KINDS", "Info", "Kind", "Snapshotter", "Usage", "create_snapshotter"]
