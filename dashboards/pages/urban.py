"""``/urban`` — 城市管理: video sightings binned by grid cell, open cases with their deadlines,
the GB/T 30428 indicators by district and department, live.

Rows and figures come from :mod:`dashboards.urban` (pure); this module reads the stores and
wires the callback. Everything refreshes from one trigger (:data:`REFRESH`); the map sends
only new counts while the set of cells and cases on it is unchanged, and the case list and
the indicators travel only when what they show changed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import dash
from dash import Input, Output, State, callback, dcc, html

from dashboards import auth, context, push, shared
from dashboards import district as drill
from dashboards import urban as ub
from dashboards.console import city_time
from dashboards.drawn import build_changed, signature
from dashboards.ecology import Freshness
from dashboards.exports import export_links
from dashboards.i18n import t
from dashboards.pages.ecology import age_text
from models import cases as case_model

#: Pushes refresh the page as video events arrive; the timer keeps ages and stale marks moving.
REFRESH_MS = 15_000
LIVE = push.LiveTrigger("urban-push", kinds=("video",))
#: The page's refresh triggers: the push and the timer.
REFRESH = (Input("urban-tick", "n_intervals"), LIVE.input)
INDICATOR_BY = ("district", "department")
_PANELS = ("urban-map-panel", "urban-cases-panel", "urban-ind-panel", "urban-types-panel")


def _kpi(kpi_id: str, label_key: str) -> html.Div:
    return html.Div(
        className="kpi",
        children=[
            html.Div(t(label_key), className="kpi-label"),
            html.Div("—", id=kpi_id, className="kpi-value"),
        ],
    )


def panel(
    panel_id: str, title: Any, body: Any, *, age_id: str, extra: Any = None, class_name: str = ""
) -> html.Div:
    """A panel whose head carries its data's age; the page marks the whole panel stale."""
    head = [html.H2(title), html.Span(id=age_id, className="eco-age")]
    if extra is not None:
        head.insert(1, extra)
    return html.Div(
        id=panel_id,
        className=f"panel {class_name}".strip(),
        children=[html.Div(head, className="panel-head"), body],
    )


def age_span(fresh: Freshness) -> html.Span:
    return html.Span(age_text(fresh), className="eco-silent" if fresh.silent else "eco-fresh")


def panel_class(fresh: Freshness, class_name: str = "") -> str:
    return f"panel {class_name} stale".strip() if fresh.silent else f"panel {class_name}".strip()


def layout(**_query: str) -> html.Div:
    return html.Div(
        className="page urban",
        children=[
            dcc.Interval(id="urban-tick", interval=REFRESH_MS),
            LIVE.store(),
            # What the map in this browser shows (signatures of its cells and cases).
            dcc.Store(id="urban-map-drawn"),
            drill.scope_badge(auth.scope_district()),
            html.Div(id="urban-status", className="status-line"),
            html.Div(
                className="kpi-row urban-kpis",
                children=[
                    _kpi("urban-kpi-events", "urban.kpi.events"),
                    _kpi("urban-kpi-cells", "urban.kpi.cells"),
                    _kpi("urban-kpi-open", "urban.kpi.open"),
                    _kpi("urban-kpi-overdue", "urban.kpi.overdue"),
                    _kpi("urban-kpi-filing", "urban.kpi.filing"),
                ],
            ),
            html.Div(
                className="urban-top",
                children=[
                    panel(
                        "urban-map-panel",
                        t("urban.map"),
                        html.Div(
                            [
                                dcc.Graph(
                                    responsive=True,
                                    id="urban-map",
                                    style={"height": f"{ub.MAP_HEIGHT_PX}px"},
                                    className="urban-map",
                                    config={"displayModeBar": False, "scrollZoom": True},
                                ),
                                _legend(),
                            ]
                        ),
                        age_id="urban-map-age",
                    ),
                    panel(
                        "urban-cases-panel",
                        t("urban.cases"),
                        html.Div(id="urban-cases", className="urban-scroll"),
                        age_id="urban-cases-age",
                        extra=export_links("cases"),
                    ),
                ],
            ),
            html.Div(
                className="urban-bottom",
                children=[
                    panel(
                        "urban-ind-panel",
                        html.Span(id="urban-ind-title"),
                        html.Div(id="urban-indicators"),
                        age_id="urban-ind-age",
                        extra=html.Div(
                            [
                                dcc.RadioItems(
                                    id="urban-ind-by",
                                    options=[{"label": t(f"urban.by.{k}"), "value": k} for k in INDICATOR_BY],
                                    value="district",
                                    inline=True,
                                    className="indicator-switch urban-switch",
                                ),
                                # Follows the switch: by district or by department.
                                html.Div(export_links("case-indicators"), id="urban-ind-export"),
                            ],
                            className="urban-ind-tools",
                        ),
                    ),
                    panel(
                        "urban-types-panel",
                        t("urban.types"),
                        dcc.Graph(
                            responsive=True,
                            id="urban-types",
                            style={"height": f"{ub.BAR_HEIGHT_PX}px"},
                            className="urban-types",
                            config={"displayModeBar": False},
                        ),
                        age_id="urban-types-age",
                    ),
                ],
            ),
        ],
    )


