"""Named scenarios: stories the simulator layers on top of the everyday feed.

A scenario changes nothing about how messages are made: :meth:`CitySimulator.tick` stays
the one generator. A scenario only

* adds a few devices of its own (registered through meta like every other device),
* adjusts a reading as a function of the device and of the story's progress, and
* adds streams of extra messages (readings of the devices in the story, video events,
  12345 calls) whose rate is a function of the story's progress.

Progress runs from 0 to 1 over the story's wall-clock length (``story_seconds``, 5 minutes
by default, so a whole story fits a demo) counted from the simulator's start; after the
end the city stays as the story left it. Each story stands for ``story_hours`` of city
time, which is what rates per hour below refer to: a 6-hour flood played in 5 minutes
runs 72 times faster than real life. Timestamps stay wall-clock, so ingest accepts them.
A story's own messages come at their own rates (per wall-clock second), on top of
``--rate``, so a story looks the same whatever the everyday load.

Scenarios (``cityops simulate --scenario NAME``, ``cityops demo --scenario NAME``):

``normal``
    The everyday feed, nothing added.

``flood`` — rainstorm and waterlogging in 邻水县 (511623), 6 city hours.
    0–0.1 light rain; 0.1–0.55 rain at the county's gauges climbs to a rainstorm
    (rain_1h ≈ 40–60 mm/h, rain_24h accumulating past 100 mm; the rest of the city gets
    a fifth of it). From 0.15 the county's water-level stations rise, slowly and then
    faster (about 0.5 m per city hour): past the warning level of 5.0 m near 0.4, past the
    guarantee level of 6.0 m near 0.75. From 0.25 manhole shafts fill (1–2.5 m) and a few
    lids lift after 0.75; from 0.3 cameras report waterlogging (confidence ≥ 0.8), and
    from 0.35 the 12345 calls about flooded roads, homes and garages surge, most of them
    from 鼎屏镇, the county seat.

``pollution`` — a PM2.5 episode starting in 前锋区 (511603), 36 city hours.
    The episode starts in the origin at 0.08 and reaches the other districts in order of
    distance, one every 0.11; in each district PM2.5 climbs over 0.3 to heavy pollution
    (≈ 165–215 µg/m³, PM10 ≈ 1.4×, more NO2, CO and SO2, less O3) under still, humid air.
    By 0.93 every district is heavily polluted. Calls about smog, burning and dust follow.

``fire`` — a fire in a residential block on 建设路, 广安区, 1.5 city hours.
    Five smoke detectors (25–260 m from the block) and three cameras are added. At 0.15
    the detector at the seat of the fire goes off; smoke reaches the farthest by 0.65
    (0.6–3 dB/m, temperatures up to ~75 °C near the seat; CO at gas detectors nearby).
    From 0.2 the cameras around report smoke and fire (confidence ≥ 0.85); from 0.18 a
    burst of urgent calls (火情, 冒烟, blocked fire lanes), tapering off after 0.6.

``crowd`` — a large evening event on 思源广场, 广安区, 4 city hours.
    Four cameras and two noise monitors are added around the square. From 0.1 the crowd
    builds until 0.75: crowd_gathering events around the square grow from one every
    half-minute to about one every two seconds, with rising confidence; noise near the
    square climbs by up to ~25 dB(A); from 0.35 illegal parking around the square and
    calls about crowding, traffic, noise and lost children.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from shapely.geometry import Point

from ingest.simulator import DISTRICTS_BY_CODE, SimDevice

#: Wall-clock length of a story unless told otherwise: long enough to watch, short enough for a demo.
DEFAULT_STORY_SECONDS = 300.0

# Metres per degree at Guang'an's latitude (≈ 30.5° N); an equirectangular distance is
# accurate to well under 1 % over the few kilometres a story spans.
_M_PER_DEG_LAT = 110_850.0
_M_PER_DEG_LON = 111_320.0 * math.cos(math.radians(30.5))


# ---- what a story produces -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReadingOf:
    """One more reading of this device (devices in a story report more often)."""

    device: SimDevice


@dataclass(frozen=True, slots=True)
class Sighting:
    """A video event seen by ``camera`` at (lon, lat)."""

    camera: SimDevice
    kind: str
    confidence: float
    lon: float
    lat: float


@dataclass(frozen=True, slots=True)
class Call:
    """A 12345 call; channel, caller and id are added by the simulator."""

    category: str
    title: str
    content: str
    address: str
    lon: float
    lat: float
    urgency: str = "normal"


Happening = ReadingOf | Sighting | Call


@dataclass(frozen=True, slots=True)
class Stream:
    """Extra messages of one kind: how many per second at a given progress, and what each is."""

    rate: Callable[[float], float]
    make: Callable[[City, float, random.Random], Happening]


@dataclass(frozen=True, slots=True)
class City:
    """What a scenario may look at: the placed devices and the district shapes (prepared)."""

    devices: tuple[SimDevice, ...]
    shapes: Mapping[str, Any]

    def of_type(self, dtype: str, district_code: str | None = None) -> list[SimDevice]:
        return [
            d
            for d in self.devices
            if d.type == dtype and (district_code is None or d.district_code == district_code)
        ]

    def near(self, dtype: str, lon: float, lat: float, radius_m: float) -> list[SimDevice]:
        return [d for d in self.devices if d.type == dtype and metres(d.lon, d.lat, lon, lat) <= radius_m]

    def point_near(
        self, district_code: str, lon: float, lat: float, spread: float, rng: random.Random
    ) -> tuple[float, float]:
        """A point scattered around (lon, lat) by ``spread`` degrees, kept inside the district."""
        inside = self.shapes[district_code]
        for _ in range(50):
            x, y = round(rng.gauss(lon, spread), 6), round(rng.gauss(lat, spread), 6)
            if inside.contains(Point(x, y)):
                return x, y
        return round(lon, 6), round(lat, 6)


@dataclass(frozen=True, slots=True)
class CallScript:
    """One kind of 12345 call a story brings; title and text are picked at random."""

    category: str
    titles: tuple[str, ...]
    contents: tuple[str, ...]
    weight: float = 1.0
    #: share of these calls the hotline marks urgent
    urgent: float = 0.0

    def call(
        self, rng: random.Random, *, place: str, address: str, lon: float, lat: float, **fills: Any
    ) -> Call:
        # Every fill is drawn whatever the text uses, so the draws (and the feed) do not
        # depend on which text was picked.
        values = {
            "place": place,
            "depth": rng.randrange(20, 85, 5),
            "building": rng.randint(1, 18),
            "unit": rng.randint(1, 4),
            "floor": rng.randint(2, 17),
            "age": rng.randint(4, 9),
            "minutes": rng.choice([20, 30, 40, 50, 60]),
        } | fills
        title = rng.choice(self.titles)
        content = rng.choice(self.contents).format_map(values)
        urgency = "urgent" if rng.random() < self.urgent else "normal"
        return Call(self.category, title, content, address, lon, lat, urgency)


def pick(scripts: Sequence[CallScript], rng: random.Random) -> CallScript:
    return rng.choices(scripts, weights=[s.weight for s in scripts], k=1)[0]


# ---- small helpers ---------------------------------------------------------------------


def ramp(p: float, start: float, end: float) -> float:
    """0 before ``start``, 1 after ``end``, a smooth S-curve in between."""
    if p <= start:
        return 0.0
    if p >= end:
        return 1.0
    x = (p - start) / (end - start)
    return x * x * (3 - 2 * x)


def metres(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    return math.hypot((lon2 - lon1) * _M_PER_DEG_LON, (lat2 - lat1) * _M_PER_DEG_LAT)


def offset(lon: float, lat: float, bearing_deg: float, distance_m: float) -> tuple[float, float]:
    """The point ``distance_m`` from (lon, lat) towards ``bearing_deg`` (0 = north, 90 = east)."""
    b = math.radians(bearing_deg)
    return (
        round(lon + distance_m * math.sin(b) / _M_PER_DEG_LON, 6),
        round(lat + distance_m * math.cos(b) / _M_PER_DEG_LAT, 6),
    )


def _clamp(value: float, lo: float, hi: float) -> float:
    return min(hi, max(lo, value))


def _sighting(
    camera: SimDevice, kind: str, confidence: float, lon: float, lat: float, spread: float, rng: random.Random
) -> Sighting:
    return Sighting(
        camera,
        kind,
        round(confidence, 2),
        round(lon + rng.gauss(0, spread), 6),
        round(lat + rng.gauss(0, spread), 6),
    )


#: Towns and streets by district, for the addresses of story calls.
PLACES_BY_DISTRICT: dict[str, tuple[str, ...]] = {
    "511602": ("北辰街道", "广福街道", "万盛街道", "中桥街道", "浓洄街道", "枣山街道", "协兴镇", "花桥镇"),
    "511603": ("奎阁街道", "大龙街道", "龙塘街道", "新桥工业园区", "代市镇", "观塘镇"),
    "511621": ("九龙街道", "朝阳街道", "罗渡镇", "顾县镇", "坪滩镇", "中和镇"),
    "511622": ("沿口镇", "中心镇", "街子镇", "烈面镇", "飞龙镇", "乐善镇"),
    "511623": (
        "鼎屏镇",
        "城北镇",
        "柑子镇",
        "九龙镇",
        "丰禾镇",
        "兴仁镇",
        "袁市镇",
        "坛同镇",
        "石永镇",
        "御临镇",
    ),
    "511681": ("双河街道", "古桥街道", "华龙街道", "溪口镇", "阳和镇", "永兴镇"),
}


# ---- the scenarios ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scenario:
    """The everyday city: no story. Each story below overrides what it changes."""

    name: ClassVar[str] = "normal"
    title: ClassVar[str] = "日常运行"
    #: city hours the whole timeline stands for
    story_hours: float = 0.0

    def devices(self, city: City) -> tuple[SimDevice, ...]:
        """Devices the story needs beyond the everyday ones."""
        return ()

    def adjust(
        self, device: SimDevice, metrics: dict[str, float], p: float, rng: random.Random
    ) -> dict[str, float]:
        """The reading ``device`` reports at progress ``p``, given its everyday reading."""
        return metrics

    def streams(self) -> tuple[Stream, ...]:
        return ()


@dataclass(frozen=True, slots=True)
class Flood(Scenario):
    name: ClassVar[str] = "flood"
    title: ClassVar[str] = "邻水县暴雨内涝"
    story_hours: float = 6.0
    district_code: str = "511623"
    #: 鼎屏镇, the county seat: most calls come from the town, where people and low streets are
    seat: tuple[float, float] = (106.932, 30.334)
    seat_name: str = "鼎屏镇"
    peak_rain_1h: float = 52.0
    #: metres above the everyday level by the end; 2.4 m over the rising 5.1 city hours ≈ 0.5 m/h
    level_rise: float = 2.4
    #: the rest of the city gets the edge of the storm
    elsewhere: float = 0.2

    def rain(self, p: float) -> float:
        return 1.5 + (self.peak_rain_1h - 1.5) * ramp(p, 0.08, 0.55)

    def rain_so_far(self, p: float) -> float:
        """Millimetres fallen since the story began (midpoint rule; the curve is smooth)."""
        if p <= 0:
            return 0.0
        n = 24
        return self.story_hours * p / n * sum(self.rain(p * (i + 0.5) / n) for i in range(n))

    def rise(self, p: float) -> float:
        # Rivers answer rain late and then keep rising while it pours: a convex curve,
        # still climbing at the end, rather than an S that would flatten out.
        x = _clamp((p - 0.15) / 0.85, 0.0, 1.0)
        return self.level_rise * x**1.3

    def adjust(
        self, device: SimDevice, metrics: dict[str, float], p: float, rng: random.Random
    ) -> dict[str, float]:
        here = device.district_code == self.district_code
        k = 1 + device.bias
        if device.type == "rainfall":
            share = 1.0 if here else self.elsewhere
            rain = max(0.0, self.rain(p) * share * k + rng.gauss(0, 0.05 * self.rain(p) * share))
            return {
                "rain_1h": round(rain, 1),
                "rain_24h": round(metrics["rain_24h"] + self.rain_so_far(p) * share * k, 1),
            }
        if not here:
            return metrics
        if device.type == "water_level":
            rise = self.rise(p)
            return {
                "level": round(metrics["level"] + rise, 2),
                "flow": round(metrics["flow"] + 2600 * rise / self.level_rise, 0),
            }
        if device.type == "manhole":
            fill = ramp(p, 0.25, 0.8)
            out = dict(metrics, water_level=round(metrics["water_level"] + (1.6 + 4 * device.bias) * fill, 2))
            # The shafts that fill most (low spots) have their lids lifted by the pressure.
            if device.bias > 0.12 and p > 0.75:
                out |= {"open": 1.0, "tilt": round(30 + rng.uniform(0, 30), 1)}
            return out
        if device.type == "weather":
            wet = ramp(p, 0.05, 0.4)
            return dict(
                metrics,
                temp=round(metrics["temp"] - 4 * wet, 1),
                humidity=round(metrics["humidity"] + (97 - metrics["humidity"]) * wet, 0),
                wind_speed=round(metrics["wind_speed"] + 5 * wet, 1),
                pressure=round(metrics["pressure"] - 4 * wet, 1),
            )
        return metrics

    def streams(self) -> tuple[Stream, ...]:
        return (
            # Gauges switch to intensive reporting in a storm (加密观测).
            Stream(lambda p: 0.2 + 0.6 * ramp(p, 0.1, 0.5), self._reading),
            Stream(lambda p: 0.3 * ramp(p, 0.3, 0.75), self._waterlogging),
            Stream(lambda p: 0.02 + 0.45 * ramp(p, 0.35, 0.8), self._call),
        )

    def _reading(self, city: City, p: float, rng: random.Random) -> Happening:
        gauges = [
            d
            for d in city.devices
            if d.district_code == self.district_code and d.type in {"rainfall", "water_level", "manhole"}
        ]
        return ReadingOf(rng.choice(gauges))

    def _waterlogging(self, city: City, p: float, rng: random.Random) -> Happening:
        camera = rng.choice(city.of_type("camera", self.district_code))
        confidence = _clamp(0.82 + 0.15 * ramp(p, 0.3, 0.7) + rng.gauss(0, 0.03), 0.8, 0.99)
        return _sighting(camera, "waterlogging", confidence, camera.lon, camera.lat, 0.0006, rng)

    def _call(self, city: City, p: float, rng: random.Random) -> Happening:
        script = pick(FLOOD_CALLS, rng)
        if rng.random() < 0.65:
            lon, lat = city.point_near(self.district_code, *self.seat, 0.01, rng)
            place = self.seat_name + rng.choice(LINSHUI_STREETS)
        else:
            camera = rng.choice(city.of_type("camera", self.district_code))
            lon, lat = city.point_near(self.district_code, camera.lon, camera.lat, 0.004, rng)
            place = rng.choice(PLACES_BY_DISTRICT[self.district_code])
        address = DISTRICTS_BY_CODE[self.district_code] + place
        return script.call(rng, place=place, address=address, lon=lon, lat=lat)


@dataclass(frozen=True, slots=True)
class Pollution(Scenario):
    name: ClassVar[str] = "pollution"
    title: ClassVar[str] = "PM2.5重污染过程"
    story_hours: float = 36.0
    origin: str = "511603"
    peak_pm25: float = 190.0
    #: progress at which the episode reaches the origin, and the delay to each next district
    first_onset: float = 0.08
    spread_step: float = 0.11
    rise: float = 0.3

    def onset(self, district_code: str) -> float:
        return self.first_onset + self.spread_step * _distance_rank(self.origin)[district_code]

    def strength(self, district_code: str, p: float) -> float:
        start = self.onset(district_code)
        return ramp(p, start, start + self.rise)

    def adjust(
        self, device: SimDevice, metrics: dict[str, float], p: float, rng: random.Random
    ) -> dict[str, float]:
        s = self.strength(device.district_code, p)
        if s <= 0:
            return metrics
        if device.type == "air_quality":
            peak = self.peak_pm25 * (1 + 0.6 * device.bias)
            pm25 = max(1.0, metrics["pm25"] * (1 - s) + peak * s + rng.gauss(0, 4 + 4 * s))
            return {
                "pm25": round(pm25, 1),
                "pm10": round(pm25 * (1.3 + 0.15 * rng.random()) + rng.gauss(0, 5), 1),
                "so2": round(metrics["so2"] * (1 + 0.8 * s), 1),
                "no2": round(metrics["no2"] * (1 + 0.6 * s), 1),
                "co": round(metrics["co"] + 1.1 * s, 2),
                # Haze dims the sunlight that makes ozone.
                "o3": round(max(2.0, metrics["o3"] * (1 - 0.55 * s)), 1),
            }
        if device.type == "weather":
            # Episodes happen under still, humid air (静稳天气): that is why pollution piles up.
            return dict(
                metrics,
                wind_speed=round(metrics["wind_speed"] * (1 - 0.7 * s), 1),
                humidity=round(metrics["humidity"] + (88 - metrics["humidity"]) * s, 0),
            )
        return metrics

    def mean_strength(self, p: float) -> float:
        return sum(self.strength(code, p) for code in DISTRICTS_BY_CODE) / len(DISTRICTS_BY_CODE)

    def streams(self) -> tuple[Stream, ...]:
        return (
            Stream(lambda p: 0.2 + 0.3 * self.mean_strength(p), self._reading),
            Stream(lambda p: 0.15 * self.mean_strength(p), self._call),
        )

    def _reading(self, city: City, p: float, rng: random.Random) -> Happening:
        return ReadingOf(rng.choice(city.of_type("air_quality")))

    def _call(self, city: City, p: float, rng: random.Random) -> Happening:
        codes = list(DISTRICTS_BY_CODE)
        weights = [self.strength(c, p) + 1e-3 for c in codes]
        code = rng.choices(codes, weights=weights, k=1)[0]
        camera = rng.choice(city.of_type("camera", code))
        lon, lat = city.point_near(code, camera.lon, camera.lat, 0.006, rng)
        place = rng.choice(PLACES_BY_DISTRICT[code])
        return pick(POLLUTION_CALLS, rng).call(
            rng, place=place, address=DISTRICTS_BY_CODE[code] + place, lon=lon, lat=lat
        )


@dataclass(frozen=True, slots=True)
class Fire(Scenario):
    name: ClassVar[str] = "fire"
    title: ClassVar[str] = "建设路居民楼火灾"
    story_hours: float = 1.5
    district_code: str = "511602"
    site_name: str = "建设路锦华苑小区"
    site: tuple[float, float] = (106.6385, 30.4625)
    #: smoke detectors affected by the fire are those within this radius of the block
    radius_m: float = 300.0
    ignition: float = 0.15

    #: (bearing°, metres from the block) of the story's own detectors and cameras
    DETECTORS: ClassVar[tuple[tuple[float, float], ...]] = (
        (40, 25),
        (130, 70),
        (220, 130),
        (310, 190),
        (10, 260),
    )
    CAMERAS: ClassVar[tuple[tuple[float, float], ...]] = ((80, 160), (200, 230), (320, 280))

    def devices(self, city: City) -> tuple[SimDevice, ...]:
        out = []
        for i, (bearing, dist) in enumerate(self.DETECTORS, start=1):
            lon, lat = offset(*self.site, bearing, dist)
            out.append(
                SimDevice(
                    f"smoke-{self.district_code}-fire-{i:02d}",
                    "smoke",
                    f"{self.site_name}烟感{i:02d}",
                    lon,
                    lat,
                    self.district_code,
                )
            )
        for i, (bearing, dist) in enumerate(self.CAMERAS, start=1):
            lon, lat = offset(*self.site, bearing, dist)
            out.append(
                SimDevice(
                    f"cam-{self.district_code}-fire-{i:02d}",
                    "camera",
                    f"{self.site_name}周边视频{i:02d}",
                    lon,
                    lat,
                    self.district_code,
                )
            )
        return tuple(out)

    def burning(self, distance_m: float, p: float) -> float:
        # The fire reaches detectors farther from its seat later.
        start = self.ignition + 0.35 * distance_m / self.radius_m
        return ramp(p, start, start + 0.2)

    def adjust(
        self, device: SimDevice, metrics: dict[str, float], p: float, rng: random.Random
    ) -> dict[str, float]:
        if device.type not in {"smoke", "gas"} or p <= self.ignition:
            return metrics
        d = metres(device.lon, device.lat, *self.site)
        if device.type == "smoke" and d <= self.radius_m:
            s = self.burning(d, p)
            peak = 0.6 + 2.6 * math.exp(-d / 110)
            smoke = metrics["smoke"] * (1 - s) + peak * s * (1 + rng.gauss(0, 0.08))
            return {
                "smoke": round(_clamp(smoke, 0.0, 9.5), 3),
                "temp": round(metrics["temp"] + 70 * math.exp(-d / 100) * s, 1),
            }
        if device.type == "gas" and d <= 2 * self.radius_m:
            s = self.burning(d, p)
            return dict(metrics, co_ppm=round(metrics["co_ppm"] + 80 * math.exp(-d / 150) * s, 1))
        return metrics

    def streams(self) -> tuple[Stream, ...]:
        return (
            Stream(lambda p: 0.5, self._reading),
            Stream(lambda p: 0.35 * ramp(p, 0.2, 0.4), self._smoke_fire),
            # A burst of calls as people notice, fewer once crews are on site.
            Stream(lambda p: 0.09 * ramp(p, 0.18, 0.3) * (1 - 0.7 * ramp(p, 0.6, 0.9)), self._call),
        )

    def _reading(self, city: City, p: float, rng: random.Random) -> Happening:
        return ReadingOf(rng.choice(city.near("smoke", *self.site, self.radius_m)))

    def _smoke_fire(self, city: City, p: float, rng: random.Random) -> Happening:
        camera = rng.choice(city.near("camera", *self.site, 1500))
        confidence = _clamp(0.87 + 0.1 * ramp(p, 0.2, 0.6) + rng.gauss(0, 0.02), 0.85, 0.99)
        return _sighting(camera, "smoke_fire", confidence, *self.site, 0.00015, rng)

    def _call(self, city: City, p: float, rng: random.Random) -> Happening:
        lon, lat = city.point_near(self.district_code, *self.site, 0.0008, rng)
        return pick(FIRE_CALLS, rng).call(
            rng,
            place=self.site_name,
            address=f"{DISTRICTS_BY_CODE[self.district_code]}{self.site_name}",
            lon=lon,
            lat=lat,
        )


@dataclass(frozen=True, slots=True)
class Crowd(Scenario):
    name: ClassVar[str] = "crowd"
    title: ClassVar[str] = "思源广场大型活动"
    story_hours: float = 4.0
    district_code: str = "511602"
    site_name: str = "思源广场"
    site: tuple[float, float] = (106.6330, 30.4740)
    #: noise monitors within this radius hear the event
    radius_m: float = 1200.0

    CAMERAS: ClassVar[tuple[tuple[float, float], ...]] = ((0, 120), (90, 180), (180, 150), (270, 220))
    NOISE: ClassVar[tuple[tuple[float, float], ...]] = ((45, 60), (225, 150))

    def devices(self, city: City) -> tuple[SimDevice, ...]:
        out = []
        for i, (bearing, dist) in enumerate(self.CAMERAS, start=1):
            lon, lat = offset(*self.site, bearing, dist)
            out.append(
                SimDevice(
                    f"cam-{self.district_code}-crowd-{i:02d}",
                    "camera",
                    f"{self.site_name}视频{i:02d}",
                    lon,
                    lat,
                    self.district_code,
                )
            )
        for i, (bearing, dist) in enumerate(self.NOISE, start=1):
            lon, lat = offset(*self.site, bearing, dist)
            out.append(
                SimDevice(
                    f"noise-{self.district_code}-crowd-{i:02d}",
                    "noise",
                    f"{self.site_name}噪声点{i:02d}",
                    lon,
                    lat,
                    self.district_code,
                    # A square among shops and homes: GB 3096 class 2.
                    props={"zone": "2"},
                )
            )
        return tuple(out)

    def crowd(self, p: float) -> float:
        return ramp(p, 0.1, 0.75)

    def adjust(
        self, device: SimDevice, metrics: dict[str, float], p: float, rng: random.Random
    ) -> dict[str, float]:
        if device.type != "noise":
            return metrics
        d = metres(device.lon, device.lat, *self.site)
        if d > self.radius_m:
            return metrics
        extra = 26 * math.exp(-d / 500) * self.crowd(p)
        laeq = metrics["laeq"] + extra + rng.gauss(0, 1.0) * self.crowd(p)
        # Cheers and announcements: peaks grow faster than the average level.
        return {"laeq": round(laeq, 1), "lmax": round(max(metrics["lmax"] + 1.3 * extra, laeq + 3), 1)}

    def streams(self) -> tuple[Stream, ...]:
        return (
            Stream(lambda p: 0.3, self._reading),
            Stream(lambda p: 0.03 + 0.45 * ramp(p, 0.1, 0.8), self._gathering),
            Stream(lambda p: 0.08 * ramp(p, 0.35, 0.9), self._parking),
            Stream(lambda p: 0.01 + 0.14 * ramp(p, 0.3, 0.85), self._call),
        )

    def _cameras(self, city: City) -> list[SimDevice]:
        return city.near("camera", *self.site, 1000)

    def _reading(self, city: City, p: float, rng: random.Random) -> Happening:
        return ReadingOf(rng.choice(city.near("noise", *self.site, self.radius_m)))

    def _gathering(self, city: City, p: float, rng: random.Random) -> Happening:
        camera = rng.choice(self._cameras(city))
        confidence = _clamp(0.7 + 0.27 * self.crowd(p) + rng.gauss(0, 0.03), 0.6, 0.99)
        return _sighting(camera, "crowd_gathering", confidence, *self.site, 0.0007, rng)

    def _parking(self, city: City, p: float, rng: random.Random) -> Happening:
        camera = rng.choice(self._cameras(city))
        confidence = _clamp(0.85 + rng.gauss(0, 0.05), 0.6, 0.99)
        return _sighting(camera, "illegal_parking", confidence, *self.site, 0.002, rng)

    def _call(self, city: City, p: float, rng: random.Random) -> Happening:
        lon, lat = city.point_near(self.district_code, *self.site, 0.002, rng)
        return pick(CROWD_CALLS, rng).call(
            rng,
            place=self.site_name,
            address=f"{DISTRICTS_BY_CODE[self.district_code]}{self.site_name}",
            lon=lon,
            lat=lat,
            road=rng.choice(("思源大道", "广安大道", "滨河路", "金安大道", "建设路")),
        )


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (Scenario(), Flood(), Pollution(), Fire(), Crowd())}


def scenario_named(name: str) -> Scenario:
    """The scenario called ``name``; ``ValueError`` listing the known ones otherwise."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ValueError(f"unknown scenario {name!r}; choose one of: {', '.join(SCENARIOS)}") from None


