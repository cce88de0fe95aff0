"""The Open311 endpoints over the embedded backend: formats, errors in the requested format,
POST through the ingest pipeline, and nothing stored from a bad request."""

from __future__ import annotations

import json
import logging
import xml.etree.ElementTree as ET
from datetime import timedelta

import pytest
import sqlalchemy as sa

from models import tickets
from models.clock import utc_now
from models.schema import DeadLetter, HotlineTicket, TicketEvent
from tests.unit.dashboards.api.conftest import API_KEY, Api

INSIDE = {"lat": "30.4562", "long": "106.6337"}  # 广安区, WGS-84


def create(api: Api, fmt: str = "json", **fields: str):
    data = {"api_key": API_KEY, "service_code": "noise", **INSIDE, "description": "夜间施工噪声\n请处理"}
    data.update(fields)
    return api.client.post(
        f"/open311/v2/requests.{fmt}", data={k: v for k, v in data.items() if v is not None}
    )


def counts(api: Api) -> tuple[int, int]:
    with api.context.engine.connect() as conn:
        n_tickets = conn.execute(sa.select(sa.func.count()).select_from(HotlineTicket.__table__)).scalar_one()
        n_dead = conn.execute(sa.select(sa.func.count()).select_from(DeadLetter.__table__)).scalar_one()
    return n_tickets, n_dead


def test_discovery_and_services_in_both_formats(api: Api) -> None:
    doc = api.client.get("/open311/v2/discovery.json")
    assert doc.status_code == 200 and doc.content_type == "application/json; charset=utf-8"
    assert doc.json["endpoints"][0]["url"] == "http://localhost/open311/v2"
    xml = api.client.get("/open311/v2/discovery.xml")
    assert xml.content_type == "text/xml; charset=utf-8"
    assert (
        ET.fromstring(xml.data).findtext("endpoints/endpoint/specification")
        == "http://wiki.open311.org/GeoReport_v2"
    )

    services = api.client.get("/open311/v2/services.json").json
    assert any(s["service_code"] == "noise" and s["service_name"] == "噪声扰民" for s in services)
    root = ET.fromstring(api.client.get("/open311/v2/services.xml").data)
    assert len(root.findall("service")) == len(services)
    definition = api.client.get("/open311/v2/services/noise.xml")
    assert ET.fromstring(definition.data).findtext("service_code") == "noise"


def test_errors_come_in_the_requested_format(api: Api) -> None:
    missing = api.client.get("/open311/v2/services/graffiti.json")
    assert missing.status_code == 404
    assert missing.json == [{"code": 404, "description": "service_code 'graffiti' not found"}]
    bad = api.client.get("/open311/v2/requests.xml?status=pending")
    assert bad.status_code == 400 and bad.content_type == "text/xml; charset=utf-8"
    assert ET.fromstring(bad.data).findtext("error/code") == "400"
    unknown = api.client.get("/open311/v2/complaints.json")
    assert unknown.status_code == 404 and unknown.json[0]["code"] == 404
    assert api.client.get("/open311/v2/requests/NOPE.xml").status_code == 404
    assert api.client.get("/open311/v2/tokens/" + "0" * 32).status_code == 404


def test_post_creates_a_registered_work_order_through_the_ingest_path(api: Api) -> None:
    response = create(
        api, first_name="三", last_name="张", phone="13812345678", **{"attribute[urgency]": "urgent"}
    )
    assert response.status_code == 200, response.data
    (answer,) = response.json
    request_id = answer["service_request_id"]
    assert request_id.startswith("O311-") and "token" not in answer

    with api.context.engine.connect() as conn:
        row = (
            conn.execute(
                sa.select(HotlineTicket.__table__).where(HotlineTicket.__table__.c.ticket_id == request_id)
            )
            .mappings()
            .one()
        )
        events = (
            conn.execute(
                sa.select(TicketEvent.__table__.c.action).where(
                    TicketEvent.__table__.c.ticket_id == request_id
                )
            )
            .scalars()
            .all()
        )
    # What ingest does for every new order: located, deadlines set, dispatch suggested, 受理 recorded.
    assert row["state"] == "registered" and row["channel"] == "app" and row["urgency"] == "urgent"
    assert row["district_code"] == "511602" and row["grid_id"]
    assert row["accept_due"] is not None and row["suggested_department"] == "环保"
    assert row["caller_name"] == "张三" and row["caller_phone"] == "13812345678"
    assert events == ["register"]
    # The live state has the order, never the caller.
    (live_row,) = api.context.live.recent("tickets", 5)
    assert live_row["ticket_id"] == request_id and "caller_phone" not in live_row

    public = api.client.get(f"/open311/v2/requests/{request_id}.json").json[0]
    assert public["status"] == "open" and public["service_code"] == "noise"
    assert "13812345678" not in json.dumps(public) and "张三" not in json.dumps(public, ensure_ascii=False)
    token = request_id.removeprefix("O311-")
    assert api.client.get(f"/open311/v2/tokens/{token}.json").json == [
        {"service_request_id": request_id, "token": token}
    ]
    assert (
        ET.fromstring(api.client.get(f"/open311/v2/tokens/{token}").data).findtext("request/token") == token
    )


