"""The ingest pipeline for one batch: validate → locate → de-duplicate → write.

Transport-agnostic: it takes :class:`Inbound` messages (topic, payload, receive time)
and returns which were stored, duplicated or rejected. The MQTT worker acknowledges a
batch only after :meth:`IngestPipeline.process` returned, i.e. after the database
transaction committed — so a crash anywhere before means redelivery, never loss.

Every rejected message becomes a row in ``dead_letters`` (same transaction) and an entry
in a capped Redis stream, with the reason; one bad message never holds up the others.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import orjson
import sqlalchemy as sa
from pydantic import BaseModel, ValidationError
from shapely.geometry import Point

from geo.crs import gcj02_to_wgs84
from geo.locate import locate
from ingest.routing import Kind, Route, TopicRouter
from ingest.schemas import (
    CheckedObservation,
    DeviceMeta,
    HotlineTicket,
    Observation,
    SensorThingsObservation,
    TicketLifecycleEvent,
    VideoEvent,
    fast_observation,
)
from ingest.sensorthings import DatastreamMap
from models import schema, tickets
from models.catalog import DEVICE_TYPES
from models.clock import Clock, utc_now
from models.db import (
    dialect_insert,
    hourly_deltas,
    insert_new,
    record_observations,
    upsert_hourly,
    warm_observations,
)
from models.live import LiveStore
from models.standards.derive import derive

log = logging.getLogger(__name__)

#: Larger payloads are refused before parsing: a sensor reading is a few hundred bytes,
#: a 12345 ticket a few KB; anything near this is a fault or an attack.
MAX_PAYLOAD_BYTES = 64 * 1024
#: How much of a rejected payload is kept in ``dead_letters`` for diagnosis.
DEAD_LETTER_KEEP_BYTES = 4096
#: Device clocks drift; beyond these bounds (defaults of CITYOPS_INGEST_MAX_FUTURE_S and
#: CITYOPS_INGEST_MAX_AGE_S) a timestamp is treated as wrong, not late.
MAX_FUTURE = timedelta(minutes=5)
MAX_PAST = timedelta(days=7)
#: Ticket fields that never leave the database (shown masked, if at all).
PERSONAL_FIELDS = frozenset({"caller_name", "caller_phone"})
#: ``dead_letters.topic`` is VARCHAR(256); a longer topic is cut to fit.
DEAD_LETTER_TOPIC_CHARS = 256
#: The database refused the data itself (a value too long, a constraint): the same batch
#: would fail again on every retry, so it is split until the message at fault is found.
#: Anything else (connection lost, database down) is retried whole: nothing is wrong with
#: the messages then.
DATA_REFUSED = (sa.exc.DataError, sa.exc.IntegrityError)
#: Stored readings read (and locked) per statement when SensorThings metrics join them.
MERGE_CHUNK = 500


@dataclass(frozen=True, slots=True)
class Inbound:
    """One message as the transport delivered it."""

    topic: str
    payload: bytes
    received_at: datetime


@dataclass(frozen=True, slots=True)
class Rejection:
    topic: str
    reason: str
    detail: str
    payload: bytes
    received_at: datetime


@dataclass(slots=True)
class BatchResult:
    stored: Counter[str] = field(default_factory=Counter)
    duplicates: Counter[str] = field(default_factory=Counter)
    rejected: list[Rejection] = field(default_factory=list)
    #: rejections counted by reason without the messages (reported by a processing process)
    rejected_counts: Counter[str] = field(default_factory=Counter)

    @property
    def rejected_by_reason(self) -> Counter[str]:
        by_reason = Counter(r.reason for r in self.rejected)
        by_reason.update(self.rejected_counts)
        return by_reason


@dataclass(frozen=True, slots=True)
class StoredBatch:
    """What one committed batch produced: counts, new device registrations, new rows by table."""

    result: BatchResult
    devices: list[dict[str, Any]]
    accepted: dict[str, list[dict[str, Any]]]


@dataclass(slots=True)
class PreparedBatch:
    """A batch parsed, and its readings of devices already known checked, located and
    derived, before its transaction (:meth:`IngestPipeline.prepare`): what is left for
    :meth:`IngestPipeline.store_prepared` is mostly the database's work."""

    messages: Sequence[Inbound]
    #: rejections so far (parsing, the prepared readings); copied by each store attempt
    result: BatchResult
    #: parsed messages by kind; readings only of devices unknown when prepared
    parsed: dict[Kind, list[tuple[Inbound, Route, Any]]]
    #: rows of the readings of known devices
    observation_rows: list[dict[str, Any]]
    now: datetime


