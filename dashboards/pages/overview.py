"""``/`` — 城市运行体征: the city's vital signs at a glance, refreshed live.

The builders here (KPI cards, map, sparkline, alert/12345/case cards) take an optional
district and serve ``/districts/<code>`` too; clicking a district on the map opens it.
"""

from __future__ import annotations

import hashlib
import json
import time
from array import array
from datetime import datetime
from typing import Any

import dash
import plotly.graph_objects as go
from dash import Input, Output, Patch, State, callback, dcc, html

from dashboards import auth, context, push, shared, theme
from dashboards import district as drill
from dashboards.drawn import signature
from dashboards.exports import export_links
from dashboards.i18n import t
from dashboards.vitals import (
    AlertCounts,
    DistrictFigures,
    OverviewSnapshot,
    VitalInputs,
    alert_counts,
    cases_for,
    read_inputs,
    summarise,
    tickets_for,
)
from geo.boundaries import city_bounds, districts_geojson
from models.cases import OpenCases
from models.clock import CITY_TZ
from models.live import OFFLINE_AFTER_S, DeviceState
from models.standards import aqi
from models.standards.aqi import AqiResult
from models.tickets import DistrictTickets

#: Pushes refresh the page as data changes; the timer keeps ages and stale marks moving
#: when nothing arrives.
REFRESH_MS = 15_000
LIVE = push.LiveTrigger("overview-push", kinds=push.KINDS)
MAP_HEIGHT_PX = 620
_minx, _miny, _maxx, _maxy = city_bounds()
CITY_CENTRE = {"lon": (_minx + _maxx) / 2, "lat": (_miny + _maxy) / 2}
INDICATORS = ("aqi", "devices_online", "pm25")


def kpi_card(kpi_id: str, label_key: str) -> html.Div:
    return html.Div(
        className="kpi",
        children=[
            html.Div(t(label_key), className="kpi-label"),
            html.Div("—", id=kpi_id, className="kpi-value"),
        ],
    )


# ---- alert, 12345 and case cards (the city's or one district's) -------------------------------


def _card(label: str, value: str, lines: list[Any], card_id: str) -> html.Div:
    return html.Div(
        className="kpi vital-card",
        id=card_id,
        children=[
            html.Div(label, className="kpi-label"),
            html.Div(value, className="kpi-value"),
            html.Div(lines, className="vital-lines"),
        ],
    )


def alerts_card(counts: AlertCounts, card_id: str = "vital-alerts") -> html.Div:
    """Open alerts, with one chip per severity (the console's colours) and the domains."""
    chips = [
        html.Span(
            f"{t(f'console.severity.{sev}')} {n}",
            className=f"sev-badge sev-{SEVERITY_COLOURS[sev]}" + ("" if n else " sev-zero"),
        )
        for sev, n in counts.by_severity.items()
    ]
    domains = "　".join(f"{t(f'console.domain.{d}')} {n}" for d, n in counts.by_domain.items() if n)
    return _card(
        t("vital.alerts"),
        str(counts.total),
        [
            html.Div(chips, className="vital-chips"),
            html.Div(domains or t("vital.none"), className="vital-sub"),
        ],
        card_id,
    )


def hotline_card(figures: DistrictTickets, card_id: str = "vital-hotline") -> html.Div:
    rate = figures.satisfaction.rate
    return _card(
        t("vital.hotline_today"),
        str(figures.registered),
        [
            html.Div(
                t("vital.hotline_open", open=figures.open, overdue=figures.overdue), className="vital-sub"
            ),
            html.Div(
                t(
                    "vital.satisfaction",
                    rate="—" if rate is None else f"{rate:.0%}",
                    n=figures.satisfaction.rated,
                ),
                className="vital-sub",
            ),
        ],
        card_id,
    )


def cases_card(figures: OpenCases, card_id: str = "vital-cases") -> html.Div:
    return _card(
        t("vital.cases_open"),
        str(figures.open),
        [html.Div(t("vital.cases_overdue", n=figures.overdue), className="vital-sub")],
        card_id,
    )


#: Severity → the console's badge class (its colours: red, orange, yellow, blue).
SEVERITY_COLOURS = {"critical": "red", "major": "orange", "minor": "yellow", "info": "blue"}


