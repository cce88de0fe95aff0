"""The hourly roll-up: PostgreSQL folds it in SQL, SQLite in Python; both give the same buckets.

The expectation is :func:`models.db.hourly_deltas` (the Python fold) over every distinct
row, compared with what ``observation_hourly`` holds after the rows went through
:func:`models.db.record_observations` in overlapping batches (redeliveries included).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from models import db, schema


@pytest.fixture(params=["postgresql", "sqlite"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_url")
    else:
        url = f"sqlite:///{tmp_path / 'rollup.sqlite3'}"
        db.upgrade_database(url)
    engine = db.create_engine_for(url)
    with engine.begin() as conn:
        conn.execute(schema.ObservationHourly.__table__.delete())
        conn.execute(schema.Observation.__table__.delete())
    yield engine
    engine.dispose()


def readings(rng: random.Random, n: int) -> list[dict[str, Any]]:
    """Readings of a few devices over three hours, some of them moving between districts."""
    t0 = datetime(2026, 7, 15, 9, 40, tzinfo=UTC)
    rows = []
    for i in range(n):
        device = f"dev-{i % 7}"
        ts = t0 + timedelta(seconds=17 * i + rng.randint(0, 10))
        metrics: dict[str, Any] = {"pm25": round(rng.uniform(0, 300), 3), "count": rng.randint(-5, 5)}
        if i % 5 == 0:
            metrics["door_open"] = rng.random() < 0.5  # a state, not aggregated
        if i % 11 == 0:
            metrics["status"] = "ok"
        district = rng.choice(["511602", "511603"]) if device == "dev-0" else "511621"
        rows.append(
            {
                "device_id": device,
                "ts": ts,
                "metrics": metrics,
                "msg_id": f"m{i}",
                "district_code": district,
                "grid_id": f"{district}-g{rng.randint(1, 3)}",
            }
        )
    return rows


def stored_buckets(engine: sa.Engine) -> dict[tuple[str, str, datetime], dict[str, Any]]:
    t = schema.ObservationHourly.__table__
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t)).mappings().all()
    return {(r["device_id"], r["metric"], r["hour"].astimezone(UTC)): dict(r) for r in rows}


def test_sql_and_python_roll_ups_agree(engine: sa.Engine, rng: random.Random) -> None:
    rows = readings(rng, 700)
    shuffled = rows[:]
    rng.shuffle(shuffled)  # out-of-order delivery across batches
    batches = [shuffled[:300], shuffled[250:500], shuffled[480:], shuffled[:40]]  # overlaps redeliver
    inserted = 0
    for batch in batches:
        with engine.begin() as conn:
            inserted += len(db.record_observations(conn, batch))
    assert inserted == len(rows), "every reading stored once"

    expected = {(d.device_id, d.metric, d.hour): d for d in db.hourly_deltas(rows)}
    got = stored_buckets(engine)
    assert set(got) == set(expected)
    assert {m for _, m, _ in got} == {"pm25", "count"}, "states and booleans are not aggregated"
    for key, want in expected.items():
        have = got[key]
        assert have["count"] == want.count, key
        assert have["sum"] == pytest.approx(want.sum), key
        assert (have["min"], have["max"]) == (want.min, want.max), key
        assert have["last_ts"].astimezone(UTC) == want.last_ts, key
        assert have["last_value"] == want.last_value, key
        # The newest reading of the bucket says where a moving device is.
        assert (have["district_code"], have["grid_id"]) == (want.district_code, want.grid_id), key


def test_buckets_are_utc_hours_whatever_the_offset_of_the_reading(engine: sa.Engine) -> None:
    from datetime import timezone

    cst = timezone(timedelta(hours=8))
    ist = timezone(timedelta(hours=5, minutes=30))
    rows = [
        {"device_id": "d", "ts": datetime(2026, 7, 15, 17, 59, 59, tzinfo=cst), "metrics": {"x": 1.0}},
        {"device_id": "d", "ts": datetime(2026, 7, 15, 15, 30, 0, tzinfo=ist), "metrics": {"x": 3.0}},
    ]
    with engine.begin() as conn:
        assert len(db.record_observations(conn, rows)) == 2
    got = stored_buckets(engine)
    # 09:59:59 UTC and 10:00:00 UTC: two buckets.
    assert sorted(h for _, _, h in got) == [
        datetime(2026, 7, 15, 9, tzinfo=UTC),
        datetime(2026, 7, 15, 10, tzinfo=UTC),
    ]
    assert [got[("d", "x", h)]["sum"] for h in sorted(h for _, _, h in got)] == [1.0, 3.0]


def test_a_steady_feed_updates_the_current_hour_in_place(pg_url: str) -> None:
    """Each reading rewrites its device's rows of the hour; on PostgreSQL those updates stay on
    the row's page (HOT, no index touched) instead of moving the row and inserting into every
    index of the table, which is what they did with full pages (migration 0009)."""
    engine = db.create_engine_for(pg_url)
    table = schema.ObservationHourly.__table__
    t0 = datetime(2026, 7, 15, 9, 0, tzinfo=UTC)
    devices = [f"steady-{i:03d}" for i in range(200)]

    def blocks() -> dict[tuple[str, str], int]:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT device_id, metric, (ctid::text::point)[0]::int FROM observation_hourly "
                    "WHERE device_id LIKE 'steady-%'"
                )
            ).all()
        return {(d, m): block for d, m, block in rows}

    try:
        # The first rounds place the rows (a page fills up with versions of rows all updated
        # by one transaction, so some move once); from then on they should stay put.
        settled = 5
        for k in range(30):  # one reading per device and round, one transaction per round
            batch = [
                {
                    "device_id": d,
                    "ts": t0 + timedelta(seconds=60 * k + i % 60),
                    "metrics": {"pm25": 30.0 + k, "pm10": 50.0 + i, "no2": 20.5},
                    "msg_id": f"steady-{k}-{d}",
                    "district_code": "511602",
                    "grid_id": "511602-g1",
                }
                for i, d in enumerate(devices)
            ]
            with engine.begin() as conn:
                assert len(db.record_observations(conn, batch)) == len(devices)
            if k == settled:
                first = blocks()
        last = blocks()
        assert len(first) == len(last) == 3 * len(devices)
        moved = sum(first[key] != last[key] for key in first)
        # A row that stayed on its page through 24 updates was updated in place each time.
        assert moved <= len(first) // 10, f"{moved} of {len(first)} rows moved to another page"
        with engine.connect() as conn:
            count = conn.execute(
                sa.select(table.c.count).where(table.c.device_id == devices[0], table.c.metric == "pm25")
            ).scalar_one()
        assert count == 30
    finally:
        with engine.begin() as conn:
            conn.execute(table.delete().where(table.c.device_id.like("steady-%")))
            conn.execute(
                schema.Observation.__table__.delete().where(schema.Observation.device_id.like("steady-%"))
            )
        engine.dispose()
