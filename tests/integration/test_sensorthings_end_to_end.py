"""OGC SensorThings observations over the real Mosquitto → ingest worker → PostgreSQL +
PostGIS and Redis, the worker built from settings as ``cityops ingest`` builds it (the
datastream mapping read from its file)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from ingest.mqtt import MqttClient
from ingest.worker import IngestWorker
from models import schema
from models.config import Settings, load_settings
from models.db import create_engine_for
from models.live import LiveStore, device_key
from tests.integration.test_ingest_end_to_end import rows, wait_for


@dataclass
class Running:
    worker: IngestWorker
    stop: threading.Event
    thread: threading.Thread

    def halt(self) -> None:
        self.stop.set()
        self.thread.join(15)
        assert not self.thread.is_alive()


@dataclass
class Site:
    settings: Settings
    engine: sa.Engine
    live: LiveStore
    mqtt_url: str
    device: str
    #: the SensorThings topic root of this test (a real broker is shared: no plain v1.1)
    root: str

    def start(self, client_id: str) -> Running:
        worker = IngestWorker.from_settings(
            self.settings,
            engine=self.engine,
            live=self.live,
            mqtt_url=self.mqtt_url,
            client_id=client_id,
            rules=False,
        )
        stop = threading.Event()
        thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
        thread.start()
        assert worker.ready.wait(15), "worker did not subscribe"
        return Running(worker, stop, thread)


@pytest.fixture
def site(pg_url: str, redis_url: str, mosquitto_url: str, unique_name: str, tmp_path: Path) -> Iterator[Site]:
    device, root = f"air-{unique_name}", f"cityops-test/{unique_name}/v1.1"
    mapping = tmp_path / "sta-datastreams.toml"
    mapping.write_text(
        f'root = "{root}"\n[datastreams]\n'
        f'42 = {{ device = "{device}", metric = "pm25" }}\n'
        f'"ds-pm10" = {{ device = "{device}", metric = "pm10" }}\n'
        f'43 = {{ device = "{device}", metric = "o3" }}\n',
        encoding="utf-8",
    )
    settings = load_settings(
        {
            "CITYOPS_MQTT_URL": mosquitto_url,
            "CITYOPS_REDIS_URL": redis_url,
            "CITYOPS_DATABASE_URL": pg_url,
            "CITYOPS_DATA_DIR": str(tmp_path),
            "CITYOPS_TOPIC_PREFIX": f"cityops-test/{unique_name}",
            "CITYOPS_STA_DATASTREAMS": str(mapping),
        }
    )
    engine = create_engine_for(pg_url)
    with engine.begin() as conn:  # the module's database is shared by the tests here
        for table in ("observation_hourly", "observations", "devices", "dead_letters"):
            conn.exec_driver_sql(f"DELETE FROM {table}")
    redis_client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        yield Site(settings, engine, LiveStore(redis_client), mosquitto_url, device, root)
    finally:
        redis_client.delete(device_key(device))
        engine.dispose()


def observation(
    site: Site, datastream: int | str | None, result: float, when: datetime, **extra: Any
) -> tuple[str, bytes]:
    body: dict[str, Any] = {"result": result, "phenomenonTime": when.isoformat(), **extra}
    if datastream is None:
        return f"{site.root}/Observations", json.dumps(body).encode()
    literal = str(datastream) if isinstance(datastream, int) else f"'{datastream}'"
    return f"{site.root}/Datastreams({literal})/Observations", json.dumps(body).encode()


def register(site: Site, publisher: MqttClient) -> None:
    publisher.publish(
        f"{site.settings.topic_prefix}/sensors/{site.device}/meta",
        b'{"type": "air_quality", "lon": 106.6333, "lat": 30.456}',
        qos=1,
    ).wait_for_publish(10)
    assert wait_for(lambda: rows(site.engine, schema.Device.__table__) == 1)


def stored(site: Site) -> dict[datetime, dict[str, Any]]:
    t = schema.Observation.__table__
    with site.engine.connect() as conn:
        return {r.ts: {"metrics": r.metrics, "msg_id": r.msg_id} for r in conn.execute(sa.select(t))}


def test_observations_are_stored_once_live_and_refused_ones_are_dead_letters(
    site: Site, unique_name: str
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    t1, t2 = now - timedelta(minutes=10), now - timedelta(minutes=5)
    running = site.start(f"ingest-{unique_name}")
    publisher = MqttClient(site.mqtt_url, f"pub-{unique_name}").start()
    try:
        register(site, publisher)
        first = [
            observation(site, 42, 35, t1, **{"@iot.id": 1}),
            observation(site, None, 70.5, t1, **{"@iot.id": 2, "Datastream": {"@iot.id": "ds-pm10"}}),
            observation(site, 43, 90, t1, **{"@iot.id": 3}),
            observation(site, 99, 1, t1),  # not in the mapping
        ]
        # An interval: its end is the reading's time; the string form of datastream 42.
        interval = json.dumps(
            {"result": 36, "phenomenonTime": f"{(t2 - timedelta(hours=1)).isoformat()}/{t2.isoformat()}"}
        ).encode()
        batch = [*first, (f"{site.root}/Datastreams('42')/Observations", interval)]
        # Every observation twice: a device resending, a QoS 1 redelivery.
        publisher.publish_many(batch + batch, qos=1)
        assert wait_for(lambda: running.worker.totals.duplicates["observations"] >= 4)
        assert wait_for(lambda: rows(site.engine, schema.DeadLetter.__table__) == 2)
        assert stored(site) == {
            t1: {"metrics": {"pm25": 35.0, "pm10": 70.5, "o3": 90.0}, "msg_id": "sta@1"},
            t2: {"metrics": {"pm25": 36.0}, "msg_id": None},
        }
        assert running.worker.totals.stored["observations"] == 4
        assert running.worker.totals.duplicates["observations"] == 4
        with site.engine.connect() as conn:
            letters = conn.execute(sa.select(schema.DeadLetter.__table__)).mappings().all()
            h = schema.ObservationHourly.__table__
            hourly = conn.execute(sa.select(h.c.metric, sa.func.sum(h.c["count"])).group_by(h.c.metric)).all()
            located = conn.execute(
                sa.select(sa.func.count())
                .select_from(schema.Observation.__table__)
                .where(schema.Observation.__table__.c.district_code == "511602")
            ).scalar_one()
        assert {(d["topic"], d["reason"]) for d in letters} == {
            (f"{site.root}/Datastreams(99)/Observations", "unknown_datastream")
        }
        assert "'99' is not mapped" in letters[0]["detail"]["message"]
        assert dict(hourly) == {"pm25": 2, "pm10": 1, "o3": 1}
        assert located == 2
        state = site.live.redis.hgetall(device_key(site.device))
        assert state["ts"] == t2.isoformat() and json.loads(state["metrics"]) == {"pm25": 36.0}

        # Published while the worker is down: its broker session keeps them; on restart the
        # repeats are duplicates and only the new observation is stored.
        running.halt()
        t3 = now - timedelta(minutes=1)
        publisher.publish_many([*batch, observation(site, 42, 40, t3, **{"@iot.id": 5})], qos=1)
    finally:
        publisher.stop()
    restarted = site.start(f"ingest-{unique_name}")
    try:
        assert wait_for(lambda: t3 in stored(site))
        assert wait_for(lambda: restarted.worker.totals.duplicates["observations"] == 4)
        assert len(stored(site)) == 3 and stored(site)[t1]["metrics"] == {
            "pm25": 35.0,
            "pm10": 70.5,
            "o3": 90.0,
        }
        assert wait_for(
            lambda: json.loads(site.live.redis.hget(device_key(site.device), "metrics")) == {"pm25": 40.0}
        )
    finally:
        restarted.halt()


def test_two_workers_adding_metrics_to_the_same_instants_keep_every_one(site: Site, unique_name: str) -> None:
    """The shared subscription splits an instant's datastreams between workers: each adds
    its metric to the reading under a row lock, none overwrites another's."""
    workers = [site.start(f"ingest-{unique_name}-{i}") for i in range(2)]
    publisher = MqttClient(site.mqtt_url, f"pub-{unique_name}").start()
    instants = [datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=m) for m in range(1, 61)]
    try:
        register(site, publisher)
        feed = [
            observation(site, datastream, value, when)
            for when in instants
            for datastream, value in ((42, 30.0), ("ds-pm10", 60.0), (43, 90.0))
        ]
        publisher.publish_many(feed, qos=1)

        def complete() -> bool:
            readings = stored(site)
            return len(readings) == len(instants) and all(len(r["metrics"]) == 3 for r in readings.values())

        assert wait_for(complete, 60), (
            f"{sum(len(r['metrics']) for r in stored(site).values())} metrics stored"
        )
        totals = [w.worker.totals.stored["observations"] for w in workers]
    finally:
        publisher.stop()
        for w in workers:
            w.halt()
    assert sum(totals) == 3 * len(instants) and all(totals), totals
    with site.engine.connect() as conn:
        counts = conn.execute(
            sa.select(sa.func.sum(schema.ObservationHourly.__table__.c["count"]))
        ).scalar_one()
    assert counts == 3 * len(instants), "the hourly figures count every metric once"
