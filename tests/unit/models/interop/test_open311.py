"""Open311 GeoReport v2 mapping: services, the lifecycle onto open/closed, the GET filters
and their defaults, strict POST checks, the spec's XML and JSON, and no caller data."""

from __future__ import annotations

import dataclasses
import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest

from models.interop import open311
from models.interop.open311 import Open311Error
from models.tickets import CATEGORY_DEPARTMENTS, TicketState, TicketView

NOW = datetime(2026, 7, 15, 2, 30, tzinfo=UTC)
KEY = "k" * 24
INSIDE = (106.6337, 30.4562)  # 广安区


def ticket(**changes: object) -> TicketView:
    base = TicketView(
        ticket_id="T1",
        ts=NOW - timedelta(hours=3),
        channel="phone",
        category="噪声扰民",
        title="夜间施工噪声扰民",
        content="工地夜间施工，请回电 13812345678",
        address="建设路 12 号",
        lon=106.6337,
        lat=30.4562,
        district_code="511602",
        grid_id=None,
        urgency="normal",
        caller_name_masked="张*",
        caller_phone_masked="138****5678",
        state="registered",
        department=None,
        handling_district_code=None,
        suggested_department="环保",
        accept_due=NOW + timedelta(hours=21),
        reply_due=NOW + timedelta(days=4),
        close_due=NOW + timedelta(days=5),
        dispatched_at=None,
        accepted_at=None,
        replied_at=None,
        closed_at=None,
        followed_up_at=None,
        satisfaction=None,
        supervised=False,
        extension_state=None,
        extension_until=None,
        return_count=0,
        repeat_of=None,
        likely_repeat_of=None,
        likely_repeat_distance_m=None,
        version=1,
    )
    return dataclasses.replace(base, **changes)


# ---- services --------------------------------------------------------------------------------


def test_every_category_with_a_department_is_a_service_plus_other() -> None:
    services = open311.service_list()
    by_name = {s["service_name"]: s for s in services}
    assert set(by_name) == set(CATEGORY_DEPARTMENTS) | {"其他"}
    assert by_name["噪声扰民"]["service_code"] == "noise"
    assert by_name["噪声扰民"]["group"] == "环保"
    assert all(s["type"] == "realtime" and s["metadata"] is True for s in services)
    assert len({s["service_code"] for s in services}) == len(services)
    assert all(s["service_code"].isascii() for s in services), "codes go into URL paths"


def test_service_definition_offers_urgency_and_unknown_code_is_404() -> None:
    definition = open311.service_definition("noise")
    (attribute,) = definition["attributes"]
    assert attribute["code"] == "urgency" and attribute["datatype"] == "singlevaluelist"
    assert [v["key"] for v in attribute["values"]] == ["normal", "urgent"]
    with pytest.raises(Open311Error) as info:
        open311.service_definition("nope")
    assert info.value.status == 404


# ---- lifecycle → open/closed -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "status", "note"),
    [
        ("registered", "open", "已受理，待派单 / registered, awaiting dispatch"),
        ("dispatched", "open", "已派单至城管 / dispatched to 城管"),
        ("accepted", "open", "城管已签收 / accepted by 城管"),
        ("in_progress", "open", "城管办理中 / being handled by 城管"),
        ("extension_requested", "open", "城管办理中，已申请延期"),
        ("returned", "open", "承办部门退单，待重新派单"),
        ("replied", "open", "已答复，待办结 / replied to the caller, awaiting closure"),
        ("closed", "closed", "已办结 / closed"),
        ("followed_up", "closed", "已办结并回访（满意） / closed and followed up (satisfied)"),
        ("merged", "closed", "重复件，已合并到 T0 / duplicate of T0"),
    ],
)
def test_every_lifecycle_state_maps_to_open_or_closed_with_notes(state: str, status: str, note: str) -> None:
    view = ticket(state=state, department="城管", satisfaction="satisfied", repeat_of="T0")
    got_status, got_note = open311.status_of(view)
    assert got_status == status
    assert note in got_note


