"""12345 work orders (工单): lifecycle, deadlines, dispatch suggestions, repeats, statistics.

::

    registered 受理 ──dispatch──► dispatched 已派单 ──accept──► accepted 已签收 ──start──► in_progress 办理中
        │  ▲                          │                         │                        │
        │  └──dispatch── returned 已退单 ◄──return (with a reason)─┴────────────────────────┤
        │                                                       request_extension ──► extension_requested
        │                                      approve_extension / refuse_extension ──► in_progress
    merge ──► merged 已合并 (重复件, from registered, dispatched, returned)
    accepted / in_progress / extension_requested ──reply──► replied 已答复 ──close──► closed 已办结
    closed ──follow_up (满意/基本满意/不满意)──► followed_up 已回访
    supervise (督办): a flag on any open order, not a state.

Every transition goes through :func:`models.lifecycle.apply_transition`, whether it comes
from the console or from the hotline system over MQTT (:func:`apply_hotline_event`), so
both meet the same checks and the same compare-and-set: of two departments signing for one
order at once exactly one wins.

Deadlines (签收, 答复, 办结) come from a :class:`DeadlinePolicy` by category and urgency,
counted from the moment the citizen called. :func:`raise_deadline_alerts` raises a hotline
alert per order and deadline kind when one is about to pass (minor) or has passed (major).

Caller name and phone are personal data (个人信息保护法): they never leave this module
except masked (:func:`mask_name`, :func:`mask_phone`) in a :class:`TicketView`.
"""

from __future__ import annotations

import enum
import functools
import tomllib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from models import alerts
from models import lifecycle as lc
from models.clock import CITY_TZ
from models.lifecycle import Actor, EntityNotFound, IllegalTransition, Lifecycle, Refusal, State
from models.schema import SRID, Alert, HotlineTicket, Role, TicketEvent
from models.scope import in_district
from models.spatial import bounding_box, great_circle_m
from models.users import Permission, roles_with

# --------------------------------------------------------------------------------------------
# States, ratings, roles


class TicketState(enum.StrEnum):
    REGISTERED = "registered"
    DISPATCHED = "dispatched"
    ACCEPTED = "accepted"
    IN_PROGRESS = "in_progress"
    EXTENSION_REQUESTED = "extension_requested"
    REPLIED = "replied"
    CLOSED = "closed"
    FOLLOWED_UP = "followed_up"
    RETURNED = "returned"
    MERGED = "merged"

    @property
    def label_zh(self) -> str:
        return TICKET_LIFECYCLE.state(self.value).label_zh


class Satisfaction(enum.StrEnum):
    """回访评价."""

    SATISFIED = "satisfied"
    BASICALLY_SATISFIED = "basically_satisfied"
    DISSATISFIED = "dissatisfied"

    @property
    def label_zh(self) -> str:
        return _SATISFACTION_ZH[self]


_SATISFACTION_ZH = {
    Satisfaction.SATISFIED: "满意",
    Satisfaction.BASICALLY_SATISFIED: "基本满意",
    Satisfaction.DISSATISFIED: "不满意",
}


def parse_rating(value: str | Satisfaction) -> Satisfaction | None:
    """A rating from its code or its Chinese label (the hotline system sends either)."""
    text = str(value).strip()
    for rating, label in _SATISFACTION_ZH.items():
        if text in (rating.value, label):
            return rating
    return None


class ExtensionState(enum.StrEnum):
    REQUESTED = "requested"
    APPROVED = "approved"
    REFUSED = "refused"
    #: Replied while the request was pending: the request no longer matters.
    WITHDRAWN = "withdrawn"


#: Who works orders in the console. Departments sign in as operators for now; the hotline
#: system acts as a service (no role), so only people are role-checked.
HANDLER_ROLES = roles_with(Permission.TICKET_DISPATCH)
#: 督办 is what leaders do.
SUPERVISOR_ROLES = HANDLER_ROLES | {Role.LEADER}

S = TicketState
#: Not yet signed for by a department: the 签收 deadline runs.
AWAITING_ACCEPT = frozenset({S.REGISTERED, S.DISPATCHED, S.RETURNED})
#: No reply to the citizen yet: the 答复 deadline runs.
AWAITING_REPLY = AWAITING_ACCEPT | {S.ACCEPTED, S.IN_PROGRESS, S.EXTENSION_REQUESTED}
#: Not closed yet: the 办结 deadline runs. Also the states that can be supervised.
OPEN_STATES = AWAITING_REPLY | {S.REPLIED}

ENTITY_TYPE = "ticket"
#: Personal data: never copied into events, audit, alerts, views or exports.
PERSONAL_COLUMNS = frozenset({"caller_name", "caller_phone"})


# --------------------------------------------------------------------------------------------
# Guards


def _text(ctx: lc.TransitionContext, key: str) -> str:
    return str(ctx.params.get(key) or "").strip()


def _valid_rating(row: Mapping[str, Any], ctx: lc.TransitionContext) -> Refusal | None:
    if parse_rating(_text(ctx, "rating")) is None:
        return Refusal(
            zh="回访须给出评价：满意、基本满意或不满意",
            en="a follow-up needs a rating: satisfied, basically_satisfied or dissatisfied",
        )
    return None


def _extension_later(row: Mapping[str, Any], ctx: lc.TransitionContext) -> Refusal | None:
    until = ctx.params.get("until")
    if not _text(ctx, "reason"):
        return Refusal(zh="申请延期须说明理由", en="an extension request needs a reason")
    current = row["reply_due"] or ctx.now
    if not isinstance(until, datetime) or until <= max(current, ctx.now):
        return Refusal(
            zh=f"延期后的答复时限须晚于当前时限 {_local(current)}",
            en=f"the extended reply deadline must be later than {current.isoformat()}",
        )
    return None


def _mergeable(row: Mapping[str, Any], ctx: lc.TransitionContext) -> Refusal | None:
    earlier = ctx.params.get("earlier")
    if not earlier:
        return Refusal(zh="合并须指明原工单", en="a merge needs the earlier ticket")
    if earlier == row["ticket_id"]:
        return Refusal(zh="工单不能合并到自身", en="a ticket cannot be merged into itself")
    earlier_ts = ctx.params.get("earlier_ts")
    if earlier_ts is None:
        return Refusal(zh=f"原工单 {earlier} 不存在", en=f"earlier ticket {earlier} does not exist")
    if earlier_ts > row["ts"]:
        return Refusal(
            zh=f"只能合并到更早的工单，{earlier} 晚于 {row['ticket_id']}",
            en=f"{earlier} is later than {row['ticket_id']}; merge into an earlier ticket",
        )
    return None


def _not_supervised(row: Mapping[str, Any], ctx: lc.TransitionContext) -> Refusal | None:
    if row["supervised"]:
        return Refusal(
            zh=f"工单 {row['ticket_id']} 已在督办中", en=f"ticket {row['ticket_id']} is already supervised"
        )
    return None


#: Order actions are for those who handle orders unless an action says otherwise.
_action = functools.partial(lc.action, roles=HANDLER_ROLES)


