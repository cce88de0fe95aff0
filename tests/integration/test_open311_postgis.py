"""Open311 against PostGIS and Redis: a POST becomes a real work order that the hotline
system's lifecycle events then carry to closed; GET filters select from real rows; CAP
messages of real alerts validate."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import flask
import pytest
import sqlalchemy as sa

from dashboards.api import register_api
from dashboards.context import PageContext
from ingest.pipeline import Inbound
from ingest.routing import TopicRouter
from models import alerts, db
from models.clock import utc_now
from models.config import load_settings
from models.live import LiveStore, connect_redis
from models.schema import HotlineTicket
from tests.unit.models.interop.test_cap import assert_valid_cap, draft

pytestmark = pytest.mark.real_services

API_KEY = "integration-key-0123456789"


@pytest.fixture
def api(
    pg_url: str, redis_url: str, tmp_path: Path
) -> Iterator[tuple[flask.testing.FlaskClient, PageContext]]:
    settings = load_settings(
        {
            "CITYOPS_DATABASE_URL": pg_url,
            "CITYOPS_REDIS_URL": redis_url,
            "CITYOPS_OPEN311_API_KEYS": API_KEY,
            "CITYOPS_DATA_DIR": str(tmp_path),
        }
    )
    engine = db.create_engine_for(pg_url)
    context = PageContext(settings=settings, live=LiveStore(connect_redis(settings)), engine=engine)
    server = flask.Flask("open311-postgis")
    register_api(server, context)
    yield server.test_client(), context
    engine.dispose()


def post(client: flask.testing.FlaskClient, **fields: str) -> str:
    data = {
        "api_key": API_KEY,
        "service_code": "road_damage",
        "lat": "30.4562",
        "long": "106.6337",
        "description": "滨江路路面坑洼\n车辆通行颠簸",
        **fields,
    }
    response = client.post("/open311/v2/requests.json", data=data)
    assert response.status_code == 200, response.data
    return response.json[0]["service_request_id"]


def test_a_posted_request_is_a_postgis_work_order_the_hotline_lifecycle_closes(api) -> None:
    client, context = api
    request_id = post(client, first_name="三", last_name="张", phone="13812345678")
    with context.engine.connect() as conn:
        row = (
            conn.execute(
                sa.select(
                    HotlineTicket.__table__,
                    sa.func.ST_AsText(HotlineTicket.__table__.c.geom).label("wkt"),
                ).where(HotlineTicket.__table__.c.ticket_id == request_id)
            )
            .mappings()
            .one()
        )
    assert row["wkt"] == "POINT(106.6337 30.4562)"
    assert row["district_code"] == "511602" and row["state"] == "registered"
    assert row["suggested_department"] == "交通" and row["close_due"] is not None

    # The 12345 system reports its steps over MQTT; the same pipeline applies them.
    settings = context.settings
    from dashboards.api.open311 import _pipeline

    pipeline = _pipeline(context, utc_now)
    topic = TopicRouter(settings.topic_prefix).ticket_events(request_id)
    start = utc_now()
    steps = [
        {"action": "dispatched", "department": "交通"},
        {"action": "accepted"},
        {"action": "replied", "note": "已安排修补"},
        {"action": "closed"},
    ]
    for n, step in enumerate(steps):
        event = {
            "event_id": f"{request_id}-e{n}",
            "ts": (start + timedelta(seconds=n + 1)).isoformat(),
            **step,
        }
        result = pipeline.process([Inbound(topic, json.dumps(event, ensure_ascii=False).encode(), utc_now())])
        assert not result.rejected, result.rejected
        public = client.get(f"/open311/v2/requests/{request_id}.json").json[0]
        if step["action"] == "replied":
            assert public["status"] == "open" and public["status_notes"].startswith("已答复")
    assert public["status"] == "closed"
    assert public["status_notes"].startswith("已办结")
    assert public["agency_responsible"] == "交通"
    assert public["updated_datetime"].endswith("+08:00")
    assert "13812345678" not in json.dumps(public)


def test_get_filters_select_real_rows(api) -> None:
    client, context = api
    road = post(client)
    water = post(client, service_code="water_supply", description="停水")
    other = post(client, service_code="other", description="其他问题")
    old = "OLD-" + road[-8:]
    with context.engine.begin() as conn:
        # A call from 100 days ago, beyond the default window (ingest refuses such old
        # timestamps, so it is written as the database holds it).
        conn.execute(
            sa.insert(HotlineTicket.__table__).values(
                ticket_id=old,
                ts=utc_now() - timedelta(days=100),
                channel="phone",
                category="道路破损",
                title="旧工单",
                content="",
                urgency="normal",
                state="closed",
                closed_at=utc_now() - timedelta(days=95),
                created_at=utc_now() - timedelta(days=100),
                updated_at=utc_now() - timedelta(days=95),
            )
        )
        conn.execute(
            sa.update(HotlineTicket.__table__)
            .where(HotlineTicket.__table__.c.ticket_id == water)
            .values(state="closed", closed_at=utc_now())
        )

    def ids(query: str = "") -> set[str]:
        response = client.get(f"/open311/v2/requests.json{query}")
        assert response.status_code == 200, response.data
        return {r["service_request_id"] for r in response.json}

    mine = {road, water, other, old}
    assert ids() & mine == {road, water, other}, "default: the last 90 days"
    assert ids("?service_code=road_damage") & mine == {road}
    assert ids("?service_code=other") & mine == {other}
    assert ids("?status=closed") & mine == {water}
    assert ids("?status=open,closed") & mine == {road, water, other}
    start = (utc_now() - timedelta(days=120)).isoformat().replace("+", "%2B")
    end = (utc_now() - timedelta(days=60)).isoformat().replace("+", "%2B")
    assert ids(f"?start_date={start}&end_date={end}") & mine == {old}
    assert ids(f"?service_request_id={old},{other}") == {old, other}


def test_cap_messages_of_real_alerts_validate(api) -> None:
    client, context = api
    now = utc_now()
    with context.engine.begin() as conn:
        change = alerts.raise_alert(
            conn, draft(f"pg-cap-{now.timestamp()}", "critical", observed_at=now), now=now
        )
    assert_valid_cap(client.get(f"/api/cap/{change.alert.id}.xml").data)
    assert f"/api/cap/{change.alert.id}.xml" in client.get("/api/cap/alerts.atom").get_data(as_text=True)
