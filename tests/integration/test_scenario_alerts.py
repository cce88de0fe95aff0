"""The simulator's scenarios raise the alerts one would expect, end to end over real MQTT.

Tuned Mosquitto (a private instance with production's configuration) → an ingest worker
with the rule engine as its hook → real Redis and PostgreSQL + PostGIS. Each story is
played on a controlled clock: a 40-second story (a 6-hour flood runs ~540× faster than
life) in 5-second steps, continued a few minutes after its end so that duration rules
(which judge the readings' own timestamps) can hold. The clock is set so that the last
step is about now, as the worker's timestamp checks require. Stations in a story also
report every step, as real stations do on a schedule; the everyday feed stays light.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import redis
import sqlalchemy as sa

from ingest.mqtt import MqttClient
from ingest.pipeline import IngestPipeline
from ingest.scenarios import metres
from ingest.simulator import CitySimulator, Message, SimDevice
from ingest.worker import IngestWorker
from models import schema
from models.live import LiveStore
from models.rules import AlertSink, RuleEngine, RuleRunner, load_rules
from tests.services import MOSQUITTO_CONF, PrivateMosquitto

pytestmark = pytest.mark.real_services

STORY_S = 40.0
STEP_S = 5.0
#: everyday messages per second of story time, under the story's own
EVERYDAY_RATE = 3.0


class FakeClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Running:
    worker: IngestWorker
    stop: threading.Event
    thread: threading.Thread


@pytest.fixture(scope="module")
def tuned_mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateMosquitto]:
    broker = PrivateMosquitto(tmp_path_factory.mktemp("mosquitto"), MOSQUITTO_CONF.read_text()).start()
    yield broker
    broker.stop()


@pytest.fixture(scope="module")
def engine(pg_engine: sa.Engine) -> sa.Engine:
    return pg_engine


def clean(engine: sa.Engine, client: redis.Redis) -> None:
    client.flushdb()
    with engine.begin() as conn:
        for table in (
            "alert_events",
            "alerts",
            "observation_hourly",
            "observations",
            "video_events",
            "ticket_events",  # a stored ticket starts its history (受理)
            "hotline_tickets",
            "devices",
            "dead_letters",
        ):
            conn.exec_driver_sql(f"DELETE FROM {table}")


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def alerts(engine: sa.Engine) -> list[dict]:
    t = schema.Alert.__table__
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(t))]


def count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def play(
    scenario: str,
    *,
    after_s: float,
    reporters: Callable[[CitySimulator], list[SimDevice]],
    mqtt_url: str,
    engine: sa.Engine,
    redis_url: str,
    name: str,
) -> list[dict]:
    """Play ``scenario`` through a worker with the default rules; the alerts it left."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    clean(engine, client)
    total = STORY_S + after_s
    start = datetime.now(UTC) - timedelta(seconds=total + 5)
    clock = FakeClock(start)
    live = LiveStore(client)
    runner = RuleRunner(RuleEngine(load_rules(), client), AlertSink(engine, live, clock=clock), clock=clock)
    prefix = f"cityops-test/{name}"
    pipeline = IngestPipeline(engine, live, prefix=prefix, hooks=[runner])
    worker = IngestWorker(
        MqttClient(mqtt_url, f"ingest-{name}", persistent_session=True), pipeline, shared=True, rules=runner
    )
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    assert worker.ready.wait(15), "worker did not subscribe"
    sim = CitySimulator(
        seed=11, prefix=prefix, clock=clock, scenario=scenario, story_seconds=STORY_S, start=start
    )
    publisher = MqttClient(mqtt_url, f"pub-{name}").start()
    try:
        metas = sim.meta_messages()
        publisher.publish_many([(m.topic, m.payload) for m in metas], qos=1)
        assert wait_for(lambda: count(engine, schema.Device.__table__) == len(metas))
        stations = reporters(sim)
        expected: Counter[str] = Counter()
        feed: list[Message] = []
        for _ in range(int(total / STEP_S)):
            clock.now += timedelta(seconds=STEP_S)
            feed += sim.tick(EVERYDAY_RATE, STEP_S)
            # Scheduled reports, just before the step's end (the feed's last message is at it).
            at = clock.now - timedelta(milliseconds=137)
            for d in stations:
                body = {"ts": at.isoformat(), "metrics": sim.reading(d, at)}
                feed.append(Message(sim.router.sensor_obs(d.device_id), json.dumps(body).encode()))
            publisher.publish_many([(m.topic, m.payload) for m in feed], qos=1)
            expected.update(_table(m.topic) for m in feed)
            feed = []
        # The worker counts a batch only after its hooks ran: then every rule has judged it.
        assert wait_for(lambda: _handled(worker, expected), 60), (
            f"handled {dict(worker.totals.stored)} of {dict(expected)}"
        )
    finally:
        publisher.stop()
        stop.set()
        thread.join(15)
    assert count(engine, schema.DeadLetter.__table__) == 0
    return alerts(engine)


