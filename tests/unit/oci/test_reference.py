"""Unit tests for pallet.oci.reference: Docker's reference grammar and normalization.

The cases are the facts of distribution/reference's normalize_test.go and reference_test.go
(valid and invalid names, familiar/full forms, domain splitting), written as tables here.
"""

from __future__ import annotations

import pytest

from pallet.errors import InvalidArgument
from pallet.oci.reference import Reference, normalize, parse, parse_normalized

D = "sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c"

VALID_NAMES = [
    "docker/docker", "library/debian", "debian", "docker.io/docker/docker", "docker.io/library/debian",
    "docker.io/debian", "index.docker.io/docker/docker", "index.docker.io/library/debian",
    "index.docker.io/debian", "127.0.0.1:5000/docker/docker", "127.0.0.1:5000/library/debian",
    "127.0.0.1:5000/debian", "192.168.0.1", "192.168.0.1:80", "192.168.0.1:8/debian",
    "192.168.0.2:25000/debian", "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
    "[fc00::1]:5000/docker", "[fc00::1]:5000/docker/docker", "[fc00:1:2:3:4:5:6:7]:5000/library/debian",
    "docker.io/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
    "Docker/docker", "DOCKER/docker",
    # remote names
    "docker-rules/docker", "docker---rules/docker", "doc/docker", "d/docker", "jess/t", "dock__er/docker",
]

INVALID_NAMES = [
    "https://github.com/docker/docker", "docker/Docker", "-docker", "-docker/docker",
    "-docker.io/docker/docker", "docker///docker", "docker.io/docker/Docker", "docker.io/docker///docker",
    "[fc00::1]", "[fc00::1]:5000", "fc00::1:5000/debian", "[fe80::1%eth0]:5000/debian",
    "[2001:db8:3:4::192.0.2.33]:5000/debian",
    "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
    "docker-/docker", "-docker-/docker", "____/____", "_docker/_docker", "dock..er/docker",
    "dock_.er/docker", "dock-.er/docker", "docker/", "",
    "a" * 256 + "/docker",
    "busybox:-tag", "busybox:" + "t" * 129, "busybox@sha256:abc", "busybox@sha256:" + "A" * 64,
    "busybox@md5:" + "a" * 32, "busybox:", "busybox@", ":latest",
]


@pytest.mark.parametrize("name", VALID_NAMES)
def test_valid_names(name):
    parse_normalized(name)


@pytest.mark.parametrize("name", INVALID_NAMES)
def test_invalid_names(name):
    with pytest.raises(InvalidArgument):
        parse_normalized(name)


def test_total_length_limit():
    base = "example.com/"
    ok = base + "a" * (255 - len(base))
    assert parse_normalized(ok).name == ok
    with pytest.raises(InvalidArgument, match="255"):
        parse_normalized(ok + "a")
    parse_normalized("busybox:" + "t" * 128)


# (familiar name, full name, other spellings, domain, path) from TestParseRepositoryInfo
REPOSITORY_INFO = [
    ("fooo/bar", "docker.io/fooo/bar", ["index.docker.io/fooo/bar"], "docker.io", "fooo/bar"),
    ("ubuntu", "docker.io/library/ubuntu", ["library/ubuntu"], "docker.io", "library/ubuntu"),
    ("nonlibrary/ubuntu", "docker.io/nonlibrary/ubuntu", [], "docker.io", "nonlibrary/ubuntu"),
    ("other/library", "docker.io/other/library", [], "docker.io", "other/library"),
    ("127.0.0.1:8000/private/moonbase", "127.0.0.1:8000/private/moonbase", [], "127.0.0.1:8000",
     "private/moonbase"),
    ("127.0.0.1:8000/privatebase", "127.0.0.1:8000/privatebase", [], "127.0.0.1:8000", "privatebase"),
    ("example.com/private/moonbase", "example.com/private/moonbase", [], "example.com", "private/moonbase"),
    ("example.com/privatebase", "example.com/privatebase", [], "example.com", "privatebase"),
    ("example.com:8000/private/moonbase", "example.com:8000/private/moonbase", [], "example.com:8000",
     "private/moonbase"),
    ("example.com:8000/privatebasee", "example.com:8000/privatebasee", [], "example.com:8000",
     "privatebasee"),
    ("ubuntu-12.04-base", "docker.io/library/ubuntu-12.04-base",
     ["index.docker.io/library/ubuntu-12.04-base"], "docker.io", "library/ubuntu-12.04-base"),
    ("foo", "docker.io/library/foo", ["docker.io/foo"], "docker.io", "library/foo"),
    ("library/foo/bar", "docker.io/library/foo/bar", [], "docker.io", "library/foo/bar"),
    ("store/foo/bar", "docker.io/store/foo/bar", [], "docker.io", "store/foo/bar"),
    ("Foo/bar", "Foo/bar", [], "Foo", "bar"),
    ("FOO/bar", "FOO/bar", [], "FOO", "bar"),
]


