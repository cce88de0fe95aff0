"""``/ecology`` — 生态环境: air stations, river sections, noise zones and AQI history, live.

Figures come from :mod:`dashboards.ecology` (pure); this module only reads the stores
and renders. Every panel carries the age of its data, and a silent feed says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import dash
import plotly.graph_objects as go
import sqlalchemy as sa
from dash import Input, Output, Patch, State, callback, dcc, html

from dashboards import auth, context, push, shared, theme
from dashboards import district as drill
from dashboards import ecology as eco
from dashboards.drawn import build_changed, content_signature, signature
from dashboards.exports import export_links
from dashboards.i18n import current_language, t
from dashboards.pages.overview import CITY_CENTRE, aqi_badge
from geo.boundaries import DISTRICTS, districts_geojson
from models.air_quality import hourly_means_by_district
from models.clock import CITY_TZ
from models.schema import Device, ObservationHourly
from models.scope import in_district
from models.standards import water
from models.standards.aqi import AqiResult

#: Pushes refresh the page as readings arrive; the timer keeps ages and stale marks moving.
REFRESH_MS = 30_000
LIVE = push.LiveTrigger("eco-push", kinds=("observations",))
MAP_HEIGHT_PX = 400
#: Okabe–Ito colours: six district lines that colour-blind viewers can tell apart.
DISTRICT_LINE_COLOURS = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#CC79A7")


def _panel(
    title_key: str, body_id: str, *, age_id: str | None = None, export: str | None = None, **title: str
) -> html.Div:
    head = [html.H2(t(title_key, **title) if title else t(title_key))]
    if export:
        head.append(export_links(export))
    if age_id:
        head.append(html.Span(id=age_id, className="eco-age"))
    return html.Div(
        className="panel", children=[html.Div(head, className="panel-head"), html.Div(id=body_id)]
    )


def layout(**_query: str) -> html.Div:
    return html.Div(
        className="page ecology",
        children=[
            dcc.Interval(id="eco-tick", interval=REFRESH_MS),
            LIVE.store(),
            # Signatures of what this browser shows (dashboards.drawn): a refresh sends the rest.
            dcc.Store(id="eco-drawn"),
            drill.scope_badge(auth.scope_district()),
            html.Div(id="eco-status", className="status-line"),
            html.Div(
                className="eco-top",
                children=[
                    html.Div(
                        className="panel",
                        children=[
                            html.Div(
                                [html.H2(t("eco.map")), html.Span(id="eco-map-age", className="eco-age")],
                                className="panel-head",
                            ),
                            dcc.Graph(
                                id="eco-map",
                                className="eco-map",
                                config={"displayModeBar": False, "scrollZoom": True},
                            ),
                            _legend(),
                        ],
                    ),
                    html.Div(
                        className="panel eco-stations",
                        children=[
                            html.Div(
                                [
                                    html.H2(t("eco.stations")),
                                    export_links("air-stations"),
                                    html.Span(id="eco-stations-age", className="eco-age"),
                                ],
                                className="panel-head",
                            ),
                            html.Div(id="eco-stations", className="eco-scroll"),
                        ],
                    ),
                    html.Div(
                        className="stack",
                        children=[
                            # One download for the sections of every river panel below:
                            # named, so the two links do not stand alone above them.
                            html.Div(
                                [
                                    html.Span(t("eco.water_export"), className="export-label"),
                                    export_links("water-sections"),
                                ],
                                className="export-named",
                            ),
                            html.Div(id="eco-rivers", className="stack"),
                            _panel("eco.noise", "eco-noise", age_id="eco-noise-age", export="noise"),
                        ],
                    ),
                ],
            ),
            html.Div(
                className="eco-bottom",
                children=[
                    html.Div(
                        className="panel",
                        children=[
                            html.Div(
                                [
                                    html.H2(t("eco.hourly")),
                                    html.Span(id="eco-hourly-age", className="eco-age"),
                                ],
                                className="panel-head",
                            ),
                            dcc.Graph(
                                id="eco-hourly", className="eco-hourly", config={"displayModeBar": False}
                            ),
                        ],
                    ),
                    html.Div(
                        className="panel",
                        children=[
                            html.Div(
                                [html.H2(id="eco-daily-title"), export_links("daily-aqi")],
                                className="panel-head",
                            ),
                            html.Div(id="eco-daily"),
                        ],
                    ),
                    _panel("eco.exceed", "eco-exceed"),
                ],
            ),
        ],
    )


def _legend() -> html.Div:
    """The map's key lives outside the map: the map itself draws no text (no glyph fetches)."""
    items: list[Any] = [html.Span(t("eco.legend_air"), className="eco-legend-title")]
    items += [html.Span(lv.category, className="eco-chip", style=_chip(lv.color)) for lv in eco.aqi.LEVELS]
    items.append(html.Span(t("eco.legend_water"), className="eco-legend-title"))
    items += [html.Span(g, className="eco-chip", style=_chip(c)) for g, c in eco.WATER_COLOURS.items()]
    items.append(html.Span(t("eco.legend_silent"), className="eco-chip", style=_chip(theme.OFFLINE)))
    items.append(html.Div(t("eco.water_palette_note"), className="eco-note"))
    return html.Div(items, className="eco-legend")


