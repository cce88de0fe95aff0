"""Heartbeats in Redis: written with an expiry and an index entry, read back as live, stale,
stopped or gone; an ingest worker's figures from its own metrics; a Redis outage never
reaches the process that beats."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from types import SimpleNamespace

import fakeredis
import pytest
import redis

from ingest import heartbeat, metrics
from ingest.heartbeat import FORGET_AFTER_S, INGEST, KEEP_S, STALE_AFTER_S, WEB, Heartbeat

NOW = 1_800_000_000.0


@pytest.fixture
def client() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)


def test_a_beat_is_a_hash_with_an_expiry_and_an_index_entry(client: fakeredis.FakeRedis) -> None:
    heartbeat.write_beat(client, INGEST, "ingest-a", {"stored": 12, "degraded": None}, now=NOW)
    key = heartbeat.beat_key(INGEST, "ingest-a")
    assert key == "cityops:workers:ingest-a"
    assert client.hgetall(key) == {"stored": "12", "degraded": "", "beat_at": f"{NOW:.3f}"}
    assert 0 < client.ttl(key) <= KEEP_S
    assert client.zscore("cityops:workers", "ingest-a") == NOW


def test_states_follow_the_age_of_the_last_beat(client: fakeredis.FakeRedis) -> None:
    heartbeat.write_beat(client, INGEST, "fresh", {"stored": 1}, now=NOW - 1)
    heartbeat.write_beat(client, INGEST, "late", {"stored": 2}, now=NOW - STALE_AFTER_S - 1)
    heartbeat.write_beat(client, INGEST, "crashed", {"stored": 3}, now=NOW - KEEP_S - 5)
    heartbeat.write_beat(client, INGEST, "ended", {"stopped_at": NOW - 2}, now=NOW - 2)
    client.delete(heartbeat.beat_key(INGEST, "crashed"))  # what the expiry does after KEEP_S

    states = {s.member: s for s in heartbeat.read_beats(client, INGEST, now=NOW)}
    assert {m: s.state for m, s in states.items()} == {
        "fresh": "live",
        "late": "stale",
        "crashed": "gone",
        "ended": "stopped",
    }
    assert states["late"].figures["stored"] == "2" and states["late"].age_s == STALE_AFTER_S + 1
    assert states["crashed"].figures == {}
    # Newest beat first; the web processes are a separate list.
    assert [s.member for s in heartbeat.read_beats(client, INGEST, now=NOW)] == [
        "fresh",
        "ended",
        "late",
        "crashed",
    ]
    assert heartbeat.read_beats(client, WEB, now=NOW) == []


def test_a_process_gone_for_an_hour_is_forgotten(client: fakeredis.FakeRedis) -> None:
    heartbeat.write_beat(client, WEB, "host:1", {"viewers": 3}, now=NOW - FORGET_AFTER_S - 10)
    assert [s.state for s in heartbeat.read_beats(client, WEB, now=NOW)] == []
    heartbeat.write_beat(client, WEB, "host:2", {"viewers": 1}, now=NOW)  # the next beat prunes
    assert client.zrange("cityops:web", 0, -1) == ["host:2"]


def test_a_heartbeat_beats_from_its_thread_and_says_when_it_stopped(client: fakeredis.FakeRedis) -> None:
    beats = threading.Semaphore(0)

    def figures() -> dict[str, object]:
        beats.release()
        return {"viewers": 4}

    beat = Heartbeat(client, WEB, "host:7", figures, interval=0.05).start()
    assert beats.acquire(timeout=5) and beats.acquire(timeout=5)  # at start and again after
    [status] = heartbeat.read_beats(client, WEB)
    assert status.state == "live" and status.figures["viewers"] == "4"
    assert status.figures["pid"] and status.figures["host"] and status.figures["started_at"]
    assert int(status.figures["rss_bytes"]) > 1_000_000
    beat.stop()
    assert [s.state for s in heartbeat.read_beats(client, WEB)] == ["stopped"]


class BrokenRedis(fakeredis.FakeRedis):
    def pipeline(self, *args: object, **kwargs: object) -> object:
        raise redis.ConnectionError("Connection refused")


def test_redis_away_is_logged_once_and_never_raised(caplog: pytest.LogCaptureFixture) -> None:
    broken = BrokenRedis(server=fakeredis.FakeServer(), decode_responses=True)
    beat = Heartbeat(broken, INGEST, "w", dict)
    with caplog.at_level(logging.WARNING, logger="ingest.heartbeat"):
        assert beat.beat() is False
        assert beat.beat() is False
    assert len([r for r in caplog.records if "not written" in r.message]) == 1


@dataclass
class FakeClient:
    client_id: str = "cityops-ingest-north-1"
    queued: int = 7
    connected: threading.Event = field(default_factory=threading.Event)

    def stats(self) -> SimpleNamespace:
        return SimpleNamespace(queued=self.queued)


def fake_worker(live_redis: object | None) -> SimpleNamespace:
    return SimpleNamespace(
        client=FakeClient(),
        degraded=None,
        processes=0,
        pipeline=SimpleNamespace(live=SimpleNamespace(redis=live_redis) if live_redis is not None else None),
    )


def test_ingest_figures_are_counts_and_rates_over_the_last_interval() -> None:
    worker = fake_worker(None)
    worker.client.connected.set()
    ticks = iter([100.0, 102.0])
    figures = heartbeat.IngestFigures(worker, clock=lambda: next(ticks))
    first = figures()
    metrics.MESSAGES.labels("stored").inc(30)
    metrics.MESSAGES.labels("rejected").inc(2)
    metrics.STORE_SECONDS.observe(0.02)
    metrics.STORE_SECONDS.observe(0.04)
    metrics.LATENCY_SECONDS.observe(0.1)
    second = figures()

    assert second["stored"] - first["stored"] == 30 and second["rejected"] - first["rejected"] == 2
    assert second["rate"] == 16.0  # 32 messages in 2 s
    assert second["batch_s"] == pytest.approx(0.03)
    assert second["lag_s"] == pytest.approx(0.1)
    assert (second["queue_depth"], second["connected"], second["worker_id"]) == (7, 1, "north-1")
    assert second["degraded"] == "" and first["batch_s"] == ""  # nothing measured yet: no figure


def test_a_running_worker_beats_into_its_live_store_and_stops_cleanly(client: fakeredis.FakeRedis) -> None:
    worker = fake_worker(client)
    with heartbeat.beating(worker) as beat:
        assert beat is not None
        [status] = heartbeat.read_beats(client, INGEST)
        assert (status.member, status.state) == ("north-1", "live")
        assert status.figures["queue_depth"] == "7"
    assert [s.state for s in heartbeat.read_beats(client, INGEST)] == ["stopped"]


def test_a_worker_without_a_live_store_has_no_heartbeat() -> None:
    with heartbeat.beating(fake_worker(None)) as beat:
        assert beat is None
