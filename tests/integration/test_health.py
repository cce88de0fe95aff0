"""Readiness and metrics against the real services: all green on Mosquitto, a Redis of our
own and PostGIS; stopping that Redis turns /readyz red and starting it again green; a
database that does not exist is red; ingest lag comes from readings the pipeline wrote."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import flask
import pytest
import redis
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from dashboards.api import register_api
from dashboards.context import PageContext
from ingest.broker import free_port, port_is_free
from ingest.pipeline import Inbound, IngestPipeline
from ingest.routing import TopicRouter
from models import db
from models.clock import utc_now
from models.config import load_settings
from models.live import LiveStore, connect_redis
from tests.conftest import service_missing

pytestmark = pytest.mark.real_services


class PrivateRedis:
    """A redis-server of our own on a free loopback port: stopping it disturbs nobody."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> PrivateRedis:
        binary = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/sbin:/usr/local/bin")
        if binary is None:
            service_missing("the redis-server binary", "not on PATH")
        assert binary is not None
        self._process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=self.workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while port_is_free(self.port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            process.wait(10)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path).start()
    yield server
    server.stop()


def stack(
    tmp_path: Path, *, database_url: str, redis_url: str, mqtt_url: str
) -> tuple[flask.Flask, PageContext]:
    settings = load_settings(
        {
            "CITYOPS_DATABASE_URL": database_url,
            "CITYOPS_REDIS_URL": redis_url,
            "CITYOPS_MQTT_URL": mqtt_url,
            "CITYOPS_DATA_DIR": str(tmp_path),
        }
    )
    context = PageContext(
        settings=settings, live=LiveStore(connect_redis(settings)), engine=db.create_engine_for(database_url)
    )
    server = flask.Flask("health-integration")
    register_api(server, context)
    return server, context


def feed_readings(context: PageContext, *, late_s: float = 1.0) -> None:
    """A device and a few readings through the ingest pipeline, taken ``late_s`` ago."""
    router = TopicRouter(context.settings.topic_prefix)
    device = f"aq-health-{int(time.time() * 1000)}"
    now = utc_now()
    messages = [
        Inbound(
            f"{router.prefix}/sensors/{device}/meta",
            json.dumps({"type": "air_quality", "lon": 106.6337, "lat": 30.4562}).encode(),
            now,
        )
    ] + [
        Inbound(
            f"{router.prefix}/sensors/{device}/obs",
            json.dumps(
                {"ts": (now - timedelta(seconds=late_s + i)).isoformat(), "metrics": {"pm25": 30 + i}}
            ).encode(),
            now,
        )
        for i in range(3)
    ]
    result = IngestPipeline(context.engine, context.live, prefix=router.prefix).process(messages)
    assert result.stored["observations"] == 3, result


def test_all_green_then_a_stopped_redis_turns_readyz_red_and_back(
    pg_url: str, mosquitto_url: str, private_redis: PrivateRedis, tmp_path: Path
) -> None:
    server, context = stack(
        tmp_path, database_url=pg_url, redis_url=private_redis.url, mqtt_url=mosquitto_url
    )
    client = server.test_client()
    feed_readings(context)

    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.json
    checks = ready.json["checks"]
    assert {name: c["ok"] for name, c in checks.items()} == dict.fromkeys(
        ("broker", "redis", "database", "ingest_lag"), True
    )
    assert "median lag" in checks["ingest_lag"]["detail"]
    assert "at migration" in checks["database"]["detail"]

    private_redis.stop()
    down = client.get("/readyz")
    assert down.status_code == 503
    checks = down.json["checks"]
    assert checks["redis"]["ok"] is False and checks["ingest_lag"]["ok"] is False
    assert checks["broker"]["ok"] is True and checks["database"]["ok"] is True
    assert client.get("/healthz").status_code == 200, "the process itself is fine"
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    samples = {
        (s.name, tuple(s.labels.items())): s.value
        for f in text_string_to_metric_families(metrics.get_data(as_text=True))
        for s in f.samples
    }
    assert samples[("cityops_web_dependency_up", (("dependency", "redis"),))] == 0

    private_redis.start()
    deadline = time.monotonic() + 10
    while (again := client.get("/readyz")).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    # A restarted Redis is empty: no readings yet is not lateness.
    assert again.status_code == 200, again.json
    context.engine.dispose()


def test_late_readings_turn_ingest_lag_red(
    pg_url: str, mosquitto_url: str, private_redis: PrivateRedis, tmp_path: Path
) -> None:
    server, context = stack(
        tmp_path, database_url=pg_url, redis_url=private_redis.url, mqtt_url=mosquitto_url
    )
    feed_readings(context, late_s=180)  # the live state runs three minutes behind the city
    response = server.test_client().get("/readyz")
    assert response.status_code == 503
    lag = response.json["checks"]["ingest_lag"]
    assert lag["ok"] is False and "over 60 s" in lag["detail"]
    context.engine.dispose()


def test_a_missing_database_turns_readyz_red(
    postgis_url: str, mosquitto_url: str, private_redis: PrivateRedis, tmp_path: Path
) -> None:
    missing = (
        sa.engine.make_url(postgis_url)
        .set(database="cityops_no_such_db")
        .render_as_string(hide_password=False)
    )
    server, context = stack(
        tmp_path, database_url=missing, redis_url=private_redis.url, mqtt_url=mosquitto_url
    )
    response = server.test_client().get("/readyz")
    assert response.status_code == 503
    checks = response.json["checks"]
    assert checks["database"]["ok"] is False and "does not exist" in checks["database"]["detail"]
    assert checks["redis"]["ok"] is True and checks["broker"]["ok"] is True
    context.engine.dispose()


def test_a_broker_that_is_down_is_red(pg_url: str, private_redis: PrivateRedis, tmp_path: Path) -> None:
    server, context = stack(
        tmp_path, database_url=pg_url, redis_url=private_redis.url, mqtt_url=f"mqtt://127.0.0.1:{free_port()}"
    )
    response = server.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["checks"]["broker"]["ok"] is False
    context.engine.dispose()


def test_open_alerts_in_metrics_come_from_the_real_live_state(
    pg_url: str, mosquitto_url: str, private_redis: PrivateRedis, tmp_path: Path
) -> None:
    from models import alerts
    from tests.unit.models.interop.test_cap import draft

    server, context = stack(
        tmp_path, database_url=pg_url, redis_url=private_redis.url, mqtt_url=mosquitto_url
    )
    now = utc_now()
    with context.engine.begin() as conn:
        changes = [
            alerts.raise_alert(conn, draft(f"metrics-{now.timestamp()}-{i}", sev, observed_at=now), now=now)
            for i, sev in enumerate(["major", "major", "info"])
        ]
    context.live.apply_alert_changes(changes)
    text = server.test_client().get("/metrics").get_data(as_text=True)
    samples = {
        (s.name, tuple(s.labels.items())): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    assert samples[("cityops_open_alerts", (("severity", "major"),))] == 2
    assert samples[("cityops_open_alerts", (("severity", "info"),))] == 1
    assert samples[("cityops_open_alerts", (("severity", "critical"),))] == 0
    assert isinstance(redis.Redis.from_url(private_redis.url).ping(), bool)
    context.engine.dispose()