def _chip(colour: str) -> dict[str, str]:
    return {"backgroundColor": colour, "color": _ink(colour)}


def _ink(colour: str) -> str:
    # Dark text on light fills (yellow, light green), white on the rest: readable at a distance.
    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return "#111" if 0.299 * r + 0.587 * g + 0.114 * b > 150 else "#fff"


def _age_key(fresh: eco.Freshness) -> tuple[str, int | None]:
    """The text an age is shown as: its catalogue key and number."""
    if fresh.age_s is None:
        return "eco.never", None
    if fresh.silent:
        return "eco.silent", fresh.minutes
    if fresh.age_s < 120:
        return "unit.seconds_ago", int(fresh.age_s)
    return "unit.minutes_ago", fresh.minutes


def age_text(fresh: eco.Freshness) -> str:
    key, n = _age_key(fresh)
    return t(key) if n is None else t(key, n=n)


def _age_texts() -> Callable[[eco.Freshness], str]:
    """:func:`age_text` for one refresh's thousand map points, which share a few dozen texts
    (each looked up in the viewer's language once)."""
    texts: dict[tuple[str, int | None], str] = {}

    def text(fresh: eco.Freshness) -> str:
        key = _age_key(fresh)
        found = texts.get(key)
        if found is None:
            found = texts[key] = age_text(fresh)
        return found

    return text


def _age_span(fresh: eco.Freshness) -> html.Span:
    return html.Span(age_text(fresh), className="eco-silent" if fresh.silent else "eco-fresh")


def _pollutants(keys: tuple[str, ...]) -> str:
    return "、".join(t(f"eco.pollutant.{k}") for k in keys)


def _grade_badge(grade: str | None, fresh: eco.Freshness) -> html.Span:
    if grade is None:
        return html.Span(t("eco.silent", n=fresh.minutes) if fresh.silent else "—", className="eco-silent")
    colour = eco.WATER_COLOURS[grade]
    return html.Span(f"{grade}类", className="aqi-badge", style=_chip(colour))


# ---- panels ---------------------------------------------------------------------------------


def _map_points(stations: list[eco.AirStation], sections: list[eco.WaterSection]) -> dict[str, list[Any]]:
    """What the map's two point layers show that changes with readings: colours and hover text
    of the sections (trace 1) and of the stations (trace 2)."""
    age = _age_texts()
    return {
        "section_colours": [eco.WATER_COLOURS[s.grade] if s.grade else theme.OFFLINE for s in sections],
        "section_text": [f"{s.name}：{s.grade + '类' if s.grade else age(s.fresh)}" for s in sections],
        "station_colours": [s.color or theme.OFFLINE for s in stations],
        "station_text": [
            f"{s.name}：AQI {s.aqi} {s.category}" if s.aqi is not None else f"{s.name}：{age(s.fresh)}"
            for s in stations
        ],
    }


def map_signatures(stations: list[eco.AirStation], sections: list[eco.WaterSection]) -> dict[str, str]:
    """``places``: which points the map shows, where; ``values``: their colours and texts."""
    places = signature(
        ((s.device_id, s.lon, s.lat) for s in sections), ((s.device_id, s.lon, s.lat) for s in stations)
    )
    return {"places": places, "values": signature(_map_points(stations, sections).items())}


