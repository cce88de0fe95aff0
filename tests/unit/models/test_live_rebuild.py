"""Rebuilding the live state from the database (models.live.rebuild_live_state) on the
embedded store: what it restores, what it leaves newer, and how many round trips it takes.
tests/integration/test_faults_redis.py does it after a real Redis restart and flush."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import fakeredis
import pytest
import sqlalchemy as sa

from models import db, schema
from models.live import LiveStore, live_state_lost, rebuild_live_state
from tests.unit.models.rules.test_engine import round_trips

T0 = datetime(2026, 7, 15, 2, 30, tzinfo=UTC)


@pytest.fixture
def live() -> LiveStore:
    return LiveStore(fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True))


def fill(engine: sa.Engine, devices: int) -> None:
    """``devices`` noise sensors, each with three readings a minute apart (the newest first)."""
    with engine.begin() as conn:
        conn.execute(
            sa.insert(schema.Device.__table__),
            [
                {"device_id": f"n-{i:03d}", "kind": "sensor", "type": "noise", "name": f"噪声站{i}",
                 "lon": 106.63, "lat": 30.47, "district_code": "511602", "grid_id": None, "props": {}}
                for i in range(devices)
            ],
        )  # fmt: skip
        db.record_observations(
            conn,
            [
                {"device_id": f"n-{i:03d}", "ts": T0 - timedelta(minutes=m), "received_at": T0,
                 "metrics": {"laeq": 50.0 + i + m}}
                for i in range(devices)
                for m in (0, 2, 1)
            ],
        )  # fmt: skip


def test_every_device_gets_its_newest_reading_and_a_newer_one_in_redis_stays(
    engine: sa.Engine, live: LiveStore
) -> None:
    fill(engine, 3)
    # Ingest wrote a newer reading of n-001 before the rebuild ran.
    live.register_device("n-001", {"type": "noise"})
    live.record_readings([{"device_id": "n-001", "ts": T0 + timedelta(minutes=5), "metrics": {"laeq": 99.0}}])
    assert live_state_lost(live)

    with engine.connect() as conn:
        rebuilt = rebuild_live_state(live, conn)

    assert (rebuilt.devices, rebuilt.readings) == (3, 2)
    states = {s.device_id: s for s in live.devices()}
    assert sorted(states) == ["n-000", "n-001", "n-002"]
    assert {d: s.metrics for d, s in states.items()} == {
        "n-000": {"laeq": 50.0},
        "n-001": {"laeq": 99.0},
        "n-002": {"laeq": 52.0},
    }
    assert states["n-000"].ts == T0 and states["n-000"].name == "噪声站0"
    assert live.redis.smembers("cityops:devices:type:noise") == {"n-000", "n-001", "n-002"}
    assert not live_state_lost(live)


def test_the_round_trips_do_not_grow_with_the_devices(
    engine: sa.Engine, live: LiveStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A city of 10,000 devices after a Redis restart: one round trip per device was
    seconds before the worker could take messages again."""
    fill(engine, 40)
    trips = round_trips(monkeypatch)
    with engine.connect() as conn:
        rebuilt = rebuild_live_state(live, conn)
    assert (rebuilt.devices, rebuilt.readings) == (40, 40)
    assert len(trips) <= 8, trips
    assert trips.count("HGET") == 0 and trips.count("HSET") == 0, trips


def test_devices_registered_together_are_one_round_trip(
    live: LiveStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    trips = round_trips(monkeypatch)
    assert live.register_devices((f"d-{i}", {"type": "gas", "lon": 106.6}) for i in range(25)) == 25
    assert trips == ["pipeline"]
    assert live.register_devices([]) == 0
    assert trips == ["pipeline"], "nothing to register sends nothing"
    assert live.redis.scard("cityops:devices:type:gas") == 25
    assert live.redis.hget("cityops:device:d-7", "type") == "gas"


def test_an_alert_acknowledged_during_a_whole_rebuild_stays_acknowledged(
    engine: sa.Engine, live: LiveStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As tests/unit/models/test_live_alerts.py checks for the queue alone, through the
    whole rebuild on the embedded database, whose reads see one snapshot per transaction:
    the devices read before the alerts must not hold the alerts' retry to the old rows."""
    from models import alerts
    from tests.unit.models.test_live_alerts import acknowledged_after_the_first_read, draft

    fill(engine, 2)
    with engine.begin() as conn:
        raised = alerts.raise_alert(conn, draft("a", "critical"), now=T0)
    read, reads = acknowledged_after_the_first_read(engine, live, raised.alert.id)
    monkeypatch.setattr(alerts, "open_alerts", read)
    with engine.connect() as conn:
        assert rebuild_live_state(live, conn).alerts == 1
    assert len(reads) == 2
    stored = live.alert(raised.alert.id)
    assert stored is not None and stored.state == "acknowledged"
    assert live.audible_alerts() == set()