def _legend() -> html.Div:
    """The map's key lives outside the map: the map draws no text (no glyph fetches)."""
    items: list[Any] = [html.Span(t("urban.legend.heat"), className="eco-legend-title")]
    items += [html.Span(className="urban-step", style={"backgroundColor": c}) for c in ub.HEAT_COLOURS]
    items.append(html.Span(t("urban.legend.cases"), className="eco-legend-title"))
    for status in ("overdue", "due_soon", "ok", "stopped", "none"):
        items.append(
            html.Span(
                [
                    html.Span(className="urban-dot", style={"backgroundColor": ub.STATUS_COLOURS[status]}),
                    t(f"urban.status.{status}"),
                ],
                className="urban-key",
            )
        )
    return html.Div(items, className="eco-legend")


# ---- tables ---------------------------------------------------------------------------------


def case_table(entries: list[ub.CaseListEntry]) -> html.Div | html.Table:
    if not entries:
        return html.Div(t("urban.cases_none"), className="eco-muted")
    keys = ("urban.col.case", "urban.col.type", "urban.col.district", "urban.col.state", "urban.col.deadline")
    body = [
        html.Tr(
            [
                html.Td(e.case_id, className="num urban-case-id"),
                html.Td(e.type_label),
                html.Td(e.district),
                html.Td(e.state_label),
                html.Td(e.deadline, className=f"num urban-{e.status}"),
            ],
            className="urban-case-row",
            title=t("urban.reported_at", at=e.reported, n=e.evidence_count),
        )
        for e in entries
    ]
    return html.Table(
        [html.Thead(html.Tr([html.Th(t(k)) for k in keys])), html.Tbody(body)],
        className="data-table urban-table",
    )


def indicator_table(rows: list[ub.IndicatorRow], by: str) -> html.Table:
    keys = (
        f"urban.by.{by}",
        "urban.col.reported",
        "urban.col.filed",
        "urban.col.filing_rate",
        "urban.col.on_time_handling",
        "urban.col.closing_rate",
        "urban.col.on_time_closing",
        "urban.col.rework_rate",
    )
    body = [
        html.Tr(
            [
                html.Td(r.name),
                html.Td(r.reported, className="num"),
                html.Td(r.filed, className="num"),
                html.Td(r.filing_rate, className="num"),
                html.Td(r.on_time_handling, className="num"),
                html.Td(r.closing_rate, className="num"),
                html.Td(r.on_time_closing, className="num"),
                html.Td(r.rework_rate, className="num"),
            ],
            className="urban-total" if r.total else "",
        )
        for r in rows
    ]
    return html.Table(
        [html.Thead(html.Tr([html.Th(t(k)) for k in keys])), html.Tbody(body)],
        className="data-table urban-table",
    )


# ---- the refresh ----------------------------------------------------------------------------


