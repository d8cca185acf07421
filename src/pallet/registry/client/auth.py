"""Registry credentials: challenges, the Engine API's X-Registry-Auth, and docker's config.json.

- `parse_challenges` reads `WWW-Authenticate` headers (RFC 7235 section 4.1: a scheme, then
  comma-separated `key=value` or `key="quoted value"` parameters). Registries send `Basic
  realm=...` or `Bearer realm=...,service=...,scope=...` (distribution docs/spec/auth/token.md).
- `AuthConfig` is Docker's AuthConfig (api/types/registry/authconfig.go): the JSON the docker CLI
  sends base64url-encoded in `X-Registry-Auth` on /images/create and /images/{name}/push, and
  as the body of POST /auth.
- `server_key` names a registry the way docker's config.json does: Docker Hub is
  `https://index.docker.io/v1/` (registry.IndexServer), every other registry host[:port]. The
  file itself is read and written by the CLI (pallet.cli.commands.login), which imports only
  the standard library.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

from pallet.errors import InvalidArgument

INDEX_SERVER = "https://index.docker.io/v1/"
DOCKER_HUB_HOSTS = ("docker.io", "index.docker.io", "registry-1.docker.io")

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_PARAM_RE = re.compile(rf"\s*({_TOKEN})\s*=\s*(?:\"((?:[^\"\\]|\\.)*)\"|({_TOKEN}))\s*(?:,|$)")
_SCHEME_RE = re.compile(rf"\s*({_TOKEN})(?:\s+|$)")


@dataclass(frozen=True)
class Challenge:
    """One authentication challenge: `scheme` in lower case ("basic", "bearer") and its parameters."""

    scheme: str
    params: dict[str, str]

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")


def parse_challenges(header: str) -> list[Challenge]:
    """All challenges in one WWW-Authenticate value (several may be comma-joined).

    `Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="a:b:pull"`
    gives one Challenge("bearer", {...}). Unparseable text ends the parse: what came before is
    kept (a registry's odd header should not hide a good challenge).
    """
    out: list[Challenge] = []
    pos = 0
    while pos < len(header):
        m = _SCHEME_RE.match(header, pos)
        if m is None:
            break
        scheme = m.group(1).lower()
        pos = m.end()
        params: dict[str, str] = {}
        while pos < len(header):
            pm = _PARAM_RE.match(header, pos)
            if pm is None:
                break
            # A bare token followed by a space (not "=") starts the next challenge.
            key = pm.group(1).lower()
            value = pm.group(2) if pm.group(2) is not None else pm.group(3)
            params[key] = re.sub(r"\\(.)", r"\1", value)
            pos = pm.end()
        out.append(Challenge(scheme, params))
        while pos < len(header) and header[pos] in ", ":
            pos += 1
    return out


@dataclass(frozen=True)
class AuthConfig:
    """Docker's AuthConfig: username and password, or an identity token (OAuth refresh token),
    or a registry token (a bearer token used as is)."""

    username: str = ""
    password: str = ""
    server_address: str = ""
    identity_token: str = ""
    registry_token: str = ""

    @property
    def empty(self) -> bool:
        return not (self.username or self.password or self.identity_token or self.registry_token)

    def to_json(self) -> dict[str, str]:
        out = {"username": self.username, "password": self.password,
               "serveraddress": self.server_address}
        if self.identity_token:
            out["identitytoken"] = self.identity_token
        if self.registry_token:
            out["registrytoken"] = self.registry_token
        return out

    @classmethod
    def from_json(cls, obj: Any) -> AuthConfig:
        if not isinstance(obj, dict):
            raise InvalidArgument("registry auth: expected a JSON object")

        def s(key: str) -> str:
            v = obj.get(key)
            if v is None:
                return ""
            if not isinstance(v, str):
                raise InvalidArgument(f"registry auth: {key} must be a string")
            return v

        user, password = s("username"), s("password")
        if not user and s("auth"):  # the config.json form {"auth": base64(user:pass)}
            user, password = decode_basic(s("auth"))
        return cls(user, password, s("serveraddress"), s("identitytoken"), s("registrytoken"))

    def header(self) -> str:
        """The X-Registry-Auth value: base64url of the JSON (moby registry.EncodeAuthConfig)."""
        return base64.urlsafe_b64encode(json.dumps(self.to_json()).encode()).decode()


def decode_header(value: str) -> AuthConfig:
    """An X-Registry-Auth value. Empty gives anonymous; padding is optional and standard base64
    is accepted too, as moby's DecodeAuthConfig does (older clients used StdEncoding)."""
    value = value.strip()
    if not value:
        return AuthConfig()
    padded = value + "=" * (-len(value) % 4)
    try:
        raw = base64.urlsafe_b64decode(padded.replace("+", "-").replace("/", "_"))
        obj = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise InvalidArgument(f"invalid X-Registry-Auth header: {exc}") from exc
    if obj is None:
        return AuthConfig()
    return AuthConfig.from_json(obj)


def decode_basic(auth: str) -> tuple[str, str]:
    """config.json's "auth": base64("user:password")."""
    try:
        user, sep, password = base64.b64decode(auth, validate=False).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"invalid auth entry in docker config: {exc}") from exc
    if not sep:
        raise InvalidArgument("invalid auth entry in docker config: no ':' between user and password")
    return user, password


def server_key(domain: str) -> str:
    """The config.json key for a registry domain: Docker Hub's index URL, else host[:port]."""
    host = convert_to_hostname(domain)
    return INDEX_SERVER if host in DOCKER_HUB_HOSTS else host


def convert_to_hostname(address: str) -> str:
    """`https://host:5000/v1/` -> `host:5000` (docker's ConvertToHostname)."""
    s = address.strip()
    for prefix in ("http://", "https://"):
        if s.startswith(prefix):
            s = s[len(prefix):]
    return s.split("/", 1)[0]
