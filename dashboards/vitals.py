"""The city's vital signs (城市运行体征) computed from live device states: pure functions."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from statistics import fmean

from geo.boundaries import DISTRICTS
from models.live import DeviceState
from models.standards import aqi
from models.standards.aqi import AqiResult

#: Pollutants of the real-time index, as the air stations report them.
AQI_POLLUTANTS = ("pm25", "pm10", "so2", "no2", "co", "o3")


@dataclass(frozen=True, slots=True)
class DistrictFigures:
    district_code: str
    name: str
    devices: int
    online: int
    pm25: float | None
    aqi: AqiResult | None


@dataclass(frozen=True, slots=True)
class OverviewSnapshot:
    devices: int
    online: int
    pm25_city: float | None
    aqi_city: AqiResult | None
    newest_reading_age_s: float | None
    districts: tuple[DistrictFigures, ...]


def summarise(states: list[DeviceState], now: float | None = None) -> OverviewSnapshot:
    """Reduce the live device states to the overview's figures (pure, unit-tested)."""
    now = time.time() if now is None else now
    online = [s for s in states if s.online(now)]
    pm25 = [s.metrics["pm25"] for s in online if s.type == "air_quality" and "pm25" in s.metrics]
    seen = [s.last_seen for s in states if s.last_seen is not None]
    rows = []
    for d in DISTRICTS:
        mine = [s for s in states if s.district_code == d.code]
        mine_online = [s for s in mine if s.online(now)]
        air = [s.metrics["pm25"] for s in mine_online if s.type == "air_quality" and "pm25" in s.metrics]
        rows.append(
            DistrictFigures(
                d.code,
                d.name,
                len(mine),
                len(mine_online),
                round(fmean(air), 1) if air else None,
                area_aqi(mine_online, now),
            )
        )
    return OverviewSnapshot(
        devices=len(states),
        online=len(online),
        pm25_city=round(fmean(pm25), 1) if pm25 else None,
        aqi_city=area_aqi(online, now),
        newest_reading_age_s=(now - max(seen)) if seen else None,
        districts=tuple(rows),
    )


def area_aqi(states: list[DeviceState], now: float) -> AqiResult | None:
    """Real-time AQI of an area from the mean concentrations of its air stations.

    Area-wide AQI is computed from averaged concentrations (per pollutant, over the
    stations reporting it), never by averaging the stations' AQIs.
    """
    stations = [s for s in states if s.type == "air_quality"]
    means = {
        p: fmean(values)
        for p in AQI_POLLUTANTS
        if (values := [s.metrics[p] for s in stations if p in s.metrics])
    }
    if not means:
        return None
    return aqi.realtime(means, at=datetime.fromtimestamp(now, UTC))
