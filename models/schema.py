"""Storage schema: the tables behind history, workflows and audit.

One set of SQLAlchemy models serves both backends. PostgreSQL + PostGIS is the production
store; the embedded default is SQLite. The column types below hide the difference:

* :class:`GeometryType` is a PostGIS ``geometry(<type>, 4326)`` on PostgreSQL and a WKB blob
  on SQLite; either way Python code reads and writes shapely geometries.
* :class:`UTCDateTime` stores timezone-aware datetimes and always returns them in UTC, also on
  SQLite (which has no time zone support and would otherwise hand back naive values).
* :data:`JSONType` is ``JSONB`` on PostgreSQL and JSON text on SQLite.

Indexes that only make sense on one backend (GiST, BRIN) carry ``info["dialect"]`` and a
``ddl_if`` so ``create_all`` and the schema comparison in the tests skip them elsewhere.

Workflow ``state`` columns are plain indexed strings on purpose: the lifecycles in
``models`` own the valid states and transitions, and a CHECK here would have to change in
lock-step with every new side path (延期, 回退, 挂账 …). Closed sets that are national or
structural (warning colours, alert domains, roles, device kinds, case sources) are checked.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar

import shapely
from geoalchemy2 import Geometry
from shapely.geometry import MultiLineString, MultiPoint, MultiPolygon
from shapely.geometry.base import BaseGeometry
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    event,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.schema import DDL
from sqlalchemy.types import TypeDecorator, TypeEngine

SRID = 4326

#: Deterministic constraint and index names, so migrations can refer to them by name.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# --------------------------------------------------------------------------------------------
# Column types


class GeometryType(TypeDecorator[BaseGeometry]):
    """A shapely geometry in EPSG:4326: PostGIS ``geometry`` or a WKB blob on SQLite.

    A single-part value written to a multi-part column (a ``Polygon`` into ``MULTIPOLYGON``)
    is promoted, because clipping a grid cell or a district often yields either.
    """

    impl = LargeBinary
    cache_ok = True

    _MULTI: ClassVar[dict[str, type[BaseGeometry]]] = {
        "MULTIPOLYGON": MultiPolygon,
        "MULTILINESTRING": MultiLineString,
        "MULTIPOINT": MultiPoint,
    }

    def __init__(self, geometry_type: str = "GEOMETRY") -> None:
        super().__init__()
        self.geometry_type = geometry_type.upper()

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect is not None and dialect.name == "postgresql":
            # GiST indexes are declared explicitly (see _gist) so the migration and the
            # models name them the same way; GeoAlchemy2 must not add its own.
            return dialect.type_descriptor(
                Geometry(geometry_type=self.geometry_type, srid=SRID, spatial_index=False)
            )
        return dialect.type_descriptor(LargeBinary())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, BaseGeometry):
            raise TypeError(f"expected a shapely geometry, got {type(value).__name__}")
        multi = self._MULTI.get(self.geometry_type)
        if multi is not None and value.geom_type == multi.__name__[len("Multi") :]:
            value = multi([value])
        if dialect.name == "postgresql":
            # Hex EWKB is exact (no decimal round trip) and ST_GeomFromEWKT accepts it.
            return shapely.to_wkb(shapely.set_srid(value, SRID), hex=True, include_srid=True)
        return shapely.to_wkb(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> BaseGeometry | None:
        if value is None:
            return None
        data = getattr(value, "data", value)  # a GeoAlchemy2 WKBElement, bytes or hex text
        if isinstance(data, memoryview):
            data = data.tobytes()
        return shapely.from_wkb(data)

    def copy(self, **kw: Any) -> GeometryType:
        return GeometryType(self.geometry_type)

    def __repr__(self) -> str:
        return f"GeometryType({self.geometry_type!r})"


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp, returned in UTC on every backend.

    Naive datetimes are refused: in a city on UTC+8 a naive value is as likely to be local
    time as UTC, and guessing would shift history by eight hours.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} refused: give it a time zone")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            # Stored as naive UTC text so string order is time order.
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def __repr__(self) -> str:
        return "UTCDateTime()"


#: JSON documents: JSONB on PostgreSQL (indexable, compact), JSON text elsewhere. Python
#: None is stored as SQL NULL (not the JSON text 'null') so ``IS NULL`` finds it.
JSONType = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")

#: 64-bit ids on PostgreSQL; SQLite only auto-increments an ``INTEGER PRIMARY KEY``.
BigIntId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------------------------
# Closed sets


class DeviceKind(enum.StrEnum):
    SENSOR = "sensor"
    CAMERA = "camera"


class AlertDomain(enum.StrEnum):
    EMERGENCY = "emergency"
    URBAN = "urban"
    ECOLOGY = "ecology"
    HOTLINE = "hotline"
    SYSTEM = "system"


class Severity(enum.StrEnum):
    """How bad an alert is, most severe first; :data:`WARNING_COLOURS` maps it to China's colours."""

    CRITICAL = "critical"
    MAJOR = "major"
    MINOR = "minor"
    INFO = "info"


