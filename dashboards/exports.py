"""Exports (导出): every table a page shows, as CSV or Excel, from the reads the page makes.

:data:`DATASETS` names each exportable table: its columns (headers from the catalogue, in
the viewer's language) and a reader that calls the same model and ``dashboards`` functions
as the page's refresh, so a file never disagrees with the screen it came from. The HTTP
side (who may export, the audit entry, the file name) is :mod:`dashboards.api.exports`;
:func:`export_links` is the small pair of links a page puts in a panel header.

- Callers' names and phones only ever appear masked: the readers see
  :class:`models.tickets.TicketView`, which holds nothing else.
- A district-scoped account's query carries its district (:class:`ExportQuery`), and every
  reader keeps to it.
- At most :data:`ROW_CAP` rows per file (the newest or most pressing first, in the page's
  order); a cut file says so in the response and in the audit trail.
- Times are city time (Asia/Shanghai): real date-times in Excel, ``2026-11-25 08:00:00``
  in CSV.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal
from urllib.parse import quote, urlencode

import sqlalchemy as sa
from dash import html

from dashboards import auth, console, vitals
from dashboards import ecology as eco
from dashboards import emergency as em
from dashboards import hotline as hl
from dashboards import urban as ub
from dashboards.context import PageContext
from dashboards.i18n import t
from geo.boundaries import DISTRICTS
from models import alerts as alert_model
from models import cases as case_model
from models import incidents as inc
from models import tickets as ticket_model
from models.air_quality import hourly_means_by_district
from models.catalog import HOTLINE_CHANNELS
from models.clock import CITY_TZ
from models.live import DeviceState
from models.schema import Alert, Device, HotlineTicket
from models.users import Account, Permission

#: Rows per file. An export is a working file for a meeting or a report, not a backup:
#: Excel stays responsive at this size, and writing the sheet, the dear part (openpyxl
#: needs about 4 s of one core for 10,000 rows of 15 columns), stays within seconds.
#: Narrow the period or the filters for the rest.
ROW_CAP = 10_000
#: A period longer than this is refused: a year is the longest any report looks back.
MAX_PERIOD_DAYS = 366
#: The 12345 "newest orders" table: the page shows the newest 30, the export this many.
RECENT_ORDERS = 500

Format = Literal["csv", "xlsx"]
FORMATS: tuple[Format, ...] = ("csv", "xlsx")
MEDIA_TYPES: Mapping[str, str] = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
ColumnKind = Literal["text", "int", "number", "rate", "time"]

_DISTRICT_CODES = frozenset(d.code for d in DISTRICTS)


class ExportError(ValueError):
    """A request that cannot be answered as asked; ``message`` is for the person."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True, slots=True)
class Column:
    """One column: its header (a catalogue key), how its values are written, its Excel width."""

    header_key: str
    kind: ColumnKind = "text"
    width: int = 12


@dataclass(frozen=True, slots=True)
class ExportQuery:
    """The filters of one export, checked; ``district_code`` is the account's district for a
    district-scoped account (whatever was asked), else the district asked for, if any."""

    since: datetime | None = None
    until: datetime | None = None
    district_code: str | None = None
    domain: str | None = None
    severity: str | None = None
    state: str | None = None
    by: Literal["district", "department"] = "district"

    def described(self) -> dict[str, Any]:
        """The filters that were set, for the audit trail (times in city time)."""
        values = {
            "since": self.since.astimezone(CITY_TZ).isoformat() if self.since else None,
            "until": self.until.astimezone(CITY_TZ).isoformat() if self.until else None,
            "district_code": self.district_code,
            "domain": self.domain,
            "severity": self.severity,
            "state": self.state,
        }
        return {k: v for k, v in values.items() if v is not None}


Reader = Callable[[PageContext, ExportQuery, datetime], list[tuple[Any, ...]]]


@dataclass(frozen=True, slots=True)
class Dataset:
    """One exportable table: ``name`` is its URL segment, ``read`` the page's reads."""

    name: str
    title_key: str
    columns: tuple[Column, ...]
    read: Reader
    #: Query parameters this dataset understands besides ``district``.
    filters: frozenset[str] = frozenset()
    #: Period datasets: the default period is this many city days up to now.
    default_days: int | None = None


