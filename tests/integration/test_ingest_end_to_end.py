"""MQTT → ingest worker → database + live state, on both stacks the product runs on.

``embedded``: the broker started with the app, the in-process Redis store, SQLite.
``real``: Mosquitto, Redis and PostgreSQL + PostGIS on 127.0.0.1 (as in production).
The same modules run on both; only the URLs differ.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import fakeredis
import pytest
import redis
import sqlalchemy as sa

from ingest.broker import EmbeddedBroker, free_port
from ingest.mqtt import MqttClient
from ingest.pipeline import IngestPipeline
from ingest.simulator import CitySimulator
from ingest.worker import IngestWorker
from models import schema
from models.db import create_engine_for, upgrade_database
from models.live import LiveStore
from tests.services import MOSQUITTO_CONF, PrivateMosquitto


@dataclass
class Stack:
    mqtt_url: str
    engine: sa.Engine
    live: LiveStore
    #: as in the product: shared subscriptions on a real broker, plain ones on the embedded one
    shared: bool


@pytest.fixture(scope="module")
def tuned_mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateMosquitto]:
    broker = PrivateMosquitto(tmp_path_factory.mktemp("mosquitto"), MOSQUITTO_CONF.read_text()).start()
    yield broker
    broker.stop()


@pytest.fixture(params=["embedded", "real"])
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    if request.param == "embedded":
        broker = EmbeddedBroker(free_port(), config_dir=tmp_path / "mqtt").start()
        url = f"sqlite:///{tmp_path / 'cityops.sqlite3'}"
        upgrade_database(url)
        engine = create_engine_for(url)
        try:
            yield Stack(
                broker.url, engine, LiveStore(fakeredis.FakeRedis(decode_responses=True)), shared=False
            )
        finally:
            engine.dispose()
            broker.stop()
        return
    # Production's broker configuration (deploy/mosquitto.conf): Mosquitto's defaults queue
    # only 1000 messages per offline session and would drop part of a restart test's stream.
    mqtt_url = request.getfixturevalue("tuned_mosquitto").url
    redis_client = redis.Redis.from_url(request.getfixturevalue("redis_url"), decode_responses=True)
    redis_client.flushdb()
    engine = create_engine_for(request.getfixturevalue("pg_url"))
    with engine.begin() as conn:  # the module's database is shared by both real-stack tests
        for table in (
            "observation_hourly",
            "observations",
            "video_events",
            "ticket_events",  # a stored ticket starts its history (受理)
            "hotline_tickets",
            "devices",
            "dead_letters",
        ):
            conn.exec_driver_sql(f"DELETE FROM {table}")
    try:
        yield Stack(mqtt_url, engine, LiveStore(redis_client), shared=True)
    finally:
        engine.dispose()


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def rows(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


@dataclass
class RunningWorker:
    worker: IngestWorker
    stop: threading.Event
    thread: threading.Thread

    def halt(self) -> None:
        self.stop.set()
        self.thread.join(15)
        assert not self.thread.is_alive()


def start_worker(stack: Stack, prefix: str, client_id: str) -> RunningWorker:
    client = MqttClient(stack.mqtt_url, client_id, persistent_session=True)
    w = IngestWorker(client, IngestPipeline(stack.engine, stack.live, prefix=prefix), shared=stack.shared)
    stop = threading.Event()
    thread = threading.Thread(target=w.run, args=(stop,), daemon=True)
    thread.start()
    assert w.ready.wait(15), "worker did not subscribe"
    return RunningWorker(w, stop, thread)


@pytest.fixture
def worker(stack: Stack, unique_name: str) -> Iterator[IngestWorker]:
    running = start_worker(stack, f"cityops-test/{unique_name}", f"ingest-{unique_name}")
    try:
        yield running.worker
    finally:
        running.halt()
        clear_retained(stack, running.worker.pipeline.router.sensor_meta("a"))


def clear_retained(stack: Stack, *topics: str) -> None:
    """Remove retained registrations a test left on a shared broker."""
    cleaner = MqttClient(stack.mqtt_url, "cleaner").start()
    try:
        for topic in topics:
            cleaner.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
    finally:
        cleaner.stop()


def test_simulated_feed_is_stored_once_and_live(stack: Stack, worker: IngestWorker, unique_name: str) -> None:
    sim = CitySimulator(seed=7, prefix=worker.pipeline.router.prefix, clock=lambda: datetime.now(UTC))
    metas = sim.meta_messages()
    publisher = MqttClient(stack.mqtt_url, f"pub-{unique_name}").start()
    try:
        for m in metas:
            publisher.publish(m.topic, m.payload, qos=1, retain=True)
        assert wait_for(lambda: rows(stack.engine, schema.Device.__table__) == len(metas))
        feed = sim.tick(rate=300, seconds=1.0)
        # Every message twice: QoS 1 redelivery and resending devices must not double anything.
        publisher.publish_many([(m.topic, m.payload) for m in feed + feed], qos=1)
    finally:
        publisher.stop()

    expected_obs = sum("/obs" in m.topic for m in feed)
    expected_video = sum("/events" in m.topic for m in feed)
    expected_tickets = sum(m.topic.endswith("/hotline/tickets") for m in feed)
    assert expected_obs > 100

    def all_stored() -> bool:
        return (
            rows(stack.engine, schema.Observation.__table__),
            rows(stack.engine, schema.VideoEvent.__table__),
            rows(stack.engine, schema.HotlineTicket.__table__),
        ) == (expected_obs, expected_video, expected_tickets)

    assert wait_for(all_stored), (
        f"stored {rows(stack.engine, schema.Observation.__table__)}/{expected_obs} observations, "
        f"{rows(stack.engine, schema.VideoEvent.__table__)}/{expected_video} video events, "
        f"{rows(stack.engine, schema.HotlineTicket.__table__)}/{expected_tickets} tickets, "
        f"{rows(stack.engine, schema.DeadLetter.__table__)} dead letters"
    )
    time.sleep(1.0)  # anything extra (a duplicate) would arrive within this
    assert all_stored(), "a duplicate was stored"
    assert rows(stack.engine, schema.DeadLetter.__table__) == 0

    with stack.engine.connect() as conn:
        unlocated = conn.execute(
            sa.select(sa.func.count())
            .select_from(schema.Observation.__table__)
            .where(schema.Observation.__table__.c.district_code.is_(None))
        ).scalar_one()
    assert unlocated == 0, "every simulated device lies inside Guang'an"
    states = stack.live.devices()
    assert len(states) == len(metas)
    reporting = {m.topic.split("/")[-2] for m in feed if "/obs" in m.topic}
    assert {s.device_id for s in states if s.ts is not None} == reporting
    # The second copies may still be on their way through the worker: wait for its count.
    assert wait_for(lambda: worker.totals.duplicates["observations"] == expected_obs), (
        f"{worker.totals.duplicates['observations']} duplicates counted, {expected_obs} expected"
    )


def test_bad_message_goes_to_dead_letters_and_the_worker_carries_on(
    stack: Stack, worker: IngestWorker, unique_name: str
) -> None:
    router = worker.pipeline.router
    publisher = MqttClient(stack.mqtt_url, f"pub-{unique_name}").start()
    try:
        publisher.publish(
            router.sensor_meta("a"), b'{"type": "noise", "lon": 106.63, "lat": 30.456}', qos=1, retain=True
        )
        assert wait_for(lambda: rows(stack.engine, schema.Device.__table__) == 1)
        now = datetime.now(UTC).isoformat()
        publisher.publish_many(
            [
                (router.sensor_obs("a"), b"\xff not json"),
                (router.sensor_obs("a"), f'{{"ts": "{now}", "metrics": {{"laeq": 1e999}}}}'.encode()),
                (router.sensor_obs("a"), f'{{"ts": "{now}", "metrics": {{"laeq": 52.5}}}}'.encode()),
            ],
            qos=1,
        )
    finally:
        publisher.stop()
    assert wait_for(lambda: rows(stack.engine, schema.Observation.__table__) == 1)
    assert wait_for(lambda: rows(stack.engine, schema.DeadLetter.__table__) == 2)
    with stack.engine.connect() as conn:
        reasons = sorted(conn.execute(sa.select(schema.DeadLetter.__table__.c.reason)).scalars())
    assert reasons == ["invalid_utf8", "schema"]  # 1e999 parses as infinity: not finite


def test_worker_restarted_mid_stream_loses_and_doubles_nothing(stack: Stack, unique_name: str) -> None:
    prefix, client_id = f"cityops-test/{unique_name}", f"ingest-{unique_name}"
    first = start_worker(stack, prefix, client_id)
    router = first.worker.pipeline.router
    publisher = MqttClient(stack.mqtt_url, f"pub-{unique_name}").start()
    meta_topic = router.sensor_meta("r1")
    try:
        publisher.publish(meta_topic, b'{"type": "noise", "lon": 106.63, "lat": 30.456}', qos=1, retain=True)
        assert wait_for(lambda: rows(stack.engine, schema.Device.__table__) == 1)
        start = datetime.now(UTC).timestamp() - 60
        total = 3000
        feed = [
            (
                router.sensor_obs("r1"),
                f'{{"ts": "{datetime.fromtimestamp(start + i / 100, UTC).isoformat()}", '
                f'"metrics": {{"laeq": {40 + i % 30}}}}}'.encode(),
            )
            for i in range(total)
        ]
        sender = threading.Thread(target=publisher.publish_many, args=(feed,), daemon=True)
        sender.start()
        assert wait_for(lambda: rows(stack.engine, schema.Observation.__table__) >= 300)
        first.halt()  # mid-stream: part stored, part in flight, part not yet sent
        stored_when_stopped = rows(stack.engine, schema.Observation.__table__)
        assert stored_when_stopped < total, "the restart happened mid-stream"
        sender.join(60)
        second = start_worker(stack, prefix, client_id)  # same id: resumes the broker session
        try:
            assert wait_for(lambda: rows(stack.engine, schema.Observation.__table__) >= total, 60), (
                f"{rows(stack.engine, schema.Observation.__table__)} of {total} stored after the restart"
            )
            time.sleep(1.0)
            assert rows(stack.engine, schema.Observation.__table__) == total, "nothing doubled"
        finally:
            second.halt()
    finally:
        publisher.stop()
        clear_retained(stack, meta_topic)
