"""Digital urban-management cases (案卷, GB/T 30428): lifecycle, case types, video cases,
deadlines, indicators.

::

    reported 信息收集 ──file──► filed 立案 ──dispatch──► dispatched 派遣 ──start──► handling 处置
        │                          ▲                       │  ▲                    │   ▲  │
      refuse                       └──return (回退)─────────┴──┼────────────────────┘   │  extend (延期:
        ▼                                                    │                        │  new 处置 deadline,
    not_filed 不予立案                 parked 挂账 ◄──park──────┴────────────────────────┘  state unchanged)
                                         └──resume──► dispatched (a fresh 处置 window)
    handling ──report_back──► reported_back 反馈 ──verify_close──► verified_closed 核查结案
                                 └──rework (核查不通过, 返工)──► handling
    verified_closed ──evaluate──► evaluated 综合评价

States are where a case waits for someone; 延期, 回退 and 返工 are things that happen to
it, so they are actions with a count on the row (``extension_count``, ``return_count``,
``rework_count``) and an event in ``case_events``, not states. 挂账 is a state: a parked
case waits for something outside the workflow (funds, another authority), and its
deadlines stop counting, which a flag could not express as cleanly.

Every transition goes through :func:`models.lifecycle.apply_transition` (compare-and-set,
event row, audit entry). Deadlines come from the case type (:data:`CASE_TYPES`): the 处置
deadline (``due_at``) counts from 派遣, the 结案 deadline (``close_due``) from 立案.

Video analytics events become cases through :func:`cases_from_video`: the same camera and
event type within a window add evidence to the open case instead of opening another.
"""

from __future__ import annotations

import enum
import functools
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any, Literal, TypeVar

import sqlalchemy as sa
from shapely.geometry import Point
from sqlalchemy.engine import Connection

from models import lifecycle as lc
from models.clock import CITY_TZ
from models.lifecycle import Actor, EntityNotFound, IllegalTransition, Lifecycle, Refusal, State
from models.schema import SRID, Case, CaseEvent, CaseSource
from models.scope import in_district
from models.spatial import bounding_box, great_circle_m
from models.tickets import FALLBACK_DEPARTMENT, HANDLER_ROLES, Rate

# --------------------------------------------------------------------------------------------
# States


class CaseState(enum.StrEnum):
    REPORTED = "reported"
    FILED = "filed"
    DISPATCHED = "dispatched"
    HANDLING = "handling"
    REPORTED_BACK = "reported_back"
    VERIFIED_CLOSED = "verified_closed"
    EVALUATED = "evaluated"
    PARKED = "parked"
    NOT_FILED = "not_filed"

    @property
    def label_zh(self) -> str:
        return CASE_LIFECYCLE.state(self.value).label_zh


class Evaluation(enum.StrEnum):
    """综合评价 of how a case was handled."""

    GOOD = "good"
    FAIR = "fair"
    POOR = "poor"

    @property
    def label_zh(self) -> str:
        return _EVALUATION_ZH[self]


_EVALUATION_ZH = {Evaluation.GOOD: "好", Evaluation.FAIR: "中", Evaluation.POOR: "差"}

S = CaseState
#: Cases somebody still works on (evidence joins them; the 结案 deadline runs while filed).
OPEN_STATES = frozenset({S.REPORTED, S.FILED, S.DISPATCHED, S.HANDLING, S.REPORTED_BACK, S.PARKED})
#: The 处置 deadline runs (挂账 stops it).
AWAITING_HANDLING = frozenset({S.DISPATCHED, S.HANDLING})
#: The 结案 deadline runs.
AWAITING_CLOSE = frozenset({S.FILED, S.DISPATCHED, S.HANDLING, S.REPORTED_BACK})

ENTITY_TYPE = "case"
_CASES = Case.__table__
_EVENTS = CaseEvent.__table__
CASE_EVENTS = lc.EventLog(_EVENTS, "case_id")


# --------------------------------------------------------------------------------------------
# Case types


@dataclass(frozen=True, slots=True)
class CaseType:
    """What a kind of case is (GB/T 30428.2 class and subclass), who handles it, how fast.

    ``handle``: from 派遣 to 反馈 (处置时限); ``close``: from 立案 to 核查结案 (结案时限).
    """

    key: str
    kind_zh: Literal["事件", "部件"]
    category: str
    subcategory: str
    department: str
    handle: timedelta
    close: timedelta

    def __post_init__(self) -> None:
        if not timedelta(0) < self.handle <= self.close:
            raise ValueError(f"case type {self.key}: need 0 < handle ≤ close, got {self}")


def _type(
    key: str, kind: Literal["事件", "部件"], cat: str, sub: str, dept: str, handle_h: float, close_h: float
) -> CaseType:
    return CaseType(key, kind, cat, sub, dept, timedelta(hours=handle_h), timedelta(hours=close_h))


#: The case types the city works; video event types of the same name open cases (see
#: :data:`VIDEO_CASE_TYPES`). The hours are this city's choice (GB/T 30428 leaves them to
#: each city): things in the way of traffic or pedestrians fast, repairs slower.
CASE_TYPES: Mapping[str, CaseType] = MappingProxyType(
    {
        t.key: t
        for t in (
            _type("illegal_parking", "事件", "街面秩序", "违章停车", "公安", 2, 24),
            _type("street_vending", "事件", "街面秩序", "占道经营", "城管", 4, 24),
            _type("garbage_overflow", "事件", "市容环境", "垃圾满溢", "城管", 4, 24),
            _type("waterlogging", "事件", "突发事件", "道路积水", "水务", 4, 48),
            _type("fallen_tree", "部件", "园林绿化", "树木倒伏", "城管", 8, 48),
            _type("road_damage", "部件", "道路交通", "道路破损", "交通", 72, 168),
        )
    }
)

#: Reports whose type is not in the table (an inspector's free category): the street
#: office handles them, in the slowest common time.
OTHER = CaseType(
    "other", "事件", "其他", "其他", FALLBACK_DEPARTMENT, timedelta(hours=72), timedelta(hours=168)
)


def case_type(key: str | None) -> CaseType:
    return CASE_TYPES.get(key or "", OTHER)


@dataclass(frozen=True, slots=True)
class VideoCaseRule:
    """Which video event types open cases, how sure the camera must be, and the
    de-duplication window. Crowds and smoke are left out: those are emergencies and go to
    the alerts, not the urban-management workflow."""

    case_types: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({k: k for k in CASE_TYPES})
    )
    min_confidence: float = 0.6
    window: timedelta = timedelta(minutes=10)


DEFAULT_VIDEO_RULE = VideoCaseRule()
#: Video event type → case type key.
VIDEO_CASE_TYPES: Mapping[str, str] = DEFAULT_VIDEO_RULE.case_types


# --------------------------------------------------------------------------------------------
# Guards and lifecycle


