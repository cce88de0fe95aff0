"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from models import db


@pytest.fixture(scope="module")
def engine(pg_url: str) -> Iterator[sa.Engine]:
    """An engine on the module's own PostGIS database, migrated to head (``pg_url``). A
    module that needs another engine (other pool settings, a fill) defines its own."""
    engine = db.create_engine_for(pg_url)
    yield engine
    engine.dispose()