def map_output(
    stations: list[eco.AirStation], sections: list[eco.WaterSection], drawn: Mapping[str, str] | None
) -> tuple[Any, dict[str, str]]:
    """The map for a refresh of a browser whose map was drawn with ``drawn`` (signatures):
    the whole figure when the points differ, a ``Patch`` of colours and texts when only
    those changed, ``no_update`` when nothing did; and the signatures now drawn."""
    # Points in a fixed order (the stations come worst first, which moves with every
    # reading), so that a patch of colours lands on the same points.
    stations = sorted(stations, key=lambda s: s.device_id)
    now_drawn = map_signatures(stations, sections)
    if not drawn or drawn.get("places") != now_drawn["places"]:
        return map_figure(stations, sections), now_drawn
    if drawn.get("values") == now_drawn["values"]:
        return dash.no_update, now_drawn
    points = _map_points(stations, sections)
    patch = Patch()
    patch["data"][1]["marker"]["color"] = points["section_colours"]
    patch["data"][1]["customdata"] = points["section_text"]
    patch["data"][2]["marker"]["color"] = points["station_colours"]
    patch["data"][2]["customdata"] = points["station_text"]
    return patch, now_drawn


def map_figure(stations: list[eco.AirStation], sections: list[eco.WaterSection]) -> go.Figure:
    points = _map_points(stations, sections)
    fig = go.Figure()
    # Districts as clickable, nearly transparent areas under the points: a click opens the
    # district's page (dashboards.district.link_map_to_districts).
    fig.add_trace(
        go.Choroplethmap(
            geojson=districts_geojson(),
            featureidkey="properties.district_code",
            locations=[d.code for d in DISTRICTS],
            z=[0] * len(DISTRICTS),
            colorscale=[[0, "rgba(0,0,0,0.01)"], [1, "rgba(0,0,0,0.01)"]],
            marker={"line": {"width": 0}},
            showscale=False,
            text=[eco.district_name(d.code) for d in DISTRICTS],
            hovertemplate="%{text}<extra></extra>",
        )
    )
    fig.add_trace(
        go.Scattermap(
            lon=[s.lon for s in sections],
            lat=[s.lat for s in sections],
            mode="markers",
            marker={"size": 15, "color": points["section_colours"]},
            customdata=points["section_text"],
            hovertemplate="%{customdata}<extra></extra>",
        )
    )
    fig.add_trace(
        go.Scattermap(
            lon=[s.lon for s in stations],
            lat=[s.lat for s in stations],
            mode="markers",
            marker={"size": 11, "color": points["station_colours"]},
            customdata=points["station_text"],
            hovertemplate="%{customdata}<extra></extra>",
        )
    )
    fig.update_layout(
        map={
            "style": theme.map_style(context.current().settings.tile_url),
            "center": CITY_CENTRE,
            "zoom": 7.9,
            # District outlines as a line layer: shapes only, no labels.
            "layers": [
                {"source": districts_geojson(), "type": "line", "color": "#4f6d99", "line": {"width": 1}}
            ],
        },
        margin={"l": 0, "r": 0, "t": 0, "b": 0},
        height=MAP_HEIGHT_PX,
        paper_bgcolor=theme.PANEL,
        showlegend=False,
        uirevision="eco-map",
    )
    return fig


def _rows_note(shown: int, total: int) -> list[html.Div]:
    """Under a capped table: how many of how many (none when every row is shown)."""
    return (
        [html.Div(t("eco.rows_shown", shown=shown, total=total), className="eco-muted")]
        if shown < total
        else []
    )


def _station_cells(s: eco.AirStation) -> tuple[Any, ...]:
    """What a station's row shows."""
    return (s.name, s.district, s.aqi, s.category, s.color, s.primary, age_text(s.fresh), s.fresh.silent)


def station_table_signature(stations: list[eco.AirStation], limit: int = eco.STATION_ROWS) -> str:
    """Signs :func:`station_table` by what it shows, without building it."""
    shown = stations[: max(0, limit)]
    return signature((_station_cells(s) for s in shown), [len(stations), current_language()])


def station_table(stations: list[eco.AirStation], limit: int = eco.STATION_ROWS) -> html.Div:
    """The worst ``limit`` stations (``stations`` come worst first), and how many there are."""
    keys = ("eco.col.station", "eco.col.district", "eco.col.aqi", "eco.col.category", "eco.col.primary")
    head = html.Tr([html.Th(t(k)) for k in (*keys, "eco.col.age")])
    body = []
    shown = stations[: max(0, limit)]
    for s in shown:
        if s.aqi is None:
            cells = [html.Td(_age_span(s.fresh), colSpan=3), html.Td(_age_span(s.fresh))]
        else:
            badge = html.Span(str(s.aqi), className="aqi-badge", style=_chip(s.color or theme.OFFLINE))
            primary = _pollutants(s.primary) if s.primary else t("eco.none_primary")
            cells = [html.Td(badge), html.Td(s.category), html.Td(primary), html.Td(_age_span(s.fresh))]
        body.append(html.Tr([html.Td(s.name), html.Td(s.district), *cells], className="eco-station-row"))
    table = html.Table([html.Thead(head), html.Tbody(body)], className="data-table eco-table")
    return html.Div([table, *_rows_note(len(shown), len(stations))])


