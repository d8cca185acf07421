"""Garbage collection of the image store: mark and sweep, `image prune`, and a size watermark.

Mark and sweep (containerd's gc, adapted to Pallet's stores):

- Roots, read in one metadata transaction (`MetadataStore.gc_roots`): the manifests of every
  image record and every name, image records' configs, the snapshots of containers, and what
  leases hold (content, snapshots, ingests). Expired leases are deleted first. The
  descriptors of the content store's index.json are roots too, so that a tag another tool
  (skopeo, umoci) wrote into the layout keeps its blobs.
- Mark: a manifest marks its config and layers, an index its children (those in the store),
  recursively. Every marked config marks, in the snapshotter, the committed layer snapshots of
  its image: by convention (pallet.image.service) a committed layer snapshot is *named by its
  chain ID*, the string "sha256:<hex>" (image-spec config.md "Layer ChainID"). Marked
  snapshots mark their parents.
- Sweep: blobs nothing marked (ContentStore.delete), snapshots nothing marked, children
  before parents (Snapshotter.remove; active snapshots too: an unpack in progress holds its
  key in a lease, as pallet.image.service does), and ingests older than a day no writer holds.

Image records are roots, not garbage: an untagged image stays until `prune` (Docker keeps
dangling images the same way). `prune` and `enforce_watermark` delete image records (names
first: Docker untags before it deletes) and then collect. Neither deletes an image a container
uses, nor the parent (label `pallet.image.parent`) of an image that stays: Docker refuses to
delete an image with dependent children, and its `dangling` excludes them.

A manifest or config that is present but cannot be read (corrupt, not JSON) stops the
collection with Conflict before anything is deleted: what it references is unknown, and a
store check (pallet.image.check) says what to repair. A missing one is no obstacle.

`enforce_watermark` is an automatic policy Docker lacks (its only remedy is a manual
`docker image prune -a`; the kubelet has image GC thresholds for the same reason): delete
unused images, least recently used first, until the store is under `max_bytes` and/or the file
system of the data root has `min_free_bytes` free. "Least recently used" is an image record's
`last_used` (set by `MetadataStore.touch_image` when a container is made from it) when it has
one, else its `created` (when it entered the store).
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pallet.errors import Conflict, InvalidArgument, NotFound, NotSupported, PalletError
from pallet.image.content import ContentStore
from pallet.image.metadata import GcRoots, ImageRecord, MetadataStore
from pallet.image.snapshots import Snapshotter
from pallet.oci.digest import Digest
from pallet.oci.manifest import (
    MAX_CONFIG_SIZE,
    MAX_MANIFEST_SIZE,
    Manifest,
    chain_ids,
    parse_any,
    parse_config,
)

INGEST_MAX_AGE = 24 * 3600.0
# pallet.image.service's label naming the image a commit was made from (Docker's "Parent").
LABEL_PARENT = "pallet.image.parent"
PRUNE_FILTERS = ("until", "label", "label!", "dangling")


@dataclass(frozen=True)
class GcResult:
    """What a collection removed (or, with dry_run, would remove)."""

    blobs: tuple[Digest, ...] = ()
    snapshots: tuple[str, ...] = ()
    bytes_freed: int = 0           # blob sizes plus snapshot disk usage
    ingests: int = 0
    expired_leases: tuple[str, ...] = ()
    dry_run: bool = False


@dataclass(frozen=True)
class PruneResult:
    """What `prune` deleted: images (ids), names untagged, and the collection after it."""

    deleted: tuple[Digest, ...] = ()
    untagged: tuple[str, ...] = ()
    gc: GcResult = field(default_factory=GcResult)
    dry_run: bool = False

    @property
    def space_reclaimed(self) -> int:
        return self.gc.bytes_freed

    def to_docker(self) -> dict[str, Any]:
        """The body of Docker's `POST /images/prune` answer."""
        items: list[dict[str, str]] = [{"Untagged": n} for n in self.untagged]
        items += [{"Deleted": str(d)} for d in self.deleted]
        return {"ImagesDeleted": items or None, "SpaceReclaimed": self.space_reclaimed}


@dataclass(frozen=True)
class WatermarkResult:
    """What `enforce_watermark` did; `satisfied` is False when deleting every unused image was
    not enough (or, in a dry run, would not be)."""

    deleted: tuple[Digest, ...]
    untagged: tuple[str, ...]
    store_bytes_before: int
    store_bytes_after: int
    free_bytes_before: int
    free_bytes_after: int
    satisfied: bool
    dry_run: bool = False


