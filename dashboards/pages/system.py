"""``/admin/system`` — 系统运行监控: every ingest worker and web process with its figures,
refreshed every few seconds, and the readiness of each dependency.

The figures are the processes' own heartbeats in Redis (:mod:`ingest.heartbeat`): an
ingest worker's messages by outcome, rate, batch time, lag, queue and broker connection;
a web process's viewers and requests; memory and start time of both. A process whose
heartbeat stopped stays listed — *stale* while its last figures are kept, then *gone* —
so a crashed worker is seen, not silently missing. The dependencies are the same checks
``/readyz`` runs (:func:`dashboards.api.health.default_checks`).

Administrators only, like ``/admin``: registered with ``permission="admin"`` (the gate and
the page guard refuse everyone else) and every callback checks again on the server.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import dash
from dash import Input, Output, callback, dcc, html

from dashboards import auth, context
from dashboards.api import health
from dashboards.console import city_time
from dashboards.i18n import t
from ingest import heartbeat
from ingest.heartbeat import ProcessStatus
from models.users import Permission

#: The process tables follow the heartbeats (written every 5 s).
REFRESH_MS = 5_000
#: Readiness connects to the broker and the database: less often.
READINESS_MS = 15_000

_INGEST_COLUMNS = (
    "system.col.worker",
    "system.col.host",
    "system.col.pid",
    "system.col.state",
    "system.col.beat",
    "system.col.stored",
    "system.col.duplicate",
    "system.col.rejected",
    "system.col.rate",
    "system.col.batch",
    "system.col.lag",
    "system.col.queue",
    "system.col.broker",
    "system.col.rss",
    "system.col.started",
)
_WEB_COLUMNS = (
    "system.col.host",
    "system.col.pid",
    "system.col.state",
    "system.col.beat",
    "system.col.viewers",
    "system.col.requests",
    "system.col.req_rate",
    "system.col.rss",
    "system.col.started",
)


def layout(**_query: str) -> html.Div:
    return html.Div(
        className="page admin system",
        children=[
            html.H1(t("system.title")),
            dcc.Interval(id="system-tick", interval=REFRESH_MS),
            dcc.Interval(id="system-ready-tick", interval=READINESS_MS),
            html.Div(id="system-summary", className="status-line", role="status"),
            html.Div(
                className="panel",
                children=[html.H2(t("system.ingest")), html.Div(id="system-ingest")],
            ),
            html.Div(
                className="panel",
                children=[html.H2(t("system.web")), html.Div(id="system-web")],
            ),
            html.Div(
                className="panel",
                children=[html.H2(t("system.readiness")), html.Div(id="system-readiness")],
            ),
        ],
    )


# ---- rendering (pure: tested without a server) ------------------------------------------------


def _number(raw: str | None, digits: int = 0) -> str:
    if raw is None or raw == "":
        return "—"
    try:
        value = float(raw)
    except ValueError:
        return "—"
    return f"{value:,.{digits}f}"


def _megabytes(raw: str | None) -> str:
    return "—" if not raw else f"{float(raw) / 2**20:,.0f} MB"


def _started(raw: str | None, now: datetime) -> str:
    if not raw:
        return "—"
    try:
        return city_time(datetime.fromisoformat(raw), now)
    except ValueError:
        return "—"


#: The console's deadline colours say the same thing here: fine, late, over, not counting.
_STATE_CLASS = {"live": "sla-ok", "stale": "sla-due_soon", "gone": "sla-overdue", "stopped": "sla-none"}


def state_cell(status: ProcessStatus) -> html.Span:
    """The state in words, coloured per state (a gone worker must stand out)."""
    return _state_span(t(f"system.state.{status.state}"), status.state)


def _state_span(text: str, state: str) -> html.Span:
    return html.Span(text, className=f"system-state system-{state} {_STATE_CLASS[state]}")


def _beat(status: ProcessStatus) -> str:
    return t("system.ago", s=f"{status.age_s:.0f}")


def _table(columns: Sequence[str], rows: list[list[Any]], states: list[str]) -> html.Table:
    return html.Table(
        [
            html.Thead(html.Tr([html.Th(t(c)) for c in columns])),
            html.Tbody(
                [
                    html.Tr([html.Td(c) for c in r], className=f"system-row-{s}")
                    for r, s in zip(rows, states, strict=True)
                ]
            ),
        ],
        className="data-table system-table",
    )


def _broker(figures: Mapping[str, str]) -> str:
    if figures.get("degraded"):
        return t("system.degraded", reason=figures["degraded"])
    return t("system.connected") if figures.get("connected") == "1" else t("system.disconnected")


def ingest_table(statuses: Sequence[ProcessStatus], now: datetime) -> html.Table | html.Div:
    if not statuses:
        return html.Div(t("system.none.workers"), className="console-empty")
    rows = []
    for s in statuses:
        f = s.figures
        rows.append(
            [
                s.member,
                f.get("host") or "—",
                f.get("pid") or "—",
                state_cell(s),
                _beat(s),
                _number(f.get("stored")),
                _number(f.get("duplicate")),
                _number(f.get("rejected")),
                _number(f.get("rate"), 1),
                _seconds(f.get("batch_s")),
                _seconds(f.get("lag_s")),
                _number(f.get("queue_depth")),
                _broker(f) if f else "—",
                _megabytes(f.get("rss_bytes")),
                _started(f.get("started_at"), now),
            ]
        )
    return _table(_INGEST_COLUMNS, rows, [s.state for s in statuses])


def _seconds(raw: str | None) -> str:
    return "—" if not raw else f"{float(raw) * 1000:,.0f} ms"


def web_table(statuses: Sequence[ProcessStatus], now: datetime) -> html.Table | html.Div:
    if not statuses:
        return html.Div(t("system.none.web"), className="console-empty")
    rows = []
    for s in statuses:
        f = s.figures
        host, _, pid = s.member.rpartition(":")
        rows.append(
            [
                host,
                pid,
                state_cell(s),
                _beat(s),
                _number(f.get("viewers")),
                _number(f.get("requests")),
                _number(f.get("rate"), 1),
                _megabytes(f.get("rss_bytes")),
                _started(f.get("started_at"), now),
            ]
        )
    return _table(_WEB_COLUMNS, rows, [s.state for s in statuses])


def summary(ingest: Sequence[ProcessStatus], web: Sequence[ProcessStatus], now: datetime) -> str:
    running_web = [s for s in web if s.state == "live"]
    viewers = sum(int(float(s.figures.get("viewers") or 0)) for s in running_web)
    return t(
        "system.summary",
        ingest=sum(s.state == "live" for s in ingest),
        web=len(running_web),
        viewers=viewers,
        at=city_time(now, now),
    )


def readiness_table(results: Mapping[str, health.CheckResult]) -> html.Table:
    rows = [
        [
            t(f"system.dep.{name}") if name in health.DEPENDENCIES else name,
            _state_span(t("system.ready") if r.ok else t("system.not_ready"), "live" if r.ok else "gone"),
            r.detail,  # technical text from the check itself (host, port, migration)
        ]
        for name, r in results.items()
    ]
    states = ["live" if r.ok else "gone" for r in results.values()]
    return _table(("system.col.dependency", "system.col.state", "system.col.detail"), rows, states)


# ---- callbacks: every one checks the administrator on the server ---------------------------------


def _refused_three(message: str) -> tuple[Any, Any, Any]:
    return html.Div(message, className="auth-refused"), dash.no_update, dash.no_update


@callback(
    Output("system-summary", "children"),
    Output("system-ingest", "children"),
    Output("system-web", "children"),
    Input("system-tick", "n_intervals"),
)
@auth.acts(Permission.ADMIN, refused=_refused_three)
def show_processes(_n: int | None) -> tuple[Any, Any, Any]:
    now = datetime.now(UTC)
    client = context.current().live.redis
    try:
        ingest = heartbeat.read_beats(client, heartbeat.INGEST, now=now.timestamp())
        web = heartbeat.read_beats(client, heartbeat.WEB, now=now.timestamp())
    except Exception as exc:  # Redis away: say so, keep the last tables on screen
        return t("system.unavailable", reason=type(exc).__name__), dash.no_update, dash.no_update
    return summary(ingest, web, now), ingest_table(ingest, now), web_table(web, now)


@callback(Output("system-readiness", "children"), Input("system-ready-tick", "n_intervals"))
@auth.acts(Permission.ADMIN, refused=lambda message: html.Div(message, className="auth-refused"))
def show_readiness(_n: int | None) -> html.Table:
    return readiness_table(health.run_checks(health.default_checks(context.current())))


dash.register_page(
    __name__,
    path="/admin/system",
    name=t("nav.system"),
    title=t("system.title"),
    order=91,
    layout=layout,
    permission=Permission.ADMIN.value,
)
