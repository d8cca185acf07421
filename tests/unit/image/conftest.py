"""Fixtures shared by the image unit tests."""

from __future__ import annotations

import pytest

from pallet.image.metadata import MetadataStore


@pytest.fixture()
def db(tmp_path):
    """A fresh metadata database, closed after the test."""
    store = MetadataStore(tmp_path / "metadata.db")
    yield store
    store.close()
