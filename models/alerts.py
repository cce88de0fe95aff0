"""Alerts: raised by rules, handled by duty officers, escalated when nobody answers.

::

    new ──acknowledge──► acknowledged ──assign/start──► in_progress ──resolve──► resolved ──close──► closed
     │ ▲                    │                              │
     │ └─unsuppress─ suppressed ◄─suppress─ (new, acknowledged, escalated)
     └─(SLA passed / escalate)─► escalated ──acknowledge──► acknowledged
    mark_false_alarm: from any open state → false_alarm

The rule engine calls :func:`raise_alert` while a condition holds and :func:`clear_alert`
when it ends; the console calls the officer actions. Every change comes back as an
:class:`AlertChange` carrying the alert's public state, for :meth:`LiveStore.apply_alert_changes`.

Open and ended: an alert is *open* until it is resolved or marked a false alarm
(``resolved_at`` set). At most one alert per ``dedup_key`` is open, so a persisting
condition updates its alert instead of opening new ones, and a condition that comes back
after its alert was resolved opens a new one. Suppressed alerts are open (they keep the
dedup key, so a device under maintenance does not open an alert per reading) but are not
in the console queue.

A cleared condition does not end the alert: a person acknowledges what happened. Only a
suppressed alert whose condition ends is closed by the system — nobody was asked to act.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from shapely.geometry import Point
from sqlalchemy.engine import Connection

from models import audit
from models import lifecycle as lc
from models.config import DEFAULT_ALERT_SLA
from models.db import dialect_insert
from models.lifecycle import SYSTEM, Actor, IllegalTransition, Lifecycle, Refusal, State
from models.schema import (
    WARNING_COLOURS,
    Alert,
    AlertDomain,
    AlertEvent,
    MaintenanceWindow,
    Severity,
    WarningColour,
)
from models.users import Permission, roles_with

# --------------------------------------------------------------------------------------------
# States and configuration


class AlertState(enum.StrEnum):
    NEW = "new"
    ACKNOWLEDGED = "acknowledged"
    IN_PROGRESS = "in_progress"
    RESOLVED = "resolved"
    CLOSED = "closed"
    ESCALATED = "escalated"
    SUPPRESSED = "suppressed"
    FALSE_ALARM = "false_alarm"


#: Time allowed to acknowledge, per severity, before the alert is escalated to the next
#: level; deployments set their own with CITYOPS_ALERT_SLA. ``None`` means never
#: escalated automatically.
DEFAULT_SLA: Mapping[str, timedelta | None] = DEFAULT_ALERT_SLA

#: Console order: most severe first.
SEVERITY_RANK: dict[str, int] = {s.value: i for i, s in enumerate(Severity)}

#: Unacknowledged alerts of these severities sound the alarm in every console.
AUDIBLE_SEVERITIES = frozenset({Severity.CRITICAL, Severity.MAJOR})

#: States shown in the duty officers' queue.
QUEUE_STATES = frozenset(
    {AlertState.NEW, AlertState.ACKNOWLEDGED, AlertState.IN_PROGRESS, AlertState.ESCALATED}
)
#: Nobody has taken the alert yet: it rings (if severe enough) and its SLA runs.
UNACKNOWLEDGED_STATES = frozenset({AlertState.NEW, AlertState.ESCALATED})
#: Open: holds its dedup key (``resolved_at`` unset).
OPEN_STATES = QUEUE_STATES | {AlertState.SUPPRESSED}

#: Evidence kept per alert: the first item (what raised it) and this many recent ones; a
#: condition persisting for days must not grow one row without bound.
EVIDENCE_LIMIT = 20

#: Who may handle alerts in the console (duty officers and administrators); leaders,
#: operators and viewers watch. From the one permission table.
HANDLER_ROLES = roles_with(Permission.ALERT_ACT)

#: Sources that are devices, for maintenance windows.
DEVICE_SOURCE_KINDS = frozenset({"device", "sensor", "camera"})

ENTITY_TYPE = "alert"


def _has_assignee(row: Mapping[str, Any], ctx: lc.TransitionContext) -> Refusal | None:
    if not str(ctx.params.get("to") or "").strip():
        return Refusal(zh="指派须指明处置单位或人员", en="assign needs a unit or person (to=…)")
    return None


def _sla_passed(row: Mapping[str, Any], ctx: lc.TransitionContext) -> Refusal | None:
    due = row["sla_due"]
    if due is None or due > ctx.now:
        return Refusal(zh=f"告警 {row['id']} 尚未超过确认时限", en=f"alert {row['id']} is not past its SLA")
    return None


#: Alert actions are for those who handle alerts unless an action says otherwise.
_action = functools.partial(lc.action, roles=HANDLER_ROLES)


S = AlertState
ALERT_LIFECYCLE = Lifecycle(
    name=ENTITY_TYPE,
    noun_zh="告警",
    states={
        S.NEW: State(S.NEW, "待确认"),
        S.ACKNOWLEDGED: State(S.ACKNOWLEDGED, "已确认", "确认"),
        S.IN_PROGRESS: State(S.IN_PROGRESS, "处置中", "接手处置"),
        S.RESOLVED: State(S.RESOLVED, "已处置", "处置完毕"),
        S.CLOSED: State(S.CLOSED, "已关闭", "关闭"),
        S.ESCALATED: State(S.ESCALATED, "已升级", "升级"),
        S.SUPPRESSED: State(S.SUPPRESSED, "已抑制", "抑制"),
        S.FALSE_ALARM: State(S.FALSE_ALARM, "误报", "标记为误报"),
    },
    actions={
        a.name: a
        for a in (
            _action("acknowledge", {S.NEW, S.ESCALATED}, S.ACKNOWLEDGED, "确认"),
            _action("assign", {S.ACKNOWLEDGED, S.IN_PROGRESS}, S.IN_PROGRESS, "指派", guard=_has_assignee),
            _action("start", {S.ACKNOWLEDGED}, S.IN_PROGRESS, "开始处置"),
            _action("escalate", {S.NEW, S.ACKNOWLEDGED, S.IN_PROGRESS, S.ESCALATED}, S.ESCALATED, "升级"),
            # The SLA sweep: the guard re-checks the deadline on every read, so a sweep that
            # lost a race to another sweep does not escalate the same alert twice.
            _action(
                "auto_escalate", {S.NEW, S.ESCALATED}, S.ESCALATED, "超时升级", roles=None, guard=_sla_passed
            ),
            _action("resolve", {S.ACKNOWLEDGED, S.IN_PROGRESS}, S.RESOLVED, "处置完毕"),
            _action("close", {S.RESOLVED, S.SUPPRESSED}, S.CLOSED, "关闭"),
            _action(
                "mark_false_alarm",
                {S.NEW, S.ACKNOWLEDGED, S.IN_PROGRESS, S.ESCALATED, S.SUPPRESSED},
                S.FALSE_ALARM,
                "标记误报",
            ),
            _action("suppress", {S.NEW, S.ACKNOWLEDGED, S.ESCALATED}, S.SUPPRESSED, "抑制"),
            _action("unsuppress", {S.SUPPRESSED}, S.NEW, "解除抑制"),
        )
    },
)
del S

ALERT_EVENTS = lc.EventLog(AlertEvent.__table__, "alert_id")


# --------------------------------------------------------------------------------------------
# Boundary types


@dataclass(frozen=True, slots=True)
class AlertDraft:
    """What a rule says when its condition holds; ``evidence`` is the readings or events behind it."""

    rule_id: str
    domain: str
    severity: str
    title: str
    message: str | None
    dedup_key: str
    source_kind: str | None
    source_id: str | None
    district_code: str | None
    grid_id: str | None
    lon: float | None
    lat: float | None
    evidence: dict[str, Any] = field(default_factory=dict)
    observed_at: datetime | None = None

    def __post_init__(self) -> None:
        # Fail at the rule, not at the database CHECK with a less helpful message.
        AlertDomain(self.domain)
        Severity(self.severity)
        if not self.dedup_key:
            raise ValueError("an alert needs a dedup_key")


@dataclass(frozen=True, slots=True)
class AlertView:
    """The public state of an alert: what the console, Redis and the pages see (no evidence)."""

    id: int
    rule_id: str
    domain: str
    severity: str
    title: str
    message: str | None
    state: str
    dedup_key: str
    source_kind: str | None
    source_id: str | None
    district_code: str | None
    grid_id: str | None
    lon: float | None
    lat: float | None
    opened_at: datetime
    last_seen_at: datetime | None
    occurrences: int
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    assigned_to: str | None
    assigned_at: datetime | None
    escalation_level: int
    sla_due: datetime | None
    cleared_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    version: int

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> AlertView:
        return cls(**{f.name: row[f.name] for f in fields(cls)})

    @property
    def audible(self) -> bool:
        return self.severity in AUDIBLE_SEVERITIES and self.state in UNACKNOWLEDGED_STATES

    @property
    def in_queue(self) -> bool:
        return self.state in QUEUE_STATES

    @property
    def colour(self) -> WarningColour:
        return WARNING_COLOURS[Severity(self.severity)]


@dataclass(frozen=True, slots=True)
class AlertChange:
    """Something happened to an alert; ``alert`` is its state afterwards.

    ``action`` is the lifecycle action, or ``raise`` / ``repeat`` / ``clear`` for what the
    rule engine reports. ``from_state`` is None for a new alert.
    """

    action: str
    alert: AlertView
    from_state: str | None
    actor: str
    at: datetime
    comment: str | None = None

    @property
    def created(self) -> bool:
        return self.from_state is None


@dataclass(frozen=True, slots=True)
class AlertEventView:
    id: int
    ts: datetime
    action: str
    from_state: str | None
    to_state: str | None
    actor: str | None
    address: str | None
    comment: str | None
    payload: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class MaintenanceWindowView:
    id: int
    device_id: str | None
    district_code: str | None
    starts_at: datetime
    ends_at: datetime
    reason: str
    created_by: str
    created_at: datetime


# --------------------------------------------------------------------------------------------
# Helpers

_ALERTS = Alert.__table__


def _due(sla: Mapping[str, timedelta | None], severity: str, start: datetime) -> datetime | None:
    allowed = sla.get(severity)
    return None if allowed is None else start + allowed


def _rule_actor(rule_id: str) -> str:
    return f"rule:{rule_id}"[:64]


def _evidence_item(draft: AlertDraft, now: datetime) -> dict[str, Any]:
    return {"observed_at": (draft.observed_at or now).isoformat(), **audit.jsonable(draft.evidence)}


def _merge_evidence(stored: Mapping[str, Any] | None, item: dict[str, Any]) -> dict[str, Any]:
    stored = dict(stored or {})
    recent = [*stored.get("recent", []), item][-EVIDENCE_LIMIT:]
    return {"first": stored.get("first", item), "recent": recent, "total": int(stored.get("total", 0)) + 1}


def _image(row: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: row[k] for k in keys}


def _change(
    action: str,
    row: Mapping[str, Any],
    from_state: str | None,
    actor: str,
    now: datetime,
    comment: str | None = None,
) -> AlertChange:
    return AlertChange(
        action=action,
        alert=AlertView.from_row(row),
        from_state=from_state,
        actor=actor,
        at=now,
        comment=comment,
    )


def active_maintenance_window(
    conn: Connection, *, device_id: str | None, district_code: str | None, at: datetime
) -> int | None:
    """The id of a maintenance window covering a device (itself or its district) at ``at``."""
    windows = MaintenanceWindow.__table__
    scopes = []
    if device_id:
        scopes.append(windows.c.device_id == device_id)
    if district_code:
        scopes.append(sa.and_(windows.c.device_id.is_(None), windows.c.district_code == district_code))
    if not scopes:
        return None
    return conn.execute(
        sa.select(windows.c.id)
        .where(sa.or_(*scopes), windows.c.starts_at <= at, windows.c.ends_at > at)
        .order_by(windows.c.ends_at.desc())
        .limit(1)
    ).scalar_one_or_none()


def _window_for(conn: Connection, draft: AlertDraft, now: datetime) -> int | None:
    # Maintenance silences devices, never hotline calls or system alerts about the city.
    if draft.source_kind not in DEVICE_SOURCE_KINDS:
        return None
    return active_maintenance_window(
        conn, device_id=draft.source_id, district_code=draft.district_code, at=now
    )


def _open_row(conn: Connection, dedup_key: str) -> Mapping[str, Any] | None:
    # FOR UPDATE: on PostgreSQL a second worker handling the same key waits here instead of
    # both merging into the same stale copy (SQLite has one writer at a time anyway).
    return (
        conn.execute(
            sa.select(_ALERTS)
            .where(_ALERTS.c.dedup_key == dedup_key, _ALERTS.c.resolved_at.is_(None))
            .with_for_update()
        )
        .mappings()
        .first()
    )


def _cas_update(
    conn: Connection, row: Mapping[str, Any], values: Mapping[str, Any]
) -> Mapping[str, Any] | None:
    """Update an alert only if nobody changed it since ``row`` was read; None otherwise."""
    return (
        conn.execute(
            sa.update(_ALERTS)
            .where(_ALERTS.c.id == row["id"], _ALERTS.c.version == row["version"])
            .values({**values, "version": _ALERTS.c.version + 1})
            .returning(*_ALERTS.c)
        )
        .mappings()
        .first()
    )


# --------------------------------------------------------------------------------------------
# The rule engine's side


def raise_alert(
    conn: Connection,
    draft: AlertDraft,
    *,
    now: datetime,
    sla: Mapping[str, timedelta | None] = DEFAULT_SLA,
) -> AlertChange:
    """Open an alert for ``draft``, or update the one open alert with its ``dedup_key``.

    A repeat adds one occurrence, moves ``last_seen_at``, appends the evidence (bounded),
    raises the severity if the draft's is higher (tightening the SLA), and un-clears an
    alert whose condition had ended. A draft from a device under maintenance opens the
    alert as ``suppressed``; a repeat after the window ended brings it back as ``new``.

    Several workers may raise the same key at once: the partial unique index on open
    ``dedup_key`` admits one INSERT, the others find that alert and update it.
    """
    for _attempt in range(lc.MAX_ATTEMPTS):
        current = _open_row(conn, draft.dedup_key)
        if current is not None:
            change = _repeat(conn, current, draft, now=now, sla=sla)
            if change is not None:
                return change
            continue
        created = _insert(conn, draft, now=now, sla=sla)
        if created is not None:
            return created
        # Another worker's alert for this key committed between our look and our insert.
    raise RuntimeError(f"alert {draft.dedup_key!r} kept changing while being raised; giving up")


def _insert(
    conn: Connection, draft: AlertDraft, *, now: datetime, sla: Mapping[str, timedelta | None]
) -> AlertChange | None:
    window = _window_for(conn, draft, now)
    state = AlertState.SUPPRESSED if window is not None else AlertState.NEW
    values = {
        "rule_id": draft.rule_id,
        "domain": draft.domain,
        "severity": draft.severity,
        "title": draft.title,
        "message": draft.message,
        "source_kind": draft.source_kind,
        "source_id": draft.source_id,
        "dedup_key": draft.dedup_key,
        "state": state.value,
        "district_code": draft.district_code,
        "grid_id": draft.grid_id,
        "lon": draft.lon,
        "lat": draft.lat,
        "geom": Point(draft.lon, draft.lat) if draft.lon is not None and draft.lat is not None else None,
        "opened_at": now,
        "last_seen_at": draft.observed_at or now,
        "updated_at": now,
        # A suppressed alert asks nobody to act, so no deadline runs.
        "sla_due": None if window is not None else _due(sla, draft.severity, now),
        "evidence": _merge_evidence(None, _evidence_item(draft, now)),
        "occurrences": 1,
        "escalation_level": 0,
        "version": 1,
    }
    # ON CONFLICT DO NOTHING rather than catching IntegrityError: same outcome, and the
    # caller's transaction is not aborted on PostgreSQL (no savepoint needed).
    stmt = (
        dialect_insert(conn, _ALERTS)
        .values(values)
        .on_conflict_do_nothing(index_elements=["dedup_key"], index_where=_ALERTS.c.resolved_at.is_(None))
        .returning(*_ALERTS.c)
    )
    row = conn.execute(stmt).mappings().first()
    if row is None:
        return None
    actor = _rule_actor(draft.rule_id)
    lc.record_event(
        conn,
        lifecycle=ALERT_LIFECYCLE,
        event_log=ALERT_EVENTS,
        entity_id=row["id"],
        action="raise",
        from_state=None,
        to_state=state.value,
        actor=actor,
        address=None,
        comment=None,
        payload={"maintenance_window": window, "evidence": values["evidence"]["first"]},
        before=None,
        after=_image(row, ("state", "severity", "domain", "dedup_key", "district_code", "grid_id")),
        now=now,
    )
    return _change("raise", row, None, actor, now)


def _repeat(
    conn: Connection,
    row: Mapping[str, Any],
    draft: AlertDraft,
    *,
    now: datetime,
    sla: Mapping[str, timedelta | None],
) -> AlertChange | None:
    actor = _rule_actor(draft.rule_id)
    severity = row["severity"]
    raised = SEVERITY_RANK[draft.severity] < SEVERITY_RANK[severity]
    values: dict[str, Any] = {
        "occurrences": row["occurrences"] + 1,
        "last_seen_at": max(row["last_seen_at"] or now, draft.observed_at or now),
        "evidence": _merge_evidence(row["evidence"], _evidence_item(draft, now)),
        "message": draft.message if draft.message is not None else row["message"],
        "cleared_at": None,
        "updated_at": now,
    }
    if raised:
        values["severity"] = draft.severity
        if row["state"] in UNACKNOWLEDGED_STATES:
            # A worse condition may not wait longer than its own SLA from now.
            tighter = _due(sla, draft.severity, now)
            if tighter is not None:
                values["sla_due"] = min(row["sla_due"], tighter) if row["sla_due"] else tighter
    updated = _cas_update(conn, row, values)
    if updated is None:
        return None
    notes: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    if raised:
        notes.append(("raise_severity", {"severity": severity}, {"severity": draft.severity}))
    if row["cleared_at"] is not None:
        notes.append(("recur", {"cleared_at": row["cleared_at"]}, {"cleared_at": None}))
    for action, before, after in notes:
        lc.record_event(
            conn,
            lifecycle=ALERT_LIFECYCLE,
            event_log=ALERT_EVENTS,
            entity_id=row["id"],
            action=action,
            from_state=row["state"],
            to_state=row["state"],
            actor=actor,
            address=None,
            comment=None,
            payload={"occurrences": updated["occurrences"]},
            before=before,
            after=after,
            now=now,
        )
    if (
        updated["state"] == AlertState.SUPPRESSED
        and _suppressed_by_window(conn, row["id"])
        and (_window_for(conn, draft, now) is None)
    ):
        # The maintenance is over and the condition is still there: now someone must look.
        moved = lc.apply_transition(
            conn,
            table=_ALERTS,
            id_column="id",
            entity_id=row["id"],
            lifecycle=ALERT_LIFECYCLE,
            action="unsuppress",
            actor=SYSTEM,
            address=None,
            comment="维护期已结束，条件仍存在 / maintenance over, condition persists",
            changes=lambda r: {"sla_due": _due(sla, r["severity"], now), "updated_at": now},
            event_table=ALERT_EVENTS,
            now=now,
        )
        return _change("unsuppress", moved.after, moved.from_state, SYSTEM.username, now, moved.comment)
    return _change("repeat", updated, row["state"], actor, now)


def _suppressed_by_window(conn: Connection, alert_id: int) -> bool:
    """True when a maintenance window (not an officer) made the alert suppressed.

    An officer's suppression holds until an officer lifts it; a window's ends with it.
    """
    by, _display, _at = lc.last_entered(conn, ALERT_EVENTS, alert_id, AlertState.SUPPRESSED)
    return by is not None and by.startswith("rule:")


def clear_alert(
    conn: Connection, dedup_key: str, *, now: datetime, reason: str | None = None
) -> AlertChange | None:
    """The condition behind ``dedup_key`` ended; None when no open alert is waiting for that.

    The alert stays where it is (a new or escalated one still waits for acknowledgement);
    only ``cleared_at`` is set. Clearing twice changes nothing. A suppressed alert is closed.
    """
    for _attempt in range(lc.MAX_ATTEMPTS):
        row = _open_row(conn, dedup_key)
        if row is None or row["cleared_at"] is not None:
            return None
        if row["state"] == AlertState.SUPPRESSED:
            moved = _transition(
                conn,
                row["id"],
                "close",
                actor=SYSTEM,
                address=None,
                comment=reason or "维护期间条件已消失 / condition ended during maintenance",
                now=now,
                changes={"cleared_at": now, "closed_at": now, "resolved_at": now},
            )
            return moved
        updated = _cas_update(conn, row, {"cleared_at": now, "updated_at": now})
        if updated is None:
            continue
        actor = _rule_actor(row["rule_id"])
        lc.record_event(
            conn,
            lifecycle=ALERT_LIFECYCLE,
            event_log=ALERT_EVENTS,
            entity_id=row["id"],
            action="clear",
            from_state=row["state"],
            to_state=row["state"],
            actor=actor,
            address=None,
            comment=reason,
            payload=None,
            before={"cleared_at": None},
            after={"cleared_at": now},
            now=now,
        )
        return _change("clear", updated, row["state"], actor, now, reason)
    raise RuntimeError(f"alert {dedup_key!r} kept changing while being cleared; giving up")


# --------------------------------------------------------------------------------------------
# Duty officers' actions


def _transition(
    conn: Connection,
    alert_id: int,
    action: str,
    *,
    actor: Actor | str,
    address: str | None,
    comment: str | None,
    now: datetime,
    changes: Mapping[str, Any] | Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None,
    params: Mapping[str, Any] | None = None,
) -> AlertChange:
    def values(row: Mapping[str, Any]) -> dict[str, Any]:
        extra = changes(row) if callable(changes) else (changes or {})
        return {"updated_at": now, **extra}

    moved = lc.apply_transition(
        conn,
        table=_ALERTS,
        id_column="id",
        entity_id=alert_id,
        lifecycle=ALERT_LIFECYCLE,
        action=action,
        actor=actor,
        address=address,
        comment=comment,
        changes=values,
        event_table=ALERT_EVENTS,
        now=now,
        params=params,
    )
    return _change(action, moved.after, moved.from_state, moved.actor, now, comment)


def acknowledge(
    conn: Connection,
    alert_id: int,
    *,
    actor: Actor | str,
    address: str | None,
    comment: str | None = None,
    now: datetime,
) -> AlertChange:
    """Take the alert: it stops ringing everywhere and its SLA stops running.

    Of two officers acknowledging at once exactly one wins; the other gets
    :class:`IllegalTransition` naming the winner and the time.
    """
    who = Actor.of(actor)
    return _transition(
        conn,
        alert_id,
        "acknowledge",
        actor=who,
        address=address,
        comment=comment,
        now=now,
        changes={"acknowledged_at": now, "acknowledged_by": who.username, "sla_due": None},
    )


def assign(
    conn: Connection,
    alert_id: int,
    *,
    to: str,
    actor: Actor | str,
    address: str | None,
    comment: str | None = None,
    now: datetime,
) -> AlertChange:
    """Hand the alert to a unit or person (处置单位/人员); also reassigns one in progress."""
    return _transition(
        conn,
        alert_id,
        "assign",
        actor=actor,
        address=address,
        comment=comment,
        now=now,
        changes={"assigned_to": (to or "").strip()[:64] or None, "assigned_at": now},
        params={"to": to},
    )


def start(
    conn: Connection,
    alert_id: int,
    *,
    actor: Actor | str,
    address: str | None,
    comment: str | None = None,
    now: datetime,
) -> AlertChange:
    """The officer handles the alert personally (in progress, assigned to them)."""
    who = Actor.of(actor)
    return _transition(
        conn,
        alert_id,
        "start",
        actor=who,
        address=address,
        comment=comment,
        now=now,
        changes=lambda row: {
            "assigned_to": row["assigned_to"] or who.username,
            "assigned_at": row["assigned_at"] or now,
        },
    )


def escalate(
    conn: Connection,
    alert_id: int,
    *,
    actor: Actor | str,
    address: str | None,
    comment: str | None = None,
    now: datetime,
    sla: Mapping[str, timedelta | None] = DEFAULT_SLA,
) -> AlertChange:
    """Raise the alert to the next level by hand; the next level has the SLA to acknowledge."""
    return _transition(
        conn,
        alert_id,
        "escalate",
        actor=actor,
        address=address,
        comment=comment,
        now=now,
        changes=lambda row: {
            "escalation_level": row["escalation_level"] + 1,
            "sla_due": _due(sla, row["severity"], now),
        },
    )


def resolve(
    conn: Connection,
    alert_id: int,
    *,
    actor: Actor | str,
    address: str | None,
    comment: str | None = None,
    now: datetime,
) -> AlertChange:
    """The situation is handled; the alert leaves the queue and its dedup key is free again."""
    return _transition(
        conn,
        alert_id,
        "resolve",
        actor=actor,
        address=address,
        comment=comment,
        now=now,
        changes={"resolved_at": now},
    )


def close(
    conn: Connection,
    alert_id: int,
    *,
    actor: Actor | str,
    address: str | None,
    comment: str | None = None,
    now: datetime,
) -> AlertChange:
    """Verified and filed (from resolved), or a suppressed alert nobody needs to handle."""
    return _transition(
        conn,
        alert_id,
        "close",
        actor=actor,
        address=address,
        comment=comment,
        now=now,
        changes=lambda row: {"closed_at": now, "resolved_at": row["resolved_at"] or now},
    )


def mark_false_alarm(
    conn: Connection,
    alert_id: int,
    *,
    actor: Actor | str,
    address: str | None,
    comment: str | None = None,
    now: datetime,
) -> AlertChange:
    """Nothing was wrong (a faulty sensor, a misread video frame); ends the alert."""
    return _transition(
        conn,
        alert_id,
        "mark_false_alarm",
        actor=actor,
        address=address,
        comment=comment,
        now=now,
        changes={"resolved_at": now, "closed_at": now, "sla_due": None},
    )


def suppress(
    conn: Connection,
    alert_id: int,
    *,
    actor: Actor | str,
    address: str | None,
    comment: str | None = None,
    now: datetime,
) -> AlertChange:
    """Silence an alert by hand (known cause, e.g. undeclared works); it keeps its dedup key."""
    return _transition(
        conn,
        alert_id,
        "suppress",
        actor=actor,
        address=address,
        comment=comment,
        now=now,
        changes={"sla_due": None},
    )


def unsuppress(
    conn: Connection,
    alert_id: int,
    *,
    actor: Actor | str,
    address: str | None,
    comment: str | None = None,
    now: datetime,
    sla: Mapping[str, timedelta | None] = DEFAULT_SLA,
) -> AlertChange:
    """Back to ``new``: it rings again (if severe) and the SLA starts from now."""
    return _transition(
        conn,
        alert_id,
        "unsuppress",
        actor=actor,
        address=address,
        comment=comment,
        now=now,
        changes=lambda row: {"sla_due": _due(sla, row["severity"], now)},
    )


def escalate_overdue(
    conn: Connection, *, now: datetime, sla: Mapping[str, timedelta | None] = DEFAULT_SLA, limit: int = 500
) -> list[AlertChange]:
    """Escalate every unacknowledged alert whose SLA has passed (actor ``system``).

    Each escalation raises ``escalation_level`` and gives the next level a fresh SLA from
    now, so an alert nobody answers climbs one level per period. Safe to run from several
    workers at once: an alert is escalated once per deadline.
    """
    due = conn.execute(
        sa.select(_ALERTS.c.id)
        .where(
            _ALERTS.c.state.in_(sorted(UNACKNOWLEDGED_STATES)),
            _ALERTS.c.sla_due.is_not(None),
            _ALERTS.c.sla_due <= now,
        )
        .order_by(_ALERTS.c.sla_due, _ALERTS.c.id)
        .limit(limit)
    ).scalars()
    changes = []
    for alert_id in list(due):
        try:
            changes.append(
                _transition(
                    conn,
                    alert_id,
                    "auto_escalate",
                    actor=SYSTEM,
                    address=None,
                    now=now,
                    comment="超过确认时限未确认，自动升级 / not acknowledged within the SLA",
                    changes=lambda row: {
                        "escalation_level": row["escalation_level"] + 1,
                        "sla_due": _due(sla, row["severity"], now),
                    },
                )
            )
        except IllegalTransition:
            continue  # acknowledged meanwhile, or another sweep got there first
    return changes


# --------------------------------------------------------------------------------------------
# Maintenance windows


def declare_maintenance(
    conn: Connection,
    *,
    device_id: str | None = None,
    district_code: str | None = None,
    starts_at: datetime,
    ends_at: datetime,
    reason: str,
    actor: Actor | str,
    address: str | None,
    now: datetime,
) -> MaintenanceWindowView:
    """Declare maintenance of one device, or of every device in a district.

    Alerts raised for a covered device during the window open as ``suppressed``; alerts
    already open are left as they are, since someone may already be looking at them.
    """
    if not device_id and not district_code:
        raise ValueError("维护窗口须指定设备或区县 / a maintenance window needs a device_id or district_code")
    if ends_at <= starts_at:
        raise ValueError("维护窗口结束时间须晚于开始时间 / a maintenance window must end after it starts")
    who = Actor.of(actor)
    windows = MaintenanceWindow.__table__
    row = (
        conn.execute(
            sa.insert(windows)
            .values(
                device_id=device_id,
                district_code=district_code,
                starts_at=starts_at,
                ends_at=ends_at,
                reason=reason,
                created_by=who.username,
                created_at=now,
            )
            .returning(*windows.c)
        )
        .mappings()
        .one()
    )
    audit.record(
        conn,
        actor=who.username,
        address=address,
        action="maintenance_window.declare",
        entity_type="maintenance_window",
        entity_id=row["id"],
        before=None,
        after=dict(row),
        now=now,
    )
    return MaintenanceWindowView(**row)


def end_maintenance(
    conn: Connection, window_id: int, *, actor: Actor | str, address: str | None, now: datetime
) -> MaintenanceWindowView:
    """End a window early (``ends_at`` = now); the record stays, so quiet alerts remain explained."""
    windows = MaintenanceWindow.__table__
    before = conn.execute(sa.select(windows).where(windows.c.id == window_id)).mappings().first()
    if before is None:
        raise LookupError(f"维护窗口 {window_id} 不存在 / maintenance window {window_id} does not exist")
    ends_at = max(min(before["ends_at"], now), before["starts_at"] + timedelta(microseconds=1))
    row = (
        conn.execute(
            sa.update(windows).where(windows.c.id == window_id).values(ends_at=ends_at).returning(*windows.c)
        )
        .mappings()
        .one()
    )
    audit.record(
        conn,
        actor=Actor.of(actor).username,
        address=address,
        action="maintenance_window.end",
        entity_type="maintenance_window",
        entity_id=window_id,
        before={"ends_at": before["ends_at"]},
        after={"ends_at": ends_at},
        now=now,
    )
    return MaintenanceWindowView(**row)


# --------------------------------------------------------------------------------------------
# Queries


def severity_order() -> sa.ColumnElement[int]:
    """SQL ordering critical → info (the column holds words, not ranks)."""
    return sa.case(SEVERITY_RANK, value=_ALERTS.c.severity, else_=len(SEVERITY_RANK))


def get_alert(conn: Connection, alert_id: int) -> AlertView | None:
    row = conn.execute(sa.select(_ALERTS).where(_ALERTS.c.id == alert_id)).mappings().first()
    return None if row is None else AlertView.from_row(row)


def alert_evidence(conn: Connection, alert_id: int) -> dict[str, Any] | None:
    """``{"first": …, "recent": [… up to EVIDENCE_LIMIT …], "total": n}``."""
    return conn.execute(sa.select(_ALERTS.c.evidence).where(_ALERTS.c.id == alert_id)).scalar_one_or_none()


def open_alerts(
    conn: Connection,
    *,
    states: frozenset[str] | set[str] = QUEUE_STATES,
    domain: str | None = None,
    severity: str | None = None,
    district_code: str | None = None,
    grid_id: str | None = None,
    limit: int = 1000,
) -> list[AlertView]:
    """Alerts in the given states (default: the console queue), most severe first, oldest first."""
    query = sa.select(_ALERTS).where(_ALERTS.c.state.in_(sorted(states)))
    for column, value in (
        (_ALERTS.c.domain, domain),
        (_ALERTS.c.severity, severity),
        (_ALERTS.c.district_code, district_code),
        (_ALERTS.c.grid_id, grid_id),
    ):
        if value is not None:
            query = query.where(column == value)
    query = query.order_by(severity_order(), _ALERTS.c.opened_at, _ALERTS.c.id).limit(limit)
    return [AlertView.from_row(row) for row in conn.execute(query).mappings()]


def alert_history(conn: Connection, alert_id: int) -> list[AlertEventView]:
    """Every event of one alert, oldest first."""
    events = AlertEvent.__table__
    rows = conn.execute(
        sa.select(
            events.c.id,
            events.c.ts,
            events.c.action,
            events.c.from_state,
            events.c.to_state,
            events.c.actor,
            events.c.address,
            events.c.comment,
            events.c.payload,
        )
        .where(events.c.alert_id == alert_id)
        .order_by(events.c.ts, events.c.id)
    ).mappings()
    return [AlertEventView(**row) for row in rows]


__all__ = [
    "ALERT_EVENTS",
    "ALERT_LIFECYCLE",
    "AUDIBLE_SEVERITIES",
    "DEFAULT_SLA",
    "EVIDENCE_LIMIT",
    "HANDLER_ROLES",
    "OPEN_STATES",
    "QUEUE_STATES",
    "SEVERITY_RANK",
    "UNACKNOWLEDGED_STATES",
    "WARNING_COLOURS",
    "Actor",
    "AlertChange",
    "AlertDraft",
    "AlertEventView",
    "AlertState",
    "AlertView",
    "IllegalTransition",
    "MaintenanceWindowView",
    "acknowledge",
    "active_maintenance_window",
    "alert_evidence",
    "alert_history",
    "assign",
    "clear_alert",
    "close",
    "declare_maintenance",
    "end_maintenance",
    "escalate",
    "escalate_overdue",
    "get_alert",
    "mark_false_alarm",
    "open_alerts",
    "raise_alert",
    "resolve",
    "severity_order",
    "start",
    "suppress",
    "unsuppress",
]
