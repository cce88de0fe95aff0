"""``/`` — 城市运行体征: the city's vital signs at a glance, refreshed live."""

from __future__ import annotations

import time
from datetime import datetime

import dash
import plotly.graph_objects as go
from dash import Input, Output, callback, dcc, html

from dashboards import context, theme
from dashboards.i18n import t
from dashboards.vitals import DistrictFigures, OverviewSnapshot, summarise
from geo.boundaries import city_bounds, districts_geojson
from models.clock import CITY_TZ
from models.live import DeviceState
from models.standards import aqi
from models.standards.aqi import AqiResult

REFRESH_MS = 5000
MAP_HEIGHT_PX = 620
_minx, _miny, _maxx, _maxy = city_bounds()
CITY_CENTRE = {"lon": (_minx + _maxx) / 2, "lat": (_miny + _maxy) / 2}
INDICATORS = ("aqi", "devices_online", "pm25")


def _kpi(kpi_id: str, label_key: str) -> html.Div:
    return html.Div(
        className="kpi",
        children=[
            html.Div(t(label_key), className="kpi-label"),
            html.Div("—", id=kpi_id, className="kpi-value"),
        ],
    )


def layout(**_query: str) -> html.Div:
    return html.Div(
        className="page overview",
        children=[
            dcc.Interval(id="overview-tick", interval=REFRESH_MS),
            html.Div(id="overview-status", className="status-line"),
            html.Div(
                className="kpi-row",
                children=[
                    _kpi("kpi-devices-online", "kpi.devices_online"),
                    _kpi("kpi-messages-hour", "kpi.messages_hour"),
                    _kpi("kpi-aqi-city", "kpi.aqi_city"),
                    _kpi("kpi-pm25-city", "kpi.pm25_city"),
                    _kpi("kpi-freshness", "kpi.freshness"),
                ],
            ),
            html.Div(
                className="grid-2",
                children=[
                    html.Div(
                        className="panel",
                        children=[
                            html.Div(
                                className="panel-head",
                                children=[
                                    html.H2(t("map.title")),
                                    dcc.RadioItems(
                                        id="overview-indicator",
                                        options=[
                                            {"label": t(f"indicator.{k}"), "value": k} for k in INDICATORS
                                        ],
                                        value="aqi",
                                        inline=True,
                                        className="indicator-switch",
                                    ),
                                ],
                            ),
                            dcc.Graph(
                                id="overview-map",
                                className="map",
                                config={"displayModeBar": False, "scrollZoom": True},
                            ),
                        ],
                    ),
                    html.Div(
                        className="stack",
                        children=[
                            html.Div(
                                className="panel",
                                children=[
                                    html.H2(t("chart.readings_24h")),
                                    dcc.Graph(
                                        id="overview-spark",
                                        className="spark",
                                        config={"displayModeBar": False},
                                    ),
                                ],
                            ),
                            html.Div(
                                className="panel",
                                children=[html.H2(t("table.districts")), html.Div(id="overview-districts")],
                            ),
                        ],
                    ),
                ],
            ),
        ],
    )


