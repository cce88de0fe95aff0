"""Storage schema on the embedded backend (SQLite in a temporary file)."""

from __future__ import annotations

import shutil
import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from shapely.geometry import MultiPolygon, Point, Polygon
from sqlalchemy.exc import IntegrityError

from models import db, schema, spatial
from models.schema import (
    Alert,
    AuditLog,
    DeadLetter,
    Device,
    District,
    GridCell,
    Observation,
    ObservationHourly,
    Resource,
    User,
    VideoEvent,
)

CHINA = timezone(timedelta(hours=8))


@pytest.fixture
def url(tmp_path: Path) -> str:
    database_url = f"sqlite:///{tmp_path / 'var' / 'cityops.sqlite3'}"
    db.upgrade_database(database_url)
    return database_url


@pytest.fixture
def engine(url: str) -> sa.Engine:
    engine = db.create_engine_for(url)
    yield engine
    engine.dispose()


def _district(code: str = "511602") -> District:
    square = Polygon([(106.5, 30.4), (106.7, 30.4), (106.7, 30.6), (106.5, 30.6)])
    return District(district_code=code, name="广安区", name_en="Guang'an District", geom=square, area_km2=1.0)


# ---- migrations ---------------------------------------------------------------------------


def test_migration_builds_exactly_the_models(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={"include_object": schema.include_in_comparison("sqlite"), "compare_type": True},
        )
        assert compare_metadata(context, schema.metadata) == []
        tables = set(sa.inspect(conn).get_table_names())
    assert set(schema.metadata.tables) <= tables


def test_comparison_notices_a_missing_index(engine: sa.Engine) -> None:
    # Proves the previous test can fail: drop one index and the comparison must see it.
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP INDEX ix_alerts_state")
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"include_object": schema.include_in_comparison("sqlite")}
        )
        diffs = compare_metadata(context, schema.metadata)
    assert [(d[0], d[1].name) for d in diffs] == [("add_index", "ix_alerts_state")]


def test_upgrade_is_repeatable_and_at_head(url: str, engine: sa.Engine) -> None:
    db.upgrade_database(url)
    assert db.current_revision(engine) == db.head_revision() == "0009"


def test_failed_upgrade_leaves_nothing_half_built(tmp_path: Path) -> None:
    path = tmp_path / "broken.sqlite3"
    # A table in the way makes the migration fail half-way, after districts etc. exist.
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE alerts (x INTEGER)")
    with pytest.raises(sa.exc.OperationalError, match="already exists"):
        db.upgrade_database(f"sqlite:///{path}")
    with sqlite3.connect(path) as raw:
        names = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert names == {"alerts"}


def test_failed_upgrade_of_a_new_file_removes_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(command, "upgrade", explode)
    path = tmp_path / "new.sqlite3"
    with pytest.raises(RuntimeError):
        db.upgrade_database(f"sqlite:///{path}")
    assert list(tmp_path.iterdir()) == []


def test_migrations_do_not_depend_on_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    db.upgrade_database("sqlite:///elsewhere.sqlite3")
    assert (tmp_path / "elsewhere.sqlite3").exists()
    assert db.head_revision() == "0009"


