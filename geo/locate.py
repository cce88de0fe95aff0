"""Point location at ingest: which district and which grid cell is a WGS-84 point in.

Exact and fast. The answer is the one the reference point-in-polygon test
(:func:`geo.boundaries.district_index_at`) gives for the district, and the grid cell
of :func:`geo.grid.build_grid_cells` that holds the point, in the same district.

How it is fast: a raster of ~0.001° cells (≈100 m) covers the city's bounding box.
Each raster cell that no district border touches lies wholly in one district (or
wholly outside), and each that lies wholly inside one H3 hexagon is also wholly inside
one grid cell; for those the grid row is read straight from the raster. Only points in
raster cells that a border or a hexagon edge crosses take the slow path: an exact
``shapely.intersects_xy`` against the districts whose borders touch that raster cell,
then ``h3.latlng_to_cell``. Of 1M random points over the bounding box about 15 %
take the slow path (47 % are answered "outside" and 38 % fully by the raster).

How it stays exact:

* a raster cell is "untouched" only if no border segment meets the cell grown by
  :data:`_EDGE_EPS_DEG`, a margin far larger than floating-point error;
* a raster cell is "inside one hexagon" only if H3 puts all four corners in that
  hexagon. H3 hexagons are convex with straight edges in H3's gnomonic face
  projection, where meridians are straight too and parallels bow by under 0.1 mm
  over 100 m, so the corners deciding means the cell is inside;
* points within :data:`_NEAR_EDGE_FRACTION` of a raster-cell edge (a millimetre)
  skip the raster, so rounding in the cell-index arithmetic and that bowing can never
  put a point in the wrong raster cell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import h3
import h3.api.basic_int as h3i
import numpy as np
import numpy.typing as npt
import pandas as pd
import shapely

from geo.boundaries import (
    DISTRICTS,
    _district_geometries,
    city_bounds,
    district_index_at,
    prepared_district_geometries,
)
from geo.grid import GRID_RESOLUTION, _grid_frame

# ≈100 m raster cells: the slow-path share falls with the step (border crossings ∝
# step) while build time and memory grow with 1/step². At 0.001° the raster is ~1.1M
# cells (a few MB) and builds in a few seconds.
_RASTER_STEP_DEG = 0.001
# Border segments are tested against raster cells grown by this much (≈1 cm): wide
# enough to swallow any floating-point error in the test, narrow enough to mark
# almost no extra cells.
_EDGE_EPS_DEG = 1e-7
# Points this close to a raster-cell edge (as a fraction of the step, ≈1 mm) go the
# slow path instead of trusting the computed cell index.
_NEAR_EDGE_FRACTION = 1e-5
_ORIGIN_SHIFT = 0.123456789  # fraction of a step; see _index()

_OUTSIDE = -2  # raster value: the whole raster cell is outside the city
_SLOW = -1  # raster value: decide point by point


@dataclass(frozen=True, slots=True, eq=False)
class Location:
    """Where a batch of points is, element by element in input order.

    ``district_code`` holds the six-digit code and ``grid_id`` the grid cell id (both
    ``str``, numpy ``object`` arrays); both are ``None`` for points outside Guang'an
    and for points with a missing or non-finite coordinate.
    """

    district_code: np.ndarray
    grid_id: np.ndarray

    def __len__(self) -> int:
        return len(self.district_code)


@dataclass(frozen=True, slots=True, eq=False)
class _Index:
    x0: float
    y0: float
    step: float
    nx: int
    ny: int
    fast: np.ndarray  # (ny, nx) int32: grid row, _OUTSIDE or _SLOW
    district: np.ndarray  # (ny, nx) int8: district index, -1 outside, -2 border cell
    candidates: np.ndarray  # (ny, nx) uint8: bit d set if district d's border touches
    row_keys: np.ndarray  # sorted uint64 keys h3_cell * 8 + district index
    key_rows: np.ndarray  # grid row for each key
    grid_ids: np.ndarray  # object array of grid ids with a trailing None
    codes: np.ndarray  # object array of district codes with a trailing None
    row_district: np.ndarray  # district index of each grid row
    build_seconds: float


def _border_segments() -> tuple[np.ndarray, np.ndarray]:
    """All ring segments of all districts as (x1, y1, x2, y2) rows, and their district."""
    segs: list[np.ndarray] = []
    owner: list[np.ndarray] = []
    for d_idx, geom in enumerate(_district_geometries()):
        rings = shapely.get_rings(shapely.get_parts(geom))
        for ring in rings:
            c = shapely.get_coordinates(ring)
            s = np.column_stack([c[:-1], c[1:]])
            segs.append(s)
            owner.append(np.full(len(s), d_idx, dtype=np.int64))
    return np.concatenate(segs), np.concatenate(owner)


def _mark_border_cells(
    segs: np.ndarray, owner: np.ndarray, x0: float, y0: float, step: float, nx: int, ny: int
) -> np.ndarray:
    """Bit d of a cell is set if a border segment of district d meets the (grown) cell."""
    x1, y1, x2, y2 = segs.T
    eps = _EDGE_EPS_DEG
    ix0 = np.clip(np.floor((np.minimum(x1, x2) - eps - x0) / step).astype(np.int64), 0, nx - 1)
    ix1 = np.clip(np.floor((np.maximum(x1, x2) + eps - x0) / step).astype(np.int64), 0, nx - 1)
    iy0 = np.clip(np.floor((np.minimum(y1, y2) - eps - y0) / step).astype(np.int64), 0, ny - 1)
    iy1 = np.clip(np.floor((np.maximum(y1, y2) + eps - y0) / step).astype(np.int64), 0, ny - 1)
    wx = ix1 - ix0 + 1
    wy = iy1 - iy0 + 1
    counts = wx * wy
    # Expand every segment into the raster cells of its bounding box, then keep the
    # cells the segment's line actually passes: a cell is missed only if all four of
    # its (grown) corners are strictly on one side of the line.
    seg = np.repeat(np.arange(len(segs)), counts)
    local = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    cx = ix0[seg] + local % wx[seg]
    cy = iy0[seg] + local // wx[seg]
    bx0 = x0 + cx * step - eps
    bx1 = x0 + (cx + 1) * step + eps
    by0 = y0 + cy * step - eps
    by1 = y0 + (cy + 1) * step + eps
    dx = x2[seg] - x1[seg]
    dy = y2[seg] - y1[seg]
    px = x1[seg]
    py = y1[seg]
    sides = np.stack(
        [dx * (cyy - py) - dy * (cxx - px) for cxx in (bx0, bx1) for cyy in (by0, by1)],
        axis=0,
    )
    hit = ~((sides > 0).all(axis=0) | (sides < 0).all(axis=0))
    bits = np.zeros((ny, nx), dtype=np.uint8)
    np.bitwise_or.at(bits, (cy[hit], cx[hit]), (1 << owner[seg[hit]]).astype(np.uint8))
    return bits


def _classify_clean_cells(border: np.ndarray, x0: float, y0: float, step: float) -> np.ndarray:
    """District index (-1 outside) of every raster cell no border touches; -2 for border cells.

    Horizontally adjacent untouched cells share an edge no border crosses, so each run
    of them along a raster row is in one region: classify one cell per run.
    """
    ny, nx = border.shape
    clean = border == 0
    flat = clean.ravel()
    prev = np.zeros_like(clean)
    prev[:, 1:] = clean[:, :-1]
    starts = (clean & ~prev).ravel()
    run_id = np.cumsum(starts) - 1
    start_idx = np.flatnonzero(starts)
    sy, sx = np.divmod(start_idx, nx)
    run_class = district_index_at(x0 + (sx + 0.5) * step, y0 + (sy + 0.5) * step)
    out = np.full(ny * nx, -2, dtype=np.int8)
    out[flat] = run_class[run_id[flat]]
    return out.reshape(ny, nx)


def _row_keys(h3_int: np.ndarray, district_idx: np.ndarray) -> np.ndarray:
    # H3 ints of this kind are < 2**60, so ×8 + district index (< 8) fits in uint64.
    return h3_int.astype(np.uint64) * np.uint64(8) + district_idx.astype(np.uint64)


@lru_cache(maxsize=1)
def _index() -> _Index:
    import time

    t0 = time.perf_counter()
    grid = _grid_frame()
    code_to_idx = {d.code: i for i, d in enumerate(DISTRICTS)}
    row_district = grid["district_code"].map(code_to_idx).to_numpy(np.int64)
    h3_int = np.array([h3.str_to_int(c) for c in grid["h3_cell"]], dtype=np.uint64)
    keys = _row_keys(h3_int, row_district)
    order = np.argsort(keys)
    row_keys = keys[order]
    key_rows = order.astype(np.int64)

    step = _RASTER_STEP_DEG
    minx, miny, maxx, maxy = city_bounds()
    # Raster edges must not fall on "round" coordinates: devices and people report
    # 3–6 decimals, and points on an edge take the slow path. Shifting the origin by
    # an odd fraction of the step keeps every coordinate with up to 7 decimals at
    # least 4e-5 of a step away from an edge. Derived from the step, so the raster is
    # the same from build to build.
    x0 = (math.floor(minx / step) - 1 + _ORIGIN_SHIFT) * step
    y0 = (math.floor(miny / step) - 1 + _ORIGIN_SHIFT) * step
    nx = math.ceil((maxx - x0) / step) + 1
    ny = math.ceil((maxy - y0) / step) + 1

    segs, owner = _border_segments()
    candidates = _mark_border_cells(segs, owner, x0, y0, step, nx, ny)
    district = _classify_clean_cells(candidates, x0, y0, step)

    # H3 at the raster nodes (corners) of raster cells wholly inside a district.
    inside = district >= 0
    need = np.zeros((ny + 1, nx + 1), dtype=bool)
    need[:-1, :-1] |= inside
    need[1:, :-1] |= inside
    need[:-1, 1:] |= inside
    need[1:, 1:] |= inside
    nodes = np.zeros((ny + 1, nx + 1), dtype=np.uint64)
    jy, jx = np.nonzero(need)
    lat_nodes = (y0 + jy * step).tolist()
    lon_nodes = (x0 + jx * step).tolist()
    res = GRID_RESOLUTION
    nodes[jy, jx] = np.fromiter(
        (h3i.latlng_to_cell(la, lo, res) for la, lo in zip(lat_nodes, lon_nodes, strict=True)),
        dtype=np.uint64,
        count=len(jy),
    )
    corner = nodes[:-1, :-1]
    one_hex = inside & (corner == nodes[1:, :-1]) & (corner == nodes[:-1, 1:]) & (corner == nodes[1:, 1:])

    fast = np.full((ny, nx), _SLOW, dtype=np.int32)
    fast[district == -1] = _OUTSIDE
    cy, cx = np.nonzero(one_hex)
    rows = _rows_for(row_keys, key_rows, _row_keys(corner[cy, cx], district[cy, cx]))
    # A row can be missing only where a hexagon's sliver in a district is too thin for
    # the clipped geometry; those cells stay on the slow path, which has a fallback.
    fast[cy, cx] = np.where(rows >= 0, rows, _SLOW)

    return _Index(
        x0=x0,
        y0=y0,
        step=step,
        nx=nx,
        ny=ny,
        fast=fast,
        district=district,
        candidates=candidates,
        row_keys=row_keys,
        key_rows=key_rows,
        grid_ids=np.array([*grid["grid_id"].tolist(), None], dtype=object),
        codes=np.array([*(d.code for d in DISTRICTS), None], dtype=object),
        row_district=row_district,
        build_seconds=time.perf_counter() - t0,
    )


def _rows_for(row_keys: np.ndarray, key_rows: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Grid row for each (hexagon, district) key, -1 where the table has no such piece."""
    pos = np.searchsorted(row_keys, keys)
    pos_c = np.minimum(pos, len(row_keys) - 1)
    found = row_keys[pos_c] == keys
    return np.where(found, key_rows[pos_c], -1)