def _table(topic: str) -> str:
    """The table (as the worker counts it) a simulated message lands in."""
    if topic.endswith("/obs"):
        return "observations"
    if "/hotline/tickets/" in topic:  # the 12345 system's steps of an order
        return "ticket_events"
    if topic.endswith("/events"):
        return "video_events"
    return "hotline_tickets"


def _handled(worker: IngestWorker, expected: Counter[str]) -> bool:
    done = worker.totals.stored + worker.totals.duplicates
    return all(done[table] >= n for table, n in expected.items())


def test_flood_raises_water_level_and_compound_alerts_in_linshui(
    tuned_mosquitto: PrivateMosquitto, engine: sa.Engine, redis_url: str, unique_name: str
) -> None:
    def gauges(sim: CitySimulator) -> list[SimDevice]:
        return [
            d
            for d in sim.devices
            if d.district_code == "511623" and d.type in {"water_level", "rainfall", "manhole"}
        ]

    found = play(
        "flood",
        after_s=200,
        reporters=gauges,
        mqtt_url=tuned_mosquitto.url,
        engine=engine,
        redis_url=redis_url,
        name=unique_name,
    )
    by_rule: dict[str, list[dict]] = {}
    for a in found:
        by_rule.setdefault(a["rule_id"], []).append(a)
    assert by_rule.get("water_level_warning"), sorted(by_rule)
    assert {a["district_code"] for a in by_rule["water_level_warning"]} == {"511623"}
    compound = by_rule.get("flood_compound", [])
    assert compound, f"no compound alert; raised: {sorted(by_rule)}"
    assert {a["district_code"] for a in compound} == {"511623"}
    assert all(a["severity"] == "critical" and a["grid_id"] for a in compound)
    assert "rain" in compound[0]["evidence"]["first"]["signals"]
    assert by_rule.get("rain_heavy") and by_rule.get("video_waterlogging")
    # One open alert per condition: no dedup key twice.
    keys = [a["dedup_key"] for a in found]
    assert len(keys) == len(set(keys))


def test_pollution_raises_aqi_alerts_across_the_city(
    tuned_mosquitto: PrivateMosquitto, engine: sa.Engine, redis_url: str, unique_name: str
) -> None:
    found = play(
        "pollution",
        after_s=160,
        reporters=lambda sim: [d for d in sim.devices if d.type == "air_quality"],
        mqtt_url=tuned_mosquitto.url,
        engine=engine,
        redis_url=redis_url,
        name=unique_name,
    )
    heavy = [a for a in found if a["rule_id"] == "aqi_heavy"]
    assert len({a["district_code"] for a in heavy}) >= 3, sorted({a["rule_id"] for a in found})
    assert all(a["severity"] == "major" and a["domain"] == "ecology" for a in heavy)
    assert "重度污染" in heavy[0]["title"] or "严重污染" in heavy[0]["title"]


def test_fire_raises_a_critical_smoke_alert(
    tuned_mosquitto: PrivateMosquitto, engine: sa.Engine, redis_url: str, unique_name: str
) -> None:
    site = (106.6385, 30.4625)
    found = play(
        "fire",
        after_s=40,
        reporters=lambda sim: [
            d for d in sim.devices if d.type == "smoke" and metres(d.lon, d.lat, *site) <= 300
        ],
        mqtt_url=tuned_mosquitto.url,
        engine=engine,
        redis_url=redis_url,
        name=unique_name,
    )
    critical = {a["rule_id"] for a in found if a["severity"] == "critical" and a["district_code"] == "511602"}
    assert {"smoke_alarm", "video_smoke_fire"} <= critical, sorted(critical)


def test_crowd_raises_a_crowd_alert(
    tuned_mosquitto: PrivateMosquitto, engine: sa.Engine, redis_url: str, unique_name: str
) -> None:
    found = play(
        "crowd",
        after_s=40,
        reporters=lambda sim: [],
        mqtt_url=tuned_mosquitto.url,
        engine=engine,
        redis_url=redis_url,
        name=unique_name,
    )
    crowd = [a for a in found if a["rule_id"] == "video_crowd"]
    assert crowd, sorted({a["rule_id"] for a in found})
    assert crowd[0]["district_code"] == "511602" and crowd[0]["severity"] == "major"
    assert len(crowd[0]["evidence"]["first"]["events"]) >= 3
