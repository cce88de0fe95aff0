"""The ecology page's reads against the real PostgreSQL: the districts' hourly means that the
database adds up equal the stations' means added up in Python (the same check as on the
embedded backend)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import fakeredis
import pytest
import sqlalchemy as sa

from models import db
from models.config import load_settings
from models.db import record_observations
from models.live import LiveStore
from tests.unit.dashboards.test_ecology_page import check_district_means, stations_means_in_python

pytestmark = pytest.mark.real_services


@pytest.fixture
def engine(pg_url: str) -> Iterator[sa.Engine]:
    engine = db.create_engine_for(pg_url)
    yield engine
    engine.dispose()


def test_district_means_added_up_by_postgresql_equal_the_stations_means(engine: sa.Engine) -> None:
    from app import create_app

    create_app(load_settings({}), live=LiveStore(fakeredis.FakeRedis(decode_responses=True)), engine=engine)
    from models.air_quality import hourly_means_by_district

    check_district_means(engine, hourly_means_by_district)

    # Station means of 0.1 and 0.2: in floats, as Python adds them up, the mean is
    # 0.15000000000000002; divided and added as NUMERIC it would be 0.15.
    hour = datetime(2026, 6, 15, 5, tzinfo=UTC)
    with engine.begin() as conn:
        record_observations(
            conn,
            [
                {
                    "device_id": d,
                    "ts": hour,
                    "metrics": {"pm25": v},
                    "district_code": "511681",
                    "grid_id": None,
                }
                for d, v in (("p", 0.1), ("q", 0.2))
            ],
        )
    with engine.connect() as conn:
        summed = hourly_means_by_district(conn, [hour], ["511681"])
        assert summed == stations_means_in_python(conn, [hour], ["511681"])
    assert summed["511681"]["pm25"] == [(0.1 + 0.2) / 2]