TICKET_LIFECYCLE = Lifecycle(
    name=ENTITY_TYPE,
    noun_zh="工单",
    states={
        S.REGISTERED: State(S.REGISTERED, "已受理"),
        S.DISPATCHED: State(S.DISPATCHED, "已派单", "派单"),
        S.ACCEPTED: State(S.ACCEPTED, "已签收", "签收"),
        S.IN_PROGRESS: State(S.IN_PROGRESS, "办理中", "开始办理"),
        S.EXTENSION_REQUESTED: State(S.EXTENSION_REQUESTED, "延期申请中", "申请延期"),
        S.REPLIED: State(S.REPLIED, "已答复", "答复"),
        S.CLOSED: State(S.CLOSED, "已办结", "办结"),
        S.FOLLOWED_UP: State(S.FOLLOWED_UP, "已回访", "回访"),
        S.RETURNED: State(S.RETURNED, "已退单", "退单"),
        S.MERGED: State(S.MERGED, "已合并（重复件）", "合并为重复件"),
    },
    actions={
        a.name: a
        for a in (
            _action(
                "dispatch",
                {S.REGISTERED, S.RETURNED},
                S.DISPATCHED,
                "派单",
                guard=lc.requires_text("department", "派单须指定承办部门", "dispatch needs a department"),
            ),
            _action("accept", {S.DISPATCHED}, S.ACCEPTED, "签收"),
            _action("start", {S.ACCEPTED}, S.IN_PROGRESS, "开始办理"),
            _action(
                "reply",
                {S.ACCEPTED, S.IN_PROGRESS, S.EXTENSION_REQUESTED},
                S.REPLIED,
                "答复",
                guard=lc.requires_text("text", "答复须填写答复内容", "a reply needs its text"),
            ),
            _action("close", {S.REPLIED}, S.CLOSED, "办结"),
            _action("follow_up", {S.CLOSED}, S.FOLLOWED_UP, "回访", guard=_valid_rating),
            _action(
                "return",
                {S.DISPATCHED, S.ACCEPTED, S.IN_PROGRESS},
                S.RETURNED,
                "退单",
                guard=lc.requires_text("reason", "退单须说明理由", "returning a ticket needs a reason"),
            ),
            _action(
                "request_extension",
                {S.ACCEPTED, S.IN_PROGRESS},
                S.EXTENSION_REQUESTED,
                "申请延期",
                guard=_extension_later,
            ),
            _action("approve_extension", {S.EXTENSION_REQUESTED}, S.IN_PROGRESS, "批准延期"),
            _action(
                "refuse_extension",
                {S.EXTENSION_REQUESTED},
                S.IN_PROGRESS,
                "驳回延期",
                guard=lc.requires_text(
                    "reason", "驳回延期须说明理由", "refusing an extension needs a reason"
                ),
            ),
            _action(
                "merge", {S.REGISTERED, S.DISPATCHED, S.RETURNED}, S.MERGED, "合并为重复件", guard=_mergeable
            ),
        )
    },
    private_columns=PERSONAL_COLUMNS,
)

#: 督办 keeps the state; as a lifecycle action it is allowed from every open state. It is
#: applied through a one-state copy of the lifecycle (see :func:`supervise`), so it goes
#: through the same compare-and-set, event and audit path as every other action.
SUPERVISE = _action("supervise", OPEN_STATES, S.REGISTERED, "督办", roles=SUPERVISOR_ROLES)

TICKET_EVENTS = lc.EventLog(TicketEvent.__table__, "ticket_id", comment_column="note", address_column=None)

_TICKETS = HotlineTicket.__table__
_EVENTS = TicketEvent.__table__


# --------------------------------------------------------------------------------------------
# Personal data


def mask_phone(phone: str | None) -> str | None:
    """``13812345678`` → ``138****5678``: enough to recognise a caller, not to call them."""
    if phone is None:
        return None
    digits = "".join(phone.split())
    n = len(digits)
    if n >= 8:
        return digits[:3] + "*" * (n - 7) + digits[-4:]
    if n >= 3:
        return "*" * (n - 2) + digits[-2:]
    return "*" * n


def mask_name(name: str | None) -> str | None:
    """``张三`` → ``张*``, ``欧阳娜娜`` → ``欧***``: the family name at most."""
    if name is None:
        return None
    name = name.strip()
    if len(name) <= 1:
        return "*" * len(name)
    return name[0] + "*" * (len(name) - 1)


# --------------------------------------------------------------------------------------------
# Views


@dataclass(frozen=True, slots=True)
class TicketView:
    """A work order as every page, export, log line and live entry sees it: the caller masked."""

    ticket_id: str
    ts: datetime
    channel: str
    category: str
    title: str
    content: str
    address: str | None
    lon: float | None
    lat: float | None
    district_code: str | None
    grid_id: str | None
    urgency: str
    caller_name_masked: str | None
    caller_phone_masked: str | None
    state: str
    department: str | None
    handling_district_code: str | None
    suggested_department: str | None
    accept_due: datetime | None
    reply_due: datetime | None
    close_due: datetime | None
    dispatched_at: datetime | None
    accepted_at: datetime | None
    replied_at: datetime | None
    closed_at: datetime | None
    followed_up_at: datetime | None
    satisfaction: str | None
    supervised: bool
    extension_state: str | None
    extension_until: datetime | None
    return_count: int
    repeat_of: str | None
    likely_repeat_of: str | None
    likely_repeat_distance_m: float | None
    version: int

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> TicketView:
        values = {
            f: row[f]
            for f in cls.__dataclass_fields__
            if f not in ("caller_name_masked", "caller_phone_masked")
        }
        return cls(
            **values,
            caller_name_masked=mask_name(row["caller_name"]),
            caller_phone_masked=mask_phone(row["caller_phone"]),
        )

    @property
    def state_label_zh(self) -> str:
        return TICKET_LIFECYCLE.state(self.state).label_zh

    def overdue_kinds(self, now: datetime) -> list[str]:
        """Deadline kinds (accept, reply, close) this order has missed and still owes."""
        return [
            k.name for k in DEADLINE_KINDS if k.pending(self.state) and _passed(getattr(self, k.column), now)
        ]

    def due_soon_kinds(self, now: datetime, within: timedelta) -> list[str]:
        """Deadline kinds that pass within ``within`` from ``now`` and are not passed yet."""
        return [
            k.name
            for k in DEADLINE_KINDS
            if k.pending(self.state)
            and (due := getattr(self, k.column)) is not None
            and now < due <= now + within
        ]


def _passed(due: datetime | None, now: datetime) -> bool:
    return due is not None and due <= now


@dataclass(frozen=True, slots=True)
class TicketChange:
    """A transition that happened; ``ticket`` is the order afterwards (masked)."""

    action: str
    ticket: TicketView
    from_state: str | None
    actor: str
    at: datetime
    comment: str | None = None
    #: The ``ticket_events`` row written.
    event_row_id: int | None = None


def get_ticket(conn: Connection, ticket_id: str) -> TicketView | None:
    row = conn.execute(sa.select(_TICKETS).where(_TICKETS.c.ticket_id == ticket_id)).mappings().first()
    return None if row is None else TicketView.from_row(row)


@dataclass(frozen=True, slots=True)
class TicketEventView:
    id: int
    event_id: str | None
    ts: datetime
    action: str
    from_state: str | None
    to_state: str | None
    actor: str | None
    note: str | None
    payload: dict[str, Any] | None


def ticket_history(conn: Connection, ticket_id: str) -> list[TicketEventView]:
    rows = conn.execute(
        sa.select(*(_EVENTS.c[f] for f in TicketEventView.__dataclass_fields__))
        .where(_EVENTS.c.ticket_id == ticket_id)
        .order_by(_EVENTS.c.ts, _EVENTS.c.id)
    ).all()
    return [TicketEventView(*r) for r in rows]


# --------------------------------------------------------------------------------------------
# Deadlines


@dataclass(frozen=True, slots=True)
class Deadlines:
    """Time allowed from the call to 签收 (accept), 答复 (reply) and 办结 (close)."""

    accept: timedelta
    reply: timedelta
    close: timedelta

    def __post_init__(self) -> None:
        if not timedelta(0) < self.accept <= self.reply <= self.close:
            raise ValueError(f"deadlines must grow: accept ≤ reply ≤ close, got {self}")


