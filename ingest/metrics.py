"""Prometheus metrics of the ingest workers (served by ``cityops ingest --metrics-port``).

Names follow Prometheus conventions: ``_total`` counters, ``_seconds`` histograms. The
buckets are chosen around the targets: a batch is written in tens of milliseconds, and a
message should be in the live state well under 250 ms after the broker delivered it.

Gauges name how several processes combine under Prometheus multiprocess mode (set
``PROMETHEUS_MULTIPROC_DIR``, see :mod:`dashboards.api.health`): any stage degraded is
degraded (``max``), queues and connections add up over the processes still running
(``livesum``). In one process (``cityops ingest``, the demo) the mode changes nothing.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

MESSAGES = Counter("cityops_ingest_messages_total", "Messages taken from the broker, by outcome", ["outcome"])
REJECTED = Counter("cityops_ingest_rejected_total", "Messages sent to dead_letters, by reason", ["reason"])
ROWS = Counter("cityops_ingest_rows_total", "Rows newly written, by table", ["table"])
BATCH_SIZE = Histogram(
    "cityops_ingest_batch_size", "Messages per stored batch", buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000)
)
STORE_SECONDS = Histogram(
    "cityops_ingest_store_seconds",
    "Time to commit one batch (or one of its parts) to the database; parsing and locating come before",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
STAGE_BUSY = Counter(
    "cityops_ingest_stage_busy_seconds",
    "Time a worker's stage spent on batches (prepare, store, live, rules): the one near 1 s/s limits",
    ["stage"],
)
LATENCY_SECONDS = Histogram(
    "cityops_ingest_latency_seconds",
    "From delivery by the broker to being in the live state",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
DEGRADED = Gauge(
    "cityops_ingest_degraded", "1 while a storage stage keeps failing", ["stage"], multiprocess_mode="max"
)
QUEUE_DEPTH = Gauge(
    "cityops_ingest_queue_depth",
    "Messages received and waiting for the pipeline",
    multiprocess_mode="livesum",
)
CONNECTED = Gauge(
    "cityops_ingest_broker_connected", "1 while connected to the broker", multiprocess_mode="livesum"
)
