"""``/alerts`` — 告警处置台: the duty officer's queue, detail and actions, live.

The queue is read from Redis (``LiveStore.open_alerts``) every :data:`REFRESH_MS`, which
is one ZRANGE and one pipelined HGETALL: cheap enough for every console in the centre.
Detail, evidence and history come from the database, and only when the selected alert
changed. Actions go through ``models.alerts`` and are pushed to Redis, so every open page
sees them on its next refresh.

Keyboard shortcuts, row clicks, the alarm sound and the lost-connection notice run in the
browser (clientside callbacks): they must work even while the server does not answer. So
do the SLA countdowns and the ages (``assets/cityops-console.js``, on the server's clock):
the queue table is sent only when its rows change, not every second.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import dash
from dash import ClientsideFunction, Input, Output, State, callback, clientside_callback, ctx, dcc, html

from dashboards import auth, console, context, push, shared
from dashboards import district as drill
from dashboards.drawn import build_changed, signature
from dashboards.exports import export_links
from dashboards.i18n import LANGUAGES, current_language, t
from geo.boundaries import DISTRICTS, city_bounds
from models import alerts as alert_model
from models.lifecycle import Actor
from models.users import Permission

log = logging.getLogger(__name__)

REFRESH_MS = 1500
#: The queue is "stale" when no refresh arrived for this long: two missed refreshes and a
#: margin for a slow database, before the officer is told the connection is lost.
STALE_AFTER_MS = 3 * REFRESH_MS + 2000
#: Viewers of the queue share a refresh at most this old: its SLA countdowns tick by the second.
CONSOLE_MAX_AGE_S = 1.0
QUEUE_LIMIT = 200
#: A pushed alert change refreshes the queue at once (alert notes are few); the timer above
#: keeps the SLA countdowns and the stale check going between changes.
LIVE = push.LiveTrigger("console-push", kinds=("alert",), min_interval_ms=250)
ALARM_SOUND = "/assets/alarm.wav"

_minx, _miny, _maxx, _maxy = city_bounds()
CITY_CENTRE = {"lon": (_minx + _maxx) / 2, "lat": (_miny + _maxy) / 2}


# --------------------------------------------------------------------------------------------
# Identity


def current_actor(_typed_name: str | None = None) -> Actor | None:
    """Who is acting from this browser: the signed-in user, with their role (None: anonymous).

    A name typed into a page is ignored: it decided identity before sign-in existed, and a
    page that still passes one gets the signed-in user all the same.
    """
    return auth.current_actor()


def current_address() -> str | None:
    """The client's address for the audit trail (behind a proxy, its ProxyFix decides)."""
    return auth.client_address()


def _refused(message: str) -> tuple[str, str, Any, Any]:
    """The action callback's outputs when the check before it fails: nothing changed."""
    return message, "console-feedback refused", dash.no_update, dash.no_update


# --------------------------------------------------------------------------------------------
# Layout


def _options(values: tuple[str, ...], label: Any) -> list[dict[str, str]]:
    return [{"label": label(v), "value": v} for v in values]


def _filter(filter_id: str, label_key: str, options: list[dict[str, str]]) -> html.Div:
    return html.Div(
        className="console-filter",
        children=[
            html.Label(t(label_key), htmlFor=filter_id),
            dcc.Dropdown(
                id=filter_id,
                options=options,
                value=None,
                placeholder=t("console.filter.all"),
                clearable=True,
                searchable=False,
                className="console-dropdown",
            ),
        ],
    )


def _action_button(action: str, key: str) -> html.Button:
    return html.Button(
        [t(f"console.action.{action}"), html.Kbd(key)],
        id=f"console-btn-{action}",
        className=f"console-btn console-btn-{action}",
        n_clicks=0,
    )


