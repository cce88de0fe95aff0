"""Daily statistics from hourly values: O3 8h moving averages, 24h means, their validity rules."""

from __future__ import annotations

from datetime import date

import pytest

from models.standards import aqi

ON = date(2026, 6, 1)


def test_o3_8h_windows_lie_inside_the_day() -> None:
    hourly = [float(h) for h in range(24)]
    windows = aqi.o3_8h_moving(hourly)
    assert len(windows) == 17
    assert windows[0] == 3.5 and windows[-1] == 19.5  # hours 0–7 … hours 16–23
    assert aqi.o3_8h_max(hourly) == 19.5


def test_a_window_needs_six_valid_hours_and_averages_them() -> None:
    hourly: list[float | None] = [100.0] * 24
    hourly[0:2] = [None, None]
    hourly[2:8] = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0]
    windows = aqi.o3_8h_moving(hourly)
    assert windows[0] == 35.0  # six valid hours: (10 + … + 60) / 6
    hourly[2] = None
    assert aqi.o3_8h_moving(hourly)[0] is None  # five valid hours


def test_the_day_needs_fourteen_valid_windows() -> None:
    # Hours 0–4 missing: windows 0 and 1 and 2 have 3, 4, 5 valid hours → 14 valid windows.
    gap5: list[float | None] = [None] * 5 + [100.0] * 19
    assert sum(w is not None for w in aqi.o3_8h_moving(gap5)) == 14
    assert aqi.o3_8h_max(gap5) == 100.0
    # Hours 0–5 missing: 13 valid windows → no daily value.
    gap6: list[float | None] = [None] * 6 + [100.0] * 18
    assert sum(w is not None for w in aqi.o3_8h_moving(gap6)) == 13
    assert aqi.o3_8h_max(gap6) is None
    assert aqi.o3_8h_max([None] * 24) is None


def test_24h_means_need_twenty_valid_hours() -> None:
    means = aqi.daily_means({"pm25": [40.0] * 20 + [None] * 4, "pm10": [80.0] * 19 + [None] * 5})
    assert means == {"pm25": 40.0}
    mixed = aqi.daily_means({"co": [1, 2] * 10 + [None] * 4, "so2": [0.1] * 24})
    assert mixed == {"co": 1.5, "so2": 0.1}


def test_o3_gives_the_8h_maximum_and_the_1h_maximum() -> None:
    hourly: list[float | None] = [50.0] * 24
    hourly[14] = 300.0
    means = aqi.daily_means({"o3": hourly})
    assert means == {"o3_8h": pytest.approx(50 + 250 / 8), "o3": 300.0}
    sparse: list[float | None] = [100.0] * 19 + [None] * 5
    assert aqi.daily_means({"o3": sparse}) == {"o3_8h": 100.0}  # 8h valid, 1h max needs 20 hours


def test_daily_from_hourly() -> None:
    r = aqi.daily_from_hourly({"pm25": [60.0] * 24, "o3": [100.0] * 24}, on=ON)
    assert r is not None
    assert r.kind == "daily" and r.iaqi == {"pm25": 100, "o3": 50} and r.primary == ("pm25",)
    assert r.basis["o3"] == "o3_8h"
    assert aqi.daily_from_hourly({"pm25": [None] * 24}, on=ON) is None
    # A day where only the O3 1h maximum is known has no daily AQI: O3 is judged on 8h.
    assert aqi.daily_from_hourly({}, on=ON) is None


def test_daily_from_hourly_uses_the_o3_1h_special_case_in_2012() -> None:
    r = aqi.daily_from_hourly({"o3": [900.0] * 24}, on=date(2025, 6, 1))
    assert r is not None and r.iaqi == {"o3": 350} and r.basis["o3"] == "o3_1h"


@pytest.mark.parametrize(
    ("hourly", "match"),
    [
        ([1.0] * 23, "24 hourly"),
        ([1.0] * 25, "24 hourly"),
        ("x" * 24, "sequence"),
        (None, "sequence"),
        ([1.0] * 23 + [-1.0], r"o3\[23\]"),
        ([1.0] * 23 + [float("nan")], r"o3\[23\]"),
        ([1.0] * 23 + [True], r"o3\[23\]"),
    ],
)
def test_bad_hourly_input_raises(hourly: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        aqi.o3_8h_max(hourly)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        aqi.daily_means({"o3": hourly})  # type: ignore[dict-item]


def test_daily_from_hourly_checks_its_arguments_even_on_a_gap_day() -> None:
    with pytest.raises(ValueError, match="unknown key"):
        aqi.daily_means({"o3_8h": [1.0] * 24})
    with pytest.raises(ValueError, match="mapping"):
        aqi.daily_means([1.0] * 24)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="standard"):
        aqi.daily_from_hourly({"pm25": [None] * 24}, on=ON, standard=1999)
    with pytest.raises(ValueError, match="date"):
        aqi.daily_from_hourly({"pm25": [None] * 24}, on="2026-06-01")  # type: ignore[arg-type]
