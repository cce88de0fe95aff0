"""Urban-management cases against the real PostgreSQL + PostGIS: the same video
de-duplication, nearby-case and indicator expectations as the embedded backend, and the
compare-and-set when two people act on one case at once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa

from models import cases
from models.lifecycle import IllegalTransition
from models.schema import Case, CaseEvent
from tests.unit.models.test_cases import (
    OPERATOR,
    T0,
    check_district_scope,
    check_indicators,
    check_nearby,
    check_page_reads,
    check_video_dedup,
    new_case,
)

pytestmark = pytest.mark.real_services


@pytest.fixture(scope="module")
def engine(pg_engine: sa.Engine) -> sa.Engine:
    return pg_engine


@pytest.fixture
def clean(engine: sa.Engine) -> Iterator[sa.Engine]:
    """Each test starts without cases (the checks count them all)."""

    def wipe() -> None:
        with engine.begin() as conn:
            conn.execute(sa.delete(CaseEvent.__table__))
            conn.execute(sa.delete(Case.__table__))

    wipe()
    yield engine
    wipe()


def test_video_dedup_matches_the_fallback(clean: sa.Engine) -> None:
    with clean.begin() as conn:
        check_video_dedup(conn)
        # The geometry PostGIS stores is the point the camera reported.
        lon, lat = conn.execute(sa.select(sa.func.ST_X(Case.geom), sa.func.ST_Y(Case.geom)).limit(1)).one()
        assert 106.6 < lon < 106.7 and 30.4 < lat < 30.5


def test_nearby_cases_on_the_spheroid_match_the_fallback(clean: sa.Engine) -> None:
    with clean.begin() as conn:
        check_nearby(conn)


def test_indicators_match_the_fallback(clean: sa.Engine) -> None:
    with clean.begin() as conn:
        check_indicators(conn)


def test_two_dispatchers_at_once_one_wins(clean: sa.Engine) -> None:
    with clean.begin() as conn:
        case_id = new_case(conn).case_id
        cases.file_case(conn, case_id, actor=OPERATOR, now=T0)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def dispatch(department: str) -> None:
        with clean.begin() as conn:
            barrier.wait()
            try:
                cases.dispatch_case(
                    conn, case_id, department=department, actor=OPERATOR, now=T0 + timedelta(minutes=1)
                )
                outcomes.append("won")
            except IllegalTransition as exc:
                outcomes.append(exc.reason_zh)

    threads = [threading.Thread(target=dispatch, args=(d,)) for d in ("城管", "住建")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(outcomes) == 2 and outcomes.count("won") == 1
    loser = next(o for o in outcomes if o != "won")
    assert "已被 wang 于 10:01 派遣，不能派遣" in loser
    with clean.connect() as conn:
        history = [e.action for e in cases.case_history(conn, case_id)]
    assert history == ["report", "file", "dispatch"]


def test_district_scope_matches_the_fallback(clean: sa.Engine) -> None:
    # Rolled back: the sightings it stores would otherwise stay for the next run.
    with clean.connect() as conn, conn.begin() as transaction:
        check_district_scope(conn)
        transaction.rollback()


def test_the_urban_pages_combined_reads_match_the_single_ones(clean: sa.Engine) -> None:
    # Rolled back: the sightings it stores would otherwise stay for the next run.
    with clean.connect() as conn, conn.begin() as transaction:
        check_page_reads(conn)
        transaction.rollback()
