"""Point location: exact against the polygons, consistent with the grid table."""

from __future__ import annotations

import h3
import numpy as np
import pytest
import shapely

from geo import boundaries, crs
from geo.boundaries import DISTRICTS
from geo.locate import Location, locate, locate_point

CODES = np.array([d.code for d in DISTRICTS] + [None], dtype=object)

# Seats and towns, WGS-84, each well inside its district.
KNOWN_TOWNS = [
    ("广安区 seat (北辰街道)", 106.633, 30.474, "511602"),
    ("广安区 协兴镇", 106.705, 30.435, "511602"),
    ("前锋区 seat (奎阁街道)", 106.893, 30.495, "511603"),
    ("前锋区 观塘镇", 106.950, 30.550, "511603"),
    ("岳池县 seat (九龙街道)", 106.437, 30.541, "511621"),
    ("岳池县 罗渡镇", 106.348, 30.495, "511621"),
    ("武胜县 seat (沿口镇)", 106.290, 30.348, "511622"),
    ("武胜县 街子镇", 106.200, 30.410, "511622"),
    ("邻水县 seat (鼎屏镇)", 106.930, 30.334, "511623"),
    ("邻水县 高滩镇", 107.100, 30.200, "511623"),
    ("华蓥市 seat (双河街道)", 106.783, 30.390, "511681"),
    ("华蓥市 溪口镇", 106.750, 30.270, "511681"),
]

OUTSIDE = [
    ("重庆 渝中", 106.55, 29.56),
    ("南充", 106.08, 30.80),
    ("达州", 107.47, 31.21),
    ("重庆 合川", 106.27, 29.97),
    ("成都", 104.07, 30.67),
    ("null island", 0.0, 0.0),
]


@pytest.mark.parametrize(("label", "lon", "lat", "code"), KNOWN_TOWNS, ids=[t[0] for t in KNOWN_TOWNS])
def test_known_towns(label, lon, lat, code) -> None:
    district, grid_id = locate_point(lon, lat)
    assert district == code
    assert grid_id is not None and h3.is_valid_cell(grid_id)


def test_representative_point_of_each_district(districts) -> None:
    pts = [g.representative_point() for g in districts.geometry]
    loc = locate([p.x for p in pts], [p.y for p in pts])
    assert list(loc.district_code) == list(districts["district_code"])


@pytest.mark.parametrize(("label", "lon", "lat"), OUTSIDE, ids=[t[0] for t in OUTSIDE])
def test_outside_guangan(label, lon, lat) -> None:
    assert locate_point(lon, lat) == (None, None)