@callback(
    Output("urban-status", "children"),
    Output("urban-kpi-events", "children"),
    Output("urban-kpi-cells", "children"),
    Output("urban-kpi-open", "children"),
    Output("urban-kpi-overdue", "children"),
    Output("urban-kpi-filing", "children"),
    Output("urban-map", "figure"),
    Output("urban-map-drawn", "data"),
    Output("urban-cases", "children"),
    Output("urban-ind-title", "children"),
    Output("urban-indicators", "children"),
    Output("urban-types", "figure"),
    *(Output(p, "className") for p in _PANELS),
    *(Output(f"{p.removesuffix('-panel')}-age", "children") for p in _PANELS),
    *REFRESH,
    Input("urban-ind-by", "value"),
    State("urban-map-drawn", "data"),
)
@shared.refresh()
def refresh(_n: int | None, _live: dict | None, by_value: str | None, drawn: dict[str, str] | None) -> tuple:
    ctx = context.current()
    now = datetime.now(UTC)
    by: Literal["district", "department"] = "department" if by_value == "department" else "district"
    since = now - timedelta(hours=24)
    month = ub.month_start(now)
    scope = auth.scope_district()
    try:
        # The video feed as a whole says whether sightings arrive (no record shown).
        video_newest = ub.newest_stamp(ctx.live.recent("video", 1), "received_at")
        with ctx.engine.connect() as conn:
            per_cell, per_type = case_model.video_event_tallies(conn, since, now, district_code=scope)
            open_cases = case_model.open_case_marks(conn, limit=ub.MAP_CASES, district_code=scope)
            # Open, overdue and the month's indicators read the same cases: one pass.
            board = case_model.case_board(conn, month, now, by=by, now=now, district_code=scope)
    except Exception as exc:  # the page shows the degraded state instead of an error
        return (t("urban.degraded", reason=type(exc).__name__), *([dash.no_update] * 19))

    rows = ub.case_rows(open_cases, now)
    cells = ub.heat_cells(per_cell)
    video_fresh = ub.feed_freshness(video_newest, now, ub.VIDEO_SILENT_AFTER_S)
    case_fresh = ub.feed_freshness(ub.newest_case_activity(open_cases), now, ub.VIDEO_SILENT_AFTER_S)
    figure, now_drawn = ub.map_update(cells, rows, drawn, tile_url=ctx.settings.tile_url)
    type_pairs = ub.type_rows(per_type)
    # The chart was drawn with the map: after the first refresh only its numbers travel.
    types = ub.bar_patch(type_pairs) if drawn else ub.bar_figure(type_pairs, uirevision="urban-types")
    listed = ub.case_list(rows[: ub.LIST_CASES], now)
    ind_rows = ub.indicator_rows(board.indicators, by)
    # The tables travel only when what they show changed (their signatures ride in the
    # map's store); the case list changes by the second only while a deadline runs.
    tables, signed = build_changed(
        {
            "case-table": lambda: case_table(listed),
            "indicator-table": lambda: indicator_table(ind_rows, by),
        },
        {
            "case-table": signature(listed),
            "indicator-table": signature([by], ind_rows),
        },
        drawn,
    )
    city = ub.total_indicators(board.indicators, "all")
    freshness = (video_fresh, case_fresh, case_fresh, video_fresh)
    return (
        t("urban.live", at=city_time(now, now)),
        f"{sum(per_type.values()):,}",
        f"{len(cells.ids):,}",
        f"{board.open:,}",
        html.Span(f"{board.overdue:,}", className="urban-overdue" if board.overdue else ""),
        ub.rate_text(city.filing_rate),
        figure,
        {**now_drawn, **signed},
        tables["case-table"],
        t("urban.indicators", month=f"{month:%Y-%m}"),
        tables["indicator-table"],
        types,
        *(panel_class(f) for f in freshness),
        *(age_span(f) for f in freshness),
    )


@callback(Output("urban-ind-export", "children"), Input("urban-ind-by", "value"))
def indicator_export(by_value: str | None) -> html.Div:
    """The indicators' download follows the switch: by district or by department."""
    return export_links("case-indicators", by="department" if by_value == "department" else "district")


dash.register_page(
    __name__, path="/urban", name=t("nav.urban"), title=t("urban.title"), order=3, layout=layout
)
