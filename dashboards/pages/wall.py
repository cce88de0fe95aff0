"""``/wall`` — the command centre's wall screen (3840×2160 or 1920×1080), a kiosk.

No header, no scrolling, nothing to click: the city's key figures on the left, one
panel in focus on the right (emergency, urban, ecology in turn, every
``CITYOPS_WALL_ROTATE_S``), a ticker of the newest alerts at the bottom and a clock.
Type is sized in viewport units, so the same page reads from five metres on both screens.

The alarm is the console's: while an alert is in the live audible set (critical or
major, not yet acknowledged) the wall flashes and plays ``assets/alarm.wav`` until a
duty officer acknowledges it. Mute per screen with M, the mute button, or ``?mute=1`` on
the kiosk URL. Browsers block sound until a user gesture; the kiosk launch line in the
README allows it (``--autoplay-policy=no-user-gesture-required``).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import dash
from dash import ALL, ClientsideFunction, Input, Output, State, callback, clientside_callback, dcc, html

from dashboards import auth, context, push, shared, wall
from dashboards import district as drill
from dashboards import ecology as eco
from dashboards.i18n import t
from dashboards.pages.alerts import ALARM_SOUND
from dashboards.pages.emergency import sensor_props
from dashboards.pages.overview import age_text, aqi_badge
from dashboards.vitals import alert_counts, cases_for, city_day_start, read_inputs, summarise, tickets_for
from models import cases as case_model
from models.clock import CITY_TZ

#: A wall refreshes more slowly than a console: nobody acts on it, and there may be many.
#: Pushes refresh the wall as data changes; the timer keeps ages and stale marks moving.
REFRESH_MS = 15_000
LIVE = push.LiveTrigger("wall-push", kinds=push.KINDS)
_TRUE = {"1", "true", "yes"}
#: The device types behind the ecology panel's station and river lists.
AIR_TYPE, WATER_TYPE = "air_quality", "water_quality"


def layout(mute: str | None = None, **_query: str) -> html.Div:
    rotate_ms = int(context.current().settings.wall_rotate.total_seconds() * 1000)
    panels = wall.PANELS
    return html.Div(
        className="wall",
        children=[
            dcc.Interval(id="wall-tick", interval=REFRESH_MS),
            LIVE.store(),
            dcc.Interval(id="wall-rotate", interval=rotate_ms),
            dcc.Interval(id="wall-clock-tick", interval=1000),
            # Per screen, like the console's: muting one wall does not mute the next one.
            dcc.Store(id="wall-mute", storage_type="local", data=False),
            dcc.Store(id="wall-force-mute", data=(mute or "").lower() in _TRUE),
            dcc.Store(id="wall-live"),
            dcc.Store(
                id="wall-texts",
                data={
                    "alarm": t("wall.alarm", n="{n}"),
                    "mute": t("console.mute"),
                    "unmute": t("console.unmute"),
                    "muted": t("console.muted_note"),
                },
            ),
            dcc.Store(id="wall-keys"),
            html.Audio(id="wall-audio", src=ALARM_SOUND, loop=True, preload="auto"),
            html.Header(
                className="wall-head",
                children=[
                    html.Div(t("wall.title"), className="wall-title"),
                    drill.scope_badge(auth.scope_district()),
                    html.Div(id="wall-status", className="wall-status"),
                    html.Button(t("console.mute"), id="wall-mute-toggle", n_clicks=0, className="wall-mute"),
                    html.Div(id="wall-clock", className="wall-clock num"),
                ],
            ),
            html.Div(id="wall-alarm", className="wall-alarm"),
            html.Div(
                className="wall-main",
                children=[
                    html.Aside(id="wall-kpis", className="wall-kpis"),
                    html.Section(
                        className="wall-focus",
                        children=[
                            html.Nav(
                                [
                                    html.Div(
                                        t(p.title_key),
                                        id={"type": "wall-tab", "key": p.key},
                                        className="wall-tab focus" if i == 0 else "wall-tab",
                                    )
                                    for i, p in enumerate(panels)
                                ],
                                className="wall-tabs",
                            ),
                            *[
                                html.Div(
                                    id={"type": "wall-panel", "key": p.key},
                                    className="wall-panel focus" if i == 0 else "wall-panel",
                                    children=html.Div(id={"type": "wall-body", "key": p.key}),
                                )
                                for i, p in enumerate(panels)
                            ],
                        ],
                    ),
                ],
            ),
            html.Div(
                className="wall-ticker",
                children=[
                    html.Div(t("wall.ticker"), className="wall-ticker-label"),
                    html.Div(
                        html.Div(id="wall-ticker", className="wall-ticker-track"),
                        className="wall-ticker-window",
                    ),
                ],
            ),
        ],
    )


def kpis(data: wall.WallData, newest_age_s: float | None) -> list[html.Div]:
    """The left column: the city's figures that stay on screen whatever is in focus."""
    snapshot = data.snapshot or summarise(data.vitals.states, data.now.timestamp())
    counts = alert_counts(data.vitals.alerts, audible=data.vitals.audible)
    tickets = tickets_for(data.vitals.tickets)
    open_cases = cases_for(data.vitals.cases)
    return [
        _kpi(t("kpi.aqi_city"), aqi_badge(snapshot.aqi_city)),
        _kpi(t("vital.alerts"), str(counts.total), alarm=counts.by_severity["critical"] > 0),
        _kpi(t("vital.hotline_today"), str(tickets.registered)),
        _kpi(t("vital.cases_open"), str(open_cases.open)),
        _kpi(t("kpi.devices_online"), f"{snapshot.online} / {snapshot.devices}"),
        _kpi(t("kpi.freshness"), age_text(newest_age_s)),
    ]


