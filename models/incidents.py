"""Emergency incidents (突发事件): lifecycle, response levels, dispatched resources, links,
the affected area and the public warning draft.

::

    reported 接报 ──respond (响应级别 Ⅰ–Ⅳ)──► responding 响应 ──dispatch (≥ 1 resource)──► dispatching 调度
        │                                                                                │
      dismiss (核实不构成突发事件, with a reason)                                        start
        ▼                                                                                ▼
      closed 关闭 ◄──close (评估结论; every resource released)── assessing 评估 ◄──assess── handling 处置

    Staying in the state, on the timeline all the same:
      escalate / de_escalate (升级/降级响应: a new level, with a reason)   responding, dispatching, handling
      reinforce (增派力量: more resources)                                 dispatching, handling
      note (研判/会商 notes)                                               every state but closed

Every transition goes through :func:`models.lifecycle.apply_transition` (compare-and-set on
``version``, event row, audit entry), the same machinery as alerts, 12345 tickets and
urban cases; refusals carry ``reason_zh`` and ``reason_en``. Actions that keep the state
use a one-state copy of the lifecycle per state (as 督办 does for tickets), so they meet
the same checks. Each dispatched resource has its own status, dispatched → arrived →
released, moved by compare-and-set on its row and written on the incident's timeline.

Opening: by hand (:func:`open_incident`), by a duty officer from a critical alert
(:func:`open_from_alert`), or automatically from a correlation alert whose rule says
``open_incident = true`` (:func:`open_for_alert`, called by ``models.rules.sink``). One
incident per alert — per correlation episode — is enforced by a unique index on
``incidents.source_alert_id``, so two workers seeing the same alert open one incident.

Functions for the emergency page: :func:`open_incidents`, :func:`incident_view`,
:func:`affected_area`, :func:`nearest_resources`, :func:`latest_warning`,
:func:`all_resources`, :func:`incidents_of_alerts`.

Open pages learn of a change from :func:`announce`, which the caller runs after its
transaction commits (a note of kind ``incident`` on the live updates channel), as alert
changes reach Redis after theirs.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa
from shapely.geometry import Point
from shapely.geometry.base import BaseGeometry
from sqlalchemy.engine import Connection

from models import alerts, cases, spatial, tickets
from models import lifecycle as lc
from models.clock import CITY_TZ
from models.db import dialect_insert
from models.lifecycle import Actor, EntityNotFound, IllegalTransition, Lifecycle, Refusal, State
from models.schema import (
    Alert,
    CaseEvent,
    Device,
    GridCell,
    HotlineTicket,
    Incident,
    IncidentEvent,
    IncidentLink,
    IncidentLinkKind,
    IncidentResource,
    IncidentSource,
    IncidentWarning,
    Resource,
    Severity,
    WarningColour,
)
from models.schema import Case as CaseRow
from models.spatial import Area, ResourceHit
from models.users import Permission, roles_with

if TYPE_CHECKING:
    from models.live import LiveStore

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# States, levels, types


class IncidentState(enum.StrEnum):
    REPORTED = "reported"
    RESPONDING = "responding"
    DISPATCHING = "dispatching"
    HANDLING = "handling"
    ASSESSING = "assessing"
    CLOSED = "closed"

    @property
    def label_zh(self) -> str:
        return INCIDENT_LIFECYCLE.state(self.value).label_zh


class ResponseLevel(enum.StrEnum):
    """应急响应级别 Ⅰ–Ⅳ, Ⅰ the highest.

    The four grades follow the four grades of emergencies in the Emergency Response Law
    (突发事件应对法): 特别重大, 重大, 较大, 一般. Stored as ``"I"`` … ``"IV"``; shown as Ⅰ级 … Ⅳ级.
    """

    I = "I"  # noqa: E741 - the level's own name
    II = "II"
    III = "III"
    IV = "IV"

    @property
    def numeral(self) -> str:
        return _NUMERALS[self]

    @property
    def grade_zh(self) -> str:
        return _GRADES_ZH[self]

    @property
    def label_zh(self) -> str:
        return f"{self.numeral}级响应（{self.grade_zh}）"

    @property
    def rank(self) -> int:
        """1 for Ⅰ (most severe) … 4 for Ⅳ."""
        return list(ResponseLevel).index(self) + 1

    @property
    def colour(self) -> WarningColour:
        """The warning colour of the same grade: Ⅰ 红, Ⅱ 橙, Ⅲ 黄, Ⅳ 蓝 (GB/T 35965.1)."""
        return _LEVEL_COLOURS[self]

    @classmethod
    def parse(cls, value: ResponseLevel | str | int | None) -> ResponseLevel | None:
        """``"I"``, ``"Ⅰ"``, ``"Ⅰ级"``, ``1`` … → the level; None when it is none of them."""
        if value is None:
            return None
        text = str(value).strip().removesuffix("级").removesuffix("响应").upper()
        for level in cls:
            if text in (level.value, level.numeral, str(level.rank)):
                return level
        return None


_NUMERALS = {ResponseLevel.I: "Ⅰ", ResponseLevel.II: "Ⅱ", ResponseLevel.III: "Ⅲ", ResponseLevel.IV: "Ⅳ"}
_GRADES_ZH = {
    ResponseLevel.I: "特别重大",
    ResponseLevel.II: "重大",
    ResponseLevel.III: "较大",
    ResponseLevel.IV: "一般",
}
_LEVEL_COLOURS = {
    ResponseLevel.I: WarningColour.RED,
    ResponseLevel.II: WarningColour.ORANGE,
    ResponseLevel.III: WarningColour.YELLOW,
    ResponseLevel.IV: WarningColour.BLUE,
}


@dataclass(frozen=True, slots=True)
class IncidentType:
    """A kind of emergency: names, its CAP category and event, what the public should do."""

    key: str
    label_zh: str
    label_en: str
    #: CAP 1.2 ``info/category`` (Geo, Met, Safety, Fire, Transport, …)
    cap_category: str
    #: CAP 1.2 ``info/responseType``
    response_type: str
    instruction_zh: str
    instruction_en: str


def _itype(*args: str) -> IncidentType:
    return IncidentType(*args)


INCIDENT_TYPES: Mapping[str, IncidentType] = MappingProxyType(
    {
        t.key: t
        for t in (
            _itype(
                "flood",
                "暴雨内涝",
                "Flooding",
                "Met",
                "Evacuate",
                "请远离低洼路段、下穿通道和河道，不要涉水通行；低洼地带和地下空间人员请及时转移到安全地点。",
                "Keep away from low-lying roads, underpasses and rivers; do not drive or walk through "
                "water. People in low-lying areas and basements should move to safe places.",
            ),
            _itype(
                "fire",
                "火灾",
                "Fire",
                "Fire",
                "Evacuate",
                "请周边人员听从现场指挥有序疏散，用湿毛巾捂住口鼻，不要乘坐电梯，保持消防通道畅通。",
                "People nearby should follow the on-site instructions and evacuate; cover nose and "
                "mouth with a wet cloth, do not use lifts, keep fire lanes clear.",
            ),
            _itype(
                "gas_leak",
                "燃气泄漏",
                "Gas leak",
                "Safety",
                "Evacuate",
                "请周边人员立即撤离，严禁明火、不要开关电器，听从现场人员指挥。",
                "People nearby should leave at once; no open flames, do not switch electrical "
                "devices, follow the responders' instructions.",
            ),
            _itype(
                "geological",
                "地质灾害",
                "Landslide",
                "Geo",
                "Evacuate",
                "请远离山坡、边坡和河沟，发现裂缝、落石等异常立即撤离并报告。",
                "Keep away from slopes and gullies; leave at once and report cracks or falling rocks.",
            ),
            _itype(
                "crowd",
                "人群聚集",
                "Crowd gathering",
                "Safety",
                "Avoid",
                "请避开聚集区域，听从现场疏导，不要拥挤推搡。",
                "Avoid the area, follow the stewards, do not push.",
            ),
            _itype(
                "traffic",
                "交通事故",
                "Traffic accident",
                "Transport",
                "Avoid",
                "请绕行事故路段，听从交警指挥。",
                "Take another route and follow the traffic police.",
            ),
            _itype(
                "other",
                "突发事件",
                "Emergency",
                "Other",
                "Monitor",
                "请关注官方发布的信息，听从现场指挥。",
                "Follow official information and the responders' instructions.",
            ),
        )
    }
)


def incident_type(key: str | None) -> IncidentType:
    return INCIDENT_TYPES.get(key or "", INCIDENT_TYPES["other"])


#: Words in a rule id → incident type, for alerts from rules that name no type: the rule
#: ids of the default set say what they watch (flood_compound, smoke_alarm, gas_lel_high …).
_RULE_WORDS = (
    (("flood", "water_level", "rain", "waterlog", "manhole_water"), "flood"),
    (("fire", "smoke"), "fire"),
    (("gas",), "gas_leak"),
    (("landslide", "geolog"), "geological"),
    (("crowd",), "crowd"),
    (("traffic",), "traffic"),
)


def type_for_rule(rule_id: str) -> str:
    """The incident type an alert of ``rule_id`` most likely stands for (``other`` if unclear)."""
    for words, key in _RULE_WORDS:
        if any(w in rule_id for w in words):
            return key
    return "other"


class DispatchStatus(enum.StrEnum):
    DISPATCHED = "dispatched"
    ARRIVED = "arrived"
    RELEASED = "released"


S = IncidentState
#: Incidents under command (not closed).
OPEN_STATES = frozenset({S.REPORTED, S.RESPONDING, S.DISPATCHING, S.HANDLING, S.ASSESSING})
#: A response is running: the level can change.
RESPONDING_STATES = frozenset({S.RESPONDING, S.DISPATCHING, S.HANDLING})
#: Resources are on their way or at work: more can be sent.
WORKING_STATES = frozenset({S.DISPATCHING, S.HANDLING})

#: Who commands incidents (duty officers and administrators, from the one permission
#: table). Services (the rule engine opening an incident) act without a role.
COMMAND_ROLES = roles_with(Permission.INCIDENT_COMMAND)

ENTITY_TYPE = "incident"
_INCIDENTS = Incident.__table__
_EVENTS = IncidentEvent.__table__
_DISPATCHES = IncidentResource.__table__
_LINKS = IncidentLink.__table__
_WARNINGS = IncidentWarning.__table__
INCIDENT_EVENTS = lc.EventLog(_EVENTS, "incident_id")

#: The area an incident gets when nobody has drawn one: the 1 km buffer around its point.
DEFAULT_RADIUS_M = spatial.AREA_RADII_M[0]


# --------------------------------------------------------------------------------------------
# Guards and lifecycle


def _text(ctx: lc.TransitionContext, key: str) -> str:
    return str(ctx.params.get(key) or "").strip()


def _level_given(row: Mapping[str, Any], ctx: lc.TransitionContext) -> Refusal | None:
    if ResponseLevel.parse(ctx.params.get("level")) is None:
        return Refusal(zh="启动响应须确定响应级别（Ⅰ–Ⅳ级）", en="a response needs a level (I–IV)")
    return None


def _level_change(direction: Literal["up", "down"]) -> lc.Guard:
    def guard(row: Mapping[str, Any], ctx: lc.TransitionContext) -> Refusal | None:
        new = ResponseLevel.parse(ctx.params.get("level"))
        if new is None:
            return Refusal(
                zh="调整响应须给出新的响应级别（Ⅰ–Ⅳ级）", en="a level change needs the new level (I–IV)"
            )
        if not _text(ctx, "reason"):
            return Refusal(zh="调整响应级别须说明理由", en="a level change needs a reason")
        old = ResponseLevel.parse(row["level"])
        if old is not None:
            if direction == "up" and new.rank >= old.rank:
                return Refusal(
                    zh=f"升级响应须高于当前的{old.numeral}级，{new.numeral}级不是升级",
                    en=f"escalating needs a level above {old.value}; {new.value} is not",
                )
            if direction == "down" and new.rank <= old.rank:
                return Refusal(
                    zh=f"降级响应须低于当前的{old.numeral}级，{new.numeral}级不是降级",
                    en=f"de-escalating needs a level below {old.value}; {new.value} is not",
                )
        return None

    return guard


def _resources_sendable(row: Mapping[str, Any], ctx: lc.TransitionContext) -> Refusal | None:
    wanted = list(ctx.params.get("resources") or ())
    if not wanted:
        return Refusal(zh="调度须至少派出一支救援力量", en="a dispatch needs at least one resource")
    # Looked up when the guard runs, not before: after a lost compare-and-set the guard runs
    # again and must see the resources the winner just sent.
    active: set[str] = ctx.params["active_resources"]()
    already = sorted(set(wanted) & active)
    if already:
        return Refusal(
            zh=f"{'、'.join(already)} 已派往本事件，尚未撤离",
            en=f"{', '.join(already)} already dispatched to this incident and not released",
        )
    return None


def _closable(row: Mapping[str, Any], ctx: lc.TransitionContext) -> Refusal | None:
    if not _text(ctx, "assessment"):
        return Refusal(zh="关闭事件须填写评估结论", en="closing needs the assessment")
    # As above: counted when the guard runs, after any concurrent release committed.
    pending: int = ctx.params["unreleased"]()
    if pending:
        return Refusal(
            zh=f"尚有 {pending} 支救援力量未撤离，不能关闭事件",
            en=f"{pending} resource(s) not yet released; cannot close",
        )
    return None


#: Incident actions are for those who command incidents.
_action = functools.partial(lc.action, roles=COMMAND_ROLES)


INCIDENT_LIFECYCLE = Lifecycle(
    name=ENTITY_TYPE,
    noun_zh="事件",
    states={
        S.REPORTED: State(S.REPORTED, "接报"),
        S.RESPONDING: State(S.RESPONDING, "响应", "启动响应"),
        S.DISPATCHING: State(S.DISPATCHING, "调度", "调度"),
        S.HANDLING: State(S.HANDLING, "处置", "开始处置"),
        S.ASSESSING: State(S.ASSESSING, "评估", "转入评估"),
        S.CLOSED: State(S.CLOSED, "关闭", "关闭"),
    },
    actions={
        a.name: a
        for a in (
            _action("respond", {S.REPORTED}, S.RESPONDING, "启动响应", _level_given),
            _action(
                "dismiss",
                {S.REPORTED},
                S.CLOSED,
                "核销",
                lc.requires_text("reason", "核销事件须说明理由", "dismissing needs a reason"),
            ),
            _action("dispatch", {S.RESPONDING}, S.DISPATCHING, "调度", _resources_sendable),
            _action("start", {S.DISPATCHING}, S.HANDLING, "开始处置"),
            _action(
                "assess",
                {S.HANDLING},
                S.ASSESSING,
                "转入评估",
                lc.requires_text("summary", "转入评估须填写处置情况", "assessing needs a handling summary"),
            ),
            _action("close", {S.ASSESSING}, S.CLOSED, "关闭", _closable),
        )
    },
)

#: Actions that keep the state; ``target`` is a placeholder, replaced per state when applied.
STAY_ACTIONS: Mapping[str, lc.Action] = MappingProxyType(
    {
        a.name: a
        for a in (
            _action("escalate", RESPONDING_STATES, S.RESPONDING, "升级响应", _level_change("up")),
            _action("de_escalate", RESPONDING_STATES, S.RESPONDING, "降级响应", _level_change("down")),
            _action("reinforce", WORKING_STATES, S.DISPATCHING, "增派力量", _resources_sendable),
            _action(
                "note",
                OPEN_STATES,
                S.REPORTED,
                "记录研判",
                lc.requires_text("text", "研判记录不能为空", "a note needs its text"),
            ),
        )
    }
)

#: A dispatched resource's own status; moved by compare-and-set on ``incident_resources``.
DISPATCH_LIFECYCLE = Lifecycle(
    name="incident_resource",
    noun_zh="救援力量",
    states={
        DispatchStatus.DISPATCHED: State(DispatchStatus.DISPATCHED, "已派出"),
        DispatchStatus.ARRIVED: State(DispatchStatus.ARRIVED, "已到达", "到达"),
        DispatchStatus.RELEASED: State(DispatchStatus.RELEASED, "已撤离", "撤离"),
    },
    actions={
        "arrive": lc.Action(
            "arrive",
            frozenset({DispatchStatus.DISPATCHED.value}),
            DispatchStatus.ARRIVED.value,
            "确认到达",
            roles=COMMAND_ROLES,
        ),
        "release": lc.Action(
            "release",
            frozenset({DispatchStatus.DISPATCHED.value, DispatchStatus.ARRIVED.value}),
            DispatchStatus.RELEASED.value,
            "撤离",
            roles=COMMAND_ROLES,
        ),
    },
)

#: Timeline labels of what is not a lifecycle action.
_EVENT_LABELS = {
    "report": "接报",
    "link": "关联",
    "area": "划定影响范围",
    "warning": "起草预警",
    "resource_arrive": "力量到达",
    "resource_release": "力量撤离",
}


def action_label_zh(action: str) -> str:
    if action in INCIDENT_LIFECYCLE.actions:
        return INCIDENT_LIFECYCLE.actions[action].label_zh
    if action in STAY_ACTIONS:
        return STAY_ACTIONS[action].label_zh
    return _EVENT_LABELS.get(action, action)


def allowed_actions(state: str, role: str | None = None) -> list[str]:
    """What a person with ``role`` may do from ``state``, staying actions included (guards not run)."""
    moving = INCIDENT_LIFECYCLE.allowed_actions(state, role)
    staying = [
        a.name
        for a in STAY_ACTIONS.values()
        if state in a.sources and (a.roles is None or role is None or role in a.roles)
    ]
    return moving + staying


# --------------------------------------------------------------------------------------------
# Views


@dataclass(frozen=True, slots=True)
class IncidentView:
    incident_id: str
    type: str
    level: str | None
    title: str
    description: str | None
    state: str
    source: str
    source_alert_id: int | None
    reported_at: datetime
    responding_at: datetime | None
    dispatching_at: datetime | None
    handling_at: datetime | None
    assessing_at: datetime | None
    closed_at: datetime | None
    district_code: str | None
    grid_id: str | None
    lon: float | None
    lat: float | None
    radius_m: float | None
    area_kind: str | None
    area: BaseGeometry | None
    commander: str | None
    assessment: str | None
    version: int

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> IncidentView:
        return cls(**{f: row[f] for f in cls.__dataclass_fields__})

    @property
    def state_label_zh(self) -> str:
        return INCIDENT_LIFECYCLE.state(self.state).label_zh

    @property
    def level_label_zh(self) -> str | None:
        level = ResponseLevel.parse(self.level)
        return None if level is None else level.label_zh

    @property
    def type_label_zh(self) -> str:
        return incident_type(self.type).label_zh


@dataclass(frozen=True, slots=True)
class IncidentChange:
    """Something that happened to an incident; ``incident`` is the incident afterwards."""

    action: str
    incident: IncidentView
    from_state: str | None
    actor: str
    at: datetime
    comment: str | None = None
    event_row_id: int | None = None
    #: False when an opening found the incident already there (the same alert, again).
    created: bool = True


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One step on the timeline: who, when, what, the note, and what changed."""

    id: int
    ts: datetime
    action: str
    label_zh: str
    from_state: str | None
    to_state: str | None
    actor: str | None
    comment: str | None
    payload: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class DispatchView:
    id: int
    incident_id: str
    resource_id: str
    kind: str
    name: str
    status: str
    distance_m: float | None
    eta_s: float | None
    dispatched_by: str | None
    dispatched_at: datetime
    arrived_at: datetime | None
    released_at: datetime | None
    version: int

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> DispatchView:
        return cls(**{f: row[f] for f in cls.__dataclass_fields__})

    @property
    def status_label_zh(self) -> str:
        return DISPATCH_LIFECYCLE.state(self.status).label_zh