def test_both_sides_of_every_shared_border() -> None:
    """A metre either side of each district border lands in the right district."""
    geoms = boundaries.district_geometries()
    codes = list(geoms)
    checked = 0
    for i, a in enumerate(codes):
        for b in codes[i + 1 :]:
            shared = geoms[a].boundary.intersection(geoms[b].boundary)
            if shared.is_empty or shared.length == 0:
                continue
            coords = shapely.get_coordinates(shared)
            for k in range(0, len(coords) - 1, max(1, len(coords) // 10)):
                (x1, y1), (x2, y2) = coords[k], coords[k + 1]
                length = np.hypot(x2 - x1, y2 - y1)
                if length < 1e-5:
                    continue
                mx, my = (x1 + x2) / 2, (y1 + y2) / 2
                nx, ny = -(y2 - y1) / length * 1e-5, (x2 - x1) / length * 1e-5  # ~1 m normal
                p1, p2 = (mx + nx, my + ny), (mx - nx, my - ny)
                expect = {}
                for p in (p1, p2):
                    inside = [c for c in (a, b) if geoms[c].contains(shapely.Point(p))]
                    expect[p] = inside[0] if len(inside) == 1 else None
                if None in expect.values():
                    continue  # the border bends within a metre here; skip this segment
                assert expect[p1] != expect[p2]
                for p, code in expect.items():
                    assert locate_point(*p)[0] == code
                checked += 1
    assert checked >= 50


def test_gcj02_shift_is_applied() -> None:
    """A device reporting GCJ-02 must be converted before locating.

    (107.18, 30.45) WGS-84 lies in 邻水县 about 200 m inside the city's eastern edge;
    its GCJ-02 coordinates are ~500 m to the south-east, outside the city.
    """
    g_lon, g_lat = crs.wgs84_to_gcj02(107.18, 30.45)
    assert locate_point(g_lon, g_lat) == (None, None)
    assert locate_point(*crs.gcj02_to_wgs84(g_lon, g_lat))[0] == "511623"


def test_gcj02_shift_near_internal_borders(border_points) -> None:
    """Near borders, raw GCJ-02 often lands in the neighbour; converted, it never does."""
    lon, lat = border_points
    truth = CODES[boundaries.district_index_at(lon, lat)]
    g_lon, g_lat = crs.wgs84_to_gcj02(lon, lat)
    raw = locate(g_lon, g_lat).district_code
    converted = locate(*crs.gcj02_to_wgs84(g_lon, g_lat)).district_code
    assert list(converted) == list(truth)
    wrong_neighbour = [(r, t) for r, t in zip(raw, truth, strict=True) if r and t and r != t]
    wrong_outside = [t for r, t in zip(raw, truth, strict=True) if r is None and t]
    assert len(wrong_neighbour) > 50 and len(wrong_outside) > 50


def test_equals_brute_force_on_random_points(random_points) -> None:
    lon, lat = random_points
    loc = locate(lon, lat)
    assert list(loc.district_code) == list(CODES[boundaries.district_index_at(lon, lat)])
    assert 0.3 < np.mean(loc.district_code != None) < 0.8  # noqa: E711 (elementwise)


def test_equals_brute_force_near_borders(border_points) -> None:
    lon, lat = border_points
    loc = locate(lon, lat)
    assert list(loc.district_code) == list(CODES[boundaries.district_index_at(lon, lat)])


def test_grid_id_is_consistent_with_grid_table(grid_cells, random_points, border_points) -> None:
    """Every located point's grid cell exists, is in the point's district, and holds it."""
    lon = np.concatenate([random_points[0], border_points[0]])
    lat = np.concatenate([random_points[1], border_points[1]])
    loc = locate(lon, lat)
    table = grid_cells.set_index("grid_id")
    inside = np.flatnonzero(loc.district_code != None)  # noqa: E711
    rows = table.loc[loc.grid_id[inside]]
    assert (rows["district_code"].to_numpy() == loc.district_code[inside]).all()
    # The point lies in its cell's clipped geometry (to 1 cm: H3's own edges and the
    # straight-edged hexagon polygons differ by millimetres).
    dist = shapely.distance(rows.geometry.to_numpy(), shapely.points(lon[inside], lat[inside]))
    assert dist.max() < 1e-7
    # For points in a hexagon's primary piece the grid id is the H3 cell itself.
    primary = rows["is_primary"].to_numpy()
    expect = [h3.latlng_to_cell(y, x, 8) for x, y in zip(lon[inside], lat[inside], strict=True)]
    assert (rows["h3_cell"].to_numpy() == np.array(expect, dtype=object)).all()
    assert (loc.grid_id[inside][primary] == np.array(expect, dtype=object)[primary]).all()
    assert (~primary).sum() > 0  # border points do exercise secondary pieces


def test_every_grid_cell_centre_locates_to_itself(grid_cells) -> None:
    loc = locate(grid_cells["center_lon"].to_numpy(), grid_cells["center_lat"].to_numpy())
    assert (loc.grid_id == grid_cells["grid_id"].to_numpy()).all()
    assert (loc.district_code == grid_cells["district_code"].to_numpy()).all()


def test_vectorised_equals_scalar(random_points, border_points) -> None:
    lon = np.concatenate([random_points[0][:150], border_points[0][:150]])
    lat = np.concatenate([random_points[1][:150], border_points[1][:150]])
    loc = locate(lon, lat)
    for i in range(len(lon)):
        assert locate_point(float(lon[i]), float(lat[i])) == (loc.district_code[i], loc.grid_id[i])


def test_input_forms_and_order() -> None:
    seat = (106.633, 30.474)
    code, gid = locate_point(*seat)
    loc = locate([seat[0], 106.55, seat[0]], [seat[1], 29.56, seat[1]])
    assert isinstance(loc, Location) and len(loc) == 3
    assert loc.district_code.dtype == object and loc.grid_id.dtype == object
    assert list(loc.district_code) == [code, None, code]
    assert list(loc.grid_id) == [gid, None, gid]
    scalar = locate(seat[0], seat[1])
    assert scalar.district_code.shape == (1,) and scalar.grid_id[0] == gid
    empty = locate(np.array([]), np.array([]))
    assert len(empty) == 0 and empty.district_code.dtype == object
    two_d = locate(np.array([[seat[0]], [106.55]]), np.array([[seat[1]], [29.56]]))
    assert list(two_d.district_code) == [code, None]
    with pytest.raises(ValueError):
        locate([1.0, 2.0], [3.0])


def test_bad_coordinates_give_none() -> None:
    lon = [np.nan, 106.633, np.inf, -np.inf, 106.633, None, "abc", "106.633"]
    lat = [30.474, np.nan, 30.474, 30.474, -np.inf, 30.474, 30.474, "30.474"]
    loc = locate(lon, lat)
    assert list(loc.district_code[:7]) == [None] * 7
    assert list(loc.grid_id[:7]) == [None] * 7
    assert loc.district_code[7] == "511602"  # numeric strings from a JSON payload still count
    assert locate_point(float("nan"), float("nan")) == (None, None)
    assert locate_point(None, 30.0) == (None, None)  # type: ignore[arg-type]
    assert locate(np.float32([106.633]), np.float32([30.474])).district_code[0] == "511602"


def test_exact_border_vertex_follows_reference_tie_break() -> None:
    geoms = boundaries.district_geometries()
    shared = geoms["511603"].boundary.intersection(geoms["511681"].boundary)
    x, y = shapely.get_coordinates(shared)[3]
    assert locate_point(x, y)[0] == "511603"  # first of the two in DISTRICTS order


def test_threads_locating_at_once_each_use_their_own_prepared_shapes() -> None:
    """The web tier locates from many threads: one shared prepared GEOS geometry used by
    two threads at once crashed the process in libgeos, so each thread prepares its own."""
    import threading

    from geo.boundaries import _district_geometries, prepared_district_geometries

    rng = np.random.default_rng(7)
    minx, miny, maxx, maxy = boundaries.city_bounds()
    lon = rng.uniform(minx, maxx, 20_000)
    lat = rng.uniform(miny, maxy, 20_000)
    expected = locate(lon, lat).district_code
    seen: dict[int, tuple[int, ...]] = {}
    failures: list[BaseException] = []
    start = threading.Barrier(8)

    def work() -> None:
        try:
            start.wait()
            for _ in range(5):
                got = locate(lon, lat).district_code
                assert (got == expected).all()
                # Border points go through the polygons themselves, one point at a time too.
                for x, y in zip(lon[:200], lat[:200], strict=True):
                    locate_point(float(x), float(y))
            seen[threading.get_ident()] = tuple(id(g) for g in prepared_district_geometries())
        except BaseException as exc:  # reported below, with the thread's result
            failures.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    copies = list(seen.values())
    assert len(copies) == 8
    # No two threads share a prepared shape, and none is the shared (unprepared) original.
    ids = [i for c in copies for i in c]
    assert len(set(ids)) == len(ids)
    assert not set(ids) & {id(g) for g in _district_geometries()}
    assert not any(shapely.is_prepared(g) for g in _district_geometries())
    assert prepared_district_geometries() is prepared_district_geometries()
