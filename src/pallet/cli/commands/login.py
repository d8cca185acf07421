"""`pallet login`: check credentials with the daemon (POST /auth) and keep them in docker's config.json.

The credential file is the docker CLI's own, so `docker` and `pallet` share logins:
`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`, format (as the docker CLI writes it):

    {"auths": {"localhost:5000": {"auth": "<base64 of user:password>"},
               "https://index.docker.io/v1/": {"auth": "...", "identitytoken": "..."}},
     ...every other key kept as it was...}

Docker Hub's key is `https://index.docker.io/v1/`; every other registry's is host[:port]
(lookups also accept keys written with a scheme or a path, as docker's ConvertToHostname). The
file is written atomically with mode 0600.

Credential helpers, as the docker CLI runs them (docker/docker-credential-helpers' protocol):
`credHelpers` names a helper per registry key, else `credsStore` one for every registry. Helper
NAME is the program `docker-credential-NAME` on PATH:

    docker-credential-NAME get     stdin: the server key; stdout: {"ServerURL", "Username", "Secret"}
                                   (Username "<token>": Secret is an identity token); a missing
                                   entry exits non-zero saying "credentials not found"
    docker-credential-NAME store   stdin: {"ServerURL", "Username", "Secret"}
    docker-credential-NAME erase   stdin: the server key

A login kept by a helper leaves an empty entry under "auths" (the docker CLI does the same), so
that the file still lists the registry.

This module also gives pull, push and search the X-Registry-Auth header for a registry (only
the standard library: the CLI path stays light).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import json
import os
import sys
from pathlib import Path

from pallet.cli.commands.container import HelpFormatter
from pallet.errors import InvalidArgument

TYPE_CHECKING = False  # typing costs ~3 ms of CLI start-up; mypy reads this name as typing's
if TYPE_CHECKING:
    from typing import Any

    from pallet.cli.main import Context

INDEX_SERVER = "https://index.docker.io/v1/"
_HUB = ("docker.io", "index.docker.io", "registry-1.docker.io")


def hostname(address: str) -> str:
    """`https://host:5000/v1/` -> `host:5000` (docker's ConvertToHostname)."""
    s = address.strip()
    for prefix in ("http://", "https://"):
        s = s.removeprefix(prefix)
    return s.split("/", 1)[0]


def server_key(address: str) -> str:
    host = hostname(address) if address else "docker.io"
    return INDEX_SERVER if host in _HUB else host


def registry_of(image: str) -> str:
    """The registry domain of an image reference as typed (`busybox` is on docker.io)."""
    first, sep, _ = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.lower() != first):
        return first
    return "docker.io"


def config_path() -> Path:
    if os.environ.get("DOCKER_CONFIG"):
        return Path(os.environ["DOCKER_CONFIG"]) / "config.json"
    return Path(os.path.expanduser("~")) / ".docker" / "config.json"