def _hours(accept: float, reply: float, close: float) -> Deadlines:
    return Deadlines(timedelta(hours=accept), timedelta(hours=reply), timedelta(hours=close))


@dataclass(frozen=True, slots=True)
class DeadlinePolicy:
    """Time limits by urgency, with overrides per category; ``warn_before`` is when an
    order counts as about to be overdue (即将超时).

    GB/T 33358 leaves the numbers to each city, so these are configuration: load a TOML
    file with :func:`load_policy` (format in its docstring) or build one in code.
    """

    by_urgency: Mapping[str, Deadlines]
    by_category: Mapping[str, Mapping[str, Deadlines]] = field(default_factory=dict)
    warn_before: timedelta = timedelta(hours=1)

    def for_ticket(self, category: str, urgency: str) -> Deadlines:
        override = self.by_category.get(category, {}).get(urgency)
        if override is not None:
            return override
        return self.by_urgency.get(urgency) or self.by_urgency["normal"]


#: Defaults: urgent orders 2 h to sign for, 24 h to reply, 48 h to close; normal ones one
#: day, five days, six days (the reply counts as the handling limit; closing follows it).
DEFAULT_POLICY = DeadlinePolicy(
    by_urgency={"urgent": _hours(2, 24, 48), "normal": _hours(24, 120, 144)},
    # No water is a household emergency even when the caller does not say "urgent".
    by_category={"供水问题": {"normal": _hours(4, 24, 48)}},
)


def load_policy(path: str | Path) -> DeadlinePolicy:
    """Read a deadline policy from TOML::

        warn_before_minutes = 60
        [urgency.urgent]
        accept_hours = 2
        reply_hours = 24
        close_hours = 48
        [urgency.normal]
        accept_hours = 24
        reply_hours = 120
        close_hours = 144
        [category."供水问题".normal]
        accept_hours = 4
        reply_hours = 24
        close_hours = 48

    Urgencies missing from the file keep the defaults.
    """
    data = tomllib.loads(Path(path).read_text(encoding="utf-8"))

    def deadlines(table: Mapping[str, Any]) -> Deadlines:
        return _hours(float(table["accept_hours"]), float(table["reply_hours"]), float(table["close_hours"]))

    by_urgency = dict(DEFAULT_POLICY.by_urgency)
    by_urgency.update({u: deadlines(t) for u, t in data.get("urgency", {}).items()})
    by_category = {
        c: {u: deadlines(t) for u, t in per.items()} for c, per in data.get("category", {}).items()
    }
    warn = timedelta(minutes=float(data.get("warn_before_minutes", 60)))
    return DeadlinePolicy(by_urgency=by_urgency, by_category=by_category, warn_before=warn)


@dataclass(frozen=True, slots=True)
class DeadlineKind:
    name: Literal["accept", "reply", "close"]
    label_zh: str
    column: str
    pending_states: frozenset[str]

    def pending(self, state: str) -> bool:
        return state in self.pending_states


DEADLINE_KINDS = (
    DeadlineKind("accept", "签收", "accept_due", frozenset(AWAITING_ACCEPT)),
    DeadlineKind("reply", "答复", "reply_due", frozenset(AWAITING_REPLY)),
    DeadlineKind("close", "办结", "close_due", frozenset(OPEN_STATES)),
)


@dataclass(frozen=True, slots=True)
class DeadlineFlag:
    """An order whose ``kind`` deadline has passed (``overdue``) or is about to."""

    ticket_id: str
    kind: str
    due: datetime
    overdue: bool
    state: str
    category: str
    urgency: str
    department: str | None
    district_code: str | None
    grid_id: str | None
    lon: float | None
    lat: float | None
    supervised: bool

    @property
    def label_zh(self) -> str:
        kind = next(k for k in DEADLINE_KINDS if k.name == self.kind)
        return f"{kind.label_zh}{'超时' if self.overdue else '即将超时'}"


_FLAG_COLUMNS = (
    "ticket_id",
    "state",
    "category",
    "urgency",
    "department",
    "district_code",
    "grid_id",
    "lon",
    "lat",
    "supervised",
)


def _deadline_flags(
    conn: Connection, now: datetime, within: timedelta | None, district_code: str | None = None
) -> list[DeadlineFlag]:
    flags: list[DeadlineFlag] = []
    for kind in DEADLINE_KINDS:
        due = _TICKETS.c[kind.column]
        cond = due <= now if within is None else sa.and_(due > now, due <= now + within)
        rows = conn.execute(
            sa.select(*(_TICKETS.c[c] for c in _FLAG_COLUMNS), due.label("due"))
            .where(
                cond,
                _TICKETS.c.state.in_(sorted(kind.pending_states)),
                in_district(_TICKETS.c.district_code, district_code),
            )
            .order_by(due, _TICKETS.c.ticket_id)
        ).mappings()
        for r in rows:
            flags.append(
                DeadlineFlag(
                    kind=kind.name, due=r["due"], overdue=within is None, **{c: r[c] for c in _FLAG_COLUMNS}
                )
            )
    flags.sort(key=lambda f: (f.due, f.ticket_id, f.kind))
    return flags


def overdue(conn: Connection, now: datetime, *, district_code: str | None = None) -> list[DeadlineFlag]:
    """Open orders past a deadline they still owe (签收/答复/办结), earliest deadline first
    (of one district with ``district_code``)."""
    return _deadline_flags(conn, now, None, district_code)


def due_soon(
    conn: Connection, now: datetime, within: timedelta = DEFAULT_POLICY.warn_before
) -> list[DeadlineFlag]:
    """Open orders whose deadline passes within ``within`` (and has not passed yet)."""
    return _deadline_flags(conn, now, within)


DEADLINE_RULE_ID = "hotline_deadline"


def deadline_alert_key(ticket_id: str, kind: str) -> str:
    """One alert per order and deadline kind: 即将超时 and 超时 are the same alert, raised."""
    return f"{DEADLINE_RULE_ID}:{ticket_id}:{kind}"


def _deadline_severity(flag: DeadlineFlag) -> str:
    if not flag.overdue:
        return "minor"
    return "critical" if flag.urgency == "urgent" or flag.supervised else "major"


def raise_deadline_alerts(
    conn: Connection, now: datetime, *, within: timedelta = DEFAULT_POLICY.warn_before
) -> list[alerts.AlertChange]:
    """Raise hotline alerts for overdue and about-to-be-overdue orders.

    Run periodically. An order already alerted at the same or a higher severity is left
    alone, so running every minute does not pile up occurrences; an order that goes from
    about-to-be-overdue to overdue raises its alert's severity.
    """
    changes: list[alerts.AlertChange] = []
    for flag in overdue(conn, now) + due_soon(conn, now, within):
        key = deadline_alert_key(flag.ticket_id, flag.kind)
        severity = _deadline_severity(flag)
        current = conn.execute(
            sa.select(Alert.__table__.c.severity).where(
                Alert.__table__.c.dedup_key == key, Alert.__table__.c.resolved_at.is_(None)
            )
        ).scalar_one_or_none()
        if current is not None and alerts.SEVERITY_RANK[current] <= alerts.SEVERITY_RANK[severity]:
            continue
        title = f"12345 工单 {flag.ticket_id} {flag.label_zh}"
        message = (
            f"{flag.category}，{flag.department or '未派单'}，时限 {_local(flag.due)}"
            f"{'，督办件' if flag.supervised else ''}"
        )
        draft = alerts.AlertDraft(
            rule_id=DEADLINE_RULE_ID,
            domain="hotline",
            severity=severity,
            title=title[:200],
            message=message,
            dedup_key=key,
            source_kind="ticket",
            source_id=flag.ticket_id,
            district_code=flag.district_code,
            grid_id=flag.grid_id,
            lon=flag.lon,
            lat=flag.lat,
            evidence={"kind": flag.kind, "due": flag.due, "overdue": flag.overdue, "state": flag.state},
            observed_at=now,
        )
        changes.append(alerts.raise_alert(conn, draft, now=now))
    return changes


