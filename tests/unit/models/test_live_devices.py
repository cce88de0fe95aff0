"""LiveStore.devices() on a city-sized registry: kept between calls, only what moved read again.

The registry threshold is lowered to a handful of devices so that the embedded store
(fakeredis) exercises the incremental path; each call's answer must equal what a fresh
store reading everything sees.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import fakeredis
import pytest

from models import live as live_module
from models.live import LiveStore

T0 = datetime(2026, 7, 15, 9, 0, tzinfo=UTC)
STAMP = 1_785_000_000.0


class Clock:
    """The reading web process's wall clock, in step with the stamps the tests write."""

    def __init__(self, at: float) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    reader = Clock(STAMP)
    monkeypatch.setattr(live_module, "_clock", reader)
    return reader


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch, clock: Clock) -> LiveStore:
    monkeypatch.setattr(live_module, "INCREMENTAL_FROM", 3)
    return LiveStore(fakeredis.FakeRedis(decode_responses=True))


def register(store: LiveStore, device_id: str, name: str | None = None, dtype: str = "air_quality") -> None:
    store.register_device(
        device_id,
        {"type": dtype, "name": name or device_id, "lon": 106.6, "lat": 30.4, "district_code": "511602"},
    )


def reading(device_id: str, pm25: float, minutes: int) -> dict[str, Any]:
    return {"device_id": device_id, "ts": T0 + timedelta(minutes=minutes), "metrics": {"pm25": pm25}}


def full_read(store: LiveStore) -> list[live_module.DeviceState]:
    return LiveStore(store.redis).devices()