def layout(**_query: str) -> html.Div:
    return html.Div(
        className="page console",
        children=[
            dcc.Interval(id="console-tick", interval=REFRESH_MS),
            LIVE.store(),
            dcc.Interval(id="console-watch", interval=1000),
            # Per screen: muting the wall's console must not mute the one beside it.
            dcc.Store(id="console-mute", storage_type="local", data=False),
            dcc.Store(id="console-selected", storage_type="memory"),
            dcc.Store(id="console-live", storage_type="memory"),
            # The server's clock minus the browser's (ms), for the countdowns.
            dcc.Store(id="console-clock", storage_type="memory"),
            dcc.Store(id="console-version", storage_type="memory"),
            dcc.Store(id="console-bump", storage_type="memory", data=0),
            dcc.Store(id="console-init", storage_type="memory", data=1),
            dcc.Store(id="console-keys", storage_type="memory"),
            # Signature of the queue table this browser shows (dashboards.drawn).
            dcc.Store(id="console-queue-drawn", storage_type="memory"),
            html.Audio(id="console-audio", src=ALARM_SOUND, loop=True, preload="auto"),
            html.Div(
                className="console-top",
                children=[
                    html.H1(t("console.title")),
                    _filter(
                        "console-filter-domain",
                        "console.filter.domain",
                        _options(console.DOMAINS, console.domain_label),
                    ),
                    _filter(
                        "console-filter-severity",
                        "console.filter.severity",
                        _options(console.SEVERITIES, console.severity_label),
                    ),
                    _filter(
                        "console-filter-district",
                        "console.filter.district",
                        [{"label": d.name, "value": d.code} for d in DISTRICTS if auth.in_scope(d.code)],
                    ),
                    _filter(
                        "console-filter-state",
                        "console.filter.state",
                        _options(console.QUEUE_STATES, console.state_label),
                    ),
                    html.Div(
                        _signed_in_label(), id="console-officer-label", className="console-officer-label"
                    ),
                    html.Button(t("console.mute"), id="console-mute-toggle", n_clicks=0),
                ],
            ),
            html.Div(id="console-alarm", className="console-alarm"),
            html.Div(id="console-conn", className="console-conn"),
            drill.scope_badge(auth.scope_district()),
            html.Div(id="console-status", className="status-line"),
            html.Div(
                className="console-grid",
                children=[
                    html.Div(
                        className="panel console-queue-panel",
                        children=[
                            html.Div(
                                className="panel-head",
                                children=[
                                    html.H2(t("console.queue")),
                                    html.Div(id="console-queue-count", className="console-count"),
                                    export_links("alerts"),
                                ],
                            ),
                            html.Div(id="console-queue", className="console-queue"),
                            html.Div(
                                className="console-actions",
                                children=[
                                    _action_button("acknowledge", "A"),
                                    _action_button("start", "S"),
                                    _action_button("escalate", "E"),
                                    _action_button("resolve", "R"),
                                    _action_button("mark_false_alarm", "F"),
                                    dcc.Input(
                                        id="console-assignee",
                                        type="text",
                                        maxLength=64,
                                        placeholder=t("console.assignee_placeholder"),
                                        className="console-assignee",
                                        autoComplete="off",
                                    ),
                                    _action_button("assign", "—"),
                                ],
                            ),
                            dcc.Textarea(
                                id="console-comment",
                                maxLength=console.COMMENT_MAX,
                                placeholder=t("console.comment_placeholder"),
                                className="console-comment",
                            ),
                            html.Div(id="console-feedback", className="console-feedback"),
                            html.Div(t("console.shortcuts"), className="console-shortcuts"),
                        ],
                    ),
                    html.Div(
                        className="panel console-detail-panel",
                        children=[
                            html.H2(t("console.detail")),
                            html.Div(
                                id="console-detail",
                                className="console-detail",
                                children=t("console.detail_none"),
                            ),
                            dcc.Graph(
                                id="console-map",
                                className="console-map",
                                figure=console.location_figure(
                                    None,
                                    None,
                                    None,
                                    "",
                                    tile_url=_tile_url(),
                                    centre=CITY_CENTRE,
                                ),
                                config={"displayModeBar": False, "scrollZoom": True},
                            ),
                            html.Div(id="console-evidence", className="console-evidence"),
                            html.Div(id="console-history", className="console-history"),
                        ],
                    ),
                ],
            ),
        ],
    )