@dataclass
class _Marks:
    blobs: set[Digest]
    snapshots: set[str]


def _timestamp(value: str) -> float:
    """Seconds since the epoch of an RFC 3339 time (nanoseconds and offsets allowed)."""
    s = value.strip()
    m = re.fullmatch(r"(\d{4}-\d\d-\d\d)(?:[T ](\d\d:\d\d:\d\d)(\.\d+)?)?(Z|[+-]\d\d:?\d\d)?", s)
    if m is None:
        raise InvalidArgument(f"not an RFC 3339 time: {value[:100]!r}")
    date, clock, frac, zone = m.groups()
    text = f"{date}T{clock or '00:00:00'}{(frac or '')[:7]}"
    if zone and zone != "Z":
        text += zone if ":" in zone else f"{zone[:3]}:{zone[3:]}"
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_until(value: str, now: float) -> float:
    """Docker's `until` filter value: a Unix timestamp, an RFC 3339 date/time, or a Go
    duration (`24h`, `1h30m`) counted back from `now`."""
    value = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    if re.fullmatch(f"(?:{_DURATION.pattern})+", value):
        return now - sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(value))
    try:
        return _timestamp(value)
    except (InvalidArgument, ValueError):
        raise InvalidArgument(f"invalid until filter {value[:100]!r}: expected a timestamp, "
                              "an RFC 3339 date or a duration such as 24h") from None


def _filter_values(key: str, value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):  # Docker's API form: {"label": {"a=b": true}}
        return [k for k, v in value.items() if v and isinstance(k, str)]
    if isinstance(value, Iterable) and all(isinstance(v, str) for v in value):
        return list(value)
    raise InvalidArgument(f"filter {key!r}: expected a string or a list of strings")


def _label_matches(labels: Mapping[str, str], expr: str) -> bool:
    key, sep, want = expr.partition("=")
    return key in labels and (not sep or labels[key] == want)


@dataclass(frozen=True)
class _Filters:
    until: float | None
    labels: tuple[str, ...]
    not_labels: tuple[str, ...]
    dangling: bool | None

    def matches(self, image: ImageRecord) -> bool:
        if self.until is not None and _timestamp(image.created) >= self.until:
            return False
        if not all(_label_matches(image.labels, e) for e in self.labels):
            return False
        return not any(_label_matches(image.labels, e) for e in self.not_labels)


def parse_prune_filters(filters: Mapping[str, Any] | None, now: float) -> _Filters:
    """Validate `docker image prune --filter` values: until, label, label!, dangling."""
    filters = dict(filters or {})
    for key in filters:
        if key not in PRUNE_FILTERS:
            raise InvalidArgument(f"invalid filter {key!r} (image prune takes {', '.join(PRUNE_FILTERS)})")
    until = None
    if "until" in filters:
        values = _filter_values("until", filters["until"])
        if len(values) != 1:
            raise InvalidArgument("filter 'until': exactly one value")
        until = parse_until(values[0], now)
    dangling = None
    if "dangling" in filters:
        values = _filter_values("dangling", filters["dangling"])
        if len(values) != 1 or values[0].lower() not in ("true", "false", "1", "0"):
            raise InvalidArgument("filter 'dangling': expected true or false")
        dangling = values[0].lower() in ("true", "1")
    return _Filters(until, tuple(_filter_values("label", filters.get("label", []))),
                    tuple(_filter_values("label!", filters.get("label!", []))), dangling)