def _valid_evaluation(row: Mapping[str, Any], ctx: lc.TransitionContext) -> Refusal | None:
    grade = str(ctx.params.get("grade") or "")
    if grade not in {e.value for e in Evaluation} and grade not in _EVALUATION_ZH.values():
        return Refusal(zh="综合评价须为 好、中 或 差", en="an evaluation must be good, fair or poor")
    return None


def _extension_later(row: Mapping[str, Any], ctx: lc.TransitionContext) -> Refusal | None:
    until = ctx.params.get("until")
    if not str(ctx.params.get("reason") or "").strip():
        return Refusal(zh="延期须说明理由", en="an extension needs a reason")
    current = row["due_at"] or ctx.now
    if not isinstance(until, datetime) or until <= max(current, ctx.now):
        return Refusal(
            zh=f"延期后的处置时限须晚于当前时限 {current.astimezone(CITY_TZ):%m-%d %H:%M}",
            en=f"the extended handling deadline must be later than {current.isoformat()}",
        )
    return None


#: Case actions are for those who handle cases.
_action = functools.partial(lc.action, roles=HANDLER_ROLES)


CASE_LIFECYCLE = Lifecycle(
    name=ENTITY_TYPE,
    noun_zh="案卷",
    states={
        S.REPORTED: State(S.REPORTED, "信息收集"),
        S.FILED: State(S.FILED, "立案", "立案"),
        S.DISPATCHED: State(S.DISPATCHED, "派遣", "派遣"),
        S.HANDLING: State(S.HANDLING, "处置", "开始处置"),
        S.REPORTED_BACK: State(S.REPORTED_BACK, "反馈", "反馈"),
        S.VERIFIED_CLOSED: State(S.VERIFIED_CLOSED, "核查结案", "核查结案"),
        S.EVALUATED: State(S.EVALUATED, "综合评价", "评价"),
        S.PARKED: State(S.PARKED, "挂账", "挂账"),
        S.NOT_FILED: State(S.NOT_FILED, "不予立案", "不予立案"),
    },
    actions={
        a.name: a
        for a in (
            _action("file", {S.REPORTED}, S.FILED, "立案"),
            _action(
                "refuse",
                {S.REPORTED},
                S.NOT_FILED,
                "不予立案",
                lc.requires_text("reason", "不予立案须说明理由", "refusing needs a reason"),
            ),
            _action(
                "dispatch",
                {S.FILED},
                S.DISPATCHED,
                "派遣",
                lc.requires_text("department", "派遣须指定处置部门", "dispatch needs a department"),
            ),
            _action("start", {S.DISPATCHED}, S.HANDLING, "开始处置"),
            _action(
                "report_back",
                {S.HANDLING},
                S.REPORTED_BACK,
                "反馈",
                lc.requires_text("text", "反馈须填写处置结果", "a report back needs its text"),
            ),
            _action("verify_close", {S.REPORTED_BACK}, S.VERIFIED_CLOSED, "核查结案"),
            _action(
                "rework",
                {S.REPORTED_BACK},
                S.HANDLING,
                "返工",
                lc.requires_text("reason", "核查不通过须说明理由", "rework needs a reason"),
            ),
            _action("evaluate", {S.VERIFIED_CLOSED}, S.EVALUATED, "综合评价", _valid_evaluation),
            _action("extend", {S.HANDLING}, S.HANDLING, "延期", _extension_later),
            _action(
                "return",
                {S.DISPATCHED, S.HANDLING},
                S.FILED,
                "回退",
                lc.requires_text("reason", "回退须说明理由", "returning needs a reason"),
            ),
            _action(
                "park",
                {S.DISPATCHED, S.HANDLING},
                S.PARKED,
                "挂账",
                lc.requires_text("reason", "挂账须说明理由", "parking needs a reason"),
            ),
            _action("resume", {S.PARKED}, S.DISPATCHED, "恢复处置"),
        )
    },
)


# --------------------------------------------------------------------------------------------
# Views


@dataclass(frozen=True, slots=True)
class CaseView:
    case_id: str
    source: str
    source_ref: str | None
    case_type: str | None
    category: str
    subcategory: str | None
    description: str | None
    state: str
    department: str | None
    district_code: str | None
    grid_id: str | None
    lon: float | None
    lat: float | None
    reporter: str | None
    reported_at: datetime
    filed_at: datetime | None
    dispatched_at: datetime | None
    handling_at: datetime | None
    reported_back_at: datetime | None
    closed_at: datetime | None
    evaluated_at: datetime | None
    due_at: datetime | None
    close_due: datetime | None
    evaluation: str | None
    extension_count: int
    return_count: int
    rework_count: int
    evidence_count: int
    last_evidence_at: datetime | None
    version: int

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> CaseView:
        return cls(**{f: row[f] for f in cls.__dataclass_fields__})

    @property
    def state_label_zh(self) -> str:
        return CASE_LIFECYCLE.state(self.state).label_zh

    def overdue_kinds(self, now: datetime) -> list[str]:
        """``handle`` (处置超时) and/or ``close`` (结案超时), when owed and passed."""
        kinds = []
        if self.state in AWAITING_HANDLING and self.due_at is not None and self.due_at <= now:
            kinds.append("handle")
        if self.state in AWAITING_CLOSE and self.close_due is not None and self.close_due <= now:
            kinds.append("close")
        return kinds


@dataclass(frozen=True, slots=True)
class CaseChange:
    """A transition that happened; ``case`` is the case afterwards."""

    action: str
    case: CaseView
    from_state: str | None
    actor: str
    at: datetime
    comment: str | None = None
    event_row_id: int | None = None


def get_case(conn: Connection, case_id: str) -> CaseView | None:
    row = conn.execute(sa.select(_CASES).where(_CASES.c.case_id == case_id)).mappings().first()
    return None if row is None else CaseView.from_row(row)


@dataclass(frozen=True, slots=True)
class CaseEventView:
    id: int
    event_id: str | None
    ts: datetime
    action: str
    from_state: str | None
    to_state: str | None
    actor: str | None
    comment: str | None
    payload: dict[str, Any] | None


def case_history(conn: Connection, case_id: str) -> list[CaseEventView]:
    rows = conn.execute(
        sa.select(*(_EVENTS.c[f] for f in CaseEventView.__dataclass_fields__))
        .where(_EVENTS.c.case_id == case_id)
        .order_by(_EVENTS.c.ts, _EVENTS.c.id)
    ).all()
    return [CaseEventView(*r) for r in rows]


def case_evidence(conn: Connection, case_id: str) -> list[dict[str, Any]]:
    """Every piece of evidence (snapshots, photos) in the order it arrived."""
    return [
        e.payload["evidence"]
        for e in case_history(conn, case_id)
        if e.action in ("report", "evidence") and e.payload and e.payload.get("evidence")
    ]


# --------------------------------------------------------------------------------------------
# 信息收集


