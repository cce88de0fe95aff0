"""Emergency incidents on the embedded backend: every transition allowed and refused, level
changes, dispatched resources, links, opening from alerts (by hand and by a rule), the
public warning draft, 12345 tickets becoming cases, and the spatial questions with the real
geography of Guang'an and its seeded resources.

The spatial checks are shared with tests/integration/test_incidents_postgis.py: both
backends must give the same answers.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from shapely.geometry import Point, Polygon

from geo.resources import seed_resources
from models import alerts, audit, cases, db, incidents, spatial, tickets
from models.incidents import DispatchStatus, IncidentState, ResponseLevel, WarningDraft, WarningDraftError
from models.lifecycle import Actor, EntityNotFound, IllegalTransition
from models.reference import seed_reference_data
from models.rules import AlertSink, load_rules, parse_rules
from models.rules.config import RuleFileError
from models.rules.sink import incident_rules
from models.schema import Case, Device, Incident, IncidentResource
from tests.unit.models.test_alerts import draft as alert_draft
from tests.unit.models.test_tickets import add_ticket, offset

T0 = datetime(2026, 7, 15, 2, 0, tzinfo=UTC)  # 10:00 in Guang'an
#: 鼎屏镇, the seat of 邻水县 (511623), where the flood story happens.
SEAT = (106.932, 30.334)
OFFICER = Actor("li", role="duty_officer", display_name="李四")
# A second duty officer in command; leaders watch and export (models.users.ROLE_PERMISSIONS).
COMMANDER = Actor("zhao", role="duty_officer", display_name="赵指挥")
LEADER = Actor("wang", role="leader", display_name="王局长")
VIEWER = Actor("chen", role="viewer")
S = IncidentState


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated, seeded file per module (districts, grid cells, the 46 resources)."""
    path = tmp_path_factory.mktemp("incidents") / "template.sqlite3"
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


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def new_incident(conn: sa.Connection, **changes: object) -> incidents.IncidentView:
    values: dict[str, object] = {
        "incident_type_key": "flood",
        "title": "鼎屏镇城区内涝",
        "description": "多处道路积水超过40厘米",
        "lon": SEAT[0],
        "lat": SEAT[1],
        "actor": OFFICER,
        "now": T0,
    }
    values.update(changes)
    return incidents.open_incident(conn, **values).incident  # type: ignore[arg-type]


# ---- shared spatial checks (the PostGIS tests import these) --------------------------------


def place_things(conn: sa.Connection) -> dict[str, tuple[float, float]]:
    """Devices, tickets and cases at known distances and bearings from the seat."""
    where = {
        "dev-0500-E": offset(*SEAT, 500, 0),
        "dev-2000-N": offset(*SEAT, 0, 2000),
        "dev-4000-W": offset(*SEAT, -4000, 0),
        "dev-6000-S": offset(*SEAT, 0, -6000),
        "T-0800-E": offset(*SEAT, 800, 0),
        "T-0300-CLOSED": offset(*SEAT, 0, 300),
        "T-2500-S": offset(*SEAT, 0, -2500),
        "C-0900-W": offset(*SEAT, -900, 0),
        "C-0100-CLOSED": offset(*SEAT, 100, 0),
        "C-4500-E": offset(*SEAT, 4500, 0),
    }
    for key, (lon, lat) in where.items():
        if key.startswith("dev"):
            conn.execute(
                sa.insert(Device.__table__).values(
                    device_id=key,
                    kind="sensor",
                    type="water_level",
                    name=key,
                    lon=lon,
                    lat=lat,
                    geom=Point(lon, lat),
                    district_code="511623",
                    props={},
                )
            )
        elif key.startswith("T-"):
            add_ticket(
                conn,
                key,
                at=(lon, lat),
                category="道路积水",
                district_code="511623",
                state="closed" if key.endswith("CLOSED") else "registered",
            )
        else:
            case = cases.report_case(
                conn,
                source="inspector",
                category="waterlogging",
                description=key,
                lon=lon,
                lat=lat,
                reporter="inspector-1",
                now=T0,
            )
            conn.execute(
                sa.update(Case.__table__)
                .where(Case.case_id == case.case_id)
                .values(source_ref=key, state="verified_closed" if key.endswith("CLOSED") else "reported")
            )
    return where


def _ids(hits: list[incidents.AreaHit], conn: sa.Connection) -> list[str]:
    out = []
    for h in hits:
        if h.kind == "case":
            out.append(conn.execute(sa.select(Case.source_ref).where(Case.case_id == h.id)).scalar_one())
        else:
            out.append(h.id)
    return out