def layout(**_query: str) -> html.Div:
    return html.Div(
        className="page overview",
        children=[
            dcc.Interval(id="overview-tick", interval=REFRESH_MS),
            LIVE.store(),
            # Which devices and indicator the map in this browser was drawn with (city_map).
            dcc.Store(id="overview-map-drawn"),
            html.Div(id="overview-status", className="status-line"),
            html.Div(
                id="overview-kpis",
                className="kpi-row",
                children=[
                    kpi_card("kpi-devices-online", "kpi.devices_online"),
                    kpi_card("kpi-messages-hour", "kpi.messages_hour"),
                    kpi_card("kpi-aqi-city", "kpi.aqi_city"),
                    kpi_card("kpi-pm25-city", "kpi.pm25_city"),
                    kpi_card("kpi-freshness", "kpi.freshness"),
                ],
            ),
            html.Div(id="overview-vitals", className="vital-row"),
            html.Div(
                className="grid-2",
                children=[
                    html.Div(
                        id="overview-map-panel",
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
                                id="overview-spark-panel",
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
                                id="overview-districts-panel",
                                className="panel",
                                children=[
                                    html.Div(
                                        [html.H2(t("table.districts")), export_links("districts")],
                                        className="panel-head",
                                    ),
                                    html.Div(id="overview-districts"),
                                ],
                            ),
                        ],
                    ),
                ],
            ),
        ],
    )


