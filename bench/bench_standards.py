"""Benchmark the national standards: evaluations per second of the code ingest runs per reading.

    python bench/bench_standards.py [--n 20000] [--repeat 3] [--seed 20261125]

Every case evaluates ``--n`` seeded, realistic inputs (a clean to heavily polluted city,
rivers from class I to 劣V, noise points in every zone by day and by night) and reports
evaluations per second and µs per evaluation, the best of ``--repeat`` rounds (the machine
is shared: the best round is the one least disturbed).

- AQI (HJ 633): one IAQI (``aqi.iaqi``, PM2.5 24 h column), a real-time AQI of six
  pollutants (``aqi.realtime``), a daily AQI from 24 hourly means of six pollutants
  (``aqi.daily_from_hourly``, the 8 h O3 moving maximum included), and ``derive`` for an
  air station, which is what an ingest worker calls for each reading.
- Water (GB 3838—2002 single-factor class): ``water.classify`` of the eight parameters a
  river station sends, and ``derive`` for it.
- Noise (GB 3096—2008): ``noise.assess`` and ``derive`` for a noise point.

There is no vectorised path: the standards compute exactly per value (integers or fractions; a
limit or breakpoint met exactly belongs to the better class, which floats cannot promise),
so "single" is the only path there is.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np

# Runnable as a plain script from the repository root or from bench/.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from models.standards import aqi, noise, water
from models.standards.derive import derive

SEED = 20261125
#: A day under HJ 633—2026 (the table in force for new data).
DAY = date(2026, 11, 25)
AT = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)  # 14:00 in Guang'an: a day-time noise limit


@dataclass(frozen=True, slots=True)
class Figure:
    area: str
    case: str
    evaluations: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.evaluations / self.seconds

    @property
    def micros(self) -> float:
        return self.seconds / self.evaluations * 1e6


def air_readings(rng: np.random.Generator, n: int) -> list[dict[str, float]]:
    """Hourly means, µg/m³ (CO mg/m³), log-normal like city air: mostly good, a polluted tail."""
    scale = {"pm25": 35, "pm10": 60, "so2": 8, "no2": 30, "co": 0.8, "o3": 90}
    columns = {k: rng.lognormal(np.log(v), 0.6, n).round(1) for k, v in scale.items()}
    return [{k: float(columns[k][i]) for k in scale} for i in range(n)]


def water_samples(rng: np.random.Generator, n: int) -> list[dict[str, float]]:
    """What a river station sends (mg/L; pH unitless), spread over classes I to 劣V."""
    columns = {
        "ph": rng.uniform(5.8, 9.2, n).round(2),
        "do": rng.uniform(1.5, 9.0, n).round(2),
        "codmn": rng.uniform(1.0, 16.0, n).round(2),
        "cod": rng.uniform(8.0, 45.0, n).round(1),
        "bod5": rng.uniform(1.0, 11.0, n).round(2),
        "nh3n": rng.uniform(0.05, 2.5, n).round(3),
        "tp": rng.uniform(0.01, 0.5, n).round(3),
        "oil": rng.uniform(0.01, 1.2, n).round(3),
    }
    return [{k: float(v[i]) for k, v in columns.items()} for i in range(n)]


def noise_points(rng: np.random.Generator, n: int) -> list[tuple[float, str, datetime]]:
    laeq = rng.uniform(35.0, 85.0, n).round(1)
    zones = rng.choice(np.array(noise.ZONES), n)
    hours = rng.integers(0, 24, n)
    return [(float(laeq[i]), str(zones[i]), AT + timedelta(hours=int(hours[i]))) for i in range(n)]


def timed(
    area: str, case: str, inputs: Sequence[object], call: Callable[[object], object], repeat: int
) -> Figure:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for item in inputs:
            call(item)
        best = min(best, time.perf_counter() - start)
    return Figure(area, case, len(inputs), best)


def run(n: int, repeat: int, seed: int) -> list[Figure]:
    rng = np.random.default_rng(seed)
    air = air_readings(rng, n)
    pm25 = [r["pm25"] for r in air]
    # 24 hourly means per pollutant for each daily case (fewer cases: each is 24 × 6 values).
    days = max(n // 24, 100)
    hourly = [{k: [air[(d * 24 + h) % n][k] for h in range(24)] for k in aqi.POLLUTANTS} for d in range(days)]
    rivers = water_samples(rng, n)
    points = noise_points(rng, n)
    station = {"body": "river"}
    cases: list[tuple[str, str, Sequence[Any], Callable[[Any], object]]] = [
        ("AQI", "IAQI, one column (`aqi.iaqi`)", pm25, lambda c: aqi.iaqi("pm25_24h", c, standard=2026)),
        ("AQI", "real-time AQI, 6 pollutants (`aqi.realtime`)", air, lambda r: aqi.realtime(r, at=AT)),
        ("AQI", "daily AQI from 24 h × 6 (`aqi.daily_from_hourly`)", hourly,
         lambda h: aqi.daily_from_hourly(h, on=DAY)),
        ("AQI", "ingest's per-reading `derive` (air station)", air,
         lambda r: derive("air_quality", {}, r, AT)),
        ("water", "class, 8 parameters (`water.classify`)", rivers, lambda s: water.classify(s)),
        ("water", "ingest's per-reading `derive` (river station)", rivers,
         lambda s: derive("water_quality", station, s, AT)),
        ("noise", "zone limit and excess (`noise.assess`)", points, lambda p: noise.assess(*p)),
        ("noise", "ingest's per-reading `derive` (noise point)", points,
         lambda p: derive("noise", {"zone": p[1]}, {"laeq": p[0]}, p[2])),
    ]  # fmt: skip
    return [timed(area, case, inputs, call, repeat) for area, case, inputs, call in cases]


def table(figures: Sequence[Figure]) -> str:
    lines = ["| area | case | evaluations | per second | µs each |", "|---|---|---|---|---|"]
    lines += [
        f"| {f.area} | {f.case} | {f.evaluations:,} | {f.per_second:,.0f} | {f.micros:,.1f} |"
        for f in figures
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="inputs per case")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per case; the best is reported")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    with open("/proc/loadavg") as f:
        load_before = f.read().split()[0]
    figures = run(args.n, args.repeat, args.seed)
    with open("/proc/loadavg") as f:
        load_after = f.read().split()[0]
    print(table(figures))
    print(f"\nn={args.n:,}, best of {args.repeat}, seed {args.seed}; load {load_before} → {load_after}")


if __name__ == "__main__":
    main()
