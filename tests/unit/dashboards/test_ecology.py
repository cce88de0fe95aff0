"""The ecology page's figures, from fixed device states, roll-up means and a fixed clock."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from dashboards import ecology as eco
from dashboards.i18n import STRINGS
from models.live import OFFLINE_AFTER_S, DeviceState
from models.standards import aqi

#: 2026-06-15 10:30 Beijing time (day period for noise).
NOW_DT = datetime(2026, 6, 15, 2, 30, tzinfo=UTC)
NOW = NOW_DT.timestamp()


def state(
    device_id: str,
    type_: str,
    *,
    seen_ago: float | None = 30,
    metrics: dict[str, float] | None = None,
    derived: dict[str, Any] | None = None,
    district: str = "511602",
) -> DeviceState:
    return DeviceState(
        device_id=device_id,
        type=type_,
        name=f"名称{device_id}",
        lon=106.6,
        lat=30.4,
        district_code=district,
        grid_id=None,
        ts=None,
        metrics=metrics or {},
        derived=derived or {},
        last_seen=None if seen_ago is None else NOW - seen_ago,
    )


def air(device_id: str, value: int, *, seen_ago: float = 30) -> DeviceState:
    level = aqi.level_of(value)
    derived = {
        "aqi": value,
        "level": level.number,
        "category": level.category,
        "color": level.color,
        "primary": ["pm25"] if value > 50 else [],
    }
    return state(device_id, "air_quality", seen_ago=seen_ago, derived=derived)


def test_freshness_turns_silent_after_the_offline_limit() -> None:
    assert not eco.freshness(OFFLINE_AFTER_S).silent
    silent = eco.freshness(OFFLINE_AFTER_S + 60)
    assert silent.silent and silent.minutes == 16
    assert eco.freshness(None).silent
    assert eco.newest([None, 2000, 40]).age_s == 40


def test_air_stations_worst_first_and_silent_ones_show_no_live_index() -> None:
    rows = eco.air_stations(
        [air("a", 42), air("b", 135), air("c", 160, seen_ago=3600), state("x", "noise")], NOW
    )
    assert [r.device_id for r in rows] == ["b", "a", "c"]
    assert rows[0].aqi == 135 and rows[0].color == "#FF7E00" and rows[0].category == "轻度污染"
    assert rows[0].primary == ("pm25",) and rows[1].primary == ()
    assert rows[0].district == "广安区"
    silent = rows[2]
    assert silent.aqi is None and silent.color is None and silent.fresh.silent and silent.fresh.minutes == 60


def test_air_stations_with_a_limit_builds_the_same_first_rows_only() -> None:
    states = [air(f"s{i:02d}", 20 + (i * 37) % 180) for i in range(30)]
    states += [air("quiet", 300, seen_ago=3600), state("x", "noise")]
    every = eco.air_stations(states, NOW)
    assert len(every) == 31 and every[-1].device_id == "quiet"
    assert eco.air_stations(states, NOW, limit=3) == every[:3]
    assert eco.air_stations(states[-2:], NOW, limit=3) == every[-1:]


def sections(grades: list[str | None], river: str = "嘉陵江") -> tuple[list[DeviceState], dict[str, dict]]:
    states, props = [], {}
    for i, g in enumerate(grades):
        device_id = f"w-{river}-{i}"
        derived = {"grade": g, "status": "", "worst": []} if g else {}
        states.append(state(device_id, "water_quality", derived=derived, seen_ago=30 if g else 7200))
        props[device_id] = {"body": "river", "river": river, "target_class": "III"}
    return states, props


def test_river_with_five_live_sections_gets_the_overall_assessment() -> None:
    states, props = sections(["II", "II", "III", "III", "IV"])
    panels = eco.river_panels(eco.water_sections(states, props, NOW))
    jialing = panels[0]
    assert jialing.river == "嘉陵江" and jialing.graded == 5
    # 4 of 5 in I–III = 80%: 良好 (75–90%).
    assert jialing.assessment is not None and jialing.assessment.status == "良好"
    assert jialing.share_good == pytest.approx(0.8)
    # 渠江 has no section: shown, with nothing to assess.
    assert panels[1].river == "渠江" and panels[1].share_good is None and panels[1].assessment is None


def test_river_below_five_live_sections_shows_only_the_share_of_i_to_iii() -> None:
    # Five sections, but one is silent: its stale class must not count.
    states, props = sections(["II", "III", "V", "劣V", None], river="渠江")
    found = eco.water_sections(states, props, NOW)
    assert [s.worse_than_target for s in found] == [False, False, True, True, False]
    qu = eco.river_panels(found)[1]
    assert qu.graded == 4 and qu.assessment is None and qu.share_good == pytest.approx(0.5)


def test_water_sections_skip_lakes_and_devices_without_a_river() -> None:
    states, props = sections(["II"])
    states.append(state("lake", "water_quality", derived={"grade": "I"}))
    props["lake"] = {"body": "lake", "river": "嘉陵江"}
    states.append(state("plain", "water_quality", derived={"grade": "I"}))
    assert [s.device_id for s in eco.water_sections(states, props, NOW)] == ["w-嘉陵江-0"]


def test_water_colours_cover_every_class() -> None:
    assert set(eco.WATER_COLOURS) == {"I", "II", "III", "IV", "V", "劣V"}


def test_noise_zones_energy_mean_and_exceedances_of_live_points_only() -> None:
    states = [
        state("n1", "noise", metrics={"laeq": 50.0}, derived={"exceeded": False}),
        state("n2", "noise", metrics={"laeq": 60.0}, derived={"exceeded": True}),
        state("n3", "noise", metrics={"laeq": 90.0}, derived={"exceeded": True}, seen_ago=3600),
        state("n4", "noise", metrics={"laeq": 58.0}, derived={"exceeded": False}),
    ]
    props = {"n1": {"zone": "1"}, "n2": {"zone": 1}, "n3": {"zone": "1"}, "n4": {"zone": "4A"}}
    zones = {z.zone: z for z in eco.noise_zones(states, props, NOW)}
    one = zones["1"]
    assert (one.day_limit, one.night_limit, one.period) == (55, 45, "day")
    assert one.points == 3 and one.live_points == 2 and one.exceeded == 1
    # Energy mean of 50 and 60 dB is 57.4 dB, not the arithmetic 55.
    assert one.mean_laeq == 57.4
    assert zones["4a"].mean_laeq == 58.0 and set(zones) == {"1", "4a"}


def test_noise_exceedance_hours_use_the_limit_of_each_hours_period() -> None:
    props = {"n": {"zone": "2"}}  # day 60, night 50
    rows = [
        ("n", datetime(2026, 6, 14, 16, tzinfo=UTC), 55.0),  # 00:00 Beijing, night: over 50
        ("n", datetime(2026, 6, 15, 1, tzinfo=UTC), 55.0),  # 09:00, day: under 60
        ("n", datetime(2026, 6, 15, 2, tzinfo=UTC), 61.0),  # 10:00, day: over
        ("unknown", datetime(2026, 6, 15, 2, tzinfo=UTC), 99.0),
    ]
    assert eco.noise_exceedance_hours(rows, props) == 2


def test_window_runs_from_beijing_midnight_yesterday_to_the_current_hour() -> None:
    hours = eco.window_hours(NOW_DT)
    assert hours[0] == datetime(2026, 6, 13, 16, tzinfo=UTC)
    assert hours[-1] == datetime(2026, 6, 15, 2, tzinfo=UTC)
    assert len(hours) == 24 + 11


def test_hourly_series_daily_aqi_and_polluted_hours() -> None:
    hours = eco.window_hours(NOW_DT)
    n = len(hours)
    # PM2.5 40 µg/m³ all of yesterday (IAQI 60 under HJ 633—2026);
    # today 80 µg/m³ for hours 0–2 Beijing, then gaps.
    pm25: list[float | None] = [40.0] * 24 + [80.0, 80.0, 80.0] + [None] * (n - 27)
    means = {"pm25": pm25}
    series = eco.hourly_series(means, hours)
    assert series[0] is not None and series[0].aqi == 60
    assert series[24] is not None and series[24].aqi > 100
    assert series[-1] is None
    assert eco.polluted_hours(series, hours, date(2026, 6, 15)) == 3
    assert eco.polluted_hours(series, hours, date(2026, 6, 14)) == 0
    daily = eco.daily_from_window(means, hours, date(2026, 6, 14))
    assert daily is not None and daily.aqi == 60 and daily.primary == ("pm25",)
    # Today has 3 valid hours: below the validity rule, so no daily index.
    assert eco.daily_from_window(means, hours, date(2026, 6, 15)) is None


def test_daily_needs_enough_valid_hours() -> None:
    hours = eco.window_hours(NOW_DT)
    sparse: list[float | None] = [40.0 if i % 3 == 0 else None for i in range(len(hours))]
    assert eco.daily_from_window({"pm25": sparse}, hours, date(2026, 6, 14)) is None


def test_series_freshness_counts_from_the_end_of_the_newest_hour() -> None:
    hours = eco.window_hours(NOW_DT)
    filled = eco.hourly_series({"pm25": [30.0] * len(hours)}, hours)
    assert eco.series_freshness(filled, hours, NOW_DT).age_s == 0
    # Newest data in the hour before: ended 30 min ago, past the offline limit.
    gap = eco.hourly_series({"pm25": [30.0] * (len(hours) - 1) + [None]}, hours)
    stale = eco.series_freshness(gap, hours, NOW_DT)
    assert stale.silent and stale.minutes == 30
    assert eco.series_freshness([None] * len(hours), hours, NOW_DT).age_s is None


def test_every_ecology_string_has_chinese_and_english() -> None:
    keys = [k for k in STRINGS if k.startswith(("eco.", "nav.ecology"))]
    assert len(keys) > 30
    assert all(STRINGS[k]["zh"] and STRINGS[k]["en"] for k in keys)


def test_worst_sections_are_listed_first_and_capped() -> None:
    props = {f"w{i}": {"river": "嘉陵江", "target_class": "III"} for i in range(6)}
    states = [
        state("w0", "water_quality", derived={"grade": "II"}),
        state("w1", "water_quality", derived={"grade": "劣V"}),
        state("w2", "water_quality", derived={"grade": "IV"}),
        state("w3", "water_quality", seen_ago=None, derived={"grade": "V"}),  # silent: no live class
        state("w4", "water_quality", derived={"grade": "IV"}),
        state("w5", "water_quality", derived={"grade": "I"}),
    ]
    sections = eco.water_sections(states, props, NOW)
    assert [s.device_id for s in eco.worst_sections(sections, 10)] == ["w1", "w2", "w4", "w0", "w5", "w3"]
    assert [s.device_id for s in eco.worst_sections(sections, 2)] == ["w1", "w2"]
    assert eco.worst_sections(sections, 0) == []


def test_the_page_types_are_sorted_out_of_every_device_in_one_pass() -> None:
    states = [
        air("a2", 80),
        state("cam", "camera"),
        state("n1", "noise"),
        air("a1", 40),
        state("w1", "water_quality"),
        state("smoke", "smoke"),
    ]
    found = eco.by_type(states)
    assert list(found) == list(eco.PAGE_TYPES)
    # Each type keeps the order it was read in (the live store's: by device id).
    assert [s.device_id for s in found["air_quality"]] == ["a2", "a1"]
    assert [s.device_id for s in found["water_quality"]] == ["w1"]
    assert [s.device_id for s in found["noise"]] == ["n1"]
    assert eco.by_type(states, ("smoke", "gas")) == {"smoke": [states[5]], "gas": []}


def test_an_hours_index_is_computed_once_for_the_same_means() -> None:
    hours = eco.window_hours(NOW_DT)
    means = {"pm25": [37.5 + i for i in range(len(hours))], "o3": [121.0] * len(hours)}
    first = eco.hourly_series(means, hours)
    assert first == [aqi.realtime({"pm25": 37.5 + i, "o3": 121.0}, at=h) for i, h in enumerate(hours)]
    hits = eco._realtime.cache_info().hits
    again = eco.hourly_series(means, hours)
    # The same results, taken from the memo: none computed again.
    assert all(a is b for a, b in zip(first, again, strict=True))
    assert eco._realtime.cache_info().hits == hits + len(hours)
    # A late reading that moves one hour's mean gives that hour a new index.
    moved = {"pm25": [*means["pm25"][:-1], 250.0], "o3": means["o3"]}
    last = eco.hourly_series(moved, hours)[-1]
    assert last is not None and last.aqi == aqi.realtime({"pm25": 250.0, "o3": 121.0}, at=hours[-1]).aqi
    assert last.aqi != first[-1].aqi  # type: ignore[union-attr]
    daily = eco.daily_from_window(means, hours, date(2026, 6, 14))
    assert daily is eco.daily_from_window(means, hours, date(2026, 6, 14))
    assert daily == aqi.daily_from_hourly({p: v[:24] for p, v in means.items()}, on=date(2026, 6, 14))


def test_the_lowest_noise_limit_is_that_of_the_quietest_zone_in_use() -> None:
    assert eco.lowest_noise_limit({"n1": {"zone": "2"}, "n2": {"zone": "4a"}}) == 50  # zone 2 at night
    assert eco.lowest_noise_limit({"n1": {"zone": 1}, "w": {"river": "渠江"}}) == 45
    assert eco.lowest_noise_limit({"w": {"river": "渠江"}, "x": {"zone": "9"}}) is None
    assert eco.lowest_noise_limit({}) is None