def test_lifecycle_states_are_all_covered() -> None:
    seen = {open311.status_of(ticket(state=s.value, repeat_of="T0"))[1].split(" / ")[0] for s in TicketState}
    assert len(seen) == len(TicketState), "each state has its own note"


def test_supervision_and_extension_show_in_the_notes() -> None:
    until = NOW + timedelta(days=3)
    _status, note = open311.status_of(
        ticket(
            state="in_progress",
            department="水务",
            supervised=True,
            extension_state="approved",
            extension_until=until,
        )
    )
    assert "督办件" in note and "under supervision" in note
    assert "已延期至" in note and open311.w3_time(until) in note


def test_a_request_never_carries_the_caller_and_masks_numbers_in_the_text() -> None:
    record = open311.request_record(ticket(), updated_at=NOW)
    flat = json.dumps(record, ensure_ascii=False)
    assert "13812345678" not in flat and "138****5678" in record["description"]
    assert "张" not in flat and "caller" not in flat
    assert record["service_code"] == "noise" and record["service_name"] == "噪声扰民"
    assert record["status"] == "open"
    assert record["requested_datetime"] == "2026-07-15T07:30:00+08:00"
    assert record["expected_datetime"] == open311.w3_time(NOW + timedelta(days=5))
    assert record["lat"] == 30.4562 and record["long"] == 106.6337
    assert set(record) >= {
        "service_request_id",
        "status_notes",
        "agency_responsible",
        "service_notice",
        "updated_datetime",
        "address",
        "address_id",
        "zipcode",
        "media_url",
    }


def test_closed_requests_are_updated_when_closed_and_other_categories_map_to_other() -> None:
    closed_at = NOW - timedelta(hours=1)
    record = open311.request_record(ticket(state="closed", closed_at=closed_at, category="积水内涝"), NOW)
    assert record["updated_datetime"] == open311.w3_time(closed_at)
    assert record["service_code"] == "other" and record["service_name"] == "积水内涝"
    assert record["service_notice"] is None


def test_redact_masks_mobile_and_id_numbers_but_not_other_digits() -> None:
    assert open311.redact("电话13812345678。") == "电话138****5678。"
    assert open311.redact("身份证 51160219900101123X") == "身份证 511602********123X"
    assert open311.redact("建设路 12 号 3 单元，邮编 638000") == "建设路 12 号 3 单元，邮编 638000"
    assert open311.redact("订单 2138123456789") == "订单 2138123456789", "longer digit runs are not phones"


# ---- GET filters -----------------------------------------------------------------------------


def q(**params: str) -> dict[str, list[str]]:
    return {k: [v] for k, v in params.items()}


def test_query_defaults_to_the_last_90_days_and_1000_requests() -> None:
    query = open311.parse_query({}, now=NOW)
    assert (query.start, query.end, query.limit) == (NOW - timedelta(days=90), NOW, 1000)
    assert query.statuses == () and query.service_codes == ()


def test_query_lists_and_dates() -> None:
    query = open311.parse_query(
        q(
            service_code="noise,other",
            status="open",
            start_date="2026-07-01T00:00:00Z",
            end_date="2026-07-10T00:00:00+08:00",
        ),
        now=NOW,
    )
    assert query.service_codes == ("noise", "other") and query.statuses == ("open",)
    assert query.start == datetime(2026, 7, 1, tzinfo=UTC)
    assert query.end == datetime(2026, 7, 9, 16, tzinfo=UTC)
    # A '+' decoded to a space in a query string still reads as the offset.
    assert open311.parse_query(q(start_date="2026-07-01T08:00:00 08:00"), now=NOW).start == datetime(
        2026, 7, 1, tzinfo=UTC
    )
    # Only a start: 90 days on from it, but not past now.
    assert open311.parse_query(q(start_date="2026-07-01T00:00:00Z"), now=NOW).end == NOW


