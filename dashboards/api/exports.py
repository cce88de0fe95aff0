"""``GET /api/export/<dataset>.csv|.xlsx`` and ``GET /api/briefing/<YYYY-MM-DD>.png``.

Behind the sign-in gate (anonymous: 401). Each request asks :func:`dashboards.auth.require`
for :data:`Permission.EXPORT` (a viewer: 403, audited as ``auth.denied``), keeps a
district-scoped account to its district (asking for another: 403), and writes one
``export`` entry to the audit trail with the dataset, format, filters and row count,
committed before the file leaves. The tables are :data:`dashboards.exports.DATASETS`.
"""

from __future__ import annotations

import logging
from typing import Any

import flask

from dashboards import auth, exports
from dashboards import briefing as br
from dashboards.context import PageContext
from dashboards.i18n import t
from models.users import Account, Permission

log = logging.getLogger(__name__)

#: The audit action of every download: ``what=export`` on /admin finds them all.
AUDIT_ACTION = "export"


def _error(status: int, error: str, message: str) -> flask.Response:
    response = flask.jsonify(error=error, message=message)
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response


def _refusal(exc: auth.PermissionDenied) -> flask.Response:
    if exc.reason == "anonymous":
        return _error(401, "unauthenticated", exc.message)
    return _error(403, "forbidden", exc.message)


def _check(what: str, district: str | None) -> Account:
    """The account, if it may export (and export ``district``); else PermissionDenied."""
    account = auth.require(Permission.EXPORT, what=what)
    if district and not account.may_act_in(district):
        auth.require(Permission.EXPORT, district_code=district, what=what)  # raises, audited
    return account


def _audit(account: Account, dataset: str, fmt: str, details: dict[str, Any]) -> None:
    auth.record(
        AUDIT_ACTION,
        entity_type="dataset",
        entity_id=dataset,
        after={"dataset": dataset, "format": fmt, "account_district": account.district_code, **details},
    )


def _file(body: bytes, media_type: str, filename: str) -> flask.Response:
    response = flask.Response(body, mimetype=media_type.split(";")[0])
    response.headers["Content-Type"] = media_type
    response.headers["Content-Disposition"] = exports.content_disposition(filename)
    # Personal and operational data: never kept by a proxy or the browser's cache.
    response.headers["Cache-Control"] = "no-store"
    return response


def blueprint(context: PageContext) -> flask.Blueprint:
    bp = flask.Blueprint("exports", __name__)

    @bp.route("/api/export/<dataset>.<fmt>", methods=["GET"])
    def export_table(dataset: str, fmt: str) -> flask.Response:
        dataset, fmt = dataset[:40], fmt[:8]
        args = flask.request.args
        try:
            account = _check(f"export:{dataset}", args.get("district"))
        except auth.PermissionDenied as exc:
            return _refusal(exc)
        spec = exports.DATASETS.get(dataset)
        if spec is None:
            return _error(404, "not_found", t("export.unknown_dataset", name=dataset))
        if fmt not in exports.FORMATS:
            return _error(404, "not_found", t("export.unknown_format", format=fmt))
        now = auth.now()
        try:
            query = exports.parse_query(spec, args, now=now, scope=account.district_code)
        except exports.ExportError as exc:
            return _error(exc.status, "bad_request", exc.message)
        try:
            table = exports.read_table(context, spec, query, now)
        except Exception as exc:  # Redis or the database away: a clear 503, nothing audited
            log.warning("export %s: read failed (%s)", dataset, type(exc).__name__)
            return _error(503, "unavailable", t("export.unavailable", reason=type(exc).__name__))
        body = exports.render(table, fmt)  # type: ignore[arg-type]
        _audit(
            account,
            dataset,
            fmt,
            {"filters": query.described(), "by": query.by if "by" in spec.filters else None}
            | {"rows": len(table.rows), "truncated": table.truncated},
        )
        response = _file(body, exports.MEDIA_TYPES[fmt], exports.file_name(dataset, fmt, now, query))
        response.headers["X-Cityops-Rows"] = str(len(table.rows))
        if table.truncated:
            response.headers["X-Cityops-Truncated"] = str(exports.ROW_CAP)
        return response

    @bp.route("/api/briefing/<day>.png", methods=["GET"])
    def briefing_png(day: str) -> flask.Response:
        try:
            account = _check("export:briefing", None)
        except auth.PermissionDenied as exc:
            return _refusal(exc)
        now = auth.now()
        try:
            parsed = br.parse_day(day[:32], now)
        except ValueError:
            return _error(400, "bad_request", t("briefing.bad_date", value=day[:20]))
        try:
            briefing = br.read_briefing(context, parsed, district_code=account.district_code, now=now)
        except Exception as exc:
            log.warning("briefing PNG: read failed (%s)", type(exc).__name__)
            return _error(503, "unavailable", t("export.unavailable", reason=type(exc).__name__))
        body = br.render_png(briefing)
        _audit(
            account,
            "briefing",
            "png",
            {
                "filters": {"day": parsed.isoformat(), "district_code": account.district_code},
                "bytes": len(body),
            },
        )
        district = f"-{account.district_code}" if account.district_code else ""
        return _file(body, "image/png", f"cityops-briefing{district}-{parsed:%Y%m%d}.png")

    return bp
