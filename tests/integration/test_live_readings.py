"""Live readings on a real Redis: the one-script write leaves exactly what the pipeline leaves.

``LiveStore.record_readings`` runs its writes as one Lua script on Redis and as a pipeline
on the embedded store (fakeredis has no Lua runtime here). Both are run on the same Redis
database with the same batches, and every key they touch is compared.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from models.live import KEY_PREFIX, LiveStore, stream_key

pytestmark = pytest.mark.real_services

NOW = 1_785_000_000.0  # a fixed "received" time: last-seen and the hourly counter key


def batches(rng: random.Random) -> list[list[dict[str, Any]]]:
    t0 = datetime(2026, 7, 15, 9, 0, tzinfo=UTC)
    out = []
    for _ in range(3):
        batch = []
        for i in range(120):
            device = f"dev-{rng.randint(0, 30)}"
            ts = t0 + timedelta(seconds=rng.randint(0, 600))  # out of order, within and across batches
            reading: dict[str, Any] = {
                "device_id": device,
                "ts": ts,
                "metrics": {"pm25": round(rng.uniform(0, 200), 2), "名": i},
                "district_code": rng.choice(["511602", "511603", None]),
            }
            if rng.random() < 0.5:
                reading["derived"] = {"aqi": rng.randint(0, 300), "level": "良"}
            batch.append(reading)
        out.append(batch)
    return out


def snapshot(client: redis.Redis) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for key in sorted(client.scan_iter(match=f"{KEY_PREFIX}*")):
        kind = client.type(key)
        if kind == "hash":
            state[key] = client.hgetall(key)
        elif kind == "zset":
            state[key] = client.zrange(key, 0, -1, withscores=True)
        elif kind == "stream":
            # Entry ids are arrival times; the entries and their order must agree.
            state[key] = [fields for _id, fields in client.xrange(key)]
        else:
            state[key] = kind
        state[key + " ttl>0"] = client.ttl(key) > 0 if kind == "hash" and ":counter:" in key else None
    return state


def run(client: redis.Redis, store: LiveStore, data: list[list[dict[str, Any]]]) -> dict[str, Any]:
    client.flushdb()
    for batch in data:
        assert store.record_readings(batch, now=NOW) == len(batch)
    return snapshot(client)


def test_script_and_pipeline_leave_the_same_live_state(redis_url: str, rng: random.Random) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    data = batches(rng)
    scripted = LiveStore(client)
    assert scripted._scripts, "a real Redis runs the writes as one script"
    piped = LiveStore(client)
    piped._scripts = False
    try:
        with_script = run(client, scripted, data)
        with_pipeline = run(client, piped, data)
    finally:
        client.flushdb()
    assert with_script == with_pipeline
    # And the state is the newest reading of each device, whatever the delivery order.
    newest: dict[str, dict[str, Any]] = {}
    for batch in data:
        for r in batch:
            if r["device_id"] not in newest or newest[r["device_id"]]["ts"] <= r["ts"]:
                newest[r["device_id"]] = r
    for device_id, r in newest.items():
        assert with_script[f"{KEY_PREFIX}device:{device_id}"]["ts"] == r["ts"].isoformat()
    assert len(with_script[stream_key("observations")]) == sum(len(b) for b in data)
    counters = [
        k for k in with_script if k.startswith(f"{KEY_PREFIX}counter:observations:") and "ttl" not in k
    ]
    assert len(counters) == 1 and with_script[counters[0]]["all"] == str(sum(len(b) for b in data))
    assert with_script[counters[0] + " ttl>0"] is True
