"""``/admin`` — 系统管理: accounts with their sign-in locks (and unlocking), and the audit
trail searched by who, what and when, with a CSV export. Administrators only: the page is
registered with ``permission="admin"`` (the gate and the page guard refuse everyone else)
and every callback checks again on the server, reads included.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime, timedelta
from typing import Any

import dash
from dash import ALL, Input, Output, State, callback, ctx, dcc, html

from dashboards import auth, context
from dashboards.console import city_time
from dashboards.i18n import t
from models import audit, users
from models.clock import CITY_TZ
from models.users import Permission

#: Enough to read on a screen; narrower searches find the rest.
AUDIT_LIMIT = 200
#: An export is a file for an investigation, not a backup of the trail.
EXPORT_LIMIT = 10_000


def layout(**_query: str) -> html.Div:
    return html.Div(
        className="page admin",
        children=[
            html.H1(t("admin.title")),
            dcc.Store(id="admin-bump", data=0),
            html.Div(id="admin-feedback", className="admin-feedback", role="status"),
            html.Div(
                className="admin-grid",
                children=[
                    html.Div(
                        className="panel",
                        children=[html.H2(t("admin.users")), html.Div(id="admin-users")],
                    ),
                    html.Div(
                        className="panel",
                        children=[html.H2(t("admin.locks")), html.Div(id="admin-locks")],
                    ),
                ],
            ),
            html.Div(
                className="panel",
                children=[
                    html.H2(t("admin.audit")),
                    html.Div(
                        className="admin-form",
                        children=[
                            _field("admin-audit-who", "admin.audit_who"),
                            _field("admin-audit-what", "admin.audit_what"),
                            _field("admin-audit-since", "admin.audit_since", placeholder="2026-01-31"),
                            _field("admin-audit-until", "admin.audit_until", placeholder="2026-01-31"),
                            html.Button(
                                t("admin.audit_search"), id="admin-audit-search", className="admin-btn"
                            ),
                            html.Button(
                                t("admin.audit_export"), id="admin-audit-export", className="admin-btn"
                            ),
                            dcc.Download(id="admin-audit-download"),
                        ],
                    ),
                    html.Div(id="admin-audit-count", className="status-line"),
                    html.Div(id="admin-audit"),
                ],
            ),
        ],
    )


def _field(field_id: str, label_key: str, placeholder: str = "") -> html.Div:
    return html.Div(
        [
            html.Label(t(label_key), htmlFor=field_id),
            dcc.Input(id=field_id, type="text", maxLength=64, placeholder=placeholder, debounce=True),
        ]
    )


def _table(heads: list[str], rows: list[list[Any]]) -> html.Table:
    return html.Table(
        [
            html.Thead(html.Tr([html.Th(t(h)) for h in heads])),
            html.Tbody([html.Tr([html.Td(c) for c in r]) for r in rows]),
        ],
        className="data-table",
    )


def users_table(accounts: list[users.Account], locks: dict[str, datetime], now: datetime) -> html.Table:
    rows = []
    for a in accounts:
        until = locks.get(f"user:{a.username.lower()}")
        if a.disabled:
            state = t("admin.state.disabled")
        elif until is not None:
            state = t("admin.state.locked", until=city_time(until, now))
        else:
            state = t("admin.state.enabled")
        rows.append(
            [
                a.username,
                a.display_name,  # text children: never parsed as markup
                auth.role_label(a.role.value),
                a.district_code or "—",
                state,
                city_time(a.last_login_at, now),
            ]
        )
    heads = ["admin.col.username", "admin.col.name", "admin.col.role", "admin.col.district"]
    return _table([*heads, "admin.col.state", "admin.col.last_login"], rows)


def locks_table(states: list[users.ThrottleState], now: datetime) -> html.Table | html.Div:
    locked = [s for s in states if s.locked(now)]
    if not locked:
        return html.Div(t("admin.locks_none"), className="console-empty")
    rows = [
        [
            s.key,
            str(s.failures),
            city_time(s.locked_until, now),
            html.Button(
                t("admin.unlock"),
                id={"type": "admin-unlock", "key": s.key},
                className="admin-btn",
                n_clicks=0,
            ),
        ]
        for s in locked
    ]
    return _table(["admin.col.key", "admin.col.failures", "admin.col.locked_until", "admin.unlock"], rows)


def _change(entry: audit.AuditEntry) -> str:
    before = json.dumps(entry.before, ensure_ascii=False) if entry.before is not None else "—"
    after = json.dumps(entry.after, ensure_ascii=False) if entry.after is not None else "—"
    return f"{before} → {after}"


def audit_table(entries: list[audit.AuditEntry], now: datetime) -> html.Table:
    rows = [
        [
            city_time(e.ts, now),
            e.actor,
            e.address or "—",
            e.action,
            f"{e.entity_type} {e.entity_id or ''}".strip(),
            html.Span(_change(e), className="admin-change"),
        ]
        for e in entries
    ]
    heads = ["admin.col.time", "admin.col.actor", "admin.col.address", "admin.col.action", "admin.col.entity"]
    return _table([*heads, "admin.col.change"], rows)


def parse_day(raw: str | None) -> date | None:
    """``2026-01-31`` → that date (city time); blank → None; anything else → ValueError."""
    if raw is None or not raw.strip():
        return None
    return date.fromisoformat(raw.strip())


def _bounds(since: str | None, until: str | None) -> tuple[datetime | None, datetime | None]:
    start, end = parse_day(since), parse_day(until)
    as_time = lambda d: datetime(d.year, d.month, d.day, tzinfo=CITY_TZ)  # noqa: E731
    return (as_time(start) if start else None, as_time(end) + timedelta(days=1) if end else None)


# ---- callbacks: every one checks the administrator on the server ---------------------------------


def _refused_pair(message: str) -> tuple[Any, Any]:
    return html.Div(message, className="auth-refused"), dash.no_update


@callback(
    Output("admin-users", "children"),
    Output("admin-locks", "children"),
    Input("admin-bump", "data"),
)
@auth.acts(Permission.ADMIN, refused=_refused_pair)
def show_users(_bump: int | None) -> tuple[Any, Any]:
    now = auth.now()
    with context.current().engine.connect() as conn:
        accounts = users.list_accounts(conn)
        states = users.throttle_states(conn)
    locks = {s.key: s.locked_until for s in states if s.locked(now) and s.locked_until is not None}
    return users_table(accounts, locks, now), locks_table(states, now)


@callback(
    Output("admin-feedback", "children"),
    Output("admin-bump", "data"),
    Input({"type": "admin-unlock", "key": ALL}, "n_clicks"),
    State("admin-bump", "data"),
    prevent_initial_call=True,
)
@auth.acts(Permission.ADMIN, refused=lambda message: (message, dash.no_update))
def unlock(clicks: list[int | None], bump: int | None) -> tuple[str, int]:
    pressed = ctx.triggered_id
    if not isinstance(pressed, dict) or not any(clicks):
        raise dash.exceptions.PreventUpdate
    key = str(pressed.get("key", ""))[:160]
    account = auth.require(Permission.ADMIN, what=f"auth.unlock:{key}")
    with context.current().engine.begin() as conn:
        done = users.unlock(conn, key, by=account.actor, address=auth.client_address(), now=auth.now())
    return (t("admin.unlocked", key=key) if done else t("admin.unlock_none", key=key)), (bump or 0) + 1


@callback(
    Output("admin-audit", "children"),
    Output("admin-audit-count", "children"),
    Input("admin-audit-search", "n_clicks"),
    Input("admin-bump", "data"),
    State("admin-audit-who", "value"),
    State("admin-audit-what", "value"),
    State("admin-audit-since", "value"),
    State("admin-audit-until", "value"),
)
@auth.acts(Permission.ADMIN, refused=_refused_pair)
def search(
    _n: int | None, _bump: int | None, who: str | None, what: str | None, since: str | None, until: str | None
) -> tuple[Any, str]:
    try:
        start, end = _bounds(since, until)
    except ValueError:
        return dash.no_update, t("admin.audit_bad_date")
    with context.current().engine.connect() as conn:
        found = audit.search(
            conn,
            actor=(who or "").strip() or None,
            action_prefix=(what or "").strip() or None,
            since=start,
            until=end,
            limit=AUDIT_LIMIT,
        )
    return audit_table(found, auth.now()), t("admin.audit_count", n=len(found), limit=AUDIT_LIMIT)


def audit_csv(entries: list[audit.AuditEntry]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["ts", "actor", "address", "action", "entity_type", "entity_id", "before", "after"])
    for e in entries:
        row = [e.ts.isoformat(), e.actor, e.address or "", e.action, e.entity_type, e.entity_id or ""]
        row += [json.dumps(e.before, ensure_ascii=False), json.dumps(e.after, ensure_ascii=False)]
        # A cell starting with = + - @ is a formula to a spreadsheet: quote it as text.
        writer.writerow(["'" + c if c[:1] in ("=", "+", "-", "@") else c for c in row])
    return out.getvalue()


@callback(
    Output("admin-audit-download", "data"),
    Output("admin-feedback", "children", allow_duplicate=True),
    Input("admin-audit-export", "n_clicks"),
    State("admin-audit-who", "value"),
    State("admin-audit-what", "value"),
    State("admin-audit-since", "value"),
    State("admin-audit-until", "value"),
    prevent_initial_call=True,
)
@auth.acts(Permission.ADMIN, refused=lambda message: (dash.no_update, message))
def export(n: int | None, who: str | None, what: str | None, since: str | None, until: str | None) -> tuple:
    if not n:
        raise dash.exceptions.PreventUpdate
    try:
        start, end = _bounds(since, until)
    except ValueError:
        return dash.no_update, t("admin.audit_bad_date")
    query = {"actor": (who or "").strip() or None, "action_prefix": (what or "").strip() or None}
    with context.current().engine.connect() as conn:
        found = audit.search(conn, **query, since=start, until=end, limit=EXPORT_LIMIT)
    # The export itself is audited: who took which part of the trail.
    auth.record(
        "audit.export",
        entity_type="audit_log",
        entity_id=None,
        after={**query, "since": since, "until": until, "rows": len(found)},
    )
    return dcc.send_string(audit_csv(found), "cityops-audit.csv"), ""


dash.register_page(
    __name__,
    path="/admin",
    name=t("nav.admin"),
    title=t("admin.title"),
    order=90,
    layout=layout,
    permission=Permission.ADMIN.value,
)
