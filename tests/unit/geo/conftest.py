"""Fixtures for the geography tests: the cached tables, built once per session."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely

from geo import boundaries, grid


@pytest.fixture(scope="session")
def districts() -> gpd.GeoDataFrame:
    return boundaries.load_districts()


@pytest.fixture(scope="session")
def grid_cells() -> gpd.GeoDataFrame:
    return grid.build_grid_cells()


@pytest.fixture(scope="session")
def random_points() -> tuple[np.ndarray, np.ndarray]:
    """20,000 seeded points over the city's bounding box (about half inside)."""
    rng = np.random.default_rng(20261125)
    minx, miny, maxx, maxy = boundaries.city_bounds()
    return rng.uniform(minx, maxx, 20_000), rng.uniform(miny, maxy, 20_000)


@pytest.fixture(scope="session")
def border_points() -> tuple[np.ndarray, np.ndarray]:
    """Points scattered within ~50 m of every district border, where mistakes would be."""
    rng = np.random.default_rng(7)
    lons, lats = [], []
    for geom in boundaries.district_geometries().values():
        for ring in shapely.get_rings(shapely.get_parts(geom)):
            coords = np.asarray(ring.coords)
            pick = rng.choice(len(coords) - 1, size=min(400, len(coords) - 1), replace=False)
            t = rng.uniform(0, 1, len(pick))[:, None]
            on_border = coords[pick] + t * (coords[pick + 1] - coords[pick])
            jitter = rng.normal(0, 0.0003, on_border.shape)
            lons.append(on_border[:, 0] + jitter[:, 0])
            lats.append(on_border[:, 1] + jitter[:, 1])
    return np.concatenate(lons), np.concatenate(lats)
