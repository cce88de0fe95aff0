"""``/districts/<code>`` — one district's vital signs: the overview's figures for it alone.

Reached by clicking a district on any page's map (:mod:`dashboards.district`). The same
builders as the overview, with the district as a filter: KPI cards, alert/12345/case
cards, the map (zoomed to the district, with its grid cells) and 24 h sparklines. The
map's grid cells are sent once with the page; refreshes patch only what changes.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import dash
from dash import Input, Output, Patch, State, callback, dcc, html

from dashboards import auth, context, push, shared
from dashboards import district as drill
from dashboards import ecology as eco
from dashboards.district import district_label
from dashboards.drawn import signature
from dashboards.exports import export_links
from dashboards.i18n import current_language, t
from dashboards.pages.overview import (
    SEVERITY_COLOURS,
    age_text,
    aqi_badge,
    devices_signature,
    kpi_card,
    map_figure,
    map_updates,
    spark_figure,
    vital_cards,
)
from dashboards.vitals import OverviewSnapshot, VitalInputs, district_figures, read_inputs, summarise
from geo.boundaries import DISTRICTS
from models.air_quality import hourly_means
from models.clock import CITY_TZ
from models.live import DeviceState, LiveAlert

#: Pushes refresh the page as data changes; the timer keeps ages and stale marks moving.
REFRESH_MS = 15_000
LIVE = push.LiveTrigger("district-push", kinds=push.KINDS)
#: Open alerts listed on the page (most severe first, like the console's queue).
ALERT_LIST_LIMIT = 8
#: AQI sparkline colour: the AQI's own colours belong to the badge, the line stays neutral.
AQI_LINE = "#f2a93b"


def title(code: str | None = None, **_: Any) -> str:
    d = drill.find_district(code)
    if d is None:
        return t("district.page_title")
    return f"{t('district.title', name=district_label(d))} · {t('app.short')}"


def unknown_district(code: str) -> html.Div:
    """A clear answer for a code that is not one of Guang'an's districts (no traceback)."""
    return html.Div(
        className="page district district-unknown",
        children=[
            html.H1(t("district.page_title")),
            # The code is the visitor's text: shown as text, never as markup.
            html.P(t("district.unknown", code=code[:40]), id="district-unknown"),
            html.Ul(
                [
                    html.Li(dcc.Link(f"{district_label(d)}（{d.code}）", href=drill.district_href(d.code)))
                    for d in DISTRICTS
                ]
            ),
            dcc.Link(t("district.back"), href="/", className="district-back"),
        ],
    )


def layout(code: str | None = None, **_query: str) -> html.Div:
    d = drill.find_district(code)
    if d is None:
        return unknown_district(str(code or ""))
    scope = auth.scope_district()
    return html.Div(
        className="page district",
        children=[
            dcc.Interval(id="district-tick", interval=REFRESH_MS),
            LIVE.store(),
            dcc.Store(id="district-code", data=d.code),
            # The signature of the map on screen (with its grid cells), once drawn: refreshes
            # then patch it, or send nothing when it shows the same (district_map).
            dcc.Store(id="district-map-drawn", data=False),
            html.Div(
                className="district-head",
                children=[
                    # A scoped account's overview is this page: no way "back" to the city.
                    None if scope else dcc.Link(t("district.back"), href="/", className="district-back"),
                    html.H1(t("district.title", name=district_label(d)), id="district-name"),
                    html.Span(d.code, className="district-code"),
                    drill.scope_badge(scope),
                    html.Div(
                        [
                            html.Span(t("district.export"), className="export-label"),
                            export_links("districts", district=d.code),
                        ],
                        className="export-named",
                    ),
                    html.Div(id="district-status", className="status-line"),
                ],
            ),
            html.Div(
                className="kpi-row",
                children=[
                    kpi_card("district-aqi", "district.aqi"),
                    kpi_card("district-devices", "kpi.devices_online"),
                    kpi_card("district-pm25", "district.pm25"),
                    kpi_card("district-freshness", "kpi.freshness"),
                ],
            ),
            html.Div(id="district-vitals", className="vital-row"),
            html.Div(
                className="grid-2",
                children=[
                    html.Div(
                        className="panel",
                        children=[
                            html.H2(t("district.map")),
                            dcc.Graph(
                                id="district-map",
                                className="map",
                                config={"displayModeBar": False, "scrollZoom": True},
                            ),
                        ],
                    ),
                    html.Div(
                        className="stack",
                        children=[
                            _spark_panel("district.spark_aqi", "district-spark-aqi"),
                            _spark_panel("district.spark_readings", "district-spark-readings"),
                            html.Div(
                                className="panel",
                                children=[html.H2(t("district.alert_list")), html.Div(id="district-alerts")],
                            ),
                        ],
                    ),
                ],
            ),
        ],
    )


def _spark_panel(title_key: str, graph_id: str) -> html.Div:
    return html.Div(
        className="panel",
        children=[
            html.H2(t(title_key)),
            dcc.Graph(id=graph_id, className="spark", config={"displayModeBar": False}),
        ],
    )


def alert_list(alerts: list[LiveAlert], code: str) -> html.Div | html.Ul:
    mine = [a for a in alerts if a.district_code == code][:ALERT_LIST_LIMIT]
    if not mine:
        return html.Div(t("district.alert_none"), className="console-empty")
    return html.Ul(
        className="district-alert-list",
        children=[
            html.Li(
                [
                    html.Span(
                        t(f"console.severity.{a.severity}"),
                        className=f"sev-badge sev-{SEVERITY_COLOURS.get(a.severity, 'blue')}",
                    ),
                    # Alert titles may quote device or citizen text: a text node, never markup.
                    html.Span(a.title, className="district-alert-title"),
                    html.Span(
                        a.opened_at.astimezone(CITY_TZ).strftime("%H:%M"), className="num district-alert-time"
                    ),
                ]
            )
            for a in mine
        ],
    )


@lru_cache(maxsize=4 * len(DISTRICTS))
def _map_frame(code: str, tile_url: str | None, lang: str) -> dict[str, Any]:
    """The overview's map of one district (:func:`map_figure`) with nothing live on it, as a
    plain figure: outline, grid layer, view and styles, which do not change between renders
    (kept per language too: a label on the map may one day be translated).

    The area trace keeps the district's own outline, not the city's six (110 KB for one
    shape on screen)."""
    frame = map_figure(summarise([], 0.0), [], "aqi", code).to_plotly_json()
    city = frame["data"][0]["geojson"]
    frame["data"][0]["geojson"] = {
        **city,
        "features": [f for f in city["features"] if f["properties"]["district_code"] == code],
    }
    return frame


def district_map_figure(update: dict[str, Any], code: str) -> dict[str, Any]:
    """The district map drawn whole: its frame with what :func:`map_updates` computed (the
    fields a refresh patches). Filled as a plain dict: building it as a Plotly figure
    validated every device's colour and deep-copied the outlines, a third of a second at
    1,756 devices, on every first render."""
    frame = _map_frame(code, context.current().settings.tile_url, current_language())
    area, points = frame["data"]
    return {
        "data": [
            {**area, "z": update["z"], "customdata": update["customdata"]},
            {
                **points,
                "lon": update["lon"],
                "lat": update["lat"],
                "text": update["text"],
                "marker": {**points["marker"], "color": update["colors"]},
            },
        ],
        "layout": frame["layout"],
    }


def district_map(
    snapshot: OverviewSnapshot, states: list[DeviceState], code: str, drawn: str | bool | None
) -> tuple[Any, str]:
    """The district map for a refresh of a browser whose map was drawn with ``drawn`` (its
    signature; falsy: not drawn): the whole figure the first time; then, the grid cells
    being on screen, a ``Patch`` of the points and colours — of the colours alone while
    the same devices show — or ``no_update`` when nothing on it changed."""
    update = map_updates(snapshot, states, code)
    mine = [s for s in states if s.district_code == code]
    places = devices_signature(mine, "aqi")
    colours = signature([update["z"], update["customdata"], update["colors"]])
    now_drawn = f"{places}:{colours}"
    if not drawn:
        return district_map_figure(update, code), now_drawn
    shown_places, _, shown_colours = str(drawn).partition(":")
    if shown_places == places and shown_colours == colours:
        return dash.no_update, now_drawn
    figure: Any = Patch()
    figure["data"][0]["z"] = update["z"]
    figure["data"][0]["customdata"] = update["customdata"]
    figure["data"][1]["marker"]["color"] = update["colors"]
    if shown_places != places:
        figure["data"][1]["lon"] = update["lon"]
        figure["data"][1]["lat"] = update["lat"]
        figure["data"][1]["text"] = update["text"]
    return figure, now_drawn


def _last_24_hours(now: datetime) -> list[datetime]:
    end = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return [end - timedelta(hours=h) for h in range(23, -1, -1)]


@callback(
    Output("district-aqi", "children"),
    Output("district-devices", "children"),
    Output("district-pm25", "children"),
    Output("district-freshness", "children"),
    Output("district-vitals", "children"),
    Output("district-map", "figure"),
    Output("district-spark-aqi", "figure"),
    Output("district-spark-readings", "figure"),
    Output("district-alerts", "children"),
    Output("district-status", "children"),
    Output("district-map-drawn", "data"),
    Input("district-tick", "n_intervals"),
    LIVE.input,
    State("district-code", "data"),
    State("district-map-drawn", "data"),
)
@shared.refresh()
def refresh(_n: int | None, _live: dict | None, code: str, map_drawn: str | bool | None) -> tuple:
    # The code comes from the page's store: a crafted request may name another district.
    if auth.refuse_out_of_scope(code, what="district.refresh"):
        raise dash.exceptions.PreventUpdate
    ctx = context.current()
    now = datetime.now(UTC)
    try:
        inputs: VitalInputs = read_inputs(ctx.live, ctx.engine, now, district_code=code)
        hours = _last_24_hours(now)
        with ctx.engine.connect() as conn:
            means = hourly_means(conn, hours, district_code=code)
            readings = drill.readings_per_hour(conn, hours, code)
    except Exception as exc:  # the page shows the degraded state instead of an error
        return (*([dash.no_update] * 9), t("status.degraded", reason=type(exc).__name__), dash.no_update)
    snapshot = summarise(inputs.states, time.time())
    figures = district_figures(snapshot, code)
    aqi_series = eco.hourly_series(means, hours)
    figure, now_drawn = district_map(snapshot, inputs.states, code, map_drawn)
    status = t("status.live") if figures.devices else t("status.no_data")
    if inputs.database_error:
        status = f"{status} · {t('vital.database_degraded', reason=inputs.database_error)}"
    primary = (
        "、".join(t(f"eco.pollutant.{p}") for p in figures.aqi.primary)
        if figures.aqi is not None and figures.aqi.primary
        else t("eco.none_primary")
    )
    return (
        html.Div(
            [aqi_badge(figures.aqi), html.Div(t("district.primary", p=primary), className="vital-sub")]
            if figures.aqi is not None
            else "—"
        ),
        f"{figures.online} / {figures.devices}",
        "—" if figures.pm25 is None else f"{figures.pm25} µg/m³",
        age_text(figures.newest_reading_age_s),
        vital_cards(inputs, code),
        figure,
        spark_figure(
            [(h, r.aqi if r is not None else None) for h, r in zip(hours, aqi_series, strict=True)],
            colour=AQI_LINE,
        ),
        spark_figure(list(zip(hours, readings, strict=True))),
        alert_list(inputs.alerts, code),
        status,
        now_drawn,
    )


dash.register_page(
    __name__,
    path_template=drill.PATH_TEMPLATE,
    # Another district's page is refused to a district-scoped account (dashboards.auth).
    district_variable="code",
    name=t("district.page_title"),
    title=title,
    order=5,
    layout=layout,
)
