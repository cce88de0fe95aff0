"""Page refreshes are called here as plain functions, often twice around a change of data
without a push in between: each call must read afresh, so the sharing of results between
viewers (dashboards/shared.py, tested on its own instances) is off for these tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from dashboards import shared


@pytest.fixture(autouse=True)
def refresh_not_shared() -> Iterator[None]:
    shared.RESULTS.enabled = False
    try:
        yield
    finally:
        shared.RESULTS.enabled = True


@pytest.fixture
def page(tmp_path: Path, engine: sa.Engine) -> Iterator[sa.Engine]:
    """The real app over this test's database (reference data seeded) and an empty live
    store, so a page's callbacks can be called as Dash would; yields the database."""
    import fakeredis

    from app import create_app
    from models.config import load_settings
    from models.live import LiveStore
    from models.reference import seed_reference_data

    seed_reference_data(engine)
    live = LiveStore(fakeredis.FakeRedis(decode_responses=True))
    create_app(load_settings({"CITYOPS_DATA_DIR": str(tmp_path)}), live=live, engine=engine)
    yield engine