@dataclass(frozen=True, slots=True)
class LinkView:
    kind: str
    ref_id: str
    linked_at: datetime
    linked_by: str | None


def get_incident(conn: Connection, incident_id: str) -> IncidentView | None:
    row = (
        conn.execute(sa.select(_INCIDENTS).where(_INCIDENTS.c.incident_id == incident_id)).mappings().first()
    )
    return None if row is None else IncidentView.from_row(row)


def timeline(conn: Connection, incident_id: str) -> list[TimelineEntry]:
    """Every step of the incident, oldest first."""
    e = _EVENTS.c
    rows = conn.execute(
        sa.select(e.id, e.ts, e.action, e.from_state, e.to_state, e.actor, e.comment, e.payload)
        .where(e.incident_id == incident_id)
        .order_by(e.ts, e.id)
    ).all()
    return [TimelineEntry(r.id, r.ts, r.action, action_label_zh(r.action), *r[3:]) for r in rows]


def dispatched_resources(conn: Connection, incident_id: str) -> list[DispatchView]:
    rows = conn.execute(
        sa.select(_DISPATCHES)
        .where(_DISPATCHES.c.incident_id == incident_id)
        .order_by(_DISPATCHES.c.dispatched_at, _DISPATCHES.c.id)
    ).mappings()
    return [DispatchView.from_row(r) for r in rows]