def new_case_id(now: datetime) -> str:
    """AJ + city date + random: readable by day, unique across workers without a sequence."""
    return f"AJ{now.astimezone(CITY_TZ):%Y%m%d}{uuid.uuid4().hex[:10].upper()}"


def report_case(
    conn: Connection,
    *,
    source: CaseSource | str,
    category: str,
    description: str | None,
    lon: float | None,
    lat: float | None,
    reporter: str | None,
    evidence: Mapping[str, Any] | None = None,
    now: datetime,
    source_ref: str | None = None,
    event_id: str | None = None,
    address: str | None = None,
    case_id: str | None = None,
) -> CaseView:
    """Collect a case (信息收集): a grid inspector's report, a video sighting or a ticket.

    ``category`` is a case-type key (:data:`CASE_TYPES`); anything else is kept as the
    subcategory of an :data:`OTHER` case. The place is located like every other record
    (district and grid cell); ``event_id`` ties the first history row to what caused it.
    ``case_id`` is for callers that must name the case before it exists (a ticket's
    dispatch event names the case it becomes); by default a new id is made.
    """
    from geo.locate import locate_point

    source = CaseSource(source)
    kind = CASE_TYPES.get(category)
    district_code, grid_id = (None, None) if lon is None or lat is None else locate_point(lon, lat)
    case_id = case_id or new_case_id(now)
    row: dict[str, Any] = {
        "case_id": case_id,
        "source": source.value,
        "source_ref": source_ref,
        "case_type": kind.key if kind else OTHER.key,
        "category": (kind or OTHER).category,
        "subcategory": kind.subcategory if kind else category,
        "description": description,
        "state": S.REPORTED.value,
        "district_code": district_code,
        "grid_id": grid_id,
        "lon": lon,
        "lat": lat,
        "geom": None if lon is None or lat is None else Point(lon, lat),
        "reporter": reporter,
        "reported_at": now,
        "last_evidence_at": now,
        "evidence_count": 1 if evidence else 0,
        "updated_at": now,
        "props": {},
        "version": 1,
    }
    conn.execute(sa.insert(_CASES), row)
    event_row = lc.record_event(
        conn,
        lifecycle=CASE_LIFECYCLE,
        event_log=CASE_EVENTS,
        entity_id=case_id,
        action="report",
        from_state=None,
        to_state=S.REPORTED,
        actor=reporter or source.value,
        address=address,
        comment=description,
        payload={"source": source.value, "evidence": dict(evidence) if evidence else None},
        before=None,
        after={"state": S.REPORTED, "case_type": row["case_type"], "district_code": district_code},
        now=now,
    )
    if event_id is not None:
        conn.execute(sa.update(_EVENTS).where(_EVENTS.c.id == event_row).values(event_id=event_id))
    view = get_case(conn, case_id)
    assert view is not None
    return view


# --------------------------------------------------------------------------------------------
# Transitions


def _transition(
    conn: Connection,
    case_id: str,
    action: str,
    *,
    actor: Actor | str,
    address: str | None,
    comment: str | None,
    now: datetime,
    changes: Mapping[str, Any] | Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None,
    params: Mapping[str, Any] | None = None,
    payload: Mapping[str, Any] | None = None,
) -> CaseChange:
    def values(row: Mapping[str, Any]) -> dict[str, Any]:
        extra = changes(row) if callable(changes) else (changes or {})
        return {"updated_at": now, **extra}

    moved = lc.apply_transition(
        conn,
        table=_CASES,
        id_column="case_id",
        entity_id=case_id,
        lifecycle=CASE_LIFECYCLE,
        action=action,
        actor=actor,
        address=address,
        comment=comment,
        changes=values,
        event_table=CASE_EVENTS,
        now=now,
        params=params,
        payload=payload,
    )
    return CaseChange(
        action=action,
        case=CaseView.from_row(moved.after),
        from_state=moved.from_state,
        actor=moved.actor,
        at=now,
        comment=comment,
        event_row_id=moved.event_id,
    )


def file_case(
    conn: Connection,
    case_id: str,
    *,
    actor: Actor | str,
    address: str | None = None,
    comment: str | None = None,
    now: datetime,
) -> CaseChange:
    """立案: the case is accepted as the city's to handle; the 结案 deadline starts."""
    return _transition(
        conn,
        case_id,
        "file",
        actor=actor,
        address=address,
        comment=comment,
        now=now,
        changes=lambda row: {"filed_at": now, "close_due": now + case_type(row["case_type"]).close},
    )


def refuse_case(
    conn: Connection,
    case_id: str,
    *,
    reason: str,
    actor: Actor | str,
    address: str | None = None,
    now: datetime,
) -> CaseChange:
    """不予立案: not the city's to handle, or not a real problem (a false video sighting)."""
    return _transition(
        conn,
        case_id,
        "refuse",
        actor=actor,
        address=address,
        comment=reason,
        now=now,
        params={"reason": reason},
    )


def dispatch_case(
    conn: Connection,
    case_id: str,
    *,
    department: str | None = None,
    actor: Actor | str,
    address: str | None = None,
    comment: str | None = None,
    now: datetime,
) -> CaseChange:
    """派遣 to ``department`` (default: the case type's); the 处置 deadline starts now, also
    after a 回退, because the new department gets its own full time."""
    row = conn.execute(sa.select(_CASES.c.case_type).where(_CASES.c.case_id == case_id)).first()
    if row is None:
        raise EntityNotFound(CASE_LIFECYCLE, case_id)
    kind = case_type(row.case_type)
    target = (department or kind.department).strip()
    return _transition(
        conn,
        case_id,
        "dispatch",
        actor=actor,
        address=address,
        comment=comment,
        now=now,
        changes={"department": target, "dispatched_at": now, "due_at": now + kind.handle},
        params={"department": target},
        payload={"department": target},
    )


def start_handling(
    conn: Connection,
    case_id: str,
    *,
    actor: Actor | str,
    address: str | None = None,
    comment: str | None = None,
    now: datetime,
) -> CaseChange:
    """处置: the department has started work."""
    return _transition(
        conn,
        case_id,
        "start",
        actor=actor,
        address=address,
        comment=comment,
        now=now,
        changes={"handling_at": now},
    )


def report_back(
    conn: Connection,
    case_id: str,
    *,
    text: str,
    actor: Actor | str,
    address: str | None = None,
    now: datetime,
) -> CaseChange:
    """反馈: the department says the problem is dealt with; ``text`` is what it did."""
    return _transition(
        conn,
        case_id,
        "report_back",
        actor=actor,
        address=address,
        comment=text,
        now=now,
        changes={"reported_back_at": now},
        params={"text": text},
    )


def verify_close(
    conn: Connection,
    case_id: str,
    *,
    actor: Actor | str,
    address: str | None = None,
    comment: str | None = None,
    now: datetime,
) -> CaseChange:
    """核查结案: an inspector has checked on site that the problem is gone."""
    return _transition(
        conn,
        case_id,
        "verify_close",
        actor=actor,
        address=address,
        comment=comment,
        now=now,
        changes={"closed_at": now},
    )