class WarningColour(enum.StrEnum):
    """China's four warning colours (预警颜色), Ⅰ red … Ⅳ blue (GB/T 35965.1, CAP profile)."""

    RED = "red"
    ORANGE = "orange"
    YELLOW = "yellow"
    BLUE = "blue"


#: Alert severity → national warning colour, for CAP messages and the wall screens: the
#: operational scale has the same four steps as the national one, so the map is one-to-one.
WARNING_COLOURS: dict[Severity, WarningColour] = {
    Severity.CRITICAL: WarningColour.RED,  # 红色预警 Ⅰ
    Severity.MAJOR: WarningColour.ORANGE,  # 橙色预警 Ⅱ
    Severity.MINOR: WarningColour.YELLOW,  # 黄色预警 Ⅲ
    Severity.INFO: WarningColour.BLUE,  # 蓝色预警 Ⅳ
}


class Role(enum.StrEnum):
    VIEWER = "viewer"
    LEADER = "leader"
    OPERATOR = "operator"
    DUTY_OFFICER = "duty_officer"
    ADMIN = "admin"


class CaseSource(enum.StrEnum):
    """Where a GB/T 30428 case was collected (信息收集)."""

    VIDEO = "video"
    INSPECTOR = "inspector"
    PUBLIC = "public"
    HOTLINE = "hotline"


def _one_of(column: str, values: type[enum.StrEnum], name: str | None = None) -> CheckConstraint:
    listed = ", ".join(f"'{v.value}'" for v in values)
    return CheckConstraint(f"{column} IN ({listed})", name=name or f"{column}_valid")


def _gist(table: str, column: str = "geom") -> Index:
    """A GiST index on a geometry column, created only on PostgreSQL."""
    index = Index(
        f"ix_{table}_{column}_gist", column, postgresql_using="gist", info={"dialect": "postgresql"}
    )
    return index.ddl_if(dialect="postgresql")


def dialect_of(index: Index) -> str | None:
    """The only dialect an index is built on, or None when it exists everywhere."""
    return index.info.get("dialect")


#: Tables the PostGIS extension owns; they live beside ours but are not part of the schema.
EXTENSION_TABLES = frozenset({"spatial_ref_sys", "geography_columns", "geometry_columns"})


def include_in_comparison(dialect_name: str) -> Callable[..., bool]:
    """An Alembic ``include_object`` hook for comparing a ``dialect_name`` database with the models.

    Leaves out indexes built only on another backend and the extension's own tables.
    """

    def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        if type_ == "index" and not reflected:
            only_on = dialect_of(obj)
            return only_on is None or only_on == dialect_name
        if type_ == "table" and reflected and compare_to is None:
            return name not in EXTENSION_TABLES
        return True

    return include_object


# --------------------------------------------------------------------------------------------
# Models


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 - read once by SQLAlchemy at class creation
        datetime: UTCDateTime(),
        dict[str, Any]: JSONType,
        BaseGeometry: GeometryType(),
    }


