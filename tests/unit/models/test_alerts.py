"""Alerts on the embedded backend: dedup, clearing, maintenance, SLA escalation, audit, live state."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import fakeredis
import pytest
import sqlalchemy as sa

from models import alerts, audit, db
from models.alerts import DEFAULT_SLA, EVIDENCE_LIMIT, AlertDraft, IllegalTransition
from models.live import (
    ALERT_SCORE_STEP,
    ALERTS_AUDIBLE_KEY,
    ALERTS_OPEN_KEY,
    UPDATES_CHANNEL,
    LiveStore,
    alert_key,
    alert_queue_score,
    stream_key,
)
from models.schema import WARNING_COLOURS, Alert, MaintenanceWindow, Severity, WarningColour

T0 = datetime(2026, 7, 15, 2, 30, tzinfo=UTC)


@pytest.fixture
def live() -> LiveStore:
    return LiveStore(fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True))


def draft(key: str = "aqi:gas-01", severity: str = "major", **changes: object) -> AlertDraft:
    base = AlertDraft(
        rule_id="aqi",
        domain="ecology",
        severity=severity,
        title="空气质量重度污染",
        message="AQI 210",
        dedup_key=key,
        source_kind="sensor",
        source_id="aq-01",
        district_code="511602",
        grid_id="88409a2b6bfffff",
        lon=106.63,
        lat=30.47,
        evidence={"aqi": 210},
        observed_at=None,
    )
    return replace(base, **changes)


def test_severity_scale_and_warning_colours() -> None:
    assert [s.value for s in Severity] == ["critical", "major", "minor", "info"]
    assert {s.value: c.value for s, c in WARNING_COLOURS.items()} == {
        "critical": "red",
        "major": "orange",
        "minor": "yellow",
        "info": "blue",
    }
    assert set(WARNING_COLOURS.values()) == set(WarningColour)
    assert DEFAULT_SLA[Severity.CRITICAL] == timedelta(minutes=2)
    assert DEFAULT_SLA[Severity.MAJOR] == timedelta(minutes=10)
    assert DEFAULT_SLA[Severity.INFO] is None


def test_draft_is_checked() -> None:
    with pytest.raises(ValueError):
        draft(severity="red")
    with pytest.raises(ValueError):
        draft(domain="weather")
    with pytest.raises(ValueError, match="dedup_key"):
        draft(key="")


# ---- raising and dedup ----------------------------------------------------------------------


def test_raise_opens_a_new_alert(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        change = alerts.raise_alert(conn, draft(), now=T0)
        history = alerts.alert_history(conn, change.alert.id)
        trail = audit.entries(conn, entity_type="alert", entity_id=change.alert.id)
        stored = conn.execute(sa.select(Alert.geom).where(Alert.id == change.alert.id)).scalar_one()
    view = change.alert
    assert change.created and change.action == "raise" and change.actor == "rule:aqi"
    assert (view.state, view.severity, view.occurrences, view.escalation_level, view.version) == (
        "new",
        "major",
        1,
        0,
        1,
    )
    assert view.opened_at == view.last_seen_at == T0
    assert view.sla_due == T0 + timedelta(minutes=10)
    assert view.audible and view.in_queue and view.colour == WarningColour.ORANGE
    assert [(e.action, e.from_state, e.to_state, e.actor) for e in history] == [
        ("raise", None, "new", "rule:aqi")
    ]
    assert history[0].payload["evidence"]["aqi"] == 210
    assert [t.action for t in trail] == ["alert.raise"]
    assert (stored.x, stored.y) == (106.63, 30.47)


def test_a_persisting_condition_updates_its_one_alert(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        first = alerts.raise_alert(conn, draft(), now=T0)
        for minute in range(1, EVIDENCE_LIMIT + 10):
            later = alerts.raise_alert(
                conn,
                draft(evidence={"aqi": 210 + minute}, message=f"AQI {210 + minute}"),
                now=T0 + timedelta(minutes=minute),
            )
        count = conn.execute(sa.select(sa.func.count()).select_from(Alert)).scalar_one()
        evidence = alerts.alert_evidence(conn, first.alert.id)
        events = [e.action for e in alerts.alert_history(conn, first.alert.id)]
    assert count == 1
    assert later.alert.id == first.alert.id and later.action == "repeat" and not later.created
    assert later.alert.occurrences == EVIDENCE_LIMIT + 10
    assert later.alert.last_seen_at == T0 + timedelta(minutes=EVIDENCE_LIMIT + 9)
    assert later.alert.message == f"AQI {210 + EVIDENCE_LIMIT + 9}"
    # Bounded evidence: what raised it, and the most recent ones.
    assert evidence["first"]["aqi"] == 210
    assert (
        len(evidence["recent"]) == EVIDENCE_LIMIT
        and evidence["recent"][-1]["aqi"] == 210 + EVIDENCE_LIMIT + 9
    )
    assert evidence["total"] == EVIDENCE_LIMIT + 10
    # Plain repeats are not history; only the opening is.
    assert events == ["raise"]


def test_a_higher_severity_raises_the_alert_and_tightens_the_sla(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        first = alerts.raise_alert(conn, draft(severity="minor"), now=T0)
        assert first.alert.sla_due == T0 + timedelta(minutes=30)
        worse = alerts.raise_alert(conn, draft(severity="critical"), now=T0 + timedelta(minutes=1))
        milder = alerts.raise_alert(conn, draft(severity="info"), now=T0 + timedelta(minutes=2))
        events = alerts.alert_history(conn, first.alert.id)
    assert worse.alert.severity == "critical" and worse.alert.sla_due == T0 + timedelta(minutes=3)
    assert milder.alert.severity == "critical"  # never lowered while open
    assert [e.action for e in events] == ["raise", "raise_severity"]


def test_after_the_alert_ends_a_new_occurrence_opens_a_new_alert(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        first = alerts.raise_alert(conn, draft(), now=T0).alert.id
        alerts.acknowledge(conn, first, actor="zhang", address=None, now=T0)
        alerts.resolve(conn, first, actor="zhang", address=None, now=T0 + timedelta(minutes=5))
        alerts.close(conn, first, actor="zhang", address=None, now=T0 + timedelta(minutes=6))
        again = alerts.raise_alert(conn, draft(), now=T0 + timedelta(minutes=7))
        repeat = alerts.raise_alert(conn, draft(), now=T0 + timedelta(minutes=8))
        closed = alerts.get_alert(conn, first)
    assert again.created and again.alert.id != first
    assert repeat.alert.id == again.alert.id and repeat.alert.occurrences == 2
    assert closed.state == "closed" and closed.closed_at == T0 + timedelta(minutes=6)


def test_a_false_alarm_frees_the_dedup_key_too(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        first = alerts.raise_alert(conn, draft(), now=T0).alert.id
        alerts.mark_false_alarm(conn, first, actor="zhang", address=None, comment="传感器故障", now=T0)
        assert alerts.raise_alert(conn, draft(), now=T0 + timedelta(minutes=1)).alert.id != first


# ---- clearing -------------------------------------------------------------------------------


def test_clearing_keeps_the_alert_for_acknowledgement(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        alert_id = alerts.raise_alert(conn, draft(), now=T0).alert.id
        cleared = alerts.clear_alert(
            conn, "aqi:gas-01", now=T0 + timedelta(minutes=3), reason="AQI 回落至 90"
        )
        again = alerts.clear_alert(conn, "aqi:gas-01", now=T0 + timedelta(minutes=4), reason="AQI 回落至 80")
        nothing = alerts.clear_alert(conn, "no-such-key", now=T0, reason=None)
        queue = [a.id for a in alerts.open_alerts(conn)]
        acked = alerts.acknowledge(conn, alert_id, actor="zhang", address=None, now=T0 + timedelta(minutes=5))
        history = alerts.alert_history(conn, alert_id)
    assert cleared is not None and cleared.action == "clear"
    assert cleared.alert.state == "new" and cleared.alert.cleared_at == T0 + timedelta(minutes=3)
    assert cleared.alert.audible  # still needs a person to take note
    assert again is None and nothing is None
    assert queue == [alert_id]
    assert acked.alert.state == "acknowledged"
    assert [(e.action, e.comment) for e in history][:2] == [("raise", None), ("clear", "AQI 回落至 90")]


def test_a_condition_that_comes_back_uncleares_its_alert(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        alert_id = alerts.raise_alert(conn, draft(), now=T0).alert.id
        alerts.clear_alert(conn, "aqi:gas-01", now=T0 + timedelta(minutes=1))
        back = alerts.raise_alert(conn, draft(), now=T0 + timedelta(minutes=2))
        history = [e.action for e in alerts.alert_history(conn, alert_id)]
    assert back.alert.id == alert_id and back.alert.cleared_at is None
    assert history == ["raise", "clear", "recur"]


# ---- maintenance windows (suppression) -----------------------------------------------------


def test_a_device_in_maintenance_opens_suppressed_alerts(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        window = alerts.declare_maintenance(
            conn,
            device_id="aq-01",
            starts_at=T0,
            ends_at=T0 + timedelta(hours=2),
            reason="更换传感器",
            actor="li",
            address="10.0.0.8",
            now=T0,
        )
        quiet = alerts.raise_alert(conn, draft(), now=T0 + timedelta(minutes=1))
        other = alerts.raise_alert(
            conn, draft(key="aqi:other", source_id="aq-02"), now=T0 + timedelta(minutes=1)
        )
        hotline = alerts.raise_alert(
            conn,
            draft(key="hotline:1", source_kind="ticket", source_id="aq-01"),
            now=T0 + timedelta(minutes=1),
        )
        repeat = alerts.raise_alert(conn, draft(), now=T0 + timedelta(minutes=30))
        overdue = alerts.escalate_overdue(conn, now=T0 + timedelta(hours=1))
        queue = {a.id for a in alerts.open_alerts(conn)}
        trail = audit.entries(conn, entity_type="maintenance_window", entity_id=window.id)
    assert quiet.alert.state == "suppressed" and quiet.alert.sla_due is None
    assert not quiet.alert.audible and not quiet.alert.in_queue
    assert repeat.alert.id == quiet.alert.id and repeat.alert.state == "suppressed"
    assert other.alert.state == "new" and hotline.alert.state == "new"
    assert quiet.alert.id not in queue and {other.alert.id, hotline.alert.id} <= queue
    assert quiet.alert.id not in {c.alert.id for c in overdue}
    assert [t.action for t in trail] == ["maintenance_window.declare"]


def test_a_district_window_covers_its_devices(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        alerts.declare_maintenance(
            conn,
            district_code="511602",
            starts_at=T0,
            ends_at=T0 + timedelta(hours=1),
            reason="停电检修",
            actor="li",
            address=None,
            now=T0,
        )
        inside = alerts.raise_alert(conn, draft(), now=T0 + timedelta(minutes=1))
        elsewhere = alerts.raise_alert(
            conn, draft(key="x", district_code="511621"), now=T0 + timedelta(minutes=1)
        )
        before_window = alerts.raise_alert(conn, draft(key="y"), now=T0 - timedelta(minutes=1))
    assert inside.alert.state == "suppressed"
    assert elsewhere.alert.state == "new" and before_window.alert.state == "new"


def test_after_the_window_a_persisting_condition_comes_back(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        window = alerts.declare_maintenance(
            conn,
            device_id="aq-01",
            starts_at=T0,
            ends_at=T0 + timedelta(hours=2),
            reason="校准",
            actor="li",
            address=None,
            now=T0,
        )
        alert_id = alerts.raise_alert(conn, draft(), now=T0 + timedelta(minutes=1)).alert.id
        alerts.end_maintenance(conn, window.id, actor="li", address=None, now=T0 + timedelta(minutes=20))
        back = alerts.raise_alert(conn, draft(), now=T0 + timedelta(minutes=21))
        ends_at = conn.execute(sa.select(MaintenanceWindow.ends_at)).scalar_one()
        last = alerts.alert_history(conn, alert_id)[-1]
    assert ends_at == T0 + timedelta(minutes=20)
    assert back.alert.id == alert_id and back.action == "unsuppress"
    assert back.alert.state == "new" and back.alert.audible
    assert back.alert.sla_due == T0 + timedelta(minutes=31)
    assert (last.action, last.actor) == ("unsuppress", "system")


def test_a_suppressed_alert_whose_condition_ends_is_closed(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        alerts.declare_maintenance(
            conn,
            device_id="aq-01",
            starts_at=T0,
            ends_at=T0 + timedelta(hours=2),
            reason="校准",
            actor="li",
            address=None,
            now=T0,
        )
        alert_id = alerts.raise_alert(conn, draft(), now=T0 + timedelta(minutes=1)).alert.id
        closed = alerts.clear_alert(conn, "aqi:gas-01", now=T0 + timedelta(minutes=5))
        fresh = alerts.raise_alert(conn, draft(), now=T0 + timedelta(minutes=6))
    assert closed.alert.state == "closed" and closed.actor == "system"
    assert closed.alert.resolved_at == closed.alert.cleared_at == T0 + timedelta(minutes=5)
    assert fresh.alert.id != alert_id


def test_an_officers_suppression_holds_until_an_officer_lifts_it(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        alert_id = alerts.raise_alert(conn, draft(), now=T0).alert.id
        alerts.suppress(conn, alert_id, actor="zhang", address=None, comment="道路施工，已知", now=T0)
        still = alerts.raise_alert(conn, draft(), now=T0 + timedelta(minutes=5))
        lifted = alerts.unsuppress(conn, alert_id, actor="zhang", address=None, now=T0 + timedelta(minutes=6))
    assert still.alert.state == "suppressed"
    assert lifted.alert.state == "new" and lifted.alert.sla_due == T0 + timedelta(minutes=16)


def test_maintenance_windows_are_checked(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        with pytest.raises(ValueError, match="须指定设备或区县"):
            alerts.declare_maintenance(
                conn,
                starts_at=T0,
                ends_at=T0 + timedelta(hours=1),
                reason="?",
                actor="li",
                address=None,
                now=T0,
            )
        with pytest.raises(ValueError, match="结束时间须晚于开始时间"):
            alerts.declare_maintenance(
                conn, device_id="d", starts_at=T0, ends_at=T0, reason="?", actor="li", address=None, now=T0
            )
    with pytest.raises(sa.exc.IntegrityError, match="CHECK"), engine.begin() as conn:
        conn.execute(
            sa.insert(MaintenanceWindow.__table__).values(
                starts_at=T0, ends_at=T0 + timedelta(hours=1), reason="?", created_by="li", created_at=T0
            )
        )


# ---- SLA escalation -------------------------------------------------------------------------


def test_unacknowledged_alerts_escalate_after_their_sla(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        critical = alerts.raise_alert(conn, draft(key="c", severity="critical"), now=T0).alert.id
        major = alerts.raise_alert(conn, draft(key="m", severity="major"), now=T0).alert.id
        info = alerts.raise_alert(conn, draft(key="i", severity="info"), now=T0).alert.id
        acked = alerts.raise_alert(conn, draft(key="a", severity="critical"), now=T0).alert.id
        alerts.acknowledge(conn, acked, actor="zhang", address=None, now=T0 + timedelta(minutes=1))

        assert alerts.escalate_overdue(conn, now=T0 + timedelta(minutes=1, seconds=59)) == []
        first = alerts.escalate_overdue(conn, now=T0 + timedelta(minutes=2))
        # Running the sweep again at the same instant changes nothing.
        assert alerts.escalate_overdue(conn, now=T0 + timedelta(minutes=2)) == []
        second = alerts.escalate_overdue(conn, now=T0 + timedelta(minutes=4))
        third = alerts.escalate_overdue(conn, now=T0 + timedelta(minutes=10))
        late = alerts.acknowledge(conn, critical, actor="li", address=None, now=T0 + timedelta(minutes=11))
        after_ack = alerts.escalate_overdue(conn, now=T0 + timedelta(hours=5))
        history = alerts.alert_history(conn, critical)
        trail = audit.entries(conn, entity_type="alert", entity_id=critical)
    assert [(c.alert.id, c.alert.escalation_level, c.alert.state) for c in first] == [
        (critical, 1, "escalated")
    ]
    assert first[0].alert.sla_due == T0 + timedelta(minutes=4) and first[0].actor == "system"
    assert [(c.alert.id, c.alert.escalation_level) for c in second] == [(critical, 2)]
    assert {(c.alert.id, c.alert.escalation_level) for c in third} == {(critical, 3), (major, 1)}
    assert late.alert.state == "acknowledged" and late.alert.sla_due is None and not late.alert.audible
    # Only the major one is still unanswered; info alerts never escalate.
    assert [(c.alert.id, c.alert.escalation_level) for c in after_ack] == [(major, 2)]
    assert info not in {c.alert.id for c in first + second + third + after_ack}
    assert [e.action for e in history] == [
        "raise",
        "auto_escalate",
        "auto_escalate",
        "auto_escalate",
        "acknowledge",
    ]
    assert history[1].actor == "system" and history[1].payload["changes"]["escalation_level"] == [0, 1]
    assert [t.action for t in trail][-2:] == ["alert.auto_escalate", "alert.acknowledge"]


def test_the_sla_is_configuration(engine: sa.Engine) -> None:
    sla = {"critical": timedelta(seconds=30), "major": None}
    with engine.begin() as conn:
        critical = alerts.raise_alert(conn, draft(key="c", severity="critical"), now=T0, sla=sla).alert
        major = alerts.raise_alert(conn, draft(key="m", severity="major"), now=T0, sla=sla).alert
        escalated = alerts.escalate_overdue(conn, now=T0 + timedelta(seconds=30), sla=sla)
    assert critical.sla_due == T0 + timedelta(seconds=30) and major.sla_due is None
    assert [c.alert.id for c in escalated] == [critical.id]


def test_manual_escalation_hands_the_alert_up(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        alert_id = alerts.raise_alert(conn, draft(severity="critical"), now=T0).alert.id
        alerts.acknowledge(conn, alert_id, actor="zhang", address=None, now=T0)
        up = alerts.escalate(
            conn, alert_id, actor="zhang", address="10.0.0.1", comment="需区应急局协调", now=T0
        )
    assert up.alert.state == "escalated" and up.alert.escalation_level == 1
    assert up.alert.sla_due == T0 + timedelta(minutes=2) and up.alert.audible


# ---- the officer's path, audit ------------------------------------------------------------


def test_full_path_records_every_step_in_events_and_audit(engine: sa.Engine) -> None:
    officer = alerts.Actor("zhang", role="duty_officer", display_name="张三")
    with engine.begin() as conn:
        alert_id = alerts.raise_alert(conn, draft(severity="critical"), now=T0).alert.id
        steps = [
            alerts.acknowledge(conn, alert_id, actor=officer, address="10.0.0.1", comment="收到", now=T0),
            alerts.assign(conn, alert_id, to="广安区环境监察大队", actor=officer, address="10.0.0.1", now=T0),
            alerts.resolve(conn, alert_id, actor=officer, address="10.0.0.1", comment="已处置", now=T0),
            alerts.close(conn, alert_id, actor=officer, address="10.0.0.1", now=T0),
        ]
        history = alerts.alert_history(conn, alert_id)
        trail = audit.entries(conn, entity_type="alert", entity_id=alert_id)
        with pytest.raises(IllegalTransition, match="已被 zhang 于 10:30 关闭"):
            alerts.acknowledge(conn, alert_id, actor="li", address=None, now=T0)
    assert [s.alert.state for s in steps] == ["acknowledged", "in_progress", "resolved", "closed"]
    assert [s.alert.version for s in steps] == [2, 3, 4, 5]
    assert [(e.action, e.to_state, e.actor, e.address) for e in history] == [
        ("raise", "new", "rule:aqi", None),
        ("acknowledge", "acknowledged", "zhang", "10.0.0.1"),
        ("assign", "in_progress", "zhang", "10.0.0.1"),
        ("resolve", "resolved", "zhang", "10.0.0.1"),
        ("close", "closed", "zhang", "10.0.0.1"),
    ]
    assert [t.action for t in trail] == [
        "alert.raise",
        "alert.acknowledge",
        "alert.assign",
        "alert.resolve",
        "alert.close",
    ]
    assert trail[1].after == {
        "state": "acknowledged",
        "acknowledged_at": T0.isoformat(),
        "acknowledged_by": "zhang",
        "sla_due": None,
        "comment": "收到",
    }
    assert trail[2].after["assigned_to"] == "广安区环境监察大队"


def test_start_takes_the_alert_personally(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        alert_id = alerts.raise_alert(conn, draft(), now=T0).alert.id
        alerts.acknowledge(conn, alert_id, actor="zhang", address=None, now=T0)
        started = alerts.start(conn, alert_id, actor="zhang", address=None, now=T0)
    assert (started.alert.state, started.alert.assigned_to, started.alert.assigned_at) == (
        "in_progress",
        "zhang",
        T0,
    )


def test_open_alerts_order_and_filters(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        minor_old = alerts.raise_alert(conn, draft(key="1", severity="minor"), now=T0).alert.id
        critical_new = alerts.raise_alert(
            conn, draft(key="2", severity="critical"), now=T0 + timedelta(minutes=2)
        ).alert.id
        critical_old = alerts.raise_alert(
            conn, draft(key="3", severity="critical"), now=T0 + timedelta(minutes=1)
        ).alert.id
        elsewhere = alerts.raise_alert(
            conn, draft(key="4", severity="info", district_code="511681"), now=T0
        ).alert.id
        everything = [a.id for a in alerts.open_alerts(conn)]
        huaying = [a.id for a in alerts.open_alerts(conn, district_code="511681")]
        critical = [a.id for a in alerts.open_alerts(conn, severity="critical")]
    assert everything == [critical_old, critical_new, minor_old, elsewhere]
    assert huaying == [elsewhere] and critical == [critical_old, critical_new]


# ---- district scope (shared with tests/integration/test_alerts_postgis.py) -------------------


def check_district_scope(conn: sa.Connection, live: LiveStore, tag: str) -> None:
    """Open alerts of one district, from the database and from the live queue, with
    ``district_code``; every open alert without it. ``tag`` keeps the dedup keys apart."""
    opened = [
        alerts.raise_alert(conn, draft(key=f"{tag}-c{i}", severity="critical"), now=T0 + timedelta(seconds=i))
        for i in range(3)
    ]
    # 邻水县's alerts are minor: at the end of the queue, behind the other district's.
    linshui = [
        alerts.raise_alert(
            conn,
            draft(key=f"{tag}-l{i}", severity="minor", district_code="511623", grid_id=None),
            now=T0 + timedelta(seconds=10 + i),
        )
        for i in range(2)
    ]
    nowhere = alerts.raise_alert(
        conn, draft(key=f"{tag}-x", severity="info", district_code=None, grid_id=None), now=T0
    )
    live.apply_alert_changes([*opened, *linshui, nowhere])
    mine = [c.alert.id for c in linshui]
    others = {c.alert.id for c in opened} | {nowhere.alert.id}

    queue = [a.id for a in alerts.open_alerts(conn, district_code="511623", limit=100_000)]
    assert set(mine) <= set(queue) and not others & set(queue)
    everything = {a.id for a in alerts.open_alerts(conn, limit=100_000)}
    assert set(mine) | others <= everything

    # The live queue is read in slices: a district's alerts behind a full slice are found.
    assert [a.id for a in live.open_alerts(limit=2, district_code="511623")] == mine
    assert [a.id for a in live.open_alerts(limit=1, district_code="511623")] == mine[:1]
    assert {a.district_code for a in live.open_alerts(limit=100, district_code="511623")} == {"511623"}
    assert set(mine) | others <= {a.id for a in live.open_alerts(limit=100)}
    assert len(live.open_alerts(limit=2)) == 2


def test_open_alerts_of_one_district(engine: sa.Engine, live: LiveStore) -> None:
    with engine.begin() as conn:
        check_district_scope(conn, live, "scope")


# ---- live state -----------------------------------------------------------------------------


def test_queue_order_audible_set_and_notes(engine: sa.Engine, live: LiveStore) -> None:
    pubsub = live.redis.pubsub()
    pubsub.subscribe(UPDATES_CHANNEL)
    pubsub.get_message(timeout=1)  # the subscribe confirmation
    with engine.begin() as conn:
        changes = [
            alerts.raise_alert(conn, draft(key="minor", severity="minor"), now=T0),
            alerts.raise_alert(
                conn, draft(key="crit-late", severity="critical"), now=T0 + timedelta(seconds=5)
            ),
            alerts.raise_alert(
                conn, draft(key="crit-early", severity="critical"), now=T0 + timedelta(seconds=1)
            ),
            alerts.raise_alert(conn, draft(key="major", severity="major"), now=T0 + timedelta(seconds=9)),
        ]
    ids = {c.alert.dedup_key: c.alert.id for c in changes}
    assert live.apply_alert_changes(changes) == 4
    assert [a.id for a in live.open_alerts()] == [
        ids["crit-early"],
        ids["crit-late"],
        ids["major"],
        ids["minor"],
    ]
    assert live.audible_alerts() == {ids["crit-early"], ids["crit-late"], ids["major"]}
    assert live.open_alerts(limit=1)[0].colour == "red"

    with engine.begin() as conn:
        ack = alerts.acknowledge(
            conn, ids["crit-early"], actor="zhang", address=None, now=T0 + timedelta(minutes=1)
        )
    assert live.apply_alert_changes([ack]) == 1
    # Acknowledged anywhere: silent everywhere, still in the queue with who took it.
    assert ids["crit-early"] not in live.audible_alerts()
    stored = live.alert(ids["crit-early"])
    assert stored.state == "acknowledged" and stored.acknowledged_by == "zhang" and not stored.audible
    assert live.open_alerts()[0].id == ids["crit-early"]

    notes = []
    while (message := pubsub.get_message(timeout=0.2)) is not None:
        notes.append(json.loads(message["data"]))
    assert [n["kind"] for n in notes] == ["alert"] * 5
    assert (
        notes[-1]["id"] == ids["crit-early"]
        and notes[-1]["audible"] == 0
        and notes[-1]["action"] == "acknowledge"
    )
    entries = live.recent("alerts", 10)
    assert entries[0]["action"] == "acknowledge" and entries[0]["actor"] == "zhang"
    assert live.redis.xlen(stream_key("alerts")) == 5


def test_stale_changes_do_not_move_the_live_state_back(engine: sa.Engine, live: LiveStore) -> None:
    with engine.begin() as conn:
        raised = alerts.raise_alert(conn, draft(severity="critical"), now=T0)
        acked = alerts.acknowledge(conn, raised.alert.id, actor="zhang", address=None, now=T0)
    assert live.apply_alert_changes([acked]) == 1
    assert live.apply_alert_changes([raised]) == 0  # a slower worker's older news
    assert live.alert(raised.alert.id).state == "acknowledged"
    assert live.audible_alerts() == set()
    # Within one batch the newest version wins whatever the order.
    other = LiveStore(fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True))
    assert other.apply_alert_changes([acked, raised]) == 1
    assert other.alert(raised.alert.id).state == "acknowledged"


def test_ended_alerts_leave_the_queue(engine: sa.Engine, live: LiveStore) -> None:
    with engine.begin() as conn:
        raised = alerts.raise_alert(conn, draft(severity="critical"), now=T0)
        gone = alerts.mark_false_alarm(conn, raised.alert.id, actor="zhang", address=None, now=T0)
    live.apply_alert_changes([raised])
    assert live.redis.zcard(ALERTS_OPEN_KEY) == 1
    live.apply_alert_changes([gone])
    assert live.redis.zcard(ALERTS_OPEN_KEY) == 0 and live.redis.scard(ALERTS_AUDIBLE_KEY) == 0
    assert live.alert(raised.alert.id).state == "false_alarm"
    assert 0 < live.redis.ttl(alert_key(raised.alert.id)) <= 24 * 3600


def test_rebuild_after_redis_lost_everything(engine: sa.Engine, live: LiveStore) -> None:
    with engine.begin() as conn:
        a = alerts.raise_alert(conn, draft(key="a", severity="major"), now=T0).alert.id
        b = alerts.raise_alert(
            conn, draft(key="b", severity="critical"), now=T0 + timedelta(minutes=1)
        ).alert.id
        c = alerts.raise_alert(conn, draft(key="c", severity="info"), now=T0).alert.id
        alerts.acknowledge(conn, a, actor="zhang", address=None, now=T0)
        alerts.mark_false_alarm(conn, c, actor="zhang", address=None, now=T0)
    live.redis.flushdb()
    with engine.connect() as conn:
        assert live.rebuild_alerts(conn) == 2
    assert [x.id for x in live.open_alerts()] == [b, a]
    assert live.audible_alerts() == {b}


def test_queue_score_orders_severity_before_age() -> None:
    late_critical = alert_queue_score("critical", datetime(2099, 1, 1, tzinfo=UTC))
    early_major = alert_queue_score("major", datetime(2020, 1, 1, tzinfo=UTC))
    assert late_critical < early_major
    assert alert_queue_score("info", T0) < 4 * ALERT_SCORE_STEP < 2**53
    assert alert_queue_score("major", T0) - alert_queue_score("major", T0 - timedelta(milliseconds=1)) == 1


# ---- migration 0002 on existing data --------------------------------------------------------


def test_upgrade_recodes_existing_alerts_and_keeps_their_events(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    url = f"sqlite:///{path}"
    db.upgrade_database(url, "0001")
    with sqlite3.connect(path) as raw:
        for i, colour in enumerate(("red", "orange", "yellow", "blue"), start=1):
            raw.execute(
                "INSERT INTO alerts (id, rule_id, domain, severity, title, dedup_key, state, opened_at) "
                "VALUES (?, 'r', 'urban', ?, 't', ?, 'new', '2026-07-01 00:00:00')",
                (i, colour, f"k{i}"),
            )
            raw.execute(
                "INSERT INTO alert_events (alert_id, ts, action) VALUES (?, '2026-07-01 00:00:00', 'raise')",
                (i,),
            )
    db.upgrade_database(url)
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT severity FROM alerts ORDER BY id").fetchall() == [
            ("critical",),
            ("major",),
            ("minor",),
            ("info",),
        ]
        assert raw.execute(
            "SELECT occurrences, version, last_seen_at FROM alerts WHERE id = 1"
        ).fetchone() == (
            1,
            1,
            "2026-07-01 00:00:00",
        )
        assert raw.execute("SELECT count(*) FROM alert_events").fetchone() == (4,)
        assert raw.execute("PRAGMA foreign_key_check").fetchall() == []
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            raw.execute("UPDATE alerts SET severity = 'red' WHERE id = 1")
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            raw.execute("UPDATE alerts SET domain = 'weather' WHERE id = 1")

    from alembic import command

    engine = db.create_engine_for(url)
    with engine.connect() as conn:
        command.downgrade(db.alembic_config(url, conn), "0001")
        conn.commit()
    engine.dispose()
    with sqlite3.connect(path) as raw:
        assert [r[0] for r in raw.execute("SELECT severity FROM alerts ORDER BY id")] == [
            "red",
            "orange",
            "yellow",
            "blue",
        ]
        assert raw.execute("SELECT count(*) FROM alert_events").fetchone() == (4,)
