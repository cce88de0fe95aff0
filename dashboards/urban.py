"""The urban-management page's figures (城市管理): pure functions over counts, cases and indicators.

Nothing here reads Redis or the database; the page hands in what it read plus ``now``, so
every row, colour and figure is testable with a fixed clock.

The map bins video sightings by grid cell (网格, H3 resolution 8 clipped to districts) in
the database (:func:`models.cases.video_event_counts`): the browser gets one number per
cell, however many sightings there were, and MapLibre draws the cells as one WebGL fill
layer. Cell shapes come from :mod:`geo.grid`, never from a tile server. The same cell
layer draws the 12345 hot spots on ``/hotline``.

Colours are colour-blind safe: cell counts on viridis (perceptually ordered, readable
with any colour vision), case deadlines on Okabe–Ito colours and, redundantly, marker size.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Literal

import plotly.graph_objects as go
from dash import Patch

from dashboards import theme
from dashboards.console import city_time, district_name, duration_text
from dashboards.ecology import Freshness
from dashboards.i18n import t
from geo.boundaries import city_bounds, districts_geojson
from models.cases import (
    AWAITING_CLOSE,
    AWAITING_HANDLING,
    CASE_LIFECYCLE,
    CaseIndicators,
    CaseMark,
    CaseView,
    case_type,
)
from models.catalog import VIDEO_EVENT_TYPES
from models.clock import CITY_TZ
from models.tickets import Rate

#: Cameras in a city report sightings every few seconds; ten quiet minutes mean the video
#: feed (or its ingest) stopped, not that the streets are empty.
VIDEO_SILENT_AFTER_S = 10 * 60
#: A case whose deadline passes within this time is about to be overdue (即将超期).
DUE_SOON = timedelta(hours=1)
#: Cases drawn on the map, the most pressing first (overdue, then nearest deadline): reading
#: the rows is most of a refresh's time (≈25 ms per thousand on SQLite), and two thousand
#: points already cover every overdue case a city has at once. The list shows fewer.
MAP_CASES = 2000
LIST_CASES = 40
#: Five classes of viridis (at 0.1, 0.3, 0.5, 0.7, 1.0): ordered dark to light, so more
#: sightings read as brighter on the dark theme, whatever the viewer's colour vision.
HEAT_COLOURS: tuple[str, ...] = ("#482475", "#33638D", "#21918C", "#44BF70", "#FDE725")
#: Okabe–Ito colours by deadline status.
STATUS_COLOURS: Mapping[str, str] = {
    "overdue": "#D55E00",
    "due_soon": "#E69F00",
    "ok": "#56B4E9",
    "stopped": "#CC79A7",
    "none": "#BBBBBB",
}
STATUS_SIZES: Mapping[str, int] = {"overdue": 12, "due_soon": 10, "ok": 8, "stopped": 8, "none": 7}
#: Bars: Okabe–Ito sky blue.
BAR_COLOUR = "#56B4E9"
MAP_HEIGHT_PX = 470
BAR_HEIGHT_PX = 240
_minx, _miny, _maxx, _maxy = city_bounds()
CITY_CENTRE = {"lon": (_minx + _maxx) / 2, "lat": (_miny + _maxy) / 2}
#: The whole city in a map about 700 px wide; the wider urban map zooms in a little more.
CITY_ZOOM = 8.2
URBAN_ZOOM = 8.5

Status = Literal["overdue", "due_soon", "ok", "stopped", "none"]


# ---- freshness ------------------------------------------------------------------------------


def feed_freshness(newest: datetime | None, now: datetime, silent_after_s: float) -> Freshness:
    """How old a feed's newest record is; silent beyond ``silent_after_s`` (or never heard)."""
    if newest is None:
        return Freshness(None, True)
    age = max(0.0, (now - newest).total_seconds())
    return Freshness(age, age > silent_after_s)


def newest_stamp(entries: Sequence[Mapping[str, str]], field: str) -> datetime | None:
    """The newest ``field`` time among live stream entries (ISO-8601); None when none parse.
    A time without a zone is UTC, as ingest writes it."""
    stamps = []
    for entry in entries:
        try:
            at = datetime.fromisoformat(entry[field])
        except (KeyError, TypeError, ValueError):
            continue
        stamps.append(at if at.tzinfo is not None else at.replace(tzinfo=UTC))
    return max(stamps, default=None)


def rate_text(rate: float | None) -> str:
    return "—" if rate is None else f"{rate:.1%}"


