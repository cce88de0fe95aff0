"""The rule engine's cost per reading as its windows fill: the default rules over the
simulator's city feed at a steady rate, against the real Redis.

    .venv/bin/python bench/bench_rules.py [--rate 2000] [--minutes 40] [--batch 500]
                                          [--mix city] [--seed 20261126]
                                          [--redis redis://127.0.0.1:6379/12]
                                          [--profile PATH [--profile-after MIN]]

The feed runs on simulated time as fast as the engine takes it (no MQTT, no database):
``--rate`` messages per simulated second, in batches of ``--batch`` as a worker hands
them over, for ``--minutes`` simulated minutes. Every simulated minute a line gives the
engine's wall time per 1,000 messages, the decisions and Redis' memory. A rule whose
cost grows with its window shows as a rising column; a flat column is what a worker
needs to keep up for hours. The Redis database is flushed before and after.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis

from geo.locate import locate
from ingest.routing import Kind
from ingest.simulator import CitySimulator
from models.rules import RuleEngine, load_rules
from models.rules.sink import TICK_INTERVAL_S
from models.standards.derive import derive


class SimClock:
    """The simulator's clock, moved on by the bench rather than by time passing."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def accepted_rows(sim: CitySimulator, messages: list[Any], places: dict[str, tuple[str, str]]) -> dict:
    """What the pipeline hands the rules for these messages (no validation: they are good)."""
    router = sim.router
    devices = {d.device_id: d for d in sim.devices}
    observations, videos, tickets = [], [], []
    for m in messages:
        route = router.route(m.topic)
        if route is None:
            continue
        body = json.loads(m.payload)
        if route.kind is Kind.SENSOR_OBS:
            d = devices[route.key]
            ts = datetime.fromisoformat(body["ts"]).astimezone(UTC)
            metrics = {k: float(v) for k, v in body["metrics"].items()}
            district, grid = places[d.device_id]
            observations.append(
                {
                    "device_id": d.device_id,
                    "ts": ts,
                    "metrics": metrics,
                    "district_code": district,
                    "grid_id": grid,
                    "derived": derive(d.type, d.props, metrics, ts),
                    "device_type": d.type,
                    "props": d.props,
                    "lon": d.lon,
                    "lat": d.lat,
                }
            )
        elif route.kind is Kind.VIDEO_EVENT:
            d = devices[route.key]
            district, grid = places[d.device_id]
            videos.append(
                body
                | {
                    "camera_id": d.device_id,
                    "ts": datetime.fromisoformat(body["ts"]).astimezone(UTC),
                    "district_code": district,
                    "grid_id": grid,
                    "lon": body.get("lon", d.lon),
                    "lat": body.get("lat", d.lat),
                }
            )
        elif route.kind is Kind.TICKET:
            tickets.append(body | {"ts": datetime.fromisoformat(body["ts"]).astimezone(UTC)})
    return {"observations": observations, "video_events": videos, "hotline_tickets": tickets}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=2000.0, help="messages per simulated second")
    ap.add_argument("--minutes", type=float, default=40.0, help="simulated minutes")
    ap.add_argument("--batch", type=int, default=500, help="messages per evaluated batch")
    ap.add_argument("--mix", default="city")
    ap.add_argument("--seed", type=int, default=20261126)
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/12")
    ap.add_argument("--profile", metavar="PATH", help="cProfile the engine's calls into PATH")
    ap.add_argument(
        "--profile-after", type=float, default=0.0, metavar="MIN", help="from this simulated minute on"
    )
    args = ap.parse_args()

    client = redis.Redis.from_url(args.redis, decode_responses=True)
    client.flushdb()
    clock = SimClock(datetime(2026, 11, 26, 1, 0, tzinfo=UTC))
    sim = CitySimulator(seed=args.seed, clock=clock, mix=args.mix, start=clock.now)
    where = locate([d.lon for d in sim.devices], [d.lat for d in sim.devices])
    places = {
        d.device_id: (str(district), str(grid))
        for d, district, grid in zip(sim.devices, where.district_code, where.grid_id, strict=True)
    }
    engine = RuleEngine(load_rules(), client)
    sensors = sum(1 for d in sim.devices if d.type != "camera")
    print(
        f"# {len(sim.devices)} devices ({sensors} sensors), {args.rate:g} msgs/s simulated, "
        f"batches of {args.batch}, mix {args.mix}, load {Path('/proc/loadavg').read_text().split()[0]}"
    )
    print("| minute | msgs | engine ms / 1,000 msgs | decisions | Redis used MB |")
    print("|---|---|---|---|---|")
    seconds_per_batch = args.batch / args.rate
    total_s = args.minutes * 60
    elapsed = next_tick = 0.0
    minute, minute_msgs, minute_wall, minute_decisions = 0, 0, 0.0, 0
    started = time.perf_counter()
    profiler: cProfile.Profile | None = None
    while elapsed < total_s:
        clock.now += timedelta(seconds=seconds_per_batch)
        elapsed += seconds_per_batch
        messages = sim.tick(args.rate, seconds_per_batch)
        accepted = accepted_rows(sim, messages, places)
        if profiler is None and args.profile and elapsed >= args.profile_after * 60:
            profiler = cProfile.Profile()
        t0 = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        decisions = engine.evaluate(accepted)
        if elapsed >= next_tick:
            # A worker ticks the rules (staleness, windows running out) every interval.
            next_tick += TICK_INTERVAL_S
            decisions += engine.tick(clock.now)
        if profiler is not None:
            profiler.disable()
        minute_wall += time.perf_counter() - t0
        minute_msgs += len(messages)
        minute_decisions += len(decisions)
        if elapsed >= (minute + 1) * 60:
            minute += 1
            used = client.info("memory")["used_memory"] / 2**20
            per_k = minute_wall * 1000 / max(minute_msgs, 1) * 1000
            print(
                f"| {minute} | {minute_msgs:,} | {per_k:,.1f} | {minute_decisions} | {used:,.1f} |",
                flush=True,
            )
            minute_msgs, minute_wall, minute_decisions = 0, 0.0, 0
    print(f"# wall {time.perf_counter() - started:,.0f} s in all")
    if profiler is not None:
        profiler.dump_stats(args.profile)
    client.flushdb()


if __name__ == "__main__":
    main()
