"""Grid cells (网格) for unified management: H3 hexagons clipped to district borders.

Each grid cell lies in exactly one district, because a 网格 is a unit of management
and its staff answer to one district. An H3 hexagon that a district border crosses
is therefore split into one grid cell per district it covers:

* the **primary** piece keeps the hexagon's own id (resolution :data:`GRID_RESOLUTION`).
  It is the piece that holds the hexagon's centre; if the centre is outside the city
  (hexagons on the city edge), it is the piece with the largest area;
* every **secondary** piece is named by the resolution-15 H3 cell (≈1 m²) under a
  point inside it, usually its ``representative_point``.

So every ``grid_id`` is a valid 15-character H3 index, unique across the table, and a
point's grid cell is always in the same district as the point (see
:func:`geo.locate.locate`). ``h3_cell`` holds the hexagon a piece was cut from, for
aggregating or joining at hexagon level; draw cells from ``geometry``, not from
``h3.cell_to_boundary(grid_id)``, since secondary ids name a tiny cell.

Hexagons are clipped to the city, so cells on the city edge are smaller than the
average hexagon.
"""

from __future__ import annotations

import random
from functools import lru_cache

import geopandas as gpd
import h3
import numpy as np
import pandas as pd
import shapely
from shapely.geometry import Point, Polygon
from shapely.geometry.base import BaseGeometry

from geo.boundaries import (
    AREA_CRS,
    DISTRICTS,
    WGS84,
    _district_geometries,
    city_outline,
    district_index_at,
)

# Resolution 8 averages 0.737 km² per hexagon (h3.average_hexagon_area(8, "km^2")):
# small enough for one grid worker to walk, large enough that the city has ~10,000
# cells rather than the ~70,000 of resolution 9 (0.105 km²), which would swamp the
# map and make per-cell statistics too sparse to read.
GRID_RESOLUTION = 8

# Secondary pieces are named at the finest H3 resolution so their ids can never
# collide with hexagon ids and almost never with each other (cells are ~1 m²).
_PIECE_ID_RESOLUTION = 15
# Random interior points tried when a piece's representative point will not do.
_PIECE_ID_ATTEMPTS = 500

# Hexagons are found by polyfilling the city grown by more than one hexagon diameter
# (≈1.1 km at resolution 8), so that every hexagon overlapping the city has its centre
# inside the grown outline. 0.02° is ≥1.9 km at this latitude.
_COVER_MARGIN_DEG = 0.02


def _hexagons(cells: list[str]) -> np.ndarray:
    """Straight-edged lon/lat polygons of H3 cells (vertices exactly H3's)."""
    rings = [h3.cell_to_boundary(c) for c in cells]
    if all(len(r) == 6 for r in rings):
        # No pentagons near Guang'an: build all hexagons in one vectorised call.
        coords = np.asarray(rings, dtype=np.float64)[:, :, ::-1]
        return shapely.polygons(coords)
    return np.array([Polygon([(lng, lat) for lat, lng in r]) for r in rings], dtype=object)


def _polygonal(geom: BaseGeometry) -> BaseGeometry | None:
    """The areal part of an intersection, or None if it has no area."""
    parts = [p for p in shapely.get_parts(geom) if p.geom_type == "Polygon" and p.area > 0]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else shapely.MultiPolygon(parts)


def _piece_id(cell: str, piece: BaseGeometry, used: set[str]) -> tuple[str, Point]:
    """A resolution-15 id under a point inside ``piece`` that is a descendant of ``cell``.

    The representative point nearly always works; random interior points are the
    fallback for pieces so thin that it falls within metres of the hexagon's edge.
    """
    rng = random.Random(cell)  # seeded by the cell: ids must be stable between builds
    minx, miny, maxx, maxy = piece.bounds

    def candidates():
        yield piece.representative_point()
        for _ in range(_PIECE_ID_ATTEMPTS):
            p = Point(rng.uniform(minx, maxx), rng.uniform(miny, maxy))
            if piece.contains(p):
                yield p

    first: tuple[str, Point] | None = None
    for p in candidates():
        sub = h3.latlng_to_cell(p.y, p.x, _PIECE_ID_RESOLUTION)
        if sub in used or h3.latlng_to_cell(p.y, p.x, GRID_RESOLUTION) != cell:
            continue
        if h3.cell_to_parent(sub, GRID_RESOLUTION) == cell:
            return sub, p
        first = first or (sub, p)
    if first is None:
        raise RuntimeError(f"no usable piece id inside {cell}")
    return first