class District(Base):
    """A county-level unit of Guang'an (区/县/市), boundary in WGS-84."""

    __tablename__ = "districts"
    __table_args__ = (_gist("districts"),)

    district_code: Mapped[str] = mapped_column(String(12), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    name_en: Mapped[str | None] = mapped_column(String(64))
    geom: Mapped[BaseGeometry] = mapped_column(GeometryType("MULTIPOLYGON"))
    area_km2: Mapped[float] = mapped_column(Float)


class GridCell(Base):
    """A management grid cell (网格): an H3 hexagon clipped to its district."""

    __tablename__ = "grid_cells"
    __table_args__ = (_gist("grid_cells"),)

    grid_id: Mapped[str] = mapped_column(String(20), primary_key=True)
    district_code: Mapped[str] = mapped_column(ForeignKey("districts.district_code"), index=True)
    # The H3 hexagon the cell was cut from: a border hexagon is split into one cell per
    # district, and statistics at hexagon level group by this column.
    h3_cell: Mapped[str | None] = mapped_column(String(20), index=True)
    is_primary: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    geom: Mapped[BaseGeometry] = mapped_column(GeometryType("MULTIPOLYGON"))
    area_km2: Mapped[float] = mapped_column(Float)
    center_lon: Mapped[float] = mapped_column(Float)
    center_lat: Mapped[float] = mapped_column(Float)


class Device(Base):
    """A registered IoT sensor or camera."""

    __tablename__ = "devices"
    __table_args__ = (
        _one_of("kind", DeviceKind),
        Index("ix_devices_kind_type", "kind", "type"),
        _gist("devices"),
    )

    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    type: Mapped[str] = mapped_column(String(32))
    name: Mapped[str | None] = mapped_column(String(128))
    lon: Mapped[float | None] = mapped_column(Float)
    lat: Mapped[float | None] = mapped_column(Float)
    geom: Mapped[BaseGeometry | None] = mapped_column(GeometryType("POINT"))
    district_code: Mapped[str | None] = mapped_column(String(12), index=True)
    grid_id: Mapped[str | None] = mapped_column(String(20), index=True)
    props: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    registered_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    last_seen: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Observation(Base):
    """One sensor message: all metrics of one device at one instant.

    Not partitioned (yet), deliberately. A few thousand sensors reporting every few minutes
    is on the order of 10⁸ rows a year, which one PostgreSQL table with a BRIN index on the
    append-only ``ts`` handles well, and dashboards read ``observation_hourly`` rather than
    this table. Monthly range partitions would force every unique key to include ``ts``, so
    ``msg_id`` (a broker redelivery carries the same id) could no longer be unique on its
    own, and they need a job creating partitions ahead of time that the embedded default
    does not have. When retention by dropping whole months becomes necessary, a migration
    can swap in a partitioned table under the same name: the ORM model does not change.

    ``device_id`` has no foreign key on purpose: messages from a device the registry does
    not know yet are still history, and the check would cost a lookup per message.
    """

    __tablename__ = "observations"
    __table_args__ = (
        Index(
            "uq_observations_msg_id",
            "msg_id",
            unique=True,
            postgresql_where=text("msg_id IS NOT NULL"),
            sqlite_where=text("msg_id IS NOT NULL"),
        ),
        # Rows arrive in time order, so a BRIN index is tiny on PostgreSQL and still prunes
        # time ranges; SQLite has only btrees.
        Index(
            "ix_observations_ts_brin", "ts", postgresql_using="brin", info={"dialect": "postgresql"}
        ).ddl_if(dialect="postgresql"),
        Index("ix_observations_ts", "ts", info={"dialect": "sqlite"}).ddl_if(dialect="sqlite"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(64))
    ts: Mapped[datetime] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONType)
    msg_id: Mapped[str | None] = mapped_column(String(64))
    district_code: Mapped[str | None] = mapped_column(String(12))
    grid_id: Mapped[str | None] = mapped_column(String(20))


# Idempotency for redelivered messages, and the btree behind "latest readings of a device"
# (ORDER BY ts DESC reads it directly, so there is no second index to maintain on the
# largest table).
Index("uq_observations_device_id_ts", Observation.device_id, Observation.ts.desc(), unique=True)


#: Percent of a page ``observation_hourly`` rows fill on PostgreSQL (see ObservationHourly).
HOURLY_FILLFACTOR = 70


class ObservationHourly(Base):
    """Per device, metric and hour: count, sum, min, max and the latest value.

    Maintained incrementally by :func:`models.db.upsert_hourly` from the rows actually
    inserted into ``observations``, so redelivered messages are not counted twice.

    A row of the current hour is updated by every reading of its device, so PostgreSQL
    pages are filled to 70 % only (migration 0009): the new version of an updated row then
    fits on its own page, the update is HOT and none of the four indexes is touched. Full
    pages made four of five updates move the row and insert into every index, the larger
    part of the database's work per reading (bench/README.md, Ingest).
    """

    __tablename__ = "observation_hourly"
    __table_args__ = (
        Index("ix_observation_hourly_metric_hour", "metric", "hour"),
        Index("ix_observation_hourly_district_code_hour", "district_code", "hour"),
        Index("ix_observation_hourly_grid_id_hour", "grid_id", "hour"),
        {"postgresql_with": {"fillfactor": HOURLY_FILLFACTOR}},
    )

    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    metric: Mapped[str] = mapped_column(String(32), primary_key=True)
    hour: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    district_code: Mapped[str | None] = mapped_column(String(12))
    grid_id: Mapped[str | None] = mapped_column(String(20))
    count: Mapped[int] = mapped_column(Integer)
    sum: Mapped[float] = mapped_column(Float)
    min: Mapped[float] = mapped_column(Float)
    max: Mapped[float] = mapped_column(Float)
    last_ts: Mapped[datetime] = mapped_column(UTCDateTime())
    last_value: Mapped[float] = mapped_column(Float)


class VideoEvent(Base):
    """A video analytics event from a camera (e.g. illegal parking, crowding, smoke)."""

    __tablename__ = "video_events"
    __table_args__ = (
        CheckConstraint("confidence >= 0 AND confidence <= 1", name="confidence_range"),
        Index("ix_video_events_district_code_ts", "district_code", "ts"),
        Index("ix_video_events_camera_id_ts", "camera_id", "ts"),
        Index("ix_video_events_type_ts", "type", "ts"),
        # The last 24 h of sightings per grid cell and per type (migration 0007).
        Index("ix_video_events_ts", "ts"),
        _gist("video_events"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    camera_id: Mapped[str] = mapped_column(String(64))
    ts: Mapped[datetime] = mapped_column(UTCDateTime())
    type: Mapped[str] = mapped_column(String(32))
    confidence: Mapped[float] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    lat: Mapped[float | None] = mapped_column(Float)
    geom: Mapped[BaseGeometry | None] = mapped_column(GeometryType("POINT"))
    district_code: Mapped[str | None] = mapped_column(String(12))
    grid_id: Mapped[str | None] = mapped_column(String(20), index=True)
    snapshot_url: Mapped[str | None] = mapped_column(String(512))
    bbox: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class HotlineTicket(Base):
    """A 12345 hotline work order (工单)."""

    __tablename__ = "hotline_tickets"
    __table_args__ = (
        Index("ix_hotline_tickets_district_code_ts", "district_code", "ts"),
        Index("ix_hotline_tickets_department_state", "department", "state"),
        Index("ix_hotline_tickets_category_ts", "category", "ts"),
        # Newest orders, today's volumes and rates select by time alone (migration 0007).
        Index("ix_hotline_tickets_ts", "ts"),
        _gist("hotline_tickets"),
    )

    ticket_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    ts: Mapped[datetime] = mapped_column(UTCDateTime())
    channel: Mapped[str] = mapped_column(String(16))
    category: Mapped[str] = mapped_column(String(64), index=True)
    title: Mapped[str] = mapped_column(String(200))
    content: Mapped[str] = mapped_column(Text)
    address: Mapped[str | None] = mapped_column(String(256))
    lon: Mapped[float | None] = mapped_column(Float)
    lat: Mapped[float | None] = mapped_column(Float)
    geom: Mapped[BaseGeometry | None] = mapped_column(GeometryType("POINT"))
    district_code: Mapped[str | None] = mapped_column(String(12))
    grid_id: Mapped[str | None] = mapped_column(String(20), index=True)
    urgency: Mapped[str] = mapped_column(String(16), default="normal")
    # Personal information (个人信息保护法): needed to call the citizen back, nothing else.
    # Mask it on screens, leave it out of exports, logs, alerts and audit payloads.
    caller_name: Mapped[str | None] = mapped_column(String(64))
    caller_phone: Mapped[str | None] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(24), index=True)
    department: Mapped[str | None] = mapped_column(String(64))
    accept_due: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    reply_due: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    # A confirmed repeat (重复件): merged into this earlier order.
    repeat_of: Mapped[str | None] = mapped_column(ForeignKey("hotline_tickets.ticket_id"), index=True)
    # The work-order lifecycle (models.tickets); ``version`` makes transitions compare-and-set.
    version: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))
    close_due: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    replied_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    followed_up_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # 回访评价: satisfied / basically_satisfied / dissatisfied (满意/基本满意/不满意).
    satisfaction: Mapped[str | None] = mapped_column(String(24))
    # 督办: the centre watches this order closely; a flag, not a state.
    supervised: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    supervised_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # 延期: requested / approved / refused, and the new deadline asked for.
    extension_state: Mapped[str | None] = mapped_column(String(16))
    extension_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    return_count: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    # Auto-dispatch suggestion (category → department); the operator confirms or changes it.
    suggested_department: Mapped[str | None] = mapped_column(String(64))
    # The district or township the order was dispatched to (may differ from where it is).
    handling_district_code: Mapped[str | None] = mapped_column(String(12))
    # A likely repeat found at registration: a link for the operator, not yet a merge.
    likely_repeat_of: Mapped[str | None] = mapped_column(String(32))
    likely_repeat_distance_m: Mapped[float | None] = mapped_column(Float)


