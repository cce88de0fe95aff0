"""The wall's panels as plain functions: the ticker, the alarm set, the panel registry, the
default panels built from real figures, and the rotation setting."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from dash import html

from dashboards import ecology as eco
from dashboards import wall
from dashboards.i18n import language
from dashboards.vitals import VitalInputs
from models.cases import CaseIndicators, CaseIntake, OpenCases
from models.config import ConfigError, load_settings
from models.tickets import DistrictTickets, Rate, SatisfactionStats
from tests.unit.dashboards.test_console import live_alert
from tests.unit.dashboards.test_vitals import NOW as STATE_NOW
from tests.unit.dashboards.test_vitals import state

NOW = datetime(2026, 7, 1, 2, 0, tzinfo=UTC)


def text_of(component: Any) -> str:
    return json.dumps(
        component.to_plotly_json() if hasattr(component, "to_plotly_json") else component,
        default=lambda c: c.to_plotly_json(),
        ensure_ascii=False,
    )


def data(**changes: Any) -> wall.WallData:
    vitals = VitalInputs(
        now=NOW,
        states=[],
        alerts=changes.pop("alerts", []),
        audible=changes.pop("audible", frozenset()),
        tickets=changes.pop("tickets", {}),
        cases=changes.pop("cases", {}),
        database_error=changes.pop("database_error", None),
    )
    return wall.WallData(vitals=vitals, **changes)


def test_ticker_shows_the_newest_alerts_first_and_says_when_it_is_quiet() -> None:
    alerts = [live_alert(i, opened_min_ago=m) for i, m in ((1, 30), (2, 2), (3, 10))]
    assert [a.id for a in wall.ticker_items(alerts)] == [2, 3, 1]
    assert [a.id for a in wall.ticker_items(alerts, limit=2)] == [2, 3]
    assert "当前没有未处置告警" in text_of(html.Div(wall.ticker([])))
    with language("en"):
        assert "No open alerts" in text_of(html.Div(wall.ticker([])))


def test_the_wall_rings_for_the_consoles_audible_set_only() -> None:
    alerts = [live_alert(1, "critical"), live_alert(2, "major"), live_alert(3, "minor")]
    assert [a.id for a in wall.ringing(alerts, frozenset({1}))] == [1]
    # Acknowledged elsewhere: gone from the audible set, the wall stops.
    assert wall.ringing(alerts, frozenset()) == []


def test_the_alarm_state_carries_the_count_and_the_bannered_titles_only() -> None:
    ringing = [live_alert(i, "critical", title=f"烟火{i}") for i in range(1, 825)]
    state = wall.alarm_state(ringing, NOW)
    assert state == {"at": NOW.isoformat(), "count": 824, "titles": ["烟火1", "烟火2", "烟火3"]}
    # The city's 824 ringing alerts cost the wall's refresh a few hundred bytes, not 70 KB.
    assert len(json.dumps(state, ensure_ascii=False)) < 200
    assert wall.alarm_state(ringing[:1], NOW)["titles"] == ["烟火1"]
    # Acknowledged everywhere: nothing rings, the banner and the sound stop.
    quiet = wall.alarm_state([], NOW + timedelta(seconds=15))
    assert quiet["count"] == 0 and quiet["titles"] == []
    assert quiet["at"] != state["at"]  # a live wall's state changes on every refresh


def test_panels_are_registered_once_per_key_and_keep_their_place() -> None:
    saved = list(wall.PANELS)
    try:
        assert [p.key for p in wall.PANELS] == ["emergency", "urban", "ecology"]
        richer = wall.WallPanel("urban", "wall.panel.urban", lambda d: html.Div("richer urban"))
        wall.register_panel(richer)
        assert [p.key for p in wall.PANELS] == ["emergency", "urban", "ecology"]
        assert wall.PANELS[1] is richer
        wall.register_panel(wall.WallPanel("transport", "wall.panel.urban", lambda d: html.Div("x")))
        assert [p.key for p in wall.PANELS][-1] == "transport"
    finally:
        wall.PANELS[:] = saved


def test_a_failing_panel_says_so_and_the_others_still_show() -> None:
    saved = list(wall.PANELS)
    try:
        wall.register_panel(wall.WallPanel("urban", "wall.panel.urban", lambda d: 1 / 0))
        built = dict((p.key, body) for p, body in wall.build_panels(data()))
        assert "本面板暂不可用：ZeroDivisionError" in text_of(built["urban"])
        assert "应急告警" in text_of(built["emergency"])
    finally:
        wall.PANELS[:] = saved


def test_emergency_panel_counts_by_severity_and_domain_and_lists_emergency_alerts() -> None:
    alerts = [
        live_alert(1, "critical", title="视频识别烟火（广安区）"),
        live_alert(2, "major", domain="ecology", title="PM2.5超标"),
        live_alert(3, "minor", domain="urban", title="<b>占道经营</b>"),
    ]
    text = text_of(wall.emergency_panel(data(alerts=alerts, audible=frozenset({1}))))
    assert "视频识别烟火（广安区）" in text
    assert "PM2.5超标" not in text  # ecology alerts are not in the emergency list
    assert "wall-big-alarm" in text  # a critical alert is open
    assert '"生态环境"' in text and '"1"' in text


def test_urban_panel_shows_12345_today_and_cases() -> None:
    tickets = {"511602": DistrictTickets(7, 5, 2, SatisfactionStats(3, 0, 1))}
    today = CaseIntake(reported=10, filed=8)
    text = text_of(
        wall.urban_panel(data(tickets=tickets, cases={"511602": OpenCases(9, 1)}, cases_today=today))
    )
    for expected in ('"7"', '"5"', '"2"', '"75%"', '"9"', '"10"', '"80%"'):
        assert expected in text, expected
    away = text_of(wall.urban_panel(data(database_error="OperationalError")))
    assert "工单与案件数据暂不可用：OperationalError" in away
    assert '"—"' in away  # no rate without ratings: a dash, not 0 %


def test_total_case_indicators_add_up_the_districts() -> None:
    per = {
        "511602": CaseIndicators("511602", 4, 2, 1, Rate(2, 1), Rate(1, 1), 2, 1),
        "511621": CaseIndicators("511621", 6, 6, 3, Rate(4, 4), Rate(3, 2), 4, 0),
    }
    total = wall.total_indicators(per)
    assert (total.reported, total.filed, total.closed) == (10, 8, 4)
    assert total.handle == Rate(6, 5) and total.close == Rate(4, 3)
    assert total.filing_rate == 0.8 and total.rework_rate == 1 / 6
    assert wall.total_indicators({}).filing_rate is None


def test_ecology_panel_shows_every_district_and_the_rivers() -> None:
    states = [state("a", "511602", seen_ago=10, pm25=40.0)]
    from dashboards.vitals import summarise

    snapshot = summarise(states, now=STATE_NOW)
    section = eco.WaterSection("w1", "罗渡", "嘉陵江", "武胜县", 106.3, 30.3, "IV", "III", eco.freshness(30))
    text = text_of(
        wall.ecology_panel(
            data(district_aqi={d.district_code: d.aqi for d in snapshot.districts}, water=[section])
        )
    )
    for name in ("广安区", "前锋区", "岳池县", "武胜县", "邻水县", "华蓥市"):
        assert name in text
    assert '"60"' in text  # 广安区's AQI from its station
    assert "0 / 1" in text and "1 个断面未达目标" in text


@pytest.mark.parametrize(("raw", "seconds"), [(None, 20), ("5", 5), ("90", 90), ("3600", 3600)])
def test_rotation_interval_setting(raw: str | None, seconds: int) -> None:
    env = {} if raw is None else {"CITYOPS_WALL_ROTATE_S": raw}
    assert load_settings(env).wall_rotate == timedelta(seconds=seconds)


@pytest.mark.parametrize("raw", ["4", "3601", "soon", "-1"])
def test_rotation_interval_out_of_range_is_refused_with_the_variable_named(raw: str) -> None:
    with pytest.raises(ConfigError, match="CITYOPS_WALL_ROTATE_S"):
        load_settings({"CITYOPS_WALL_ROTATE_S": raw})