@dataclass(frozen=True, slots=True)
class ExportTable:
    """A dataset read for one request: headers in the viewer's language, rows, and whether
    the row cap cut it."""

    dataset: str
    title: str
    columns: tuple[Column, ...]
    headers: tuple[str, ...]
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    truncated: bool = False


# ---- cell values ----------------------------------------------------------------------------


def _yes(flag: bool) -> str:
    return t("export.yes") if flag else t("export.no")


def _district(code: str | None) -> str:
    return console.district_name(code)


def _keep(code: str | None, q: ExportQuery) -> bool:
    return q.district_code is None or code == q.district_code


# ---- readers: the pages' own reads ------------------------------------------------------------


def _open_alerts(ctx: PageContext, q: ExportQuery, now: datetime) -> list[tuple[Any, ...]]:
    # The console's queue (Redis), narrowed as the console's filters narrow it.
    alerts = ctx.live.open_alerts(ROW_CAP + 1, district_code=q.district_code)
    shown = console.filter_alerts(alerts, console.Filters.of(q.domain, q.severity, q.district_code, q.state))
    return [
        (
            a.id,
            console.severity_label(a.severity),
            console.domain_label(a.domain),
            a.title,
            _district(a.district_code),
            console.state_label(a.state),
            a.opened_at,
            a.sla_due,
            a.assigned_to or a.acknowledged_by or "",
            a.escalation_level,
            a.occurrences,
        )
        for a in console.queue_order(shown)
    ]


def _alert_history(ctx: PageContext, q: ExportQuery, now: datetime) -> list[tuple[Any, ...]]:
    # models.alerts has no period query; this one reads the same rows as AlertView.
    table = Alert.__table__
    query = sa.select(table).where(table.c.opened_at >= q.since, table.c.opened_at < q.until)
    for column, value in (
        (table.c.district_code, q.district_code),
        (table.c.domain, q.domain),
        (table.c.severity, q.severity),
        (table.c.state, q.state),
    ):
        if value is not None:
            query = query.where(column == value)
    query = query.order_by(table.c.opened_at.desc(), table.c.id.desc()).limit(ROW_CAP + 1)
    with ctx.engine.connect() as conn:
        views = [alert_model.AlertView.from_row(r) for r in conn.execute(query).mappings()]
    return [
        (
            a.id,
            a.opened_at,
            console.severity_label(a.severity),
            console.domain_label(a.domain),
            a.title,
            _district(a.district_code),
            console.state_label(a.state),
            a.acknowledged_at,
            a.acknowledged_by or "",
            a.resolved_at,
            a.occurrences,
            a.rule_id,
        )
        for a in views
    ]


def _ticket_row(v: ticket_model.TicketView) -> tuple[Any, ...]:
    caller = " ".join(x for x in (v.caller_name_masked, v.caller_phone_masked) if x)
    return (
        v.ticket_id,
        v.ts,
        HOTLINE_CHANNELS.get(v.channel, v.channel),
        v.category,
        v.title,
        v.content,
        _district(v.district_code),
        caller,  # masked: TicketView never holds more
        v.state_label_zh,
        _yes(v.urgency == "urgent"),
        v.department or "",
        v.accept_due,
        v.close_due,
        v.closed_at,
        _rating(v.satisfaction),
    )


def _rating(value: str | None) -> str:
    rating = ticket_model.parse_rating(value) if value else None
    return rating.label_zh if rating is not None else (value or "")


def _recent_tickets(ctx: PageContext, q: ExportQuery, now: datetime) -> list[tuple[Any, ...]]:
    with ctx.engine.connect() as conn:
        recent = ticket_model.recent_tickets(conn, RECENT_ORDERS, district_code=q.district_code)
    return [_ticket_row(v) for v in recent]


def _period_tickets(ctx: PageContext, q: ExportQuery, now: datetime) -> list[tuple[Any, ...]]:
    # Orders called in within the period, newest first, read as TicketView (callers masked).
    table = HotlineTicket.__table__
    query = sa.select(table).where(table.c.ts >= q.since, table.c.ts < q.until)
    if q.district_code is not None:
        query = query.where(table.c.district_code == q.district_code)
    query = query.order_by(table.c.ts.desc(), table.c.ticket_id.desc()).limit(ROW_CAP + 1)
    with ctx.engine.connect() as conn:
        views = [ticket_model.TicketView.from_row(r) for r in conn.execute(query).mappings()]
    return [_ticket_row(v) for v in views]