class TicketEvent(Base):
    """One step in a ticket's history; ``event_id`` makes replays from the 12345 system idempotent."""

    __tablename__ = "ticket_events"
    __table_args__ = (Index("ix_ticket_events_ticket_id_ts", "ticket_id", "ts"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    ticket_id: Mapped[str] = mapped_column(ForeignKey("hotline_tickets.ticket_id"))
    event_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    ts: Mapped[datetime] = mapped_column(UTCDateTime())
    action: Mapped[str] = mapped_column(String(32))
    from_state: Mapped[str | None] = mapped_column(String(24))
    to_state: Mapped[str | None] = mapped_column(String(24))
    actor: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


class Alert(Base):
    """An alert raised by a rule; its lifecycle lives in :mod:`models.alerts`.

    ``resolved_at`` marks the end of the open period (resolved, or marked a false alarm):
    at most one alert per ``dedup_key`` has it unset, and the partial unique index lets
    several ingest workers race to raise the same alert and have exactly one win.
    ``version`` grows with every change, so transitions can compare-and-set and the live
    state in Redis can ignore a change that arrives after a newer one.
    """

    __tablename__ = "alerts"
    __table_args__ = (
        _one_of("domain", AlertDomain),
        _one_of("severity", Severity),
        CheckConstraint("occurrences >= 1", name="occurrences_positive"),
        CheckConstraint("escalation_level >= 0", name="escalation_level_positive"),
        Index(
            "uq_alerts_dedup_key_open",
            "dedup_key",
            unique=True,
            postgresql_where=text("resolved_at IS NULL"),
            sqlite_where=text("resolved_at IS NULL"),
        ),
        Index("ix_alerts_district_code_opened_at", "district_code", "opened_at"),
        Index("ix_alerts_domain_severity", "domain", "severity"),
        # The SLA sweep looks for unacknowledged alerts whose deadline has passed.
        Index("ix_alerts_sla_due", "sla_due"),
        _gist("alerts"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    rule_id: Mapped[str] = mapped_column(String(64))
    domain: Mapped[str] = mapped_column(String(16))
    severity: Mapped[str] = mapped_column(String(8))
    title: Mapped[str] = mapped_column(String(200))
    message: Mapped[str | None] = mapped_column(Text)
    source_kind: Mapped[str | None] = mapped_column(String(16))
    source_id: Mapped[str | None] = mapped_column(String(64))
    dedup_key: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(24), index=True)
    district_code: Mapped[str | None] = mapped_column(String(12))
    grid_id: Mapped[str | None] = mapped_column(String(20), index=True)
    lon: Mapped[float | None] = mapped_column(Float)
    lat: Mapped[float | None] = mapped_column(Float)
    geom: Mapped[BaseGeometry | None] = mapped_column(GeometryType("POINT"))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    assigned_to: Mapped[str | None] = mapped_column(String(64))
    sla_due: Mapped[datetime | None] = mapped_column(UTCDateTime())
    evidence: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))
    assigned_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The condition that raised the alert ended; the alert stays until a person acts.
    cleared_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    occurrences: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))
    escalation_level: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    version: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))