def rework(
    conn: Connection,
    case_id: str,
    *,
    reason: str,
    actor: Actor | str,
    address: str | None = None,
    now: datetime,
) -> CaseChange:
    """核查不通过: back to the department (返工). Counted for 返工率; the 处置 deadline stays:
    work that did not hold is not given new time."""
    return _transition(
        conn,
        case_id,
        "rework",
        actor=actor,
        address=address,
        comment=reason,
        now=now,
        changes=lambda row: {"rework_count": row["rework_count"] + 1},
        params={"reason": reason},
    )


def evaluate(
    conn: Connection,
    case_id: str,
    *,
    grade: Evaluation | str,
    actor: Actor | str,
    address: str | None = None,
    comment: str | None = None,
    now: datetime,
) -> CaseChange:
    """综合评价: 好 / 中 / 差 (the code or the Chinese label)."""
    text = str(grade)
    code = next((e.value for e, zh in _EVALUATION_ZH.items() if text in (e.value, zh)), text)
    return _transition(
        conn,
        case_id,
        "evaluate",
        actor=actor,
        address=address,
        comment=comment,
        now=now,
        changes={"evaluation": code, "evaluated_at": now},
        params={"grade": code},
    )


def extend(
    conn: Connection,
    case_id: str,
    *,
    until: datetime,
    reason: str,
    actor: Actor | str,
    address: str | None = None,
    now: datetime,
) -> CaseChange:
    """延期: a later 处置 deadline, with a reason; the case stays in 处置."""
    return _transition(
        conn,
        case_id,
        "extend",
        actor=actor,
        address=address,
        comment=reason,
        now=now,
        changes=lambda row: {"due_at": until, "extension_count": row["extension_count"] + 1},
        params={"until": until, "reason": reason},
        payload={"until": until},
    )


def return_case(
    conn: Connection,
    case_id: str,
    *,
    reason: str,
    actor: Actor | str,
    address: str | None = None,
    now: datetime,
) -> CaseChange:
    """回退: the department says the case is not theirs; it goes back to be dispatched again."""
    return _transition(
        conn,
        case_id,
        "return",
        actor=actor,
        address=address,
        comment=reason,
        now=now,
        changes=lambda row: {"return_count": row["return_count"] + 1, "department": None, "due_at": None},
        params={"reason": reason},
    )


def park(
    conn: Connection,
    case_id: str,
    *,
    reason: str,
    actor: Actor | str,
    address: str | None = None,
    now: datetime,
) -> CaseChange:
    """挂账: cannot be dealt with now (funds, another authority); the 处置 deadline stops."""
    return _transition(
        conn,
        case_id,
        "park",
        actor=actor,
        address=address,
        comment=reason,
        now=now,
        params={"reason": reason},
    )


def resume(
    conn: Connection,
    case_id: str,
    *,
    actor: Actor | str,
    address: str | None = None,
    comment: str | None = None,
    now: datetime,
) -> CaseChange:
    """恢复处置 of a parked case: back to its department with a fresh 处置 window."""
    return _transition(
        conn,
        case_id,
        "resume",
        actor=actor,
        address=address,
        comment=comment,
        now=now,
        changes=lambda row: {"due_at": now + case_type(row["case_type"]).handle, "dispatched_at": now},
    )


# --------------------------------------------------------------------------------------------
# 12345 tickets → cases


#: 12345 categories that are urban management (GB/T 30428 事件/部件) → case type. A ticket
#: of one of these can become a case; anything else stays a work order for its department.
TICKET_CASE_TYPES: Mapping[str, str] = MappingProxyType(
    {
        "占道经营": "street_vending",
        "垃圾清运": "garbage_overflow",
        "道路破损": "road_damage",
        "道路积水": "waterlogging",
        "积水内涝": "waterlogging",
        "违章停车": "illegal_parking",
        "树木倒伏": "fallen_tree",
    }
)


def case_of_ticket(conn: Connection, ticket_id: str) -> str | None:
    """The case a 12345 ticket became, if it did."""
    c = _CASES.c
    return conn.execute(
        sa.select(c.case_id)
        .where(c.source == CaseSource.HOTLINE.value, c.source_ref == ticket_id)
        .order_by(c.reported_at)
        .limit(1)
    ).scalar_one_or_none()


def case_from_ticket(
    conn: Connection,
    ticket_id: str,
    *,
    actor: Actor | str,
    now: datetime,
    address: str | None = None,
    comment: str | None = None,
) -> CaseChange:
    """Turn a 12345 ticket of an urban-management category into a case (转数字城管案件).

    Both lifecycles' own checks apply: the ticket is dispatched (派单, allowed from 已受理
    and 已退单) to the case type's department, its dispatch event naming the case; the case
    is collected (信息收集, source ``hotline``, ``source_ref`` the ticket) with the ticket in
    its first event. Of two operators converting at once, one wins; the other is told who
    dispatched the ticket. Refused (:class:`IllegalTransition`) for a category outside
    :data:`TICKET_CASE_TYPES` or a ticket that already became a case. Caller data stays
    on the ticket.
    """
    from models import tickets

    row = (
        conn.execute(
            sa.select(
                tickets._TICKETS.c.ticket_id,
                tickets._TICKETS.c.category,
                tickets._TICKETS.c.title,
                tickets._TICKETS.c.content,
                tickets._TICKETS.c.lon,
                tickets._TICKETS.c.lat,
                tickets._TICKETS.c.state,
            ).where(tickets._TICKETS.c.ticket_id == ticket_id)
        )
        .mappings()
        .first()
    )
    if row is None:
        raise EntityNotFound(tickets.TICKET_LIFECYCLE, ticket_id)
    kind_key = TICKET_CASE_TYPES.get(row["category"])
    existing = case_of_ticket(conn, ticket_id)
    refusal = None
    if kind_key is None:
        refusal = Refusal(
            zh=f"工单 {ticket_id} 的类别「{row['category']}」不属于城市管理，不能转为案卷",
            en=f"ticket {ticket_id} is {row['category']!r}, not an urban-management category",
        )
    elif existing is not None:
        refusal = Refusal(
            zh=f"工单 {ticket_id} 已转为案卷 {existing}",
            en=f"ticket {ticket_id} already became case {existing}",
        )
    if refusal is not None:
        raise IllegalTransition(
            entity_type=tickets.ENTITY_TYPE,
            entity_id=ticket_id,
            action="to_case",
            state=row["state"],
            reason=refusal,
        )
    assert kind_key is not None
    kind = case_type(kind_key)
    case_id = new_case_id(now)
    who = Actor.of(actor)
    tickets.dispatch(
        conn,
        ticket_id,
        department=kind.department,
        actor=who,
        address=address,
        comment=comment or f"转为城市管理案卷 {case_id}",
        now=now,
        link={"case_id": case_id},
    )
    view = report_case(
        conn,
        source=CaseSource.HOTLINE,
        category=kind_key,
        description=f"12345工单 {ticket_id}：{row['title']}。{row['content']}",
        lon=row["lon"],
        lat=row["lat"],
        reporter=who.username,
        evidence={"ticket_id": ticket_id},
        now=now,
        source_ref=ticket_id,
        address=address,
        case_id=case_id,
    )
    return CaseChange("report", view, None, who.username, now, comment)