class GarbageCollector:
    """Mark and sweep over a content store, its metadata and (optionally) a snapshotter.

    `collect`, `prune` and `enforce_watermark` may run while other operations do: those hold
    leases for what they create before it is named (see the module docstring). Two collectors
    at once are safe (a blob or snapshot deleted twice is skipped) but wasteful; the daemon
    runs one at a time. `clock` and `data_root` are injectable for tests.
    """

    def __init__(self, content: ContentStore, metadata: MetadataStore,
                 snapshotter: Snapshotter | None = None, *, data_root: str | os.PathLike[str] | None = None,
                 clock: Callable[[], float] = time.time,
                 statvfs: Callable[[str], os.statvfs_result] = os.statvfs) -> None:
        self.content = content
        self.metadata = metadata
        self.snapshotter = snapshotter
        self.data_root = Path(data_root) if data_root is not None else content.path
        self.clock = clock
        self.statvfs = statvfs

    # --- mark -----------------------------------------------------------------------------

    def _roots(self, drop: frozenset[Digest] = frozenset()) -> tuple[GcRoots, set[str]]:
        """The roots, without the images in `drop` and their names (for dry runs), and the
        index.json ref names to keep."""
        roots = self.metadata.gc_roots()
        names = self.metadata.names()
        dropped_names = {n.name for n in names if n.image_id in drop}
        if drop:
            images = [i for i in self.metadata.images() if i.id not in drop]
            manifests = {i.manifest_digest for i in images}
            manifests |= {n.manifest_digest for n in names if n.image_id not in drop}
            roots = GcRoots(frozenset(manifests), frozenset(i.id for i in images), roots.snapshots,
                            roots.content, roots.ingests)
        return roots, dropped_names

    def _read(self, digest: Digest, limit: int, what: str) -> bytes | None:
        try:
            return self.content.read(digest, limit)
        except NotFound:
            return None
        except InvalidArgument as exc:
            raise Conflict(f"gc stopped: {what} {digest} cannot be read ({exc}); run a store "
                           "check and remove the image that uses it") from exc

    def mark(self, drop: frozenset[Digest] = frozenset()) -> _Marks:
        """Everything reachable from the roots (minus the images in `drop`)."""
        roots, dropped_names = self._roots(drop)
        blobs: set[Digest] = set()
        configs: set[Digest] = set(roots.images)
        todo: list[Digest] = list(roots.manifests)
        todo += [d.digest for d in self.content.index() if d.ref_name not in dropped_names]
        while todo:
            digest = todo.pop()
            if digest in blobs:
                continue
            blobs.add(digest)
            data = self._read(digest, MAX_MANIFEST_SIZE, "manifest")
            if data is None:
                continue
            try:
                doc = parse_any(data)
            except (InvalidArgument, NotSupported) as exc:
                raise Conflict(f"gc stopped: manifest {digest} does not parse ({exc}); run a store "
                               "check") from exc
            if isinstance(doc, Manifest):
                blobs.add(doc.config.digest)
                blobs.update(layer.digest for layer in doc.layers)
                configs.add(doc.config.digest)
            else:
                todo.extend(child.digest for child in doc.manifests)
        blobs |= configs
        for key in roots.content:
            with contextlib.suppress(InvalidArgument):
                blobs.add(Digest(key))
        snapshots = set(roots.snapshots)
        if self.snapshotter is not None:
            for config in configs:
                data = self._read(config, MAX_CONFIG_SIZE, "config")
                if data is None:
                    continue
                try:
                    snapshots.update(chain_ids(parse_config(data).diff_ids))
                except InvalidArgument as exc:
                    raise Conflict(f"gc stopped: config {config} does not parse ({exc})") from exc
        return _Marks(blobs, snapshots)

    # --- sweep ----------------------------------------------------------------------------

    def _doomed_snapshots(self, keep: set[str]) -> list[str]:
        """Snapshots outside `keep` and its ancestors, children before parents."""
        if self.snapshotter is None:
            return []
        parents = {info.name: info.parent for info in self.snapshotter.walk()}
        kept: set[str] = set()
        for name in keep:
            while name is not None and name in parents and name not in kept:
                kept.add(name)
                name = parents[name]  # type: ignore[assignment]

        def depth(name: str) -> int:
            n, p = 0, parents.get(name)
            while p is not None and n < 10_000:
                n, p = n + 1, parents.get(p)
            return n

        doomed = [name for name in parents if name not in kept]
        return sorted(doomed, key=lambda s: (-depth(s), s))

    def _doomed_blobs(self, keep: set[Digest], min_age: float) -> list[tuple[Digest, int]]:
        cutoff = self.clock() - min_age
        out = []
        for digest, size in self.content.walk():
            if digest in keep:
                continue
            if min_age > 0:
                try:
                    if self.content.path_of(digest).stat().st_mtime > cutoff:
                        continue
                except (NotFound, FileNotFoundError):
                    continue
            out.append((digest, size))
        return out

    def _snapshot_bytes(self, names: Iterable[str]) -> int:
        total = 0
        if self.snapshotter is not None:
            for name in names:
                with contextlib.suppress(PalletError, OSError):
                    total += self.snapshotter.usage(name).size
        return total

    def plan(self, drop: frozenset[Digest] = frozenset(), min_age: float = 0.0) -> GcResult:
        """What `collect` would remove now, were the images in `drop` deleted too."""
        marks = self.mark(drop)
        blobs = self._doomed_blobs(marks.blobs, min_age)
        snapshots = self._doomed_snapshots(marks.snapshots)
        freed = sum(size for _, size in blobs) + self._snapshot_bytes(snapshots)
        return GcResult(tuple(d for d, _ in blobs), tuple(snapshots), freed, dry_run=True)

    def collect(self, *, dry_run: bool = False, min_age: float = 0.0,
                ingest_max_age: float = INGEST_MAX_AGE) -> GcResult:
        """Delete what no root reaches; with `dry_run`, only say what that would be.

        `min_age` spares blobs written in the last `min_age` seconds (a margin for writers
        that do not lease). Returns what was (or would be) removed.
        """
        if dry_run:
            return self.plan(min_age=min_age)
        expired = tuple(self.metadata.expire_leases())
        marks = self.mark()
        doomed_snapshots = self._doomed_snapshots(marks.snapshots)
        freed = self._snapshot_bytes(doomed_snapshots)
        removed_snapshots = []
        record_keys = {s.key for s in self.metadata.snapshots()}
        for name in doomed_snapshots:
            assert self.snapshotter is not None
            try:
                self.snapshotter.remove(name)
            except NotFound:
                continue
            except Conflict:
                continue  # a child appeared meanwhile: it is kept, and so is this parent
            removed_snapshots.append(name)
            if name in record_keys:
                with contextlib.suppress(NotFound, Conflict):
                    self.metadata.remove_snapshot(name)
        removed_blobs = []
        for digest, size in self._doomed_blobs(marks.blobs, min_age):
            try:
                self.content.delete(digest)
            except NotFound:
                continue
            removed_blobs.append(digest)
            freed += size
        ingests = self._clean_ingests(ingest_max_age)
        if self.snapshotter is not None:
            # Directories no snapshot owns: a staged layer or a `new-*` of a crashed pull or
            # prepare, an `rm-*` a crash left half deleted (the Snapshotter contract: "run it
            # from gc"). A directory still being filled is locked by its maker and kept.
            with contextlib.suppress(OSError, PalletError):
                self.snapshotter.cleanup()
        return GcResult(tuple(removed_blobs), tuple(removed_snapshots), freed, ingests, expired)

    def _clean_ingests(self, max_age: float) -> int:
        leased = self.metadata.gc_roots().ingests
        if not leased:
            return self.content.clean_ingests(older_than=max_age)
        removed = 0
        now = self.clock()
        for status in self.content.ingests():
            if status.ref is None or status.ref in leased or now - status.updated_at < max_age:
                continue
            with contextlib.suppress(NotFound, PalletError):
                self.content.abort_ingest(status.ref)
                removed += 1
        return removed

    # --- images -------------------------------------------------------------------------

    def _in_use(self) -> set[Digest]:
        return {c.image_id for c in self.metadata.containers() if c.image_id is not None}

    @staticmethod
    def _without_parents_of_survivors(doomed: list[ImageRecord],
                                      images: Sequence[ImageRecord]) -> list[ImageRecord]:
        """`doomed` minus every image that is the parent of an image not in it (to a fixed point:
        a kept child keeps its parent, which keeps its own parent)."""
        ids = {i.id for i in doomed}
        while True:
            parents = {i.labels.get(LABEL_PARENT) for i in images if i.id not in ids}
            kept = ids & {Digest(p) for p in parents if p and p.startswith("sha256:")}
            if not kept:
                return [i for i in doomed if i.id in ids]
            ids -= kept

    def _delete_images(self, images: Sequence[ImageRecord]) -> tuple[list[Digest], list[str]]:
        """Untag, then delete each image; skip one a container started using meanwhile."""
        deleted: list[Digest] = []
        untagged: list[str] = []
        for image in images:
            for n in self.metadata.names(image.id):
                try:
                    self.metadata.delete_name(n.name)
                except NotFound:
                    continue
                untagged.append(n.name)
                with contextlib.suppress(NotFound):
                    self.content.untag(n.name)
            try:
                self.metadata.delete_image(image.id)
            except (NotFound, Conflict):
                continue
            deleted.append(image.id)
        return deleted, untagged

    def prune(self, *, dangling_only: bool = True, filters: Mapping[str, Any] | None = None,
              dry_run: bool = False) -> PruneResult:
        """`docker image prune`: delete dangling (untagged) images, or with
        `dangling_only=False` (`-a`) every image no container uses, that match `filters`
        (`until`, `label`, `label!`, `dangling`; see `parse_prune_filters`), then collect."""
        f = parse_prune_filters(filters, self.clock())
        if f.dangling is not None:
            dangling_only = f.dangling
        in_use = self._in_use()
        named = {n.image_id for n in self.metadata.names()}
        images = self.metadata.images()
        doomed = [i for i in images
                  if i.id not in in_use and (not dangling_only or i.id not in named) and f.matches(i)]
        doomed = self._without_parents_of_survivors(doomed, images)
        if dry_run:
            untagged = tuple(n.name for i in doomed for n in self.metadata.names(i.id))
            plan = self.plan(frozenset(i.id for i in doomed))
            return PruneResult(tuple(i.id for i in doomed), untagged, plan, dry_run=True)
        deleted, untagged_names = self._delete_images(doomed)
        return PruneResult(tuple(deleted), tuple(untagged_names), self.collect())

    # --- watermark ---------------------------------------------------------------------

    def store_bytes(self) -> int:
        """Bytes the store uses: every blob, plus every snapshot's own disk usage."""
        total = sum(size for _, size in self.content.walk())
        if self.snapshotter is not None:
            total += self._snapshot_bytes(info.name for info in self.snapshotter.walk())
        return total

    def free_bytes(self) -> int:
        """Bytes available to unprivileged writers on the data root's file system."""
        st = self.statvfs(str(self.data_root))
        return st.f_bavail * st.f_frsize

    @staticmethod
    def _last_used(image: ImageRecord) -> float:
        value = image.last_used or image.created
        try:
            return _timestamp(value)
        except (InvalidArgument, ValueError):
            return 0.0

    def lru_candidates(self, gone: frozenset[Digest] = frozenset()) -> list[ImageRecord]:
        """Images that can go next: no container uses them and no other image has them as
        parent; least recently used first. `gone` are images to count as deleted already (for
        dry runs). A parent becomes a candidate once its children are gone."""
        in_use = self._in_use()
        images = [i for i in self.metadata.images() if i.id not in gone]
        parents = {i.labels.get(LABEL_PARENT) for i in images}
        unused = [i for i in images if i.id not in in_use and str(i.id) not in parents]
        return sorted(unused, key=lambda i: (self._last_used(i), str(i.id)))

    def enforce_watermark(self, *, max_bytes: int | None = None, min_free_bytes: int | None = None,
                          dry_run: bool = False) -> WatermarkResult:
        """Delete unused images, least recently used first, collecting after each, until the
        store uses at most `max_bytes` and the data root's file system has at least
        `min_free_bytes` free. A dry run estimates the same from the blobs and snapshots each
        deletion would free."""
        if max_bytes is None and min_free_bytes is None:
            raise InvalidArgument("enforce_watermark: give max_bytes and/or min_free_bytes")
        for what, v in (("max_bytes", max_bytes), ("min_free_bytes", min_free_bytes)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise InvalidArgument(f"enforce_watermark: {what} must be a non-negative integer")
        size0, free0 = self.store_bytes(), self.free_bytes()

        def ok(size: int, free: int) -> bool:
            return ((max_bytes is None or size <= max_bytes)
                    and (min_free_bytes is None or free >= min_free_bytes))

        if dry_run:
            chosen: list[ImageRecord] = []
            size, free = size0, free0
            while not ok(size, free):
                candidates = self.lru_candidates(frozenset(i.id for i in chosen))
                if not candidates:
                    break
                chosen.append(candidates[0])
                freed = self.plan(frozenset(i.id for i in chosen)).bytes_freed
                size, free = size0 - freed, free0 + freed
            untagged = tuple(n.name for i in chosen for n in self.metadata.names(i.id))
            return WatermarkResult(tuple(i.id for i in chosen), untagged, size0, size, free0, free,
                                   ok(size, free), dry_run=True)
        deleted: list[Digest] = []
        untagged_names: list[str] = []
        size, free = size0, free0
        tried: set[Digest] = set()
        while not ok(size, free):
            candidates = [i for i in self.lru_candidates() if i.id not in tried]
            if not candidates:
                break
            tried.add(candidates[0].id)
            d, u = self._delete_images(candidates[:1])
            deleted += d
            untagged_names += u
            self.collect()
            size, free = self.store_bytes(), self.free_bytes()
        return WatermarkResult(tuple(deleted), tuple(untagged_names), size0, size, free0, free,
                               ok(size, free))


__all__ = ["GarbageCollector", "GcResult", "PruneResult", "WatermarkResult", "chain_ids",
           "parse_prune_filters", "parse_until"]
