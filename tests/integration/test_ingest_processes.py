"""One ingest worker with processing processes, on the real services (Mosquitto, Redis, PostGIS).

The worker keeps the MQTT session and hands each batch, split by device, to processes
that write the database and the live state; it acknowledges only what they reported.
A processing process killed mid-stream stops the worker, and the restarted worker finds
everything again in its broker session: nothing lost, nothing doubled.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
import redis
import sqlalchemy as sa

from ingest.mqtt import MqttClient
from ingest.pipeline import IngestPipeline
from ingest.worker import IngestWorker, PipelineSpec, ProcessingFailed
from models import schema
from models.config import Settings, parse_mqtt_url
from models.db import create_engine_for
from models.live import LiveStore
from tests.services import MOSQUITTO_CONF, PrivateMosquitto

PROCESSES = 2


@pytest.fixture(scope="module")
def tuned_mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateMosquitto]:
    # Production's limits: the default queue of an offline session would drop messages.
    broker = PrivateMosquitto(tmp_path_factory.mktemp("mosquitto"), MOSQUITTO_CONF.read_text()).start()
    yield broker
    broker.stop()


@dataclass
class Services:
    mqtt_url: str
    redis_url: str
    database_url: str
    engine: sa.Engine
    live: LiveStore


@pytest.fixture
def services(tuned_mosquitto: PrivateMosquitto, redis_url: str, pg_url: str) -> Iterator[Services]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    engine = create_engine_for(pg_url)
    with engine.begin() as conn:  # the module's database is shared by its tests
        for table in ("observation_hourly", "observations", "devices", "dead_letters"):
            conn.exec_driver_sql(f"DELETE FROM {table}")
    try:
        yield Services(tuned_mosquitto.url, redis_url, pg_url, engine, LiveStore(client))
    finally:
        engine.dispose()


@dataclass
class RunningWorker:
    worker: IngestWorker
    stop: threading.Event
    thread: threading.Thread
    errors: list[BaseException] = field(default_factory=list)

    def halt(self) -> None:
        self.stop.set()
        self.thread.join(60)
        assert not self.thread.is_alive()


def start_worker(services: Services, prefix: str, client_id: str) -> RunningWorker:
    settings = Settings(
        mqtt=parse_mqtt_url(services.mqtt_url),
        redis_url=services.redis_url,
        database_url=services.database_url,
        topic_prefix=prefix,
    )
    client = MqttClient(services.mqtt_url, client_id, persistent_session=True)
    w = IngestWorker(
        client,
        IngestPipeline(services.engine, services.live, prefix=prefix),
        processes=PROCESSES,
        spec=PipelineSpec(settings, rules=False),
    )
    stop = threading.Event()
    running = RunningWorker(w, stop, threading.Thread(target=lambda: None))

    def run() -> None:
        try:
            w.run(stop)
        except BaseException as exc:  # recorded for the test to assert on
            running.errors.append(exc)

    running.thread = threading.Thread(target=run, daemon=True)
    running.thread.start()
    assert w.ready.wait(120), "worker did not start its processes and subscribe"
    assert len(w.process_ids) == PROCESSES
    return running


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def observations(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(schema.Observation.__table__)).scalar_one()


def feed(router_prefix: str, devices: list[str], per_device: int) -> list[tuple[str, bytes]]:
    """Readings of every device, interleaved, one every 10 ms of reading time."""
    start = datetime.now(UTC).timestamp() - 120
    out = []
    for i in range(per_device):
        for d in devices:
            ts = datetime.fromtimestamp(start + i / 100, UTC).isoformat()
            out.append(
                (
                    f"{router_prefix}/sensors/{d}/obs",
                    f'{{"ts": "{ts}", "metrics": {{"laeq": {40 + i % 30}}}}}'.encode(),
                )
            )
    return out


def register(publisher: MqttClient, prefix: str, devices: list[str]) -> None:
    for i, d in enumerate(devices):
        body = f'{{"type": "noise", "lon": {106.60 + i * 0.01}, "lat": 30.456}}'.encode()
        publisher.publish(f"{prefix}/sensors/{d}/meta", body, qos=1, retain=True)


def clear_retained(services: Services, prefix: str, devices: list[str]) -> None:
    cleaner = MqttClient(services.mqtt_url, "cleaner").start()
    try:
        for d in devices:
            cleaner.publish(f"{prefix}/sensors/{d}/meta", b"", qos=1, retain=True).wait_for_publish(5)
    finally:
        cleaner.stop()


def test_processes_store_every_reading_once_and_keep_each_device_newest(
    services: Services, unique_name: str
) -> None:
    prefix = f"cityops-test/{unique_name}"
    devices = [f"n{i}" for i in range(8)]
    running = start_worker(services, prefix, f"ingest-{unique_name}")
    publisher = MqttClient(services.mqtt_url, f"pub-{unique_name}").start()
    try:
        register(publisher, prefix, devices)
        assert wait_for(lambda: len(services.live.devices()) == len(devices))
        messages = feed(prefix, devices, 100)
        publisher.publish_many(messages + messages[:200], qos=1)  # 200 resent: duplicates
        assert wait_for(lambda: observations(services.engine) >= len(messages)), (
            f"{observations(services.engine)} of {len(messages)} stored"
        )
        assert wait_for(lambda: running.worker.totals.duplicates["observations"] == 200)
        assert observations(services.engine) == len(messages), "nothing doubled"
        assert running.worker.totals.stored["observations"] == len(messages)
        # Each device's live state is its newest reading, whichever process handled it.
        newest = max(datetime.fromisoformat(m[1].decode().split('"')[3]) for m in messages)
        states = {s.device_id: s for s in services.live.devices()}
        assert {d: states[d].ts for d in devices} == dict.fromkeys(devices, newest)
    finally:
        publisher.stop()
        running.halt()
        clear_retained(services, prefix, devices)
    assert running.errors == []


def test_killed_processing_process_stops_the_worker_and_the_restart_loses_and_doubles_nothing(
    services: Services, unique_name: str
) -> None:
    prefix, client_id = f"cityops-test/{unique_name}", f"ingest-{unique_name}"
    devices = [f"k{i}" for i in range(6)]
    first = start_worker(services, prefix, client_id)
    publisher = MqttClient(services.mqtt_url, f"pub-{unique_name}").start()
    try:
        register(publisher, prefix, devices)
        assert wait_for(lambda: len(services.live.devices()) == len(devices))
        messages = feed(prefix, devices, 1000)
        sender = threading.Thread(target=publisher.publish_many, args=(messages,), daemon=True)
        sender.start()
        assert wait_for(lambda: observations(services.engine) >= 300)
        os.kill(first.worker.process_ids[0], signal.SIGKILL)  # mid-stream
        first.thread.join(60)
        assert not first.thread.is_alive(), "the worker stops when a processing process dies"
        assert len(first.errors) == 1 and isinstance(first.errors[0], ProcessingFailed), first.errors
        assert observations(services.engine) < len(messages), "the kill happened mid-stream"
        sender.join(120)
        second = start_worker(services, prefix, client_id)  # same id: resumes the broker session
        try:
            assert wait_for(lambda: observations(services.engine) >= len(messages), 120), (
                f"{observations(services.engine)} of {len(messages)} stored after the restart"
            )
            time.sleep(1.0)
            assert observations(services.engine) == len(messages), "nothing doubled"
        finally:
            second.halt()
        assert second.errors == []
    finally:
        publisher.stop()
        clear_retained(services, prefix, devices)