def river_panels_signature(panels: list[eco.RiverPanel]) -> str:
    """Signs the river panels (:func:`river_panel` each) by what they show, without building them."""
    return signature(
        (
            (
                p.river,
                None
                if p.assessment is None
                else (p.assessment.status, p.assessment.sections, f"{p.assessment.share_good:.0%}"),
                None if p.share_good is None else f"{p.share_good:.0%}",
                p.graded,
                len(p.sections),
                age_text(p.fresh),
                [
                    (s.name, s.district, s.grade, s.target, s.fresh.silent, s.fresh.minutes)
                    for s in eco.worst_sections(p.sections)
                ],
            )
            for p in panels
        ),
        [current_language()],
    )


def river_panel(panel: eco.RiverPanel) -> html.Div:
    if panel.assessment is not None:
        verdict = t(
            "eco.river_status",
            status=panel.assessment.status,
            n=panel.assessment.sections,
            share=f"{panel.assessment.share_good:.0%}",
        )
    elif panel.share_good is not None:
        verdict = t("eco.river_few", share=f"{panel.share_good:.0%}", n=panel.graded, min=water.MIN_SECTIONS)
    else:
        verdict = t("eco.river_none")
    rows = [
        html.Tr(
            [
                html.Td(s.name),
                html.Td(s.district),
                html.Td(_grade_badge(s.grade, s.fresh)),
                html.Td(f"{s.target}类", className="eco-muted"),
            ]
        )
        for s in eco.worst_sections(panel.sections)
    ]
    head = html.Tr(
        [html.Th(t(k)) for k in ("eco.col.section", "eco.col.district", "eco.col.grade", "eco.col.target")]
    )
    return html.Div(
        className="panel eco-river",
        children=[
            html.Div(
                [
                    html.H2(t("eco.river", river=panel.river)),
                    html.Span(age_text(panel.fresh), className="eco-age"),
                ],
                className="panel-head",
            ),
            html.Div(verdict, className="eco-verdict"),
            html.Table([html.Thead(head), html.Tbody(rows)], className="data-table eco-table"),
            *_rows_note(len(rows), len(panel.sections)),
        ],
    )


def noise_table(zones: list[eco.NoiseZone]) -> html.Div:
    if not zones:
        return html.Div(t("eco.none"), className="eco-muted")
    keys = ("eco.col.zone", "eco.col.limits", "eco.col.laeq", "eco.col.points", "eco.col.exceeded")
    rows = [
        html.Tr(
            [
                html.Td(f"{z.zone}类"),
                html.Td(f"{z.day_limit} / {z.night_limit}"),
                html.Td(t("eco.silent", n=z.fresh.minutes) if z.mean_laeq is None else f"{z.mean_laeq:.1f}"),
                html.Td(f"{z.live_points} / {z.points}"),
                html.Td(str(z.exceeded), className="eco-over" if z.exceeded else ""),
            ]
        )
        for z in zones
    ]
    return html.Div(
        [
            html.Div(t(f"eco.period.{zones[0].period}"), className="eco-muted"),
            html.Table(
                [html.Thead(html.Tr([html.Th(t(k)) for k in keys])), html.Tbody(rows)],
                className="data-table eco-table",
            ),
        ]
    )


def hourly_figure(hours: list[datetime], series: Mapping[str, list[AqiResult | None]]) -> go.Figure:
    x = [h.astimezone(CITY_TZ).replace(tzinfo=None) for h in hours]
    fig = go.Figure(layout=theme.figure_layout(height=200, showlegend=True, uirevision="eco-hourly"))
    fig.add_hline(y=eco.AQI_EXCEEDANCE, line={"color": "#FF7E00", "dash": "dash", "width": 1})
    for (code, values), colour in zip(series.items(), DISTRICT_LINE_COLOURS, strict=False):
        fig.add_trace(
            go.Scatter(
                x=x,
                y=[r.aqi if r is not None else None for r in values],
                name=eco.district_name(code),
                mode="lines+markers",
                marker={"size": 4},
                line={"color": colour, "width": 2},
                hovertemplate="%{x|%m-%d %H:00} AQI %{y}<extra>%{fullData.name}</extra>",
            )
        )
    fig.update_layout(
        xaxis={"tickformat": "%H:%M", "gridcolor": theme.GRID_LINE},
        legend={"orientation": "h", "y": 1.15, "x": 0},
        margin={"l": 40, "r": 10, "t": 30, "b": 30},
    )
    return fig


