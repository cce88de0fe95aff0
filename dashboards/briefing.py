"""The daily operations briefing (运行日报): one city day's key figures for the leaders.

A day is 00:00–24:00 city time (Asia/Shanghai); a record belongs to the day when its time
``t`` satisfies ``start <= t < end``. :func:`read_briefing` gathers the day's figures from
the model functions the pages use (daily AQI per HJ 633, 12345 volumes, on-time and
satisfaction rates, the GB/T 30428 case indicators) plus counts of the day's alerts and
incidents; :func:`briefing_figures` draws its charts for the screen (Plotly) and
:func:`render_png` draws the whole briefing as an A4 PNG on the server with matplotlib,
no browser involved.

Figures count as of the end of the day (or now, for today), so yesterday's briefing reads
the same tomorrow. Device availability has no history: it is the share online when the
briefing is made, and says so.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import plotly.graph_objects as go
import sqlalchemy as sa

from dashboards import console, vitals
from dashboards import urban as ub
from dashboards.context import PageContext
from dashboards.i18n import t
from geo.boundaries import DISTRICTS
from models import cases as case_model
from models import tickets as ticket_model
from models.air_quality import daily_aqi
from models.alerts import SEVERITY_RANK
from models.clock import CITY_TZ
from models.incidents import ResponseLevel
from models.schema import Alert, HotlineTicket, Incident
from models.standards.aqi import AqiResult

log = logging.getLogger(__name__)

SEVERITIES: tuple[str, ...] = tuple(sorted(SEVERITY_RANK, key=SEVERITY_RANK.__getitem__))
LEVELS: tuple[str, ...] = tuple(level.value for level in ResponseLevel)
#: The briefing lists this many 12345 categories; the rest are summed (其他).
TOP_CATEGORIES = 8
#: Print colours (white paper): the warning colours for severities, one blue for counts.
SEVERITY_PRINT = {"critical": "#D62728", "major": "#FF7F0E", "minor": "#E6B800", "info": "#1F77B4"}
BAR_PRINT = "#1F5FA8"
CLOSED_PRINT = "#7F9DB9"


@dataclass(frozen=True, slots=True)
class DayWindow:
    """One city day as the half-open interval ``[start, end)``."""

    day: date
    start: datetime
    end: datetime

    @classmethod
    def of(cls, day: date) -> DayWindow:
        start = datetime(day.year, day.month, day.day, tzinfo=CITY_TZ)
        return cls(day, start, start + timedelta(days=1))


def yesterday(now: datetime) -> date:
    """The city day before the one containing ``now``: the briefing's default."""
    return now.astimezone(CITY_TZ).date() - timedelta(days=1)


def parse_day(raw: str | None, now: datetime) -> date:
    """``2026-11-25`` → that day; blank → yesterday; a day after today or unreadable → ValueError."""
    if raw is None or not raw.strip():
        return yesterday(now)
    day = date.fromisoformat(raw.strip())
    if day > now.astimezone(CITY_TZ).date():
        raise ValueError("a briefing cannot be made for a day that has not begun")
    return day


@dataclass(frozen=True, slots=True)
class AlertFigures:
    raised_by_severity: dict[str, int]
    raised_by_domain: dict[str, int]
    closed_by_severity: dict[str, int]
    closed_by_domain: dict[str, int]

    @property
    def raised(self) -> int:
        return sum(self.raised_by_severity.values())

    @property
    def closed(self) -> int:
        return sum(self.closed_by_severity.values())


@dataclass(frozen=True, slots=True)
class IncidentFigures:
    opened: int
    closed: int
    opened_by_level: dict[str, int]


@dataclass(frozen=True, slots=True)
class TicketFigures:
    received: int
    closed: int
    satisfaction: ticket_model.SatisfactionStats
    on_time: ticket_model.OnTimeRates
    by_hour: dict[str, int]
    top_categories: list[tuple[str, int]]


