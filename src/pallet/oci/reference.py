"""Image references in Docker's grammar, normalized the way the docker CLI does.

`busybox` -> `docker.io/library/busybox:latest`; `localhost:5000/a/b:t` stays as is;
`name:tag@sha256:...` keeps both. The grammar and normalization rules are those of
github.com/distribution/reference (regexp.go, normalize.go, reference.go):

    reference  := name [ ":" tag ] [ "@" digest ]
    name       := [domain "/"] remote-name        (at most 255 characters in all)
    domain     := host [":" port]                 host: DNS-like labels or "[" ipv6 "]"
    remote-name:= path-component ("/" path-component)*
    path-component := [a-z0-9]+ (separator [a-z0-9]+)*    separator: "." | "_" | "__" | "-"+
    tag        := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}

The first component is a domain only if it contains "." or ":", is "localhost", or has an upper
case letter; otherwise the name is on docker.io, and a one-component docker.io name gets
"library/". `index.docker.io` is an old spelling of docker.io. A bare 64-hex string is refused
as a name (it looks like an image id).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pallet.errors import InvalidArgument
from pallet.oci.digest import Digest

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = f"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_REMOTE_NAME = f"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = f"{_DOMAIN_COMPONENT}(?:\\.{_DOMAIN_COMPONENT})*"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN = f"(?:{_DOMAIN_NAME}|{_IPV6})(?::[0-9]+)?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_NAME = f"(?:{_DOMAIN}/)?{_REMOTE_NAME}"

_REFERENCE_RE = re.compile(f"({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?")
_ANCHORED_NAME_RE = re.compile(f"(?:({_DOMAIN})/)?({_REMOTE_NAME})")
_TAG_RE = re.compile(_TAG)
_IDENTIFIER_RE = re.compile(r"[a-f0-9]{64}")


@dataclass(frozen=True)
class Reference:
    """A parsed reference: `domain` ("docker.io"), `path` ("library/busybox"), tag, digest."""

    domain: str
    path: str
    tag: str | None = None
    digest: Digest | None = None

    @property
    def name(self) -> str:
        """The repository in full: `docker.io/library/busybox`."""
        return f"{self.domain}/{self.path}"

    def string(self) -> str:
        """The full form: `docker.io/library/busybox:latest`."""
        return self.name + self._suffix()

    def familiar_name(self) -> str:
        """The repository as users type it: `busybox`, `user/app`, `localhost:5000/app`."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        rest = self.path.removeprefix(OFFICIAL_REPO_PREFIX)
        return self.path if "/" in rest else rest

    def familiar(self) -> str:
        """The short form: `busybox:latest`."""
        return self.familiar_name() + self._suffix()

    def with_tag(self, tag: str) -> Reference:
        if not _TAG_RE.fullmatch(tag):
            raise InvalidArgument(f"invalid tag format {tag[:150]!r}")
        return Reference(self.domain, self.path, tag, self.digest)

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.domain, self.path, self.tag, Digest(digest))

    def name_only(self) -> Reference:
        return Reference(self.domain, self.path)

    def _suffix(self) -> str:
        s = f":{self.tag}" if self.tag else ""
        return s + (f"@{self.digest}" if self.digest else "")

    def __str__(self) -> str:
        return self.string()


def _split_docker_domain(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if not sep or ("." not in first and ":" not in first and first != "localhost"
                   and first.lower() == first):
        domain, remainder = DEFAULT_DOMAIN, name
    else:
        domain, remainder = first, rest
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_REPO_PREFIX + remainder
    return domain, remainder


def parse(s: str) -> Reference:
    """Parse a reference as written, without normalization (the domain must be present)."""
    if not isinstance(s, str):
        raise InvalidArgument(f"invalid reference format: expected a string, got {type(s).__name__}")
    m = _REFERENCE_RE.fullmatch(s)
    if m is None:
        if s == "":
            raise InvalidArgument("invalid reference format: repository name must have at least "
                                  "one component")
        if _REFERENCE_RE.fullmatch(s.lower()):
            raise InvalidArgument(f"invalid reference format: repository name ({s[:150]}) must be lowercase")
        raise InvalidArgument(f"invalid reference format: {s[:150]!r}")
    name, tag, digest = m.group(1), m.group(2), m.group(3)
    if len(name) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidArgument(f"invalid reference format: repository name must not be more than "
                              f"{NAME_TOTAL_LENGTH_MAX} characters")
    nm = _ANCHORED_NAME_RE.fullmatch(name)
    if nm is None or nm.group(1) is None:
        raise InvalidArgument(f"invalid reference format: {s[:150]!r} has no registry domain")
    try:
        dgst = Digest(digest) if digest else None
    except InvalidArgument as exc:
        raise InvalidArgument(f"invalid reference format: {exc}") from exc
    return Reference(domain=nm.group(1), path=nm.group(2), tag=tag, digest=dgst)


def parse_normalized(s: str, *, default_tag: bool = True) -> Reference:
    """Parse what a user typed into a full reference, e.g. `busybox` -> docker.io/library/busybox:latest.

    With `default_tag` (the default), a reference with neither tag nor digest gets `:latest`,
    as `docker pull` and `docker run` do; a digest alone gets no tag. Raises InvalidArgument.
    """
    if not isinstance(s, str):
        raise InvalidArgument(f"invalid reference format: expected a string, got {type(s).__name__}")
    if _IDENTIFIER_RE.fullmatch(s):
        raise InvalidArgument(f"invalid repository name ({s}), cannot specify 64-byte hexadecimal strings")
    domain, remainder = _split_docker_domain(s)
    remote_name = remainder.partition(":")[0]
    if remote_name.lower() != remote_name:
        raise InvalidArgument(f"invalid reference format: repository name ({remote_name[:150]}) "
                              f"must be lowercase")
    ref = parse(f"{domain}/{remainder}")
    if default_tag and ref.tag is None and ref.digest is None:
        ref = Reference(ref.domain, ref.path, DEFAULT_TAG)
    return ref


def normalize(s: str) -> str:
    """The canonical string of a user-typed reference: `busybox` -> docker.io/library/busybox:latest."""
    return parse_normalized(s).string()


def is_tag(s: str) -> bool:
    return bool(_TAG_RE.fullmatch(s))
