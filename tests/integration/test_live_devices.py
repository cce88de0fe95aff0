"""LiveStore.devices() on a real Redis: the incremental read (MULTI with ZCOUNT over an
exclusive bound, ZRANGEBYSCORE from the settled floor) sees what a full read sees."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import redis

from models import live as live_module
from models.live import LiveStore

pytestmark = pytest.mark.real_services

STAMP = 1_785_000_000.0
T0 = datetime(2026, 7, 15, 9, 0, tzinfo=UTC)


def test_incremental_reads_match_a_full_read(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [STAMP]
    monkeypatch.setattr(live_module, "_clock", lambda: clock[0])
    monkeypatch.setattr(live_module, "INCREMENTAL_FROM", 3)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    store = LiveStore(client)
    assert store._scripts, "a real Redis: the readings go through the write script"
    try:
        for i in range(20):
            store.register_device(
                f"dev-{i:02d}",
                {
                    "type": "air_quality",
                    "name": f"站{i}",
                    "lon": 106.6,
                    "lat": 30.4,
                    "district_code": "511602",
                },
            )

        def write(device: int, pm25: float, stamp: float) -> None:
            store.record_readings(
                [{"device_id": f"dev-{device:02d}", "ts": T0 + timedelta(seconds=stamp - STAMP + 100),
                  "metrics": {"pm25": pm25}}],
                now=stamp,
            )  # fmt: skip

        # A burst: all but one device within the slack of the newest stamp, then quiet.
        write(19, 29.0, STAMP - 100)
        for i in range(19):
            write(i, 10.0 + i, STAMP - 1.9 + i * 0.1)
        store.devices()
        clock[0] = STAMP + 30
        store.devices()
        clock[0] = STAMP + 60
        assert store.devices() == LiveStore(client).devices()

        # A new reading, then a late one stamped before the reader's settled time less the
        # slack (a web clock ahead of the workers'): both are read.
        write(3, 99.0, STAMP + 61)
        clock[0] = STAMP + 62
        write(19, 77.0, STAMP - 1.0)
        states = {s.device_id: s for s in store.devices()}
        assert states["dev-03"].metrics == {"pm25": 99.0}
        assert states["dev-19"].metrics == {"pm25": 77.0}
        assert states["dev-19"].last_seen == STAMP - 1.0
        assert list(states.values()) == LiveStore(client).devices()
    finally:
        client.flushdb()