@lru_cache(maxsize=1)
def _district_trees() -> dict[int, tuple[shapely.STRtree, np.ndarray]]:
    grid = _grid_frame()
    out = {}
    for d_idx, d in enumerate(DISTRICTS):
        rows = np.flatnonzero(grid["district_code"].to_numpy() == d.code)
        out[d_idx] = (shapely.STRtree(grid.geometry.to_numpy()[rows]), rows)
    return out


def _nearest_row(lon: float, lat: float, d_idx: int) -> int:
    """Grid row of district ``d_idx`` nearest to the point.

    Used when H3 puts a point in a hexagon whose clipped piece in the point's district
    has no area (the district only grazes the hexagon within millimetres of its edge,
    where the straight-edged hexagon polygon and H3's own cell differ). The nearest
    piece of the right district is then the cell the point is really in.
    """
    tree, rows = _district_trees()[d_idx]
    hit = tree.query_nearest(shapely.Point(lon, lat))
    return int(rows[hit[0]])


def _coerce(values: npt.ArrayLike) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        # Mixed garbage from a payload (None, "", "abc"): anything non-numeric is NaN.
        arr = pd.to_numeric(pd.Series(np.asarray(values, dtype=object).ravel()), errors="coerce")
        arr = arr.to_numpy(dtype=np.float64)
    return np.atleast_1d(arr).ravel()