@dataclass(frozen=True, slots=True)
class Briefing:
    window: DayWindow
    district_code: str | None
    made_at: datetime
    aqi_city: AqiResult | None
    aqi_by_district: dict[str, AqiResult | None]
    alerts: AlertFigures
    incidents: IncidentFigures
    tickets: TicketFigures
    cases: case_model.CaseIndicators
    devices: int
    devices_online: int

    @property
    def day(self) -> date:
        return self.window.day

    @property
    def online_rate(self) -> float | None:
        return None if self.devices == 0 else self.devices_online / self.devices

    @property
    def area_name(self) -> str:
        return console.district_name(self.district_code) if self.district_code else t("briefing.city")


# ---- reads ------------------------------------------------------------------------------------


def _counts(
    conn: sa.Connection,
    table: sa.Table,
    when: str,
    key: str,
    window: DayWindow,
    district_code: str | None,
) -> dict[str, int]:
    """Rows of ``table`` whose ``when`` falls in the day, per ``key``."""
    c = table.c
    query = sa.select(c[key], sa.func.count()).where(c[when] >= window.start, c[when] < window.end)
    if district_code is not None:
        query = query.where(c.district_code == district_code)
    return {str(k): int(n) for k, n in conn.execute(query.group_by(c[key])).all() if k is not None}


def _every(keys: Sequence[str], counts: Mapping[str, int]) -> dict[str, int]:
    return {k: int(counts.get(k, 0)) for k in keys}


def read_alerts(conn: sa.Connection, window: DayWindow, district_code: str | None) -> AlertFigures:
    """Alerts raised in the day (by severity and domain) and closed in it: resolved, closed
    or marked a false alarm, which is when an alert leaves the open set (``resolved_at``)."""
    table = Alert.__table__
    return AlertFigures(
        raised_by_severity=_every(
            SEVERITIES, _counts(conn, table, "opened_at", "severity", window, district_code)
        ),
        raised_by_domain=_every(
            console.DOMAINS, _counts(conn, table, "opened_at", "domain", window, district_code)
        ),
        closed_by_severity=_every(
            SEVERITIES, _counts(conn, table, "resolved_at", "severity", window, district_code)
        ),
        closed_by_domain=_every(
            console.DOMAINS, _counts(conn, table, "resolved_at", "domain", window, district_code)
        ),
    )


def read_incidents(conn: sa.Connection, window: DayWindow, district_code: str | None) -> IncidentFigures:
    table = Incident.__table__
    opened = _counts(conn, table, "reported_at", "state", window, district_code)
    closed = _counts(conn, table, "closed_at", "state", window, district_code)
    by_level = _counts(conn, table, "reported_at", "level", window, district_code)
    return IncidentFigures(sum(opened.values()), sum(closed.values()), _every(LEVELS, by_level))


def read_tickets(
    conn: sa.Connection, window: DayWindow, district_code: str | None, at: datetime
) -> TicketFigures:
    per_district = ticket_model.district_counts(conn, window.start, window.end, now=at)
    figures = vitals.tickets_for(per_district, district_code)
    closed_counts = _counts(conn, HotlineTicket.__table__, "closed_at", "state", window, district_code)
    categories = ticket_model.volumes(
        conn, window.start, window.end, by="category", district_code=district_code
    )
    ordered = list(categories.items())
    top = ordered[:TOP_CATEGORIES]
    if rest := sum(n for _, n in ordered[TOP_CATEGORIES:]):
        top.append((t("hotline.other_categories"), rest))
    return TicketFigures(
        received=figures.registered,
        closed=sum(closed_counts.values()),
        satisfaction=figures.satisfaction,
        on_time=ticket_model.on_time_rates(
            conn, window.start, window.end, now=at, district_code=district_code
        ),
        by_hour=ticket_model.volumes(conn, window.start, window.end, by="hour", district_code=district_code),
        top_categories=top,
    )


def read_cases(
    conn: sa.Connection, window: DayWindow, district_code: str | None, at: datetime
) -> case_model.CaseIndicators:
    per_district = case_model.indicators(
        conn, window.start, window.end, by="district", now=at, district_code=district_code
    )
    return ub.total_indicators(per_district, district_code or "all")