def daily_table(daily: Mapping[str, AqiResult | None], polluted: Mapping[str, int]) -> html.Table:
    keys = ("eco.col.district", "eco.col.daily", "eco.col.primary", "eco.col.polluted")
    rows = []
    for code, result in daily.items():
        if result is None:
            value: Any = html.Span(t("eco.insufficient"), className="eco-muted")
            primary = "—"
        else:
            value = aqi_badge(result)
            primary = _pollutants(result.primary) if result.primary else t("eco.none_primary")
        rows.append(
            html.Tr(
                [
                    html.Td(eco.district_name(code)),
                    html.Td(value),
                    html.Td(primary),
                    html.Td(str(polluted.get(code, 0)), className="eco-over" if polluted.get(code) else ""),
                ]
            )
        )
    return html.Table(
        [html.Thead(html.Tr([html.Th(t(k)) for k in keys])), html.Tbody(rows)],
        className="data-table eco-table",
    )


def exceed_panel(aqi_hours: int, water_sections: int, noise_hours: int) -> html.Div:
    def kpi(key: str, n: int) -> html.Div:
        return html.Div(
            [
                html.Div(t(key), className="kpi-label"),
                html.Div(str(n), className="kpi-value" + (" eco-over" if n else "")),
            ],
            className="eco-kpi",
        )

    return html.Div(
        [
            kpi("eco.exceed.aqi", aqi_hours),
            kpi("eco.exceed.water", water_sections),
            kpi("eco.exceed.noise", noise_hours),
        ],
        className="eco-kpis",
    )


# ---- reads ----------------------------------------------------------------------------------


def device_props(conn: sa.Connection) -> dict[str, dict[str, Any]]:
    """Properties (river, body, target class, noise zone) live in the database, not in Redis."""
    d = Device.__table__
    rows = conn.execute(sa.select(d.c.device_id, d.c.props).where(d.c.type.in_(("water_quality", "noise"))))
    return {r.device_id: dict(r.props or {}) for r in rows}


def noise_hourly(
    conn: sa.Connection, since: datetime, district_code: str | None = None, *, above: int | None = None
) -> list[tuple[str, datetime, float]]:
    """Each noise point's hourly mean LAeq since ``since`` (one query; of one district's
    points with ``district_code``; with ``above``, only the hours whose mean is above it)."""
    h = ObservationHourly.__table__
    query = sa.select(h.c.device_id, h.c.hour, h.c.sum, h.c.count).where(
        h.c.metric == "laeq",
        h.c.hour >= since,
        h.c.count > 0,
        in_district(h.c.district_code, district_code),
    )
    if above is not None:
        # sum / count > above, without a division: a quiet hour is not sent at all.
        query = query.where(h.c.sum > h.c.count * above)
    return [(r.device_id, r.hour.astimezone(UTC), r.sum / r.count) for r in conn.execute(query)]


