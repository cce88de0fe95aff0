"""Derived values per reading, as ingest stores them next to the raw metrics."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from models.clock import CITY_TZ
from models.standards.derive import derive

AT = datetime(2026, 7, 1, 12, tzinfo=CITY_TZ)


def test_air_quality_gives_the_realtime_aqi() -> None:
    d = derive("air_quality", {}, {"pm25": 45, "pm10": 80, "so2": 35, "no2": 85, "co": 3, "o3": 140}, AT)
    assert d == {
        "aqi": 72,
        "level": 2,
        "category": "良",
        "color": "#FFFF00",
        "primary": ["pm10"],
        "iaqi": {"pm25": 70, "pm10": 72, "so2": 12, "no2": 43, "co": 30, "o3": 44},
    }
    assert json.loads(json.dumps(d, ensure_ascii=False)) == d


def test_air_quality_with_some_pollutants_or_none_indexable() -> None:
    assert derive("air_quality", {}, {"pm25": 10.5}, AT)["iaqi"] == {"pm25": 15}
    # HJ 633—2012 leaves out SO2 1h > 800 without a 24h value: nothing left to index.
    assert derive("air_quality", {}, {"so2": 900}, datetime(2025, 7, 1, tzinfo=UTC)) == {}
    assert derive("air_quality", {}, {"so2": 900}, AT)["aqi"] == 200


def test_water_quality_uses_the_body_and_ignores_what_has_no_class() -> None:
    metrics = {"do": 6.5, "codmn": 3.5, "nh3n": 0.8, "tp": 0.15, "temp": 24.0, "turbidity": 12.0, "tn": 3.0}
    river = derive("water_quality", {"body": "river", "target_class": "III"}, metrics, AT)
    assert river == {"grade": "III", "status": "良好", "worst": ["nh3n", "tp"]}
    assert derive("water_quality", {}, metrics, AT) == river
    lake = derive("water_quality", {"body": "lake"}, metrics, AT)
    assert lake == {"grade": "劣V", "status": "重度污染", "worst": ["tn"]}


def test_water_quality_skips_what_it_cannot_judge() -> None:
    assert derive("water_quality", {}, {"temp": 20.0, "turbidity": 3.0}, AT) == {}
    assert derive("water_quality", {}, {"tn": 3.0}, AT) == {}  # TN does not count for rivers
    assert derive("water_quality", {"body": "sea"}, {"do": 8.0}, AT) == {}
    assert derive("water_quality", {"body": 3}, {"do": 8.0}, AT) == {}


def test_noise_uses_the_zone_and_city_time() -> None:
    d = derive("noise", {"zone": "1"}, {"laeq": 48.2, "lmax": 70.0}, datetime(2026, 7, 1, 15, tzinfo=UTC))
    assert d == {"limit": 45, "exceeded": True, "excess_db": 3.2, "period": "night"}
    assert derive("noise", {"zone": "4a"}, {"laeq": 60.0}, AT) == {
        "limit": 70,
        "exceeded": False,
        "excess_db": 0.0,
        "period": "day",
    }
    assert derive("noise", {"zone": 2}, {"laeq": 60.0}, AT)["limit"] == 60


@pytest.mark.parametrize("props", [{}, {"zone": None}, {"zone": "9"}, {"zone": True}, {"zone": ["1"]}])
def test_noise_without_a_valid_zone_is_skipped(props: dict[str, object]) -> None:
    assert derive("noise", props, {"laeq": 60.0}, AT) == {}


def test_noise_without_laeq_is_skipped() -> None:
    assert derive("noise", {"zone": "1"}, {"lmax": 80.0}, AT) == {}


@pytest.mark.parametrize(
    "device_type", ["water_level", "rainfall", "manhole", "gas", "weather", "camera", "x"]
)
def test_other_types_have_nothing_derived(device_type: str) -> None:
    assert derive(device_type, {}, {"level": 1.0}, AT) == {}


def test_a_naive_time_is_still_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        derive("air_quality", {}, {"pm25": 10.0}, datetime(2026, 7, 1, 12))