def links(conn: Connection, incident_id: str, kind: IncidentLinkKind | str | None = None) -> list[LinkView]:
    query = sa.select(_LINKS.c.kind, _LINKS.c.ref_id, _LINKS.c.linked_at, _LINKS.c.linked_by).where(
        _LINKS.c.incident_id == incident_id
    )
    if kind is not None:
        query = query.where(_LINKS.c.kind == IncidentLinkKind(kind).value)
    return [LinkView(*r) for r in conn.execute(query.order_by(_LINKS.c.linked_at, _LINKS.c.id))]


def incident_for(conn: Connection, kind: IncidentLinkKind | str, ref_id: str | int) -> str | None:
    """The incident an alert, ticket or case is linked to, if any."""
    return conn.execute(
        sa.select(_LINKS.c.incident_id).where(
            _LINKS.c.kind == IncidentLinkKind(kind).value, _LINKS.c.ref_id == str(ref_id)
        )
    ).scalar_one_or_none()


@dataclass(frozen=True, slots=True)
class IncidentDetail:
    """Everything the emergency page shows about one incident."""

    incident: IncidentView
    timeline: list[TimelineEntry]
    resources: list[DispatchView]
    links: list[LinkView]
    warning: WarningDraft | None


def incident_view(bind: spatial.Bind, incident_id: str) -> IncidentDetail | None:
    """One incident with its timeline, dispatched resources, links and latest warning draft;
    None when there is no such incident. ``bind``: an engine, connection or session."""
    with spatial.connection(bind) as conn:
        incident = get_incident(conn, incident_id)
        if incident is None:
            return None
        return IncidentDetail(
            incident=incident,
            timeline=timeline(conn, incident_id),
            resources=dispatched_resources(conn, incident_id),
            links=links(conn, incident_id),
            warning=latest_warning(conn, incident_id),
        )


def open_incidents(
    bind: spatial.Bind, *, district_code: str | None = None, limit: int = 200
) -> list[IncidentView]:
    """Incidents not yet closed: the highest response level first (not yet decided last),
    then the oldest. ``bind``: an engine, connection or session."""
    c = _INCIDENTS.c
    rank = sa.case(*((c.level == lvl.value, lvl.rank) for lvl in ResponseLevel), else_=9)
    query = sa.select(_INCIDENTS).where(c.state.in_(sorted(OPEN_STATES)))
    if district_code is not None:
        query = query.where(c.district_code == district_code)
    query = query.order_by(rank, c.reported_at, c.incident_id).limit(limit)
    with spatial.connection(bind) as conn:
        return [IncidentView.from_row(r) for r in conn.execute(query).mappings()]


def incidents_of_alerts(bind: spatial.Bind, alert_ids: Iterable[int]) -> dict[int, str]:
    """Alert id → the incident opened from it or linked to it, for the alerts that have one."""
    ids = sorted({int(a) for a in alert_ids})
    if not ids:
        return {}
    refs = [str(i) for i in ids]
    with spatial.connection(bind) as conn:
        if conn.dialect.name == "postgresql":
            # The emergency page asks about hundreds of open alerts on every refresh: one
            # array parameter each is bound and planned several times faster than as many
            # parameters as there are alerts.
            from sqlalchemy.dialects.postgresql import ARRAY

            opened_from = _INCIDENTS.c.source_alert_id == sa.any_(
                sa.bindparam("ids", ids, ARRAY(sa.BigInteger))
            )
            linked_to = _LINKS.c.ref_id == sa.any_(sa.bindparam("refs", refs, ARRAY(sa.String)))
        else:
            opened_from = _INCIDENTS.c.source_alert_id.in_(ids)
            linked_to = _LINKS.c.ref_id.in_(refs)
        found = {
            int(r.source_alert_id): r.incident_id
            for r in conn.execute(
                sa.select(_INCIDENTS.c.source_alert_id, _INCIDENTS.c.incident_id).where(opened_from)
            )
        }
        linked = conn.execute(
            sa.select(_LINKS.c.ref_id, _LINKS.c.incident_id).where(
                _LINKS.c.kind == IncidentLinkKind.ALERT.value, linked_to
            )
        )
        for ref_id, incident_id in linked:
            found.setdefault(int(ref_id), incident_id)
    return found


@dataclass(frozen=True, slots=True)
class ResourceView:
    """A resource as the emergency page draws it."""

    resource_id: str
    kind: str
    name: str
    district_code: str | None
    lon: float
    lat: float
    capacity: int | None
    phone: str | None


def all_resources(bind: spatial.Bind, kinds: Sequence[str] | None = None) -> list[ResourceView]:
    """Every resource (of ``kinds``, if given), by kind and id: a few hundred at most."""
    r = Resource.__table__.c
    query = sa.select(r.resource_id, r.kind, r.name, r.district_code, r.lon, r.lat, r.capacity, r.phone)
    if kinds is not None:
        query = query.where(r.kind.in_(list(kinds)))
    with spatial.connection(bind) as conn:
        return [ResourceView(*row) for row in conn.execute(query.order_by(r.kind, r.resource_id))]


# --------------------------------------------------------------------------------------------
# Telling open pages


def change_note(change: IncidentChange | DispatchView) -> dict[str, Any]:
    """What open pages are told of a change: which incident, what happened, its state now."""
    if isinstance(change, DispatchView):
        return {
            "id": change.incident_id,
            "action": f"resource_{change.status}",
            "dispatch_id": change.id,
            "resource_id": change.resource_id,
            "status": change.status,
            "version": change.version,
        }
    incident = change.incident
    return {
        "id": incident.incident_id,
        "action": change.action,
        "state": incident.state,
        "from_state": change.from_state or "",
        "level": incident.level or "",
        "version": incident.version,
        "actor": change.actor,
        "at": change.at.isoformat(),
        "district_code": incident.district_code or "",
    }


def announce(live: LiveStore | None, *changes: IncidentChange | DispatchView | IncidentView) -> int:
    """Publish a note (kind ``incident``) per change on the live updates channel, so every
    open page refreshes at once; call after the transaction that made them committed.

    A change that opened nothing new (the same alert again) is not news. Redis being away
    loses only the notes (pages still refresh on their own), never the change: the failure
    is logged and the count of notes sent is returned.
    """
    from models.live import publish_incident_note

    if live is None:
        return 0
    sent = 0
    for change in changes:
        if isinstance(change, IncidentChange) and not change.created:
            continue
        if isinstance(change, IncidentView):  # an area redrawn: set_area returns the view
            note = {
                "id": change.incident_id,
                "action": "area",
                "state": change.state,
                "version": change.version,
            }
        else:
            note = change_note(change)
        try:
            publish_incident_note(live, note)
        except Exception as exc:  # the change is committed; only the push is lost
            log.warning("incident %s: live note not sent (%s)", note["id"], exc)
            continue
        sent += 1
    return sent


# --------------------------------------------------------------------------------------------
# 接报


def new_incident_id(now: datetime) -> str:
    """YJ + city date + random: readable by day, unique across workers without a sequence."""
    return f"YJ{now.astimezone(CITY_TZ):%Y%m%d}{uuid.uuid4().hex[:8].upper()}"


def _area_values(area: Area | None) -> dict[str, Any]:
    if area is None:
        return {"area": None, "area_kind": None, "radius_m": None}
    return {"area": area.polygon, "area_kind": area.kind, "radius_m": area.radius_m}


