"""Reference data: districts, grid cells and emergency resources, loaded from :mod:`geo`.

Seeding is idempotent and runs in one transaction: rows are upserted by their natural key
and rows that ``geo`` no longer produces are deleted, so running it at every start-up
converges on what the code ships without disturbing ids other tables refer to.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from shapely.geometry.base import BaseGeometry
from sqlalchemy.engine import Connection, Engine

from models.schema import District, GridCell, Resource

log = logging.getLogger(__name__)

# Rows per INSERT … ON CONFLICT statement. Large enough to amortise round trips, small
# enough that a batch of clipped polygons stays well under the drivers' parameter limits.
BATCH_ROWS = 1000


def seed_reference_data(engine: Engine) -> dict[str, int]:
    """Load districts, grid cells and resources from ``geo``; return rows per table.

    Safe to run again and again (every start-up of the embedded demo does). Everything
    happens in one transaction: a failure leaves the previous reference data in place.
    """
    from geo.boundaries import load_districts
    from geo.grid import build_grid_cells

    started = time.perf_counter()
    districts = _district_rows(load_districts())
    cells = _grid_rows(build_grid_cells())
    resources = _resource_rows(_load_resources())
    prepared = time.perf_counter()

    plan = (
        (District.__table__, districts),
        (GridCell.__table__, cells),
        (Resource.__table__, resources),
    )
    with engine.begin() as conn:
        # Children before parents when deleting, parents before children when inserting.
        for table, rows in reversed(plan):
            _delete_stale(conn, table, rows)
        counts = {table.name: _upsert(conn, table, rows) for table, rows in plan}
    log.info(
        "reference data seeded in %.2f s (geo %.2f s, database %.2f s): %s",
        time.perf_counter() - started,
        prepared - started,
        time.perf_counter() - prepared,
        counts,
    )
    return counts


def _load_resources() -> Sequence[Any]:
    try:
        from geo.resources import seed_resources
    except ModuleNotFoundError as exc:
        if exc.name != "geo.resources":
            raise
        log.warning("geo.resources is not available: no emergency resources seeded")
        return ()
    return seed_resources()


def _district_rows(frame: Any) -> list[dict[str, Any]]:
    return [
        {
            "district_code": str(row.district_code),
            "name": row.name,
            "name_en": row.name_en,
            "geom": row.geometry,
            "area_km2": float(row.area_km2),
        }
        for row in frame.itertuples(index=False)
    ]


def _grid_rows(frame: Any) -> list[dict[str, Any]]:
    has_h3 = "h3_cell" in frame.columns
    has_primary = "is_primary" in frame.columns
    return [
        {
            "grid_id": str(row.grid_id),
            "district_code": str(row.district_code),
            "h3_cell": str(row.h3_cell) if has_h3 else None,
            "is_primary": bool(row.is_primary) if has_primary else True,
            "geom": row.geometry,
            "area_km2": float(row.area_km2),
            "center_lon": float(row.center_lon),
            "center_lat": float(row.center_lat),
        }
        for row in frame.itertuples(index=False)
    ]


_RESOURCE_COLUMNS = ("resource_id", "kind", "name", "district_code", "lon", "lat", "capacity", "phone")


def resource_id_for(kind: str, name: str, lon: float, lat: float) -> str:
    """A stable id for a resource that has none: the same place keeps the same id."""
    digest = hashlib.sha1(f"{kind}|{name}|{lon:.6f}|{lat:.6f}".encode()).hexdigest()[:12]
    return f"{kind}-{digest}"


def _resource_rows(resources: Iterable[Any]) -> list[dict[str, Any]]:
    from shapely.geometry import Point

    rows = []
    for resource in resources:
        fields = dataclasses.asdict(resource) if dataclasses.is_dataclass(resource) else dict(resource)
        lon, lat = float(fields["lon"]), float(fields["lat"])
        resource_id = fields.get("resource_id") or resource_id_for(fields["kind"], fields["name"], lon, lat)
        # Whatever the table has no column for (address, beds, vehicles …) is kept in props.
        props = dict(fields.get("props") or {})
        props.update(
            {k: v for k, v in fields.items() if k not in _RESOURCE_COLUMNS and k != "props" and v is not None}
        )
        capacity = fields.get("capacity")
        rows.append(
            {
                "resource_id": str(resource_id),
                "kind": str(fields["kind"]),
                "name": str(fields["name"]),
                "district_code": fields.get("district_code"),
                "lon": lon,
                "lat": lat,
                "geom": Point(lon, lat),
                "capacity": None if capacity is None else int(capacity),
                "phone": fields.get("phone"),
                "props": _jsonable(props),
            }
        )
    return rows


def _jsonable(value: Any) -> Any:
    """Tuples and sets from frozen dataclasses become lists so JSON columns accept them."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, BaseGeometry):
        return value.wkt
    return value


def _key(table: sa.Table) -> str:
    (key,) = [c.name for c in table.primary_key.columns]
    return key


def _delete_stale(conn: Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """Delete the rows of ``table`` whose key is not among ``rows``."""
    key = _key(table)
    wanted = {r[key] for r in rows}
    if len(wanted) != len(rows):
        raise ValueError(f"{table.name}: duplicate {key} in reference data")
    stale = [k for k in conn.execute(sa.select(table.c[key])).scalars() if k not in wanted]
    for start in range(0, len(stale), BATCH_ROWS):
        conn.execute(table.delete().where(table.c[key].in_(stale[start : start + BATCH_ROWS])))


def _upsert(conn: Connection, table: sa.Table, rows: list[dict[str, Any]]) -> int:
    """Insert ``rows``, or update the row with the same primary key; returns len(rows)."""
    if not rows:
        return 0
    key = _key(table)
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(table)
    columns = [c for c in rows[0] if c != key]
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c[key]],
        set_={c: stmt.excluded[c] for c in columns},
        # Rewrite only rows that changed: a restart then costs reads, not 10,000 dead
        # tuples and GiST updates on PostgreSQL.
        where=sa.or_(*(table.c[c].is_distinct_from(stmt.excluded[c]) for c in columns)),
    )
    for start in range(0, len(rows), BATCH_ROWS):
        conn.execute(stmt, rows[start : start + BATCH_ROWS])
    return len(rows)


__all__ = ["resource_id_for", "seed_reference_data"]
