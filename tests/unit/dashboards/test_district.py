"""One district's vital signs: the counts behind the cards, the drill-down link and map view,
the district page for known and unknown codes, and the 12345 / case reads per district."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import dash
import fakeredis
import flask
import pytest
import sqlalchemy as sa

from dashboards import context
from dashboards import district as drill
from dashboards.i18n import language
from dashboards.vitals import (
    alert_counts,
    cases_for,
    city_day_start,
    district_figures,
    summarise,
    tickets_for,
)
from geo.boundaries import district_geometries
from models import cases, tickets
from models.cases import OpenCases
from models.config import load_settings
from models.live import LiveStore
from models.schema import ObservationHourly
from models.tickets import DistrictTickets, SatisfactionStats
from tests.unit.dashboards.test_console import live_alert
from tests.unit.dashboards.test_vitals import NOW as STATE_NOW
from tests.unit.dashboards.test_vitals import state
from tests.unit.models.test_cases import OPERATOR, YUECHI, new_case
from tests.unit.models.test_tickets import add_ticket

T0 = datetime(2026, 7, 15, 2, 0, tzinfo=UTC)  # 10:00 in Guang'an


@pytest.fixture
def page_context(engine: sa.Engine) -> context.PageContext:
    """The real app over a fresh store and database (pages register only once an app exists)."""
    from app import create_app

    live = LiveStore(fakeredis.FakeRedis(decode_responses=True))
    create_app(load_settings({}), live=live, engine=engine)
    return context.current()


# ---- counts ------------------------------------------------------------------------------------


def test_alert_counts_by_severity_and_domain_for_the_city_and_one_district() -> None:
    alerts = [
        live_alert(1, "critical"),
        live_alert(2, "major", domain="ecology"),
        live_alert(3, "minor", district_code="511621", domain="urban"),
        live_alert(4, "major", district_code=None, domain="system"),
        live_alert(5, "info", acknowledged_at=T0, acknowledged_by="张三", state="acknowledged"),
    ]
    city = alert_counts(alerts, audible=frozenset({1, 2}))
    assert city.by_severity == {"critical": 1, "major": 2, "minor": 1, "info": 1}
    assert city.by_domain == {"emergency": 2, "urban": 1, "ecology": 1, "hotline": 0, "system": 1}
    assert (city.total, city.unacknowledged, city.audible) == (5, 4, 2)
    mine = alert_counts(alerts, "511602", audible=frozenset({1, 2, 3}))
    assert mine.by_severity == {"critical": 1, "major": 1, "minor": 0, "info": 1}
    assert (mine.total, mine.unacknowledged, mine.audible) == (3, 2, 2)
    assert alert_counts(alerts, "511681").total == 0


def test_city_tickets_and_cases_are_the_sum_of_every_district_and_the_unlocated() -> None:
    counts = {
        "511602": DistrictTickets(5, 3, 1, SatisfactionStats(2, 1, 1)),
        "未定位": DistrictTickets(1, 1, 0, SatisfactionStats(0, 0, 1)),
    }
    assert tickets_for(counts) == DistrictTickets(6, 4, 1, SatisfactionStats(2, 1, 2))
    assert tickets_for(counts, "511602").satisfaction.rate == 0.75
    assert tickets_for(counts, "511681") == DistrictTickets()  # nothing there: zeros, not an error
    open_cases = {"511602": OpenCases(4, 1), "511621": OpenCases(2, 2)}
    assert cases_for(open_cases) == OpenCases(6, 3)
    assert cases_for(open_cases, "511621") == OpenCases(2, 2)
    assert cases_for(open_cases, "511623") == OpenCases(0, 0)


def test_district_figures_carry_their_own_freshness() -> None:
    snapshot = summarise(
        [
            state("a", "511602", seen_ago=30, pm25=40.0),
            state("b", "511621", seen_ago=5, pm25=10.0),
        ],
        now=STATE_NOW,
    )
    guang_an = district_figures(snapshot, "511602")
    assert (guang_an.devices, guang_an.online, guang_an.newest_reading_age_s) == (1, 1, 30)
    assert district_figures(snapshot, "511681").newest_reading_age_s is None
    city = district_figures(snapshot, None)
    assert (city.devices, city.newest_reading_age_s) == (2, 5)


def test_today_starts_at_midnight_in_guang_an() -> None:
    # 23:30 UTC is 07:30 the next morning in Guang'an.
    start = city_day_start(datetime(2026, 7, 14, 23, 30, tzinfo=UTC))
    assert start.astimezone(UTC) == datetime(2026, 7, 14, 16, 0, tzinfo=UTC)


# ---- the reads per district --------------------------------------------------------------------


def test_12345_counts_per_district(engine: sa.Engine) -> None:
    today = city_day_start(T0)
    with engine.begin() as conn:
        add_ticket(conn, "T-NEW", ts=T0 - timedelta(hours=1), satisfaction="satisfied", state="closed")
        add_ticket(conn, "T-OPEN", ts=T0 - timedelta(hours=2))
        # Yesterday's order, still open and past its accept deadline (and its reply one):
        # overdue once, not counted as registered today.
        add_ticket(conn, "T-LATE", ts=T0 - timedelta(days=1), accept_due=T0 - timedelta(hours=3))
        add_ticket(conn, "T-NOWHERE", ts=T0 - timedelta(minutes=5), at=None, satisfaction="dissatisfied")
        add_ticket(conn, "T-MERGED", ts=T0 - timedelta(minutes=10), state="merged")
        add_ticket(conn, "T-YUECHI", ts=T0 - timedelta(minutes=20), district_code="511621", at=YUECHI)
        counts = tickets.district_counts(conn, today, T0, now=T0)
    assert set(counts) == {"511602", "511621", "未定位"}
    guang_an = counts["511602"]
    assert (guang_an.registered, guang_an.open, guang_an.overdue) == (2, 2, 1)
    assert guang_an.satisfaction == SatisfactionStats(1, 0, 0)
    assert counts["未定位"].satisfaction.dissatisfied == 1
    assert counts["511621"].registered == 1
    assert tickets_for(counts).registered == 4  # merged orders are not counted


def test_open_cases_per_district(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        parking = new_case(conn, category="illegal_parking")  # 2 h to handle
        cases.file_case(conn, parking.case_id, actor=OPERATOR, now=T0)
        cases.dispatch_case(conn, parking.case_id, actor=OPERATOR, now=T0)
        new_case(conn)  # reported only: open, no deadline running
        new_case(conn, at=YUECHI)
        closed = new_case(conn)
        cases.refuse_case(conn, closed.case_id, reason="不属于城管", actor=OPERATOR, now=T0)
        before = cases.open_by_district(conn, T0 + timedelta(hours=1))
        after = cases.open_by_district(conn, T0 + timedelta(hours=2))
    assert before == {"511602": OpenCases(2, 0), "511621": OpenCases(1, 0)}
    assert after["511602"] == OpenCases(2, 1)


def test_readings_per_hour_count_each_message_once(engine: sa.Engine) -> None:
    hours = [T0 - timedelta(hours=2), T0 - timedelta(hours=1), T0]
    h = ObservationHourly.__table__

    def row(device: str, metric: str, hour: datetime, count: int, district: str = "511602") -> dict:
        return {
            "device_id": device,
            "metric": metric,
            "hour": hour,
            "district_code": district,
            "grid_id": None,
            "count": count,
            "sum": 1.0 * count,
            "min": 1.0,
            "max": 1.0,
            "last_ts": hour,
            "last_value": 1.0,
        }

    with engine.begin() as conn:
        conn.execute(
            sa.insert(h),
            [
                row("air-1", "pm25", hours[0], 12),
                row("air-1", "pm10", hours[0], 12),  # same messages, another metric
                row("air-2", "pm25", hours[0], 6),
                row("air-1", "pm25", hours[2], 3),
                row("air-9", "pm25", hours[2], 50, district="511621"),
            ],
        )
        assert drill.readings_per_hour(conn, hours, "511602") == [18, 0, 3]
        assert drill.readings_per_hour(conn, hours, "511621") == [0, 0, 50]


# ---- the drill-down link, map and page ---------------------------------------------------------


def test_district_href_and_lookup() -> None:
    assert drill.district_href("511602") == "/districts/511602"
    assert drill.find_district("511602").name == "广安区"  # type: ignore[union-attr]
    assert drill.find_district(" 511681 ").name == "华蓥市"  # type: ignore[union-attr]
    for bad in ("999999", "", None, "<script>"):
        assert drill.find_district(bad) is None


def test_map_view_fits_the_district() -> None:
    geometries = district_geometries()
    for code, geometry in geometries.items():
        centre, zoom = drill.map_view(code, 900, 620)
        minx, miny, maxx, maxy = geometry.bounds
        assert minx < centre["lon"] < maxx and miny < centre["lat"] < maxy
        assert 8.5 < zoom < 11.5, (code, zoom)
    # 邻水县 is larger than 前锋区: it needs a wider view.
    assert drill.map_view("511623")[1] < drill.map_view("511603")[1]


def grid_fetch(code: str, query: str = "", headers: dict[str, str] | None = None) -> flask.Response:
    app = flask.Flask("grid")
    with app.test_request_context(f"/geo/grid/{code}.geojson{query}", headers=headers or {}):
        return drill.grid_response(code)


def test_grid_layer_holds_only_the_districts_cells() -> None:
    layer = drill.grid_layer("511681")
    assert layer["type"] == "line" and layer["sourcetype"] == "geojson"
    assert "symbol" not in json.dumps(layer)  # no text on the map: no glyphs fetched
    # The map fetches the cells by URL: the figure carries an address, not 500 KB of shapes.
    assert layer["source"] == f"/geo/grid/511681.geojson?v={drill.grid_version('511681')}"
    served = grid_fetch("511681", "?v=" + drill.grid_version("511681"))
    assert served.status_code == 200 and served.mimetype == "application/geo+json"
    cells = json.loads(served.get_data())["features"]
    assert {f["properties"]["district_code"] for f in cells} == {"511681"}
    assert len(cells) > 100 and all(f["geometry"]["type"] in ("Polygon", "MultiPolygon") for f in cells)


def test_grid_cells_are_kept_by_the_browser_while_their_digest_holds() -> None:
    version = drill.grid_version("511602")
    assert version != drill.grid_version("511681")
    current = grid_fetch("511602", f"?v={version}")
    assert current.headers["Cache-Control"] == drill.GRID_CACHE_CONTROL
    # A page drawn before a release names an older digest: today's cells, checked next time.
    older = grid_fetch("511602", "?v=0000")
    assert older.headers["Cache-Control"] == "no-cache" and older.get_data() == current.get_data()
    assert grid_fetch("511602", headers={"If-None-Match": f'"{version}"'}).status_code == 304
    missing = grid_fetch("999999")
    assert missing.status_code == 404 and b"999999" in missing.get_data()


def test_the_app_serves_grid_cells_to_a_session_only(page_context: context.PageContext) -> None:
    server = dash.get_app().server
    assert drill.GRID_PATH in {rule.rule for rule in server.url_map.iter_rules()}
    assert server.test_client().get(drill.grid_url("511602")).status_code == 401


def test_district_map_shows_one_district_its_devices_and_its_grid(page_context: context.PageContext) -> None:
    from dashboards.pages.overview import map_figure, map_updates

    states = [state("a", "511602", seen_ago=10, pm25=40.0), state("b", "511621", seen_ago=10, pm25=10.0)]
    snapshot = summarise(states, now=STATE_NOW)
    city = map_figure(snapshot, states, "aqi")
    assert list(city.data[0].locations) == ["511602", "511603", "511621", "511622", "511623", "511681"]
    assert not city.layout.map.layers
    one = map_figure(snapshot, states, "aqi", "511602")
    assert list(one.data[0].locations) == ["511602"]
    assert list(one.data[1].text) == ["a"]
    assert one.layout.map.layers[0].source == drill.grid_url("511602")
    assert one.layout.map.zoom > city.layout.map.zoom
    update = map_updates(snapshot, states, "511602")
    assert update["z"] == list(one.data[0].z) and update["text"] == ["a"]


def test_the_district_page_draws_the_overview_map_of_its_district_with_its_outline_only(
    page_context: context.PageContext,
) -> None:
    from dashboards.pages import district as page
    from dashboards.pages.overview import map_figure, map_updates

    states = [
        state("a", "511602", seen_ago=10, pm25=40.0),
        state("b", "511621", seen_ago=10, pm25=10.0),
        state("c", "511602", seen_ago=10_000),
    ]
    snapshot = summarise(states, now=STATE_NOW)
    overview = map_figure(snapshot, states, "aqi", "511602").to_plotly_json()
    drawn = page.district_map_figure(map_updates(snapshot, states, "511602"), "511602")
    assert drawn["layout"] == overview["layout"]
    assert drawn["data"][1] == overview["data"][1]
    assert drawn["data"][1]["text"] == ["a", "c"] and len(drawn["data"][1]["marker"]["color"]) == 2
    area = {k: v for k, v in drawn["data"][0].items() if k != "geojson"}
    assert area == {k: v for k, v in overview["data"][0].items() if k != "geojson"}
    # The area trace shows one district: the city's other five outlines are not sent.
    outline = drawn["data"][0]["geojson"]["features"]
    assert [f["properties"]["district_code"] for f in outline] == ["511602"]
    assert outline == [
        f for f in overview["data"][0]["geojson"]["features"] if f["properties"]["district_code"] == "511602"
    ]
    with language("en"):  # the frame is kept per language
        english = map_figure(snapshot, states, "aqi", "511602").to_plotly_json()
        drawn_en = page.district_map_figure(map_updates(snapshot, states, "511602"), "511602")
        assert drawn_en["layout"] == english["layout"] and drawn_en["data"][1] == english["data"][1]
    # Each render fills its own copy: the frame kept between renders is not changed.
    again = page.district_map_figure(map_updates(summarise([], now=STATE_NOW), [], "511602"), "511602")
    assert again["data"][1]["lon"] == [] and drawn["data"][1]["text"] == ["a", "c"]


def test_district_page_names_the_district_in_the_viewers_language(page_context: context.PageContext) -> None:
    from dashboards.pages import district as page

    text = json.dumps(page.layout(code="511602").to_plotly_json(), default=str, ensure_ascii=False)
    assert "广安区运行体征" in text
    assert page.title(code="511602") == "广安区运行体征 · 一网统管"
    with language("en"):
        text = json.dumps(page.layout(code="511602").to_plotly_json(), default=str, ensure_ascii=False)
        assert "Guang'an District: vital signs" in text


def test_unknown_district_gets_a_clear_message_not_a_traceback(page_context: context.PageContext) -> None:
    from dashboards.pages import district as page

    view = page.layout(code="<b>999999</b>")
    text = json.dumps(view.to_plotly_json(), default=str, ensure_ascii=False)
    assert "没有代码为 <b>999999</b> 的区县" in text  # shown as text by React, not markup
    assert all(f"/districts/{code}" in text for code in drill_codes())
    assert page.title(code="999999") == "区县运行体征"


def drill_codes() -> list[str]:
    return sorted(district_geometries())


def test_district_refresh_fills_every_panel(page_context: context.PageContext) -> None:
    from dashboards.pages import district as page

    page_context.live.register_device(
        "air-1",
        {"type": "air_quality", "name": "城南站", "lon": 106.63, "lat": 30.45, "district_code": "511602"},
    )
    out = page.refresh(None, None, "511602", False)
    assert len(out) == 11
    devices, figure, status, drawn = out[1], out[5], out[9], out[10]
    assert isinstance(drawn, str) and drawn
    assert devices == "0 / 1"
    assert figure["data"][0]["locations"] == ["511602"]
    assert "暂不可用" not in str(status)
    # Once the map is on screen, a refresh that changes nothing on it sends nothing ...
    again = page.refresh(1, None, "511602", drawn)
    assert again[5] is dash.no_update and again[10] == drawn
    # ... and one that does patches it instead of resending the grid cells: the colours
    # alone while the same devices show, the points too when they changed.
    colours = page.refresh(1, None, "511602", drawn.split(":")[0] + ":older")[5]
    assert type(colours).__name__ == "Patch"
    assert {tuple(op["location"])[:2] for op in colours.to_plotly_json()["operations"]} == {
        ("data", 0),
        ("data", 1),
    }
    assert ("data", 1, "lon") not in {tuple(op["location"]) for op in colours.to_plotly_json()["operations"]}
    page_context.live.register_device(
        "air-2",
        {"type": "air_quality", "name": "城北站", "lon": 106.64, "lat": 30.48, "district_code": "511602"},
    )
    points = page.refresh(1, None, "511602", drawn)[5]
    assert ("data", 1, "lon") in {tuple(op["location"]) for op in points.to_plotly_json()["operations"]}


def test_the_overview_marks_its_reading_panels_stale_when_the_city_feed_goes_silent(
    page_context: context.PageContext,
) -> None:
    import time

    from dashboards.i18n import t
    from dashboards.pages import overview

    assert overview.age_text(None, 120) == t("kpi.freshness_none"), "never fed is waiting, not silent"
    assert overview.age_text(30, 120) == t("unit.seconds_ago", n=30)
    assert overview.age_text(150, 120) == t("kpi.silent_minutes", n=2)
    assert overview.age_text(30, 5) == t("kpi.silent_seconds", n=30)
    assert not overview.feed_silent(None, 5) and not overview.feed_silent(5, 5)

    live = page_context.live
    live.register_device(
        "air-1",
        {"type": "air_quality", "name": "城南站", "lon": 106.63, "lat": 30.45, "district_code": "511602"},
    )
    last_seen = "cityops:devices:last_seen"
    live.redis.zadd(last_seen, {"air-1": time.time() - 10})
    fresh = overview.refresh(None, None, "aqi")
    assert fresh[-4:] == ("kpi-row", "panel", "panel", "panel")
    assert fresh[4] in {t("unit.seconds_ago", n=n) for n in (10, 11, 12)}
    # Ten minutes without a reading: longer than the default limit of two minutes.
    live.redis.zadd(last_seen, {"air-1": time.time() - 600})
    silent = overview.refresh(None, None, "aqi")
    assert silent[-4:] == ("kpi-row stale", "panel stale", "panel stale", "panel stale")
    assert silent[4] == t("kpi.silent_minutes", n=10)
    assert "中断" in str(silent[8])


def test_read_inputs_keeps_the_live_half_when_the_database_is_away(engine: sa.Engine) -> None:
    from dashboards.vitals import read_inputs

    live = LiveStore(fakeredis.FakeRedis(decode_responses=True))
    with engine.begin() as conn:
        add_ticket(conn, "T-1", ts=T0 - timedelta(minutes=5))
    ok = read_inputs(live, engine, T0)
    assert ok.database_error is None and ok.tickets["511602"].registered == 1
    broken = sa.create_engine("sqlite:////nonexistent-dir/cityops.sqlite3")
    away = read_inputs(live, broken, T0)
    assert away.database_error == "OperationalError"
    assert (away.tickets, away.cases, away.states) == ({}, {}, [])