@functools.cache
def _distance_rank(origin: str) -> dict[str, int]:
    """Districts ranked by how far their centres are from ``origin``'s (origin = 0)."""
    from geo.boundaries import load_districts

    centres = load_districts().set_index("district_code").geometry.representative_point()
    o = centres[origin]
    order = sorted(DISTRICTS_BY_CODE, key=lambda c: (metres(o.x, o.y, centres[c].x, centres[c].y), c))
    return {code: rank for rank, code in enumerate(order)}


# ---- call scripts ----------------------------------------------------------------------

LINSHUI_STREETS = ("滨河路", "人民路", "北城路", "鼎屏大道", "城南片区", "老城区", "观音桥社区", "新桥路口")

FLOOD_CALLS: tuple[CallScript, ...] = (
    CallScript(
        "积水内涝",
        ("低洼处积水严重", "小区地下车库进水", "排水不畅形成内涝"),
        (
            "{place}一带雨太大，低洼路段积水已经没过膝盖，大约{depth}厘米深，有车熄火停在路中间，请尽快派人排水。",
            "{place}小区地下车库开始进水，水位还在往上涨，里面停了几十辆车，物业的抽水泵抽不过来。",
            "{place}的雨水井往外冒水，路面积水越来越深，附近几家商铺门口已经进水了。",
            "{place}这边下了{minutes}多分钟暴雨，街上全是水，排水沟根本排不赢，请相关部门赶紧处置。",
        ),
        weight=3,
        urgent=0.2,
    ),
    CallScript(
        "道路积水",
        ("道路积水无法通行", "下穿通道积水", "路面积水车辆熄火"),
        (
            "{place}路段积水约{depth}厘米，公交车都绕行了，行人过不去，请派人设置警示标志。",
            "{place}下穿通道积水很深，刚才有一辆小车熄火被困，司机爬到了车顶上，请求救援！",
            "{place}主干道积水严重，雨水篦子被垃圾堵住了，水排不下去，请环卫来疏通。",
            "{place}学校门口积水{depth}厘米，放学的孩子没法走，请尽快派人处理。",
        ),
        weight=3,
        urgent=0.25,
    ),
    CallScript(
        "房屋进水",
        ("房屋进水", "一楼住户进水", "临街商铺被淹"),
        (
            "{place}老小区一楼住户家里进水，水深{depth}厘米，家里有老人行动不便，请求帮忙转移。",
            "{place}临街门面进水了，货物都被泡了，门口的排水沟堵了好久一直没人清理。",
            "我家住{place}{building}栋一楼，雨水从门缝往屋里灌，家具都泡在水里，请社区派人来看看。",
        ),
        weight=2,
        urgent=0.4,
    ),
    CallScript(
        "地质灾害隐患",
        ("屋后山坡出现裂缝", "边坡垮塌"),
        (
            "{place}村民反映屋后山坡出现裂缝，一直有泥土往下掉，担心发生滑坡，请派人来查看。",
            "{place}公路边坡被雨水冲垮了一段，泥石堵了半边路，过往车辆很危险。",
        ),
        weight=1,
        urgent=0.6,
    ),
    CallScript(
        "井盖设施",
        ("井盖被冲开", "窨井冒水"),
        (
            "{place}路口的井盖被水顶开了，水一直往外翻，行人看不见很危险，请尽快处理。",
            "{place}人行道上的窨井在往外冒水，井盖歪在一边，晚上容易掉下去。",
        ),
        weight=1,
        urgent=0.3,
    ),
)