def _clear_deadline_alerts(conn: Connection, ticket_id: str, kinds: Iterable[str], now: datetime) -> None:
    """A deadline met (or no longer owed): its alert's condition has ended."""
    for kind in kinds:
        alerts.clear_alert(
            conn, deadline_alert_key(ticket_id, kind), now=now, reason="时限已满足 / deadline met"
        )


def _local(at: datetime) -> str:
    return f"{at.astimezone(CITY_TZ):%m-%d %H:%M}"


# --------------------------------------------------------------------------------------------
# Auto-dispatch suggestion


#: Category → responsible department. Categories not listed go to the township or street
#: office (街道/乡镇), which handles what no line department owns.
CATEGORY_DEPARTMENTS: Mapping[str, str] = {
    "占道经营": "城管",
    "垃圾清运": "城管",
    "路灯故障": "城管",
    "违章建筑": "住建",
    "道路破损": "交通",
    "交通设施": "交通",
    "噪声扰民": "环保",
    "油烟污染": "环保",
    "供水问题": "水务",
    "宠物扰民": "公安",
    "食品安全": "市场监管",
    "价格投诉": "市场监管",
}
FALLBACK_DEPARTMENT = "街道/乡镇"
#: Departments the console offers (the suggestion is always one of them).
DEPARTMENTS = ("城管", "住建", "交通", "环保", "水务", "公安", "市场监管", FALLBACK_DEPARTMENT)


@dataclass(frozen=True, slots=True)
class DispatchSuggestion:
    """Where an order probably belongs; the operator confirms or changes it."""

    department: str
    district_code: str | None
    district_name: str | None
    #: The unit as people say it: 广安区城管 (or just 城管 when the place is unknown).
    unit_zh: str
    reason_zh: str


def suggest_dispatch(category: str, district_code: str | None) -> DispatchSuggestion:
    from geo.boundaries import district_by_code

    department = CATEGORY_DEPARTMENTS.get(category, FALLBACK_DEPARTMENT)
    name: str | None = None
    if district_code:
        try:
            name = district_by_code(district_code).name
        except (KeyError, ValueError):
            name = None
    reason = f"类别「{category}」" + (
        "按归口部门" if category in CATEGORY_DEPARTMENTS else "无归口部门，交属地"
    )
    if name:
        reason += f"，位于{name}"
    return DispatchSuggestion(
        department=department,
        district_code=district_code if name else None,
        district_name=name,
        unit_zh=f"{name or ''}{department}",
        reason_zh=reason,
    )


# --------------------------------------------------------------------------------------------
# Repeat detection


@dataclass(frozen=True, slots=True)
class RepeatMatch:
    """An earlier order that a new one probably repeats."""

    ticket_id: str
    ts: datetime
    state: str
    distance_m: float


def find_repeats(
    conn: Connection,
    ticket: TicketView | Mapping[str, Any],
    *,
    radius_m: float = 200.0,
    days: float = 30.0,
) -> list[RepeatMatch]:
    """Earlier orders of the same category within ``radius_m`` that are open, or were
    registered within ``days`` before this one; nearest first.

    PostGIS measures on the spheroid (``ST_DWithin`` on geography); SQLite measures great
    circles (:func:`models.spatial.great_circle_m`), which agree to ~0.3 %.
    """
    get = (lambda k: getattr(ticket, k)) if isinstance(ticket, TicketView) else ticket.__getitem__
    lon, lat = get("lon"), get("lat")
    if lon is None or lat is None:
        return []
    lon, lat, ts = float(lon), float(lat), get("ts")
    west, south, east, north = bounding_box(lon, lat, radius_m)
    t = _TICKETS
    query = sa.select(t.c.ticket_id, t.c.ts, t.c.state, t.c.lon, t.c.lat).where(
        t.c.category == get("category"),
        t.c.ticket_id != get("ticket_id"),
        t.c.ts <= ts,
        t.c.state != S.MERGED,
        sa.or_(t.c.ts >= ts - timedelta(days=days), t.c.state.in_(sorted(OPEN_STATES))),
        t.c.lon.is_not(None),
    )
    if conn.dialect.name == "postgresql":
        here = sa.func.geography(sa.func.ST_SetSRID(sa.func.ST_MakePoint(lon, lat), SRID))
        distance = sa.func.ST_Distance(sa.func.geography(t.c.geom), here)
        rows = conn.execute(
            query.add_columns(distance.label("distance_m"))
            .where(t.c.geom.op("&&")(sa.func.ST_MakeEnvelope(west, south, east, north, SRID)))
            .where(sa.func.ST_DWithin(sa.func.geography(t.c.geom), here, radius_m))
        ).all()
        found = [RepeatMatch(r.ticket_id, r.ts, r.state, float(r.distance_m)) for r in rows]
    else:
        rows = conn.execute(query.where(t.c.lat.between(south, north), t.c.lon.between(west, east))).all()
        measured = [
            RepeatMatch(r.ticket_id, r.ts, r.state, great_circle_m(lon, lat, r.lon, r.lat)) for r in rows
        ]
        found = [m for m in measured if m.distance_m <= radius_m]
    found.sort(key=lambda m: (round(m.distance_m, 3), m.ts, m.ticket_id))
    return found


# --------------------------------------------------------------------------------------------
# Registration


REGISTRAR = Actor("12345")


def register_new(
    conn: Connection,
    rows: Sequence[Mapping[str, Any]],
    *,
    now: datetime,
    policy: DeadlinePolicy = DEFAULT_POLICY,
    repeat_radius_m: float = 200.0,
    repeat_days: float = 30.0,
) -> list[dict[str, Any]]:
    """For orders just stored: set their deadlines, the dispatch suggestion and a likely
    repeat, and start their history (受理). Returns the rows with those values added.

    Deadlines count from the call (``ts``), because the citizen's wait starts there.
    """
    done: list[dict[str, Any]] = []
    for row in rows:
        limits = policy.for_ticket(row["category"], row["urgency"])
        ts = row["ts"]
        values: dict[str, Any] = {
            "accept_due": ts + limits.accept,
            "reply_due": ts + limits.reply,
            "close_due": ts + limits.close,
            "suggested_department": suggest_dispatch(row["category"], row.get("district_code")).department,
        }
        repeats = find_repeats(conn, row, radius_m=repeat_radius_m, days=repeat_days)
        if repeats:
            values["likely_repeat_of"] = repeats[0].ticket_id
            values["likely_repeat_distance_m"] = round(repeats[0].distance_m, 1)
        conn.execute(sa.update(_TICKETS).where(_TICKETS.c.ticket_id == row["ticket_id"]).values(values))
        lc.record_event(
            conn,
            lifecycle=TICKET_LIFECYCLE,
            event_log=TICKET_EVENTS,
            entity_id=row["ticket_id"],
            action="register",
            from_state=None,
            to_state=S.REGISTERED,
            actor=REGISTRAR,
            address=None,
            comment=None,
            payload=values,
            before=None,
            after={"state": S.REGISTERED, **values},
            # 受理 happened when the call came in; history reads in that order.
            now=min(ts, now),
        )
        done.append({**row, **values})
    return done


# --------------------------------------------------------------------------------------------
# Transitions