def _signed_in_label() -> str:
    account = auth.current_user()
    return "" if account is None else t("console.officer", name=account.display_name)


def _tile_url() -> str | None:
    try:
        return context.current().settings.tile_url
    except RuntimeError:
        return None


# --------------------------------------------------------------------------------------------
# Rendering (plain functions: Dash components from the console's rows)


def queue_table(rows: list[console.QueueRow], selected: int | None) -> html.Table | html.Div:
    if not rows:
        return html.Div(t("console.queue_empty"), className="console-empty")
    head = html.Tr(
        [
            html.Th(t(k))
            for k in (
                "console.col.severity",
                "console.col.title",
                "console.col.district",
                "console.col.state",
                "console.col.age",
                "console.col.sla",
                "console.col.handler",
            )
        ]
    )
    body = []
    for r in rows:
        classes = ["console-row", f"sev-{r.colour or 'none'}", f"state-{r.state}"]
        if r.audible:
            classes.append("alarm")
        if r.id == selected:
            classes.append("selected")
        body.append(
            html.Tr(
                [
                    html.Td(html.Span(r.severity_label, className=f"sev-badge sev-{r.colour or 'none'}")),
                    html.Td(r.title, className="console-title-cell"),
                    html.Td(r.district),
                    html.Td(r.state_label, className="console-state-cell"),
                    # Age and SLA tick in the browser, from these instants.
                    html.Td(r.age, className="num", **console.age_data(r.opened_at)),
                    html.Td(
                        r.sla.text, className=f"num sla sla-{r.sla.state}", **console.sla_data(r.sla_due)
                    ),
                    html.Td(r.handler),
                ],
                className=" ".join(classes),
                id=f"console-row-{r.id}",
                # Read by the browser's click and J/K handlers (clientside).
                **{"data-alert-id": str(r.id)},
            )
        )
    # The texts the ticking cells are written with, once for all of them.
    return html.Table(
        [html.Thead(head), html.Tbody(body)],
        className="data-table console-table",
        **console.countdown_texts(),
    )


def _fact(label_key: str, value: str, **attributes: str) -> html.Div:
    return html.Div([html.Dt(t(label_key)), html.Dd(value, **attributes)], className="console-fact")


def detail_view(alert: alert_model.AlertView, now: datetime) -> html.Div:
    """Title, message and facts of one alert; every value is a plain string (text, never HTML)."""
    acknowledged = (
        t("console.ack_by", who=alert.acknowledged_by, at=console.city_time(alert.acknowledged_at, now))
        if alert.acknowledged_by
        else "—"
    )
    sla = console.sla_status(alert.sla_due, now, state=alert.state)
    source = " ".join(x for x in (alert.source_kind, alert.source_id) if x) or "—"
    return html.Div(
        [
            html.Div(
                [
                    html.Span(
                        console.severity_label(alert.severity),
                        className=f"sev-badge sev-{alert.colour.value}",
                    ),
                    html.Span(alert.title, className="console-detail-title"),
                    html.Span(
                        console.state_label(alert.state), className=f"console-state state-{alert.state}"
                    ),
                ],
                className="console-detail-head",
            ),
            html.P(alert.message or "", className="console-message"),
            html.Dl(
                [
                    _fact("console.field.id", str(alert.id)),
                    _fact("console.filter.domain", console.domain_label(alert.domain)),
                    _fact("console.col.district", console.district_name(alert.district_code)),
                    _fact("console.field.source", source),
                    _fact("console.field.rule", alert.rule_id),
                    _fact("console.field.opened_at", console.city_time(alert.opened_at, now)),
                    _fact("console.field.last_seen_at", console.city_time(alert.last_seen_at, now)),
                    _fact("console.field.occurrences", str(alert.occurrences)),
                    _fact("console.field.acknowledged", acknowledged),
                    _fact("console.field.assigned_to", alert.assigned_to or "—"),
                    # Ticks in the browser like the queue's (the detail is redrawn on changes only).
                    _fact(
                        "console.field.sla_due",
                        sla.text,
                        className=f"sla sla-{sla.state}",
                        **(
                            console.sla_data(alert.sla_due) | console.countdown_texts()
                            if alert.sla_due
                            else {}
                        ),
                    ),
                    _fact(
                        "console.field.escalation",
                        t("console.escalation_level", n=alert.escalation_level)
                        if alert.escalation_level
                        else "—",
                    ),
                    _fact(
                        "console.field.cleared",
                        t("console.cleared_yes") if alert.cleared_at else t("console.cleared_no"),
                    ),
                ],
                className="console-facts",
            ),
        ]
    )


