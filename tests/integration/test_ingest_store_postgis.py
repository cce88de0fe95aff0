"""How a batch reaches PostgreSQL: readings alone are one statement, anything else one transaction.

A batch of readings from devices the worker already knows is stored (with its hourly
roll-up) by a single statement, which PostgreSQL runs atomically on its own: sending it
without BEGIN and COMMIT saves two round trips per batch part. These tests watch what the
driver is sent, and that the pooled connection is transactional again for the next batch.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import fakeredis
import pytest
import sqlalchemy as sa

from ingest.pipeline import Inbound, IngestPipeline
from models import db, schema
from models.live import LiveStore

pytestmark = pytest.mark.real_services

NOW = datetime(2026, 7, 15, 2, 30, tzinfo=UTC)
LON, LAT = 106.6333, 30.4560  # inside 广安区
PREFIX = "cityops/v1"


@pytest.fixture(scope="module")
def engine(pg_engine: sa.Engine) -> sa.Engine:
    return pg_engine


@pytest.fixture
def statements(engine: sa.Engine) -> Iterator[list[tuple[str, bool]]]:
    """Each statement the engine runs, with whether the driver connection was in autocommit."""
    seen: list[tuple[str, bool]] = []

    def record(conn: sa.Connection, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append((statement.split(None, 1)[0].upper(), conn.connection.driver_connection.autocommit))

    sa.event.listen(engine, "before_cursor_execute", record)
    yield seen
    sa.event.remove(engine, "before_cursor_execute", record)


def meta(device_id: str) -> Inbound:
    body = {"type": "noise", "lon": LON, "lat": LAT, "props": {"zone_class": "1"}}
    return Inbound(f"{PREFIX}/sensors/{device_id}/meta", json.dumps(body).encode(), NOW)


def reading(device_id: str, minute: int, laeq: float) -> Inbound:
    ts = (NOW - timedelta(minutes=minute)).isoformat()
    body = {"ts": ts, "metrics": {"laeq": laeq}, "msg_id": f"{device_id}-{minute}"}
    return Inbound(f"{PREFIX}/sensors/{device_id}/obs", json.dumps(body).encode(), NOW)


def pipeline_for(engine: sa.Engine) -> IngestPipeline:
    return IngestPipeline(engine, LiveStore(fakeredis.FakeRedis(decode_responses=True)), clock=lambda: NOW)


def hourly(engine: sa.Engine, device_id: str) -> tuple[int, float]:
    h = schema.ObservationHourly.__table__
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(sa.func.sum(h.c.count), sa.func.sum(h.c.sum)).where(h.c.device_id == device_id)
        ).one()
    return int(row[0] or 0), float(row[1] or 0.0)


def test_readings_of_known_devices_are_one_statement_outside_a_transaction(
    engine: sa.Engine, statements: list[tuple[str, bool]]
) -> None:
    pipeline = pipeline_for(engine)
    assert pipeline.process([meta("noise-ac-1")]).stored["devices"] == 1
    statements.clear()
    batch = [reading("noise-ac-1", m, 50.0 + m) for m in (3, 2, 1)]
    stored = pipeline.store_prepared(pipeline.prepare(batch))
    assert stored.result.stored["observations"] == 3
    # One statement (the readings and their roll-up), and no BEGIN before it.
    assert [(verb, autocommit) for verb, autocommit in statements] == [("WITH", True)]
    assert hourly(engine, "noise-ac-1") == (3, 50.0 * 3 + 6)


def test_the_same_readings_again_are_duplicates_and_the_roll_up_does_not_move(engine: sa.Engine) -> None:
    pipeline = pipeline_for(engine)
    pipeline.process([meta("noise-ac-2")])
    batch = [reading("noise-ac-2", m, 60.0) for m in (2, 1)]
    assert pipeline.store_prepared(pipeline.prepare(batch)).result.stored["observations"] == 2
    again = pipeline.store_prepared(pipeline.prepare(batch)).result
    assert again.stored["observations"] == 0
    assert again.duplicates["observations"] == 2
    assert hourly(engine, "noise-ac-2") == (2, 120.0)


def test_a_batch_with_more_than_readings_is_one_transaction_on_a_connection_reset_after_autocommit(
    engine: sa.Engine, statements: list[tuple[str, bool]]
) -> None:
    pipeline = pipeline_for(engine)
    pipeline.process([meta("noise-ac-3")])
    pipeline.store_prepared(pipeline.prepare([reading("noise-ac-3", 5, 55.0)]))
    # The connection that ran the autocommit statement is back in the pool.
    assert engine.pool.checkedout() == 0
    statements.clear()
    # A device's meta next to a reading: the meta must be committed with the reading, or not at all.
    stored = pipeline.store_prepared(pipeline.prepare([meta("noise-ac-4"), reading("noise-ac-3", 4, 56.0)]))
    assert (stored.result.stored["devices"], stored.result.stored["observations"]) == (1, 1)
    assert statements, "the batch ran no statement"
    assert all(not autocommit for _, autocommit in statements), statements


def test_a_batch_with_a_rejected_message_keeps_its_dead_letter_in_the_same_transaction(
    engine: sa.Engine, statements: list[tuple[str, bool]]
) -> None:
    pipeline = pipeline_for(engine)
    pipeline.process([meta("noise-ac-5")])
    statements.clear()
    bad = Inbound(f"{PREFIX}/sensors/noise-ac-5/obs", b'{"ts": "2026-07-15T10:29:00+08:00"}', NOW)
    stored = pipeline.store_prepared(pipeline.prepare([reading("noise-ac-5", 1, 57.0), bad]))
    assert stored.result.stored["observations"] == 1
    assert [r.reason for r in stored.result.rejected] == ["schema"]
    assert ("INSERT", False) in statements
    assert all(not autocommit for _, autocommit in statements), statements


def test_warm_up_opens_a_connection_per_store_part_and_plans_without_writing(pg_url: str) -> None:
    engine = db.create_engine_for(pg_url)
    seen: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *args: seen.append(args[2].split(None, 1)[0]))
    try:
        pipeline_for(engine).warm_up(2)
        # Both held at once, so the pool made two, and both wait there for the store parts.
        assert engine.pool.checkedin() == 2
        assert seen == ["EXPLAIN", "EXPLAIN"]
        with engine.connect() as conn:
            for table in (schema.Observation.__table__, schema.ObservationHourly.__table__):
                assert (
                    conn.execute(
                        sa.select(sa.func.count()).select_from(table).where(table.c.device_id == "warm-up")
                    ).scalar_one()
                    == 0
                )
    finally:
        engine.dispose()