def read_briefing(
    context: PageContext, day: date, *, district_code: str | None = None, now: datetime
) -> Briefing:
    """The briefing of ``day`` for the city (``district_code`` None) or one district."""
    window = DayWindow.of(day)
    at = min(now, window.end)
    codes = [d.code for d in DISTRICTS if district_code is None or d.code == district_code]
    with context.engine.connect() as conn:
        aqi_by_district = {code: daily_aqi(conn, day, district_code=code) for code in codes}
        aqi_city = daily_aqi(conn, day) if district_code is None else aqi_by_district.get(district_code)
        alerts = read_alerts(conn, window, district_code)
        incidents = read_incidents(conn, window, district_code)
        tickets = read_tickets(conn, window, district_code, at)
        cases = read_cases(conn, window, district_code, at)
    try:
        states = context.live.devices(district_code)
    except Exception as exc:  # Redis away: the day's history still makes a briefing
        log.warning("briefing: live device states unavailable (%s)", type(exc).__name__)
        states = []
    stamp = now.timestamp()
    return Briefing(
        window=window,
        district_code=district_code,
        made_at=now,
        aqi_city=aqi_city,
        aqi_by_district=aqi_by_district,
        alerts=alerts,
        incidents=incidents,
        tickets=tickets,
        cases=cases,
        devices=len(states),
        devices_online=sum(1 for s in states if s.online(stamp)),
    )


# ---- text ---------------------------------------------------------------------------------------


def rate_text(rate: float | None) -> str:
    return ub.rate_text(rate)


def aqi_text(result: AqiResult | None) -> str:
    return t("briefing.no_aqi") if result is None else f"{result.aqi} {result.category}"


def key_figures(b: Briefing) -> list[tuple[str, str]]:
    """The briefing's headline figures as (label, value) pairs, in reading order."""
    on_time = b.tickets.on_time
    return [
        (t("briefing.kpi.aqi"), aqi_text(b.aqi_city)),
        (t("briefing.kpi.alerts_raised"), f"{b.alerts.raised:,}"),
        (t("briefing.kpi.alerts_closed"), f"{b.alerts.closed:,}"),
        (t("briefing.kpi.incidents_opened"), f"{b.incidents.opened:,}"),
        (t("briefing.kpi.incidents_closed"), f"{b.incidents.closed:,}"),
        (t("briefing.kpi.tickets_received"), f"{b.tickets.received:,}"),
        (t("briefing.kpi.tickets_closed"), f"{b.tickets.closed:,}"),
        (t("briefing.kpi.on_time_close"), rate_text(on_time.close.rate)),
        (t("briefing.kpi.satisfaction"), rate_text(b.tickets.satisfaction.rate)),
        (t("briefing.kpi.cases_reported"), f"{b.cases.reported:,}"),
        (t("briefing.kpi.cases_closed"), f"{b.cases.closed:,}"),
        (t("briefing.kpi.filing_rate"), rate_text(b.cases.filing_rate)),
        (t("briefing.kpi.online_rate"), rate_text(b.online_rate)),
    ]


def title_text(b: Briefing) -> str:
    return t("briefing.heading", area=b.area_name, day=f"{b.day:%Y-%m-%d}")


# ---- charts for the screen (Plotly, print colours) ------------------------------------------------


def _layout(title: str, **more: Any) -> dict[str, Any]:
    layout = {
        "title": {"text": title, "font": {"size": 14}},
        "paper_bgcolor": "#ffffff",
        "plot_bgcolor": "#ffffff",
        "font": {"color": "#222222", "size": 12},
        "margin": {"l": 48, "r": 12, "t": 36, "b": 36},
        "height": 260,
        "showlegend": False,
        "yaxis": {"gridcolor": "#dddddd", "rangemode": "tozero"},
    }
    layout.update(more)
    return layout


