"""Database engines, health checks, migrations and the observation write path.

The same functions serve PostgreSQL + PostGIS (production) and SQLite (the embedded default):
callers pass a URL and never branch on the backend themselves.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from models.schema import Observation, ObservationHourly

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# PostgreSQL pool: each web or ingest process holds at most POOL_SIZE + MAX_OVERFLOW
# connections. Small on purpose: several gunicorn workers and ingest workers share one
# server whose default max_connections is 100.
POOL_SIZE = 5
MAX_OVERFLOW = 5
# Recycle before typical firewall/NAT idle timeouts silently drop a connection.
POOL_RECYCLE_S = 1800
CONNECT_TIMEOUT_S = 5
# How long a SQLite writer waits for another writer (ingest and web share the file)
# before failing with "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 10_000


class DatabaseUnavailable(Exception):
    """The database cannot be used; the message is one line with the place and a hint."""


# --------------------------------------------------------------------------------------------
# Engines


def create_engine_for(url: str, *, pre_ping: bool = True) -> Engine:
    """An engine tuned for the backend named by ``url`` (SQLite file or PostgreSQL).

    ``pre_ping`` tests a pooled connection with a round trip before each use. Callers that
    retry a failed transaction anyway (ingest's stages) can leave it out: a connection the
    server dropped fails its first statement, the pool discards every connection of that
    generation, and the retry gets a new one.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed)
    if parsed.get_backend_name() == "postgresql":
        return sa.create_engine(
            parsed,
            pool_pre_ping=pre_ping,
            pool_size=POOL_SIZE,
            max_overflow=MAX_OVERFLOW,
            pool_recycle=POOL_RECYCLE_S,
            connect_args={"connect_timeout": CONNECT_TIMEOUT_S, "application_name": "cityops"},
        )
    raise DatabaseUnavailable(
        f"unsupported database {parsed.get_backend_name()!r} — use postgresql+psycopg:// or sqlite:///"
    )


def _sqlite_engine(url: URL) -> Engine:
    database = url.database or ""
    in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
    if not in_memory:
        folder = Path(database).expanduser().parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseUnavailable(
                f"cannot create the folder {folder} for the SQLite database ({exc.strerror or exc}) — "
                "check CITYOPS_DATA_DIR"
            ) from exc
    engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin: the module
        # would otherwise commit before every DDL statement, so a failed migration could
        # leave half a schema behind.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            if not in_memory:
                # WAL lets the dashboards read while ingest writes.
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if isinstance(conn, _SQLiteConnection) and conn.reading:
            # A read (a transaction nobody asked for): WAL lets it run beside a writer, so
            # it must not queue for the write lock behind ingest's batches.
            conn.exec_driver_sql("BEGIN")
            return
        # IMMEDIATE takes the write lock up front. With a plain (deferred) BEGIN, a
        # transaction that reads and then writes fails at once with "database is locked"
        # when another writer committed in between — busy_timeout cannot help there. Taken
        # up front, the lock is simply waited for (busy_timeout) and the work goes through.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    engine._connection_cls = _SQLiteConnection
    return engine


