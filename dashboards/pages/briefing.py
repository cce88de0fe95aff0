"""``/briefing`` — 运行日报: one city day's figures for the leaders, on screen and on paper.

``?date=YYYY-MM-DD`` picks the day (default: yesterday, city time). The page is built once
per visit from :func:`dashboards.briefing.read_briefing` (no timer: a past day does not
change), prints on A4 with ``assets/cityops-briefing.css``, and links the same briefing
as a PNG drawn on the server (``/api/briefing/<day>.png``). A district-scoped account
sees its district's briefing. Printing and downloading are exports: the page needs
:data:`Permission.EXPORT`, and the PNG download is audited.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import dash
from dash import Input, Output, clientside_callback, dcc, html

from dashboards import auth, console, context
from dashboards import briefing as br
from dashboards.exports import export_links
from dashboards.i18n import t
from models.clock import CITY_TZ
from models.users import Permission

log = logging.getLogger(__name__)

GRAPH_CONFIG = {"displayModeBar": False, "staticPlot": True, "responsive": True}


def _card(label: str, value: str) -> html.Div:
    return html.Div(
        [html.Div(value, className="kpi-value"), html.Div(label, className="kpi-label")], className="kpi"
    )


def _table(heads: list[str], rows: list[list[Any]], class_name: str = "") -> html.Table:
    return html.Table(
        [
            html.Thead(html.Tr([html.Th(h) for h in heads])),
            html.Tbody([html.Tr([html.Td(c) for c in r]) for r in rows]),
        ],
        className=f"data-table briefing-table {class_name}".strip(),
    )


def _section(title: str, *children: Any, links: html.Div | None = None) -> html.Section:
    """A titled part of the briefing; ``links`` downloads the day's records behind it."""
    head = html.Div(
        [html.H2(title), links] if links is not None else [html.H2(title)], className="panel-head"
    )
    return html.Section([head, *children], className="panel briefing-section")


def _day_links(dataset: str, b: br.Briefing) -> html.Div:
    day = f"{b.day:%Y-%m-%d}"
    return html.Div(export_links(dataset, since=day, until=day), className="no-print")


def alerts_section(b: br.Briefing) -> html.Section:
    rows = [
        [console.severity_label(s), b.alerts.raised_by_severity[s], b.alerts.closed_by_severity[s]]
        for s in br.SEVERITIES
    ]
    rows.append([t("export.total"), b.alerts.raised, b.alerts.closed])
    domains = [
        [console.domain_label(d), n, b.alerts.closed_by_domain[d]]
        for d, n in b.alerts.raised_by_domain.items()
    ]
    return _section(
        t("briefing.alerts"),
        html.Div(
            [
                _table([t("console.col.severity"), t("briefing.raised"), t("briefing.closed")], rows),
                _table([t("console.filter.domain"), t("briefing.raised"), t("briefing.closed")], domains),
            ],
            className="briefing-pair",
        ),
        links=_day_links("alert-history", b),
    )


def incidents_section(b: br.Briefing) -> html.Section:
    levels = [
        [t("emergency.level.label", numeral=_numeral(lv)), n] for lv, n in b.incidents.opened_by_level.items()
    ]
    summary = t("briefing.incidents_line", opened=b.incidents.opened, closed=b.incidents.closed)
    return _section(
        t("briefing.incidents"),
        html.P(summary),
        _table([t("emergency.col.level"), t("briefing.opened")], levels),
    )


def _numeral(level: str) -> str:
    from models.incidents import ResponseLevel

    return ResponseLevel(level).numeral


def tickets_section(b: br.Briefing) -> html.Section:
    tk = b.tickets
    s = tk.satisfaction
    facts = [
        [t("briefing.kpi.tickets_received"), f"{tk.received:,}"],
        [t("briefing.kpi.tickets_closed"), f"{tk.closed:,}"],
        [t("hotline.rate.accept"), br.rate_text(tk.on_time.accept.rate)],
        [t("hotline.rate.close"), br.rate_text(tk.on_time.close.rate)],
    ]
    facts.append(
        [
            t("briefing.kpi.satisfaction"),
            t("briefing.satisfaction_detail", rate=br.rate_text(s.rate), n=s.rated),
        ]
    )
    children: list[Any] = [_table([t("briefing.item"), t("briefing.value")], facts)]
    if tk.top_categories:
        children.append(
            _table([t("hotline.col.category"), t("briefing.count")], [list(p) for p in tk.top_categories])
        )
    return _section(
        t("briefing.tickets"), html.Div(children, className="briefing-pair"), links=_day_links("tickets", b)
    )


