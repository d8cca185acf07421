"""Registry authentication and authorization: htpasswd (bcrypt) users, access rules, and bearer
tokens signed by the server.

Two modes, as in distribution (docs/content/about/configuration.md "auth"):
- basic: every request may carry `Authorization: Basic`; a request needing more than anonymous
  access gets `401` with `WWW-Authenticate: Basic realm="..."`.
- token: the Docker token flow (distribution docs/spec/auth/token.md). A request without a
  valid bearer token gets `401` with `WWW-Authenticate: Bearer realm="<token URL>",service="...",
  scope="repository:<name>:pull,push"`; the client fetches `GET /token?service=..&scope=..`
  (basic-authenticated, or anonymously) and gets `{"token", "access_token", "expires_in",
  "issued_at"}`. The token is a JWT signed with HMAC-SHA256 (RFC 7519, RFC 7518 section 3.2)
  with the key in `secret_file`; its `access` claim is distribution's
  `[{"type": "repository", "name": ..., "actions": [...]}]`, the requested actions narrowed to
  what the access rules grant (a token server narrows, it does not refuse).

`/v2/` needs an authenticated caller even when anonymous pull is allowed: `docker login` checks
credentials against exactly that endpoint.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pallet.errors import InvalidArgument, PermissionDenied
from pallet.registry.server.config import ACTIONS, AccessRule, AuthConfig

ANONYMOUS = "anonymous"
CATALOG = ("registry", "catalog")


class Htpasswd:
    """Users from an htpasswd file with bcrypt hashes (`htpasswd -B`); re-read when it changes.

    bcrypt is slow on purpose (~0.1 s at cost 10) and basic-auth clients send the password with
    every request, so a successful check is remembered as a keyed hash of (entry, password) until
    the file changes. Entries in other formats (MD5, SHA1, crypt) are ignored, as distribution
    does: they are too weak to accept.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime: float | None = None
        self._users: dict[str, bytes] = {}
        self._verified: dict[str, bytes] = {}
        self._salt = secrets.token_bytes(16)
        self._lock = threading.Lock()

    def _load(self) -> None:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            mtime = None
        if mtime == self._mtime and self._mtime is not None:
            return
        users: dict[str, bytes] = {}
        if mtime is not None:
            for line in self.path.read_text().splitlines():
                user, sep, hashed = line.strip().partition(":")
                if sep and user and hashed.startswith(("$2y$", "$2b$", "$2a$")):
                    users[user] = hashed.encode()
        self._users, self._verified, self._mtime = users, {}, mtime

    def verify(self, user: str, password: str) -> bool:
        """Whether `password` is `user`'s; blocks (bcrypt): call it from a worker thread."""
        import bcrypt

        with self._lock:
            self._load()
            hashed = self._users.get(user)
        if hashed is None:
            return False
        memo = hmac.new(self._salt, hashed + b"\0" + password.encode(), hashlib.sha256).digest()
        if hmac.compare_digest(self._verified.get(user, b""), memo):
            return True
        try:
            ok = bcrypt.checkpw(password.encode(), hashed)
        except ValueError:
            return False
        if ok:
            self._verified[user] = memo
        return ok


