"""``/healthz``, ``/readyz`` and ``/metrics`` for the web tier.

- ``/healthz``: the process answers (for a liveness probe: restart when it does not).
- ``/readyz``: every dependency a page needs is usable — the MQTT broker accepts a
  connection, Redis answers, the database answers and is migrated to the newest revision,
  and ingest is keeping up. 200 when all are green, 503 otherwise, with each one's state.
- ``/metrics``: Prometheus text format — requests by route and status, their latency, open
  alerts by severity, connected viewers (open live-update streams), dependency state and
  ingest lag. In the one-process demo the ingest worker's own ``cityops_ingest_*``
  metrics are there too (same registry).

Ingest lag is read from what the workers write to Redis: each reading in the
``observations`` stream carries its own time (``ts``), and the stream entry's id is the
moment it reached the live state. The median over the newest :data:`LAG_SAMPLE` readings is
how far the live state runs behind the city; a median, so one device sending a backlog of
old readings does not make the whole system look late. With no readings yet the check is
green and says so (a new installation is not late).

Several web processes (gunicorn ``-w N``): each process counts in its own memory, so a
scrape answered by one worker would show a random quarter of the traffic. With
``PROMETHEUS_MULTIPROC_DIR`` set before ``prometheus_client`` is first imported (the
gunicorn configuration, ``deploy/gunicorn.conf.py``, does it and wipes the folder at
start), every process writes its values to files there and ``/metrics`` reads all of them
through a ``MultiProcessCollector``: counters and histograms add up, connected viewers add
up over the living processes (``livesum``), and the gauges read from Redis at scrape time
(open alerts, ingest lag, dependency state) are the most recent value any process set
(``mostrecent``). gunicorn's ``child_exit`` hook marks a dead worker's files so its viewers
stop counting; each process refreshes its viewers at every heartbeat (5 s) and when it
answers a scrape, so the tier's sum is at most one beat old. Without the variable (the
demo, the tests) nothing changes: one process, the default registry.

Per process, for the administrators' system page, each web process also writes a heartbeat
(``cityops:web:<host>:<pid>``: viewers, requests; :mod:`ingest.heartbeat`) to Redis.
"""

from __future__ import annotations

import os
import secrets
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import flask
import redis
import sqlalchemy as sa
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from dashboards import push
from dashboards.context import PageContext
from ingest.heartbeat import WEB, Heartbeat, web_member
from models.alerts import SEVERITY_RANK
from models.live import ALERT_SCORE_STEP, ALERTS_OPEN_KEY, stream_key

#: Each dependency check gets this long; /readyz answers within about this time.
CHECK_TIMEOUT_S = 3.0
#: Readings sampled from the live stream for the ingest lag.
LAG_SAMPLE = 100