class _SQLiteConnection(Connection):
    """A connection that tells the transaction it starts by itself (``engine.connect()``
    and a first statement: the code only reads) from one asked for with ``begin()``
    (``engine.begin()``, the only way this code base writes)."""

    reading = False

    def _autobegin(self) -> None:
        self.reading = True
        try:
            super()._autobegin()
        finally:
            self.reading = False


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions bound to ``engine``; objects stay readable after commit (Dash callbacks use them)."""
    return sessionmaker(bind=engine, expire_on_commit=False)


def is_postgis(engine: Engine | Connection) -> bool:
    """True when the database is PostgreSQL with the PostGIS extension enabled."""
    if engine.dialect.name != "postgresql":
        return False
    query = sa.text("SELECT 1 FROM pg_extension WHERE extname = 'postgis'")
    if isinstance(engine, Connection):
        return engine.execute(query).first() is not None
    with engine.connect() as conn:
        return conn.execute(query).first() is not None


# --------------------------------------------------------------------------------------------
# Health check


def describe_location(url: URL) -> str:
    """``host:port/db`` for PostgreSQL, the file path for SQLite; never the password."""
    if url.get_backend_name() == "sqlite":
        return url.database or ":memory:"
    host = url.host or url.query.get("host") or "localhost"
    return f"{host}:{url.port or 5432}/{url.database or ''}"


def check_database(engine: Engine, *, require_postgis: bool = True) -> None:
    """Connect once and raise :class:`DatabaseUnavailable` with a one-line reason if unusable.

    On PostgreSQL, PostGIS must be enabled or at least installed on the server (the first
    ``upgrade_database`` enables it), unless ``require_postgis`` is False.
    """
    where = describe_location(engine.url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
            if engine.dialect.name == "postgresql" and require_postgis:
                _check_postgis(conn, where)
    except DatabaseUnavailable:
        raise
    except sa.exc.DBAPIError as exc:
        raise DatabaseUnavailable(_explain(engine.url, where, exc)) from exc
    except Exception as exc:  # a driver bug or an odd URL still deserves one readable line
        raise DatabaseUnavailable(
            f"cannot use the database at {where} ({_first_line(exc)}) — check CITYOPS_DATABASE_URL"
        ) from exc


def _check_postgis(conn: Connection, where: str) -> None:
    installed = conn.execute(sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'postgis'")).first()
    if installed:
        return
    major = int(conn.execute(sa.text("SHOW server_version_num")).scalar_one()) // 10000
    raise DatabaseUnavailable(
        f"PostgreSQL at {where} has no PostGIS — install postgresql-{major}-postgis-3 on the "
        "database server, then CREATE EXTENSION postgis (cityops db upgrade does it)"
    )


def _first_line(exc: BaseException) -> str:
    original = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(original).splitlines() if line.strip()]
    return lines[0] if lines else type(original).__name__


def _explain(url: URL, where: str, exc: sa.exc.DBAPIError) -> str:
    if url.get_backend_name() == "sqlite":
        return (
            f"cannot open SQLite database {where} ({_first_line(exc)}) — check CITYOPS_DATA_DIR is writable"
        )
    text = str(exc.orig or exc).lower()
    if "password authentication failed" in text or "no password supplied" in text:
        return (
            f"PostgreSQL at {where} refused the login of user {url.username!r} "
            "(authentication failed) — check user and password in CITYOPS_DATABASE_URL"
        )
    if "does not exist" in text and "database" in text:
        return (
            f"database {url.database!r} does not exist at {where} — create it "
            f"(createdb {url.database}) or fix CITYOPS_DATABASE_URL"
        )
    if "connection refused" in text:
        reason = "connection refused"
    elif "timeout" in text or "timed out" in text:
        reason = "timed out"
    elif "could not translate host name" in text or "name or service not known" in text:
        reason = "unknown host"
    else:
        reason = _first_line(exc)
    # psycopg repeats the message per address tried; one line is what an operator needs.
    return f"cannot reach PostgreSQL at {where} ({reason}) — is it running? check CITYOPS_DATABASE_URL"


# --------------------------------------------------------------------------------------------
# Migrations


def alembic_config(url: str | None = None, connection: Connection | None = None) -> Any:
    """An Alembic ``Config`` for the bundled migrations, independent of the working directory."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        config.attributes["url"] = url
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade_database(url: str, revision: str = "head") -> None:
    """Bring the schema at ``url`` up to ``revision`` (``cityops db upgrade``).

    All steps run in one transaction on both backends: a failure leaves the database as it
    was. Raises :class:`DatabaseUnavailable` when the database cannot be reached.
    """
    from alembic import command

    parsed = make_url(url)
    sqlite_file: Path | None = None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        sqlite_file = Path(parsed.database).expanduser()
    created_file = sqlite_file is not None and not sqlite_file.exists()

    engine = create_engine_for(url)
    try:
        check_database(engine)
        with engine.connect() as conn:
            try:
                conn.begin()  # asked for: on SQLite the write lock is taken up front
                command.upgrade(alembic_config(url, conn), revision)
                conn.commit()
            except sa.exc.DBAPIError as exc:
                conn.rollback()
                if engine.dialect.name == "postgresql" and not is_postgis(conn):
                    where = describe_location(engine.url)
                    raise DatabaseUnavailable(
                        f"could not enable PostGIS in {where} ({_first_line(exc)}) — ask a database "
                        "superuser to run CREATE EXTENSION postgis there, then retry"
                    ) from exc
                raise
    except Exception:
        engine.dispose()
        if created_file and sqlite_file is not None:
            # A brand-new file that holds no schema is worse than no file: it hides the failure.
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{sqlite_file}{suffix}").unlink(missing_ok=True)
        raise
    engine.dispose()


