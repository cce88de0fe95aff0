"""Benchmark point location over 1,000,000 seeded random points in Guang'an's bounding box.

    python bench/bench_locate.py [n_points]

Compares the ways a batch of ingest points could be located:

* shapely STRtree ``query(points, predicate="within")`` over the six districts: the
  textbook spatial-index approach (district only);
* a prepared ``shapely.intersects_xy`` per district: brute force, district only;
* ``h3.latlng_to_cell`` in a Python loop: the grid id alone, without the district;
* ``geo.locate.locate``: district and grid id together, exact.

One-off costs (loading boundaries, building the grid table and the lookup raster) are
reported separately: they are paid once per process.
"""

from __future__ import annotations

import os
import sys
import time

import h3
import numpy as np
import shapely

# Runnable as a plain script from the repository root or from bench/.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from geo import boundaries, grid, locate

SEED = 20261125


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main(n: int = 1_000_000) -> None:
    t_boundaries, _ = _timed(boundaries.load_districts)
    t_grid, cells = _timed(grid.build_grid_cells)
    t_index, _ = _timed(locate._index)

    rng = np.random.default_rng(SEED)
    minx, miny, maxx, maxy = boundaries.city_bounds()
    lon = rng.uniform(minx, maxx, n)
    lat = rng.uniform(miny, maxy, n)
    geoms = list(boundaries.district_geometries().values())

    def strtree_within() -> np.ndarray:
        tree = shapely.STRtree(geoms)
        pts = shapely.points(lon, lat)
        point_idx, district_idx = tree.query(pts, predicate="within")
        out = np.full(n, -1, dtype=np.int64)
        out[point_idx] = district_idx
        return out

    def h3_loop() -> list[str]:
        res = grid.GRID_RESOLUTION
        return [h3.latlng_to_cell(y, x, res) for x, y in zip(lon.tolist(), lat.tolist(), strict=True)]

    runs = [
        ("shapely STRtree within (district)", strtree_within),
        ("prepared intersects_xy x6 (district)", lambda: boundaries.district_index_at(lon, lat)),
        ("h3.latlng_to_cell loop (grid id)", h3_loop),
        ("geo.locate.locate (district + grid id)", lambda: locate.locate(lon, lat)),
    ]
    results = [(name, *_timed(fn)) for name, fn in runs]
    t_locate = results[-1][1]

    # Same answers: brute force and locate agree on every district.
    loc = results[-1][2]
    codes = np.array([d.code for d in boundaries.DISTRICTS] + [None], dtype=object)
    agree = bool((codes[results[1][2]] == loc.district_code).all())
    inside = int(np.count_nonzero(loc.district_code != None))  # noqa: E711

    print(f"points: {n:,} uniform over the city's bounding box (seed {SEED}); inside the city: {inside:,}")
    print(f"cpu cores: {os.cpu_count()}")
    print()
    print(f"{'method':<42}{'seconds':>9}{'× locate':>10}")
    print("-" * 61)
    for name, seconds, _ in results:
        print(f"{name:<42}{seconds:>9.3f}{seconds / t_locate:>10.1f}")
    print()
    print("one-off build (first call per process):")
    print(f"  boundaries (read + GCJ-02 → WGS-84)   {t_boundaries:7.3f} s")
    print(f"  grid table ({len(cells):,} cells)          {t_grid:7.3f} s")
    print(f"  locate index (raster)                 {t_index:7.3f} s")
    print()
    print(f"locate agrees with brute force on every point: {agree}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