# --------------------------------------------------------------------------------------------
# Video events


VIDEO_ACTOR = Actor("video")


def _lock_video_keys(conn: Connection, keys: Iterable[tuple[str, str]]) -> None:
    """Serialise workers on the same (camera, case type) until this transaction ends.

    Sliding-window de-duplication cannot be a unique constraint (the window moves with
    each sighting), so on PostgreSQL a worker takes a transaction-scoped advisory lock per
    camera and type before it looks for the open case: a second worker waits for the
    first to commit, then finds its case and adds evidence. The locks are taken in sorted
    order, so two workers with overlapping batches cannot deadlock. SQLite needs nothing:
    its transactions take the write lock up front (models.db).
    """
    if conn.dialect.name != "postgresql":
        return
    for camera, kind in sorted(set(keys)):
        conn.execute(
            sa.select(
                sa.func.pg_advisory_xact_lock(sa.func.hashtextextended(f"video_case:{camera}:{kind}", 0))
            )
        )


def cases_from_video(
    conn: Connection,
    video_rows: Sequence[Mapping[str, Any]],
    now: datetime,
    window: timedelta | None = None,
    *,
    rule: VideoCaseRule = DEFAULT_VIDEO_RULE,
) -> list[CaseChange]:
    """Open cases for case-worthy video events, or add them as evidence.

    An event of a type in ``rule.case_types`` with confidence ≥ ``rule.min_confidence``
    joins the open case of the same camera and type whose last sighting is within
    ``window`` (default ``rule.window``) of it: a car parked for an hour is one case with
    many snapshots, not six cases. The window slides with each sighting. Otherwise it opens
    a case (信息收集). Events seen before (``case_events.event_id``) are skipped, so a
    replayed batch changes nothing. Returns one ``report`` or ``evidence`` change per event
    used, in time order. Workers running this at once on PostgreSQL are serialised per
    camera and case type (:func:`_lock_video_keys`), so they open one case between them.
    """
    window = rule.window if window is None else window
    changes: list[CaseChange] = []
    worthy = [
        r
        for r in video_rows
        if r["type"] in rule.case_types and float(r["confidence"]) >= rule.min_confidence
    ]
    _lock_video_keys(conn, ((str(r["camera_id"]), rule.case_types[r["type"]]) for r in worthy))
    for row in sorted(worthy, key=lambda r: (r["ts"], r["event_id"])):
        event_id = str(row["event_id"])
        if conn.execute(sa.select(_EVENTS.c.id).where(_EVENTS.c.event_id == event_id)).first() is not None:
            continue
        kind = rule.case_types[row["type"]]
        ts: datetime = row["ts"]
        evidence = {
            "event_id": event_id,
            "camera_id": row["camera_id"],
            "ts": ts,
            "type": row["type"],
            "confidence": float(row["confidence"]),
            "snapshot_url": row.get("snapshot_url"),
        }
        c = _CASES.c
        open_case = conn.execute(
            sa.select(c.case_id, c.state, c.last_evidence_at)
            .where(
                c.source == CaseSource.VIDEO.value,
                c.source_ref == row["camera_id"],
                c.case_type == kind,
                c.state.in_(sorted(OPEN_STATES)),
                c.last_evidence_at >= ts - window,
                c.last_evidence_at <= ts + window,
            )
            .order_by(c.last_evidence_at.desc())
            .limit(1)
        ).first()
        if open_case is None:
            view = report_case(
                conn,
                source=CaseSource.VIDEO,
                category=kind,
                description=f"视频识别：{case_type(kind).subcategory}（{row['camera_id']}）",
                lon=row.get("lon"),
                lat=row.get("lat"),
                reporter=VIDEO_ACTOR.username,
                evidence=evidence,
                now=ts,
                source_ref=str(row["camera_id"]),
                event_id=event_id,
            )
            changes.append(CaseChange("report", view, None, VIDEO_ACTOR.username, ts))
            continue
        last = max(open_case.last_evidence_at, ts)
        # The version moves too: a transition that read the row before this evidence
        # re-reads it, as with alerts' occurrences.
        conn.execute(
            sa.update(_CASES)
            .where(c.case_id == open_case.case_id)
            .values(
                evidence_count=c.evidence_count + 1,
                last_evidence_at=last,
                version=c.version + 1,
                updated_at=now,
            )
        )
        event_row = lc.record_event(
            conn,
            lifecycle=CASE_LIFECYCLE,
            event_log=CASE_EVENTS,
            entity_id=open_case.case_id,
            action="evidence",
            from_state=open_case.state,
            to_state=open_case.state,
            actor=VIDEO_ACTOR,
            address=None,
            comment=None,
            payload={"evidence": evidence},
            before=None,
            after={"last_evidence_at": last},
            now=ts,
        )
        conn.execute(sa.update(_EVENTS).where(_EVENTS.c.id == event_row).values(event_id=event_id))
        view = get_case(conn, open_case.case_id)
        assert view is not None
        changes.append(
            CaseChange("evidence", view, open_case.state, VIDEO_ACTOR.username, ts, None, event_row)
        )
    return changes


class VideoCaseHook:
    """Ingest batch hook: the committed batch's video events become cases (own transaction)."""

    def __init__(
        self,
        engine: sa.Engine,
        *,
        clock: Callable[[], datetime] | None = None,
        rule: VideoCaseRule = DEFAULT_VIDEO_RULE,
    ) -> None:
        from models.clock import utc_now

        self.engine = engine
        self.clock = clock or utc_now
        self.rule = rule

    def __call__(self, accepted: Mapping[str, list[dict[str, Any]]]) -> None:
        rows = accepted.get("video_events") or []
        if not rows:
            return
        with self.engine.begin() as conn:
            cases_from_video(conn, rows, self.clock(), rule=self.rule)


# --------------------------------------------------------------------------------------------
# Deadlines


@dataclass(frozen=True, slots=True)
class CaseDeadlineFlag:
    """A case past its ``handle`` (处置) or ``close`` (结案) deadline."""

    case_id: str
    kind: Literal["handle", "close"]
    due: datetime
    state: str
    case_type: str | None
    department: str | None
    district_code: str | None
    grid_id: str | None

    @property
    def label_zh(self) -> str:
        return "处置超时" if self.kind == "handle" else "结案超时"


