"""The command centre's wall (``/wall``): what each panel shows, as plain functions.

The wall rotates its focus between panels (emergency, urban, ecology) every
``CITYOPS_WALL_ROTATE_S``. Each panel is a :class:`WallPanel` in :data:`PANELS`: a key,
a title and a builder from :class:`WallData` to Dash children. A page module with a
richer panel (``/emergency``, ``/urban``) replaces the default one by calling
:func:`register_panel` with the same key; nothing else on the wall changes.

The defaults are built from what every deployment has: the live alert queue, today's
12345 figures, open cases and today's case indicators, and the live air and water states.
No panel shows a placeholder: an empty feed says it is empty, and how old its data are.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dash import html

from dashboards import ecology as eco
from dashboards.i18n import t
from dashboards.vitals import OverviewSnapshot, VitalInputs, alert_counts, cases_for, tickets_for
from geo.boundaries import DISTRICTS
from models.cases import CaseIndicators, CaseIntake
from models.clock import CITY_TZ
from models.live import LiveAlert
from models.standards.aqi import AqiResult
from models.tickets import Rate

#: Alerts in the ticker: the newest first.
TICKER_LIMIT = 12
#: Rows of a panel's list: what fits in large type on one screen.
PANEL_ROWS = 6
#: Air stations the ecology panel names: the worst live ones.
AIR_ROWS = 3
#: Titles of ringing alerts the alarm banner names (the rest are counted, not named).
ALARM_TITLES = 3
#: Severity → the console's badge colours.
SEVERITY_COLOURS = {"critical": "red", "major": "orange", "minor": "yellow", "info": "blue"}
_DISTRICT_NAMES = {d.code: d.name for d in DISTRICTS}


@dataclass(frozen=True, slots=True)
class WallData:
    """Everything the wall's panels are built from, read once per refresh."""

    vitals: VitalInputs
    #: District code → real-time AQI (None: no live station there).
    district_aqi: dict[str, AqiResult | None] = field(default_factory=dict)
    #: The worst live air stations the ecology panel lists (:data:`AIR_ROWS`).
    air: list[eco.AirStation] = field(default_factory=list)
    #: How fresh the newest of every air station's readings is.
    air_fresh: eco.Freshness = field(default_factory=lambda: eco.freshness(None))
    water: list[eco.WaterSection] = field(default_factory=list)
    #: Cases reported today and filed, all districts together (None: the database is away).
    cases_today: CaseIntake | None = None
    #: The viewer's district when the account is district-scoped: everything above is
    #: that district's, and panels that read more (the incidents) read it only.
    district_code: str | None = None
    #: ``vitals.summarise`` of the states at ``now`` (None: not taken yet), taken once per
    #: refresh for the AQI tiles and the key figures alike.
    snapshot: OverviewSnapshot | None = None

    @property
    def now(self) -> datetime:
        return self.vitals.now


@dataclass(frozen=True, slots=True)
class WallPanel:
    key: str
    title_key: str
    build: Callable[[WallData], Any]


def register_panel(panel: WallPanel) -> None:
    """Add a panel, or replace the one with the same key (keeping its place in the rotation)."""
    for i, existing in enumerate(PANELS):
        if existing.key == panel.key:
            PANELS[i] = panel
            return
    PANELS.append(panel)


# ---- small pieces -----------------------------------------------------------------------------


def severity_badge(severity: str) -> html.Span:
    return html.Span(
        t(f"console.severity.{severity}"), className=f"sev-badge sev-{SEVERITY_COLOURS.get(severity, 'blue')}"
    )


def big_number(label: str, value: str, *, alarm: bool = False, note: str | None = None) -> html.Div:
    children: list[Any] = [
        html.Div(label, className="wall-big-label"),
        html.Div(value, className="wall-big-value"),
    ]
    if note:
        children.append(html.Div(note, className="wall-big-note"))
    return html.Div(children, className="wall-big" + (" wall-big-alarm" if alarm else ""))


def percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate:.0%}"


def clock_time(at: datetime) -> str:
    return at.astimezone(CITY_TZ).strftime("%H:%M")