def _insert_incident(
    conn: Connection,
    *,
    incident_type_key: str,
    title: str,
    description: str | None,
    lon: float | None,
    lat: float | None,
    district_code: str | None,
    grid_id: str | None,
    area: Area | None,
    source: IncidentSource,
    source_alert_id: int | None,
    actor: Actor,
    address: str | None,
    now: datetime,
    payload: Mapping[str, Any] | None = None,
) -> IncidentChange | None:
    """Insert a reported incident and its first timeline entry; None when the alert already
    has one (the unique ``source_alert_id`` turned the insert into nothing)."""
    if not title.strip():
        raise ValueError("an incident needs a title / 事件须有标题")
    if incident_type_key not in INCIDENT_TYPES:
        raise ValueError(f"unknown incident type {incident_type_key!r}; known: {sorted(INCIDENT_TYPES)}")
    if district_code is None and lon is not None and lat is not None:
        from geo.locate import locate_point

        district_code, grid_id = locate_point(lon, lat)
    values: dict[str, Any] = {
        "incident_id": new_incident_id(now),
        "type": incident_type_key,
        "level": None,
        "title": title.strip()[:200],
        "description": description,
        "state": S.REPORTED.value,
        "reported_at": now,
        "district_code": district_code,
        "grid_id": grid_id,
        "lon": lon,
        "lat": lat,
        "geom": None if lon is None or lat is None else Point(lon, lat),
        "commander": None,
        "updated_at": now,
        "props": {},
        "source": source.value,
        "source_alert_id": source_alert_id,
        "version": 1,
        **_area_values(area),
    }
    stmt = dialect_insert(conn, _INCIDENTS).values(values)
    if source_alert_id is not None:
        # ON CONFLICT DO NOTHING, not a caught IntegrityError: the caller's transaction
        # stays usable on PostgreSQL, and the loser simply finds the winner's incident.
        stmt = stmt.on_conflict_do_nothing(index_elements=["source_alert_id"])
    row = conn.execute(stmt.returning(*_INCIDENTS.c)).mappings().first()
    if row is None:
        return None
    event_id = lc.record_event(
        conn,
        lifecycle=INCIDENT_LIFECYCLE,
        event_log=INCIDENT_EVENTS,
        entity_id=row["incident_id"],
        action="report",
        from_state=None,
        to_state=S.REPORTED.value,
        actor=actor,
        address=address,
        comment=description,
        payload={"source": source.value, "alert_id": source_alert_id, **(payload or {})},
        before=None,
        after={"state": S.REPORTED.value, "type": incident_type_key, "district_code": district_code},
        now=now,
    )
    return IncidentChange(
        "report", IncidentView.from_row(row), None, actor.username, now, description, event_id
    )


def open_incident(
    conn: Connection,
    *,
    incident_type_key: str,
    title: str,
    description: str | None = None,
    lon: float | None,
    lat: float | None,
    actor: Actor | str,
    now: datetime,
    radius_m: float | None = DEFAULT_RADIUS_M,
    polygon: BaseGeometry | Sequence[tuple[float, float]] | None = None,
    address: str | None = None,
) -> IncidentChange:
    """接报 by hand (a call on the duty phone, a report from the scene).

    The affected area is the drawn ``polygon`` when given, else the circle of ``radius_m``
    around the point; without a point and a polygon the incident has no area yet.
    Raises ``ValueError`` with the reason for a bad type, title, point or polygon.
    """
    area = None
    if polygon is not None or (lon is not None and lat is not None and radius_m is not None):
        area = Area.of(lon=lon, lat=lat, radius_m=radius_m, polygon=polygon)
    if lon is None and area is not None:
        lon, lat = area.lon, area.lat
    change = _insert_incident(
        conn,
        incident_type_key=incident_type_key,
        title=title,
        description=description,
        lon=lon,
        lat=lat,
        district_code=None,
        grid_id=None,
        area=area,
        source=IncidentSource.MANUAL,
        source_alert_id=None,
        actor=Actor.of(actor),
        address=address,
        now=now,
    )
    assert change is not None  # no source alert: nothing to conflict with
    return change


def _alert_place(conn: Connection, alert: Mapping[str, Any]) -> tuple[float | None, float | None]:
    """Where an alert is: its point, or its grid cell's centre (a correlation without a located signal)."""
    if alert["lon"] is not None and alert["lat"] is not None:
        return float(alert["lon"]), float(alert["lat"])
    if alert["grid_id"]:
        cell = conn.execute(
            sa.select(GridCell.center_lon, GridCell.center_lat).where(GridCell.grid_id == alert["grid_id"])
        ).first()
        if cell is not None:
            return float(cell.center_lon), float(cell.center_lat)
    return None, None


def incident_of_alert(conn: Connection, alert_id: int) -> str | None:
    """The incident opened from, or linked to, an alert."""
    opened = conn.execute(
        sa.select(_INCIDENTS.c.incident_id).where(_INCIDENTS.c.source_alert_id == alert_id)
    ).scalar_one_or_none()
    return opened or incident_for(conn, IncidentLinkKind.ALERT, alert_id)


def _evidence_ids(evidence: Mapping[str, Any] | None) -> set[str]:
    """Ids named in a correlation alert's evidence (tickets, video events, devices)."""
    found: set[str] = set()
    for item in [(evidence or {}).get("first"), *((evidence or {}).get("recent") or [])]:
        for members in ((item or {}).get("signals") or {}).values():
            found.update(str(m["id"]) for m in members if isinstance(m, Mapping) and m.get("id"))
    return found


def _link_evidence(
    conn: Connection, incident_id: str, alert: Mapping[str, Any], actor: Actor, now: datetime
) -> None:
    """Link the tickets and the cases (through their video sightings) behind a correlation alert."""
    ids = sorted(_evidence_ids(alert["evidence"]))
    if not ids:
        return
    ticket_ids = conn.execute(
        sa.select(HotlineTicket.ticket_id).where(HotlineTicket.ticket_id.in_(ids))
    ).scalars()
    case_ids = conn.execute(
        sa.select(CaseEvent.case_id).where(CaseEvent.event_id.in_(ids)).distinct()
    ).scalars()
    for kind, refs in ((IncidentLinkKind.TICKET, list(ticket_ids)), (IncidentLinkKind.CASE, list(case_ids))):
        for ref in sorted(refs):
            if incident_for(conn, kind, ref) is None:
                link(conn, incident_id, kind, ref, actor=actor, now=now)


def open_for_alert(
    conn: Connection,
    alert_id: int,
    *,
    actor: Actor | str,
    now: datetime,
    incident_type_key: str | None = None,
    source: IncidentSource = IncidentSource.ALERT,
    address: str | None = None,
    comment: str | None = None,
) -> IncidentChange:
    """The incident of an alert: opened now, or the one it already has (``created`` False).

    One incident per alert, whoever asks and however often: a unique index on
    ``source_alert_id`` admits one insert. The alert is linked, and so are the tickets and
    cases its evidence names (a correlation alert's 12345 calls and video sightings).
    No severity check here: :func:`open_from_alert` is the duty officer's door with that
    check; the rule sink calls this for rules that say ``open_incident = true``.
    """
    who = Actor.of(actor)
    for _attempt in range(lc.MAX_ATTEMPTS):
        existing = incident_of_alert(conn, alert_id)
        if existing is not None:
            view = get_incident(conn, existing)
            assert view is not None
            return IncidentChange("report", view, view.state, who.username, now, created=False)
        alert = conn.execute(sa.select(Alert.__table__).where(Alert.id == alert_id)).mappings().first()
        if alert is None:
            raise EntityNotFound(alerts.ALERT_LIFECYCLE, alert_id)
        lon, lat = _alert_place(conn, alert)
        area = None if lon is None or lat is None else Area.circle(lon, lat, DEFAULT_RADIUS_M)
        change = _insert_incident(
            conn,
            incident_type_key=incident_type_key or type_for_rule(alert["rule_id"]),
            title=alert["title"],
            description=comment or alert["message"],
            lon=lon,
            lat=lat,
            district_code=alert["district_code"],
            grid_id=alert["grid_id"],
            area=area,
            source=source,
            source_alert_id=alert_id,
            actor=who,
            address=address,
            now=now,
            payload={"rule_id": alert["rule_id"], "severity": alert["severity"]},
        )
        if change is None:
            continue  # another worker's incident for this alert committed first: read it
        incident_id = change.incident.incident_id
        link(conn, incident_id, IncidentLinkKind.ALERT, alert_id, actor=who, now=now)
        _link_evidence(conn, incident_id, alert, who, now)
        return change
    raise RuntimeError(f"alert {alert_id}: its incident kept changing while being opened; giving up")


def open_from_alert(
    conn: Connection,
    alert_id: int,
    *,
    actor: Actor | str,
    now: datetime,
    incident_type_key: str | None = None,
    address: str | None = None,
    comment: str | None = None,
) -> IncidentChange:
    """A duty officer turns a critical alert into an incident (接报 from the console).

    Only an open critical alert qualifies: a lesser one is handled in the alert console,
    or reported by hand with :func:`open_incident`. An alert nobody has acknowledged yet is
    acknowledged by the officer on the way (it stops ringing). Asking twice gives the same
    incident back (``created`` False).
    """
    who = Actor.of(actor)
    alert = conn.execute(sa.select(Alert.__table__).where(Alert.id == alert_id)).mappings().first()
    if alert is None:
        raise EntityNotFound(alerts.ALERT_LIFECYCLE, alert_id)
    existing = incident_of_alert(conn, alert_id)
    if existing is None:
        refusal = None
        if alert["severity"] != Severity.CRITICAL:
            refusal = Refusal(
                zh=f"告警 {alert_id} 不是特别严重（critical）级别，不能直接转为突发事件；"
                "如确属突发事件请手动接报",
                en=f"alert {alert_id} is {alert['severity']}, not critical; "
                "report the incident by hand instead",
            )
        elif alert["resolved_at"] is not None:
            ended = alerts.ALERT_LIFECYCLE.state(alert["state"]).label_zh
            refusal = Refusal(
                zh=f"告警 {alert_id} 已结束（{ended}），不能转为突发事件",
                en=f"alert {alert_id} has ended ({alert['state']}); cannot open an incident from it",
            )
        elif who.role is not None and who.role not in COMMAND_ROLES:
            refusal = Refusal(
                zh=f"{who.display_name or who.username}（角色 {who.role}）无权接报突发事件",
                en=f"{who.username} (role {who.role}) may not open an incident",
            )
        if refusal is not None:
            raise IllegalTransition(
                entity_type=alerts.ENTITY_TYPE,
                entity_id=alert_id,
                action="open_incident",
                state=alert["state"],
                reason=refusal,
            )
    change = open_for_alert(
        conn,
        alert_id,
        actor=who,
        now=now,
        incident_type_key=incident_type_key,
        address=address,
        comment=comment,
    )
    if change.created and alert["state"] in alerts.UNACKNOWLEDGED_STATES:
        # Another officer may have acknowledged it meanwhile: the alert is taken either way.
        with contextlib.suppress(IllegalTransition):
            alerts.acknowledge(
                conn,
                alert_id,
                actor=who,
                address=address,
                comment=f"转为突发事件 {change.incident.incident_id}",
                now=now,
            )
    return change