def check_affected_area(conn: sa.Connection) -> None:
    """Buffers of 1, 3, 5 km and a drawn polygon: what is inside, nearest first, distances."""
    place_things(conn)
    incident = new_incident(conn)
    assert incident.area_kind == "circle" and incident.radius_m == 1000 and incident.district_code == "511623"
    expected = {
        1000: (["dev-0500-E"], ["T-0800-E"], ["C-0900-W"]),
        3000: (["dev-0500-E", "dev-2000-N"], ["T-0800-E", "T-2500-S"], ["C-0900-W"]),
        5000: (
            ["dev-0500-E", "dev-2000-N", "dev-4000-W"],
            ["T-0800-E", "T-2500-S"],
            ["C-0900-W", "C-4500-E"],
        ),
    }
    for radius, (devices, open_tickets, open_cases) in expected.items():
        found = incidents.affected_area(conn, incident.incident_id, radius_m=radius)
        assert found.area.radius_m == radius
        assert [h.id for h in found.devices] == devices, radius
        assert [h.id for h in found.tickets] == open_tickets, radius
        assert _ids(found.cases, conn) == open_cases, radius
    found = incidents.affected_area(conn, incident.incident_id, radius_m=5000)
    # Straight-line distances from the seat, geodesic: within 0.5 % on either backend.
    wanted = {"dev-0500-E": 500, "dev-2000-N": 2000, "dev-4000-W": 4000}
    for hit in found.devices:
        assert hit.distance_m == pytest.approx(wanted[hit.id], rel=0.005)
    assert found.tickets[0].label == "道路积水：夜间施工噪音" and found.tickets[0].state == "registered"
    # The stored area (1 km) is what affected_area uses without a radius.
    assert [h.id for h in incidents.affected_area(conn, incident.incident_id).devices] == ["dev-0500-E"]
    # The incident as the caller just read it is not read again (the emergency page's panel);
    # another incident's view is not taken for it.
    assert incidents.affected_area(conn, incident.incident_id, radius_m=3000, incident=incident) == (
        incidents.affected_area(conn, incident.incident_id, radius_m=3000)
    )
    elsewhere = new_incident(conn, lon=SEAT[0] + 0.5)
    assert [
        h.id for h in incidents.affected_area(conn, incident.incident_id, incident=elsewhere).devices
    ] == ["dev-0500-E"]
    # A polygon drawn over the east side only, 0–5 km east and 1 km either side.
    east = [offset(*SEAT, x, y) for x, y in ((-100, -1000), (5000, -1000), (5000, 1000), (-100, 1000))]
    incidents.set_area(conn, incident.incident_id, actor=OFFICER, now=at(5), polygon=east)
    drawn = incidents.affected_area(conn, incident.incident_id)
    assert drawn.area.kind == "polygon"
    assert [h.id for h in drawn.devices] == ["dev-0500-E"]
    assert [h.id for h in drawn.tickets] == ["T-0800-E"]
    assert _ids(drawn.cases, conn) == ["C-4500-E"]
    assert drawn.cases[0].distance_m == pytest.approx(4500, rel=0.005)
    view = incidents.get_incident(conn, incident.incident_id)
    assert view is not None and view.area_kind == "polygon" and view.radius_m is None
    assert view.area is not None and view.area.covers(Point(*offset(*SEAT, 2000, 0)))


def check_nearest(conn: sa.Connection) -> None:
    """The nearest seeded resources of each kind, against brute force on the seed list."""
    incident = new_incident(conn)
    found = incidents.nearest_resources(conn, incident.incident_id, per_kind=3)
    assert set(found) == {"fire_station", "hospital", "shelter", "rescue_team"}
    for kind, hits in found.items():
        brute = sorted(
            (spatial.great_circle_m(*SEAT, r.lon, r.lat), r.resource_id)
            for r in seed_resources()
            if r.kind == kind
        )[:3]
        assert [h.resource_id for h in hits] == [rid for _d, rid in brute], kind
        for hit, (distance, _rid) in zip(hits, brute, strict=True):
            assert hit.distance_m == pytest.approx(distance, rel=0.005)
            assert hit.eta_s == pytest.approx(spatial.eta_s(kind, hit.distance_m))
    assert incidents.nearest_resources(conn, incident.incident_id, per_kind=3, incident=incident) == found
    far = new_incident(conn, lon=SEAT[0] + 0.5)
    assert incidents.nearest_resources(conn, incident.incident_id, per_kind=3, incident=far) == found
    # Linshui's own stations are nearest; the county hospital is some 200 m away.
    assert found["fire_station"][0].resource_id == "fire-511623-01"
    assert found["hospital"][0].resource_id == "hospital-511623-01"
    assert found["hospital"][0].distance_m == pytest.approx(200, abs=30)
    # ETA: a fire engine at 30 km/h on roads 1.3 × the straight line, after a minute's turnout.
    fire = found["fire_station"][0]
    assert fire.eta_s == pytest.approx(60 + fire.distance_m * 1.3 / (30 / 3.6))


def check_incidents_of_alerts(conn: sa.Connection) -> None:
    """Which open alerts already have an incident: opened from one, or linked to one; asked
    about hundreds at once, as the emergency page does on every refresh."""
    raised = [
        alerts.raise_alert(
            conn,
            alert_draft(f"w:{i}", severity="critical", lon=SEAT[0], lat=SEAT[1], district_code="511623"),
            now=T0,
        ).alert
        for i in range(3)
    ]
    opened = incidents.open_from_alert(conn, raised[0].id, actor=OFFICER, now=at(1)).incident.incident_id
    other = new_incident(conn, title="另一事件").incident_id
    assert incidents.link(conn, other, "alert", raised[1].id, actor=OFFICER, now=at(2)) is True
    asked = [a.id for a in raised] + list(range(10_000, 10_500))
    assert incidents.incidents_of_alerts(conn, asked) == {raised[0].id: opened, raised[1].id: other}
    assert incidents.incidents_of_alerts(conn, [raised[2].id]) == {}
    assert incidents.incidents_of_alerts(conn, []) == {}


