"""The overview page's figures, computed from live device states."""

from __future__ import annotations

import re
from pathlib import Path

from dashboards.i18n import STRINGS, t
from dashboards.vitals import summarise
from models.live import OFFLINE_AFTER_S, DeviceState

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