def head_revision() -> str | None:
    """The newest migration shipped with this code."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine | Connection) -> str | None:
    """The migration the database is at, or None when it has never been migrated."""
    from alembic.runtime.migration import MigrationContext

    if isinstance(engine, Connection):
        return MigrationContext.configure(engine).get_current_revision()
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


# --------------------------------------------------------------------------------------------
# Observations and the hourly roll-up


@dataclass(frozen=True, slots=True)
class HourlyDelta:
    """The contribution of a batch of observations to one (device, metric, hour) bucket."""

    device_id: str
    metric: str
    hour: datetime
    district_code: str | None
    grid_id: str | None
    count: int
    sum: float
    min: float
    max: float
    last_ts: datetime
    last_value: float


def hourly_deltas(observations: Iterable[Mapping[str, Any]]) -> list[HourlyDelta]:
    """Fold observation rows (device_id, ts, metrics, district_code, grid_id) into hourly buckets.

    Only finite numeric metric values count; text states and booleans are not aggregated.
    """
    buckets: dict[tuple[str, str, datetime], dict[str, Any]] = {}
    for row in observations:
        ts: datetime = row["ts"].astimezone(UTC)
        hour = ts.replace(minute=0, second=0, microsecond=0)
        for metric, value in (row.get("metrics") or {}).items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            value = float(value)
            if not math.isfinite(value):
                continue
            key = (row["device_id"], metric, hour)
            bucket = buckets.get(key)
            if bucket is None:
                buckets[key] = {
                    "district_code": row.get("district_code"),
                    "grid_id": row.get("grid_id"),
                    "count": 1,
                    "sum": value,
                    "min": value,
                    "max": value,
                    "last_ts": ts,
                    "last_value": value,
                }
                continue
            bucket["count"] += 1
            bucket["sum"] += value
            bucket["min"] = min(bucket["min"], value)
            bucket["max"] = max(bucket["max"], value)
            if ts >= bucket["last_ts"]:
                # The newest reading also says where a (movable) device is, as in the upsert.
                bucket.update(
                    last_ts=ts,
                    last_value=value,
                    district_code=row.get("district_code"),
                    grid_id=row.get("grid_id"),
                )
    return [HourlyDelta(device_id=d, metric=m, hour=h, **b) for (d, m, h), b in buckets.items()]


def dialect_insert(conn: Connection, table: sa.Table) -> Any:
    """An INSERT with ON CONFLICT support for the connection's backend (PostgreSQL or SQLite)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - only the two supported backends
        raise NotImplementedError(conn.dialect.name)
    return insert(table)