def cases_section(b: br.Briefing) -> html.Section:
    c = b.cases
    rows = [
        [t("urban.col.reported"), f"{c.reported:,}"],
        [t("urban.col.filed"), f"{c.filed:,}"],
        [t("briefing.kpi.cases_closed"), f"{c.closed:,}"],
        [t("urban.col.filing_rate"), br.rate_text(c.filing_rate)],
        [t("urban.col.on_time_handling"), br.rate_text(c.on_time_handling_rate)],
        [t("urban.col.closing_rate"), br.rate_text(c.closing_rate)],
        [t("urban.col.on_time_closing"), br.rate_text(c.on_time_closing_rate)],
    ]
    return _section(t("briefing.cases"), _table([t("briefing.item"), t("briefing.value")], rows))


def air_section(b: br.Briefing) -> html.Section:
    rows = []
    for code, result in b.aqi_by_district.items():
        primary = (
            "、".join(t(f"eco.pollutant.{p}") for p in result.primary) if result and result.primary else "—"
        )
        rows.append([console.district_name(code), br.aqi_text(result), primary])
    online = t(
        "briefing.online_line", online=b.devices_online, total=b.devices, rate=br.rate_text(b.online_rate)
    )
    return _section(
        t("briefing.air"),
        _table([t("col.district"), t("briefing.daily_aqi"), t("eco.col.primary")], rows),
        html.P(online, className="briefing-note"),
    )


def briefing_view(b: br.Briefing) -> html.Div:
    """The whole briefing (plain components: also what the tests read)."""
    day = b.day
    next_day = day + timedelta(days=1)
    today = b.made_at.astimezone(CITY_TZ).date()
    nav = [dcc.Link(t("briefing.previous"), href=f"/briefing?date={day - timedelta(days=1):%Y-%m-%d}")]
    if next_day <= today:
        nav.append(dcc.Link(t("briefing.next"), href=f"/briefing?date={next_day:%Y-%m-%d}"))
    nav += [
        html.Button(t("briefing.print"), id="briefing-print", className="admin-btn", n_clicks=0),
        html.A(
            t("briefing.png"),
            href=f"/api/briefing/{day:%Y-%m-%d}.png",
            download="",
            className="export-link",
            id="briefing-png",
        ),
    ]
    return html.Div(
        className="page briefing",
        children=[
            html.Header(
                [
                    html.H1(br.title_text(b), id="briefing-title"),
                    html.Div(
                        t("briefing.made_at", at=f"{b.made_at.astimezone(CITY_TZ):%Y-%m-%d %H:%M}"),
                        className="briefing-made",
                    ),
                    html.Nav(nav, className="briefing-controls no-print"),
                ],
                className="briefing-head",
            ),
            html.Div([_card(label, value) for label, value in br.key_figures(b)], className="briefing-kpis"),
            html.Div(
                [
                    dcc.Graph(figure=f, config=GRAPH_CONFIG, className="briefing-chart")
                    for f in br.briefing_figures(b)
                ],
                className="briefing-charts",
            ),
            air_section(b),
            alerts_section(b),
            incidents_section(b),
            tickets_section(b),
            cases_section(b),
        ],
    )


def layout(date: str | None = None, **_query: str) -> html.Div:
    now = auth.now()
    try:
        day = br.parse_day(date, now)
    except ValueError:
        return _message(t("briefing.bad_date", value=(date or "")[:20]))
    account = auth.current_user()
    district = account.district_code if account is not None else None
    try:
        b = br.read_briefing(context.current(), day, district_code=district, now=now)
    except Exception as exc:  # the database is away: say so instead of an error page
        log.warning("briefing page: read failed (%s)", type(exc).__name__)
        return _message(t("export.unavailable", reason=type(exc).__name__))
    return briefing_view(b)


def _message(text: str) -> html.Div:
    return html.Div([html.H1(t("briefing.title")), html.P(text, role="alert")], className="page briefing")


clientside_callback(
    "function (n) { if (n) { window.print(); } return window.dash_clientside.no_update; }",
    Output("briefing-print", "title"),
    Input("briefing-print", "n_clicks"),
    prevent_initial_call=True,
)

dash.register_page(
    __name__,
    path="/briefing",
    name=t("nav.briefing"),
    title=t("briefing.title"),
    order=6,
    layout=layout,
    permission=Permission.EXPORT.value,
)
