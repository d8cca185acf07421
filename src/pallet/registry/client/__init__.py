"""The registry client: pull, push, login and search against OCI distribution registries.

`RegistryClient` is what the daemon holds: one per image store, configured with the daemon's
insecure registries, giving each operation a fresh `Session` for the registry and credentials
of that request (the Engine API passes credentials per request, in X-Registry-Auth; palletd
never reads a user's config.json). The parts:

    auth.py       challenges, AuthConfig, X-Registry-Auth
    transport.py  one registry over HTTP(S): auth flow, redirects, errors
    progress.py   progress values and dockerd's JSON progress lines
    pull.py       manifests, platform choice, parallel resumable downloads, unpack
    push.py       blob checks, mounts, monolithic and chunked uploads, manifests
    search.py     the v1 search endpoint
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pallet.errors import NotFound
from pallet.oci.descriptor import Descriptor
from pallet.oci.reference import Reference, parse_normalized
from pallet.registry.client.auth import AuthConfig
from pallet.registry.client.progress import Progress, ProgressFn
from pallet.registry.client.pull import Puller, PullResult, parse_platform
from pallet.registry.client.push import Pusher, PushResult

# Bound after the submodule's import, so `client.search` is the function, not the module.
from pallet.registry.client.search import search
from pallet.registry.client.transport import Session

if TYPE_CHECKING:
    from pallet.image.service import ImageService


class RegistryClient:
    """Registry operations on one image store (see the module docstring)."""

    def __init__(self, images: ImageService, *, insecure: Sequence[str] = (), chunk_size: int = 0,
                 max_concurrent_downloads: int = 3, max_concurrent_uploads: int = 5) -> None:
        self.images = images
        self.insecure = tuple(insecure)
        self.chunk_size = chunk_size
        self.max_downloads = max_concurrent_downloads
        self.max_uploads = max_concurrent_uploads

    def session(self, domain: str, auth: AuthConfig | None = None) -> Session:
        return Session(domain, auth, insecure=self.insecure)

    def pull(self, image: str, *, auth: AuthConfig | None = None, platform: str | None = None,
             all_tags: bool = False, progress: ProgressFn | None = None) -> list[PullResult]:
        """`docker pull IMAGE` (or every tag of its repository with `all_tags`)."""
        ref = parse_normalized(image, default_tag=not all_tags)
        want = parse_platform(platform) if platform else None
        session = self.session(ref.domain, auth)
        try:
            puller = Puller(self.images, session, progress=progress, platform=want,
                            max_concurrent=self.max_downloads)
            if not all_tags:
                return [puller.pull(ref)]
            tags = puller.tags(ref)
            if not tags:
                raise NotFound(f"repository {ref.familiar_name()} has no tags")
            return [puller.pull(ref.name_only().with_tag(t)) for t in tags]
        finally:
            session.close()

    def push(self, image: str, *, tag: str | None = None, auth: AuthConfig | None = None,
             progress: ProgressFn | None = None) -> list[PushResult]:
        """`docker push IMAGE[:TAG]`; with no tag in either, every local tag of the repository
        (the Engine API's push with an empty `tag`, which `docker push --all-tags` sends)."""
        ref = parse_normalized(image, default_tag=False)
        if tag:
            ref = ref.name_only().with_tag(tag)
        session = self.session(ref.domain, auth)
        try:
            pusher = Pusher(self.images, session, progress=progress, chunk_size=self.chunk_size,
                            max_concurrent=self.max_uploads)
            if ref.tag is not None:
                return [pusher.push(ref)]
            tags = pusher.local_tags(ref)
            if not tags:
                raise NotFound(f"An image does not exist locally with the tag: {ref.familiar_name()}")
            return [pusher.push(ref.with_tag(t)) for t in tags]
        finally:
            session.close()

    def fetch(self, image: str, *, auth: AuthConfig | None = None,
              progress: ProgressFn | None = None) -> tuple[Descriptor, PullResult]:
        """The blobs of `image` into the content store, unpacking nothing (Puller.fetch)."""
        ref = parse_normalized(image)
        session = self.session(ref.domain, auth)
        try:
            return Puller(self.images, session, progress=progress,
                          max_concurrent=self.max_downloads).fetch(ref)
        finally:
            session.close()

    def referrers(self, image: str, *, artifact_type: str | None = None,
                  auth: AuthConfig | None = None) -> list[Descriptor]:
        """The referrers of `image` (`repo@digest`, or a tag, resolved to its digest first):
        every page of the registry's referrers API, or its referrers tag (Puller.referrers)."""
        ref = parse_normalized(image, default_tag=False)
        session = self.session(ref.domain, auth)
        try:
            puller = Puller(self.images, session)
            if ref.digest is not None:
                subject = str(ref.digest)
            else:
                _, _, top = puller.fetch_manifest(ref, ref.tag or "latest")
                subject = str(top)
            return puller.referrers(ref, subject, artifact_type)
        finally:
            session.close()

    def login(self, auth: AuthConfig) -> dict[str, Any]:
        """POST /auth: check `auth` against its registry; Docker's AuthResponse on success."""
        return login(auth, insecure=self.insecure)


def login(auth: AuthConfig, *, insecure: Sequence[str] = ()) -> dict[str, Any]:
    """Check credentials against `auth.server_address` (Docker Hub when empty)."""
    from pallet.registry.client.auth import convert_to_hostname

    domain = convert_to_hostname(auth.server_address) if auth.server_address else "docker.io"
    if domain in ("index.docker.io", "registry-1.docker.io"):
        domain = "docker.io"
    session = Session(domain, auth, insecure=insecure)
    try:
        session.login()
    finally:
        session.close()
    return {"Status": "Login Succeeded", "IdentityToken": ""}


__all__ = ["AuthConfig", "Progress", "PullResult", "PushResult", "Reference", "RegistryClient",
           "login", "search"]
