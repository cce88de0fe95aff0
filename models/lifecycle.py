"""One state machine for every workflow record: alerts, 12345 tickets, urban cases, incidents.

A :class:`Lifecycle` names the states and the actions between them; :func:`apply_transition`
moves one row along it inside the caller's transaction:

1. read the row and check the action is allowed from its state (and passes the guard);
2. ``UPDATE … SET state = :to, version = version + 1 WHERE id = :id AND state IN (:from…)
   AND version = :read_version RETURNING …`` — a compare-and-set, so of two people acting
   on the same row at the same moment exactly one matches; the other re-reads and, when
   the action is no longer allowed, is told who got there first;
3. write the event row (who, when, from where, from/to state, comment, payload) to the
   record's own event table and an entry to the audit log.

Nothing here knows about alerts: a workflow brings its own :class:`Lifecycle`, table and
:class:`EventLog`. Refusals carry a reason in Chinese first, then English, because the
people reading them are duty officers in Guang'an and the engineers behind them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from models import audit
from models.clock import CITY_TZ
from models.schema import User

#: How often a transition re-reads and retries after losing a compare-and-set to a change
#: that left the action allowed (an evidence update, a severity raise). Each retry follows
#: a committed change by someone else, so a handful is plenty; then the caller is told.
MAX_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: a signed-in person, or a service (``system``, ``rule:aqi``).

    ``role`` is checked against an action's roles when it is known. Services act without
    one, so the web tier must always pass the signed-in user's role.
    """

    username: str
    role: str | None = None
    display_name: str | None = None

    @classmethod
    def of(cls, actor: Actor | str) -> Actor:
        return actor if isinstance(actor, Actor) else cls(actor)


#: The platform itself (SLA escalation, automatic clearing).
SYSTEM = Actor("system")


