"""``/api/cap/``: alerts and incidents' public warning drafts as CAP 1.2 messages, and an
Atom feed of them (models.interop.cap)."""

from __future__ import annotations

import flask

from dashboards.context import PageContext
from models.clock import Clock, utc_now
from models.interop import cap

#: The feed is polled by other systems; a short cache spares the database without making
#: a new alert late by more than this.
FEED_MAX_AGE_S = 10


def blueprint(context: PageContext, *, clock: Clock = utc_now) -> flask.Blueprint:
    bp = flask.Blueprint("cap", __name__, url_prefix="/api/cap")
    sender = context.settings.cap_sender

    def message_url(alert_id: int) -> str:
        return flask.url_for("cap.message", alert_id=alert_id, _external=True)

    def warning_url(incident_id: str) -> str:
        return flask.url_for("cap.incident_warning", incident_id=incident_id, _external=True)

    def console_url() -> str:
        return flask.request.host_url + "alerts"

    @bp.get("/alerts.atom")
    def feed() -> flask.Response:
        now = clock()
        with context.engine.connect() as conn:
            items = cap.feed_alerts(conn, now=now)
            warnings = cap.incident_warnings(conn, now=now)
        entries = [cap.alert_entry(i.alert, i.updated_at, message_url(i.alert.id)) for i in items]
        entries += [cap.incident_entry(w, warning_url(w.draft.incident_id)) for w in warnings]
        body = cap.atom_feed(entries, self_url=flask.request.base_url, updated=now)
        response = flask.Response(body, content_type=f"{cap.ATOM_MEDIA_TYPE}; charset=utf-8")
        response.cache_control.max_age = FEED_MAX_AGE_S
        return response

    @bp.get("/<int:alert_id>.xml")
    def message(alert_id: int) -> flask.Response:
        with context.engine.connect() as conn:
            item = cap.cap_alert(conn, alert_id)
        if item is None:
            return _not_found(f"告警 {alert_id} 不存在 / alert {alert_id} does not exist")
        body = cap.to_xml(cap.message_for(item, sender=sender, web=console_url()))
        return flask.Response(body, content_type=f"{cap.CAP_MEDIA_TYPE}; charset=utf-8")

    @bp.get("/incident/<incident_id>.xml")
    def incident_warning(incident_id: str) -> flask.Response:
        with context.engine.connect() as conn:
            found = cap.incident_warnings(conn, incident_id=incident_id)
        if not found:
            return _not_found(
                f"事件 {incident_id[:40]} 没有预警信息草稿 / no warning draft for this incident"
            )
        body = cap.to_xml(cap.incident_message(found[0], sender=sender))
        return flask.Response(body, content_type=f"{cap.CAP_MEDIA_TYPE}; charset=utf-8")

    @bp.get("/<path:anything>")
    def unknown(anything: str) -> flask.Response:
        return _not_found(f"/api/cap/{anything[:100]} 不存在 / not found")

    return bp


def _not_found(text: str) -> flask.Response:
    return flask.Response(text + "\n", status=404, content_type="text/plain; charset=utf-8")