def _evidence_lines(lines: list[console.EvidenceLine]) -> html.Dl:
    return html.Dl(
        [html.Div([html.Dt(x.label), html.Dd(x.value)], className="console-fact") for x in lines],
        className="console-facts console-evidence-item",
    )


def evidence_panel(view: console.EvidenceView | None) -> list[Any]:
    children: list[Any] = [html.H3(t("console.evidence"))]
    if view is None:
        return [*children, html.Div(t("console.evidence_none"), className="console-empty")]
    children += [html.H4(t("console.evidence_first")), _evidence_lines(view.first)]
    if view.recent:
        children.append(html.H4(t("console.evidence_recent", n=len(view.recent), total=view.total)))
        children += [_evidence_lines(lines) for lines in view.recent]
    return children


def history_table(rows: list[console.HistoryRow]) -> list[Any]:
    children: list[Any] = [html.H3(t("console.history"))]
    if not rows:
        return [*children, html.Div(t("console.history_none"), className="console-empty")]
    head = html.Tr(
        [
            html.Th(t(k))
            for k in (
                "console.col.time",
                "console.col.action",
                "console.col.transition",
                "console.col.actor",
                "console.col.address",
                "console.col.comment",
            )
        ]
    )
    body = [
        html.Tr(
            [
                html.Td(r.time, className="num"),
                html.Td(r.action),
                html.Td(r.transition),
                html.Td(r.actor),
                html.Td(r.address),
                # Officer-typed text: a string child is a React text node, never parsed as markup.
                html.Td(r.comment, className="console-comment-cell"),
            ]
        )
        for r in rows
    ]
    return [*children, html.Table([html.Thead(head), html.Tbody(body)], className="data-table")]


# --------------------------------------------------------------------------------------------
# Server callbacks


def _now() -> datetime:
    return datetime.now(UTC)


