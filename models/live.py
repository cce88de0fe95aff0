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
                                                 (a reading, or a camera's video event)
``cityops:devices:type:{type}``          set     device ids of one type
``cityops:stream:{name}``                stream  recent ``observations``, ``video``,
                                                 ``tickets``, ``alerts`` (capped)
``cityops:counter:{name}:{yyyymmddhh}``  hash    per-hour counters, field = district code or
                                                 ``all`` (expire after two days)
``cityops:updates``                      pubsub  a JSON note per written batch, for pushes
``cityops:alerts:open``                  zset    alert ids in the console queue, score =
                                                 severity rank × 10¹³ + opened_at (epoch ms)
``cityops:alert:{id}``                   hash    an alert's public fields (see ``LiveAlert``)
``cityops:alerts:audible``               set     ids of unacknowledged critical/major alerts
``cityops:alerts:open:{district_code}``  zset    one district's part of ``cityops:alerts:open``
                                                 (same members and scores)
``cityops:alerts:version``               string  bumped with every change to the queue, the
                                                 alert hashes or the audible set
``cityops:alerts:indexed_at``            string  when the per-district queues were built from
                                                 the queue (absent: read the queue itself)
``cityops:alerts:epoch``                 string  a random token set by the store's first
                                                 version bump (a new one after a flush)
=======================================  ======  ==============================================
"""

from __future__ import annotations

import itertools
import json
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
import redis

from models.catalog import DEVICE_TYPES
from models.config import Settings

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from models.alerts import AlertChange, AlertView

KEY_PREFIX = "cityops:"
UPDATES_CHANNEL = KEY_PREFIX + "updates"
#: Capped streams keep about this many entries (approximate trimming is much cheaper).
STREAM_MAXLEN = 5000
#: A device that sent nothing for this long is shown as offline.
OFFLINE_AFTER_S = 15 * 60
#: From this many devices on, LiveStore.devices() keeps the states between calls and reads
#: only the devices seen since (below it a full read takes a few ms and nothing is kept).
INCREMENTAL_FROM = 2_000
#: ... and reads every device anyway at least this often (registrations and meta changes
#: that do not move last-seen, removals).
FULL_READ_EVERY_S = 300.0
#: A batch's last-seen stamp may be this much older than the moment its write lands:
#: workers' clocks differ a little, and the stamp is taken just before the write. So a read
#: asks again for the stamps from this long before what it has already settled (the newest
#: stamp read, or the previous read's own time, whichever is later).
LAST_SEEN_SLACK_S = 2.0
LAST_SEEN_KEY = KEY_PREFIX + "devices:last_seen"
#: The types a device can register with (ingest refuses others): one set of ids each.
REGISTRY_TYPES = (*DEVICE_TYPES, "camera")
#: Hourly counters are kept this long: enough for "today" and "last 24 h" panels.
COUNTER_TTL_S = 2 * 24 * 3600

#: The duty officers' queue: ZRANGE gives the console order (most severe first, then
#: oldest first). Score = severity rank × ALERT_SCORE_STEP + opened_at in epoch ms; epoch
#: ms stays below 10¹³ until the year 2286 and the largest score (≈ 3.2 × 10¹³) is far
#: inside a double's exact integer range, so the order is exact.
ALERTS_OPEN_KEY = KEY_PREFIX + "alerts:open"
#: Unacknowledged critical/major alerts: consoles ring while this set is not empty, so an
#: acknowledgement anywhere silences every console at once.
ALERTS_AUDIBLE_KEY = KEY_PREFIX + "alerts:audible"
ALERT_SCORE_STEP = 10**13
#: Changes with every write to the queue, the alert hashes or the audible set, in the same
#: MULTI: a web process keeps what it read and reads again only when this moved, so a
#: refresh with an unchanged queue costs one round trip instead of a hash per alert.
ALERTS_VERSION_KEY = KEY_PREFIX + "alerts:version"
#: Tries of :meth:`LiveStore.rebuild_alerts` while alert changes keep moving the version.
REBUILD_ATTEMPTS = 10
#: Set (epoch ns) when the per-district queues were built from the whole queue (by
#: rebuild_alerts, or by the first scoped read of a store written before they existed);
#: while it is absent a scoped read walks the city queue. Also part of the cache token,
#: so a version counter that starts again after Redis lost everything is not mistaken for
#: the one read before.
ALERTS_INDEXED_KEY = KEY_PREFIX + "alerts:indexed_at"
#: Set once (a random token) by the first version bump of a store: a Redis that lost
#: everything starts its version counter again from 1, and the new token keeps that from
#: being taken for a version a web process read before.
ALERTS_EPOCH_KEY = KEY_PREFIX + "alerts:epoch"
#: An alert that left the queue keeps its hash this long, for pages showing "just closed".
ALERT_ENDED_TTL_S = 24 * 3600
#: Alerts a process keeps as read (:meth:`LiveStore._read_alerts`) before dropping those
#: that are not in the queue it is reading.
ALERT_ROWS_KEPT = 20_000

_embedded_lock = threading.Lock()
_embedded_server: Any = None
#: The wall clock the device reads settle stamps against (tests move it with the stamps).
_clock = time.time


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


def alert_key(alert_id: int | str) -> str:
    return f"{KEY_PREFIX}alert:{alert_id}"


def alerts_district_key(district_code: str) -> str:
    """One district's open queue: the members of ``cityops:alerts:open`` in that district."""
    return f"{ALERTS_OPEN_KEY}:{district_code}"


def alert_queue_score(severity: str, opened_at: datetime) -> float:
    """Position in ``cityops:alerts:open``: severity first, then age (see ALERT_SCORE_STEP)."""
    from models.alerts import SEVERITY_RANK

    rank = SEVERITY_RANK.get(severity, len(SEVERITY_RANK))
    return float(rank * ALERT_SCORE_STEP + int(opened_at.timestamp() * 1000))


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


@dataclass(frozen=True, slots=True)
class LiveAlert:
    """An alert as the console reads it from Redis."""

    id: int
    rule_id: str
    domain: str
    severity: str
    colour: str
    title: str
    message: str
    state: str
    district_code: str | None
    grid_id: str | None
    lon: float | None
    lat: float | None
    opened_at: datetime
    last_seen_at: datetime | None
    occurrences: int
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    assigned_to: str | None
    escalation_level: int
    sla_due: datetime | None
    cleared: bool
    audible: bool
    version: int

    @classmethod
    def from_hash(cls, row: Mapping[str, str]) -> LiveAlert:
        def opt(name: str) -> str | None:
            return row.get(name) or None

        def when(name: str) -> datetime | None:
            value = row.get(name)
            return _parse_ts(value) if value else None

        def number(name: str) -> float | None:
            value = row.get(name)
            return float(value) if value else None

        return cls(
            id=int(row["id"]),
            rule_id=row.get("rule_id", ""),
            domain=row.get("domain", ""),
            severity=row.get("severity", ""),
            colour=row.get("colour", ""),
            title=row.get("title", ""),
            message=row.get("message", ""),
            state=row.get("state", ""),
            district_code=opt("district_code"),
            grid_id=opt("grid_id"),
            lon=number("lon"),
            lat=number("lat"),
            opened_at=_parse_ts(row["opened_at"]),
            last_seen_at=when("last_seen_at"),
            occurrences=int(row.get("occurrences") or 1),
            acknowledged_by=opt("acknowledged_by"),
            acknowledged_at=when("acknowledged_at"),
            assigned_to=opt("assigned_to"),
            escalation_level=int(row.get("escalation_level") or 0),
            sla_due=when("sla_due"),
            cleared=row.get("cleared") == "1",
            audible=row.get("audible") == "1",
            version=int(row.get("version") or 0),
        )


def alert_hash(alert: AlertView) -> dict[str, str]:
    """The public fields of an alert as a Redis hash (no evidence: that stays in the database)."""
    fields = {
        "id": alert.id,
        "rule_id": alert.rule_id,
        "domain": alert.domain,
        "severity": alert.severity,
        "colour": alert.colour.value,
        "title": alert.title,
        "message": alert.message,
        "state": alert.state,
        "district_code": alert.district_code,
        "grid_id": alert.grid_id,
        "lon": alert.lon,
        "lat": alert.lat,
        "opened_at": alert.opened_at.isoformat(),
        "last_seen_at": alert.last_seen_at.isoformat() if alert.last_seen_at else None,
        "occurrences": alert.occurrences,
        "acknowledged_by": alert.acknowledged_by,
        "acknowledged_at": alert.acknowledged_at.isoformat() if alert.acknowledged_at else None,
        "assigned_to": alert.assigned_to,
        "escalation_level": alert.escalation_level,
        "sla_due": alert.sla_due.isoformat() if alert.sla_due else None,
        "cleared": "1" if alert.cleared_at else "0",
        "audible": "1" if alert.audible else "0",
        "version": alert.version,
    }
    return {k: _encode(v) for k, v in fields.items()}


@dataclass(slots=True)
class _AlertCache:
    """One process's reads of the alert queue, valid while the queue's token is unchanged."""

    token: tuple[str, str, str]
    #: (limit, district_code) → the queue as read
    queues: dict[tuple[int, str | None], list[LiveAlert]]
    audible: frozenset[int] | None = None


@dataclass(slots=True)
class _DeviceCache:
    """One process's copy of the device states, as of its last read (see LiveStore.devices)."""

    states: dict[str, DeviceState]
    order: list[str]
    #: last-seen of every device in the zset as read (devices without meta too)
    stamps: dict[str, float]
    #: newest last-seen stamp read
    watermark: float
    #: wall-clock time just before the last read was sent: a write landing after it carries
    #: a stamp of at least this less LAST_SEEN_SLACK_S (clocks in step, as pushes assume)
    settled: float
    seen: int
    registered: int
    #: monotonic time of the last full read
    read_at: float
    #: the states in device-id order, as last returned (None: rebuild from ``states``)
    listing: list[DeviceState] | None = None


def _device_state(device_id: str, row: Mapping[str, str], last_seen: float | None) -> DeviceState | None:
    """A device hash as a state; None for a device without its meta (no place on the map)."""
    if not row or "lon" not in row:
        return None
    return DeviceState(
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
        last_seen=last_seen,
    )


class LiveStore:
    """Reads and writes the live state; one instance per process is enough (thread-safe)."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._scripts = runs_scripts(client)
        self._readings_script = client.register_script(_RECORD_READINGS_LUA)
        self._devices_lock = threading.Lock()
        self._devices_cache: _DeviceCache | None = None
        self._alerts_lock = threading.Lock()
        self._alerts_cache: _AlertCache | None = None
        #: alert id → (its ``version`` as stored, the alert as read then)
        self._alert_rows: dict[str, tuple[str, LiveAlert]] = {}

    # ---- writes (ingest) -------------------------------------------------------------

    def register_device(self, device_id: str, fields: Mapping[str, Any]) -> None:
        self.register_devices([(device_id, fields)])

    def register_devices(self, devices: Iterable[tuple[str, Mapping[str, Any]]]) -> int:
        """Store devices' metadata (hash fields, the set of their type) in one round trip,
        however many: a batch of retained metas or a rebuild brings thousands at once."""
        registered = 0
        with self.redis.pipeline(transaction=False) as pipe:
            for device_id, fields in devices:
                pipe.hset(device_key(device_id), mapping={k: _encode(v) for k, v in fields.items()})
                if "type" in fields:
                    pipe.sadd(f"{KEY_PREFIX}devices:type:{fields['type']}", device_id)
                registered += 1
            if registered:
                pipe.execute()
        return registered

    def record_readings(self, readings: Iterable[Mapping[str, Any]], *, now: float | None = None) -> int:
        """Store a batch of latest readings: one script call on Redis.

        Each reading needs ``device_id``, ``ts`` (aware datetime) and ``metrics``; it may
        carry ``derived``, ``district_code`` and ``grid_id``. A reading older than the one
        already stored still updates last-seen but does not overwrite newer values, so
        out-of-order delivery never moves a device's state backwards.
        """
        readings = list(readings)
        if not readings:
            return 0
        stamp = time.time() if now is None else now
        # Per device, its readings in ts order (stable: of two with the same ts the later
        # one wins, as when applied one by one), as indices into ``entries``.
        entries: list[tuple[str, str, str]] = []
        by_device: dict[str, list[tuple[datetime, int]]] = {}
        hour_counts: dict[str, int] = {}
        for i, r in enumerate(readings):
            ts: datetime = r["ts"]
            if ts.utcoffset():
                # Stored ts strings are compared as text in the script: one offset for all.
                ts = ts.astimezone(UTC)
            device_id = r["device_id"]
            entries.append((device_id, ts.isoformat(), mapping_json(r["metrics"])))
            by_device.setdefault(device_id, []).append((ts, i))
            for field in ("all", r.get("district_code") or "outside"):
                hour_counts[field] = hour_counts.get(field, 0) + 1
        for order in by_device.values():
            if len(order) > 1:
                order.sort(key=lambda p: p[0])
        # Only the newest reading of a device that has ``derived`` can leave it in the
        # hash (a newer one without it keeps it; an older one is overwritten): encode that one.
        derived: dict[int, str] = {}
        for order in by_device.values():
            for _ts, i in reversed(order):
                if readings[i].get("derived") is not None:
                    derived[i] = orjson.dumps(readings[i]["derived"]).decode()
                    break
        hour = counter_key("observations", datetime.fromtimestamp(stamp, UTC))
        note = json.dumps({"kind": "observations", "n": len(readings)})
        if self._scripts:
            self._record_readings_script(entries, by_device, derived, stamp, hour, hour_counts, note)
            return len(readings)
        # The embedded store: the stored ts read first, then the same writes as a pipeline.
        device_ids = list(by_device)
        with self.redis.pipeline(transaction=False) as pipe:
            for device_id in device_ids:
                pipe.hget(device_key(device_id), "ts")
            stored = dict(zip(device_ids, pipe.execute(), strict=True))
        with self.redis.pipeline(transaction=False) as pipe:
            for device_id, iso, metrics_json in entries:
                pipe.xadd(
                    stream_key("observations"),
                    {"device_id": device_id, "ts": iso, "metrics": metrics_json},
                    maxlen=STREAM_MAXLEN,
                    approximate=True,
                )
            for device_id, order in by_device.items():
                mapping = _newest_state(
                    stored[device_id], [(i, entries[i], derived.get(i)) for _ts, i in order]
                )
                if mapping:
                    pipe.hset(device_key(device_id), mapping=mapping)
            # Every reading stamps last-seen with the same time: one ZADD for the batch.
            pipe.zadd(f"{KEY_PREFIX}devices:last_seen", dict.fromkeys(device_ids, stamp))
            for field, n in hour_counts.items():
                pipe.hincrby(hour, field, n)
            pipe.expire(hour, COUNTER_TTL_S)
            pipe.publish(UPDATES_CHANNEL, note)
            pipe.execute()
        return len(readings)

    def _record_readings_script(
        self,
        entries: list[tuple[str, str, str]],
        by_device: dict[str, list[tuple[datetime, int]]],
        derived: dict[int, str],
        stamp: float,
        hour: str,
        hour_counts: dict[str, int],
        note: str,
    ) -> None:
        """The writes of :meth:`record_readings` as one script call: one JSON argument.

        The same commands as the pipeline, but run by Redis itself: the client encodes one
        string instead of a command per reading, which was most of the live write's cost.
        The script also reads each device's stored ts and leaves out readings older than
        it, so no round trip is needed before the write.
        """
        batch = {
            "stream": stream_key("observations"),
            "maxlen": str(STREAM_MAXLEN),
            "entries": entries,
            # per device: its key, then (1-based entry index, derived JSON or "") in ts order
            "states": [
                [
                    device_key(d),
                    *itertools.chain.from_iterable((i + 1, derived.get(i, "")) for _ts, i in order),
                ]
                for d, order in by_device.items()
            ],
            "seen_key": f"{KEY_PREFIX}devices:last_seen",
            "seen": [[repr(stamp), d] for d in by_device],
            "hour": hour,
            "counts": [[field, n] for field, n in hour_counts.items()],
            "ttl": str(COUNTER_TTL_S),
            "channel": UPDATES_CHANNEL,
            "note": note,
        }
        # orjson: encoding this argument was the largest part of the live write's CPU.
        self._readings_script(args=[orjson.dumps(batch)])

    def record_events(
        self,
        stream: str,
        rows: Iterable[Mapping[str, Any]],
        *,
        now: float | None = None,
        seen_by: str | None = None,
    ) -> int:
        """Append events (video events, tickets …) to a capped stream and count them per hour.

        ``seen_by`` names the field holding the device that sent each event (``camera_id``):
        its last-seen is stamped as a reading's is, so a camera reporting events counts as
        online. Cameras send no readings; without this they were never online.
        """
        rows = list(rows)
        if not rows:
            return 0
        stamp = time.time() if now is None else now
        hour = counter_key(stream, datetime.fromtimestamp(stamp, UTC))
        per_district: dict[str, int] = {}
        with self.redis.pipeline(transaction=False) as pipe:
            for r in rows:
                fields = {k: _encode(v) for k, v in r.items() if k != "geom" and v is not None}
                pipe.xadd(stream_key(stream), fields, maxlen=STREAM_MAXLEN, approximate=True)
                for field in ("all", r.get("district_code") or "outside"):
                    per_district[field] = per_district.get(field, 0) + 1
            senders = {str(r[seen_by]) for r in rows if r.get(seen_by)} if seen_by else set()
            if senders:
                pipe.zadd(LAST_SEEN_KEY, dict.fromkeys(senders, stamp))
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

    def devices(self, district_code: str | None = None) -> list[DeviceState]:
        """Every known device with its latest state, ordered by device id (those of one
        district with ``district_code``).

        A city-sized registry (:data:`INCREMENTAL_FROM` devices or more) stays in this
        process between calls, and a call reads again only the devices whose last-seen
        moved since the previous one: parsing 10,000 device hashes takes the client 1–2 s,
        the few hundred that reported in a second a few ms. A full read every
        :data:`FULL_READ_EVERY_S`, and whenever the number of registered or of seen
        devices changed, picks up what last-seen does not show: registrations, meta
        changes, removals, a flushed store.
        """
        states = self._all_devices()
        if district_code is None:
            return states
        # The registry has no per-district index: the cached city-wide read is filtered.
        return [s for s in states if s.district_code == district_code]

    def _all_devices(self) -> list[DeviceState]:
        with self._devices_lock:
            cache = self._devices_cache
            if (
                cache is not None
                and len(cache.states) >= INCREMENTAL_FROM
                and time.monotonic() - cache.read_at < FULL_READ_EVERY_S
            ):
                states = self._devices_since(cache)
                if states is not None:
                    return states
            return self._devices_full()

    def _registry_counts(self, pipe: redis.client.Pipeline) -> None:
        pipe.zcard(LAST_SEEN_KEY)
        for dtype in REGISTRY_TYPES:
            pipe.scard(f"{KEY_PREFIX}devices:type:{dtype}")

    def _devices_full(self) -> list[DeviceState]:
        # Counted before the read: a device registered meanwhile makes the next call read fully.
        settled = _clock()
        with self.redis.pipeline(transaction=False) as pipe:
            self._registry_counts(pipe)
            counts = pipe.execute()
        last_seen = dict(self.redis.zrange(LAST_SEEN_KEY, 0, -1, withscores=True))
        keys = [k for k in self.redis.scan_iter(match=f"{KEY_PREFIX}device:*", count=1000)]
        with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hgetall(key)
            rows = pipe.execute()
        states: dict[str, DeviceState] = {}
        prefix = len(device_key(""))
        for key, row in zip(keys, rows, strict=True):
            device_id = key[prefix:]
            state = _device_state(device_id, row, last_seen.get(device_id))
            if state is not None:
                states[device_id] = state
        cache = self._devices_cache = _DeviceCache(
            states=states,
            order=sorted(states),
            stamps=last_seen,
            watermark=max(last_seen.values(), default=0.0),
            settled=settled,
            seen=counts[0],
            registered=sum(counts[1:]),
            read_at=time.monotonic(),
        )
        return self._listing(cache)

    def _devices_since(self, cache: _DeviceCache) -> list[DeviceState] | None:
        """The cached states with the devices seen since the last read read again; None when
        the registry changed and a full read is needed.

        Asks for the stamps from ``max(watermark, settled) - LAST_SEEN_SLACK_S`` on: with
        the readings of a whole city stamped within a couple of seconds (a burst, then
        quiet), asking from the newest stamp alone re-sent every device on every call. The
        stretch between ``watermark - LAST_SEEN_SLACK_S`` and that floor, which only a
        write landing later than the slack allows could still change, is checked by its
        count (ZCOUNT, in the same MULTI) and read again as before when the count is not
        the cached one. A web host whose clock runs ahead of the workers' by more than the
        slack thus costs time rather than updates, with one exception: a device re-stamped
        within that stretch while none entered it shows at the next read that finds the
        stretch changed, or at the next full read.
        """
        gap_from = cache.watermark - LAST_SEEN_SLACK_S
        floor = max(cache.watermark, cache.settled) - LAST_SEEN_SLACK_S
        settled = _clock()
        with self.redis.pipeline(transaction=True) as pipe:
            self._registry_counts(pipe)
            pipe.zcount(LAST_SEEN_KEY, gap_from, f"({floor!r}")
            pipe.zrangebyscore(LAST_SEEN_KEY, floor, "+inf", withscores=True)
            *counts, in_gap, moved_pairs = pipe.execute()
        if counts[0] != cache.seen or sum(counts[1:]) != cache.registered:
            return None
        changed = self._apply_moved(cache, moved_pairs)
        if floor > gap_from:
            known = sum(1 for stamp in cache.stamps.values() if gap_from <= stamp < floor)
            if in_gap != known:
                late = self.redis.zrangebyscore(LAST_SEEN_KEY, gap_from, f"({floor!r}", withscores=True)
                changed = self._apply_moved(cache, late) or changed
        cache.settled = max(cache.settled, settled)
        if changed:
            cache.listing = None
        return self._listing(cache)

    def _apply_moved(self, cache: _DeviceCache, pairs: list[tuple[str, float]]) -> bool:
        """Read again the devices of ``pairs`` (id, last-seen) whose stamp is not the one
        read before; True when any was."""
        # Devices seen again with the stamp already read are not re-read.
        moved = {device_id: stamp for device_id, stamp in pairs if cache.stamps.get(device_id) != stamp}
        if not moved:
            return False
        ids = list(moved)
        with self.redis.pipeline(transaction=False) as pipe:
            for device_id in ids:
                pipe.hgetall(device_key(device_id))
            rows = pipe.execute()
        for device_id, row in zip(ids, rows, strict=True):
            cache.stamps[device_id] = moved[device_id]
            state = _device_state(device_id, row, moved[device_id])
            if state is None:
                cache.states.pop(device_id, None)
            else:
                cache.states[device_id] = state
        cache.watermark = max(cache.watermark, *moved.values())
        return True

    @staticmethod
    def _listing(cache: _DeviceCache) -> list[DeviceState]:
        """The cached states in device-id order; a new list each call (callers may change it)."""
        if cache.listing is None:
            cache.listing = [cache.states[i] for i in cache.order if i in cache.states]
        return list(cache.listing)

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

    # ---- alerts --------------------------------------------------------------------------

    def apply_alert_changes(self, changes: Iterable[AlertChange]) -> int:
        """Bring the alert queue, hashes and audible set up to date; returns changes applied.

        Call after the database transaction that made the changes has committed. Workers
        may push changes of one alert out of order, so a change whose ``version`` is not
        newer than the stored one is dropped (WATCH makes check-and-write atomic). Each
        applied change is published on ``cityops:updates`` (kind ``alert``) and appended to
        ``cityops:stream:alerts``.
        """
        latest: dict[int, AlertChange] = {}
        for change in changes:
            held = latest.get(change.alert.id)
            if held is None or change.alert.version >= held.alert.version:
                latest[change.alert.id] = change
        if not latest:
            return 0
        ordered = sorted(latest.values(), key=lambda c: c.alert.id)
        keys = [alert_key(c.alert.id) for c in ordered]

        def write(pipe: redis.client.Pipeline) -> int:
            # Immediate mode after WATCH: these reads see the current values.
            stored = [pipe.hmget(key, "version", "district_code") for key in keys]
            fresh = [
                (c, district or None)
                for c, (v, district) in zip(ordered, stored, strict=True)
                if v is None or int(v) < c.alert.version
            ]
            pipe.multi()
            if fresh:
                _bump_alerts_version(pipe)
            for change, district in fresh:
                self._queue_alert(pipe, change.alert, district)
                note = _alert_note(change)
                pipe.xadd(stream_key("alerts"), note, maxlen=STREAM_MAXLEN, approximate=True)
                pipe.publish(UPDATES_CHANNEL, json.dumps({"kind": "alert", **note}, ensure_ascii=False))
            return len(fresh)

        return self.redis.transaction(write, *keys, value_from_callable=True)

    def _queue_alert(
        self, pipe: redis.client.Pipeline, alert: AlertView, stored_district: str | None = None
    ) -> None:
        """The writes of one alert's change (inside the caller's MULTI, which also bumps
        ``cityops:alerts:version``); ``stored_district`` is the district its hash held."""
        key = alert_key(alert.id)
        member = str(alert.id)
        pipe.hset(key, mapping=alert_hash(alert))
        if stored_district and stored_district != alert.district_code:
            pipe.zrem(alerts_district_key(stored_district), member)
        if alert.in_queue:
            pipe.persist(key)
            score = alert_queue_score(alert.severity, alert.opened_at)
            pipe.zadd(ALERTS_OPEN_KEY, {member: score})
            if alert.district_code:
                pipe.zadd(alerts_district_key(alert.district_code), {member: score})
        else:
            pipe.zrem(ALERTS_OPEN_KEY, member)
            if alert.district_code:
                pipe.zrem(alerts_district_key(alert.district_code), member)
            pipe.expire(key, ALERT_ENDED_TTL_S)
        if alert.audible:
            pipe.sadd(ALERTS_AUDIBLE_KEY, str(alert.id))
        else:
            pipe.srem(ALERTS_AUDIBLE_KEY, str(alert.id))

    def open_alerts(self, limit: int = 200, district_code: str | None = None) -> list[LiveAlert]:
        """The console queue: most severe first, then oldest first; with ``district_code``
        the first ``limit`` alerts of that district.

        A process keeps what it read per (limit, district) and answers again from it while
        the queue's token (``cityops:alerts:version``, ``cityops:alerts:epoch`` and
        ``cityops:alerts:indexed_at``, written in the MULTI of every write) is unchanged:
        one MGET instead of a hash per alert. The token is read before the queue, so a
        write landing in between only makes the next call read again.
        """
        size = max(limit, 1)
        token = self._alerts_token()
        if token is not None:
            with self._alerts_lock:
                cache = self._alerts_cache
                if cache is not None and cache.token == token:
                    kept = cache.queues.get((size, district_code))
                    if kept is not None:
                        return list(kept)
        if district_code is None:
            found = self._read_alerts(self.redis.zrange(ALERTS_OPEN_KEY, 0, size - 1))
        elif token is not None and token[2]:  # the per-district queues are built
            found = self._read_alerts(self.redis.zrange(alerts_district_key(district_code), 0, size - 1))
        else:
            found = self._open_alerts_walk(size, district_code)
            if token is not None:
                self._index_alerts_by_district()
        if token is not None:
            with self._alerts_lock:
                cache = self._alerts_cache_for(token)
                cache.queues[(size, district_code)] = found
        return list(found)

    def alerts_token(self) -> tuple[str, str, str] | None:
        """A token that changes with every change of the open alerts (raised, acknowledged,
        resolved, rebuilt); None while the store has none yet."""
        return self._alerts_token()

    def _alerts_token(self) -> tuple[str, str, str] | None:
        """What the cached queue reads are valid for; None while the store has no version
        yet (written before it existed, or just flushed): nothing is kept then."""
        version, epoch, indexed = self.redis.mget(ALERTS_VERSION_KEY, ALERTS_EPOCH_KEY, ALERTS_INDEXED_KEY)
        return None if version is None or epoch is None else (version, epoch, indexed or "")

    def _alerts_cache_for(self, token: tuple[str, str, str]) -> _AlertCache:
        """The cache of ``token``, emptied first if it held another one (call under the lock)."""
        if self._alerts_cache is None or self._alerts_cache.token != token:
            self._alerts_cache = _AlertCache(token, {})
        return self._alerts_cache

    def _read_alerts(self, ids: list[str]) -> list[LiveAlert]:
        """The alerts of ``ids`` that still exist, in that order.

        Every change of an alert raises its ``version`` (compare-and-set in the database,
        checked again when the hash is written), so an alert read before at the same
        version is taken from :attr:`_alert_rows`: a queue of a thousand alerts in which one
        changed is a thousand one-field reads and one whole hash, not a thousand hashes."""
        with self.redis.pipeline(transaction=False) as pipe:
            for alert_id in ids:
                pipe.hget(alert_key(alert_id), "version")
            versions = pipe.execute()
        current: dict[str, LiveAlert] = {}
        stale: list[str] = []
        with self._alerts_lock:
            kept = self._alert_rows
            for alert_id, version in zip(ids, versions, strict=True):
                row = kept.get(alert_id)
                if version is not None and row is not None and row[0] == version:
                    current[alert_id] = row[1]
                else:  # new, changed, or a hash without a version: read whole
                    stale.append(alert_id)
        fresh: dict[str, tuple[str, LiveAlert]] = {}
        if stale:
            with self.redis.pipeline(transaction=False) as pipe:
                for alert_id in stale:
                    pipe.hgetall(alert_key(alert_id))
                for alert_id, row in zip(stale, pipe.execute(), strict=True):
                    if row:  # an empty reply: the hash expired, the alert left the queue
                        fresh[alert_id] = (row.get("version", ""), LiveAlert.from_hash(row))
                        current[alert_id] = fresh[alert_id][1]
        found = [current[a] for a in ids if a in current]
        with self._alerts_lock:
            kept.update(fresh)
            if len(kept) > ALERT_ROWS_KEPT:  # alerts that left every queue read since
                wanted = set(ids)
                self._alert_rows = {a: row for a, row in kept.items() if a in wanted}
        return found

    def _open_alerts_walk(self, size: int, district_code: str) -> list[LiveAlert]:
        """A district's first ``size`` alerts without the per-district queues: the city
        queue read in slices of ``size`` until enough are found."""
        found: list[LiveAlert] = []
        start = 0
        while len(found) < size:
            ids = self.redis.zrange(ALERTS_OPEN_KEY, start, start + size - 1)
            if not ids:
                break
            found.extend(a for a in self._read_alerts(ids) if a.district_code == district_code)
            if len(ids) < size:
                break
            start += size
        return found[:size]

    def _index_alerts_by_district(self) -> None:
        """Build the per-district queues from the city queue, for a store whose queue was
        written before they existed (new writes keep them up to date from then on).

        WATCHes the queue and the version, which every write changes, so a write landing
        meanwhile makes this give up; the next scoped read tries again."""
        try:
            with self.redis.pipeline(transaction=True) as pipe:
                pipe.watch(ALERTS_OPEN_KEY, ALERTS_VERSION_KEY)
                pairs = pipe.zrange(ALERTS_OPEN_KEY, 0, -1, withscores=True)
                districts = [pipe.hget(alert_key(alert_id), "district_code") for alert_id, _ in pairs]
                stale = list(pipe.scan_iter(match=alerts_district_key("*"), count=1000))
                pipe.multi()
                if stale:
                    pipe.delete(*stale)
                for (alert_id, score), district in zip(pairs, districts, strict=True):
                    if district:
                        pipe.zadd(alerts_district_key(district), {alert_id: score})
                pipe.set(ALERTS_INDEXED_KEY, str(time.time_ns()))
                pipe.execute()
        except redis.WatchError:
            pass

    def alert(self, alert_id: int) -> LiveAlert | None:
        row = self.redis.hgetall(alert_key(alert_id))
        return LiveAlert.from_hash(row) if row else None

    def audible_alerts(self) -> set[int]:
        """Ids of the alerts that make the consoles ring (kept like :meth:`open_alerts`)."""
        token = self._alerts_token()
        if token is not None:
            with self._alerts_lock:
                cache = self._alerts_cache
                if cache is not None and cache.token == token and cache.audible is not None:
                    return set(cache.audible)
        audible = frozenset(int(v) for v in self.redis.smembers(ALERTS_AUDIBLE_KEY))
        if token is not None:
            with self._alerts_lock:
                self._alerts_cache_for(token).audible = audible
        return set(audible)

    def rebuild_alerts(self, conn: Connection) -> int:
        """Reload the queue, hashes and audible set from the database (after Redis lost them).

        One MULTI, so a console never sees a half-built queue; the per-district queues are
        built with it and the version moves. Returns the alerts loaded.

        Other processes go on writing alert changes meanwhile (another worker's rules, a
        duty officer's acknowledgement), each after its database commit and each moving the
        version. A change written between this read of the database and the MULTI would be
        overwritten by the older state read here, so the version is WATCHed from before the
        read, and the rebuild reads again when it moved. After :data:`REBUILD_ATTEMPTS`
        tries under a storm of changes it writes what it read anyway: an alert shown a
        change behind is put right by its next change, while an empty queue would stay empty.
        """
        from models.alerts import OPEN_STATES, open_alerts

        # A read inside a transaction this call began sees one snapshot (SQLite): end it
        # before reading again, or every try would read the same old rows.
        own_snapshot = not conn.in_transaction()
        attempt = 1
        while True:
            with self.redis.pipeline(transaction=True) as pipe:
                watched = attempt < REBUILD_ATTEMPTS  # the last try cannot fail
                if watched:
                    pipe.watch(ALERTS_VERSION_KEY)
                alerts = open_alerts(conn, states=OPEN_STATES, limit=100_000)
                districts = list(self.redis.scan_iter(match=alerts_district_key("*"), count=1000))
                if watched:
                    pipe.multi()
                pipe.delete(ALERTS_OPEN_KEY, ALERTS_AUDIBLE_KEY, *districts)
                _bump_alerts_version(pipe)
                for alert in alerts:
                    self._queue_alert(pipe, alert)
                pipe.set(ALERTS_INDEXED_KEY, str(time.time_ns()))
                pipe.publish(
                    UPDATES_CHANNEL, json.dumps({"kind": "alert", "action": "rebuild", "n": len(alerts)})
                )
                try:
                    pipe.execute()
                    return len(alerts)
                except redis.WatchError:
                    if own_snapshot and conn.in_transaction():
                        conn.rollback()
                    attempt += 1


def _bump_alerts_version(pipe: Any) -> None:
    """In a write's MULTI: the queue changed (and the store has its epoch token)."""
    pipe.incr(ALERTS_VERSION_KEY)
    pipe.set(ALERTS_EPOCH_KEY, secrets.token_hex(8), nx=True)


def _alert_note(change: AlertChange) -> dict[str, Any]:
    alert = change.alert
    return {
        "id": alert.id,
        "action": change.action,
        "state": alert.state,
        "from_state": change.from_state or "",
        "severity": alert.severity,
        "audible": int(alert.audible),
        "in_queue": int(alert.in_queue),
        "version": alert.version,
        "actor": change.actor,
        "at": change.at.isoformat(),
        "title": alert.title,
        "district_code": alert.district_code or "",
    }


#: record_readings' writes for a real Redis (see LiveStore._record_readings_script). Keys
#: are built by the caller and passed inside the argument: this is a single-instance store.
_RECORD_READINGS_LUA = """
local b = cjson.decode(ARGV[1])
for _, e in ipairs(b.entries) do
  redis.call('XADD', b.stream, 'MAXLEN', '~', b.maxlen, '*', 'device_id', e[1], 'ts', e[2], 'metrics', e[3])
end
-- A device's readings in ts order; those older than the stored ts are left out. ts strings
-- are ISO-8601 in UTC, so comparing them as text compares the times.
for _, s in ipairs(b.states) do
  local stored = redis.call('HGET', s[1], 'ts')
  local ts, metrics, derived = nil, nil, nil
  for j = 2, #s, 2 do
    local e = b.entries[s[j]]
    if (not stored) or stored <= e[2] then
      ts, metrics = e[2], e[3]
      if s[j + 1] ~= '' then derived = s[j + 1] end
    end
  end
  if ts then
    if derived then
      redis.call('HSET', s[1], 'ts', ts, 'metrics', metrics, 'derived', derived)
    else
      redis.call('HSET', s[1], 'ts', ts, 'metrics', metrics)
    end
  end
end
for _, s in ipairs(b.seen) do
  redis.call('ZADD', b.seen_key, s[1], s[2])
end
for _, c in ipairs(b.counts) do
  redis.call('HINCRBY', b.hour, c[1], c[2])
end
redis.call('EXPIRE', b.hour, b.ttl)
redis.call('PUBLISH', b.channel, b.note)
return #b.entries
"""


def runs_scripts(client: redis.Redis) -> bool:
    """Whether ``client`` runs Lua scripts. A real Redis does, and writes that would be a
    command per reading go to it as one script call; the embedded store (fakeredis without
    a Lua runtime) gets the same commands as a pipeline."""
    return not type(client).__module__.startswith("fakeredis")


def mapping_json(value: Mapping[str, Any]) -> str:
    """Compact UTF-8 JSON (no ASCII escapes), as every reading's metrics are kept."""
    return orjson.dumps(value).decode()


def _encode(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    if value is None:
        return ""
    return str(value)


def _newest_state(
    stored_ts: str | None, ordered: list[tuple[int, tuple[str, str, str], str | None]]
) -> dict[str, str]:
    """A device's hash fields after its readings (in ts order) not older than the stored ts."""
    mapping: dict[str, str] = {}
    stored = None if stored_ts is None else _parse_ts(stored_ts)
    for _i, (_device_id, iso, metrics_json), derived in ordered:
        if stored is None or stored <= _parse_ts(iso):
            mapping["ts"], mapping["metrics"] = iso, metrics_json
            if derived is not None:
                mapping["derived"] = derived
    return mapping


def _parse_ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


def publish_incident_note(live: LiveStore, note: Mapping[str, Any]) -> None:
    """Tell every open page that an incident changed: one note of kind ``incident`` on
    ``cityops:updates`` (``models.incidents.announce`` builds it). Call after the
    transaction that made the change has committed, as for alerts."""
    payload = {**note, "kind": "incident"}
    live.redis.publish(UPDATES_CHANNEL, json.dumps(payload, ensure_ascii=False, default=str))


# ---- rebuilding the live state from the database ------------------------------------------


@dataclass(frozen=True, slots=True)
class LiveRebuild:
    """What :func:`rebuild_live_state` loaded back into Redis."""

    devices: int
    readings: int
    alerts: int
    open_tickets: int
    seconds: float


#: The ticket fields ingest appends to ``cityops:stream:tickets`` (no caller: personal data).
_TICKET_STREAM_FIELDS = (
    "ticket_id", "ts", "channel", "category", "title", "content", "address", "lon", "lat",
    "urgency", "state", "created_at", "updated_at", "district_code", "grid_id",
)  # fmt: skip


#: Set by :func:`rebuild_live_state`; its absence means Redis lost the live state (a
#: restart without persistence, a flush, a new instance) and it should be rebuilt.
LIVE_MARK_KEY = KEY_PREFIX + "live:rebuilt_at"


def live_state_lost(live: LiveStore) -> bool:
    """True when the live state was never built here or Redis has lost it since."""
    return not live.redis.exists(LIVE_MARK_KEY)


def rebuild_live_state(live: LiveStore, conn: Connection) -> LiveRebuild:
    """Reload what Redis lost (a restart without persistence, a flush, a new instance) from
    the database: every device with its latest reading (and the indices derived from it),
    the alert queue, and the open 12345 work orders on the tickets stream.

    Idempotent: a device's reading is written only where Redis holds none or an older one,
    so running it while ingest writes never moves a device backwards. Hourly counters and
    the recent readings/video streams are not rebuilt; they fill again as data arrives, and
    a camera (which sends events, not readings) is online again with its next event.
    """
    import sqlalchemy as sa

    from models import schema
    from models.standards.derive import derive
    from models.tickets import OPEN_STATES

    started = time.perf_counter()
    # The reads below begin a transaction if the caller had none; ending it before the
    # alerts lets their rebuild read again what changed meanwhile (SQLite reads a snapshot
    # for as long as a transaction lasts). A caller's own transaction is left alone.
    began_here = not conn.in_transaction()
    d = schema.Device.__table__
    devices = conn.execute(
        sa.select(
            d.c.device_id, d.c.type, d.c.name, d.c.lon, d.c.lat, d.c.district_code, d.c.grid_id, d.c.props
        )
    ).all()
    live.register_devices(
        (row.device_id, {"type": row.type, "name": row.name, "lon": row.lon, "lat": row.lat,
                         "district_code": row.district_code, "grid_id": row.grid_id})
        for row in devices
    )  # fmt: skip

    o = schema.Observation.__table__
    newest = sa.select(o.c.device_id, sa.func.max(o.c.ts).label("ts")).group_by(o.c.device_id).subquery()
    latest = conn.execute(
        sa.select(o.c.device_id, o.c.ts, o.c.metrics, o.c.received_at).join(
            newest, sa.and_(o.c.device_id == newest.c.device_id, o.c.ts == newest.c.ts)
        )
    ).all()
    kinds = {row.device_id: (row.type, row.props or {}) for row in devices}
    readings = 0
    # What Redis holds now, read for all devices in one round trip: ingest may have written
    # newer readings since the database was read.
    with live.redis.pipeline(transaction=False) as pipe:
        for row in latest:
            pipe.hget(device_key(row.device_id), "ts")
        held = pipe.execute() if latest else []
    with live.redis.pipeline(transaction=False) as pipe:
        for row, stored in zip(latest, held, strict=True):
            ts = row.ts.astimezone(UTC)
            mapping = {"ts": ts.isoformat(), "metrics": mapping_json(row.metrics)}
            if row.device_id in kinds:
                device_type, props = kinds[row.device_id]
                mapping["derived"] = json.dumps(
                    derive(device_type, props, row.metrics, ts), ensure_ascii=False
                )
            if stored is not None and _parse_ts(stored) > ts:
                continue  # ingest wrote a newer reading meanwhile
            pipe.hset(device_key(row.device_id), mapping=mapping)
            # Last seen = when the newest reading arrived, so "offline" stays truthful.
            pipe.zadd(f"{KEY_PREFIX}devices:last_seen", {row.device_id: row.received_at.timestamp()}, nx=True)
            readings += 1
        pipe.execute()

    if began_here and conn.in_transaction():
        conn.rollback()
    alerts = live.rebuild_alerts(conn)

    t = schema.HotlineTicket.__table__
    tickets = (
        conn.execute(
            sa.select(*(t.c[name] for name in _TICKET_STREAM_FIELDS))
            .where(t.c.state.in_(sorted(OPEN_STATES)))
            .order_by(t.c.created_at.desc())
            .limit(STREAM_MAXLEN)
        )
        .mappings()
        .all()
    )
    if tickets:
        with live.redis.pipeline(transaction=False) as pipe:
            pipe.delete(stream_key("tickets"))
            for row in reversed(tickets):  # oldest first, as ingest appended them
                fields = {k: _encode(v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}
                pipe.xadd(stream_key("tickets"), {k: v for k, v in fields.items() if v != ""})
            pipe.publish(
                UPDATES_CHANNEL, json.dumps({"kind": "tickets", "action": "rebuild", "n": len(tickets)})
            )
            pipe.execute()
    live.redis.set(LIVE_MARK_KEY, datetime.now(UTC).isoformat())
    return LiveRebuild(len(devices), readings, alerts, len(tickets), time.perf_counter() - started)
