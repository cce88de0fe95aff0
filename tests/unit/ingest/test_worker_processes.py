"""How a worker splits batches over processing processes and when it acknowledges them."""

from __future__ import annotations

import threading
import time
import zlib

import pytest

from ingest.mqtt import ReceivedMessage
from ingest.worker import IngestWorker, PartReport, PipelineSpec, _ProcessPool, partition, partition_key
from models.config import ConfigError, Settings, load_settings

PREFIX = "cityops/v1"


class FakeClient:
    client_id = "fake"

    def __init__(self) -> None:
        self.acked: list[int] = []
        self.connected = threading.Event()

    def ack_many(self, messages: list[ReceivedMessage]) -> int:
        self.acked.extend(m.mid for m in messages)
        return len(messages)


class FakeInbox:
    def __init__(self) -> None:
        self.sent: list[tuple[int, list[tuple[str, bytes, float]]]] = []

    def send(self, item: tuple[int, list[tuple[str, bytes, float]]]) -> None:
        self.sent.append(item)


class FakeRouter:
    prefix = PREFIX


class FakePipeline:
    router = FakeRouter()


def message(mid: int, topic: str) -> ReceivedMessage:
    return ReceivedMessage(topic, b"{}", 1, False, mid, time.monotonic(), time.time())


@pytest.fixture
def pool() -> _ProcessPool:
    spec = PipelineSpec(Settings(mqtt=None, redis_url=None, database_url=None))
    worker = IngestWorker(FakeClient(), FakePipeline(), processes=3, spec=spec)  # type: ignore[arg-type]
    p = _ProcessPool(worker, spec, 3)
    p.inboxes = [FakeInbox(), FakeInbox(), FakeInbox()]
    return p


def test_partition_key_is_the_device_and_every_hotline_message_shares_one() -> None:
    assert partition_key(f"{PREFIX}/sensors/air-7/obs", PREFIX) == "air-7"
    assert partition_key(f"{PREFIX}/sensors/air-7/meta", PREFIX) == "air-7"
    assert partition_key(f"{PREFIX}/video/cam-1/events", PREFIX) == "cam-1"
    assert partition_key(f"{PREFIX}/hotline/tickets", PREFIX) == "hotline"
    assert partition_key(f"{PREFIX}/hotline/tickets/GA1/events", PREFIX) == "hotline"
    assert partition_key("elsewhere/sensors/x/obs", PREFIX) == "elsewhere/sensors/x/obs"
    assert partition_key(f"{PREFIX}x/sensors/a/obs", PREFIX) == f"{PREFIX}x/sensors/a/obs"


def test_partition_is_stable_and_spreads_devices() -> None:
    assert partition("air-7", 4) == partition("air-7", 4)
    # crc32, not hash(): the same in every process and every run
    assert partition("air-7", 4) == zlib.crc32(b"air-7") % 4
    used = {partition(f"dev-{i}", 4) for i in range(100)}
    assert used == {0, 1, 2, 3}


def test_a_device_meta_and_its_readings_go_to_the_same_process(pool: _ProcessPool) -> None:
    batch = [
        message(1, f"{PREFIX}/sensors/a/meta"),
        message(2, f"{PREFIX}/sensors/b/obs"),
        message(3, f"{PREFIX}/sensors/a/obs"),
        message(4, f"{PREFIX}/sensors/a/obs"),
        message(5, f"{PREFIX}/hotline/tickets"),
        message(6, f"{PREFIX}/hotline/tickets/T1/events"),
    ]
    pool.submit(0, batch)
    topics_by_process = [[t for _seq, part in inbox.sent for t, _p, _w in part] for inbox in pool.inboxes]
    for topics in topics_by_process:
        a = [t for t in topics if "/a/" in t]
        assert a in ([], [f"{PREFIX}/sensors/a/meta", f"{PREFIX}/sensors/a/obs", f"{PREFIX}/sensors/a/obs"])
        hotline = [t for t in topics if "hotline" in t]
        assert len(hotline) in (0, 2), "a ticket and its events in one process, in order"
    assert sum(len(part) for inbox in pool.inboxes for _s, part in inbox.sent) == len(batch)
    assert pool.in_flight[0].parts == sum(1 for inbox in pool.inboxes if inbox.sent)


def done(seq: int, stored: int = 1) -> tuple[str, PartReport]:
    return ("done", PartReport(seq, {"observations": stored}, {}, {"schema": 1}))


def test_a_batch_is_acknowledged_only_after_every_part_reported(pool: _ProcessPool) -> None:
    client = pool.worker.client
    batch = [message(i, f"{PREFIX}/sensors/d{i}/obs") for i in range(30)]
    pool.submit(0, batch)
    parts = pool.in_flight[0].parts
    assert parts > 1
    for _ in range(parts - 1):
        pool.receive(done(0))
        assert client.acked == [], "not before every part is committed and live"
    pool.receive(done(0))
    assert client.acked == list(range(30))
    assert pool.worker.totals.stored["observations"] == parts
    assert pool.worker.totals.rejected_by_reason["schema"] == parts


def test_batches_are_acknowledged_in_the_order_they_were_received(pool: _ProcessPool) -> None:
    client = pool.worker.client
    pool.submit(0, [message(1, f"{PREFIX}/sensors/a/obs")])
    pool.submit(1, [message(2, f"{PREFIX}/sensors/b/obs")])
    pool.receive(done(1))
    assert client.acked == [], "batch 1 waits for batch 0"
    pool.receive(done(0))
    assert client.acked == [1, 2]


def test_nothing_is_acknowledged_after_a_process_failed(pool: _ProcessPool) -> None:
    client = pool.worker.client
    pool.submit(0, [message(1, f"{PREFIX}/sensors/a/obs")])
    pool.fail("processing process 0 exited with code -9")
    pool.receive(done(0))
    assert client.acked == []
    assert pool.failed is not None


def test_degraded_report_shows_on_the_worker(pool: _ProcessPool) -> None:
    pool.receive(("degraded", "database", "database: OperationalError: down"))
    assert pool.worker.degraded == "database: OperationalError: down"
    pool.receive(("degraded", "database", None))
    assert pool.worker.degraded is None


def test_processes_setting() -> None:
    assert load_settings({"CITYOPS_INGEST_PROCESSES": "0"}).ingest_processes == 0
    assert load_settings({"CITYOPS_INGEST_PROCESSES": "3"}).ingest_processes == 3
    assert load_settings({}).ingest_processes == 0, "in-process unless the host has cores to spare"
    for bad in ("-1", "two", "65"):
        with pytest.raises(ConfigError, match="CITYOPS_INGEST_PROCESSES"):
            load_settings({"CITYOPS_INGEST_PROCESSES": bad})
