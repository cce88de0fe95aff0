"""The overview page's figures, computed from live device states."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime
from pathlib import Path
from statistics import fmean

from dashboards.i18n import STRINGS, t
from dashboards.vitals import AQI_POLLUTANTS, DistrictFigures, OverviewSnapshot, summarise
from geo.boundaries import DISTRICTS
from models.live import OFFLINE_AFTER_S, DeviceState
from models.standards import aqi
from models.standards.aqi import AqiResult

NOW = 1_800_000_000.0


def state(
    device_id: str,
    district: str | None,
    *,
    seen_ago: float | None,
    pm25: float | None = None,
    type_: str = "air_quality",
) -> DeviceState:
    return DeviceState(
        device_id=device_id,
        type=type_,
        name=device_id,
        lon=106.6,
        lat=30.4,
        district_code=district,
        grid_id=None,
        ts=None,
        metrics={} if pm25 is None else {"pm25": pm25},
        derived={},
        last_seen=None if seen_ago is None else NOW - seen_ago,
    )


def test_summary_counts_online_devices_and_averages_pm25_of_online_stations_only() -> None:
    states = [
        state("a", "511602", seen_ago=10, pm25=30.0),
        state("b", "511602", seen_ago=20, pm25=50.0),
        state("c", "511602", seen_ago=OFFLINE_AFTER_S + 1, pm25=500.0),  # offline: its stale value is ignored
        state("d", "511623", seen_ago=5, type_="noise"),
        state("e", "511681", seen_ago=None),
    ]
    s = summarise(states, now=NOW)
    assert (s.devices, s.online) == (5, 3)
    assert s.pm25_city == 40.0
    # AQI from the mean concentration of the online stations (40 µg/m³), not a mean of AQIs:
    # HJ 633—2026 PM2.5 segment 35–60 → IAQI 50–100, so 50 + 50/25 × 5 = 60.
    assert s.aqi_city is not None and (s.aqi_city.aqi, s.aqi_city.category) == (60, "良")
    assert s.newest_reading_age_s == 5
    by_code = {d.district_code: d for d in s.districts}
    assert [d.district_code for d in s.districts] == [
        "511602",
        "511603",
        "511621",
        "511622",
        "511623",
        "511681",
    ]
    assert (by_code["511602"].devices, by_code["511602"].online, by_code["511602"].pm25) == (3, 2, 40.0)
    assert (by_code["511623"].online, by_code["511623"].pm25, by_code["511623"].aqi) == (1, None, None)
    assert by_code["511602"].aqi == s.aqi_city
    assert (by_code["511681"].devices, by_code["511681"].online) == (1, 0)


def test_no_devices_gives_empty_figures_not_errors() -> None:
    s = summarise([], now=NOW)
    assert (s.devices, s.online, s.pm25_city, s.aqi_city, s.newest_reading_age_s) == (0, 0, None, None, None)


def reference_summary(states: list[DeviceState], now: float) -> OverviewSnapshot:
    """The figures as the page defines them, one figure at a time over every state."""

    def aqi_of(some: list[DeviceState]) -> AqiResult | None:
        stations = [s for s in some if s.type == "air_quality"]
        means = {
            p: fmean(values)
            for p in AQI_POLLUTANTS
            if (values := [s.metrics[p] for s in stations if p in s.metrics])
        }
        return aqi.realtime(means, at=datetime.fromtimestamp(now, UTC)) if means else None

    def pm25_of(some: list[DeviceState]) -> float | None:
        values = [s.metrics["pm25"] for s in some if s.type == "air_quality" and "pm25" in s.metrics]
        return round(fmean(values), 1) if values else None

    def newest_age(some: list[DeviceState]) -> float | None:
        seen = [s.last_seen for s in some if s.last_seen is not None]
        return now - max(seen) if seen else None

    online = [s for s in states if s.online(now)]
    return OverviewSnapshot(
        devices=len(states),
        online=len(online),
        pm25_city=pm25_of(online),
        aqi_city=aqi_of(online),
        newest_reading_age_s=newest_age(states),
        districts=tuple(
            DistrictFigures(
                d.code,
                d.name,
                len([s for s in states if s.district_code == d.code]),
                len([s for s in online if s.district_code == d.code]),
                pm25_of([s for s in online if s.district_code == d.code]),
                aqi_of([s for s in online if s.district_code == d.code]),
                newest_age([s for s in states if s.district_code == d.code]),
            )
            for d in DISTRICTS
        ),
    )


def test_the_one_pass_summary_equals_the_figures_taken_one_by_one() -> None:
    rng = random.Random(20261126)
    codes = [d.code for d in DISTRICTS] + [None, "500116"]  # unlocated and a neighbour's
    states = []
    for i in range(3000):
        metrics = {p: round(rng.uniform(1, 300), 3) for p in AQI_POLLUTANTS if rng.random() < 0.8}
        states.append(
            DeviceState(
                device_id=f"dev-{i:05d}",
                type=rng.choice(["air_quality", "air_quality", "noise", "smoke", "camera"]),
                name=f"dev-{i}",
                lon=106.6,
                lat=30.4,
                district_code=rng.choice(codes),
                grid_id=None,
                ts=None,
                metrics=metrics,
                derived={},
                last_seen=None if rng.random() < 0.05 else NOW - rng.uniform(0, 2 * OFFLINE_AFTER_S),
            )
        )
    rng.shuffle(states)
    assert summarise(states, now=NOW) == reference_summary(states, NOW)
    assert summarise(states[:7], now=NOW) == reference_summary(states[:7], NOW)


def test_every_string_used_by_the_pages_is_in_the_catalogue_in_both_languages() -> None:
    used: set[str] = set()
    for path in (Path(__file__).resolve().parents[3] / "dashboards").rglob("*.py"):
        used |= set(re.findall(r"""\bt\(\s*f?["']([a-z_.{}]+)["']""", path.read_text(encoding="utf-8")))
    plain = {k for k in used if "{" not in k}
    assert plain, "the pages use the catalogue"
    assert plain <= set(STRINGS), sorted(plain - set(STRINGS))
    for key, entry in STRINGS.items():
        assert entry.get("zh") and entry.get("en"), key
    assert t("unit.seconds_ago", n=5) == "5 秒前"
    assert t("unit.seconds_ago", lang="en", n=5) == "5 s ago"
