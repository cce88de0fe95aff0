"""Conversion between GCJ-02 (the obfuscated datum of AMap/Tencent maps) and WGS-84.

cityops stores WGS-84 everywhere; GCJ-02 only appears at the edges (AMap boundary
data, GCJ-02 tile servers, devices whose SDK reports GCJ-02). The forward transform
comes from the ``coordTransform`` library. Its inverse is a one-step approximation
with errors of a few metres, which is enough to move a district boundary across a
street, so :func:`gcj02_to_wgs84` refines it by fixed-point iteration on the forward
transform until the round trip is sub-centimetre.

Both functions take scalars or array-likes and return the same shape back: floats for
scalar input, float64 numpy arrays otherwise. Non-finite input gives NaN output.
Outside China GCJ-02 is defined as WGS-84 (the library leaves such points unchanged).
"""

from __future__ import annotations

from typing import overload

import coordTransform as _ct
import numpy as np
import numpy.typing as npt

# Each step shrinks the error by the slope of the offset field, about 1/160 anywhere
# in China (measured): the library's inverse is off by up to ~6 m, so one step leaves
# ~4 cm, two ~0.2 mm, three ~2 µm. Three keeps the sub-centimetre promise with margin
# and each step costs one vectorised forward call.
_INVERSE_ITERATIONS = 3

ArrayLike = float | npt.ArrayLike


def _forward(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """WGS-84 → GCJ-02 for 1-D float64 arrays (the library's C batch function)."""
    if lon.size == 0:
        return lon.copy(), lat.copy()
    out_lon, out_lat = _ct.wgs84_to_gcj02(np.ascontiguousarray(lon), np.ascontiguousarray(lat))
    return np.asarray(out_lon, dtype=np.float64), np.asarray(out_lat, dtype=np.float64)


def _approx_inverse(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if lon.size == 0:
        return lon.copy(), lat.copy()
    out_lon, out_lat = _ct.gcj02_to_wgs84(np.ascontiguousarray(lon), np.ascontiguousarray(lat))
    return np.asarray(out_lon, dtype=np.float64), np.asarray(out_lat, dtype=np.float64)


def _as_arrays(lon: ArrayLike, lat: ArrayLike) -> tuple[np.ndarray, np.ndarray, bool, tuple[int, ...]]:
    lon_a = np.asarray(lon, dtype=np.float64)
    lat_a = np.asarray(lat, dtype=np.float64)
    if lon_a.shape != lat_a.shape:
        raise ValueError(f"lon and lat differ in shape: {lon_a.shape} vs {lat_a.shape}")
    return lon_a.ravel(), lat_a.ravel(), lon_a.ndim == 0, lon_a.shape


def _finish(
    lon: np.ndarray, lat: np.ndarray, scalar: bool, shape: tuple[int, ...]
) -> tuple[float, float] | tuple[np.ndarray, np.ndarray]:
    if scalar:
        return float(lon[0]), float(lat[0])
    return lon.reshape(shape), lat.reshape(shape)


@overload
def wgs84_to_gcj02(lon: float, lat: float) -> tuple[float, float]: ...
@overload
def wgs84_to_gcj02(lon: npt.ArrayLike, lat: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]: ...
def wgs84_to_gcj02(lon, lat):
    """Convert WGS-84 longitude/latitude (degrees) to GCJ-02."""
    lon_a, lat_a, scalar, shape = _as_arrays(lon, lat)
    out_lon = np.full_like(lon_a, np.nan)
    out_lat = np.full_like(lat_a, np.nan)
    # The library passes NaN through today, but non-finite input is not part of its
    # contract; keep it away from the C code and answer NaN ourselves.
    ok = np.isfinite(lon_a) & np.isfinite(lat_a)
    out_lon[ok], out_lat[ok] = _forward(lon_a[ok], lat_a[ok])
    return _finish(out_lon, out_lat, scalar, shape)


@overload
def gcj02_to_wgs84(lon: float, lat: float) -> tuple[float, float]: ...
@overload
def gcj02_to_wgs84(lon: npt.ArrayLike, lat: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]: ...
def gcj02_to_wgs84(lon, lat):
    """Convert GCJ-02 longitude/latitude (degrees) to WGS-84, precise to well under 1 cm.

    Solves ``wgs84_to_gcj02(w) == g`` for ``w`` by fixed-point iteration
    ``w ← w + (g − forward(w))``, starting from the library's approximate inverse.
    """
    lon_a, lat_a, scalar, shape = _as_arrays(lon, lat)
    out_lon = np.full_like(lon_a, np.nan)
    out_lat = np.full_like(lat_a, np.nan)
    ok = np.isfinite(lon_a) & np.isfinite(lat_a)
    g_lon, g_lat = lon_a[ok], lat_a[ok]
    w_lon, w_lat = _approx_inverse(g_lon, g_lat)
    for _ in range(_INVERSE_ITERATIONS):
        f_lon, f_lat = _forward(w_lon, w_lat)
        w_lon = w_lon + (g_lon - f_lon)
        w_lat = w_lat + (g_lat - f_lat)
    out_lon[ok], out_lat[ok] = w_lon, w_lat
    return _finish(out_lon, out_lat, scalar, shape)


def gcj02_offset_m(lon: ArrayLike, lat: ArrayLike) -> np.ndarray | float:
    """Distance in metres between a WGS-84 point and its GCJ-02 coordinates.

    Useful for diagnostics and for sizing tolerances: around Guang'an it is a few
    hundred metres, far too large to ignore when locating a point in a district.
    """
    lon_a = np.asarray(lon, dtype=np.float64)
    lat_a = np.asarray(lat, dtype=np.float64)
    g_lon, g_lat = wgs84_to_gcj02(lon_a, lat_a)
    # An equirectangular approximation is plenty for offsets of a few hundred metres.
    metres_per_degree = 111_320.0
    dx = (np.asarray(g_lon) - lon_a) * metres_per_degree * np.cos(np.radians(lat_a))
    dy = (np.asarray(g_lat) - lat_a) * metres_per_degree
    dist = np.hypot(dx, dy)
    return float(dist) if dist.ndim == 0 else dist