def count_full_reads(store: LiveStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    full = store._devices_full

    def counted() -> list[live_module.DeviceState]:
        calls[0] += 1
        return full()

    monkeypatch.setattr(store, "_devices_full", counted)
    return calls


def test_a_new_reading_is_read_without_reading_every_device(
    store: LiveStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(5):
        register(store, f"aq-{i}")
    store.record_readings([reading(f"aq-{i}", 10.0 + i, 0) for i in range(5)], now=STAMP)
    assert [s.metrics["pm25"] for s in store.devices()] == [10.0, 11.0, 12.0, 13.0, 14.0]
    full_reads = count_full_reads(store, monkeypatch)

    store.record_readings([reading("aq-3", 99.0, 1)], now=STAMP + 1)
    states = store.devices()

    assert full_reads == [0], "only the device that reported was read again"
    assert {s.device_id: s.metrics["pm25"] for s in states}["aq-3"] == 99.0
    assert {s.device_id: s.last_seen for s in states}["aq-3"] == STAMP + 1
    assert states == full_read(store)


def test_a_late_batch_with_an_older_stamp_is_still_read(store: LiveStore, clock: Clock) -> None:
    for i in range(4):
        register(store, f"aq-{i}")
    store.record_readings([reading(f"aq-{i}", 10.0, 0) for i in range(4)], now=STAMP)
    store.record_readings([reading("aq-0", 20.0, 1)], now=STAMP + 10)
    clock.at = STAMP + 10
    store.devices()
    # Another worker's batch, stamped a moment before the newest stamp already read.
    store.record_readings([reading("aq-1", 30.0, 1)], now=STAMP + 9)
    assert {s.device_id: s.metrics["pm25"] for s in store.devices()}["aq-1"] == 30.0


def test_registrations_removals_and_meta_changes_are_picked_up(
    store: LiveStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(4):
        register(store, f"aq-{i}")
    store.record_readings([reading(f"aq-{i}", 10.0, 0) for i in range(4)], now=STAMP)
    store.devices()

    register(store, "smoke-1", dtype="smoke")  # registered, nothing sent yet
    assert [s.device_id for s in store.devices()] == ["aq-0", "aq-1", "aq-2", "aq-3", "smoke-1"]

    # A meta change that moves no last-seen shows at the next full read.
    register(store, "aq-2", name="新名字")
    monkeypatch.setattr(live_module, "FULL_READ_EVERY_S", 0.0)
    assert {s.device_id: s.name for s in store.devices()}["aq-2"] == "新名字"

    store.redis.flushdb()
    assert store.devices() == []


def test_a_small_registry_is_read_in_full_every_time(monkeypatch: pytest.MonkeyPatch) -> None:
    store = LiveStore(fakeredis.FakeRedis(decode_responses=True))
    register(store, "aq-0")
    store.record_readings([reading("aq-0", 10.0, 0)], now=STAMP)
    store.devices()
    full_reads = count_full_reads(store, monkeypatch)
    register(store, "aq-0", name="改名")
    assert store.devices()[0].name == "改名"
    assert full_reads == [1]


def test_devices_of_one_district(store: LiveStore) -> None:
    register(store, "aq-guangan")
    store.register_device(
        "aq-linshui",
        {"type": "air_quality", "name": "邻水", "lon": 106.9, "lat": 30.3, "district_code": "511623"},
    )
    store.record_readings([reading("aq-linshui", 30.0, 0), reading("aq-guangan", 50.0, 0)], now=STAMP)
    assert [s.device_id for s in store.devices("511623")] == ["aq-linshui"]
    assert [s.device_id for s in store.devices("511602")] == ["aq-guangan"]
    assert store.devices("511681") == []
    assert [s.device_id for s in store.devices()] == ["aq-guangan", "aq-linshui"]


def count_stamps_sent(store: LiveStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many (device, last-seen) pairs Redis sent back to each read's comparison."""
    sent: list[int] = []
    apply = store._apply_moved

    def counted(cache: Any, pairs: list[tuple[str, float]]) -> bool:
        sent.append(len(pairs))
        return apply(cache, pairs)

    monkeypatch.setattr(store, "_apply_moved", counted)
    return sent


def test_a_quiet_city_is_not_sent_again(
    store: LiveStore, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every device stamped within the slack (a burst, then quiet): once the reader's clock
    has moved past it, a read asks Redis for no stamps at all."""
    for i in range(6):
        register(store, f"aq-{i}")
    store.record_readings([reading(f"aq-{i}", 10.0, 0) for i in range(3)], now=STAMP - 1.5)
    store.record_readings([reading(f"aq-{i}", 10.0, 0) for i in range(3, 6)], now=STAMP)
    first = store.devices()
    sent = count_stamps_sent(store, monkeypatch)
    full_reads = count_full_reads(store, monkeypatch)

    clock.at = STAMP + 30
    store.devices()  # the stamps from STAMP - 2 on, once more: written before this clock
    clock.at = STAMP + 60
    again = store.devices()

    assert full_reads == [0]
    assert sent == [6, 0], "the second read asks for the stamps after the first one's time only"
    assert again == first == full_read(store)


def test_a_reading_after_a_quiet_spell_is_read(store: LiveStore, clock: Clock) -> None:
    for i in range(4):
        register(store, f"aq-{i}")
    store.record_readings([reading(f"aq-{i}", 10.0, 0) for i in range(4)], now=STAMP)
    store.devices()
    clock.at = STAMP + 120
    store.devices()
    # Written 5 s later, stamped a second before its write lands (within the slack).
    store.record_readings([reading("aq-2", 42.0, 2)], now=STAMP + 124)
    clock.at = STAMP + 125
    states = {s.device_id: s for s in store.devices()}
    assert states["aq-2"].metrics == {"pm25": 42.0}
    assert states["aq-2"].last_seen == STAMP + 124
    assert list(states.values()) == full_read(store)


def test_a_late_write_is_read_when_the_web_clock_runs_ahead(store: LiveStore, clock: Clock) -> None:
    """The reader's clock a minute ahead of the workers': a batch stamped before the
    previous read's time (less the slack) is still found, by the count of that stretch."""
    for i in range(4):
        register(store, f"aq-{i}")
    store.record_readings([reading(f"aq-{i}", 10.0, 0) for i in range(4)], now=STAMP - 100)
    store.record_readings([reading("aq-0", 20.0, 1)], now=STAMP)
    clock.at = STAMP + 60
    store.devices()
    store.record_readings([reading("aq-1", 30.0, 2)], now=STAMP - 1)
    clock.at = STAMP + 61
    states = {s.device_id: s for s in store.devices()}
    assert states["aq-1"].metrics == {"pm25": 30.0}
    assert list(states.values()) == full_read(store)


def test_a_device_that_goes_silent_is_reported_offline(store: LiveStore, clock: Clock) -> None:
    for i in range(4):
        register(store, f"aq-{i}")
    store.record_readings([reading(f"aq-{i}", 10.0, 0) for i in range(4)], now=STAMP)
    assert all(s.online(STAMP) for s in store.devices())

    later = STAMP + live_module.OFFLINE_AFTER_S + 1
    store.record_readings([reading("aq-3", 11.0, 16)], now=later)
    clock.at = later
    states = store.devices()

    assert [s.device_id for s in states if s.online(later)] == ["aq-3"]
    assert [s.device_id for s in states if not s.online(later)] == ["aq-0", "aq-1", "aq-2"]


def test_a_camera_reporting_events_is_online_and_goes_offline_when_it_stops(
    store: LiveStore, clock: Clock
) -> None:
    """Cameras send events, not readings: each event is what says one is there."""
    for i in range(2):
        register(store, f"cam-{i}", dtype="camera")
    event = {"event_id": "e-1", "camera_id": "cam-0", "type": "illegal_parking", "district_code": "511602"}
    store.record_events("video", [event], now=STAMP, seen_by="camera_id")
    # A 12345 order names no device: nothing is stamped for it.
    store.record_events("tickets", [{"ticket_id": "T-1", "district_code": "511602"}], now=STAMP)
    states = {s.device_id: s for s in store.devices()}
    assert states["cam-0"].online(STAMP) and not states["cam-1"].online(STAMP)
    assert store.redis.zrange(live_module.LAST_SEEN_KEY, 0, -1) == ["cam-0"]

    later = STAMP + live_module.OFFLINE_AFTER_S + 1
    clock.at = later
    assert not any(s.online(later) for s in store.devices())


def test_changing_the_returned_list_does_not_change_the_next_read(store: LiveStore) -> None:
    for i in range(4):
        register(store, f"aq-{i}")
    store.record_readings([reading(f"aq-{i}", 10.0, 0) for i in range(4)], now=STAMP)
    store.devices().clear()
    states = store.devices()
    states.pop()
    assert [s.device_id for s in store.devices()] == ["aq-0", "aq-1", "aq-2", "aq-3"]