def age_text(age: float | None, silent_after_s: float | None = None) -> str:
    """How old the newest reading is; "数据中断 …" once the feed has been silent too long."""
    if age is None:
        return t("kpi.freshness_none")
    if feed_silent(age, silent_after_s):
        return t("kpi.silent_seconds", n=int(age)) if age < 120 else t("kpi.silent_minutes", n=int(age // 60))
    if age < 120:
        return t("unit.seconds_ago", n=int(age))
    return t("unit.minutes_ago", n=int(age // 60))


def feed_silent(age: float | None, silent_after_s: float | None) -> bool:
    """Readings came before but none for longer than the feed's limit (none yet is "waiting")."""
    return age is not None and silent_after_s is not None and age > silent_after_s


#: The overview's panels built from the readings feed: stale together when it goes silent.
FEED_PANELS = ("overview-kpis", "overview-map-panel", "overview-spark-panel", "overview-districts-panel")


def panel_classes(silent: bool) -> tuple[str, ...]:
    base = ("kpi-row", "panel", "panel", "panel")
    return tuple(f"{b} stale" if silent else b for b in base)


def _area_colours(districts: list[DistrictFigures], indicator: str) -> tuple[list[Any], list[Any], float]:
    """The districts' values for ``indicator``, its colour scale and the scale's top."""
    if indicator == "aqi":
        # Level 1–6 on a stepped scale of China's six AQI colours (HJ 633 Table 2); no data = 0.
        values: list[Any] = [d.aqi.level if d.aqi is not None else 0 for d in districts]
        colorscale: list[Any] = [[0, theme.PANEL], [1 / 7, theme.PANEL]]
        for level in aqi.LEVELS:
            colorscale += [[level.number / 7, level.color], [(level.number + 1) / 7, level.color]]
        return values, colorscale, 7
    if indicator == "pm25":
        values = [d.pm25 if d.pm25 is not None else 0 for d in districts]
        colorscale = [[0, "#00E400"], [0.35, "#FFFF00"], [0.6, "#FF7E00"], [1, "#FF0000"]]
        return values, colorscale, max(115.0, *values)
    values = [d.online for d in districts]
    return values, [[0, "#0f2a4a"], [1, "#2f7fd8"]], max(1, *values)


def _device_colours(states: list[DeviceState], now: float) -> list[str]:
    online, offline = theme.ONLINE, theme.OFFLINE
    # DeviceState.online inlined: a method call per device was a third of this at 10,000.
    return [
        online if s.last_seen is not None and now - s.last_seen <= OFFLINE_AFTER_S else offline
        for s in states
    ]


def map_figure(
    snapshot: OverviewSnapshot,
    states: list[DeviceState],
    indicator: str,
    district_code: str | None = None,
) -> go.Figure:
    """The city map, districts coloured by ``indicator``; for one district, that district
    alone, zoomed to fit, with its grid cells (网格) and only its devices."""
    districts = [d for d in snapshot.districts if district_code in (None, d.district_code)]
    if district_code is not None:
        states = [s for s in states if s.district_code == district_code]
    codes = [d.district_code for d in districts]
    values, colorscale, zmax = _area_colours(districts, indicator)
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
            customdata=[_district_hover(d, indicator) for d in districts],
            colorscale=colorscale,
            marker={
                "opacity": 0.55 if district_code is None else 0.3,
                "line": {"color": "#9cc3ff", "width": 1.2},
            },
            text=[d.name for d in districts],
            hovertemplate="%{text}: %{customdata}<extra></extra>",
            showscale=False,
        )
    )
    fig.add_trace(
        go.Scattermap(
            lon=[s.lon for s in states],
            lat=[s.lat for s in states],
            mode="markers",
            marker={"size": 6, "color": _device_colours(states, now)},
            text=[s.name for s in states],
            hovertemplate="%{text}<extra></extra>",
        )
    )
    view: dict[str, Any] = {"center": CITY_CENTRE, "zoom": 8.45}
    if district_code is not None:
        centre, zoom = drill.map_view(district_code, height_px=MAP_HEIGHT_PX)
        view = {"center": centre, "zoom": zoom, "layers": [drill.grid_layer(district_code)]}
    fig.update_layout(
        map={"style": theme.map_style(context.current().settings.tile_url), **view},
        margin={"l": 0, "r": 0, "t": 0, "b": 0},
        height=MAP_HEIGHT_PX,
        paper_bgcolor=theme.PANEL,
        showlegend=False,
        uirevision=f"map-{district_code or 'city'}",
    )
    return fig


def map_updates(
    snapshot: OverviewSnapshot,
    states: list[DeviceState],
    district_code: str | None = None,
    indicator: str = "aqi",
) -> dict[str, Any]:
    """What changes between refreshes of a map drawn by :func:`map_figure` (area colours,
    device colours), to send as a ``Patch`` instead of the whole figure. Computed without
    building the figure: validating 10,000 points into a Plotly figure takes most of a second."""
    if district_code is not None:
        states = [s for s in states if s.district_code == district_code]
    return {
        **_colour_updates(snapshot, states, district_code, indicator),
        "lon": [s.lon for s in states],
        "lat": [s.lat for s in states],
        "text": [s.name for s in states],
    }


def _colour_updates(
    snapshot: OverviewSnapshot, states: list[DeviceState], district_code: str | None, indicator: str
) -> dict[str, Any]:
    """The colour part of :func:`map_updates` (``states`` already of the district): all a
    refresh needs while the browser's map shows the same devices."""
    districts = [d for d in snapshot.districts if district_code in (None, d.district_code)]
    values, _colorscale, zmax = _area_colours(districts, indicator)
    return {
        "z": values,
        "zmax": zmax,
        "customdata": [_district_hover(d, indicator) for d in districts],
        "colors": _device_colours(states, time.time()),
    }


def devices_signature(states: list[DeviceState], indicator: str) -> str:
    """Which devices (and where, under which name) a drawn map shows, with its indicator: while
    it holds, a refresh sends only the colours."""
    digest = hashlib.blake2b(indicator.encode(), digest_size=16)
    # Column by column, encoded in C (ids and names as a JSON list, places as packed
    # doubles): formatting each device's place as text was most of an overview refresh at
    # 10,000 devices.
    digest.update(json.dumps([[s.device_id for s in states], [s.name for s in states]]).encode())
    digest.update(array("d", [s.lon for s in states]).tobytes())
    digest.update(array("d", [s.lat for s in states]).tobytes())
    return digest.hexdigest()


def city_map(
    snapshot: OverviewSnapshot, states: list[DeviceState], indicator: str, drawn: str | None
) -> tuple[Any, str]:
    """The city map for a refresh: the whole figure when the browser's map shows other
    devices or another indicator (``drawn`` is the signature it was drawn with), else a
    ``Patch`` of the colours (a few KB of work instead of a second at 10,000 devices), or
    ``no_update`` when the colours are those on screen too. The signature is
    ``<devices>:<colours>``."""
    devices = devices_signature(states, indicator)
    update = _colour_updates(snapshot, states, None, indicator)
    colours = signature([update["z"], update["zmax"], update["customdata"], update["colors"]])
    now_drawn = f"{devices}:{colours}"
    shown_devices, _, shown_colours = (drawn or "").partition(":")
    if shown_devices != devices:
        return map_figure(snapshot, states, indicator), now_drawn
    if shown_colours == colours:
        return dash.no_update, now_drawn
    figure: Any = Patch()
    figure["data"][0]["z"] = update["z"]
    figure["data"][0]["zmax"] = update["zmax"]
    figure["data"][0]["customdata"] = update["customdata"]
    figure["data"][1]["marker"]["color"] = update["colors"]
    return figure, now_drawn


def spark_figure(
    counts: list[tuple[datetime, int | float | None]], *, height: int = 160, colour: str = theme.ACCENT
) -> go.Figure:
    """A 24 h sparkline of hourly values (hour starts, city time on the axis)."""
    return go.Figure(
        go.Scatter(
            x=[c[0].astimezone(CITY_TZ).replace(tzinfo=None) for c in counts],
            y=[c[1] for c in counts],
            mode="lines+markers",
            marker={"size": 3},
            line={"color": colour, "width": 2},
            fill="tozeroy",
            connectgaps=False,
            hovertemplate="%{x|%H:00}: %{y}<extra></extra>",
        ),
        # Hours only: the axis's default date labels would be in English month names.
        layout=theme.figure_layout(
            height=height, xaxis={"gridcolor": theme.GRID_LINE, "tickformat": "%H:%M"}
        ),
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
                html.Td(
                    dcc.Link(d.name, href=drill.district_href(d.district_code), className="district-link")
                ),
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
    Output("overview-vitals", "children"),
    Output("overview-map-drawn", "data"),
    *(Output(panel, "className") for panel in FEED_PANELS),
    Input("overview-tick", "n_intervals"),
    LIVE.input,
    Input("overview-indicator", "value"),
    State("overview-map-drawn", "data"),
)
@shared.refresh()
def refresh(_n: int | None, _live: dict | None, indicator: str, drawn: str | None = None) -> tuple:
    ctx = context.current()
    try:
        # A district-scoped account is sent to its district's page (dashboards.auth); should
        # this callback still be asked for one, it answers with that district's figures only.
        inputs = read_inputs(ctx.live, ctx.engine, district_code=auth.scope_district())
        counts = ctx.live.hourly_counts("observations", 24)
    except Exception as exc:  # the page shows the degraded state instead of an error
        message = t("status.degraded", reason=type(exc).__name__)
        return ("—", "—", "—", "—", "—", *([dash.no_update] * 3), message, *([dash.no_update] * 6))
    states = inputs.states
    snapshot = summarise(states)
    status = t("status.live") if states else t("status.no_data")
    silent_after = ctx.settings.feed_silent_after.total_seconds()
    age = snapshot.newest_reading_age_s
    silent = feed_silent(age, silent_after)
    if silent:
        status = t("status.silent", age=age_text(age, silent_after))
    if inputs.database_error:
        status = f"{status} · {t('vital.database_degraded', reason=inputs.database_error)}"
    figure, drawn_now = city_map(
        snapshot, states, indicator if indicator in INDICATORS else "devices_online", drawn
    )
    return (
        f"{snapshot.online} / {snapshot.devices}",
        f"{counts[-1][1]:,}" if counts else "0",
        aqi_badge(snapshot.aqi_city),
        "—" if snapshot.pm25_city is None else f"{snapshot.pm25_city} µg/m³",
        age_text(age, silent_after),
        figure,
        spark_figure(counts),
        district_table(snapshot),
        status,
        vital_cards(inputs),
        drawn_now,
        *panel_classes(silent),
    )


def vital_cards(inputs: VitalInputs, district_code: str | None = None) -> list[html.Div]:
    """Open alerts, 12345 today and open cases, for the city or one district."""
    return [
        alerts_card(alert_counts(inputs.alerts, district_code, inputs.audible)),
        hotline_card(tickets_for(inputs.tickets, district_code)),
        cases_card(cases_for(inputs.cases, district_code)),
    ]


drill.link_map_to_districts("overview-map")


dash.register_page(
    __name__,
    path="/",
    name=t("nav.overview"),
    title=t("overview.title"),
    order=0,
    layout=layout,
    # A district-scoped account's overview is its district's page (dashboards.auth).
    scoped_home=drill.district_href("{district}"),
)