def _locate_rows(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Grid row (into the grid table) of each point, -1 outside the city."""
    ix_ = _index()
    n = len(lon)
    rows = np.full(n, -1, dtype=np.int64)
    with np.errstate(invalid="ignore"):
        fx = (lon - ix_.x0) / ix_.step
        fy = (lat - ix_.y0) / ix_.step
        # NaN and ±inf fail these comparisons and so are dropped here.
        in_box = (fx >= 0) & (fx < ix_.nx) & (fy >= 0) & (fy < ix_.ny)
    sel = np.flatnonzero(in_box)
    fx = fx[sel]
    fy = fy[sel]
    cx = fx.astype(np.int64)  # non-negative, so truncation is floor
    cy = fy.astype(np.int64)
    rx = fx - cx
    ry = fy - cy
    near_edge = (
        (rx < _NEAR_EDGE_FRACTION)
        | (rx > 1 - _NEAR_EDGE_FRACTION)
        | (ry < _NEAR_EDGE_FRACTION)
        | (ry > 1 - _NEAR_EDGE_FRACTION)
    )
    fast = ix_.fast[cy, cx]
    fast[near_edge] = _SLOW
    rows[sel] = np.where(fast >= 0, fast, -1)

    slow = fast == _SLOW
    if not slow.any():
        return rows
    s_idx = sel[slow]
    s_lon = lon[s_idx]
    s_lat = lat[s_idx]
    s_cx = cx[slow]
    s_cy = cy[slow]
    s_near = near_edge[slow]

    # District: from the raster where no border touches the cell, else exact tests
    # against just the districts whose borders do.
    d = ix_.district[s_cy, s_cx].astype(np.int64)
    d[s_near] = -2
    border = d == -2
    if border.any():
        b_pos = np.flatnonzero(border)
        b_d = np.full(len(b_pos), -1, dtype=np.int64)
        b_near = s_near[b_pos]
        if b_near.any():
            # Off the raster's trusted grid: ask the reference directly.
            b_d[b_near] = district_index_at(s_lon[b_pos[b_near]], s_lat[b_pos[b_near]])
        cand = ix_.candidates[s_cy[b_pos], s_cx[b_pos]]
        geoms = prepared_district_geometries()
        # Ascending district order and "first hit wins" reproduce the reference's
        # tie-break for points exactly on a shared border.
        for k in range(len(DISTRICTS)):
            test = (~b_near) & (b_d == -1) & ((cand >> k) & 1).astype(bool)
            if test.any():
                t = np.flatnonzero(test)
                hit = shapely.intersects_xy(geoms[k], s_lon[b_pos[t]], s_lat[b_pos[t]])
                b_d[t[hit]] = k
        d[b_pos] = b_d

    inside = np.flatnonzero(d >= 0)
    if len(inside):
        res = GRID_RESOLUTION
        lat_l = s_lat[inside].tolist()
        lon_l = s_lon[inside].tolist()
        cells = np.fromiter(
            (h3i.latlng_to_cell(la, lo, res) for la, lo in zip(lat_l, lon_l, strict=True)),
            dtype=np.uint64,
            count=len(inside),
        )
        r = _rows_for(ix_.row_keys, ix_.key_rows, _row_keys(cells, d[inside]))
        for j in np.flatnonzero(r < 0):
            r[j] = _nearest_row(lon_l[j], lat_l[j], int(d[inside[j]]))
        rows[s_idx[inside]] = r
    return rows


def locate(lon: npt.ArrayLike, lat: npt.ArrayLike) -> Location:
    """District and grid cell of each WGS-84 point.

    Accepts numpy arrays, lists or scalars (flattened, so the result is always 1-D and
    in input order). Points outside Guang'an, and missing or non-finite coordinates,
    give ``None``; a point never raises. ``lon`` and ``lat`` must have the same size.
    """
    lon_a = _coerce(lon)
    lat_a = _coerce(lat)
    if lon_a.shape != lat_a.shape:
        raise ValueError(f"lon and lat differ in size: {lon_a.size} vs {lat_a.size}")
    ix_ = _index()
    rows = _locate_rows(lon_a, lat_a)
    # Row -1 (outside) picks the trailing None of both lookup arrays.
    district_idx = np.where(rows >= 0, ix_.row_district[rows], -1)
    return Location(district_code=ix_.codes[district_idx], grid_id=ix_.grid_ids[rows])


def locate_point(lon: float, lat: float) -> tuple[str | None, str | None]:
    """``(district_code, grid_id)`` of one WGS-84 point; ``(None, None)`` outside.

    Same answer as :func:`locate`, without array overhead: ingest calls this once per
    message, and most points are answered by one raster read.
    """
    try:
        x = float(lon)
        y = float(lat)
    except (TypeError, ValueError):
        return None, None
    if not (math.isfinite(x) and math.isfinite(y)):
        return None, None
    ix_ = _index()
    fx = (x - ix_.x0) / ix_.step
    fy = (y - ix_.y0) / ix_.step
    if not (0 <= fx < ix_.nx and 0 <= fy < ix_.ny):
        return None, None
    cx, cy = int(fx), int(fy)
    rx, ry = fx - cx, fy - cy
    lo, hi = _NEAR_EDGE_FRACTION, 1 - _NEAR_EDGE_FRACTION
    if lo <= rx <= hi and lo <= ry <= hi:
        v = int(ix_.fast[cy, cx])
        if v == _OUTSIDE:
            return None, None
        if v >= 0:
            return ix_.codes[ix_.row_district[v]], ix_.grid_ids[v]
        d = int(ix_.district[cy, cx])
        if d == -2:
            # Same rule as the batch path: candidates in ascending order, first hit wins.
            d = -1
            bits = int(ix_.candidates[cy, cx])
            geoms = prepared_district_geometries()
            for k in range(len(DISTRICTS)):
                if bits >> k & 1 and shapely.intersects_xy(geoms[k], x, y):
                    d = k
                    break
    else:
        d = int(district_index_at(np.array([x]), np.array([y]))[0])
    if d < 0:
        return None, None
    cell = h3i.latlng_to_cell(y, x, GRID_RESOLUTION)
    keys = _row_keys(np.array([cell], dtype=np.uint64), np.array([d]))
    row = int(_rows_for(ix_.row_keys, ix_.key_rows, keys)[0])
    if row < 0:
        row = _nearest_row(x, y, d)
    return ix_.codes[d], ix_.grid_ids[row]


def prepare_index() -> float:
    """Build the lookup raster and the districts' cell trees now, not on the first call to
    :func:`locate` (about a second): an ingest worker does this before it subscribes, so its
    first batch does not keep the messages behind it waiting. Seconds spent (0 when built)."""
    import time

    started = time.perf_counter()
    _index()
    _district_trees()
    return time.perf_counter() - started


def index_build_seconds() -> float:
    """Seconds spent building the lookup raster (building it now if needed)."""
    return _index().build_seconds
