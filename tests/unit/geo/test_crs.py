"""GCJ-02 ↔ WGS-84 conversion."""

from __future__ import annotations

import math

import coordTransform
import numpy as np
import pytest

from geo import crs

METRES_PER_DEGREE = 111_320.0


def _distance_m(lon1, lat1, lon2, lat2) -> np.ndarray:
    dx = (np.asarray(lon1) - lon2) * METRES_PER_DEGREE * np.cos(np.radians(lat2))
    dy = (np.asarray(lat1) - lat2) * METRES_PER_DEGREE
    return np.hypot(dx, dy)


def test_forward_matches_library_scalar() -> None:
    assert crs.wgs84_to_gcj02(106.63, 30.47) == pytest.approx(
        tuple(coordTransform.wgs84_to_gcj02(106.63, 30.47)), abs=1e-12
    )


def test_offset_near_guangan_is_several_hundred_metres() -> None:
    # The offset is why boundaries must be converted: at Guang'an it moves a point by
    # roughly half a kilometre, to the south-east.
    g_lon, g_lat = crs.wgs84_to_gcj02(106.63, 30.47)
    offset = _distance_m(g_lon, g_lat, 106.63, 30.47)
    assert 300 < offset < 700
    assert g_lon > 106.63 and g_lat < 30.47
    assert crs.gcj02_offset_m(106.63, 30.47) == pytest.approx(float(offset), rel=1e-6)


def test_round_trip_is_sub_centimetre_over_china() -> None:
    rng = np.random.default_rng(1)
    lon = rng.uniform(74, 135, 20_000)
    lat = rng.uniform(18, 53, 20_000)
    g_lon, g_lat = crs.wgs84_to_gcj02(lon, lat)
    w_lon, w_lat = crs.gcj02_to_wgs84(g_lon, g_lat)
    assert _distance_m(w_lon, w_lat, lon, lat).max() < 0.01


def test_refinement_beats_library_inverse() -> None:
    # The library's one-step inverse is off by metres; ours must not be.
    lon, lat = 106.63, 30.47
    g = crs.wgs84_to_gcj02(lon, lat)
    approx = coordTransform.gcj02_to_wgs84(*g)
    precise = crs.gcj02_to_wgs84(*g)
    assert _distance_m(approx[0], approx[1], lon, lat) > 0.1
    assert _distance_m(precise[0], precise[1], lon, lat) < 1e-3


def test_scalar_and_array_agree() -> None:
    lon = np.array([106.63, 106.29, 107.1])
    lat = np.array([30.47, 30.35, 30.2])
    arr = crs.gcj02_to_wgs84(lon, lat)
    for i in range(3):
        s = crs.gcj02_to_wgs84(float(lon[i]), float(lat[i]))
        assert isinstance(s[0], float)
        assert s == pytest.approx((arr[0][i], arr[1][i]), abs=1e-12)


def test_lists_and_shapes() -> None:
    lon, lat = crs.wgs84_to_gcj02([[106.6, 106.7]], [[30.4, 30.5]])
    assert lon.shape == (1, 2) and lat.shape == (1, 2)
    empty = crs.gcj02_to_wgs84(np.array([]), np.array([]))
    assert empty[0].shape == (0,)
    with pytest.raises(ValueError):
        crs.wgs84_to_gcj02([1.0, 2.0], [3.0])


def test_non_finite_gives_nan() -> None:
    lon, lat = crs.gcj02_to_wgs84([np.nan, np.inf, 106.6], [30.4, 30.4, np.nan])
    assert np.isnan(lon).all() and np.isnan(lat).all()
    s = crs.wgs84_to_gcj02(float("nan"), 30.0)
    assert math.isnan(s[0]) and math.isnan(s[1])


def test_outside_china_is_identity() -> None:
    assert crs.wgs84_to_gcj02(2.35, 48.85) == (2.35, 48.85)
    assert crs.gcj02_to_wgs84(2.35, 48.85) == (2.35, 48.85)