def overdue_cases(
    conn: Connection, now: datetime, *, district_code: str | None = None
) -> list[CaseDeadlineFlag]:
    """Cases past a deadline they still owe, earliest deadline first (of one district with
    ``district_code``). Parked cases (挂账) are not overdue: their clock is stopped."""
    c = _CASES.c
    flags: list[CaseDeadlineFlag] = []
    kinds: tuple[tuple[Literal["handle", "close"], sa.Column[Any], frozenset[CaseState]], ...] = (
        ("handle", c.due_at, AWAITING_HANDLING),
        ("close", c.close_due, AWAITING_CLOSE),
    )
    for kind, due, states in kinds:
        rows = conn.execute(
            sa.select(
                c.case_id, due.label("due"), c.state, c.case_type, c.department, c.district_code, c.grid_id
            )
            .where(due <= now, c.state.in_(sorted(states)), in_district(c.district_code, district_code))
            .order_by(due, c.case_id)
        ).mappings()
        flags.extend(CaseDeadlineFlag(kind=kind, **r) for r in rows)
    flags.sort(key=lambda f: (f.due, f.case_id, f.kind))
    return flags


# --------------------------------------------------------------------------------------------
# Spatial


@dataclass(frozen=True, slots=True)
class NearbyCase:
    case_id: str
    case_type: str | None
    state: str
    distance_m: float


def cases_near(
    conn: Connection,
    lon: float,
    lat: float,
    radius_m: float,
    *,
    case_type_key: str | None = None,
    open_only: bool = True,
) -> list[NearbyCase]:
    """Cases within ``radius_m`` of a point (an inspector checks what is already known
    before reporting); nearest first. PostGIS measures on the spheroid, the embedded
    backend on great circles; they agree to ~0.3 %."""
    west, south, east, north = bounding_box(lon, lat, radius_m)
    c = _CASES.c
    query = sa.select(c.case_id, c.case_type, c.state, c.lon, c.lat).where(c.lon.is_not(None))
    if open_only:
        query = query.where(c.state.in_(sorted(OPEN_STATES)))
    if case_type_key is not None:
        query = query.where(c.case_type == case_type_key)
    if conn.dialect.name == "postgresql":
        here = sa.func.geography(sa.func.ST_SetSRID(sa.func.ST_MakePoint(lon, lat), SRID))
        distance = sa.func.ST_Distance(sa.func.geography(c.geom), here)
        rows = conn.execute(
            query.add_columns(distance.label("distance_m"))
            .where(c.geom.op("&&")(sa.func.ST_MakeEnvelope(west, south, east, north, SRID)))
            .where(sa.func.ST_DWithin(sa.func.geography(c.geom), here, radius_m))
        ).all()
        found = [NearbyCase(r.case_id, r.case_type, r.state, float(r.distance_m)) for r in rows]
    else:
        rows = conn.execute(query.where(c.lat.between(south, north), c.lon.between(west, east))).all()
        measured = [
            NearbyCase(r.case_id, r.case_type, r.state, great_circle_m(lon, lat, r.lon, r.lat)) for r in rows
        ]
        found = [m for m in measured if m.distance_m <= radius_m]
    found.sort(key=lambda m: (round(m.distance_m, 3), m.case_id))
    return found


# --------------------------------------------------------------------------------------------
# Indicators

UNLOCATED = "未定位"
UNASSIGNED = "未派遣"


@dataclass(frozen=True, slots=True)
class CaseIndicators:
    """The GB/T 30428 indicators of cases reported in a period, for one district or department.

    Rates are None when nothing counts towards them yet.
    """

    key: str
    reported: int
    filed: int
    closed: int
    handle: Rate  # 按期处置率: reported back by the 处置 deadline, of those decided
    close: Rate  # 按期结案率: closed by the 结案 deadline, of those decided
    reported_back: int
    reworked: int

    @property
    def filing_rate(self) -> float | None:
        """立案率 = 立案 / 信息收集."""
        return None if self.reported == 0 else self.filed / self.reported

    @property
    def closing_rate(self) -> float | None:
        """结案率 = 结案 / 立案."""
        return None if self.filed == 0 else self.closed / self.filed

    @property
    def on_time_handling_rate(self) -> float | None:
        return self.handle.rate

    @property
    def on_time_closing_rate(self) -> float | None:
        return self.close.rate

    @property
    def rework_rate(self) -> float | None:
        """返工率 = 返工过的 / 反馈过的."""
        return None if self.reported_back == 0 else self.reworked / self.reported_back


def indicators(
    conn: Connection,
    since: datetime,
    until: datetime,
    by: Literal["district", "department"] = "district",
    *,
    now: datetime | None = None,
    district_code: str | None = None,
) -> dict[str, CaseIndicators]:
    """Indicators of cases reported in [since, until), by district or department (of one
    district's cases with ``district_code``).

    Everything is counted as of ``now`` (default ``until``); a deadline counts once it is
    decided (met, or passed without it), as with the 12345 on-time rates. 返工率 counts
    cases whose last 反馈 followed a 返工. A case returned (回退) and not dispatched
    again counts under 未派遣 when grouped by department.
    """
    at = until if now is None else now
    c = _CASES.c
    key = _indicator_key(by)
    period = sa.and_(
        c.reported_at >= since, c.reported_at < until, in_district(c.district_code, district_code)
    )
    rows = conn.execute(sa.select(key.label("k"), *_indicator_sums(at)).where(period).group_by(key)).all()
    return _indicators_of(rows, by)


@dataclass(frozen=True, slots=True)
class CaseIntake:
    """Cases reported in a period and how many of them are filed (立案): the two case
    figures of the day on the wall, without the other indicators' deadlines."""

    reported: int = 0
    filed: int = 0

    @property
    def filing_rate(self) -> float | None:
        """立案率 = 立案 / 信息收集, as :attr:`CaseIndicators.filing_rate`."""
        return None if self.reported == 0 else self.filed / self.reported


def intake(
    conn: Connection,
    since: datetime,
    until: datetime,
    *,
    now: datetime | None = None,
    district_code: str | None = None,
) -> CaseIntake:
    """Cases reported in [since, until), all districts together (one district's with
    ``district_code``), and how many were filed by ``now`` (default ``until``), counted
    as :func:`indicators` counts them.

    Two aggregates and no grouping: at city volume a day is 35,000 cases, and the nine
    per-district aggregates of :func:`indicators` cost twice as much for a wall that
    shows two figures.
    """
    at = until if now is None else now
    c = _CASES.c
    n, filed = conn.execute(
        sa.select(
            sa.func.count(), sa.func.coalesce(sa.func.sum(sa.case((c.filed_at <= at, 1), else_=0)), 0)
        ).where(c.reported_at >= since, c.reported_at < until, in_district(c.district_code, district_code))
    ).one()
    return CaseIntake(int(n), int(filed))