def rollup_upsert_statement(conn: Connection) -> Any:
    """INSERT … ON CONFLICT DO UPDATE that merges an :class:`HourlyDelta` into its bucket."""
    table = ObservationHourly.__table__
    stmt = dialect_insert(conn, table)
    new = stmt.excluded
    # PostgreSQL spells the two-argument minimum LEAST; SQLite's min() is scalar with 2 args.
    least, greatest = (
        (sa.func.least, sa.func.greatest) if conn.dialect.name == "postgresql" else (sa.func.min, sa.func.max)
    )
    newer = new.last_ts >= table.c.last_ts
    return stmt.on_conflict_do_update(
        index_elements=[table.c.device_id, table.c.metric, table.c.hour],
        set_={
            "count": table.c.count + new.count,
            "sum": table.c.sum + new.sum,
            "min": least(table.c.min, new.min),
            "max": greatest(table.c.max, new.max),
            "last_ts": sa.case((newer, new.last_ts), else_=table.c.last_ts),
            "last_value": sa.case((newer, new.last_value), else_=table.c.last_value),
            # The newest reading says where a (movable) device is now.
            "district_code": sa.case((newer, new.district_code), else_=table.c.district_code),
            "grid_id": sa.case((newer, new.grid_id), else_=table.c.grid_id),
        },
    )


def upsert_hourly(conn: Connection, rows: Sequence[HourlyDelta | Mapping[str, Any]]) -> int:
    """Merge hourly deltas into ``observation_hourly``; returns the number of buckets touched."""
    if not rows:
        return 0
    params = [
        {f: getattr(r, f) for f in HourlyDelta.__slots__} if isinstance(r, HourlyDelta) else dict(r)
        for r in rows
    ]
    if conn.dialect.name == "postgresql" and _unique_buckets(params):
        # One statement over arrays instead of one execution per bucket: a batch touches
        # hundreds of buckets, and per-row statements cost a server round of parse, plan and
        # execute each. Only without repeated buckets (hourly_deltas never repeats one):
        # ON CONFLICT cannot touch the same row twice in one statement.
        # In key order: workers sharing the feed update the same buckets, and rows locked in
        # different orders by concurrent transactions deadlock; one order for all cannot.
        params.sort(key=lambda p: (p["device_id"], p["metric"], p["hour"]))
        conn.exec_driver_sql(_PG_HOURLY_UPSERT, _columns(params, _HOURLY_COLUMNS))
        return len(params)
    # One bucket per statement row: ON CONFLICT cannot touch the same row twice in one statement.
    conn.execute(rollup_upsert_statement(conn), params)
    return len(params)


_HOURLY_COLUMNS = (
    ("device_id", "text"),
    ("metric", "text"),
    ("hour", "timestamptz"),
    ("district_code", "text"),
    ("grid_id", "text"),
    ("count", "integer"),
    ("sum", "float8"),
    ("min", "float8"),
    ("max", "float8"),
    ("last_ts", "timestamptz"),
    ("last_value", "float8"),
)


def _pg_hourly_upsert() -> str:
    """The PostgreSQL twin of :func:`rollup_upsert_statement`, reading its rows from arrays."""
    table = ObservationHourly.__table__.name
    names = ", ".join(f'"{c}"' for c, _ in _HOURLY_COLUMNS)
    arrays = ", ".join(f"%b::{t}[]" for _, t in _HOURLY_COLUMNS)
    newer = "EXCLUDED.last_ts >= t.last_ts"
    return (
        f'INSERT INTO "{table}" AS t ({names}) SELECT * FROM unnest({arrays}) '
        'ON CONFLICT (device_id, metric, "hour") DO UPDATE SET '
        '"count" = t."count" + EXCLUDED."count", "sum" = t."sum" + EXCLUDED."sum", '
        '"min" = LEAST(t."min", EXCLUDED."min"), "max" = GREATEST(t."max", EXCLUDED."max"), '
        f"last_ts = CASE WHEN {newer} THEN EXCLUDED.last_ts ELSE t.last_ts END, "
        f"last_value = CASE WHEN {newer} THEN EXCLUDED.last_value ELSE t.last_value END, "
        f"district_code = CASE WHEN {newer} THEN EXCLUDED.district_code ELSE t.district_code END, "
        f"grid_id = CASE WHEN {newer} THEN EXCLUDED.grid_id ELSE t.grid_id END"
    )


