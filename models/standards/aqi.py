"""Air Quality Index (空气质量指数) per HJ 633—2012 and HJ 633—2026.

Source of the tables: the project's copy of the standards,
``/work/shared/standards/air-quality-aqi.md``, transcribed from the official texts on
mee.gov.cn (HJ 633—2012, W020120410332725219541.pdf; HJ 633—2026,
W020260225366493492011.pdf). HJ 633—2026 changes only the IAQI-100 breakpoints of the
PM2.5 (75 → 60) and PM10 (150 → 120) 24h columns and the two special cases below.

Which standard applies
    An observation dated before 2026-03-01 is indexed with HJ 633—2012, from that date
    on with HJ 633—2026. The date is the city-time (UTC+08:00) date of ``at`` for
    :func:`realtime` and ``on`` for :func:`daily`, so 2026-02-28T17:00Z is already
    2026-03-01 in Guang'an and uses HJ 633—2026. ``standard=2012|2026`` overrides.

Rounding
    Each IAQI is computed exactly (rational arithmetic, concentrations read as the
    decimal they print as) and then rounded **up** to an integer, the same ceiling the
    standard prescribes for the AQI. ``AQI = max(IAQI)`` then equals the ceiling of the
    largest exact IAQI, so the published numbers agree with each other.

Primary and exceeding pollutants
    Decided on the rounded integer IAQIs, i.e. on the numbers a reader sees:
    the primary pollutants (首要污染物) are those whose integer IAQI equals the AQI when
    AQI > 50 (two exact values 67.2 and 67.8 both report 68 and are both primary);
    the exceeding ones (超标污染物) have an IAQI > 100 (for that threshold rounded and
    exact values agree because the threshold is an integer).

Missing pollutants are left out; a value of ``None`` counts as missing. A concentration
above the top breakpoint of a column gives IAQI 500 (no extrapolation).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from fractions import Fraction
from types import MappingProxyType
from typing import Any, Literal

from models.standards._inputs import exact, exact_ratio, local_date, local_time

#: First day indexed with HJ 633—2026 (city-time date of the observation).
SWITCH_DATE = date(2026, 3, 1)
STANDARDS: Mapping[int, str] = MappingProxyType({2012: "HJ 633—2012", 2026: "HJ 633—2026"})

#: The IAQI values of the breakpoint rows (HJ 633 Table 1, first column).
IAQI_STEPS: tuple[int, ...] = (0, 50, 100, 150, 200, 300, 400, 500)

# Columns that both editions share. SO2 1h stops at 800 (IAQI 200) and O3 8h at 800
# (IAQI 300): above those the standard switches to a special case, not to the 500 cap.
_SHARED: dict[str, tuple[int, ...]] = {
    "so2_24h": (0, 50, 150, 475, 800, 1600, 2100, 2620),
    "so2_1h": (0, 150, 500, 650, 800),
    "no2_24h": (0, 40, 80, 180, 280, 565, 750, 940),
    "no2_1h": (0, 100, 200, 700, 1200, 2340, 3090, 3840),
    "co_24h": (0, 2, 4, 14, 24, 36, 48, 60),
    "co_1h": (0, 5, 10, 35, 60, 90, 120, 150),
    "o3_1h": (0, 160, 200, 300, 400, 800, 1000, 1200),
    "o3_8h": (0, 100, 160, 215, 265, 800),
}

#: Concentration breakpoints per column (µg/m³; CO in mg/m³), aligned with IAQI_STEPS.
BREAKPOINTS: Mapping[int, Mapping[str, tuple[int, ...]]] = MappingProxyType(
    {
        2012: MappingProxyType(
            {
                **_SHARED,
                "pm10_24h": (0, 50, 150, 250, 350, 420, 500, 600),
                "pm25_24h": (0, 35, 75, 115, 150, 250, 350, 500),
            }
        ),
        2026: MappingProxyType(
            {
                **_SHARED,
                "pm10_24h": (0, 50, 120, 250, 350, 420, 500, 600),
                "pm25_24h": (0, 35, 60, 115, 150, 250, 350, 500),
            }
        ),
    }
)

#: Pollutants in reporting order; results list IAQIs and primary pollutants in this order.
POLLUTANTS: tuple[str, ...] = ("pm25", "pm10", "so2", "no2", "co", "o3")

#: Real-time report: SO2/NO2/CO/O3 on their 1h columns, PM on the 24h columns.
REALTIME_COLUMNS: Mapping[str, str] = MappingProxyType(
    {"pm25": "pm25_24h", "pm10": "pm10_24h", "so2": "so2_1h", "no2": "no2_1h", "co": "co_1h", "o3": "o3_1h"}
)
#: Daily report: 24h means, and the daily maximum 8h moving average for O3.
DAILY_COLUMNS: Mapping[str, str] = MappingProxyType(
    {
        "pm25": "pm25_24h",
        "pm10": "pm10_24h",
        "so2": "so2_24h",
        "no2": "no2_24h",
        "co": "co_24h",
        "o3_8h": "o3_8h",
    }
)
REALTIME_KEYS: frozenset[str] = frozenset({*REALTIME_COLUMNS, "so2_24h"})
DAILY_KEYS: frozenset[str] = frozenset({*DAILY_COLUMNS, "o3"})

_SPECIAL_LIMIT = 800  # SO2 1h and O3 8h columns end here (HJ 633 Table 1, notes 2 and 3)


@dataclass(frozen=True, slots=True)
class Level:
    """One AQI level of HJ 633 Table 2 (levels, categories and colours)."""

    number: int
    name: str
    category: str
    color_name: str
    color: str
    aqi_min: int
    aqi_max: int | None
    health_effect: str
    advice: str


LEVELS: tuple[Level, ...] = (
    Level(1, "一级", "优", "绿", "#00E400", 0, 50, "空气质量令人满意，基本无空气污染", "各类人群可正常活动"),
    Level(
        2,
        "二级",
        "良",
        "黄",
        "#FFFF00",
        51,
        100,
        "空气质量可接受，某些污染物可能对极少数异常敏感人群健康有较弱影响",
        "极少数异常敏感人群应减少户外活动",
    ),
    Level(
        3,
        "三级",
        "轻度污染",
        "橙",
        "#FF7E00",
        101,
        150,
        "易感人群症状有轻度加剧，健康人群出现刺激症状",
        "儿童、老年人及心脏病、呼吸系统疾病患者应减少长时间、高强度的户外锻炼",
    ),
    Level(
        4,
        "四级",
        "中度污染",
        "红",
        "#FF0000",
        151,
        200,
        "进一步加剧易感人群症状，可能对健康人群心脏、呼吸系统有影响",
        "儿童、老年人及心脏病、呼吸系统疾病患者避免长时间、高强度的户外锻炼，一般人群适量减少户外运动",
    ),
    Level(
        5,
        "五级",
        "重度污染",
        "紫",
        "#99004C",
        201,
        300,
        "心脏病和肺病患者症状显著加剧，运动耐受力降低，健康人群普遍出现症状",
        "儿童、老年人和心脏病、肺病患者应停留在室内，停止户外运动，一般人群减少户外运动",
    ),
    Level(
        6,
        "六级",
        "严重污染",
        "褐红",
        "#7E0023",
        301,
        None,
        "健康人群运动耐受力降低，有明显强烈症状，提前出现某些疾病",
        "儿童、老年人和病人应当留在室内，避免体力消耗，一般人群应避免户外活动",
    ),
)


def level_of(aqi_value: int) -> Level:
    """The level an integer AQI falls in (0–50 一级 … > 300 六级)."""
    if isinstance(aqi_value, bool) or not isinstance(aqi_value, int):
        raise ValueError(f"AQI must be an int, got {type(aqi_value).__name__} {aqi_value!r}")
    if aqi_value < 0:
        raise ValueError(f"AQI must not be negative, got {aqi_value}")
    for lv in LEVELS:
        if lv.aqi_max is None or aqi_value <= lv.aqi_max:
            return lv
    raise AssertionError("unreachable: the last level is open-ended")


@dataclass(frozen=True)
class AqiResult:
    """An AQI report (实时报 or 日报).

    ``iaqi`` maps each indexed pollutant (``pm25``, ``pm10``, ``so2``, ``no2``, ``co``,
    ``o3``) to its IAQI rounded up; ``basis`` names the column each one was read from
    (e.g. ``o3_8h``, or ``so2_24h`` for the HJ 633—2012 SO2 special case).
    ``concentrations`` holds the inputs as given. ``notes`` explains special cases and
    pollutants that were left out. Treat the dicts as read-only.
    """

    aqi: int
    level: int
    category: str
    color: str
    iaqi: dict[str, int] = field(hash=False)
    primary: tuple[str, ...]
    exceeding: tuple[str, ...]
    kind: Literal["realtime", "daily"]
    standard: str
    date: date
    basis: dict[str, str] = field(hash=False)
    concentrations: dict[str, float] = field(hash=False)
    notes: tuple[str, ...] = ()

    @property
    def level_name(self) -> str:
        return LEVELS[self.level - 1].name

    @property
    def health_advice(self) -> str:
        return LEVELS[self.level - 1].advice


def standard_for(day: date) -> int:
    """2012 for dates before :data:`SWITCH_DATE`, 2026 from it on."""
    return 2012 if local_date("date", day) < SWITCH_DATE else 2026


def iaqi(column: str, concentration: float, *, standard: int) -> int:
    """IAQI (rounded up) of one concentration on one column, e.g. ``iaqi("pm25_24h", 80, standard=2026)``.

    The special-case columns (``so2_1h`` and ``o3_8h``) have no IAQI above 800; asking
    for one raises ``ValueError`` — :func:`realtime` and :func:`daily` apply the rules.
    """
    table = _table(standard)
    if column not in table:
        raise ValueError(f"unknown column {column!r}; expected one of {sorted(table)}")
    value = _iaqi(table[column], exact_ratio(column, concentration))
    if value is None:
        raise ValueError(f"{column} has no IAQI above {table[column][-1]}: HJ 633 special case")
    return value


def realtime(
    concentrations: Mapping[str, float | None], *, at: datetime, standard: int | None = None
) -> AqiResult:
    """Real-time (hourly) AQI, HJ 633 section 5.

    Keys: ``pm25``, ``pm10``, ``so2``, ``no2``, ``o3`` (µg/m³, 1h means) and ``co``
    (mg/m³). PM2.5 and PM10 are indexed on the 24h columns, the others on their 1h
    columns. ``so2_24h`` (optional) is only read for the HJ 633—2012 rule "SO2 1h > 800:
    no IAQI from the 1h value, report SO2 from its 24h value"; without it SO2 is left
    out in that case (see ``notes``). Under HJ 633—2026 SO2 1h > 800 gives IAQI 200.

    Raises ``ValueError`` for unknown keys, bad values, a naive ``at`` or when no
    pollutant could be indexed.
    """
    result = _realtime(concentrations, at=at, standard=standard)
    if result is None:
        raise ValueError("no pollutant could be indexed: give at least one of " + ", ".join(POLLUTANTS))
    return result


def daily(concentrations: Mapping[str, float | None], *, on: date, standard: int | None = None) -> AqiResult:
    """Daily AQI, HJ 633 section 5.

    Keys: 24h means ``pm25``, ``pm10``, ``so2``, ``no2``, ``co`` and the daily maximum
    8h moving average ``o3_8h``. ``o3`` (optional, daily maximum 1h mean) is only read
    for the HJ 633—2012 rule "O3 8h > 800: no IAQI from the 8h value, report O3 from
    its 1h value"; without it O3 is left out in that case. Under HJ 633—2026 O3 8h >
    800 gives IAQI 300. ``on`` is the report's date (an aware datetime is converted to
    its city-time date).
    """
    day = local_date("on", on)
    values = _checked(concentrations, DAILY_KEYS)
    std = _resolve(standard, day)
    table = BREAKPOINTS[std]
    indices: dict[str, int] = {}
    basis: dict[str, str] = {}
    notes: list[str] = []
    for key, column in DAILY_COLUMNS.items():
        if key not in values:
            continue
        pollutant = "o3" if key == "o3_8h" else key
        if key == "o3_8h" and _above(values[key], _SPECIAL_LIMIT):
            if std == 2026:
                indices[pollutant], basis[pollutant] = 300, column
                notes.append("o3: 8h value above 800 µg/m³, IAQI 300 (HJ 633—2026)")
            elif "o3" in values:
                indices[pollutant] = _capped(table["o3_1h"], values["o3"])
                basis[pollutant] = "o3_1h"
                notes.append("o3: 8h value above 800 µg/m³, IAQI from the 1h value (HJ 633—2012)")
            else:
                notes.append("o3: 8h value above 800 µg/m³ and no 1h value given, left out (HJ 633—2012)")
            continue
        indices[pollutant] = _capped(table[column], values[key])
        basis[pollutant] = column
    result = _result("daily", std, day, indices, basis, concentrations, values, notes)
    if result is None:
        raise ValueError("no pollutant could be indexed: give at least one of " + ", ".join(DAILY_COLUMNS))
    return result


# --- daily statistics from hourly values --------------------------------------------------

HOURS_PER_DAY = 24
#: Project rule, after GB 3095—2012 Table 4 / HJ 663: a 24h mean needs ≥ 20 valid hours.
MIN_HOURS_24H = 20
#: Project rule, after HJ 663: an 8h moving average needs ≥ 6 valid hours of its 8.
O3_8H_MIN_HOURS = 6
#: Project rule, after HJ 663: the daily maximum needs ≥ 14 valid 8h averages of the 17.
O3_8H_MIN_WINDOWS = 14


def o3_8h_moving(hourly: Sequence[float | None]) -> list[float | None]:
    """The day's 17 O3 8h moving averages.

    ``hourly`` holds the day's 24 hourly means in city time, index *h* = the hour
    *h*:00–*h+1*:00, ``None`` for a missing hour. Window *k* covers hours *k*…*k+7*, so
    the windows end at 08:00 … 24:00 and none reaches into the previous day. A window
    with fewer than :data:`O3_8H_MIN_HOURS` valid hours is ``None``; otherwise it is the
    mean of its valid hours.
    """
    values = _hours("o3", hourly)
    out: list[float | None] = []
    for start in range(HOURS_PER_DAY - 8 + 1):
        window = [v for v in values[start : start + 8] if v is not None]
        out.append(float(sum(window) / len(window)) if len(window) >= O3_8H_MIN_HOURS else None)
    return out


def o3_8h_max(hourly: Sequence[float | None]) -> float | None:
    """Daily maximum 8h moving average of O3 (日最大8小时滑动平均), or ``None``.

    This project's validity rule (the shared standard text gives none; it follows
    HJ 663 practice): each window needs ≥ 6 valid hours (:func:`o3_8h_moving`) and the
    day needs ≥ 14 valid windows of its 17, else the result is ``None``.
    """
    windows = [w for w in o3_8h_moving(hourly) if w is not None]
    if len(windows) < O3_8H_MIN_WINDOWS:
        return None
    return max(windows)


def daily_means(hourly_by_pollutant: Mapping[str, Sequence[float | None]]) -> dict[str, float]:
    """The daily concentrations :func:`daily` takes, from 24 hourly means per pollutant.

    Keys in: ``pm25``, ``pm10``, ``so2``, ``no2``, ``co``, ``o3`` (24 values each, city
    time, ``None`` for a missing hour). Keys out: 24h means of the first five, ``o3_8h``
    (:func:`o3_8h_max`) and ``o3`` (the daily maximum 1h value). Project rule: a 24h
    mean and the O3 1h maximum need ≥ :data:`MIN_HOURS_24H` valid hours; a statistic
    without enough data is left out rather than reported from a partial day.
    """
    _check_keys(hourly_by_pollutant, frozenset(POLLUTANTS), "hourly_by_pollutant")
    out: dict[str, float] = {}
    for key in POLLUTANTS:
        if key not in hourly_by_pollutant:
            continue
        valid = [v for v in _hours(key, hourly_by_pollutant[key]) if v is not None]
        if key == "o3":
            o3_8h = o3_8h_max(hourly_by_pollutant[key])
            if o3_8h is not None:
                out["o3_8h"] = o3_8h
            if len(valid) >= MIN_HOURS_24H:
                out["o3"] = float(max(valid))
        elif len(valid) >= MIN_HOURS_24H:
            out[key] = float(sum(valid) / len(valid))
    return out


def daily_from_hourly(
    hourly_by_pollutant: Mapping[str, Sequence[float | None]], *, on: date, standard: int | None = None
) -> AqiResult | None:
    """Daily AQI from hourly means (:func:`daily_means` then :func:`daily`).

    Returns ``None`` when no pollutant has enough valid hours: a data gap is a normal
    condition for a dashboard, not a programming error.
    """
    means = daily_means(hourly_by_pollutant)
    if not any(key in means for key in DAILY_COLUMNS):
        # Validate ``on`` and ``standard`` even on a gap day so misuse is not hidden.
        _resolve(standard, local_date("on", on))
        return None
    return daily(means, on=on, standard=standard)


# --- internals ------------------------------------------------------------------------------


def _realtime(
    concentrations: Mapping[str, float | None], *, at: datetime, standard: int | None
) -> AqiResult | None:
    day = local_time("at", at).date()
    values = _checked(concentrations, REALTIME_KEYS)
    std = _resolve(standard, day)
    table = BREAKPOINTS[std]
    indices: dict[str, int] = {}
    basis: dict[str, str] = {}
    notes: list[str] = []
    for pollutant, column in REALTIME_COLUMNS.items():
        if pollutant not in values:
            continue
        if pollutant == "so2" and _above(values["so2"], _SPECIAL_LIMIT):
            if std == 2026:
                indices["so2"], basis["so2"] = 200, column
                notes.append("so2: 1h value above 800 µg/m³, IAQI 200 (HJ 633—2026)")
            elif "so2_24h" in values:
                indices["so2"], basis["so2"] = _capped(table["so2_24h"], values["so2_24h"]), "so2_24h"
                notes.append("so2: 1h value above 800 µg/m³, IAQI from the 24h value (HJ 633—2012)")
            else:
                notes.append("so2: 1h value above 800 µg/m³ and no 24h value given, left out (HJ 633—2012)")
            continue
        indices[pollutant] = _capped(table[column], values[pollutant])
        basis[pollutant] = column
    return _result("realtime", std, day, indices, basis, concentrations, values, notes)


def _result(
    kind: Literal["realtime", "daily"],
    std: int,
    day: date,
    indices: dict[str, int],
    basis: dict[str, str],
    given: Mapping[str, Any],
    values: Mapping[str, tuple[int, int]],
    notes: list[str],
) -> AqiResult | None:
    if not indices:
        return None
    rounded = {p: indices[p] for p in POLLUTANTS if p in indices}
    top = max(rounded.values())
    lv = level_of(top)
    return AqiResult(
        aqi=top,
        level=lv.number,
        category=lv.category,
        color=lv.color,
        iaqi=rounded,
        primary=tuple(p for p, v in rounded.items() if v == top) if top > 50 else (),
        exceeding=tuple(p for p, v in rounded.items() if v > 100),
        kind=kind,
        standard=STANDARDS[std],
        date=day,
        basis={p: basis[p] for p in rounded},
        concentrations={k: float(given[k]) for k in values},
        notes=tuple(notes),
    )


def _iaqi(breakpoints: tuple[int, ...], c: tuple[int, int]) -> int | None:
    """The IAQI of ``c`` (numerator, denominator) by linear interpolation on the segment
    holding it, rounded up — in integers, so exactly as the standard's formula on the
    decimal value; ``None`` above a short column's end."""
    num, den = c
    if num > breakpoints[-1] * den:
        # A full column caps at 500 ("> 500" is reported, not extrapolated); the two
        # short columns end where a special case of the standard takes over.
        return 500 if len(breakpoints) == len(IAQI_STEPS) else None
    for i in range(len(breakpoints) - 1):
        lo, hi = breakpoints[i], breakpoints[i + 1]
        if num <= hi * den:
            i_lo, i_hi = IAQI_STEPS[i], IAQI_STEPS[i + 1]
            # ceil((i_hi - i_lo) / (hi - lo) × (c − lo)) + i_lo, as ceil(a / b) = −(−a // b)
            a = (i_hi - i_lo) * (num - lo * den)
            b = (hi - lo) * den
            return -(-a // b) + i_lo
    raise AssertionError("unreachable: c <= the last breakpoint")


def _capped(breakpoints: tuple[int, ...], c: tuple[int, int]) -> int:
    value = _iaqi(breakpoints, c)
    assert value is not None, "callers route the special cases before this"
    return value


def _above(c: tuple[int, int], limit: int) -> bool:
    return c[0] > limit * c[1]


def _table(standard: int) -> Mapping[str, tuple[int, ...]]:
    if isinstance(standard, bool) or standard not in BREAKPOINTS:
        raise ValueError(f"standard must be 2012 or 2026, got {standard!r}")
    return BREAKPOINTS[standard]


def _resolve(standard: int | None, day: date) -> int:
    if standard is None:
        return standard_for(day)
    _table(standard)
    return standard


def _check_keys(mapping: Any, allowed: frozenset[str], name: str) -> None:
    if not isinstance(mapping, Mapping):
        raise ValueError(f"{name} must be a mapping, got {type(mapping).__name__}")
    unknown = [k for k in mapping if k not in allowed]
    if unknown:
        raise ValueError(f"unknown key(s) {unknown!r} in {name}; expected some of {sorted(allowed)}")


def _checked(concentrations: Mapping[str, Any], allowed: frozenset[str]) -> dict[str, tuple[int, int]]:
    _check_keys(concentrations, allowed, "concentrations")
    return {k: exact_ratio(k, v) for k, v in concentrations.items() if v is not None}


def _hours(name: str, hourly: Any) -> list[Fraction | None]:
    if isinstance(hourly, str | bytes) or not isinstance(hourly, Sequence):
        raise ValueError(f"{name}: hourly values must be a sequence of numbers or None")
    if len(hourly) != HOURS_PER_DAY:
        raise ValueError(f"{name}: expected {HOURS_PER_DAY} hourly values (None for gaps), got {len(hourly)}")
    return [None if v is None else exact(f"{name}[{h}]", v) for h, v in enumerate(hourly)]
