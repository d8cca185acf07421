"""Repository search: Docker's registry v1 search answer over names, descriptions and tags.

`GET /v1/search?q=TERM&n=25&page=1` answers as Docker Hub's v1 search did (the shape the docker
CLI and palletd's /images/search read, moby registry/types.go SearchResults):

    {"query": q, "num_results": N, "num_pages": P, "page": p, "page_size": n,
     "results": [{"name", "description", "star_count": 0, "is_official": false,
                  "is_automated": false}]}

Every whitespace-separated term must match a repository (name, tag or description); better
matches rank first: the whole name, then its last component, then a prefix, then a substring of
the name, then a tag, then the description. An empty query lists every repository. The
description is the `org.opencontainers.image.description` label of the image config (or that
annotation of the manifest) of the repository's `latest` tag, else of its most recently set tag.
"""

from __future__ import annotations

import json
import math
import platform
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pallet.errors import PalletError
from pallet.oci.digest import Digest
from pallet.registry.server import manifests as mf
from pallet.registry.server.errors import RegistryError
from pallet.registry.server.storage import Storage

DESCRIPTION_LABEL = "org.opencontainers.image.description"
MAX_PAGE_SIZE = 100  # Docker Hub's limit for n
MAX_CONFIG_SIZE = 8 << 20
_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


@dataclass(frozen=True)
class RepoInfo:
    name: str
    description: str
    tags: tuple[str, ...]


def score(terms: list[str], repo: RepoInfo) -> int:
    """How well `repo` matches every one of `terms` (lower case); 0 when some term misses."""
    total = 0
    name = repo.name.lower()
    last = name.rsplit("/", 1)[-1]
    description = repo.description.lower()
    tags = [t.lower() for t in repo.tags]
    for term in terms:
        if term == name:
            s = 100
        elif term == last:
            s = 80
        elif name.startswith(term) or last.startswith(term):
            s = 60
        elif term in name:
            s = 40
        elif term in tags:
            s = 20
        elif any(term in t for t in tags):
            s = 10
        elif term in description:
            s = 5
        else:
            return 0
        total += s
    return total


def rank(query: str, repos: Iterable[RepoInfo]) -> list[RepoInfo]:
    terms = query.lower().split()
    if not terms:
        return sorted(repos, key=lambda r: r.name)
    scored = [(score(terms, r), r) for r in repos]
    return [r for s, r in sorted(scored, key=lambda sr: (-sr[0], sr[1].name)) if s > 0]


def parse_paging(n: str | None, page: str | None) -> tuple[int, int]:
    def number(what: str, value: str | None, default: int) -> int:
        if value is None or value == "":
            return default
        if not value.isdigit() or int(value) < 1:
            raise RegistryError("UNSUPPORTED", f"{what}: expected a positive integer, got {value[:50]!r}",
                                status=400)
        return int(value)

    return min(number("n", n, 25), MAX_PAGE_SIZE), number("page", page, 1)


def results_page(query: str, ranked: list[RepoInfo], n: int, page: int) -> dict[str, Any]:
    chunk = ranked[(page - 1) * n: page * n]
    return {
        "query": query,
        "num_results": len(ranked),
        "num_pages": math.ceil(len(ranked) / n) if ranked else 0,
        "page": page,
        "page_size": n,
        "results": [{"name": r.name, "description": r.description, "star_count": 0,
                     "is_official": False, "is_automated": False} for r in chunk],
    }


class Describer:
    """Finds repositories' descriptions; remembers them by manifest digest (manifests are immutable)."""

    def __init__(self, storage: Storage, cache_limit: int = 10_000) -> None:
        self.storage = storage
        self._cache: dict[Digest, str] = {}
        self._limit = cache_limit

    def info(self, repository: str) -> RepoInfo:
        tags = self.storage.list_tags(repository)
        description = ""
        chosen = "latest" if "latest" in tags else None
        if chosen is None and tags:
            chosen = max(tags, key=lambda t: self._tag_time(repository, t))
        digest = self.storage.get_tag(repository, chosen) if chosen else None
        if digest is not None:
            description = self._description(repository, digest)
        return RepoInfo(repository, description, tuple(tags))

    def _tag_time(self, repository: str, tag: str) -> float:
        try:
            return self.storage.tag_time(repository, tag)
        except PalletError:  # deleted while we looked
            return 0.0

    def _description(self, repository: str, digest: Digest, depth: int = 0) -> str:
        if digest in self._cache:
            return self._cache[digest]
        description = ""
        record = self.storage.get_manifest(repository, digest)
        if record is not None and depth < 2:
            try:
                with self.storage.open_blob(digest) as f:
                    parsed = mf.parse(f.read(mf.MAX_MANIFEST_SIZE + 1), record.media_type)
            except (RegistryError, PalletError, OSError):  # gone or unreadable: no description
                parsed = None
            if parsed is not None:
                description = parsed.annotations.get(DESCRIPTION_LABEL, "")
                if parsed.is_index and parsed.manifests:
                    child = next((m for m in parsed.manifests if (m.platform or {}).get("os") == "linux"
                                  and (m.platform or {}).get("architecture") == _ARCH), parsed.manifests[0])
                    description = self._description(repository, child.digest, depth + 1) or description
                elif parsed.blobs:
                    description = self._config_label(parsed.blobs[0].digest) or description
        if len(self._cache) >= self._limit:
            self._cache.clear()
        self._cache[digest] = description
        return description

    def _config_label(self, digest: Digest) -> str:
        size = self.storage.stat_blob(digest)
        if size is None or size > MAX_CONFIG_SIZE:
            return ""
        try:
            with self.storage.open_blob(digest) as f:
                config = json.loads(f.read())
        except (OSError, ValueError):
            return ""
        labels = ((config.get("config") or {}).get("Labels") or {}) if isinstance(config, dict) else {}
        value = labels.get(DESCRIPTION_LABEL, "") if isinstance(labels, dict) else ""
        return value if isinstance(value, str) else ""
