"""Spatial questions about stored resources: what is within a radius, what is nearest.

On PostgreSQL the database answers with PostGIS, measuring on the WGS-84 spheroid
(``geography``). On SQLite the same questions are answered in Python with great-circle
distances on a sphere of the mean Earth radius. The two agree to about 0.3 % at Guang'an's
latitude, so a resource exactly on the edge of a radius may be in on one backend and out
on the other; nothing else differs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from models.schema import SRID, Resource

#: IUGG mean Earth radius (R1), the sphere that best fits the WGS-84 ellipsoid on average.
EARTH_RADIUS_M = 6_371_008.8
# Metres per degree of latitude, rounded down so a bounding box built from it is never
# too small (the true value is 110,574 m at the equator and more elsewhere).
_M_PER_DEG_LAT = 110_000.0


@dataclass(frozen=True, slots=True)
class ResourceHit:
    """A resource found by a spatial query, with its distance from the query point."""

    resource_id: str
    kind: str
    name: str
    district_code: str | None
    lon: float
    lat: float
    capacity: int | None
    phone: str | None
    distance_m: float


Bind = Session | Connection | Engine


def great_circle_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Haversine distance in metres on the mean-radius sphere."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def bounding_box(lon: float, lat: float, radius_m: float) -> tuple[float, float, float, float]:
    """(west, south, east, north) in degrees, certain to contain the circle around (lon, lat)."""
    dlat = radius_m / _M_PER_DEG_LAT
    # Longitude degrees shrink towards the poles: use the latitude nearest a pole in the box.
    far_lat = min(89.9, abs(lat) + dlat)
    dlon = min(180.0, radius_m / (_M_PER_DEG_LAT * math.cos(math.radians(far_lat))))
    return lon - dlon, lat - dlat, lon + dlon, lat + dlat


def resources_within(
    bind: Bind, lon: float, lat: float, radius_m: float, kinds: Sequence[str] | None = None
) -> list[ResourceHit]:
    """Resources no farther than ``radius_m`` from (lon, lat), nearest first.

    ``kinds`` limits the search to some kinds (``["hospital", "shelter"]``); None means all.
    """
    _check_point(lon, lat)
    if radius_m < 0:
        raise ValueError(f"radius_m must not be negative, got {radius_m}")
    kinds = None if kinds is None else list(kinds)
    if kinds == []:
        return []
    with _connection(bind) as conn:
        if conn.dialect.name == "postgresql":
            return _within_postgis(conn, lon, lat, radius_m, kinds)
        return _within_fallback(conn, lon, lat, radius_m, kinds)


def nearest_resources(
    bind: Bind, lon: float, lat: float, kind: str | None = None, limit: int = 5
) -> list[ResourceHit]:
    """The ``limit`` resources (of ``kind``, or of any kind) nearest to (lon, lat), nearest first."""
    _check_point(lon, lat)
    if limit < 1:
        return []
    with _connection(bind) as conn:
        if conn.dialect.name == "postgresql":
            return _nearest_postgis(conn, lon, lat, kind, limit)
        return _nearest_fallback(conn, lon, lat, kind, limit)


# --------------------------------------------------------------------------------------------

_table = Resource.__table__
_COLUMNS = (
    _table.c.resource_id,
    _table.c.kind,
    _table.c.name,
    _table.c.district_code,
    _table.c.lon,
    _table.c.lat,
    _table.c.capacity,
    _table.c.phone,
)


@contextmanager
def _connection(bind: Bind) -> Iterator[Connection]:
    if isinstance(bind, Session):
        yield bind.connection()
    elif isinstance(bind, Connection):
        yield bind
    else:
        with bind.connect() as conn:
            yield conn


def _check_point(lon: float, lat: float) -> None:
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise ValueError(f"not a WGS-84 position: lon={lon}, lat={lat}")


def _geography_distance(lon: float, lat: float) -> tuple[sa.ColumnElement[float], sa.ColumnElement[object]]:
    """Spheroid distance from each resource to (lon, lat), and that point as geography."""
    geog_point = sa.func.geography(sa.func.ST_SetSRID(sa.func.ST_MakePoint(lon, lat), SRID))
    distance = sa.func.ST_Distance(sa.func.geography(_table.c.geom), geog_point)
    return distance, geog_point


def _hits(rows: Sequence[sa.Row]) -> list[ResourceHit]:
    return [ResourceHit(*row[:8], distance_m=float(row[8])) for row in rows]


def _within_postgis(
    conn: Connection, lon: float, lat: float, radius_m: float, kinds: list[str] | None
) -> list[ResourceHit]:
    distance, here = _geography_distance(lon, lat)
    west, south, east, north = bounding_box(lon, lat, radius_m)
    query = (
        sa.select(*_COLUMNS, distance.label("distance_m"))
        # The box test uses the geometry GiST index; the exact test is on the spheroid.
        .where(_table.c.geom.op("&&")(sa.func.ST_MakeEnvelope(west, south, east, north, SRID)))
        .where(sa.func.ST_DWithin(sa.func.geography(_table.c.geom), here, radius_m))
        .order_by(distance, _table.c.resource_id)
    )
    if kinds is not None:
        query = query.where(_table.c.kind.in_(kinds))
    return _hits(conn.execute(query).all())


def _nearest_postgis(
    conn: Connection, lon: float, lat: float, kind: str | None, limit: int
) -> list[ResourceHit]:
    # Exact spheroid distance for every candidate: the city has hundreds of resources, not
    # millions, and planar KNN on degrees can misorder candidates east-west against
    # north-south ones.
    distance, _ = _geography_distance(lon, lat)
    query = sa.select(*_COLUMNS, distance.label("distance_m")).order_by(distance, _table.c.resource_id)
    if kind is not None:
        query = query.where(_table.c.kind == kind)
    return _hits(conn.execute(query.limit(limit)).all())


def _within_fallback(
    conn: Connection, lon: float, lat: float, radius_m: float, kinds: list[str] | None
) -> list[ResourceHit]:
    west, south, east, north = bounding_box(lon, lat, radius_m)
    query = sa.select(*_COLUMNS).where(_table.c.lat.between(south, north), _table.c.lon.between(west, east))
    if kinds is not None:
        query = query.where(_table.c.kind.in_(kinds))
    hits = _measured(conn.execute(query).all(), lon, lat)
    return [h for h in hits if h.distance_m <= radius_m]


def _nearest_fallback(
    conn: Connection, lon: float, lat: float, kind: str | None, limit: int
) -> list[ResourceHit]:
    query = sa.select(*_COLUMNS)
    if kind is not None:
        query = query.where(_table.c.kind == kind)
    return _measured(conn.execute(query).all(), lon, lat)[:limit]


def _measured(rows: Sequence[sa.Row], lon: float, lat: float) -> list[ResourceHit]:
    hits = [ResourceHit(*row, distance_m=great_circle_m(lon, lat, row.lon, row.lat)) for row in rows]
    hits.sort(key=lambda h: (h.distance_m, h.resource_id))
    return hits


__all__ = [
    "EARTH_RADIUS_M",
    "ResourceHit",
    "bounding_box",
    "great_circle_m",
    "nearest_resources",
    "resources_within",
]