@callback(
    Output("console-queue", "children"),
    Output("console-queue-count", "children"),
    Output("console-live", "data"),
    Output("console-version", "data"),
    Output("console-status", "children"),
    Output("console-queue-drawn", "data"),
    Input("console-tick", "n_intervals"),
    LIVE.input,
    Input("console-filter-domain", "value"),
    Input("console-filter-severity", "value"),
    Input("console-filter-district", "value"),
    Input("console-filter-state", "value"),
    Input("console-selected", "data"),
    State("console-version", "data"),
    State("console-queue-drawn", "data"),
)
@shared.refresh(max_age_s=CONSOLE_MAX_AGE_S, version=lambda: context.current().live.alerts_token())
def refresh_queue(
    _n: int | None,
    _live: dict | None,
    domain: str | None,
    severity: str | None,
    district: str | None,
    state: str | None,
    selected: int | None,
    shown_version: str | None,
    drawn: dict[str, str] | None = None,
) -> tuple:
    live = context.current().live
    now = _now()
    try:
        # A district-scoped account's queue is its district's (the console's district filter
        # then only offers that district).
        alerts = live.open_alerts(QUEUE_LIMIT, auth.scope_district())
        audible = live.audible_alerts()
        current = live.alert(int(selected)) if selected is not None else None
    except Exception as exc:  # Redis away: say so, keep the last queue on screen
        message = t("console.degraded", reason=type(exc).__name__)
        return dash.no_update, dash.no_update, dash.no_update, dash.no_update, message, dash.no_update
    shown = console.filter_alerts(alerts, console.Filters.of(domain, severity, district, state))
    rows = console.queue_rows(shown, now, audible)
    # The detail reloads from the database only when the selected alert changed.
    version = f"{current.id}:{current.version}" if current is not None else None
    live_data = {
        # Always different, so the browser can tell a live page from a stalled one.
        "at": now.isoformat(),
        # The server's clock for the browser's countdowns (Date's unit: no parsing).
        "at_ms": console.epoch_ms(now),
        "audible": sorted(audible),
        "ids": [r.id for r in rows],
    }
    # The table is built and sent only when it differs from the one on screen (most
    # refreshes of a queue of hundreds change nothing in it). Its rows are plain text in
    # the viewer's language, so what they show, the selection and the language sign it.
    # Ages and SLA countdowns tick in the browser: the instants they count from sign
    # them, not the seconds their text shows at this moment, so a refresh where only
    # time passed sends no table. (The countdown's state follows from its deadline, the
    # alert's state and the clock; the first two are here.)
    shown_rows = [
        (r.id, r.severity_label, r.colour, r.title, r.district, r.state, r.state_label, r.handler, r.audible)
        for r in rows
    ]
    instants = [
        (console.epoch_ms(r.opened_at), None if r.sla_due is None else console.epoch_ms(r.sla_due))
        for r in rows
    ]
    sent, now_drawn = build_changed(
        {"queue": lambda: queue_table(rows, selected)},
        {"queue": signature(shown_rows, instants, [selected, current_language()])},
        drawn,
    )
    return (
        sent["queue"],
        t("console.queue_count", shown=len(rows), total=len(alerts)),
        live_data,
        dash.no_update if version == shown_version else version,
        t("console.live", at=console.city_time(now, now)),
        now_drawn,
    )


@callback(
    Output("console-detail", "children"),
    Output("console-map", "figure"),
    Output("console-evidence", "children"),
    Output("console-history", "children"),
    Input("console-selected", "data"),
    Input("console-version", "data"),
    Input("console-bump", "data"),
)
def show_detail(selected: int | None, _version: str | None, _bump: int | None) -> tuple:
    if selected is None:
        return t("console.detail_none"), dash.no_update, [], []
    ctx_ = context.current()
    now = _now()
    alert_id = int(selected)
    with ctx_.engine.connect() as conn:
        alert = alert_model.get_alert(conn, alert_id)
    if alert is None:
        return t("console.detail_missing", id=alert_id), dash.no_update, [], []
    # Outside the read: the refusal's audit entry is a write of its own.
    if auth.refuse_out_of_scope(alert.district_code, what=f"alert.view:{alert_id}"):
        return t("auth.denied.district"), dash.no_update, [], []
    with ctx_.engine.connect() as conn:
        evidence = alert_model.alert_evidence(conn, alert_id)
        events = alert_model.alert_history(conn, alert_id)
    figure = console.location_figure(
        alert.id,
        alert.lon,
        alert.lat,
        alert.colour.value,
        tile_url=ctx_.settings.tile_url,
        centre=CITY_CENTRE,
    )
    return (
        detail_view(alert, now),
        figure,
        evidence_panel(console.evidence_view(evidence)),
        history_table(console.history_rows(events, now)),
    )


@callback(
    Output("console-feedback", "children"),
    Output("console-feedback", "className"),
    Output("console-comment", "value"),
    Output("console-bump", "data"),
    *(Input(f"console-btn-{action}", "n_clicks") for action in console.ACTIONS),
    State("console-selected", "data"),
    State("console-comment", "value"),
    State("console-assignee", "value"),
    State("console-bump", "data"),
    prevent_initial_call=True,
)
@auth.acts(Permission.ALERT_ACT, refused=_refused)
def act(*args: Any) -> tuple:
    selected, comment, assignee, bump = args[len(console.ACTIONS) :]
    trigger = ctx.triggered_id
    if not isinstance(trigger, str) or not trigger.startswith("console-btn-"):
        raise dash.exceptions.PreventUpdate
    action = trigger.removeprefix("console-btn-")
    return run_action(action, selected, comment, assignee, bump)


