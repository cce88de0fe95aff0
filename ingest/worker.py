"""One ingest worker: MQTT shared subscription → pipeline → acknowledge.

Several workers share the load through shared subscriptions. A batch is acknowledged
only after it is committed to the database *and* written to the live state. When a
stage fails, that stage alone is retried with backoff and nothing is acknowledged, so
the broker keeps the messages: the worker slows down instead of losing anything, and
says so (log line, ``degraded``, the ``cityops_ingest_degraded`` metric).

The work on a batch (:class:`BatchProcessor`) runs in one of two places:

* **in the worker process** (``processes=0``, the default of ``CITYOPS_INGEST_PROCESSES``:
  on two cores shared with the broker and PostgreSQL, processing processes made a worker
  slower and cost about 200 MB each; and always for the embedded demo, whose in-process
  Redis store and SQLite file cannot be shared with other processes, and the tests that
  hand the worker their own pipeline);
* **in processing processes** (``processes=N``, ``CITYOPS_INGEST_PROCESSES=N``, for hosts
  with cores to spare): the worker process keeps the MQTT session — receiving and acknowledging,
  which its buffered client does cheaply — and splits each batch by device over N
  processes, each with its own database engine and Redis client. Validation, the
  writes and the rules are CPU-bound Python, held to one core by the GIL; processes let
  one worker use every core. A device always goes to the same process (a stable hash of
  its id), so its readings are stored, written live and judged by the rules in the order
  they arrived, as with one process.

A processing process reports each part of a batch when its database commit and live
write are done; the worker acknowledges a batch (in batch order) once every part has
reported. If a processing process dies, the worker stops acknowledging, stops the
others and :meth:`IngestWorker.run` raises :class:`ProcessingFailed` (``cityops ingest``
exits non-zero): everything not yet acknowledged stays in the broker session and is
redelivered to the restarted worker, where what was already committed is recognised as
duplicate. Restarting the one process and resending its parts would keep the worker up,
but would need the resent parts re-ordered against later ones of the same devices;
starting over from the broker session is simpler and provably complete.

Within one process four stages overlap, each in its own thread: while the rule stage
hands batch N to the rules and reports it (acknowledges it), the live stage writes batch
N+1 to Redis, the store stage writes batch N+2 to the database and the receiving thread
parses and checks batch N+3 (:meth:`IngestPipeline.prepare`). The store and live stages
wait on a server most of their time and the other two are mostly Python, so the waits
overlap with another stage's work. Every stage takes batches strictly in order and
at most :data:`STAGE_BACKLOG` batches wait between two stages, so a slow Redis slows the
database writes down too instead of letting unacknowledged batches pile up. A batch is
reported only after the rules saw it, as before: a crash before then means redelivery.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import multiprocessing as mp
import multiprocessing.connection as mp_connection
import os
import queue
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, NamedTuple, TypeVar

import sqlalchemy as sa

from ingest import heartbeat, metrics
from ingest.mqtt import MqttClient, ReceivedMessage
from ingest.pipeline import BatchResult, Inbound, IngestPipeline, PreparedBatch, StoredBatch, merge_stored
from ingest.sensorthings import load_datastreams
from models.config import Settings
from models.live import LiveStore, connect_redis, live_state_lost, rebuild_live_state
from models.rules import AlertSink, RuleEngine, RuleRunner, load_rules

log = logging.getLogger(__name__)
T = TypeVar("T")
Token = TypeVar("Token")

#: Messages per database transaction: larger amortises commit cost, smaller lowers latency.
BATCH_MAX = 500
#: How long to wait to fill a batch; bounds the added latency at low rates.
BATCH_WAIT_S = 0.05
#: Retry delays after a failed stage (seconds, doubling).
RETRY_MIN_S = 0.5
RETRY_MAX_S = 15.0
SHARED_GROUP = "ingest"
#: Database connections one batch is written over at once, split by device: the store
#: stage is the pipeline's slowest (PostgreSQL's work per reading, ≈ 60 µs, is done by one
#: server process per connection). Each part holds whole devices (a device's meta and
#: readings, a camera's events, every 12345 message in one), so the parts touch disjoint
#: rows and each device keeps its order. PostgreSQL only: SQLite has one writer.
STORE_CONNECTIONS = 2
#: Batches waiting between two stages (prepared → store → live → rules). One keeps every
#: stage busy; more would only hold more messages unacknowledged when Redis is slow.
STAGE_BACKLOG = 1
#: How often an idle rule stage wakes up to run the periodic rule tick.
TICK_POLL_S = 0.25
#: How often the rule stage checks that Redis still holds the live state (one EXISTS):
#: after a Redis restart or flush the pages would show an empty city until every device
#: sent its meta again, so the state is rebuilt from the database within seconds.
LIVE_WATCH_S = 2.0
#: Batches handed to processing processes and not yet acknowledged. Enough that every
#: process has one batch being stored and one being written live; more only holds more
#: messages unacknowledged (the broker's Receive Maximum caps them anyway).
IN_FLIGHT_BATCHES = 4
#: How long a processing process may take to import and connect before start-up fails.
PROCESS_START_TIMEOUT_S = 120.0
#: How long a stopping worker waits for its processes to finish what they hold.
PROCESS_STOP_TIMEOUT_S = 30.0


class ProcessingFailed(RuntimeError):
    """A processing process died: nothing more is acknowledged, the worker must restart."""


@dataclass(frozen=True, slots=True)
class PipelineSpec:
    """What a processing process needs to build its own pipeline (picklable)."""

    settings: Settings
    #: evaluate the rules per batch and tick them (off: the ingest path alone)
    rules: bool = True


def build_pipeline(
    spec: PipelineSpec, *, engine: sa.Engine | None = None, live: LiveStore | None = None
) -> tuple[IngestPipeline, RuleRunner | None]:
    """The pipeline (and rule runner) of one worker or processing process."""
    from geo.locate import prepare_index
    from models.cases import VideoCaseHook
    from models.db import create_engine_for

    settings = spec.settings
    # Before the first message, not during it: the first batch would wait ≈ 1 s for the
    # index, and every message received meanwhile behind it.
    log.debug("locate index ready in %.2f s", prepare_index())
    # Without a ping per batch: every stage retries until done (BatchProcessor._until_done).
    engine = engine or create_engine_for(settings.effective_database_url, pre_ping=False)
    live = live or LiveStore(connect_redis(settings))
    rules = None
    hooks: list[Any] = []
    if spec.rules:
        # A bad rule file stops the worker here (RuleFileError names the rule and field).
        rules = RuleRunner(
            RuleEngine(load_rules(settings.rules_file), live.redis),
            AlertSink(engine, live, sla=settings.alert_sla),
        )
        hooks.append(rules)
    # Video sightings become urban-management cases (de-duplicated per camera and type).
    hooks.append(VideoCaseHook(engine))
    pipeline = IngestPipeline(
        engine,
        live,
        prefix=settings.topic_prefix,
        max_future=settings.ingest_max_future,
        max_age=settings.ingest_max_age,
        hooks=hooks,
        # A broken mapping file stops the worker here (DatastreamFileError names the entry).
        datastreams=load_datastreams(settings.sta_datastreams),
    )
    return pipeline, rules


def partition_key(topic: str, prefix: str) -> str:
    """What decides a message's processing process: the device (or camera) of its topic.

    Every 12345 message shares one key, so a ticket and the events of its work order are
    handled in the order they arrived; a topic outside the interface is its own key
    (it only becomes a dead letter).
    """
    if topic.startswith(prefix) and topic[len(prefix) : len(prefix) + 1] == "/":
        parts = topic[len(prefix) + 1 :].split("/", 2)
        if parts[0] in ("sensors", "video") and len(parts) > 1:
            return parts[1]
        if parts[0] == "hotline":
            return "hotline"
    return topic


def partition(key: str, n: int) -> int:
    """A stable process index for ``key`` (crc32: the same in every process and every run)."""
    return zlib.crc32(key.encode()) % n


class Partitioner:
    """Which of ``n`` parts a message's topic goes to (:func:`partition_key`), remembered
    per topic: it is asked for every message. Used for the processing processes and for
    the store stage's parts."""

    #: Topics remembered at most: they are bounded by devices; this only guards memory.
    KEPT = 100_000

    def __init__(self, prefix: str, n: int) -> None:
        self.prefix = prefix
        self.n = n
        self._parts: dict[str, tuple[int, bool]] = {}

    def __call__(self, topic: str) -> tuple[int, bool]:
        """(part, whether the topic is outside the cityops prefix: then its own key)."""
        part = self._parts.get(topic)
        if part is None:
            if len(self._parts) > self.KEPT:
                self._parts.clear()
            key = partition_key(topic, self.prefix)
            part = self._parts[topic] = (partition(key, self.n), key == topic)
        return part