POLLUTION_CALLS: tuple[CallScript, ...] = (
    CallScript(
        "大气污染",
        ("空气污染严重", "雾霾天空气刺鼻", "疑似企业偷排废气"),
        (
            "这几天{place}灰蒙蒙的，空气里有股煤烟味，家里老人孩子一直咳嗽，是不是附近有企业在偷排？",
            "{place}附近工厂的烟囱晚上冒黄烟，空气很呛，请环保部门来查一下。",
            "{place}雾霾太重了，对面楼都看不清，请问有没有启动重污染天气应急措施？",
        ),
        weight=3,
    ),
    CallScript(
        "露天焚烧",
        ("有人焚烧垃圾", "焚烧秸秆"),
        (
            "{place}旁边空地有人焚烧垃圾和塑料，浓烟很大，气味难闻。",
            "{place}附近田里有人烧秸秆，烟飘到小区里，窗户都不敢开。",
        ),
        weight=2,
    ),
    CallScript(
        "扬尘污染",
        ("工地扬尘", "渣土车未覆盖"),
        (
            "{place}工地裸土没有覆盖，也没有洒水降尘，车一过全是灰。",
            "{place}渣土车没有遮盖，一路掉土扬尘，路面很脏，请城管查处。",
        ),
        weight=2,
    ),
)