# ---- spatial ---------------------------------------------------------------------------------


def test_incidents_of_alerts_opened_from_them_or_linked(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        check_incidents_of_alerts(conn)


def test_affected_area_buffers_and_drawn_polygon(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        check_affected_area(conn)


def test_nearest_resources_with_distance_and_eta(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        check_nearest(conn)


def test_areas_refuse_bad_shapes() -> None:
    with pytest.raises(ValueError, match="radius_m"):
        spatial.Area.circle(*SEAT, 0)
    with pytest.raises(ValueError, match="radius_m"):
        spatial.Area.circle(*SEAT, 80_000)
    bowtie = [(106.9, 30.3), (107.0, 30.4), (107.0, 30.3), (106.9, 30.4)]
    with pytest.raises(ValueError, match="simple polygon"):
        spatial.Area.drawn(bowtie)
    with pytest.raises(ValueError, match="WGS-84"):
        spatial.Area.circle(206.9, 30.3, 1000)
    circle = spatial.Area.circle(*SEAT, 3000)
    # Every vertex of the drawn circle lies on it.
    for lon, lat in circle.polygon.exterior.coords:
        assert spatial.great_circle_m(*SEAT, lon, lat) == pytest.approx(3000, rel=1e-9)


def test_eta_assumptions_per_kind() -> None:
    assert spatial.eta_s("hospital", 0) == 120
    assert spatial.eta_s("shelter", 1000) == pytest.approx(1000 * 1.3 / (4 / 3.6))
    assert spatial.eta_s("rescue_team", 5000) == pytest.approx(300 + 5000 * 1.3 / (25 / 3.6))
    assert spatial.eta_s("warehouse", 3000) == pytest.approx(120 + 3000 * 1.3 / (30 / 3.6))


# ---- lifecycle -------------------------------------------------------------------------------


def test_every_step_allowed_and_refused(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        incident = new_incident(conn)
        iid = incident.incident_id
        assert incident.state == S.REPORTED and incident.level is None and incident.version == 1
        # 接报 → 响应: a level is required, and a viewer may not respond.
        with pytest.raises(IllegalTransition, match="响应级别") as refused:
            incidents.respond(conn, iid, level="V", actor=OFFICER, now=at(1))
        assert refused.value.reason_en == "a response needs a level (I–IV)"
        with pytest.raises(IllegalTransition, match="无权"):
            incidents.respond(conn, iid, level="IV", actor=VIEWER, now=at(1))
        with pytest.raises(IllegalTransition, match="无权"):  # leaders watch; duty officers command
            incidents.respond(conn, iid, level="IV", actor=LEADER, now=at(1))
        # Not yet responding: nothing can be dispatched.
        with pytest.raises(IllegalTransition, match="当前为「接报」，不能调度") as refused:
            incidents.dispatch_resources(conn, iid, ["fire-511623-01"], actor=OFFICER, now=at(1))
        assert "cannot dispatch" in refused.value.reason_en
        change = incidents.respond(conn, iid, level="Ⅳ级", actor=OFFICER, commander="zhao", now=at(2))
        assert change.incident.state == S.RESPONDING and change.incident.level == "IV"
        assert change.incident.responding_at == at(2) and change.incident.commander == "zhao"
        assert change.incident.level_label_zh == "Ⅳ级响应（一般）"
        with pytest.raises(IllegalTransition, match="已被 li 于 10:02 启动响应，不能启动响应"):
            incidents.respond(conn, iid, level="III", actor=COMMANDER, now=at(3))
        # Level changes stay in the state and go on the timeline.
        with pytest.raises(IllegalTransition, match="Ⅳ级不是升级"):
            incidents.escalate(conn, iid, level="IV", reason="积水加深", actor=COMMANDER, now=at(3))
        with pytest.raises(IllegalTransition, match="须说明理由"):
            incidents.escalate(conn, iid, level="III", reason=" ", actor=COMMANDER, now=at(3))
        up = incidents.escalate(
            conn, iid, level="III", reason="积水加深，群众被困", actor=COMMANDER, now=at(3)
        )
        assert (
            up.incident.level == "III" and up.incident.state == S.RESPONDING and up.from_state == S.RESPONDING
        )
        with pytest.raises(IllegalTransition, match="Ⅱ级不是降级"):
            incidents.de_escalate(conn, iid, level="II", reason="x", actor=COMMANDER, now=at(4))
        # 调度: at least one resource, all of them known.
        with pytest.raises(IllegalTransition, match="至少派出一支"):
            incidents.dispatch_resources(conn, iid, [], actor=OFFICER, now=at(4))
        with pytest.raises(ValueError, match="unknown resources"):
            incidents.dispatch_resources(conn, iid, ["fire-511623-01", "nope"], actor=OFFICER, now=at(4))
        assert incidents.dispatched_resources(conn, iid) == []
        sent = incidents.dispatch_resources(
            conn, iid, ["fire-511623-01", "hospital-511623-01"], actor=OFFICER, now=at(5), comment="出动"
        )
        assert sent.incident.state == S.DISPATCHING and sent.incident.dispatching_at == at(5)
        rows = incidents.dispatched_resources(conn, iid)
        assert [(r.resource_id, r.status) for r in rows] == [
            ("fire-511623-01", "dispatched"),
            ("hospital-511623-01", "dispatched"),
        ]
        assert rows[0].kind == "fire_station" and rows[0].name == "邻水县消防救援站"
        assert rows[0].distance_m == pytest.approx(spatial.great_circle_m(*SEAT, 106.9350, 30.3400), abs=0.1)
        assert rows[0].eta_s == round(spatial.eta_s("fire_station", rows[0].distance_m))
        # 增派: the same station twice is refused; another one is added, the state stays.
        with pytest.raises(IllegalTransition, match="fire-511623-01 已派往本事件"):
            incidents.dispatch_resources(conn, iid, ["fire-511623-01"], actor=OFFICER, now=at(6))
        more = incidents.dispatch_resources(conn, iid, ["shelter-511623-01"], actor=OFFICER, now=at(6))
        assert more.action == "reinforce" and more.incident.state == S.DISPATCHING
        # 处置.
        with pytest.raises(IllegalTransition, match="不能转入评估"):
            incidents.assess(conn, iid, summary="x", actor=OFFICER, now=at(7))
        assert incidents.start_handling(conn, iid, actor=OFFICER, now=at(8)).incident.state == S.HANDLING
        fire, hospital, shelter = incidents.dispatched_resources(conn, iid)
        arrived = incidents.resource_arrived(conn, fire.id, actor=OFFICER, now=at(12))
        assert (
            arrived.status == DispatchStatus.ARRIVED and arrived.arrived_at == at(12) and arrived.version == 2
        )
        with pytest.raises(IllegalTransition, match="当前为「已到达」，不能确认到达"):
            incidents.resource_arrived(conn, fire.id, actor=OFFICER, now=at(13))
        with pytest.raises(IllegalTransition, match="无权"):
            incidents.release_resource(conn, hospital.id, actor=VIEWER, now=at(13))
        down = incidents.de_escalate(conn, iid, level="IV", reason="积水消退", actor=COMMANDER, now=at(20))
        assert down.incident.level == "IV" and down.incident.state == S.HANDLING
        # 评估.
        with pytest.raises(IllegalTransition, match="处置情况"):
            incidents.assess(conn, iid, summary="", actor=OFFICER, now=at(30))
        assessing = incidents.assess(conn, iid, summary="排水完毕，转移群众12人", actor=OFFICER, now=at(30))
        assert assessing.incident.state == S.ASSESSING and assessing.incident.assessing_at == at(30)
        with pytest.raises(IllegalTransition, match="转入评估，不能调度"):
            incidents.dispatch_resources(conn, iid, ["fire-511623-02"], actor=OFFICER, now=at(31))
        with pytest.raises(IllegalTransition, match="不能升级响应"):
            incidents.escalate(conn, iid, level="I", reason="x", actor=COMMANDER, now=at(31))
        # 关闭: not while a resource is out, not without the assessment.
        with pytest.raises(IllegalTransition, match="尚有 3 支救援力量未撤离") as refused:
            incidents.close(conn, iid, assessment="处置得当", actor=COMMANDER, now=at(40))
        assert refused.value.reason_en == "3 resource(s) not yet released; cannot close"
        for r in (fire, hospital, shelter):
            incidents.release_resource(conn, r.id, actor=OFFICER, now=at(41))
        with pytest.raises(IllegalTransition, match="已撤离"):
            incidents.release_resource(conn, shelter.id, actor=OFFICER, now=at(42))
        with pytest.raises(IllegalTransition, match="评估结论"):
            incidents.close(conn, iid, assessment="  ", actor=COMMANDER, now=at(45))
        closed = incidents.close(conn, iid, assessment="响应及时，无人员伤亡", actor=COMMANDER, now=at(45))
        assert closed.incident.state == S.CLOSED and closed.incident.closed_at == at(45)
        assert closed.incident.assessment == "响应及时，无人员伤亡"
        # Closed: nothing more, not even a note.
        with pytest.raises(IllegalTransition, match="已被 zhao 于 10:45 关闭，不能记录研判"):
            incidents.note(conn, iid, text="补记", actor=OFFICER, now=at(50))
        with pytest.raises(IllegalTransition, match="不能关闭"):
            incidents.close(conn, iid, assessment="再次", actor=COMMANDER, now=at(50))
        # The timeline has every step: who, when, the note.
        steps = [(e.action, e.actor, e.ts) for e in incidents.timeline(conn, iid)]
        assert [s[0] for s in steps] == [
            "report",
            "respond",
            "escalate",
            "dispatch",
            "reinforce",
            "start",
            "resource_arrive",
            "de_escalate",
            "assess",
            "resource_release",
            "resource_release",
            "resource_release",
            "close",
        ]
        entries = incidents.timeline(conn, iid)
        escalation = entries[2]
        assert escalation.label_zh == "升级响应" and escalation.comment == "积水加深，群众被困"
        assert escalation.payload is not None and escalation.payload["changes"]["level"] == ["IV", "III"]
        assert entries[6].payload is not None and entries[6].payload["resource_id"] == "fire-511623-01"
        assert entries[-1].to_state == "closed" and entries[-1].comment == "响应及时，无人员伤亡"
        # And every step is audited.
        trail = [e.action for e in audit.entries(conn, entity_type="incident", entity_id=iid)]
        assert trail[0] == "incident.report" and trail[-1] == "incident.close" and len(trail) == len(steps)
        view = incidents.incident_view(conn, iid)
        assert view is not None and len(view.resources) == 3
        assert all(r.status == "released" for r in view.resources)


def test_dismiss_a_report_that_is_no_emergency(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        iid = new_incident(conn).incident_id
        with pytest.raises(IllegalTransition, match="核销事件须说明理由"):
            incidents.dismiss(conn, iid, reason="", actor=OFFICER, now=at(1))
        change = incidents.dismiss(conn, iid, reason="核实为排水检修，非险情", actor=OFFICER, now=at(2))
        assert change.incident.state == S.CLOSED and change.incident.closed_at == at(2)
        with pytest.raises(IllegalTransition, match="不能启动响应"):
            incidents.respond(conn, iid, level="IV", actor=OFFICER, now=at(3))
        assert incidents.open_incidents(conn) == []
        with pytest.raises(EntityNotFound, match="事件 nope 不存在"):
            incidents.respond(conn, "nope", level="IV", actor=OFFICER, now=at(3))


def test_response_levels_and_colours() -> None:
    assert [lvl.label_zh for lvl in ResponseLevel] == [
        "Ⅰ级响应（特别重大）",
        "Ⅱ级响应（重大）",
        "Ⅲ级响应（较大）",
        "Ⅳ级响应（一般）",
    ]
    assert [lvl.colour.value for lvl in ResponseLevel] == ["red", "orange", "yellow", "blue"]
    assert ResponseLevel.parse("Ⅱ") is ResponseLevel.II and ResponseLevel.parse(3) is ResponseLevel.III
    assert ResponseLevel.parse("ii级") is ResponseLevel.II and ResponseLevel.parse("V") is None
    assert incidents.allowed_actions("handling", "duty_officer") == [
        "assess",
        "escalate",
        "de_escalate",
        "reinforce",
        "note",
    ]
    assert incidents.allowed_actions("closed") == []
    assert incidents.type_for_rule("flood_compound") == "flood"
    assert incidents.type_for_rule("smoke_alarm") == "fire"
    assert incidents.type_for_rule("gas_lel_high") == "gas_leak"
    assert incidents.type_for_rule("aqi_heavy") == "other"


def test_open_incidents_highest_level_first(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        a = new_incident(conn, title="A", now=at(0)).incident_id
        b = new_incident(conn, title="B", now=at(1)).incident_id
        c = new_incident(conn, title="C", now=at(2)).incident_id
        incidents.respond(conn, c, level="II", actor=OFFICER, now=at(3))
        incidents.respond(conn, b, level="IV", actor=OFFICER, now=at(3))
        assert [i.incident_id for i in incidents.open_incidents(conn)] == [c, b, a]
        # One district's incidents (a district-scoped viewer's): theirs only, same order.
        assert [i.incident_id for i in incidents.open_incidents(conn, district_code="511623")] == [c, b, a]
        assert [i.incident_id for i in incidents.open_incidents(conn, district_code="511602")] == []


# ---- opening from alerts ----------------------------------------------------------------------


def test_a_duty_officer_opens_an_incident_from_a_critical_alert(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        major = alerts.raise_alert(conn, alert_draft("m:1", severity="major"), now=T0).alert
        with pytest.raises(IllegalTransition, match="不是特别严重") as refused:
            incidents.open_from_alert(conn, major.id, actor=OFFICER, now=at(1))
        assert "not critical" in refused.value.reason_en
        critical = alerts.raise_alert(
            conn,
            alert_draft(
                "w:1",
                severity="critical",
                rule_id="water_level_guarantee",
                lon=SEAT[0],
                lat=SEAT[1],
                district_code="511623",
                title="鼎屏站超保证水位",
            ),
            now=T0,
        ).alert
        with pytest.raises(IllegalTransition, match="无权接报"):
            incidents.open_from_alert(conn, critical.id, actor=VIEWER, now=at(1))
        opened = incidents.open_from_alert(conn, critical.id, actor=OFFICER, now=at(2))
        assert opened.created and opened.incident.source == "alert" and opened.incident.type == "flood"
        assert opened.incident.source_alert_id == critical.id and opened.incident.title == "鼎屏站超保证水位"
        assert opened.incident.radius_m == incidents.DEFAULT_RADIUS_M
        # The alert is linked, and taken by the officer (it stops ringing).
        assert incidents.incident_for(conn, "alert", critical.id) == opened.incident.incident_id
        alert = alerts.get_alert(conn, critical.id)
        assert alert is not None and alert.state == "acknowledged" and alert.acknowledged_by == "li"
        again = incidents.open_from_alert(conn, critical.id, actor=COMMANDER, now=at(3))
        assert not again.created and again.incident.incident_id == opened.incident.incident_id
        assert conn.execute(sa.select(sa.func.count()).select_from(Incident.__table__)).scalar_one() == 1
        # An alert that has ended cannot open one.
        ended = alerts.raise_alert(conn, alert_draft("w:2", severity="critical"), now=T0).alert
        alerts.mark_false_alarm(conn, ended.id, actor=OFFICER, address=None, now=at(4))
        with pytest.raises(IllegalTransition, match="已结束"):
            incidents.open_from_alert(conn, ended.id, actor=OFFICER, now=at(5))
        with pytest.raises(EntityNotFound):
            incidents.open_from_alert(conn, 99999, actor=OFFICER, now=at(5))


CORRELATION_RULES = """
version = 1
[[rule]]
id = "flood_compound"
name = "内涝复合险情"
name_en = "Compound flooding"
domain = "emergency"
severity = "critical"
kind = "correlation"
min_signals = 2
window_s = 1800
open_incident = true
incident_type = "flood"
title = "{district}内涝复合险情"
message = "{signals}"
  [[rule.signals]]
  name = "waterlogging"
  label = "视频识别积水"
  source = "video"
  event_types = ["waterlogging"]
  [[rule.signals]]
  name = "calls"
  label = "来电"
  source = "ticket"
  categories = ["道路积水"]
"""


def test_a_correlation_rule_opens_one_incident_per_episode(engine: sa.Engine) -> None:
    rules = parse_rules(CORRELATION_RULES)
    opening = incident_rules(rules.rules)
    assert set(opening) == {"flood_compound"} and opening["flood_compound"].correlation
    assert "flood_compound" in incident_rules(load_rules().rules)
    with engine.begin() as conn:
        add_ticket(conn, "CALL-1", at=SEAT, category="道路积水", district_code="511623")
        video = cases.cases_from_video(
            conn,
            [
                {
                    "event_id": "ev-wl-1",
                    "camera_id": "cam-ls",
                    "ts": T0,
                    "type": "waterlogging",
                    "confidence": 0.9,
                    "lon": SEAT[0],
                    "lat": SEAT[1],
                }
            ],
            T0,
        )
    case_id = video[0].case.case_id
    evidence = {
        "signals": {
            "calls": [{"id": "CALL-1", "ts": T0.isoformat()}],
            "waterlogging": [{"id": "ev-wl-1", "ts": T0.isoformat()}],
        }
    }
    correlation = alert_draft(
        "flood_compound:cell-1",
        severity="critical",
        rule_id="flood_compound",
        domain="emergency",
        source_kind="grid",
        source_id="cell-1",
        lon=SEAT[0],
        lat=SEAT[1],
        district_code="511623",
        title="邻水县内涝复合险情",
        evidence=evidence,
    )
    sink = AlertSink(engine, clock=lambda: at(1))
    first = sink.apply([correlation], opening=opening)
    sink.apply([correlation, correlation], opening=opening)  # repeats of the same episode
    sink.apply([alert_draft("other:1", severity="critical")], opening=opening)  # not an opening rule
    with engine.connect() as conn:
        rows = conn.execute(sa.select(Incident.__table__)).mappings().all()
        assert len(rows) == 1
        incident = rows[0]
        assert incident["source"] == "correlation" and incident["type"] == "flood"
        assert incident["source_alert_id"] == first[0].alert.id and incident["state"] == "reported"
        # The tickets and cases behind the correlation are linked to the incident.
        linked = {(ln.kind, ln.ref_id) for ln in incidents.links(conn, incident["incident_id"])}
        assert linked == {("alert", str(first[0].alert.id)), ("ticket", "CALL-1"), ("case", case_id)}
        report = incidents.timeline(conn, incident["incident_id"])[0]
        assert report.actor == "rule:flood_compound" and report.payload["source"] == "correlation"
        # A rule actor opened it; nobody acknowledged the alert on its behalf.
        alert = alerts.get_alert(conn, first[0].alert.id)
        assert alert is not None and alert.state == "new"
    # A new episode (the first alert resolved, the condition back) opens a new incident.
    with engine.begin() as conn:
        alerts.acknowledge(conn, first[0].alert.id, actor=OFFICER, address=None, now=at(2))
        alerts.resolve(conn, first[0].alert.id, actor=OFFICER, address=None, now=at(3))
    sink.apply([correlation], opening=opening)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(Incident.__table__)).scalar_one() == 2


def test_an_incident_the_rules_open_is_announced_to_open_pages_once(engine: sa.Engine) -> None:
    import json

    import fakeredis

    from models.live import UPDATES_CHANNEL, LiveStore

    live = LiveStore(fakeredis.FakeRedis(decode_responses=True))
    listener = live.redis.pubsub(ignore_subscribe_messages=True)
    listener.subscribe(UPDATES_CHANNEL)
    opening = incident_rules(parse_rules(CORRELATION_RULES).rules)
    correlation = alert_draft(
        "flood_compound:cell-9",
        severity="critical",
        rule_id="flood_compound",
        domain="emergency",
        source_kind="grid",
        source_id="cell-9",
        lon=SEAT[0],
        lat=SEAT[1],
        district_code="511623",
    )
    sink = AlertSink(engine, live, clock=lambda: at(1))
    sink.apply([correlation], opening=opening)
    sink.apply([correlation], opening=opening)  # the same episode again: nothing new to tell
    notes = []
    for _ in range(50):  # the subscription's own confirmation comes back as None too
        message = listener.get_message(timeout=0.01)
        if message is not None:
            notes.append(json.loads(message["data"]))
    incident_notes = [n for n in notes if n["kind"] == "incident"]
    with engine.connect() as conn:
        incident_id = conn.execute(sa.select(Incident.__table__.c.incident_id)).scalar_one()
    assert [n["id"] for n in incident_notes] == [incident_id]
    assert any(n["kind"] == "alert" for n in notes)


def test_rule_file_checks_the_incident_type() -> None:
    bad = CORRELATION_RULES.replace('incident_type = "flood"', 'incident_type = "tsunami"')
    with pytest.raises(RuleFileError, match="incident_type must be one of"):
        parse_rules(bad)


# ---- links -----------------------------------------------------------------------------------


def test_links_belong_to_one_incident(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        add_ticket(conn, "L-1", at=SEAT, category="道路积水")
        first = new_incident(conn).incident_id
        second = new_incident(conn, title="另一事件").incident_id
        assert incidents.link(conn, first, "ticket", "L-1", actor=OFFICER, now=at(1)) is True
        assert incidents.link(conn, first, "ticket", "L-1", actor=OFFICER, now=at(2)) is False
        with pytest.raises(IllegalTransition, match=f"工单 L-1 已关联事件 {first}"):
            incidents.link(conn, second, "ticket", "L-1", actor=OFFICER, now=at(3))
        with pytest.raises(ValueError, match="无此案卷"):
            incidents.link(conn, first, "case", "AJ-nope", actor=OFFICER, now=at(3))
        with pytest.raises(ValueError):
            incidents.link(conn, first, "person", "x", actor=OFFICER, now=at(3))
        assert [ln.ref_id for ln in incidents.links(conn, first, "ticket")] == ["L-1"]
        assert [e.action for e in incidents.timeline(conn, first)] == ["report", "link"]


# ---- public warning draft ------------------------------------------------------------------


def test_warning_draft_is_complete_and_kept(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        iid = new_incident(conn).incident_id
        incidents.respond(conn, iid, level="II", actor=OFFICER, now=at(1))
        warning = incidents.draft_warning(conn, iid, actor=OFFICER, now=at(2))
        assert (warning.colour, warning.severity, warning.urgency, warning.certainty) == (
            "orange",
            "Severe",
            "Immediate",
            "Observed",
        )
        assert warning.category == ("Met",) and warning.response_type == ("Evacuate",)
        assert warning.headline_zh == "邻水县暴雨内涝橙色预警"
        assert warning.headline_en == "Orange warning: flooding in Linshui County"
        assert warning.description_zh.startswith("鼎屏镇城区内涝。多处道路积水")
        assert "低洼" in warning.instruction_zh and "low-lying" in warning.instruction_en
        assert warning.circle == f"{SEAT[1]:.5f},{SEAT[0]:.5f} 1" and warning.polygon is None
        assert warning.area_desc_zh == "邻水县事发地周边1公里范围"
        assert warning.geocodes == ("511623",) and warning.level == "II"
        assert warning.expires == at(2) + timedelta(hours=24) and warning.drafted_by == "li"
        assert incidents.latest_warning(conn, iid) == warning
        # A drawn area becomes a CAP polygon; the officer can choose the colour.
        square = [offset(*SEAT, x, y) for x, y in ((-800, -800), (800, -800), (800, 800), (-800, 800))]
        incidents.set_area(conn, iid, actor=OFFICER, now=at(3), polygon=square)
        yellow = incidents.draft_warning(conn, iid, actor=COMMANDER, now=at(4), colour="yellow")
        assert yellow.severity == "Moderate" and yellow.circle is None and yellow.polygon is not None
        pairs = yellow.polygon.split()
        assert len(pairs) == 5 and pairs[0] == pairs[-1]
        lat, lon = map(float, pairs[0].split(","))
        assert 30.3 < lat < 30.4 and 106.9 < lon < 107.0
        assert incidents.latest_warning(conn, iid) == yellow
        assert [e.action for e in incidents.timeline(conn, iid)][-3:] == ["warning", "area", "warning"]
        # Before a level, the draft is blue (Minor).
        fresh = new_incident(conn, title="新报").incident_id
        assert incidents.draft_warning(conn, fresh, actor=OFFICER, now=at(5)).severity == "Minor"


def test_warning_draft_refuses_what_cap_cannot_carry(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        iid = new_incident(conn).incident_id
        with pytest.raises(WarningDraftError, match="urgency 'Soon'"):
            incidents.draft_warning(conn, iid, actor=OFFICER, now=at(1), urgency="Soon")
        nowhere = incidents.open_incident(
            conn, incident_type_key="fire", title="电话报警", lon=None, lat=None, actor=OFFICER, now=T0
        ).incident
        with pytest.raises(WarningDraftError, match="no affected area"):
            incidents.draft_warning(conn, nowhere.incident_id, actor=OFFICER, now=at(1))
        good = incidents.draft_warning(conn, iid, actor=OFFICER, now=at(1))
        with pytest.raises(WarningDraftError, match="polygon needs"):
            WarningDraft(
                **{
                    **good.to_json(),
                    "onset": good.onset,
                    "expires": good.expires,
                    "drafted_at": good.drafted_at,
                    "polygon": "30.1,106.1 30.2,106.2",
                }
            )
        incidents.dismiss(conn, iid, reason="误报", actor=OFFICER, now=at(2))
        with pytest.raises(IllegalTransition, match="已关闭，不能起草预警"):
            incidents.draft_warning(conn, iid, actor=OFFICER, now=at(3))
    with pytest.raises(ValueError, match="unknown incident type"), engine.begin() as conn:
        incidents.open_incident(
            conn, incident_type_key="meteor", title="x", lon=SEAT[0], lat=SEAT[1], actor=OFFICER, now=T0
        )


# ---- 12345 tickets become cases ------------------------------------------------------------


def test_an_urban_ticket_becomes_a_case_linked_both_ways(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        add_ticket(conn, "TC-1", at=SEAT, category="道路积水", district_code="511623")
        change = cases.case_from_ticket(conn, "TC-1", actor=OFFICER, now=at(5))
        case = change.case
        assert (case.source, case.source_ref, case.case_type, case.state) == (
            "hotline",
            "TC-1",
            "waterlogging",
            "reported",
        )
        assert case.district_code == "511623" and case.reporter == "li"
        assert "张三丰" not in (case.description or "") and "13812345678" not in (case.description or "")
        # The ticket was dispatched (派单) to the case type's department; its event names the case.
        ticket = tickets.get_ticket(conn, "TC-1")
        assert ticket is not None and ticket.state == "dispatched" and ticket.department == "水务"
        dispatch = tickets.ticket_history(conn, "TC-1")[-1]
        assert dispatch.action == "dispatch" and dispatch.payload["case_id"] == case.case_id
        first = cases.case_history(conn, case.case_id)[0]
        assert first.action == "report" and first.payload["evidence"] == {"ticket_id": "TC-1"}
        assert cases.case_of_ticket(conn, "TC-1") == case.case_id
        with pytest.raises(IllegalTransition, match=f"已转为案卷 {case.case_id}"):
            cases.case_from_ticket(conn, "TC-1", actor=OFFICER, now=at(6))
        # Not urban management: refused, nothing written.
        add_ticket(conn, "TC-2", at=SEAT, category="噪声扰民")
        with pytest.raises(IllegalTransition, match="不属于城市管理") as refused:
            cases.case_from_ticket(conn, "TC-2", actor=OFFICER, now=at(6))
        assert refused.value.reason_en.startswith("ticket TC-2 is '噪声扰民'")
        # A ticket a department already signed for is not the centre's to re-route.
        add_ticket(conn, "TC-3", at=SEAT, category="垃圾清运", state="accepted")
        with pytest.raises(IllegalTransition, match="不能派单"):
            cases.case_from_ticket(conn, "TC-3", actor=OFFICER, now=at(6))
        assert cases.case_of_ticket(conn, "TC-3") is None
        with pytest.raises(EntityNotFound):
            cases.case_from_ticket(conn, "TC-404", actor=OFFICER, now=at(6))
        assert conn.execute(sa.select(sa.func.count()).select_from(Case.__table__)).scalar_one() == 1


def test_incident_resources_table_keeps_one_active_row_per_resource(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        iid = new_incident(conn).incident_id
        incidents.respond(conn, iid, level="IV", actor=OFFICER, now=at(1))
        incidents.dispatch_resources(conn, iid, ["fire-511623-01"], actor=OFFICER, now=at(2))
        (first,) = incidents.dispatched_resources(conn, iid)
        incidents.release_resource(conn, first.id, actor=OFFICER, now=at(3))
        # Released, it can be sent again to the same incident.
        incidents.dispatch_resources(conn, iid, ["fire-511623-01"], actor=OFFICER, now=at(4))
        statuses = [r.status for r in incidents.dispatched_resources(conn, iid)]
        assert statuses == ["released", "dispatched"]
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(
            sa.insert(IncidentResource.__table__).values(
                incident_id=iid,
                resource_id="fire-511623-01",
                kind="fire_station",
                name="x",
                status="dispatched",
                dispatched_at=at(5),
                version=1,
            )
        )


def test_drawn_polygon_area_of_an_incident_without_a_point(engine: sa.Engine) -> None:
    square = Polygon([offset(*SEAT, x, y) for x, y in ((-500, -500), (500, -500), (500, 500), (-500, 500))])
    with engine.begin() as conn:
        incident = incidents.open_incident(
            conn,
            incident_type_key="geological",
            title="山体滑坡隐患",
            lon=None,
            lat=None,
            polygon=square,
            actor=OFFICER,
            now=T0,
        ).incident
        assert incident.area_kind == "polygon" and incident.lon is not None
        assert spatial.great_circle_m(*SEAT, incident.lon, incident.lat) < 50
        assert incident.district_code == "511623"