def test_service_request_ids_override_every_other_filter() -> None:
    query = open311.parse_query(q(service_request_id="A1,B2", status="bogus"), now=NOW)
    assert query.ids == ("A1", "B2") and query.start is None


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (q(status="pending"), "status"),
        (q(service_code="nope"), "service_code"),
        (q(start_date="yesterday"), "start_date"),
        (q(start_date="2026-07-01T00:00:00"), "offset"),
        (q(start_date="2026-07-10T00:00:00Z", end_date="2026-07-01T00:00:00Z"), "after"),
        (q(start_date="2026-01-01T00:00:00Z", end_date="2026-07-01T00:00:00Z"), "90 days"),
        (q(service_request_id="bad id!"), "service_request_id"),
    ],
)
def test_bad_filters_are_400_with_a_description(params: dict[str, list[str]], message: str) -> None:
    with pytest.raises(Open311Error) as info:
        open311.parse_query(params, now=NOW)
    assert info.value.status == 400
    assert message in info.value.errors[0][1]


def test_another_jurisdiction_is_404() -> None:
    with pytest.raises(Open311Error) as info:
        open311.parse_query(q(jurisdiction_id="sfgov.org"), now=NOW)
    assert info.value.status == 404
    assert open311.parse_query(q(jurisdiction_id="511600"), now=NOW).end == NOW


# ---- POST ------------------------------------------------------------------------------------


def form(**fields: str) -> dict[str, list[str]]:
    base = {
        "api_key": KEY,
        "service_code": "noise",
        "lat": str(INSIDE[1]),
        "long": str(INSIDE[0]),
        "description": "建设路工地夜间施工\n噪声很大，影响休息",
    }
    base.update(fields)
    return {k: [v] for k, v in base.items() if v is not None}


def post(data: dict[str, list[str]]) -> open311.NewRequest:
    return open311.parse_post(data, now=NOW, api_keys=frozenset({KEY}), inside_city=lambda lon, lat: lat > 30)


def test_post_builds_the_hotline_payload() -> None:
    new = post(
        form(first_name="三", last_name="张", phone="138 1234 5678", **{"attribute[urgency]": "urgent"})
    )
    payload = new.payload
    assert payload["ticket_id"] == new.service_request_id == open311.TICKET_PREFIX + new.token
    assert len(new.service_request_id) <= 32, "hotline_tickets.ticket_id holds 32 characters"
    assert payload["category"] == "噪声扰民" and payload["channel"] == "app"
    assert payload["title"] == "建设路工地夜间施工", "the first line of the description"
    assert payload["content"] == "建设路工地夜间施工\n噪声很大，影响休息"
    assert (payload["lon"], payload["lat"]) == INSIDE
    assert payload["urgency"] == "urgent"
    assert payload["caller"] == {"name": "张三", "phone": "138 1234 5678"}
    assert datetime.fromisoformat(payload["ts"]) == NOW
    assert open311.token_of(new.service_request_id) == new.token
    assert "service_request_id" in new.response() and "token" not in new.response()


def test_post_with_address_only_and_media_and_other_service() -> None:
    new = post(
        form(
            service_code="other",
            lat=None,
            long=None,
            address_string="奎阁街道万盛街 8 号",
            media_url="https://x.cn/a.jpg",
        )
    )
    assert new.payload["category"] == "其他"
    assert new.payload["address"] == "奎阁街道万盛街 8 号" and "lon" not in new.payload
    assert new.payload["content"].endswith("附件 / media: https://x.cn/a.jpg")
    assert "caller" not in new.payload


