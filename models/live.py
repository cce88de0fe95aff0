"""Live state in Redis: the one place that knows the key layout.

Ingest writes here, the web tier reads here, so every viewer sees the same thing.
Without ``CITYOPS_REDIS_URL`` an in-process Redis-compatible store (fakeredis) is
used; it speaks the same commands, so the same code runs in the embedded demo.

Key layout (all keys start with ``cityops:``; documented in docs/data-model.md):

=======================================  ======  ==============================================
key                                      type    content
=======================================  ======  ==============================================
``cityops:device:{device_id}``           hash    ``type``, ``name``, ``lon``, ``lat``,
                                                 ``district_code``, ``grid_id``, ``ts`` (last
                                                 reading, ISO-8601), ``metrics`` (JSON),
                                                 ``derived`` (JSON, e.g. AQI)
``cityops:devices:last_seen``            zset    device_id → epoch seconds of the last message
``cityops:devices:type:{type}``          set     device ids of one type
``cityops:stream:{name}``                stream  recent ``observations``, ``video``,
                                                 ``tickets``, ``alerts`` (capped)
``cityops:counter:{name}:{yyyymmddhh}``  hash    per-hour counters, field = district code or
                                                 ``all`` (expire after two days)
``cityops:updates``                      pubsub  a JSON note per written batch, for pushes
=======================================  ======  ==============================================
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis

from models.config import Settings

KEY_PREFIX = "cityops:"
UPDATES_CHANNEL = KEY_PREFIX + "updates"
#: Capped streams keep about this many entries (approximate trimming is much cheaper).
STREAM_MAXLEN = 5000
#: A device that sent nothing for this long is shown as offline.
OFFLINE_AFTER_S = 15 * 60
#: Hourly counters are kept this long: enough for "today" and "last 24 h" panels.
COUNTER_TTL_S = 2 * 24 * 3600

_embedded_lock = threading.Lock()
_embedded_server: Any = None


class LiveStoreUnavailable(RuntimeError):
    """Redis cannot be reached; the message is one line naming host:port."""


def connect_redis(settings: Settings) -> redis.Redis:
    """A client for the configured Redis, or for the process-wide embedded store."""
    if settings.redis_url is None:
        import fakeredis

        global _embedded_server
        with _embedded_lock:
            if _embedded_server is None:
                _embedded_server = fakeredis.FakeServer()
        return fakeredis.FakeRedis(server=_embedded_server, decode_responses=True)
    return redis.Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        socket_timeout=5,
        socket_connect_timeout=3,
        health_check_interval=30,
    )


def check_redis(client: redis.Redis) -> None:
    try:
        client.ping()
    except redis.RedisError as exc:
        kwargs = client.connection_pool.connection_kwargs
        where = f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
        raise LiveStoreUnavailable(
            f"cannot reach Redis at {where} ({exc}) — is it running? check CITYOPS_REDIS_URL"
        ) from None


def device_key(device_id: str) -> str:
    return f"{KEY_PREFIX}device:{device_id}"


def stream_key(name: str) -> str:
    return f"{KEY_PREFIX}stream:{name}"


def counter_key(name: str, hour: datetime) -> str:
    return f"{KEY_PREFIX}counter:{name}:{hour.astimezone(UTC):%Y%m%d%H}"


@dataclass(frozen=True, slots=True)
class DeviceState:
    """The latest known state of one device, as the dashboards show it."""

    device_id: str
    type: str
    name: str
    lon: float
    lat: float
    district_code: str | None
    grid_id: str | None
    ts: datetime | None
    metrics: dict[str, float]
    derived: dict[str, Any]
    last_seen: float | None

    def online(self, now: float | None = None) -> bool:
        if self.last_seen is None:
            return False
        return (time.time() if now is None else now) - self.last_seen <= OFFLINE_AFTER_S


class LiveStore:
    """Reads and writes the live state; one instance per process is enough (thread-safe)."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    # ---- writes (ingest) -------------------------------------------------------------

    def register_device(self, device_id: str, fields: Mapping[str, Any]) -> None:
        mapping = {k: _encode(v) for k, v in fields.items()}
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(device_key(device_id), mapping=mapping)
            if "type" in fields:
                pipe.sadd(f"{KEY_PREFIX}devices:type:{fields['type']}", device_id)
            pipe.execute()

    def record_readings(self, readings: Iterable[Mapping[str, Any]], *, now: float | None = None) -> int:
        """Store a batch of latest readings in one round trip.

        Each reading needs ``device_id``, ``ts`` (aware datetime) and ``metrics``; it may
        carry ``derived``, ``district_code`` and ``grid_id``. A reading older than the one
        already stored still updates last-seen but does not overwrite newer values, so
        out-of-order delivery never moves a device's state backwards.
        """
        readings = list(readings)
        if not readings:
            return 0
        stamp = time.time() if now is None else now
        with self.redis.pipeline(transaction=False) as pipe:
            for r in readings:
                pipe.hget(device_key(r["device_id"]), "ts")
            stored_ts = pipe.execute()
        hour_counts: dict[tuple[str, str], int] = {}
        with self.redis.pipeline(transaction=False) as pipe:
            for r, previous in zip(readings, stored_ts, strict=True):
                ts: datetime = r["ts"]
                iso = ts.isoformat()
                if previous is None or _parse_ts(previous) <= ts:
                    mapping = {"ts": iso, "metrics": json.dumps(r["metrics"], ensure_ascii=False)}
                    if r.get("derived") is not None:
                        mapping["derived"] = json.dumps(r["derived"], ensure_ascii=False)
                    pipe.hset(device_key(r["device_id"]), mapping=mapping)
                pipe.zadd(f"{KEY_PREFIX}devices:last_seen", {r["device_id"]: stamp})
                pipe.xadd(
                    stream_key("observations"),
                    {"device_id": r["device_id"], "ts": iso, "metrics": mapping_json(r["metrics"])},
                    maxlen=STREAM_MAXLEN,
                    approximate=True,
                )
                hour = counter_key("observations", datetime.fromtimestamp(stamp, UTC))
                for field in ("all", r.get("district_code") or "outside"):
                    hour_counts[(hour, field)] = hour_counts.get((hour, field), 0) + 1
            for (key, field), n in hour_counts.items():
                pipe.hincrby(key, field, n)
                pipe.expire(key, COUNTER_TTL_S)
            pipe.publish(UPDATES_CHANNEL, json.dumps({"kind": "observations", "n": len(readings)}))
            pipe.execute()
        return len(readings)

    def record_events(
        self, stream: str, rows: Iterable[Mapping[str, Any]], *, now: float | None = None
    ) -> int:
        """Append events (video events, tickets …) to a capped stream and count them per hour."""
        rows = list(rows)
        if not rows:
            return 0
        hour = counter_key(stream, datetime.fromtimestamp(time.time() if now is None else now, UTC))
        per_district: dict[str, int] = {}
        with self.redis.pipeline(transaction=False) as pipe:
            for r in rows:
                fields = {k: _encode(v) for k, v in r.items() if k != "geom" and v is not None}
                pipe.xadd(stream_key(stream), fields, maxlen=STREAM_MAXLEN, approximate=True)
                for field in ("all", r.get("district_code") or "outside"):
                    per_district[field] = per_district.get(field, 0) + 1
            for field, n in per_district.items():
                pipe.hincrby(hour, field, n)
            pipe.expire(hour, COUNTER_TTL_S)
            pipe.publish(UPDATES_CHANNEL, json.dumps({"kind": stream, "n": len(rows)}))
            pipe.execute()
        return len(rows)

    def record_dead_letters(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Rejected messages: a capped stream for the system page and a counter per reason."""
        rows = list(rows)
        if not rows:
            return 0
        with self.redis.pipeline(transaction=False) as pipe:
            for r in rows:
                pipe.xadd(
                    stream_key("dead_letters"),
                    {k: _encode(v)[:1000] for k, v in r.items()},
                    maxlen=STREAM_MAXLEN,
                    approximate=True,
                )
                pipe.hincrby(f"{KEY_PREFIX}rejected", str(r.get("reason", "unknown")), 1)
            pipe.execute()
        return len(rows)

    # ---- reads (web) -----------------------------------------------------------------

    def devices(self) -> list[DeviceState]:
        """Every known device with its latest state (a few thousand at most)."""
        last_seen = dict(self.redis.zrange(f"{KEY_PREFIX}devices:last_seen", 0, -1, withscores=True))
        keys = [k for k in self.redis.scan_iter(match=f"{KEY_PREFIX}device:*", count=1000)]
        with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hgetall(key)
            rows = pipe.execute()
        states = []
        for key, row in zip(keys, rows, strict=True):
            if not row or "lon" not in row:
                continue
            device_id = key[len(device_key("")) :]
            states.append(
                DeviceState(
                    device_id=device_id,
                    type=row.get("type", ""),
                    name=row.get("name", device_id),
                    lon=float(row["lon"]),
                    lat=float(row["lat"]),
                    district_code=row.get("district_code") or None,
                    grid_id=row.get("grid_id") or None,
                    ts=_parse_ts(row["ts"]) if row.get("ts") else None,
                    metrics=json.loads(row.get("metrics") or "{}"),
                    derived=json.loads(row.get("derived") or "{}"),
                    last_seen=last_seen.get(device_id),
                )
            )
        states.sort(key=lambda s: s.device_id)
        return states

    def hourly_counts(
        self, name: str, hours: int, *, now: datetime | None = None
    ) -> list[tuple[datetime, int]]:
        """Counts of the last ``hours`` hours (oldest first) from the per-hour counters."""
        end = (now or datetime.now(UTC)).astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        stamps = [datetime.fromtimestamp(end.timestamp() - 3600 * i, UTC) for i in range(hours - 1, -1, -1)]
        with self.redis.pipeline(transaction=False) as pipe:
            for stamp in stamps:
                pipe.hget(counter_key(name, stamp), "all")
            values = pipe.execute()
        return [(s, int(v or 0)) for s, v in zip(stamps, values, strict=True)]

    def recent(self, stream: str, count: int = 50) -> list[dict[str, str]]:
        """The newest entries of a capped stream, newest first."""
        return [fields for _id, fields in self.redis.xrevrange(stream_key(stream), count=count)]


def mapping_json(value: Mapping[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _encode(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    if value is None:
        return ""
    return str(value)


def _parse_ts(value: str) -> datetime:
    return datetime.fromisoformat(value)