# --------------------------------------------------------------------------------------------
# Transitions


Changes = Mapping[str, Any] | Callable[[Mapping[str, Any]], Mapping[str, Any]] | None


def _transition(
    conn: Connection,
    incident_id: str,
    action: str,
    *,
    actor: Actor | str,
    address: str | None,
    comment: str | None,
    now: datetime,
    changes: Changes = None,
    params: Mapping[str, Any] | None = None,
    payload: Mapping[str, Any] | None = None,
    lifecycle: Lifecycle = INCIDENT_LIFECYCLE,
) -> IncidentChange:
    def values(row: Mapping[str, Any]) -> dict[str, Any]:
        extra = changes(row) if callable(changes) else (changes or {})
        return {"updated_at": now, **extra}

    moved = lc.apply_transition(
        conn,
        table=_INCIDENTS,
        id_column="incident_id",
        entity_id=incident_id,
        lifecycle=lifecycle,
        action=action,
        actor=actor,
        address=address,
        comment=comment,
        changes=values,
        event_table=INCIDENT_EVENTS,
        now=now,
        params=params,
        payload=payload,
    )
    return IncidentChange(
        action=action,
        incident=IncidentView.from_row(moved.after),
        from_state=moved.from_state,
        actor=moved.actor,
        at=now,
        comment=comment,
        event_row_id=moved.event_id,
    )


@functools.cache
def _stay_lifecycle(action: str, state: str) -> Lifecycle:
    only = replace(STAY_ACTIONS[action], sources=frozenset({state}), target=state)
    return replace(INCIDENT_LIFECYCLE, actions={action: only})


def _stay(
    conn: Connection,
    incident_id: str,
    action: str,
    *,
    actor: Actor | str,
    address: str | None,
    comment: str | None,
    now: datetime,
    changes: Changes = None,
    params: Mapping[str, Any] | None = None,
    payload: Mapping[str, Any] | None = None,
) -> IncidentChange:
    """An action that keeps the state, through a one-state copy of the lifecycle: the same
    compare-and-set, guards, event and audit as a transition."""
    act = STAY_ACTIONS[action]
    for _attempt in range(lc.MAX_ATTEMPTS):
        state = conn.execute(
            sa.select(_INCIDENTS.c.state).where(_INCIDENTS.c.incident_id == incident_id)
        ).scalar_one_or_none()
        if state is None:
            raise EntityNotFound(INCIDENT_LIFECYCLE, incident_id)
        if state not in act.sources:
            by, display, at = lc.last_entered(conn, INCIDENT_EVENTS, incident_id, state)
            raise IllegalTransition(
                entity_type=ENTITY_TYPE,
                entity_id=incident_id,
                action=action,
                state=state,
                reason=lc.state_refusal(
                    INCIDENT_LIFECYCLE, incident_id, act, state, by=by, by_display=display, at=at, now=now
                ),
                by=by,
                at=at,
            )
        try:
            return _transition(
                conn,
                incident_id,
                action,
                actor=actor,
                address=address,
                comment=comment,
                now=now,
                changes=changes,
                params=params,
                payload=payload,
                lifecycle=_stay_lifecycle(action, state),
            )
        except IllegalTransition as exc:
            # The state moved between our look and the transition's: decide again, unless
            # the refusal is about the incident itself (a guard, a role).
            if exc.state == state:
                raise
    raise IllegalTransition(
        entity_type=ENTITY_TYPE,
        entity_id=incident_id,
        action=action,
        state="?",
        reason=Refusal(
            zh=f"事件 {incident_id} 正被他人同时修改，请刷新后重试",
            en=f"incident {incident_id} keeps changing under us; refresh and try again",
        ),
    )


def respond(
    conn: Connection,
    incident_id: str,
    *,
    level: ResponseLevel | str,
    actor: Actor | str,
    commander: str | None = None,
    address: str | None = None,
    comment: str | None = None,
    now: datetime,
) -> IncidentChange:
    """响应: start the response at ``level`` (Ⅰ–Ⅳ), naming the commander (指挥长) if known."""
    parsed = ResponseLevel.parse(level)
    values: dict[str, Any] = {"responding_at": now, "level": parsed.value if parsed else None}
    if commander:
        values["commander"] = commander
    return _transition(
        conn,
        incident_id,
        "respond",
        actor=actor,
        address=address,
        comment=comment,
        now=now,
        changes=values,
        params={"level": level},
    )


def dismiss(
    conn: Connection,
    incident_id: str,
    *,
    reason: str,
    actor: Actor | str,
    address: str | None = None,
    now: datetime,
) -> IncidentChange:
    """核销: the report turned out not to be an emergency (a false alarm, handled as routine)."""
    return _transition(
        conn,
        incident_id,
        "dismiss",
        actor=actor,
        address=address,
        comment=reason,
        now=now,
        changes={"closed_at": now},
        params={"reason": reason},
    )


def escalate(
    conn: Connection,
    incident_id: str,
    *,
    level: ResponseLevel | str,
    reason: str,
    actor: Actor | str,
    address: str | None = None,
    now: datetime,
) -> IncidentChange:
    """升级响应 to a higher level (Ⅳ → Ⅲ …), with the reason; an event on the timeline."""
    return _level(conn, incident_id, "escalate", level, reason, actor, address, now)


def de_escalate(
    conn: Connection,
    incident_id: str,
    *,
    level: ResponseLevel | str,
    reason: str,
    actor: Actor | str,
    address: str | None = None,
    now: datetime,
) -> IncidentChange:
    """降级响应 to a lower level, with the reason; an event on the timeline."""
    return _level(conn, incident_id, "de_escalate", level, reason, actor, address, now)


def _level(
    conn: Connection,
    incident_id: str,
    action: str,
    level: ResponseLevel | str,
    reason: str,
    actor: Actor | str,
    address: str | None,
    now: datetime,
) -> IncidentChange:
    parsed = ResponseLevel.parse(level)
    return _stay(
        conn,
        incident_id,
        action,
        actor=actor,
        address=address,
        comment=reason,
        now=now,
        changes={"level": parsed.value} if parsed else None,
        params={"level": level, "reason": reason},
    )


def note(
    conn: Connection,
    incident_id: str,
    *,
    text: str,
    actor: Actor | str,
    address: str | None = None,
    now: datetime,
) -> IncidentChange:
    """研判/会商: a note on the timeline (an assessment of the situation, a decision taken)."""
    return _stay(
        conn, incident_id, "note", actor=actor, address=address, comment=text, now=now, params={"text": text}
    )


def start_handling(
    conn: Connection,
    incident_id: str,
    *,
    actor: Actor | str,
    address: str | None = None,
    comment: str | None = None,
    now: datetime,
) -> IncidentChange:
    """处置: the forces are at work on the scene."""
    return _transition(
        conn,
        incident_id,
        "start",
        actor=actor,
        address=address,
        comment=comment,
        now=now,
        changes={"handling_at": now},
    )


def assess(
    conn: Connection,
    incident_id: str,
    *,
    summary: str,
    actor: Actor | str,
    address: str | None = None,
    now: datetime,
) -> IncidentChange:
    """评估: handling is over; ``summary`` says what was done (the timeline keeps it)."""
    return _transition(
        conn,
        incident_id,
        "assess",
        actor=actor,
        address=address,
        comment=summary,
        now=now,
        changes={"assessing_at": now},
        params={"summary": summary},
    )


def close(
    conn: Connection,
    incident_id: str,
    *,
    assessment: str,
    actor: Actor | str,
    address: str | None = None,
    now: datetime,
) -> IncidentChange:
    """关闭 with the 评估 conclusion; refused while any dispatched resource is not released."""
    return _transition(
        conn,
        incident_id,
        "close",
        actor=actor,
        address=address,
        comment=assessment,
        now=now,
        changes={"closed_at": now, "assessment": assessment.strip()},
        params={"assessment": assessment, "unreleased": lambda: _unreleased(conn, incident_id)},
    )


def _unreleased(conn: Connection, incident_id: str) -> int:
    return conn.execute(
        sa.select(sa.func.count()).where(
            _DISPATCHES.c.incident_id == incident_id, _DISPATCHES.c.released_at.is_(None)
        )
    ).scalar_one()


# --------------------------------------------------------------------------------------------
# Resources


def _active_resources(conn: Connection, incident_id: str) -> set[str]:
    return set(
        conn.execute(
            sa.select(_DISPATCHES.c.resource_id).where(
                _DISPATCHES.c.incident_id == incident_id, _DISPATCHES.c.released_at.is_(None)
            )
        ).scalars()
    )