Changes = Mapping[str, Any] | Callable[[Mapping[str, Any]], Mapping[str, Any]] | None


def _transition(
    conn: Connection,
    ticket_id: str,
    action: str,
    *,
    actor: Actor | str,
    address: str | None,
    comment: str | None,
    now: datetime,
    changes: Changes = None,
    params: Mapping[str, Any] | None = None,
    payload: Mapping[str, Any] | None = None,
    lifecycle: Lifecycle = TICKET_LIFECYCLE,
    met: Iterable[str] = (),
) -> TicketChange:
    def values(row: Mapping[str, Any]) -> dict[str, Any]:
        extra = changes(row) if callable(changes) else (changes or {})
        return {"updated_at": now, **extra}

    moved = lc.apply_transition(
        conn,
        table=_TICKETS,
        id_column="ticket_id",
        entity_id=ticket_id,
        lifecycle=lifecycle,
        action=action,
        actor=actor,
        address=address,
        comment=comment,
        changes=values,
        event_table=TICKET_EVENTS,
        now=now,
        params=params,
        payload=payload,
    )
    _clear_deadline_alerts(conn, ticket_id, met, now)
    return TicketChange(
        action=action,
        ticket=TicketView.from_row(moved.after),
        from_state=moved.from_state,
        actor=moved.actor,
        at=now,
        comment=comment,
        event_row_id=moved.event_id,
    )


def dispatch(
    conn: Connection,
    ticket_id: str,
    *,
    department: str,
    district_code: str | None = None,
    actor: Actor | str,
    address: str | None = None,
    comment: str | None = None,
    now: datetime,
    policy: DeadlinePolicy = DEFAULT_POLICY,
    link: Mapping[str, Any] | None = None,
) -> TicketChange:
    """派单 to ``department`` (in ``district_code``, default: where the order is).

    A re-dispatch after 退单 gives the new department its own 签收 window from now; the
    reply and close deadlines keep counting from the call. ``link`` goes into the dispatch
    event's payload (the case a ticket became: ``{"case_id": …}``).
    """

    def changes(row: Mapping[str, Any]) -> dict[str, Any]:
        values: dict[str, Any] = {
            "department": department.strip(),
            "handling_district_code": district_code or row["district_code"],
            "dispatched_at": now,
        }
        if row["state"] == S.RETURNED:
            values["accept_due"] = now + policy.for_ticket(row["category"], row["urgency"]).accept
        return values

    return _transition(
        conn,
        ticket_id,
        "dispatch",
        actor=actor,
        address=address,
        comment=comment,
        now=now,
        changes=changes,
        params={"department": department},
        payload={"department": department, "district_code": district_code, **(link or {})},
    )


def accept(
    conn: Connection,
    ticket_id: str,
    *,
    actor: Actor | str,
    address: str | None = None,
    comment: str | None = None,
    now: datetime,
) -> TicketChange:
    """签收: the department takes the order. Of two at once, one wins; the other is told who."""
    return _transition(
        conn,
        ticket_id,
        "accept",
        actor=actor,
        address=address,
        comment=comment,
        now=now,
        changes={"accepted_at": now},
        met=("accept",),
    )


def start(
    conn: Connection,
    ticket_id: str,
    *,
    actor: Actor | str,
    address: str | None = None,
    comment: str | None = None,
    now: datetime,
) -> TicketChange:
    """办理: work on the order has started."""
    return _transition(conn, ticket_id, "start", actor=actor, address=address, comment=comment, now=now)


def reply(
    conn: Connection,
    ticket_id: str,
    *,
    text: str,
    actor: Actor | str,
    address: str | None = None,
    now: datetime,
) -> TicketChange:
    """答复 the citizen; ``text`` is the reply (kept as the event's note). A pending
    extension request is withdrawn: the work is done."""

    def changes(row: Mapping[str, Any]) -> dict[str, Any]:
        values: dict[str, Any] = {"replied_at": now}
        if row["state"] == S.EXTENSION_REQUESTED:
            values["extension_state"] = ExtensionState.WITHDRAWN.value
        return values

    return _transition(
        conn,
        ticket_id,
        "reply",
        actor=actor,
        address=address,
        comment=text,
        now=now,
        changes=changes,
        params={"text": text},
        met=("accept", "reply"),
    )


def close(
    conn: Connection,
    ticket_id: str,
    *,
    actor: Actor | str,
    address: str | None = None,
    comment: str | None = None,
    now: datetime,
) -> TicketChange:
    """办结: the centre closes the order after the reply."""
    return _transition(
        conn,
        ticket_id,
        "close",
        actor=actor,
        address=address,
        comment=comment,
        now=now,
        changes={"closed_at": now},
        met=("close",),
    )


def follow_up(
    conn: Connection,
    ticket_id: str,
    *,
    rating: str | Satisfaction,
    actor: Actor | str,
    address: str | None = None,
    comment: str | None = None,
    now: datetime,
) -> TicketChange:
    """回访 with the citizen's rating: 满意, 基本满意 or 不满意 (or their codes)."""
    parsed = parse_rating(rating)
    return _transition(
        conn,
        ticket_id,
        "follow_up",
        actor=actor,
        address=address,
        comment=comment,
        now=now,
        changes={"satisfaction": parsed.value if parsed else None, "followed_up_at": now},
        params={"rating": str(rating)},
        payload={"rating": parsed.value if parsed else str(rating)},
    )


def return_ticket(
    conn: Connection,
    ticket_id: str,
    *,
    reason: str,
    actor: Actor | str,
    address: str | None = None,
    now: datetime,
) -> TicketChange:
    """退单: the department sends the order back to the centre, saying why; the centre
    dispatches it again."""

    return _transition(
        conn,
        ticket_id,
        "return",
        actor=actor,
        address=address,
        comment=reason,
        now=now,
        changes=lambda row: {
            "department": None,
            "handling_district_code": None,
            "accepted_at": None,
            "return_count": row["return_count"] + 1,
        },
        params={"reason": reason},
        payload={"reason": reason},
    )


def request_extension(
    conn: Connection,
    ticket_id: str,
    *,
    until: datetime,
    reason: str,
    actor: Actor | str,
    address: str | None = None,
    now: datetime,
) -> TicketChange:
    """延期申请: the department asks for a later reply deadline ``until``."""
    return _transition(
        conn,
        ticket_id,
        "request_extension",
        actor=actor,
        address=address,
        comment=reason,
        now=now,
        changes={"extension_state": ExtensionState.REQUESTED.value, "extension_until": until},
        params={"until": until, "reason": reason},
        payload={"until": until, "reason": reason},
    )


def approve_extension(
    conn: Connection,
    ticket_id: str,
    *,
    actor: Actor | str,
    address: str | None = None,
    comment: str | None = None,
    now: datetime,
) -> TicketChange:
    """批准延期: the reply deadline moves to the date asked for; the close deadline moves
    by as much, so the time between reply and close stays what the policy gives."""

    def changes(row: Mapping[str, Any]) -> dict[str, Any]:
        until = row["extension_until"]
        shift = until - row["reply_due"] if row["reply_due"] else timedelta(0)
        return {
            "extension_state": ExtensionState.APPROVED.value,
            "reply_due": until,
            "close_due": row["close_due"] + shift if row["close_due"] else until,
        }

    return _transition(
        conn,
        ticket_id,
        "approve_extension",
        actor=actor,
        address=address,
        comment=comment,
        now=now,
        changes=changes,
    )


