"""Noise limits per GB 3096—2008: zones, day/night in city time, the night burst rule."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from models.clock import CITY_TZ
from models.standards import noise

# GB 3096—2008 Table 1, re-typed from the shared standard text: zone → (day, night).
TABLE = {"0": (50, 40), "1": (55, 45), "2": (60, 50), "3": (65, 55), "4a": (70, 55), "4b": (70, 60)}


def local(h: int, m: int = 0, s: int = 0, us: int = 0) -> datetime:
    return datetime(2026, 7, 1, h, m, s, us, tzinfo=CITY_TZ)


@pytest.mark.parametrize(("zone", "limits"), TABLE.items())
def test_every_zone_by_day_and_by_night(zone: str, limits: tuple[int, int]) -> None:
    assert noise.limit(zone, local(12)) == limits[0]
    assert noise.limit(zone, local(2)) == limits[1]
    assert noise.limit(zone=zone.upper(), at=local(23)) == limits[1]


@pytest.mark.parametrize(
    ("at", "period"),
    [
        (local(5, 59, 59, 999999), "night"),
        (local(6), "day"),
        (local(21, 59, 59, 999999), "day"),
        (local(22), "night"),
        (local(0), "night"),
        # The same instants given in UTC: 22:00Z is 06:00 the next day in Beijing time.
        (datetime(2026, 6, 30, 21, 59, 59, tzinfo=UTC), "night"),
        (datetime(2026, 6, 30, 22, 0, tzinfo=UTC), "day"),
        (datetime(2026, 7, 1, 13, 59, 59, tzinfo=UTC), "day"),
        (datetime(2026, 7, 1, 14, 0, tzinfo=UTC), "night"),
        # And in another offset: 09:00 −05:00 = 22:00 +08:00.
        (datetime(2026, 7, 1, 9, 0, tzinfo=timezone(timedelta(hours=-5))), "night"),
    ],
)
def test_day_and_night_boundaries_in_city_time(at: datetime, period: str) -> None:
    assert noise.period(at) == period
    assert noise.limit("1", at) == (55 if period == "day" else 45)
    assert noise.assess(50, "1", at).period == period


def test_assess_on_and_above_the_limit() -> None:
    on = noise.assess(55, "1", local(12))
    assert (on.limit, on.exceeded, on.excess_db) == (55, False, 0.0)
    above = noise.assess(55.3, "1", local(12))
    assert (above.exceeded, above.excess_db) == (True, 0.3)  # exactly 0.3, no float noise
    below = noise.assess(40, "1", local(12))
    assert (below.exceeded, below.excess_db) == (False, 0.0)
    night = noise.assess(48.5, "1", local(23))
    assert (night.limit, night.exceeded, night.excess_db, night.period) == (45, True, 3.5, "night")


def test_night_burst_may_exceed_the_limit_by_15_db() -> None:
    at = local(23)
    ok = noise.assess(44, "1", at, lmax=60)  # 45 + 15
    assert (ok.burst_limit, ok.burst_exceeded, ok.burst_excess_db) == (60, False, 0.0)
    burst = noise.assess(44, "1", at, lmax=60.1)
    assert (burst.burst_exceeded, burst.burst_excess_db, burst.exceeded) == (True, 0.1, False)
    assert noise.assess(44, "4b", at, lmax=75).burst_exceeded is False
    assert noise.assess(44, "4b", at, lmax=75.5).burst_exceeded is True


def test_burst_rule_is_for_the_night_only() -> None:
    day = noise.assess(50, "1", local(12), lmax=95)
    assert (day.burst_limit, day.burst_exceeded, day.lmax) == (None, False, 95.0)
    no_lmax = noise.assess(50, "1", local(23))
    assert (no_lmax.burst_limit, no_lmax.burst_exceeded, no_lmax.lmax) == (None, False, None)


def test_result_is_frozen() -> None:
    r = noise.assess(50, "1", local(12))
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.limit = 1  # type: ignore[misc]
    assert hash(r) == hash(noise.assess(50, "1", local(12)))


@pytest.mark.parametrize("zone", ["5", "4", "4c", "", " 1", 1, True, None, "一类"])
def test_unknown_zones_raise(zone: object) -> None:
    with pytest.raises(ValueError, match="zone"):
        noise.limit(zone, local(12))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="zone"):
        noise.assess(50, zone, local(12))  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [-1, math.nan, math.inf, True, "50", None])
def test_bad_levels_raise(bad: object) -> None:
    with pytest.raises(ValueError, match="laeq"):
        noise.assess(bad, "1", local(12))  # type: ignore[arg-type]
    if bad is not None:
        with pytest.raises(ValueError, match="lmax"):
            noise.assess(50, "1", local(23), lmax=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("at", [datetime(2026, 7, 1, 12), date(2026, 7, 1), "2026-07-01T12:00+08:00", 0])
def test_times_must_be_aware_datetimes(at: object) -> None:
    with pytest.raises(ValueError, match="at"):
        noise.limit("1", at)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at"):
        noise.assess(50, "1", at)  # type: ignore[arg-type]
