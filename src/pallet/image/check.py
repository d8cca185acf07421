"""The store check: verify every blob, every name and image down to its layers, the metadata
database and the snapshots, and report what is wrong.

`check_store` only reads; it repairs nothing (gc, `image rm` and re-pulling do). Its report is
what a future `pallet system check` prints, one problem a line:

    error: blob sha256:4f2a...: corrupt: read 1024 bytes hashing to sha256:9be1...
    error: name docker.io/library/busybox:latest: manifest sha256:77ab... is missing
    warning: index.json tag example.com/x:1: no name in the metadata
    checked 42 blobs, 3 names, 3 images, 7 snapshots: 2 errors, 1 warning

and `Report.exit_code` is its exit status: 0 when there is no error (warnings allowed), 1 when
there is one. Errors are what breaks an image (a corrupt or missing blob, a name or image whose
manifest, config or layers are missing or inconsistent, a snapshot whose parent is gone, a
database integrity failure); warnings are inconsistencies that break nothing (an index.json tag
without a name, a name without a tag, a stray file under blobs/, a container whose image was
force-removed, as Docker allows).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from pallet.errors import InvalidArgument, NotFound, NotSupported, PalletError
from pallet.image.content import ContentStore
from pallet.image.metadata import MetadataStore
from pallet.image.snapshots import Snapshotter
from pallet.oci import mediatypes as mt
from pallet.oci.digest import ALGORITHMS, Digest, DigestMismatch
from pallet.oci.manifest import (
    MAX_CONFIG_SIZE,
    MAX_MANIFEST_SIZE,
    Manifest,
    check_image,
    parse_any,
    parse_config,
)

EXIT_OK = 0
EXIT_PROBLEMS = 1
ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Problem:
    severity: str      # "error" or "warning"
    subject: str       # what is wrong: "blob sha256:...", "name ...", "image ...", "snapshot ..."
    message: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.subject}: {self.message}"


@dataclass
class Report:
    problems: list[Problem] = field(default_factory=list)
    blobs: int = 0
    names: int = 0
    images: int = 0
    snapshots: int = 0

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == ERROR]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == WARNING]

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.ok else EXIT_PROBLEMS

    def summary(self) -> str:
        e, w = len(self.errors), len(self.warnings)
        return (f"checked {self.blobs} blobs, {self.names} names, {self.images} images, "
                f"{self.snapshots} snapshots: {e} error{'s' * (e != 1)}, {w} warning{'s' * (w != 1)}")

    def lines(self) -> list[str]:
        return [str(p) for p in self.problems] + [self.summary()]


class _Checker:
    def __init__(self, content: ContentStore, metadata: MetadataStore,
                 snapshotter: Snapshotter | None, verify_blobs: bool) -> None:
        self.content = content
        self.metadata = metadata
        self.snapshotter = snapshotter
        self.verify_blobs = verify_blobs
        self.report = Report()
        self.corrupt: set[Digest] = set()
        # digest -> what `manifest` found, so each manifest is checked (and reported) once
        self.manifests: dict[Digest, tuple[Digest | None, list[Digest], str | None]] = {}

    def add(self, severity: str, subject: str, message: str) -> None:
        self.report.problems.append(Problem(severity, subject, message))

    # --- blobs --------------------------------------------------------------------------

    def blobs(self) -> None:
        for digest, _ in self.content.walk():
            self.report.blobs += 1
            if not self.verify_blobs:
                continue
            try:
                self.content.verify(digest)
            except DigestMismatch as exc:
                self.corrupt.add(digest)
                self.add(ERROR, f"blob {digest}", f"corrupt: {exc}")
            except NotFound:
                continue  # deleted while we looked (gc)
            except OSError as exc:
                self.corrupt.add(digest)
                self.add(ERROR, f"blob {digest}", f"unreadable: {exc}")
        for name in self._stray_files():
            self.add(WARNING, f"file {name}", "not a blob (its name is not a digest)")

    def _stray_files(self) -> Iterator[str]:
        base = self.content.path / "blobs"
        for alg_dir in sorted(base.iterdir()):
            if alg_dir.name not in ALGORITHMS or not alg_dir.is_dir():
                yield f"blobs/{alg_dir.name}"
                continue
            for entry in sorted(os.scandir(alg_dir), key=lambda e: e.name):
                try:
                    Digest(f"{alg_dir.name}:{entry.name}")
                except InvalidArgument:
                    yield f"blobs/{alg_dir.name}/{entry.name}"
                    continue
                if not entry.is_file(follow_symlinks=False):
                    yield f"blobs/{alg_dir.name}/{entry.name}"

    # --- manifests ------------------------------------------------------------------------

    def _blob_problem(self, digest: Digest) -> str | None:
        if digest in self.corrupt:
            return "is corrupt"
        if not self.content.exists(digest):
            return "is missing"
        return None

    def manifest(self, digest: Digest, depth: int = 0) -> tuple[Digest | None, list[Digest], str | None]:
        """Check the manifest or index at `digest` once; returns (config digest of a manifest,
        child manifest digests of an index, why it is unusable or None). Problems inside a
        present manifest are reported under its own subject."""
        if digest in self.manifests:
            return self.manifests[digest]
        result: tuple[Digest | None, list[Digest], str | None]
        problem = self._blob_problem(digest)
        if problem is not None:
            result = (None, [], f"manifest {digest} {problem}")
            self.manifests[digest] = result
            return result
        subject = f"manifest {digest}"
        try:
            doc = parse_any(self.content.read(digest, MAX_MANIFEST_SIZE))
        except (InvalidArgument, NotSupported) as exc:
            self.add(ERROR, subject, f"does not parse: {exc}")
            result = (None, [], f"manifest {digest} does not parse")
            self.manifests[digest] = result
            return result
        if isinstance(doc, Manifest):
            result = (doc.config.digest, [], self._image_manifest(subject, doc))
        else:
            children = [d.digest for d in doc.manifests if self.content.exists(d.digest)]
            if not children:
                self.add(WARNING, subject, "index has none of its manifests in the store")
            broken = None
            for child in children:
                if depth < 8:
                    _, _, why = self.manifest(child, depth + 1)
                    broken = broken or why
            result = (None, children, broken)
        self.manifests[digest] = result
        return result

    def _image_manifest(self, subject: str, m: Manifest) -> str | None:
        broken: str | None = None
        problem = self._blob_problem(m.config.digest)
        if problem is not None:
            self.add(ERROR, subject, f"config {m.config.digest} {problem}")
            return f"its config {problem}"
        try:
            config = parse_config(self.content.read(m.config.digest, MAX_CONFIG_SIZE))
            check_image(m, config)
        except InvalidArgument as exc:
            self.add(ERROR, subject, str(exc))
            broken = "it is inconsistent"
        for i, layer in enumerate(m.layers):
            problem = self._blob_problem(layer.digest)
            if problem is None:
                size = self.content.info(layer.digest)
                if size != layer.size:
                    self.add(ERROR, subject, f"layer {i} {layer.digest} is {size} bytes, the manifest "
                                             f"says {layer.size}")
                    broken = broken or "a layer has the wrong size"
            elif not (problem == "is missing" and mt.is_foreign_layer(layer.media_type)):
                self.add(ERROR, subject, f"layer {i} {layer.digest} {problem}")
                broken = broken or f"a layer {problem}"
        return broken

    def _images_of(self, digest: Digest) -> set[Digest]:
        config, children, _ = self.manifest(digest)
        if config is not None:
            return {config}
        out: set[Digest] = set()
        for child in children:
            c, _, _ = self.manifest(child)
            if c is not None:
                out.add(c)
        return out

    # --- names and images -----------------------------------------------------------------

    def names(self) -> None:
        tags = {d.ref_name: d for d in self.content.index() if d.ref_name}
        for n in self.metadata.names():
            self.report.names += 1
            subject = f"name {n.name}"
            try:
                self.metadata.get_image(n.image_id)
            except NotFound:
                self.add(ERROR, subject, f"image {n.image_id} does not exist")
            _, _, why = self.manifest(n.manifest_digest)
            if why is not None:
                self.add(ERROR, subject, why)
            elif n.image_id not in self._images_of(n.manifest_digest):
                self.add(ERROR, subject, f"manifest {n.manifest_digest} is not of image {n.image_id}")
            tag = tags.pop(n.name, None)
            if tag is None:
                self.add(WARNING, subject, "not tagged in index.json (skopeo and umoci do not see it)")
            elif tag.digest != n.manifest_digest:
                self.add(WARNING, subject, f"index.json tags {tag.digest}, the metadata "
                                           f"{n.manifest_digest}")
        for name, desc in tags.items():
            subject = f"index.json tag {name}"
            self.add(WARNING, subject, "no name in the metadata")
            _, _, why = self.manifest(desc.digest)
            if why is not None:
                self.add(ERROR, subject, why)

    def images(self) -> None:
        for image in self.metadata.images():
            self.report.images += 1
            subject = f"image {image.id}"
            config, _, why = self.manifest(image.manifest_digest)
            if why is not None:
                self.add(ERROR, subject, why)
            elif config is None:
                self.add(ERROR, subject, f"manifest {image.manifest_digest} is an index, not the "
                                         "image's manifest")
            elif config != image.id:
                self.add(ERROR, subject, f"its manifest {image.manifest_digest} has config {config}")

    def database(self) -> None:
        for line in self.metadata.check():
            self.add(ERROR, "metadata", line)

    # --- snapshots and containers -------------------------------------------------------

    def snapshots(self) -> None:
        known: set[str] = set()
        if self.snapshotter is not None:
            infos = list(self.snapshotter.walk())
            known = {i.name for i in infos}
            for info in infos:
                self.report.snapshots += 1
                if info.parent is not None and info.parent not in known:
                    self.add(ERROR, f"snapshot {info.name}", f"parent {info.parent} does not exist")
        records = self.metadata.snapshots()
        committed = {r.name for r in records if r.kind == "committed" and r.name}
        for r in records:
            if r.parent is not None and r.parent not in committed:
                self.add(ERROR, f"snapshot record {r.key}", f"parent {r.parent} is not a committed "
                                                            "snapshot record")
        images = {i.id for i in self.metadata.images()}
        for c in self.metadata.containers():
            subject = f"container {c.id}"
            if self.snapshotter is not None and c.snapshot_key not in known:
                self.add(ERROR, subject, f"snapshot {c.snapshot_key} does not exist")
            if c.image_id is not None and c.image_id not in images:
                self.add(WARNING, subject, f"image {c.image_id} was removed")


def check_store(content: ContentStore, metadata: MetadataStore, snapshotter: Snapshotter | None = None,
                *, verify_blobs: bool = True) -> Report:
    """Check the whole store (see the module docstring); never raises for what it finds.

    `verify_blobs=False` skips re-hashing (the slow part: it reads every byte).
    """
    checker = _Checker(content, metadata, snapshotter, verify_blobs)
    steps = (checker.blobs, checker.database, checker.names, checker.images, checker.snapshots)
    for step in steps:
        try:
            step()
        except (PalletError, OSError) as exc:
            checker.add(ERROR, "check", f"{step.__name__} stopped: {exc}")
    return checker.report


__all__ = ["EXIT_OK", "EXIT_PROBLEMS", "Problem", "Report", "check_store"]
