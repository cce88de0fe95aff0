"""Emergency incidents against the real PostgreSQL + PostGIS: the same affected-area and
nearest-resource expectations as the embedded backend, and races between workers and
officers — two ingest workers with sightings from one camera open one case, two workers
seeing one correlation alert open one incident, two officers dispatching at once."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from models import alerts, cases, db, incidents
from models.lifecycle import IllegalTransition
from models.reference import seed_reference_data
from models.schema import Case, CaseEvent, Incident
from tests.unit.models.test_alerts import draft as alert_draft
from tests.unit.models.test_cases import video_row
from tests.unit.models.test_incidents import (
    OFFICER,
    SEAT,
    T0,
    check_affected_area,
    check_incidents_of_alerts,
    check_nearest,
    new_incident,
)

pytestmark = pytest.mark.real_services

ROUNDS = 25
WORKFLOW_TABLES = (
    "incident_events",
    "incident_resources",
    "incident_links",
    "incident_warnings",
    "incidents",
    "case_events",
    "cases",
    "ticket_events",
    "hotline_tickets",
    "alert_events",
    "alerts",
    "devices",
)


@pytest.fixture(scope="module")
def engine(pg_url: str) -> Iterator[sa.Engine]:
    engine = db.create_engine_for(pg_url)
    seed_reference_data(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def clean(engine: sa.Engine) -> Iterator[sa.Engine]:
    """Each test starts without workflow rows (the checks count them all)."""

    def wipe() -> None:
        with engine.begin() as conn:
            for table in WORKFLOW_TABLES:
                conn.exec_driver_sql(f"DELETE FROM {table}")

    wipe()
    yield engine
    wipe()


def together(engine: sa.Engine, work: list[Callable[[sa.Connection], Any]]) -> list[Any]:
    """Run each piece of work in its own connection and transaction, released at one moment."""
    barrier = threading.Barrier(len(work))
    results: list[Any] = [None] * len(work)

    def run(i: int) -> None:
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql("SELECT 1")
                barrier.wait(timeout=10)
                results[i] = work[i](conn)
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(work))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return results


def test_affected_area_matches_the_fallback(clean: sa.Engine) -> None:
    with clean.begin() as conn:
        check_affected_area(conn)


def test_nearest_resources_match_the_fallback(clean: sa.Engine) -> None:
    with clean.begin() as conn:
        check_nearest(conn)


def test_incidents_of_alerts_match_the_fallback(clean: sa.Engine) -> None:
    with clean.begin() as conn:
        check_incidents_of_alerts(conn)


def test_two_workers_with_one_cameras_sightings_open_one_case(clean: sa.Engine) -> None:
    """The advisory lock per camera and type: the second worker waits, then adds evidence."""
    for n in range(ROUNDS):
        camera = f"cam-race-{n}"
        work = [
            lambda c, i=i, n=n, camera=camera: cases.cases_from_video(
                c, [video_row(f"race-{n}-{i}", i * 0.5, camera=camera)], T0 + timedelta(minutes=1)
            )
            for i in range(2)
        ]
        results = together(clean, work)
        assert not [r for r in results if isinstance(r, Exception)], results
        with clean.connect() as conn:
            opened = conn.execute(
                sa.select(Case.case_id, Case.evidence_count).where(Case.source_ref == camera)
            ).all()
            events = conn.execute(
                sa.select(CaseEvent.action)
                .join(Case, Case.case_id == CaseEvent.case_id)
                .where(Case.source_ref == camera)
            ).scalars()
            assert len(opened) == 1 and opened[0].evidence_count == 2, (n, opened)
            assert sorted(events) == ["evidence", "report"]


def test_two_workers_seeing_one_correlation_alert_open_one_incident(clean: sa.Engine) -> None:
    for n in range(ROUNDS):
        with clean.begin() as conn:
            alert = alerts.raise_alert(
                conn,
                alert_draft(
                    f"flood_compound:cell-{n}",
                    severity="critical",
                    rule_id="flood_compound",
                    lon=SEAT[0],
                    lat=SEAT[1],
                    district_code="511623",
                ),
                now=T0,
            ).alert
        results = together(
            clean,
            [
                lambda c, a=alert.id, w=w: incidents.open_for_alert(
                    c, a, actor=f"rule:worker-{w}", now=T0, source=incidents.IncidentSource.CORRELATION
                )
                for w in range(2)
            ],
        )
        assert all(isinstance(r, incidents.IncidentChange) for r in results), results
        assert sorted(r.created for r in results) == [False, True]
        assert results[0].incident.incident_id == results[1].incident.incident_id
        with clean.connect() as conn:
            count = conn.execute(
                sa.select(sa.func.count()).where(Incident.source_alert_id == alert.id)
            ).scalar_one()
            reports = [e.action for e in incidents.timeline(conn, results[0].incident.incident_id)]
        assert count == 1 and reports == ["report", "link"]


def test_two_officers_dispatching_at_once_one_wins(clean: sa.Engine) -> None:
    for n in range(ROUNDS):
        with clean.begin() as conn:
            iid = new_incident(conn, title=f"竞争 {n}").incident_id
            incidents.respond(conn, iid, level="IV", actor=OFFICER, now=T0)
        results = together(
            clean,
            [
                lambda c, r=r, iid=iid: incidents.dispatch_resources(
                    c, iid, [r], actor=OFFICER, now=T0 + timedelta(minutes=1)
                )
                for r in ("fire-511623-01", "fire-511623-02")
            ],
        )
        won = [r for r in results if isinstance(r, incidents.IncidentChange)]
        lost = [r for r in results if isinstance(r, IllegalTransition)]
        # The first dispatch moves the incident to 调度; the second, now in 调度, is a
        # reinforcement: both resources go, each once, on a serialised timeline.
        assert len(won) + len(lost) == 2, results
        assert sorted(r.action for r in won) in (["dispatch", "reinforce"], ["dispatch"])
        with clean.connect() as conn:
            sent = sorted(r.resource_id for r in incidents.dispatched_resources(conn, iid))
            view = incidents.get_incident(conn, iid)
        assert view is not None and view.state == "dispatching"
        assert len(sent) == len(won) and len(set(sent)) == len(sent)


def test_the_same_resource_dispatched_twice_at_once_goes_once(clean: sa.Engine) -> None:
    for n in range(ROUNDS):
        with clean.begin() as conn:
            iid = new_incident(conn, title=f"重复 {n}").incident_id
            incidents.respond(conn, iid, level="IV", actor=OFFICER, now=T0)
            incidents.dispatch_resources(conn, iid, ["hospital-511623-01"], actor=OFFICER, now=T0)
        results = together(
            clean,
            [
                lambda c, iid=iid: incidents.dispatch_resources(
                    c, iid, ["fire-511623-01"], actor=OFFICER, now=T0 + timedelta(minutes=1)
                )
            ]
            * 2,
        )
        won = [r for r in results if isinstance(r, incidents.IncidentChange)]
        lost = [r for r in results if isinstance(r, IllegalTransition)]
        assert len(won) == 1 and len(lost) == 1, results
        assert "已派往本事件" in lost[0].reason_zh
        with clean.connect() as conn:
            fire = [r for r in incidents.dispatched_resources(conn, iid) if r.resource_id == "fire-511623-01"]
        assert len(fire) == 1
