"""A lease created holding its resources in the same transaction (what a pull's one lease does:
MetadataStore.create_lease(resources=), ImageService.lease(purpose, hold))."""

from __future__ import annotations

import pytest

from pallet.errors import AlreadyExists, InvalidArgument
from pallet.image.service import ImageService
from pallet.oci.digest import Digest

MAN = Digest("sha256:" + "a" * 64)
CFG = Digest("sha256:" + "c" * 64)


def test_create_lease_with_resources(db):
    db.create_lease("pull-1", resources=[("content", str(MAN)), ("content", str(CFG)),
                                         ("content", str(MAN)), ("ingest", "pull-x")])
    assert sorted(db.lease_resources("pull-1")) == sorted([
        ("pull-1", "content", str(MAN)), ("pull-1", "content", str(CFG)), ("pull-1", "ingest", "pull-x")])
    roots = db.gc_roots()
    assert {str(MAN), str(CFG)} <= set(roots.content) and "pull-x" in roots.ingests


def test_create_lease_with_bad_resources_creates_nothing(db):
    with pytest.raises(InvalidArgument):
        db.create_lease("pull-2", resources=[("content", str(MAN)), ("volume", "x")])
    with pytest.raises(InvalidArgument):
        db.create_lease("pull-2", resources=[("content", "not-a-digest")])
    assert db.leases() == [] and db.lease_resources() == []
    db.create_lease("pull-2")
    with pytest.raises(AlreadyExists):
        db.create_lease("pull-2", resources=[("content", str(MAN))])
    assert db.lease_resources() == []


def test_service_lease_holds_until_it_ends(tmp_path):
    with ImageService(tmp_path / "root", snapshotter="overlay") as svc:
        with svc.lease("pull", [str(MAN), str(CFG)]) as lease:
            assert sorted(k for _, _, k in svc.meta.lease_resources(lease)) == sorted([str(MAN), str(CFG)])
        assert svc.meta.leases() == [] and svc.meta.lease_resources() == []
