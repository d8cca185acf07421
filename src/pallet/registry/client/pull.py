"""Pull: an image from a registry into the image store, layers in parallel, resumable, unpacked as they land.

The steps (distribution spec "Pulling manifests", "Pulling blobs"):

1. GET the manifest by tag or digest with an Accept of every type Pallet reads (OCI index and
   manifest, Docker manifest list and schema 2). Its bytes are hashed here and checked against
   the digest asked for (or, for a tag, the registry's Docker-Content-Digest); they are stored
   exactly as they came, so the image keeps the registry's manifest digest (RepoDigests).
2. An index or manifest list: pick the platform (the host's, or `platform`; containerd's
   matching rules in pallet.oci.manifest.select_manifest) and GET that manifest by digest.
3. The config blob, verified. A layer whose chain is unpacked already is "Already exists".
4. The other layers download in parallel (`max_concurrent`, 3 as dockerd's
   max-concurrent-downloads). Each streams into a resumable ingest of the content store whose
   ref is `pull-<digest>`: a pull killed at any point (even with palletd) leaves its bytes
   there, and the next pull of any image with that layer asks only for the rest
   (`Range: bytes=<offset>-`, distribution spec "Range requests"; a 200 instead of 206
   restarts the blob). A dropped connection is retried the same way a few times in-process.
   Every blob is verified against its digest and size before it becomes visible. The download
   thread only verifies (ContentWriter.verify) and moves on to its next blob; the publisher
   thread (`_Publisher`) starts the writeback of the verified blobs, fsyncs them and renames
   them into the store, so the waits for the disk are off the downloads' path.
5. Each layer is unpacked while it downloads, by an unpack worker (`max_concurrent` of them)
   that follows the growing ingest file. With the overlay snapshotter the layers are unpacked
   in parallel, out of order, each into a staging directory of the snapshotter
   (ImageService.stage_layer): an overlay layer needs nothing of its parent (whiteouts are
   recorded as device nodes, not applied), except a hardlink to a lower layer's file, whose
   copy-up waits until the layers below are committed. This thread commits the staged layers
   bottom up once their blobs are in the store (verified and renamed: a committed layer always
   has its blob, since a later pull skips both): the next one, waited for, with every layer
   above it that is staged and stored already, in one snapshot transaction
   (commit_staged_many). A layer downloaded before its unpacker started is read from the bytes
   our writer just verified, without hashing them again. With the copying snapshotter, whose
   snapshots are whole trees, layer i is unpacked once layer i-1 is committed, while the layers
   above still download. The file data of a plain (uncompressed) layer goes from the ingest
   file to the unpacked file inside the kernel (copy_file_range(2), `_Follower.copy_into`):
   its bytes are not read back into Python, only the tar headers are.
6. The publisher is waited for, one fsync makes the renames of every blob durable
   (ContentStore.sync_blobs); then the image record and its names (the tag, and `repo@digest`)
   are written in one metadata transaction. One gc lease, taken at the start, holds the
   manifest, config and layers until then.

Crash safety (kill -9 at any moment; tests/integration/registry/test_pull_push.py kills a pull
half way, the snapshot and content store suites kill at every step): a blob is visible only
after its digest was verified, its bytes fsynced, and it was renamed out of its ingest (the
fsync happens later than the verification, in another thread, but still before the rename);
an ingest survives for the next pull to resume, a verified one at its end (nothing more is
transferred, its bytes are hashed again); a staged layer is a `new-*` directory under our
flock, removed by the snapshotter's `cleanup` once we are gone; a committed layer snapshot is
complete (its COMMIT is the last step) and has its blob in the store; the image exists only once
its record is committed, after everything it names.
What is batched is durability against power loss, not consistency: the blob directory is
fsynced once per pull instead of once per blob, before the image record; a blob whose rename
a power loss undid is simply absent and fetched again. Unpacked files are not fsynced (as
containerd's overlay snapshotter does not by default): a power loss can tear a layer written
in the seconds before it, a kill -9 cannot.

`fetch` is the transfer alone: blobs into the content store, nothing unpacked, no image.
`referrers` lists the referrers of a manifest (distribution-spec 1.1), following `Link` pages,
falling back to the referrers tag schema when the registry has no referrers API.

Progress goes to a callback as `Progress` values carrying dockerd's own status words
(pkg/jsonmessage as written by distribution/pull_v2.go), which the API route turns into the
JSON stream `docker pull` shows.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import http.client
import json
import logging
import os
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pallet.errors import InvalidArgument, NotFound, Unavailable
from pallet.image.service import ImageService, StagedLayer
from pallet.oci import mediatypes as mt
from pallet.oci.descriptor import Descriptor, Platform
from pallet.oci.digest import Digest, DigestMismatch
from pallet.oci.manifest import (
    MAX_CONFIG_SIZE,
    MAX_MANIFEST_SIZE,
    Index,
    Manifest,
    chain_ids,
    check_image,
    host_platform,
    normalize_platform,
    parse_any,
    parse_config,
    platform_matches,
    select_manifest,
)
from pallet.oci.reference import Reference
from pallet.registry.client.progress import Progress, ProgressFn
from pallet.registry.client.transport import BLOCK, Session, discard, read_limited

_T = TypeVar("_T")

log = logging.getLogger("pallet.registry.client.pull")

ACCEPT = ", ".join((mt.OCI_INDEX, mt.OCI_MANIFEST, mt.DOCKER_MANIFEST_LIST, mt.DOCKER_MANIFEST))
INGEST_PREFIX = "pull-"
RETRIES = 4
PROGRESS_INTERVAL = 0.1
READ_PIECE = 256 << 10
LOCK_WAIT = 600.0


@dataclass
class PullResult:
    image_id: str
    name: str                  # the normalized reference pulled (tag or digest form)
    digest: str                # the registry's digest of what the reference named (RepoDigest)
    updated: bool              # False: every name pointed at this image already
    fetched: dict[str, int] = field(default_factory=dict)   # blob digest -> bytes transferred now
    resumed: dict[str, int] = field(default_factory=dict)   # blob digest -> offset resumed from


def parse_platform(value: str) -> Platform:
    """`linux/arm64/v8`, `linux/amd64`, `arm64` (os defaults to linux), as docker --platform."""
    parts = [p for p in value.strip().lower().split("/") if p]
    if not parts or len(parts) > 3:
        raise InvalidArgument(f"invalid platform {value!r}: expected os[/arch[/variant]]")
    if len(parts) == 1:
        parts = ["linux", parts[0]] if parts[0] not in ("linux", "windows", "darwin") else \
            [parts[0], host_platform().architecture]
    os_, arch = parts[0], parts[1]
    variant = parts[2] if len(parts) == 3 else None
    return normalize_platform(Platform(arch, os_, variant))


def short(digest: str) -> str:
    """dockerd's progress id of a blob: the first 12 hex digits of its digest."""
    return digest.partition(":")[2][:12]


