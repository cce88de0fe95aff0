"""Hourly and daily AQI computed from the roll-ups, per station and per district."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa

from models.air_quality import daily_aqi, day_hours, hourly_aqi, hourly_means
from models.clock import CITY_TZ
from models.db import record_observations
from models.standards import aqi

DAY = date(2026, 7, 15)


def reading(device: str, at: datetime, district: str = "511602", **metrics: float) -> dict:
    return {"device_id": device, "ts": at, "metrics": metrics, "district_code": district, "grid_id": None}


def test_beijing_day_is_the_24_utc_hours_from_1600_the_day_before() -> None:
    hours = day_hours(DAY)
    assert len(hours) == 24
    assert hours[0] == datetime(2026, 7, 14, 16, tzinfo=UTC)
    assert hours[-1] == datetime(2026, 7, 15, 15, tzinfo=UTC)


def test_hourly_aqi_uses_the_mean_of_station_means(engine: sa.Engine) -> None:
    hour = datetime(2026, 7, 15, 9, tzinfo=CITY_TZ)
    rows = [
        # station a: two readings in the hour, mean pm25 100
        reading("a", hour + timedelta(minutes=5), pm25=90.0, o3=100.0),
        reading("a", hour + timedelta(minutes=35), pm25=110.0, o3=100.0),
        # station b: one reading, pm25 60 — the district mean is (100 + 60) / 2 = 80, not 260 / 3
        reading("b", hour + timedelta(minutes=10), pm25=60.0, o3=140.0),
        # another district and another hour must not count
        reading("c", hour + timedelta(minutes=10), district="511623", pm25=400.0),
        reading("a", hour + timedelta(hours=1, minutes=1), pm25=400.0),
    ]
    with engine.begin() as conn:
        record_observations(conn, rows)
    with engine.connect() as conn:
        district = hourly_aqi(conn, hour + timedelta(minutes=30), district_code="511602")
        station = hourly_aqi(conn, hour, device_id="b")
        empty = hourly_aqi(conn, hour - timedelta(hours=5), district_code="511602")
    assert district == aqi.realtime({"pm25": 80.0, "o3": 120.0}, at=hour)
    assert station == aqi.realtime({"pm25": 60.0, "o3": 140.0}, at=hour)
    assert empty is None


def test_daily_aqi_takes_24h_means_and_the_o3_8h_maximum(engine: sa.Engine) -> None:
    rows = []
    pm25 = [40.0 + h for h in range(24)]  # mean 51.5
    o3 = [60.0] * 10 + [200.0] * 8 + [60.0] * 6  # the 8 h window 10:00–18:00 averages 200
    for h, at in enumerate(day_hours(DAY)):
        rows.append(reading("a", at + timedelta(minutes=20), pm25=pm25[h], o3=o3[h]))
    with engine.begin() as conn:
        record_observations(conn, rows)
    with engine.connect() as conn:
        result = daily_aqi(conn, DAY, district_code="511602")
        means = hourly_means(conn, day_hours(DAY), district_code="511602")
    assert means["pm25"] == pm25 and means["so2"] == [None] * 24
    expected = aqi.daily({"pm25": 51.5, "o3_8h": 200.0, "o3": 200.0}, on=DAY)
    assert result is not None
    assert result.aqi == expected.aqi
    assert result.iaqi == expected.iaqi
    assert result.primary == ("o3",)


def test_a_day_with_too_few_hours_has_no_daily_aqi(engine: sa.Engine) -> None:
    hours = day_hours(DAY)[:5]
    with engine.begin() as conn:
        record_observations(conn, [reading("a", h, pm25=50.0) for h in hours])
    with engine.connect() as conn:
        assert daily_aqi(conn, DAY, district_code="511602") is None


def test_every_districts_means_in_one_query_equal_each_districts_own(engine: sa.Engine) -> None:
    from models.air_quality import hourly_means_by_district

    hours = day_hours(DAY)
    rows = []
    for h, at in enumerate(hours):
        rows.append(reading("a", at + timedelta(minutes=5), pm25=30.0 + h, o3=90.0))
        rows.append(reading("b", at + timedelta(minutes=9), pm25=70.0 - h))
        if h % 3 == 0:
            rows.append(reading("c", at + timedelta(minutes=7), district="511623", pm25=200.0, so2=12.0))
    with engine.begin() as conn:
        record_observations(conn, rows)
    codes = ["511602", "511623", "511681"]
    with engine.connect() as conn:
        together = hourly_means_by_district(conn, hours, codes)
        apart = {code: hourly_means(conn, hours, district_code=code) for code in codes}
    assert together == apart
    assert together["511602"]["pm25"][0] == 50.0 and together["511681"]["pm25"] == [None] * 24