def test_new_revisions_can_be_generated_from_the_shipped_template(tmp_path: Path) -> None:
    copy = tmp_path / "migrations"
    shutil.copytree(db.MIGRATIONS_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    config = db.alembic_config()
    config.set_main_option("script_location", str(copy))
    script = command.revision(config, message="add widgets", rev_id="0010")
    text = Path(script.path).read_text(encoding="utf-8")
    assert "down_revision" in text and "'0010'" in text and "'0009'" in text and "add widgets" in text


# ---- engine and health --------------------------------------------------------------------


def test_sqlite_engine_settings(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "c.sqlite3"
    engine = db.create_engine_for(f"sqlite:///{path}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == db.SQLITE_BUSY_TIMEOUT_MS
    engine.dispose()
    assert path.parent.is_dir()
    assert not db.is_postgis(engine)


def test_sqlite_folder_that_cannot_exist_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(db.DatabaseUnavailable) as info:
        db.create_engine_for(f"sqlite:///{blocker}/sub/cityops.sqlite3")
    assert "\n" not in str(info.value) and "CITYOPS_DATA_DIR" in str(info.value)


def test_check_database_passes_on_sqlite(engine: sa.Engine) -> None:
    db.check_database(engine)


def test_missing_postgis_names_the_package_to_install() -> None:
    answers = iter([None, "150020"])
    conn = SimpleNamespace(
        execute=lambda _q: SimpleNamespace(first=lambda: next(answers), scalar_one=lambda: next(answers))
    )
    with pytest.raises(db.DatabaseUnavailable) as info:
        db._check_postgis(conn, "db.example:5432/cityops")
    message = str(info.value)
    assert "\n" not in message
    assert "db.example:5432/cityops" in message
    assert "postgresql-15-postgis-3" in message and "CREATE EXTENSION postgis" in message


def test_foreign_keys_are_enforced(engine: sa.Engine) -> None:
    square = Polygon([(0, 0), (1, 0), (1, 1)])
    with pytest.raises(IntegrityError), db.session_factory(engine).begin() as session:
        session.add(
            GridCell(
                grid_id="88abc", district_code="000000", geom=square, area_km2=1, center_lon=0, center_lat=0
            )
        )


# ---- column types -------------------------------------------------------------------------


def test_geometry_round_trip_is_exact_and_promotes_to_multi(engine: sa.Engine) -> None:
    point = Point(106.63333333333333, 30.456789012345678)
    with db.session_factory(engine).begin() as session:
        session.add(_district())
        session.add(Device(device_id="aq-1", kind="sensor", type="air", lon=point.x, lat=point.y, geom=point))
    with db.session_factory(engine)() as session:
        district = session.get(District, "511602")
        device = session.get(Device, "aq-1")
    assert isinstance(district.geom, MultiPolygon)
    assert district.geom.equals(MultiPolygon([_district().geom]))
    assert (device.geom.x, device.geom.y) == (point.x, point.y)


def test_geometry_column_refuses_other_values(engine: sa.Engine) -> None:
    with pytest.raises(sa.exc.StatementError, match="shapely geometry"), engine.begin() as conn:
        conn.execute(sa.insert(District.__table__), {**_row(_district()), "geom": "POINT(1 2)"})


def _row(obj: object) -> dict[str, object]:
    return {c.key: getattr(obj, c.key) for c in sa.inspect(obj).mapper.column_attrs}


def test_datetimes_come_back_aware_in_utc(engine: sa.Engine) -> None:
    local = datetime(2026, 7, 15, 18, 30, 15, 123456, tzinfo=CHINA)
    with db.session_factory(engine).begin() as session:
        session.add(Device(device_id="cam-1", kind="camera", type="cctv", last_seen=local))
    with db.session_factory(engine)() as session:
        device = session.get(Device, "cam-1")
        assert device.last_seen == local
        assert device.last_seen.utcoffset() == timedelta(0)
        assert device.last_seen.hour == 10
        assert device.registered_at.tzinfo is not None
        # Comparisons happen in UTC too: 10:30 UTC is not before 18:00 China time.
        before = datetime(2026, 7, 15, 18, 0, tzinfo=CHINA)
        later = datetime(2026, 7, 15, 18, 31, tzinfo=CHINA)
        found = session.scalars(sa.select(Device.device_id).where(Device.last_seen.between(before, later)))
        assert found.all() == ["cam-1"]


def test_naive_datetimes_are_refused(engine: sa.Engine) -> None:
    with pytest.raises(sa.exc.StatementError, match="naive"), db.session_factory(engine).begin() as s:
        s.add(Device(device_id="x", kind="sensor", type="t", last_seen=datetime(2026, 1, 1)))


def test_json_round_trip(engine: sa.Engine) -> None:
    props = {"站点": "广安区环境监测站", "levels": [1, 2.5, None], "nested": {"ok": True}}
    with db.session_factory(engine).begin() as session:
        session.add(Device(device_id="aq-2", kind="sensor", type="air", props=props))
        session.add(AuditLog(actor="a", action="x", entity_type="device", before=None, after=props))
    with db.session_factory(engine)() as session:
        assert session.get(Device, "aq-2").props == props
        # None is SQL NULL, not the JSON text 'null'.
        found = session.scalars(sa.select(AuditLog.after).where(AuditLog.before.is_(None))).all()
        assert found == [props]


# ---- constraints --------------------------------------------------------------------------


def _observation(ts: datetime, msg_id: str | None, device_id: str = "aq-1") -> dict[str, object]:
    return {"device_id": device_id, "ts": ts, "received_at": ts, "metrics": {"pm25": 1}, "msg_id": msg_id}


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param(("aq-1", 0, "m1"), ("aq-1", 0, "m2"), id="same device and ts"),
        pytest.param(("aq-1", 0, "m1"), ("aq-2", 5, "m1"), id="same msg_id"),
    ],
)
def test_observation_duplicates_are_rejected(
    engine: sa.Engine, first: tuple[str, int, str], second: tuple[str, int, str]
) -> None:
    t0 = datetime(2026, 7, 15, 10, 0, tzinfo=UTC)
    table = Observation.__table__
    with engine.begin() as conn:
        device, minutes, msg = first
        conn.execute(sa.insert(table), _observation(t0 + timedelta(minutes=minutes), msg, device))
    with pytest.raises(IntegrityError), engine.begin() as conn:
        device, minutes, msg = second
        conn.execute(sa.insert(table), _observation(t0 + timedelta(minutes=minutes), msg, device))


def test_observations_without_msg_id_do_not_collide(engine: sa.Engine) -> None:
    t0 = datetime(2026, 7, 15, 10, 0, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(Observation.__table__),
            [_observation(t0 + timedelta(minutes=m), None) for m in range(3)],
        )
        assert conn.execute(sa.select(sa.func.count()).select_from(Observation)).scalar() == 3


def test_unique_keys(engine: sa.Engine) -> None:
    now = datetime(2026, 7, 15, tzinfo=UTC)
    user = {"username": "zhang", "display_name": "张三", "password_hash": "x", "role": "operator"}
    event = {"event_id": "ev-1", "camera_id": "cam", "ts": now, "type": "parking", "confidence": 0.9}
    for table, row in ((User.__table__, user), (VideoEvent.__table__, event)):
        with engine.begin() as conn:
            conn.execute(sa.insert(table), row)
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(sa.insert(table), row)


def test_one_open_alert_per_dedup_key(engine: sa.Engine) -> None:
    alert = {
        "rule_id": "aqi",
        "domain": "ecology",
        "severity": "major",
        "title": "AQI",
        "dedup_key": "aqi:511602",
        "state": "open",
    }
    table = Alert.__table__
    with engine.begin() as conn:
        first = conn.execute(sa.insert(table).returning(table.c.id), alert).scalar_one()
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(sa.insert(table), alert)
    with engine.begin() as conn:
        conn.execute(
            sa.update(table).where(table.c.id == first).values(resolved_at=datetime.now(UTC), state="closed")
        )
        conn.execute(sa.insert(table), alert)  # the condition came back: a new alert may open


@pytest.mark.parametrize(
    ("table", "row"),
    [
        (Alert.__table__, {"domain": "weather", "severity": "red"}),
        (Alert.__table__, {"domain": "urban", "severity": "purple"}),
        (User.__table__, {"role": "superuser"}),
        (Device.__table__, {"kind": "drone"}),
    ],
)
def test_closed_sets_are_checked(engine: sa.Engine, table: sa.Table, row: dict[str, str]) -> None:
    base = {
        Alert.__table__: {"rule_id": "r", "title": "t", "dedup_key": "k", "state": "open"},
        User.__table__: {"username": "u", "display_name": "U", "password_hash": "x"},
        Device.__table__: {"device_id": "d", "type": "t"},
    }[table]
    with pytest.raises(IntegrityError, match="CHECK"), engine.begin() as conn:
        conn.execute(sa.insert(table), {**base, **row})


def test_audit_log_is_append_only(engine: sa.Engine) -> None:
    with db.session_factory(engine).begin() as session:
        session.add(AuditLog(actor="li", action="alert.acknowledge", entity_type="alert", entity_id="1"))
    for statement in ("UPDATE audit_log SET actor = 'someone else'", "DELETE FROM audit_log"):
        with pytest.raises(IntegrityError, match="append-only"), engine.begin() as conn:
            conn.exec_driver_sql(statement)
    with engine.connect() as conn:
        assert conn.execute(sa.select(AuditLog.actor)).scalars().all() == ["li"]


def test_dead_letter_payload_is_cut(engine: sa.Engine) -> None:
    huge = b"x" * (schema.DEAD_LETTER_PAYLOAD_LIMIT * 3)
    with db.session_factory(engine).begin() as session:
        session.add(DeadLetter.from_message("cityops/v1/x", "bad_json", huge, {"error": "…"}))
    with db.session_factory(engine)() as session:
        letter = session.scalars(sa.select(DeadLetter)).one()
    assert len(letter.payload) == schema.DEAD_LETTER_PAYLOAD_LIMIT
    assert letter.payload_size == len(huge)


# ---- observations and the hourly roll-up --------------------------------------------------


def test_record_observations_is_idempotent_and_rolls_up(engine: sa.Engine) -> None:
    t0 = datetime(2026, 7, 15, 10, 0, tzinfo=UTC)
    batch = [
        {"device_id": "aq-1", "ts": t0 + timedelta(minutes=m), "metrics": {"pm25": float(m), "ok": True},
         "msg_id": f"m{m}", "district_code": "511602"}
        for m in (0, 10, 20)
    ]  # fmt: skip
    with engine.begin() as conn:
        assert len(db.record_observations(conn, batch)) == 3
    with engine.begin() as conn:
        # Redelivery of the whole batch plus a late reading of the same hour.
        late = {"device_id": "aq-1", "ts": t0 + timedelta(minutes=5), "metrics": {"pm25": -4}}
        assert len(db.record_observations(conn, [*batch, late])) == 1
    with engine.connect() as conn:
        rows = conn.execute(sa.select(ObservationHourly.__table__)).mappings().all()
    assert len(rows) == 1  # booleans are not aggregated
    row = rows[0]
    assert (row["metric"], row["hour"], row["count"]) == ("pm25", t0, 4)
    assert (row["sum"], row["min"], row["max"]) == (26.0, -4.0, 20.0)
    # The late reading is older than the newest one, so "last" stays at 10:20.
    assert (row["last_ts"], row["last_value"]) == (t0 + timedelta(minutes=20), 20.0)
    assert row["district_code"] == "511602"


def test_hourly_deltas_bucket_by_utc_hour() -> None:
    ts = datetime(2026, 7, 15, 18, 59, tzinfo=CHINA)  # 10:59 UTC
    deltas = db.hourly_deltas(
        [
            {"device_id": "d", "ts": ts, "metrics": {"t": 1, "nan": float("nan"), "s": "x"}},
            {"device_id": "d", "ts": ts + timedelta(minutes=2), "metrics": {"t": 3}},
        ]
    )
    hours = sorted((d.metric, d.hour, d.count) for d in deltas)
    assert hours == [
        ("t", datetime(2026, 7, 15, 10, tzinfo=UTC), 1),
        ("t", datetime(2026, 7, 15, 11, tzinfo=UTC), 1),
    ]


# ---- spatial fallback ---------------------------------------------------------------------


def test_spatial_fallback_matches_brute_force(engine: sa.Engine) -> None:
    import random

    rng = random.Random(7)
    rows = []
    for i in range(200):
        lon, lat = 106.6 + rng.uniform(-0.3, 0.3), 30.45 + rng.uniform(-0.3, 0.3)
        kind = rng.choice(["hospital", "fire_station", "shelter"])
        rows.append(
            {"resource_id": f"r{i:03d}", "kind": kind, "name": f"{kind} {i}", "lon": lon, "lat": lat,
             "geom": Point(lon, lat), "props": {}}
        )  # fmt: skip
    with engine.begin() as conn:
        conn.execute(sa.insert(Resource.__table__), rows)
    here = (106.63, 30.47)
    expected = sorted(
        (spatial.great_circle_m(*here, r["lon"], r["lat"]), r["resource_id"])
        for r in rows
        if r["kind"] in ("hospital", "shelter")
    )
    found = spatial.resources_within(engine, *here, 8000, kinds=["hospital", "shelter"])
    assert [(h.distance_m, h.resource_id) for h in found] == [e for e in expected if e[0] <= 8000]
    assert found, "the radius should catch something"

    with db.session_factory(engine)() as session:
        nearest = spatial.nearest_resources(session, *here, kind="fire_station", limit=3)
    fire = sorted(
        (spatial.great_circle_m(*here, r["lon"], r["lat"]), r["resource_id"])
        for r in rows
        if r["kind"] == "fire_station"
    )
    assert [(h.distance_m, h.resource_id) for h in nearest] == fire[:3]


def test_great_circle_distance_known_value() -> None:
    # One degree of longitude on the equator of the mean-radius sphere.
    assert spatial.great_circle_m(0, 0, 1, 0) == pytest.approx(111_195.08, abs=0.01)
    # Equator to pole: a quarter of the circumference.
    assert spatial.great_circle_m(106.6, 0, 106.6, 90) == pytest.approx(
        spatial.EARTH_RADIUS_M * 3.14159265 / 2
    )


def test_bounding_box_contains_the_circle() -> None:
    west, south, east, north = spatial.bounding_box(106.6, 30.5, 5000)
    for lon, lat in ((west, 30.5), (east, 30.5), (106.6, south), (106.6, north)):
        assert spatial.great_circle_m(106.6, 30.5, lon, lat) >= 5000


def test_sqlite_reads_run_beside_a_writer_and_writes_queue_for_the_lock(tmp_path: Path) -> None:
    """WAL lets a read run while ingest holds the write lock: a page's ``engine.connect()``
    must not wait for it (it used to take the lock too, and time out behind a long batch),
    while ``engine.begin()`` still takes the lock up front."""
    engine = db.create_engine_for(f"sqlite:///{tmp_path / 'c.sqlite3'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
    with engine.begin() as writer:
        writer.exec_driver_sql("INSERT INTO t VALUES (2)")
        with engine.connect() as reader:
            reader.exec_driver_sql("PRAGMA busy_timeout=100")
            # The writer's row is not committed yet: the reader sees the last commit.
            assert reader.exec_driver_sql("SELECT count(*) FROM t").scalar() == 1
        with engine.connect() as other:
            other.exec_driver_sql("PRAGMA busy_timeout=100")
            other.commit()
            with pytest.raises(sa.exc.OperationalError, match="locked"):
                other.begin()  # a second writer waits for the lock (here: 0.1 s, then gives up)
            other.rollback()
    with engine.connect() as reader:
        assert reader.exec_driver_sql("SELECT count(*) FROM t").scalar() == 2
    engine.dispose()