def rate_detail(rate: Rate) -> str:
    """``45 / 50``: the counts behind a rate, so a 100 % of one case is not mistaken for a trend."""
    return f"{rate.on_time} / {rate.total}"


# ---- grid cells -----------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _cell_features() -> Mapping[str, dict[str, Any]]:
    from geo.grid import grid_cells_geojson

    # 4 decimals (≈10 m) is plenty for cells ≈900 m across and keeps the payload small.
    return {f["id"]: f for f in grid_cells_geojson(decimals=4)["features"]}


@lru_cache(maxsize=1)
def _cell_points() -> Mapping[str, tuple[float, float, str]]:
    """Each cell's inside point (the hexagon centre when the cell holds it) and district."""
    from geo.grid import build_grid_cells

    frame = build_grid_cells()
    return {
        g: (round(float(lon), 5), round(float(lat), 5), str(code))
        for g, lon, lat, code in zip(
            frame["grid_id"], frame["center_lon"], frame["center_lat"], frame["district_code"], strict=True
        )
    }


def cells_geojson(grid_ids: Iterable[str]) -> dict[str, Any]:
    """The shapes of these grid cells only (unknown ids are skipped)."""
    features = _cell_features()
    return {"type": "FeatureCollection", "features": [features[g] for g in grid_ids if g in features]}


