"""One ingest worker: MQTT shared subscription → pipeline → acknowledge.

Several workers share the load through ``$share/ingest/...``. A batch is acknowledged
only after the pipeline committed it; when the database or Redis fails, the batch is
retried (with backoff) and nothing is acknowledged, so the broker keeps the messages —
back-pressure instead of loss.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime

import sqlalchemy as sa

from ingest.mqtt import MqttClient
from ingest.pipeline import BatchResult, Inbound, IngestPipeline
from models.config import Settings
from models.live import LiveStore, connect_redis

log = logging.getLogger(__name__)

#: Messages per database transaction: larger amortises commit cost, smaller lowers latency.
BATCH_MAX = 500
#: How long to wait to fill a batch; bounds the added latency at low rates.
BATCH_WAIT_S = 0.2
#: Retry delays after a failed write (seconds, doubling).
RETRY_MIN_S = 0.5
RETRY_MAX_S = 15.0
SHARED_GROUP = "ingest"


class IngestWorker:
    def __init__(self, client: MqttClient, pipeline: IngestPipeline) -> None:
        self.client = client
        self.pipeline = pipeline
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
        from models.db import create_engine_for

        engine = engine or create_engine_for(settings.effective_database_url)
        live = live or LiveStore(connect_redis(settings))
        url = mqtt_url or (settings.mqtt.url if settings.mqtt else None)
        if url is None:
            raise ValueError("no MQTT broker URL")
        # A stable id, so a restarted worker resumes its broker session and its unacked messages.
        cid = client_id or f"cityops-ingest-{settings.worker_id}"
        client = MqttClient(url, cid, persistent_session=True)
        pipeline = IngestPipeline(engine, live, prefix=settings.topic_prefix)
        return cls(client, pipeline)

    def run(self, stop: threading.Event) -> None:
        self.client.start()
        for topic_filter, group in self.pipeline.router.subscriptions(SHARED_GROUP):
            self.client.subscribe(topic_filter, qos=1, shared_group=group)
        log.info("ingest worker %s subscribed", self.client.client_id)
        self.ready.set()
        try:
            while not stop.is_set():
                batch = self.client.get_batch(BATCH_MAX, timeout=BATCH_WAIT_S)
                if batch:
                    self._process_until_done(batch, stop)
        finally:
            self.client.stop()

    def _process_until_done(self, batch: list, stop: threading.Event) -> None:
        inbound = [Inbound(m.topic, m.payload, datetime.fromtimestamp(m.received_wall, UTC)) for m in batch]
        delay = RETRY_MIN_S
        while not stop.is_set():
            try:
                result = self.pipeline.process(inbound)
            except Exception as exc:  # database or Redis trouble: keep the batch, retry
                self.degraded = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                log.warning("batch of %d not stored, retrying in %.1fs: %s", len(batch), delay, self.degraded)
                stop.wait(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            self.client.ack_many(batch)
            if self.degraded:
                log.info("storage recovered")
            self.degraded = None
            self.totals.stored.update(result.stored)
            self.totals.duplicates.update(result.duplicates)
            if result.rejected:
                log.info("rejected %d: %s", len(result.rejected), dict(result.rejected_by_reason))
            return