def alerts_figure(b: Briefing) -> go.Figure:
    labels = [console.severity_label(s) for s in SEVERITIES]
    return go.Figure(
        [
            go.Bar(
                name=t("briefing.raised"),
                x=labels,
                y=[b.alerts.raised_by_severity[s] for s in SEVERITIES],
                marker={"color": [SEVERITY_PRINT[s] for s in SEVERITIES]},
            ),
            go.Bar(
                name=t("briefing.closed"),
                x=labels,
                y=[b.alerts.closed_by_severity[s] for s in SEVERITIES],
                marker={"color": CLOSED_PRINT},
            ),
        ],
        layout=_layout(t("briefing.chart.alerts"), barmode="group", showlegend=True),
    )


def aqi_figure(b: Briefing) -> go.Figure:
    codes = list(b.aqi_by_district)
    results = [b.aqi_by_district[c] for c in codes]
    return go.Figure(
        go.Bar(
            x=[console.district_name(c) for c in codes],
            y=[r.aqi if r else 0 for r in results],
            marker={"color": [r.color if r else "#cccccc" for r in results]},
            # A district without a valid daily index gets no bar and no label here; the
            # table below says 数据不足 for it.
            text=[r.category if r else "" for r in results],
            textposition="outside",
            cliponaxis=False,
        ),
        layout=_layout(t("briefing.chart.aqi")),
    )


def tickets_figure(b: Briefing) -> go.Figure:
    hours = b.tickets.by_hour
    return go.Figure(
        go.Bar(x=list(hours), y=list(hours.values()), marker={"color": BAR_PRINT}),
        layout=_layout(t("briefing.chart.tickets"), xaxis={"title": {"text": t("briefing.hour")}}),
    )


def briefing_figures(b: Briefing) -> list[go.Figure]:
    return [aqi_figure(b), alerts_figure(b), tickets_figure(b)]


# ---- the PNG (matplotlib, on the server) --------------------------------------------------------

#: Font families tried in order; Debian's fonts-noto-cjk provides the first.
CJK_FAMILIES = ("Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Serif CJK SC", "WenQuanYi Zen Hei", "SimHei")
#: A4 portrait at 150 dpi: sharp when printed, about 200 kB.
PNG_SIZE_IN = (8.27, 11.69)
PNG_DPI = 150

_font_lock = threading.Lock()
_font_family: list[str | None] = []


def cjk_font_family() -> str | None:
    """The first installed CJK font family matplotlib knows, or None (logged once): without
    one, Chinese would come out as empty boxes, so the PNG is drawn in English instead."""
    with _font_lock:
        if not _font_family:
            from matplotlib import font_manager

            installed = {f.name for f in font_manager.fontManager.ttflist}
            found = next((name for name in CJK_FAMILIES if name in installed), None)
            if found is None:
                log.warning(
                    "no CJK font found for the briefing PNG (install fonts-noto-cjk); drawing it in English"
                )
            else:
                log.info("briefing PNG font: %s", found)
            _font_family.append(found)
        return _font_family[0]


def render_png(b: Briefing) -> bytes:
    """The briefing on one A4 page as PNG: title, the key figures, three charts."""
    from dashboards.i18n import current_language, language

    family = cjk_font_family()
    lang = current_language() if family is not None else "en"
    with language(lang):
        return _draw(b, family)


