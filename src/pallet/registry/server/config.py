"""The registry server's configuration file: YAML (or JSON, which YAML reads too), version 1.

    version: 1
    addr: 127.0.0.1:5000              # --addr wins
    root: /var/lib/pallet-registry    # --root wins
    tls: {certificate: cert.pem, key: key.pem}     # --tls-cert/--tls-key win; absent: plain HTTP
    storage:
      delete: true                    # allow DELETE of manifests, tags and blobs (default true)
      upload_ttl: 86400               # seconds before an unfinished upload is removed
    auth:                             # absent: no authentication, everyone may do everything
      mode: basic                     # basic | token
      htpasswd: /etc/pallet-registry/htpasswd   # bcrypt entries (htpasswd -B)
      realm: Pallet Registry          # basic: the realm; token: URL of the token endpoint
                                      #   (default: this server's /token)
      service: pallet-registry        # token: the service name (the token's audience)
      issuer: pallet-registry         # token: the token's issuer
      secret_file: token.key          # token: HMAC key; default <root>/token.key, made on first use
      expiration: 300                 # token: lifetime in seconds
      anonymous: [pull]               # what unauthenticated callers may do, on every repository
      access:                         # absent: every authenticated user may do everything
        - {account: alice, repository: "*", actions: [pull, push, delete]}
        - {account: "*", repository: "library/*", actions: [pull]}   # "*": any authenticated user
        - {account: anonymous, repository: "public/*", actions: [pull]}
    notifications:                    # webhooks on push and delete
      - http://127.0.0.1:9000/events  # a URL, or:
      - {url: "http://hooks.example/x", headers: {X-Token: secret}, timeout: 5, retries: 5,
         backoff: 1}

Repository patterns are shell globs (`*` also crosses `/`). Actions: pull, push, delete, or "*".
Unknown keys are refused, so a typo does not silently weaken security.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pallet.errors import InvalidArgument

CONFIG_VERSION = 1
ACTIONS = frozenset({"pull", "push", "delete"})


@dataclass(frozen=True)
class AccessRule:
    account: str  # a user name, "*" (any authenticated user) or "anonymous"
    repository: str  # glob
    actions: frozenset[str]


@dataclass(frozen=True)
class AuthConfig:
    mode: str  # "basic" | "token"
    htpasswd: Path
    realm: str | None = None
    service: str = "pallet-registry"
    issuer: str = "pallet-registry"
    secret_file: Path | None = None
    expiration: int = 300
    anonymous: frozenset[str] = frozenset()
    access: tuple[AccessRule, ...] | None = None


@dataclass(frozen=True)
class Endpoint:
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float = 5.0
    retries: int = 5
    backoff: float = 1.0


@dataclass(frozen=True)
class RegistryConfig:
    addr: str = "127.0.0.1:5000"
    root: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    delete_enabled: bool = True
    upload_ttl: float = 86400.0
    auth: AuthConfig | None = None
    notifications: tuple[Endpoint, ...] = ()


def _keys(where: str, obj: Any, allowed: set[str]) -> dict[str, Any]:
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise InvalidArgument(f"config {where}: expected a mapping")
    unknown = set(obj) - allowed
    if unknown:
        raise InvalidArgument(f"config {where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    return obj


def _actions(where: str, value: Any) -> frozenset[str]:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"config {where}: expected a list of actions")
    if "*" in value:
        return ACTIONS
    bad = set(value) - ACTIONS
    if bad:
        raise InvalidArgument(f"config {where}: unknown action(s) {', '.join(sorted(bad))} "
                              f"(known: pull, push, delete, *)")
    return frozenset(value)


def _path(base: Path, value: Any, where: str) -> Path:
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"config {where}: expected a path")
    path = Path(value)
    return path if path.is_absolute() else base / path


def _number(where: str, value: Any, default: float) -> float:
    if value is None:
        return default
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        raise InvalidArgument(f"config {where}: expected a non-negative number")
    return float(value)


def parse_config(obj: Any, base: Path) -> RegistryConfig:
    """Build a RegistryConfig from parsed YAML/JSON; relative paths are taken from `base`."""
    top = _keys("", obj, {"version", "addr", "root", "tls", "storage", "auth", "notifications"})
    if top.get("version", CONFIG_VERSION) != CONFIG_VERSION:
        raise InvalidArgument(f"config version {top.get('version')!r} is not supported "
                              f"(this registry reads version {CONFIG_VERSION})")
    kwargs: dict[str, Any] = {}
    if "addr" in top:
        kwargs["addr"] = str(top["addr"])
    if "root" in top:
        kwargs["root"] = _path(base, top["root"], "root")
    tls = _keys("tls", top.get("tls"), {"certificate", "key"})
    if tls:
        kwargs["tls_cert"] = _path(base, tls.get("certificate"), "tls.certificate")
        kwargs["tls_key"] = _path(base, tls.get("key"), "tls.key")
    storage = _keys("storage", top.get("storage"), {"delete", "upload_ttl"})
    if "delete" in storage:
        if not isinstance(storage["delete"], bool):
            raise InvalidArgument("config storage.delete: expected true or false")
        kwargs["delete_enabled"] = storage["delete"]
    kwargs["upload_ttl"] = _number("storage.upload_ttl", storage.get("upload_ttl"), 86400.0)
    if top.get("auth") is not None:
        kwargs["auth"] = _parse_auth(top["auth"], base)
    kwargs["notifications"] = _parse_notifications(top.get("notifications"))
    return RegistryConfig(**kwargs)


def _parse_auth(obj: Any, base: Path) -> AuthConfig:
    auth = _keys("auth", obj, {"mode", "htpasswd", "realm", "service", "issuer", "secret_file",
                               "expiration", "anonymous", "access"})
    mode = auth.get("mode", "basic")
    if mode not in ("basic", "token"):
        raise InvalidArgument(f"config auth.mode: {mode!r}: expected basic or token")
    if "htpasswd" not in auth:
        raise InvalidArgument("config auth.htpasswd: required (the file of users and bcrypt hashes)")
    rules = None
    if auth.get("access") is not None:
        if not isinstance(auth["access"], list):
            raise InvalidArgument("config auth.access: expected a list of rules")
        rules = []
        for i, rule in enumerate(auth["access"]):
            r = _keys(f"auth.access[{i}]", rule, {"account", "repository", "actions"})
            account, repository = r.get("account"), r.get("repository", "*")
            if not isinstance(account, str) or not account or not isinstance(repository, str):
                raise InvalidArgument(f"config auth.access[{i}]: account and repository must be strings")
            rules.append(AccessRule(account, repository, _actions(f"auth.access[{i}].actions",
                                                                   r.get("actions", []))))
    for key in ("realm", "service", "issuer"):
        if key in auth and not isinstance(auth[key], str):
            raise InvalidArgument(f"config auth.{key}: expected a string")
    return AuthConfig(
        mode=mode,
        htpasswd=_path(base, auth["htpasswd"], "auth.htpasswd"),
        realm=auth.get("realm"),
        service=auth.get("service", "pallet-registry"),
        issuer=auth.get("issuer", "pallet-registry"),
        secret_file=_path(base, auth["secret_file"], "auth.secret_file") if "secret_file" in auth else None,
        expiration=int(_number("auth.expiration", auth.get("expiration"), 300)) or 300,
        anonymous=_actions("auth.anonymous", auth.get("anonymous", [])),
        access=tuple(rules) if rules is not None else None,
    )


def _parse_notifications(obj: Any) -> tuple[Endpoint, ...]:
    if obj is None:
        return ()
    if isinstance(obj, dict) and "endpoints" in obj:  # distribution's spelling
        obj = obj["endpoints"]
    if not isinstance(obj, list):
        raise InvalidArgument("config notifications: expected a list of URLs or endpoints")
    out = []
    for i, item in enumerate(obj):
        if isinstance(item, str):
            item = {"url": item}
        e = _keys(f"notifications[{i}]", item, {"url", "headers", "timeout", "retries", "backoff"})
        url = e.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise InvalidArgument(f"config notifications[{i}].url: expected an http(s) URL")
        headers = e.get("headers") or {}
        if not isinstance(headers, dict):
            raise InvalidArgument(f"config notifications[{i}].headers: expected a mapping")
        out.append(Endpoint(
            url=url,
            headers={str(k): ", ".join(map(str, v)) if isinstance(v, list) else str(v)
                     for k, v in headers.items()},
            timeout=_number(f"notifications[{i}].timeout", e.get("timeout"), 5.0),
            retries=int(_number(f"notifications[{i}].retries", e.get("retries"), 5)),
            backoff=_number(f"notifications[{i}].backoff", e.get("backoff"), 1.0),
        ))
    return tuple(out)


def load_config(path: str | Path) -> RegistryConfig:
    """Read and validate a config file; InvalidArgument naming the file and what is wrong."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InvalidArgument(f"config {path}: {exc.strerror}") from exc
    try:
        obj = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidArgument(f"config {path}: not valid YAML/JSON: {exc}") from exc
    try:
        return parse_config(obj or {}, path.parent.resolve())
    except InvalidArgument as exc:
        raise InvalidArgument(f"{path}: {exc}") from exc
