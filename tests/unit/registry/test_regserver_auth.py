"""Registry auth: htpasswd with bcrypt, access rules, HS256 tokens and their scopes, challenges."""

from __future__ import annotations

import base64
import json
import time

import bcrypt
import pytest

from pallet.errors import InvalidArgument, PermissionDenied
from pallet.registry.server.auth import (
    Authorizer,
    Htpasswd,
    challenge,
    decode_jwt,
    encode_jwt,
    load_or_make_key,
    parse_basic,
    parse_bearer,
    parse_scope,
    token_grants,
)
from pallet.registry.server.config import AccessRule, AuthConfig

KEY = b"k" * 32


def _htpasswd(path, users):
    path.write_text("".join(f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(4)).decode()}\n"
                            for u, p in users.items()))
    return path


def test_htpasswd_bcrypt_only_and_reload(tmp_path):
    path = _htpasswd(tmp_path / "htpasswd", {"alice": "secret"})
    with path.open("a") as f:
        f.write("md5user:$apr1$abc$def\n")  # weak formats are not accepted
    users = Htpasswd(path)
    assert users.verify("alice", "secret") and users.verify("alice", "secret")  # second: memoized
    assert not users.verify("alice", "wrong") and not users.verify("nobody", "secret")
    assert not users.verify("md5user", "anything")
    time.sleep(0.01)
    _htpasswd(path, {"alice": "changed"})
    import os

    os.utime(path, (time.time() + 5, time.time() + 5))  # a distinct mtime
    assert not users.verify("alice", "secret") and users.verify("alice", "changed")
    # $2y$ (Apache's htpasswd -B) works like $2b$.
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode().replace("$2b$", "$2y$", 1)
    path.write_text(f"carol:{hashed}\n")
    os.utime(path, (time.time() + 10, time.time() + 10))
    assert users.verify("carol", "pw")


def test_parse_headers():
    header = "Basic " + base64.b64encode(b"u:p:with:colons").decode()
    assert parse_basic(header) == ("u", "p:with:colons")
    assert parse_basic("Basic !!!") is None and parse_basic(None) is None
    assert parse_basic("Basic " + base64.b64encode(b"nocolon").decode()) is None
    assert parse_basic("Basic " + base64.b64encode(b":").decode()) is None  # empty: anonymous
    assert parse_bearer("Bearer abc") == "abc" and parse_bearer("Basic abc") is None


def test_scopes():
    s = parse_scope("repository:team/app:pull,push")
    assert (s.type, s.name, s.actions) == ("repository", "team/app", frozenset({"pull", "push"}))
    assert parse_scope("repository:host:5000/app:pull").name == "host:5000/app"
    assert str(parse_scope("registry:catalog:*")) == "registry:catalog:*"
    for bad in ("repository", "repository:app", ":x:pull"):
        with pytest.raises(InvalidArgument):
            parse_scope(bad)


def test_jwt_roundtrip_and_refusals():
    now = 1_000_000.0
    claims = {"iss": "me", "aud": "svc", "exp": now + 60, "nbf": now - 1, "access": []}
    token = encode_jwt(claims, KEY)
    assert decode_jwt(token, KEY, issuer="me", audience="svc", now=now)["access"] == []
    with pytest.raises(PermissionDenied, match="signature"):
        decode_jwt(token, b"x" * 32, issuer="me", audience="svc", now=now)
    with pytest.raises(PermissionDenied, match="expired"):
        decode_jwt(token, KEY, issuer="me", audience="svc", now=now + 600)
    with pytest.raises(PermissionDenied, match="issuer"):
        decode_jwt(token, KEY, issuer="other", audience="svc", now=now)
    with pytest.raises(PermissionDenied, match="audience"):
        decode_jwt(token, KEY, issuer="me", audience="other", now=now)
    _, payload, _ = token.split(".")
    none_header = base64.urlsafe_b64encode(json.dumps({"alg": "none"}).encode()).rstrip(b"=").decode()
    with pytest.raises(PermissionDenied, match="HS256"):
        decode_jwt(f"{none_header}.{payload}.", KEY, issuer="me", audience="svc", now=now)
    with pytest.raises(PermissionDenied):
        decode_jwt("garbage", KEY, issuer="me", audience="svc", now=now)


