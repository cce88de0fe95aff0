"""A worker's four stages (parsing, database, live state, rules) overlap, keep batch order,
and a batch is reported only after all of them are done with it."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from prometheus_client import REGISTRY

from ingest import worker as worker_module
from ingest.pipeline import BatchResult, Inbound, StoredBatch
from ingest.worker import BatchProcessor

WAIT_S = 5.0


class StagedPipeline:
    """Stands in for IngestPipeline: records what each stage did, in order, per thread.

    ``gates[(stage, n)]``, when set, must open before that stage finishes batch ``n``.
    """

    def __init__(self) -> None:
        self.events: list[tuple[str, int]] = []
        self.started: dict[tuple[str, int], threading.Event] = {}
        self.gates: dict[tuple[str, int], threading.Event] = {}
        self.threads: dict[str, set[str]] = {}
        self.lock = threading.Lock()
        self.live_failures = 0
        self.live = None
        self.engine = None
        #: seconds each stage spends on a batch
        self.delays: dict[str, float] = {}

    def _enter(self, stage: str, n: int) -> None:
        time.sleep(self.delays.get(stage, 0.0))
        with self.lock:
            self.threads.setdefault(stage, set()).add(threading.current_thread().name)
            self.started.setdefault((stage, n), threading.Event()).set()
        gate = self.gates.get((stage, n))
        if gate is not None and not gate.wait(WAIT_S):
            raise AssertionError(f"{stage} of batch {n} waited in vain: the stages do not overlap")
        with self.lock:
            self.events.append((stage, n))

    def was_started(self, stage: str, n: int) -> threading.Event:
        with self.lock:
            return self.started.setdefault((stage, n), threading.Event())

    def prepare(self, inbound: Sequence[Inbound]) -> int:
        n = int(inbound[0].topic)
        self._enter("prepare", n)
        return n

    def store_prepared_isolating(self, n: int) -> StoredBatch:
        self._enter("store", n)
        return StoredBatch(BatchResult(), [], {"n": [{"n": n}]})

    def write_live(self, stored: StoredBatch) -> None:
        n = stored.accepted["n"][0]["n"]
        if self.live_failures:
            self.live_failures -= 1
            raise ConnectionError("redis away")
        self._enter("live", n)

    def run_hooks(self, stored: StoredBatch) -> None:
        self._enter("rules", stored.accepted["n"][0]["n"])


@pytest.fixture(autouse=True)
def quiet_watch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_module, "live_state_lost", lambda live: False)
    monkeypatch.setattr(worker_module, "RETRY_MIN_S", 0.0)
    monkeypatch.setattr(worker_module, "RETRY_MAX_S", 0.0)


def run(pipeline: StagedPipeline, batches: int, done: list[int], stop: threading.Event) -> threading.Thread:
    pending = list(range(batches))
    lock = threading.Lock()

    def next_batch() -> tuple[int, list[Inbound]] | None:
        with lock:
            if not pending:
                return None
            n = pending.pop(0)
        return n, [Inbound(str(n), b"{}", datetime.now(UTC))]

    def report(token: int, stored: StoredBatch) -> None:
        # Reported only once the rules saw the batch.
        assert ("rules", token) in pipeline.events
        done.append(token)

    processor: BatchProcessor[int] = BatchProcessor(pipeline)  # type: ignore[arg-type]
    thread = threading.Thread(
        target=processor.run, args=(next_batch, report, stop), kwargs={"idle": lambda: not pending}
    )
    thread.start()
    return thread


STAGES = ("prepare", "store", "live", "rules")


def test_the_four_stages_work_on_four_batches_at_once() -> None:
    pipeline = StagedPipeline()
    # The rules may finish batch 0 only once the live stage holds batch 1, the store stage
    # batch 2 and the parsing batch 3: one after the other, this would wait in vain.
    released = threading.Event()
    pipeline.gates[("rules", 0)] = released
    done: list[int] = []
    stop = threading.Event()
    thread = run(pipeline, 5, done, stop)
    assert pipeline.was_started("live", 1).wait(WAIT_S)
    assert pipeline.was_started("store", 2).wait(WAIT_S)
    assert pipeline.was_started("prepare", 3).wait(WAIT_S)
    assert done == []  # nothing reported while batch 0 is with the rules
    released.set()
    thread.join(WAIT_S)
    assert not thread.is_alive()
    assert done == [0, 1, 2, 3, 4]
    # Each stage takes the batches in order, each in a thread of its own.
    for stage in STAGES:
        assert [n for s, n in pipeline.events if s == stage] == [0, 1, 2, 3, 4]
    names = [pipeline.threads[s] for s in STAGES]
    assert all(len(n) == 1 for n in names)
    assert len(set.union(*names)) == 4


def test_a_failed_live_write_is_retried_before_the_rules_see_the_batch() -> None:
    pipeline = StagedPipeline()
    pipeline.live_failures = 2
    done: list[int] = []
    thread = run(pipeline, 2, done, threading.Event())
    thread.join(WAIT_S)
    assert done == [0, 1]
    assert pipeline.events.index(("live", 0)) < pipeline.events.index(("rules", 0))


def test_a_batch_committed_before_the_stop_still_gets_its_live_write_rules_and_report() -> None:
    pipeline = StagedPipeline()
    stop = threading.Event()
    hold = threading.Event()
    pipeline.gates[("live", 0)] = hold
    done: list[int] = []
    thread = run(pipeline, 1, done, stop)
    assert pipeline.was_started("live", 0).wait(WAIT_S)
    stop.set()
    hold.set()
    thread.join(WAIT_S)
    assert not thread.is_alive()
    assert done == [0]
    assert pipeline.events == [("prepare", 0), ("store", 0), ("live", 0), ("rules", 0)]


def test_the_rule_stage_ticks_the_rules_when_no_batch_comes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_module, "TICK_POLL_S", 0.01)
    ticks = threading.Event()

    class Rules:
        interval_s = 0.01

        def tick(self) -> None:
            ticks.set()

    processor: BatchProcessor[int] = BatchProcessor(StagedPipeline(), Rules())  # type: ignore[arg-type]
    stop = threading.Event()
    thread = threading.Thread(target=processor.run, args=(lambda: None, lambda t, s: None, stop))
    thread.start()
    try:
        assert ticks.wait(WAIT_S)
    finally:
        stop.set()
        thread.join(WAIT_S)
    assert not thread.is_alive()


def test_a_batch_is_split_by_device_for_postgresql_and_kept_whole_otherwise() -> None:
    class Engine:
        class dialect:  # stands in for SQLAlchemy's attribute
            name = "postgresql"

    pipeline = StagedPipeline()
    pipeline.engine = Engine()  # type: ignore[assignment]
    pipeline.router = type("Router", (), {"prefix": "cityops/v1"})()  # type: ignore[attr-defined]
    processor: BatchProcessor[int] = BatchProcessor(pipeline)  # type: ignore[arg-type]
    assert processor.store_parts == worker_module.STORE_CONNECTIONS == 2
    now = datetime.now(UTC)
    topics = [f"cityops/v1/sensors/d{i}/{kind}" for i in range(20) for kind in ("meta", "obs", "obs")]
    topics += ["cityops/v1/hotline/tickets", "cityops/v1/hotline/tickets/T1/events"]
    batch = [Inbound(t, b"{}", now) for t in topics]
    parts = processor.split(batch)
    assert len(parts) == 2 and sum(len(p) for p in parts) == len(batch)
    # A device's messages, and every 12345 message, stay in one part and in order.
    for key in [f"/d{i}/" for i in range(20)] + ["/hotline/"]:
        holding = [p for p in parts if any(key in m.topic for m in p)]
        assert len(holding) == 1
        assert [m.topic for m in holding[0] if key in m.topic] == [t for t in topics if key in t]
    # A SensorThings topic (outside the prefix) keeps the batch whole.
    sta = [*batch, Inbound("v1.1/Datastreams(7)/Observations", b"{}", now)]
    assert processor.split(sta) == [sta]
    # SQLite (one writer): whole.
    Engine.dialect.name = "sqlite"
    assert BatchProcessor(pipeline).split(batch) == [batch]  # type: ignore[arg-type]


def test_the_store_stays_degraded_while_one_part_still_fails() -> None:
    processor: BatchProcessor[int] = BatchProcessor(StagedPipeline())  # type: ignore[arg-type]
    stop = threading.Event()
    failing = threading.Event()
    failing.set()
    failed_once = threading.Event()

    def flaky() -> str:
        if failing.is_set():
            failed_once.set()
            raise ConnectionError("connection to the database lost")
        return "stored"

    part = threading.Thread(target=processor._until_done, args=("database", flaky, stop))
    part.start()
    assert failed_once.wait(WAIT_S)
    # The other part of the batch is written meanwhile: the stage is still degraded.
    assert processor._until_done("database", lambda: "stored", stop) == "stored"
    assert processor.degraded is not None and processor.degraded.startswith("database")
    failing.clear()
    part.join(WAIT_S)
    assert not part.is_alive()
    assert processor.degraded is None


def busy_seconds(stage: str) -> float:
    return REGISTRY.get_sample_value("cityops_ingest_stage_busy_seconds_total", {"stage": stage}) or 0.0


def test_each_stage_counts_the_time_it_spends_on_batches() -> None:
    # What an operator reads to see which stage limits a worker: the one busy ~1 s per second.
    pipeline = StagedPipeline()
    pipeline.delays = {"prepare": 0.01, "store": 0.06, "live": 0.03, "rules": 0.02}
    before = {stage: busy_seconds(stage) for stage in STAGES}
    done: list[int] = []
    thread = run(pipeline, 4, done, threading.Event())
    thread.join(WAIT_S)
    assert done == [0, 1, 2, 3]
    spent = {stage: busy_seconds(stage) - before[stage] for stage in STAGES}
    for stage, delay in pipeline.delays.items():
        assert spent[stage] >= 4 * delay, (stage, spent)
    assert spent["store"] > spent["live"] > spent["prepare"]
