"""/healthz, /readyz and /metrics on the embedded backend: each dependency's real state, the
ingest lag read from the live stream, and metrics that Prometheus' own parser reads."""

from __future__ import annotations

import os
import runpy
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import flask
import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from dashboards import push
from dashboards.api import health, register_api
from dashboards.context import PageContext
from ingest import heartbeat
from models import alerts, db
from models.config import load_settings
from models.live import LiveStore
from tests.faults import wait_for
from tests.unit.dashboards.api.conftest import Api
from tests.unit.models.interop.test_cap import draft

ROOT = Path(__file__).resolve().parents[4]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_for(context: PageContext) -> flask.testing.FlaskClient:
    server = flask.Flask("health-test")
    register_api(server, context)
    return server.test_client()


def with_broker(api: Api, url: str) -> PageContext:
    settings = load_settings(
        {"CITYOPS_MQTT_URL": url, "CITYOPS_DATA_DIR": str(api.context.settings.data_dir)}
    )
    return PageContext(settings=settings, live=api.context.live, engine=api.context.engine)


def test_healthz_answers_without_touching_dependencies(api: Api) -> None:
    response = api.client.get("/healthz")
    assert response.status_code == 200
    assert response.json["status"] == "ok" and response.json["uptime_s"] >= 0


def test_readyz_is_red_with_the_broker_down_and_names_each_dependency(api: Api) -> None:
    client = server_for(with_broker(api, f"mqtt://127.0.0.1:{closed_port()}"))
    started = time.perf_counter()
    response = client.get("/readyz")
    assert time.perf_counter() - started < health.CHECK_TIMEOUT_S + 1
    assert response.status_code == 503
    body = response.json
    assert body["status"] == "not ready"
    checks = body["checks"]
    assert set(checks) == {"broker", "redis", "database", "ingest_lag"}
    assert checks["broker"]["ok"] is False and "refused" in checks["broker"]["detail"].lower()
    assert checks["redis"]["ok"] is True
    assert checks["database"]["ok"] is True and "at migration" in checks["database"]["detail"]
    assert checks["ingest_lag"] == {
        **checks["ingest_lag"],
        "ok": True,
        "detail": "no readings in the live state yet",
    }


def test_readyz_is_green_when_every_check_passes(api: Api) -> None:
    server = flask.Flask("ready-test")
    checks = {"broker": lambda: (True, "ok"), "redis": lambda: health.check_redis(api.context.live.redis)}
    server.register_blueprint(health.blueprint(api.context, checks=checks))
    response = server.test_client().get("/readyz")
    assert response.status_code == 200 and response.json["status"] == "ready"


def test_an_unmigrated_database_is_red(tmp_path: Path, api: Api) -> None:
    empty = db.create_engine_for(f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    ok, detail = health.check_database(empty)
    assert not ok and "migration none" in detail and "cityops db upgrade" in detail
    assert health.check_database(api.context.engine)[0]


def test_a_check_that_hangs_is_red_after_the_timeout() -> None:
    results = health.run_checks(
        {"slow": lambda: (time.sleep(2), (True, ""))[1], "fast": lambda: (True, "")}, 0.2
    )
    assert results["slow"].ok is False and "no answer" in results["slow"].detail
    assert results["fast"].ok is True


def test_a_check_that_raises_is_red_not_a_500() -> None:
    def broken() -> tuple[bool, str]:
        raise ConnectionError("Connection refused\nmore lines")

    result = health.run_checks({"redis": broken})["redis"]
    assert (result.ok, result.detail) == (False, "ConnectionError: Connection refused")


def test_ingest_lag_is_the_median_of_recent_readings(live: LiveStore) -> None:
    now = time.time()
    taken = datetime.fromtimestamp(now, UTC)
    readings = [
        {"device_id": f"aq-{i}", "ts": taken - timedelta(seconds=lag), "metrics": {"pm25": 10.0}}
        for i, lag in enumerate([2, 3, 4, 3600])  # one device dumps an hour-old backlog
    ]
    live.record_readings(readings, now=now)
    lag = health.ingest_lag_s(live.redis)
    assert lag is not None and 3 <= lag < 60, lag
    assert health.check_ingest_lag(live.redis, 60)[0] is True
    ok, detail = health.check_ingest_lag(live.redis, 1)
    assert not ok and "over 1 s" in detail


def test_metrics_parse_and_carry_requests_alerts_and_viewers(api: Api) -> None:
    now = datetime.now(UTC)
    with api.context.engine.begin() as conn:
        changes = [
            alerts.raise_alert(conn, draft(f"m{i}", severity, observed_at=now), now=now)
            for i, severity in enumerate(["critical", "critical", "minor"])
        ]
    api.context.live.apply_alert_changes(changes)
    api.client.get("/healthz")
    api.client.get("/open311/v2/requests/NOPE.json")
    viewers = push.connected_viewers()
    stream = push.counted(iter(["data: {}\n\n", "data: {}\n\n"]))
    next(stream)  # one viewer connected
    assert push.connected_viewers() == viewers + 1

    response = api.client.get("/metrics")
    stream.close()  # the viewer leaves
    assert push.connected_viewers() == viewers
    assert response.status_code == 200 and response.content_type.startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.get_data(as_text=True))}
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples
    }
    assert samples[("cityops_open_alerts", (("severity", "critical"),))] == 2
    assert samples[("cityops_open_alerts", (("severity", "minor"),))] == 1
    assert samples[("cityops_open_alerts", (("severity", "info"),))] == 0
    assert samples[("cityops_web_connected_viewers", ())] == viewers + 1
    healthz = ("cityops_web_requests_total", (("method", "GET"), ("route", "/healthz"), ("status", "200")))
    assert samples[healthz] >= 1
    # Labelled by the route's rule, so every id shares one series.
    route = "/open311/v2/requests/<request_id>.<any(json, xml):fmt>"
    assert (
        samples[("cityops_web_requests_total", (("method", "GET"), ("route", route), ("status", "404")))] >= 1
    )
    assert families["cityops_web_request_seconds"].type == "histogram"


