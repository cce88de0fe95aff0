"""The emergency page on a fixed clock, on SQLite with the seeded geography and resources:
sensor thresholds from the alert rules, incident and alert rows, the map and its patches,
the incident panel, the operator's actions through the incident lifecycle (refusals with
their reasons), the live notes, the wall's panel and the page's refresh."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import fakeredis
import pytest
import sqlalchemy as sa
from dash import Patch

from dashboards import context
from dashboards import emergency as em
from dashboards.i18n import language
from models import alerts, db
from models import incidents as inc
from models.config import load_settings
from models.lifecycle import Actor
from models.live import UPDATES_CHANNEL, DeviceState, LiveStore
from models.reference import seed_reference_data
from models.rules import load_rules
from tests.unit.dashboards.test_console import live_alert
from tests.unit.models.test_alerts import draft as alert_draft

NOW = datetime(2026, 7, 15, 2, 0, tzinfo=UTC)  # 10:00 in Guang'an
SEAT = (106.932, 30.334)  # 鼎屏镇, 邻水县
OFFICER = Actor("张三", role="duty_officer", display_name="张三")


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("emergency") / "template.sqlite3"
    db.upgrade_database(f"sqlite:///{path}")
    engine = db.create_engine_for(f"sqlite:///{path}")
    seed_reference_data(engine)
    engine.dispose()
    return path


@pytest.fixture
def engine(tmp_path: Path, migrated: Path) -> Iterator[sa.Engine]:
    path = tmp_path / "cityops.sqlite3"
    shutil.copyfile(migrated, path)
    engine = db.create_engine_for(f"sqlite:///{path}")
    yield engine
    engine.dispose()


@pytest.fixture
def live() -> LiveStore:
    return LiveStore(fakeredis.FakeRedis(decode_responses=True))


def new_incident(engine: sa.Engine, **changes: object) -> inc.IncidentView:
    values: dict[str, object] = {
        "incident_type_key": "flood",
        "title": "鼎屏镇城区内涝",
        "description": "<b>多处道路积水</b>",
        "lon": SEAT[0],
        "lat": SEAT[1],
        "actor": OFFICER,
        "now": NOW,
    }
    values.update(changes)
    with engine.begin() as conn:
        return inc.open_incident(conn, **values).incident  # type: ignore[arg-type]


def state(device_id: str, dtype: str, metrics: dict[str, float], *, seen: float | None = None) -> DeviceState:
    return DeviceState(
        device_id=device_id,
        type=dtype,
        name=device_id,
        lon=SEAT[0],
        lat=SEAT[1],
        district_code="511623",
        grid_id=None,
        ts=NOW - timedelta(seconds=30),
        metrics=metrics,
        derived={},
        last_seen=NOW.timestamp() - 30 if seen is None else seen,
    )


def text_of(component: object) -> str:
    from plotly.utils import PlotlyJSONEncoder

    return json.dumps(component, cls=PlotlyJSONEncoder, ensure_ascii=False)


# ---- sensors ------------------------------------------------------------------------------------


def test_sensor_thresholds_come_from_the_alert_rules_and_a_stations_own_levels() -> None:
    limits = em.sensor_limits(load_rules().rules)
    assert set(limits) == set(em.SENSOR_TYPES)
    # The mildest threshold first: the warning level (major) before the guarantee level.
    assert [lim.rule_id for lim in limits["water_level"]][:2] == [
        "water_level_warning",
        "water_level_guarantee",
    ]
    states = [
        state("wl-own", "water_level", {"level": 4.8}),
        state("wl-default", "water_level", {"level": 5.2}),
        state("smoke-1", "smoke", {"smoke": 0.02, "temp": 61.0}),  # hot, not smoky: over all the same
        state("gas-1", "gas", {"ch4_lel": 55.0, "co_ppm": 3.0}),
        state("rain-1", "rainfall", {"rain_1h": 12.0}, seen=NOW.timestamp() - 3600),
        state("air-1", "air_quality", {"pm25": 300.0}),  # not an emergency sensor
    ]
    props = {"wl-own": {"warning_level": 4.5, "guarantee_level": 5.5}}
    rows = {r.device_id: r for r in em.sensor_rows(states, limits, props, NOW.timestamp())}
    assert set(rows) == {"wl-own", "wl-default", "smoke-1", "gas-1", "rain-1"}
    assert rows["wl-own"].threshold == 4.5 and rows["wl-own"].over == ("water_level_warning",)
    assert rows["wl-default"].threshold == 5.0 and rows["wl-default"].status == "over"
    assert rows["smoke-1"].over == ("smoke_heat",) and rows["smoke-1"].severity == "critical"
    assert set(rows["gas-1"].over) == {"gas_lel_low", "gas_lel_high"} and rows["gas-1"].severity == "critical"
    assert rows["rain-1"].status == "offline" and rows["rain-1"].over == ()
    assert em.value_text(rows["wl-own"]) == "4.80 m"
    ordered = [r.device_id for r in em.sensor_rows(states, limits, props, NOW.timestamp())]
    assert ordered[-1] == "rain-1" and set(ordered[:4]) == {"wl-own", "wl-default", "smoke-1", "gas-1"}
    summary = {s.type: s for s in em.sensor_summary(list(rows.values()))}
    assert (summary["water_level"].total, summary["water_level"].over, summary["rainfall"].online) == (
        2,
        2,
        0,
    )


def test_sensor_feed_turns_stale_after_ten_silent_minutes() -> None:
    limits = em.sensor_limits(load_rules().rules)
    rows = em.sensor_rows([state("wl", "water_level", {"level": 4.0})], limits, {}, NOW.timestamp())
    assert not em.sensor_freshness(rows, NOW).silent
    assert em.sensor_freshness(rows, NOW + timedelta(minutes=11)).silent
    assert em.sensor_freshness([], NOW).silent


# ---- rows, map, panel ---------------------------------------------------------------------------


def test_incident_rows_carry_level_colours_from_the_standard(engine: sa.Engine) -> None:
    first = new_incident(engine)
    with engine.begin() as conn:
        inc.respond(conn, first.incident_id, level="I", actor=OFFICER, now=NOW)
    new_incident(engine, title="前锋区火情", incident_type_key="fire", lon=106.89, lat=30.495)
    rows = em.incident_rows(inc.open_incidents(engine), NOW + timedelta(minutes=5))
    assert [r.level for r in rows] == ["I", None]
    assert rows[0].colour == em.WARNING_HEX["red"] and rows[0].level_label == "Ⅰ级"
    assert rows[1].level_label == "未定级" and rows[1].type_label == "火灾"
    assert rows[0].age_s == 300 and rows[0].district == "邻水县" and rows[0].state_label == "响应"
    assert [em.LEVEL_HEX[lvl] for lvl in ("I", "II", "III", "IV")] == [
        em.WARNING_HEX[c] for c in ("red", "orange", "yellow", "blue")
    ]
    counts = em.level_counts(inc.open_incidents(engine))
    assert counts.by_level == {"I": 1, "II": 0, "III": 0, "IV": 0, "none": 1} and counts.total == 2
    with language("en"):
        assert em.incident_rows(inc.open_incidents(engine), NOW)[0].level_label == "Level Ⅰ"


def test_alert_rows_keep_critical_and_major_and_know_their_incidents() -> None:
    alerts_ = [
        live_alert(1, "critical"),
        live_alert(2, "major"),
        live_alert(3, "minor"),
        live_alert(4, "critical"),
    ]
    rows = em.alert_rows(alerts_, {4: "YJ1"})
    assert [r.id for r in rows] == [1, 2, 4]
    assert [r.can_open for r in rows] == [True, False, False]
    assert rows[2].incident_id == "YJ1"


def test_map_draws_every_layer_and_then_patches_only_what_changed(engine: sa.Engine) -> None:
    incident = new_incident(engine)
    resources = inc.all_resources(engine)
    assert {r.kind for r in resources} == set(em.RESOURCE_KINDS) and len(resources) == 46
    limits = em.sensor_limits(load_rules().rules)
    sensors = em.sensor_rows([state("wl", "water_level", {"level": 4.0})], limits, {}, NOW.timestamp())
    rows = em.incident_rows(inc.open_incidents(engine), NOW)
    nearest = inc.nearest_resources(engine, incident.incident_id)
    selection = em.Selection(incident, em.area_rings(incident), nearest)
    model = em.MapModel(resources, sensors, em.alert_rows([live_alert(1, "critical")], {}), rows, selection)

    figure, drawn = em.map_update(model, None, tile_url=None)
    assert [trace.type for trace in figure.data] == ["scattermap"] * len(em.TRACES)
    # Offline: no remote source in the style, no glyphs, no sprite.
    style = figure.layout.map.style
    assert style["sources"] == {} and "glyphs" not in style and "sprite" not in style
    # Three rings (1, 3, 5 km) around the incident; the view is on it.
    rings = figure.layout.map.layers[1].source["features"]
    assert len(rings) == 3
    assert (
        figure.layout.map.center.lon == SEAT[0]
        and figure.layout.uirevision == f"emergency-{incident.incident_id}"
    )
    # A line to the nearest of each kind (three points a line: from, to, gap).
    assert len(figure.data[em.TRACES.index("nearest")].lon) == 3 * len(em.RESOURCE_KINDS)
    # Resources: one outer disc each; rings, targets and cored discs have a middle; targets a core.
    kinds = [r.kind for r in resources]
    assert len(figure.data[0].lon) == len(resources)
    assert len(figure.data[1].lon) == len(resources) - kinds.count("fire_station")
    assert len(figure.data[2].lon) == kinds.count("shelter")
    assert "<b>" not in json.dumps(figure.to_plotly_json(), ensure_ascii=False, default=str)

    # Nothing changed: nothing to send.
    again, _ = em.map_update(model, drawn, tile_url=None)
    assert again is None
    # A sensor crossed its threshold: only the sensor trace travels.
    hot = em.sensor_rows([state("wl", "water_level", {"level": 5.6})], limits, {}, NOW.timestamp())
    patch, _ = em.map_update(em.MapModel(resources, hot, model.alerts, rows, selection), drawn, tile_url=None)
    assert isinstance(patch, Patch)
    ops = patch.to_plotly_json()["operations"]
    assert [op["location"] for op in ops] == [["data", em.TRACES.index("sensors")]]
    assert ops[0]["params"]["value"]["marker"]["color"] == [em.SENSOR_HEX["over"]]
    # Another incident picked (or none): the whole figure again, at city zoom.
    city, _ = em.map_update(em.MapModel(resources, hot, model.alerts, rows, None), drawn, tile_url=None)
    assert not isinstance(city, Patch) and city.layout.map.zoom == em.CITY_ZOOM
    assert city.layout.map.layers[1].source["features"] == []


def test_a_drawn_polygon_is_the_area_instead_of_the_rings(engine: sa.Engine) -> None:
    incident = new_incident(engine)
    square = [(106.92, 30.32), (106.95, 30.32), (106.95, 30.35), (106.92, 30.35)]
    with engine.begin() as conn:
        drawn = inc.set_area(conn, incident.incident_id, actor=OFFICER, now=NOW, polygon=square)
    rings = em.area_rings(drawn)
    assert len(rings) == 1 and len(rings[0]) == 5 and rings[0][0] == rings[0][-1]
    assert em.area_rings(new_incident(engine, lon=None, lat=None, radius_m=None)) == ()


def test_incident_panel_shows_lifecycle_dispatches_area_links_warning_and_timeline_as_text(
    engine: sa.Engine,
) -> None:
    incident = new_incident(engine)
    iid = incident.incident_id
    with engine.begin() as conn:
        inc.respond(
            conn, iid, level="III", actor=OFFICER, now=NOW + timedelta(minutes=1), comment="<i>研判</i>"
        )
        inc.dispatch_resources(conn, iid, ["fire-511623-01"], actor=OFFICER, now=NOW + timedelta(minutes=2))
        inc.draft_warning(conn, iid, actor=OFFICER, now=NOW + timedelta(minutes=3))
    detail = inc.incident_view(engine, iid)
    assert detail is not None
    data = em.PanelData(detail, inc.affected_area(engine, iid), None, inc.nearest_resources(engine, iid))
    at = NOW + timedelta(minutes=3)
    text = text_of(em.incident_panel(data, at))
    for expected in (
        "Ⅲ级",
        "调度",
        "邻水县消防救援站",
        "已派出",
        "预计",
        "黄色",
        "事发地周边 1 公里",
        "<i>研判</i>",
        "<b>多处道路积水</b>",
    ):
        assert expected in text, expected
    # The dispatched station is not offered again; the other nearest ones are.
    assert '"type": "em-dispatch", "id": "fire-511623-01"' not in text
    assert '"type": "em-dispatch", "id": "hospital-511623-01"' in text
    assert '"type": "em-move", "id": 1, "action": "arrive"' in text
    # ETA: 60 s turnout, then 1.3 × the distance at 30 km/h, from the dispatch time.
    d = detail.resources[0]
    assert d.eta_s == pytest.approx(60 + d.distance_m * 1.3 / (30 / 3.6), abs=1)
    due = d.dispatched_at + timedelta(seconds=d.eta_s)
    assert em.eta_text(d, due - timedelta(seconds=65)).endswith("（还有 1:05）")
    assert "已超 0:10" in em.eta_text(d, due + timedelta(seconds=10))


# ---- actions ------------------------------------------------------------------------------------


def _notes(live: LiveStore) -> Iterator[dict[str, object]]:
    pubsub = live.redis.pubsub()
    pubsub.subscribe(UPDATES_CHANNEL)
    pubsub.get_message(timeout=0.1)  # the subscription's own message
    return pubsub  # type: ignore[return-value]


def _drain(pubsub: object) -> list[dict[str, object]]:
    out = []
    while (message := pubsub.get_message(timeout=0.05)) is not None:  # type: ignore[attr-defined]
        if message["type"] == "message":
            out.append(json.loads(message["data"]))
    return out


def test_the_operator_runs_the_lifecycle_and_every_change_is_announced(
    engine: sa.Engine, live: LiveStore
) -> None:
    incident = new_incident(engine)
    iid = incident.incident_id
    listening = _notes(live)

    def act(action: str, minutes: float, **values: object) -> em.ActionOutcome:
        request = em.ActionRequest(action, iid, **values)  # type: ignore[arg-type]
        return em.perform(
            engine, live, request, actor=OFFICER, address="10.0.0.5", now=NOW + timedelta(minutes=minutes)
        )

    # Refusals carry the lifecycle's reason and change nothing.
    refused = act("respond", 1)
    assert not refused.ok and "须确定响应级别" in refused.message
    assert not act("start", 1).ok
    assert act("respond", 2, level="IV").ok
    assert "升级响应须高于当前的Ⅳ级" in act("escalate", 3, level="IV", comment="水位上涨").message
    assert "须说明理由" in act("escalate", 3, level="II").message
    assert act("escalate", 4, level="II", comment="水位超保证").ok
    assert act("de_escalate", 5, level="III", comment="雨势减弱").ok
    assert act("dispatch", 6, resource_id="fire-511623-01").ok
    assert "已派往本事件" in act("dispatch", 6.5, resource_id="fire-511623-01").message
    assert "无此救援力量" in act("dispatch", 6.5, resource_id="nowhere-1").message
    assert act("area", 7, radius_m=3000.0).ok
    with engine.connect() as conn:
        dispatch_id = inc.dispatched_resources(conn, iid)[0].id
    assert act("arrive", 8, dispatch_id=dispatch_id).ok
    assert act("start", 9).ok
    assert act("note", 10, comment="排涝泵车到场").ok
    assert "须填写处置情况" in act("assess", 11).message
    assert act("assess", 12, comment="积水已退").ok
    assert "未撤离" in act("close", 13, comment="处置完毕").message
    assert act("release", 14, dispatch_id=dispatch_id).ok
    done = act("close", 15, comment="处置完毕")
    assert done.ok and done.message == f"已关闭事件：{iid}"

    with engine.connect() as conn:
        view = inc.get_incident(conn, iid)
        steps = inc.timeline(conn, iid)
    assert view is not None and view.state == "closed" and view.level == "III" and view.radius_m == 3000
    actions = [e.action for e in steps]
    assert actions == [
        "report", "respond", "escalate", "de_escalate", "dispatch", "area",
        "resource_arrive", "start", "note", "assess", "resource_release", "close",
    ]  # fmt: skip
    assert all(e.actor == "张三" for e in steps[1:])
    notes = _drain(listening)
    assert [n["action"] for n in notes] == [
        "respond", "escalate", "de_escalate", "dispatch", "area",
        "resource_arrived", "start", "note", "assess", "resource_released", "close",
    ]  # fmt: skip
    assert all(n["kind"] == "incident" and n["id"] == iid for n in notes)
    assert notes[-1]["state"] == "closed"
    # Closed: the panel offers nothing but what the lifecycle allows (nothing).
    assert em.enabled_actions("closed", "duty_officer") == set()
    assert em.enabled_actions("reported", "duty_officer") == {"respond", "dismiss", "note"}


def test_opening_from_a_critical_alert_once_and_refusing_a_lesser_one(
    engine: sa.Engine, live: LiveStore
) -> None:
    with engine.begin() as conn:
        critical = alerts.raise_alert(
            conn,
            alert_draft("smoke:s-1", "critical", rule_id="smoke_alarm", lon=SEAT[0], lat=SEAT[1]),
            now=NOW,
        )
        major = alerts.raise_alert(conn, alert_draft("smoke:s-2", "major"), now=NOW)
    listening = _notes(live)
    opened = em.perform(
        engine, live, em.ActionRequest("open_from_alert", alert_id=critical.alert.id, comment="电话核实"),
        actor=OFFICER, address=None, now=NOW + timedelta(minutes=1),
    )  # fmt: skip
    assert opened.ok and opened.incident_id is not None
    assert inc.incidents_of_alerts(engine, [critical.alert.id, major.alert.id]) == {
        critical.alert.id: opened.incident_id
    }
    again = em.perform(
        engine, live, em.ActionRequest("open_from_alert", alert_id=critical.alert.id),
        actor=OFFICER, address=None, now=NOW + timedelta(minutes=2),
    )  # fmt: skip
    assert again.ok and again.incident_id == opened.incident_id and "已有突发事件" in again.message
    lesser = em.perform(
        engine, live, em.ActionRequest("open_from_alert", alert_id=major.alert.id),
        actor=OFFICER, address=None, now=NOW,
    )  # fmt: skip
    assert not lesser.ok and "不是特别严重" in lesser.message
    missing = em.perform(
        engine,
        live,
        em.ActionRequest("open_from_alert", alert_id=99999),
        actor=OFFICER,
        address=None,
        now=NOW,
    )
    assert not missing.ok and "99999" in missing.message
    # One note: the new incident (asking again opened nothing new).
    assert [n["action"] for n in _drain(listening)] == ["report"]
    with language("en"):
        refused = em.perform(
            engine,
            live,
            em.ActionRequest("open_from_alert", alert_id=major.alert.id),
            actor=OFFICER,
            address=None,
            now=NOW,
        )
        assert "not critical" in refused.message


def test_a_lost_live_store_loses_the_note_not_the_change(engine: sa.Engine) -> None:
    incident = new_incident(engine)
    broken = LiveStore(fakeredis.FakeRedis(decode_responses=True, connected=False))
    outcome = em.perform(
        engine,
        broken,
        em.ActionRequest("respond", incident.incident_id, level="II"),
        actor=OFFICER,
        address=None,
        now=NOW,
    )
    assert outcome.ok
    with engine.connect() as conn:
        view = inc.get_incident(conn, incident.incident_id)
    assert view is not None and view.level == "II"


# ---- the wall and the page -----------------------------------------------------------------------


def test_wall_panel_counts_incidents_by_level_and_keeps_the_alert_figures(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dashboards import wall
    from dashboards.vitals import VitalInputs

    first = new_incident(engine)
    with engine.begin() as conn:
        inc.respond(conn, first.incident_id, level="II", actor=OFFICER, now=NOW)
    data = wall.WallData(VitalInputs(NOW, [], [live_alert(1, "critical")], frozenset()))
    text = text_of(em.wall_panel(data, inc.open_incidents(engine)))
    assert "在处置突发事件 1 起" in text and "鼎屏镇城区内涝" in text and "应急告警" in text
    assert "wall-big-alarm" in text  # a level Ⅱ response is shown as an alarm figure
    assert next(p for p in wall.PANELS if p.key == "emergency").build is em.wall_panel
    # Without the database the panel says so and still shows the alerts.
    monkeypatch.setattr(em, "read_wall_incidents", lambda district_code=None: None)
    away = text_of(em.wall_panel(data))
    assert "突发事件数据暂不可用" in away and "应急告警" in away


def test_page_refresh_fills_every_panel_and_patches_the_map_after(engine: sa.Engine, live: LiveStore) -> None:
    from app import create_app

    create_app(load_settings({}), live=live, engine=engine)
    from dashboards.pages import emergency as page

    assert context.current().engine is engine
    live.register_device(
        "wl-page",
        {
            "type": "water_level",
            "name": "鼎屏水位站",
            "lon": SEAT[0],
            "lat": SEAT[1],
            "district_code": "511623",
        },
    )
    live.record_readings([{"device_id": "wl-page", "ts": datetime.now(UTC), "metrics": {"level": 5.5}}])
    incident = new_incident(engine)
    out = page.refresh(None, None, None, "own", 0, None, "张三")
    status, kpis = out[0], out[1:6]
    assert "实时" in status
    assert kpis[0] == "1" and kpis[4] == "46"
    assert text_of(kpis[3]).count("1") >= 1 and "em-over" in text_of(kpis[3])
    figure, drawn = out[8], out[9]
    assert not isinstance(figure, Patch) and drawn["selected"] == incident.incident_id
    assert incident.incident_id in text_of(out[6]) and "鼎屏水位站" in text_of(out[10])
    # The panel shows the first incident when none was picked; its buttons follow the lifecycle.
    assert "鼎屏镇城区内涝" in text_of(out[11])
    disabled = dict(zip((*em.PANEL_ACTIONS, "area"), out[12 : 12 + len(em.PANEL_ACTIONS) + 1], strict=True))
    assert not disabled["respond"] and disabled["start"] and not disabled["area"]
    second = page.refresh(1, None, incident.incident_id, "own", 0, drawn, "张三")
    assert second[8] is page.dash.no_update or isinstance(second[8], Patch)

    # Actions need an officer; a pressed button becomes the request.
    request = page.request_for("emergency-btn-respond", incident.incident_id, "", "III", "own")
    assert request == em.ActionRequest("respond", incident.incident_id, "", level="III", radius_m=None)
    assert page.run_action(request, None, 0)[0] == "请先填写值班员姓名"
    from tests.unit.dashboards.signing import account, signed_in

    with signed_in(account("zhangsan", "duty_officer", display_name="张三")):
        feedback, css, comment, bump, _show = page.run_action(request, "张三", 0, now=NOW)
    assert css.endswith("ok") and comment == "" and bump == 1 and "已启动响应" in feedback
    move = page.request_for({"type": "em-move", "id": 7, "action": "release"}, "YJ1", None, None, None)
    assert move == em.ActionRequest("release", "YJ1", None, dispatch_id=7)
    assert page.request_for({"type": "em-open-alert", "id": 5}, None, None, None, None).alert_id == 5


def test_the_alert_list_is_capped_and_says_how_many_are_open() -> None:
    rows = em.alert_rows([live_alert(i, "critical", opened_min_ago=500 - i) for i in range(1, 301)], {})
    listed = text_of(em.alert_list(rows, datetime.now(UTC)))
    assert listed.count("em-alert-row") == em.ALERT_LIST_ROWS
    # Queue order: the first rows are the most severe and oldest.
    assert '"告警1"' in listed and f'"告警{em.ALERT_LIST_ROWS + 1}"' not in listed
    assert f"共 {em.ALERT_LIST_ROWS} 条（队列 300 条）" in listed
    few = text_of(em.alert_list(rows[:3], datetime.now(UTC)))
    assert few.count("em-alert-row") == 3 and "队列" not in few


def test_a_refresh_builds_rows_only_for_the_sensors_that_changed() -> None:
    limits = em.sensor_limits(load_rules().rules)
    states = [
        state("wl-memo", "water_level", {"level": 4.0}),
        state("smoke-memo", "smoke", {"smoke": 0.01, "temp": 30.0}),
    ]
    first = {r.device_id: r for r in em.sensor_rows(states, limits, {}, NOW.timestamp())}
    again = {r.device_id: r for r in em.sensor_rows(states, limits, {}, NOW.timestamp())}
    # The live store hands back the same state for a device that did not report: same row.
    assert all(again[d] is first[d] for d in first)
    # A district's viewer asks for some of them: the others' rows are kept for the city's.
    assert em.sensor_rows(states[:1], limits, {}, NOW.timestamp()) == [first["wl-memo"]]
    assert em.sensor_rows(states, limits, {}, NOW.timestamp())[1] is first["smoke-memo"]
    # A new reading of one sensor: its row is built again, the other one's is kept.
    reported = [state("wl-memo", "water_level", {"level": 5.6}), states[1]]
    rows = {r.device_id: r for r in em.sensor_rows(reported, limits, {}, NOW.timestamp())}
    assert rows["smoke-memo"] is first["smoke-memo"]
    assert rows["wl-memo"].status == "over" and rows["wl-memo"].value == 5.6
    # The station's own levels (properties) change its threshold and what is over it.
    own = {"wl-memo": {"warning_level": 6.0, "guarantee_level": 7.0}}
    rows = {r.device_id: r for r in em.sensor_rows(reported, limits, own, NOW.timestamp())}
    assert rows["wl-memo"].threshold == 6.0 and rows["wl-memo"].status == "ok"
    # The same states an hour later: both silent, offline.
    later = em.sensor_rows(reported, limits, own, NOW.timestamp() + 3600)
    assert [r.status for r in later] == ["offline", "offline"]
    # The map signs the sensors by what it draws of them, remembered rows or not.
    from dashboards.drawn import signature

    for sensors in (later, [replace(r, value=9.0) for r in later]):
        drawn = signature((r.device_id, r.status, r.lon, r.lat, em.value_text(r)) for r in sensors)
        assert em.map_signatures(em.MapModel([], sensors, [], [], None))["sensors"] == drawn
    # Other rules: the row follows them.
    stricter = {**limits, "smoke": [replace(lim, value=20.0) if lim.metric == "temp" else lim
                                    for lim in limits["smoke"]]}  # fmt: skip
    hot = {r.device_id: r for r in em.sensor_rows(reported, stricter, own, NOW.timestamp())}
    assert hot["smoke-memo"].status == "over" and first["smoke-memo"].status == "ok"


def test_only_the_properties_a_threshold_reads_are_read(engine: sa.Engine, live: LiveStore) -> None:
    from app import create_app

    create_app(load_settings({}), live=live, engine=engine)
    from dashboards.pages import emergency as page
    from models.schema import Device

    limits = em.sensor_limits(load_rules().rules)
    # Only a water-level station's thresholds come from its own levels.
    assert em.sensor_prop_types(limits) == ["water_level"]
    with engine.begin() as conn:
        for device_id, dtype, props in (
            ("wl-p", "water_level", {"warning_level": 4.5}),
            ("smoke-p", "smoke", {"floor": 3}),
        ):
            conn.execute(
                sa.insert(Device.__table__).values(
                    device_id=device_id, kind="sensor", type=dtype, name=device_id, props=props
                )
            )
    with engine.connect() as conn:
        assert page.sensor_props(conn, em.sensor_prop_types(limits)) == {"wl-p": {"warning_level": 4.5}}
        assert set(page.sensor_props(conn)) == {"wl-p", "smoke-p"}
        assert page.sensor_props(conn, []) == {}


def test_the_alert_list_and_sensor_table_are_signed_by_what_they_show() -> None:
    from dashboards.drawn import content_signature

    now = datetime.now(UTC)
    queue = [live_alert(i, "critical", opened_min_ago=500 - i) for i in range(1, 61)]
    alert_variants = {
        "same": em.alert_rows(queue, {}),
        "linked": em.alert_rows(queue, {1: "YJ1"}),
        "retitled": em.alert_rows([replace(queue[0], title="另一告警"), *queue[1:]], {}),
        "one more": em.alert_rows([*queue, live_alert(99, "major")], {}),
        # Past the listed rows only the count shows, and it is the same.
        "hidden": em.alert_rows([*queue[:-1], replace(queue[-1], title="看不见")], {}),
    }
    limits = em.sensor_limits(load_rules().rules)
    sensors = [state(f"wl-{i:03d}", "water_level", {"level": 3.0}) for i in range(60)]
    sensor_variants = {
        "same": em.sensor_rows(sensors, limits, {}, NOW.timestamp()),
        "over": em.sensor_rows(
            [state("wl-000", "water_level", {"level": 5.5}), *sensors[1:]], limits, {}, NOW.timestamp()
        ),
        "silent": em.sensor_rows(sensors, limits, {}, NOW.timestamp() + 3600),
        "hidden": em.sensor_rows(
            [*sensors[:-1], state("wl-059", "water_level", {"level": 3.5})], limits, {}, NOW.timestamp()
        ),
    }
    for sign, build, variants in (
        (lambda v: em.alert_list_signature(v, now), lambda v: em.alert_list(v, now), alert_variants),
        (em.sensor_table_signature, em.sensor_table, sensor_variants),
    ):
        signed = {k: sign(v) for k, v in variants.items()}
        built = {k: content_signature(build(v)) for k, v in variants.items()}
        for a in variants:
            for b in variants:
                assert (signed[a] == signed[b]) == (built[a] == built[b]), (a, b)
        assert signed["hidden"] == signed["same"] and len(set(signed.values())) == len(variants) - 1
        with language("en"):
            assert sign(variants["same"]) != signed["same"]