def dispatch_resources(
    conn: Connection,
    incident_id: str,
    resource_ids: Sequence[str],
    *,
    actor: Actor | str,
    address: str | None = None,
    comment: str | None = None,
    now: datetime,
) -> IncidentChange:
    """调度: send resources (fire stations, hospitals' ambulances, rescue teams, shelters to open).

    The first dispatch moves a responding incident to 调度; later ones (增派) keep the
    state. Each resource gets its own row, status ``dispatched``, with its straight-line
    distance from the incident and an estimated arrival (:func:`models.spatial.eta_s`).
    Unknown resource ids raise ``ValueError`` and change nothing; a resource already on
    this incident and not released is refused.
    """
    wanted = list(dict.fromkeys(str(r) for r in resource_ids))
    rows = {
        r.resource_id: r
        for r in conn.execute(
            sa.select(Resource.resource_id, Resource.kind, Resource.name, Resource.lon, Resource.lat).where(
                Resource.resource_id.in_(wanted)
            )
        )
    }
    unknown = [r for r in wanted if r not in rows]
    if unknown:
        raise ValueError(f"unknown resources / 无此救援力量: {', '.join(unknown)}")
    state = conn.execute(
        sa.select(_INCIDENTS.c.state).where(_INCIDENTS.c.incident_id == incident_id)
    ).scalar_one_or_none()
    if state is None:
        raise EntityNotFound(INCIDENT_LIFECYCLE, incident_id)
    params = {"resources": wanted, "active_resources": lambda: _active_resources(conn, incident_id)}
    payload = {"resources": wanted}
    if state in WORKING_STATES:
        change = _stay(
            conn,
            incident_id,
            "reinforce",
            actor=actor,
            address=address,
            comment=comment,
            now=now,
            params=params,
            payload=payload,
        )
    else:
        change = _transition(
            conn,
            incident_id,
            "dispatch",
            actor=actor,
            address=address,
            comment=comment,
            now=now,
            changes={"dispatching_at": now},
            params=params,
            payload=payload,
        )
    incident = change.incident
    who = Actor.of(actor)
    for resource_id in wanted:
        r = rows[resource_id]
        distance = (
            None
            if incident.lon is None or incident.lat is None
            else spatial.great_circle_m(incident.lon, incident.lat, r.lon, r.lat)
        )
        conn.execute(
            sa.insert(_DISPATCHES).values(
                incident_id=incident_id,
                resource_id=resource_id,
                kind=r.kind,
                name=r.name,
                status=DispatchStatus.DISPATCHED.value,
                distance_m=None if distance is None else round(distance, 1),
                eta_s=None if distance is None else round(spatial.eta_s(r.kind, distance)),
                dispatched_by=who.username,
                dispatched_at=now,
                version=1,
            )
        )
    return change


def _move_dispatch(
    conn: Connection,
    dispatch_id: int,
    action: str,
    *,
    actor: Actor | str,
    address: str | None,
    comment: str | None,
    now: datetime,
) -> DispatchView:
    """Move one dispatched resource by compare-and-set on its row; the step goes on the
    incident's timeline (the incident's state does not change)."""
    act = DISPATCH_LIFECYCLE.action(action)
    who = Actor.of(actor)
    stamp = {"arrive": "arrived_at", "release": "released_at"}[action]
    for _attempt in range(lc.MAX_ATTEMPTS):
        row = conn.execute(sa.select(_DISPATCHES).where(_DISPATCHES.c.id == dispatch_id)).mappings().first()
        if row is None:
            raise EntityNotFound(DISPATCH_LIFECYCLE, dispatch_id)
        label = f"{row['name']}（{dispatch_id}）"
        if row["status"] not in act.sources:
            raise IllegalTransition(
                entity_type=DISPATCH_LIFECYCLE.name,
                entity_id=dispatch_id,
                action=action,
                state=row["status"],
                reason=lc.state_refusal(
                    DISPATCH_LIFECYCLE, label, act, row["status"], by=None, by_display=None, at=None, now=now
                ),
            )
        if act.roles is not None and who.role is not None and who.role not in act.roles:
            raise IllegalTransition(
                entity_type=DISPATCH_LIFECYCLE.name,
                entity_id=dispatch_id,
                action=action,
                state=row["status"],
                reason=lc.role_refusal(DISPATCH_LIFECYCLE, act, who),
            )
        updated = (
            conn.execute(
                sa.update(_DISPATCHES)
                .where(_DISPATCHES.c.id == dispatch_id, _DISPATCHES.c.version == row["version"])
                .values(status=act.target, version=_DISPATCHES.c.version + 1, **{stamp: now})
                .returning(*_DISPATCHES.c)
            )
            .mappings()
            .first()
        )
        if updated is None:
            continue  # moved by someone else meanwhile: read again and decide again
        state = conn.execute(
            sa.select(_INCIDENTS.c.state).where(_INCIDENTS.c.incident_id == row["incident_id"])
        ).scalar_one()
        lc.record_event(
            conn,
            lifecycle=INCIDENT_LIFECYCLE,
            event_log=INCIDENT_EVENTS,
            entity_id=row["incident_id"],
            action=f"resource_{action}",
            from_state=state,
            to_state=state,
            actor=who,
            address=address,
            comment=comment,
            payload={
                "dispatch_id": dispatch_id,
                "resource_id": row["resource_id"],
                "status": [row["status"], act.target],
            },
            before={"status": row["status"]},
            after={"status": act.target},
            now=now,
        )
        return DispatchView.from_row(updated)
    raise IllegalTransition(
        entity_type=DISPATCH_LIFECYCLE.name,
        entity_id=dispatch_id,
        action=action,
        state="?",
        reason=Refusal(
            zh=f"救援力量 {dispatch_id} 正被他人同时修改，请刷新后重试",
            en=f"dispatch {dispatch_id} keeps changing under us; refresh and try again",
        ),
    )


def resource_arrived(
    conn: Connection,
    dispatch_id: int,
    *,
    actor: Actor | str,
    address: str | None = None,
    comment: str | None = None,
    now: datetime,
) -> DispatchView:
    """到达: a dispatched resource is on the scene."""
    return _move_dispatch(conn, dispatch_id, "arrive", actor=actor, address=address, comment=comment, now=now)


def release_resource(
    conn: Connection,
    dispatch_id: int,
    *,
    actor: Actor | str,
    address: str | None = None,
    comment: str | None = None,
    now: datetime,
) -> DispatchView:
    """撤离: a resource is released (from the road or from the scene) and may go elsewhere."""
    return _move_dispatch(
        conn, dispatch_id, "release", actor=actor, address=address, comment=comment, now=now
    )


# --------------------------------------------------------------------------------------------
# Links


def link(
    conn: Connection,
    incident_id: str,
    kind: IncidentLinkKind | str,
    ref_id: str | int,
    *,
    actor: Actor | str,
    address: str | None = None,
    now: datetime,
) -> bool:
    """Link an alert, ticket or case to the incident; True when linked now, False when it
    already was. Something linked to another incident is refused (it belongs to one)."""
    kind = IncidentLinkKind(kind)
    ref = str(ref_id)
    who = Actor.of(actor)
    state = conn.execute(
        sa.select(_INCIDENTS.c.state).where(_INCIDENTS.c.incident_id == incident_id)
    ).scalar_one_or_none()
    if state is None:
        raise EntityNotFound(INCIDENT_LIFECYCLE, incident_id)
    target = {
        IncidentLinkKind.ALERT: (Alert.__table__.c.id, int(ref) if ref.isdigit() else -1),
        IncidentLinkKind.TICKET: (HotlineTicket.__table__.c.ticket_id, ref),
        IncidentLinkKind.CASE: (CaseRow.__table__.c.case_id, ref),
    }[kind]
    if conn.execute(sa.select(target[0]).where(target[0] == target[1])).first() is None:
        raise ValueError(f"no {kind.value} {ref} to link / 无此{_KIND_ZH[kind]} {ref}")
    stmt = (
        dialect_insert(conn, _LINKS)
        .values(incident_id=incident_id, kind=kind.value, ref_id=ref, linked_at=now, linked_by=who.username)
        .on_conflict_do_nothing(index_elements=["kind", "ref_id"])
        .returning(_LINKS.c.id)
    )
    if conn.execute(stmt).first() is None:
        owner = incident_for(conn, kind, ref)
        if owner == incident_id:
            return False
        raise IllegalTransition(
            entity_type=ENTITY_TYPE,
            entity_id=incident_id,
            action="link",
            state=state,
            reason=Refusal(
                zh=f"{_KIND_ZH[kind]} {ref} 已关联事件 {owner}，不能重复关联",
                en=f"{kind.value} {ref} is already linked to incident {owner}",
            ),
        )
    lc.record_event(
        conn,
        lifecycle=INCIDENT_LIFECYCLE,
        event_log=INCIDENT_EVENTS,
        entity_id=incident_id,
        action="link",
        from_state=state,
        to_state=state,
        actor=who,
        address=address,
        comment=None,
        payload={"kind": kind.value, "ref_id": ref},
        before=None,
        after={"link": f"{kind.value}:{ref}"},
        now=now,
    )
    return True


_KIND_ZH = {IncidentLinkKind.ALERT: "告警", IncidentLinkKind.TICKET: "工单", IncidentLinkKind.CASE: "案卷"}


# --------------------------------------------------------------------------------------------
# Spatial


@dataclass(frozen=True, slots=True)
class AreaHit:
    """A device, open ticket or open case inside the affected area."""

    kind: Literal["device", "ticket", "case"]
    id: str
    label: str
    state: str | None
    district_code: str | None
    lon: float
    lat: float
    distance_m: float


@dataclass(frozen=True, slots=True)
class AffectedArea:
    """The affected area and what is inside it, each nearest to the centre first."""

    area: Area
    devices: list[AreaHit]
    tickets: list[AreaHit]
    cases: list[AreaHit]


