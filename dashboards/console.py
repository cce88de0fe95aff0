"""The duty officers' console (``/alerts``): queue rows, SLA countdowns, filters, evidence,
history and the officer actions, as plain functions the page calls and tests call directly.

Everything here takes its clock as an argument, so a countdown or an age is the same in a
test as on the wall. Times shown to people are city time (Asia/Shanghai), whatever zone
the server runs in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import plotly.graph_objects as go
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dashboards import theme
from dashboards.i18n import STRINGS, t
from geo.boundaries import DISTRICTS, districts_geojson
from models import alerts as alert_model
from models.alerts import SEVERITY_RANK, AlertChange, AlertEventView
from models.clock import CITY_TZ
from models.lifecycle import Actor, EntityNotFound, IllegalTransition
from models.live import LiveAlert, LiveStore

#: Under this much time left the countdown turns amber: a critical alert has two minutes
#: in all, so one minute left is the point where an officer must drop what they are doing.
DUE_SOON_S = 60

#: Officer actions offered by the console, in button order; each is a ``models.alerts``
#: function with the same name.
ACTIONS: tuple[str, ...] = ("acknowledge", "start", "assign", "escalate", "resolve", "mark_false_alarm")

#: Filter choices, in the order officers think of them.
DOMAINS: tuple[str, ...] = ("emergency", "urban", "ecology", "hotline", "system")
SEVERITIES: tuple[str, ...] = tuple(sorted(SEVERITY_RANK, key=SEVERITY_RANK.__getitem__))
QUEUE_STATES: tuple[str, ...] = ("new", "escalated", "acknowledged", "in_progress")

#: A comment is a note on an action, not a report: long pastes are cut here rather than
#: growing the event table without bound.
COMMENT_MAX = 500
#: Names sign the audit trail; the events' actor column holds 64 characters.
OFFICER_NAME_MAX = 32

_DISTRICT_NAMES = {d.code: d.name for d in DISTRICTS}


# --------------------------------------------------------------------------------------------
# Text helpers


def city_time(at: datetime | None, now: datetime | None = None) -> str:
    """``10:31:05`` today, ``07-14 10:31`` on another day, in city time; ``—`` for None."""
    if at is None:
        return "—"
    local = at.astimezone(CITY_TZ)
    if now is not None and local.date() == now.astimezone(CITY_TZ).date():
        return f"{local:%H:%M:%S}"
    return f"{local:%m-%d %H:%M}" if now is not None else f"{local:%Y-%m-%d %H:%M:%S}"


def duration_text(seconds: float) -> str:
    """``1:05`` (m:ss), ``2:03:04`` (h:mm:ss), ``3天4小时`` beyond a day; never negative."""
    total = max(0, int(seconds))
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return t("unit.duration_days", d=days, h=hours)
    if hours:
        return t("unit.duration_hms", h=hours, m=minutes, s=secs)
    return t("unit.duration_ms", m=minutes, s=secs)


def district_name(code: str | None) -> str:
    if not code:
        return "—"
    return _DISTRICT_NAMES.get(code, code)


def severity_label(severity: str) -> str:
    return t(f"console.severity.{severity}") if severity in SEVERITY_RANK else severity


def state_label(state: str | None) -> str:
    if not state:
        return "—"
    key = f"console.state.{state}"
    return t(key) if _known(key) else state


def action_label(action: str) -> str:
    key = f"console.action.{action}"
    return t(key) if _known(key) else action


def domain_label(domain: str) -> str:
    key = f"console.domain.{domain}"
    return t(key) if _known(key) else domain


def _known(key: str) -> bool:
    return key in STRINGS


def clean_comment(text: str | None) -> str | None:
    """A comment as stored: trimmed and bounded; empty means none. Never interpreted.

    The text stays exactly what the officer typed (no escaping here): pages render it as
    a Dash string child, which React puts in a text node, so markup in it is shown, not run.
    """
    if text is None:
        return None
    text = text.strip()[:COMMENT_MAX]
    return text or None


def clean_officer_name(name: str | None) -> str | None:
    """The name an officer typed, trimmed to fit the audit columns; None when blank."""
    if not name:
        return None
    name = " ".join(str(name).split())[:OFFICER_NAME_MAX]
    return name or None


# --------------------------------------------------------------------------------------------
# SLA countdown


@dataclass(frozen=True, slots=True)
class SlaStatus:
    """``state``: ``none`` (no deadline: acknowledged, or info), ``ok``, ``due_soon``, ``overdue``."""

    state: str
    text: str
    seconds_left: float | None


def sla_status(sla_due: datetime | None, now: datetime, *, state: str | None = None) -> SlaStatus:
    """The countdown to acknowledge an alert, as the queue shows it."""
    if sla_due is None:
        stopped = state is not None and state not in alert_model.UNACKNOWLEDGED_STATES
        return SlaStatus("none", t("console.sla.stopped") if stopped else t("console.sla.none"), None)
    left = (sla_due - now).total_seconds()
    if left <= 0:
        return SlaStatus("overdue", t("console.sla.overdue", over=duration_text(-left)), left)
    if left <= DUE_SOON_S:
        return SlaStatus("due_soon", t("console.sla.due_soon", left=duration_text(left)), left)
    return SlaStatus("ok", t("console.sla.ok", left=duration_text(left)), left)


# --------------------------------------------------------------------------------------------
# Countdowns that tick in the browser
#
# A queue of hundreds of rows changes a few times a minute, but its SLA countdowns and ages
# change every second. The browser (assets/cityops-console.js) counts them on: each such
# cell carries its instant as a data-* attribute, the table around it (or the cell itself)
# the catalogue's texts in the viewer's language, and the script writes what sla_status /
# duration_text would write at that moment. So the server need not resend the table when
# only time passed. The texts are on the table, once: on each of hundreds of cells they
# would make every table sent a third bigger.

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)

#: data-* attribute → catalogue key: the duration formats (duration_text's three forms).
DURATION_TEXT_KEYS: dict[str, str] = {
    "data-duration-ms": "unit.duration_ms",
    "data-duration-hms": "unit.duration_hms",
    "data-duration-days": "unit.duration_days",
}
#: data-* attribute → catalogue key: the countdown's templates, one per state.
SLA_TEXT_KEYS: dict[str, str] = {
    "data-sla-ok": "console.sla.ok",
    "data-sla-due-soon": "console.sla.due_soon",
    "data-sla-overdue": "console.sla.overdue",
}


def epoch_ms(at: datetime) -> int:
    """``at`` as milliseconds since 1970 UTC (what a browser's ``Date`` counts in)."""
    return (at - _EPOCH) // _MS


def countdown_texts() -> dict[str, str]:
    """The data-* attributes of an element around ticking cells (or of one such cell): the
    templates in the current language and the due-soon threshold, as the script reads them."""
    texts = {a: t(k) for a, k in (DURATION_TEXT_KEYS | SLA_TEXT_KEYS).items()}
    return {**texts, "data-sla-due-soon-s": str(DUE_SOON_S)}


def age_data(since: datetime) -> dict[str, str]:
    """The data-* attribute of a cell showing ``duration_text(now - since)``."""
    return {"data-since": str(epoch_ms(since))}


def sla_data(sla_due: datetime | None) -> dict[str, str]:
    """The data-* attribute of a cell showing ``sla_status(sla_due, now).text``: none
    without a deadline (that text does not change with time)."""
    return {} if sla_due is None else {"data-sla-due": str(epoch_ms(sla_due))}


# --------------------------------------------------------------------------------------------
# Queue


@dataclass(frozen=True, slots=True)
class Filters:
    """What the officer narrowed the queue to; None = everything."""

    domain: str | None = None
    severity: str | None = None
    district_code: str | None = None
    state: str | None = None

    @classmethod
    def of(cls, domain: Any, severity: Any, district_code: Any, state: Any) -> Filters:
        # Dropdowns send "" or None when cleared; both mean "all".
        return cls(domain or None, severity or None, district_code or None, state or None)

    def admits(self, alert: LiveAlert) -> bool:
        return (
            (self.domain is None or alert.domain == self.domain)
            and (self.severity is None or alert.severity == self.severity)
            and (self.district_code is None or alert.district_code == self.district_code)
            and (self.state is None or alert.state == self.state)
        )


def queue_order(alerts: Iterable[LiveAlert]) -> list[LiveAlert]:
    """Most severe first, then oldest first, then lowest id (stable for equal times).

    Redis already returns this order; sorting again costs nothing for a few hundred rows
    and keeps the order right when an alert's severity changed between two reads.
    """
    return sorted(
        alerts,
        key=lambda a: (SEVERITY_RANK.get(a.severity, len(SEVERITY_RANK)), a.opened_at, a.id),
    )


def filter_alerts(alerts: Iterable[LiveAlert], filters: Filters) -> list[LiveAlert]:
    return [a for a in alerts if filters.admits(a)]


@dataclass(frozen=True, slots=True)
class QueueRow:
    """One line of the queue, ready to draw: every field is plain text or a flag."""

    id: int
    severity: str
    severity_label: str
    colour: str
    title: str
    district: str
    state: str
    state_label: str
    age: str
    sla: SlaStatus
    handler: str
    audible: bool
    escalation_level: int
    #: The instants the age and the SLA countdown are counted from (they tick in the browser).
    opened_at: datetime
    sla_due: datetime | None


def queue_rows(alerts: Iterable[LiveAlert], now: datetime, audible: set[int] | None = None) -> list[QueueRow]:
    """The rows of the queue in console order.

    ``audible`` is the live audible set; when given it decides which rows flash, so a row
    stops flashing the moment anyone acknowledges, even if its hash was read a moment earlier.
    """
    rows = []
    for a in queue_order(alerts):
        rows.append(
            QueueRow(
                id=a.id,
                severity=a.severity,
                severity_label=severity_label(a.severity),
                colour=a.colour,
                title=a.title,
                district=district_name(a.district_code),
                state=a.state,
                state_label=state_label(a.state),
                age=duration_text((now - a.opened_at).total_seconds()),
                sla=sla_status(a.sla_due, now, state=a.state),
                handler=a.assigned_to or a.acknowledged_by or "—",
                audible=(a.id in audible) if audible is not None else a.audible,
                escalation_level=a.escalation_level,
                opened_at=a.opened_at,
                sla_due=a.sla_due,
            )
        )
    return rows


def move_selection(ids: Sequence[int], selected: int | None, step: int) -> int | None:
    """The id ``step`` rows below (or above) ``selected``; the first row when none is selected.

    The keyboard does this in the browser; this is the same rule, for tests and for the
    server to fall back on when the selected alert left the queue.
    """
    if not ids:
        return None
    if selected not in ids:
        return ids[0]
    index = min(max(ids.index(selected) + step, 0), len(ids) - 1)
    return ids[index]


# --------------------------------------------------------------------------------------------
# Detail: evidence and history


@dataclass(frozen=True, slots=True)
class EvidenceLine:
    label: str
    value: str


_TIME_KEYS = frozenset({"observed_at", "ts", "since", "last_reading"})


def evidence_label(key: str) -> str:
    """The Chinese label of an evidence field; metric keys (``pm25``, ``smoke``) stay as they are."""
    catalogue_key = f"console.ev.{key}"
    return t(catalogue_key) if _known(catalogue_key) else key


def _value_text(key: str, value: Any) -> str:
    if value is None:
        return "—"
    if (key in _TIME_KEYS or key.endswith("_at")) and isinstance(value, str):
        try:
            return city_time(datetime.fromisoformat(value))
        except ValueError:
            return value
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, Mapping):
        # Nested items (one video event, one reading) on one line, each field labelled.
        return "，".join(f"{evidence_label(k)} {_value_text(k, v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return "；".join(_value_text(key, v) for v in value)
    return str(value)


def evidence_item_lines(item: Mapping[str, Any]) -> list[EvidenceLine]:
    """One evidence item (a reading, an event window …) as label/value lines, times in city time."""
    return [EvidenceLine(evidence_label(k), _value_text(k, v)) for k, v in item.items()]


@dataclass(frozen=True, slots=True)
class EvidenceView:
    first: list[EvidenceLine]
    recent: list[list[EvidenceLine]]
    total: int


def evidence_view(evidence: Mapping[str, Any] | None, *, recent_limit: int = 5) -> EvidenceView | None:
    """The stored evidence (``{"first", "recent", "total"}``), newest recent items first."""
    if not evidence:
        return None
    first = evidence.get("first") or {}
    recent = list(evidence.get("recent") or [])[-recent_limit:][::-1]
    return EvidenceView(
        first=evidence_item_lines(first) if isinstance(first, Mapping) else [],
        recent=[evidence_item_lines(r) for r in recent if isinstance(r, Mapping)],
        total=int(evidence.get("total") or len(recent)),
    )


@dataclass(frozen=True, slots=True)
class HistoryRow:
    time: str
    action: str
    transition: str
    actor: str
    address: str
    comment: str


def history_rows(events: Iterable[AlertEventView], now: datetime) -> list[HistoryRow]:
    """The alert's events, newest first (what happened last is what the officer needs)."""
    rows = []
    for e in sorted(events, key=lambda e: (e.ts, e.id), reverse=True):
        if e.from_state and e.to_state and e.from_state != e.to_state:
            transition = f"{state_label(e.from_state)} → {state_label(e.to_state)}"
        else:
            transition = state_label(e.to_state)
        rows.append(
            HistoryRow(
                time=city_time(e.ts, now),
                action=action_label(e.action),
                transition=transition,
                actor=e.actor or "—",
                address=e.address or "—",
                comment=e.comment or "",
            )
        )
    return rows


# --------------------------------------------------------------------------------------------
# Actions


@dataclass(frozen=True, slots=True)
class ActionOutcome:
    """What the officer is told after pressing a button; ``change`` is None when refused."""

    ok: bool
    message: str
    change: AlertChange | None = None


def perform_action(
    engine: sa.Engine,
    live: LiveStore,
    action: str,
    alert_id: int,
    *,
    actor: Actor,
    address: str | None,
    comment: str | None,
    now: datetime,
    assignee: str | None = None,
) -> ActionOutcome:
    """Run one officer action in its own transaction, then push the change to Redis.

    The push comes after the commit, so no page ever shows a change the database does not
    hold. A refused transition (someone else acknowledged first, wrong state) is an answer
    for the officer, not an error: its Chinese reason names who got there first.
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown console action {action!r}")
    function = getattr(alert_model, action)
    kwargs: dict[str, Any] = {
        "actor": actor,
        "address": address,
        "comment": clean_comment(comment),
        "now": now,
    }
    if action == "assign":
        kwargs["to"] = (assignee or "").strip()
    try:
        change = _in_transaction(engine, lambda conn: function(conn, alert_id, **kwargs))
    except IllegalTransition as exc:
        return ActionOutcome(False, t("console.action.refused", reason=exc.reason_zh))
    except EntityNotFound:
        return ActionOutcome(
            False, t("console.action.refused", reason=t("console.detail_missing", id=alert_id))
        )
    live.apply_alert_changes([change])
    return ActionOutcome(True, t("console.action.done", action=action_label(action), id=alert_id), change)


def _in_transaction(engine: sa.Engine, work: Callable[[Connection], AlertChange]) -> AlertChange:
    with engine.begin() as conn:
        return work(conn)


# --------------------------------------------------------------------------------------------
# Map

#: China's warning colours (the ``colour`` of an alert) as screen colours.
WARNING_HEX: dict[str, str] = {"red": "#e5383b", "orange": "#f77f00", "yellow": "#f5c400", "blue": "#3a86ff"}
#: Close enough to see the streets' scale around the alert, far enough to see its district.
DETAIL_ZOOM = 11.5
DISTRICT_LINE = "#5b7fae"


def location_figure(
    alert_id: int | None,
    lon: float | None,
    lat: float | None,
    colour: str,
    *,
    tile_url: str | None = None,
    centre: Mapping[str, float],
) -> go.Figure:
    """The alert's place on the offline map: district outlines and one marker, no text.

    ``uirevision`` is the alert id, so an officer's zoom and pan survive the live updates
    of the same alert and reset when they pick another one.
    """
    located = lon is not None and lat is not None
    fig = go.Figure(
        go.Scattermap(
            lon=[lon] if located else [],
            lat=[lat] if located else [],
            mode="markers",
            marker={"size": 18, "color": WARNING_HEX.get(colour, theme.ACCENT), "opacity": 0.95},
            hoverinfo="skip",
        )
    )
    style = theme.map_style(tile_url)
    fig.update_layout(
        map={
            "style": style,
            "center": {"lon": lon, "lat": lat} if located else dict(centre),
            "zoom": DETAIL_ZOOM if located else 7.8,
            # Outlines as a line layer of the style's own GeoJSON: no source leaves the page.
            "layers": [
                {
                    "sourcetype": "geojson",
                    "source": districts_geojson(),
                    "type": "line",
                    "color": DISTRICT_LINE,
                    "line": {"width": 1.2},
                }
            ],
        },
        margin={"l": 0, "r": 0, "t": 0, "b": 0},
        paper_bgcolor=theme.PANEL,
        showlegend=False,
        uirevision=f"alert-{alert_id}",
    )
    return fig
