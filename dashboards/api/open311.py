"""``/open311/v2/``: Open311 GeoReport v2 for 12345 work orders (models.interop.open311).

A POST creates the work order exactly as a message on ``{prefix}/hotline/tickets`` would:
the request is turned into that message's payload, checked against the same schema, and
handed to :class:`ingest.pipeline.IngestPipeline` — validation, location, storage,
registration (deadlines, dispatch suggestion, repeat check), live state and the rules are
the ingest worker's own. A request with any problem is refused before anything is stored.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from datetime import datetime

import flask
from pydantic import ValidationError

from dashboards.context import PageContext
from ingest.pipeline import Inbound, IngestPipeline
from ingest.routing import TopicRouter
from ingest.schemas import HotlineTicket
from models.clock import Clock, utc_now
from models.interop import open311
from models.interop.open311 import CONTENT_TYPES, Open311Error

log = logging.getLogger(__name__)

#: Which form encodings a POST may use (the spec's, and multipart for clients that send files).
POST_CONTENT_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
#: When the service list last changed (Service Discovery ``changeset``).
CHANGESET = "2026-07-01T00:00:00+08:00"
FMT = "<any(json, xml):fmt>"


def blueprint(
    context: PageContext,
    *,
    clock: Clock = utc_now,
    pipeline_factory: Callable[[], IngestPipeline] | None = None,
) -> flask.Blueprint:
    bp = flask.Blueprint("open311", __name__, url_prefix="/open311/v2")
    settings = context.settings
    topic = TopicRouter(settings.topic_prefix).tickets()
    pipeline_lock = threading.Lock()
    pipelines: list[IngestPipeline] = []

    def pipeline() -> IngestPipeline:
        # Built on the first POST: the rule set and the location index take a moment to load.
        with pipeline_lock:
            if not pipelines:
                pipelines.append((pipeline_factory or (lambda: _pipeline(context, clock)))())
            return pipelines[0]

    def answer(fmt: str, root: str, body: object, status: int = 200) -> flask.Response:
        return flask.Response(open311.render(fmt, root, body), status=status, content_type=CONTENT_TYPES[fmt])

    def args() -> dict[str, list[str]]:
        return flask.request.args.to_dict(flat=False)

    @bp.errorhandler(Open311Error)
    def refused(error: Open311Error) -> flask.Response:
        fmt = flask.request.view_args.get("fmt", "xml") if flask.request.view_args else "xml"
        return flask.Response(
            open311.render_errors(fmt, error), status=error.status, content_type=CONTENT_TYPES[fmt]
        )

    @bp.get(f"/discovery.{FMT}")
    def discovery(fmt: str) -> flask.Response:
        endpoint = flask.request.host_url.rstrip("/") + bp.url_prefix
        body = open311.discovery(
            endpoint,
            changeset=CHANGESET,
            contact="广安市12345政务服务便民热线 / Guang'an 12345 citizen hotline centre",
            key_service="向市大数据中心申请 API key / ask the city's data centre for an api_key",
        )
        return answer(fmt, "discovery", body)

    @bp.get(f"/services.{FMT}")
    def services(fmt: str) -> flask.Response:
        open311.check_jurisdiction(args())
        return answer(fmt, "services", open311.service_list())

    @bp.get(f"/services/<code>.{FMT}")
    def service_definition(code: str, fmt: str) -> flask.Response:
        open311.check_jurisdiction(args())
        return answer(fmt, "service_definition", open311.service_definition(code))

    @bp.get(f"/requests.{FMT}")
    def requests(fmt: str) -> flask.Response:
        query = open311.parse_query(args(), now=clock())
        with context.engine.connect() as conn:
            found = open311.find_requests(conn, query)
        return answer(fmt, "service_requests", found)

    @bp.post(f"/requests.{FMT}")
    def create(fmt: str) -> flask.Response:
        new = _checked_post(settings.open311_api_keys, clock())
        message = Inbound(topic, json.dumps(new.payload, ensure_ascii=False).encode("utf-8"), clock())
        try:
            stored = pipeline().store([message])
        except Exception:
            # The spec's "general service error" (400) for a failure while creating.
            log.exception("open311: storing %s failed", new.service_request_id)
            raise open311.bad_request(
                "general service error: the work order could not be stored; retry later"
            ) from None
        result = stored.result
        if result.rejected:
            reason = result.rejected[0]
            raise open311.bad_request(f"work order refused ({reason.reason}): {reason.detail[:300]}")
        if result.stored["hotline_tickets"] != 1:
            raise open311.bad_request("work order was not stored; try again")
        try:
            pipeline().publish(stored)
        except Exception:
            # The order exists (the answer must say so, or a retry would file it twice);
            # only the live state and the rules missed it.
            log.exception("open311: %s stored, but the live state did not take it", new.service_request_id)
        log.info("open311: created %s (%s)", new.service_request_id, new.service.code)
        return answer(fmt, "service_requests", [new.response()])

    @bp.get(f"/requests/<request_id>.{FMT}")
    def request_by_id(request_id: str, fmt: str) -> flask.Response:
        open311.check_jurisdiction(args())
        with context.engine.connect() as conn:
            return answer(fmt, "service_requests", [open311.get_request(conn, request_id)])

    @bp.get(f"/tokens/<token>.{FMT}")
    @bp.get("/tokens/<token>", defaults={"fmt": "xml"})
    def token(token: str, fmt: str) -> flask.Response:
        open311.check_jurisdiction(args())
        with context.engine.connect() as conn:
            return answer(fmt, "service_requests", [open311.lookup_token(conn, token)])

    @bp.route("/<path:anything>", methods=["GET", "POST"])
    def unknown(anything: str) -> flask.Response:
        fmt = "json" if anything.endswith(".json") else "xml"
        error = open311.not_found(f"/open311/v2/{anything[:100]} is not a GeoReport v2 resource")
        return flask.Response(open311.render_errors(fmt, error), status=404, content_type=CONTENT_TYPES[fmt])

    return bp


def _checked_post(api_keys: frozenset[str], now: datetime) -> open311.NewRequest:
    request = flask.request
    size = request.content_length
    if size is None or size > open311.MAX_POST_BYTES:
        # Checked before the body is read, so an oversized body costs nothing to refuse.
        raise open311.bad_request(
            f"the request body must have a Content-Length of at most {open311.MAX_POST_BYTES}"
        )
    if request.mimetype not in POST_CONTENT_TYPES:
        raise open311.bad_request("send the request as application/x-www-form-urlencoded")
    # Only the body counts: an api_key in the query string would end up in access logs.
    form = request.form.to_dict(flat=False)
    new = open311.parse_post(form, now=now, api_keys=api_keys)
    try:
        HotlineTicket.model_validate(new.payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "request"
        raise open311.bad_request(f"{where}: {first['msg']}") from None
    return new


def _pipeline(context: PageContext, clock: Clock) -> IngestPipeline:
    """The ingest pipeline as a worker builds it for 12345 orders, rules included."""
    from models.rules import AlertSink, RuleEngine, RuleRunner, load_rules

    settings = context.settings
    rules = RuleRunner(
        RuleEngine(load_rules(settings.rules_file), context.live.redis),
        AlertSink(context.engine, context.live, sla=settings.alert_sla),
    )
    return IngestPipeline(
        context.engine,
        context.live,
        prefix=settings.topic_prefix,
        clock=clock,
        hooks=[rules],
        max_future=settings.ingest_max_future,
        max_age=settings.ingest_max_age,
    )