def alert_rows(alerts: Sequence[LiveAlert], limit: int = PANEL_ROWS) -> html.Div:
    """The most pressing open alerts (the queue's order), titles as text."""
    if not alerts:
        return html.Div(t("wall.no_alerts"), className="wall-empty")
    return html.Div(
        [
            html.Div(
                [
                    severity_badge(a.severity),
                    # Titles can quote device names or citizens' words: text, never markup.
                    html.Span(a.title, className="wall-row-title"),
                    html.Span(_DISTRICT_NAMES.get(a.district_code or "", ""), className="wall-row-district"),
                    html.Span(clock_time(a.opened_at), className="wall-row-time num"),
                ],
                className="wall-row",
            )
            for a in alerts[:limit]
        ],
        className="wall-rows",
    )


# ---- the ticker -------------------------------------------------------------------------------


def ticker_items(alerts: Sequence[LiveAlert], limit: int = TICKER_LIMIT) -> list[LiveAlert]:
    """The newest open alerts, newest first."""
    return sorted(alerts, key=lambda a: (a.opened_at, a.id), reverse=True)[:limit]


def ticker(alerts: Sequence[LiveAlert]) -> list[Any]:
    items = ticker_items(alerts)
    if not items:
        return [html.Span(t("wall.ticker_quiet"), className="wall-tick")]
    return [
        html.Span(
            [
                html.Span(clock_time(a.opened_at), className="num"),
                severity_badge(a.severity),
                html.Span(a.title),
                html.Span(_DISTRICT_NAMES.get(a.district_code or "", ""), className="wall-row-district"),
            ],
            className="wall-tick",
        )
        for a in items
    ]


# ---- alarm ------------------------------------------------------------------------------------


def ringing(alerts: Sequence[LiveAlert], audible: frozenset[int]) -> list[LiveAlert]:
    """The alerts that make the wall flash and sound: the console's audible set (critical
    and major, not yet acknowledged), most severe first."""
    return [a for a in alerts if a.id in audible]


def alarm_state(ringing_alerts: Sequence[LiveAlert], at: datetime) -> dict[str, Any]:
    """What the wall's script needs to flash, sound and write the banner: how many alerts
    ring and the first few titles. At city volume the audible set runs to hundreds of
    alerts; sending them all made up most of every refresh's payload for three titles."""
    return {
        # Always different, so the browser can tell a live wall from a stalled one.
        "at": at.isoformat(),
        "count": len(ringing_alerts),
        "titles": [a.title for a in ringing_alerts[:ALARM_TITLES]],
    }


def total_indicators(per_district: dict[str, CaseIndicators]) -> CaseIndicators:
    """The city's case indicators from the per-district ones (counts add up; rates follow)."""
    rows = list(per_district.values())
    return CaseIndicators(
        key="",
        reported=sum(r.reported for r in rows),
        filed=sum(r.filed for r in rows),
        closed=sum(r.closed for r in rows),
        handle=Rate(sum(r.handle.total for r in rows), sum(r.handle.on_time for r in rows)),
        close=Rate(sum(r.close.total for r in rows), sum(r.close.on_time for r in rows)),
        reported_back=sum(r.reported_back for r in rows),
        reworked=sum(r.reworked for r in rows),
    )


# ---- default panels ---------------------------------------------------------------------------


def emergency_panel(data: WallData) -> html.Div:
    """Open alerts by severity and by domain, and the emergency alerts most in need of action."""
    counts = alert_counts(data.vitals.alerts, audible=data.vitals.audible)
    severities = [
        big_number(t(f"console.severity.{s}"), str(n), alarm=(s == "critical" and n > 0))
        for s, n in counts.by_severity.items()
    ]
    domains = [
        html.Div(
            [html.Span(t(f"console.domain.{d}")), html.Span(str(n), className="num")], className="wall-chip"
        )
        for d, n in counts.by_domain.items()
    ]
    emergency = [a for a in data.vitals.alerts if a.domain == "emergency"]
    return html.Div(
        [
            html.Div(severities, className="wall-bigs"),
            html.Div(domains, className="wall-chips"),
            html.H3(t("wall.emergency_list")),
            alert_rows(emergency),
        ],
        className="wall-panel-body",
    )