def run_action(
    action: str,
    selected: int | None,
    comment: str | None,
    assignee: str | None,
    bump: int | None,
    *,
    now: datetime | None = None,
) -> tuple[str, str, Any, int]:
    """The action callback's work, callable without a browser: feedback, class, comment, bump.

    Checked on the server before anything changes: the signed-in user's role, then the
    alert's district against the user's scope. A refusal is audited and changes nothing.
    """
    actor = current_actor()
    if actor is None:
        return t("auth.denied.anonymous"), "console-feedback refused", dash.no_update, bump or 0
    if selected is None:
        return t("console.action.no_selection"), "console-feedback refused", dash.no_update, bump or 0
    ctx_ = context.current()
    try:
        with ctx_.engine.connect() as conn:
            alert = alert_model.get_alert(conn, int(selected))
        auth.require(
            Permission.ALERT_ACT,
            district_code=alert.district_code if alert is not None else None,
            what=f"alert.{action}:{selected}",
        )
    except auth.PermissionDenied as exc:
        return exc.message, "console-feedback refused", dash.no_update, bump or 0
    try:
        outcome = console.perform_action(
            ctx_.engine,
            ctx_.live,
            action,
            int(selected),
            actor=actor,
            address=current_address(),
            comment=comment,
            assignee=assignee,
            now=now or _now(),
        )
    except Exception as exc:  # a database or Redis failure: tell the officer, keep the comment
        log.exception("alert %s: %s by %s failed", selected, action, actor.username)
        return (
            t("console.action.failed", reason=type(exc).__name__),
            "console-feedback refused",
            dash.no_update,
            bump or 0,
        )
    if not outcome.ok:
        # Keep the comment: the officer may want to act differently with the same note.
        return outcome.message, "console-feedback refused", dash.no_update, (bump or 0) + 1
    return outcome.message, "console-feedback ok", "", (bump or 0) + 1


# --------------------------------------------------------------------------------------------
# Browser side


# Every language, chosen in the browser by <html lang> (the shell sets it per viewer).
_TEXTS = json.dumps(
    {
        lang: {
            "alarm": t("console.alarm_banner", lang=lang, n="{n}"),
            "muted": t("console.muted_note", lang=lang),
            "mute": t("console.mute", lang=lang),
            "unmute": t("console.unmute", lang=lang),
            "disconnected": t("console.disconnected", lang=lang),
        }
        for lang in LANGUAGES
    },
    ensure_ascii=False,
)
_PICK_TEXTS = f"({_TEXTS})[(document.documentElement.lang || 'zh').slice(0, 2)] || ({_TEXTS}).zh"