def _digest(lines: Iterable[str]) -> str:
    return hashlib.sha1("\n".join(lines).encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class HeatCells:
    """Counts per grid cell in a fixed order (by id), each in one of :data:`HEAT_COLOURS`'
    classes (equal steps up to the largest count), with a hover label per cell."""

    ids: tuple[str, ...]
    counts: tuple[int, ...]
    labels: tuple[str, ...]
    classes: tuple[int, ...]

    @property
    def total(self) -> int:
        return sum(self.counts)

    def in_class(self, k: int) -> list[str]:
        return [g for g, c in zip(self.ids, self.classes, strict=True) if c == k]

    @property
    def signatures(self) -> dict[str, str]:
        """One signature per class (the shapes its layer draws) and one of the cells with
        their labels (the points and their hover words)."""
        classes = {f"class{k}": _digest(self.in_class(k)) for k in range(len(HEAT_COLOURS))}
        return {
            "points": _digest(f"{g}|{label}" for g, label in zip(self.ids, self.labels, strict=True)),
            **classes,
        }


def heat_class(count: int, top: int) -> int:
    """Class 0 … 4 of a count: equal fifths of the largest count (1 of 1 is the top class)."""
    if top <= 0 or count <= 0:
        return 0
    return min(len(HEAT_COLOURS) - 1, (count * len(HEAT_COLOURS) - 1) // top)


def heat_cells(counts: Mapping[str, int], labels: Mapping[str, str] | None = None) -> HeatCells:
    """Known cells with a positive count, ordered by id; ``labels`` add a hover line per cell."""
    known = _cell_features()
    ids = tuple(sorted(g for g, n in counts.items() if n > 0 and g in known))
    values = tuple(int(counts[g]) for g in ids)
    top = max(values, default=0)
    return HeatCells(
        ids,
        values,
        tuple((labels or {}).get(g, "") for g in ids),
        tuple(heat_class(n, top) for n in values),
    )


def heat_layers(cells: HeatCells) -> list[dict[str, Any]]:
    """The cells as MapLibre fill layers, one per class (always all of them, possibly empty,
    so a class keeps its layer index and can be replaced alone)."""
    return [
        {"source": cells_geojson(cells.in_class(k)), "type": "fill", "color": colour, "opacity": 0.8}
        for k, colour in enumerate(HEAT_COLOURS)
    ]


def _cell_text(cells: HeatCells) -> list[str]:
    points = _cell_points()
    return [
        f"{district_name(points[g][2])} {t('urban.cell')} {g}{('，' + label) if label else ''}"
        for g, label in zip(cells.ids, cells.labels, strict=True)
    ]


def heat_trace(cells: HeatCells) -> go.Scattermap:
    """A WebGL point per cell, in its class colour: the cells seen at city zoom (where a
    cell is a few pixels) and the hover (district, cell, label, count) at every zoom.

    The count travels as a number in ``customdata`` and the fixed words in ``text``, so a
    refresh of the same cells sends numbers and colours only (:func:`heat_map_update`)."""
    points = _cell_points()
    return go.Scattermap(
        lon=[points[g][0] for g in cells.ids],
        lat=[points[g][1] for g in cells.ids],
        mode="markers",
        marker={"size": 7, "color": [HEAT_COLOURS[c] for c in cells.classes], "opacity": 0.95},
        text=_cell_text(cells),
        customdata=list(cells.counts),
        hovertemplate="%{text}<br>" + t("urban.count", n="%{customdata}") + "<extra></extra>",
    )


def cell_map(
    traces: Sequence[Any],
    *,
    tile_url: str | None,
    uirevision: str,
    cells: HeatCells | None = None,
    height: int = MAP_HEIGHT_PX,
    zoom: float = CITY_ZOOM,
) -> go.Figure:
    """An offline map of the city: ``cells`` as fill layers, district outlines over them,
    ``traces`` on top. No text on the map (no glyphs to fetch)."""
    layers = heat_layers(cells) if cells is not None else []
    layers.append({"source": districts_geojson(), "type": "line", "color": "#4f6d99", "line": {"width": 1}})
    fig = go.Figure(data=list(traces))
    fig.update_layout(
        map={"style": theme.map_style(tile_url), "center": CITY_CENTRE, "zoom": zoom, "layers": layers},
        margin={"l": 0, "r": 0, "t": 0, "b": 0},
        height=height,
        paper_bgcolor=theme.PANEL,
        font={"family": theme.FONT_FAMILY, "color": theme.TEXT},
        showlegend=False,
        # The viewer's zoom and pan survive every refresh.
        uirevision=uirevision,
    )
    return fig


MapTrace = tuple[str, str, Callable[[], Any]]


def heat_map_update(
    cells: HeatCells,
    drawn: Mapping[str, str] | None,
    *,
    tile_url: str | None,
    uirevision: str,
    more: Sequence[MapTrace] = (),
    height: int = MAP_HEIGHT_PX,
    zoom: float = CITY_ZOOM,
) -> tuple[go.Figure | Patch, dict[str, str]]:
    """What to send to a browser whose map shows ``drawn`` (signatures; None: nothing yet).

    The whole figure the first time. After that a Patch: the counts and colours of the cell
    points (the whole point trace when the cells changed), the shapes of only those classes
    whose cells changed, and each of ``more`` (name,
    signature, trace builder; traces 1, 2 …) only if its signature changed. Returns it
    with the signatures the browser then holds.
    """
    now_drawn = {**cells.signatures, **{name: sig for name, sig, _ in more}}
    if not drawn:
        traces = [heat_trace(cells), *(make() for _, _, make in more)]
        figure = cell_map(
            traces, tile_url=tile_url, uirevision=uirevision, cells=cells, height=height, zoom=zoom
        )
        return figure, now_drawn
    patch = Patch()
    if drawn.get("points") == now_drawn["points"]:
        patch["data"][0]["customdata"] = list(cells.counts)
        patch["data"][0]["marker"]["color"] = [HEAT_COLOURS[c] for c in cells.classes]
    else:
        patch["data"][0] = heat_trace(cells).to_plotly_json()
    for k in range(len(HEAT_COLOURS)):
        if drawn.get(f"class{k}") != now_drawn[f"class{k}"]:
            patch["layout"]["map"]["layers"][k]["source"] = cells_geojson(cells.in_class(k))
    for i, (name, sig, make) in enumerate(more, start=1):
        if drawn.get(name) != sig:
            patch["data"][i] = make().to_plotly_json()
    return patch, now_drawn


# ---- cases ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CaseRow:
    case_id: str
    type_label: str
    state: str
    state_label: str
    district: str
    department: str
    reported_at: datetime
    deadline_kind: Literal["handle", "close"] | None
    due: datetime | None
    #: Seconds until the deadline owed (negative: overdue by that much).
    left_s: float | None
    status: Status
    lon: float | None
    lat: float | None
    evidence_count: int


@lru_cache(maxsize=32)
def _state_label(state: str) -> str:
    # The lifecycle looks a state up by scanning; a page of thousands of cases asks often.
    return CASE_LIFECYCLE.state(state).label_zh


#: Plain-string copies of the state sets: a page checks thousands of cases per refresh.
_HANDLING = frozenset(str(s) for s in AWAITING_HANDLING)
_CLOSING = frozenset(str(s) for s in AWAITING_CLOSE)


def deadline_owed(case: CaseView | CaseMark) -> tuple[Literal["handle", "close"], datetime] | None:
    """The nearest deadline the case still owes: 处置 while handled, 结案 until closed."""
    handle = case.due_at if case.state in _HANDLING else None
    close = case.close_due if case.state in _CLOSING else None
    if handle is not None and (close is None or handle <= close):
        return ("handle", handle)
    return None if close is None else ("close", close)


@lru_cache(maxsize=64)
def _kind(key: str | None) -> tuple[str, str]:
    kind = case_type(key)
    return kind.subcategory, kind.department


def case_row(case: CaseView | CaseMark, now: datetime) -> CaseRow:
    owed = deadline_owed(case)
    left = None if owed is None else (owed[1] - now).total_seconds()
    status: Status
    if case.state == "parked":
        status = "stopped"  # 挂账: the clocks stand still
    elif left is None:
        status = "none"
    elif left <= 0:
        status = "overdue"
    elif left <= DUE_SOON.total_seconds():
        status = "due_soon"
    else:
        status = "ok"
    subcategory, department = _kind(case.case_type)
    return CaseRow(
        case_id=case.case_id,
        type_label=subcategory if case.case_type else (case.subcategory or subcategory),
        state=case.state,
        state_label=_state_label(case.state),
        district=district_name(case.district_code),
        department=case.department or department,
        reported_at=case.reported_at,
        deadline_kind=None if owed is None else owed[0],
        due=None if owed is None else owed[1],
        left_s=left,
        status=status,
        lon=case.lon,
        lat=case.lat,
        evidence_count=case.evidence_count,
    )


def case_rows(cases: Iterable[CaseView | CaseMark], now: datetime) -> list[CaseRow]:
    """Rows in the order given (the query orders by urgency)."""
    return [case_row(c, now) for c in cases]


def deadline_text(row: CaseRow) -> str:
    if row.status == "stopped":
        return t("urban.deadline.stopped")
    if row.left_s is None or row.deadline_kind is None:
        return t("urban.deadline.none")
    kind = t(f"urban.deadline.{row.deadline_kind}")
    if row.left_s <= 0:
        return t("urban.deadline.overdue", kind=kind, over=duration_text(-row.left_s))
    return t("urban.deadline.left", kind=kind, left=duration_text(row.left_s))


@dataclass(frozen=True, slots=True)
class CaseListEntry:
    """What the case list shows of one case: its cells, the deadline's colour class and the
    hover (when reported, how many sightings). Equal entries draw the same row."""

    case_id: str
    type_label: str
    district: str
    state_label: str
    deadline: str
    status: Status
    reported: str
    evidence_count: int


def case_list(rows: Iterable[CaseRow], now: datetime) -> list[CaseListEntry]:
    """The list's entries, in the rows' order (its deadlines count down by the second)."""
    return [
        CaseListEntry(
            case_id=r.case_id,
            type_label=r.type_label,
            district=r.district,
            state_label=r.state_label,
            deadline=deadline_text(r),
            status=r.status,
            reported=city_time(r.reported_at, now),
            evidence_count=r.evidence_count,
        )
        for r in rows
    ]


def due_text(row: CaseRow) -> str:
    """The deadline as a time (``处置时限 07-15 12:00``) with the status: stable between refreshes."""
    if row.due is None or row.deadline_kind is None:
        return t(f"urban.status.{row.status}")
    kind = t(f"urban.deadline.{row.deadline_kind}")
    return t("urban.deadline.at", kind=kind, at=f"{row.due.astimezone(CITY_TZ):%m-%d %H:%M}") + (
        f" · {t(f'urban.status.{row.status}')}"
    )


def cases_signature(rows: Sequence[CaseRow]) -> str:
    """Changes when a case appears, leaves, moves or changes status: what the map shows of it."""
    digest = hashlib.sha1()
    for r in rows:
        digest.update(f"{r.case_id}|{r.status}|{r.state}|{r.due}|{r.lon}|{r.lat}\n".encode())
    return digest.hexdigest()[:16]


def newest_case_activity(cases: Iterable[CaseView | CaseMark]) -> datetime | None:
    """The latest report or sighting among these cases: how current the case data is."""
    return max(
        (at for c in cases for at in (c.reported_at, c.last_evidence_at) if at is not None), default=None
    )


def cases_trace(rows: Sequence[CaseRow]) -> go.Scattermap:
    """Open cases as WebGL points, coloured (and sized) by deadline status; no text on the map."""
    placed = [r for r in rows if r.lon is not None and r.lat is not None]
    return go.Scattermap(
        lon=[r.lon for r in placed],
        lat=[r.lat for r in placed],
        mode="markers",
        marker={
            "size": [STATUS_SIZES[r.status] for r in placed],
            "color": [STATUS_COLOURS[r.status] for r in placed],
            "opacity": 0.9,
        },
        # Only the platform's own labels go into hovers (Plotly hovers accept some HTML), and
        # nothing that changes by the second, so an unchanged set of cases is not resent.
        customdata=[f"{r.case_id} {r.type_label} · {r.state_label} · {due_text(r)}" for r in placed],
        hovertemplate="%{customdata}<extra></extra>",
    )


def map_update(
    cells: HeatCells, rows: Sequence[CaseRow], drawn: Mapping[str, str] | None, *, tile_url: str | None
) -> tuple[go.Figure | Patch, dict[str, str]]:
    """The urban map: sightings per cell, and the open cases on top (sent only when changed)."""
    return heat_map_update(
        cells,
        drawn,
        tile_url=tile_url,
        uirevision="urban-map",
        more=[("cases", cases_signature(rows), lambda: cases_trace(rows))],
        zoom=URBAN_ZOOM,
    )


# ---- indicators -----------------------------------------------------------------------------


def total_indicators(per_key: Mapping[str, CaseIndicators], key: str) -> CaseIndicators:
    """The city's row: counts and decided deadlines summed over every district or department."""
    rows = list(per_key.values())
    return CaseIndicators(
        key=key,
        reported=sum(r.reported for r in rows),
        filed=sum(r.filed for r in rows),
        closed=sum(r.closed for r in rows),
        handle=Rate(sum(r.handle.total for r in rows), sum(r.handle.on_time for r in rows)),
        close=Rate(sum(r.close.total for r in rows), sum(r.close.on_time for r in rows)),
        reported_back=sum(r.reported_back for r in rows),
        reworked=sum(r.reworked for r in rows),
    )


@dataclass(frozen=True, slots=True)
class IndicatorRow:
    name: str
    reported: int
    filed: int
    closed: int
    filing_rate: str
    on_time_handling: str
    closing_rate: str
    on_time_closing: str
    rework_rate: str
    total: bool = False


def indicator_row(ind: CaseIndicators, name: str, *, total: bool = False) -> IndicatorRow:
    return IndicatorRow(
        name=name,
        reported=ind.reported,
        filed=ind.filed,
        closed=ind.closed,
        filing_rate=rate_text(ind.filing_rate),
        on_time_handling=rate_text(ind.on_time_handling_rate),
        closing_rate=rate_text(ind.closing_rate),
        on_time_closing=rate_text(ind.on_time_closing_rate),
        rework_rate=rate_text(ind.rework_rate),
        total=total,
    )


def indicator_rows(
    per_key: Mapping[str, CaseIndicators], by: Literal["district", "department"]
) -> list[IndicatorRow]:
    """One row per district (named) or department, most cases first, then the city total."""
    ordered = sorted(per_key.values(), key=lambda i: (-i.reported, i.key))
    rows = [indicator_row(i, district_name(i.key) if by == "district" else i.key) for i in ordered]
    rows.append(indicator_row(total_indicators(per_key, "all"), t("urban.total"), total=True))
    return rows


def month_start(now: datetime) -> datetime:
    """Midnight of the first day of the city month: 数字城管 indicators are reported monthly."""
    local = now.astimezone(CITY_TZ)
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


# ---- video event types ----------------------------------------------------------------------


def type_rows(counts: Mapping[str, int]) -> list[tuple[str, int]]:
    """Sightings per event type with the catalogue's Chinese names, most first."""
    return [
        (VIDEO_EVENT_TYPES.get(k, k), n) for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    ]


def bar_figure(
    pairs: Sequence[tuple[str, int]], *, uirevision: str, height: int = BAR_HEIGHT_PX
) -> go.Figure:
    """Horizontal bars, biggest on top (Plotly draws the first bar at the bottom), one
    colour-blind-safe hue: the categories are named on the axis, not by colour."""
    return go.Figure(
        go.Bar(
            x=[n for _, n in pairs][::-1],
            y=[label for label, _ in pairs][::-1],
            orientation="h",
            marker={"color": BAR_COLOUR},
            hovertemplate="%{y}: %{x}<extra></extra>",
        ),
        layout=theme.figure_layout(
            height=height, uirevision=uirevision, margin={"l": 84, "r": 12, "t": 6, "b": 24}
        ),
    )


def bar_patch(pairs: Sequence[tuple[str, int]]) -> Patch:
    """New values for a horizontal bar chart: only the two arrays travel."""
    patch = Patch()
    patch["data"][0]["x"] = [n for _, n in pairs][::-1]
    patch["data"][0]["y"] = [label for label, _ in pairs][::-1]
    return patch
