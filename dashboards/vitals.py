"""The city's vital signs (城市运行体征), for the whole city or one district.

Pure functions over what the pages read (live device states, the live alert queue, the
12345 and case counts per district), so the overview, the district pages and the wall
compute the same figures the same way. :func:`read_inputs` is the one read they share.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from statistics import fmean

import sqlalchemy as sa

from dashboards.console import DOMAINS, SEVERITIES
from geo.boundaries import DISTRICTS
from models.cases import OpenCases, open_by_district
from models.clock import CITY_TZ
from models.live import OFFLINE_AFTER_S, DeviceState, LiveAlert, LiveStore
from models.standards import aqi
from models.standards.aqi import AqiResult
from models.tickets import DistrictTickets, SatisfactionStats, district_counts

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
    newest_reading_age_s: float | None = None


@dataclass(frozen=True, slots=True)
class OverviewSnapshot:
    devices: int
    online: int
    pm25_city: float | None
    aqi_city: AqiResult | None
    newest_reading_age_s: float | None
    districts: tuple[DistrictFigures, ...]


def summarise(states: list[DeviceState], now: float | None = None) -> OverviewSnapshot:
    """Reduce the live device states to the overview's figures (pure, unit-tested).

    One pass over the states, counting by district on the way and keeping only the online
    air stations' readings: at 10,000 devices a pass per district (and then per figure)
    was most of a refresh. The means are exact sums (``fmean``), so the order the stations
    are met in does not change a figure."""
    now = time.time() if now is None else now
    devices: dict[str | None, int] = {}
    online: dict[str | None, int] = {}
    newest: dict[str | None, float] = {}
    air: dict[str | None, list[Mapping[str, float]]] = {}
    for s in states:
        code = s.district_code
        devices[code] = devices.get(code, 0) + 1
        seen = s.last_seen
        if seen is None:
            continue
        if seen > newest.get(code, -math.inf):
            newest[code] = seen
        if now - seen <= OFFLINE_AFTER_S:  # DeviceState.online
            online[code] = online.get(code, 0) + 1
            if s.type == "air_quality":
                air.setdefault(code, []).append(s.metrics)
    rows = []
    for d in DISTRICTS:
        stations = air.get(d.code, [])
        seen_last = newest.get(d.code)
        rows.append(
            DistrictFigures(
                d.code,
                d.name,
                devices.get(d.code, 0),
                online.get(d.code, 0),
                _mean_pm25(stations),
                _aqi_of(stations, now),
                None if seen_last is None else now - seen_last,
            )
        )
    city_air = [m for stations in air.values() for m in stations]
    return OverviewSnapshot(
        devices=len(states),
        online=sum(online.values()),
        pm25_city=_mean_pm25(city_air),
        aqi_city=_aqi_of(city_air, now),
        newest_reading_age_s=(now - max(newest.values())) if newest else None,
        districts=tuple(rows),
    )


def _mean_pm25(stations: list[Mapping[str, float]]) -> float | None:
    """Mean PM2.5 of the online air stations' readings given."""
    pm25 = [m["pm25"] for m in stations if "pm25" in m]
    return round(fmean(pm25), 1) if pm25 else None


def area_aqi(states: list[DeviceState], now: float) -> AqiResult | None:
    """Real-time AQI of an area from the mean concentrations of its air stations.

    Area-wide AQI is computed from averaged concentrations (per pollutant, over the
    stations reporting it), never by averaging the stations' AQIs.
    """
    return _aqi_of([s.metrics for s in states if s.type == "air_quality"], now)


def _aqi_of(stations: list[Mapping[str, float]], now: float) -> AqiResult | None:
    """:func:`area_aqi` of the air stations' readings given."""
    means = {p: fmean(values) for p in AQI_POLLUTANTS if (values := [m[p] for m in stations if p in m])}
    if not means:
        return None
    return aqi.realtime(means, at=datetime.fromtimestamp(now, UTC))


def district_figures(snapshot: OverviewSnapshot, district_code: str | None) -> DistrictFigures:
    """The device figures of one district, or of the whole city for None."""
    if district_code is None:
        return DistrictFigures(
            "",
            "",
            snapshot.devices,
            snapshot.online,
            snapshot.pm25_city,
            snapshot.aqi_city,
            snapshot.newest_reading_age_s,
        )
    return next(d for d in snapshot.districts if d.district_code == district_code)


