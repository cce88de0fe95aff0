"""Grid cells: H3 resolution 8 hexagons clipped to districts."""

from __future__ import annotations

import h3
import numpy as np
import pytest
import shapely

from geo import grid
from geo.boundaries import DISTRICTS, district_geometries
from geo.locate import locate


def test_resolution_gives_half_to_one_km2() -> None:
    assert 0.5 <= h3.average_hexagon_area(grid.GRID_RESOLUTION, "km^2") <= 1.0


def test_columns(grid_cells) -> None:
    for col in ("grid_id", "district_code", "geometry", "area_km2", "center_lon", "center_lat"):
        assert col in grid_cells.columns
    assert grid_cells.crs.to_epsg() == 4326
    assert grid_cells["grid_id"].is_unique
    assert grid_cells["grid_id"].str.fullmatch(r"[0-9a-f]{15}").all()
    assert all(h3.is_valid_cell(c) for c in grid_cells["grid_id"])
    assert set(grid_cells.geometry.geom_type) <= {"Polygon", "MultiPolygon"}
    assert grid_cells.geometry.is_valid.all()


def test_cell_count_is_city_area_over_hexagon_area(grid_cells, districts) -> None:
    hexagons = grid_cells["h3_cell"].nunique()
    assert hexagons == pytest.approx(districts["area_km2"].sum() / 0.70, rel=0.1)


def test_unclipped_cells_are_half_to_one_km2(grid_cells) -> None:
    hexagons = shapely.polygons(
        [[(lng, lat) for lat, lng in h3.cell_to_boundary(c)] for c in grid_cells["h3_cell"]]
    )
    unclipped = grid_cells[shapely.equals(grid_cells.geometry.to_numpy(), hexagons)]
    assert len(unclipped) > 0.8 * len(grid_cells)
    assert unclipped["area_km2"].between(0.5, 1.0).all()
    assert (unclipped["grid_id"] == unclipped["h3_cell"]).all()
    # Same area as H3 reports, up to H3's spherical earth versus our ellipsoid (~0.1 %).
    h3_area = unclipped["grid_id"].map(lambda c: h3.cell_area(c, "km^2"))
    assert np.allclose(unclipped["area_km2"], h3_area, rtol=3e-3)
    clipped = grid_cells.drop(unclipped.index)
    assert (clipped["area_km2"] < unclipped["area_km2"].max()).all()


def test_every_district_has_cells_that_tile_it(grid_cells, districts) -> None:
    by_district = grid_cells.groupby("district_code")["area_km2"].sum()
    for code, area in zip(districts["district_code"], districts["area_km2"], strict=True):
        assert by_district[code] == pytest.approx(area, rel=1e-6)
    assert set(grid_cells["district_code"]) == {d.code for d in DISTRICTS}


def test_cells_lie_in_their_district(grid_cells) -> None:
    geoms = district_geometries()
    for code, cells in grid_cells.groupby("district_code"):
        outside = shapely.difference(cells.geometry.to_numpy(), geoms[code])
        assert shapely.area(outside).max() < 1e-12


def test_straddling_hexagon_rule(grid_cells) -> None:
    """A hexagon cut by a district border becomes one cell per district.

    The piece holding the hexagon's centre keeps the hexagon's id; the others are
    named by a resolution-15 H3 cell inside them whose parent is the hexagon.
    """
    counts = grid_cells.groupby("h3_cell").size()
    split = grid_cells[grid_cells["h3_cell"].isin(counts[counts > 1].index)]
    assert split["h3_cell"].nunique() > 100
    for _h, pieces in split.groupby("h3_cell"):
        assert pieces["district_code"].is_unique
        assert pieces["is_primary"].sum() == 1
    primary = split[split["is_primary"]]
    assert (primary["grid_id"] == primary["h3_cell"]).all()
    # Whose centre: locate the hexagon centre; it is in the primary piece's district.
    centres = np.array([h3.cell_to_latlng(c) for c in primary["h3_cell"]])
    loc = locate(centres[:, 1], centres[:, 0])
    in_city = loc.district_code != None  # noqa: E711
    assert in_city.mean() > 0.95
    assert (loc.district_code[in_city] == primary["district_code"].to_numpy()[in_city]).all()
    secondary = split[~split["is_primary"]]
    assert secondary["grid_id"].map(h3.get_resolution).eq(15).all()
    parents = secondary["grid_id"].map(lambda c: h3.cell_to_parent(c, grid.GRID_RESOLUTION))
    assert (parents == secondary["h3_cell"]).mean() > 0.99


def test_edge_hexagon_without_centre_goes_to_largest_piece(grid_cells) -> None:
    centres = np.array([h3.cell_to_latlng(c) for c in grid_cells["h3_cell"]])
    outside = locate(centres[:, 1], centres[:, 0]).district_code == None  # noqa: E711
    edge = grid_cells[outside]
    multi = edge.groupby("h3_cell").filter(lambda g: len(g) > 1)
    assert len(multi) > 0
    for _h, pieces in multi.groupby("h3_cell"):
        assert pieces.loc[pieces["area_km2"].idxmax(), "is_primary"]


def test_cached_and_copied() -> None:
    a = grid.build_grid_cells()
    a.loc[0, "district_code"] = "x"
    assert grid.build_grid_cells().loc[0, "district_code"] != "x"


def test_grid_geojson() -> None:
    fc = grid.grid_cells_geojson("511603")
    assert fc["features"] and {f["properties"]["district_code"] for f in fc["features"]} == {"511603"}