@pytest.mark.parametrize(("familiar", "full", "others", "domain", "path"), REPOSITORY_INFO)
def test_repository_info(familiar, full, others, domain, path):
    for spelling in [familiar, full, *others]:
        ref = parse_normalized(spelling, default_tag=False)
        assert (ref.domain, ref.path) == (domain, path), spelling
        assert ref.string() == full
        assert ref.familiar() == familiar
        assert ref.familiar_name() == familiar


# (input, domain, path) from TestNormalizedSplitHostname
SPLIT = [
    ("test.com/foo", "test.com", "foo"), ("test_com/foo", "docker.io", "test_com/foo"),
    ("docker/migrator", "docker.io", "docker/migrator"), ("test.com:8080/foo", "test.com:8080", "foo"),
    ("test-com:8080/foo", "test-com:8080", "foo"), ("foo", "docker.io", "library/foo"),
    ("xn--n3h.com/foo", "xn--n3h.com", "foo"), ("xn--n3h.com:18080/foo", "xn--n3h.com:18080", "foo"),
    ("docker.io/foo", "docker.io", "library/foo"), ("docker.io/library/foo", "docker.io", "library/foo"),
    ("docker.io/library/foo/bar", "docker.io", "library/foo/bar"),
    ("localhost/foo", "localhost", "foo"), ("localhost:5000/a/b", "localhost:5000", "a/b"),
]


@pytest.mark.parametrize(("s", "domain", "path"), SPLIT)
def test_split_domain(s, domain, path):
    ref = parse_normalized(s)
    assert (ref.domain, ref.path) == (domain, path)


@pytest.mark.parametrize(("s", "full", "familiar"), [
    ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("redis:latest", "docker.io/library/redis:latest", "redis:latest"),
    ("docker.io/library/redis:latest", "docker.io/library/redis:latest", "redis:latest"),
    ("redis@" + D, "docker.io/library/redis@" + D, "redis@" + D),
    ("dmcgowan/myapp", "docker.io/dmcgowan/myapp:latest", "dmcgowan/myapp:latest"),
    ("dmcgowan/myapp@" + D, "docker.io/dmcgowan/myapp@" + D, "dmcgowan/myapp@" + D),
    ("localhost:5000/a/b:t", "localhost:5000/a/b:t", "localhost:5000/a/b:t"),
    ("busybox:latest@" + D, "docker.io/library/busybox:latest@" + D, "busybox:latest@" + D),
    ("dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9",
     "docker.io/library/dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9:latest",
     "dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9:latest"),
    ("dbcc1", "docker.io/library/dbcc1:latest", "dbcc1:latest"),
    ("192.168.0.1:80", "docker.io/library/192.168.0.1:80", "192.168.0.1:80"),
    ("[fc00::1]:5000/docker:v1", "[fc00::1]:5000/docker:v1", "[fc00::1]:5000/docker:v1"),
])
def test_normalized_forms(s, full, familiar):
    ref = parse_normalized(s)
    assert ref.string() == full == str(ref) == normalize(s)
    assert ref.familiar() == familiar
    # the full form parses back to itself
    assert parse(full) == ref == parse_normalized(full)


def test_tag_and_digest_fields():
    ref = parse_normalized("busybox:1.36@" + D)
    assert ref == Reference("docker.io", "library/busybox", "1.36", ref.digest)
    assert ref.digest == D
    assert ref.name == "docker.io/library/busybox"
    assert parse_normalized("busybox", default_tag=False).tag is None
    assert parse_normalized("busybox@" + D).tag is None


def test_uppercase_repository_message():
    with pytest.raises(InvalidArgument, match="must be lowercase"):
        parse_normalized("docker/Docker")


def test_with_tag_and_digest():
    ref = parse_normalized("busybox")
    assert ref.with_tag("1.0").string() == "docker.io/library/busybox:1.0"
    assert ref.name_only().with_digest(D).familiar() == "busybox@" + D
    with pytest.raises(InvalidArgument):
        ref.with_tag("-x")
    with pytest.raises(InvalidArgument):
        ref.with_digest("foo")


def test_parse_requires_domain_and_does_not_normalize():
    assert parse("docker.io/busybox").path == "busybox"
    with pytest.raises(InvalidArgument):
        parse("busybox")