@lru_cache(maxsize=1)
def _grid_frame() -> gpd.GeoDataFrame:
    outline = city_outline()
    cover = outline.buffer(_COVER_MARGIN_DEG)
    cells = sorted(h3.geo_to_cells(cover, GRID_RESOLUTION))
    hexagons = _hexagons(cells)

    districts = _district_geometries()
    # (hexagon index, district index, clipped geometry)
    pieces: list[tuple[int, int, BaseGeometry]] = []
    tree = shapely.STRtree(hexagons)
    for d_idx, geom in enumerate(districts):
        inside = set(tree.query(geom, predicate="contains_properly").tolist())
        touching = tree.query(geom, predicate="intersects")
        # Hexagons wholly inside a district need no clipping; only border hexagons
        # pay for an intersection with a ~2,000-vertex polygon.
        border = np.array([i for i in touching.tolist() if i not in inside], dtype=np.int64)
        for i in sorted(inside):
            pieces.append((i, d_idx, hexagons[i]))
        clipped = shapely.intersection(hexagons[border], geom)
        for i, g in zip(border.tolist(), clipped, strict=True):
            poly = _polygonal(g)
            if poly is not None:
                pieces.append((i, d_idx, poly))

    pieces.sort(key=lambda t: (t[0], t[1]))
    hex_of = np.array([p[0] for p in pieces], dtype=np.int64)
    dist_of = np.array([p[1] for p in pieces], dtype=np.int64)
    geoms = gpd.GeoSeries([p[2] for p in pieces], crs=WGS84)
    area_km2 = geoms.to_crs(AREA_CRS).area.to_numpy() / 1e6

    # Which district holds each hexagon's centre (or -1 when outside the city).
    centres = np.array([h3.cell_to_latlng(c) for c in cells])  # (lat, lng)
    centre_district = district_index_at(centres[:, 1], centres[:, 0])

    # Primary piece per hexagon: the one holding the centre, else the largest.
    frame = pd.DataFrame({"hex": hex_of, "dist": dist_of, "area": area_km2})
    frame["holds_centre"] = centre_district[hex_of] == dist_of
    order = frame.sort_values(["hex", "holds_centre", "area", "dist"], ascending=[True, False, False, True])
    primary_rows = order.drop_duplicates("hex").index.to_numpy()
    is_primary = np.zeros(len(pieces), dtype=bool)
    is_primary[primary_rows] = True

    grid_ids: list[str] = []
    centre_lon = np.empty(len(pieces))
    centre_lat = np.empty(len(pieces))
    used: set[str] = set()
    for row, (h_idx, d_idx, geom) in enumerate(pieces):
        cell = cells[h_idx]
        if is_primary[row] and centre_district[h_idx] == d_idx:
            # The hexagon's centre is inside this piece: a natural label position.
            gid = cell
            centre_lat[row], centre_lon[row] = centres[h_idx]
        elif is_primary[row]:
            gid = cell
            p = geom.representative_point()
            centre_lon[row], centre_lat[row] = p.x, p.y
        else:
            gid, p = _piece_id(cell, geom, used)
            centre_lon[row], centre_lat[row] = p.x, p.y
        used.add(gid)
        grid_ids.append(gid)

    gdf = gpd.GeoDataFrame(
        {
            "grid_id": grid_ids,
            "h3_cell": [cells[i] for i in hex_of],
            "district_code": [DISTRICTS[i].code for i in dist_of],
            "is_primary": is_primary,
            "area_km2": area_km2,
            "center_lon": centre_lon,
            "center_lat": centre_lat,
        },
        geometry=geoms.to_numpy(),
        crs=WGS84,
    )
    if gdf["grid_id"].duplicated().any():
        raise RuntimeError("grid ids are not unique")
    gdf = gdf.sort_values(["district_code", "h3_cell", "is_primary"], ascending=[True, True, False])
    return gdf.reset_index(drop=True)


def build_grid_cells() -> gpd.GeoDataFrame:
    """All grid cells of the city (cached; a fresh copy per call).

    Columns: ``grid_id`` (15-char H3 hex), ``h3_cell`` (the hexagon it was cut from),
    ``district_code``, ``is_primary``, ``geometry`` (Polygon/MultiPolygon, EPSG:4326),
    ``area_km2``, ``center_lon``, ``center_lat`` (a point inside the cell: the hexagon
    centre when the cell holds it).
    """
    return _grid_frame().copy()


def grid_cells_geojson(district_code: str | None = None, decimals: int = 5) -> dict:
    """Grid cells as a GeoJSON FeatureCollection (properties ``grid_id``, ``district_code``)."""
    gdf = _grid_frame()
    if district_code is not None:
        gdf = gdf[gdf["district_code"] == district_code]
    features = []
    for gid, code, geom in zip(gdf["grid_id"], gdf["district_code"], gdf.geometry, strict=True):
        rounded = shapely.transform(geom, lambda c: np.round(c, decimals))
        features.append(
            {
                "type": "Feature",
                "id": gid,
                "properties": {"grid_id": gid, "district_code": code},
                "geometry": shapely.geometry.mapping(rounded),
            }
        )
    return {"type": "FeatureCollection", "features": features}
