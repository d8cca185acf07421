"""Repository names, tags and pagination as the distribution spec defines them."""

from __future__ import annotations

import pytest

from pallet.registry.server.errors import RegistryError
from pallet.registry.server.names import check_name, check_tag, is_tag, link_header, paginate, parse_n


@pytest.mark.parametrize("name", ["a", "library/busybox", "a.b_c__d-e---f/g", "0/1/2/3", "a" * 255])
def test_valid_names(name):
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "A", "a/", "/a", "a//b", "../etc", "a/../b", "a/./b", "_a", "a/_layers",
                                  "a..b", "a-", "a___b", "a b", "a\nb", "a" * 256, "a:b", "a%2fb"])
def test_invalid_names(name):
    with pytest.raises(RegistryError) as exc:
        check_name(name)
    assert exc.value.code == "NAME_INVALID" and exc.value.status == 400


def test_tags():
    assert is_tag("latest") and is_tag("_x") and is_tag("V1.2-rc_3") and is_tag("a" * 128)
    for bad in ("", ".x", "-x", "a" * 129, "a/b", "a:b"):
        assert not is_tag(bad)
        with pytest.raises(RegistryError):
            check_tag(bad)


def test_paginate():
    items = ["a", "b", "c", "d", "e"]
    assert paginate(items, None, None) == (items, False)
    assert paginate(items, 2, None) == (["a", "b"], True)
    assert paginate(items, 2, "b") == (["c", "d"], True)
    assert paginate(items, 2, "d") == (["e"], False)
    assert paginate(items, 0, None) == ([], False)
    assert paginate(items, 2, "bb") == (["c", "d"], True)  # `last` need not exist
    assert paginate(items, None, "e") == ([], False)


def test_parse_n_and_link():
    assert parse_n(None, 100, 1000) == 100
    assert parse_n("5", None, 1000) == 5
    assert parse_n("5000", None, 1000) == 1000
    for bad in ("-1", "x", "1.5"):
        with pytest.raises(RegistryError):
            parse_n(bad, None, 10)
    assert link_header("/v2/a/tags/list", 2, "x y") == '</v2/a/tags/list?last=x%20y&n=2>; rel="next"'