FIRE_CALLS: tuple[CallScript, ...] = (
    CallScript(
        "火情",
        ("居民楼起火", "商住楼冒出浓烟和明火", "疑似火灾"),
        (
            "{place}{building}栋{floor}楼窗户往外冒黑烟，能看到明火，楼里可能还有人，请马上派消防车！",
            "{place}一楼商铺起火了，火苗已经窜到二楼，浓烟很大，请立即救援。",
            "我在{place}对面，看到{building}栋楼顶冒出很大的烟，好像着火了，已经打了119，这边也报一下。",
        ),
        weight=3,
        urgent=1.0,
    ),
    CallScript(
        "冒烟",
        ("楼道有烟雾", "闻到焦糊味"),
        (
            "{place}{building}栋{unit}单元楼道里全是烟，焦糊味很重，不知道是哪家着火了，很多人在往楼下跑。",
            "{place}附近一股烧焦的味道，能看到一股黑烟往上冒，请核实一下。",
        ),
        weight=2,
        urgent=1.0,
    ),
    CallScript(
        "消防通道占用",
        ("消防通道被占用",),
        ("{place}门口消防通道停满了私家车，消防车进不去，请交警马上来挪车！",),
        weight=1,
        urgent=1.0,
    ),
    CallScript(
        "人员被困",
        ("老人被困需协助疏散",),
        ("{place}{building}栋{floor}楼住着一位行动不便的老人，烟太大下不来，请救援人员优先去看看。",),
        weight=1,
        urgent=1.0,
    ),
)