def test_key_is_made_once_with_mode_0600(tmp_path):
    key = load_or_make_key(tmp_path / "sub" / "token.key")
    assert len(key) == 32 and load_or_make_key(tmp_path / "sub" / "token.key") == key
    assert (tmp_path / "sub" / "token.key").stat().st_mode & 0o777 == 0o600
    (tmp_path / "short").write_bytes(b"x")
    with pytest.raises(InvalidArgument):
        load_or_make_key(tmp_path / "short")


def _authorizer(tmp_path, **kw) -> Authorizer:
    config = AuthConfig(mode="token", htpasswd=_htpasswd(tmp_path / "h", {"alice": "pw"}), **kw)
    return Authorizer(config, tmp_path)


def test_access_rules(tmp_path):
    auth = _authorizer(tmp_path, anonymous=frozenset({"pull"}), access=(
        AccessRule("alice", "team/*", frozenset({"pull", "push"})),
        AccessRule("*", "public/*", frozenset({"pull"})),
        AccessRule("anonymous", "open/*", frozenset({"push"})),
    ))
    assert auth.allowed("alice", "team/app") == {"pull", "push"}
    assert auth.allowed("alice", "team/deep/app") == {"pull", "push"}  # '*' crosses '/'
    assert auth.allowed("alice", "other/app") == set()
    assert auth.allowed("bob", "public/x") == {"pull"}
    assert auth.allowed(None, "anything") == {"pull"}  # anonymous: [pull]
    assert auth.allowed(None, "open/x") == {"pull", "push"}
    assert auth.may_pull_anything(None) and auth.may_pull_anything("bob")


def test_default_rules_give_authenticated_users_everything(tmp_path):
    auth = _authorizer(tmp_path)
    assert auth.allowed("anyone", "x/y") == {"pull", "push", "delete"}
    assert auth.allowed(None, "x/y") == set() and not auth.may_pull_anything(None)


def test_issued_tokens_are_narrowed_to_the_rules(tmp_path):
    auth = _authorizer(tmp_path, access=(AccessRule("alice", "team/*", frozenset({"pull"})),))
    answer = auth.issue_token("alice", [parse_scope("repository:team/app:pull,push"),
                                        parse_scope("repository:other:pull"),
                                        parse_scope("repository:../x:pull"),
                                        parse_scope("registry:catalog:*")], now=1000.0)
    assert answer["token"] == answer["access_token"] and answer["expires_in"] == 300
    assert answer["issued_at"] == "1970-01-01T00:16:40Z"
    claims = decode_jwt(answer["token"], auth.key, issuer="pallet-registry", audience="pallet-registry",
                        now=1001.0)
    assert claims["sub"] == "alice"
    assert token_grants(claims, "repository", "team/app") == {"pull"}
    assert token_grants(claims, "repository", "other") == set()
    assert token_grants(claims, "repository", "../x") == set()
    assert token_grants(claims, "registry", "catalog") == {"*"}
    anon = auth.issue_token(None, [parse_scope("registry:catalog:*")], now=1000.0)
    claims = decode_jwt(anon["token"], auth.key, issuer="pallet-registry", audience="pallet-registry",
                        now=1001.0)
    assert claims["sub"] == "" and token_grants(claims, "registry", "catalog") == set()


def test_authenticate(tmp_path):
    auth = _authorizer(tmp_path)
    good = "Basic " + base64.b64encode(b"alice:pw").decode()
    bad = "Basic " + base64.b64encode(b"alice:nope").decode()
    assert auth.authenticate(good) == "alice" and auth.authenticate(None) is None
    with pytest.raises(PermissionDenied):
        auth.authenticate(bad)


def test_challenges():
    assert challenge("basic", "R", "svc") == 'Basic realm="R"'
    assert challenge("token", "https://h/token", "svc", "repository:a:pull", "insufficient_scope") == (
        'Bearer realm="https://h/token",service="svc",scope="repository:a:pull",error="insufficient_scope"')
