"""Search: `GET /v1/search?q=TERM&n=LIMIT` on a registry's index, Docker Hub's v1 search shape.

A term may name its registry (`localhost:5000/busy` searches `busy` on localhost:5000); without
one it goes to Docker Hub's index (index.docker.io), as dockerd's registry.Service.Search does.
The answer is `{"query", "num_results", "results": [{"name", "description", "star_count",
"is_official", "is_automated"}]}`; the daemon's filters (`is-official`, `is-automated`,
`stars=N`) are applied here, after the registry answered, as dockerd does.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

from pallet.errors import InvalidArgument
from pallet.oci.reference import DEFAULT_DOMAIN
from pallet.registry.client.auth import AuthConfig
from pallet.registry.client.transport import Session, read_limited

INDEX_HOST = "index.docker.io"
DEFAULT_LIMIT = 25
MAX_LIMIT = 100
MAX_ANSWER = 8 << 20
FILTERS = ("is-automated", "is-official", "stars")


def split_term(term: str) -> tuple[str, str]:
    """(registry domain, remote term): `localhost:5000/busy` -> ("localhost:5000", "busy")."""
    first, sep, rest = term.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    return DEFAULT_DOMAIN, term


def _bool_filter(values: Sequence[str], name: str) -> bool | None:
    if not values:
        return None
    v = values[-1].lower()
    if v in ("true", "1"):
        return True
    if v in ("false", "0"):
        return False
    raise InvalidArgument(f"invalid filter '{name}={values[-1]}'")


def filter_results(results: list[dict[str, Any]],
                   filters: Mapping[str, Sequence[str]]) -> list[dict[str, Any]]:
    """Apply docker's search filters (moby registry/search.go) to the registry's results."""
    unknown = sorted(set(filters) - set(FILTERS))
    if unknown:
        raise InvalidArgument(f"invalid filter '{unknown[0]}'")
    official = _bool_filter(filters.get("is-official", []), "is-official")
    automated = _bool_filter(filters.get("is-automated", []), "is-automated")
    stars = 0
    for v in filters.get("stars", []):
        try:
            stars = max(stars, int(v))
        except ValueError:
            raise InvalidArgument(f"invalid filter 'stars={v}'") from None
    out = []
    for r in results:
        if official is not None and bool(r.get("is_official")) != official:
            continue
        if automated is not None and bool(r.get("is_automated")) != automated:
            continue
        if int(r.get("star_count") or 0) < stars:
            continue
        out.append(r)
    return out


def _result(obj: Any) -> dict[str, Any] | None:
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return None
    return {"description": str(obj.get("description") or ""),
            "is_official": bool(obj.get("is_official")),
            "is_automated": bool(obj.get("is_automated")),
            "name": obj["name"],
            "star_count": int(obj.get("star_count") or 0)}


def search(term: str, *, limit: int = DEFAULT_LIMIT, filters: Mapping[str, Sequence[str]] | None = None,
           auth: AuthConfig | None = None, insecure: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Docker's ImageSearchResponseItem list for `term` (see the module docstring)."""
    if not term.strip():
        raise InvalidArgument("search needs a term")
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidArgument(f"limit {limit} is outside the range [1, {MAX_LIMIT}]")
    filters = filters or {}
    filter_results([], filters)  # refuse bad filters before asking anyone
    domain, remote = split_term(term.strip())
    host = INDEX_HOST if domain == DEFAULT_DOMAIN else domain
    session = Session(domain, auth, insecure=insecure, host=host)
    try:
        q = urllib.parse.urlencode({"q": remote, "n": limit})
        resp = session.request("GET", f"/v1/search?{q}", what=f"search on {host}")
        body = read_limited(resp, MAX_ANSWER, f"search on {host}")
    finally:
        session.close()
    try:
        answer = json.loads(body)
    except ValueError as exc:
        raise InvalidArgument(f"search on {host}: the answer is not JSON") from exc
    raw = answer.get("results") if isinstance(answer, dict) else None
    results = [r for r in map(_result, raw if isinstance(raw, list) else []) if r is not None]
    return filter_results(results, filters)[:limit]


__all__ = ["FILTERS", "filter_results", "search", "split_term"]
