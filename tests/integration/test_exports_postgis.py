"""Exports and the daily briefing against the real PostgreSQL + PostGIS: every dataset reads
and writes, periods and day boundaries hold with ``timestamptz``, callers stay masked."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import datetime, timedelta

import fakeredis
import pytest
import sqlalchemy as sa
from openpyxl import load_workbook

from dashboards import briefing as br
from dashboards import exports
from dashboards.context import PageContext
from models import alerts
from models.clock import CITY_TZ
from models.config import load_settings
from models.live import LiveStore
from models.schema import Alert, AlertEvent, HotlineTicket, TicketEvent
from tests.unit.models.interop.test_cap import draft

pytestmark = pytest.mark.real_services

MIDNIGHT = datetime(2026, 11, 25, tzinfo=CITY_TZ)
NOW = MIDNIGHT + timedelta(hours=10)


@pytest.fixture(scope="module")
def engine(pg_engine: sa.Engine) -> sa.Engine:
    return pg_engine


@pytest.fixture
def ctx(engine: sa.Engine, tmp_path) -> Iterator[PageContext]:
    def wipe() -> None:
        with engine.begin() as conn:
            for table in (TicketEvent, HotlineTicket, AlertEvent, Alert):
                conn.execute(sa.delete(table.__table__))

    wipe()
    live = LiveStore(fakeredis.FakeRedis(decode_responses=True))
    yield PageContext(settings=load_settings({"CITYOPS_DATA_DIR": str(tmp_path)}), live=live, engine=engine)
    wipe()


def seed(ctx: PageContext) -> None:
    with ctx.engine.begin() as conn:
        for ticket_id, ts, district in (
            ("T-LAST", MIDNIGHT - timedelta(minutes=1), "511602"),
            ("T-NEXT", MIDNIGHT, "511623"),
        ):
            conn.execute(
                sa.insert(HotlineTicket.__table__),
                {
                    "ticket_id": ticket_id,
                    "ts": ts,
                    "channel": "phone",
                    "category": "噪声扰民",
                    "title": "夜间施工噪声",
                    "content": "工地夜间施工",
                    "district_code": district,
                    "caller_name": "欧阳娜娜",
                    "caller_phone": "13912345678",
                    "state": "registered",
                },
            )
        alerts.raise_alert(conn, draft("last", "critical"), now=MIDNIGHT - timedelta(minutes=1))
        alerts.raise_alert(conn, draft("next", "critical"), now=MIDNIGHT)


def test_every_dataset_reads_and_writes_on_postgis(ctx: PageContext) -> None:
    seed(ctx)
    for name, spec in exports.DATASETS.items():
        query = exports.parse_query(spec, {}, now=NOW, scope=None)
        table = exports.read_table(ctx, spec, query, NOW)
        assert all(len(row) == len(spec.columns) for row in table.rows), name
        assert load_workbook(io.BytesIO(exports.write_xlsx(table))).active.max_column == len(spec.columns)


def test_periods_are_city_days_and_callers_masked_on_postgis(ctx: PageContext) -> None:
    seed(ctx)
    spec = exports.DATASETS["tickets"]
    query = exports.parse_query(spec, {"since": "2026-11-24", "until": "2026-11-24"}, now=NOW, scope=None)
    body = exports.write_csv(exports.read_table(ctx, spec, query, NOW)).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(body)))
    assert [r[0] for r in rows[1:]] == ["T-LAST"]
    assert rows[1][1] == "2026-11-24 23:59:00" and rows[1][7] == "欧*** 139****5678"
    scoped = exports.parse_query(spec, {"since": "2026-11-25"}, now=NOW, scope="511623")
    assert [r[0] for r in exports.read_table(ctx, spec, scoped, NOW).rows] == ["T-NEXT"]


def test_the_briefing_counts_23_59_and_not_midnight_on_postgis(ctx: PageContext) -> None:
    seed(ctx)
    b = br.read_briefing(ctx, MIDNIGHT.date() - timedelta(days=1), now=NOW)
    assert b.alerts.raised_by_severity["critical"] == 1
    assert b.tickets.received == 1 and b.tickets.by_hour is not None and b.tickets.by_hour["23"] == 1
    today = br.read_briefing(ctx, MIDNIGHT.date(), now=NOW)
    assert today.alerts.raised == 1 and today.tickets.received == 1
