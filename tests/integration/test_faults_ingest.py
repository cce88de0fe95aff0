"""Ingest under faults, against private Mosquitto, Redis and PostgreSQL instances that the
tests break on purpose (tests/faults.py): the broker restarts mid-stream, the database is
gone for a minute, the worker is SIGKILLed mid-batch, device clocks are wrong, and five
times the usual rate arrives. Each test counts exactly: every reading stored once."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa

from ingest.mqtt import MqttClient
from ingest.pipeline import Inbound, IngestPipeline
from ingest.worker import IngestWorker
from models.db import create_engine_for
from models.live import LiveStore
from tests.faults import FaultyMosquitto, IngestProcess, PrivatePostgres, PrivateRedis, wait_for

pytestmark = pytest.mark.real_services

PREFIX = "cityops-faults/v1"
DEVICES = [f"n-{i}" for i in range(8)]
#: PostgreSQL outage length (the issue asks for a minute); shorter only when told to.
PG_OUTAGE_S = float(os.environ.get("CITYOPS_FAULT_PG_OUTAGE_S", "60"))


@pytest.fixture(scope="module")
def postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres().start()
    yield server
    server.remove()


@dataclass
class Services:
    broker: FaultyMosquitto
    redis: PrivateRedis
    postgres: PrivatePostgres
    engine: sa.Engine
    live: LiveStore
    workdir: Path

    def env(self, worker_id: str, processes: int = 1) -> dict[str, str]:
        return {
            "CITYOPS_MQTT_URL": self.broker.url,
            "CITYOPS_REDIS_URL": self.redis.url,
            "CITYOPS_DATABASE_URL": self.postgres.url,
            "CITYOPS_TOPIC_PREFIX": PREFIX,
            "CITYOPS_WORKER_ID": worker_id,
            "CITYOPS_INGEST_PROCESSES": str(processes),
            "CITYOPS_DATA_DIR": str(self.workdir),
            "CITYOPS_LOG_LEVEL": "INFO",
        }


@pytest.fixture
def services(postgres: PrivatePostgres, tmp_path: Path) -> Iterator[Services]:
    broker = FaultyMosquitto(tmp_path / "mqtt").start()
    cache = PrivateRedis(tmp_path).start()
    engine = create_engine_for(postgres.url)
    with engine.begin() as conn:
        for table in (
            "observation_hourly",
            "observations",
            "devices",
            "dead_letters",
            "alert_events",
            "alerts",
        ):
            conn.exec_driver_sql(f"DELETE FROM {table}")
    live = LiveStore(redis.Redis.from_url(cache.url, decode_responses=True))
    try:
        yield Services(broker, cache, postgres, engine, live, tmp_path)
    finally:
        engine.dispose()
        cache.stop()
        broker.stop()
        if not postgres.running:  # a test failed mid-outage: leave the cluster running
            postgres.start()


def observations(engine: sa.Engine) -> tuple[int, int]:
    """(rows, distinct (device, ts)): equal when nothing is doubled."""
    with engine.connect() as conn:
        return tuple(  # type: ignore[return-value]
            conn.execute(sa.text("SELECT count(*), count(DISTINCT (device_id, ts)) FROM observations")).one()
        )


def stored(engine: sa.Engine) -> int:
    try:
        return observations(engine)[0]
    except sa.exc.OperationalError:
        return -1


def feed(total: int, *, start: datetime | None = None) -> list[tuple[str, bytes]]:
    """``total`` noise readings over the devices, each with its own timestamp, all within the
    four minutes before ``start`` (inside the accepted window)."""
    first = (start or datetime.now(UTC)) - timedelta(minutes=4)
    step = timedelta(minutes=4) / max(total, 1)
    return [
        (
            f"{PREFIX}/sensors/{DEVICES[i % len(DEVICES)]}/obs",
            json.dumps({"ts": (first + step * i).isoformat(), "metrics": {"laeq": 40 + i % 30}}).encode(),
        )
        for i in range(total)
    ]


def register(url: str, engine: sa.Engine) -> None:
    """Retained meta messages: a worker subscribing later still gets them."""
    meta = b'{"type": "noise", "lon": 106.6333, "lat": 30.456}'
    with MqttClient(url, "faults-register") as publisher:
        for info in [publisher.publish(f"{PREFIX}/sensors/{d}/meta", meta, retain=True) for d in DEVICES]:
            info.wait_for_publish(10)

    def registered() -> bool:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT count(*) FROM devices")).scalar_one() == len(DEVICES)

    assert wait_for(registered, 30), "the devices were registered"


@dataclass
class ThreadWorker:
    worker: IngestWorker
    stop: threading.Event
    thread: threading.Thread

    def halt(self) -> None:
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()


def start_worker(services: Services, client_id: str, *, shared: bool = True) -> ThreadWorker:
    """A worker in this process (its client's ack count is visible to the test); ``shared``:
    through the shared subscription as with several workers, else a plain one."""
    worker = IngestWorker(
        MqttClient(services.broker.url, client_id, persistent_session=True),
        IngestPipeline(services.engine, services.live, prefix=PREFIX),
        shared=shared,
    )
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    assert worker.ready.wait(15), "worker did not subscribe"
    return ThreadWorker(worker, stop, thread)


class Publisher(threading.Thread):
    """Publishes (QoS 1) from a thread, at ``rate`` messages per second or as fast as
    acknowledged; ``error`` is what stopped it early, if anything; ``unrouted`` how many
    the broker acknowledged with "no matching subscribers" (and so discarded)."""

    def __init__(
        self,
        url: str,
        messages: list[tuple[str, bytes]],
        rate: float | None = None,
        *,
        resend_on_error: bool = False,
    ) -> None:
        super().__init__(daemon=True)
        self.url, self.messages, self.rate = url, messages, rate
        self.resend_on_error = resend_on_error
        self.error: BaseException | None = None
        self.unrouted = 0
        self.start()

    def run(self) -> None:
        self.send()
        if self.error is not None and self.resend_on_error:
            self.error = None
            self.rate = None
            self.send()

    def send(self) -> None:
        publisher = MqttClient(self.url, f"faults-pub-{time.monotonic_ns()}")
        try:
            with publisher:
                if self.rate is None:
                    publisher.publish_many(self.messages, timeout=120)
                    return
                started = time.monotonic()
                step = max(1, int(self.rate / 20))
                for i in range(0, len(self.messages), step):
                    publisher.publish_many(self.messages[i : i + step], timeout=120)
                    time.sleep(max(0.0, started + (i + step) / self.rate - time.monotonic()))
        except BaseException as exc:
            self.error = exc
        finally:
            self.unrouted += publisher.stats().unrouted

    def finish(self, timeout: float) -> None:
        """Wait for it; fail unless the broker acknowledged every message."""
        self.join(timeout)
        assert not self.is_alive(), "the publisher is still sending"
        assert self.error is None, f"the publisher failed: {self.error!r}"


def publish_in_background(
    url: str, messages: list[tuple[str, bytes]], rate: float | None = None
) -> Publisher:
    return Publisher(url, messages, rate)


# ---- broker restart ---------------------------------------------------------------------------


class SharedSubscriptionLostInRestart(AssertionError):
    """Readings missing, every one of them acknowledged to the publisher by the restarted
    broker with "no matching subscribers": Mosquitto 2.0's gap, not ours (docs/mqtt.md)."""


#: Mosquitto 2.0 writes a persistent session's plain subscriptions into its persistence file
#: but not its shared ones (src/persist_write.c saves only each topic node's plain subscriber
#: list). After a restart the worker's session is back without ``$share/ingest/…``; until the
#: worker's reconnect subscribes again, the broker answers a reading's PUBLISH with PUBACK
#: reason 0x10 and discards it. In the runs measured (docs/mqtt.md), every missing reading had
#: that PUBACK, and the plain subscription (one worker) lost nothing.
SHARED_SUBSCRIPTION_RESTART_GAP = (
    "Mosquitto 2.0 does not persist shared subscriptions: readings published after its restart "
    "and before the worker subscribes again are acknowledged with 'no matching subscribers' "
    "and discarded (docs/mqtt.md, Broker restarts)"
)


@pytest.mark.parametrize(
    "shared",
    [
        pytest.param(False, id="plain"),
        pytest.param(
            True,
            id="shared",
            marks=pytest.mark.xfail(
                raises=SharedSubscriptionLostInRestart,
                strict=False,  # a race with the restart: most runs lose nothing
                reason=SHARED_SUBSCRIPTION_RESTART_GAP,
            ),
        ),
    ],
)
def test_broker_restart_mid_stream_stores_every_qos1_message_once(services: Services, shared: bool) -> None:
    """Every reading the broker acknowledged is stored once across a Mosquitto restart.

    With the plain subscription of a single worker that is guaranteed. With the shared
    subscription of several workers, Mosquitto 2.0 itself discards what arrives between its
    restart and the worker's new SUBSCRIBE; only that loss, proven by the publisher's
    "no matching subscribers" acknowledgements, is an expected failure; any other fails."""
    running = start_worker(services, "faults-broker", shared=shared)
    register(services.broker.url, services.engine)
    try:
        total = 6000
        # Resends everything after a publish error (see the next test): readings are idempotent.
        sender = Publisher(services.broker.url, feed(total), rate=1500, resend_on_error=True)
        assert wait_for(lambda: stored(services.engine) >= 1000, 30)
        services.broker.restart()  # sessions and queued messages survive in its persistence file
        restarted_at = stored(services.engine)
        assert restarted_at < total, "the restart happened mid-stream"
        sender.finish(90)  # the publisher got every PUBACK, across the restart
        # Everything the broker routed to a subscription arrives, whatever else happened.
        assert wait_for(lambda: stored(services.engine) >= total - sender.unrouted, 60), (
            f"{stored(services.engine)} of {total} ({sender.unrouted} unrouted); "
            f"{running.worker.client.stats()}\n" + services.broker.log.read_text(errors="replace")[-3000:]
        )
        if not wait_for(lambda: stored(services.engine) >= total, 5 if sender.unrouted else 30):
            missing = total - stored(services.engine)
            if shared and 0 < missing <= sender.unrouted:
                raise SharedSubscriptionLostInRestart(
                    f"{missing} of {total} readings missing; the broker acknowledged {sender.unrouted} "
                    "to the publisher with 'no matching subscribers' after its restart"
                )
            raise AssertionError(
                f"{missing} of {total} readings missing ({sender.unrouted} unrouted); "
                f"{running.worker.client.stats()}"
            )
        assert sender.unrouted == 0 or shared, "a plain subscription survives the restart"
        time.sleep(1.0)  # a duplicate would arrive within this
        assert observations(services.engine) == (total, total)
        assert running.worker.client.stats().reconnects >= 1
    finally:
        running.halt()


def test_a_publisher_rides_out_a_broker_restart(services: Services) -> None:
    messages = feed(200)
    with MqttClient(services.broker.url, "faults-pub-restart") as publisher:
        services.broker.stop()
        sender = threading.Thread(
            target=lambda: publisher.publish_many(messages[:100], timeout=30), daemon=True
        )
        sender.start()
        time.sleep(1.0)
        services.broker.start()
        assert publisher.publish_many(messages[100:], timeout=30) == 100
        sender.join(30)
        assert publisher.publish_many(messages, timeout=30) == 200


# ---- PostgreSQL gone for a minute -------------------------------------------------------------


def test_database_outage_applies_back_pressure_and_loses_nothing(services: Services) -> None:
    running = start_worker(services, "faults-pg")
    register(services.broker.url, services.engine)
    client = running.worker.client
    try:
        before = feed(200)
        publish_in_background(services.broker.url, before).finish(30)
        assert wait_for(lambda: stored(services.engine) == 200, 30)
        # A batch is acknowledged after its live write, which follows the commit: wait for
        # every message received so far to be acknowledged before the outage starts.
        assert wait_for(lambda: client.stats().acked == client.stats().received, 30), client.stats()
        acked_before = client.stats().acked

        services.postgres.stop()
        started = time.monotonic()
        during = feed(3000, start=datetime.now(UTC) + timedelta(minutes=2))
        sender = publish_in_background(services.broker.url, during, rate=3000 / (PG_OUTAGE_S * 0.8))
        assert wait_for(lambda: running.worker.degraded is not None, 30), "the worker says it is degraded"
        assert "database" in (running.worker.degraded or "")
        sender.finish(PG_OUTAGE_S + 30)  # the broker took every message while the database was down
        # Back-pressure: nothing more was acknowledged; the unacknowledged messages wait in the
        # worker's receive window and in its broker session.
        assert client.stats().acked == acked_before
        assert client.stats().queued <= client.receive_maximum * 2
        time.sleep(max(0.0, PG_OUTAGE_S - (time.monotonic() - started)))
        print(f"database down for {time.monotonic() - started:.1f} s; {client.stats()}")
        assert client.stats().acked == acked_before

        services.postgres.start()
        recovered = time.monotonic()
        assert wait_for(lambda: stored(services.engine) == 3200, 90), f"{stored(services.engine)} of 3200"
        print(f"caught up {time.monotonic() - recovered:.1f} s after the database came back")
        assert wait_for(lambda: running.worker.degraded is None, 10)
        time.sleep(1.0)
        assert observations(services.engine) == (3200, 3200)
        assert client.stats().acked - acked_before == 3000
    finally:
        running.halt()


# ---- the worker process SIGKILLed -------------------------------------------------------------


def test_worker_sigkilled_mid_batch_loses_and_doubles_nothing(services: Services) -> None:
    env = services.env("faults-kill")
    first = IngestProcess(services.workdir, env).start()
    try:
        register(services.broker.url, services.engine)  # also: the worker is up and subscribed
        total = 12_000
        sender = publish_in_background(services.broker.url, feed(total), rate=3000)
        assert wait_for(lambda: stored(services.engine) >= 2000, 60), first.output()
        first.kill()  # mid-stream: batches stored, in flight, and not yet received
        killed_at = stored(services.engine)
        assert killed_at < total, "the kill happened mid-stream"
        sender.finish(60)
        first.stop()  # the processing processes it left
        second = IngestProcess(services.workdir, env).start()  # same id: resumes the session
        try:
            assert wait_for(lambda: stored(services.engine) >= total, 90), (
                f"{stored(services.engine)} of {total} after the restart\n{second.output()}"
            )
            time.sleep(1.0)
            assert observations(services.engine) == (total, total)
            assert second.alive()
        finally:
            second.stop()
        print(f"killed with {killed_at} stored; all {total} stored once after the restart")
    finally:
        first.stop()


# ---- clock trouble ----------------------------------------------------------------------------


def test_device_clocks_minutes_off_out_of_order_or_repeated(services: Services) -> None:
    """As docs/mqtt.md says: up to 5 minutes ahead and 7 days old accepted, beyond that a dead
    letter; any order stored, the live state keeps the newest; a repeat stored once."""
    now = datetime.now(UTC)
    pipeline = IngestPipeline(services.engine, services.live, prefix=PREFIX)

    def reading(device: str, offset: timedelta, laeq: float) -> Inbound:
        body = {"ts": (now + offset).isoformat(), "metrics": {"laeq": laeq}}
        return Inbound(f"{PREFIX}/sensors/{device}/obs", json.dumps(body).encode(), now)

    meta = b'{"type": "noise", "lon": 106.6333, "lat": 30.456}'
    pipeline.process([Inbound(f"{PREFIX}/sensors/{d}/meta", meta, now) for d in ("fast", "slow", "jumbled")])
    result = pipeline.process(
        [
            reading("fast", timedelta(minutes=4), 50),  # a clock 4 minutes fast: accepted
            reading("fast", timedelta(minutes=6), 51),  # 6 minutes fast: ts_future
            reading("slow", timedelta(minutes=-30), 52),  # half an hour slow: accepted (late)
            reading("slow", timedelta(days=-8), 53),  # 8 days old: ts_past
            *[reading("jumbled", timedelta(minutes=-m), 60 + m) for m in (2, 5, 1, 4, 3)],
            reading("jumbled", timedelta(minutes=-1), 61),  # repeated in the same batch
        ]
    )
    assert sorted(r.reason for r in result.rejected) == ["ts_future", "ts_past"]
    assert result.stored["observations"] == 7 and result.duplicates["observations"] == 1
    # A later batch with an older reading and the repeat again: stored / recognised, state unmoved.
    late = pipeline.process(
        [reading("jumbled", timedelta(minutes=-10), 70), reading("jumbled", timedelta(minutes=-1), 61)]
    )
    assert late.stored["observations"] == 1 and late.duplicates["observations"] == 1
    states = {s.device_id: s for s in services.live.devices()}
    assert states["jumbled"].ts == (now - timedelta(minutes=1)).replace(microsecond=now.microsecond)
    assert states["jumbled"].metrics == {"laeq": 61.0}, "the newest reading wins, whatever the arrival order"
    assert states["fast"].metrics == {"laeq": 50.0}
    assert observations(services.engine) == (8, 8)


# ---- overload ---------------------------------------------------------------------------------


def test_five_times_the_rate_slows_ingest_down_and_it_catches_up(services: Services) -> None:
    """Five times the steady rate of the issue's soak run (2,000 msgs/s, so 10,000 msgs/s offered;
    CITYOPS_FAULT_BASE_RATE) for CITYOPS_FAULT_OVERLOAD_S seconds: more than this machine's broker,
    worker and database take in real time. The worker falls behind, does not crash, and stores
    every reading once. How fast it catches up is printed (bench/ measures), not asserted."""
    base_rate = float(os.environ.get("CITYOPS_FAULT_BASE_RATE", "2000"))
    seconds = float(os.environ.get("CITYOPS_FAULT_OVERLOAD_S", "6"))
    total = int(5 * base_rate * seconds)
    worker = IngestProcess(services.workdir, services.env("faults-overload")).start()
    try:
        register(services.broker.url, services.engine)
        rss_start = worker.rss_kib()
        started = time.monotonic()
        sender = publish_in_background(services.broker.url, feed(total), rate=5 * base_rate)
        peak = rss_start
        while sender.is_alive() or stored(services.engine) < total:
            assert worker.alive(), worker.output()
            peak = max(peak, worker.rss_kib())
            assert time.monotonic() - started < seconds + 60, (
                f"{stored(services.engine)} of {total}\n{worker.output()}"
            )
            time.sleep(0.5)
        elapsed = time.monotonic() - started
        time.sleep(1.0)
        assert observations(services.engine) == (total, total)
        print(
            f"overload: {total} readings at {5 * base_rate:.0f}/s for {seconds:.0f} s "
            f"stored in {elapsed:.1f} s; "
            f"worker RSS {rss_start / 1024:.0f} MiB at start, {peak / 1024:.0f} MiB peak"
        )
    finally:
        worker.stop()
