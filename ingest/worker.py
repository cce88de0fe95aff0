"""One ingest worker: MQTT shared subscription → pipeline → acknowledge.

Several workers share the load through shared subscriptions. A batch is acknowledged
only after it is committed to the database *and* written to the live state. When a
stage fails, that stage alone is retried with backoff and nothing is acknowledged, so
the broker keeps the messages: the worker slows down instead of losing anything, and
says so (log line, ``degraded``, the ``cityops_ingest_degraded`` metric).

Two stages overlap: while the live stage writes batch N to Redis, hands it to the rules
and acknowledges it, the store stage already validates batch N+1 and writes it to the
database. Most of either stage is waiting on its server, so overlapping them roughly
halves the wall time per batch. The live stage takes batches strictly in order, and at
most :data:`LIVE_BACKLOG` committed batches wait for it, so a slow Redis slows the
database writes down too instead of letting unacknowledged batches pile up.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import NamedTuple, TypeVar

import sqlalchemy as sa

from ingest import metrics
from ingest.mqtt import MqttClient, ReceivedMessage
from ingest.pipeline import BatchResult, Inbound, IngestPipeline, StoredBatch
from models.config import Settings
from models.live import LiveStore, connect_redis
from models.rules import AlertSink, RuleEngine, RuleRunner, load_rules

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Messages per database transaction: larger amortises commit cost, smaller lowers latency.
BATCH_MAX = 500
#: How long to wait to fill a batch; bounds the added latency at low rates.
BATCH_WAIT_S = 0.05
#: Retry delays after a failed stage (seconds, doubling).
RETRY_MIN_S = 0.5
RETRY_MAX_S = 15.0
SHARED_GROUP = "ingest"
#: Committed batches waiting for the live stage. One keeps both stages busy; more would
#: only hold more messages unacknowledged when Redis is slow.
LIVE_BACKLOG = 1
#: How often an idle live stage wakes up to run the periodic rule tick.
TICK_POLL_S = 0.25


class _Committed(NamedTuple):
    """A batch the database has committed, on its way to the live stage."""

    messages: Sequence[ReceivedMessage]
    stored: StoredBatch


class IngestWorker:
    def __init__(
        self,
        client: MqttClient,
        pipeline: IngestPipeline,
        *,
        shared: bool = True,
        rules: RuleRunner | None = None,
    ) -> None:
        self.client = client
        self.pipeline = pipeline
        #: time-based rules (staleness, emptied windows, SLA escalation), ticked from run()
        self.rules = rules
        #: subscribe through shared subscriptions (several workers) or plainly (one worker)
        self.shared = shared
        #: why storage is failing right now, or None
        self.degraded: str | None = None
        #: set once subscribed: publishers started after it lose nothing
        self.ready = threading.Event()
        self.totals = BatchResult()

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        engine: sa.Engine | None = None,
        live: LiveStore | None = None,
        mqtt_url: str | None = None,
        client_id: str | None = None,
    ) -> IngestWorker:
        from models.cases import VideoCaseHook
        from models.db import create_engine_for

        engine = engine or create_engine_for(settings.effective_database_url)
        live = live or LiveStore(connect_redis(settings))
        url = mqtt_url or (settings.mqtt.url if settings.mqtt else None)
        if url is None:
            raise ValueError("no MQTT broker URL")
        # A stable id, so a restarted worker resumes its broker session and its unacked messages.
        client = MqttClient(url, client_id or f"cityops-ingest-{settings.worker_id}", persistent_session=True)
        # A bad rule file stops the worker here (RuleFileError names the rule and field).
        rules = RuleRunner(
            RuleEngine(load_rules(settings.rules_file), live.redis),
            AlertSink(engine, live, sla=settings.alert_sla),
        )
        pipeline = IngestPipeline(
            engine,
            live,
            prefix=settings.topic_prefix,
            max_future=settings.ingest_max_future,
            max_age=settings.ingest_max_age,
            # Video sightings become urban-management cases (de-duplicated per camera and type).
            hooks=[rules, VideoCaseHook(engine)],
        )
        # The embedded broker serves exactly one worker (the one in the demo process; a
        # standalone worker needs a broker URL). rumqttd 0.20 panics when a persistent
        # session holding a shared subscription reconnects with unacknowledged messages
        # (seen in tests), while plain persistent subscriptions resume correctly — so with
        # the embedded broker the worker subscribes plainly. Nothing else changes.
        return cls(client, pipeline, shared=settings.mqtt is not None, rules=rules)

    def run(self, stop: threading.Event) -> None:
        self.client.start()
        for topic_filter, group in self.pipeline.router.subscriptions(SHARED_GROUP):
            self.client.subscribe(topic_filter, qos=1, shared_group=group if self.shared else None)
        log.info("ingest worker %s subscribed", self.client.client_id)
        committed: queue.Queue[_Committed | None] = queue.Queue(maxsize=LIVE_BACKLOG)
        live = threading.Thread(
            target=self._live_stage, args=(committed, stop), name="ingest-live", daemon=True
        )
        live.start()
        self.ready.set()
        try:
            while not stop.is_set() and live.is_alive():
                batch = self.client.get_batch(BATCH_MAX, timeout=BATCH_WAIT_S)
                metrics.CONNECTED.set(1 if self.client.connected.is_set() else 0)
                metrics.QUEUE_DEPTH.set(self.client.stats().queued)
                if not batch:
                    continue
                stored = self._store(batch, stop)
                if stored is None:
                    break
                # Even when stopping: a committed batch still gets its live write and ack.
                while live.is_alive():
                    try:
                        committed.put(_Committed(batch, stored), timeout=0.1)
                        break
                    except queue.Full:
                        continue
        finally:
            # The live stage finishes what was committed (unless stopped mid-outage: then
            # those messages stay unacknowledged and the broker redelivers them).
            while live.is_alive():
                try:
                    committed.put(None, timeout=0.1)
                    break
                except queue.Full:
                    continue
            live.join()
            self.client.stop()
            metrics.CONNECTED.set(0)

    def handle(self, batch: Sequence[ReceivedMessage], stop: threading.Event) -> bool:
        """Store, publish and acknowledge one batch; False if stopped before it was done."""
        stored = self._store(batch, stop)
        return stored is not None and self._finish(_Committed(batch, stored), stop)

    def _store(self, batch: Sequence[ReceivedMessage], stop: threading.Event) -> StoredBatch | None:
        inbound = [Inbound(m.topic, m.payload, datetime.fromtimestamp(m.received_wall, UTC)) for m in batch]
        started = time.perf_counter()
        stored = self._until_done("database", lambda: self.pipeline.store(inbound), stop)
        if stored is not None:
            metrics.STORE_SECONDS.observe(time.perf_counter() - started)
        return stored

    def _finish(self, item: _Committed, stop: threading.Event) -> bool:
        """Live state, rules, then the acknowledgement of one committed batch."""
        if self._until_done("live", lambda: self.pipeline.publish(item.stored), stop) is None:
            return False
        self.client.ack_many(item.messages)
        self._count(item.stored.result, item.messages)
        return True

    def _live_stage(self, committed: queue.Queue[_Committed | None], stop: threading.Event) -> None:
        """Committed batches in order → live state, rules, acknowledgement; the rule tick between."""
        next_tick = time.monotonic()
        while True:
            try:
                item = committed.get(timeout=TICK_POLL_S)
            except queue.Empty:
                item = _IDLE
            if item is None:
                return
            if item is not _IDLE and not self._finish(item, stop):
                return  # stopped during a Redis outage: the batch stays unacknowledged
            if self.rules is not None and time.monotonic() >= next_tick:
                next_tick = time.monotonic() + self.rules.interval_s
                self._tick_rules()

    def _tick_rules(self) -> None:
        assert self.rules is not None
        try:
            self.rules.tick()
        except Exception:  # a failing tick must not stop ingest; the next one tries again
            log.exception("rule tick failed")

    def _until_done(self, stage: str, action: Callable[[], T], stop: threading.Event) -> T | None:
        """``action()`` until it succeeds; None once stopped. Tried at least once, even when
        stopping, so that a committed batch still gets its live write and acknowledgement."""
        delay = RETRY_MIN_S
        while True:
            try:
                value = action()
            except Exception as exc:  # storage trouble: keep the batch unacknowledged and retry
                first_line = (str(exc).splitlines() or [""])[0][:200]
                self.degraded = f"{stage}: {type(exc).__name__}: {first_line}"
                metrics.DEGRADED.labels(stage).set(1)
                if stop.is_set():
                    return None
                log.warning("batch not stored (%s); retrying in %.1f s", self.degraded, delay)
                stop.wait(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            if self.degraded is not None and self.degraded.startswith(stage):
                log.info("%s writes recovered", stage)
                self.degraded = None
            metrics.DEGRADED.labels(stage).set(0)
            return value

    def _count(self, result: BatchResult, batch: Sequence[ReceivedMessage]) -> None:
        self.totals.stored.update(result.stored)
        self.totals.duplicates.update(result.duplicates)
        metrics.BATCH_SIZE.observe(len(batch))
        stored = sum(v for k, v in result.stored.items() if k != "devices")
        metrics.MESSAGES.labels("stored").inc(stored)
        metrics.MESSAGES.labels("duplicate").inc(sum(result.duplicates.values()))
        metrics.MESSAGES.labels("rejected").inc(len(result.rejected))
        for table, n in result.stored.items():
            metrics.ROWS.labels(table).inc(n)
        for reason, n in result.rejected_by_reason.items():
            metrics.REJECTED.labels(reason).inc(n)
        now = time.monotonic()
        for m in batch:
            metrics.LATENCY_SECONDS.observe(now - m.received_at)
        if result.rejected:
            log.info("rejected %d: %s", len(result.rejected), dict(result.rejected_by_reason))


#: The live stage's "nothing arrived": time to look at the rule tick.
_IDLE = _Committed((), StoredBatch(BatchResult(), [], {}))