# ---- alerts, 12345 and cases -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AlertCounts:
    """Open alerts (the console's queue) by severity and by domain, every key present."""

    by_severity: dict[str, int]
    by_domain: dict[str, int]
    unacknowledged: int
    audible: int

    @property
    def total(self) -> int:
        return sum(self.by_severity.values())


def alert_counts(
    alerts: Iterable[LiveAlert], district_code: str | None = None, audible: frozenset[int] = frozenset()
) -> AlertCounts:
    """Count the open alerts of one district (None: the whole city, unlocated ones too)."""
    mine = [a for a in alerts if district_code is None or a.district_code == district_code]
    severities = Counter(a.severity for a in mine)
    domains = Counter(a.domain for a in mine)
    return AlertCounts(
        by_severity={s: severities.get(s, 0) for s in SEVERITIES},
        by_domain={d: domains.get(d, 0) for d in DOMAINS},
        unacknowledged=sum(1 for a in mine if a.acknowledged_at is None),
        audible=sum(1 for a in mine if a.id in audible),
    )


def tickets_for(counts: Mapping[str, DistrictTickets], district_code: str | None = None) -> DistrictTickets:
    """One district's 12345 figures, or the city's (every district and the unlocated)."""
    if district_code is not None:
        return counts.get(district_code, DistrictTickets())
    rows = list(counts.values())
    return DistrictTickets(
        registered=sum(r.registered for r in rows),
        open=sum(r.open for r in rows),
        overdue=sum(r.overdue for r in rows),
        satisfaction=SatisfactionStats(
            satisfied=sum(r.satisfaction.satisfied for r in rows),
            basically_satisfied=sum(r.satisfaction.basically_satisfied for r in rows),
            dissatisfied=sum(r.satisfaction.dissatisfied for r in rows),
        ),
    )


def cases_for(counts: Mapping[str, OpenCases], district_code: str | None = None) -> OpenCases:
    """One district's open cases, or the city's."""
    if district_code is not None:
        return counts.get(district_code, OpenCases())
    return OpenCases(
        open=sum(c.open for c in counts.values()), overdue=sum(c.overdue for c in counts.values())
    )


def city_day_start(now: datetime) -> datetime:
    """Midnight of the city's day containing ``now`` ("today" on every panel)."""
    local = now.astimezone(CITY_TZ)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


# ---- the one read ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VitalInputs:
    """Everything the vital signs are computed from, read once per refresh."""

    now: datetime
    states: list[DeviceState]
    alerts: list[LiveAlert]
    audible: frozenset[int]
    tickets: dict[str, DistrictTickets] = field(default_factory=dict)
    cases: dict[str, OpenCases] = field(default_factory=dict)
    #: Why the database part is missing, when it is (the live part still shows).
    database_error: str | None = None


#: Open alerts read for the counts; the queue is ordered most severe first, so a cap
#: would only ever drop the least severe ones.
ALERTS_READ_LIMIT = 5000


def read_inputs(
    live: LiveStore, engine: sa.Engine | None, now: datetime | None = None, district_code: str | None = None
) -> VitalInputs:
    """Live states and alerts from Redis, today's 12345 and open cases from the database;
    of one district only with ``district_code`` (a district-scoped viewer's).

    Raises when Redis is away (the page shows its degraded line); a database failure only
    leaves the 12345 and case figures empty, with the reason.
    """
    now = now or datetime.now(UTC)
    states = live.devices(district_code)
    alerts = live.open_alerts(ALERTS_READ_LIMIT, district_code)
    audible = frozenset(live.audible_alerts())
    if engine is None:
        return VitalInputs(now, states, alerts, audible)
    try:
        with engine.connect() as conn:
            tickets = district_counts(
                conn, city_day_start(now), now + timedelta(seconds=1), now=now, district_code=district_code
            )
            cases = open_by_district(conn, now, district_code=district_code)
    except Exception as exc:  # the live half still shows; the panel says why the rest is missing
        return VitalInputs(now, states, alerts, audible, database_error=type(exc).__name__)
    return VitalInputs(now, states, alerts, audible, tickets, cases)
