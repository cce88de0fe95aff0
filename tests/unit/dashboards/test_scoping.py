"""District scope on the read pages: each page's refresh, run as a 邻水县 (511623) officer,
shows 邻水县's orders, cases, alerts, incidents and stations and none of 广安区's (511602),
and its counts leave 广安区 out; a city-wide account still sees both. Another district's
page is refused and audited, and a scoped account's overview is its district's page."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dash
import fakeredis
import pytest
import sqlalchemy as sa

from dashboards import auth
from dashboards import district as drill
from dashboards.i18n import t
from dashboards.vitals import city_day_start
from geo.boundaries import district_geometries
from models import alerts, cases, db
from models.config import load_settings
from models.live import LiveStore
from models.reference import seed_reference_data
from models.schema import AuditLog
from tests.unit.dashboards.signing import account, signed_in
from tests.unit.models.test_alerts import draft
from tests.unit.models.test_cases import OPERATOR
from tests.unit.models.test_incidents import OFFICER, new_incident
from tests.unit.models.test_tickets import HOME, add_ticket

MINE, OTHER = "511623", "511602"
LINSHUI_OFFICER = account("ls-duty", "duty_officer", district_code=MINE)
CITY_OFFICER = account("city-duty", "duty_officer")


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("scoping") / "template.sqlite3"
    db.upgrade_database(f"sqlite:///{path}")
    engine = db.create_engine_for(f"sqlite:///{path}")
    seed_reference_data(engine)
    engine.dispose()
    return path


def _inside(code: str) -> tuple[float, float]:
    point = district_geometries()[code].representative_point()
    return point.x, point.y


@pytest.fixture
def city(tmp_path: Path, migrated: Path) -> Iterator[dict[str, Any]]:
    """The real app over a fresh store and database holding one of everything in each of
    two districts, named so a page's output shows which district it came from."""
    from app import create_app

    path = tmp_path / "cityops.sqlite3"
    shutil.copyfile(migrated, path)
    engine = db.create_engine_for(f"sqlite:///{path}")
    live = LiveStore(fakeredis.FakeRedis(decode_responses=True))
    create_app(load_settings({"CITYOPS_DATA_DIR": str(tmp_path)}), live=live, engine=engine)
    now = datetime.now(UTC)
    # The orders are today's in Beijing whenever the test runs (an hour before 00:30 is
    # yesterday there): the pages count "today" from the city's midnight.
    called = now - min(timedelta(hours=1), (now - city_day_start(now)) / 2)
    where = {MINE: _inside(MINE), OTHER: HOME}
    made: dict[str, Any] = {"engine": engine, "live": live, "case": {}, "alert": {}, "incident": {}}
    with engine.begin() as conn:
        for code, at in where.items():
            add_ticket(conn, f"T-{code}", ts=called, at=at, district_code=code)
            case = cases.report_case(
                conn,
                source="inspector",
                category="illegal_parking",
                description=f"案件-{code}",
                lon=at[0],
                lat=at[1],
                reporter="inspector-7",
                evidence={},
                now=now - timedelta(hours=3),
            )
            cases.file_case(conn, case.case_id, actor=OPERATOR, now=now - timedelta(hours=3))
            cases.dispatch_case(conn, case.case_id, actor=OPERATOR, now=now - timedelta(hours=3))
            assert case.district_code == code
            made["case"][code] = case.case_id
            change = alerts.raise_alert(
                conn,
                draft(key=f"scope-{code}", severity="critical", title=f"告警-{code}", district_code=code),
                now=now - timedelta(minutes=5),
            )
            live.apply_alert_changes([change])
            made["alert"][code] = change.alert.id
            incident = new_incident(
                conn,
                title=f"事件-{code}",
                lon=at[0],
                lat=at[1],
                actor=OFFICER,
                now=now - timedelta(minutes=9),
            )
            assert incident.district_code == code
            made["incident"][code] = incident.incident_id
            live.register_device(
                f"air-{code}",
                {
                    "type": "air_quality",
                    "name": f"站点-{code}",
                    "lon": at[0],
                    "lat": at[1],
                    "district_code": code,
                },
            )
            live.record_readings(
                [{"device_id": f"air-{code}", "ts": now, "metrics": {"pm25": 40.0, "pm10": 60.0}}],
                now=now.timestamp(),
            )
    yield made
    engine.dispose()


def _text(value: Any) -> str:
    """Everything a callback answered, as text (components' repr carries their children)."""
    return repr(value)


def test_the_12345_page_shows_a_scoped_officer_his_district_only(city: dict[str, Any]) -> None:
    from dashboards.pages import hotline

    with signed_in(LINSHUI_OFFICER):
        out = hotline.refresh(None, None, None)
    shown = _text(out)
    assert f"T-{MINE}" in shown and f"T-{OTHER}" not in shown
    # Today's new orders and the open orders count 邻水县's one order, not the city's two.
    assert (out[1], out[2]) == ("1", "1")
    with signed_in(CITY_OFFICER):
        city_wide = hotline.refresh(None, None, None)
    assert f"T-{OTHER}" in _text(city_wide) and (city_wide[1], city_wide[2]) == ("2", "2")


def test_the_urban_page_shows_a_scoped_officer_his_district_only(city: dict[str, Any]) -> None:
    from dashboards.pages import urban

    with signed_in(LINSHUI_OFFICER):
        out = urban.refresh(None, None, "district", None)
    shown = _text(out[8]) + _text(out[10])
    assert city["case"][MINE] in shown and city["case"][OTHER] not in shown
    assert out[3] == "1"  # open cases
    assert "1" in _text(out[4])  # overdue: 邻水县's case is past its 2 h
    indicators = _text(out[10])
    assert "邻水县" in indicators and "广安区" not in indicators
    with signed_in(CITY_OFFICER):
        city_wide = urban.refresh(None, None, "district", None)
    assert city["case"][OTHER] in _text(city_wide[8]) and city_wide[3] == "2"