CROWD_CALLS: tuple[CallScript, ...] = (
    CallScript(
        "人员聚集",
        ("广场人员聚集拥挤", "人流过大存在踩踏隐患"),
        (
            "{place}今晚的活动人太多了，出入口挤得走不动，担心发生踩踏，请增派人手疏导。",
            "{place}东侧台阶上挤满了人，小孩被挤哭了，现场没看到维持秩序的人。",
            "{place}散场的时候人流全堵在一个出口，建议多开几个通道分流。",
        ),
        weight=3,
        urgent=0.3,
    ),
    CallScript(
        "交通拥堵",
        ("周边道路严重拥堵", "车辆排长队"),
        (
            "{road}往{place}方向堵了快{minutes}分钟，车一动不动，请交警来疏导。",
            "{place}周边乱停车，把{road}堵死了，公交车都过不去。",
        ),
        weight=3,
    ),
    CallScript(
        "噪声扰民",
        ("活动音响声音过大",),
        ("{place}的演出音响开得太大，隔着两条街都能听到，家里老人睡不着。",),
        weight=1,
    ),
    CallScript(
        "人员走失",
        ("儿童走失求助",),
        ("在{place}人太多，孩子走散了，{age}岁男孩穿红色外套，请现场工作人员帮忙广播寻找。",),
        weight=1,
        urgent=1.0,
    ),
    CallScript(
        "占道经营",
        ("入口小摊贩占道",),
        ("{place}入口处有很多小摊贩占道，本来人就多，通道更窄了。",),
        weight=1,
    ),
)