def _overdue_tickets(ctx: PageContext, q: ExportQuery, now: datetime) -> list[tuple[Any, ...]]:
    with ctx.engine.connect() as conn:
        flags = ticket_model.overdue(conn, now, district_code=q.district_code)
    return [
        (
            r.ticket_id,
            r.kinds,
            r.due,
            round(r.over_s / 3600, 1),
            r.category,
            r.department,
            r.district,
            _yes(r.supervised),
            _yes(r.urgent),
        )
        for r in hl.overdue_rows(flags, now, limit=ROW_CAP + 1)
    ]


def _repeat_clusters(ctx: PageContext, q: ExportQuery, now: datetime) -> list[tuple[Any, ...]]:
    # The page's window and grouping; a district account's clusters are built from its
    # district's orders only.
    with ctx.engine.connect() as conn:
        links = ticket_model.repeat_links(conn, now - hl.RATES_WINDOW, district_code=q.district_code)
    return [
        (c.root, c.category, c.district, c.size, c.confirmed, c.likely, c.last)
        for c in hl.repeat_clusters(links, limit=ROW_CAP + 1)
    ]


def _open_cases(ctx: PageContext, q: ExportQuery, now: datetime) -> list[tuple[Any, ...]]:
    with ctx.engine.connect() as conn:
        cases = case_model.open_cases(conn, limit=ROW_CAP + 1, district_code=q.district_code)
    return [
        (
            r.case_id,
            r.type_label,
            r.district,
            r.department,
            r.state_label,
            r.reported_at,
            r.due,
            ub.deadline_text(r),
        )
        for r in ub.case_rows(cases, now)
    ]


def _rate_cells(ind: case_model.CaseIndicators) -> tuple[Any, ...]:
    return (
        ind.reported,
        ind.filed,
        ind.closed,
        ind.filing_rate,
        ind.on_time_handling_rate,
        ind.closing_rate,
        ind.on_time_closing_rate,
        ind.rework_rate,
    )


def _case_indicators(ctx: PageContext, q: ExportQuery, now: datetime) -> list[tuple[Any, ...]]:
    with ctx.engine.connect() as conn:
        per_key = case_model.indicators(
            conn, q.since, q.until, by=q.by, now=min(now, q.until), district_code=q.district_code
        )
    # The page's order: most cases first, then the total of the rows shown.
    ordered = sorted(per_key.values(), key=lambda i: (-i.reported, i.key))
    rows = [(_district(i.key) if q.by == "district" else i.key, *_rate_cells(i)) for i in ordered]
    rows.append((t("export.total"), *_rate_cells(ub.total_indicators(per_key, "all"))))
    return rows


def _open_incidents(ctx: PageContext, q: ExportQuery, now: datetime) -> list[tuple[Any, ...]]:
    with ctx.engine.connect() as conn:
        incidents = inc.open_incidents(conn, district_code=q.district_code, limit=ROW_CAP + 1)
    return [
        (
            r.incident_id,
            r.title,
            r.type_label,
            r.level_label,
            r.state_label,
            r.district,
            i.reported_at,
            i.commander or "",
        )
        for r, i in zip(em.incident_rows(incidents, now), incidents, strict=True)
    ]