REQUESTS = Counter(
    "cityops_web_requests_total", "HTTP requests answered by the web tier", ["route", "method", "status"]
)
LATENCY = Histogram(
    "cityops_web_request_seconds",
    "Time from receiving a request to having its response, by route",
    ["route"],
    # Dash callbacks and API calls take milliseconds to a second; a page over 2.5 s is a fault.
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
# Read from Redis at scrape time by whichever process answers: the newest value is right.
OPEN_ALERTS = Gauge(
    "cityops_open_alerts",
    "Alerts in the duty officers' queue, by severity",
    ["severity"],
    multiprocess_mode="mostrecent",
)
# Each process counts its own streams; the tier's viewers are the sum over living processes.
VIEWERS = Gauge(
    "cityops_web_connected_viewers", "Live-update streams open in the web tier", multiprocess_mode="livesum"
)
DEPENDENCY_UP = Gauge(
    "cityops_web_dependency_up",
    "1 when the dependency passed the last readiness check",
    ["dependency"],
    multiprocess_mode="mostrecent",
)
INGEST_LAG = Gauge(
    "cityops_ingest_lag_seconds",
    "Median time from a reading being taken to it reaching the live state",
    multiprocess_mode="mostrecent",
)

STARTED = time.time()


# --------------------------------------------------------------------------------------------
# Request metrics


_served_lock = threading.Lock()
#: Requests answered by this process (for its heartbeat; Prometheus has the tier's totals).
_served = 0


def _route() -> str:
    rule = flask.request.url_rule
    # The rule, not the path: /api/cap/7.xml and /api/cap/8.xml are one series.
    return rule.rule if rule is not None else "unmatched"


def install_request_metrics(server: flask.Flask) -> None:
    """Count and time every request the server answers (once per server)."""
    if server.extensions.get("cityops_request_metrics"):
        return
    server.extensions["cityops_request_metrics"] = True

    @server.before_request
    def _start() -> None:
        flask.g.cityops_started = time.perf_counter()

    @server.after_request
    def _count(response: flask.Response) -> flask.Response:
        global _served
        with _served_lock:
            _served += 1
        started = flask.g.pop("cityops_started", None)
        route = _route()
        REQUESTS.labels(route, flask.request.method, str(response.status_code)).inc()
        if started is not None:
            LATENCY.labels(route).observe(time.perf_counter() - started)
        return response


# --------------------------------------------------------------------------------------------
# Readiness


@dataclass(frozen=True, slots=True)
class CheckResult:
    ok: bool
    detail: str
    seconds: float


Check = Callable[[], tuple[bool, str]]


def _first_line(exc: BaseException) -> str:
    text = (str(exc).splitlines() or [""])[0][:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def check_broker(url: str, timeout: float = CHECK_TIMEOUT_S) -> tuple[bool, str]:
    from ingest.mqtt import MqttClient

    # A fresh id per probe: two web workers probing at once must not take over each other.
    client = MqttClient(url, f"cityops-ready-{secrets.token_hex(6)}")
    client.start(timeout=timeout)
    client.stop()
    return True, f"connected to {client.args.host}:{client.args.port}"


def check_redis(client: redis.Redis) -> tuple[bool, str]:
    client.ping()
    return True, "PING answered"


def check_database(engine: sa.Engine) -> tuple[bool, str]:
    from models.db import current_revision, describe_location, head_revision

    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
        current = current_revision(conn)
    head = head_revision()
    where = describe_location(engine.url)
    if current != head:
        return (
            False,
            f"{where} is at migration {current or 'none'}, code needs {head}: run cityops db upgrade",
        )
    return True, f"{where} at migration {current}"


def ingest_lag_s(client: redis.Redis, sample: int = LAG_SAMPLE) -> float | None:
    """Median seconds from a reading's own time to its arrival in the live state; None if none."""
    lags = []
    for entry_id, fields in client.xrevrange(stream_key("observations"), count=sample):
        ts = fields.get("ts")
        if not ts:
            continue
        written_ms = int(str(entry_id).split("-", 1)[0])
        taken = datetime.fromisoformat(ts)
        if taken.tzinfo is None:
            taken = taken.replace(tzinfo=UTC)
        lags.append(written_ms / 1000 - taken.timestamp())
    return statistics.median(lags) if lags else None


def check_ingest_lag(client: redis.Redis, max_lag_s: float) -> tuple[bool, str]:
    lag = ingest_lag_s(client)
    if lag is None:
        INGEST_LAG.set(float("nan"))
        return True, "no readings in the live state yet"
    INGEST_LAG.set(lag)
    verdict = "within" if lag <= max_lag_s else "over"
    return lag <= max_lag_s, f"median lag {lag:.1f} s ({verdict} {max_lag_s:g} s)"


def broker_url(context: PageContext) -> str:
    settings = context.settings
    if settings.mqtt is not None:
        return settings.mqtt.url
    # The embedded broker of `make demo` listens here (unless that port was taken at start).
    return f"mqtt://127.0.0.1:{settings.embedded_mqtt_port}"


#: The dependencies /readyz checks, in the order it lists them.
DEPENDENCIES = ("broker", "redis", "database", "ingest_lag")


def default_checks(context: PageContext) -> dict[str, Check]:
    max_lag = context.settings.ready_max_ingest_lag.total_seconds()
    return {
        "broker": lambda: check_broker(broker_url(context)),
        "redis": lambda: check_redis(context.live.redis),
        "database": lambda: check_database(context.engine),
        "ingest_lag": lambda: check_ingest_lag(context.live.redis, max_lag),
    }


def run_checks(checks: dict[str, Check], timeout: float = CHECK_TIMEOUT_S) -> dict[str, CheckResult]:
    """Run the checks side by side; a check that raises or overruns ``timeout`` is red."""

    def timed(check: Check) -> CheckResult:
        started = time.perf_counter()
        try:
            ok, detail = check()
        except Exception as exc:  # any failure of a dependency is a red check, never a 500
            ok, detail = False, _first_line(exc)
        return CheckResult(ok, detail, round(time.perf_counter() - started, 4))

    results: dict[str, CheckResult] = {}
    pool = ThreadPoolExecutor(max_workers=len(checks) or 1, thread_name_prefix="cityops-ready")
    try:
        futures = {name: pool.submit(timed, check) for name, check in checks.items()}
        deadline = time.monotonic() + timeout + 0.5
        for name, future in futures.items():
            try:
                results[name] = future.result(timeout=max(0.0, deadline - time.monotonic()))
            except FutureTimeout:
                results[name] = CheckResult(False, f"no answer within {timeout:g} s", timeout)
    finally:
        # Do not wait for a hung check; its thread ends when its own timeout fires.
        pool.shutdown(wait=False, cancel_futures=True)
    for name, result in results.items():
        DEPENDENCY_UP.labels(name).set(1 if result.ok else 0)
    return results


# --------------------------------------------------------------------------------------------
# Metrics gathered at scrape time


def count_open_alerts(client: redis.Redis) -> dict[str, int]:
    """Queue size per severity, from the score bands of ``cityops:alerts:open`` (no hash reads)."""
    with client.pipeline(transaction=False) as pipe:
        for rank in SEVERITY_RANK.values():
            pipe.zcount(ALERTS_OPEN_KEY, rank * ALERT_SCORE_STEP, f"({(rank + 1) * ALERT_SCORE_STEP}")
        counts = pipe.execute()
    return {severity: int(n) for severity, n in zip(SEVERITY_RANK, counts, strict=True)}


_scrape_lock = threading.Lock()


def refresh_gauges(context: PageContext) -> None:
    VIEWERS.set(push.connected_viewers())
    try:
        counts = count_open_alerts(context.live.redis)
        lag = ingest_lag_s(context.live.redis)
    except (redis.RedisError, OSError):
        # No figure is better than a stale one: the series disappear until Redis is back.
        # In multiprocess mode the files keep the last values, so they are marked unknown.
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            for severity in SEVERITY_RANK:
                OPEN_ALERTS.labels(severity).set(float("nan"))
        else:
            OPEN_ALERTS.clear()
        INGEST_LAG.set(float("nan"))
        return
    for severity, n in counts.items():
        OPEN_ALERTS.labels(severity).set(n)
    INGEST_LAG.set(float("nan") if lag is None else lag)


def metrics_registry() -> CollectorRegistry:
    """What a scrape reads: every process's files in multiprocess mode, else this process."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


# --------------------------------------------------------------------------------------------
# This process's heartbeat


class WebFigures:
    """A web process's figures for its heartbeat: open streams, requests, requests per second."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._last: tuple[float, int] | None = None

    def __call__(self) -> dict[str, object]:
        now, served = self.clock(), _served
        last_at, last_served = self._last or (now, served)
        self._last = (now, served)
        elapsed = now - last_at
        viewers = push.connected_viewers()
        # In multiprocess mode a scrape reads every process's last value, so each process
        # refreshes its own at every beat, not only when it happens to answer a scrape.
        VIEWERS.set(viewers)
        return {
            "viewers": viewers,
            "requests": served,
            "rate": round((served - last_served) / elapsed, 1) if elapsed > 0 else "",
            "threads": threading.active_count(),
        }


_beat_lock = threading.Lock()
#: (pid, heartbeat) of this process: a forked worker starts its own (the pid differs).
_beat: tuple[int, Heartbeat] | None = None


def ensure_web_heartbeat(context: PageContext) -> Heartbeat:
    """Start this process's heartbeat once (at its first request, so after any fork)."""
    global _beat
    current = _beat
    if current is not None and current[0] == os.getpid():
        return current[1]
    with _beat_lock:
        if _beat is None or _beat[0] != os.getpid():
            beat = Heartbeat(context.live.redis, WEB, web_member(), WebFigures())
            _beat = (os.getpid(), beat.start())
        return _beat[1]


# --------------------------------------------------------------------------------------------
# The blueprint


def blueprint(context: PageContext, *, checks: dict[str, Check] | None = None) -> flask.Blueprint:
    bp = flask.Blueprint("health", __name__)

    @bp.before_app_request
    def _heartbeat() -> None:
        ensure_web_heartbeat(context)

    @bp.get("/healthz")
    def healthz() -> flask.Response:
        return _json({"status": "ok", "pid": os.getpid(), "uptime_s": round(time.time() - STARTED, 1)}, 200)

    @bp.get("/readyz")
    def readyz() -> flask.Response:
        results = run_checks(checks if checks is not None else default_checks(context))
        ready = all(r.ok for r in results.values())
        body = {
            "status": "ready" if ready else "not ready",
            "checked_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "checks": {name: asdict(r) for name, r in results.items()},
        }
        return _json(body, 200 if ready else 503)

    @bp.get("/metrics")
    def metrics() -> flask.Response:
        with _scrape_lock:
            refresh_gauges(context)
            body = generate_latest(metrics_registry())
        response = flask.Response(body, content_type=CONTENT_TYPE_LATEST)
        response.cache_control.no_store = True
        return response

    return bp


def _json(body: dict[str, object], status: int) -> flask.Response:
    response = flask.jsonify(body)
    response.status_code = status
    response.cache_control.no_store = True
    return response