def refuse_extension(
    conn: Connection,
    ticket_id: str,
    *,
    reason: str,
    actor: Actor | str,
    address: str | None = None,
    now: datetime,
) -> TicketChange:
    """驳回延期: the deadlines stay; the department carries on."""
    return _transition(
        conn,
        ticket_id,
        "refuse_extension",
        actor=actor,
        address=address,
        comment=reason,
        now=now,
        changes={"extension_state": ExtensionState.REFUSED.value},
        params={"reason": reason},
    )


@functools.cache
def _supervise_lifecycle(state: str) -> Lifecycle:
    only = replace(SUPERVISE, sources=frozenset({state}), target=state, guard=_not_supervised)
    return replace(TICKET_LIFECYCLE, actions={"supervise": only})


def supervise(
    conn: Connection,
    ticket_id: str,
    *,
    actor: Actor | str,
    address: str | None = None,
    comment: str | None = None,
    now: datetime,
) -> TicketChange:
    """督办: flag an open order for close attention; its state does not change."""
    for _attempt in range(lc.MAX_ATTEMPTS):
        state = conn.execute(
            sa.select(_TICKETS.c.state).where(_TICKETS.c.ticket_id == ticket_id)
        ).scalar_one_or_none()
        if state is None:
            raise EntityNotFound(TICKET_LIFECYCLE, ticket_id)
        if state not in OPEN_STATES:
            by, display, at = lc.last_entered(conn, TICKET_EVENTS, ticket_id, state)
            raise IllegalTransition(
                entity_type=ENTITY_TYPE,
                entity_id=ticket_id,
                action="supervise",
                state=state,
                reason=lc.state_refusal(
                    TICKET_LIFECYCLE, ticket_id, SUPERVISE, state, by=by, by_display=display, at=at, now=now
                ),
                by=by,
                at=at,
            )
        try:
            return _transition(
                conn,
                ticket_id,
                "supervise",
                actor=actor,
                address=address,
                comment=comment,
                now=now,
                changes={"supervised": True, "supervised_at": now},
                lifecycle=_supervise_lifecycle(state),
            )
        except IllegalTransition as exc:
            # The state moved between our look and the transition's: decide again, unless
            # the refusal is about the order itself (already supervised, a role).
            if exc.state == state:
                raise
    raise IllegalTransition(
        entity_type=ENTITY_TYPE,
        entity_id=ticket_id,
        action="supervise",
        state="?",
        reason=Refusal(
            zh=f"工单 {ticket_id} 正被他人同时修改，请刷新后重试",
            en=f"ticket {ticket_id} keeps changing under us; refresh and try again",
        ),
    )


def merge_into(
    conn: Connection,
    ticket_id: str,
    earlier_id: str,
    *,
    actor: Actor | str,
    address: str | None = None,
    comment: str | None = None,
    now: datetime,
) -> TicketChange:
    """重复件: merge this order into an earlier one (into the earliest, when that one was
    itself merged), so the department works one order and the statistics count one."""
    root, root_ts = earlier_id, None
    seen: set[str] = set()
    while root not in seen:
        seen.add(root)
        found = conn.execute(
            sa.select(_TICKETS.c.ts, _TICKETS.c.repeat_of, _TICKETS.c.state).where(
                _TICKETS.c.ticket_id == root
            )
        ).first()
        if found is None:
            root_ts = None
            break
        root_ts = found.ts
        if found.state != S.MERGED or not found.repeat_of:
            break
        root = found.repeat_of
    return _transition(
        conn,
        ticket_id,
        "merge",
        actor=actor,
        address=address,
        comment=comment,
        now=now,
        changes={"repeat_of": root, "likely_repeat_of": None},
        params={"earlier": root, "earlier_ts": root_ts},
        payload={"earlier": earlier_id, "merged_into": root},
        met=("accept", "reply", "close"),
    )


# --------------------------------------------------------------------------------------------
# Events from the hotline system


#: MQTT ``action`` → what it does. The hotline system reports what happened (past tense).
EVENT_ACTIONS: Mapping[str, str] = {
    "dispatched": "dispatch",
    "accepted": "accept",
    "started": "start",
    "replied": "reply",
    "closed": "close",
    "rated": "follow_up",
    "returned": "return",
    "extension_requested": "request_extension",
    "extension_approved": "approve_extension",
    "extension_refused": "refuse_extension",
    "supervised": "supervise",
    "merged": "merge",
}


def hotline_actor(name: str | None) -> Actor:
    """The hotline system acts as a service: no role, so the guards decide, not the roles."""
    return Actor(f"12345:{name}"[:64]) if name else REGISTRAR


def apply_hotline_event(conn: Connection, ticket_id: str, event: Mapping[str, Any]) -> TicketChange | None:
    """Apply one lifecycle event from the hotline system; None when ``event_id`` was seen before.

    ``event``: ``event_id``, ``ts``, ``action`` (a key of :data:`EVENT_ACTIONS`) and,
    as the action needs, ``department``, ``district_code``, ``rating``, ``reason``,
    ``note``, ``until``, ``earlier_id``, ``actor``. The event's ``ts`` is the time of the
    transition, so on-time rates count when things happened, not when they arrived.

    Raises :class:`IllegalTransition` or :class:`EntityNotFound` like the console's calls.
    Run it inside a savepoint: two workers applying the same event race on the unique
    ``ticket_events.event_id``, and the loser's savepoint rolls back.
    """
    event_id = str(event["event_id"])
    seen = conn.execute(sa.select(_EVENTS.c.id).where(_EVENTS.c.event_id == event_id)).first()
    if seen is not None:
        return None
    action = EVENT_ACTIONS[event["action"]]
    now: datetime = event["ts"]
    who = hotline_actor(event.get("actor"))
    note = event.get("note")
    reason = event.get("reason") or note or ""
    if action == "dispatch":
        change = dispatch(
            conn,
            ticket_id,
            department=event.get("department") or "",
            district_code=event.get("district_code"),
            actor=who,
            comment=note,
            now=now,
        )
    elif action == "reply":
        change = reply(conn, ticket_id, text=note or "", actor=who, now=now)
    elif action == "follow_up":
        change = follow_up(
            conn, ticket_id, rating=event.get("rating") or "", actor=who, comment=note, now=now
        )
    elif action == "return":
        change = return_ticket(conn, ticket_id, reason=reason, actor=who, now=now)
    elif action == "request_extension":
        change = request_extension(
            conn, ticket_id, until=event.get("until"), reason=reason, actor=who, now=now
        )  # type: ignore[arg-type]
    elif action == "refuse_extension":
        change = refuse_extension(conn, ticket_id, reason=reason, actor=who, now=now)
    elif action == "merge":
        change = merge_into(conn, ticket_id, event.get("earlier_id") or "", actor=who, comment=note, now=now)
    else:
        simple: dict[str, Callable[..., TicketChange]] = {
            "accept": accept,
            "start": start,
            "close": close,
            "approve_extension": approve_extension,
            "supervise": supervise,
        }
        change = simple[action](conn, ticket_id, actor=who, comment=note, now=now)
    conn.execute(sa.update(_EVENTS).where(_EVENTS.c.id == change.event_row_id).values(event_id=event_id))
    return change


# --------------------------------------------------------------------------------------------
# Statistics (what the hotline page shows). Merged orders (重复件) are not counted: the
# order they were merged into stands for them.

UNLOCATED = "未定位"
VolumeBy = Literal["category", "district", "channel", "hour"]


def _period(
    since: datetime, until: datetime | None, district_code: str | None = None
) -> sa.ColumnElement[bool]:
    t = _TICKETS
    period = sa.and_(t.c.ts >= since, t.c.state != S.MERGED, in_district(t.c.district_code, district_code))
    return period if until is None else sa.and_(period, t.c.ts < until)


