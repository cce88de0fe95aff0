"""The worker acknowledges only what is stored, and retries only the stage that failed."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import fakeredis
import pytest
import redis
import sqlalchemy as sa

from ingest import worker as worker_module
from ingest.mqtt import ReceivedMessage
from ingest.pipeline import IngestPipeline
from ingest.worker import IngestWorker
from models import schema
from models.db import create_engine_for, upgrade_database
from models.live import LiveStore


class FakeClient:
    """Stands in for MqttClient: records acknowledgements."""

    client_id = "fake"

    def __init__(self) -> None:
        self.acked: list[int] = []
        self.connected = threading.Event()

    def ack_many(self, messages: list[ReceivedMessage]) -> int:
        self.acked.extend(m.mid for m in messages)
        return len(messages)


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_module, "RETRY_MIN_S", 0.0)
    monkeypatch.setattr(worker_module, "RETRY_MAX_S", 0.0)


@pytest.fixture
def pipeline(tmp_path: Path) -> IngestPipeline:
    url = f"sqlite:///{tmp_path / 'w.sqlite3'}"
    upgrade_database(url)
    return IngestPipeline(create_engine_for(url), LiveStore(fakeredis.FakeRedis(decode_responses=True)))


def received(mid: int, topic: str, body: dict) -> ReceivedMessage:
    now = time.time()
    return ReceivedMessage(topic, json.dumps(body).encode(), 1, False, mid, time.monotonic(), now)


def batch() -> list[ReceivedMessage]:
    ts = datetime.now(UTC).isoformat()
    return [
        received(1, "cityops/v1/sensors/n1/meta", {"type": "noise", "lon": 106.63, "lat": 30.456}),
        received(2, "cityops/v1/sensors/n1/obs", {"ts": ts, "metrics": {"laeq": 55.0}}),
        received(3, "cityops/v1/sensors/n1/obs", {"ts": "not a time", "metrics": {"laeq": 55.0}}),
    ]


def observations(pipeline: IngestPipeline) -> int:
    with pipeline.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(schema.Observation.__table__)).scalar_one()


def test_database_failure_is_retried_and_nothing_is_acknowledged_before_it_commits(
    pipeline: IngestPipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = FakeClient()
    w = IngestWorker(client, pipeline)  # type: ignore[arg-type]
    real_store = pipeline.store
    attempts: list[str | None] = []

    def flaky_store(messages):
        attempts.append(w.degraded)
        if len(attempts) < 3:
            assert client.acked == []
            raise sa.exc.OperationalError("INSERT", {}, Exception("server closed the connection"))
        return real_store(messages)

    monkeypatch.setattr(pipeline, "store", flaky_store)
    assert w.handle(batch(), threading.Event())
    assert len(attempts) == 3
    assert attempts[1] is not None and attempts[1].startswith("database: OperationalError")
    assert w.degraded is None, "recovered"
    assert client.acked == [1, 2, 3], "the bad message is acknowledged too: it is a dead letter now"
    assert observations(pipeline) == 1


def test_redis_failure_after_commit_retries_only_the_live_write(
    pipeline: IngestPipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = FakeClient()
    w = IngestWorker(client, pipeline)  # type: ignore[arg-type]
    stores = 0
    real_store, real_record = pipeline.store, pipeline.live.record_readings
    failures = iter([True, True, False])

    def counting_store(messages):
        nonlocal stores
        stores += 1
        return real_store(messages)

    def flaky_record(readings, **kwargs):
        if next(failures):
            raise redis.ConnectionError("Connection refused")
        return real_record(readings, **kwargs)

    monkeypatch.setattr(pipeline, "store", counting_store)
    monkeypatch.setattr(pipeline.live, "record_readings", flaky_record)
    assert w.handle(batch(), threading.Event())
    assert stores == 1, "the database is written once"
    assert client.acked == [1, 2, 3]
    (state,) = pipeline.live.devices()
    assert state.metrics == {"laeq": 55.0}, "the live state got the reading after all"


def test_stopping_during_an_outage_leaves_the_batch_unacknowledged(
    pipeline: IngestPipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = FakeClient()
    w = IngestWorker(client, pipeline)  # type: ignore[arg-type]
    stop = threading.Event()

    def down(_messages):
        stop.set()
        raise sa.exc.OperationalError("INSERT", {}, Exception("connection refused"))

    monkeypatch.setattr(pipeline, "store", down)
    assert w.handle(batch(), stop) is False
    assert client.acked == [], "the broker keeps the messages and redelivers them"


@pytest.mark.parametrize(
    ("subscription", "shared"), [(None, True), ("shared", True), ("plain", False), ("PLAIN", False)]
)
def test_a_lone_worker_may_subscribe_plainly(
    pipeline: IngestPipeline, subscription: str | None, shared: bool
) -> None:
    from models.config import load_settings

    env = {"CITYOPS_MQTT_URL": "mqtt://127.0.0.1:1883", "CITYOPS_DATA_DIR": "var/unused"}
    if subscription is not None:
        env["CITYOPS_INGEST_SUBSCRIPTION"] = subscription
    settings = load_settings(env)
    worker = IngestWorker.from_settings(settings, engine=pipeline.engine, live=pipeline.live, rules=False)
    assert worker.shared is shared


def test_the_subscription_setting_is_checked() -> None:
    from models.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match="CITYOPS_INGEST_SUBSCRIPTION: must be shared or plain"):
        load_settings({"CITYOPS_INGEST_SUBSCRIPTION": "both"})


def test_a_worker_builds_the_locate_index_before_its_first_message(pipeline: IngestPipeline) -> None:
    from geo import locate as locate_module
    from models.config import load_settings

    locate_module._index.cache_clear()
    locate_module._district_trees.cache_clear()
    settings = load_settings({"CITYOPS_MQTT_URL": "mqtt://127.0.0.1:1883", "CITYOPS_DATA_DIR": "var/unused"})
    IngestWorker.from_settings(settings, engine=pipeline.engine, live=pipeline.live, rules=False)
    assert locate_module._index.cache_info().currsize == 1
    assert locate_module._district_trees.cache_info().currsize == 1
    assert locate_module.prepare_index() < 0.05  # built already: nothing left to do


def test_a_worker_rebuilds_a_lost_live_state_before_it_subscribes(
    pipeline: IngestPipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    from models.live import LIVE_MARK_KEY

    worker = IngestWorker(FakeClient(), pipeline)  # type: ignore[arg-type]
    seen: list[bool] = []

    def subscribe() -> None:
        seen.append(bool(pipeline.live.redis.exists(LIVE_MARK_KEY)))
        raise RuntimeError("stop here")  # the test needs nothing after the subscription

    monkeypatch.setattr(worker, "_subscribe", subscribe)
    assert not pipeline.live.redis.exists(LIVE_MARK_KEY)  # an empty Redis: lost
    with pytest.raises(RuntimeError, match="stop here"):
        worker._run_here(threading.Event())
    assert seen == [True]


def test_a_worker_warms_its_connections_and_rules_before_it_subscribes(
    pipeline: IngestPipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    class Rules:
        interval_s = 60.0

        def warm_up(self) -> None:
            calls.append("rules")

    monkeypatch.setattr(pipeline, "warm_up", lambda connections: calls.append(f"database x{connections}"))
    worker = IngestWorker(FakeClient(), pipeline, rules=Rules())  # type: ignore[arg-type]

    def subscribe() -> None:
        calls.append("subscribe")
        raise RuntimeError("stop here")

    monkeypatch.setattr(worker, "_subscribe", subscribe)
    with pytest.raises(RuntimeError, match="stop here"):
        worker._run_here(threading.Event())
    # SQLite: one store part, so one connection.
    assert calls == ["database x1", "rules", "subscribe"]


def test_a_failed_warm_up_is_logged_and_the_worker_goes_on(
    pipeline: IngestPipeline, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(connections: int) -> None:
        raise sa.exc.OperationalError("connect", {}, OSError("connection refused"))

    monkeypatch.setattr(pipeline, "warm_up", refuse)
    worker = IngestWorker(FakeClient(), pipeline)  # type: ignore[arg-type]
    subscribed: list[bool] = []

    def subscribe() -> None:
        subscribed.append(True)
        raise RuntimeError("stop here")

    monkeypatch.setattr(worker, "_subscribe", subscribe)
    with pytest.raises(RuntimeError, match="stop here"):
        worker._run_here(threading.Event())
    assert subscribed == [True]
    assert "warm-up failed: OperationalError" in caplog.text
