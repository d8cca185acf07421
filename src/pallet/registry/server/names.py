"""Repository names, tags and list pagination as the distribution spec defines them.

Names: spec.md "Pulling manifests", the regular expression below, at most 255 characters
(the limit many clients impose on host + name). The expression admits no `.`/`..` component, no
empty component and no leading `_`, so a validated name is safe to use as a relative path and
never collides with the store's own `_manifests`/`_layers` directories.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import quote

from pallet.registry.server.errors import RegistryError

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(f"{_COMPONENT}(?:/{_COMPONENT})*")
TAG_RE = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
MAX_NAME_LENGTH = 255


def check_name(name: str) -> str:
    """Return `name` if it is a valid repository name; RegistryError NAME_INVALID otherwise."""
    if len(name) > MAX_NAME_LENGTH or not NAME_RE.fullmatch(name):
        raise RegistryError("NAME_INVALID", f"invalid repository name {name[:300]!r}",
                            {"name": name[:300]})
    return name


def is_tag(value: str) -> bool:
    return TAG_RE.fullmatch(value) is not None


def check_tag(tag: str) -> str:
    if not is_tag(tag):
        raise RegistryError("MANIFEST_INVALID", f"invalid tag {tag[:200]!r}", {"tag": tag[:200]})
    return tag


def parse_n(value: str | None, default: int | None, maximum: int) -> int | None:
    """The `n` query parameter: a non-negative integer, clamped to `maximum` (the spec lets a
    registry answer fewer when it sends a Link header, which `paginate` does)."""
    if value is None or value == "":
        return default
    if not value.isdigit():
        raise RegistryError("UNSUPPORTED", f"n: expected a non-negative integer, got {value[:50]!r}",
                            status=400)
    return min(int(value), maximum)


def paginate(items: Sequence[str], n: int | None, last: str | None) -> tuple[list[str], bool]:
    """The page of sorted `items` after `last` (exclusive), at most `n` long; and whether more
    follow. Items must be sorted ASCIIbetically (Go's sort.Strings order, spec "Listing Tags")."""
    start = 0
    if last:
        import bisect

        start = bisect.bisect_right(items, last)
    if n is None:
        return list(items[start:]), False
    page = list(items[start:start + n])
    return page, n > 0 and start + n < len(items)


def link_header(path: str, n: int, last: str) -> str:
    """RFC 5988 Link to the next page, as distribution writes it: `<path?last=..&n=..>; rel="next"`."""
    return f'<{path}?last={quote(last, safe="")}&n={n}>; rel="next"'