@pytest.mark.parametrize(
    ("fields", "status", "message"),
    [
        ({"api_key": None}, 403, "api_key is missing"),
        ({"api_key": "wrong" * 5}, 403, "invalid api_key"),
        ({"service_code": None}, 400, "service_code was not provided"),
        ({"service_code": "graffiti"}, 404, "service_code"),
        ({"jurisdiction_id": "city.gov"}, 404, "jurisdiction_id"),
        ({"lat": None}, 400, "together"),
        ({"lat": None, "long": None}, 400, "location is required"),
        ({"lat": "abc"}, 400, "lat must be a number"),
        ({"lat": "nan"}, 400, "between"),
        ({"lat": "95"}, 400, "between"),
        ({"lat": "29.0"}, 400, "outside Guang'an"),
        ({"address_id": "545483"}, 400, "address_id is not supported"),
        ({"description": "x" * 4001}, 400, "4000"),
        ({"description": "bad\x00byte"}, 400, "control"),
        ({"address_string": "a" * 201}, 400, "address_string is longer"),
        ({"first_name": "张\n三"}, 400, "line breaks"),
        ({"phone": "call me"}, 400, "phone"),
        ({"email": "nobody"}, 400, "email"),
        ({"media_url": "javascript:alert(1)"}, 400, "media_url"),
        ({"attribute[urgency]": "panic"}, 400, "urgency"),
        ({"colour": "red"}, 400, "unknown parameter"),
        ({"description": "x" * 3990, "media_url": "https://x.cn/long/path.jpg"}, 400, "together exceed"),
    ],
)
def test_bad_posts_are_refused_with_the_spec_status(
    fields: dict[str, str | None], status: int, message: str
) -> None:
    with pytest.raises(Open311Error) as info:
        post(form(**fields))
    assert info.value.status == status
    assert message in info.value.errors[0][1]


def test_a_repeated_parameter_is_refused_and_empty_means_absent() -> None:
    data = form()
    data["service_code"] = ["noise", "garbage"]
    with pytest.raises(Open311Error, match="more than once"):
        post(data)
    # "Optional" arguments: empty is the same as absent (the spec's definition).
    assert "address" not in post(form(address_string="  ")).payload


def test_no_keys_configured_refuses_every_post() -> None:
    with pytest.raises(Open311Error) as info:
        open311.parse_post(form(), now=NOW, api_keys=frozenset())
    assert info.value.status == 403


# ---- rendering -------------------------------------------------------------------------------


def test_xml_and_json_follow_the_spec_shapes() -> None:
    records = [open311.request_record(ticket(), NOW)]
    xml = open311.render("xml", "service_requests", records)
    assert xml.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    root = ET.fromstring(xml)
    assert root.tag == "service_requests"
    (request,) = root.findall("request")
    assert request.findtext("service_request_id") == "T1"
    assert request.findtext("status") == "open"
    assert request.find("zipcode") is not None and request.findtext("zipcode") == ""
    assert request.findtext("long") == "106.6337"
    assert json.loads(open311.render("json", "service_requests", records)) == json.loads(
        json.dumps(records, ensure_ascii=False)
    )
    definition = ET.fromstring(
        open311.render("xml", "service_definition", open311.service_definition("noise"))
    )
    assert [v.findtext("key") for v in definition.findall("attributes/attribute/values/value")] == [
        "normal",
        "urgent",
    ]
    assert definition.findtext("attributes/attribute/required") == "false"


def test_errors_are_a_list_of_code_and_description_in_both_formats() -> None:
    error = Open311Error(400, "service_code was not provided", "lat and long must be sent together")
    assert json.loads(open311.render_errors("json", error)) == [
        {"code": 400, "description": "service_code was not provided"},
        {"code": 400, "description": "lat and long must be sent together"},
    ]
    root = ET.fromstring(open311.render_errors("xml", error))
    assert root.tag == "errors"
    assert [(e.findtext("code"), e.findtext("description")) for e in root.findall("error")] == [
        ("400", "service_code was not provided"),
        ("400", "lat and long must be sent together"),
    ]


def test_discovery_names_the_spec_and_both_formats() -> None:
    doc = open311.discovery("http://h/open311/v2", changeset="c", contact="x", key_service="y")
    (endpoint,) = doc["endpoints"]
    assert endpoint["specification"] == "http://wiki.open311.org/GeoReport_v2"
    assert endpoint["formats"] == ["text/xml", "application/json"]
    root = ET.fromstring(open311.render("xml", "discovery", doc))
    assert [f.text for f in root.findall("endpoints/endpoint/formats/format")] == [
        "text/xml",
        "application/json",
    ]
