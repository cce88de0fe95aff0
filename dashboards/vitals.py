"""The city's vital signs (城市运行体征) computed from live device states: pure functions."""

from __future__ import annotations

import time
from dataclasses import dataclass
from statistics import fmean

from geo.boundaries import DISTRICTS
from models.live import DeviceState


@dataclass(frozen=True, slots=True)
class DistrictFigures:
    district_code: str
    name: str
    devices: int
    online: int
    pm25: float | None


@dataclass(frozen=True, slots=True)
class OverviewSnapshot:
    devices: int
    online: int
    pm25_city: float | None
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
                d.code, d.name, len(mine), len(mine_online), round(fmean(air), 1) if air else None
            )
        )
    return OverviewSnapshot(
        devices=len(states),
        online=len(online),
        pm25_city=round(fmean(pm25), 1) if pm25 else None,
        newest_reading_age_s=(now - max(seen)) if seen else None,
        districts=tuple(rows),
    )
