"""AQI per HJ 633—2012 / HJ 633—2026: every breakpoint, the switch date, special cases, rounding."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction

import pytest

from models.clock import CITY_TZ
from models.standards import aqi

# The tables re-typed from the shared standard text, independently of the module's copy.
STEPS = (0, 50, 100, 150, 200, 300, 400, 500)
SHARED = {
    "so2_24h": (0, 50, 150, 475, 800, 1600, 2100, 2620),
    "so2_1h": (0, 150, 500, 650, 800),
    "no2_24h": (0, 40, 80, 180, 280, 565, 750, 940),
    "no2_1h": (0, 100, 200, 700, 1200, 2340, 3090, 3840),
    "co_24h": (0, 2, 4, 14, 24, 36, 48, 60),
    "co_1h": (0, 5, 10, 35, 60, 90, 120, 150),
    "o3_1h": (0, 160, 200, 300, 400, 800, 1000, 1200),
    "o3_8h": (0, 100, 160, 215, 265, 800),
}
TABLES = {
    2012: {
        **SHARED,
        "pm10_24h": (0, 50, 150, 250, 350, 420, 500, 600),
        "pm25_24h": (0, 35, 75, 115, 150, 250, 350, 500),
    },
    2026: {
        **SHARED,
        "pm10_24h": (0, 50, 120, 250, 350, 420, 500, 600),
        "pm25_24h": (0, 35, 60, 115, 150, 250, 350, 500),
    },
}
# Which report reads which column, keyed by the input key.
REALTIME = {
    "pm25": "pm25_24h",
    "pm10": "pm10_24h",
    "so2": "so2_1h",
    "no2": "no2_1h",
    "co": "co_1h",
    "o3": "o3_1h",
}
DAILY = {
    "pm25": "pm25_24h",
    "pm10": "pm10_24h",
    "so2": "so2_24h",
    "no2": "no2_24h",
    "co": "co_24h",
    "o3_8h": "o3_8h",
}
DAY = {2012: date(2025, 6, 1), 2026: date(2026, 6, 1)}
JUST = Decimal("0.01")  # "just above": small enough for every segment's slope to add < 1


def noon(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 12, tzinfo=CITY_TZ)


def rows(mapping: dict[str, str]) -> list[tuple[int, str, str, int, int]]:
    out = []
    for std, table in TABLES.items():
        for key, column in mapping.items():
            for i, bp in enumerate(table[column]):
                out.append((std, key, column, bp, STEPS[i]))
    return out


def pollutant(key: str) -> str:
    return "o3" if key == "o3_8h" else key


@pytest.mark.parametrize(("std", "key", "column", "bp", "step"), rows(REALTIME))
def test_realtime_every_breakpoint_and_just_above(
    std: int, key: str, column: str, bp: int, step: int
) -> None:
    at = noon(DAY[std])
    assert aqi.realtime({key: bp}, at=at).iaqi[key] == step
    assert aqi.iaqi(column, bp, standard=std) == step
    above = float(bp + JUST)
    if key == "so2" and bp == 800:
        return  # the special case, tested below
    expected = 500 if step == 500 else step + 1
    r = aqi.realtime({key: above}, at=at)
    assert r.iaqi[key] == expected
    assert r.basis[key] == column


@pytest.mark.parametrize(("std", "key", "column", "bp", "step"), rows(DAILY))
def test_daily_every_breakpoint_and_just_above(std: int, key: str, column: str, bp: int, step: int) -> None:
    on = DAY[std]
    assert aqi.daily({key: bp}, on=on).iaqi[pollutant(key)] == step
    assert aqi.iaqi(column, bp, standard=std) == step
    if key == "o3_8h" and bp == 800:
        return  # the special case, tested below
    expected = 500 if step == 500 else step + 1
    r = aqi.daily({key: float(bp + JUST)}, on=on)
    assert r.iaqi[pollutant(key)] == expected
    assert r.basis[pollutant(key)] == column


def test_interpolation_inside_a_segment() -> None:
    # PM2.5 45 (2026): 50 + (100−50)/(60−35) × (45−35) = 70; PM10 80: 50 + 50/70 × 30 = 71.43 → 72.
    r = aqi.realtime(
        {"pm25": 45, "pm10": 80, "so2": 35, "no2": 85, "co": 3, "o3": 140}, at=noon(date(2026, 5, 1))
    )
    assert r.iaqi == {"pm25": 70, "pm10": 72, "so2": 12, "no2": 43, "co": 30, "o3": 44}
    assert (r.aqi, r.level, r.category, r.color) == (72, 2, "良", "#FFFF00")
    assert r.primary == ("pm10",) and r.exceeding == ()
    assert r.standard == "HJ 633—2026" and r.kind == "realtime"
    r12 = aqi.realtime(
        {"pm25": 45, "pm10": 80, "so2": 35, "no2": 85, "co": 3, "o3": 140}, at=noon(date(2025, 5, 1))
    )
    assert (r12.iaqi["pm25"], r12.iaqi["pm10"], r12.aqi) == (63, 65, 65)


def test_known_wrong_tables_are_not_ours() -> None:
    assert aqi.iaqi("so2_24h", 2620, standard=2012) == 500
    assert aqi.iaqi("so2_24h", 2602, standard=2012) < 500
    assert aqi.iaqi("so2_24h", 150, standard=2012) == 100  # not the 1h column's 500
    assert aqi.iaqi("pm25_24h", 35, standard=2012) == 50  # not 52
    # Continuous interpolation, not EPA-style integer steps.
    assert aqi.iaqi("pm25_24h", 35.5, standard=2012) == 51


# --- the 2026-03-01 switch -------------------------------------------------------------------


def test_switch_on_the_city_date_for_realtime() -> None:
    before = datetime(2026, 2, 28, 23, 30, tzinfo=CITY_TZ)
    after = datetime(2026, 3, 1, 0, 30, tzinfo=CITY_TZ)
    # PM2.5 70: 2012 → 50 + 50/40 × 35 = 93.75 → 94; 2026 → 100 + 50/55 × 10 = 109.1 → 110.
    r_before = aqi.realtime({"pm25": 70}, at=before)
    r_after = aqi.realtime({"pm25": 70}, at=after)
    assert (r_before.standard, r_before.aqi, r_before.date) == ("HJ 633—2012", 94, date(2026, 2, 28))
    assert (r_after.standard, r_after.aqi, r_after.date) == ("HJ 633—2026", 110, date(2026, 3, 1))
    # 17:00 UTC on the 28th is 01:00 on 1 March in Guang'an.
    utc = aqi.realtime({"pm25": 70}, at=datetime(2026, 2, 28, 17, 0, tzinfo=UTC))
    assert (utc.standard, utc.aqi, utc.date) == ("HJ 633—2026", 110, date(2026, 3, 1))
    just_before = aqi.realtime({"pm25": 70}, at=datetime(2026, 2, 28, 15, 59, 59, tzinfo=UTC))
    assert just_before.standard == "HJ 633—2012"


def test_switch_for_daily_and_pm10() -> None:
    # PM10 130: 2012 → 50 + 0.5 × 80 = 90; 2026 → 100 + 50/130 × 10 = 103.8 → 104.
    assert aqi.daily({"pm10": 130}, on=date(2026, 2, 28)).aqi == 90
    assert aqi.daily({"pm10": 130}, on=date(2026, 3, 1)).aqi == 104
    assert aqi.daily({"pm10": 130}, on=datetime(2026, 2, 28, 16, 0, tzinfo=UTC)).date == date(2026, 3, 1)
    assert aqi.standard_for(date(2026, 2, 28)) == 2012 and aqi.standard_for(date(2026, 3, 1)) == 2026


def test_standard_can_be_forced() -> None:
    at = noon(date(2026, 6, 1))
    assert aqi.realtime({"pm25": 70}, at=at, standard=2012).aqi == 94
    assert aqi.daily({"pm25": 70}, on=date(2020, 1, 1), standard=2026).aqi == 110


# --- special cases -----------------------------------------------------------------------------


def test_realtime_so2_above_800_in_2012_uses_the_24h_value() -> None:
    at = noon(DAY[2012])
    r = aqi.realtime({"so2": 900, "so2_24h": 200, "pm25": 10}, at=at)
    # 24h column 150 → 100, 475 → 150: 100 + 50/325 × 50 = 107.7 → 108.
    assert r.iaqi["so2"] == 108 and r.basis["so2"] == "so2_24h"
    assert r.primary == ("so2",) and r.exceeding == ("so2",)
    assert any("24h" in n for n in r.notes)
    assert r.concentrations == {"so2": 900.0, "so2_24h": 200.0, "pm25": 10.0}


def test_realtime_so2_above_800_in_2012_without_24h_is_left_out() -> None:
    at = noon(DAY[2012])
    r = aqi.realtime({"so2": 900, "pm25": 10}, at=at)
    assert "so2" not in r.iaqi and r.aqi == aqi.iaqi("pm25_24h", 10, standard=2012)
    assert any("left out" in n for n in r.notes)
    with pytest.raises(ValueError, match="no pollutant"):
        aqi.realtime({"so2": 900}, at=at)


def test_realtime_so2_above_800_in_2026_is_200() -> None:
    r = aqi.realtime({"so2": 5000, "so2_24h": 10}, at=noon(DAY[2026]))
    assert r.iaqi == {"so2": 200} and r.basis["so2"] == "so2_1h" and r.level == 4
    assert aqi.realtime({"so2": 800}, at=noon(DAY[2026])).iaqi["so2"] == 200
    assert aqi.realtime({"so2": 800}, at=noon(DAY[2012])).iaqi["so2"] == 200


def test_so2_24h_is_only_a_fallback_in_realtime() -> None:
    r = aqi.realtime({"so2": 100, "so2_24h": 2000}, at=noon(DAY[2012]))
    assert r.iaqi["so2"] == math.ceil(100 * 50 / 150) and r.basis["so2"] == "so2_1h"
    with pytest.raises(ValueError, match="no pollutant"):
        aqi.realtime({"so2_24h": 2000}, at=noon(DAY[2012]))


def test_daily_o3_8h_above_800_in_2012_uses_the_1h_value() -> None:
    r = aqi.daily({"o3_8h": 900, "o3": 900}, on=DAY[2012])
    assert r.iaqi == {"o3": 350} and r.basis["o3"] == "o3_1h"
    capped = aqi.daily({"o3_8h": 900, "o3": 5000}, on=DAY[2012])
    assert capped.iaqi == {"o3": 500}
    left_out = aqi.daily({"o3_8h": 900, "pm25": 35}, on=DAY[2012])
    assert "o3" not in left_out.iaqi and left_out.aqi == 50
    with pytest.raises(ValueError, match="no pollutant"):
        aqi.daily({"o3_8h": 900}, on=DAY[2012])


def test_daily_o3_8h_above_800_in_2026_is_300() -> None:
    r = aqi.daily({"o3_8h": 801, "o3": 1200}, on=DAY[2026])
    assert r.iaqi == {"o3": 300} and r.basis["o3"] == "o3_8h" and r.level == 5
    assert aqi.daily({"o3_8h": 800}, on=DAY[2026]).iaqi == {"o3": 300}


def test_daily_o3_1h_is_only_a_fallback() -> None:
    r = aqi.daily({"o3_8h": 100, "o3": 1000}, on=DAY[2012])
    assert r.iaqi == {"o3": 50}
    with pytest.raises(ValueError, match="no pollutant"):
        aqi.daily({"o3": 1000}, on=DAY[2012])


def test_short_columns_refuse_values_past_their_end() -> None:
    with pytest.raises(ValueError, match="special case"):
        aqi.iaqi("so2_1h", 801, standard=2026)
    with pytest.raises(ValueError, match="special case"):
        aqi.iaqi("o3_8h", 801, standard=2012)


# --- primary, exceeding, rounding, cap -------------------------------------------------------


def test_tie_on_exact_values_gives_two_primary_pollutants() -> None:
    r = aqi.realtime({"pm25": 60, "pm10": 120, "co": 1}, at=noon(DAY[2026]))
    assert r.aqi == 100 and r.primary == ("pm25", "pm10") and r.exceeding == ()


def test_tie_is_decided_on_the_rounded_values() -> None:
    # CO 6.72 mg/m³ → 67.2 → 68; PM2.5 43.9 (2026) → 50 + 2 × 8.9 = 67.8 → 68.
    r = aqi.realtime({"co": 6.72, "pm25": 43.9}, at=noon(DAY[2026]))
    assert r.iaqi == {"pm25": 68, "co": 68} and r.primary == ("pm25", "co")
    r2 = aqi.realtime({"co": 6.72, "pm25": 44.5}, at=noon(DAY[2026]))
    assert r2.iaqi == {"pm25": 69, "co": 68} and r2.primary == ("pm25",)


def test_no_primary_pollutant_at_50_or_below() -> None:
    r = aqi.realtime({"pm25": 35, "pm10": 50}, at=noon(DAY[2026]))
    assert r.aqi == 50 and r.primary == () and r.category == "优"
    r2 = aqi.realtime({"pm25": 35.01}, at=noon(DAY[2026]))
    assert r2.aqi == 51 and r2.primary == ("pm25",)


def test_exceeding_means_iaqi_above_100() -> None:
    at = noon(DAY[2026])
    assert aqi.realtime({"pm25": 60, "no2": 200}, at=at).exceeding == ()
    r = aqi.realtime({"pm25": 60.01, "no2": 201, "co": 1}, at=at)
    assert r.exceeding == ("pm25", "no2") and r.iaqi["pm25"] == 101


def test_aqi_is_the_ceiling_of_the_largest_iaqi() -> None:
    # PM10 51 (2012): 50 + 0.5 × 1 = 50.5 → 51, level 二级.
    r = aqi.daily({"pm10": 51}, on=DAY[2012])
    assert r.aqi == 51 and r.level == 2


def test_floats_are_read_as_their_decimal() -> None:
    # 0.2 mg/m³ CO is exactly IAQI 2 (binary 0.2 is a hair above and would ceil to 3).
    assert aqi.realtime({"co": 0.2}, at=noon(DAY[2026])).aqi == 2
    assert aqi.daily({"co": 1.2}, on=DAY[2026]).aqi == 30
    assert aqi.daily({"co": Decimal("1.2"), "so2": Fraction(1, 2)}, on=DAY[2026]).iaqi == {"so2": 1, "co": 30}


@pytest.mark.parametrize("std", [2012, 2026])
def test_above_the_top_breakpoint_is_capped_at_500(std: int) -> None:
    r = aqi.realtime({"pm25": 2000, "pm10": 3000, "no2": 5000, "co": 200, "o3": 2000}, at=noon(DAY[std]))
    assert r.aqi == 500 and set(r.iaqi.values()) == {500}
    assert r.primary == ("pm25", "pm10", "no2", "co", "o3")
    assert (r.level, r.category, r.color) == (6, "严重污染", "#7E0023")
    assert aqi.daily({"so2": 1e9}, on=DAY[std]).aqi == 500


def test_missing_pollutants_are_left_out() -> None:
    r = aqi.realtime({"pm25": 80, "o3": None}, at=noon(DAY[2026]))
    assert list(r.iaqi) == ["pm25"] and r.concentrations == {"pm25": 80.0}


# --- levels ----------------------------------------------------------------------------------

LEVEL_ROWS = [
    (0, 1, "优", "#00E400"),
    (50, 1, "优", "#00E400"),
    (51, 2, "良", "#FFFF00"),
    (100, 2, "良", "#FFFF00"),
    (101, 3, "轻度污染", "#FF7E00"),
    (150, 3, "轻度污染", "#FF7E00"),
    (151, 4, "中度污染", "#FF0000"),
    (200, 4, "中度污染", "#FF0000"),
    (201, 5, "重度污染", "#99004C"),
    (300, 5, "重度污染", "#99004C"),
    (301, 6, "严重污染", "#7E0023"),
    (500, 6, "严重污染", "#7E0023"),
]


@pytest.mark.parametrize(("value", "number", "category", "color"), LEVEL_ROWS)
def test_levels_categories_and_colours(value: int, number: int, category: str, color: str) -> None:
    lv = aqi.level_of(value)
    assert (lv.number, lv.category, lv.color) == (number, category, color)
    assert lv.name == "一二三四五六"[number - 1] + "级"


def test_result_through_realtime_carries_level_name_and_advice() -> None:
    # NO2 1h 1201 → just above 200: level 五级 (重度污染).
    r = aqi.realtime({"no2": 1201}, at=noon(DAY[2026]))
    assert (r.aqi, r.level, r.category, r.color, r.level_name) == (201, 5, "重度污染", "#99004C", "五级")
    assert "户外" in r.health_advice
    assert all(lv.advice and lv.health_effect for lv in aqi.LEVELS)


def test_level_of_refuses_bad_values() -> None:
    for bad in (-1, 1.5, True, "50"):
        with pytest.raises(ValueError):
            aqi.level_of(bad)  # type: ignore[arg-type]


def test_results_are_frozen_and_hashable() -> None:
    r = aqi.realtime({"pm25": 80}, at=noon(DAY[2026]))
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.aqi = 1  # type: ignore[misc]
    assert hash(r) == hash(aqi.realtime({"pm25": 80}, at=noon(DAY[2026])))


# --- bad input -------------------------------------------------------------------------------

BAD_VALUES = [-1, -0.001, math.nan, math.inf, -math.inf, True, False, "35", b"35", [35], Decimal("NaN")]


@pytest.mark.parametrize("bad", BAD_VALUES)
def test_bad_concentrations_raise(bad: object) -> None:
    with pytest.raises(ValueError, match="pm25"):
        aqi.realtime({"pm25": bad}, at=noon(DAY[2026]))  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="pm25"):
        aqi.daily({"pm25": bad}, on=DAY[2026])  # type: ignore[dict-item]


def test_unknown_keys_raise() -> None:
    at = noon(DAY[2026])
    with pytest.raises(ValueError, match="unknown key"):
        aqi.realtime({"pm2.5": 10}, at=at)
    with pytest.raises(ValueError, match="unknown key"):
        aqi.realtime({"o3_8h": 10}, at=at)
    with pytest.raises(ValueError, match="unknown key"):
        aqi.daily({"so2_24h": 10}, on=DAY[2026])
    with pytest.raises(ValueError, match="column"):
        aqi.iaqi("pm25", 10, standard=2026)


def test_time_arguments_must_be_aware() -> None:
    with pytest.raises(ValueError, match="naive"):
        aqi.realtime({"pm25": 10}, at=datetime(2026, 6, 1, 12))
    with pytest.raises(ValueError, match="naive"):
        aqi.daily({"pm25": 10}, on=datetime(2026, 6, 1, 12))
    with pytest.raises(ValueError, match="datetime"):
        aqi.realtime({"pm25": 10}, at=date(2026, 6, 1))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="datetime"):
        aqi.realtime({"pm25": 10}, at="2026-06-01T12:00+08:00")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="date"):
        aqi.daily({"pm25": 10}, on="2026-06-01")  # type: ignore[arg-type]


def test_other_bad_arguments_raise() -> None:
    at = noon(DAY[2026])
    with pytest.raises(ValueError, match="no pollutant"):
        aqi.realtime({}, at=at)
    with pytest.raises(ValueError, match="no pollutant"):
        aqi.realtime({"pm25": None}, at=at)
    with pytest.raises(ValueError, match="mapping"):
        aqi.realtime([("pm25", 10)], at=at)  # type: ignore[arg-type]
    for std in (2020, True, "2026"):
        with pytest.raises(ValueError, match="standard"):
            aqi.realtime({"pm25": 10}, at=at, standard=std)  # type: ignore[arg-type]


def test_other_offsets_are_converted_to_city_time() -> None:
    minus5 = timezone(timedelta(hours=-5))
    # 12:00 −05:00 on 28 Feb = 01:00 +08:00 on 1 March.
    assert aqi.realtime({"pm25": 70}, at=datetime(2026, 2, 28, 12, tzinfo=minus5)).standard == "HJ 633—2026"