class DockerConfig:
    """The docker CLI's config.json (see the module docstring)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or config_path()
        self.data: dict[str, Any] = {}
        try:
            raw = self.path.read_text()
        except FileNotFoundError:
            raw = ""
        except OSError as exc:
            raise InvalidArgument(f"cannot read {self.path}: {exc.strerror}") from exc
        if raw.strip():
            try:
                data = json.loads(raw)
            except ValueError as exc:
                raise InvalidArgument(f"{self.path} is not valid JSON: {exc}") from exc
            if not isinstance(data, dict):
                raise InvalidArgument(f"{self.path} must hold a JSON object")
            self.data = data

    def _auths(self) -> dict[str, Any]:
        auths = self.data.get("auths")
        return auths if isinstance(auths, dict) else {}

    def _matches(self, key: str, want: str) -> bool:
        return key == want or (want != INDEX_SERVER and hostname(key) == want) or \
            (want == INDEX_SERVER and hostname(key) in _HUB)

    def helper(self, key: str) -> str:
        """The credential helper for registry `key` ("" when the file keeps it itself)."""
        helpers = self.data.get("credHelpers")
        if isinstance(helpers, dict):
            for name, prog in helpers.items():
                if self._matches(name, key) and isinstance(prog, str) and prog:
                    return prog
        store = self.data.get("credsStore")
        return store if isinstance(store, str) else ""

    def _run_helper(self, prog: str, action: str, data: str) -> str:
        import subprocess

        exe = f"docker-credential-{prog}"
        try:
            proc = subprocess.run([exe, action], input=data.encode(), capture_output=True, timeout=60)
        except FileNotFoundError:
            doing = {"get": "getting", "store": "storing", "erase": "erasing"}[action]
            raise InvalidArgument(f'error {doing} credentials - err: exec: "{exe}": executable file not '
                                  "found in $PATH") from None
        except subprocess.TimeoutExpired:
            raise InvalidArgument(f"{exe} {action}: no answer in 60 s") from None
        out = proc.stdout.decode("utf-8", "replace").strip()
        if proc.returncode != 0:
            raise _HelperError(out or proc.stderr.decode("utf-8", "replace").strip() or
                               f"{exe} {action} exited with status {proc.returncode}")
        return out

    def _helper_get(self, prog: str, key: str) -> dict[str, str]:
        try:
            out = self._run_helper(prog, "get", key)
        except _HelperError as exc:
            if "credentials not found" in str(exc).lower():
                return {"serveraddress": key}
            raise InvalidArgument(f"error getting credentials - err: {exc}") from None
        try:
            creds = json.loads(out)
            user, secret = str(creds.get("Username") or ""), str(creds.get("Secret") or "")
        except (ValueError, AttributeError) as exc:
            raise InvalidArgument(f"docker-credential-{prog} get: not a credential: {exc}") from None
        if user == "<token>":
            return {"serveraddress": key, "identitytoken": secret}
        return {"serveraddress": key, "username": user, "password": secret}

    def get(self, address: str) -> dict[str, str]:
        """Docker's AuthConfig JSON for the registry at `address` (anonymous: only serveraddress)."""
        want = server_key(address)
        prog = self.helper(want)
        if prog:
            return self._helper_get(prog, want)
        for key, entry in self._auths().items():
            if self._matches(key, want) and isinstance(entry, dict):
                out = {"serveraddress": want}
                auth = entry.get("auth")
                if isinstance(auth, str) and auth:
                    try:
                        user, sep, password = base64.b64decode(auth).decode().partition(":")
                    except (binascii.Error, UnicodeDecodeError) as exc:
                        raise InvalidArgument(f"{self.path}: bad auth entry for {key}: {exc}") from exc
                    if not sep:
                        raise InvalidArgument(f"{self.path}: bad auth entry for {key}: no ':'")
                    out.update(username=user, password=password)
                if isinstance(entry.get("identitytoken"), str) and entry["identitytoken"]:
                    out["identitytoken"] = entry["identitytoken"]
                return out
        return {"serveraddress": want}

    def store(self, address: str, username: str, password: str, identity_token: str = "") -> None:
        key = server_key(address)
        auths = self._auths()
        for old in [k for k in auths if k != key and self._matches(k, key)]:
            del auths[old]
        entry: dict[str, str] = {}
        prog = self.helper(key)
        if prog:
            user, secret = ("<token>", identity_token) if identity_token else (username, password)
            try:
                self._run_helper(prog, "store", json.dumps({"ServerURL": key, "Username": user,
                                                            "Secret": secret}))
            except _HelperError as exc:
                raise InvalidArgument(f"error storing credentials - err: {exc}") from None
        elif identity_token:
            entry = {"auth": base64.b64encode(f"{username}:".encode()).decode(),
                     "identitytoken": identity_token}
        else:
            entry = {"auth": base64.b64encode(f"{username}:{password}".encode()).decode()}
        auths[key] = entry
        self.data["auths"] = auths
        self.save()

    def remove(self, address: str) -> bool:
        key = server_key(address)
        auths = self._auths()
        gone = [k for k in auths if self._matches(k, key)]
        prog = self.helper(key)
        if prog:
            try:
                self._run_helper(prog, "erase", key)
                gone = gone or [key]
            except _HelperError as exc:
                if "credentials not found" not in str(exc).lower():
                    raise InvalidArgument(f"error erasing credentials - err: {exc}") from None
        for k in gone:
            auths.pop(k, None)
        if gone:
            self.data["auths"] = auths
            self.save()
        return bool(gone)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(self.data, f, indent="\t")
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise


class _HelperError(Exception):
    """A credential helper exited non-zero; the message is what it said."""


def encode_auth(auth: dict[str, str]) -> str:
    """The X-Registry-Auth header value: base64url of the AuthConfig JSON."""
    return base64.urlsafe_b64encode(json.dumps(auth).encode()).decode()


def auth_header(image: str) -> dict[str, str]:
    """{"X-Registry-Auth": ...} for the registry of `image`, from the stored logins."""
    return {"X-Registry-Auth": encode_auth(DockerConfig().get(registry_of(image)))}


def main(ctx: Context, argv: list[str], prog: str = "pallet login") -> int:
    p = argparse.ArgumentParser(prog=prog, description="Log in to a registry", formatter_class=HelpFormatter)
    p.add_argument("-u", "--username", help="Username")
    p.add_argument("-p", "--password", help="Password")
    p.add_argument("--password-stdin", action="store_true", help="Take the password from stdin")
    p.add_argument("server", nargs="?", default="", metavar="SERVER")
    args = p.parse_args(argv)
    if args.password and args.password_stdin:
        raise InvalidArgument("--password and --password-stdin are mutually exclusive")
    if args.password:
        print("WARNING! Using --password via the CLI is insecure. Use --password-stdin.", file=sys.stderr)
    password = args.password or ""
    if args.password_stdin:
        if not args.username:
            raise InvalidArgument("Must provide --username with --password-stdin")
        password = sys.stdin.read().rstrip("\r\n")
    username = args.username or ""
    server = server_key(args.server)
    if not username:
        if not sys.stdin.isatty():
            raise InvalidArgument("Cannot perform an interactive login from a non TTY device")
        username = input("Username: ").strip()
    if not password:
        import getpass

        if not sys.stdin.isatty():
            raise InvalidArgument("Cannot perform an interactive login from a non TTY device")
        password = getpass.getpass("Password: ")
    if not username:
        raise InvalidArgument("Error: Non-null Username Required")
    if not password:
        raise InvalidArgument("Error: Password Required")
    result = ctx.client().post_json("/auth", {"username": username, "password": password,
                                              "serveraddress": server})
    token = (result or {}).get("IdentityToken") or ""
    cfg = DockerConfig()
    cfg.store(server, username, password, token)
    if not cfg.helper(server):
        print(f"WARNING! Your password will be stored unencrypted in {cfg.path}.", file=sys.stderr)
    print(result.get("Status") or "Login Succeeded")
    return 0