def device_props(conn: sa.Connection, types: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Devices' own properties (river, target class, noise zone, 警戒水位) from the database:
    Redis holds readings, not properties."""
    d = Device.__table__
    rows = conn.execute(sa.select(d.c.device_id, d.c.props).where(d.c.type.in_(sorted(set(types)))))
    return {r.device_id: dict(r.props or {}) for r in rows}


def _states(ctx: PageContext, q: ExportQuery) -> list[DeviceState]:
    return ctx.live.devices(q.district_code)


def _reading_at(state_by_id: Mapping[str, DeviceState], device_id: str) -> datetime | None:
    state = state_by_id.get(device_id)
    return None if state is None else state.ts


def _sensors(ctx: PageContext, q: ExportQuery, now: datetime) -> list[tuple[Any, ...]]:
    from models.rules import load_rules

    states = _states(ctx, q)
    limits = em.sensor_limits(load_rules(ctx.settings.rules_file).rules)
    with ctx.engine.connect() as conn:
        props = device_props(conn, em.SENSOR_TYPES)
    return [
        (
            r.device_id,
            r.name,
            em.sensor_type_label(r.type),
            r.district,
            r.value,
            r.unit,
            r.threshold,
            t(f"export.sensor_status.{r.status}"),
            console.severity_label(r.severity) if r.severity else "",
            r.ts,
        )
        for r in em.sensor_rows(states, limits, props, now.timestamp())
    ][: ROW_CAP + 1]


def _air_stations(ctx: PageContext, q: ExportQuery, now: datetime) -> list[tuple[Any, ...]]:
    states = _states(ctx, q)
    by_id = {s.device_id: s for s in states}
    return [
        (
            s.device_id,
            s.name,
            s.district,
            s.aqi,
            s.category or "",
            "、".join(t(f"eco.pollutant.{p}") for p in s.primary),
            _reading_at(by_id, s.device_id),
        )
        for s in eco.air_stations(states, now.timestamp())
    ][: ROW_CAP + 1]


def _water_sections(ctx: PageContext, q: ExportQuery, now: datetime) -> list[tuple[Any, ...]]:
    states = _states(ctx, q)
    by_id = {s.device_id: s for s in states}
    with ctx.engine.connect() as conn:
        props = device_props(conn, ("water_quality",))
    return [
        (
            s.device_id,
            s.name,
            s.river,
            s.district,
            s.grade or "",
            s.target,
            _yes(s.worse_than_target),
            _reading_at(by_id, s.device_id),
        )
        for s in eco.water_sections(states, props, now.timestamp())
    ][: ROW_CAP + 1]


def _noise_zones(ctx: PageContext, q: ExportQuery, now: datetime) -> list[tuple[Any, ...]]:
    states = _states(ctx, q)
    with ctx.engine.connect() as conn:
        props = device_props(conn, ("noise",))
    return [
        (
            z.zone,
            z.day_limit,
            z.night_limit,
            t(f"export.period.{z.period}"),
            z.points,
            z.live_points,
            z.mean_laeq,
            z.exceeded,
        )
        for z in eco.noise_zones(states, props, now.timestamp())
    ]


def _daily_aqi(ctx: PageContext, q: ExportQuery, now: datetime) -> list[tuple[Any, ...]]:
    # The ecology page's daily table: yesterday's HJ 633 daily index per district and
    # today's polluted hours, from the same window of hourly roll-ups.
    hours = eco.window_hours(now)
    codes = [d.code for d in DISTRICTS if _keep(d.code, q)]
    with ctx.engine.connect() as conn:
        means = hourly_means_by_district(conn, hours, codes)
    today = now.astimezone(CITY_TZ).date()
    rows = []
    for code in codes:
        daily = eco.daily_from_window(means[code], hours, today - timedelta(days=1))
        polluted = eco.polluted_hours(eco.hourly_series(means[code], hours), hours, today)
        rows.append(
            (
                _district(code),
                daily.aqi if daily else None,
                daily.category if daily else t("briefing.no_aqi"),
                "、".join(t(f"eco.pollutant.{p}") for p in daily.primary) if daily else "",
                polluted,
            )
        )
    return rows


def _district_indicators(ctx: PageContext, q: ExportQuery, now: datetime) -> list[tuple[Any, ...]]:
    # The overview's one read and its figures, one row per district.
    inputs = vitals.read_inputs(ctx.live, ctx.engine, now)
    snapshot = vitals.summarise(inputs.states, now.timestamp())
    rows = []
    for d in snapshot.districts:
        if not _keep(d.district_code, q):
            continue
        alerts = vitals.alert_counts(inputs.alerts, d.district_code, inputs.audible)
        tickets = vitals.tickets_for(inputs.tickets, d.district_code)
        cases = vitals.cases_for(inputs.cases, d.district_code)
        rows.append(
            (
                d.name,
                d.aqi.aqi if d.aqi else None,
                d.aqi.category if d.aqi else "",
                d.devices,
                d.online,
                d.online / d.devices if d.devices else None,
                d.pm25,
                alerts.total,
                tickets.registered,
                tickets.open,
                tickets.overdue,
                tickets.satisfaction.rate,
                cases.open,
                cases.overdue,
            )
        )
    return rows


# ---- the registry -----------------------------------------------------------------------------

C = Column
_TICKET_COLUMNS = (
    C("hotline.col.ticket", width=20),
    C("hotline.col.time", "time", 19),
    C("export.col.channel"),
    C("hotline.col.category", width=14),
    C("export.col.title", width=24),
    C("hotline.col.content", width=48),
    C("hotline.col.district"),
    C("hotline.col.caller", width=18),
    C("hotline.col.state"),
    C("export.col.urgent", width=8),
    C("hotline.col.department", width=14),
    C("export.col.accept_due", "time", 19),
    C("export.col.close_due", "time", 19),
    C("export.col.closed_at", "time", 19),
    C("export.col.satisfaction"),
)
_RATE_COLUMNS = (
    C("urban.col.reported", "int"),
    C("urban.col.filed", "int"),
    C("export.col.closed", "int"),
    C("urban.col.filing_rate", "rate"),
    C("urban.col.on_time_handling", "rate"),
    C("urban.col.closing_rate", "rate"),
    C("urban.col.on_time_closing", "rate"),
    C("urban.col.rework_rate", "rate"),
)

DATASETS: Mapping[str, Dataset] = {
    d.name: d
    for d in (
        Dataset(
            "alerts",
            "export.dataset.alerts",
            (
                C("console.field.id", "int", 8),
                C("console.col.severity", width=8),
                C("console.filter.domain", width=10),
                C("console.col.title", width=36),
                C("console.col.district"),
                C("console.col.state"),
                C("console.field.opened_at", "time", 19),
                C("console.field.sla_due", "time", 19),
                C("console.col.handler", width=14),
                C("console.field.escalation", "int", 8),
                C("console.field.occurrences", "int", 8),
            ),
            _open_alerts,
            frozenset({"domain", "severity", "state"}),
        ),
        Dataset(
            "alert-history",
            "export.dataset.alert_history",
            (
                C("console.field.id", "int", 8),
                C("console.field.opened_at", "time", 19),
                C("console.col.severity", width=8),
                C("console.filter.domain", width=10),
                C("console.col.title", width=36),
                C("console.col.district"),
                C("console.col.state"),
                C("export.col.acknowledged_at", "time", 19),
                C("export.col.acknowledged_by", width=14),
                C("export.col.resolved_at", "time", 19),
                C("console.field.occurrences", "int", 8),
                C("console.field.rule", width=20),
            ),
            _alert_history,
            frozenset({"since", "until", "domain", "severity", "state"}),
            default_days=7,
        ),
        Dataset("tickets-recent", "export.dataset.tickets_recent", _TICKET_COLUMNS, _recent_tickets),
        Dataset(
            "tickets",
            "export.dataset.tickets",
            _TICKET_COLUMNS,
            _period_tickets,
            frozenset({"since", "until"}),
            default_days=1,
        ),
        Dataset(
            "tickets-overdue",
            "export.dataset.tickets_overdue",
            (
                C("hotline.col.ticket", width=20),
                C("hotline.col.kinds", width=14),
                C("export.col.due", "time", 19),
                C("export.col.over_hours", "number", 10),
                C("hotline.col.category", width=14),
                C("hotline.col.department", width=14),
                C("hotline.col.district"),
                C("export.col.supervised", width=8),
                C("export.col.urgent", width=8),
            ),
            _overdue_tickets,
        ),
        Dataset(
            "tickets-repeats",
            "export.dataset.tickets_repeats",
            (
                C("hotline.col.first", width=20),
                C("hotline.col.category", width=14),
                C("hotline.col.district"),
                C("hotline.col.size", "int", 8),
                C("export.col.merged", "int", 8),
                C("export.col.likely", "int", 8),
                C("hotline.col.last", "time", 19),
            ),
            _repeat_clusters,
        ),
        Dataset(
            "cases",
            "export.dataset.cases",
            (
                C("urban.col.case", width=20),
                C("urban.col.type", width=16),
                C("urban.col.district"),
                C("hotline.col.department", width=14),
                C("urban.col.state"),
                C("export.col.reported_at", "time", 19),
                C("export.col.due", "time", 19),
                C("urban.col.deadline", width=20),
            ),
            _open_cases,
        ),
        Dataset(
            "case-indicators",
            "export.dataset.case_indicators",
            (C("export.col.unit", width=14), *_RATE_COLUMNS),
            _case_indicators,
            frozenset({"since", "until", "by"}),
        ),
        Dataset(
            "incidents",
            "export.dataset.incidents",
            (
                C("emergency.col.incident_id", width=20),
                C("export.col.title", width=30),
                C("emergency.col.type"),
                C("emergency.col.level"),
                C("emergency.col.state"),
                C("emergency.col.district"),
                C("export.col.reported_at", "time", 19),
                C("export.col.commander", width=12),
            ),
            _open_incidents,
        ),
        Dataset(
            "sensors",
            "export.dataset.sensors",
            (
                C("export.col.device", width=18),
                C("emergency.col.sensor", width=20),
                C("emergency.col.type"),
                C("emergency.col.district"),
                C("emergency.col.value", "number"),
                C("export.col.unit_of_measure", width=8),
                C("emergency.col.threshold", "number"),
                C("emergency.col.status"),
                C("console.col.severity", width=8),
                C("export.col.reading_at", "time", 19),
            ),
            _sensors,
        ),
        Dataset(
            "air-stations",
            "export.dataset.air_stations",
            (
                C("export.col.device", width=18),
                C("eco.col.station", width=20),
                C("eco.col.district"),
                C("eco.col.aqi", "int", 8),
                C("eco.col.category"),
                C("eco.col.primary", width=16),
                C("export.col.reading_at", "time", 19),
            ),
            _air_stations,
        ),
        Dataset(
            "daily-aqi",
            "export.dataset.daily_aqi",
            (
                C("col.district"),
                C("eco.col.daily", "int", 10),
                C("eco.col.category"),
                C("eco.col.primary", width=16),
                C("eco.col.polluted", "int", 16),
            ),
            _daily_aqi,
        ),
        Dataset(
            "water-sections",
            "export.dataset.water_sections",
            (
                C("export.col.device", width=18),
                C("eco.col.section", width=20),
                C("export.col.river"),
                C("eco.col.district"),
                C("eco.col.grade", width=10),
                C("eco.col.target", width=8),
                C("export.col.worse_than_target", width=10),
                C("export.col.reading_at", "time", 19),
            ),
            _water_sections,
        ),
        Dataset(
            "noise",
            "export.dataset.noise",
            (
                C("eco.col.zone", width=14),
                C("export.col.day_limit", "int"),
                C("export.col.night_limit", "int"),
                C("export.col.period", width=8),
                C("export.col.points", "int", 8),
                C("export.col.live_points", "int", 8),
                C("eco.col.laeq", "number"),
                C("eco.col.exceeded", "int"),
            ),
            _noise_zones,
        ),
        Dataset(
            "districts",
            "export.dataset.districts",
            (
                C("col.district"),
                C("col.aqi", "int", 8),
                C("eco.col.category"),
                C("col.devices", "int", 8),
                C("col.online", "int", 8),
                C("export.col.online_rate", "rate"),
                C("col.pm25", "number", 8),
                C("vital.alerts", "int"),
                C("vital.hotline_today", "int", 14),
                C("export.col.tickets_open", "int"),
                C("export.col.tickets_overdue", "int"),
                C("export.col.satisfaction_rate", "rate"),
                C("vital.cases_open", "int", 14),
                C("export.col.cases_overdue", "int"),
            ),
            _district_indicators,
        ),
    )
}


# ---- the query --------------------------------------------------------------------------------


def _day(raw: str, name: str) -> date:
    try:
        return date.fromisoformat(raw.strip())
    except ValueError:
        raise ExportError(t("export.bad_date", name=name, value=raw[:20])) from None


def city_midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=CITY_TZ)


def parse_query(
    dataset: Dataset, args: Mapping[str, str], *, now: datetime, scope: str | None
) -> ExportQuery:
    """The filters of ``args`` that ``dataset`` understands, checked; ``scope`` (the account's
    district, None for city-wide accounts) overrides any district asked for. The caller has
    already refused a district-scoped account asking for another district."""
    district = (args.get("district") or "").strip() or None
    if district is not None and district not in _DISTRICT_CODES:
        raise ExportError(t("export.bad_district", value=district[:12]))
    values: dict[str, Any] = {"district_code": scope or district}
    for name in ("domain", "severity", "state"):
        raw = (args.get(name) or "").strip()
        if raw and name in dataset.filters:
            values[name] = raw[:32]
    if "by" in dataset.filters:
        by = (args.get("by") or "district").strip()
        if by not in ("district", "department"):
            raise ExportError(t("export.bad_by", value=by[:20]))
        values["by"] = by
    if "since" in dataset.filters:
        today = now.astimezone(CITY_TZ).date()
        raw_since, raw_until = (args.get("since") or "").strip(), (args.get("until") or "").strip()
        if raw_since:
            since = city_midnight(_day(raw_since, "since"))
        elif dataset.default_days is None:
            since = ub.month_start(now)  # the page's period: this month so far
        else:
            since = city_midnight(today - timedelta(days=dataset.default_days - 1))
        # ``until`` names the last day included; without it the period runs up to now,
        # a record stamped this very second included (the end is exclusive).
        if raw_until:
            until = city_midnight(_day(raw_until, "until") + timedelta(days=1))
        else:
            until = now + timedelta(seconds=1)
        if until <= since:
            raise ExportError(t("export.bad_period"))
        if until - since > timedelta(days=MAX_PERIOD_DAYS):
            raise ExportError(t("export.period_too_long", days=MAX_PERIOD_DAYS))
        values |= {"since": since, "until": until}
    return ExportQuery(**values)


def read_table(context: PageContext, dataset: Dataset, query: ExportQuery, now: datetime) -> ExportTable:
    """The dataset's rows for ``query``, cut at :data:`ROW_CAP`."""
    rows = dataset.read(context, query, now)
    return ExportTable(
        dataset=dataset.name,
        title=t(dataset.title_key),
        columns=dataset.columns,
        headers=tuple(t(c.header_key) for c in dataset.columns),
        rows=rows[:ROW_CAP],
        truncated=len(rows) > ROW_CAP,
    )


# ---- writers ----------------------------------------------------------------------------------

#: A cell starting with one of these is a formula to a spreadsheet (CSV injection): such
#: text is written with a leading apostrophe in CSV and as a text cell in Excel.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
#: Characters XML 1.0 cannot carry: openpyxl refuses them, so they are dropped.
_XML_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def safe_text(value: str) -> str:
    """``value`` as spreadsheet text that cannot run as a formula."""
    return "'" + value if value.startswith(FORMULA_START) else value


def local_time(value: datetime) -> datetime:
    """City time without its offset: what spreadsheets store (they know no zones)."""
    return value.astimezone(CITY_TZ).replace(tzinfo=None) if value.tzinfo else value


def csv_text(value: Any, kind: ColumnKind = "text") -> Any:
    """One CSV cell: times as city-time text, rates as percentages, None as empty."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return f"{local_time(value):%Y-%m-%d %H:%M:%S}"
    if kind == "rate" and isinstance(value, float):
        return f"{value:.1%}"
    if isinstance(value, str):
        return safe_text(value)
    return value


def csv_bytes(
    headers: Sequence[str], rows: Iterable[Sequence[Any]], kinds: Sequence[ColumnKind] = ()
) -> bytes:
    """UTF-8 with a byte-order mark: without it Excel on Windows reads Chinese as GBK."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([safe_text(h) for h in headers])
    for row in rows:
        writer.writerow([csv_text(v, kinds[i] if i < len(kinds) else "text") for i, v in enumerate(row)])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def write_csv(table: ExportTable) -> bytes:
    return csv_bytes(table.headers, table.rows, [c.kind for c in table.columns])


def sheet_title(title: str) -> str:
    """Excel's rules for a sheet name: at most 31 characters, none of ``[]:*?/\\``."""
    return re.sub(r"[\[\]:*?/\\]", " ", title)[:31] or "cityops"


#: Excel number formats of the column kinds that need one.
XLSX_FORMATS: Mapping[str, str] = {"time": "yyyy-mm-dd hh:mm:ss", "rate": "0.0%"}


def write_xlsx(table: ExportTable, *, note: str | None = None) -> bytes:
    """One sheet named after the dataset: bold frozen header with a filter, widths per column,
    times as city-time date-times, rates as percentages.

    Written in openpyxl's write-only mode, streaming rows, with a styled cell only where a
    value needs a format: a full workbook model costs several times more per cell, and a
    10,000-row export is 150,000 cells.
    """
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    book = Workbook(write_only=True)
    sheet = book.create_sheet(sheet_title(table.title))
    book.properties.title = table.title
    book.properties.creator = "cityops"
    if note:
        book.properties.description = note
    for index, (column, header) in enumerate(zip(table.columns, table.headers, strict=True), start=1):
        # Chinese characters are about two Latin characters wide.
        sheet.column_dimensions[get_column_letter(index)].width = max(column.width, len(header) * 2 + 2)
    sheet.freeze_panes = "A2"
    if table.rows:
        last = get_column_letter(len(table.columns))
        sheet.auto_filter.ref = f"A1:{last}{len(table.rows) + 1}"

    bold = Font(bold=True)

    def header_cell(text: str) -> WriteOnlyCell:
        cell = WriteOnlyCell(sheet, value=_XML_ILLEGAL.sub("", text))
        cell.font = bold
        return cell

    formats = [XLSX_FORMATS.get(c.kind) for c in table.columns]

    def cell_of(value: Any, number_format: str | None) -> Any:
        if isinstance(value, datetime):
            value = local_time(value)
        elif isinstance(value, str):
            value = _XML_ILLEGAL.sub("", value)
            if value.startswith("="):
                text = WriteOnlyCell(sheet, value=value)
                text.data_type = "s"  # a string cell, never a formula
                return text
        if number_format is None or value is None:
            return value
        styled = WriteOnlyCell(sheet, value=value)
        styled.number_format = number_format
        return styled

    sheet.append([header_cell(h) for h in table.headers])
    for row in table.rows:
        sheet.append([cell_of(v, formats[i]) for i, v in enumerate(row)])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def render(table: ExportTable, fmt: Format) -> bytes:
    return write_csv(table) if fmt == "csv" else write_xlsx(table)


def content_disposition(filename: str) -> str:
    """``attachment`` with the name as is when ASCII, else an ASCII fallback and the UTF-8
    name per RFC 5987 (``filename*``), which every current browser prefers."""
    try:
        filename.encode("ascii")
    except UnicodeEncodeError:
        fallback = filename.encode("ascii", "replace").decode().replace("?", "_")
        return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename)}"
    return f'attachment; filename="{filename}"'


