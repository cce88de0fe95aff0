"""The generic state machine, and every transition of the alert lifecycle (embedded SQLite)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from models import alerts, audit, db
from models.alerts import ALERT_LIFECYCLE, AlertDraft, AlertState
from models.lifecycle import (
    Action,
    Actor,
    EntityNotFound,
    EventLog,
    IllegalTransition,
    Lifecycle,
    Refusal,
    State,
    apply_transition,
)
from models.schema import Alert, HotlineTicket, TicketEvent, User

NOW = datetime(2026, 7, 15, 2, 30, tzinfo=UTC)  # 10:30 in Guang'an


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sa.Engine]:
    url = f"sqlite:///{tmp_path_factory.mktemp('lifecycle') / 'cityops.sqlite3'}"
    db.upgrade_database(url)
    engine = db.create_engine_for(url)
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


def _draft(severity: str = "critical") -> AlertDraft:
    return AlertDraft(
        rule_id="water_level",
        domain="emergency",
        severity=severity,
        title="渠江水位超警戒",
        message=None,
        dedup_key=f"water_level:{uuid.uuid4().hex}",
        source_kind="sensor",
        source_id="wl-01",
        district_code="511602",
        grid_id=None,
        lon=106.63,
        lat=30.47,
        evidence={"level_m": 8.2},
    )


def _alert_in(conn: sa.Connection, state: str) -> int:
    """An alert put straight into ``state``, as if by zhang at 10:31."""
    change = alerts.raise_alert(conn, _draft(), now=NOW)
    if state != AlertState.NEW:
        table = Alert.__table__
        conn.execute(sa.update(table).where(table.c.id == change.alert.id).values(state=state))
        events = alerts.ALERT_EVENTS.table
        conn.execute(
            sa.insert(events).values(
                alert_id=change.alert.id,
                ts=NOW + timedelta(minutes=1),
                action="test",
                from_state="new",
                to_state=state,
                actor="zhang",
            )
        )
    return change.alert.id


def _call(conn: sa.Connection, action: str, alert_id: int, now: datetime) -> alerts.AlertChange:
    kwargs = {"actor": Actor("li", role="duty_officer"), "address": "10.1.2.3", "comment": "测试", "now": now}
    if action == "auto_escalate":
        return alerts._transition(conn, alert_id, "auto_escalate", **kwargs)
    if action == "assign":
        return alerts.assign(conn, alert_id, to="广安区应急局", **kwargs)
    return getattr(alerts, action)(conn, alert_id, **kwargs)


# ---- the alert lifecycle, every action from every state -------------------------------------

MATRIX = [(action, state) for action in ALERT_LIFECYCLE.actions for state in AlertState]


@pytest.mark.parametrize(("action", "state"), MATRIX, ids=[f"{a}-from-{s}" for a, s in MATRIX])
def test_every_action_from_every_state(engine: sa.Engine, action: str, state: AlertState) -> None:
    spec = ALERT_LIFECYCLE.actions[action]
    later = NOW + timedelta(hours=1)  # past every SLA, so auto_escalate's guard passes
    with engine.begin() as conn:
        alert_id = _alert_in(conn, state)
        before = conn.execute(sa.select(Alert.__table__).where(Alert.id == alert_id)).mappings().one()
        if state in spec.sources:
            change = _call(conn, action, alert_id, later)
            assert change.alert.state == spec.target
            assert change.from_state == state
            assert change.alert.version == before["version"] + 1
            last = alerts.alert_history(conn, alert_id)[-1]
            assert (last.action, last.from_state, last.to_state) == (action, state, spec.target)
            assert (last.actor, last.address, last.comment) == ("li", "10.1.2.3", "测试")
            trail = audit.entries(conn, entity_type="alert", entity_id=alert_id)
            assert trail[-1].action == f"alert.{action}"
            assert trail[-1].actor == "li" and trail[-1].address == "10.1.2.3"
            assert trail[-1].before["state"] == state and trail[-1].after["state"] == spec.target
        else:
            with pytest.raises(IllegalTransition) as refused:
                _call(conn, action, alert_id, later)
            error = refused.value
            assert (error.action, error.state, error.entity_id) == (action, state, alert_id)
            info = ALERT_LIFECYCLE.states[state]
            assert f"不能{spec.label_zh}" in error.reason_zh
            assert f"cannot {action.replace('_', ' ')}" in error.reason_en
            if state == AlertState.NEW:
                assert f"当前为「{info.label_zh}」" in error.reason_zh
            else:
                # Who put it there and when (city time), in Chinese with the display name.
                assert f"已被 张三 于 10:31 {info.done_zh}" in error.reason_zh
                assert f"is {info.label_en} (by zhang, 10:31)" in error.reason_en
            assert str(error).startswith(error.reason_zh)
            # Nothing changed, nothing recorded.
            after = conn.execute(sa.select(Alert.__table__).where(Alert.id == alert_id)).mappings().one()
            assert after == before
            assert alerts.alert_history(conn, alert_id)[-1].action in {"raise", "test"}


def test_refusal_reads_like_the_console_says_it(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        alert_id = alerts.raise_alert(conn, _draft(), now=NOW).alert.id
        alerts.acknowledge(conn, alert_id, actor="zhang", address=None, now=NOW + timedelta(minutes=1))
        with pytest.raises(IllegalTransition) as refused:
            alerts.acknowledge(conn, alert_id, actor="li", address=None, now=NOW + timedelta(minutes=2))
    assert refused.value.reason_zh.startswith(f"告警 {alert_id} 已被 张三 于 10:31 确认，不能确认")
    assert refused.value.reason_en.startswith(
        f"alert {alert_id} is acknowledged (by zhang, 10:31); cannot acknowledge"
    )
    assert refused.value.by == "zhang"
    assert refused.value.at == NOW + timedelta(minutes=1)


def test_refusal_on_another_day_names_the_date(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        alert_id = alerts.raise_alert(conn, _draft(), now=NOW).alert.id
        alerts.acknowledge(conn, alert_id, actor="unknown-user", address=None, now=NOW)
        with pytest.raises(IllegalTransition) as refused:
            alerts.acknowledge(conn, alert_id, actor="li", address=None, now=NOW + timedelta(days=1))
    # No users row: the username stands in for the display name.
    assert "已被 unknown-user 于 07-15 10:30 确认" in refused.value.reason_zh


def test_roles_are_checked_when_known(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        alert_id = alerts.raise_alert(conn, _draft(), now=NOW).alert.id
        with pytest.raises(IllegalTransition) as refused:
            alerts.acknowledge(
                conn, alert_id, actor=Actor("wang", role="viewer", display_name="王五"), address=None, now=NOW
            )
        assert refused.value.reason_zh == "王五（角色 viewer）无权确认告警"
        assert "role viewer" in refused.value.reason_en
        change = alerts.acknowledge(
            conn, alert_id, actor=Actor("zhang", role="duty_officer"), address=None, now=NOW
        )
    assert change.alert.acknowledged_by == "zhang"


def test_assign_needs_someone_to_assign_to(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        alert_id = alerts.raise_alert(conn, _draft(), now=NOW).alert.id
        alerts.acknowledge(conn, alert_id, actor="zhang", address=None, now=NOW)
        with pytest.raises(IllegalTransition, match="指派须指明处置单位或人员"):
            alerts.assign(conn, alert_id, to="  ", actor="zhang", address=None, now=NOW)
        change = alerts.assign(conn, alert_id, to="岳池县消防救援大队", actor="zhang", address=None, now=NOW)
    assert (change.alert.state, change.alert.assigned_to) == ("in_progress", "岳池县消防救援大队")


def test_unknown_alert_and_unknown_action(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        with pytest.raises(EntityNotFound, match="告警 987654 不存在"):
            alerts.acknowledge(conn, 987654, actor="zhang", address=None, now=NOW)
        with pytest.raises(ValueError, match="no action 'explode'"):
            ALERT_LIFECYCLE.action("explode")


def test_a_lifecycle_must_name_its_states() -> None:
    with pytest.raises(ValueError, match="unknown states"):
        Lifecycle(
            name="thing",
            noun_zh="事物",
            states={"a": State("a", "甲")},
            actions={"go": Action("go", frozenset({"a"}), "b", "前往")},
        )


def test_allowed_actions() -> None:
    assert set(ALERT_LIFECYCLE.allowed_actions("new")) == {
        "acknowledge",
        "escalate",
        "auto_escalate",
        "mark_false_alarm",
        "suppress",
    }
    assert ALERT_LIFECYCLE.allowed_actions("closed") == []
    assert ALERT_LIFECYCLE.allowed_actions("false_alarm") == []
    assert "acknowledge" not in ALERT_LIFECYCLE.allowed_actions("new", role="viewer")


# ---- the same function for another workflow ---------------------------------------------------

#: A slice of a 12345 work order's steps (受理 → 派单 → 办结), on the real ticket tables.
TICKETS = Lifecycle(
    name="ticket",
    noun_zh="工单",
    states={
        "accepted": State("accepted", "已受理", "受理"),
        "dispatched": State("dispatched", "已派单", "派单"),
        "closed": State("closed", "已办结", "办结"),
    },
    actions={
        "dispatch": Action(
            "dispatch",
            frozenset({"accepted"}),
            "dispatched",
            "派单",
            guard=lambda row, ctx: (
                None
                if ctx.params.get("department")
                else Refusal(zh="派单须指定部门", en="dispatch needs a department")
            ),
        ),
        "close": Action("close", frozenset({"dispatched"}), "closed", "办结"),
    },
    version_column=None,  # hotline_tickets has none; the state check alone guards it
    private_columns=frozenset({"caller_name", "caller_phone"}),
)
TICKET_EVENTS = EventLog(TicketEvent.__table__, "ticket_id", comment_column="note", address_column=None)


def test_tickets_use_the_same_transition(engine: sa.Engine) -> None:
    tickets = HotlineTicket.__table__
    ticket_id = f"T{uuid.uuid4().hex[:12]}"
    with engine.begin() as conn:
        conn.execute(
            sa.insert(tickets).values(
                ticket_id=ticket_id,
                ts=NOW,
                channel="phone",
                category="噪音",
                title="夜间施工",
                content="…",
                state="accepted",
                caller_name="赵六",
                caller_phone="13800000000",
            )
        )

        def transition(action: str, **params: str) -> object:
            return apply_transition(
                conn,
                table=tickets,
                id_column="ticket_id",
                entity_id=ticket_id,
                lifecycle=TICKETS,
                action=action,
                actor="operator-1",
                address="10.9.9.9",
                comment="按时限处理",
                changes={"department": params.get("department")} if params else None,
                event_table=TICKET_EVENTS,
                now=NOW,
                params=params,
            )

        with pytest.raises(IllegalTransition, match="派单须指定部门"):
            transition("dispatch")
        moved = transition("dispatch", department="区住建局")
        assert (moved.from_state, moved.to_state, moved.after["department"]) == (
            "accepted",
            "dispatched",
            "区住建局",
        )
        with pytest.raises(IllegalTransition) as refused:
            transition("dispatch", department="区城管局")
        assert (
            "工单" in refused.value.reason_zh and "已被 operator-1 于 10:30 派单" in refused.value.reason_zh
        )
        transition("close")
        events = (
            conn.execute(
                sa.select(TicketEvent.__table__)
                .where(TicketEvent.ticket_id == ticket_id)
                .order_by(TicketEvent.id)
            )
            .mappings()
            .all()
        )
        trail = audit.entries(conn, entity_type="ticket", entity_id=ticket_id)
    assert [(e["action"], e["from_state"], e["to_state"], e["note"]) for e in events] == [
        ("dispatch", "accepted", "dispatched", "按时限处理"),
        ("close", "dispatched", "closed", "按时限处理"),
    ]
    # No address column on ticket_events: the address travels in the payload.
    assert events[0]["payload"]["address"] == "10.9.9.9"
    assert [t.action for t in trail] == ["ticket.dispatch", "ticket.close"]
    # Personal data never reaches the audit log.
    assert all("caller" not in str(t.before) + str(t.after) for t in trail)


def test_audit_log_stays_append_only(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        audit.record(
            conn,
            actor="li",
            address=None,
            action="alert.test",
            entity_type="alert",
            entity_id=1,
            before=None,
            after={"at": NOW},
            now=NOW,
        )
    with pytest.raises(sa.exc.IntegrityError, match="append-only"), engine.begin() as conn:
        conn.exec_driver_sql("UPDATE audit_log SET actor = 'x' WHERE action = 'alert.test'")


def test_jsonable() -> None:
    from decimal import Decimal

    from shapely.geometry import Point

    assert audit.jsonable(
        {"t": NOW, "d": Decimal("1.5"), "p": Point(1, 2), "s": AlertState.NEW, "n": float("nan"), "l": (1, 2)}
    ) == {"t": NOW.isoformat(), "d": 1.5, "p": "POINT (1 2)", "s": "new", "n": None, "l": [1, 2]}


def test_sqlite_file_is_per_module(engine: sa.Engine) -> None:
    # The fixture's database lives under pytest's temp folder, never in ./var.
    assert Path(engine.url.database).parent.name.startswith("lifecycle")