def _city_hour(conn: Connection) -> sa.ColumnElement[Any]:
    ts = _TICKETS.c.ts
    if conn.dialect.name == "postgresql":
        return sa.cast(
            sa.func.extract("hour", sa.func.timezone("UTC", ts) + sa.text("INTERVAL '8 hours'")), sa.Integer
        )
    return sa.cast(sa.func.strftime("%H", ts, "+8 hours"), sa.Integer)


def volumes(
    conn: Connection,
    since: datetime,
    until: datetime,
    by: VolumeBy = "category",
    *,
    district_code: str | None = None,
) -> dict[str, int]:
    """Orders registered in [since, until) by category, district, channel or hour of day
    (city time, ``"00"`` … ``"23"``, all 24 present). Largest first, except hours in order.
    ``district_code`` counts one district's orders only."""
    t = _TICKETS
    period = _period(since, until, district_code)
    if by == "hour":
        hour = _city_hour(conn).label("k")
        counts = dict(conn.execute(sa.select(hour, sa.func.count()).where(period).group_by(hour)).all())
        return {f"{h:02d}": int(counts.get(h, 0)) for h in range(24)}
    column = {"category": t.c.category, "district": t.c.district_code, "channel": t.c.channel}[by]
    rows = conn.execute(sa.select(column, sa.func.count()).where(period).group_by(column)).all()
    ordered = sorted(
        ((k if k is not None else UNLOCATED, int(n)) for k, n in rows), key=lambda kv: (-kv[1], kv[0])
    )
    return dict(ordered)


@dataclass(frozen=True, slots=True)
class Rate:
    """``on_time`` of ``total`` decided cases; ``rate`` is None when there are none."""

    total: int
    on_time: int

    @property
    def rate(self) -> float | None:
        return None if self.total == 0 else self.on_time / self.total


@dataclass(frozen=True, slots=True)
class OnTimeRates:
    accept: Rate  # 按时签收率
    close: Rate  # 按时办结率


def on_time_rates(
    conn: Connection, since: datetime, until: datetime, *, now: datetime, district_code: str | None = None
) -> OnTimeRates:
    """按时签收率 and 按时办结率 of orders registered in [since, until).

    An order counts once it is decided: the milestone reached, or its deadline passed
    without it (late for sure). Orders still within their deadline are not counted yet.
    """
    t = _TICKETS

    def rate(done: sa.Column[Any], due: sa.Column[Any]) -> Rate:
        decided, met = _decided(done, due, now)
        on_time = sa.case((met, 1), else_=0)
        total, ok = conn.execute(
            sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(on_time), 0)).where(
                _period(since, until, district_code), decided
            )
        ).one()
        return Rate(int(total), int(ok))

    return OnTimeRates(accept=rate(t.c.accepted_at, t.c.accept_due), close=rate(t.c.closed_at, t.c.close_due))


def _decided(
    done: sa.Column[Any], due: sa.Column[Any], now: datetime
) -> tuple[sa.ColumnElement[bool], sa.ColumnElement[bool]]:
    """(decided, met on time) of a milestone ``done`` with deadline ``due``, as of ``now``."""
    happened = sa.and_(done.is_not(None), done <= now)
    return (
        sa.and_(due.is_not(None), sa.or_(happened, due <= now)),
        sa.and_(due.is_not(None), happened, done <= due),
    )


@dataclass(frozen=True, slots=True)
class SatisfactionStats:
    satisfied: int
    basically_satisfied: int
    dissatisfied: int

    @property
    def rated(self) -> int:
        return self.satisfied + self.basically_satisfied + self.dissatisfied

    @property
    def rate(self) -> float | None:
        """满意率: (满意 + 基本满意) / 已评价, the way the hotline reports it."""
        return None if self.rated == 0 else (self.satisfied + self.basically_satisfied) / self.rated


def satisfaction_rate(
    conn: Connection, since: datetime, until: datetime, *, district_code: str | None = None
) -> SatisfactionStats:
    """Ratings of orders registered in [since, until) (of one district with ``district_code``)."""
    t = _TICKETS
    counts = dict(
        conn.execute(
            sa.select(t.c.satisfaction, sa.func.count())
            .where(_period(since, until, district_code), t.c.satisfaction.is_not(None))
            .group_by(t.c.satisfaction)
        ).all()
    )
    return SatisfactionStats(
        satisfied=int(counts.get(Satisfaction.SATISFIED, 0)),
        basically_satisfied=int(counts.get(Satisfaction.BASICALLY_SATISFIED, 0)),
        dissatisfied=int(counts.get(Satisfaction.DISSATISFIED, 0)),
    )


@dataclass(frozen=True, slots=True)
class ServiceRates:
    """The on-time and satisfaction figures of the same orders."""

    on_time: OnTimeRates
    satisfaction: SatisfactionStats