def _draw(b: Briefing, family: str | None) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    rc_font = {"family": [family, "DejaVu Sans"] if family else ["DejaVu Sans"]}
    fig = Figure(figsize=PNG_SIZE_IN, dpi=PNG_DPI, facecolor="white")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(4, 2, height_ratios=[0.2, 1.0, 1.1, 1.1], hspace=0.38, wspace=0.3)
    grid.update(left=0.08, right=0.96, top=0.95, bottom=0.05)

    head = fig.add_subplot(grid[0, :])
    head.axis("off")
    head.text(0, 0.75, title_text(b), fontsize=17, fontweight="bold", fontfamily=rc_font["family"])
    head.text(
        0,
        0.05,
        t("briefing.made_at", at=f"{b.made_at.astimezone(CITY_TZ):%Y-%m-%d %H:%M}"),
        fontsize=9,
        color="#555555",
        fontfamily=rc_font["family"],
    )

    table = fig.add_subplot(grid[1, :])
    table.axis("off")
    pairs = key_figures(b)
    half = (len(pairs) + 1) // 2
    for column, chunk in enumerate((pairs[:half], pairs[half:])):
        for row, (label, value) in enumerate(chunk):
            y = 1 - (row + 0.5) / half
            x = column * 0.5
            table.text(x, y, label, fontsize=10.5, color="#333333", va="center", fontfamily=rc_font["family"])
            table.text(
                x + 0.44,
                y,
                value,
                fontsize=11,
                fontweight="bold",
                ha="right",
                va="center",
                fontfamily=rc_font["family"],
            )

    def bars(ax: Any, title: str, labels: list[str], values: list[float], colours: list[str] | str) -> None:
        ax.bar(range(len(values)), values, color=colours)
        # Counts: whole numbers from zero, with room above the tallest bar (and an axis
        # that still reads 0–1 on a quiet day instead of matplotlib's ±0.04).
        ax.set_ylim(0, max(1.0, max(values, default=0) * 1.15))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xticks(range(len(labels)), labels, fontsize=8, fontfamily=rc_font["family"])
        ax.set_title(title, fontsize=11, fontfamily=rc_font["family"])
        ax.spines[["top", "right"]].set_visible(False)
        ax.tick_params(axis="y", labelsize=8)
        ax.grid(axis="y", color="#dddddd", linewidth=0.6)
        ax.set_axisbelow(True)

    codes = list(b.aqi_by_district)
    results = [b.aqi_by_district[c] for c in codes]
    ax = fig.add_subplot(grid[2, 0])
    bars(
        ax,
        t("briefing.chart.aqi"),
        [console.district_name(c) for c in codes],
        [r.aqi if r else 0 for r in results],
        [r.color if r else "#cccccc" for r in results],
    )
    # The index on each bar; a dash where a district has no valid day (not a zero).
    for i, r in enumerate(results):
        ax.text(
            i,
            r.aqi if r else 0,
            str(r.aqi) if r else "—",
            ha="center",
            va="bottom",
            fontsize=7.5,
            color="#333333" if r else "#888888",
            fontfamily=rc_font["family"],
        )
    ax = fig.add_subplot(grid[2, 1])
    bars(
        ax,
        t("briefing.chart.alerts"),
        [console.severity_label(s) for s in SEVERITIES],
        [b.alerts.raised_by_severity[s] for s in SEVERITIES],
        [SEVERITY_PRINT[s] for s in SEVERITIES],
    )
    ax.plot(
        range(len(SEVERITIES)),
        [b.alerts.closed_by_severity[s] for s in SEVERITIES],
        "o",
        color="#333333",
        label=t("briefing.closed"),
    )
    ax.legend(fontsize=8, frameon=False, prop={"family": rc_font["family"], "size": 8})

    domains = list(b.alerts.raised_by_domain)
    ax = fig.add_subplot(grid[3, 0])
    bars(
        ax,
        t("briefing.chart.domains"),
        [console.domain_label(d) for d in domains],
        [b.alerts.raised_by_domain[d] for d in domains],
        BAR_PRINT,
    )
    ax.plot(range(len(domains)), [b.alerts.closed_by_domain[d] for d in domains], "o", color="#333333")
    hours = b.tickets.by_hour
    bars(
        fig.add_subplot(grid[3, 1]),
        t("briefing.chart.tickets"),
        [h if int(h) % 3 == 0 else "" for h in hours],
        list(hours.values()),
        BAR_PRINT,
    )

    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=PNG_DPI, facecolor="white")
    return out.getvalue()


__all__ = [
    "Briefing",
    "DayWindow",
    "briefing_figures",
    "cjk_font_family",
    "key_figures",
    "parse_day",
    "read_briefing",
    "render_png",
    "yesterday",
]