class Rejected(Exception):
    """A message cannot be accepted; ``reason`` is a short machine-readable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    device_id: str
    type: str
    lon: float
    lat: float
    district_code: str | None
    grid_id: str | None
    #: type-specific settings from the meta message (noise zone, water body, warning levels …)
    props: Mapping[str, Any]


#: Device ids looked up per query when a batch names devices this worker does not know yet.
DEVICE_LOOKUP_CHUNK = 1000

#: Called with each committed batch's accepted records; the rules engine plugs in here.
BatchHook = Callable[[dict[str, list[dict[str, Any]]]], None]


class IngestPipeline:
    def __init__(
        self,
        engine: sa.Engine,
        live: LiveStore,
        *,
        prefix: str = "cityops/v1",
        clock: Clock = utc_now,
        hooks: Iterable[BatchHook] = (),
        city_bounds: tuple[float, float, float, float] | None = None,
        max_future: timedelta = MAX_FUTURE,
        max_age: timedelta = MAX_PAST,
        datastreams: DatastreamMap | None = None,
    ) -> None:
        from geo.boundaries import city_bounds as _city_bounds

        self.engine = engine
        self.live = live
        #: OGC SensorThings datastream → device and metric (none mapped: every one is unknown)
        self.datastreams = datastreams or DatastreamMap()
        self.router = TopicRouter(prefix, self.datastreams.root)
        self.clock = clock
        self.hooks = list(hooks)
        self.max_future = max_future
        self.max_age = max_age
        # Generous box around the city: coordinates outside are wrong (or lon/lat swapped).
        minx, miny, maxx, maxy = city_bounds or _city_bounds()
        self.extent = (minx - 0.5, miny - 0.5, maxx + 0.5, maxy + 0.5)
        self._devices: dict[str, DeviceInfo] = {}

    # ---- public ------------------------------------------------------------------------

    def process(self, messages: Sequence[Inbound]) -> BatchResult:
        """Store a batch, then publish it to the live state and the rules."""
        stored = self.store_isolating(messages)
        self.publish(stored)
        return stored.result

    def store_isolating(self, messages: Sequence[Inbound]) -> StoredBatch:
        """:meth:`store`, and when the database refuses the batch's data, the batch halved
        until the refused message is alone: it becomes a dead letter (``storage_refused``)
        and every other message is stored. One bad message never blocks a worker."""
        try:
            return self.store(messages)
        except DATA_REFUSED as exc:
            return self._isolate(messages, exc)

    def store_prepared_isolating(self, prepared: PreparedBatch) -> StoredBatch:
        """:meth:`store_isolating` for a batch already prepared (the worker's pipeline)."""
        try:
            return self.store_prepared(prepared)
        except DATA_REFUSED as exc:
            return self._isolate(prepared.messages, exc)

    def _isolate(self, messages: Sequence[Inbound], exc: sa.exc.DBAPIError) -> StoredBatch:
        if len(messages) == 1:
            return self._store_refused(messages[0], exc)
        log.warning("database refused a batch of %d (%s); isolating the message", len(messages), exc.orig)
        middle = len(messages) // 2
        return merge_stored(self.store_isolating(messages[:middle]), self.store_isolating(messages[middle:]))

    def _store_refused(self, message: Inbound, exc: Exception) -> StoredBatch:
        first_line = (str(getattr(exc, "orig", exc)).splitlines() or [""])[0]
        rejection = Rejection(
            message.topic, "storage_refused", first_line, message.payload, message.received_at
        )
        result = BatchResult(rejected=[rejection])
        with self.engine.begin() as conn:
            conn.execute(schema.DeadLetter.__table__.insert(), [_dead_letter_row(rejection)])
        return StoredBatch(result, [], {})

    def warm_up(self, connections: int = 1) -> None:
        """Open ``connections`` database connections at once and ready each for the readings'
        statement (:func:`models.db.warm_observations`); they stay in the engine's pool.

        A worker does this before it subscribes: otherwise its first batches open the
        connections, and each new server process loads its catalog caches, while messages
        keep arriving behind them.
        """
        with contextlib.ExitStack() as held:
            for _ in range(connections):
                warm_observations(held.enter_context(self.engine.connect()))

    def store(self, messages: Sequence[Inbound]) -> StoredBatch:
        """Validate, locate and write a batch (and its dead letters) in one database transaction.

        Safe to repeat after a failure: nothing is stored twice, and a repeat reports the
        rows it finds already stored as duplicates.
        """
        return self.store_prepared(self.prepare(messages))

    def prepare(self, messages: Sequence[Inbound]) -> PreparedBatch:
        """The part of :meth:`store` that needs no database: parse every message, and check,
        locate and derive the readings of devices this worker already knows.

        A worker prepares batch N+1 while batch N is written, so the Python work of one
        overlaps the database's of the other. A reading of a device not known yet (its meta
        may be in the batch being written) is left for :meth:`store_prepared`. A device's
        meta changing meanwhile reaches the readings prepared after it is stored.
        """
        result = BatchResult()
        parsed: dict[Kind, list[tuple[Inbound, Route, Any]]] = {k: [] for k in Kind}
        for message in messages:
            try:
                route, model = self._parse(message)
            except Rejected as exc:
                result.rejected.append(self._reject(message, exc))
                continue
            parsed[route.kind].append((message, route, model))
        now = self.clock()
        readings, unknown = [], []
        for item in parsed[Kind.SENSOR_OBS]:
            (readings if item[1].key in self._devices else unknown).append(item)
        parsed[Kind.SENSOR_OBS] = unknown
        # Every device of ``readings`` is known: the lookup asks the database nothing.
        rows = self._observation_rows(None, readings, result, now)
        return PreparedBatch(messages, result, parsed, rows, now)

    def store_prepared(self, prepared: PreparedBatch) -> StoredBatch:
        """Write a prepared batch (and its dead letters) atomically: in one database
        transaction, or as one statement when it holds only readings of known devices.

        Safe to repeat after a failure, like :meth:`store`: each attempt starts from the
        prepared counts, so a repeat counts nothing twice.
        """
        before = prepared.result
        result = BatchResult(
            Counter(before.stored),
            Counter(before.duplicates),
            list(before.rejected),
            Counter(before.rejected_counts),
        )
        parsed, now = prepared.parsed, prepared.now
        accepted: dict[str, list[dict[str, Any]]] = {}
        if self._readings_only(prepared):
            # The usual batch part: one statement stores the readings and their roll-up, and
            # PostgreSQL runs a statement atomically on its own, so it is sent without BEGIN
            # and COMMIT (two round trips fewer, each a wait for the GIL on return). The pool
            # gives the connection back its isolation level (transactional) when it returns.
            with self.engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT")
                inserted = record_observations(conn, prepared.observation_rows)
            result.stored["observations"] += len(inserted)
            result.duplicates["observations"] += len(prepared.observation_rows) - len(inserted)
            accepted["observations"] = inserted
            return StoredBatch(result, [], accepted)
        with self.engine.begin() as conn:
            # Metadata first: an observation in the same batch may need its device.
            devices = self._devices_rows(parsed[Kind.SENSOR_META] + parsed[Kind.CAMERA_META], result, now)
            self._upsert_devices(conn, devices)
            result.stored["devices"] += len(devices)

            obs_rows = prepared.observation_rows + self._observation_rows(
                conn, parsed[Kind.SENSOR_OBS], result, now
            )
            inserted = record_observations(conn, obs_rows)
            result.stored["observations"] += len(inserted)
            result.duplicates["observations"] += len(obs_rows) - len(inserted)
            accepted["observations"] = inserted
            # After the native readings: a SensorThings metric for the same device and
            # instant joins the reading stored just before.
            accepted["observations"] += self._store_sensorthings(conn, parsed[Kind.STA_OBS], result, now)

            video_rows = self._video_rows(conn, parsed[Kind.VIDEO_EVENT], result, now)
            inserted_video = insert_new(conn, schema.VideoEvent.__table__, video_rows, ("event_id",))
            result.stored["video_events"] += len(inserted_video)
            result.duplicates["video_events"] += len(video_rows) - len(inserted_video)
            accepted["video_events"] = inserted_video

            ticket_rows = self._ticket_rows(parsed[Kind.TICKET], result, now)
            inserted_tickets = insert_new(conn, schema.HotlineTicket.__table__, ticket_rows, ("ticket_id",))
            inserted_tickets = tickets.register_new(conn, inserted_tickets, now=now)
            result.stored["hotline_tickets"] += len(inserted_tickets)
            result.duplicates["hotline_tickets"] += len(ticket_rows) - len(inserted_tickets)
            accepted["hotline_tickets"] = inserted_tickets

            for message, route, model in parsed[Kind.TICKET_EVENT]:
                # The same transitions as the console's; a refused one is kept as a dead letter
                # with the reason. The savepoint keeps the batch alive when another worker
                # applied the same event_id first (unique violation).
                try:
                    self._check_time(model.ts, now)
                    with conn.begin_nested():
                        change = tickets.apply_hotline_event(conn, route.key, model.model_dump())
                except Rejected as exc:
                    result.rejected.append(self._reject(message, exc))
                    continue
                except tickets.IllegalTransition as exc:
                    result.rejected.append(self._reject(message, Rejected("illegal_transition", str(exc))))
                    continue
                except tickets.EntityNotFound as exc:
                    result.rejected.append(self._reject(message, Rejected("unknown_ticket", str(exc))))
                    continue
                except sa.exc.IntegrityError:
                    change = None
                if change is None:
                    result.duplicates["ticket_events"] += 1
                else:
                    result.stored["ticket_events"] += 1
            if result.rejected:
                conn.execute(
                    schema.DeadLetter.__table__.insert(), [_dead_letter_row(r) for r in result.rejected]
                )

        return StoredBatch(result, devices, accepted)

    def _readings_only(self, prepared: PreparedBatch) -> bool:
        """Whether a prepared batch is readings of known devices and nothing else, on
        PostgreSQL: then :func:`models.db.record_observations` is its one statement. A meta
        message, a reading of a device not known yet, a video event, a 12345 message or a
        dead letter each need more statements, which one transaction keeps together."""
        return (
            self.engine.dialect.name == "postgresql"
            and not prepared.result.rejected
            and not any(prepared.parsed.values())
        )

    def publish(self, stored: StoredBatch) -> StoredBatch:
        """Write a stored batch to the live state, then hand it to the rules.

        Kept apart from :meth:`store` so that when Redis fails after the database
        committed, only this step is retried: the database is not asked again and the
        live state still gets every new row.
        """
        self.write_live(stored)
        self.run_hooks(stored)
        return stored

    def write_live(self, stored: StoredBatch) -> None:
        """The live-state half of :meth:`publish` (raises when Redis fails: retry it alone)."""
        self._write_live(stored.devices, stored.accepted, stored.result)

    def run_hooks(self, stored: StoredBatch) -> None:
        """The rules' half of :meth:`publish`: every hook sees the batch; one failing is logged."""
        for hook in self.hooks:
            try:
                hook(stored.accepted)
            except Exception:  # a faulty rule must not stop ingest; the batch is already stored
                log.exception("batch hook %r failed", hook)

    # ---- parsing -----------------------------------------------------------------------

    def _parse(self, message: Inbound) -> tuple[Route, BaseModel | CheckedObservation]:
        route = self.router.route(message.topic)
        if route is None:
            raise Rejected("unknown_topic", f"topic {message.topic[:200]!r} is not part of the interface")
        if len(message.payload) > MAX_PAYLOAD_BYTES:
            raise Rejected("too_large", f"{len(message.payload)} bytes > {MAX_PAYLOAD_BYTES}")
        if route.kind is Kind.SENSOR_OBS:
            checked = _fast_reading(message.payload)
            if checked is not None:
                return route, checked
        try:
            text = message.payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Rejected("invalid_utf8", str(exc)) from None
        try:
            data = _JSON.decode(text)
        except (ValueError, RecursionError) as exc:
            raise Rejected("invalid_json", str(exc)[:200]) from None
        if not isinstance(data, dict):
            raise Rejected("invalid_json", "payload must be a JSON object")
        if route.kind is Kind.SENSOR_OBS:
            checked = fast_observation(data)
            if checked is not None:
                return route, checked
        model_type = _MODELS[route.kind]
        try:
            model = model_type.model_validate(data)
        except ValidationError as exc:
            lon, lat = data.get("lon"), data.get("lat")
            if isinstance(lon, int | float) and isinstance(lat, int | float):
                # Guang'an's latitude as longitude and vice versa fails the ±90° check first;
                # report it as the coordinate mistake it is.
                self._check_extent(float(lon), float(lat))
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "payload"
            raise Rejected("schema", f"{where}: {first['msg']}") from None
        if isinstance(model, SensorThingsObservation):
            return self._sensorthings_reading(route, model)
        return route, model

    def _sensorthings_reading(
        self, route: Route, model: SensorThingsObservation
    ) -> tuple[Route, CheckedObservation]:
        """A SensorThings observation as the reading its device would have published
        natively: ``Route(STA_OBS, device_id)`` and its one metric."""
        link = None if model.datastream is None else str(model.datastream.iot_id)
        if route.kind is Kind.STA_DATASTREAM_OBS:
            if link is not None and link != route.key:
                raise Rejected("schema", f"Datastream: link {link!r} differs from the topic's {route.key!r}")
            datastream_id = route.key
        elif link is None:
            raise Rejected("schema", 'Datastream: required on this topic (a link {"@iot.id": …})')
        else:
            datastream_id = link
        datastream = self.datastreams.get(datastream_id)
        if datastream is None:
            raise Rejected(
                "unknown_datastream", f"datastream {datastream_id!r} is not mapped to a device and a metric"
            )
        reading = CheckedObservation(
            model.phenomenon_time, {datastream.metric: float(model.result)}, model.msg_id
        )
        return Route(Kind.STA_OBS, datastream.device_id), reading

    def _check_time(self, ts: datetime, now: datetime) -> None:
        if ts > now + self.max_future:
            raise Rejected(
                "ts_future", f"{ts.isoformat()} is more than {self.max_future} ahead of {now.isoformat()}"
            )
        if ts < now - self.max_age:
            raise Rejected("ts_past", f"{ts.isoformat()} is more than {self.max_age} old")

    def _check_extent(self, lon: float, lat: float) -> None:
        minx, miny, maxx, maxy = self.extent
        if not (minx <= lon <= maxx and miny <= lat <= maxy):
            swapped = minx <= lat <= maxx and miny <= lon <= maxy
            hint = " (lon and lat swapped?)" if swapped else ""
            raise Rejected("out_of_extent", f"({lon}, {lat}) is outside Guang'an{hint}")

    # ---- rows --------------------------------------------------------------------------

    def _devices_rows(
        self, items: list[tuple[Inbound, Route, Any]], result: BatchResult, now: datetime
    ) -> list[dict[str, Any]]:
        kept: list[tuple[Inbound, Route, DeviceMeta, float, float]] = []
        for message, route, model in items:
            assert isinstance(model, DeviceMeta)
            lon, lat = float(model.lon), float(model.lat)
            if model.crs == "gcj02":
                lon, lat = (float(v) for v in gcj02_to_wgs84(lon, lat))
            try:
                if (route.kind is Kind.CAMERA_META) != (model.type == "camera"):
                    raise Rejected("schema", f"type {model.type!r} does not belong under this topic")
                self._check_extent(lon, lat)
            except Rejected as exc:
                result.rejected.append(self._reject(message, exc))
                continue
            kept.append((message, route, model, lon, lat))
        if not kept:
            return []
        where = locate(np.array([k[3] for k in kept]), np.array([k[4] for k in kept]))
        rows = []
        for (_message, route, model, lon, lat), district, grid in zip(
            kept, where.district_code, where.grid_id, strict=True
        ):
            rows.append(
                {
                    "device_id": route.key,
                    "kind": "camera" if model.type == "camera" else "sensor",
                    "type": model.type,
                    "name": model.name or route.key,
                    "lon": lon,
                    "lat": lat,
                    "geom": Point(lon, lat),
                    "district_code": district,
                    "grid_id": grid,
                    "props": model.props,
                    "registered_at": now,
                    "updated_at": now,
                }
            )
        # The last meta message of a device in a batch wins.
        return list({r["device_id"]: r for r in rows}.values())

    def _known_devices(
        self, conn: sa.Connection | None, items: list[tuple[Inbound, Route, Any]]
    ) -> dict[str, DeviceInfo]:
        """The devices a batch's messages name, those not yet known to this worker looked up
        in one query per :data:`DEVICE_LOOKUP_CHUNK`. Asked one by one, a worker that had just
        started (or met a district's new devices) spent its first seconds in round trips,
        and the readings queued behind them."""
        if conn is None:  # preparing: only what is known already
            return self._devices
        missing = {route.key for _, route, _ in items if route.key not in self._devices}
        t = schema.Device.__table__
        wanted = sorted(missing)
        for start in range(0, len(wanted), DEVICE_LOOKUP_CHUNK):
            chunk = wanted[start : start + DEVICE_LOOKUP_CHUNK]
            for row in conn.execute(
                sa.select(
                    t.c.device_id, t.c.type, t.c.lon, t.c.lat, t.c.district_code, t.c.grid_id, t.c.props
                ).where(t.c.device_id.in_(chunk))
            ):
                self._devices[row[0]] = DeviceInfo(*row[:-1], props=row[-1] or {})
        return self._devices

    def _observation_rows(
        self,
        conn: sa.Connection | None,
        items: list[tuple[Inbound, Route, Any]],
        result: BatchResult,
        now: datetime,
        *,
        merge: bool = False,
    ) -> list[dict[str, Any]]:
        """Checked, located rows, one per device and instant. A repeat of an instant is a
        duplicate; with ``merge`` (SensorThings: one metric per message) its metrics not
        seen yet join that instant's row, and only repeated metrics are duplicates."""
        rows: dict[tuple[str, datetime], dict[str, Any]] = {}
        devices = self._known_devices(conn, items)
        for message, route, model in items:
            assert isinstance(model, CheckedObservation | Observation)
            try:
                device = devices.get(route.key)
                if device is None:
                    raise Rejected("unknown_device", f"device {route.key!r} has no meta message")
                self._check_time(model.ts, now)
                self._check_metrics(device.type, model.metrics)
            except Rejected as exc:
                result.rejected.append(self._reject(message, exc))
                continue
            ts = model.ts.astimezone(UTC)
            metrics = {k: float(v) for k, v in model.metrics.items()}
            earlier = rows.get((route.key, ts))
            if merge and earlier is not None:
                added = {k: v for k, v in metrics.items() if k not in earlier["metrics"]}
                result.duplicates["observations"] += len(metrics) - len(added)
                earlier["metrics"].update(added)
                continue
            if earlier is not None:
                # The same reading twice in one batch (a redelivery next to the original):
                # as much a duplicate as one already in the database.
                result.duplicates["observations"] += 1
            rows[(route.key, ts)] = {
                "device_id": route.key,
                "ts": ts,
                "received_at": message.received_at,
                "metrics": metrics,
                "msg_id": model.msg_id,
                "district_code": device.district_code,
                "grid_id": device.grid_id,
                # Not stored with the reading (recomputable), but carried to the live state and
                # the rules: the national indices of this reading and what the device is.
                "derived": None,
                "device_type": device.type,
                "props": device.props,
                "lon": device.lon,
                "lat": device.lat,
            }
        for row in rows.values():  # once a row's metrics are complete
            row["derived"] = derive(row["device_type"], row["props"], row["metrics"], row["ts"])
        return list(rows.values())

    def _store_sensorthings(
        self,
        conn: sa.Connection,
        items: list[tuple[Inbound, Route, Any]],
        result: BatchResult,
        now: datetime,
    ) -> list[dict[str, Any]]:
        """Store SensorThings readings; returns the rows for the live state and the rules.

        A SensorThings observation carries one metric, and a station's datastreams usually
        share their ``phenomenonTime``: stored as separate readings, the second metric of
        an instant would be a duplicate of the first and lost. So an observation whose
        device already has a reading at that instant adds its metric to that reading; a
        metric the reading already has is the duplicate (a redelivery). Counted per
        observation: ``stored`` and ``duplicates`` are metrics here.
        """
        rows = self._observation_rows(conn, items, result, now, merge=True)
        if not rows:
            return []
        inserted = record_observations(conn, rows)
        result.stored["observations"] += sum(len(r["metrics"]) for r in inserted)
        fresh = {(r["device_id"], r["ts"]) for r in inserted}
        return inserted + self._merge_into_stored(
            conn, [r for r in rows if (r["device_id"], r["ts"]) not in fresh], result
        )

    def _merge_into_stored(
        self, conn: sa.Connection, rows: list[dict[str, Any]], result: BatchResult
    ) -> list[dict[str, Any]]:
        """Add the rows' new metrics to the readings stored at their device and instant.

        The stored rows are locked while their metrics are read and written (PostgreSQL:
        FOR UPDATE; SQLite has one writer), so two workers adding two metrics to one
        instant both keep theirs; they are locked in one order by every worker, against
        deadlocks. One read and one write per chunk, not per row: measured, a statement
        pair per observation made merging ten times slower than inserting.
        Returns each changed reading with all its metrics, as the live state keeps it.
        """
        t = schema.Observation.__table__
        ordered = sorted(rows, key=lambda r: (r["device_id"], r["ts"]))
        merged: list[dict[str, Any]] = []
        added_only: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        for start in range(0, len(ordered), MERGE_CHUNK):
            chunk = ordered[start : start + MERGE_CHUNK]
            found = conn.execute(
                sa.select(t.c.id, t.c.device_id, t.c.ts, t.c.metrics)
                .where(sa.tuple_(t.c.device_id, t.c.ts).in_([(r["device_id"], r["ts"]) for r in chunk]))
                .order_by(t.c.device_id, t.c.ts)
                .with_for_update()
            ).all()
            stored = {(f.device_id, f.ts): f for f in found}
            for row in chunk:
                hit = stored.get((row["device_id"], row["ts"]))
                if hit is None:
                    # Refused for its msg_id alone: that @iot.id is another reading's, a redelivery.
                    result.duplicates["observations"] += len(row["metrics"])
                    continue
                existing = dict(hit.metrics or {})
                added = {k: v for k, v in row["metrics"].items() if k not in existing}
                result.duplicates["observations"] += len(row["metrics"]) - len(added)
                if not added:
                    continue
                metrics = existing | added
                updates.append({"row_id": hit.id, "new_metrics": metrics})
                result.stored["observations"] += len(added)
                added_only.append({**row, "metrics": added})
                merged.append(
                    {
                        **row,
                        "metrics": metrics,
                        "derived": derive(row["device_type"], row["props"], metrics, row["ts"]),
                    }
                )
        if updates:
            conn.execute(
                t.update()
                .where(t.c.id == sa.bindparam("row_id"))
                .values(metrics=sa.bindparam("new_metrics", type_=t.c.metrics.type)),
                updates,
            )
        # The hourly roll-up counts only the metrics added, as an insert counts only new rows.
        upsert_hourly(conn, hourly_deltas(added_only))
        return merged

    def _check_metrics(self, device_type: str, metrics: dict[str, float]) -> None:
        known = _KNOWN_METRICS.get(device_type)
        if known is None:
            known = _KNOWN_METRICS.setdefault(
                device_type, {m.key: m for m in DEVICE_TYPES.get(device_type, ())}
            )
        for key, value in metrics.items():
            m = known.get(key)
            if m is None:
                raise Rejected("unknown_metric", f"{key!r} is not a metric of {device_type}")
            if not m.minimum <= value <= m.maximum:
                reason = "negative_value" if value < 0 <= m.minimum else "out_of_range"
                raise Rejected(reason, f"{key}={value} outside [{m.minimum}, {m.maximum}] {m.unit}")

    def _video_rows(
        self,
        conn: sa.Connection,
        items: list[tuple[Inbound, Route, Any]],
        result: BatchResult,
        now: datetime,
    ) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        devices = self._known_devices(conn, items)
        for message, route, model in items:
            assert isinstance(model, VideoEvent)
            try:
                camera = devices.get(route.key)
                if camera is None:
                    raise Rejected("unknown_device", f"camera {route.key!r} has no meta message")
                self._check_time(model.ts, now)
                lon = float(model.lon) if model.lon is not None else camera.lon
                lat = float(model.lat) if model.lat is not None else camera.lat
                self._check_extent(lon, lat)
            except Rejected as exc:
                result.rejected.append(self._reject(message, exc))
                continue
            rows.append(
                {
                    "event_id": model.event_id,
                    "camera_id": route.key,
                    "ts": model.ts.astimezone(UTC),
                    "type": model.type,
                    "confidence": float(model.confidence),
                    "lon": lon,
                    "lat": lat,
                    "snapshot_url": model.snapshot_url,
                    "bbox": model.bbox,
                    "received_at": message.received_at,
                }
            )
        return self._locate_rows(rows)

    def _ticket_rows(
        self, items: list[tuple[Inbound, Route, Any]], result: BatchResult, now: datetime
    ) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for message, _route, model in items:
            assert isinstance(model, HotlineTicket)
            try:
                self._check_time(model.ts, now)
                if (model.lon is None) != (model.lat is None):
                    raise Rejected("schema", "lon and lat come together")
                if model.lon is not None and model.lat is not None:
                    self._check_extent(float(model.lon), float(model.lat))
            except Rejected as exc:
                result.rejected.append(self._reject(message, exc))
                continue
            caller = model.caller or {}
            rows.append(
                {
                    "ticket_id": model.ticket_id,
                    "ts": model.ts.astimezone(UTC),
                    "channel": model.channel,
                    "category": model.category,
                    "title": model.title,
                    "content": model.content,
                    "address": model.address,
                    "lon": None if model.lon is None else float(model.lon),
                    "lat": None if model.lat is None else float(model.lat),
                    "urgency": model.urgency,
                    "caller_name": caller.get("name"),
                    "caller_phone": caller.get("phone"),
                    "state": "registered",
                    "created_at": now,
                    "updated_at": now,
                }
            )
        return self._locate_rows(rows)

    @staticmethod
    def _locate_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        placed = [r for r in rows if r.get("lon") is not None]
        if placed:
            where = locate(np.array([r["lon"] for r in placed]), np.array([r["lat"] for r in placed]))
            for r, district, grid in zip(placed, where.district_code, where.grid_id, strict=True):
                r["district_code"], r["grid_id"] = district, grid
                r["geom"] = Point(r["lon"], r["lat"])
        for r in rows:
            r.setdefault("district_code", None)
            r.setdefault("grid_id", None)
            r.setdefault("geom", None)
        return rows

    # ---- writing -----------------------------------------------------------------------

    def _upsert_devices(self, conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        t = schema.Device.__table__
        insert = dialect_insert(conn, t)
        update = {c: insert.excluded[c] for c in rows[0] if c not in ("device_id", "registered_at")}
        conn.execute(insert.on_conflict_do_update(index_elements=["device_id"], set_=update), rows)
        for r in rows:
            self._devices[r["device_id"]] = DeviceInfo(
                r["device_id"], r["type"], r["lon"], r["lat"], r["district_code"], r["grid_id"], r["props"]
            )

    def _write_live(
        self, devices: list[dict[str, Any]], accepted: dict[str, list[dict[str, Any]]], result: BatchResult
    ) -> None:
        self.live.register_devices(
            (d["device_id"], {k: d[k] for k in ("type", "name", "lon", "lat", "district_code", "grid_id")})
            for d in devices
        )
        self.live.record_readings(accepted.get("observations", []))
        self.live.record_events("video", accepted.get("video_events", []), seen_by="camera_id")
        # Caller name and phone are personal data: they stay in the database only.
        self.live.record_events(
            "tickets",
            [
                {k: v for k, v in r.items() if k not in PERSONAL_FIELDS}
                for r in accepted.get("hotline_tickets", [])
            ],
        )
        self.live.record_dead_letters(
            [{"topic": r.topic, "reason": r.reason, "detail": r.detail} for r in result.rejected]
        )

    def _reject(self, message: Inbound, exc: Rejected) -> Rejection:
        log.debug("rejected %s: %s", message.topic, exc)
        return Rejection(message.topic, exc.reason, exc.detail, message.payload, message.received_at)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


#: One decoder for every message: ``json.loads`` with a keyword builds a new decoder per call.
_JSON = json.JSONDecoder(parse_constant=_refuse_constant)

#: orjson reads integers beyond 64 bits as floats, where the general path keeps them exact.
_ORJSON_EXACT = 2.0**64


def _fast_reading(payload: bytes) -> CheckedObservation | None:
    """A well-formed reading, decoded by orjson (several times faster than :data:`_JSON`).

    None means "take the general path", which decides with the same rules as before and
    gives a rejected message its reason: orjson refuses what that path also refuses (bad
    UTF-8, NaN, too deep) and a few things it accepts (lone surrogates), and reads huge
    integers as floats, so a reading with a value that large goes that way too.
    """
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if type(data) is not dict:
        return None
    checked = fast_observation(data)
    if checked is None or any(not -_ORJSON_EXACT < v < _ORJSON_EXACT for v in checked.metrics.values()):
        return None
    return checked


_MODELS: dict[Kind, type[BaseModel]] = {
    Kind.SENSOR_META: DeviceMeta,
    Kind.CAMERA_META: DeviceMeta,
    Kind.SENSOR_OBS: Observation,
    Kind.VIDEO_EVENT: VideoEvent,
    Kind.TICKET: HotlineTicket,
    Kind.TICKET_EVENT: TicketLifecycleEvent,
    Kind.STA_DATASTREAM_OBS: SensorThingsObservation,
    Kind.STA_OBS: SensorThingsObservation,
}

#: Metric definitions by device type, built on first use (the catalog does not change).
_KNOWN_METRICS: dict[str, dict[str, Any]] = {}


def _storable(text: str, limit: int) -> str:
    """Text a PostgreSQL column takes whatever came in: no NUL (text and JSON refuse it)
    and no longer than the column."""
    return text.replace("\x00", "\ufffd")[:limit]


def _dead_letter_row(r: Rejection) -> dict[str, Any]:
    return {
        "received_at": r.received_at,
        "topic": _storable(r.topic, DEAD_LETTER_TOPIC_CHARS),
        "reason": r.reason,
        "payload": r.payload[:DEAD_LETTER_KEEP_BYTES],
        "payload_size": len(r.payload),
        "detail": {"message": _storable(r.detail, 1000)},
    }


def merge_stored(first: StoredBatch, second: StoredBatch) -> StoredBatch:
    """Two stored parts of one batch as one (counts added, rows and registrations in order)."""
    result = BatchResult(
        stored=first.result.stored + second.result.stored,
        duplicates=first.result.duplicates + second.result.duplicates,
        rejected=first.result.rejected + second.result.rejected,
        rejected_counts=first.result.rejected_counts + second.result.rejected_counts,
    )
    accepted = {
        k: [*first.accepted.get(k, []), *second.accepted.get(k, [])]
        for k in {*first.accepted, *second.accepted}
    }
    return StoredBatch(result, [*first.devices, *second.devices], accepted)