# ---- the work on one batch -----------------------------------------------------------------


class BatchProcessor(Generic[Token]):
    """Store (database), then publish (live state, rules) batches, each stage retried until done.

    The same code runs in the worker process (``processes=0``) and in each processing
    process; ``token`` is whatever the caller needs back when a batch is done.
    """

    def __init__(
        self,
        pipeline: IngestPipeline,
        rules: RuleRunner | None = None,
        *,
        on_degraded: Callable[[str, str | None], None] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.rules = rules
        #: why storage is failing right now, or None
        self.degraded: str | None = None
        self._on_degraded = on_degraded
        engine = getattr(pipeline, "engine", None)
        postgres = engine is not None and engine.dialect.name == "postgresql"
        #: parts a batch is written in, at once (see STORE_CONNECTIONS)
        self.store_parts = STORE_CONNECTIONS if postgres else 1
        self._part_of = Partitioner(pipeline.router.prefix, self.store_parts) if postgres else None
        #: (stage, thread) retrying right now: the stage is degraded while any is
        self._failing: set[tuple[str, int]] = set()
        self._failing_lock = threading.Lock()

    def store(self, inbound: Sequence[Inbound], stop: threading.Event) -> StoredBatch | None:
        """Parse and write one batch (outside the pipelined :meth:`run`)."""
        return self._stored(lambda: self.pipeline.store_isolating(inbound), stop)

    def store_prepared(self, prepared: PreparedBatch, stop: threading.Event) -> StoredBatch | None:
        return self._stored(lambda: self.pipeline.store_prepared_isolating(prepared), stop)

    def _stored(self, action: Callable[[], StoredBatch], stop: threading.Event) -> StoredBatch | None:
        started = time.perf_counter()
        stored = self._until_done("database", action, stop)
        if stored is not None:
            metrics.STORE_SECONDS.observe(time.perf_counter() - started)
            if stored.result.rejected:
                log.info(
                    "rejected %d: %s", len(stored.result.rejected), dict(stored.result.rejected_by_reason)
                )
        return stored

    def publish(self, stored: StoredBatch, stop: threading.Event) -> bool:
        """Live write (retried until done) and rules, one after the other; False if stopped."""
        if not self.write_live(stored, stop):
            return False
        self.pipeline.run_hooks(stored)
        return True

    def write_live(self, stored: StoredBatch, stop: threading.Event) -> bool:
        return self._until_done("live", lambda: self.pipeline.write_live(stored) or True, stop) is not None

    def run(
        self,
        next_batch: Callable[[], tuple[Token, Sequence[Inbound]] | None],
        done: Callable[[Token, StoredBatch], None],
        stop: threading.Event,
        *,
        idle: Callable[[], bool] = lambda: False,
    ) -> None:
        """Batches from ``next_batch`` through the four stages, overlapped; ``done`` after each.

        ``next_batch`` returns None when nothing arrived in a while; the loop ends when
        ``stop`` is set or ``idle()`` says there will be no more. Committed batches still
        get their live write, the rules and ``done`` when stopping (tried at least once).
        """
        prepared: queue.Queue[tuple[Token, list[PreparedBatch]] | None] = queue.Queue(maxsize=STAGE_BACKLOG)
        committed: queue.Queue[tuple[Token, StoredBatch] | None] = queue.Queue(maxsize=STAGE_BACKLOG)
        written: queue.Queue[tuple[Token, StoredBatch] | None] = queue.Queue(maxsize=STAGE_BACKLOG)
        rules = threading.Thread(
            target=self._rule_stage, args=(written, done), name="ingest-rules", daemon=True
        )
        live = threading.Thread(
            target=self._live_stage, args=(committed, written, rules, stop), name="ingest-live", daemon=True
        )
        store = threading.Thread(
            target=self._store_stage, args=(prepared, committed, live, stop), name="ingest-store", daemon=True
        )
        for thread in (rules, live, store):
            thread.start()
        try:
            while not stop.is_set() and store.is_alive():
                item = next_batch()
                if item is None:
                    if idle():
                        break
                    continue
                token, inbound = item
                with _busy("prepare"):
                    parts = [self.pipeline.prepare(part) for part in self.split(inbound)]
                _hand_on(prepared, (token, parts), store)
        finally:
            # The later stages finish what was committed (unless stopped mid-outage: then
            # those messages stay unacknowledged and the broker redelivers them).
            _hand_on(prepared, None, store)
            for thread in (store, live, rules):
                thread.join()

    def split(self, inbound: Sequence[Inbound]) -> list[Sequence[Inbound]]:
        """A batch in :attr:`store_parts` parts by device (see :data:`STORE_CONNECTIONS`).

        Whole when there is one part, or when a message's topic is outside the cityops
        prefix: a SensorThings reading joins its device's native reading of the same
        instant, which may sit in the other part.
        """
        if self._part_of is None:
            return [inbound]
        parts: list[list[Inbound]] = [[] for _ in range(self.store_parts)]
        for message in inbound:
            part, outside = self._part_of(message.topic)
            if outside:
                return [inbound]
            parts[part].append(message)
        return [part for part in parts if part]

    def _store_stage(
        self,
        prepared: queue.Queue[tuple[Token, list[PreparedBatch]] | None],
        committed: queue.Queue[tuple[Token, StoredBatch] | None],
        live: threading.Thread,
        stop: threading.Event,
    ) -> None:
        """Prepared batches in order → the database (their parts at once) → the live stage."""
        helpers = ThreadPoolExecutor(max(1, self.store_parts - 1), thread_name_prefix="ingest-store-part")
        try:
            while live.is_alive():
                item = prepared.get()
                if item is None:
                    return
                if stop.is_set():
                    continue  # not stored, not acknowledged: the broker delivers it again
                token, parts = item
                with _busy("store"):
                    # The next batch waits for every part of this one: each device keeps its order.
                    others = [helpers.submit(self.store_prepared, part, stop) for part in parts[1:]]
                    stored = [self.store_prepared(parts[0], stop), *(f.result() for f in others)]
                if any(s is None for s in stored):
                    return  # stopped during a database outage: the batch stays unacknowledged
                # Even when stopping: a committed batch still gets its live write and ack.
                _hand_on(committed, (token, functools.reduce(merge_stored, stored)), live)  # type: ignore[arg-type]
        finally:
            helpers.shutdown(wait=True)
            _hand_on(committed, None, live)

    def _live_stage(
        self,
        committed: queue.Queue[tuple[Token, StoredBatch] | None],
        written: queue.Queue[tuple[Token, StoredBatch] | None],
        rules: threading.Thread,
        stop: threading.Event,
    ) -> None:
        """Committed batches in order → live state → the rule stage."""
        try:
            while rules.is_alive():
                item = committed.get()
                if item is None:
                    return
                with _busy("live"):
                    written_live = self.write_live(item[1], stop)
                if not written_live:
                    return  # stopped during a Redis outage: the batch stays unacknowledged
                _hand_on(written, item, rules)
        finally:
            _hand_on(written, None, rules)

    def _rule_stage(
        self,
        written: queue.Queue[tuple[Token, StoredBatch] | None],
        done: Callable[[Token, StoredBatch], None],
    ) -> None:
        """Batches written live, in order → rules and other hooks, ``done``; the rule tick between."""
        next_tick = next_watch = time.monotonic()
        while True:
            if time.monotonic() >= next_watch:
                next_watch = time.monotonic() + LIVE_WATCH_S
                self.watch_live_state()
            try:
                item = written.get(timeout=TICK_POLL_S)
            except queue.Empty:
                item = _IDLE
            if item is None:
                return
            if item is not _IDLE:
                token, stored = item
                with _busy("rules"):
                    self.pipeline.run_hooks(stored)
                    done(token, stored)
            if self.rules is not None and time.monotonic() >= next_tick:
                next_tick = time.monotonic() + self.rules.interval_s
                with _busy("rules"):
                    self._tick_rules()

    def warm_up(self) -> None:
        """Before the first message: one database connection per store part, ready for the
        readings' statement, and the rules' first-batch checks. A worker that restarts under
        load otherwise pays these in its first batches while the backlog grows behind them.
        Failing here is not fatal: the stages retry their writes anyway."""
        try:
            self.pipeline.warm_up(self.store_parts)
            if self.rules is not None:
                self.rules.warm_up()
        except Exception as exc:  # the database or Redis away: the first batch will say so
            log.warning("warm-up failed: %s: %s", type(exc).__name__, exc)

    def watch_live_state(self) -> None:
        """Rebuild the live state from the database when Redis has lost it (or never had it).

        Runs before the worker takes its first message, then in the rule stage between
        batches, so it never races this worker's own alert writes; the rebuild never moves a
        device backwards, so the live stage's reading writes (and another worker's) are safe
        meanwhile. Redis away: the next batch's live write reports it; nothing to do here.
        """
        live = self.pipeline.live
        try:
            if not live_state_lost(live):
                return
            with self.pipeline.engine.connect() as conn:
                rebuilt = rebuild_live_state(live, conn)
        except Exception as exc:  # a failed check or rebuild is tried again at the next watch
            log.warning("live state check failed: %s: %s", type(exc).__name__, exc)
            return
        log.warning(
            "live state rebuilt from the database (Redis was empty): %d devices, %d readings, "
            "%d alerts, %d open orders in %.2f s",
            rebuilt.devices,
            rebuilt.readings,
            rebuilt.alerts,
            rebuilt.open_tickets,
            rebuilt.seconds,
        )

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
        me = threading.get_ident()
        while True:
            try:
                value = action()
            except Exception as exc:  # storage trouble: keep the batch unacknowledged and retry
                first_line = (str(exc).splitlines() or [""])[0][:200]
                with self._failing_lock:
                    self._failing.add((stage, me))
                self._set_degraded(stage, f"{stage}: {type(exc).__name__}: {first_line}")
                if stop.is_set():
                    return None
                log.warning("batch not stored (%s); retrying in %.1f s", self.degraded, delay)
                stop.wait(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            with self._failing_lock:
                self._failing.discard((stage, me))
                # Recovered only when no other thread of this stage (a store part) still fails.
                recovered = not any(s == stage for s, _ in self._failing)
            if recovered:
                if self.degraded is not None and self.degraded.startswith(stage):
                    log.info("%s writes recovered", stage)
                    self._set_degraded(stage, None)
                metrics.DEGRADED.labels(stage).set(0)
            return value

    def _set_degraded(self, stage: str, reason: str | None) -> None:
        self.degraded = reason
        metrics.DEGRADED.labels(stage).set(0 if reason is None else 1)
        if self._on_degraded is not None:
            self._on_degraded(stage, reason)


#: The rule stage's "nothing arrived": time to look at the rule tick.
_IDLE: Any = object()


@contextlib.contextmanager
def _busy(stage: str) -> Iterator[None]:
    """Count the time inside toward ``stage``'s busy seconds (metrics.STAGE_BUSY)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        metrics.STAGE_BUSY.labels(stage).inc(time.perf_counter() - started)


def _hand_on(to: queue.Queue[Any], item: Any, consumer: threading.Thread) -> None:
    """Put ``item`` for the next stage, waiting for room as long as that stage runs."""
    while consumer.is_alive():
        try:
            to.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


# ---- processing processes ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PartReport:
    """A processing process's answer for its part of batch ``seq``: committed and live."""

    seq: int
    stored: dict[str, int]
    duplicates: dict[str, int]
    rejected: dict[str, int]


#: One message as sent to a processing process: (topic, payload, receive time as epoch s).
RawMessage = tuple[str, bytes, float]


#: Young objects between two collections of the cycle collector (Python's default: 700).
GC_YOUNG_THRESHOLD = 50_000


def settle_heap() -> None:
    """Set the start-up heap aside from the cycle collector, and collect less often.

    A worker allocates a few objects per message for every stage (rows, samples, Redis
    replies), and the collector's frequent passes also walked everything loaded at start-up
    (district shapes, grid index, schemas, the rule set): about half of the rule engine's
    time per reading (bench/bench_rules.py, rules alone: 53–90 → 23–38 ms per 1,000
    messages). What start-up loaded lives as long as the process, so it is frozen out of
    the collector's view; what stays young is collected every :data:`GC_YOUNG_THRESHOLD`
    allocations, a few MB at most. Called by ``cityops ingest`` for the worker process (not
    yet in processing processes: with it their exit at the end of a run outlasted the
    worker's check of how they ended).
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def _processing_main(spec: PipelineSpec, index: int, inbox: Any, outbox: Any) -> None:
    """A processing process: batches from ``inbox``, a :class:`PartReport` each to ``outbox``.

    Ends after the worker sends None (finishing what it holds) or when the worker is gone.
    """
    logging.basicConfig(
        level=spec.settings.log_level,
        format=f"%(asctime)s %(levelname)s %(name)s[{index}]: %(message)s",
    )
    send_lock = threading.Lock()

    def send(message: Any) -> None:
        with send_lock:  # the stages (degraded notes, reports) all send
            outbox.send(message)

    pipeline, rules = build_pipeline(spec)
    processor: BatchProcessor[int] = BatchProcessor(
        pipeline, rules, on_degraded=lambda stage, reason: send(("degraded", stage, reason))
    )
    stop = threading.Event()
    ended = threading.Event()
    # A thread empties the pipe into a local queue, so the worker never blocks on sending
    # while this process waits on its database (the worker bounds what is in flight).
    received: queue.Queue[tuple[int, list[RawMessage]] | None] = queue.Queue()

    def read_inbox() -> None:
        while True:
            try:
                item = inbox.recv()
            except (EOFError, OSError):  # the worker is gone: nothing can be acknowledged any more
                stop.set()
                return
            received.put(item)
            if item is None:
                return

    threading.Thread(target=read_inbox, name="ingest-inbox", daemon=True).start()
    processor.warm_up()
    send(("ready", os.getpid()))

    def next_batch() -> tuple[int, list[Inbound]] | None:
        try:
            item = received.get(timeout=TICK_POLL_S)
        except queue.Empty:
            return None
        if item is None:
            ended.set()
            return None
        seq, raw = item
        return seq, [Inbound(t, p, datetime.fromtimestamp(w, UTC)) for t, p, w in raw]

    def done(seq: int, stored: StoredBatch) -> None:
        r = stored.result
        send(("done", PartReport(seq, dict(r.stored), dict(r.duplicates), dict(r.rejected_by_reason))))

    try:
        processor.run(next_batch, done, stop, idle=ended.is_set)
    except (BrokenPipeError, EOFError, OSError):
        pass  # the worker is gone
    finally:
        pipeline.engine.dispose()


@dataclass(slots=True)
class _InFlight:
    """A batch handed to the processing processes, waiting for its parts' reports."""

    messages: Sequence[ReceivedMessage]
    parts: int
    result: BatchResult = field(default_factory=BatchResult)


class _ProcessPool:
    """The worker's processing processes and the batches they hold."""

    def __init__(self, worker: IngestWorker, spec: PipelineSpec, n: int) -> None:
        self.worker = worker
        self.spec = spec
        self.n = n
        # spawn, not fork: the worker process already runs threads (the MQTT client, and
        # in tests the test runner's), and a forked child could inherit a held lock.
        self.ctx = mp.get_context("spawn")
        self.processes: list[Any] = []
        self.inboxes: list[Any] = []
        self.outboxes: list[Any] = []
        self.pids: list[int] = []
        self.lock = threading.Lock()
        self.in_flight: dict[int, _InFlight] = {}
        self.slots = threading.Semaphore(IN_FLIGHT_BATCHES)
        #: why the pool failed (a process died), or None
        self.failed: str | None = None
        self.stopping = False
        self._part_of = Partitioner(worker.pipeline.router.prefix, n)

    def start(self) -> None:
        for i in range(self.n):
            inbox_r, inbox_w = self.ctx.Pipe(duplex=False)
            outbox_r, outbox_w = self.ctx.Pipe(duplex=False)
            process = self.ctx.Process(
                target=_processing_main,
                args=(self.spec, i, inbox_r, outbox_w),
                name=f"cityops-ingest-{i}",
                daemon=True,
            )
            process.start()
            inbox_r.close()
            outbox_w.close()
            self.processes.append(process)
            self.inboxes.append(inbox_w)
            self.outboxes.append(outbox_r)
        deadline = time.monotonic() + PROCESS_START_TIMEOUT_S
        for i, (process, outbox) in enumerate(zip(self.processes, self.outboxes, strict=True)):
            ready = mp_connection.wait([outbox, process.sentinel], max(0.0, deadline - time.monotonic()))
            message = outbox.recv() if outbox in ready else None
            if not (isinstance(message, tuple) and message[0] == "ready"):
                self.terminate()
                raise ProcessingFailed(f"processing process {i} did not start (exit code {process.exitcode})")
            self.pids.append(message[1])
        log.info("ingest worker %s: %d processing processes", self.worker.client.client_id, self.n)

    def index(self, topic: str) -> int:
        return self._part_of(topic)[0]

    def submit(self, seq: int, batch: Sequence[ReceivedMessage]) -> None:
        parts: dict[int, list[RawMessage]] = {}
        for m in batch:
            parts.setdefault(self.index(m.topic), []).append((m.topic, m.payload, m.received_wall))
        with self.lock:
            self.in_flight[seq] = _InFlight(batch, len(parts))
        for i, raw in parts.items():
            try:
                self.inboxes[i].send((seq, raw))
            except OSError as exc:
                self.fail(f"processing process {i} is gone ({type(exc).__name__})")
                return

    def collect(self) -> None:
        """Reports → acknowledgements, in batch order; watches the processes. Own thread."""
        live = dict(zip(self.outboxes, range(self.n), strict=True))
        sentinels = {p.sentinel: i for i, p in enumerate(self.processes)}
        while live and self.failed is None:
            for ready in mp_connection.wait([*live, *sentinels], timeout=TICK_POLL_S):
                if ready in sentinels:
                    i = sentinels.pop(ready)
                    code = self.processes[i].exitcode
                    if not (self.stopping and code == 0):
                        self.fail(f"processing process {i} (pid {self.pids[i]}) exited with code {code}")
                    continue
                try:
                    message = ready.recv()
                except (EOFError, OSError):
                    i = live.pop(ready)
                    if not self.stopping:
                        self.fail(f"processing process {i} (pid {self.pids[i]}) closed its pipe")
                    continue
                self.receive(message)

    def receive(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "degraded":
            _, stage, reason = message
            self.worker.degraded = reason
            metrics.DEGRADED.labels(stage).set(0 if reason is None else 1)
            return
        if kind != "done":
            return
        report: PartReport = message[1]
        finished: list[_InFlight] = []
        with self.lock:
            entry = self.in_flight[report.seq]
            entry.parts -= 1
            entry.result.stored.update(report.stored)
            entry.result.duplicates.update(report.duplicates)
            for reason, n in report.rejected.items():
                entry.result.rejected_counts[reason] += n
            # Batches are acknowledged in the order they were received.
            while self.in_flight and self.failed is None:
                first = next(iter(self.in_flight))
                if self.in_flight[first].parts:
                    break
                finished.append(self.in_flight.pop(first))
        for entry in finished:
            self.worker.client.ack_many(entry.messages)
            self.worker._count(entry.result, entry.messages)
            self.slots.release()

    def fail(self, reason: str) -> None:
        if self.failed is None:
            self.failed = reason
            log.error("%s: stopping, nothing more is acknowledged", reason)
        for _ in range(IN_FLIGHT_BATCHES):  # wake a receiver waiting for a slot
            self.slots.release()

    def close(self) -> None:
        """Let the processes finish what they hold (unless failed), then end them."""
        self.stopping = True
        if self.failed is None:
            for inbox in self.inboxes:
                with contextlib.suppress(OSError):  # already gone: nothing to finish
                    inbox.send(None)
        deadline = time.monotonic() + PROCESS_STOP_TIMEOUT_S
        for process in self.processes:
            process.join(max(0.0, deadline - time.monotonic()) if self.failed is None else 0)
        self.terminate()

    def terminate(self) -> None:
        for process in self.processes:
            if process.is_alive():
                process.terminate()
        for process in self.processes:
            process.join(5)
            if process.is_alive():
                process.kill()


# ---- the worker ----------------------------------------------------------------------------


class _Committed(NamedTuple):
    """A received batch, and what the database committed of it."""

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
        processes: int = 0,
        spec: PipelineSpec | None = None,
    ) -> None:
        if processes and spec is None:
            raise ValueError("processing processes need a PipelineSpec to build their pipelines")
        self.client = client
        #: in-process work; with processes, only its topic router is used here
        self.pipeline = pipeline
        #: time-based rules (staleness, emptied windows, SLA escalation), ticked from run()
        self.rules = rules
        #: subscribe through shared subscriptions (several workers) or plainly (one worker)
        self.shared = shared
        #: processing processes (0: the batches are processed in this process)
        self.processes = processes
        self.spec = spec
        self.processor: BatchProcessor[Sequence[ReceivedMessage]] = BatchProcessor(pipeline, rules)
        self._degraded: str | None = None
        #: set once subscribed: publishers started after it lose nothing
        self.ready = threading.Event()
        self.totals = BatchResult()
        #: process ids of the processing processes while running (for tests and the bench)
        self.process_ids: list[int] = []

    @property
    def degraded(self) -> str | None:
        """Why storage is failing right now, or None."""
        return self.processor.degraded if not self.processes else self._degraded

    @degraded.setter
    def degraded(self, reason: str | None) -> None:
        self._degraded = reason

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        engine: sa.Engine | None = None,
        live: LiveStore | None = None,
        mqtt_url: str | None = None,
        client_id: str | None = None,
        rules: bool = True,
    ) -> IngestWorker:
        url = mqtt_url or (settings.mqtt.url if settings.mqtt else None)
        if url is None:
            raise ValueError("no MQTT broker URL")
        # A stable id, so a restarted worker resumes its broker session and its unacked messages.
        client = MqttClient(url, client_id or f"cityops-ingest-{settings.worker_id}", persistent_session=True)
        spec = PipelineSpec(settings, rules=rules)
        # The in-process Redis store and the SQLite file belong to this process: the
        # embedded demo processes its batches here.
        shareable = not (settings.embedded_redis or settings.embedded_database or engine or live)
        processes = settings.ingest_processes if shareable else 0
        if processes:
            from models.db import create_engine_for

            # Only the topic router is used here; each processing process builds its own.
            pipeline = IngestPipeline(
                create_engine_for(settings.effective_database_url),
                LiveStore(connect_redis(settings)),
                prefix=settings.topic_prefix,
                datastreams=load_datastreams(settings.sta_datastreams),
            )
            runner = None
        else:
            pipeline, runner = build_pipeline(spec, engine=engine, live=live)
        # The embedded broker serves exactly one worker (the one in the demo process; a
        # standalone worker needs a broker URL). rumqttd 0.20 panics when a persistent
        # session holding a shared subscription reconnects with unacknowledged messages
        # (seen in tests), while plain persistent subscriptions resume correctly — so with
        # the embedded broker the worker subscribes plainly. Nothing else changes. A lone
        # worker on Mosquitto may subscribe plainly too: Mosquitto 2.0 does not keep shared
        # subscriptions across its restart (docs/mqtt.md, Broker restarts).
        shared = settings.mqtt is not None and settings.ingest_subscription == "shared"
        return cls(client, pipeline, shared=shared, rules=runner, processes=processes, spec=spec)

    def run(self, stop: threading.Event) -> None:
        """Receive, process and acknowledge until ``stop`` is set.

        Raises :class:`ProcessingFailed` when a processing process died (nothing after it
        is acknowledged; restart the worker).
        """
        # Its figures for the administrators' system page, every few seconds while it runs.
        with heartbeat.beating(self):
            if self.processes:
                self._run_processes(stop)
            else:
                self._run_here(stop)

    def _subscribe(self) -> None:
        self.client.start()
        for topic_filter, group in self.pipeline.router.subscriptions(SHARED_GROUP):
            self.client.subscribe(topic_filter, qos=1, shared_group=group if self.shared else None)
        log.info("ingest worker %s subscribed", self.client.client_id)

    def _receive(self) -> list[ReceivedMessage]:
        batch = self.client.get_batch(BATCH_MAX, timeout=BATCH_WAIT_S)
        metrics.CONNECTED.set(1 if self.client.connected.is_set() else 0)
        metrics.QUEUE_DEPTH.set(self.client.stats().queued)
        return batch

    def _run_here(self, stop: threading.Event) -> None:
        # A live state Redis lost is rebuilt before the first message is taken: rebuilt by
        # the rule stage instead, it held up the first batches' rules and acknowledgements
        # (seconds, for a city) while messages kept arriving.
        self.processor.watch_live_state()
        self.processor.warm_up()
        self._subscribe()
        self.ready.set()

        def next_batch() -> tuple[Sequence[ReceivedMessage], list[Inbound]] | None:
            batch = self._receive()
            return (batch, _inbound(batch)) if batch else None

        try:
            self.processor.run(next_batch, self._acknowledge, stop)
        finally:
            self.client.stop()
            metrics.CONNECTED.set(0)

    def _run_processes(self, stop: threading.Event) -> None:
        assert self.spec is not None
        pool = _ProcessPool(self, self.spec, self.processes)
        pool.start()  # before subscribing: a process that cannot start fails start-up
        self.process_ids = list(pool.pids)
        collector = threading.Thread(target=pool.collect, name="ingest-collect", daemon=True)
        collector.start()
        try:
            self._subscribe()
            self.ready.set()
            seq = 0
            while not stop.is_set() and pool.failed is None:
                if not pool.slots.acquire(timeout=TICK_POLL_S):
                    continue
                if pool.failed is not None:
                    break
                batch = self._receive()
                if not batch:
                    pool.slots.release()
                    continue
                pool.submit(seq, batch)
                seq += 1
        finally:
            pool.close()
            collector.join(PROCESS_STOP_TIMEOUT_S)
            self.client.stop()
            metrics.CONNECTED.set(0)
            self.process_ids = []
        if pool.failed is not None:
            raise ProcessingFailed(pool.failed)

    def handle(self, batch: Sequence[ReceivedMessage], stop: threading.Event) -> bool:
        """Store, publish and acknowledge one batch here; False if stopped before it was done."""
        stored = self.processor.store(_inbound(batch), stop)
        if stored is None or not self.processor.publish(stored, stop):
            return False
        self._acknowledge(batch, stored)
        return True

    def _acknowledge(self, batch: Sequence[ReceivedMessage], stored: StoredBatch) -> None:
        self.client.ack_many(batch)
        self._count(stored.result, batch)

    def _count(self, result: BatchResult, batch: Sequence[ReceivedMessage]) -> None:
        self.totals.stored.update(result.stored)
        self.totals.duplicates.update(result.duplicates)
        rejected = result.rejected_by_reason
        self.totals.rejected_counts.update(rejected)
        metrics.BATCH_SIZE.observe(len(batch))
        stored = sum(v for k, v in result.stored.items() if k != "devices")
        metrics.MESSAGES.labels("stored").inc(stored)
        metrics.MESSAGES.labels("duplicate").inc(sum(result.duplicates.values()))
        metrics.MESSAGES.labels("rejected").inc(sum(rejected.values()))
        for table, n in result.stored.items():
            metrics.ROWS.labels(table).inc(n)
        for reason, n in rejected.items():
            metrics.REJECTED.labels(reason).inc(n)
        now = time.monotonic()
        for m in batch:
            metrics.LATENCY_SECONDS.observe(now - m.received_at)


def _inbound(batch: Sequence[ReceivedMessage]) -> list[Inbound]:
    return [Inbound(m.topic, m.payload, datetime.fromtimestamp(m.received_wall, UTC)) for m in batch]