class Puller:
    """Pulls images from one registry session into `images` (see the module docstring)."""

    def __init__(self, images: ImageService, session: Session, *, progress: ProgressFn | None = None,
                 platform: Platform | None = None, max_concurrent: int = 3) -> None:
        self.images = images
        self.session = session
        self.progress = progress or (lambda p: None)
        self.platform = platform
        self.max_concurrent = max(1, max_concurrent)
        self._emit_lock = threading.Lock()

    def _emit(self, status: str, id: str | None = None, current: int | None = None,
              total: int | None = None, plain: bool = False) -> None:
        with self._emit_lock:
            self.progress(Progress(status, id, current, total, plain))

    # --- manifests ---------------------------------------------------------------------------------

    def fetch_manifest(self, ref: Reference, reference: str,
                       expected: Descriptor | None = None) -> tuple[bytes, Manifest | Index, Digest]:
        """GET a manifest or index by tag or digest; verified (see the module docstring)."""
        scope = f"repository:{ref.path}:pull"
        try:
            resp = self.session.request("GET", f"/v2/{ref.path}/manifests/{reference}", scope=scope,
                                        headers={"Accept": ACCEPT})
        except NotFound as exc:
            raise NotFound(f"manifest for {ref.familiar()} not found: {exc}") from exc
        data = read_limited(resp, MAX_MANIFEST_SIZE, f"manifest {ref.name}:{reference}")
        want: str | None = None
        if expected is not None:
            want = str(expected.digest)
        elif ref.digest is not None and reference == str(ref.digest):
            want = reference
        else:
            header = resp.headers.get("Docker-Content-Digest")
            if header and header.startswith("sha256:"):
                want = header
        digest = Digest.from_bytes(data, Digest(want).algorithm if want else "sha256")
        if want is not None and Digest(want) != digest:
            raise DigestMismatch(f"manifest for {ref.familiar()}: the registry sent content hashing to "
                                 f"{digest}, expected {want}")
        if expected is not None and expected.size != len(data):
            raise DigestMismatch(f"manifest {digest}: {len(data)} bytes, the index says {expected.size}")
        ctype = (resp.headers.get("Content-Type") or "").split(";")[0].strip()
        media_type = ctype if ctype in mt.MANIFESTS | mt.INDEXES else None
        try:
            doc = parse_any(data, media_type)
        except InvalidArgument:
            if media_type is None:
                raise
            doc = parse_any(data)  # a Content-Type that disagrees with the document: trust the document
        return data, doc, digest

    def resolve(self, ref: Reference) -> tuple[bytes, Manifest, Digest]:
        """The manifest `ref` names for our platform: (bytes, manifest, the top-level digest)."""
        reference = str(ref.digest) if ref.digest else (ref.tag or "latest")
        data, doc, top = self.fetch_manifest(ref, reference)
        if isinstance(doc, Index):
            want = self.platform or host_platform()
            desc = select_manifest(doc, want)
            if not mt.is_manifest(desc.media_type):
                raise InvalidArgument(f"{ref.familiar()}: nested indexes are not supported")
            data, doc, _ = self.fetch_manifest(ref, str(desc.digest), expected=desc)
            if not isinstance(doc, Manifest):
                raise InvalidArgument(f"{ref.familiar()}: {desc.digest} is not an image manifest")
        return data, doc, top

    def tags(self, ref: Reference) -> list[str]:
        """Every tag of the repository (GET /v2/<name>/tags/list, following `Link` pages)."""
        out: list[str] = []
        path: str | None = f"/v2/{ref.path}/tags/list"
        while path:
            resp = self.session.request("GET", path, scope=f"repository:{ref.path}:pull",
                                        what=f"tags of {ref.familiar_name()}")
            body = read_limited(resp, MAX_MANIFEST_SIZE, "tag list")
            try:
                out += [t for t in json.loads(body).get("tags") or [] if isinstance(t, str)]
            except (ValueError, AttributeError) as exc:
                raise InvalidArgument(f"tags of {ref.familiar_name()}: not a tag list") from exc
            path = self._next_page(resp)
        return out

    def _next_page(self, resp: http.client.HTTPResponse) -> str | None:
        """The next page of a paginated answer (`Link: <url>; rel="next"`), None on the last."""
        link = resp.headers.get("Link", "")
        if link.startswith("<") and 'rel="next"' in link:
            return urllib.parse.urljoin(self.session.url("/"), link[1:link.index(">")])
        return None

    def referrers(self, ref: Reference, subject: str, artifact_type: str | None = None) -> list[Descriptor]:
        """The manifests whose `subject` is `subject` in `ref`'s repository (distribution spec
        "Listing Referrers"): GET /v2/<name>/referrers/<digest>, following `Link: rel="next"`
        pages. A registry without the API answers 404: then the referrers tag schema (the index
        tagged `<alg>-<hex>`, spec "Referrers Tag Schema") is read instead, and none if that is
        missing too. `artifact_type` is passed as the filter and applied here too when the
        registry did not say `OCI-Filters-Applied: artifactType`."""
        digest = Digest(subject)
        scope = f"repository:{ref.path}:pull"
        query = f"?artifactType={urllib.parse.quote(artifact_type, safe='')}" if artifact_type else ""
        path: str | None = f"/v2/{ref.path}/referrers/{digest}{query}"
        out: list[Descriptor] = []
        seen: set[str] = set()
        while path and path not in seen:
            seen.add(path)
            try:
                resp = self.session.request("GET", path, scope=scope, headers={"Accept": mt.OCI_INDEX},
                                            what=f"referrers of {digest}")
            except NotFound:
                if out:
                    raise  # a page went missing half way: not a registry without the API
                return self._referrers_by_tag(ref, digest, artifact_type)
            body = read_limited(resp, MAX_MANIFEST_SIZE, f"referrers of {digest}")
            filtered = "artifactType" in [f.strip() for f in
                                          (resp.headers.get("OCI-Filters-Applied") or "").split(",")]
            out += [d for d in _index_descriptors(body, f"referrers of {digest}")
                    if filtered or artifact_type is None or d.artifact_type == artifact_type]
            path = self._next_page(resp)
        return out

    def _referrers_by_tag(self, ref: Reference, digest: Digest,
                          artifact_type: str | None) -> list[Descriptor]:
        tag = f"{digest.algorithm}-{digest.encoded}"[:128]
        try:
            resp = self.session.request("GET", f"/v2/{ref.path}/manifests/{tag}",
                                        scope=f"repository:{ref.path}:pull", headers={"Accept": mt.OCI_INDEX},
                                        what=f"referrers tag of {digest}")
        except NotFound:
            return []
        body = read_limited(resp, MAX_MANIFEST_SIZE, f"referrers tag of {digest}")
        try:
            descs = _index_descriptors(body, f"referrers tag of {digest}")
        except InvalidArgument:
            return []  # spec: a tag that is not a valid index means no referrers
        return [d for d in descs if artifact_type is None or d.artifact_type == artifact_type]

    # --- blobs --------------------------------------------------------------------------------------

    def _fetch_small_blob(self, ref: Reference, desc: Descriptor, limit: int) -> bytes:
        resp = self.session.request("GET", f"/v2/{ref.path}/blobs/{desc.digest}",
                                    scope=f"repository:{ref.path}:pull", what=f"blob {desc.digest}")
        data = read_limited(resp, limit, f"blob {desc.digest}")
        if Digest.from_bytes(data, desc.digest.algorithm) != desc.digest or len(data) != desc.size:
            raise DigestMismatch(f"blob {desc.digest}: the registry sent other content")
        return data

    def download(self, ref: Reference, desc: Descriptor, result: PullResult,
                 state: _Download | None = None, publisher: _Publisher | None = None) -> None:
        """Stream one blob into the content store, resuming a partial ingest (module docstring).
        `state` tells a concurrent unpacker how far the ingest file is. With `publisher`, the
        verified blob is handed to it to be made durable and renamed into place (the blob is
        in the store once `publisher.finish()` returned); without, it is committed here."""
        state = state or _Download()
        try:
            self._download(ref, desc, result, state, publisher)
        except BaseException as exc:
            state.fail(exc)
            raise
        state.finish()

    def _download(self, ref: Reference, desc: Descriptor, result: PullResult, state: _Download,
                  publisher: _Publisher | None) -> None:
        content = self.images.content
        sid = short(desc.digest)
        ingest_ref = f"{INGEST_PREFIX}{desc.digest}"
        deadline = time.monotonic() + LOCK_WAIT
        attempt = 0
        while True:
            if content.exists(desc.digest):
                state.publish()
                self._emit("Download complete", sid)
                return
            try:
                writer = content.writer(desc, ref=ingest_ref, sync_dir=publisher is None)
            except Unavailable:
                # Another pull (here or in another process) is writing this blob: wait for it.
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
                continue
            state.start()
            try:
                offset = writer.offset
                if offset < desc.size:
                    if offset:
                        result.resumed[str(desc.digest)] = offset
                    headers = {"Range": f"bytes={offset}-"} if offset else {}
                    resp = self.session.request("GET", f"/v2/{ref.path}/blobs/{desc.digest}",
                                                scope=f"repository:{ref.path}:pull", headers=headers,
                                                ok=(200, 206), what=f"blob {desc.digest}")
                    if offset and resp.status == 200:
                        # The registry ignored the range: start the blob over.
                        state.restart()
                        writer.abort()
                        writer = content.writer(desc, ref=ingest_ref, sync_dir=publisher is None)
                        result.resumed.pop(str(desc.digest), None)
                        offset = 0
                    elif resp.status == 206:
                        start = _range_start(resp.headers.get("Content-Range", ""))
                        if start != offset:
                            discard(resp)
                            raise Unavailable(f"blob {desc.digest}: asked for bytes from {offset}, "
                                              f"got a range from {start}")
                    self._stream(resp, writer, desc, sid, result, state)
                self._emit("Verifying Checksum", sid)
                if publisher is None:
                    writer.commit()  # its own directory fsync (sync_dir): nobody batches it
                    state.publish()
                else:
                    # fsync and rename in the publisher's thread, off this download's path
                    # (module docstring, step 6); the ingest stays ours until then.
                    writer.verify()
                    publisher.submit(writer, state)
            except DigestMismatch:
                writer.abort()
                raise
            except (Unavailable, OSError, http.client.HTTPException) as exc:
                writer.close()  # keeps the bytes for the retry (or the next pull)
                attempt += 1
                if attempt >= RETRIES:
                    raise Unavailable(f"blob {desc.digest}: {exc}") from exc
                self._emit(f"Retrying in {attempt} second{'s' if attempt > 1 else ''}", sid)
                time.sleep(attempt * 0.5)
            except BaseException:
                writer.close()
                raise
            # Past this point the writer belongs to the publisher (or is committed).
            state.verified = True
            self._emit("Download complete", sid)
            return

    def _stream(self, resp: http.client.HTTPResponse, w: Any, desc: Descriptor, sid: str,
                result: PullResult, state: _Download) -> None:
        last = 0.0
        key = str(desc.digest)
        # One buffer for the whole blob: a fresh 1 MB bytes object per read (what read1 makes)
        # costs page faults, glibc handing large blocks back to the kernel on free. readinto
        # fills the buffer before it returns: READ_PIECE keeps progress (and a client that went
        # away, noticed at the next report) from waiting for a whole MB on a slow link.
        buf = bytearray(READ_PIECE)
        view = memoryview(buf)
        unannounced = 0
        try:
            while True:
                n = resp.readinto(buf)
                if not n:
                    break
                w.write(view[:n])
                # The follower is woken per BLOCK, not per piece (finish() wakes it at the end).
                unannounced += n
                if unannounced >= BLOCK:
                    unannounced = 0
                    state.advance()
                result.fetched[key] = result.fetched.get(key, 0) + n
                now = time.monotonic()
                if now - last >= PROGRESS_INTERVAL:
                    last = now
                    self._emit("Downloading", sid, w.offset, desc.size)
        except BaseException:
            resp.close()
            raise
        if w.offset != desc.size:
            resp.close()
            raise Unavailable(f"blob {desc.digest}: the connection ended after "
                              f"{w.offset} of {desc.size} bytes")
        self._emit("Downloading", sid, desc.size, desc.size)

    def _unpack(self, layer: Descriptor, diff_id: str, parent: str | None, state: _Download,
                lease: str | None = None) -> None:
        """Unpack `layer` while it downloads, and commit the snapshot only once the blob is
        published (`_from_download`)."""
        def apply(source: Any) -> None:
            if source is None:
                self.images.unpack_layer(layer, diff_id, parent, lease=lease)
            else:
                self.images.unpack_layer(layer, diff_id, parent, source=source,
                                         before_commit=state.wait_published, lease=lease)

        self._from_download(layer, state, apply)

    def _stage(self, layer: Descriptor, diff_id: str, state: _Download,
               lowers: Callable[[], list[str]]) -> StagedLayer:
        """`_unpack` for the parallel path: apply into a staging dir (ImageService.stage_layer)."""
        return self._from_download(layer, state, lambda source: self.images.stage_layer(
            layer, diff_id, source=source, lower_dirs=lowers))

    def _from_download(self, layer: Descriptor, state: _Download, apply: Callable[[Any], _T]) -> _T:
        """`apply(source)` to the layer's bytes: its ingest file read as it grows (`_Follower`);
        after a download that had to start over, or of a blob already complete, the verified blob
        (our own writer hashed these exact bytes moments ago: the same file, maybe renamed by
        now, read without a second verification pass); else None, the content store's blob."""
        sid = short(layer.digest)
        if state.wait_started():
            try:
                with open(self.images.content.ingest_data(f"{INGEST_PREFIX}{layer.digest}"), "rb") as f:
                    return apply(_Follower(f, layer.size, state,
                                           lambda n: self._emit("Extracting", sid, n, layer.size)))
            except (_Restarted, FileNotFoundError):
                pass  # the bytes being followed went away: unpack the verified blob below
        state.wait_done()
        self._emit("Extracting", sid, 0, layer.size)
        if state.verified:
            with _open_verified(self.images, layer.digest) as f:
                out = apply(_Follower(f, layer.size, state, _no_report))
        else:
            out = apply(None)
        self._emit("Extracting", sid, layer.size, layer.size)
        return out

    def _fetch_and_unpack_staged(self, ref: Reference, layers: Sequence[Descriptor],
                                 diff_ids: Sequence[Digest], chains: list[str], todo: list[bool],
                                 result: PullResult, lease: str, publisher: _Publisher) -> None:
        """Download and unpack every needed layer in parallel; commit the snapshots in order.

        Downloads run `max_concurrent` at a time as before; each layer is applied, while it
        downloads, by an unpack worker into a staging directory of its own (an overlay layer
        does not need its parent to be unpacked: whiteouts are recorded, not applied). This
        thread then commits the staged layers bottom up once their blobs are verified, as many
        at a time as are ready, in one snapshot transaction. Only a hardlink to a file of a
        lower layer makes a worker wait, for the layers below to be committed (`lowers`). A
        failure anywhere discards every staged directory; what was committed stays, as a
        serial pull would leave it."""
        states: dict[str, _Download] = {}
        downloads: dict[str, Future[None]] = {}
        committed = [threading.Event() for _ in layers]
        abandoned = threading.Event()

        def lowers(i: int) -> list[str]:
            for ev in committed[:i]:
                while not ev.wait(0.2):
                    if abandoned.is_set():
                        raise Unavailable("the pull was abandoned")
            return self.images.lower_dirs(chains[i - 1]) if i else []

        staged: list[Future[StagedLayer] | None] = [None] * len(layers)
        batch: list[StagedLayer] = []
        with ThreadPoolExecutor(self.max_concurrent, thread_name_prefix="pull") as dl, \
                ThreadPoolExecutor(self.max_concurrent, thread_name_prefix="unpack") as up:
            try:
                for i, (layer, needed) in enumerate(zip(layers, todo, strict=True)):
                    key = str(layer.digest)
                    if not needed:
                        committed[i].set()
                        continue
                    if key not in downloads:
                        states[key] = _Download()
                        downloads[key] = dl.submit(self.download, ref, layer, result, states[key],
                                                   publisher)
                    staged[i] = up.submit(self._stage, layer, str(diff_ids[i]), states[key],
                                          functools.partial(lowers, i))
                parent: str | None = None
                i = 0
                while i < len(layers):
                    if staged[i] is None:
                        parent = chains[i]
                        i += 1
                        continue
                    # The next layer, waited for; then every layer above it that is staged and
                    # verified already: committed together, in one snapshot transaction.
                    batch = []
                    j = i
                    while j < len(layers):
                        fut = staged[j]
                        key = str(layers[j].digest)
                        if fut is None or (batch and not (fut.done() and downloads[key].done()
                                                          and states[key].published)):
                            break
                        st = fut.result()
                        staged[j] = None
                        batch.append(st)
                        states[key].wait_published()  # verified and in the content store
                        downloads[key].result()
                        j += 1
                    self.images.commit_layers(batch, parent)
                    for k in range(i, j):
                        self._emit("Pull complete", short(layers[k].digest))
                        committed[k].set()
                    parent = chains[j - 1]
                    i = j
            except BaseException:
                abandoned.set()
                for st in batch:
                    self.images.discard_layer(st)
                for f in downloads.values():
                    f.cancel()
                for st_ in states.values():
                    st_.fail(Unavailable("the pull was abandoned"))
                for fut in staged:
                    if fut is not None and not fut.cancel():
                        with contextlib.suppress(BaseException):
                            self.images.discard_layer(fut.result())
                raise

    def _fetch_and_unpack_serial(self, ref: Reference, layers: Sequence[Descriptor],
                                 diff_ids: Sequence[Digest], chains: list[str], todo: list[bool],
                                 result: PullResult, lease: str, publisher: _Publisher) -> None:
        """Download in parallel, unpack one layer after the other (snapshotters that keep whole
        trees, where a layer needs its parent's files)."""
        futures: dict[str, Future[None]] = {}
        states: dict[str, _Download] = {}
        with ThreadPoolExecutor(self.max_concurrent, thread_name_prefix="pull") as pool:
            try:
                for layer, needed in zip(layers, todo, strict=True):
                    key = str(layer.digest)
                    if needed and key not in futures:
                        states[key] = _Download()
                        futures[key] = pool.submit(self.download, ref, layer, result, states[key],
                                                   publisher)
                parent: str | None = None
                for layer, diff_id, chain, needed in zip(layers, diff_ids, chains, todo, strict=True):
                    if needed:
                        self._unpack(layer, str(diff_id), parent, states[str(layer.digest)], lease)
                        futures[str(layer.digest)].result()
                        self._emit("Pull complete", short(layer.digest))
                    parent = chain
            except BaseException:
                for f in futures.values():
                    f.cancel()
                for st in states.values():
                    st.fail(Unavailable("the pull was abandoned"))
                raise

    # --- the whole pull -------------------------------------------------------------------------

    def fetch(self, ref: Reference) -> tuple[Descriptor, PullResult]:
        """Only the transfer of a pull: the manifest, config and layer blobs of `ref` into the
        content store (verified, resumable, in parallel, as `pull` fetches them), nothing
        unpacked and no image recorded: containerd's `ctr content fetch`. The blobs are held
        by nothing afterwards: a `pull` of the same reference then transfers nothing, and gc
        removes them if no pull does. Returns the manifest's descriptor and what was fetched."""
        if ref.tag is None and ref.digest is None:
            ref = ref.with_tag("latest")
        mbytes, manifest, top = self.resolve(ref)
        name = ref.string() if ref.digest is None else f"{ref.name}@{ref.digest}"
        result = PullResult(image_id="", name=name, digest=str(top), updated=False)
        content = self.images.content
        with self.images.lease("fetch", _holds(mbytes, manifest)):
            check_image(manifest, parse_config(self._store_manifest_and_config(ref, mbytes, manifest)))
            layers = list({str(layer.digest): layer for layer in manifest.layers}.values())
            publisher = _Publisher()
            try:
                with ThreadPoolExecutor(self.max_concurrent, thread_name_prefix="fetch") as pool:
                    futures = [pool.submit(self.download, ref, layer, result, None, publisher)
                               for layer in layers]
                    try:
                        for f in futures:
                            f.result()
                    except BaseException:
                        for f in futures:
                            f.cancel()
                        raise
                publisher.finish()
            finally:
                publisher.abandon()
            content.sync_blobs()
        result.updated = bool(result.fetched)
        return Descriptor(manifest.media_type, Digest.from_bytes(mbytes), len(mbytes)), result

    def _store_manifest_and_config(self, ref: Reference, mbytes: bytes, manifest: Manifest) -> bytes:
        """The opening of `pull` and `fetch`: the manifest into the content store, the config
        fetched (verified) unless present; returns the config's bytes. Their renames are made
        durable by the `sync_blobs()` both run before they finish (and a pull before its image
        record), as the layers' are."""
        content = self.images.content
        content.put(mbytes, manifest.media_type, sync_dir=False)
        if not content.exists(manifest.config.digest):
            data = self._fetch_small_blob(ref, manifest.config, MAX_CONFIG_SIZE)
            content.put(data, manifest.config.media_type, expected=manifest.config, sync_dir=False)
            return data
        return content.read(manifest.config.digest)

    def pull(self, ref: Reference, names: Iterable[str] | None = None) -> PullResult:
        """Pull `ref` (a normalized Reference with a tag or a digest); see the module docstring."""
        if ref.tag is None and ref.digest is None:
            ref = ref.with_tag("latest")
        mbytes, manifest, top = self.resolve(ref)
        # After the manifest is found, as dockerd does: a missing image fails before any output.
        self._emit(f"Pulling from {ref.path}", ref.tag if ref.digest is None else str(ref.digest), plain=True)
        name = ref.string() if ref.digest is None else f"{ref.name}@{ref.digest}"
        result = PullResult(image_id="", name=name, digest=str(top), updated=False)
        # One lease transaction holds everything the pull may store (held content need not
        # exist yet; a layer found unpacked already is held for nothing, until the end).
        with self.images.lease("pull", _holds(mbytes, manifest)) as lease:
            content = self.images.content
            config = parse_config(self._store_manifest_and_config(ref, mbytes, manifest))
            check_image(manifest, config)
            want = self.platform
            if want is not None and not platform_matches(config.platform, want):
                raise NotFound(f"image with reference {ref.familiar()} was found but does not match "
                               f"the specified platform: wanted {want}, actual: {config.platform}")
            chains = chain_ids([str(d) for d in config.diff_ids])
            todo = [not self.images.unpacked(c) for c in chains]
            queued = 0
            for layer, needed in zip(manifest.layers, todo, strict=True):
                self._emit("Pulling fs layer" if needed else "Already exists", short(layer.digest))
            for layer, needed in zip(manifest.layers, todo, strict=True):
                queued += needed
                if needed and queued > self.max_concurrent:
                    self._emit("Waiting", short(layer.digest))  # behind the concurrency limit
            publisher = _Publisher()
            try:
                if self.images.can_stage:
                    self._fetch_and_unpack_staged(ref, manifest.layers, config.diff_ids, chains, todo,
                                                  result, lease, publisher)
                else:
                    self._fetch_and_unpack_serial(ref, manifest.layers, config.diff_ids, chains, todo,
                                                  result, lease, publisher)
                # Every blob fsynced and renamed into the store (_Publisher)...
                publisher.finish()
            finally:
                publisher.abandon()  # a no-op after finish; else keeps the bytes for the next pull
            # ...and the renames durable here, in one fsync, before the image record that
            # names them (see pallet.image.content).
            content.sync_blobs()
            wanted = list(names) if names is not None else []
            if ref.digest is None:
                wanted.append(ref.string())
            wanted.append(f"{ref.name}@{top}")
            img, changed = self.images.add_pulled_image(mbytes, manifest.media_type,
                                                        list(dict.fromkeys(wanted)))
        result.image_id = str(img.id)
        result.updated = bool(changed)
        self._emit(f"Digest: {top}")
        what = ref.familiar()
        self._emit(f"Status: Downloaded newer image for {what}" if result.updated
                   else f"Status: Image is up to date for {what}")
        return result


