"""The daily briefing: a seeded day's figures counted within 00:00–24:00 city time, its
charts and its PNG."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa

from dashboards import briefing as br
from dashboards.context import PageContext
from dashboards.i18n import language
from models import alerts, incidents
from models.air_quality import day_hours
from models.clock import CITY_TZ
from models.config import load_settings
from models.lifecycle import Actor
from models.schema import HotlineTicket, Incident, ObservationHourly
from models.standards import aqi
from tests.unit.dashboards.api.conftest import live  # noqa: F401
from tests.unit.models.interop.test_cap import draft

DAY = date(2026, 11, 24)
#: Midnight between the briefing's day and the next, city time (16:00 UTC on the 24th).
MIDNIGHT = datetime(2026, 11, 25, tzinfo=CITY_TZ)
START = datetime(2026, 11, 24, tzinfo=CITY_TZ)
NOW = datetime(2026, 11, 25, 9, 0, tzinfo=CITY_TZ)
LAST_MINUTE = MIDNIGHT - timedelta(minutes=1)
OFFICER = Actor("li", role="duty_officer", display_name="李四")
GUANG_AN, LINSHUI = "511602", "511623"


@pytest.fixture
def ctx(tmp_path, engine, live) -> PageContext:  # noqa: F811
    return PageContext(settings=load_settings({"CITYOPS_DATA_DIR": str(tmp_path)}), live=live, engine=engine)


def ticket(conn: sa.Connection, ticket_id: str, ts: datetime, **more: object) -> None:
    row = {
        "ticket_id": ticket_id,
        "ts": ts,
        "channel": "phone",
        "category": "噪声扰民",
        "title": "t",
        "content": "c",
        "district_code": GUANG_AN,
        "state": "registered",
    }
    conn.execute(sa.insert(HotlineTicket.__table__), {**row, **more})


def test_the_day_is_midnight_to_midnight_city_time() -> None:
    window = br.DayWindow.of(DAY)
    assert window.start == START and window.end == MIDNIGHT
    assert window.start.astimezone(UTC) == datetime(2026, 11, 23, 16, 0, tzinfo=UTC)
    # 00:30 on the 25th in Guang'an is still the 24th in UTC: the default is the city's yesterday.
    assert br.yesterday(datetime(2026, 11, 24, 16, 30, tzinfo=UTC)) == DAY
    assert br.parse_day(None, NOW) == DAY and br.parse_day("2026-11-20", NOW) == date(2026, 11, 20)
    for bad in ("2026-11-26", "24.11.2026"):
        with pytest.raises(ValueError):
            br.parse_day(bad, NOW)


def test_alerts_at_the_edges_of_the_day(ctx) -> None:
    with ctx.engine.begin() as conn:
        first = alerts.raise_alert(conn, draft("first", "critical"), now=START).alert.id
        alerts.raise_alert(conn, draft("last", "major", domain="urban"), now=LAST_MINUTE)
        alerts.raise_alert(conn, draft("next-day", "critical"), now=MIDNIGHT)
        alerts.raise_alert(conn, draft("day-before", "minor"), now=START - timedelta(seconds=1))
        alerts.raise_alert(
            conn, draft("elsewhere", "minor", district_code=LINSHUI), now=START + timedelta(hours=3)
        )
        alerts.mark_false_alarm(conn, first, actor=OFFICER, address=None, now=LAST_MINUTE)

    city = br.read_briefing(ctx, DAY, now=NOW)
    assert city.alerts.raised_by_severity == {"critical": 1, "major": 1, "minor": 1, "info": 0}
    assert city.alerts.raised_by_domain["emergency"] == 2 and city.alerts.raised_by_domain["urban"] == 1
    assert city.alerts.closed_by_severity == {"critical": 1, "major": 0, "minor": 0, "info": 0}
    assert city.alerts.closed_by_domain["emergency"] == 1 and sum(city.alerts.closed_by_domain.values()) == 1
    scoped = br.read_briefing(ctx, DAY, district_code=LINSHUI, now=NOW)
    assert scoped.alerts.raised == 1 and scoped.alerts.closed == 0
    assert scoped.area_name == "邻水县" and list(scoped.aqi_by_district) == [LINSHUI]


def test_incidents_opened_and_closed_in_the_day(ctx) -> None:
    with ctx.engine.begin() as conn:
        ids = [
            incidents.open_incident(
                conn,
                incident_type_key="fire",
                title=f"火情 {i}",
                lon=106.6337,
                lat=30.4562,
                actor=OFFICER,
                now=at,
            ).incident.incident_id
            for i, at in enumerate((LAST_MINUTE, MIDNIGHT, START - timedelta(hours=1)))
        ]
        table = Incident.__table__
        conn.execute(
            sa.update(table).where(table.c.incident_id == ids[2]).values(state="closed", closed_at=START)
        )
    figures = br.read_briefing(ctx, DAY, now=NOW).incidents
    assert (figures.opened, figures.closed) == (1, 1)


def test_hotline_figures_of_the_day(ctx) -> None:
    with ctx.engine.begin() as conn:
        ticket(conn, "T-LAST", LAST_MINUTE, satisfaction="satisfied", closed_at=LAST_MINUTE, state="closed")
        ticket(conn, "T-FIRST", START, satisfaction="dissatisfied", category="道路破损")
        ticket(conn, "T-NEXT", MIDNIGHT, satisfaction="satisfied")
        ticket(
            conn,
            "T-BEFORE",
            START - timedelta(minutes=1),
            closed_at=START + timedelta(hours=2),
            state="closed",
        )
        ticket(conn, "T-LS", START + timedelta(hours=5), district_code=LINSHUI)

    b = br.read_briefing(ctx, DAY, now=NOW)
    assert b.tickets.received == 3
    assert b.tickets.closed == 2, "closed in the day, whenever it was received"
    assert (b.tickets.satisfaction.rated, b.tickets.satisfaction.rate) == (2, 0.5)
    assert b.tickets.by_hour is not None and b.tickets.by_hour["23"] == 1 and b.tickets.by_hour["00"] == 1
    assert sum(b.tickets.by_hour.values()) == 3
    assert dict(b.tickets.top_categories) == {"噪声扰民": 2, "道路破损": 1}
    scoped = br.read_briefing(ctx, DAY, district_code=LINSHUI, now=NOW)
    # A district's briefing: its own orders in every figure.
    assert scoped.tickets.received == 1 and sum(scoped.tickets.by_hour.values()) == 1
    assert scoped.tickets.by_hour["05"] == 1 and dict(scoped.tickets.top_categories) == {"噪声扰民": 1}


def test_daily_aqi_per_district_from_the_hourly_rollups(ctx) -> None:
    rows = [
        {
            "device_id": "aq-ga-1",
            "metric": "pm25",
            "hour": hour,
            "district_code": GUANG_AN,
            "count": 2,
            "sum": 150.0,  # two readings, 75 µg/m³ on average
            "min": 70.0,
            "max": 80.0,
            "last_ts": hour + timedelta(minutes=30),
            "last_value": 75.0,
        }
        for hour in day_hours(DAY)
    ]
    with ctx.engine.begin() as conn:
        conn.execute(sa.insert(ObservationHourly.__table__), rows)
    b = br.read_briefing(ctx, DAY, now=NOW)
    ga = b.aqi_by_district[GUANG_AN]
    expected = aqi.daily_from_hourly({"pm25": [75.0] * 24}, on=DAY)
    assert ga is not None and ga.concentrations == {"pm25": 75.0}, "the day's 24 hourly means, sum / count"
    assert (ga.aqi, ga.category, ga.primary) == (expected.aqi, expected.category, ("pm25",))
    assert b.aqi_by_district[LINSHUI] is None, "no data: no index"
    assert b.aqi_city is not None and b.aqi_city.aqi == expected.aqi
    assert br.aqi_text(ga) == f"{expected.aqi} {expected.category}"


def test_key_figures_charts_and_png(ctx) -> None:
    with ctx.engine.begin() as conn:
        alerts.raise_alert(conn, draft("a", "critical"), now=START + timedelta(hours=8))
    b = br.read_briefing(ctx, DAY, now=NOW)
    labels = dict(br.key_figures(b))
    assert labels["新增告警"] == "1" and labels["设备在线率（当前）"] == "—"
    figures = br.briefing_figures(b)
    assert len(figures) == 3
    assert list(figures[1].data[0].y) == [1, 0, 0, 0]

    png = br.render_png(b)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert width == 1240 and abs(height / width - 2**0.5) < 0.01
    with language("en"):
        assert br.title_text(b) == "Guang'an daily operations briefing · 2026-11-24"


def test_without_a_cjk_font_the_png_is_drawn_in_english(ctx, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    monkeypatch.setattr(br, "CJK_FAMILIES", ("No Such Font",))
    monkeypatch.setattr(br, "_font_family", [])
    seen: list[str] = []
    monkeypatch.setattr(br, "_draw", lambda b, family: seen.append(br.title_text(b)) or b"png")
    with caplog.at_level("WARNING"):
        assert br.render_png(br.read_briefing(ctx, DAY, now=NOW)) == b"png"
    assert seen == ["Guang'an daily operations briefing · 2026-11-24"]
    assert "fonts-noto-cjk" in caplog.text