def _age_text(age: float | None) -> str:
    if age is None:
        return t("kpi.freshness_none")
    if age < 120:
        return t("unit.seconds_ago", n=int(age))
    return t("unit.minutes_ago", n=int(age // 60))


def map_figure(snapshot: OverviewSnapshot, states: list[DeviceState], indicator: str) -> go.Figure:
    codes = [d.district_code for d in snapshot.districts]
    if indicator == "aqi":
        # Level 1–6 on a stepped scale of China's six AQI colours (HJ 633 Table 2); no data = 0.
        values = [d.aqi.level if d.aqi is not None else 0 for d in snapshot.districts]
        colorscale = [[0, theme.PANEL], [1 / 7, theme.PANEL]]
        for level in aqi.LEVELS:
            colorscale += [[level.number / 7, level.color], [(level.number + 1) / 7, level.color]]
        zmax = 7
    elif indicator == "pm25":
        values = [d.pm25 if d.pm25 is not None else 0 for d in snapshot.districts]
        colorscale = [[0, "#00E400"], [0.35, "#FFFF00"], [0.6, "#FF7E00"], [1, "#FF0000"]]
        zmax = max(115.0, *values)
    else:
        values = [d.online for d in snapshot.districts]
        colorscale = [[0, "#0f2a4a"], [1, "#2f7fd8"]]
        zmax = max(1, *values)
    now = time.time()
    fig = go.Figure()
    fig.add_trace(
        go.Choroplethmap(
            geojson=districts_geojson(),
            featureidkey="properties.district_code",
            locations=codes,
            z=values,
            zmin=0,
            zmax=zmax,
            customdata=[_district_hover(d, indicator) for d in snapshot.districts],
            colorscale=colorscale,
            marker={"opacity": 0.55, "line": {"color": "#9cc3ff", "width": 1.2}},
            text=[d.name for d in snapshot.districts],
            hovertemplate="%{text}: %{customdata}<extra></extra>",
            showscale=False,
        )
    )
    fig.add_trace(
        go.Scattermap(
            lon=[s.lon for s in states],
            lat=[s.lat for s in states],
            mode="markers",
            marker={"size": 6, "color": [theme.ONLINE if s.online(now) else theme.OFFLINE for s in states]},
            text=[s.name for s in states],
            hovertemplate="%{text}<extra></extra>",
        )
    )
    fig.update_layout(
        map={
            "style": theme.map_style(context.current().settings.tile_url),
            "center": CITY_CENTRE,
            "zoom": 8.45,
        },
        margin={"l": 0, "r": 0, "t": 0, "b": 0},
        height=MAP_HEIGHT_PX,
        paper_bgcolor=theme.PANEL,
        showlegend=False,
        uirevision="overview-map",
    )
    return fig


def spark_figure(counts: list[tuple[datetime, int]]) -> go.Figure:
    return go.Figure(
        go.Scatter(
            x=[c[0].astimezone(CITY_TZ).replace(tzinfo=None) for c in counts],
            y=[c[1] for c in counts],
            mode="lines",
            line={"color": theme.ACCENT, "width": 2},
            fill="tozeroy",
            hovertemplate="%{x|%H:00}: %{y}<extra></extra>",
        ),
        layout=theme.figure_layout(height=160),
    )


def _district_hover(d: DistrictFigures, indicator: str) -> str:
    if indicator == "aqi":
        return "—" if d.aqi is None else f"AQI {d.aqi.aqi} {d.aqi.category}"
    if indicator == "pm25":
        return "—" if d.pm25 is None else f"{d.pm25:.1f} µg/m³"
    return f"{d.online} / {d.devices}"


def aqi_badge(result: AqiResult | None) -> html.Span:
    """An AQI value on its China level colour, with the category: readable from a distance."""
    if result is None:
        return html.Span("—")
    dark_text = result.level <= 2  # green and yellow need dark text to stay legible
    return html.Span(
        f"{result.aqi} {result.category}",
        className="aqi-badge",
        style={"backgroundColor": result.color, "color": "#111" if dark_text else "#fff"},
    )


def district_table(snapshot: OverviewSnapshot) -> html.Table:
    head = html.Tr(
        [html.Th(t(k)) for k in ("col.district", "col.aqi", "col.devices", "col.online", "col.pm25")]
    )
    body = [
        html.Tr(
            [
                html.Td(d.name),
                html.Td(aqi_badge(d.aqi)),
                html.Td(d.devices),
                html.Td(d.online),
                html.Td("—" if d.pm25 is None else f"{d.pm25:.1f}"),
            ]
        )
        for d in snapshot.districts
    ]
    return html.Table([html.Thead(head), html.Tbody(body)], className="data-table")


@callback(
    Output("kpi-devices-online", "children"),
    Output("kpi-messages-hour", "children"),
    Output("kpi-aqi-city", "children"),
    Output("kpi-pm25-city", "children"),
    Output("kpi-freshness", "children"),
    Output("overview-map", "figure"),
    Output("overview-spark", "figure"),
    Output("overview-districts", "children"),
    Output("overview-status", "children"),
    Input("overview-tick", "n_intervals"),
    Input("overview-indicator", "value"),
)
def refresh(_n: int | None, indicator: str) -> tuple:
    ctx = context.current()
    try:
        states = ctx.live.devices()
        counts = ctx.live.hourly_counts("observations", 24)
    except Exception as exc:  # the page shows the degraded state instead of an error
        message = t("status.degraded", reason=type(exc).__name__)
        return ("—", "—", "—", "—", "—", dash.no_update, dash.no_update, dash.no_update, message)
    snapshot = summarise(states)
    status = t("status.live") if states else t("status.no_data")
    return (
        f"{snapshot.online} / {snapshot.devices}",
        f"{counts[-1][1]:,}" if counts else "0",
        aqi_badge(snapshot.aqi_city),
        "—" if snapshot.pm25_city is None else f"{snapshot.pm25_city} µg/m³",
        _age_text(snapshot.newest_reading_age_s),
        map_figure(snapshot, states, indicator if indicator in INDICATORS else "devices_online"),
        spark_figure(counts),
        district_table(snapshot),
        status,
    )


dash.register_page(
    __name__, path="/", name=t("nav.overview"), title=t("overview.title"), order=0, layout=layout
)