_PG_HOURLY_UPSERT = _pg_hourly_upsert()


def _unique_buckets(params: Sequence[Mapping[str, Any]]) -> bool:
    return len({(p["device_id"], p["metric"], p["hour"]) for p in params}) == len(params)


def _columns(
    params: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str]]
) -> tuple[list[Any], ...]:
    """Row dicts as one list per column: psycopg sends each list as one array parameter.

    The statements take the arrays in binary (``%b``): about five times cheaper to encode
    than text arrays, which cost more than the rest of the write. Binary arrays must hold one
    Python type, so numbers are made float or int as the column needs.
    """
    out = []
    for name, sql_type in columns:
        convert = _CONVERT.get(sql_type)
        values = [p.get(name) for p in params]
        if convert is not None:
            values = [None if v is None else convert(v) for v in values]
        out.append(values)
    return tuple(out)


_CONVERT: dict[str, Callable[[Any], Any]] = {"float8": float, "integer": int}


def _utc(value: datetime) -> datetime:
    """What the ``UTCDateTime`` column type binds, for statements that bypass it: aware, in UTC."""
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()} refused: give it a time zone")
    return value.astimezone(UTC)


def insert_new(
    conn: Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]], key: Sequence[str]
) -> list[dict[str, Any]]:
    """Insert rows, skipping those that conflict with a unique key; return the rows that were new.

    ``key`` names the columns that identify a row (returned by the INSERT), so the caller
    learns exactly which of its rows were stored and which were duplicates.
    """
    if not rows:
        return []
    # The same key twice in one call (a redelivery next to the original) is one row.
    unique = list({tuple(r[k] for k in key): r for r in reversed(rows)}.values())[::-1]
    stmt = dialect_insert(conn, table).on_conflict_do_nothing().returning(*(table.c[k] for k in key))
    fresh = {tuple(row) for row in conn.execute(stmt, unique)}
    return [dict(r) for r in unique if tuple(r[k] for k in key) in fresh]


