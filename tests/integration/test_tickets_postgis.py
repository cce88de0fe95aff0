"""Work orders against the real PostgreSQL + PostGIS: the same spatial and statistics
expectations as the embedded backend, and the compare-and-set under real concurrency."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from models import tickets
from models.lifecycle import IllegalTransition
from models.schema import HotlineTicket, TicketEvent
from tests.unit.models.test_tickets import (
    T0,
    add_ticket,
    check_district_scope,
    check_repeats,
    check_statistics,
)

pytestmark = pytest.mark.real_services

ROUNDS = 20


@pytest.fixture(scope="module")
def engine(pg_engine: sa.Engine) -> sa.Engine:
    return pg_engine


@pytest.fixture
def clean(engine: sa.Engine) -> Iterator[sa.Engine]:
    """Each test starts without tickets (the repeat and statistics checks count them all)."""

    def wipe() -> None:
        with engine.begin() as conn:
            conn.execute(sa.delete(TicketEvent.__table__))
            conn.execute(sa.update(HotlineTicket.__table__).values(repeat_of=None))
            conn.execute(sa.delete(HotlineTicket.__table__))

    wipe()
    yield engine
    wipe()


def test_repeats_on_the_spheroid_match_the_fallback(clean: sa.Engine) -> None:
    with clean.begin() as conn:
        check_repeats(conn)


def test_statistics_match_the_fallback(clean: sa.Engine) -> None:
    with clean.begin() as conn:
        check_statistics(conn)


def test_district_scope_matches_the_fallback(clean: sa.Engine) -> None:
    with clean.begin() as conn:
        check_district_scope(conn)


def together(engine: sa.Engine, work: list[Callable[[sa.Connection], Any]]) -> list[Any]:
    """Run each callable in its own thread and transaction, released at the same instant."""
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


def test_two_departments_accept_at_once_one_wins(clean: sa.Engine) -> None:
    for n in range(ROUNDS):
        ticket_id = f"RACE-{n}"
        with clean.begin() as conn:
            add_ticket(conn, ticket_id, state="dispatched", at=None)
        results = together(
            clean,
            [
                lambda c, who=who, ticket_id=ticket_id: tickets.accept(
                    c, ticket_id, actor=who, now=T0 + timedelta(minutes=5)
                )
                for who in ("dept-a", "dept-b")
            ],
        )
        won = [r for r in results if isinstance(r, tickets.TicketChange)]
        lost = [r for r in results if isinstance(r, IllegalTransition)]
        assert len(won) == 1 and len(lost) == 1, results
        assert lost[0].by == won[0].actor and "签收" in lost[0].reason_zh
        with clean.connect() as conn:
            view = tickets.get_ticket(conn, ticket_id)
            accepts = conn.execute(
                sa.select(sa.func.count()).where(
                    TicketEvent.ticket_id == ticket_id, TicketEvent.action == "accept"
                )
            ).scalar_one()
        assert view is not None and view.version == 2 and accepts == 1


def test_the_same_hotline_event_from_two_workers_is_stored_once(clean: sa.Engine) -> None:
    for n in range(ROUNDS):
        ticket_id = f"DUP-{n}"
        with clean.begin() as conn:
            add_ticket(conn, ticket_id, state="in_progress", at=None)
        event = {"event_id": f"sup-{n}", "ts": T0 + timedelta(hours=1), "action": "supervised"}

        def apply(conn: sa.Connection, ticket_id: str = ticket_id, event: dict[str, Any] = event) -> Any:
            try:
                with conn.begin_nested():
                    return tickets.apply_hotline_event(conn, ticket_id, event)
            except sa.exc.IntegrityError:
                return "duplicate"
            except IllegalTransition as exc:
                return exc

        results = together(clean, [apply, apply])
        assert sum(isinstance(r, tickets.TicketChange) for r in results) == 1, results
        with clean.connect() as conn:
            supervised = conn.execute(
                sa.select(sa.func.count()).where(
                    TicketEvent.ticket_id == ticket_id, TicketEvent.action == "supervise"
                )
            ).scalar_one()
        assert supervised == 1