def file_name(dataset: str, fmt: str, now: datetime, query: ExportQuery | None = None) -> str:
    """``cityops-alerts-20261125.xlsx``: the dataset and the city day it was taken (a
    district-scoped file says its district)."""
    district = f"-{query.district_code}" if query is not None and query.district_code else ""
    return f"cityops-{dataset}{district}-{now.astimezone(CITY_TZ):%Y%m%d}.{fmt}"


# ---- the links a page shows -----------------------------------------------------------------


def export_href(dataset: str, fmt: Format, **params: Any) -> str:
    if dataset not in DATASETS:
        raise KeyError(f"no export dataset {dataset!r}; known: {', '.join(DATASETS)}")
    query = urlencode({k: v for k, v in params.items() if v not in (None, "")})
    return f"/api/export/{dataset}.{fmt}" + (f"?{query}" if query else "")


def may_export(account: Account | None = None) -> bool:
    account = account if account is not None else auth.current_user()
    return account is not None and account.can(Permission.EXPORT)


def export_links(dataset: str, **params: Any) -> html.Div:
    """ "CSV" and "Excel" links for a panel header, downloading ``dataset`` with ``params``
    (``since``/``until`` as ``YYYY-MM-DD``, ``district``, …). Empty for accounts that may not
    export; the server checks again on every download."""
    if not may_export():
        return html.Div(className="export-links", hidden=True)
    return html.Div(
        className="export-links",
        children=[
            html.A(
                label,
                href=export_href(dataset, fmt, **params),
                className=f"export-link export-{fmt}",
                title=t("export.link_title", format=label),
                # A download, not a page: the browser keeps the current page open.
                download="",
            )
            for fmt, label in (("csv", "CSV"), ("xlsx", "Excel"))
        ],
    )


__all__ = [
    "DATASETS",
    "MAX_PERIOD_DAYS",
    "ROW_CAP",
    "Column",
    "Dataset",
    "ExportError",
    "ExportQuery",
    "ExportTable",
    "content_disposition",
    "csv_bytes",
    "export_href",
    "export_links",
    "file_name",
    "may_export",
    "parse_query",
    "read_table",
    "render",
    "safe_text",
    "write_csv",
    "write_xlsx",
]
