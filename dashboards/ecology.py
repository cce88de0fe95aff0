"""The ecology page's figures (生态环境): pure functions over live states and roll-up means.

Nothing here reads Redis or the database; the page hands in device states, device
properties and hourly means, plus ``now``, so every figure is testable with a fixed clock.

Freshness: a reading older than :data:`models.live.OFFLINE_AFTER_S` is a silent feed. Its
last value is kept for context but never counted as live (no class, no mean, no
exceedance), and the page shows "数据中断 N 分钟" in its place.

Water class colours are chosen by this project (GB 3838—2002 defines classes, not
colours), following the palette commonly seen on Chinese water-quality bulletins:
I–II blues/green, III green-yellow, IV orange, V red, 劣V dark red.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any

from geo.boundaries import DISTRICTS
from models.clock import CITY_TZ
from models.live import OFFLINE_AFTER_S, DeviceState
from models.standards import aqi, noise, water
from models.standards.aqi import AqiResult

#: The two rivers the city monitors, in the order the page shows them.
RIVERS: tuple[str, ...] = ("嘉陵江", "渠江")
#: Target class when a section's properties name none: III is the usual target for
#: drinking-water-source and main-stream sections in Sichuan's plans.
DEFAULT_TARGET_CLASS = "III"
#: Water class colours (this project's choice, see the module docstring).
WATER_COLOURS: Mapping[str, str] = {
    "I": "#1565C0",
    "II": "#26A69A",
    "III": "#9CCC65",
    "IV": "#FB8C00",
    "V": "#E53935",
    "劣V": "#7F0000",
}
#: AQI above this is a polluted hour (HJ 633: level 3 轻度污染 and worse).
AQI_EXCEEDANCE = 100
#: Rows a screen shows: the worst air stations, and each river's worst sections. At city
#: scale there are about a thousand stations and hundreds of sections; every row sent on
#: every refresh kept the browser busy for tens of seconds (the full lists are exports).
STATION_ROWS = 25
SECTION_ROWS = 12

_DISTRICT_NAMES = {d.code: d.name for d in DISTRICTS}


def district_name(code: str | None) -> str:
    return _DISTRICT_NAMES.get(code or "", "—")


@dataclass(frozen=True, slots=True)
class Freshness:
    """How old a panel's data is; ``silent`` when the feed stopped (older than the offline limit)."""

    age_s: float | None
    silent: bool

    @property
    def minutes(self) -> int:
        return 0 if self.age_s is None else int(self.age_s // 60)


def freshness(age_s: float | None) -> Freshness:
    return Freshness(age_s, age_s is None or age_s > OFFLINE_AFTER_S)


def newest(ages: Sequence[float | None]) -> Freshness:
    """A panel is as fresh as its newest reading; it is silent only when every feed is."""
    known = [a for a in ages if a is not None]
    return freshness(min(known) if known else None)


def _age(state: DeviceState, now: float) -> float | None:
    return None if state.last_seen is None else max(0.0, now - state.last_seen)


def newest_reading(states: Iterable[DeviceState], now: float) -> Freshness:
    """How fresh the newest reading of ``states`` is (silent when none is live)."""
    return newest([_age(s, now) for s in states])


#: The device types the page shows, each in its own panel.
PAGE_TYPES: tuple[str, ...] = ("air_quality", "water_quality", "noise")


def by_type(states: Iterable[DeviceState], types: Sequence[str] = PAGE_TYPES) -> dict[str, list[DeviceState]]:
    """The states of each of ``types``, in the order given, in one pass over every device:
    at city scale most of the ten thousand live devices are of none of them."""
    out: dict[str, list[DeviceState]] = {k: [] for k in types}
    for s in states:
        mine = out.get(s.type)
        if mine is not None:
            mine.append(s)
    return out


# ---- air stations ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AirStation:
    device_id: str
    name: str
    district: str
    lon: float
    lat: float
    aqi: int | None
    level: int | None
    category: str | None
    color: str | None
    primary: tuple[str, ...]
    fresh: Freshness


def air_stations(states: Sequence[DeviceState], now: float, *, limit: int | None = None) -> list[AirStation]:
    """Air stations, worst live AQI first; silent stations last (their index is not live).
    With ``limit``, only the first ``limit`` of that order are built (the wall shows three
    of a thousand)."""

    def live_aqi(s: DeviceState) -> int | None:
        aqi_value = (s.derived or {}).get("aqi")
        return aqi_value if isinstance(aqi_value, int) and not freshness(_age(s, now)).silent else None

    def order(s: DeviceState) -> tuple[bool, int, str]:
        aqi_value = live_aqi(s)
        return (aqi_value is None, -(aqi_value or 0), s.device_id)

    airs = [s for s in states if s.type == "air_quality"]
    chosen = heapq.nsmallest(limit, airs, key=order) if limit is not None else sorted(airs, key=order)
    rows = []
    for s in chosen:
        d = s.derived or {}
        live = live_aqi(s) is not None
        rows.append(
            AirStation(
                device_id=s.device_id,
                name=s.name,
                district=district_name(s.district_code),
                lon=s.lon,
                lat=s.lat,
                aqi=d["aqi"] if live else None,
                level=d.get("level") if live else None,
                category=d.get("category") if live else None,
                color=d.get("color") if live else None,
                primary=tuple(d.get("primary") or ()) if live else (),
                fresh=freshness(_age(s, now)),
            )
        )
    return rows


# ---- rivers ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WaterSection:
    device_id: str
    name: str
    river: str
    district: str
    lon: float
    lat: float
    grade: str | None
    target: str
    fresh: Freshness

    @property
    def worse_than_target(self) -> bool:
        return self.grade is not None and water.GRADES.index(self.grade) > water.GRADES.index(self.target)


def water_sections(
    states: Sequence[DeviceState], props: Mapping[str, Mapping[str, Any]], now: float
) -> list[WaterSection]:
    """River sections: water-quality devices whose properties say body river and name a river."""
    rows = []
    for s in states:
        p = props.get(s.device_id) or {}
        if s.type != "water_quality" or p.get("body", "river") != "river" or not p.get("river"):
            continue
        fresh = freshness(_age(s, now))
        grade = (s.derived or {}).get("grade")
        target = p.get("target_class")
        rows.append(
            WaterSection(
                device_id=s.device_id,
                name=s.name,
                river=str(p["river"]),
                district=district_name(s.district_code),
                lon=s.lon,
                lat=s.lat,
                grade=grade if grade in water.GRADES and not fresh.silent else None,
                target=target if target in water.GRADES else DEFAULT_TARGET_CLASS,
                fresh=fresh,
            )
        )
    rows.sort(key=lambda r: (r.river, r.name, r.device_id))
    return rows


@dataclass(frozen=True, slots=True)
class RiverPanel:
    """One river: its sections and, with enough live sections, the overall assessment.

    ``assessment`` is ``None`` below :data:`water.MIN_SECTIONS` live sections; the page
    then shows ``share_good`` (share of I–III among the live sections) and says why.
    """

    river: str
    sections: tuple[WaterSection, ...]
    graded: int
    share_good: float | None
    assessment: water.RiverAssessment | None
    fresh: Freshness


def worst_sections(sections: Sequence[WaterSection], limit: int = SECTION_ROWS) -> list[WaterSection]:
    """The ``limit`` sections to list: worst live class first (those worse than their target
    before others of the same class), then silent ones, then by name."""
    ranked = sorted(
        sections,
        key=lambda s: (
            s.grade is None,
            -water.GRADES.index(s.grade) if s.grade is not None else 0,
            not s.worse_than_target,
            s.name,
            s.device_id,
        ),
    )
    return ranked[: max(0, limit)]


def river_panels(sections: Sequence[WaterSection]) -> list[RiverPanel]:
    names = list(RIVERS) + sorted({s.river for s in sections} - set(RIVERS))
    panels = []
    for river in names:
        mine = tuple(s for s in sections if s.river == river)
        grades = [s.grade for s in mine if s.grade is not None]
        good = sum(1 for g in grades if water.GRADES.index(g) <= water.GRADES.index("III"))
        panels.append(
            RiverPanel(
                river=river,
                sections=mine,
                graded=len(grades),
                share_good=good / len(grades) if grades else None,
                assessment=water.assess_river(grades) if len(grades) >= water.MIN_SECTIONS else None,
                fresh=newest([s.fresh.age_s for s in mine]),
            )
        )
    return panels


# ---- noise ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NoiseZone:
    zone: str
    day_limit: int
    night_limit: int
    period: str
    points: int
    live_points: int
    mean_laeq: float | None
    exceeded: int
    fresh: Freshness


def energy_mean(levels: Sequence[float]) -> float:
    """Mean of sound levels on the energy scale: dB values must not be averaged arithmetically."""
    return 10 * math.log10(sum(10 ** (lv / 10) for lv in levels) / len(levels))


def noise_zones(
    states: Sequence[DeviceState], props: Mapping[str, Mapping[str, Any]], now: float
) -> list[NoiseZone]:
    """Per GB 3096 zone class: limits, the live points' LAeq mean and how many exceed now."""
    at = datetime.fromtimestamp(now, UTC)
    by_zone: dict[str, list[DeviceState]] = {z: [] for z in noise.ZONES}
    for s in states:
        if s.type != "noise":
            continue
        zone = _zone_of(props.get(s.device_id))
        if zone is not None:
            by_zone[zone].append(s)
    rows = []
    for zone, mine in by_zone.items():
        if not mine:
            continue
        live = [s for s in mine if not freshness(_age(s, now)).silent and "laeq" in s.metrics]
        day, night = noise.LIMITS[zone]
        rows.append(
            NoiseZone(
                zone=zone,
                day_limit=day,
                night_limit=night,
                period=noise.period(at),
                points=len(mine),
                live_points=len(live),
                mean_laeq=round(energy_mean([s.metrics["laeq"] for s in live]), 1) if live else None,
                exceeded=sum(1 for s in live if (s.derived or {}).get("exceeded") is True),
                fresh=newest_reading(mine, now),
            )
        )
    return rows


def _zone_of(p: Mapping[str, Any] | None) -> str | None:
    zone = (p or {}).get("zone")
    # Device metadata is free-form JSON: zone 1 sent as a number means class "1".
    if isinstance(zone, int) and not isinstance(zone, bool):
        zone = str(zone)
    return zone.lower() if isinstance(zone, str) and zone.lower() in noise.LIMITS else None


def lowest_noise_limit(props: Mapping[str, Mapping[str, Any]]) -> int | None:
    """The lowest limit, day or night, of any zone a point is in (None: no point has a
    zone): an hour whose mean LAeq is not above it exceeds no limit."""
    zones = {zone for p in props.values() if (zone := _zone_of(p)) is not None}
    return min((min(noise.LIMITS[z]) for z in zones), default=None)


def noise_exceedance_hours(
    hourly: Sequence[tuple[str, datetime, float]], props: Mapping[str, Mapping[str, Any]]
) -> int:
    """Point-hours whose mean LAeq exceeds the zone limit of that hour's period (day/night)."""
    count = 0
    limits: dict[tuple[str, datetime], int] = {}  # a day's hours × a few zones, for thousands of rows
    for device_id, hour, laeq in hourly:
        zone = _zone_of(props.get(device_id))
        if zone is None:
            continue
        limit = limits.get((zone, hour))
        if limit is None:
            limit = limits[(zone, hour)] = noise.limit(zone, hour)
        if laeq > limit:
            count += 1
    return count


# ---- hourly and daily AQI -------------------------------------------------------------------


def window_hours(now: datetime) -> list[datetime]:
    """UTC hour starts from Beijing midnight yesterday up to the current hour, in order.

    One window serves three panels: yesterday's daily AQI, the last 24 h line and
    today's polluted hours, so each district needs one query.
    """
    local = now.astimezone(CITY_TZ)
    start = datetime.combine(local.date() - timedelta(days=1), datetime.min.time(), CITY_TZ).astimezone(UTC)
    end = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return [start + timedelta(hours=h) for h in range(int((end - start).total_seconds() // 3600) + 1)]


def hourly_series(
    means: Mapping[str, Sequence[float | None]], hours: Sequence[datetime]
) -> list[AqiResult | None]:
    """Real-time AQI of each hour from area means (as ``models.air_quality.hourly_aqi`` does)."""
    out: list[AqiResult | None] = []
    for i, hour in enumerate(hours):
        values = tuple((p, v[i]) for p, v in means.items() if i < len(v) and v[i] is not None)
        out.append(_realtime(values, hour) if values else None)
    return out


# The index of an hour is computed in exact fractions (models.standards.aqi): about a
# millisecond each, and a refresh asks for six districts × up to 48 hours, nearly all of
# them the same as on the previous refresh. Keyed on the means themselves, so a late
# reading that moves an hour's mean is a new entry; results are read-only.
@lru_cache(maxsize=4096)
def _realtime(values: tuple[tuple[str, float], ...], hour: datetime) -> AqiResult:
    return aqi.realtime(dict(values), at=hour)


@lru_cache(maxsize=256)
def _daily(values: tuple[tuple[str, tuple[float | None, ...]], ...], day: date) -> AqiResult | None:
    return aqi.daily_from_hourly({p: list(v) for p, v in values}, on=day)


def daily_from_window(
    means: Mapping[str, Sequence[float | None]], hours: Sequence[datetime], day: date
) -> AqiResult | None:
    """Daily AQI of a Beijing day inside the window; None when HJ 633's validity rules fail."""
    picked = [i for i, h in enumerate(hours) if h.astimezone(CITY_TZ).date() == day]
    if len(picked) != aqi.HOURS_PER_DAY:
        return None
    return _daily(tuple((p, tuple(v[i] for i in picked)) for p, v in means.items()), day)


def polluted_hours(series: Sequence[AqiResult | None], hours: Sequence[datetime], day: date) -> int:
    """Hours of a Beijing day whose hourly AQI is above 100."""
    return sum(
        1
        for r, h in zip(series, hours, strict=True)
        if r is not None and r.aqi > AQI_EXCEEDANCE and h.astimezone(CITY_TZ).date() == day
    )


def series_freshness(
    series: Sequence[AqiResult | None], hours: Sequence[datetime], now: datetime
) -> Freshness:
    """Age of an hourly series: from the end of its newest hour with data (the current hour = 0)."""
    for r, h in zip(reversed(series), reversed(hours), strict=True):
        if r is not None:
            return freshness(max(0.0, (now - (h + timedelta(hours=1))).total_seconds()))
    return freshness(None)
