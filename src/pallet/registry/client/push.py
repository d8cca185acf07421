"""Push: an image of the store to a registry, as the manifest it has.

An image is pushed as the very manifest it is stored with (a pulled image keeps its registry
digest; a built, committed, imported or loaded one has the manifest Pallet wrote for it), so
`docker push` then `docker pull` by digest gives back the same bytes. Layers go as stored.

Per blob (config and layers; distribution spec "Pushing blobs", "Mounting a blob from another
repository"):
1. `HEAD /v2/<name>/blobs/<digest>`: 200 means the registry has it ("Layer already exists").
2. A cross-repository mount when an image of the same registry in another repository has the
   blob: `POST /v2/<name>/blobs/uploads/?mount=<digest>&from=<other>`; 201 is done ("Mounted
   from <other>"), 202 means the registry declined and the answer is an upload session.
3. Otherwise `POST /v2/<name>/blobs/uploads/` opens a session and the blob is sent either in one
   `PUT <location>?digest=<digest>` (monolithic, streamed from the blob file) or, when a
   `chunk_size` is set and the blob is larger, as `PATCH` chunks with `Content-Range` and a
   closing empty `PUT ?digest=`. The registry verifies the digest.
Then `PUT /v2/<name>/manifests/<tag>` with the manifest's media type as Content-Type.

Progress uses dockerd's words (distribution/push_v2.go): Preparing, Waiting, Pushing, Pushed,
Layer already exists, Mounted from ..., then `<tag>: digest: <digest> size: <n>` and an aux
message {"Tag", "Digest", "Size"}.
"""

from __future__ import annotations

import threading
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO

from pallet.errors import InvalidArgument, NotFound
from pallet.image.service import Image, ImageService
from pallet.oci import mediatypes as mt
from pallet.oci.descriptor import Descriptor
from pallet.oci.manifest import parse_manifest
from pallet.oci.reference import Reference, parse_normalized
from pallet.registry.client.progress import Progress, ProgressFn
from pallet.registry.client.pull import short
from pallet.registry.client.transport import BLOCK, Session, discard

MAX_MOUNT_TRIES = 3


@dataclass(frozen=True)
class PushResult:
    tag: str
    digest: str
    size: int
    mounted: tuple[str, ...] = ()     # blob digests mounted from another repository
    existed: tuple[str, ...] = ()     # blob digests the registry had already
    uploaded: tuple[str, ...] = ()    # blob digests sent


class _Counting:
    """A file reader that reports how far it got (the Pushing progress)."""

    def __init__(self, f: BinaryIO, report: Callable[[int], None]) -> None:
        self._f = f
        self._report = report
        self.done = 0

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self.done += len(data)
        self._report(self.done)
        return data

    def close(self) -> None:
        self._f.close()