def area_of(incident: IncidentView) -> Area | None:
    """The incident's stored area (drawn polygon, or circle of ``radius_m``), if it has one."""
    if incident.area_kind == "polygon" and incident.area is not None:
        return Area.drawn(incident.area, None if incident.lon is None else (incident.lon, incident.lat))
    if incident.lon is not None and incident.lat is not None and incident.radius_m:
        return Area.circle(incident.lon, incident.lat, incident.radius_m)
    return None


def affected_area(
    bind: spatial.Bind,
    incident_id: str | None = None,
    *,
    area: Area | None = None,
    radius_m: float | None = None,
    incident: IncidentView | None = None,
) -> AffectedArea:
    """The devices, open 12345 tickets and open urban cases inside an area.

    The area is ``area`` when given; else the incident's, with ``radius_m`` (1, 3 or 5 km
    on the page) replacing its radius for a what-if look without changing the incident.
    PostGIS and the embedded backend give the same answer (see :mod:`models.spatial`).
    Tickets carry no caller data. Raises ``LookupError`` for an unknown incident and
    ``ValueError`` when neither an area nor an incident with a place is given. ``incident``:
    the incident as the caller just read it (not read again).
    """
    with spatial.connection(bind) as conn:
        if area is None:
            if incident_id is None:
                raise ValueError("affected_area needs an incident or an area")
            if incident is None or incident.incident_id != incident_id:
                incident = get_incident(conn, incident_id)
            if incident is None:
                raise EntityNotFound(INCIDENT_LIFECYCLE, incident_id)
            if radius_m is not None:
                if incident.lon is None or incident.lat is None:
                    raise ValueError(f"incident {incident_id} has no position for a radius")
                area = Area.circle(incident.lon, incident.lat, radius_m)
            else:
                area = area_of(incident)
            if area is None:
                raise ValueError(f"incident {incident_id} has no affected area yet / 事件尚未划定影响范围")
        d = Device.__table__
        devices = [
            AreaHit(
                "device",
                r["device_id"],
                r["name"] or r["type"],
                r["type"],
                r["district_code"],
                r["lon"],
                r["lat"],
                r["distance_m"],
            )
            for r in spatial.points_in_area(conn, d, area, ["device_id", "name", "type", "district_code"])
        ]
        t = HotlineTicket.__table__
        open_tickets = [
            AreaHit(
                "ticket",
                r["ticket_id"],
                f"{r['category']}：{r['title']}",
                r["state"],
                r["district_code"],
                r["lon"],
                r["lat"],
                r["distance_m"],
            )
            for r in spatial.points_in_area(
                conn,
                t,
                area,
                ["ticket_id", "category", "title", "state", "district_code"],
                [t.c.state.in_(sorted(tickets.OPEN_STATES))],
            )
        ]
        c = CaseRow.__table__
        open_cases = [
            AreaHit(
                "case",
                r["case_id"],
                r["subcategory"] or r["category"],
                r["state"],
                r["district_code"],
                r["lon"],
                r["lat"],
                r["distance_m"],
            )
            for r in spatial.points_in_area(
                conn,
                c,
                area,
                ["case_id", "category", "subcategory", "state", "district_code"],
                [c.c.state.in_(sorted(cases.OPEN_STATES))],
            )
        ]
    return AffectedArea(area, devices, open_tickets, open_cases)


def set_area(
    conn: Connection,
    incident_id: str,
    *,
    actor: Actor | str,
    now: datetime,
    radius_m: float | None = None,
    polygon: BaseGeometry | Sequence[tuple[float, float]] | None = None,
    address: str | None = None,
) -> IncidentView:
    """划定影响范围: a buffer of ``radius_m`` around the incident's point, or a drawn polygon.

    Written on the timeline; the version moves so a transition that read the row before
    re-reads it. Raises ``ValueError`` for a bad radius or polygon.
    """
    incident = get_incident(conn, incident_id)
    if incident is None:
        raise EntityNotFound(INCIDENT_LIFECYCLE, incident_id)
    if incident.state == S.CLOSED:
        raise IllegalTransition(
            entity_type=ENTITY_TYPE,
            entity_id=incident_id,
            action="area",
            state=incident.state,
            reason=Refusal(
                zh=f"事件 {incident_id} 已关闭，不能修改影响范围", en=f"incident {incident_id} is closed"
            ),
        )
    area = Area.of(lon=incident.lon, lat=incident.lat, radius_m=radius_m, polygon=polygon)
    values = {**_area_values(area), "updated_at": now, "version": _INCIDENTS.c.version + 1}
    if incident.lon is None:
        values |= {"lon": area.lon, "lat": area.lat, "geom": Point(area.lon, area.lat)}
    conn.execute(sa.update(_INCIDENTS).where(_INCIDENTS.c.incident_id == incident_id).values(values))
    lc.record_event(
        conn,
        lifecycle=INCIDENT_LIFECYCLE,
        event_log=INCIDENT_EVENTS,
        entity_id=incident_id,
        action="area",
        from_state=incident.state,
        to_state=incident.state,
        actor=actor,
        address=address,
        comment=None,
        payload={
            "area_kind": area.kind,
            "radius_m": area.radius_m,
            "polygon": area.polygon.wkt if area.kind == "polygon" else None,
        },
        before={"area_kind": incident.area_kind, "radius_m": incident.radius_m},
        after={"area_kind": area.kind, "radius_m": area.radius_m},
        now=now,
    )
    view = get_incident(conn, incident_id)
    assert view is not None
    return view


def nearest_resources(
    bind: spatial.Bind,
    incident_id: str,
    *,
    kinds: Sequence[str] | None = None,
    per_kind: int = 3,
    incident: IncidentView | None = None,
) -> dict[str, list[ResourceHit]]:
    """The ``per_kind`` nearest resources of each kind to the incident, with straight-line
    distance (``distance_m``: geodesic metres — WGS-84 spheroid on PostGIS, mean sphere on
    the embedded backend) and estimated arrival (``eta_s``: see :data:`models.spatial.TRAVEL`).
    An incident without a position has no nearest resources (an empty dict). ``incident``:
    the incident as the caller just read it (not read again)."""
    with spatial.connection(bind) as conn:
        if incident is None or incident.incident_id != incident_id:
            incident = get_incident(conn, incident_id)
        if incident is None:
            raise EntityNotFound(INCIDENT_LIFECYCLE, incident_id)
        if incident.lon is None or incident.lat is None:
            return {}
        return spatial.nearest_by_kind(conn, incident.lon, incident.lat, kinds, per_kind)


# --------------------------------------------------------------------------------------------
# Public warning draft (CAP 1.2)

#: China's warning colours → CAP severity. 黄色 → Moderate follows a real national sample
#: (see /standards: GB/T 35965.1 profile); the others keep the same order on CAP's scale.
CAP_SEVERITY: Mapping[WarningColour, str] = MappingProxyType(
    {
        WarningColour.RED: "Extreme",
        WarningColour.ORANGE: "Severe",
        WarningColour.YELLOW: "Moderate",
        WarningColour.BLUE: "Minor",
    }
)
_COLOUR_ZH = {
    WarningColour.RED: "红色",
    WarningColour.ORANGE: "橙色",
    WarningColour.YELLOW: "黄色",
    WarningColour.BLUE: "蓝色",
}
CAP_URGENCY = ("Immediate", "Expected", "Future", "Past", "Unknown")
CAP_CERTAINTY = ("Observed", "Likely", "Possible", "Unlikely", "Unknown")
CAP_CATEGORIES = (
    "Geo",
    "Met",
    "Safety",
    "Security",
    "Rescue",
    "Fire",
    "Health",
    "Env",
    "Transport",
    "Infra",
    "CBRNE",
    "Other",
)
CAP_RESPONSE_TYPES = (
    "Shelter",
    "Evacuate",
    "Prepare",
    "Execute",
    "Avoid",
    "Monitor",
    "Assess",
    "AllClear",
    "None",
)
#: A warning stays in force this long unless the draft says otherwise.
DEFAULT_VALIDITY = timedelta(hours=24)
SENDER_NAME_ZH = "广安市突发事件预警信息发布中心"
SENDER_NAME_EN = "Guang'an Emergency Warning Centre"


class WarningDraftError(ValueError):
    """A draft that a CAP message could not be made from; the message says which field."""


