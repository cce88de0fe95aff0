"""Environmental noise limits per GB 3096—2008 声环境质量标准.

Source of the limits: GB 3096—2008 Table 1 (环境噪声限值), as transcribed in the
project's ``/work/shared/standards/water-and-noise.md``. Levels are LAeq in dB(A).

Day is 06:00–22:00 and night 22:00–06:00 city time (UTC+08:00): 06:00 is the first
minute of the day, 22:00 the first minute of the night. At night a burst maximum level
(突发噪声) may not exceed the zone limit by more than 15 dB(A).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, time
from fractions import Fraction
from types import MappingProxyType
from typing import Any, Literal

from models.standards._inputs import exact, local_time

Period = Literal["day", "night"]

#: Zone class → (day limit, night limit), dB(A).
LIMITS: Mapping[str, tuple[int, int]] = MappingProxyType(
    {"0": (50, 40), "1": (55, 45), "2": (60, 50), "3": (65, 55), "4a": (70, 55), "4b": (70, 60)}
)
ZONES: tuple[str, ...] = tuple(LIMITS)

DAY_START = time(6, 0)
NIGHT_START = time(22, 0)
#: Night burst allowance above the zone limit, dB(A).
BURST_ALLOWANCE = 15


@dataclass(frozen=True, slots=True)
class NoiseAssessment:
    """One LAeq (and optional Lmax) judged against the zone limit of its period.

    ``exceeded`` means LAeq > limit (a level on the limit meets it); ``excess_db`` is
    the amount above the limit, 0.0 when met. The burst fields apply at night only:
    ``burst_limit`` is limit + 15 dB(A) and ``burst_exceeded`` is Lmax > burst_limit;
    by day, or without Lmax, ``burst_limit`` is ``None`` and ``burst_exceeded`` False.
    """

    zone: str
    period: Period
    limit: int
    laeq: float
    exceeded: bool
    excess_db: float
    lmax: float | None = None
    burst_limit: int | None = None
    burst_exceeded: bool = False
    burst_excess_db: float = 0.0


def period(at: datetime) -> Period:
    """``"day"`` for 06:00 ≤ local time < 22:00, else ``"night"`` (city time)."""
    local = local_time("at", at).time()
    return "day" if DAY_START <= local < NIGHT_START else "night"


def limit(zone: str, at: datetime) -> int:
    """The zone's LAeq limit, dB(A), for the period ``at`` falls in."""
    day, night = LIMITS[_zone(zone)]
    return day if period(at) == "day" else night


def assess(laeq: float, zone: str, at: datetime, lmax: float | None = None) -> NoiseAssessment:
    """Judge a measured LAeq (and night Lmax) against GB 3096—2008."""
    z = _zone(zone)
    p = period(at)
    lim = LIMITS[z][0 if p == "day" else 1]
    level = exact("laeq", laeq)
    peak = None if lmax is None else exact("lmax", lmax)
    # Differences on exact decimals: 55.3 − 55 reports 0.3, not 0.30000000000000426.
    excess = max(level - lim, Fraction(0))
    burst_limit = lim + BURST_ALLOWANCE if p == "night" and peak is not None else None
    burst_excess = (
        max(peak - burst_limit, Fraction(0)) if peak is not None and burst_limit is not None else Fraction(0)
    )
    return NoiseAssessment(
        zone=z,
        period=p,
        limit=lim,
        laeq=float(level),
        exceeded=level > lim,
        excess_db=float(excess),
        lmax=None if peak is None else float(peak),
        burst_limit=burst_limit,
        burst_exceeded=burst_excess > 0,
        burst_excess_db=float(burst_excess),
    )


def _zone(zone: Any) -> str:
    # "4A" is how the class is often printed; the table keys are lower case.
    if isinstance(zone, str) and zone.lower() in LIMITS:
        return zone.lower()
    raise ValueError(f"zone must be one of {list(ZONES)} (a string), got {zone!r}")
