"""The simulator: devices inside the real districts, valid messages, repeatable by seed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import fakeredis
import numpy as np
import pytest

from geo.boundaries import DISTRICTS
from geo.locate import locate
from ingest.simulator import CitySimulator

NOW = datetime(2026, 7, 15, 1, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def sim() -> CitySimulator:
    return CitySimulator(seed=3, clock=lambda: NOW)


def test_every_device_lies_in_the_district_it_claims(sim: CitySimulator) -> None:
    where = locate(np.array([d.lon for d in sim.devices]), np.array([d.lat for d in sim.devices]))
    assert list(where.district_code) == [d.district_code for d in sim.devices]
    assert {d.district_code for d in sim.devices} == {d.code for d in DISTRICTS}
    assert len(sim.devices) >= 300
    assert sum(d.type == "water_quality" for d in sim.devices) >= 6, "sections on the Jialing and the Qu"


def test_same_seed_same_feed() -> None:
    a = CitySimulator(seed=11, clock=lambda: NOW)
    b = CitySimulator(seed=11, clock=lambda: NOW)
    assert [(m.topic, m.payload) for m in a.tick(100)] == [(m.topic, m.payload) for m in b.tick(100)]
    c = CitySimulator(seed=12, clock=lambda: NOW)
    assert [m.payload for m in a.tick(100)] != [m.payload for m in c.tick(100)]


def test_every_generated_message_passes_ingest_validation(sim: CitySimulator, tmp_path) -> None:
    from ingest.pipeline import Inbound, IngestPipeline
    from models.db import create_engine_for, upgrade_database
    from models.live import LiveStore

    url = f"sqlite:///{tmp_path / 'c.sqlite3'}"
    upgrade_database(url)
    pipeline = IngestPipeline(
        create_engine_for(url), LiveStore(fakeredis.FakeRedis(decode_responses=True)), clock=lambda: NOW
    )
    messages = sim.meta_messages() + sim.tick(rate=2000)
    result = pipeline.process([Inbound(m.topic, m.payload, NOW) for m in messages])
    assert result.rejected == []
    kinds = {json.loads(m.payload).get("type") for m in messages if "/events" in m.topic}
    assert len(kinds) >= 5, "several kinds of video event"
    assert result.stored["observations"] > 1500
    assert result.stored["hotline_tickets"] > 10


def test_rate_is_respected_on_average(sim: CitySimulator) -> None:
    counts = [len(sim.tick(rate=50)) for _ in range(40)]
    assert 40 <= sum(counts) / len(counts) <= 60


def _shares(sim: CitySimulator, rate: float, ticks: int) -> tuple[float, float, float]:
    messages = [m for _ in range(ticks) for m in sim.tick(rate=rate)]
    video = sum(m.topic.endswith("/events") and "/video/" in m.topic for m in messages)
    orders = sum(m.topic.endswith("/hotline/tickets") for m in messages)
    return len(messages), video / len(messages), orders / len(messages)


def test_the_city_mix_has_the_citys_proportions_and_the_demo_a_lively_screen() -> None:
    total, video, orders = _shares(CitySimulator(seed=5, clock=lambda: NOW), 2000, 10)
    assert total > 19_000
    assert 0.05 <= video <= 0.09 and 0.02 <= orders <= 0.04  # the demo's default
    total, video, orders = _shares(CitySimulator(seed=5, clock=lambda: NOW, mix="city"), 2000, 10)
    assert total > 19_000
    # Guang'an at full scale: ≈ 3.5 sightings and 0.05 new orders per 1,000 messages.
    assert 0.002 <= video <= 0.005 and orders <= 0.0005


def test_an_unknown_or_impossible_mix_is_refused() -> None:
    from ingest.simulator import Mix

    with pytest.raises(ValueError, match="unknown mix"):
        CitySimulator(seed=5, clock=lambda: NOW, mix="busy")
    with pytest.raises(ValueError, match="add up"):
        Mix(video=0.8, tickets=0.3)


def test_a_scenario_changes_readings_through_the_same_reading_call() -> None:
    flood = CitySimulator(seed=3, clock=lambda: NOW, scenario="flood", story_seconds=60, start=NOW)
    station = next(d for d in flood.devices if d.type == "water_level" and d.district_code == "511623")
    before = flood.reading(station, NOW)["level"]
    after = flood.reading(station, NOW + timedelta(seconds=60))["level"]
    assert before < station.props["warning_level"] < station.props["guarantee_level"] < after


def test_a_scenario_adds_to_the_everyday_feed_without_thinning_it() -> None:
    fire = CitySimulator(seed=3, clock=lambda: NOW, scenario="fire", start=NOW - timedelta(minutes=2))
    counts = [len(fire.tick(rate=50)) for _ in range(40)]
    assert 50 <= sum(counts) / len(counts) <= 62, "the everyday 50/s plus the story's own messages"


def test_an_ordinary_day_keeps_noise_under_the_night_alert_margin() -> None:
    from models.standards.derive import derive

    sim = CitySimulator(seed=5, clock=lambda: NOW)
    noise = [d for d in sim.devices if d.type == "noise"]
    assert {d.props["zone"] for d in noise} >= {"1", "2", "3", "4a"}
    for hour_utc in (15, 16, 20, 2, 10):  # 23:00, 00:00, 04:00, 10:00 and 18:00 in Beijing
        at = NOW.replace(hour=hour_utc)
        excess = [derive("noise", d.props, sim.reading(d, at), at).get("excess_db", 0.0) for d in noise]
        assert max(excess) < 3.0, "the night-noise rule alerts from 3 dB(A) over the limit"


def test_the_hotline_system_works_the_orders_through_to_the_follow_up(tmp_path) -> None:
    """Forty simulated minutes: orders are dispatched, accepted, answered, closed and rated
    over MQTT events, a few are returned and re-dispatched, a few are left unaccepted."""
    from collections import Counter

    import sqlalchemy as sa

    from ingest.pipeline import Inbound, IngestPipeline
    from models import tickets
    from models.db import create_engine_for, upgrade_database
    from models.live import LiveStore
    from models.schema import HotlineTicket

    url = f"sqlite:///{tmp_path / 'h.sqlite3'}"
    upgrade_database(url)
    now = [NOW]
    sim = CitySimulator(seed=5, clock=lambda: now[0])
    engine = create_engine_for(url)
    pipeline = IngestPipeline(
        engine, LiveStore(fakeredis.FakeRedis(decode_responses=True)), clock=lambda: now[0]
    )
    pipeline.process([Inbound(m.topic, m.payload, NOW) for m in sim.meta_messages()])
    steps = Counter()
    for _ in range(240):  # 40 minutes in 10 s ticks at 2 messages a second
        now[0] += timedelta(seconds=10)
        batch = sim.tick(rate=2, seconds=10)
        steps.update(json.loads(m.payload)["action"] for m in batch if "/hotline/tickets/" in m.topic)
        result = pipeline.process([Inbound(m.topic, m.payload, now[0]) for m in batch])
        assert result.rejected == [], result.rejected[:3]
    with engine.connect() as conn:
        states = Counter(conn.execute(sa.select(HotlineTicket.__table__.c.state)).scalars())
        rated = tickets.satisfaction_rate(conn, NOW, now[0])
        rates = tickets.on_time_rates(conn, NOW, now[0], now=now[0])
    assert sum(states.values()) >= 20
    assert states["followed_up"] > 0 and states["closed"] + states["followed_up"] > 0
    assert states["dispatched"] > 0, "orders still waiting (or never accepted) remain"
    assert steps["returned"] > 0 and steps["dispatched"] > steps["returned"]
    assert rated.rated > 0 and rated.satisfied >= rated.dissatisfied
    assert rates.accept.total > 0 and rates.accept.rate == 1.0, "accepted well within the 2 h deadline"


def test_ticket_ids_of_a_restarted_simulator_do_not_collide() -> None:
    first = CitySimulator(seed=5, clock=lambda: NOW)
    again = CitySimulator(seed=5, clock=lambda: NOW + timedelta(minutes=7))

    def ids(sim: CitySimulator) -> set[str]:
        return {
            json.loads(m.payload)["ticket_id"]
            for m in sim.tick(rate=400)
            if m.topic.endswith("/hotline/tickets")
        }

    assert ids(first) and ids(again)
    assert ids(first).isdisjoint(ids(again))