@dataclass(frozen=True, slots=True)
class WarningDraft:
    """A public warning drafted from an incident: every field a CAP 1.2 ``info`` block (one in
    zh-CN, one in en-US) and its ``area`` need. The ``alert`` envelope (identifier, sender,
    sent, status, msgType, scope) is the exporter's.

    ``polygon`` is CAP's "lat,lon lat,lon …" (closed, ≥ 4 pairs); ``circle`` is
    "lat,lon radius_km". At least one is set.
    """

    incident_id: str
    colour: str
    severity: str
    urgency: str
    certainty: str
    category: tuple[str, ...]
    response_type: tuple[str, ...]
    event_zh: str
    event_en: str
    headline_zh: str
    headline_en: str
    description_zh: str
    description_en: str
    instruction_zh: str
    instruction_en: str
    area_desc_zh: str
    area_desc_en: str
    polygon: str | None
    circle: str | None
    #: GB/T 2260 codes of the districts the area touches (CAP geocode valueName "GB/T 2260")
    geocodes: tuple[str, ...]
    onset: datetime
    expires: datetime
    sender_name_zh: str
    sender_name_en: str
    drafted_at: datetime
    drafted_by: str
    level: str | None = None

    def __post_init__(self) -> None:
        def need(ok: bool, what: str) -> None:
            if not ok:
                raise WarningDraftError(f"warning draft for {self.incident_id}: {what}")

        need(self.colour in {c.value for c in WarningColour}, f"colour {self.colour!r} is not 蓝/黄/橙/红")
        need(self.severity in CAP_SEVERITY.values(), f"severity {self.severity!r} is not a CAP severity")
        need(self.urgency in CAP_URGENCY, f"urgency {self.urgency!r} is not a CAP urgency")
        need(self.certainty in CAP_CERTAINTY, f"certainty {self.certainty!r} is not a CAP certainty")
        need(bool(self.category) and set(self.category) <= set(CAP_CATEGORIES), f"category {self.category!r}")
        need(set(self.response_type) <= set(CAP_RESPONSE_TYPES), f"response_type {self.response_type!r}")
        for name in (
            "event_zh",
            "event_en",
            "headline_zh",
            "headline_en",
            "description_zh",
            "description_en",
            "instruction_zh",
            "instruction_en",
            "area_desc_zh",
            "area_desc_en",
        ):
            need(bool(str(getattr(self, name)).strip()), f"{name} is empty")
        need(self.polygon is not None or self.circle is not None, "an area needs a polygon or a circle")
        if self.polygon is not None:
            pairs = self.polygon.split()
            need(len(pairs) >= 4 and pairs[0] == pairs[-1], "a CAP polygon needs ≥ 4 pairs, first = last")
        need(self.expires > self.onset, "expires must be after onset")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("onset", "expires", "drafted_at"):
            data[key] = data[key].isoformat()
        for key in ("category", "response_type", "geocodes"):
            data[key] = list(data[key])
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WarningDraft:
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        for key in ("onset", "expires", "drafted_at"):
            values[key] = datetime.fromisoformat(values[key])
        for key in ("category", "response_type", "geocodes"):
            values[key] = tuple(values[key])
        return cls(**values)


def cap_polygon(shape: BaseGeometry) -> str:
    """A polygon's outer ring as CAP wants it: "lat,lon" pairs, closed."""
    return " ".join(f"{lat:.5f},{lon:.5f}" for lon, lat in shape.exterior.coords)


def _district_names(codes: Iterable[str]) -> tuple[str, str]:
    from geo.boundaries import district_by_code

    zh, en = [], []
    for code in codes:
        try:
            d = district_by_code(code)
        except KeyError:
            continue
        zh.append(d.name)
        en.append(d.name_en)
    return "、".join(zh), ", ".join(en)


def _touched_districts(conn: Connection, area: Area, fallback: str | None) -> tuple[str, ...]:
    """Districts the area touches: PostGIS or shapely on the stored boundaries."""
    from models.schema import District

    d = District.__table__
    if conn.dialect.name == "postgresql":
        codes = (
            conn.execute(
                sa.select(d.c.district_code)
                .where(
                    sa.func.ST_Intersects(d.c.geom, sa.func.ST_GeomFromText(area.polygon.wkt, spatial.SRID))
                )
                .order_by(d.c.district_code)
            )
            .scalars()
            .all()
        )
    else:
        codes = [
            r.district_code
            for r in conn.execute(sa.select(d.c.district_code, d.c.geom).order_by(d.c.district_code))
            if r.geom is not None and r.geom.intersects(area.polygon)
        ]
    if not codes and fallback:
        codes = [fallback]
    return tuple(codes)


def draft_warning(
    conn: Connection,
    incident_id: str,
    *,
    actor: Actor | str,
    now: datetime,
    colour: WarningColour | str | None = None,
    urgency: str = "Immediate",
    certainty: str = "Observed",
    expires: datetime | None = None,
    headline_zh: str | None = None,
    description_zh: str | None = None,
    instruction_zh: str | None = None,
    headline_en: str | None = None,
    description_en: str | None = None,
    instruction_en: str | None = None,
    address: str | None = None,
) -> WarningDraft:
    """Draft the public warning of an incident and keep it (a new draft each time; the
    newest is current). Everything is filled from the incident — colour from its response
    level (Ⅰ 红 … Ⅳ 蓝; 蓝 before a level is set), CAP severity from the colour, texts from
    its type, title and description, area from its affected area — and any field given
    here replaces the filled one. Raises ``WarningDraftError`` (a ``ValueError``) naming
    the field a CAP message could not be made from, and ``IllegalTransition`` for a
    closed incident.
    """
    incident = get_incident(conn, incident_id)
    if incident is None:
        raise EntityNotFound(INCIDENT_LIFECYCLE, incident_id)
    if incident.state == S.CLOSED:
        raise IllegalTransition(
            entity_type=ENTITY_TYPE,
            entity_id=incident_id,
            action="warning",
            state=incident.state,
            reason=Refusal(
                zh=f"事件 {incident_id} 已关闭，不能起草预警",
                en=f"incident {incident_id} is closed; no warning",
            ),
        )
    area = area_of(incident)
    if area is None:
        raise WarningDraftError(f"warning draft for {incident_id}: the incident has no affected area yet")
    level = ResponseLevel.parse(incident.level)
    chosen = WarningColour(colour) if colour is not None else (level.colour if level else WarningColour.BLUE)
    kind = incident_type(incident.type)
    codes = _touched_districts(conn, area, incident.district_code)
    names_zh, names_en = _district_names(codes)
    names_zh = names_zh or "广安市"
    names_en = names_en or "Guang'an"
    if area.kind == "circle":
        assert area.radius_m is not None
        km = area.radius_m / 1000
        area_zh = f"{names_zh}事发地周边{km:g}公里范围"
        area_en = f"Within {km:g} km of the incident site, {names_en}"
        polygon, circle = None, f"{area.lat:.5f},{area.lon:.5f} {km:g}"
    else:
        area_zh = f"{names_zh}划定影响区域"
        area_en = f"The marked area in {names_en}"
        polygon, circle = cap_polygon(area.polygon), None
    colour_zh = _COLOUR_ZH[chosen]
    draft = WarningDraft(
        incident_id=incident_id,
        colour=chosen.value,
        severity=CAP_SEVERITY[chosen],
        urgency=urgency,
        certainty=certainty,
        category=(kind.cap_category,),
        response_type=(kind.response_type,),
        event_zh=kind.label_zh,
        event_en=kind.label_en,
        headline_zh=headline_zh or f"{names_zh}{kind.label_zh}{colour_zh}预警",
        headline_en=headline_en
        or f"{chosen.value.capitalize()} warning: {kind.label_en.lower()} in {names_en}",
        description_zh=description_zh or f"{incident.title}。{incident.description or ''}".strip("。") + "。",
        description_en=description_en
        or f"{kind.label_en} in {names_en} ({area_en.lower()}). Responders are on the scene.",
        instruction_zh=instruction_zh or kind.instruction_zh,
        instruction_en=instruction_en or kind.instruction_en,
        area_desc_zh=area_zh,
        area_desc_en=area_en,
        polygon=polygon,
        circle=circle,
        geocodes=codes,
        onset=now,
        expires=expires or now + DEFAULT_VALIDITY,
        sender_name_zh=SENDER_NAME_ZH,
        sender_name_en=SENDER_NAME_EN,
        drafted_at=now,
        drafted_by=Actor.of(actor).username,
        level=incident.level,
    )
    conn.execute(
        sa.insert(_WARNINGS).values(
            incident_id=incident_id,
            drafted_at=now,
            drafted_by=draft.drafted_by,
            colour=draft.colour,
            severity=draft.severity,
            urgency=draft.urgency,
            certainty=draft.certainty,
            draft=draft.to_json(),
        )
    )
    lc.record_event(
        conn,
        lifecycle=INCIDENT_LIFECYCLE,
        event_log=INCIDENT_EVENTS,
        entity_id=incident_id,
        action="warning",
        from_state=incident.state,
        to_state=incident.state,
        actor=actor,
        address=address,
        comment=draft.headline_zh,
        payload={"colour": draft.colour, "severity": draft.severity},
        before=None,
        after={"warning": draft.colour},
        now=now,
    )
    return draft


def latest_warning(conn: Connection, incident_id: str) -> WarningDraft | None:
    """The newest warning draft of an incident, or None."""
    data = conn.execute(
        sa.select(_WARNINGS.c.draft)
        .where(_WARNINGS.c.incident_id == incident_id)
        .order_by(_WARNINGS.c.drafted_at.desc(), _WARNINGS.c.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    return None if data is None else WarningDraft.from_json(data)


__all__ = [
    "CAP_SEVERITY",
    "COMMAND_ROLES",
    "DEFAULT_RADIUS_M",
    "DISPATCH_LIFECYCLE",
    "INCIDENT_EVENTS",
    "INCIDENT_LIFECYCLE",
    "INCIDENT_TYPES",
    "OPEN_STATES",
    "STAY_ACTIONS",
    "AffectedArea",
    "AreaHit",
    "DispatchStatus",
    "DispatchView",
    "IncidentChange",
    "IncidentDetail",
    "IncidentState",
    "IncidentType",
    "IncidentView",
    "LinkView",
    "ResourceView",
    "ResponseLevel",
    "TimelineEntry",
    "WarningDraft",
    "WarningDraftError",
    "action_label_zh",
    "affected_area",
    "all_resources",
    "allowed_actions",
    "announce",
    "area_of",
    "assess",
    "cap_polygon",
    "change_note",
    "close",
    "de_escalate",
    "dismiss",
    "dispatch_resources",
    "dispatched_resources",
    "draft_warning",
    "escalate",
    "get_incident",
    "incident_for",
    "incident_of_alert",
    "incident_type",
    "incident_view",
    "incidents_of_alerts",
    "latest_warning",
    "link",
    "links",
    "nearest_resources",
    "note",
    "open_for_alert",
    "open_from_alert",
    "open_incident",
    "open_incidents",
    "release_resource",
    "resource_arrived",
    "respond",
    "set_area",
    "start_handling",
    "timeline",
    "type_for_rule",
]