class AlertEvent(Base):
    """One step in an alert's history (raised, acknowledged, assigned, escalated, resolved …).

    ``actor`` and ``address`` say who and from where (a client IP, or ``rule:…`` / ``system``).
    """

    __tablename__ = "alert_events"
    __table_args__ = (Index("ix_alert_events_alert_id_ts", "alert_id", "ts"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"))
    ts: Mapped[datetime] = mapped_column(UTCDateTime())
    action: Mapped[str] = mapped_column(String(32))
    from_state: Mapped[str | None] = mapped_column(String(24))
    to_state: Mapped[str | None] = mapped_column(String(24))
    actor: Mapped[str | None] = mapped_column(String(64))
    comment: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    address: Mapped[str | None] = mapped_column(String(64))


class MaintenanceWindow(Base):
    """A declared maintenance period (检修/维护): alerts from the devices it covers are suppressed.

    The scope is one device, or every device in a district; a window is ended early by
    moving ``ends_at``, never deleted, so the history of why alerts were quiet stays.
    """

    __tablename__ = "maintenance_windows"
    __table_args__ = (
        CheckConstraint("device_id IS NOT NULL OR district_code IS NOT NULL", name="scope_given"),
        CheckConstraint("ends_at > starts_at", name="ends_after_start"),
        Index("ix_maintenance_windows_device_id_ends_at", "device_id", "ends_at"),
        Index("ix_maintenance_windows_district_code_ends_at", "district_code", "ends_at"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    device_id: Mapped[str | None] = mapped_column(String(64))
    district_code: Mapped[str | None] = mapped_column(String(12))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime())
    reason: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Case(Base):
    """A digital urban-management case (案卷) per GB/T 30428: filed, dispatched, handled, closed."""

    __tablename__ = "cases"
    __table_args__ = (
        _one_of("source", CaseSource),
        Index("ix_cases_district_code_filed_at", "district_code", "filed_at"),
        Index("ix_cases_source_source_ref", "source", "source_ref"),
        Index("ix_cases_department_state", "department", "state"),
        # The open-case and today's-intake counts of every page refresh, from the indexes
        # alone (migration 0008).
        Index("ix_cases_state_district_code", "state", "district_code"),
        Index("ix_cases_reported_at", "reported_at", postgresql_include=["filed_at", "district_code"]),
        Index("ix_cases_due_at", "due_at"),
        Index("ix_cases_close_due", "close_due"),
        Index(
            "ix_cases_source_ref_case_type_last_evidence_at", "source_ref", "case_type", "last_evidence_at"
        ),
        _gist("cases"),
    )

    case_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    source: Mapped[str] = mapped_column(String(16))
    source_ref: Mapped[str | None] = mapped_column(String(64))
    # GB/T 30428.2: 部件 (components) or 事件 (events), then the standard's subcategory code.
    category: Mapped[str] = mapped_column(String(64))
    subcategory: Mapped[str | None] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(24))
    department: Mapped[str | None] = mapped_column(String(64))
    district_code: Mapped[str | None] = mapped_column(String(12))
    grid_id: Mapped[str | None] = mapped_column(String(20), index=True)
    lon: Mapped[float | None] = mapped_column(Float)
    lat: Mapped[float | None] = mapped_column(Float)
    geom: Mapped[BaseGeometry | None] = mapped_column(GeometryType("POINT"))
    reporter: Mapped[str | None] = mapped_column(String(64))
    #: 立案: None while the case is only reported (信息收集) or was not filed.
    filed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: 处置 deadline (set at 派遣 from the case type); ``close_due`` is the 结案 deadline.
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    props: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # Added by 0004 (models.cases): the lifecycle's milestones, deadlines and counts.
    case_type: Mapped[str | None] = mapped_column(String(32))
    reported_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    handling_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reported_back_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    evaluated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    close_due: Mapped[datetime | None] = mapped_column(UTCDateTime())
    evaluation: Mapped[str | None] = mapped_column(String(16))
    extension_count: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    return_count: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    rework_count: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    evidence_count: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))
    last_evidence_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))