class _PublisherClosed(Exception):
    """The pull is over (abandoned): no more blobs are taken."""


class _Publisher:
    """Commits the blobs the downloads verified (fsync, rename into `blobs/`), in a thread of
    its own, so that a download thread goes on to its next blob instead of waiting for the disk.

    The writers were `verify()`ed; this thread takes all the blobs queued at once, starts the
    writeback of each (a big blob's was started every 8 MB as it was written), then fsyncs and
    renames them in order, so the disk works on the batch at once and the fsyncs mostly wait
    for I/O already under way. `finish()` waits for every
    blob handed over and raises the first error; `abandon()` stops taking blobs and closes the
    writers not committed yet, which keeps their verified bytes in their ingests: the next pull
    resumes each at its end and transfers nothing of it."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: list[tuple[Any, _Download | None]] = []
        self._closed = False
        self._busy = False
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def submit(self, writer: Any, state: _Download | None = None) -> None:
        """Take `writer` (verified) to commit; `state.publish()` is called once it is done."""
        with self._cond:
            if self._closed:
                raise _PublisherClosed()
            self._queue.append((writer, state))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="pull-publish", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                batch, self._queue = self._queue, []
                self._busy = True
            try:
                # Start the writeback of every blob of the batch first (asynchronous), then
                # fsync them one by one: the disk works on all of them at once. Here, not in
                # the download threads, as submitting writeback can block on a busy disk.
                for writer, _ in batch:
                    writer.start_writeback()
                for writer, state in batch:
                    self._commit(writer, state)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _commit(self, writer: Any, state: _Download | None) -> None:
        error: BaseException | None = None
        try:
            if self._error is None:
                writer.commit()
            else:
                writer.close()
                error = Unavailable("an earlier blob of this pull could not be stored")
        except BaseException as exc:  # handed to finish()
            error = exc
            with self._cond:
                self._error = self._error or exc
        finally:
            if state is not None:
                state.publish(error)

    def wait(self) -> None:
        """Until every blob handed over so far is committed; raises the first error."""
        with self._cond:
            while self._queue or self._busy:
                self._cond.wait()
            if self._error is not None:
                raise self._error

    def finish(self) -> None:
        """`wait`, then stop the thread."""
        try:
            self.wait()
        finally:
            self._stop()

    def abandon(self) -> None:
        """Stop taking blobs; the ones not committed yet keep their bytes in their ingests."""
        with self._cond:
            self._closed = True
            pending, self._queue = self._queue, []
            self._cond.notify_all()
        for writer, state in pending:
            with contextlib.suppress(BaseException):
                writer.close()
            if state is not None:
                state.publish(Unavailable("the pull was abandoned"))
        self._stop()

    def _stop(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join()


def _holds(mbytes: bytes, manifest: Manifest) -> list[str]:
    """What a pull's (or fetch's) lease holds: the manifest, its config and its layers."""
    return [str(Digest.from_bytes(mbytes)), str(manifest.config.digest),
            *(str(layer.digest) for layer in manifest.layers)]


def _no_report(n: int) -> None:
    """A `_Follower` report that reports nothing (the caller reports the extraction itself)."""


def _open_verified(images: ImageService, digest: Digest) -> Any:
    """The bytes of a blob this pull's writer verified: in its ingest until the publisher
    renames it into the store, in the store after (rename(2) is atomic: one of the two)."""
    try:
        return open(images.content.ingest_data(f"{INGEST_PREFIX}{digest}"), "rb")
    except FileNotFoundError:
        return open(images.content.path_of(digest), "rb")


class _Restarted(Exception):
    """The ingest being followed was dropped (the registry ignored a Range request)."""


class _Download:
    """One blob's download as its unpacker sees it (shared between two threads)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.started = False
        self.done = False
        self.restarted = False
        self.verified = False      # this download's writer verified the blob (not found present)
        self.error: BaseException | None = None
        self.published = False     # the blob is in the content store (renamed into blobs/)
        self.publish_error: BaseException | None = None

    def start(self) -> None:
        with self.cond:
            self.started = True
            self.cond.notify_all()

    def advance(self) -> None:
        with self.cond:
            self.cond.notify_all()

    def restart(self) -> None:
        with self.cond:
            self.restarted = True
            self.cond.notify_all()

    def finish(self) -> None:
        with self.cond:
            self.done = True
            self.cond.notify_all()

    def fail(self, exc: BaseException) -> None:
        with self.cond:
            if not self.done and self.error is None:
                self.error = exc
            self.cond.notify_all()

    def wait_started(self) -> bool:
        """True when a write is under way (its file can be followed); False when the blob is
        complete already. Raises the download's error."""
        with self.cond:
            while not (self.started or self.done or self.error is not None):
                self.cond.wait()
            if self.error is not None:
                raise self.error
            return not self.done

    def wait_done(self) -> None:
        with self.cond:
            while not self.done and self.error is None:
                self.cond.wait()
            if self.error is not None:
                raise self.error

    def publish(self, error: BaseException | None = None) -> None:
        """The blob is in the content store now (or, with `error`, will not be this pull)."""
        with self.cond:
            self.published = True
            self.publish_error = error
            self.cond.notify_all()

    def wait_published(self) -> None:
        """Until the blob is in the content store: what a layer's snapshot commit waits for,
        so that a committed layer always has its blob (a later pull skips both)."""
        with self.cond:
            while not self.published and self.error is None:
                self.cond.wait()
            if self.error is not None:
                raise self.error
            if self.publish_error is not None:
                raise self.publish_error