class Pusher:
    """Pushes images of `images` through one registry session (see the module docstring)."""

    def __init__(self, images: ImageService, session: Session, *, progress: ProgressFn | None = None,
                 chunk_size: int = 0, max_concurrent: int = 5) -> None:
        self.images = images
        self.session = session
        self.progress = progress or (lambda p: None)
        self.chunk_size = chunk_size
        self.max_concurrent = max(1, max_concurrent)
        self._emit_lock = threading.Lock()
        self._sources: dict[str, list[str]] | None = None

    def _emit(self, status: str, id: str | None = None, current: int | None = None,
              total: int | None = None) -> None:
        with self._emit_lock:
            self.progress(Progress(status, id, current, total))

    def local_tags(self, ref: Reference) -> list[str]:
        """The tags the store has for the repository of `ref` (`push --all-tags`)."""
        tags = []
        for n in self.images.meta.names():
            r = parse_normalized(n.name, default_tag=False)
            if r.name == ref.name and r.tag is not None and r.digest is None:
                tags.append(r.tag)
        return sorted(tags)

    def _mount_sources(self, ref: Reference) -> dict[str, list[str]]:
        """blob digest -> other repositories of the same registry whose images have it."""
        if self._sources is None:
            sources: dict[str, list[str]] = {}
            seen: set[tuple[str, str]] = set()
            for n in self.images.meta.names():
                r = parse_normalized(n.name, default_tag=False)
                if r.domain != ref.domain or r.path == ref.path or (r.path, n.image_id) in seen:
                    continue
                seen.add((r.path, n.image_id))
                try:
                    img = self.images.get(str(n.image_id))
                except (NotFound, InvalidArgument):
                    continue
                for d in (img.manifest.config, *img.manifest.layers):
                    repos = sources.setdefault(str(d.digest), [])
                    if r.path not in repos:
                        repos.append(r.path)
            self._sources = sources
        return self._sources

    def push(self, ref: Reference) -> PushResult:
        """Push the local image named `ref` (with a tag) to `ref`'s repository."""
        if ref.tag is None or ref.digest is not None:
            raise InvalidArgument(f"push needs a tag: {ref.familiar()}")
        try:
            img = self.images.get(ref.string())
        except NotFound:
            raise NotFound(f"An image does not exist locally with the tag: {ref.familiar_name()}") from None
        return self._push_image(ref, img)

    def _push_image(self, ref: Reference, img: Image) -> PushResult:
        content = self.images.content
        mbytes = content.read(img.record.manifest_digest)
        manifest = parse_manifest(mbytes, img.record.media_type)
        scope = f"repository:{ref.path}:pull,push"
        self._emit(f"The push refers to repository [{ref.name}]")
        # dockerd names a pushed layer by its diff_id, top layer first.
        ids = {str(layer.digest): short(str(d)) for layer, d in
               zip(manifest.layers, img.config.diff_ids, strict=False)}
        layers = list(dict.fromkeys(reversed(manifest.layers)))
        for layer in layers:
            self._emit("Preparing", ids.get(str(layer.digest), short(layer.digest)))
        outcome: dict[str, str] = {}

        def one(desc: Descriptor) -> None:
            outcome[str(desc.digest)] = self._push_blob(ref, desc, ids.get(str(desc.digest)), scope)

        with ThreadPoolExecutor(self.max_concurrent, thread_name_prefix="push") as pool:
            for f in [pool.submit(one, layer) for layer in layers]:
                f.result()
        one(manifest.config)
        resp = self.session.request("PUT", f"/v2/{ref.path}/manifests/{ref.tag}", scope=scope,
                                    headers={"Content-Type": manifest.media_type,
                                             "Content-Length": str(len(mbytes))},
                                    body=mbytes, ok=(201, 200), what=f"manifest {ref.familiar()}")
        discard(resp)
        digest = str(img.record.manifest_digest)
        # As dockerd: a pushed image lists the registry's digest in its RepoDigests.
        self.images.add_pulled_image(mbytes, manifest.media_type, [f"{ref.name}@{digest}"])
        self._emit(f"{ref.tag}: digest: {digest} size: {len(mbytes)}")
        by = {k: tuple(d for d, o in outcome.items() if o == k) for k in ("mounted", "existed", "uploaded")}
        return PushResult(str(ref.tag), digest, len(mbytes), by["mounted"], by["existed"], by["uploaded"])

    def _push_blob(self, ref: Reference, desc: Descriptor, pid: str | None, scope: str) -> str:
        """Make the registry have one blob; returns "existed", "mounted" or "uploaded"."""
        repo = ref.path
        config = mt.is_config(desc.media_type)
        shown = pid or short(desc.digest)
        resp = self.session.request("HEAD", f"/v2/{repo}/blobs/{desc.digest}", scope=scope,
                                    ok=(200, 404), what=f"blob {desc.digest}")
        discard(resp)
        if resp.status == 200:
            if not config:
                self._emit("Layer already exists", shown)
            return "existed"
        location: str | None = None
        for source in self._mount_sources(ref).get(str(desc.digest), [])[:MAX_MOUNT_TRIES]:
            q = urllib.parse.urlencode({"mount": str(desc.digest), "from": source})
            resp = self.session.request("POST", f"/v2/{repo}/blobs/uploads/?{q}",
                                        scope=f"{scope} repository:{source}:pull",
                                        headers={"Content-Length": "0"}, body=b"", ok=(201, 202),
                                        what=f"mount of {desc.digest} from {source}")
            discard(resp)
            if resp.status == 201:
                if not config:
                    self._emit(f"Mounted from {source}", shown)
                return "mounted"
            location = resp.headers.get("Location")
            break
        if location is None:
            resp = self.session.request("POST", f"/v2/{repo}/blobs/uploads/", scope=scope,
                                        headers={"Content-Length": "0"}, body=b"", ok=(202,),
                                        what=f"upload of {desc.digest}")
            discard(resp)
            location = resp.headers.get("Location")
        if not location:
            raise InvalidArgument(f"registry {ref.domain}: an upload session without a Location")
        self._upload(ref, desc, location, shown, scope, config)
        if not config:
            self._emit("Pushed", shown)
        return "uploaded"

    def _report(self, shown: str, total: int, config: bool) -> Callable[[int], None]:
        state = {"last": -1}

        def report(done: int) -> None:
            # Every MiB or at the end: enough for a bar, not a line per 8 KiB read.
            if not config and done != state["last"] and (done - state["last"] >= BLOCK or done == total):
                state["last"] = done
                self._emit("Pushing", shown, done, total)
        return report

    def _upload(self, ref: Reference, desc: Descriptor, location: str, shown: str, scope: str,
                config: bool) -> None:
        path = self.images.content.path_of(desc.digest)
        report = self._report(shown, desc.size, config)
        url = urllib.parse.urljoin(self.session.url("/"), location)
        if self.chunk_size <= 0 or desc.size <= self.chunk_size:
            resp = self.session.request(
                "PUT", _with_digest(url, str(desc.digest)), scope=scope,
                headers={"Content-Type": "application/octet-stream", "Content-Length": str(desc.size)},
                body=lambda: _Counting(open(path, "rb"), report),  # type: ignore[arg-type,return-value] # noqa: SIM115
                ok=(201, 204), what=f"upload of {desc.digest}")
            discard(resp)
            return
        offset = 0
        with open(path, "rb") as f:
            while offset < desc.size:
                data = f.read(self.chunk_size)
                if not data:
                    raise InvalidArgument(f"blob {desc.digest} is shorter than its descriptor says")
                end = offset + len(data) - 1
                resp = self.session.request(
                    "PATCH", url, scope=scope,
                    headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(data)),
                             "Content-Range": f"{offset}-{end}"},
                    body=data, ok=(202,), what=f"upload of {desc.digest}")
                discard(resp)
                offset = end + 1
                report(offset)
                url = urllib.parse.urljoin(url, resp.headers.get("Location") or url)
        resp = self.session.request("PUT", _with_digest(url, str(desc.digest)), scope=scope,
                                    headers={"Content-Length": "0"}, body=b"", ok=(201, 204),
                                    what=f"upload of {desc.digest}")
        discard(resp)


def _with_digest(url: str, digest: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{urllib.parse.urlencode({'digest': digest})}"


__all__ = ["PushResult", "Pusher"]
