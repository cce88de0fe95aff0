"""Rebuilding the live state after Redis lost it: seconds for a city of N devices.

    .venv/bin/python bench/bench_rebuild.py [--devices 10000] [--rounds 3]

Fills a fresh embedded (SQLite) database with ``--devices`` sensors, each with its latest
reading, then times ``models.live.rebuild_live_state`` into Redis database 14
(``CITYOPS_BENCH_REDIS_URL``), flushed before each round and at the end. An ingest worker
runs this before it takes messages again after a Redis restart, so it is time the feed
waits.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis
import sqlalchemy as sa

from models import db, schema
from models.live import LiveStore, rebuild_live_state

REDIS_URL = os.environ.get("CITYOPS_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")


def fill(engine: sa.Engine, devices: int) -> None:
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(schema.Device.__table__),
            [
                {"device_id": f"aq-{i:05d}", "kind": "sensor", "type": "air_quality", "name": f"空气站{i}",
                 "lon": 106.6 + i % 100 / 1000, "lat": 30.4 + i // 100 / 1000, "district_code": "511602",
                 "grid_id": None, "props": {}}
                for i in range(devices)
            ],
        )  # fmt: skip
        db.record_observations(
            conn,
            [
                {"device_id": f"aq-{i:05d}", "ts": now - timedelta(seconds=i % 60), "received_at": now,
                 "metrics": {"pm25": 30.0 + i % 40, "pm10": 60.0 + i % 50, "o3": 80.0}}
                for i in range(devices)
            ],
        )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/rebuild.sqlite3"
        db.upgrade_database(url)
        engine = db.create_engine_for(url)
        fill(engine, args.devices)
        seconds = []
        try:
            for _ in range(args.rounds):
                client.flushdb()
                live = LiveStore(client)
                started = time.perf_counter()
                with engine.connect() as conn:
                    rebuilt = rebuild_live_state(live, conn)
                seconds.append(time.perf_counter() - started)
                assert rebuilt.devices == rebuilt.readings == args.devices, rebuilt
        finally:
            client.flushdb()
            engine.dispose()
    print(
        f"rebuild of {args.devices:,} devices with a reading each: "
        + " / ".join(f"{s:.2f}" for s in seconds)
        + f" s (median {statistics.median(seconds):.2f} s), load {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