class _Follower:
    """Reads an ingest file while it is written: at its end, waits for the writer until the
    blob's `total` bytes are read. `report(n)` is called with the position now and then once
    the download is over (dockerd's "Extracting" progress)."""

    def __init__(self, f: Any, total: int, state: _Download, report: Callable[[int], None]) -> None:
        self._f = f
        self.total = total
        self.pos = 0
        self._state = state
        self._report = report
        self._last = 0.0
        self._kernel_copy = True

    def _advanced(self, n: int) -> None:
        self.pos += n
        now = time.monotonic()
        if self._state.done and (now - self._last >= PROGRESS_INTERVAL or self.pos == self.total):
            self._last = now
            self._report(self.pos)

    def read(self, n: int = -1, /) -> bytes:
        n = BLOCK if n is None or n < 0 else n
        while self.pos < self.total:
            data = self._f.read(min(n, self.total - self.pos))
            if data:
                self._advanced(len(data))
                return bytes(data)
            self._wait()
        return b""

    def copy_into(self, fd: int, n: int) -> int:
        """Up to `n` of the next bytes into the file `fd` (at its position), file to file in
        the kernel (copy_file_range(2); the layer applier's zero-copy path for plain layers),
        waiting for the writer as `read` does. Falls back to `read` and write(2) where the
        kernel refuses (another file system: EXDEV; EINVAL, ENOSYS, EOPNOTSUPP)."""
        n = min(n, self.total - self.pos)
        if n <= 0:
            return 0
        while True:
            if not self._kernel_copy:
                data = self.read(min(n, BLOCK))
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                return len(data)
            try:
                done = os.copy_file_range(self._f.fileno(), fd, n, self.pos)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                    raise
                self._kernel_copy = False
                continue
            if done:
                self._f.seek(self.pos + done)  # `read` goes on from here
                self._advanced(done)
                return done
            self._wait()

    def _wait(self) -> None:
        """At the end of what is written so far: wait for more (raising if it never comes)."""
        with self._state.cond:
            if self._state.restarted:
                raise _Restarted()
            if self._state.error is not None:
                raise Unavailable(f"download failed: {self._state.error}")
            if self._state.done:
                # Complete and flushed, yet shorter than its descriptor: cannot be.
                self._f.seek(self.pos)
                if not self._f.read(1):
                    raise Unavailable(f"the blob ended at {self.pos} of {self.total} bytes")
                self._f.seek(self.pos)
                return
            self._state.cond.wait(0.2)


def _index_descriptors(body: bytes, what: str) -> list[Descriptor]:
    """The `manifests` of an OCI index document (a referrers answer)."""
    try:
        doc = json.loads(body)
        return [Descriptor.from_json(d) for d in doc["manifests"] or []]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InvalidArgument(f"{what}: not an OCI index: {exc}") from exc


def _range_start(value: str) -> int:
    """The first byte of `Content-Range: bytes <start>-<end>/<total>`; -1 if unreadable."""
    unit, _, rest = value.partition(" ")
    if unit != "bytes":
        return -1
    start = rest.partition("-")[0]
    return int(start) if start.isdigit() else -1


__all__ = ["ACCEPT", "Progress", "PullResult", "Puller", "parse_platform", "short"]