def _indicator_key(by: Literal["district", "department"]) -> sa.Column[Any]:
    return _CASES.c.district_code if by == "district" else _CASES.c.department


def _indicator_sums(at: datetime) -> list[sa.ColumnElement[int]]:
    """The indicators' counts as aggregates, in :class:`CaseIndicators`' order (reported,
    filed, closed, handle total/on time, close total/on time, reported back, reworked)."""
    c = _CASES.c

    def count(cond: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
        return sa.func.coalesce(sa.func.sum(sa.case((cond, 1), else_=0)), 0)

    def decided(
        done: sa.Column[Any], due: sa.Column[Any]
    ) -> tuple[sa.ColumnElement[int], sa.ColumnElement[int]]:
        happened = sa.and_(done.is_not(None), done <= at)
        return (
            count(sa.and_(due.is_not(None), sa.or_(happened, due <= at))),
            count(sa.and_(due.is_not(None), happened, done <= due)),
        )

    handle_total, handle_ok = decided(c.reported_back_at, c.due_at)
    close_total, close_ok = decided(c.closed_at, c.close_due)
    return [
        sa.func.count(),
        count(c.filed_at <= at),
        count(c.closed_at <= at),
        handle_total,
        handle_ok,
        close_total,
        close_ok,
        count(c.reported_back_at <= at),
        # A case reworked and not yet reported back again is still being redone: it
        # counts once its department says it is done.
        count(sa.and_(c.reported_back_at <= at, c.rework_count > 0)),
    ]


def _indicators_of(
    rows: Iterable[Sequence[Any]], by: Literal["district", "department"]
) -> dict[str, CaseIndicators]:
    """Rows of (key, the :func:`_indicator_sums`) as indicators by key, in key order."""
    empty = UNLOCATED if by == "district" else UNASSIGNED
    out = {
        (k if k is not None else empty): CaseIndicators(
            key=k if k is not None else empty,
            reported=int(n),
            filed=int(filed),
            closed=int(closed),
            handle=Rate(int(ht), int(ho)),
            close=Rate(int(ct), int(co)),
            reported_back=int(rb),
            reworked=int(rw),
        )
        for k, n, filed, closed, ht, ho, ct, co, rb, rw in rows
    }
    return dict(sorted(out.items()))


__all__ = [
    "CASE_EVENTS",
    "CASE_LIFECYCLE",
    "CASE_TYPES",
    "DEFAULT_VIDEO_RULE",
    "OTHER",
    "TICKET_CASE_TYPES",
    "VIDEO_CASE_TYPES",
    "CaseChange",
    "CaseDeadlineFlag",
    "CaseEventView",
    "CaseIndicators",
    "CaseIntake",
    "CaseState",
    "CaseType",
    "CaseView",
    "Evaluation",
    "IllegalTransition",
    "NearbyCase",
    "VideoCaseHook",
    "VideoCaseRule",
    "case_evidence",
    "case_from_ticket",
    "case_history",
    "case_of_ticket",
    "case_type",
    "cases_from_video",
    "cases_near",
    "dispatch_case",
    "evaluate",
    "extend",
    "file_case",
    "get_case",
    "indicators",
    "intake",
    "overdue_cases",
    "park",
    "refuse_case",
    "report_back",
    "report_case",
    "resume",
    "return_case",
    "rework",
    "start_handling",
    "verify_close",
]


# --------------------------------------------------------------------------------------------
# Reads for the urban-management page: open cases by urgency, counts, video sightings.


@dataclass(frozen=True, slots=True)
class CaseMark:
    """What a map or a list shows of an open case: its place, type, state and deadlines,
    without its free text, geometry or history (a page reads thousands per refresh)."""

    case_id: str
    case_type: str | None
    subcategory: str | None
    state: str
    department: str | None
    district_code: str | None
    lon: float | None
    lat: float | None
    reported_at: datetime
    due_at: datetime | None
    close_due: datetime | None
    evidence_count: int
    last_evidence_at: datetime | None


def open_cases(conn: Connection, limit: int = 50, *, district_code: str | None = None) -> list[CaseView]:
    """Open cases, the most pressing first: nearest deadline owed (overdue ones first), then
    cases with no deadline running (信息收集, 挂账), newest first."""
    return _open_by_urgency(conn, CaseView, limit, district_code)


def open_case_marks(conn: Connection, limit: int = 50, *, district_code: str | None = None) -> list[CaseMark]:
    """:func:`open_cases` as marks (the same cases in the same order, fewer columns)."""
    return _open_by_urgency(conn, CaseMark, limit, district_code)


_Open = TypeVar("_Open", CaseView, CaseMark)


def _open_by_urgency(
    conn: Connection, make: type[_Open], limit: int, district_code: str | None
) -> list[_Open]:
    """Read as three ordered, limited selects instead of one sort by the owed deadline: that
    sort is computed per row, so it read and sorted every open case (tens of thousands in a
    city) for a page of a few thousand; each select here follows an index (``due_at``,
    ``close_due``, ``reported_at``) and stops at ``limit``. Only ``make``'s columns are
    read (no geometry or properties to decode)."""
    if limit <= 0:
        return []
    c = _CASES.c
    columns = [c[f] for f in make.__dataclass_fields__]
    mine = in_district(c.district_code, district_code)
    handling = sorted(AWAITING_HANDLING)
    closing = sorted(AWAITING_CLOSE - AWAITING_HANDLING)

    def read(where: sa.ColumnElement[bool], *order: Any, n: int) -> list[_Open]:
        query = sa.select(*columns).where(where, mine).order_by(*order).limit(n)
        # The columns come in the fields' order: a row is the arguments.
        return [make(*r) for r in conn.execute(query).all()]

    # The deadline a case owes: 处置 while awaiting handling, else 结案 while awaiting
    # closure. Each list comes ordered; merged here by (deadline, newest, id) as one sort.
    keyed: list[tuple[datetime, _Open]] = []
    for states, due in ((handling, c.due_at), (closing, c.close_due)):
        for case in read(
            sa.and_(c.state.in_(states), due.is_not(None)), due, c.reported_at.desc(), c.case_id, n=limit
        ):
            keyed.append((getattr(case, due.key), case))
    keyed.sort(key=lambda p: p[1].case_id)
    keyed.sort(key=lambda p: p[1].reported_at, reverse=True)  # stable: ties keep the id order
    keyed.sort(key=lambda p: p[0])
    owed = [case for _, case in keyed[:limit]]
    if len(owed) == limit:
        return owed
    no_deadline = sa.or_(
        c.state.in_(sorted(OPEN_STATES - AWAITING_CLOSE)),
        sa.and_(c.state.in_(handling), c.due_at.is_(None)),
        sa.and_(c.state.in_(closing), c.close_due.is_(None)),
    )
    return owed + read(no_deadline, c.reported_at.desc(), c.case_id, n=limit - len(owed))


def state_counts(conn: Connection, *, district_code: str | None = None) -> dict[str, int]:
    """Cases per state (every state present, zero when none)."""
    c = _CASES.c
    counts = dict(
        conn.execute(
            sa.select(c.state, sa.func.count())
            .where(in_district(c.district_code, district_code))
            .group_by(c.state)
        ).all()
    )
    return {s.value: int(counts.get(s.value, 0)) for s in CaseState}


def video_event_counts(
    conn: Connection,
    since: datetime,
    until: datetime,
    by: Literal["grid", "type", "district"] = "grid",
    *,
    district_code: str | None = None,
) -> dict[str, int]:
    """Video sightings in [since, until) per grid cell, event type or district, largest first.

    The map bins sightings by grid cell here, in the database: the page receives one
    number per cell however many sightings there were. Unlocated sightings are left out.
    """
    from models.schema import VideoEvent

    v = VideoEvent.__table__.c
    column = {"grid": v.grid_id, "type": v.type, "district": v.district_code}[by]
    rows = conn.execute(
        sa.select(column, sa.func.count())
        .where(v.ts >= since, v.ts < until, column.is_not(None), in_district(v.district_code, district_code))
        .group_by(column)
    ).all()
    return dict(sorted(((k, int(n)) for k, n in rows), key=lambda kv: (-kv[1], kv[0])))


__all__ += ["open_cases", "state_counts", "video_event_counts"]


def video_event_tallies(
    conn: Connection, since: datetime, until: datetime, *, district_code: str | None = None
) -> tuple[dict[str, int], dict[str, int]]:
    """Video sightings in [since, until) per grid cell and per event type, each as
    :func:`video_event_counts` gives it, from one pass over the sightings.

    PostgreSQL groups by cell and by type in the same scan (GROUPING SETS); SQLite, which
    has none, groups by cell and type together (a few thousand pairs at most) and sums here.
    """
    from models.schema import VideoEvent

    v = VideoEvent.__table__.c
    period = sa.and_(v.ts >= since, v.ts < until, in_district(v.district_code, district_code))
    per_cell: Counter[str] = Counter()
    per_type: Counter[str] = Counter()
    if conn.dialect.name == "postgresql":
        sets = sa.func.grouping_sets(sa.tuple_(v.grid_id), sa.tuple_(v.type))
        # grouping(grid_id) is 0 on the rows grouped by cell, 1 on those grouped by type.
        query = sa.select(v.grid_id, v.type, sa.func.grouping(v.grid_id), sa.func.count())
        for grid_id, kind, by_type, n in conn.execute(query.where(period).group_by(sets)):
            if by_type == 0 and grid_id is not None:
                per_cell[grid_id] = int(n)
            elif by_type == 1 and kind is not None:
                per_type[kind] = int(n)
    else:
        query = sa.select(v.grid_id, v.type, sa.func.count())
        for grid_id, kind, n in conn.execute(query.where(period).group_by(v.grid_id, v.type)):
            if grid_id is not None:
                per_cell[grid_id] += int(n)
            if kind is not None:
                per_type[kind] += int(n)
    return _largest_first(per_cell), _largest_first(per_type)


def _largest_first(counts: Mapping[str, int]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


@dataclass(frozen=True, slots=True)
class CaseBoard:
    """What the urban page counts of the cases: open and overdue now, and the indicators
    of the cases reported in a period (as :func:`indicators` gives them)."""

    open: int
    overdue: int
    indicators: dict[str, CaseIndicators]


def case_board(
    conn: Connection,
    since: datetime,
    until: datetime,
    by: Literal["district", "department"] = "district",
    *,
    now: datetime,
    district_code: str | None = None,
) -> CaseBoard:
    """Open and overdue cases now (overdue as :func:`overdue_cases` counts them, once per
    case) and :func:`indicators` of [since, until), in one pass over the cases that are open
    or were reported in the period (read apart, each of the three scanned every open case)."""
    c = _CASES.c
    key = _indicator_key(by)
    # Grouped by whether a case was reported in the period: its groups are the indicators'
    # rows, and every group counts towards open and overdue.
    in_period = sa.and_(c.reported_at >= since, c.reported_at < until)
    is_open = c.state.in_(sorted(OPEN_STATES))

    def count(cond: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
        return sa.func.coalesce(sa.func.sum(sa.case((cond, 1), else_=0)), 0)

    rows = conn.execute(
        sa.select(
            key.label("k"), in_period.label("p"), *_indicator_sums(now), count(is_open), count(_late(now))
        )
        .where(sa.or_(in_period, is_open), in_district(c.district_code, district_code))
        .group_by(key, in_period)
    ).all()
    return CaseBoard(
        open=sum(int(r[-2]) for r in rows),
        overdue=sum(int(r[-1]) for r in rows),
        indicators=_indicators_of(((r[0], *r[2:-2]) for r in rows if r[1]), by),
    )


__all__ += ["CaseBoard", "CaseMark", "case_board", "open_case_marks", "video_event_tallies"]


# --------------------------------------------------------------------------------------------
# Reads for the vital signs (overview, district pages, wall): open cases per district.


@dataclass(frozen=True, slots=True)
class OpenCases:
    """Cases open now in one district, and how many of them are past a deadline they owe
    (as :func:`overdue_cases` counts them; parked cases are not overdue)."""

    open: int = 0
    overdue: int = 0


def _late(now: datetime) -> sa.ColumnElement[bool]:
    """Past a deadline the case still owes (as :func:`overdue_cases` flags it)."""
    c = _CASES.c
    return sa.or_(
        sa.and_(c.due_at <= now, c.state.in_(sorted(AWAITING_HANDLING))),
        sa.and_(c.close_due <= now, c.state.in_(sorted(AWAITING_CLOSE))),
    )


def open_by_district(
    conn: Connection, now: datetime, *, district_code: str | None = None
) -> dict[str, OpenCases]:
    """Per district code (:data:`UNLOCATED` for cases without one), districts with open cases.

    Two counts rather than one pass with a condition per row: at city volume nearly every
    case is open (44,000 rows), and weighing each one's deadlines cost most of the read.
    Late cases are few, and the deadline indexes (``due_at``, ``close_due``) find them;
    every late case is open (:func:`_late` names open states only), so the counts agree.
    """
    c = _CASES.c
    scope = in_district(c.district_code, district_code)
    opened = conn.execute(
        sa.select(c.district_code, sa.func.count())
        .where(c.state.in_(sorted(OPEN_STATES)), scope)
        .group_by(c.district_code)
    ).all()
    late = dict(
        conn.execute(
            sa.select(c.district_code, sa.func.count()).where(_late(now), scope).group_by(c.district_code)
        ).all()
    )
    return dict(
        sorted(
            (code if code is not None else UNLOCATED, OpenCases(int(n), int(late.get(code, 0))))
            for code, n in opened
        )
    )


__all__ += ["OpenCases", "open_by_district"]