def test_the_emergency_page_shows_a_scoped_officer_his_district_only(city: dict[str, Any]) -> None:
    from dashboards.pages import emergency

    with signed_in(LINSHUI_OFFICER):
        out = emergency.refresh(None, None, None, None, 0, None, None)
        # An incident of another district picked by a crafted request is not shown.
        picked = emergency.refresh(None, None, city["incident"][OTHER], None, 0, None, None)
    incidents_list, alert_list = _text(out[6]), _text(out[7])
    assert f"事件-{MINE}" in incidents_list and f"事件-{OTHER}" not in incidents_list
    assert f"告警-{MINE}" in alert_list and f"告警-{OTHER}" not in alert_list
    assert out[1] == "1"  # open incidents
    assert f"事件-{OTHER}" not in _text(picked[11]) and picked[11] == t("emergency.pick")
    assert _denied(city["engine"], f"incident.view:{city['incident'][OTHER]}")
    with signed_in(CITY_OFFICER):
        city_wide = emergency.refresh(None, None, None, None, 0, None, None)
    assert f"事件-{OTHER}" in _text(city_wide[6]) and city_wide[1] == "2"


def test_the_console_and_the_district_page_keep_a_scoped_officer_in_his_district(
    city: dict[str, Any],
) -> None:
    from dashboards.pages import alerts as console
    from dashboards.pages import district

    with signed_in(LINSHUI_OFFICER):
        queue = console.refresh_queue(None, None, None, None, None, None, None, None)
        detail = console.show_detail(city["alert"][OTHER], None, None)
        own = district.refresh(None, None, MINE, False)
        with pytest.raises(dash.exceptions.PreventUpdate):
            district.refresh(None, None, OTHER, False)
    assert f"告警-{MINE}" in _text(queue[0]) and f"告警-{OTHER}" not in _text(queue[0])
    assert detail[0] == t("auth.denied.district")
    assert _denied(city["engine"], f"alert.view:{city['alert'][OTHER]}")
    assert _denied(city["engine"], "district.refresh")
    assert f"告警-{MINE}" in _text(own[8])


def test_the_ecology_page_and_the_wall_show_a_scoped_officer_his_district_only(city: dict[str, Any]) -> None:
    from dashboards.pages import ecology, wall

    with signed_in(LINSHUI_OFFICER):
        eco = ecology.refresh(None, None)
        data = wall.read_wall()
        kpis = _text(wall.kpis(data, None))
    stations = _text(eco[3])
    assert f"站点-{MINE}" in stations and f"站点-{OTHER}" not in stations
    assert [s.device_id for s in data.vitals.states] == [f"air-{MINE}"]
    assert [a.id for a in data.vitals.alerts] == [city["alert"][MINE]]
    assert set(data.vitals.tickets) == {MINE} and set(data.vitals.cases) == {MINE}
    assert set(data.district_aqi) == {MINE} and data.district_code == MINE
    assert "1 / 1" in kpis
    with signed_in(CITY_OFFICER):
        city_wide = wall.read_wall()
    assert {s.device_id for s in city_wide.vitals.states} == {f"air-{MINE}", f"air-{OTHER}"}


def test_each_page_names_the_scope_in_its_head(city: dict[str, Any]) -> None:
    from dashboards.pages import ecology, emergency, hotline, urban

    for page in (hotline, urban, emergency, ecology):
        with signed_in(LINSHUI_OFFICER):
            assert t("scope.badge", name="邻水县") in _text(page.layout())
        with signed_in(CITY_OFFICER):
            assert "scope-badge" not in _text(page.layout())
    assert drill.scope_badge(None) is None


def test_another_districts_page_is_refused_and_the_overview_leads_home(city: dict[str, Any]) -> None:
    district_page = next(
        p for p in dash.page_registry.values() if p.get("path_template") == drill.PATH_TEMPLATE
    )
    overview = next(p for p in dash.page_registry.values() if p.get("path") == "/")
    with signed_in(LINSHUI_OFFICER):
        refused = district_page["layout"](code=OTHER)
        own = district_page["layout"](code=MINE)
        home = overview["layout"]()
    assert "auth-refused" in _text(refused) and "邻水县" in _text(refused)
    assert "district-vitals" in _text(own)
    assert f"/districts/{MINE}" in _text(home) and "overview-map" not in _text(home)
    assert _denied(city["engine"], None, district=OTHER)
    with signed_in(CITY_OFFICER):
        assert "district-vitals" in _text(district_page["layout"](code=OTHER))
        assert "overview-map" in _text(overview["layout"]())
    assert auth.scoped_home(overview, LINSHUI_OFFICER) == f"/districts/{MINE}"
    assert auth.scoped_home(overview, CITY_OFFICER) is None


def _denied(engine: sa.Engine, what: str | None, *, district: str | None = None) -> bool:
    """An ``auth.denied`` entry with reason district (for ``what``, or for ``district``)."""
    table = AuditLog.__table__
    with engine.connect() as conn:
        rows = conn.execute(sa.select(table.c.after).where(table.c.action == "auth.denied")).scalars().all()
    return any(
        row["reason"] == "district"
        and (what is None or row["what"] == what)
        and (district is None or row["district_code"] == district)
        for row in rows
    )