@dataclass(frozen=True, slots=True)
class State:
    """A state and how people read it: ``label_zh`` alone (待确认), ``done_zh`` after 已被 … 于 … (确认)."""

    name: str
    label_zh: str
    done_zh: str | None = None

    @property
    def label_en(self) -> str:
        return self.name.replace("_", " ")


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an action is not allowed, for people (Chinese) and for logs (English)."""

    zh: str
    en: str


@dataclass(frozen=True, slots=True)
class TransitionContext:
    """What a guard may look at besides the row."""

    actor: Actor
    now: datetime
    params: Mapping[str, Any] = field(default_factory=dict)


#: A guard returns a :class:`Refusal` to stop the action, or None to let it through.
Guard = Callable[[Mapping[str, Any], TransitionContext], Refusal | None]


def requires_text(key: str, zh: str, en: str) -> Guard:
    """A guard refusing the action unless the caller gave a non-blank ``key`` (a reason, a text …)."""

    def guard(row: Mapping[str, Any], ctx: TransitionContext) -> Refusal | None:
        return None if str(ctx.params.get(key) or "").strip() else Refusal(zh=zh, en=en)

    return guard


@dataclass(frozen=True, slots=True)
class Action:
    """``name``: from any of ``sources`` to ``target``, for ``roles`` (None: anyone), if ``guard`` allows."""

    name: str
    sources: frozenset[str]
    target: str
    label_zh: str
    roles: frozenset[str] | None = None
    guard: Guard | None = None


def action(
    name: str,
    sources: Iterable[str],
    target: str,
    label_zh: str,
    guard: Guard | None = None,
    *,
    roles: frozenset[str] | None = None,
) -> Action:
    """An :class:`Action` from a lifecycle's state enum members (StrEnum: their values).

    Each lifecycle binds its default ``roles`` once (``functools.partial``), so its table
    of actions reads as a table."""
    return Action(name, frozenset(str(s) for s in sources), str(target), label_zh, roles, guard)


@dataclass(frozen=True, slots=True)
class Lifecycle:
    """The states and actions of one kind of record (``name`` doubles as the audit entity type)."""

    name: str
    noun_zh: str
    states: Mapping[str, State]
    actions: Mapping[str, Action]
    state_column: str = "state"
    #: Without a version column two identical self-transitions (escalated → escalated)
    #: could both succeed; every workflow table here has one.
    version_column: str | None = "version"
    #: Columns never copied into event payloads or the audit log (personal data).
    private_columns: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        for action in self.actions.values():
            unknown = (action.sources | {action.target}) - set(self.states)
            if unknown:
                raise ValueError(f"{self.name}.{action.name} names unknown states {sorted(unknown)}")

    def action(self, name: str) -> Action:
        try:
            return self.actions[name]
        except KeyError:
            raise ValueError(f"{self.name} has no action {name!r}; known: {sorted(self.actions)}") from None

    def state(self, name: str) -> State:
        return self.states.get(name) or State(name, name)

    def allowed_actions(self, state: str, role: str | None = None) -> list[str]:
        """Actions a person with ``role`` may take from ``state`` (guards not evaluated)."""
        return [
            a.name
            for a in self.actions.values()
            if state in a.sources and (a.roles is None or role is None or role in a.roles)
        ]


@dataclass(frozen=True, slots=True)
class EventLog:
    """Where a workflow keeps its history: the table, the column naming the record, and
    how comment and address are stored (an address without a column goes into ``payload``)."""

    table: sa.Table
    entity_column: str
    comment_column: str = "comment"
    address_column: str | None = "address"


@dataclass(frozen=True, slots=True)
class Transition:
    """A transition that happened: the rows before and after, and the event written."""

    entity_id: Any
    action: str
    from_state: str
    to_state: str
    actor: str
    address: str | None
    comment: str | None
    at: datetime
    before: dict[str, Any]
    after: dict[str, Any]
    event_id: int


class EntityNotFound(LookupError):
    def __init__(self, lifecycle: Lifecycle, entity_id: Any) -> None:
        self.entity_type = lifecycle.name
        self.entity_id = entity_id
        super().__init__(
            f"{lifecycle.noun_zh} {entity_id} 不存在 / {lifecycle.name} {entity_id} does not exist"
        )


class IllegalTransition(ValueError):
    """An action refused, with the reason in Chinese and English (``str()`` gives both).

    When the record was moved into its current state by someone, ``by`` and ``at`` say who
    and when, so the loser of a race learns who won.
    """

    def __init__(
        self,
        *,
        entity_type: str,
        entity_id: Any,
        action: str,
        state: str,
        reason: Refusal,
        by: str | None = None,
        at: datetime | None = None,
    ) -> None:
        self.entity_type = entity_type
        self.entity_id = entity_id
        self.action = action
        self.state = state
        self.reason_zh = reason.zh
        self.reason_en = reason.en
        self.by = by
        self.at = at
        super().__init__(f"{reason.zh} / {reason.en}")


# --------------------------------------------------------------------------------------------
# Refusal texts


def _clock(at: datetime, now: datetime) -> str:
    """10:31 today, 07-14 10:31 on another day: city time, as officers read the wall clock."""
    local, today = at.astimezone(CITY_TZ), now.astimezone(CITY_TZ)
    return f"{local:%H:%M}" if local.date() == today.date() else f"{local:%m-%d %H:%M}"


def state_refusal(
    lifecycle: Lifecycle,
    entity_id: Any,
    action: Action,
    state: str,
    *,
    by: str | None,
    by_display: str | None,
    at: datetime | None,
    now: datetime,
) -> Refusal:
    """Why ``action`` does not apply in ``state``, naming who made the state and when.

    "告警 42 已被 张三 于 10:31 确认，不能确认" /
    "alert 42 is acknowledged (by zhang, 10:31); cannot acknowledge".
    """
    info = lifecycle.state(state)
    allowed_zh = "、".join(lifecycle.state(s).label_zh for s in sorted(action.sources))
    allowed_en = ", ".join(sorted(action.sources))
    who = f"{lifecycle.noun_zh} {entity_id}"
    if by and at and info.done_zh:
        zh = f"{who} 已被 {by_display or by} 于 {_clock(at, now)} {info.done_zh}，不能{action.label_zh}"
        en_state = f"{info.label_en} (by {by}, {_clock(at, now)})"
    else:
        zh = f"{who} 当前为「{info.label_zh}」，不能{action.label_zh}"
        en_state = info.label_en
    return Refusal(
        zh=f"{zh}（仅限：{allowed_zh}）",
        en=f"{lifecycle.name} {entity_id} is {en_state}; cannot {action.name.replace('_', ' ')} "
        f"(allowed from: {allowed_en})",
    )


def role_refusal(lifecycle: Lifecycle, action: Action, actor: Actor) -> Refusal:
    roles = ", ".join(sorted(action.roles or ()))
    name = actor.display_name or actor.username
    return Refusal(
        zh=f"{name}（角色 {actor.role}）无权{action.label_zh}{lifecycle.noun_zh}",
        en=f"{actor.username} (role {actor.role}) may not {action.name.replace('_', ' ')} "
        f"a {lifecycle.name} (roles: {roles})",
    )


# --------------------------------------------------------------------------------------------
# Transitions


def last_entered(
    conn: Connection, event_log: EventLog, entity_id: Any, state: str
) -> tuple[str | None, str | None, datetime | None]:
    """Who moved the record into ``state`` most recently, their display name, and when."""
    events = event_log.table
    row = conn.execute(
        sa.select(events.c.actor, events.c.ts)
        .where(events.c[event_log.entity_column] == entity_id, events.c.to_state == state)
        .order_by(events.c.ts.desc(), events.c.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return None, None, None
    display = None
    if row.actor:
        users = User.__table__
        display = conn.execute(
            sa.select(users.c.display_name).where(users.c.username == row.actor)
        ).scalar_one_or_none()
    return row.actor, display, row.ts


def record_event(
    conn: Connection,
    *,
    lifecycle: Lifecycle,
    event_log: EventLog,
    entity_id: Any,
    action: str,
    from_state: str | None,
    to_state: str | None,
    actor: Actor | str,
    address: str | None,
    comment: str | None,
    payload: Mapping[str, Any] | None,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    now: datetime,
) -> int:
    """Write one event row and its audit entry; for creation and for changes that are not
    state transitions (a condition clearing) as well as by :func:`apply_transition`."""
    actor = Actor.of(actor)
    events = event_log.table
    data = dict(audit.jsonable(payload or {}))
    values: dict[str, Any] = {
        event_log.entity_column: entity_id,
        "ts": now,
        "action": action,
        "from_state": from_state,
        "to_state": to_state,
        "actor": actor.username,
        event_log.comment_column: comment,
    }
    if event_log.address_column is not None:
        values[event_log.address_column] = address
    elif address is not None:
        data["address"] = address
    values["payload"] = data or None
    event_id = conn.execute(sa.insert(events).returning(events.c.id), values).scalar_one()
    audit.record(
        conn,
        actor=actor.username,
        address=address,
        action=f"{lifecycle.name}.{action}",
        entity_type=lifecycle.name,
        entity_id=entity_id,
        before=before,
        after={**(after or {}), **({"comment": comment} if comment else {})} if after or comment else None,
        now=now,
    )
    return event_id


def apply_transition(
    conn: Connection,
    *,
    table: sa.Table,
    id_column: str,
    entity_id: Any,
    lifecycle: Lifecycle,
    action: str,
    actor: Actor | str,
    address: str | None,
    comment: str | None = None,
    changes: Mapping[str, Any] | Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None,
    event_table: EventLog,
    now: datetime,
    params: Mapping[str, Any] | None = None,
    payload: Mapping[str, Any] | None = None,
) -> Transition:
    """Move one row of ``table`` by ``action``, in the caller's transaction.

    ``changes`` are further column values (SQL expressions allowed), or a function of the
    row as read that returns them, so values derived from the row are recomputed when a
    lost race makes the transition read it again. ``params`` reach the guard. Raises
    :class:`IllegalTransition` (with who and when, if a person made the current state) or
    :class:`EntityNotFound`; the caller's transaction stays usable after either.
    """
    act = lifecycle.action(action)
    who = Actor.of(actor)
    ctx = TransitionContext(actor=who, now=now, params=params or {})
    key = table.c[id_column]
    state_col = table.c[lifecycle.state_column]
    version_col = table.c[lifecycle.version_column] if lifecycle.version_column else None

    for _attempt in range(MAX_ATTEMPTS):
        row = conn.execute(sa.select(table).where(key == entity_id)).mappings().first()
        if row is None:
            raise EntityNotFound(lifecycle, entity_id)
        state = row[lifecycle.state_column]
        refusal: Refusal | None = None
        if state not in act.sources:
            by, display, at = last_entered(conn, event_table, entity_id, state)
            refusal = state_refusal(
                lifecycle, entity_id, act, state, by=by, by_display=display, at=at, now=now
            )
            raise IllegalTransition(
                entity_type=lifecycle.name,
                entity_id=entity_id,
                action=action,
                state=state,
                reason=refusal,
                by=by,
                at=at,
            )
        if act.roles is not None and who.role is not None and who.role not in act.roles:
            refusal = role_refusal(lifecycle, act, who)
        elif act.guard is not None:
            refusal = act.guard(row, ctx)
        if refusal is not None:
            raise IllegalTransition(
                entity_type=lifecycle.name, entity_id=entity_id, action=action, state=state, reason=refusal
            )

        values = dict(changes(row) if callable(changes) else (changes or {}))
        values[lifecycle.state_column] = act.target
        stmt = sa.update(table).where(key == entity_id, state_col.in_(sorted(act.sources)))
        if version_col is not None:
            values[version_col.name] = version_col + 1
            stmt = stmt.where(version_col == row[version_col.name])
        updated = conn.execute(stmt.values(values).returning(*table.c)).mappings().first()
        if updated is None:
            # Someone else changed the row between our read and our write (their change is
            # committed: the row lock made us wait for it). Read again and decide again.
            continue
        before, after = dict(row), dict(updated)
        quiet = {lifecycle.state_column, lifecycle.version_column, *lifecycle.private_columns}
        changed = [k for k in values if k not in quiet and before[k] != after[k]]
        image_keys = [lifecycle.state_column, *changed]
        event_id = record_event(
            conn,
            lifecycle=lifecycle,
            event_log=event_table,
            entity_id=entity_id,
            action=action,
            from_state=state,
            to_state=act.target,
            actor=who,
            address=address,
            comment=comment,
            payload={**(payload or {}), "changes": {k: [before[k], after[k]] for k in changed}},
            before={k: before[k] for k in image_keys},
            after={k: after[k] for k in image_keys},
            now=now,
        )
        return Transition(
            entity_id=entity_id,
            action=action,
            from_state=state,
            to_state=act.target,
            actor=who.username,
            address=address,
            comment=comment,
            at=now,
            before=before,
            after=after,
            event_id=event_id,
        )
    raise IllegalTransition(
        entity_type=lifecycle.name,
        entity_id=entity_id,
        action=action,
        state="?",
        reason=Refusal(
            zh=f"{lifecycle.noun_zh} {entity_id} 正被他人同时修改，请刷新后重试",
            en=f"{lifecycle.name} {entity_id} keeps changing under us; refresh and try again",
        ),
    )


__all__ = [
    "MAX_ATTEMPTS",
    "SYSTEM",
    "Action",
    "Actor",
    "EntityNotFound",
    "EventLog",
    "Guard",
    "IllegalTransition",
    "Lifecycle",
    "Refusal",
    "State",
    "Transition",
    "TransitionContext",
    "apply_transition",
    "last_entered",
    "record_event",
    "role_refusal",
    "state_refusal",
]