@callback(
    Output("eco-status", "children"),
    Output("eco-map", "figure"),
    Output("eco-map-age", "children"),
    Output("eco-stations", "children"),
    Output("eco-stations-age", "children"),
    Output("eco-rivers", "children"),
    Output("eco-noise", "children"),
    Output("eco-noise-age", "children"),
    Output("eco-hourly", "figure"),
    Output("eco-hourly-age", "children"),
    Output("eco-daily-title", "children"),
    Output("eco-daily", "children"),
    Output("eco-exceed", "children"),
    Output("eco-drawn", "data"),
    Input("eco-tick", "n_intervals"),
    LIVE.input,
    State("eco-drawn", "data"),
)
@shared.refresh()
def refresh(_n: int | None, _live: dict | None, drawn: dict[str, Any] | None = None) -> tuple:
    ctx = context.current()
    now = time.time()
    now_dt = datetime.fromtimestamp(now, UTC)
    today = now_dt.astimezone(CITY_TZ).date()
    yesterday = today - timedelta(days=1)
    scope = auth.scope_district()
    try:
        states = eco.by_type(ctx.live.devices(scope))
        hours = eco.window_hours(now_dt)
        with ctx.engine.connect() as conn:
            props = device_props(conn)
            # One query for every district (or the viewer's own) and the whole window
            # (yesterday 00:00 to now).
            codes = [scope] if scope else [d.code for d in DISTRICTS]
            means = hourly_means_by_district(conn, hours, codes)
            today_start = next(h for h in hours if h.astimezone(CITY_TZ).date() == today)
            # Only the hours loud enough to break some zone's limit count as exceedances.
            lowest = eco.lowest_noise_limit(props)
            noise_rows = [] if lowest is None else noise_hourly(conn, today_start, scope, above=lowest)
    except Exception as exc:  # the page shows the degraded state instead of an error
        return (t("eco.degraded", reason=type(exc).__name__), *([dash.no_update] * 13))

    stations = eco.air_stations(states["air_quality"], now)
    sections = eco.water_sections(states["water_quality"], props, now)
    rivers = eco.river_panels(sections)
    zones = eco.noise_zones(states["noise"], props, now)
    series = {code: eco.hourly_series(m, hours) for code, m in means.items()}
    last_24 = slice(max(0, len(hours) - 24), len(hours))
    daily = {code: eco.daily_from_window(m, hours, yesterday) for code, m in means.items()}
    polluted = {code: eco.polluted_hours(s, hours, today) for code, s in series.items()}
    hourly_fresh = eco.newest([eco.series_freshness(s, hours, now_dt).age_s for s in series.values()])
    newest_hour = max(
        (h for s in series.values() for r, h in zip(s, hours, strict=True) if r is not None), default=None
    )
    hourly_age = (
        _age_span(hourly_fresh)
        if hourly_fresh.silent or newest_hour is None
        else t("eco.hourly_age", hour=f"{newest_hour.astimezone(CITY_TZ):%H:00}")
    )
    air_fresh = eco.newest([s.fresh.age_s for s in stations])
    all_fresh = eco.newest([s.fresh.age_s for s in stations] + [s.fresh.age_s for s in sections])
    drawn = drawn or {}
    figure, map_drawn = map_output(stations, sections, drawn.get("map"))
    hourly_series = {c: s[last_24] for c, s in series.items()}
    # Signed by what the figure draws: each district's line of hourly indices.
    hourly_sig = signature(
        hours[last_24],
        [(c, [r.aqi if r is not None else None for r in s]) for c, s in sorted(hourly_series.items())],
    )
    # Panels other than the two figures: sent when their content differs from what this
    # browser shows (dashboards.drawn); most refreshes change a few ages and values. The
    # small ones are signed by their JSON; the station table and the river panels by the
    # rows they show, and built only when sent.
    small: dict[str, Any] = {
        "map_age": _age_span(all_fresh),
        "stations_age": _age_span(air_fresh),
        "noise": noise_table(zones),
        "noise_age": _age_span(eco.newest([z.fresh.age_s for z in zones])),
        "hourly_age": hourly_age,
        "daily_title": t("eco.daily", day=f"{yesterday:%m-%d}"),
        "daily": daily_table(daily, polluted),
        "exceed": exceed_panel(
            sum(polluted.values()),
            sum(1 for s in sections if s.worse_than_target),
            eco.noise_exceedance_hours(noise_rows, props),
        ),
    }
    sent, signatures = build_changed(
        {
            **{name: (lambda value=value: value) for name, value in small.items()},
            "stations": lambda: station_table(stations),
            "rivers": lambda: [river_panel(p) for p in rivers],
        },
        {
            **{name: content_signature(value) for name, value in small.items()},
            "stations": station_table_signature(stations),
            "rivers": river_panels_signature(rivers),
        },
        drawn.get("panels"),
    )
    hourly = (
        dash.no_update if drawn.get("hourly") == hourly_sig else hourly_figure(hours[last_24], hourly_series)
    )
    return (
        t("eco.status", at=f"{now_dt.astimezone(CITY_TZ):%H:%M:%S}"),
        figure,
        sent["map_age"],
        sent["stations"],
        sent["stations_age"],
        sent["rivers"],
        sent["noise"],
        sent["noise_age"],
        hourly,
        sent["hourly_age"],
        sent["daily_title"],
        sent["daily"],
        sent["exceed"],
        {"map": map_drawn, "hourly": hourly_sig, "panels": signatures},
    )


drill.link_map_to_districts("eco-map")

dash.register_page(
    __name__, path="/ecology", name=t("nav.ecology"), title=t("eco.title"), order=2, layout=layout
)