class CaseEvent(Base):
    """One step in a case's history; ``event_id`` (a video event's id) keeps replays idempotent."""

    __tablename__ = "case_events"
    __table_args__ = (Index("ix_case_events_case_id_ts", "case_id", "ts"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.case_id"))
    event_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    ts: Mapped[datetime] = mapped_column(UTCDateTime())
    action: Mapped[str] = mapped_column(String(32))
    from_state: Mapped[str | None] = mapped_column(String(24))
    to_state: Mapped[str | None] = mapped_column(String(24))
    actor: Mapped[str | None] = mapped_column(String(64))
    comment: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    address: Mapped[str | None] = mapped_column(String(64))


class IncidentSource(enum.StrEnum):
    """How an emergency incident was opened (接报)."""

    MANUAL = "manual"
    ALERT = "alert"
    CORRELATION = "correlation"


class IncidentLinkKind(enum.StrEnum):
    """What an incident keeps linked to it."""

    ALERT = "alert"
    TICKET = "ticket"
    CASE = "case"


class Incident(Base):
    """An emergency incident under command (flood, fire, landslide, hazardous release …).

    The lifecycle (接报 → 响应 → 调度 → 处置 → 评估 → 关闭) lives in :mod:`models.incidents`.
    ``source_alert_id`` is unique: one incident per alert (per correlation episode), so two
    workers seeing the same correlation alert open one incident.
    """

    __tablename__ = "incidents"
    __table_args__ = (
        CheckConstraint("radius_m IS NULL OR radius_m >= 0", name="radius_m_positive"),
        _one_of("source", IncidentSource),
        Index("ix_incidents_district_code_reported_at", "district_code", "reported_at"),
        Index("uq_incidents_source_alert_id", "source_alert_id", unique=True),
        _gist("incidents"),
        _gist("incidents", "area"),
    )

    incident_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    type: Mapped[str] = mapped_column(String(32))
    # Response level Ⅰ–Ⅳ (特别重大/重大/较大/一般) as "I" … "IV"; None until 响应.
    level: Mapped[str | None] = mapped_column(String(8))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(24), index=True)
    reported_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    district_code: Mapped[str | None] = mapped_column(String(12))
    grid_id: Mapped[str | None] = mapped_column(String(20), index=True)
    lon: Mapped[float | None] = mapped_column(Float)
    lat: Mapped[float | None] = mapped_column(Float)
    geom: Mapped[BaseGeometry | None] = mapped_column(GeometryType("POINT"))
    radius_m: Mapped[float | None] = mapped_column(Float)
    commander: Mapped[str | None] = mapped_column(String(64))
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    props: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # Added by 0005 (models.incidents): source, lifecycle milestones, the affected area.
    source: Mapped[str] = mapped_column(String(16), default="manual", server_default=text("'manual'"))
    source_alert_id: Mapped[int | None] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"))
    #: The affected area: a geodesic circle of ``radius_m`` around the point, or a drawn polygon.
    area: Mapped[BaseGeometry | None] = mapped_column(GeometryType("POLYGON"))
    area_kind: Mapped[str | None] = mapped_column(String(8))
    responding_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    dispatching_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    handling_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    assessing_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: 评估结论, written at 关闭.
    assessment: Mapped[str | None] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))


