"""``/emergency`` — 应急指挥: open incidents and critical alerts on the map with the emergency
sensors and resources; the incident list; the selected incident's panel (lifecycle,
dispatched resources with ETA, nearest resources, affected area, links, warning draft,
timeline) and the operator's actions.

Rows, figures and panels come from :mod:`dashboards.emergency` (pure); this module reads
the stores and wires the callbacks. Everything refreshes from one trigger
(:data:`REFRESH`). Actions go through ``models.incidents`` (its lifecycle checks; a
refusal shows its reason) and are announced on the live updates channel.

Who acts is the console's duty officer: the name typed into this browser tab, kept in the
same session store as on ``/alerts`` and turned into an actor by
:func:`dashboards.pages.alerts.current_actor` — the one place the sign-in will replace.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import dash
import sqlalchemy as sa
from dash import ALL, Input, Output, State, callback, ctx, dcc, html

from dashboards import auth, context, push, shared
from dashboards import district as drill
from dashboards import emergency as em
from dashboards.console import COMMENT_MAX, OFFICER_NAME_MAX, city_time, clean_officer_name
from dashboards.drawn import build_changed, content_signature
from dashboards.ecology import Freshness
from dashboards.exports import export_links
from dashboards.i18n import t
from dashboards.pages.alerts import current_actor, current_address
from dashboards.pages.urban import age_span, panel, panel_class
from models import incidents as inc
from models.schema import Device
from models.users import Permission

log = logging.getLogger(__name__)

#: Pushes refresh the page when incidents, alerts or readings change; the timer keeps ages
#: and stale marks moving in between.
REFRESH_MS = 10_000
LIVE = push.LiveTrigger("emergency-push", kinds=("incident", "alert", "observations"))
#: The page's refresh triggers: the push and the timer.
REFRESH = (Input("emergency-tick", "n_intervals"), LIVE.input)
#: The console's session store: the officer named in this tab acts on both pages.
OFFICER_STORE = "console-officer"
ALERTS_READ = 500
_PANELS = (
    "emergency-incidents-panel",
    "emergency-alerts-panel",
    "emergency-map-panel",
    "emergency-sensors-panel",
    "emergency-detail-panel",
)
_KPIS = ("open", "high", "critical", "over", "resources")
RADIUS_OPTIONS = ("own", *(f"{r:g}" for r in em.RADII_M))


def _kpi(key: str) -> html.Div:
    return html.Div(
        className="kpi",
        children=[
            html.Div(t(f"emergency.kpi.{key}"), className="kpi-label"),
            html.Div("—", id=f"emergency-kpi-{key}", className="kpi-value"),
        ],
    )


def _button(action: str) -> html.Button:
    return html.Button(
        t(f"emergency.action.{action}"),
        id=f"emergency-btn-{action}",
        n_clicks=0,
        disabled=True,
        className=f"em-btn em-btn-{action}",
    )


def layout(**_query: str) -> html.Div:
    return html.Div(
        className="page emergency",
        children=[
            dcc.Interval(id="emergency-tick", interval=REFRESH_MS),
            LIVE.store(),
            dcc.Store(id=OFFICER_STORE, storage_type="session"),
            # The picked incident lasts as long as the tab: back from another page, still picked.
            dcc.Store(id="emergency-selected", storage_type="session"),
            dcc.Store(id="emergency-map-drawn"),
            dcc.Store(id="emergency-bump", data=0),
            html.Div(
                className="em-top",
                children=[
                    drill.scope_badge(auth.scope_district()),
                    html.Div(id="emergency-status", className="status-line"),
                    html.Div(
                        id="emergency-officer-form",
                        className="em-officer-form",
                        children=[
                            dcc.Input(
                                id="emergency-officer-input",
                                type="text",
                                maxLength=OFFICER_NAME_MAX,
                                placeholder=t("console.officer_placeholder"),
                                autoComplete="off",
                            ),
                            html.Button(
                                t("console.officer_submit"),
                                id="emergency-officer-submit",
                                n_clicks=0,
                                className="em-btn",
                            ),
                        ],
                    ),
                    html.Div(id="emergency-officer-label", className="console-officer-label"),
                ],
            ),
            html.Div([_kpi(k) for k in _KPIS], className="kpi-row em-kpis"),
            html.Div(
                className="em-grid",
                children=[
                    html.Div(
                        className="em-col",
                        children=[
                            panel(
                                "emergency-incidents-panel",
                                t("emergency.incidents"),
                                html.Div(id="emergency-incidents", className="em-scroll"),
                                age_id="emergency-incidents-age",
                                extra=export_links("incidents"),
                            ),
                            panel(
                                "emergency-alerts-panel",
                                t("emergency.alerts"),
                                html.Div(id="emergency-alerts", className="em-scroll-short"),
                                age_id="emergency-alerts-age",
                            ),
                        ],
                    ),
                    html.Div(
                        className="em-col",
                        children=[
                            panel(
                                "emergency-map-panel",
                                t("emergency.map"),
                                html.Div(
                                    [
                                        dcc.Graph(
                                            id="emergency-map",
                                            responsive=True,
                                            style={"height": f"{em.MAP_HEIGHT_PX}px"},
                                            className="em-map",
                                            config={"displayModeBar": False, "scrollZoom": True},
                                        ),
                                        em.legend(),
                                    ]
                                ),
                                age_id="emergency-map-age",
                            ),
                            panel(
                                "emergency-sensors-panel",
                                t("emergency.sensors"),
                                html.Div(id="emergency-sensors"),
                                age_id="emergency-sensors-age",
                                extra=export_links("sensors"),
                            ),
                        ],
                    ),
                    panel(
                        "emergency-detail-panel",
                        t("emergency.panel"),
                        html.Div(
                            [
                                html.Div(
                                    className="em-actions",
                                    children=[
                                        dcc.Dropdown(
                                            id="emergency-level",
                                            options=[
                                                {
                                                    "label": t("emergency.level.label", numeral=lvl.numeral),
                                                    "value": lvl.value,
                                                }
                                                for lvl in inc.ResponseLevel
                                            ],
                                            placeholder=t("emergency.level.pick"),
                                            clearable=True,
                                            searchable=False,
                                            className="em-level-pick",
                                        ),
                                        *[_button(a) for a in em.PANEL_ACTIONS],
                                    ],
                                ),
                                html.Div(
                                    className="em-actions",
                                    children=[
                                        html.Span(t("emergency.radius"), className="eco-muted"),
                                        dcc.RadioItems(
                                            id="emergency-radius",
                                            options=[
                                                {
                                                    "label": t(f"emergency.radius.{o}")
                                                    if o == "own"
                                                    else f"{float(o) / 1000:g} km",
                                                    "value": o,
                                                }
                                                for o in RADIUS_OPTIONS
                                            ],
                                            value="own",
                                            inline=True,
                                            className="indicator-switch em-radius",
                                        ),
                                        html.Button(
                                            t("emergency.action.area"),
                                            id="emergency-btn-area",
                                            n_clicks=0,
                                            disabled=True,
                                            className="em-btn",
                                        ),
                                    ],
                                ),
                                dcc.Textarea(
                                    id="emergency-comment",
                                    maxLength=COMMENT_MAX,
                                    placeholder=t("emergency.comment_placeholder"),
                                    className="console-comment",
                                ),
                                html.Div(id="emergency-feedback", className="console-feedback"),
                                html.Div(
                                    id="emergency-incident",
                                    className="em-panel-body",
                                    children=t("emergency.pick"),
                                ),
                            ]
                        ),
                        age_id="emergency-detail-age",
                        class_name="em-panel-col",
                    ),
                ],
            ),
        ],
    )


# ---- reads ------------------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _limits(rules_file: Path | None) -> dict[str, list[em.Limit]]:
    from models.rules import load_rules

    return em.sensor_limits(load_rules(rules_file).rules)


def sensor_props(conn: sa.Connection, types: Sequence[str] = em.SENSOR_TYPES) -> dict[str, dict[str, Any]]:
    """The sensors' own thresholds (a station's 警戒水位) live in the database, not in Redis;
    ``types``: the sensor types whose thresholds read them (:func:`em.sensor_prop_types`)."""
    if not types:
        return {}
    d = Device.__table__
    rows = conn.execute(sa.select(d.c.device_id, d.c.props).where(d.c.type.in_(list(types))))
    return {r.device_id: dict(r.props or {}) for r in rows}


def _radius(value: str | None) -> float | None:
    try:
        return float(value) if value and value != "own" else None
    except ValueError:
        return None


# ---- the refresh ------------------------------------------------------------------------------


@callback(
    Output("emergency-status", "children"),
    *(Output(f"emergency-kpi-{k}", "children") for k in _KPIS),
    Output("emergency-incidents", "children"),
    Output("emergency-alerts", "children"),
    Output("emergency-map", "figure"),
    Output("emergency-map-drawn", "data"),
    Output("emergency-sensors", "children"),
    Output("emergency-incident", "children"),
    *(Output(f"emergency-btn-{a}", "disabled") for a in (*em.PANEL_ACTIONS, "area")),
    *(Output(p, "className") for p in _PANELS),
    *(Output(f"{p.removesuffix('-panel')}-age", "children") for p in _PANELS),
    *REFRESH,
    Input("emergency-selected", "data"),
    Input("emergency-radius", "value"),
    Input("emergency-bump", "data"),
    State("emergency-map-drawn", "data"),
    State(OFFICER_STORE, "data"),
)
@shared.refresh()
def refresh(
    _n: int | None,
    _live: dict | None,
    selected: str | None,
    radius: str | None,
    _bump: int | None,
    drawn: dict[str, Any] | None,
    officer: str | None,
) -> tuple:
    pc = context.current()
    now = datetime.now(UTC)
    n_out = 1 + len(_KPIS) + 6 + len(em.PANEL_ACTIONS) + 1 + 2 * len(_PANELS)
    scope = auth.scope_district()
    try:
        states = pc.live.devices(scope)
        alerts = pc.live.open_alerts(ALERTS_READ, scope)
    except Exception as exc:  # Redis away: say so, keep the last figures on screen
        return (t("emergency.degraded", reason=type(exc).__name__), *([dash.no_update] * (n_out - 1)))
    limits = _limits(pc.settings.rules_file)
    radius_m = _radius(radius)
    try:
        with pc.engine.connect() as conn:
            incidents = inc.open_incidents(conn, district_code=scope)
            # Fire stations, hospitals, shelters and teams serve across district lines (the
            # nearest to an incident may be next door): every scope sees them all.
            resources = inc.all_resources(conn)
            # Only the properties a threshold reads: at city scale thousands of sensors
            # have properties no rule looks at.
            props = sensor_props(conn, em.sensor_prop_types(limits))
            wanted = [a.id for a in alerts if a.severity in em.MAP_SEVERITIES]
            incident_of = inc.incidents_of_alerts(conn, wanted)
            shown = selected or (incidents[0].incident_id if incidents else None)
            panel_data = _panel_data(conn, shown, radius_m) if shown else None
    except Exception as exc:  # the database is away: the live half still shows
        log.warning("emergency page: database read failed (%s)", exc)
        return (t("emergency.degraded", reason=type(exc).__name__), *([dash.no_update] * (n_out - 1)))
    # The picked id comes from the browser's store: another district's incident is not shown
    # (checked once the read is over: the refusal's audit entry is a write of its own).
    if panel_data is not None and auth.refuse_out_of_scope(
        panel_data.detail.incident.district_code, what=f"incident.view:{shown}"
    ):
        panel_data = None

    sensors = em.sensor_rows(states, limits, props, now.timestamp())
    incident_rows = em.incident_rows(incidents, now)
    alert_rows = em.alert_rows(alerts, incident_of)
    selection = None
    if panel_data is not None:
        detail = panel_data.detail.incident
        selection = em.Selection(detail, em.area_rings(detail), panel_data.nearest)
    model = em.MapModel(resources, sensors, alert_rows, incident_rows, selection)
    figure, now_drawn = em.map_update(model, drawn, tile_url=pc.settings.tile_url)

    counts = em.level_counts(incidents)
    over = sum(1 for s in sensors if s.status == "over")
    critical = [a for a in alert_rows if a.severity == "critical"]
    actor = current_actor(officer)
    enabled = em.enabled_actions(
        panel_data.detail.incident.state if panel_data else None, actor.role if actor else None
    )
    sensors_fresh = em.sensor_freshness(sensors, now)
    # The incident and alert lists are read now from the database and the live queue.
    read_now = Freshness(0.0, False)
    freshness = (read_now, read_now, sensors_fresh, sensors_fresh, read_now)
    # The lists and the incident panel are sent when their content differs from what this
    # browser shows (signatures kept with the map's in ``emergency-map-drawn``). The incident
    # list and panel are signed by their JSON; the alert list and the sensor table (thousands
    # of sensors behind it) by the rows they show, and built only when sent.
    small = {
        "incidents": em.incident_list(
            incident_rows, panel_data.detail.incident.incident_id if panel_data else None
        ),
        "incident": em.incident_panel(panel_data, now) if panel_data else t("emergency.pick"),
    }
    sent, panel_drawn = build_changed(
        {
            **{name: (lambda value=value: value) for name, value in small.items()},
            "alerts": lambda: em.alert_list(alert_rows, now),
            "sensors": lambda: em.sensor_table(sensors),
        },
        {
            **{name: content_signature(value) for name, value in small.items()},
            "alerts": em.alert_list_signature(alert_rows, now),
            "sensors": em.sensor_table_signature(sensors),
        },
        (drawn or {}).get("panels"),
    )
    return (
        t("emergency.live", at=city_time(now, now)),
        f"{counts.total:,}",
        f"{counts.by_level['I'] + counts.by_level['II']:,}",
        html.Span(f"{len(critical):,}", className="em-over" if any(a.can_open for a in critical) else ""),
        html.Span(f"{over:,}", className="em-over" if over else ""),
        f"{len(resources):,}",
        sent["incidents"],
        sent["alerts"],
        dash.no_update if figure is None else figure,
        {**now_drawn, "panels": panel_drawn},
        sent["sensors"],
        sent["incident"],
        *(a not in enabled for a in em.PANEL_ACTIONS),
        panel_data is None or panel_data.detail.incident.state == inc.IncidentState.CLOSED,
        *(
            panel_class(f, "em-panel-col" if p == "emergency-detail-panel" else "")
            for p, f in zip(_PANELS, freshness, strict=True)
        ),
        *(age_span(f) for f in freshness),
    )


def _panel_data(conn: sa.Connection, incident_id: str, radius_m: float | None) -> em.PanelData | None:
    detail = inc.incident_view(conn, incident_id)
    if detail is None:
        return None
    # The incident as just read serves the area and the nearest resources too.
    incident = detail.incident
    try:
        area = inc.affected_area(conn, incident_id, radius_m=radius_m, incident=incident)
    except ValueError:  # no place or area yet: the panel says so
        area = None
    nearest = inc.nearest_resources(conn, incident_id, per_kind=em.NEAREST_PER_KIND, incident=incident)
    return em.PanelData(detail, area, radius_m, nearest)


# ---- selection and actions --------------------------------------------------------------------


def _pressed() -> Any:
    """The id of the button really pressed, or None when a re-render fired the callback."""
    triggered = ctx.triggered[0] if ctx.triggered else None
    if not triggered or not triggered.get("value"):
        return None
    return ctx.triggered_id


@callback(
    Output("emergency-selected", "data"),
    Input({"type": "em-incident", "id": ALL}, "n_clicks"),
    prevent_initial_call=True,
)
def select(_clicks: list[int | None]) -> Any:
    pressed = _pressed()
    if not isinstance(pressed, dict):
        raise dash.exceptions.PreventUpdate
    return pressed["id"]


@callback(
    Output("emergency-feedback", "children"),
    Output("emergency-feedback", "className"),
    Output("emergency-comment", "value"),
    Output("emergency-bump", "data"),
    Output("emergency-selected", "data", allow_duplicate=True),
    *(Input(f"emergency-btn-{a}", "n_clicks") for a in (*em.PANEL_ACTIONS, "area")),
    Input({"type": "em-dispatch", "id": ALL}, "n_clicks"),
    Input({"type": "em-move", "id": ALL, "action": ALL}, "n_clicks"),
    Input({"type": "em-open-alert", "id": ALL}, "n_clicks"),
    State("emergency-selected", "data"),
    State("emergency-comment", "value"),
    State("emergency-level", "value"),
    State("emergency-radius", "value"),
    State(OFFICER_STORE, "data"),
    State("emergency-bump", "data"),
    prevent_initial_call=True,
)
@auth.acts(Permission.INCIDENT_OPEN, refused=lambda message: _refused(message, dash.no_update))
def act(*args: Any) -> tuple:
    selected, comment, level, radius, officer, bump = args[-6:]
    pressed = _pressed()
    if pressed is None:
        raise dash.exceptions.PreventUpdate
    request = request_for(pressed, selected or _shown_incident(), comment, level, radius)
    if request is None:
        raise dash.exceptions.PreventUpdate
    return run_action(request, officer, bump)


def _shown_incident() -> str | None:
    """The incident the panel shows when none was picked (the first of the list)."""
    try:
        shown = inc.open_incidents(context.current().engine, district_code=auth.scope_district(), limit=1)
    except Exception:
        return None
    return shown[0].incident_id if shown else None


def request_for(
    pressed: Any, selected: str | None, comment: str | None, level: str | None, radius: str | None
) -> em.ActionRequest | None:
    """The action a pressed button asks for."""
    if isinstance(pressed, dict):
        kind = pressed.get("type")
        if kind == "em-dispatch":
            return em.ActionRequest("dispatch", selected, comment, resource_id=str(pressed["id"]))
        if kind == "em-move":
            return em.ActionRequest(str(pressed["action"]), selected, comment, dispatch_id=int(pressed["id"]))
        if kind == "em-open-alert":
            return em.ActionRequest("open_from_alert", None, comment, alert_id=int(pressed["id"]))
        return None
    if isinstance(pressed, str) and pressed.startswith("emergency-btn-"):
        action = pressed.removeprefix("emergency-btn-")
        return em.ActionRequest(action, selected, comment, level=level, radius_m=_radius(radius))
    return None


def run_action(
    request: em.ActionRequest, officer: str | None, bump: int | None, *, now: datetime | None = None
) -> tuple:
    """The action callback's work, callable without a browser: feedback, its class, the
    comment box, the refresh bump and the incident to show."""
    actor = current_actor(officer)
    if actor is None:
        return (
            t("emergency.no_officer"),
            "console-feedback refused",
            dash.no_update,
            bump or 0,
            dash.no_update,
        )
    pc = context.current()
    try:
        _check(pc.engine, request)
    except auth.PermissionDenied as exc:
        return _refused(exc.message, bump or 0)
    try:
        outcome = em.perform(
            pc.engine, pc.live, request, actor=actor, address=current_address(), now=now or datetime.now(UTC)
        )
    except Exception as exc:  # a database failure: tell the officer, keep the comment
        log.exception("incident %s: %s by %s failed", request.incident_id, request.action, actor.username)
        return (
            t("emergency.failed", reason=type(exc).__name__),
            "console-feedback refused",
            dash.no_update,
            bump or 0,
            dash.no_update,
        )
    if not outcome.ok:
        # Keep the comment: the officer may act differently with the same note.
        return outcome.message, "console-feedback refused", dash.no_update, (bump or 0) + 1, dash.no_update
    show = outcome.incident_id if request.action == "open_from_alert" else dash.no_update
    return outcome.message, "console-feedback ok", "", (bump or 0) + 1, show


def _refused(message: str, bump: Any) -> tuple:
    return message, "console-feedback refused", dash.no_update, bump, dash.no_update


#: Opening an incident is an operator's job; commanding one (respond, dispatch, close …)
#: is the duty officer's (models.users.ROLE_PERMISSIONS).
OPENING_ACTIONS = frozenset({"open_from_alert", "open"})


def _check(engine: sa.Engine, request: em.ActionRequest) -> None:
    """The signed-in user's role and district against the action, before anything changes."""
    permission = (
        Permission.INCIDENT_OPEN if request.action in OPENING_ACTIONS else Permission.INCIDENT_COMMAND
    )
    district: str | None = None
    with engine.connect() as conn:
        if request.alert_id is not None:
            from models import alerts as alert_model

            alert = alert_model.get_alert(conn, request.alert_id)
            district = alert.district_code if alert is not None else None
        elif request.incident_id is not None:
            incident = inc.get_incident(conn, request.incident_id)
            district = incident.district_code if incident is not None else None
    what = f"incident.{request.action}:{request.incident_id or request.alert_id or ''}"
    auth.require(permission, district_code=district, what=what)


# ---- the officer ------------------------------------------------------------------------------


@callback(
    Output(OFFICER_STORE, "data", allow_duplicate=True),
    Input("emergency-officer-submit", "n_clicks"),
    Input("emergency-officer-input", "n_submit"),
    State("emergency-officer-input", "value"),
    prevent_initial_call=True,
)
def set_officer(_submit: int | None, _enter: int | None, name: str | None) -> Any:
    cleaned = clean_officer_name(name)
    return cleaned if cleaned is not None else dash.no_update


@callback(
    Output("emergency-officer-form", "style"),
    Output("emergency-officer-label", "children"),
    Input(OFFICER_STORE, "data"),
)
def show_officer(officer: str | None) -> tuple[dict[str, str], str]:
    actor = current_actor(officer)
    if actor is None:
        return {"display": "flex"}, t("emergency.officer_needed")
    return {"display": "none"}, t("console.officer", name=actor.display_name or actor.username)


dash.register_page(
    __name__, path="/emergency", name=t("nav.emergency"), title=t("emergency.title"), order=1, layout=layout
)