def record_observations(conn: Connection, observations: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Insert observations, skipping ones already stored, and roll the new ones up hourly.

    Each mapping has ``device_id``, ``ts``, ``metrics`` and optionally ``received_at``,
    ``msg_id``, ``district_code``, ``grid_id``. Duplicates (same device and ts, or same
    msg_id) are skipped, and only rows actually inserted reach the roll-up, so a redelivered
    MQTT batch changes nothing. Runs in the caller's transaction; returns the given mappings
    whose rows were inserted. On PostgreSQL it is a single statement, atomic on its own, so
    a caller with nothing else to write may run it in autocommit (ingest does).
    """
    if not observations:
        return []
    table = Observation.__table__
    from models.schema import utcnow

    now = utcnow()
    if conn.dialect.name == "postgresql":
        # The same statement also folds the new rows into the hourly roll-up.
        fresh = _pg_insert_observations(conn, observations, now)
        # Hand back the caller's own mappings (they may carry more than the columns, e.g. the
        # device type and derived indices the rules need), only those that were new.
        if fresh is None:
            return list(observations)  # type: ignore[arg-type]
        return [o for i, o in enumerate(observations) if i in fresh]  # type: ignore[misc]
    params = [
        {
            "device_id": o["device_id"],
            "ts": o["ts"],
            "received_at": o.get("received_at") or now,
            "metrics": o["metrics"],
            "msg_id": o.get("msg_id"),
            "district_code": o.get("district_code"),
            "grid_id": o.get("grid_id"),
        }
        for o in observations
    ]
    stmt = dialect_insert(conn, table).on_conflict_do_nothing().returning(table.c.device_id, table.c.ts)
    new_keys = {(row.device_id, row.ts) for row in conn.execute(stmt, params)}
    inserted = [o for o, p in zip(observations, params, strict=True) if (p["device_id"], p["ts"]) in new_keys]
    upsert_hourly(conn, hourly_deltas(inserted))  # type: ignore[arg-type]
    return inserted  # type: ignore[return-value]


_OBSERVATION_COLUMNS = (
    ("device_id", "text"),
    ("ts", "timestamptz"),
    ("received_at", "timestamptz"),
    ("metrics", "jsonb"),
    ("msg_id", "text"),
    ("district_code", "text"),
    ("grid_id", "text"),
)


def _pg_insert_observations_sql() -> str:
    """Insert observations from arrays and roll the rows actually inserted up hourly, in one statement.

    The roll-up is :func:`hourly_deltas` + :func:`upsert_hourly` done by the server: the
    rows the INSERT returns (duplicates are not returned, so a redelivered batch changes
    nothing) are split into their numeric metrics, grouped by (device, metric, UTC hour)
    and merged into ``observation_hourly`` with the same ON CONFLICT rule, in key order
    (see :func:`upsert_hourly` on deadlocks). Booleans and text states are not numbers in
    jsonb and are left out, as there; jsonb cannot hold NaN or infinities.
    """
    table = Observation.__table__.name
    hourly = ObservationHourly.__table__.name
    names = ", ".join(c for c, _ in _OBSERVATION_COLUMNS)
    # jsonb arrives as text[] and is cast per element: psycopg has no jsonb[] dumper for str.
    # Binary parameters (%b): see _columns.
    arrays = ", ".join(f"%b::{'text' if t == 'jsonb' else t}[]" for _, t in _OBSERVATION_COLUMNS)
    select = ", ".join(f"{c}::jsonb" if t == "jsonb" else c for c, t in _OBSERVATION_COLUMNS)
    hourly_names = ", ".join(f'"{c}"' for c, _ in _HOURLY_COLUMNS)
    newer = "EXCLUDED.last_ts >= t.last_ts"
    return (
        # u numbers the given rows (n, from 1), so the statement can answer which were new
        # with one integer array instead of a row per reading for the client to match up.
        f"WITH u AS (SELECT * FROM unnest({arrays}) WITH ORDINALITY AS u({names}, n)), "
        f"new AS ("
        f'INSERT INTO "{table}" ({names}) SELECT {select} FROM u '
        "ON CONFLICT DO NOTHING RETURNING device_id, ts, metrics, district_code, grid_id"
        "), v AS ("
        "SELECT new.device_id, m.key AS metric, date_trunc('hour', new.ts, 'UTC') AS hour, new.ts, "
        "(m.value)::float8 AS value, new.district_code, new.grid_id "
        "FROM new CROSS JOIN LATERAL jsonb_each(new.metrics) AS m WHERE jsonb_typeof(m.value) = 'number'"
        "), rolled AS ("
        f'INSERT INTO "{hourly}" AS t ({hourly_names}) '
        # One sort for the whole batch: the bucket's totals over its partition, and its newest
        # reading (ts is unique per device) as the row DISTINCT ON keeps. Ordered aggregates
        # (array_agg(… ORDER BY ts DESC)) sorted every bucket anew, three times, and were a
        # quarter of the statement's time.
        "SELECT DISTINCT ON (device_id, metric, hour) device_id, metric, hour, district_code, grid_id, "
        "count(*) OVER b, sum(value) OVER b, min(value) OVER b, max(value) OVER b, ts, value "
        "FROM v WINDOW b AS (PARTITION BY device_id, metric, hour ORDER BY ts DESC "
        "ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) "
        "ORDER BY device_id, metric, hour, ts DESC "
        'ON CONFLICT (device_id, metric, "hour") DO UPDATE SET '
        '"count" = t."count" + EXCLUDED."count", "sum" = t."sum" + EXCLUDED."sum", '
        '"min" = LEAST(t."min", EXCLUDED."min"), "max" = GREATEST(t."max", EXCLUDED."max"), '
        f"last_ts = CASE WHEN {newer} THEN EXCLUDED.last_ts ELSE t.last_ts END, "
        f"last_value = CASE WHEN {newer} THEN EXCLUDED.last_value ELSE t.last_value END, "
        f"district_code = CASE WHEN {newer} THEN EXCLUDED.district_code ELSE t.district_code END, "
        f"grid_id = CASE WHEN {newer} THEN EXCLUDED.grid_id ELSE t.grid_id END"
        ") SELECT array_agg(u.n) FROM new JOIN u ON u.device_id = new.device_id AND u.ts = new.ts"
    )


_PG_INSERT_OBSERVATIONS = _pg_insert_observations_sql()


def _pg_insert_observations(
    conn: Connection, observations: Sequence[Mapping[str, Any]], now: datetime
) -> set[int] | None:
    """Insert observation rows in one statement over arrays; the indexes of the new ones
    (into ``observations``), or None when every one was new (the usual case).

    Same rows and conflict handling as the SQLAlchemy executemany (ON CONFLICT DO NOTHING on
    both unique keys), but the driver sends seven array parameters instead of binding,
    type-processing and rendering each row, which was most of the write cost per message.
    Two given rows with the same device and ts are one row: both count as new if it was.
    """
    serialize = conn.dialect._json_serializer or _json_text  # type: ignore[attr-defined]
    # One list per column, built directly (no row dicts in between): this runs per message.
    columns = {
        "device_id": [o["device_id"] for o in observations],
        "ts": [_utc(o["ts"]) for o in observations],
        "received_at": [_utc(o.get("received_at") or now) for o in observations],
        "metrics": [None if o["metrics"] is None else serialize(o["metrics"]) for o in observations],
        "msg_id": [o.get("msg_id") for o in observations],
        "district_code": [o.get("district_code") for o in observations],
        "grid_id": [o.get("grid_id") for o in observations],
    }
    numbers = conn.exec_driver_sql(
        _PG_INSERT_OBSERVATIONS, tuple(columns[name] for name, _ in _OBSERVATION_COLUMNS)
    ).scalar_one()
    if numbers is not None and len(numbers) == len(observations):
        return None
    return {n - 1 for n in numbers or ()}


def warm_observations(conn: Connection) -> None:
    """Have this connection's server process plan the readings' statement once, writing nothing.

    A new PostgreSQL connection is served by a new process whose catalog caches are empty:
    its first INSERT of readings reads the definitions of both tables, their indexes and the
    functions involved before it can plan. EXPLAIN (without ANALYZE) does that work and runs
    nothing, so a worker can pay it before it takes messages instead of in its first batch.
    SQLite has nothing to warm.
    """
    if conn.dialect.name != "postgresql":
        return
    now = datetime.now(UTC)
    row = ["warm-up"], [now], [now], ["{}"], [None], [None], [None]
    conn.exec_driver_sql("EXPLAIN " + _PG_INSERT_OBSERVATIONS, row)


def _json_text(value: Any) -> str:
    """JSON text for a jsonb parameter (orjson: several times faster than json.dumps here;
    validated metrics hold only finite numbers, booleans and short strings)."""
    return orjson.dumps(value).decode()


__all__ = [
    "MIGRATIONS_DIR",
    "DatabaseUnavailable",
    "HourlyDelta",
    "alembic_config",
    "check_database",
    "create_engine_for",
    "current_revision",
    "describe_location",
    "dialect_insert",
    "head_revision",
    "hourly_deltas",
    "insert_new",
    "is_postgis",
    "record_observations",
    "rollup_upsert_statement",
    "session_factory",
    "upgrade_database",
    "upsert_hourly",
    "warm_observations",
]