def urban_panel(data: WallData) -> html.Div:
    """12345 today and the urban-management cases: open, overdue, today's indicators."""
    tickets = tickets_for(data.vitals.tickets)
    open_cases = cases_for(data.vitals.cases)
    today = data.cases_today
    urban_alerts = [a for a in data.vitals.alerts if a.domain in ("urban", "hotline")]
    body: list[Any] = [
        html.H3(t("wall.hotline")),
        html.Div(
            [
                big_number(t("wall.hotline_new"), str(tickets.registered)),
                big_number(t("wall.hotline_open"), str(tickets.open)),
                big_number(t("wall.hotline_overdue"), str(tickets.overdue), alarm=tickets.overdue > 0),
                big_number(t("wall.satisfaction"), percent(tickets.satisfaction.rate)),
            ],
            className="wall-bigs",
        ),
        html.H3(t("wall.cases")),
        html.Div(
            [
                big_number(t("wall.cases_open"), str(open_cases.open)),
                big_number(t("wall.cases_overdue"), str(open_cases.overdue), alarm=open_cases.overdue > 0),
                big_number(t("wall.cases_reported"), str(today.reported if today else 0)),
                big_number(t("wall.filing_rate"), percent(today.filing_rate if today else None)),
            ],
            className="wall-bigs",
        ),
        html.H3(t("wall.urban_alerts")),
        alert_rows(urban_alerts, limit=3),
    ]
    if data.vitals.database_error:
        body.insert(
            0,
            html.Div(t("vital.database_degraded", reason=data.vitals.database_error), className="wall-stale"),
        )
    return html.Div(body, className="wall-panel-body")


def ecology_panel(data: WallData) -> html.Div:
    """AQI per district on the China colours, the worst stations, river sections against target."""
    tiles = []
    for d in DISTRICTS:
        if data.district_code not in (None, d.code):
            continue  # a district-scoped wall: its own tile only
        result = data.district_aqi.get(d.code)
        style = (
            {"backgroundColor": result.color, "color": "#111" if result.level <= 2 else "#fff"}
            if result
            else {}
        )
        tiles.append(
            html.Div(
                [
                    html.Div(d.name, className="wall-aqi-name"),
                    html.Div(str(result.aqi) if result else "—", className="wall-aqi-value"),
                    html.Div(result.category if result else t("eco.none"), className="wall-aqi-cat"),
                ],
                className="wall-aqi-tile",
                style=style,
            )
        )
    live_sections = [s for s in data.water if s.grade is not None]
    worse = [s for s in live_sections if s.worse_than_target]
    stations = [s for s in data.air if s.aqi is not None][:AIR_ROWS]
    air_fresh = data.air_fresh
    return html.Div(
        [
            html.Div(tiles, className="wall-aqi-tiles"),
            html.Div(
                [
                    big_number(
                        t("wall.water_meeting"),
                        f"{len(live_sections) - len(worse)} / {len(live_sections)}",
                        alarm=bool(worse),
                        note=t("wall.water_worse", n=len(worse)) if worse else None,
                    ),
                    *[big_number(s.name, f"{s.aqi}", note=f"{s.district} · {s.category}") for s in stations],
                ],
                className="wall-bigs",
            ),
            html.Div(
                t("eco.silent", n=air_fresh.minutes) if air_fresh.silent else "",
                className="wall-stale" if air_fresh.silent else "",
            ),
        ],
        className="wall-panel-body",
    )


#: The rotation, in order. Pages with richer panels replace entries by key.
PANELS: list[WallPanel] = [
    WallPanel("emergency", "wall.panel.emergency", emergency_panel),
    WallPanel("urban", "wall.panel.urban", urban_panel),
    WallPanel("ecology", "wall.panel.ecology", ecology_panel),
]


def build_panels(data: WallData) -> list[tuple[WallPanel, Any]]:
    """Every panel's content; a panel that fails says so and the others still show."""
    out = []
    for panel in PANELS:
        try:
            body = panel.build(data)
        except Exception as exc:  # one broken panel must not blank the wall
            body = html.Div(t("wall.panel_failed", reason=type(exc).__name__), className="wall-stale")
        out.append((panel, body))
    return out


# /emergency's richer focus panel (open incidents by response level above these alert
# figures) replaces the default; imported last, as it builds on the pieces above.
from dashboards.emergency import wall_panel as _emergency_wall_panel  # noqa: E402

register_panel(WallPanel("emergency", "wall.panel.emergency", _emergency_wall_panel))
