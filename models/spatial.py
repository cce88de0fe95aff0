"""Spatial questions: what is within a radius or an area, what is nearest, how long to get there.

On PostgreSQL the database answers with PostGIS, measuring on the WGS-84 spheroid
(``geography``). On SQLite the same questions are answered in Python with great-circle
distances on a sphere of the mean Earth radius. The two agree to about 0.3 % at Guang'an's
latitude, so a resource exactly on the edge of a radius may be in on one backend and out
on the other; nothing else differs. A drawn polygon is tested the same way on both
(planar in longitude/latitude: PostGIS ``ST_Covers`` on ``geometry``, shapely ``covers``).

Distances are straight lines (geodesic), never road distances. Arrival times
(:func:`eta_s`) turn them into an estimate with a per-kind speed and a detour factor,
documented at :data:`TRAVEL`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import shapely
import sqlalchemy as sa
from shapely.geometry import Point, Polygon
from shapely.geometry.base import BaseGeometry
from shapely.prepared import prep
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

    @property
    def eta_s(self) -> float:
        """Estimated seconds until this resource arrives (see :data:`TRAVEL`)."""
        return eta_s(self.kind, self.distance_m)


# --------------------------------------------------------------------------------------------
# Travel-time assumptions


@dataclass(frozen=True, slots=True)
class Travel:
    """How a kind of resource gets to an incident: mode, average speed, time to set off."""

    label_zh: str
    mode_zh: str
    speed_kmh: float
    turnout_s: float


#: Road distance over straight-line distance. Urban road networks run 1.2–1.4 times the
#: straight line; 1.3 is the middle, so an ETA is neither the best case nor the worst.
DETOUR_FACTOR = 1.3

#: Per resource kind, the assumption behind an estimated arrival time: ``turnout_s`` to
#: set off, then the straight-line distance × :data:`DETOUR_FACTOR` at ``speed_kmh``.
#: The speeds are this platform's planning assumptions for Guang'an's urban roads with
#: priority (sirens), not measured figures: 30 km/h for fire engines and ambulances,
#: 25 km/h for rescue teams (heavier equipment, often from outside the town), and 4 km/h
#: on foot for shelters — for a shelter the question is how long evacuees walk there.
TRAVEL: Mapping[str, Travel] = {
    "fire_station": Travel("消防救援站", "消防车", 30.0, 60.0),
    "hospital": Travel("医院", "救护车", 30.0, 120.0),
    "rescue_team": Travel("救援队伍", "救援车辆", 25.0, 300.0),
    "shelter": Travel("应急避难场所", "步行疏散", 4.0, 0.0),
}
#: Any other kind (a warehouse, a pump station): a vehicle on urban roads.
DEFAULT_TRAVEL = Travel("其他资源", "车辆", 30.0, 120.0)


def travel_for(kind: str) -> Travel:
    return TRAVEL.get(kind, DEFAULT_TRAVEL)


def eta_s(kind: str, distance_m: float) -> float:
    """Estimated seconds for a resource of ``kind`` ``distance_m`` (straight line) away."""
    travel = travel_for(kind)
    return travel.turnout_s + distance_m * DETOUR_FACTOR / (travel.speed_kmh / 3.6)


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


def destination(lon: float, lat: float, bearing_deg: float, distance_m: float) -> tuple[float, float]:
    """The point ``distance_m`` from (lon, lat) along ``bearing_deg`` (0 = north) on the mean sphere."""
    d = distance_m / EARTH_RADIUS_M
    b = math.radians(bearing_deg)
    p1, l1 = math.radians(lat), math.radians(lon)
    p2 = math.asin(math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(b))
    l2 = l1 + math.atan2(math.sin(b) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * math.sin(p2))
    return math.degrees(l2), math.degrees(p2)


def geodesic_circle(lon: float, lat: float, radius_m: float, segments: int = 72) -> Polygon:
    """The circle of ``radius_m`` around (lon, lat) as a polygon in degrees (for maps and CAP).

    Queries never use this polygon: they measure distances, so a point just inside the
    circle is inside even where the polygon's chords cut the arc (by radius × (1 − cos 2.5°),
    under 0.1 %).
    """
    ring = [destination(lon, lat, 360.0 * i / segments, radius_m) for i in range(segments)]
    return Polygon([*ring, ring[0]])


#: The buffers the emergency page offers around an incident.
AREA_RADII_M = (1000.0, 3000.0, 5000.0)
#: Larger areas are a whole county or more: the question is then a district, not a radius.
MAX_AREA_RADIUS_M = 50_000.0


@dataclass(frozen=True, slots=True)
class Area:
    """Where to look: a geodesic circle around a point, or a polygon drawn on the map.

    ``lon``/``lat`` is the centre distances are measured from (a drawn polygon's is the
    incident's point when known, else a point inside the polygon). ``polygon`` is what
    maps and warnings draw; for a circle, queries use the radius, not the polygon.
    """

    kind: Literal["circle", "polygon"]
    lon: float
    lat: float
    radius_m: float | None
    polygon: Polygon

    @classmethod
    def circle(cls, lon: float, lat: float, radius_m: float) -> Area:
        _check_point(lon, lat)
        if not 0 < radius_m <= MAX_AREA_RADIUS_M:
            raise ValueError(f"radius_m must be in (0, {MAX_AREA_RADIUS_M:.0f}], got {radius_m}")
        return cls("circle", lon, lat, float(radius_m), geodesic_circle(lon, lat, radius_m))

    @classmethod
    def drawn(
        cls, polygon: BaseGeometry | Sequence[tuple[float, float]], centre: tuple[float, float] | None = None
    ) -> Area:
        """A polygon drawn by an officer: (lon, lat) vertices or a shapely polygon."""
        shape = polygon if isinstance(polygon, BaseGeometry) else Polygon(list(polygon))
        if shape.geom_type != "Polygon" or shape.is_empty or not shape.is_valid:
            raise ValueError("the drawn area must be one simple polygon (no crossing edges)")
        west, south, east, north = shape.bounds
        _check_point(west, south)
        _check_point(east, north)
        if great_circle_m(west, south, east, north) > 2 * MAX_AREA_RADIUS_M:
            raise ValueError(f"the drawn area is wider than {2 * MAX_AREA_RADIUS_M / 1000:.0f} km")
        lon, lat = centre if centre is not None else shape.representative_point().coords[0]
        _check_point(lon, lat)
        return cls("polygon", float(lon), float(lat), None, shapely.normalize(shape))

    @classmethod
    def of(
        cls,
        *,
        lon: float | None,
        lat: float | None,
        radius_m: float | None = None,
        polygon: BaseGeometry | Sequence[tuple[float, float]] | None = None,
    ) -> Area:
        """A drawn polygon when given, else the circle of ``radius_m`` around the point."""
        centre = None if lon is None or lat is None else (lon, lat)
        if polygon is not None:
            return cls.drawn(polygon, centre)
        if centre is None or radius_m is None:
            raise ValueError("an area needs a polygon, or a point and a radius")
        return cls.circle(centre[0], centre[1], radius_m)

    def bounds(self) -> tuple[float, float, float, float]:
        if self.kind == "circle":
            assert self.radius_m is not None
            return bounding_box(self.lon, self.lat, self.radius_m)
        return self.polygon.bounds


def points_in_area(
    bind: Bind,
    table: sa.Table,
    area: Area,
    columns: Sequence[str],
    where: Iterable[sa.ColumnElement[bool]] = (),
) -> list[dict[str, Any]]:
    """Rows of a located table (``lon``, ``lat``, ``geom``) inside ``area``, nearest to its
    centre first, each as ``columns`` plus ``distance_m`` (straight line from the centre).

    One function for every kind of record an incident asks about (devices, tickets, cases,
    resources), so the two backends differ in one place only.
    """
    cols = [table.c[c] for c in columns]
    west, south, east, north = area.bounds()
    with connection(bind) as conn:
        query = sa.select(*cols, table.c.lon, table.c.lat).where(table.c.lon.is_not(None), *where)
        if conn.dialect.name == "postgresql":
            here = sa.func.geography(sa.func.ST_SetSRID(sa.func.ST_MakePoint(area.lon, area.lat), SRID))
            distance = sa.func.ST_Distance(sa.func.geography(table.c.geom), here)
            query = query.add_columns(distance.label("distance_m")).where(
                table.c.geom.op("&&")(sa.func.ST_MakeEnvelope(west, south, east, north, SRID))
            )
            if area.kind == "circle":
                query = query.where(sa.func.ST_DWithin(sa.func.geography(table.c.geom), here, area.radius_m))
            else:
                shape = sa.func.ST_GeomFromText(area.polygon.wkt, SRID)
                query = query.where(sa.func.ST_Covers(shape, table.c.geom))
            rows = [dict(r._mapping) for r in conn.execute(query)]
        else:
            query = query.where(table.c.lat.between(south, north), table.c.lon.between(west, east))
            rows = []
            shape = None if area.kind == "circle" else prep(area.polygon)
            for r in conn.execute(query):
                row = dict(r._mapping)
                row["distance_m"] = great_circle_m(area.lon, area.lat, row["lon"], row["lat"])
                if shape is None:
                    assert area.radius_m is not None
                    if row["distance_m"] > area.radius_m:
                        continue
                elif not shape.covers(Point(row["lon"], row["lat"])):
                    continue
                rows.append(row)
    key = columns[0]
    rows.sort(key=lambda r: (round(float(r["distance_m"]), 3), str(r[key])))
    for row in rows:
        row["distance_m"] = float(row["distance_m"])
    return rows


def nearest_by_kind(
    bind: Bind, lon: float, lat: float, kinds: Sequence[str] | None = None, per_kind: int = 3
) -> dict[str, list[ResourceHit]]:
    """The ``per_kind`` nearest resources of each kind (every kind stored, when None), with
    distance and estimated arrival (:attr:`ResourceHit.eta_s`), nearest first."""
    _check_point(lon, lat)
    with connection(bind) as conn:
        if kinds is None:
            kinds = sorted(conn.execute(sa.select(_table.c.kind).distinct()).scalars())
        return {kind: nearest_resources(conn, lon, lat, kind=kind, limit=per_kind) for kind in kinds}


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
    with connection(bind) as conn:
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
    with connection(bind) as conn:
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
def connection(bind: Bind) -> Iterator[Connection]:
    """A connection from an engine (opened and closed here), a session, or a connection as is:
    the read functions for the pages take any of the three."""
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
    "AREA_RADII_M",
    "DEFAULT_TRAVEL",
    "DETOUR_FACTOR",
    "EARTH_RADIUS_M",
    "MAX_AREA_RADIUS_M",
    "TRAVEL",
    "Area",
    "ResourceHit",
    "Travel",
    "bounding_box",
    "connection",
    "destination",
    "eta_s",
    "geodesic_circle",
    "great_circle_m",
    "nearest_by_kind",
    "nearest_resources",
    "points_in_area",
    "resources_within",
    "travel_for",
]
