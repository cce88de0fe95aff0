"""Every text the payload schemas accept fits its PostgreSQL column.

SQLite does not enforce VARCHAR lengths, PostgreSQL does: a value the schema lets through
but the column refuses would fail the whole batch's INSERT, and the worker would retry
that batch forever. So: the longest accepted values are stored, one character more is a
dead letter, and the good messages of the same batch are stored either way.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import fakeredis
import pytest
import sqlalchemy as sa

from ingest.pipeline import Inbound, IngestPipeline
from models import schema
from models.live import LiveStore

pytestmark = pytest.mark.real_services

NOW = datetime(2026, 7, 15, 2, 30, tzinfo=UTC)
LON, LAT = 106.6333, 30.4560  # inside 广安区


@pytest.fixture(scope="module")
def engine(pg_engine: sa.Engine) -> sa.Engine:
    return pg_engine


def ticket(ticket_id: str, **extra: object) -> Inbound:
    body = {
        "ticket_id": ticket_id,
        "ts": "2026-07-15T10:29:30+08:00",
        "channel": "phone",
        "category": "噪",
        "title": "夜间施工",
        "content": "工地夜间施工噪声大",
        "lon": LON,
        "lat": LAT,
    } | extra
    return Inbound("cityops/v1/hotline/tickets", json.dumps(body, ensure_ascii=False).encode(), NOW)


def test_the_longest_accepted_ticket_is_stored_and_one_more_character_is_a_dead_letter(
    engine: sa.Engine,
) -> None:
    pipeline = IngestPipeline(
        engine, LiveStore(fakeredis.FakeRedis(decode_responses=True)), clock=lambda: NOW
    )
    longest = ticket(
        "T" * 32,
        category="类" * 50,
        title="题" * 200,
        content="内" * 4000,
        address="址" * 200,
        caller={"name": "名" * 64, "phone": "1" * 32},
    )
    too_long = [
        ticket("U" * 33),
        ticket("12345-caller-name", caller={"name": "名" * 65}),
        ticket("12345-caller-phone", caller={"phone": "1" * 33}),
        ticket("12345-title", title="题" * 201),
    ]
    result = pipeline.process([longest, *too_long, ticket("12345-ok")])
    assert result.stored["hotline_tickets"] == 2
    assert [r.reason for r in result.rejected] == ["schema"] * 4
    with engine.connect() as conn:
        stored = conn.execute(
            sa.select(
                schema.HotlineTicket.__table__.c.ticket_id, schema.HotlineTicket.__table__.c.caller_phone
            )
        ).all()
        letters = conn.execute(
            sa.select(sa.func.count()).select_from(schema.DeadLetter.__table__)
        ).scalar_one()
    assert sorted(stored) == sorted([("T" * 32, "1" * 32), ("12345-ok", None)])
    assert letters == 4
