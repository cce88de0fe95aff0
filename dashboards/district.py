"""Drill-down to one district (``/districts/<code>``): the link, the map-click wiring every
page uses, and the district page's reads and view of its map.

Any page with a map opens a district the same way: :func:`district_href` for links and
:func:`link_map_to_districts` for a ``dcc.Graph`` whose click carries a district code
(a choropleth's ``location``, or a 6-digit code in a point's ``customdata``).
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import flask
import sqlalchemy as sa
from dash import ClientsideFunction, Input, Output, clientside_callback, html

from dashboards.i18n import current_language, t
from geo.boundaries import DISTRICTS, District, district_geometries
from geo.grid import grid_cells_geojson
from models.schema import ObservationHourly

#: The path template of the district page.
PATH_TEMPLATE = "/districts/<code>"
_BY_CODE = {d.code: d for d in DISTRICTS}
#: Grid-cell outlines to 4 decimals (about 10 m): a third less to send than 5, and no
#: one can tell the difference on a district-wide map.
GRID_DECIMALS = 4
#: Where the map fetches a district's grid cells (GeoJSON). Sent inside the figure, the
#: cells (550 KB, 1,640 of them in 广安区) cost the first render twice on the main thread:
#: Dash's graph deep-copies the figure's layout with a copy whose bookkeeping grows with
#: the square of the coordinate pairs (0.7 s in Chromium), and the server deep-copies them
#: into the Plotly figure (0.2 s). As a URL, MapLibre fetches and parses them in its
#: worker, and the browser keeps them: they change only with a new release.
GRID_PATH = "/geo/grid/<code>.geojson"
#: The URL carries the cells' digest, so a cached copy is never stale: kept a year.
GRID_CACHE_CONTROL = "private, max-age=31536000, immutable"


def district_href(code: str) -> str:
    """The drill-down link of one district, e.g. ``/districts/511602``."""
    return f"/districts/{code}"


def find_district(code: str | None) -> District | None:
    """The district with this code, or None for anything else (the page says so)."""
    return _BY_CODE.get((code or "").strip())


def district_label(d: District, lang: str | None = None) -> str:
    """The district's name in the viewer's language."""
    return d.name if (lang or current_language()) == "zh" else d.name_en


def scope_name(code: str) -> str:
    """The name of a district-scoped account's district (its code if it is not one of ours)."""
    d = find_district(code)
    return code if d is None else district_label(d)


def scope_badge(code: str | None) -> html.Span | None:
    """ "范围：邻水县" in a page's head when the viewer is district-scoped (nothing for a
    city-wide account), so an officer knows the figures are his district's."""
    if code is None:
        return None
    name = scope_name(code)
    return html.Span(
        t("scope.badge", name=name),
        className="scope-badge",
        title=t("scope.badge_title", name=name),
        **{"data-district": code},
    )


def link_map_to_districts(graph_id: str) -> None:
    """Clicking a district on the map ``graph_id`` opens its page (call at import time).

    Runs in the browser (``cityops.openDistrict`` in assets/cityops-shell.js) and navigates
    within the app, without reloading it.
    """
    clientside_callback(
        ClientsideFunction("cityops", "openDistrict"),
        Output("_pages_location", "href", allow_duplicate=True),
        Input(graph_id, "clickData"),
        prevent_initial_call=True,
    )


# ---- the district map --------------------------------------------------------------------------


@lru_cache(maxsize=len(DISTRICTS))
def _grid_body(code: str) -> bytes:
    return json.dumps(grid_cells_geojson(code, decimals=GRID_DECIMALS), separators=(",", ":")).encode()


@lru_cache(maxsize=len(DISTRICTS))
def grid_version(code: str) -> str:
    """A digest of the district's grid cells as served: changes when they do."""
    return hashlib.blake2b(_grid_body(code), digest_size=8).hexdigest()


def grid_url(code: str) -> str:
    """Where the browser fetches the district's grid cells, e.g.
    ``/geo/grid/511602.geojson?v=<digest>``."""
    return f"{GRID_PATH.replace('<code>', code)}?v={grid_version(code)}"


def grid_layer(code: str) -> dict[str, Any]:
    """The district's grid cells (网格) as a line layer of the MapLibre map: shapes, no
    text; the map fetches them from :func:`grid_url`."""
    return {
        "sourcetype": "geojson",
        "source": grid_url(code),
        "type": "line",
        "color": "#2b4a72",
        "line": {"width": 0.6},
    }


def grid_response(code: str) -> flask.Response:
    """The district's grid cells as GeoJSON (properties ``grid_id``, ``district_code``).

    Geography, not data: any signed-in account may fetch any district's cells (the gate in
    :mod:`dashboards.auth` has already turned away the anonymous).
    """
    if find_district(code) is None:
        return flask.Response(f"no district {code[:40]!r}\n", status=404, mimetype="text/plain")
    response = flask.Response(_grid_body(code), mimetype="application/geo+json")
    response.set_etag(grid_version(code))
    fresh = flask.request.args.get("v") == grid_version(code)
    # An old or missing digest is answered with today's cells, to be checked next time.
    response.headers["Cache-Control"] = GRID_CACHE_CONTROL if fresh else "no-cache"
    return response.make_conditional(flask.request)


def register_routes(server: flask.Flask) -> None:
    """Serve :data:`GRID_PATH` on ``server``."""
    server.add_url_rule(GRID_PATH, "district_grid", grid_response, methods=["GET"])


def map_view(code: str, width_px: int = 900, height_px: int = 620) -> tuple[dict[str, float], float]:
    """Centre and zoom that fit the district's bounds into a map of the given size."""
    minx, miny, maxx, maxy = district_geometries()[code].bounds
    centre = {"lon": (minx + maxx) / 2, "lat": (miny + maxy) / 2}
    # Web Mercator: 256 px span 360° at zoom 0; latitude spans stretch by 1/cos(lat).
    span_x = max(maxx - minx, 1e-6)
    span_y = max(maxy - miny, 1e-6) / math.cos(math.radians(centre["lat"]))
    zoom = math.log2(min(width_px * 360 / (256 * span_x), height_px * 360 / (256 * span_y)))
    return centre, round(zoom - 0.35, 2)  # a margin around the outline


# ---- reads -------------------------------------------------------------------------------------


def readings_per_hour(conn: sa.Connection, hours: list[datetime], district_code: str) -> list[int]:
    """Device messages per UTC hour in one district, from the hourly roll-ups.

    A message carries several metrics, each rolled up on its own; a device's messages in
    an hour are its largest metric count, so a message is counted once.
    """
    h = ObservationHourly.__table__
    per_device = (
        sa.select(h.c.hour, sa.func.max(h.c.count).label("n"))
        .where(h.c.district_code == district_code, h.c.hour >= min(hours), h.c.hour <= max(hours))
        .group_by(h.c.device_id, h.c.hour)
        .subquery()
    )
    rows = conn.execute(sa.select(per_device.c.hour, sa.func.sum(per_device.c.n)).group_by(per_device.c.hour))
    counts = {_utc(hour): int(n) for hour, n in rows}
    return [counts.get(hour, 0) for hour in hours]


def _utc(at: datetime) -> datetime:
    # SQLite hands back naive UTC, PostgreSQL aware times.
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