class IncidentEvent(Base):
    """One step on an incident's timeline: every transition, level change, dispatch,
    resource arrival and release, link and warning draft, with who, when and a note."""

    __tablename__ = "incident_events"
    __table_args__ = (Index("ix_incident_events_incident_id_ts", "incident_id", "ts"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.incident_id"))
    ts: Mapped[datetime] = mapped_column(UTCDateTime())
    action: Mapped[str] = mapped_column(String(32))
    from_state: Mapped[str | None] = mapped_column(String(24))
    to_state: Mapped[str | None] = mapped_column(String(24))
    actor: Mapped[str | None] = mapped_column(String(64))
    comment: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    address: Mapped[str | None] = mapped_column(String(64))


class IncidentResource(Base):
    """A resource dispatched to an incident, with its own status (dispatched → arrived → released).

    ``resource_id`` has no foreign key: reference data is re-seeded at start-up, and the
    record of who went where must outlive a renamed station; ``kind`` and ``name`` are kept
    as they were at dispatch. While not released, a resource is on an incident once.
    """

    __tablename__ = "incident_resources"
    __table_args__ = (
        Index("ix_incident_resources_incident_id", "incident_id"),
        Index(
            "uq_incident_resources_incident_id_resource_id_active",
            "incident_id",
            "resource_id",
            unique=True,
            postgresql_where=text("released_at IS NULL"),
            sqlite_where=text("released_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.incident_id"))
    resource_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(24))
    name: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))
    distance_m: Mapped[float | None] = mapped_column(Float)
    eta_s: Mapped[float | None] = mapped_column(Float)
    dispatched_by: Mapped[str | None] = mapped_column(String(64))
    dispatched_at: Mapped[datetime] = mapped_column(UTCDateTime())
    arrived_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))