def newest_reading_age(data: wall.WallData) -> float | None:
    """Seconds since the newest device reading, as of now (the read's summary has the
    newest stamp already: no second pass over the city's devices)."""
    if data.snapshot is None:
        seen = [s.last_seen for s in data.vitals.states if s.last_seen is not None]
        return (time.time() - max(seen)) if seen else None
    age = data.snapshot.newest_reading_age_s
    return None if age is None else time.time() - (data.now.timestamp() - age)


def _kpi(label: str, value: Any, *, alarm: bool = False) -> html.Div:
    return html.Div(
        [html.Div(label, className="wall-kpi-label"), html.Div(value, className="wall-kpi-value")],
        className="wall-kpi" + (" wall-kpi-alarm" if alarm else ""),
    )


def read_wall(now: datetime | None = None) -> wall.WallData:
    """One read for every panel: live state from Redis, today's counts from the database;
    a district-scoped account's wall shows its district only."""
    ctx = context.current()
    now = now or datetime.now(UTC)
    scope = auth.scope_district()
    vitals = read_inputs(ctx.live, ctx.engine, now, district_code=scope)
    stamp = now.timestamp()
    snapshot = summarise(vitals.states, stamp)
    props: dict[str, dict[str, Any]] = {}
    today = None
    if vitals.database_error is None:
        try:
            with ctx.engine.connect() as conn:
                # The river sections' properties only: the wall shows no noise points.
                props = sensor_props(conn, (WATER_TYPE,))
                # The urban panel shows today's reported cases and filing rate only.
                today = case_model.intake(conn, city_day_start(now), now, district_code=scope)
        except Exception:  # the panels that need them show what they have
            props, today = {}, None
    # One pass picks the two kinds the panels list out of the city's ten thousand devices.
    kinds = eco.by_type(vitals.states, (AIR_TYPE, WATER_TYPE))
    return wall.WallData(
        vitals=vitals,
        district_aqi={d.district_code: d.aqi for d in snapshot.districts if scope in (None, d.district_code)},
        air=eco.air_stations(kinds[AIR_TYPE], stamp, limit=wall.AIR_ROWS),
        air_fresh=eco.newest_reading(kinds[AIR_TYPE], stamp),
        water=eco.water_sections(kinds[WATER_TYPE], props, stamp),
        cases_today=today,
        district_code=scope,
        snapshot=snapshot,
    )


@callback(
    Output("wall-kpis", "children"),
    Output({"type": "wall-body", "key": ALL}, "children"),
    Output("wall-ticker", "children"),
    Output("wall-live", "data"),
    Output("wall-status", "children"),
    Input("wall-tick", "n_intervals"),
    LIVE.input,
)
@shared.refresh()
def refresh(_n: int | None, _live: dict | None) -> tuple:
    keys = [o["id"]["key"] for o in dash.ctx.outputs_list[1]]
    try:
        data = read_wall()
    except Exception as exc:  # Redis away: say so, keep the last figures on screen
        return (
            dash.no_update,
            [dash.no_update] * len(keys),
            dash.no_update,
            dash.no_update,
            t("status.degraded", reason=type(exc).__name__),
        )
    built = {panel.key: body for panel, body in wall.build_panels(data)}
    newest_age = newest_reading_age(data)
    ringing = wall.ringing(data.vitals.alerts, data.vitals.audible)
    live = wall.alarm_state(ringing, data.now)
    status = t("console.live", at=data.now.astimezone(CITY_TZ).strftime("%H:%M:%S"))
    return (
        kpis(data, newest_age),
        [
            built.get(k, html.Div(t("wall.panel_failed", reason="missing"), className="wall-stale"))
            for k in keys
        ],
        wall.ticker(data.vitals.alerts),
        live,
        status,
    )


clientside_callback(
    ClientsideFunction("cityops", "clock"),
    Output("wall-clock", "children"),
    Input("wall-clock-tick", "n_intervals"),
    State("shell-locale", "data"),
)

clientside_callback(
    ClientsideFunction("cityops", "wallRotate"),
    Output({"type": "wall-panel", "key": ALL}, "className"),
    Output({"type": "wall-tab", "key": ALL}, "className"),
    Input("wall-rotate", "n_intervals"),
    State({"type": "wall-panel", "key": ALL}, "id"),
)

clientside_callback(
    ClientsideFunction("cityops", "wallAlarm"),
    Output("wall-alarm", "children"),
    Output("wall-alarm", "className"),
    Output("wall-mute-toggle", "children"),
    Input("wall-live", "data"),
    Input("wall-mute", "data"),
    Input("wall-force-mute", "data"),
    State("wall-texts", "data"),
)

clientside_callback(
    """function(n, muted) { return n ? !muted : window.dash_clientside.no_update; }""",
    Output("wall-mute", "data"),
    Input("wall-mute-toggle", "n_clicks"),
    State("wall-mute", "data"),
    prevent_initial_call=True,
)

clientside_callback(
    ClientsideFunction("cityops", "wallKeys"),
    Output("wall-keys", "data"),
    Input("wall-tick", "id"),
)


dash.register_page(
    __name__,
    path="/wall",
    name=t("nav.wall"),
    title=t("wall.title"),
    order=90,
    layout=layout,
)