def test_the_hotline_lifecycle_takes_over_an_open311_order(api: Api) -> None:
    request_id = create(api).json[0]["service_request_id"]
    with api.context.engine.begin() as conn:
        tickets.dispatch(conn, request_id, department="环保", actor="12345", address=None, now=utc_now())
    public = api.client.get(f"/open311/v2/requests/{request_id}.xml")
    request = ET.fromstring(public.data).find("request")
    assert request.findtext("status") == "open"
    assert request.findtext("status_notes").startswith("已派单至环保")
    assert request.findtext("agency_responsible") == "环保"


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"api_key": None}, 403),
        ({"api_key": "not-the-key-at-all-xx"}, 403),
        ({"service_code": "graffiti"}, 404),
        ({"lat": "29.0"}, 400),
        ({"lat": None, "long": None}, 400),
        ({"description": "字" * 4001}, 400),
        ({"unexpected": "1"}, 400),
    ],
)
def test_bad_posts_store_nothing(api: Api, fields: dict[str, str | None], status: int) -> None:
    response = create(api, "xml", **fields)
    assert response.status_code == status
    assert ET.fromstring(response.data).findtext("error/code") == str(status)
    assert counts(api) == (0, 0), "neither a work order nor a dead letter"


def test_oversized_or_non_form_posts_are_refused_before_parsing(api: Api) -> None:
    big = api.client.post(
        "/open311/v2/requests.json",
        data=b"api_key=" + API_KEY.encode() + b"&description=" + b"x" * (70 * 1024),
        content_type="application/x-www-form-urlencoded",
    )
    assert big.status_code == 400 and "Content-Length" in big.json[0]["description"]
    as_json = api.client.post("/open311/v2/requests.json", json={"api_key": API_KEY, "service_code": "noise"})
    assert as_json.status_code == 400 and "x-www-form-urlencoded" in as_json.json[0]["description"]
    assert counts(api) == (0, 0)


def test_the_api_key_never_reaches_the_log(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        assert create(api).status_code == 200
        assert create(api, api_key="wrong-key-wrong-key-1").status_code == 403
    assert caplog.records, "creating is logged"
    assert all(API_KEY not in r.getMessage() and "wrong-key" not in r.getMessage() for r in caplog.records)


def test_get_requests_filters_by_id_code_status_and_dates(api: Api) -> None:
    noise = create(api).json[0]["service_request_id"]
    water = create(api, service_code="water_supply", description="停水").json[0]["service_request_id"]
    closed = create(api, service_code="other", description="积水").json[0]["service_request_id"]
    with api.context.engine.begin() as conn:
        conn.execute(
            sa.update(HotlineTicket.__table__)
            .where(HotlineTicket.__table__.c.ticket_id == closed)
            .values(state="closed", closed_at=utc_now())
        )

    def ids(query: str) -> list[str]:
        response = api.client.get(f"/open311/v2/requests.json{query}")
        assert response.status_code == 200, response.data
        return [r["service_request_id"] for r in response.json]

    assert set(ids("")) == {noise, water, closed}
    assert ids("?service_code=water_supply") == [water]
    assert set(ids("?service_code=noise,other")) == {noise, closed}
    assert ids("?status=closed") == [closed]
    assert set(ids("?status=open")) == {noise, water}
    assert set(ids(f"?service_request_id={noise},{closed}&status=open")) == {noise, closed}
    past = (utc_now() - timedelta(days=200)).isoformat()
    assert ids(f"?end_date={past.replace('+', '%2B')}") == []


def test_a_storage_failure_is_the_specs_general_service_error(api: Api) -> None:
    import flask

    from dashboards.api import open311 as open311_api

    class Broken:
        def store(self, messages):
            raise ConnectionError("database went away")

    server = flask.Flask("broken-storage")
    server.register_blueprint(open311_api.blueprint(api.context, pipeline_factory=Broken))
    response = server.test_client().post(
        "/open311/v2/requests.json",
        data={"api_key": API_KEY, "service_code": "noise", **INSIDE, "description": "x"},
    )
    assert response.status_code == 400
    assert response.json[0]["description"].startswith("general service error")
    assert counts(api) == (0, 0)
