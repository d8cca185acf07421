"""Offline garbage collection of the registry's blobs: mark from every manifest, sweep the rest.

Mark: every manifest revision of every repository is live (tagged or not, as distribution's
`garbage-collect` without --delete-untagged), and so is everything it refers to: an image
manifest's config and layers, an index's child manifests (followed recursively, whether or not
they were pushed to that repository), and a manifest's subject is left alone (a referrer keeps
itself alive, not its subject; the subject is live through its own revision). Referrers are
revisions too, so they and their blobs are marked.
Sweep: each unmarked blob is removed from blobs/, and repository links to removed blobs are
removed, so no repository claims a blob the registry no longer has. Stale uploads go as well.

It runs offline: it takes the root's lock, which a running server holds (distribution's
garbage-collect has the same rule, without the lock to enforce it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pallet.errors import PalletError
from pallet.oci.digest import Digest
from pallet.registry.server import manifests as mf
from pallet.registry.server.errors import RegistryError
from pallet.registry.server.storage import FilesystemStorage


@dataclass
class GCReport:
    marked: int = 0
    deleted: list[Digest] = field(default_factory=list)
    freed_bytes: int = 0
    unlinked: list[tuple[str, Digest]] = field(default_factory=list)
    uploads_removed: list[str] = field(default_factory=list)


def _mark_manifest(storage: FilesystemStorage, digest: Digest, marked: set[Digest], media_type: str) -> None:
    if digest in marked:
        return
    marked.add(digest)
    try:
        with storage.open_blob(digest) as f:
            data = f.read(mf.MAX_MANIFEST_SIZE + 1)
        parsed = mf.parse(data, media_type)
    except (PalletError, RegistryError, OSError):
        return  # content missing or unreadable: nothing more to mark from it
    for ref in parsed.blobs:
        marked.add(ref.digest)
    for child in parsed.manifests:
        _mark_manifest(storage, child.digest, marked, child.media_type)


def mark(storage: FilesystemStorage) -> set[Digest]:
    marked: set[Digest] = set()
    for repository in storage.list_repositories():
        for record in storage.list_manifests(repository):
            _mark_manifest(storage, record.digest, marked, record.media_type)
    return marked


def collect(storage: FilesystemStorage, *, dry_run: bool = False, upload_ttl: float = 86400.0) -> GCReport:
    """Mark and sweep; with `dry_run` only report. The caller holds `storage.lock()`."""
    report = GCReport()
    marked = mark(storage)
    report.marked = len(marked)
    for digest in list(storage.list_blobs()):
        if digest in marked:
            continue
        report.deleted.append(digest)
        report.freed_bytes += storage.stat_blob(digest) or 0
        if not dry_run:
            storage.delete_blob(digest)
    gone = set(report.deleted)
    for repository in storage.list_repositories():
        for digest in storage.list_blob_links(repository):
            if digest in gone:
                report.unlinked.append((repository, digest))
                if not dry_run:
                    storage.unlink_blob(repository, digest)
    if not dry_run:
        report.uploads_removed = storage.purge_uploads(upload_ttl)
    return report