def test_metrics_survive_redis_being_down(api: Api, tmp_path: Path) -> None:
    import redis

    dead = LiveStore(redis.Redis(host="127.0.0.1", port=closed_port(), socket_connect_timeout=0.5))
    client = server_for(PageContext(settings=api.context.settings, live=dead, engine=api.context.engine))
    response = client.get("/metrics")
    assert response.status_code == 200
    names = {f.name for f in text_string_to_metric_families(response.get_data(as_text=True))}
    assert "cityops_web_connected_viewers" in names
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json["checks"]["redis"]["ok"] is False


def test_request_metrics_are_installed_once_per_server(api: Api) -> None:
    before = len(api.server.before_request_funcs.get(None, []))
    health.install_request_metrics(api.server)
    assert len(api.server.before_request_funcs.get(None, [])) == before


def test_database_check_uses_the_engine_given(api: Api) -> None:
    engine = sa.create_engine("sqlite:////nonexistent-dir/x.sqlite3")
    result = health.run_checks({"database": lambda: health.check_database(engine)})["database"]
    assert result.ok is False


# ---- several web processes ------------------------------------------------------------------

_WRITE = """
import os, sys
from dashboards.api import health
health.VIEWERS.set(int(sys.argv[1]))
health.REQUESTS.labels("/healthz", "GET", "200").inc(int(sys.argv[2]))
print(os.getpid())
"""
_SCRAPE = """
from prometheus_client import generate_latest
from dashboards.api import health
print(generate_latest(health.metrics_registry()).decode())
"""


def _python(code: str, env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


def test_in_multiprocess_mode_a_scrape_adds_up_every_process(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CITYOPS_", "PROMETHEUS_"))}
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path)
    first = int(_python(_WRITE, env, "2", "3"))
    _python(_WRITE, env, "5", "4")
    healthz = ("cityops_web_requests_total", (("method", "GET"), ("route", "/healthz"), ("status", "200")))

    samples = _samples(_python(_SCRAPE, env))
    assert samples[healthz] == 7
    # The scraping process counts itself too (no streams): 2 + 5 + 0.
    assert samples[("cityops_web_connected_viewers", ())] == 7

    # gunicorn's child_exit hook: a dead worker's viewers no longer count, its requests do.
    with pytest.MonkeyPatch.context() as patch:
        # Set first: without it the settings file would make a folder and set the variable
        # for the rest of this test process.
        patch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
        conf = runpy.run_path(str(ROOT / "deploy" / "gunicorn.conf.py"))
        conf["child_exit"](None, SimpleNamespace(pid=first))
    samples = _samples(_python(_SCRAPE, env))
    assert samples[("cityops_web_connected_viewers", ())] == 5
    assert samples[healthz] == 7


def test_without_the_folder_the_scrape_reads_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    assert health.metrics_registry() is REGISTRY


def test_gunicorn_settings_switch_multiprocess_on_and_start_from_an_empty_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "placeholder")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    conf = runpy.run_path(str(ROOT / "deploy" / "gunicorn.conf.py"))
    # Reading the settings changes nothing in the reader's environment ...
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    assert conf["worker_class"] == "gthread" and conf["workers"] == 4
    # ... starting the server switches multiprocess mode on for the workers it forks.
    conf["on_starting"](None)
    made = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    assert made.is_dir() and made.name.startswith("cityops-metrics-")
    made.rmdir()

    folder = tmp_path / "metrics"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))
    folder.mkdir()
    (folder / "counter_4242.db").write_bytes(b"old run")
    (folder / "notes.txt").write_text("not ours")
    conf["on_starting"](None)  # a given folder is kept, emptied of old metric files
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


def test_web_figures_count_requests_and_viewers_of_this_process() -> None:
    ticks = iter([10.0, 12.0])
    figures = health.WebFigures(clock=lambda: next(ticks))
    first = figures()
    server = flask.Flask("figures-test")
    health.install_request_metrics(server)
    server.add_url_rule("/x", "x", lambda: "ok")
    client = server.test_client()
    for _ in range(4):
        client.get("/x")
    stream = push.counted(iter(["data: {}\n\n", "data: {}\n\n"]))
    next(stream)
    try:
        second = figures()
    finally:
        stream.close()
    assert second["requests"] - first["requests"] == 4
    assert second["rate"] == 2.0
    assert second["viewers"] == push.connected_viewers() + 1
    assert health.VIEWERS._value.get() == second["viewers"]  # refreshed for the next scrape


def test_a_web_process_starts_beating_at_its_first_request(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health, "_beat", None)
    api.client.get("/healthz")
    beat = health.ensure_web_heartbeat(api.context)
    try:
        assert health.ensure_web_heartbeat(api.context) is beat  # one per process
        member = heartbeat.web_member()
        assert member.endswith(f":{os.getpid()}")
        assert wait_for(lambda: heartbeat.read_beats(api.context.live.redis, heartbeat.WEB), 5)
        [status] = heartbeat.read_beats(api.context.live.redis, heartbeat.WEB)
        assert (status.member, status.state) == (member, "live")
        assert int(status.figures["pid"]) == os.getpid() and "viewers" in status.figures
    finally:
        beat.stop()
