"""Hourly and daily AQI from the hourly roll-ups, the way HJ 633 defines them.

A station's hourly concentration is the mean of its readings in that hour
(``observation_hourly.sum / count``). A district's (or the city's) concentration is the
mean over its stations of their hourly means — the practice for area-wide AQI, which is
computed from averaged concentrations, never by averaging station AQIs.

- Hourly (real-time) AQI: :func:`models.standards.aqi.realtime` on one hour's means.
- Daily AQI: 24 hourly means of one Beijing-time day → 24 h averages and the daily
  maximum 8 h sliding average of O3 (:func:`models.standards.aqi.daily_from_hourly`,
  with its data-validity rules).

The roll-up buckets are UTC hours; Beijing is UTC+8 all year, so a Beijing day is exactly
the 24 UTC hours from 16:00 the day before.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import sqlalchemy as sa

from models.clock import CITY_TZ
from models.schema import ObservationHourly
from models.standards import aqi

#: Roll-up metrics that feed the index (``o3`` hourly means feed both O3 columns).
POLLUTANTS = ("pm25", "pm10", "so2", "no2", "co", "o3")


def day_hours(day: date) -> list[datetime]:
    """The 24 UTC hour starts of one Beijing-time day, in order."""
    start = datetime.combine(day, time(0), CITY_TZ).astimezone(UTC)
    return [start + timedelta(hours=h) for h in range(24)]


def hourly_means(
    conn: sa.Connection,
    hours: list[datetime],
    *,
    district_code: str | None = None,
    device_id: str | None = None,
) -> dict[str, list[float | None]]:
    """Per pollutant, the area (or station) mean concentration of each given UTC hour.

    Only air-quality metrics are read; hours without data are ``None``.
    """
    t = ObservationHourly.__table__
    # The mean of the station means, per pollutant and hour, taken by the database: a city
    # day is 24 rows per station and pollutant, about 190,000 for a thousand stations.
    query = (
        sa.select(t.c.metric, t.c.hour, sa.func.avg(_station_mean(t)).label("mean"))
        .where(t.c.metric.in_(POLLUTANTS), t.c.hour >= min(hours), t.c.hour <= max(hours), t.c.count > 0)
        .group_by(t.c.metric, t.c.hour)
    )
    if district_code is not None:
        query = query.where(t.c.district_code == district_code)
    if device_id is not None:
        query = query.where(t.c.device_id == device_id)
    means = {(row.metric, row.hour.astimezone(UTC)): float(row.mean) for row in conn.execute(query)}
    return _area_means(means, hours)


def hourly_means_by_district(
    conn: sa.Connection, hours: list[datetime], district_codes: list[str]
) -> dict[str, dict[str, list[float | None]]]:
    """:func:`hourly_means` of several districts, in one query instead of one per district
    (the ecology page's 48-hour chart and the exports read every district at once)."""
    t = ObservationHourly.__table__
    query = (
        sa.select(t.c.district_code, t.c.metric, t.c.hour, sa.func.avg(_station_mean(t)).label("mean"))
        .where(
            t.c.metric.in_(POLLUTANTS),
            t.c.hour >= min(hours),
            t.c.hour <= max(hours),
            t.c.count > 0,
            t.c.district_code.in_(district_codes),
        )
        .group_by(t.c.district_code, t.c.metric, t.c.hour)
    )
    means: dict[str, dict[tuple[str, datetime], float]] = {code: {} for code in district_codes}
    for row in conn.execute(query):
        means[row.district_code][(row.metric, row.hour.astimezone(UTC))] = float(row.mean)
    return {code: _area_means(means[code], hours) for code in district_codes}


def _station_mean(t: sa.Table) -> sa.ColumnElement[float]:
    """A station's hourly mean as a float division, as Python's (SQLAlchemy would cast the
    integer count to NUMERIC by itself, and PostgreSQL would then divide in decimal)."""
    return t.c.sum / sa.cast(t.c.count, sa.Float)


def _area_means(
    means: dict[tuple[str, datetime], float], hours: list[datetime]
) -> dict[str, list[float | None]]:
    return {pollutant: [means.get((pollutant, h)) for h in hours] for pollutant in POLLUTANTS}


def hourly_aqi(
    conn: sa.Connection, hour: datetime, *, district_code: str | None = None, device_id: str | None = None
) -> aqi.AqiResult | None:
    """Real-time AQI of one hour (``hour`` is any aware time inside it), or None without data."""
    start = hour.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    means = hourly_means(conn, [start], district_code=district_code, device_id=device_id)
    concentrations = {p: v[0] for p, v in means.items() if v[0] is not None}
    if not concentrations:
        return None
    return aqi.realtime(concentrations, at=start)


def daily_aqi(
    conn: sa.Connection, day: date, *, district_code: str | None = None, device_id: str | None = None
) -> aqi.AqiResult | None:
    """Daily AQI of one Beijing-time day, or None when the data do not suffice."""
    hours = day_hours(day)
    means = hourly_means(conn, hours, district_code=district_code, device_id=device_id)
    return aqi.daily_from_hourly(means, on=day)