# Click and keyboard handlers, installed once per page load on the document, so they keep
# working while the queue re-renders under them. Action keys press the same buttons the
# mouse does: one code path for both.
clientside_callback(
    """function(_init) {
        // A fresh page: the stale-connection clock starts now, not at the last visit.
        window.cityopsConsoleLastLive = Date.now();
        if (window.cityopsConsoleKeys) { return window.dash_clientside.no_update; }
        window.cityopsConsoleKeys = true;
        const select = (id) => window.dash_clientside.set_props("console-selected", {data: id});
        document.addEventListener("click", (event) => {
            const row = event.target.closest && event.target.closest("tr[data-alert-id]");
            if (row) { select(Number(row.dataset.alertId)); }
        });
        const buttons = {a: "acknowledge", s: "start", e: "escalate", r: "resolve", f: "mark_false_alarm"};
        document.addEventListener("keydown", (event) => {
            if (!document.getElementById("console-queue")) { return; }  // another page is shown
            const tag = (event.target.tagName || "").toLowerCase();
            if (tag === "input" || tag === "textarea" || tag === "select" || event.target.isContentEditable) {
                if (event.key === "Escape") { event.target.blur(); }
                return;
            }
            if (event.ctrlKey || event.metaKey || event.altKey) { return; }
            const key = event.key.toLowerCase();
            if (key === "j" || key === "k" || key === "arrowdown" || key === "arrowup") {
                const rows = Array.from(document.querySelectorAll("#console-queue tr[data-alert-id]"));
                if (!rows.length) { return; }
                const at = rows.findIndex((r) => r.classList.contains("selected"));
                const step = (key === "j" || key === "arrowdown") ? 1 : -1;
                const next = at < 0 ? 0 : Math.min(Math.max(at + step, 0), rows.length - 1);
                rows.forEach((r) => r.classList.remove("selected"));
                rows[next].classList.add("selected");
                rows[next].scrollIntoView({block: "nearest"});
                select(Number(rows[next].dataset.alertId));
                event.preventDefault();
            } else if (buttons[key]) {
                const button = document.getElementById("console-btn-" + buttons[key]);
                if (button) { button.click(); event.preventDefault(); }
            } else if (key === "c") {
                const box = document.getElementById("console-comment");
                if (box) { box.focus(); event.preventDefault(); }
            } else if (key === "m") {
                const mute = document.getElementById("console-mute-toggle");
                if (mute) { mute.click(); }
            }
        });
        return true;
    }""",
    Output("console-keys", "data"),
    Input("console-init", "data"),
)

# The alarm: plays while any critical/major alert is unacknowledged anywhere, unless this
# screen is muted. play() may be refused until the officer has interacted with the page
# (browsers' autoplay rule); the name prompt's click is that interaction.
clientside_callback(
    f"""function(live, muted) {{
        const texts = {_PICK_TEXTS};
        window.cityopsConsoleLastLive = Date.now();
        const ringing = Boolean(live && live.audible && live.audible.length);
        const audio = document.getElementById("console-audio");
        if (audio) {{
            if (ringing && !muted) {{
                if (audio.paused) {{ const p = audio.play(); if (p) {{ p.catch(() => null); }} }}
            }} else if (!audio.paused) {{
                audio.pause();
                audio.currentTime = 0;
            }}
        }}
        const banner = ringing ? texts.alarm.replace("{{n}}", live.audible.length)
            + (muted ? " · " + texts.muted : "") : "";
        return [banner, ringing ? "console-alarm ringing" : "console-alarm",
                muted ? texts.unmute : texts.mute];
    }}""",
    Output("console-alarm", "children"),
    Output("console-alarm", "className"),
    Output("console-mute-toggle", "children"),
    Input("console-live", "data"),
    Input("console-mute", "data"),
)

clientside_callback(
    """function(n, muted) { return n ? !muted : window.dash_clientside.no_update; }""",
    Output("console-mute", "data"),
    Input("console-mute-toggle", "n_clicks"),
    State("console-mute", "data"),
    prevent_initial_call=True,
)

# The countdowns' clock: each refresh brings the server's time (assets/cityops-console.js).
clientside_callback(
    ClientsideFunction("cityops", "consoleClock"),
    Output("console-clock", "data"),
    Input("console-live", "data"),
)

# Lost connection: the browser notices that refreshes stopped arriving (the server cannot
# say so itself). Dash keeps polling, so the notice goes away by itself on recovery.
clientside_callback(
    f"""function(_n) {{
        const texts = {_PICK_TEXTS};
        const last = window.cityopsConsoleLastLive;
        const stale = last !== undefined && Date.now() - last > {STALE_AFTER_MS};
        return [stale ? texts.disconnected : "", stale ? "console-conn lost" : "console-conn"];
    }}""",
    Output("console-conn", "children"),
    Output("console-conn", "className"),
    Input("console-watch", "n_intervals"),
)


dash.register_page(
    __name__, path="/alerts", name=t("nav.alerts"), title=t("console.title"), order=10, layout=layout
)