def parse_basic(header: str | None) -> tuple[str, str] | None:
    """(user, password) from an `Authorization: Basic` header; None when absent, not Basic, or with
    an empty user name: containers/image (skopeo, podman) answers a Basic challenge with empty
    credentials when it has none, which means "anonymous", not "wrong password"."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return (user, password) if sep and user else None


def parse_bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


@dataclass(frozen=True)
class Scope:
    """One `type:name:actions` scope (distribution docs/spec/auth/scope.md)."""

    type: str
    name: str
    actions: frozenset[str]

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(sorted(self.actions))}"


def parse_scope(value: str) -> Scope:
    """Parse `repository:team/app:pull,push`; InvalidArgument when malformed. The name may hold
    a ':' (a registry host with port in a proxied name), so the actions are split off the end."""
    head, sep, actions = value.rpartition(":")
    type_, sep2, name = head.partition(":")
    if not sep or not sep2 or not type_ or not name:
        raise InvalidArgument(f"invalid scope {value[:200]!r}: expected type:name:actions")
    return Scope(type_, name, frozenset(a for a in actions.split(",") if a))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def encode_jwt(claims: dict[str, Any], key: bytes) -> str:
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signature = hmac.new(key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(signature)}"


def decode_jwt(token: str, key: bytes, *, issuer: str, audience: str, now: float | None = None,
               leeway: float = 30.0) -> dict[str, Any]:
    """Verify an HS256 JWT and its iss/aud/exp/nbf; PermissionDenied saying what is wrong."""
    try:
        header_b64, payload_b64, sig_b64 = token.split(".")
        header = json.loads(_unb64(header_b64))
        signature = _unb64(sig_b64)
    except (ValueError, UnicodeDecodeError):
        raise PermissionDenied("malformed token") from None
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        raise PermissionDenied("token algorithm must be HS256")  # never "none" (RFC 8725 §2.1)
    expected = hmac.new(key, f"{header_b64}.{payload_b64}".encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(signature, expected):
        raise PermissionDenied("token signature is invalid")
    try:
        claims = json.loads(_unb64(payload_b64))
    except (ValueError, UnicodeDecodeError):
        raise PermissionDenied("malformed token payload") from None
    if not isinstance(claims, dict):
        raise PermissionDenied("malformed token payload")
    now = time.time() if now is None else now
    if claims.get("iss") != issuer:
        raise PermissionDenied("token issuer is not this registry's")
    aud = claims.get("aud")
    if aud != audience and not (isinstance(aud, list) and audience in aud):
        raise PermissionDenied("token audience is not this registry's service")
    exp, nbf = claims.get("exp"), claims.get("nbf", 0)
    if not isinstance(exp, int | float) or now > exp + leeway:
        raise PermissionDenied("token has expired")
    if isinstance(nbf, int | float) and now + leeway < nbf:
        raise PermissionDenied("token is not valid yet")
    return claims


def load_or_make_key(path: Path) -> bytes:
    """The HMAC key in `path`; made (32 random bytes, mode 0600, atomically) if absent."""
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # loses to a concurrent maker rather than replacing its key
        except FileExistsError:
            pass
        tmp.unlink()
        key = path.read_bytes()
    if len(key) < 16:
        raise InvalidArgument(f"{path}: a token key needs at least 16 bytes")
    return key


def _rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Authorizer:
    """Decides who may do what, from the config's access rules; issues and checks tokens."""

    def __init__(self, config: AuthConfig, root: Path) -> None:
        self.config = config
        self.htpasswd = Htpasswd(config.htpasswd)
        self.key = load_or_make_key(config.secret_file or root / "token.key") \
            if config.mode == "token" else b""
        rules = list(config.access) if config.access is not None \
            else [AccessRule("*", "*", ACTIONS)]
        if config.anonymous:
            rules.append(AccessRule(ANONYMOUS, "*", config.anonymous))
        self.rules = tuple(rules)

    @property
    def mode(self) -> str:
        return self.config.mode

    def allowed(self, account: str | None, repository: str) -> frozenset[str]:
        """The actions `account` (None: anonymous) may take on `repository`."""
        granted: set[str] = set()
        for rule in self.rules:
            if account is None:
                if rule.account != ANONYMOUS:
                    continue
            elif rule.account not in ("*", account):
                continue
            if fnmatch.fnmatchcase(repository, rule.repository):
                granted |= rule.actions
        return frozenset(granted)

    def may_pull_anything(self, account: str | None) -> bool:
        """Whether `account` may pull some repository (and so may list the catalog)."""
        return any("pull" in rule.actions
                   and (rule.account == ANONYMOUS if account is None else rule.account in ("*", account))
                   for rule in self.rules)

    def authenticate(self, header: str | None) -> str | None:
        """The user named by valid Basic credentials, None when there are none; PermissionDenied
        for wrong ones. Blocks (bcrypt)."""
        creds = parse_basic(header)
        if creds is None:
            return None
        if not self.htpasswd.verify(*creds):
            raise PermissionDenied("invalid username or password")
        return creds[0]

    def issue_token(self, account: str | None, scopes: list[Scope],
                    now: float | None = None) -> dict[str, Any]:
        """Answer of the token endpoint: the requested scopes narrowed to what is allowed."""
        from pallet.registry.server.names import NAME_RE

        now = time.time() if now is None else now
        access = []
        for scope in scopes:
            if scope.type == "repository" and NAME_RE.fullmatch(scope.name):
                actions = scope.actions & self.allowed(account, scope.name)
                if "*" in scope.actions:
                    actions = self.allowed(account, scope.name)
            elif (scope.type, scope.name) == CATALOG and account is not None:
                actions = frozenset({"*"})
            else:
                actions = frozenset()
            access.append({"type": scope.type, "name": scope.name, "actions": sorted(actions)})
        claims = {"iss": self.config.issuer, "sub": account or "", "aud": self.config.service,
                  "exp": int(now) + self.config.expiration, "nbf": int(now) - 1, "iat": int(now),
                  "jti": str(uuid.uuid4()), "access": access}
        token = encode_jwt(claims, self.key)
        return {"token": token, "access_token": token, "expires_in": self.config.expiration,
                "issued_at": _rfc3339(now)}

    def check_token(self, token: str) -> dict[str, Any]:
        return decode_jwt(token, self.key, issuer=self.config.issuer, audience=self.config.service)


def token_grants(claims: dict[str, Any], type_: str, name: str) -> frozenset[str]:
    """The actions a verified token's `access` claim grants on (type, name)."""
    granted: set[str] = set()
    for entry in claims.get("access") or []:
        if isinstance(entry, dict) and entry.get("type") == type_ and entry.get("name") == name:
            granted |= {a for a in entry.get("actions") or [] if isinstance(a, str)}
    return frozenset(granted)


def challenge(mode: str, realm: str, service: str, scope: str | None = None,
              error: str | None = None) -> str:
    """The WWW-Authenticate value for a 401 (RFC 6750 section 3 for Bearer)."""
    if mode == "basic":
        return f'Basic realm="{realm}"'
    parts = [f'realm="{realm}"', f'service="{service}"']
    if scope:
        parts.append(f'scope="{scope}"')
    if error:
        parts.append(f'error="{error}"')
    return "Bearer " + ",".join(parts)
