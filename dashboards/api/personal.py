"""``POST /api/tickets/<ticket_id>/caller``: one 12345 caller's name and phone, unmasked.

Everywhere else callers are masked (``models.tickets``). Roles that handle work orders
(``personal.reveal`` in ``models.users.ROLE_PERMISSIONS``) may see one ticket's caller at a
time, within their district; every reveal, and every refused attempt, is in the audit trail.
A POST with the CSRF token, so that no link or image on another site can trigger one.
"""

from __future__ import annotations

import flask
import sqlalchemy as sa

from dashboards import auth
from dashboards.context import PageContext
from dashboards.i18n import t
from models import audit
from models.schema import HotlineTicket
from models.users import Permission


def blueprint(context: PageContext) -> flask.Blueprint:
    bp = flask.Blueprint("personal", __name__)

    @bp.route("/api/tickets/<ticket_id>/caller", methods=["POST"])
    def reveal_caller(ticket_id: str) -> flask.Response:
        table = HotlineTicket.__table__
        ticket_id = ticket_id[:64]
        with context.engine.connect() as conn:
            row = conn.execute(
                sa.select(table.c.district_code, table.c.caller_name, table.c.caller_phone).where(
                    table.c.ticket_id == ticket_id
                )
            ).first()
        try:
            account = auth.require(
                Permission.REVEAL_PERSONAL,
                district_code=row.district_code if row is not None else None,
                what=f"ticket.reveal_caller:{ticket_id}",
            )
        except auth.PermissionDenied as exc:
            return flask.jsonify(error="forbidden", message=exc.message), 403
        if row is None:
            return flask.jsonify(error="not_found", message=t("auth.reveal_missing", id=ticket_id)), 404
        with context.engine.begin() as conn:
            # Who saw whose data, when and from where; the data itself stays out of the trail.
            audit.record(
                conn,
                actor=account.username,
                address=auth.client_address(),
                action="ticket.reveal_caller",
                entity_type="ticket",
                entity_id=ticket_id,
                before=None,
                after={"fields": ["caller_name", "caller_phone"]},
                now=auth.now(),
            )
        response = flask.jsonify(
            ticket_id=ticket_id, caller_name=row.caller_name, caller_phone=row.caller_phone
        )
        response.headers["Cache-Control"] = "no-store"
        return response

    return bp
