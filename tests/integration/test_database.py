"""Storage against a real PostgreSQL + PostGIS: migration, seeding, spatial queries, audit.

Every run works in a database of its own, created here and dropped afterwards, so the
first-install path (including CREATE EXTENSION postgis) is what is tested and runs never
see each other's rows. A server that refuses CREATE DATABASE gets a fresh schema instead.
"""

from __future__ import annotations

import random
import socket
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from shapely.geometry import Point

from models import db, schema, spatial
from models.reference import seed_reference_data
from models.schema import AuditLog, Resource

pytestmark = pytest.mark.real_services


@pytest.fixture(scope="module")
def engine(pg_engine: sa.Engine) -> sa.Engine:
    return pg_engine


def test_migration_builds_exactly_the_models(engine: sa.Engine) -> None:
    assert db.is_postgis(engine)
    db.check_database(engine)
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={"include_object": schema.include_in_comparison("postgresql"), "compare_type": True},
        )
        assert compare_metadata(context, schema.metadata) == []
    assert db.current_revision(engine) == db.head_revision()


def test_upgrade_again_changes_nothing(pg_url: str, engine: sa.Engine) -> None:
    db.upgrade_database(pg_url)
    assert db.current_revision(engine) == db.head_revision()


def test_every_geometry_column_has_a_gist_index(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        geometry_columns = {
            tuple(row)
            for row in conn.execute(
                sa.text(
                    "SELECT f_table_name, f_geometry_column FROM geometry_columns "
                    "WHERE f_table_schema = current_schema() AND srid = 4326"
                )
            )
        }
        indexed = {
            tuple(row)
            for row in conn.execute(
                sa.text(
                    "SELECT t.relname, a.attname FROM pg_index x "
                    "JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_am am ON am.oid = i.relam "
                    "JOIN pg_class t ON t.oid = x.indrelid "
                    "JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = ANY(x.indkey) "
                    "WHERE am.amname = 'gist' AND t.relnamespace = current_schema()::regnamespace"
                )
            )
        }
        brin = conn.execute(
            sa.text(
                "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() "
                "AND indexname = 'ix_observations_ts_brin'"
            )
        ).scalar_one()
    assert len(geometry_columns) == 10  # nine point or boundary columns and incidents.area
    assert geometry_columns <= indexed
    assert "USING brin (ts)" in brin


def test_audit_log_rejects_update_delete_and_truncate(engine: sa.Engine) -> None:
    with db.session_factory(engine).begin() as session:
        session.add(AuditLog(actor="wang", action="case.close", entity_type="case", entity_id="C1"))
    for statement in (
        "UPDATE audit_log SET actor = 'nobody'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as conn:
            conn.exec_driver_sql(statement)
    with engine.connect() as conn:
        assert conn.execute(sa.select(AuditLog.actor)).scalars().all() == ["wang"]


def test_types_round_trip(engine: sa.Engine) -> None:
    china = datetime(2026, 7, 15, 18, 30, 1, 250000, tzinfo=timezone(timedelta(hours=8)))
    point = Point(106.63333333333333, 30.456789012345678)
    with db.session_factory(engine).begin() as session:
        session.add(
            schema.Device(
                device_id="rt-1", kind="camera", type="cctv", geom=point, props={"名称": [1, None]},
                last_seen=china,
            )
        )  # fmt: skip
    with db.session_factory(engine)() as session:
        device = session.get(schema.Device, "rt-1")
    assert (device.geom.x, device.geom.y) == (point.x, point.y)
    assert device.last_seen == china and device.last_seen.tzinfo == UTC
    assert device.props == {"名称": [1, None]}


def test_record_observations_on_postgis(engine: sa.Engine) -> None:
    t0 = datetime(2026, 7, 15, 10, tzinfo=UTC)
    batch = [
        {
            "device_id": "wl-1",
            "ts": t0 + timedelta(minutes=m),
            "metrics": {"level_m": m / 10},
            "msg_id": f"w{m}",
        }
        for m in range(6)
    ]
    with engine.begin() as conn:
        assert len(db.record_observations(conn, batch)) == 6
    with engine.begin() as conn:
        assert len(db.record_observations(conn, batch)) == 0
    with engine.connect() as conn:
        row = conn.execute(sa.select(schema.ObservationHourly.__table__)).mappings().one()
    assert (row["count"], row["min"], row["max"], row["last_value"]) == (6, 0.0, 0.5, 0.5)
    assert row["sum"] == pytest.approx(1.5)


def test_record_observations_hands_back_exactly_the_new_readings(engine: sa.Engine) -> None:
    t0 = datetime(2026, 7, 16, 10, tzinfo=UTC)

    def reading(minute: int, msg_id: str, **more: object) -> dict[str, object]:
        return {
            "device_id": "wl-new",
            "ts": t0 + timedelta(minutes=minute),
            "metrics": {"level_m": 1.0},
            "msg_id": msg_id,
            **more,
        }

    with engine.begin() as conn:
        first = [reading(0, "n0"), reading(1, "n1")]
        assert db.record_observations(conn, first) == first  # all new: the same mappings
    batch = [
        reading(0, "n0", tag="stored before"),  # same device and ts
        reading(2, "n2", tag="new"),
        reading(3, "n1", tag="msg_id stored before"),  # same msg_id at another instant
        reading(4, "n4", tag="new too"),
        reading(4, "n4b", tag="same instant as the one before, in the same batch"),
    ]
    with engine.begin() as conn:
        fresh = db.record_observations(conn, batch)
    assert [r["tag"] for r in fresh] == [
        "new",
        "new too",
        "same instant as the one before, in the same batch",
    ]
    assert all(any(f is b for b in batch) for f in fresh), "the caller's own mappings"
    with engine.connect() as conn:
        stored = (
            conn.execute(sa.text("SELECT msg_id FROM observations WHERE device_id = 'wl-new' ORDER BY ts"))
            .scalars()
            .all()
        )
    assert stored == ["n0", "n1", "n2", "n4"]


def test_seed_reference_data_is_idempotent(engine: sa.Engine) -> None:
    started = time.perf_counter()
    first = seed_reference_data(engine)
    middle = time.perf_counter()
    second = seed_reference_data(engine)
    print(f"seed on PostGIS: {middle - started:.2f} s, again {time.perf_counter() - middle:.2f} s: {first}")
    assert first == second
    assert first["districts"] == 6 and first["grid_cells"] > 1000 and first["resources"] > 0
    with engine.connect() as conn:
        counts = {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar() for t in first}
        invalid = conn.execute(
            sa.text("SELECT count(*) FROM districts WHERE NOT ST_IsValid(geom)")
        ).scalar_one()
        # Grid cells tile their district: the cell areas add up to the district area.
        coverage = conn.execute(
            sa.text(
                "SELECT d.district_code, d.area_km2, sum(g.area_km2) FROM districts d "
                "JOIN grid_cells g USING (district_code) GROUP BY d.district_code, d.area_km2"
            )
        ).all()
    assert counts == first
    assert invalid == 0
    assert len(coverage) == 6
    for _code, district_km2, cells_km2 in coverage:
        assert cells_km2 == pytest.approx(district_km2, rel=1e-3)


def _random_resources(n: int) -> list[dict[str, object]]:
    rng = random.Random(11)
    rows = []
    for i in range(n):
        lon, lat = 106.6 + rng.uniform(-0.4, 0.4), 30.45 + rng.uniform(-0.4, 0.4)
        kind = rng.choice(["hospital", "fire_station", "shelter"])
        rows.append(
            {"resource_id": f"t-{i:03d}", "kind": kind, "name": f"{kind} {i}", "lon": lon, "lat": lat,
             "geom": Point(lon, lat), "props": {}}
        )  # fmt: skip
    return rows


def test_spatial_queries_agree_with_the_sqlite_fallback(engine: sa.Engine, tmp_path: Path) -> None:
    rows = _random_resources(300)
    lite = db.create_engine_for(f"sqlite:///{tmp_path / 'lite.sqlite3'}")
    schema.metadata.create_all(lite)
    for target in (engine, lite):
        with target.begin() as conn:
            conn.execute(sa.delete(Resource.__table__))
            conn.execute(sa.insert(Resource.__table__), rows)

    for here, radius, kinds in (
        ((106.63, 30.47), 12_000, ["hospital", "shelter"]),
        ((106.45, 30.30), 20_000, None),
    ):
        pg = spatial.resources_within(engine, *here, radius, kinds=kinds)
        fallback = spatial.resources_within(lite, *here, radius, kinds=kinds)
        assert pg, "the radius should catch something"
        # Spheroid vs sphere: ids may differ only right at the edge of the circle.
        edge = {h.resource_id for h in pg + fallback if abs(h.distance_m - radius) < radius * 0.005}
        assert {h.resource_id for h in pg} - edge == {h.resource_id for h in fallback} - edge
        by_id = {h.resource_id: h.distance_m for h in fallback}
        for hit in pg:
            if hit.resource_id in by_id:
                assert hit.distance_m == pytest.approx(by_id[hit.resource_id], rel=0.005)
                assert hit.distance_m <= radius

    with db.session_factory(engine)() as session:
        pg_nearest = spatial.nearest_resources(session, 106.7, 30.5, kind="fire_station", limit=5)
    fb_nearest = spatial.nearest_resources(lite, 106.7, 30.5, kind="fire_station", limit=5)
    assert [h.resource_id for h in pg_nearest] == [h.resource_id for h in fb_nearest]
    for a, b in zip(pg_nearest, fb_nearest, strict=True):
        assert a.distance_m == pytest.approx(b.distance_m, rel=0.005)
        assert a.kind == "fire_station"
    lite.dispose()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_is_one_line_without_password() -> None:
    port = _closed_port()
    engine = db.create_engine_for(f"postgresql+psycopg://cityops:s3cret-pw@127.0.0.1:{port}/cityops")
    with pytest.raises(db.DatabaseUnavailable) as info:
        db.check_database(engine)
    message = str(info.value)
    assert message == (
        f"cannot reach PostgreSQL at 127.0.0.1:{port}/cityops (connection refused) — "
        "is it running? check CITYOPS_DATABASE_URL"
    )
    with pytest.raises(db.DatabaseUnavailable, match="connection refused"):
        db.upgrade_database(f"postgresql+psycopg://cityops:s3cret-pw@127.0.0.1:{port}/cityops")


def test_missing_database_is_named(postgis_url: str) -> None:
    url = sa.engine.make_url(postgis_url).set(database="cityops_no_such_db")
    engine = db.create_engine_for(url.render_as_string(hide_password=False))
    with pytest.raises(db.DatabaseUnavailable) as info:
        db.check_database(engine)
    assert "\n" not in str(info.value)
    assert "'cityops_no_such_db' does not exist" in str(info.value)


def test_hourly_rollup_pages_leave_room_for_updates_in_place(engine: sa.Engine) -> None:
    # Without the room, most updates of the current hour's rows moved them and touched
    # every index of the table (migration 0009).
    with engine.connect() as conn:
        options = conn.execute(
            sa.text("SELECT reloptions FROM pg_class WHERE relname = 'observation_hourly'")
        ).scalar_one()
    assert options == [f"fillfactor={schema.HOURLY_FILLFACTOR}"]
    assert schema.HOURLY_FILLFACTOR < 100
