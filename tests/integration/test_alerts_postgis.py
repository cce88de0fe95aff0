"""Alerts against the real PostgreSQL + PostGIS and Redis: races, the live queue, migration 0002.

The races run two threads through a ``threading.Barrier`` so both transactions are open
at the same moment, and repeat, because one lucky ordering proves nothing.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from models import alerts, audit, db
from models.alerts import AlertDraft, IllegalTransition
from models.lifecycle import Actor
from models.live import ALERTS_AUDIBLE_KEY, ALERTS_OPEN_KEY, LiveStore, alert_key
from models.schema import Alert, User
from tests.conftest import service_missing

pytestmark = pytest.mark.real_services

ROUNDS = 20
T0 = datetime(2026, 7, 15, 2, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def engine(pg_url: str) -> Iterator[sa.Engine]:
    engine = db.create_engine_for(pg_url)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(User.__table__),
            [
                {"username": "zhang", "display_name": "张三", "password_hash": "x", "role": "duty_officer"},
                {"username": "li", "display_name": "李四", "password_hash": "x", "role": "duty_officer"},
            ],
        )
    yield engine
    engine.dispose()


def draft(key: str | None = None, severity: str = "critical") -> AlertDraft:
    return AlertDraft(
        rule_id="water_level",
        domain="emergency",
        severity=severity,
        title="渠江广安站水位超警戒",
        message="水位 8.4 m",
        dedup_key=key or f"water_level:{uuid.uuid4().hex}",
        source_kind="sensor",
        source_id="wl-qujiang-01",
        district_code="511602",
        grid_id=None,
        lon=106.64,
        lat=30.46,
        evidence={"level_m": 8.4},
    )


def together(engine: sa.Engine, work: list[Callable[[sa.Connection], Any]]) -> list[Any]:
    """Run each callable in its own thread and transaction, released at the same instant.

    Returns each callable's result, or the exception it raised (its transaction rolled back).
    """
    barrier = threading.Barrier(len(work))
    results: list[Any] = [None] * len(work)

    def run(i: int) -> None:
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql("SELECT 1")  # connection checked out and transaction open
                barrier.wait(timeout=10)
                results[i] = work[i](conn)
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(work))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    return results


def test_two_officers_acknowledge_at_once_exactly_one_wins(engine: sa.Engine) -> None:
    officers = ["zhang", "li"]
    names = {"zhang": "张三", "li": "李四"}
    winners: list[str] = []
    for round_ in range(ROUNDS):
        with engine.begin() as conn:
            alert_id = alerts.raise_alert(conn, draft(), now=T0).alert.id
        at = T0 + timedelta(minutes=1)
        outcome = together(
            engine,
            [
                lambda conn, who=who, i=i, alert_id=alert_id, at=at: alerts.acknowledge(
                    conn, alert_id, actor=Actor(who, role="duty_officer"), address=f"10.0.0.{i}", now=at
                )
                for i, who in enumerate(officers)
            ],
        )
        won = [r for r in outcome if isinstance(r, alerts.AlertChange)]
        lost = [r for r in outcome if isinstance(r, IllegalTransition)]
        assert len(won) == 1 and len(lost) == 1, f"round {round_}: {outcome!r}"
        winner = won[0].alert.acknowledged_by
        winners.append(winner)
        # The loser is told who won and when, in Chinese (display name) and English.
        assert lost[0].by == winner and lost[0].state == "acknowledged"
        assert f"已被 {names[winner]} 于 10:31 确认" in lost[0].reason_zh
        assert f"(by {winner}, 10:31)" in lost[0].reason_en
        with engine.connect() as conn:
            history = alerts.alert_history(conn, alert_id)
            trail = audit.entries(conn, entity_type="alert", entity_id=alert_id)
            row = conn.execute(
                sa.select(Alert.version, Alert.acknowledged_by).where(Alert.id == alert_id)
            ).one()
        assert [e.action for e in history] == ["raise", "acknowledge"]
        assert [t.action for t in trail] == ["alert.raise", "alert.acknowledge"]
        assert tuple(row) == (2, winner)
    split = f"{winners.count('zhang')}:{winners.count('li')}"
    print(f"acknowledge race: {ROUNDS} rounds, one winner each; zhang:li wins {split}")


def test_two_workers_raise_the_same_key_at_once_one_alert_opens(engine: sa.Engine) -> None:
    for round_ in range(ROUNDS):
        key = f"race:{uuid.uuid4().hex}"
        outcome = together(engine, [lambda conn, key=key: alerts.raise_alert(conn, draft(key), now=T0)] * 2)
        assert all(isinstance(r, alerts.AlertChange) for r in outcome), f"round {round_}: {outcome!r}"
        assert sorted(r.action for r in outcome) == ["raise", "repeat"]
        assert outcome[0].alert.id == outcome[1].alert.id
        with engine.connect() as conn:
            rows = conn.execute(sa.select(Alert.id, Alert.occurrences).where(Alert.dedup_key == key)).all()
        assert len(rows) == 1 and rows[0].occurrences == 2


def test_two_sweeps_escalate_an_overdue_alert_once(engine: sa.Engine) -> None:
    for _round in range(ROUNDS // 2):
        with engine.begin() as conn:
            alert_id = alerts.raise_alert(conn, draft(), now=T0).alert.id
        late = T0 + timedelta(minutes=3)
        outcome = together(engine, [lambda conn, late=late: alerts.escalate_overdue(conn, now=late)] * 2)
        assert not any(isinstance(r, Exception) for r in outcome), outcome
        escalations = [c for r in outcome for c in r if c.alert.id == alert_id]
        assert len(escalations) == 1 and escalations[0].alert.escalation_level == 1
        with engine.begin() as conn:
            # Leave nothing overdue for the next round.
            alerts.acknowledge(conn, alert_id, actor="zhang", address=None, now=late)


def test_acknowledge_racing_escalation(engine: sa.Engine) -> None:
    """An officer acknowledging while the SLA sweep runs: either order is consistent."""
    for _round in range(ROUNDS // 2):
        with engine.begin() as conn:
            alert_id = alerts.raise_alert(conn, draft(), now=T0).alert.id
        late = T0 + timedelta(minutes=3)
        ack, sweep = together(
            engine,
            [
                lambda conn, alert_id=alert_id, late=late: alerts.acknowledge(
                    conn, alert_id, actor="zhang", address=None, now=late
                ),
                lambda conn, late=late: alerts.escalate_overdue(conn, now=late),
            ],
        )
        assert isinstance(ack, alerts.AlertChange), ack  # escalated alerts can still be acknowledged
        assert not isinstance(sweep, Exception), sweep
        with engine.connect() as conn:
            final = alerts.get_alert(conn, alert_id)
        assert final.state == "acknowledged" and final.acknowledged_by == "zhang"
        assert final.escalation_level == len([c for c in sweep if c.alert.id == alert_id])


def test_dedup_index_and_geometry_on_postgis(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        change = alerts.raise_alert(conn, draft(), now=T0)
        srid, wkt = conn.execute(
            sa.text("SELECT ST_SRID(geom), ST_AsText(geom) FROM alerts WHERE id = :id"),
            {"id": change.alert.id},
        ).one()
    assert srid == 4326 and wkt == "POINT(106.64 30.46)"


# ---- live state in the real Redis -----------------------------------------------------------


@pytest.fixture
def live(redis_url: str) -> Iterator[LiveStore]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    store = LiveStore(client)

    def clear() -> None:
        # The queue, the audible set, the per-district queues and the version: alert ids
        # start again in each test's database, so nothing of another test may remain.
        for key in [*client.scan_iter(match="cityops:alerts:*"), *client.scan_iter(match=alert_key("*"))]:
            client.delete(key)

    clear()
    yield store
    clear()
    client.delete("cityops:stream:alerts")
    client.close()


def test_live_queue_in_redis_follows_the_database(engine: sa.Engine, live: LiveStore) -> None:
    with engine.begin() as conn:
        minor = alerts.raise_alert(conn, draft(severity="minor"), now=T0)
        late = alerts.raise_alert(conn, draft(severity="critical"), now=T0 + timedelta(minutes=2))
        early = alerts.raise_alert(conn, draft(severity="critical"), now=T0 + timedelta(minutes=1))
    assert live.apply_alert_changes([minor, late, early]) == 3
    assert [a.id for a in live.open_alerts()] == [early.alert.id, late.alert.id, minor.alert.id]
    assert live.audible_alerts() == {early.alert.id, late.alert.id}

    # Two officers race; whatever the outcome, Redis ends up with the winner and silence.
    outcome = together(
        engine,
        [
            lambda conn, who=who: alerts.acknowledge(conn, early.alert.id, actor=who, address=None, now=T0)
            for who in ("zhang", "li")
        ],
    )
    won = [r for r in outcome if isinstance(r, alerts.AlertChange)]
    assert len(won) == 1
    live.apply_alert_changes(won)
    live.apply_alert_changes([early])  # a stale note arriving late changes nothing
    assert live.audible_alerts() == {late.alert.id}
    assert live.alert(early.alert.id).acknowledged_by == won[0].alert.acknowledged_by

    live.redis.delete(ALERTS_OPEN_KEY, ALERTS_AUDIBLE_KEY)
    with engine.connect() as conn:
        loaded = live.rebuild_alerts(conn)
        expected = alerts.open_alerts(conn)
    assert loaded == len(expected) >= 3
    # Same alerts in the same (severity, age) order; equal scores may tie-break differently.
    queue = live.open_alerts(limit=10_000)
    assert {a.id for a in queue} == {a.id for a in expected}
    assert [(a.severity, a.opened_at) for a in queue] == [(a.severity, a.opened_at) for a in expected]


def test_open_alerts_of_one_district_match_the_fallback(engine: sa.Engine, live: LiveStore) -> None:
    from tests.unit.models.test_alerts import check_district_scope

    with engine.begin() as conn:
        check_district_scope(conn, live, f"scope-{uuid.uuid4().hex[:8]}")


# ---- migration 0002 on PostgreSQL -----------------------------------------------------------


@pytest.fixture
def database_at_0001(postgis_url: str) -> Iterator[str]:
    name = "cityops_m" + uuid.uuid4().hex[:10]
    admin = sa.create_engine(postgis_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.ProgrammingError:
        admin.dispose()
        # Under CI=true this fails: the test server runs with trust auth as postgres, so a
        # refusal there means the setup is wrong, not that the test does not apply.
        service_missing("PostgreSQL CREATE DATABASE", "refused for this user")
    url = sa.engine.make_url(postgis_url).set(database=name).render_as_string(hide_password=False)
    try:
        db.upgrade_database(url, "0001")
        yield url
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def test_upgrade_from_0001_recodes_severities_and_back(database_at_0001: str) -> None:
    from alembic import command

    url = database_at_0001
    engine = db.create_engine_for(url)
    try:
        with engine.begin() as conn:
            for colour in ("red", "orange", "yellow", "blue"):
                alert_id = conn.execute(
                    sa.text(
                        "INSERT INTO alerts (rule_id, domain, severity, title, dedup_key, state, opened_at) "
                        "VALUES ('r', 'urban', :c, 't', :c, 'new', now()) RETURNING id"
                    ),
                    {"c": colour},
                ).scalar_one()
                conn.execute(
                    sa.text("INSERT INTO alert_events (alert_id, ts, action) VALUES (:a, now(), 'raise')"),
                    {"a": alert_id},
                )
        db.upgrade_database(url)
        with engine.connect() as conn:
            assert db.current_revision(conn) == db.head_revision()
            pairs = dict(conn.execute(sa.text("SELECT dedup_key, severity FROM alerts")).all())
            checks = {
                r[0]
                for r in conn.execute(
                    sa.text(
                        "SELECT conname FROM pg_constraint "
                        "WHERE conrelid = 'alerts'::regclass AND contype = 'c'"
                    )
                )
            }
        assert pairs == {"red": "critical", "orange": "major", "yellow": "minor", "blue": "info"}
        assert checks == {
            "ck_alerts_domain_valid",
            "ck_alerts_severity_valid",
            "ck_alerts_occurrences_positive",
            "ck_alerts_escalation_level_positive",
        }
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.execute(sa.text("UPDATE alerts SET severity = 'red'"))

        with engine.connect() as conn:
            command.downgrade(db.alembic_config(url, conn), "0001")
            conn.commit()
        with engine.connect() as conn:
            back = dict(conn.execute(sa.text("SELECT dedup_key, severity FROM alerts")).all())
            events = conn.execute(sa.text("SELECT count(*) FROM alert_events")).scalar_one()
        assert back == {c: c for c in ("red", "orange", "yellow", "blue")} and events == 4
    finally:
        engine.dispose()
