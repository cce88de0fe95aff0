"""``/hotline`` — 12345 热线: the live order stream, today's figures, categories, hot spots by
grid cell, on-time and satisfaction rates, overdue orders and repeat clusters.

Rows and figures come from :mod:`dashboards.hotline` (pure); this module reads the stores
and wires the callback. Everything refreshes from one trigger (:data:`REFRESH`); the map
and the tables travel only when what they show changed. A citizen's words go into table
cells as plain strings, which React renders as text.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import dash
from dash import Input, Output, State, callback, dcc, html

from dashboards import auth, context, push, shared
from dashboards import district as drill
from dashboards import hotline as hl
from dashboards import urban as ub
from dashboards.console import city_time, duration_text
from dashboards.drawn import build_changed, signature
from dashboards.exports import export_links
from dashboards.i18n import t
from dashboards.pages.urban import age_span, panel, panel_class
from models import tickets as ticket_model
from models.users import Permission

#: Pushes refresh the page as orders arrive; the timer keeps ages and stale marks moving.
REFRESH_MS = 15_000
LIVE = push.LiveTrigger("hotline-push", kinds=("tickets",))
#: The page's refresh triggers: the push and the timer.
REFRESH = (Input("hotline-tick", "n_intervals"), LIVE.input)
_PANELS = (
    "hotline-stream-panel",
    "hotline-map-panel",
    "hotline-cat-panel",
    "hotline-rates-panel",
    "hotline-overdue-panel",
    "hotline-repeats-panel",
)
_KPIS = ("new", "open", "overdue", "satisfaction")


def _kpi(key: str) -> html.Div:
    return html.Div(
        className="kpi",
        children=[
            html.Div(t(f"hotline.kpi.{key}"), className="kpi-label"),
            html.Div("—", id=f"hotline-kpi-{key}", className="kpi-value"),
        ],
    )


def layout(**_query: str) -> html.Div:
    return html.Div(
        className="page hotline",
        children=[
            dcc.Interval(id="hotline-tick", interval=REFRESH_MS),
            LIVE.store(),
            # What the charts in this browser show (signature of the hot cells).
            dcc.Store(id="hotline-drawn"),
            drill.scope_badge(auth.scope_district()),
            html.Div(id="hotline-status", className="status-line"),
            html.Div([_kpi(k) for k in _KPIS], className="kpi-row hotline-kpis"),
            html.Div(
                className="hotline-top",
                children=[
                    panel(
                        "hotline-stream-panel",
                        t("hotline.stream"),
                        html.Div(id="hotline-stream", className="hotline-scroll"),
                        age_id="hotline-stream-age",
                        extra=export_links("tickets-recent"),
                    ),
                    panel(
                        "hotline-map-panel",
                        t("hotline.hot_spots"),
                        html.Div(
                            [
                                dcc.Graph(
                                    responsive=True,
                                    id="hotline-map",
                                    style={"height": f"{hl.HOT_MAP_PX}px"},
                                    className="hotline-map",
                                    config={"displayModeBar": False, "scrollZoom": True},
                                ),
                                html.Div(t("hotline.hot_spots_note"), className="eco-note"),
                            ]
                        ),
                        age_id="hotline-map-age",
                    ),
                ],
            ),
            html.Div(
                className="hotline-bottom",
                children=[
                    panel(
                        "hotline-cat-panel",
                        t("hotline.categories"),
                        dcc.Graph(
                            responsive=True,
                            id="hotline-categories",
                            style={"height": f"{hl.CATEGORY_PX}px"},
                            className="hotline-categories",
                            config={"displayModeBar": False},
                        ),
                        age_id="hotline-cat-age",
                    ),
                    panel(
                        "hotline-rates-panel",
                        t("hotline.rates"),
                        html.Div(id="hotline-rates"),
                        age_id="hotline-rates-age",
                    ),
                    panel(
                        "hotline-overdue-panel",
                        t("hotline.overdue"),
                        html.Div(id="hotline-overdue", className="hotline-scroll-short"),
                        age_id="hotline-overdue-age",
                        extra=export_links("tickets-overdue"),
                    ),
                    panel(
                        "hotline-repeats-panel",
                        t("hotline.repeats"),
                        html.Div(id="hotline-repeats", className="hotline-scroll-short"),
                        age_id="hotline-repeats-age",
                        extra=export_links("tickets-repeats"),
                    ),
                ],
            ),
        ],
    )


# ---- tables ---------------------------------------------------------------------------------


def _table(keys: tuple[str, ...], rows: list[Any], class_name: str = "") -> html.Table:
    return html.Table(
        [html.Thead(html.Tr([html.Th(t(k)) for k in keys])), html.Tbody(rows)],
        className=f"data-table hotline-table {class_name}".strip(),
    )


def caller_cell(row: hl.StreamRow, may_reveal: bool) -> html.Td:
    """The masked caller; for those who handle orders, a button that shows this one caller
    (assets/cityops-hotline.js asks the server, which checks the role and district and
    audits the reveal). The tab keeps it on screen for a minute through the stream's
    redraws, then masks it again."""
    if not may_reveal:
        return html.Td(row.caller, className="num")
    return html.Td(
        [
            html.Span(row.caller, className="hotline-caller"),
            html.Button(
                t("hotline.reveal"),
                className="hotline-reveal",
                title=t("hotline.reveal_title"),
                **{"data-ticket": row.ticket_id, "data-failed": t("hotline.reveal_failed")},
            ),
        ],
        className="num",
    )


def may_reveal_callers() -> bool:
    account = auth.current_user()
    return account is not None and account.can(Permission.REVEAL_PERSONAL)


def stream_table(rows: list[hl.StreamRow], may_reveal: bool = False) -> html.Div | html.Table:
    if not rows:
        return html.Div(t("hotline.none"), className="eco-muted")
    keys = (
        "hotline.col.time",
        "hotline.col.category",
        "hotline.col.content",
        "hotline.col.district",
        "hotline.col.caller",
        "hotline.col.state",
    )
    body = []
    for r in rows:
        # Title and content are the citizen's words: plain strings, rendered as text.
        what: list[Any] = [
            html.Div(r.title, className="hotline-title"),
            html.Div(r.content, className="hotline-content"),
        ]
        if r.repeat_of:
            what.append(html.Div(t("hotline.repeat_of", id=r.repeat_of), className="eco-muted"))
        body.append(
            html.Tr(
                [
                    html.Td([html.Div(r.at, className="num"), html.Div(r.channel, className="eco-muted")]),
                    html.Td(
                        [r.category, html.Span(t("hotline.urgent"), className="hotline-urgent")]
                        if r.urgent
                        else r.category
                    ),
                    html.Td(what, className="hotline-what"),
                    html.Td(r.district),
                    caller_cell(r, may_reveal),
                    html.Td(r.state_label),
                ],
                className="hotline-ticket-row",
                title=r.ticket_id,
            )
        )
    return _table(keys, body)


def overdue_table(rows: list[hl.OverdueRow]) -> html.Div | html.Table:
    if not rows:
        return html.Div(t("hotline.overdue_none"), className="eco-muted")
    keys = (
        "hotline.col.ticket",
        "hotline.col.kinds",
        "hotline.col.over",
        "hotline.col.category",
        "hotline.col.department",
    )
    body = [
        html.Tr(
            [
                html.Td(
                    [r.ticket_id, html.Span(t("hotline.supervised"), className="hotline-urgent")]
                    if r.supervised
                    else r.ticket_id,
                    className="num",
                ),
                html.Td(t("hotline.kinds_overdue", kinds=r.kinds)),
                html.Td(duration_text(r.over_s), className="num hotline-over"),
                html.Td(r.category),
                html.Td(r.department),
            ],
            className="hotline-overdue-row",
        )
        for r in rows
    ]
    return _table(keys, body)


def repeats_table(clusters: list[hl.RepeatCluster], now: datetime) -> html.Div | html.Table:
    if not clusters:
        return html.Div(t("hotline.repeats_none"), className="eco-muted")
    keys = (
        "hotline.col.first",
        "hotline.col.category",
        "hotline.col.district",
        "hotline.col.size",
        "hotline.col.last",
    )
    body = [
        html.Tr(
            [
                html.Td(c.root, className="num"),
                html.Td(c.category),
                html.Td(c.district),
                html.Td(t("hotline.cluster_size", n=c.size, merged=c.confirmed, likely=c.likely)),
                html.Td(city_time(c.last, now), className="num"),
            ],
            className="hotline-repeat-row",
        )
        for c in clusters
    ]
    return _table(keys, body)


def rates_panel(rates: ticket_model.OnTimeRates, satisfaction: ticket_model.SatisfactionStats) -> html.Div:
    def item(key: str, value: float | None, detail: str) -> html.Div:
        return html.Div(
            [
                html.Div(t(key), className="kpi-label"),
                html.Div(ub.rate_text(value), className="kpi-value"),
                html.Div(detail, className="eco-muted"),
            ],
            className="hotline-rate",
        )

    return html.Div(
        [
            item("hotline.rate.accept", rates.accept.rate, ub.rate_detail(rates.accept)),
            item("hotline.rate.close", rates.close.rate, ub.rate_detail(rates.close)),
            item(
                "hotline.rate.satisfaction",
                satisfaction.rate,
                t(
                    "hotline.rated",
                    s=satisfaction.satisfied,
                    b=satisfaction.basically_satisfied,
                    d=satisfaction.dissatisfied,
                ),
            ),
        ],
        className="hotline-rates",
    )


# ---- the refresh ----------------------------------------------------------------------------


@callback(
    Output("hotline-status", "children"),
    *(Output(f"hotline-kpi-{k}", "children") for k in _KPIS),
    Output("hotline-stream", "children"),
    Output("hotline-map", "figure"),
    Output("hotline-categories", "figure"),
    Output("hotline-drawn", "data"),
    Output("hotline-rates", "children"),
    Output("hotline-overdue", "children"),
    Output("hotline-repeats", "children"),
    *(Output(p, "className") for p in _PANELS),
    *(Output(f"{p.removesuffix('-panel')}-age", "children") for p in _PANELS),
    *REFRESH,
    State("hotline-drawn", "data"),
)
@shared.refresh()
def refresh(_n: int | None, _live: dict | None, drawn: dict[str, str] | None) -> tuple:
    ctx = context.current()
    now = datetime.now(UTC)
    today = hl.day_start(now)
    window = now - hl.RATES_WINDOW
    scope = auth.scope_district()
    try:
        # The hotline system's feed as a whole says whether orders arrive (no record shown).
        feed_newest = ub.newest_stamp(ctx.live.recent("tickets", 1), "created_at")
        with ctx.engine.connect() as conn:
            recent = ticket_model.recent_tickets(conn, hl.STREAM_ROWS, district_code=scope)
            categories = ticket_model.volumes(conn, today, now, by="category", district_code=scope)
            open_now = ticket_model.open_count(conn, district_code=scope)
            flags = ticket_model.overdue(conn, now, district_code=scope)
            # On-time and satisfaction rates of the same orders: one pass over the window.
            service = ticket_model.service_rates(conn, window, now, now=now, district_code=scope)
            spots = ticket_model.hot_spots(conn, now - timedelta(hours=24), hl.HOT_SPOTS, district_code=scope)
            links = ticket_model.repeat_links(conn, window, district_code=scope)
    except Exception as exc:  # the page shows the degraded state instead of an error
        return (t("hotline.degraded", reason=type(exc).__name__), *([dash.no_update] * 23))

    # The live stream says when the hotline system last sent an order; after a restart
    # (empty stream) the newest stored order stands in.
    newest = feed_newest or (recent[0].ts if recent else None)
    fresh = ub.feed_freshness(newest, now, hl.TICKETS_SILENT_AFTER_S)
    cells = hl.hot_cells(spots)
    pairs = hl.category_pairs(categories)
    hot_map, now_drawn = hl.hot_map_update(cells, drawn, tile_url=ctx.settings.tile_url)
    bars = (
        ub.bar_patch(pairs)
        if drawn
        else ub.bar_figure(pairs, uirevision="hotline-categories", height=hl.CATEGORY_PX)
    )
    overdue_n = hl.overdue_tickets(flags)
    stream = hl.stream_rows(recent, now)
    may_reveal = may_reveal_callers()
    late = hl.overdue_rows(flags, now)
    clusters = hl.repeat_clusters(links)
    # Each table travels only when what it shows changed (signatures beside the map's);
    # the overdue list's durations count by the second while any order is late.
    tables, signed = build_changed(
        {
            "stream": lambda: stream_table(stream, may_reveal),
            "rates": lambda: rates_panel(service.on_time, service.satisfaction),
            "overdue": lambda: overdue_table(late),
            "repeats": lambda: repeats_table(clusters, now),
        },
        {
            "stream": signature([may_reveal], stream),
            "rates": signature([service]),
            "overdue": signature(
                (r.ticket_id, r.kinds, duration_text(r.over_s), r.category, r.department, r.supervised)
                for r in late
            ),
            "repeats": signature((c, city_time(c.last, now)) for c in clusters),
        },
        drawn,
    )
    return (
        t("hotline.live", at=city_time(now, now)),
        f"{sum(categories.values()):,}",
        f"{open_now:,}",
        html.Span(f"{overdue_n:,}", className="hotline-over" if overdue_n else ""),
        ub.rate_text(service.satisfaction.rate),
        tables["stream"],
        hot_map,
        bars,
        {**now_drawn, **signed},
        tables["rates"],
        tables["overdue"],
        tables["repeats"],
        *(panel_class(fresh) for _ in _PANELS),
        *(age_span(fresh) for _ in _PANELS),
    )


dash.register_page(
    __name__, path="/hotline", name=t("nav.hotline"), title=t("hotline.title"), order=4, layout=layout
)