class IncidentLink(Base):
    """An alert, 12345 ticket or urban case linked to an incident; each belongs to one incident."""

    __tablename__ = "incident_links"
    __table_args__ = (
        _one_of("kind", IncidentLinkKind),
        Index("uq_incident_links_kind_ref_id", "kind", "ref_id", unique=True),
        Index("ix_incident_links_incident_id", "incident_id"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.incident_id"))
    kind: Mapped[str] = mapped_column(String(8))
    ref_id: Mapped[str] = mapped_column(String(64))
    linked_at: Mapped[datetime] = mapped_column(UTCDateTime())
    linked_by: Mapped[str | None] = mapped_column(String(64))


class IncidentWarning(Base):
    """A public warning drafted from an incident (预警信息草稿), complete for CAP 1.2.

    ``draft`` holds every field of :class:`models.incidents.WarningDraft`; colour and the
    CAP severity/urgency/certainty are columns too, for lists. Drafts are kept, not
    overwritten: the newest is the current one.
    """

    __tablename__ = "incident_warnings"
    __table_args__ = (
        _one_of("colour", WarningColour),
        Index("ix_incident_warnings_incident_id_drafted_at", "incident_id", "drafted_at"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.incident_id"))
    drafted_at: Mapped[datetime] = mapped_column(UTCDateTime())
    drafted_by: Mapped[str] = mapped_column(String(64))
    colour: Mapped[str] = mapped_column(String(8))
    severity: Mapped[str] = mapped_column(String(16))
    urgency: Mapped[str] = mapped_column(String(16))
    certainty: Mapped[str] = mapped_column(String(16))
    draft: Mapped[dict[str, Any]] = mapped_column(JSONType)


class Resource(Base):
    """An emergency resource on the map: fire station, hospital, shelter, warehouse …"""

    __tablename__ = "resources"
    __table_args__ = (
        CheckConstraint("capacity IS NULL OR capacity >= 0", name="capacity_positive"),
        _gist("resources"),
    )

    resource_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(24), index=True)
    name: Mapped[str] = mapped_column(String(128))
    district_code: Mapped[str | None] = mapped_column(String(12), index=True)
    lon: Mapped[float] = mapped_column(Float)
    lat: Mapped[float] = mapped_column(Float)
    geom: Mapped[BaseGeometry] = mapped_column(GeometryType("POINT"))
    capacity: Mapped[int | None] = mapped_column(Integer)
    phone: Mapped[str | None] = mapped_column(String(32))
    props: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


class User(Base):
    """A person who signs in; ``district_code`` limits a leader or operator to one district."""

    __tablename__ = "users"
    __table_args__ = (_one_of("role", Role),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(128))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    district_code: Mapped[str | None] = mapped_column(String(12))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: A kiosk account (a wall screen) may open only this page, e.g. ``/wall``.
    kiosk_path: Mapped[str | None] = mapped_column(String(128))


class UserSession(Base):
    """One sign-in: the signed cookie carries ``id``; ending it (logout, disable) makes a
    replayed cookie worthless. Idle time is measured from ``last_seen_at``."""

    __tablename__ = "user_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    address: Mapped[str | None] = mapped_column(String(64))


class LoginThrottle(Base):
    """Failed sign-ins per account (``user:<name>``) and per address (``addr:<ip>``)."""

    __tablename__ = "login_throttle"

    key: Mapped[str] = mapped_column(String(160), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    first_failure_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_failure_at: Mapped[datetime] = mapped_column(UTCDateTime())
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AuditLog(Base):
    """Who did what to which record, with before/after images. Append-only.

    Database triggers (PostgreSQL and SQLite) reject UPDATE and DELETE, so the trail holds
    even against code that bypasses the domain services.
    """

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_entity_type_entity_id_ts", "entity_type", "entity_id", "ts"),
        Index("ix_audit_log_actor_ts", "actor", "ts"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    ts: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(64))
    address: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    entity_type: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[str | None] = mapped_column(String(64))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


#: Dead-letter payloads are cut to this many bytes: enough to diagnose, too little to fill
#: the disk when a device floods the broker with huge messages.
DEAD_LETTER_PAYLOAD_LIMIT = 16 * 1024


class DeadLetter(Base):
    """A message that could not be processed, kept for diagnosis."""

    __tablename__ = "dead_letters"
    __table_args__ = (Index("ix_dead_letters_reason_received_at", "reason", "received_at"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    topic: Mapped[str] = mapped_column(String(256))
    reason: Mapped[str] = mapped_column(String(64))
    payload: Mapped[bytes | None] = mapped_column(LargeBinary)
    payload_size: Mapped[int] = mapped_column(Integer)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSONType)

    @classmethod
    def from_message(
        cls, topic: str, reason: str, payload: bytes, detail: dict[str, Any] | None = None
    ) -> DeadLetter:
        """Build a row, keeping at most :data:`DEAD_LETTER_PAYLOAD_LIMIT` bytes of the payload."""
        return cls(
            topic=topic[:256],
            reason=reason[:64],
            payload=bytes(payload[:DEAD_LETTER_PAYLOAD_LIMIT]),
            payload_size=len(payload),
            detail=detail,
            received_at=utcnow(),
        )


# --------------------------------------------------------------------------------------------
# Append-only audit log. The same statements are written out in the initial migration; these
# listeners make metadata.create_all() (used by quick tests) build the same protection.

AUDIT_APPEND_ONLY_MESSAGE = "audit_log is append-only"

_PG_AUDIT_FUNCTION = f"""
CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '{AUDIT_APPEND_ONLY_MESSAGE}: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$
"""
_PG_AUDIT_TRIGGERS = (
    "CREATE TRIGGER audit_log_no_update_delete BEFORE UPDATE OR DELETE ON audit_log "
    "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()",
    "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()",
)
_SQLITE_AUDIT_TRIGGERS = tuple(
    f"CREATE TRIGGER audit_log_no_{op.lower()} BEFORE {op} ON audit_log "
    f"BEGIN SELECT RAISE(ABORT, '{AUDIT_APPEND_ONLY_MESSAGE}: {op} is not allowed'); END"
    for op in ("UPDATE", "DELETE")
)

for _statement in (_PG_AUDIT_FUNCTION, *_PG_AUDIT_TRIGGERS):
    event.listen(AuditLog.__table__, "after_create", DDL(_statement).execute_if(dialect="postgresql"))
for _statement in _SQLITE_AUDIT_TRIGGERS:
    event.listen(AuditLog.__table__, "after_create", DDL(_statement).execute_if(dialect="sqlite"))
event.listen(
    AuditLog.__table__,
    "after_drop",
    DDL("DROP FUNCTION IF EXISTS audit_log_append_only()").execute_if(dialect="postgresql"),
)

metadata = Base.metadata

__all__ = [
    "DEAD_LETTER_PAYLOAD_LIMIT",
    "SRID",
    "WARNING_COLOURS",
    "Alert",
    "AlertDomain",
    "AlertEvent",
    "AuditLog",
    "Base",
    "Case",
    "CaseEvent",
    "CaseSource",
    "DeadLetter",
    "Device",
    "DeviceKind",
    "District",
    "GeometryType",
    "GridCell",
    "HotlineTicket",
    "Incident",
    "IncidentEvent",
    "IncidentLink",
    "IncidentLinkKind",
    "IncidentResource",
    "IncidentSource",
    "IncidentWarning",
    "JSONType",
    "LoginThrottle",
    "MaintenanceWindow",
    "Observation",
    "ObservationHourly",
    "Resource",
    "Role",
    "Severity",
    "TicketEvent",
    "UTCDateTime",
    "User",
    "UserSession",
    "VideoEvent",
    "WarningColour",
    "dialect_of",
    "include_in_comparison",
    "metadata",
    "utcnow",
]