def service_rates(
    conn: Connection, since: datetime, until: datetime, *, now: datetime, district_code: str | None = None
) -> ServiceRates:
    """:func:`on_time_rates` and :func:`satisfaction_rate` of the orders registered in
    [since, until), in one pass over them instead of three."""
    t = _TICKETS

    def count(cond: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
        return sa.func.coalesce(sa.func.sum(sa.case((cond, 1), else_=0)), 0)

    sums: list[sa.ColumnElement[int]] = []
    for done, due in ((t.c.accepted_at, t.c.accept_due), (t.c.closed_at, t.c.close_due)):
        decided, met = _decided(done, due, now)
        sums += [count(decided), count(met)]
    ratings = (Satisfaction.SATISFIED, Satisfaction.BASICALLY_SATISFIED, Satisfaction.DISSATISFIED)
    sums += [count(t.c.satisfaction == rating) for rating in ratings]
    row = conn.execute(sa.select(*sums).where(_period(since, until, district_code))).one()
    accepted, accepted_ok, closed, closed_ok, satisfied, basically, dissatisfied = (int(n) for n in row)
    return ServiceRates(
        on_time=OnTimeRates(accept=Rate(accepted, accepted_ok), close=Rate(closed, closed_ok)),
        satisfaction=SatisfactionStats(satisfied, basically, dissatisfied),
    )


@dataclass(frozen=True, slots=True)
class HotSpot:
    """A grid cell with many orders; ``lon``/``lat`` is the mean of their positions."""

    grid_id: str
    district_code: str | None
    count: int
    top_category: str
    lon: float
    lat: float


def hot_spots(
    conn: Connection,
    since: datetime,
    limit: int = 10,
    *,
    until: datetime | None = None,
    district_code: str | None = None,
) -> list[HotSpot]:
    """The ``limit`` grid cells with the most orders since ``since``; most first."""
    t = _TICKETS
    period = _period(since, until, district_code)
    n = sa.func.count().label("n")
    cells = conn.execute(
        sa.select(t.c.grid_id, n, sa.func.avg(t.c.lon), sa.func.avg(t.c.lat), sa.func.min(t.c.district_code))
        .where(period, t.c.grid_id.is_not(None))
        .group_by(t.c.grid_id)
        .order_by(n.desc(), t.c.grid_id)
        .limit(limit)
    ).all()
    if not cells:
        return []
    per_cell: dict[str, Counter[str]] = {}
    for grid_id, category, count in conn.execute(
        sa.select(t.c.grid_id, t.c.category, sa.func.count())
        .where(period, t.c.grid_id.in_([c[0] for c in cells]))
        .group_by(t.c.grid_id, t.c.category)
    ):
        per_cell.setdefault(grid_id, Counter())[category] = int(count)
    return [
        HotSpot(
            grid_id=g,
            district_code=d,
            count=int(c),
            top_category=min(per_cell[g].items(), key=lambda kv: (-kv[1], kv[0]))[0],
            lon=float(lon),
            lat=float(lat),
        )
        for g, c, lon, lat, d in cells
    ]


@dataclass(frozen=True, slots=True)
class TrendPoint:
    day: date  # city date
    registered: int
    closed: int


def trend(conn: Connection, days: int, *, now: datetime) -> list[TrendPoint]:
    """Orders registered and closed per city day over the last ``days`` days (today included)."""
    today = now.astimezone(CITY_TZ).date()
    first = today - timedelta(days=days - 1)
    start = datetime(first.year, first.month, first.day, tzinfo=CITY_TZ)
    t = _TICKETS
    registered = Counter(
        ts.astimezone(CITY_TZ).date()
        for (ts,) in conn.execute(sa.select(t.c.ts).where(t.c.ts >= start, t.c.state != S.MERGED))
    )
    closed = Counter(
        at.astimezone(CITY_TZ).date()
        for (at,) in conn.execute(sa.select(t.c.closed_at).where(t.c.closed_at >= start))
    )
    out = []
    for i in range(days):
        day = first + timedelta(days=i)
        out.append(TrendPoint(day, registered.get(day, 0), closed.get(day, 0)))
    return out


__all__ = [
    "CATEGORY_DEPARTMENTS",
    "DEADLINE_KINDS",
    "DEFAULT_POLICY",
    "DEPARTMENTS",
    "EVENT_ACTIONS",
    "TICKET_EVENTS",
    "TICKET_LIFECYCLE",
    "DeadlineFlag",
    "DeadlinePolicy",
    "Deadlines",
    "DispatchSuggestion",
    "ExtensionState",
    "HotSpot",
    "OnTimeRates",
    "Rate",
    "RepeatMatch",
    "Satisfaction",
    "SatisfactionStats",
    "ServiceRates",
    "TicketChange",
    "TicketEventView",
    "TicketState",
    "TicketView",
    "TrendPoint",
    "accept",
    "apply_hotline_event",
    "approve_extension",
    "close",
    "deadline_alert_key",
    "dispatch",
    "due_soon",
    "find_repeats",
    "follow_up",
    "get_ticket",
    "hot_spots",
    "load_policy",
    "mask_name",
    "mask_phone",
    "merge_into",
    "on_time_rates",
    "overdue",
    "parse_rating",
    "raise_deadline_alerts",
    "refuse_extension",
    "register_new",
    "reply",
    "request_extension",
    "return_ticket",
    "satisfaction_rate",
    "service_rates",
    "start",
    "suggest_dispatch",
    "supervise",
    "ticket_history",
    "trend",
    "volumes",
]


# --------------------------------------------------------------------------------------------
# Reads for the hotline page: the newest orders, what is open, and which orders repeat.


def recent_tickets(
    conn: Connection, limit: int = 30, *, district_code: str | None = None
) -> list[TicketView]:
    """The ``limit`` newest orders by call time, newest first (callers masked)."""
    t = _TICKETS
    rows = conn.execute(
        sa.select(t)
        .where(in_district(t.c.district_code, district_code))
        .order_by(t.c.ts.desc(), t.c.ticket_id.desc())
        .limit(limit)
    ).mappings()
    return [TicketView.from_row(r) for r in rows]


def open_count(conn: Connection, *, district_code: str | None = None) -> int:
    """Orders not closed yet (在办), whenever they were registered."""
    t = _TICKETS
    query = sa.select(sa.func.count()).where(
        t.c.state.in_(sorted(OPEN_STATES)), in_district(t.c.district_code, district_code)
    )
    return int(conn.execute(query).scalar_one())


@dataclass(frozen=True, slots=True)
class RepeatLink:
    """An order that repeats an earlier one: merged into it (``confirmed``, 重复件) or
    flagged at registration as a likely repeat, not merged yet."""

    ticket_id: str
    ts: datetime
    earlier: str
    confirmed: bool
    category: str
    district_code: str | None
    grid_id: str | None


def repeat_links(conn: Connection, since: datetime, *, district_code: str | None = None) -> list[RepeatLink]:
    """Orders registered since ``since`` that repeat an earlier order, oldest first."""
    t = _TICKETS
    earlier = sa.func.coalesce(t.c.repeat_of, t.c.likely_repeat_of)
    rows = conn.execute(
        sa.select(
            t.c.ticket_id,
            t.c.ts,
            earlier.label("earlier"),
            t.c.repeat_of,
            t.c.category,
            t.c.district_code,
            t.c.grid_id,
        )
        .where(t.c.ts >= since, earlier.is_not(None), in_district(t.c.district_code, district_code))
        .order_by(t.c.ts, t.c.ticket_id)
    ).all()
    return [
        RepeatLink(
            r.ticket_id, r.ts, r.earlier, r.repeat_of is not None, r.category, r.district_code, r.grid_id
        )
        for r in rows
    ]


__all__ += ["RepeatLink", "open_count", "recent_tickets", "repeat_links"]


# --------------------------------------------------------------------------------------------
# Reads for the vital signs (overview, district pages, wall): the 12345 figures per district.


@dataclass(frozen=True, slots=True)
class DistrictTickets:
    """One district's orders: registered in the period, open and overdue now, and the
    ratings of the period's orders."""

    registered: int = 0
    open: int = 0
    overdue: int = 0
    satisfaction: SatisfactionStats = SatisfactionStats(0, 0, 0)


def district_counts(
    conn: Connection, since: datetime, until: datetime, *, now: datetime, district_code: str | None = None
) -> dict[str, DistrictTickets]:
    """Per district code (:data:`UNLOCATED` for orders without one), every district with
    any figure. Overdue means what :func:`overdue` means (a deadline still owed has
    passed), counted once per order however many deadlines it missed. ``district_code``
    keeps that district only."""
    t = _TICKETS
    key = t.c.district_code
    mine = in_district(key, district_code)
    late = sa.or_(
        *(sa.and_(t.c[k.column] <= now, t.c.state.in_(sorted(k.pending_states))) for k in DEADLINE_KINDS)
    )
    is_late = sa.func.coalesce(sa.func.sum(sa.case((late, 1), else_=0)), 0)
    registered = dict(
        conn.execute(
            sa.select(key, sa.func.count()).where(_period(since, until, district_code)).group_by(key)
        ).all()
    )
    open_rows = conn.execute(
        sa.select(key, sa.func.count(), is_late).where(t.c.state.in_(sorted(OPEN_STATES)), mine).group_by(key)
    ).all()
    ratings: dict[str | None, Counter[str]] = {}
    for code, rating, n in conn.execute(
        sa.select(key, t.c.satisfaction, sa.func.count())
        .where(_period(since, until, district_code), t.c.satisfaction.is_not(None))
        .group_by(key, t.c.satisfaction)
    ):
        ratings.setdefault(code, Counter())[rating] = int(n)
    open_counts = {code: (int(n), int(overdue)) for code, n, overdue in open_rows}
    out: dict[str, DistrictTickets] = {}
    for code in {*registered, *open_counts, *ratings}:
        rated = ratings.get(code, Counter())
        n_open, n_late = open_counts.get(code, (0, 0))
        out[code if code is not None else UNLOCATED] = DistrictTickets(
            registered=int(registered.get(code, 0)),
            open=n_open,
            overdue=n_late,
            satisfaction=SatisfactionStats(
                satisfied=rated[Satisfaction.SATISFIED],
                basically_satisfied=rated[Satisfaction.BASICALLY_SATISFIED],
                dissatisfied=rated[Satisfaction.DISSATISFIED],
            ),
        )
    return dict(sorted(out.items()))


__all__ += ["DistrictTickets", "district_counts"]
