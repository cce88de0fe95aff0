"""Scenarios: each story plays out on schedule, stays inside the city and passes ingest."""

from __future__ import annotations

import functools
import json
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fakeredis
import numpy as np
import pytest

from geo.locate import locate, locate_point
from ingest.scenarios import SCENARIOS, Flood, Scenario, metres, ramp, scenario_named
from ingest.simulator import CitySimulator, Message, SimDevice

START = datetime(2026, 7, 15, 1, 0, tzinfo=UTC)
STORY_SECONDS = 300
STEP = 5  # seconds per tick, as `run()` would tick at interval=5
RATE = 20.0  # everyday messages per second: the story must stand out against it
LINSHUI = "511623"
FLOOD_CATEGORIES = {"积水内涝", "道路积水", "房屋进水"}


@dataclass(frozen=True, slots=True)
class Sent:
    """One message of a played story, with the tick's time and the story's progress then."""

    at: datetime
    progress: float
    message: Message

    @property
    def body(self) -> dict[str, Any]:
        return json.loads(self.message.payload)

    @property
    def kind(self) -> str:
        levels = self.message.topic.split("/")
        if levels[2] == "hotline" and levels[-1] == "events":
            return "ticket_events"  # the hotline system's steps, not a camera's events
        return levels[-1]

    @property
    def device_id(self) -> str:
        return self.message.topic.split("/")[3]


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@functools.cache
def play(name: str, seed: int = 3) -> tuple[CitySimulator, tuple[Sent, ...]]:
    """The whole timeline of scenario ``name`` (and one tick past its end), tick by tick."""
    clock = Clock(START)
    sim = CitySimulator(seed=seed, clock=clock, scenario=name, story_seconds=STORY_SECONDS)
    sent = [Sent(START, 0.0, m) for m in sim.meta_messages()]
    for i in range(1, STORY_SECONDS // STEP + 2):
        clock.now = START + timedelta(seconds=STEP * i)
        sent += [Sent(clock.now, sim.progress(clock.now), m) for m in sim.tick(RATE, STEP)]
    return sim, tuple(sent)


def readings(name: str, device_type: str) -> list[tuple[Sent, SimDevice, dict[str, float]]]:
    sim, sent = play(name)
    by_id = {d.device_id: d for d in sim.devices}
    return [
        (s, by_id[s.device_id], s.body["metrics"])
        for s in sent
        if s.kind == "obs" and by_id[s.device_id].type == device_type
    ]


def events(name: str, kind: str) -> list[Sent]:
    return [s for s in play(name)[1] if s.kind == "events" and s.body["type"] == kind]


def tickets(name: str) -> list[Sent]:
    return [s for s in play(name)[1] if s.kind == "tickets"]


# ---- every scenario --------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_message_of_the_whole_timeline_passes_ingest(name: str, tmp_path: Path) -> None:
    from ingest.pipeline import Inbound, IngestPipeline
    from models.db import create_engine_for, upgrade_database
    from models.live import LiveStore

    url = f"sqlite:///{tmp_path / 'c.sqlite3'}"
    upgrade_database(url)
    clock = Clock(START)
    pipeline = IngestPipeline(
        create_engine_for(url), LiveStore(fakeredis.FakeRedis(decode_responses=True)), clock=clock
    )
    _sim, sent = play(name)
    # One batch per tick, received at the tick's time, as a worker would see them.
    batches: dict[datetime, list[Sent]] = {}
    for s in sent:
        batches.setdefault(s.at, []).append(s)
    stored: Counter[str] = Counter()
    duplicates: Counter[str] = Counter()
    for at, batch in batches.items():
        clock.now = at
        result = pipeline.process([Inbound(s.message.topic, s.message.payload, at) for s in batch])
        assert result.rejected == [], result.rejected[:3]
        stored.update(result.stored)
        duplicates.update(result.duplicates)
    assert sum(duplicates.values()) == 0, "every reading, event and ticket is new"
    assert stored["observations"] == sum(s.kind == "obs" for s in sent)
    assert stored["video_events"] == sum(s.kind == "events" for s in sent)
    assert stored["hotline_tickets"] == sum(s.kind == "tickets" for s in sent)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_device_and_every_point_lies_in_the_city(name: str) -> None:
    sim, sent = play(name)
    where = locate(np.array([d.lon for d in sim.devices]), np.array([d.lat for d in sim.devices]))
    assert list(where.district_code) == [d.district_code for d in sim.devices]
    assert len({d.device_id for d in sim.devices}) == len(sim.devices), "device ids are unique"
    points = [s.body for s in sent if s.kind in {"events", "tickets"}]
    codes = locate(np.array([b["lon"] for b in points]), np.array([b["lat"] for b in points])).district_code
    assert all(c is not None for c in codes)


@pytest.mark.parametrize("name", ["flood", "fire", "crowd", "pollution"])
def test_same_seed_same_story(name: str) -> None:
    def first_minute(seed: int) -> list[tuple[str, bytes]]:
        clock = Clock(START)
        sim = CitySimulator(seed=seed, clock=clock, scenario=name, story_seconds=60)
        out = [(m.topic, m.payload) for m in sim.meta_messages()]
        for i in range(1, 13):
            clock.now = START + timedelta(seconds=STEP * i)
            out += [(m.topic, m.payload) for m in sim.tick(RATE, STEP)]
        return out

    assert first_minute(5) == first_minute(5)
    assert first_minute(5) != first_minute(6)


def test_story_messages_take_their_own_timestamps() -> None:
    """A story's extra readings never share a timestamp with another reading of the device."""
    _sim, sent = play("fire")
    keys = [(s.device_id, s.body["ts"]) for s in sent if s.kind == "obs"]
    assert len(keys) == len(set(keys))


def test_scenarios_are_chosen_by_name() -> None:
    assert set(SCENARIOS) == {"normal", "flood", "pollution", "fire", "crowd"}
    assert scenario_named("flood") == Flood()
    with pytest.raises(ValueError, match="choose one of: normal, flood"):
        scenario_named("earthquake")
    with pytest.raises(ValueError, match="unknown scenario"):
        CitySimulator(seed=1, clock=lambda: START, scenario="earthquake")


def test_normal_is_the_everyday_feed() -> None:
    sim, _ = play("normal")
    assert type(sim.scenario) is Scenario
    assert not any("-fire-" in d.device_id or "-crowd-" in d.device_id for d in sim.devices)
    a = CitySimulator(seed=9, clock=lambda: START)
    b = CitySimulator(seed=9, clock=lambda: START, scenario="normal")
    assert [m.payload for m in a.tick(200)] == [m.payload for m in b.tick(200)]
    assert max(m["pm25"] for _s, _d, m in readings("normal", "air_quality")) < 150


def test_progress_follows_the_story_length_and_holds_after_the_end() -> None:
    clock = Clock(START)
    sim = CitySimulator(seed=1, clock=clock, scenario="flood", story_seconds=120)
    assert sim.story_start == START
    assert sim.progress(START - timedelta(seconds=30)) == 0.0
    assert sim.progress(START + timedelta(seconds=60)) == pytest.approx(0.5)
    assert sim.progress(START + timedelta(hours=2)) == 1.0
    with pytest.raises(ValueError, match="story_seconds"):
        CitySimulator(seed=1, clock=clock, scenario="flood", story_seconds=0)


def test_ramp_is_smooth_and_bounded() -> None:
    assert ramp(0.1, 0.2, 0.4) == 0.0 and ramp(0.5, 0.2, 0.4) == 1.0
    assert ramp(0.3, 0.2, 0.4) == pytest.approx(0.5)
    values = [ramp(i / 100, 0.2, 0.4) for i in range(101)]
    assert values == sorted(values)


def test_water_level_stations_carry_their_warning_levels() -> None:
    sim, sent = play("normal")
    metas = {s.device_id: s.body for s in sent if s.kind == "meta"}
    stations = [d for d in sim.devices if d.type == "water_level"]
    assert len(stations) == 12
    for d in stations:
        props = metas[d.device_id]["props"]
        assert props == {"warning_level": 5.0, "guarantee_level": 6.0}
    # Everyday levels stay below the warning level.
    assert max(m["level"] for _s, _d, m in readings("normal", "water_level")) < 5.0


# ---- the stories -----------------------------------------------------------------------


def test_flood_rain_and_rivers_rise_in_linshui_past_their_warning_levels() -> None:
    rain = readings("flood", "rainfall")
    late_rain = [m["rain_1h"] for s, d, m in rain if d.district_code == LINSHUI and s.progress > 0.6]
    assert late_rain and min(late_rain) >= 30, "a rainstorm at every gauge of the county"
    assert max(m["rain_1h"] for s, d, m in rain if s.progress < 0.05) < 5, "it starts with light rain"
    assert max(m["rain_24h"] for s, d, m in rain if d.district_code == LINSHUI) >= 100

    levels = readings("flood", "water_level")
    linshui = [d for d in play("flood")[0].devices if d.type == "water_level" and d.district_code == LINSHUI]
    assert linshui
    for station in linshui:
        mine = [(s.progress, m["level"]) for s, d, m in levels if d is station]
        warning = station.props["warning_level"]
        assert all(level < warning for p, level in mine if p < 0.2), "the story starts below warning"
        assert max(level for p, level in mine) > station.props["guarantee_level"]
        assert all(level > warning for p, level in mine if p > 0.6)
    elsewhere = [m["level"] for s, d, m in levels if d.district_code != LINSHUI]
    assert max(elsewhere) < 5.0, "only the county in the storm floods"

    shafts = [m["water_level"] for s, d, m in readings("flood", "manhole") if d.district_code == LINSHUI]
    assert max(shafts) > 1.0


def test_flood_brings_waterlogging_sightings_and_a_surge_of_calls_from_linshui() -> None:
    sim, _ = play("flood")
    cameras = {d.device_id for d in sim.devices if d.type == "camera" and d.district_code == LINSHUI}
    story = [
        s for s in events("flood", "waterlogging") if s.body["confidence"] >= 0.8 and s.device_id in cameras
    ]
    assert sum(s.progress > 0.5 for s in story) >= 20

    def linshui_calls(first: float, last: float, categories: set[str] | None = None) -> int:
        return sum(
            first <= s.progress < last
            and locate_point(s.body["lon"], s.body["lat"])[0] == LINSHUI
            and (categories is None or s.body["category"] in categories)
            for s in tickets("flood")
        )

    assert linshui_calls(0.5, 1.01, FLOOD_CATEGORIES) >= 20
    assert linshui_calls(0.5, 1.01, FLOOD_CATEGORIES) > 5 * linshui_calls(0, 0.5, FLOOD_CATEGORIES)
    assert linshui_calls(0.5, 1.01) > 2 * linshui_calls(0, 0.5), "a surge against the everyday calls"
    texts = {s.body["content"] for s in tickets("flood") if s.body["category"] in FLOOD_CATEGORIES}
    assert len(texts) >= 10, "calls read differently"


def test_pollution_starts_in_one_district_and_spreads_to_heavy_pollution() -> None:
    air = readings("pollution", "air_quality")
    early = {d.district_code for s, d, m in air if 0.25 < s.progress < 0.35 and m["pm25"] >= 115}
    assert early == {"511603"}, "at first only the origin is polluted"
    late = {d.district_code for s, d, m in air if s.progress >= 0.95 and m["pm25"] >= 150}
    assert len(late) >= 3
    assert max(m["pm25"] for s, d, m in air) <= 260
    assert all(m["pm10"] > m["pm25"] for s, d, m in air)


def test_fire_smoke_rises_around_the_block_and_cameras_see_it() -> None:
    sim, _ = play("fire")
    site = sim.scenario.site  # type: ignore[attr-defined]
    assert locate_point(*site)[0] == "511602"
    added = [d for d in sim.devices if "-fire-" in d.device_id]
    assert all(metres(d.lon, d.lat, *site) <= 300 for d in added)
    smoky = {
        d.device_id
        for s, d, m in readings("fire", "smoke")
        if m["smoke"] >= 0.5 and metres(d.lon, d.lat, *site) <= 300
    }
    assert len(smoky) >= 3
    assert not any(m["smoke"] >= 0.5 for s, d, m in readings("fire", "smoke") if s.progress < 0.15)
    hot = max(m["temp"] for s, d, m in readings("fire", "smoke") if metres(d.lon, d.lat, *site) <= 50)
    assert hot > 57, "hot enough for a heat detector"
    seen = [
        s
        for s in events("fire", "smoke_fire")
        if s.body["confidence"] >= 0.85 and metres(s.body["lon"], s.body["lat"], *site) <= 300
    ]
    assert len(seen) >= 20
    urgent = [
        s for s in tickets("fire") if s.body["category"] in {"火情", "冒烟"} and s.body["urgency"] == "urgent"
    ]
    assert len(urgent) >= 3
    assert all(metres(s.body["lon"], s.body["lat"], *site) <= 500 for s in urgent)


def test_crowd_gathers_around_the_square_ever_more_often() -> None:
    sim, _ = play("crowd")
    site = sim.scenario.site  # type: ignore[attr-defined]
    gatherings = events("crowd", "crowd_gathering")
    late = [s for s in gatherings if s.progress > 0.5]
    near = [s for s in late if metres(s.body["lon"], s.body["lat"], *site) <= 500]
    assert len(near) >= 0.8 * len(late) and len(near) >= 30
    first_third = sum(s.progress < 1 / 3 for s in gatherings)
    last_third = sum(s.progress > 2 / 3 for s in gatherings)
    assert last_third > 3 * first_third
    noise = readings("crowd", "noise")
    for monitor in [d for d in sim.devices if d.type == "noise" and "-crowd-" in d.device_id]:
        quiet = [m["laeq"] for s, d, m in noise if d is monitor and s.progress < 0.1]
        loud = [m["laeq"] for s, d, m in noise if d is monitor and s.progress > 0.8]
        assert sum(loud) / len(loud) > sum(quiet) / len(quiet) + 12
    categories = Counter(s.body["category"] for s in tickets("crowd"))
    assert categories["人员聚集"] + categories["交通拥堵"] >= 8
