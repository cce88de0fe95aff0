"""The emergency page (应急指挥, ``/emergency``): rows, map, panels and operator actions as
plain functions.

Nothing here reads Redis or the database by itself except :func:`perform` (an operator's
action, through :mod:`models.incidents`) and :func:`read_wall_incidents`; the page hands
in what it read plus ``now``, so every row, colour, figure and panel is testable with a
fixed clock.

The map draws no text and uses no sprite (an intranet has no glyph or icon server), so
every symbol is made of stacked circles, each kind with its own shape *and* its own
Okabe–Ito colour (readable with any colour vision): fire stations a solid disc, hospitals
a ring, shelters a target, rescue teams a disc with a white core. Incidents are the
largest discs with a white halo, coloured by response level as the warning colours of the
same grade (Ⅰ red, Ⅱ orange, Ⅲ yellow, Ⅳ blue: GB/T 35965.1, see
``models.incidents.ResponseLevel.colour``); open critical and major alerts are discs with
a dark halo in the console's warning colours. Sensors are small dots, vermillion and
larger when over a threshold of the alert rules.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import plotly.graph_objects as go
import sqlalchemy as sa
from dash import Patch, html

from dashboards import theme
from dashboards.console import WARNING_HEX, city_time, clean_comment, district_name, duration_text
from dashboards.drawn import signature
from dashboards.ecology import Freshness
from dashboards.i18n import current_language, t
from dashboards.urban import CITY_CENTRE, feed_freshness
from geo.boundaries import districts_geojson
from models import incidents as inc
from models import spatial
from models.catalog import metric
from models.lifecycle import Actor, EntityNotFound, IllegalTransition
from models.live import DeviceState, LiveAlert, LiveStore

# ---- what the page shows ----------------------------------------------------------------------

#: The sensors of emergency work, in the order of the sensor table.
SENSOR_TYPES: tuple[str, ...] = ("water_level", "rainfall", "smoke", "gas")
#: The value shown for each sensor type.
SENSOR_METRIC: Mapping[str, str] = {
    "water_level": "level",
    "rainfall": "rain_1h",
    "smoke": "smoke",
    "gas": "ch4_lel",
}
#: Alerts drawn on the map and listed: the ones that may become incidents or already are.
MAP_SEVERITIES = ("critical", "major")
#: Sensors report every minute or so; ten silent minutes mean the feed stopped.
SENSORS_SILENT_AFTER_S = 10 * 60
#: Nearest resources offered for dispatch, per kind.
NEAREST_PER_KIND = 3
#: Radii offered for the affected area (the page's 1/3/5 km).
RADII_M: tuple[float, ...] = spatial.AREA_RADII_M
#: Things inside the area listed per kind (the count says how many there are in all).
AREA_LIST_ROWS = 8
#: Open critical/major alerts listed (as many as the sensor table's rows): at city scale
#: there are over a thousand, and every row was sent and drawn on every refresh.
ALERT_LIST_ROWS = 40
#: Sensors listed besides those over a threshold (all of which are listed).
SENSOR_TABLE_ROWS = 40
MAP_HEIGHT_PX = 640
#: Close enough to see streets' scale around an incident, with the 5 km ring in view.
INCIDENT_ZOOM = 11.2
CITY_ZOOM = 8.3

#: Okabe–Ito colours.
OI_ORANGE, OI_SKY, OI_GREEN, OI_YELLOW = "#E69F00", "#56B4E9", "#009E73", "#F0E442"
OI_BLUE, OI_VERMILLION, OI_PURPLE, OI_GREY = "#0072B2", "#D55E00", "#CC79A7", "#999999"

RESOURCE_KINDS: tuple[str, ...] = ("fire_station", "hospital", "shelter", "rescue_team")
#: Kind → (shape, colour). Shapes: disc, ring, target, core (a disc with a white core).
RESOURCE_SYMBOLS: Mapping[str, tuple[str, str]] = {
    "fire_station": ("disc", OI_PURPLE),
    "hospital": ("ring", OI_GREEN),
    "shelter": ("target", OI_SKY),
    "rescue_team": ("core", OI_ORANGE),
}
OTHER_SYMBOL = ("disc", OI_GREY)
#: Response level → screen colour of the warning colour of the same grade.
LEVEL_HEX: Mapping[str | None, str] = {
    **{level.value: WARNING_HEX[level.colour.value] for level in inc.ResponseLevel},
    None: "#B0BEC5",  # not yet decided (接报)
}
SEVERITY_HEX: Mapping[str, str] = {"critical": WARNING_HEX["red"], "major": WARNING_HEX["orange"]}
SENSOR_HEX = {"ok": OI_BLUE, "over": OI_VERMILLION, "offline": "#5d6b7d"}
AREA_LINE = "#F0E442"
NEAREST_LINE = "#9ad0ff"

# Trace order on the map: each index is patched alone when only its content changed.
TRACES = (
    "resources",
    "resources_mid",
    "resources_core",
    "sensors",
    "alerts_halo",
    "alerts",
    "nearest",
    "incidents_halo",
    "incidents",
)


# ---- sensors and their thresholds -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Limit:
    """A threshold of the alert rules on a sensor metric: ``value``, or the device's own
    ``value_prop`` (a water-level station's 警戒水位) when it has one."""

    rule_id: str
    severity: str
    metric: str
    op: str
    value: float | None
    value_prop: str | None

    def threshold(self, props: Mapping[str, Any]) -> float | None:
        own = props.get(self.value_prop) if self.value_prop else None
        try:
            return float(own) if own is not None else self.value
        except (TypeError, ValueError):
            return self.value

    def exceeded(self, value: float, props: Mapping[str, Any]) -> bool:
        limit = self.threshold(props)
        if limit is None:
            return False
        return value >= limit if self.op == ">=" else value <= limit


def sensor_limits(rules: Iterable[Any]) -> dict[str, list[Limit]]:
    """The threshold rules of each emergency sensor type, mildest first (lowest threshold):
    the page judges "over its threshold" with the same numbers that raise alerts."""
    from models.alerts import SEVERITY_RANK

    out: dict[str, list[Limit]] = {k: [] for k in SENSOR_TYPES}
    for rule in rules:
        if getattr(rule, "kind", None) != "threshold":
            continue
        for dtype in rule.device_types:
            if dtype in out:
                out[dtype].append(
                    Limit(rule.id, rule.severity, rule.metric, rule.op, rule.value, rule.value_prop)
                )
    for limits in out.values():
        limits.sort(key=lambda lim: (-SEVERITY_RANK.get(lim.severity, 9), lim.value or 0.0))
    return out


@dataclass(frozen=True, slots=True)
class SensorRow:
    device_id: str
    type: str
    name: str
    district: str
    lon: float
    lat: float
    metric: str
    value: float | None
    unit: str
    #: The shown metric's mildest threshold for this device (None: no rule watches it).
    threshold: float | None
    #: Rules whose threshold the latest reading crosses (any metric of the device).
    over: tuple[str, ...]
    #: The most severe of those ("critical", "major" …), None when none.
    severity: str | None
    online: bool
    ts: datetime | None

    @property
    def status(self) -> str:
        if not self.online:
            return "offline"
        return "over" if self.over else "ok"


def sensor_prop_types(limits: Mapping[str, Sequence[Limit]]) -> list[str]:
    """The sensor types whose thresholds may come from a device's own properties (a
    water-level station's 警戒水位): only their properties need reading."""
    return [dtype for dtype, mine in limits.items() if any(lim.value_prop for lim in mine)]


@dataclass(frozen=True, slots=True)
class _Built:
    """A sensor's row as built from one state, with what sorting and the map's signature
    take from it."""

    state: DeviceState
    props: Mapping[str, Any]
    limits: Sequence[Limit]
    online: bool
    row: SensorRow
    order: tuple[bool, bool, int, str]
    mark: tuple[Any, ...]
    #: ``repr(mark)``, as the map's signature takes it (formatting thousands of sensors'
    #: coordinates on every refresh was most of the signature's cost)
    mark_text: str


#: device id → its row as of the last refresh. The live store hands back the same state
#: object for a device that has not reported since (models.live), so a refresh builds rows
#: only for the few that did (or went offline, or whose properties or limits changed).
_ROWS: dict[str, _Built] = {}
#: The memo is for every viewer (a district's viewers ask for some of the sensors, the city's
#: for all); it only grows with devices removed since the process started.
ROWS_KEPT = 50_000
_TYPE_ORDER = {k: i for i, k in enumerate(SENSOR_TYPES)}


def sensor_rows(
    states: Iterable[DeviceState],
    limits: Mapping[str, Sequence[Limit]],
    props: Mapping[str, Mapping[str, Any]],
    now: float,
) -> list[SensorRow]:
    """The emergency sensors with their latest value, over-threshold first, then by type and id."""
    built = []
    for s in states:
        if s.type not in _TYPE_ORDER:
            continue
        own = props.get(s.device_id, {})
        mine = limits.get(s.type, ())
        online = s.online(now)
        known = _ROWS.get(s.device_id)
        if (
            known is None
            or known.state is not s
            or known.online != online
            or not (known.limits is mine or known.limits == mine)
            or known.props != own
        ):
            row = _sensor_row(s, own, mine, online)
            status = row.status
            mark = (row.device_id, status, row.lon, row.lat, value_text(row))
            known = _ROWS[s.device_id] = _Built(
                s,
                own,
                mine,
                online,
                row,
                (status != "over", status == "offline", _TYPE_ORDER[s.type], s.device_id),
                mark,
                repr(mark),
            )
        built.append(known)
    if len(_ROWS) > ROWS_KEPT:  # devices removed over time: start again
        _ROWS.clear()
    built.sort(key=lambda b: b.order)
    return [b.row for b in built]


def _sensor_mark(row: SensorRow) -> str:
    """What the map's sensor trace shows of a row (its signature's part), as its ``repr``."""
    known = _ROWS.get(row.device_id)
    if known is not None and known.row is row:
        return known.mark_text
    return repr((row.device_id, row.status, row.lon, row.lat, value_text(row)))


def _signature_of_texts(texts: Iterable[str]) -> str:
    """:func:`signature` of items given as their ``repr`` (the same digest)."""
    digest = hashlib.sha1(usedforsecurity=False)
    digest.update("".join([f"{text}\n" for text in texts]).encode())
    return digest.hexdigest()[:16]


def _sensor_row(s: DeviceState, own: Mapping[str, Any], mine: Sequence[Limit], online: bool) -> SensorRow:
    from models.alerts import SEVERITY_RANK

    key = SENSOR_METRIC[s.type]
    crossed = [
        lim for lim in mine if lim.metric in s.metrics and lim.exceeded(float(s.metrics[lim.metric]), own)
    ]
    shown = next((lim for lim in mine if lim.metric == key), None)
    m = metric(s.type, key)
    value = s.metrics.get(key)
    return SensorRow(
        device_id=s.device_id,
        type=s.type,
        name=s.name,
        district=district_name(s.district_code),
        lon=s.lon,
        lat=s.lat,
        metric=key,
        value=None if value is None else float(value),
        unit=m.unit if m else "",
        threshold=None if shown is None else shown.threshold(own),
        over=tuple(lim.rule_id for lim in crossed),
        severity=min((lim.severity for lim in crossed), key=lambda v: SEVERITY_RANK.get(v, 9))
        if crossed
        else None,
        online=online,
        ts=s.ts,
    )


@dataclass(frozen=True, slots=True)
class SensorSummary:
    type: str
    total: int
    online: int
    over: int


def sensor_summary(rows: Sequence[SensorRow]) -> list[SensorSummary]:
    counts = {k: [0, 0, 0] for k in SENSOR_TYPES}  # total, online, over: one pass over thousands
    for r in rows:
        mine = counts.get(r.type)
        if mine is not None:
            mine[0] += 1
            mine[1] += r.online
            mine[2] += r.status == "over"
    return [SensorSummary(k, *counts[k]) for k in SENSOR_TYPES]


def sensor_freshness(rows: Sequence[SensorRow], now: datetime) -> Freshness:
    """As fresh as the newest emergency reading; silent when none came for ten minutes."""
    return feed_freshness(
        max((r.ts for r in rows if r.ts is not None), default=None), now, SENSORS_SILENT_AFTER_S
    )


def value_text(row: SensorRow) -> str:
    if row.value is None:
        return "—"
    number = f"{row.value:.2f}" if row.type in ("water_level", "smoke") else f"{row.value:g}"
    return f"{number} {row.unit}".strip()


def sensor_type_label(dtype: str) -> str:
    return t(f"emergency.sensor.{dtype}")


# ---- incidents and alerts ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IncidentRow:
    incident_id: str
    title: str
    type_label: str
    level: str | None
    level_label: str
    colour: str
    state: str
    state_label: str
    age_s: float
    district: str
    lon: float | None
    lat: float | None


def level_label(level: str | None) -> str:
    parsed = inc.ResponseLevel.parse(level)
    if parsed is None:
        return t("emergency.level.none")
    return t("emergency.level.label", numeral=parsed.numeral)


def state_label(state: str) -> str:
    return t(f"emergency.state.{state}")


def incident_rows(incidents: Iterable[inc.IncidentView], now: datetime) -> list[IncidentRow]:
    """Rows in the order given (``open_incidents``: highest level first, then oldest)."""
    return [
        IncidentRow(
            incident_id=i.incident_id,
            title=i.title,
            type_label=t(f"emergency.type.{inc.incident_type(i.type).key}"),
            level=i.level,
            level_label=level_label(i.level),
            colour=LEVEL_HEX.get(i.level, LEVEL_HEX[None]),
            state=i.state,
            state_label=state_label(i.state),
            age_s=max(0.0, (now - i.reported_at).total_seconds()),
            district=district_name(i.district_code),
            lon=i.lon,
            lat=i.lat,
        )
        for i in incidents
    ]


@dataclass(frozen=True, slots=True)
class AlertRow:
    id: int
    title: str
    severity: str
    colour: str
    district: str
    opened_at: datetime
    acknowledged: bool
    incident_id: str | None
    lon: float | None
    lat: float | None

    @property
    def can_open(self) -> bool:
        """A critical alert without an incident may be turned into one from this page."""
        return self.severity == "critical" and self.incident_id is None


def alert_rows(alerts: Iterable[LiveAlert], incident_of: Mapping[int, str]) -> list[AlertRow]:
    """Open critical and major alerts, in the queue's order (most severe, then oldest)."""
    return [
        AlertRow(
            id=a.id,
            title=a.title,
            severity=a.severity,
            colour=SEVERITY_HEX[a.severity],
            district=district_name(a.district_code),
            opened_at=a.opened_at,
            acknowledged=a.acknowledged_at is not None,
            incident_id=incident_of.get(a.id),
            lon=a.lon,
            lat=a.lat,
        )
        for a in alerts
        if a.severity in MAP_SEVERITIES
    ]


@dataclass(frozen=True, slots=True)
class LevelCounts:
    """Open incidents per response level (``none``: not yet decided)."""

    by_level: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.by_level.values())


def level_counts(incidents: Iterable[inc.IncidentView]) -> LevelCounts:
    counts = {lvl.value: 0 for lvl in inc.ResponseLevel} | {"none": 0}
    for i in incidents:
        counts[i.level if i.level in counts else "none"] += 1
    return LevelCounts(counts)


# ---- the map ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Selection:
    """The incident picked in the list, with what the map draws around it."""

    incident: inc.IncidentView
    #: Rings (circles, by radius) or the drawn polygon, as (lon, lat) rings.
    rings: tuple[tuple[tuple[float, float], ...], ...]
    nearest: dict[str, list[spatial.ResourceHit]] = field(default_factory=dict)


def area_rings(incident: inc.IncidentView) -> tuple[tuple[tuple[float, float], ...], ...]:
    """The 1/3/5 km rings around an incident, or its drawn polygon; nothing without a place."""
    if incident.area_kind == "polygon" and incident.area is not None:
        return (tuple((round(x, 5), round(y, 5)) for x, y in incident.area.exterior.coords),)
    if incident.lon is None or incident.lat is None:
        return ()
    return tuple(
        tuple(
            (round(x, 5), round(y, 5))
            for x, y in spatial.geodesic_circle(incident.lon, incident.lat, r).exterior.coords
        )
        for r in RADII_M
    )


def rings_geojson(rings: Sequence[Sequence[tuple[float, float]]]) -> dict[str, Any]:
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {},
                "geometry": {"type": "LineString", "coordinates": [list(p) for p in ring]},
            }
            for ring in rings
        ],
    }


def _shape_layers(shape: str) -> tuple[bool, bool]:
    """Which of the middle (background) and core (colour) circles a shape has."""
    return shape in ("ring", "target", "core"), shape == "target"


def resource_traces(resources: Sequence[inc.ResourceView]) -> list[go.Scattermap]:
    """Three stacked point traces: outer discs, background middles, inner cores."""
    outer_size = {"disc": 13, "ring": 15, "target": 17, "core": 15}
    symbols = [RESOURCE_SYMBOLS.get(r.kind, OTHER_SYMBOL) for r in resources]
    hover = [
        f"{r.name} · {t(f'emergency.kind.{r.kind}') if r.kind in RESOURCE_SYMBOLS else r.kind}"
        for r in resources
    ]
    outer = go.Scattermap(
        lon=[r.lon for r in resources],
        lat=[r.lat for r in resources],
        mode="markers",
        marker={
            "size": [outer_size[s] for s, _c in symbols],
            "color": [c for _s, c in symbols],
            "opacity": 1,
        },
        customdata=hover,
        hovertemplate="%{customdata}<extra></extra>",
    )
    mid = [(r, s) for r, (s, _c) in zip(resources, symbols, strict=True) if _shape_layers(s)[0]]
    middle = go.Scattermap(
        lon=[r.lon for r, _ in mid],
        lat=[r.lat for r, _ in mid],
        mode="markers",
        marker={
            "size": [{"ring": 8, "target": 11, "core": 6}[s] for _, s in mid],
            "color": ["#FFFFFF" if s == "core" else theme.BACKGROUND for _, s in mid],
            "opacity": 1,
        },
        hoverinfo="skip",
    )
    cores = [(r, c) for r, (s, c) in zip(resources, symbols, strict=True) if _shape_layers(s)[1]]
    core = go.Scattermap(
        lon=[r.lon for r, _ in cores],
        lat=[r.lat for r, _ in cores],
        mode="markers",
        marker={"size": 6, "color": [c for _, c in cores], "opacity": 1},
        hoverinfo="skip",
    )
    return [outer, middle, core]


def sensors_trace(rows: Sequence[SensorRow]) -> go.Scattermap:
    return go.Scattermap(
        lon=[r.lon for r in rows],
        lat=[r.lat for r in rows],
        mode="markers",
        marker={
            "size": [12 if r.status == "over" else 8 for r in rows],
            "color": [SENSOR_HEX[r.status] for r in rows],
            "opacity": 0.95,
        },
        customdata=[
            f"{r.name} · {sensor_type_label(r.type)} · {value_text(r)}"
            + (f" · {t('emergency.over')}" if r.status == "over" else "")
            + (f" · {t('emergency.offline')}" if r.status == "offline" else "")
            for r in rows
        ],
        hovertemplate="%{customdata}<extra></extra>",
    )


def _halo_pair(
    rows: Sequence[Any], colours: Sequence[str], halo: str, size: int, hover: Sequence[str]
) -> tuple[go.Scattermap, go.Scattermap]:
    placed = [
        (r, c, h)
        for r, c, h in zip(rows, colours, hover, strict=True)
        if r.lon is not None and r.lat is not None
    ]
    lon = [r.lon for r, _c, _h in placed]
    lat = [r.lat for r, _c, _h in placed]
    return (
        go.Scattermap(
            lon=lon,
            lat=lat,
            mode="markers",
            marker={"size": size + 6, "color": halo, "opacity": 0.95},
            hoverinfo="skip",
        ),
        go.Scattermap(
            lon=lon,
            lat=lat,
            mode="markers",
            marker={"size": size, "color": [c for _r, c, _h in placed], "opacity": 1},
            customdata=[h for _r, _c, h in placed],
            hovertemplate="%{customdata}<extra></extra>",
        ),
    )


def alert_traces(rows: Sequence[AlertRow]) -> tuple[go.Scattermap, go.Scattermap]:
    hover = [f"{t('emergency.alert')} {r.id} · {r.title}" for r in rows]
    return _halo_pair(rows, [r.colour for r in rows], "#0b1320", 12, hover)


def incident_traces(rows: Sequence[IncidentRow], selected: str | None) -> tuple[go.Scattermap, go.Scattermap]:
    hover = [f"{r.level_label} · {r.title} · {r.state_label}" for r in rows]
    halo, core = _halo_pair(rows, [r.colour for r in rows], "#FFFFFF", 20, hover)
    placed = [r for r in rows if r.lon is not None and r.lat is not None]
    # The selected incident's halo is larger: it is the one the panel describes.
    halo.marker.size = [34 if r.incident_id == selected else 26 for r in placed]
    return halo, core


def nearest_trace(selection: Selection | None) -> go.Scattermap:
    """Straight lines from the selected incident to its nearest resource of each kind."""
    lon: list[float | None] = []
    lat: list[float | None] = []
    if selection is not None and selection.incident.lon is not None and selection.incident.lat is not None:
        for hits in selection.nearest.values():
            for hit in hits[:1]:
                lon += [selection.incident.lon, hit.lon, None]
                lat += [selection.incident.lat, hit.lat, None]
    return go.Scattermap(
        lon=lon, lat=lat, mode="lines", line={"width": 2, "color": NEAREST_LINE}, hoverinfo="skip"
    )


@dataclass(frozen=True, slots=True)
class MapModel:
    """Everything the map draws, read once per refresh."""

    resources: Sequence[inc.ResourceView]
    sensors: Sequence[SensorRow]
    alerts: Sequence[AlertRow]
    incidents: Sequence[IncidentRow]
    selection: Selection | None

    @property
    def selected_id(self) -> str | None:
        return None if self.selection is None else self.selection.incident.incident_id


def map_signatures(model: MapModel) -> dict[str, str]:
    """One signature per trace group, and one for the selection (view, rings)."""
    resources = signature((r.resource_id, r.kind, r.lon, r.lat) for r in model.resources)
    alerts = signature((a.id, a.severity, a.lon, a.lat, a.title) for a in model.alerts)
    incidents = signature(
        [model.selected_id],
        ((i.incident_id, i.level, i.state, i.lon, i.lat, i.title) for i in model.incidents),
    )
    selection = model.selection
    return {
        "resources": resources,
        "sensors": _signature_of_texts(_sensor_mark(s) for s in model.sensors),
        "alerts": alerts,
        "nearest": signature(
            []
            if selection is None
            else [(k, h[0].resource_id) for k, h in selection.nearest.items() if h]
            + [(selection.incident.lon, selection.incident.lat)]
        ),
        "incidents": incidents,
        "selected": model.selected_id or "",
        "area": signature([] if selection is None else selection.rings),
    }


def _traces(model: MapModel, groups: Collection[str] | None = None) -> dict[str, go.Scattermap]:
    """The map's traces by name; only those of ``groups`` (default: all). Building a trace
    validates every point (thousands of sensors at city scale), so a patch builds only
    the ones it sends."""
    wanted = set(_TRACE_GROUP.values()) if groups is None else set(groups)
    traces: dict[str, go.Scattermap] = {}
    if "resources" in wanted:
        traces["resources"], traces["resources_mid"], traces["resources_core"] = resource_traces(
            model.resources
        )
    if "sensors" in wanted:
        traces["sensors"] = sensors_trace(model.sensors)
    if "alerts" in wanted:
        traces["alerts_halo"], traces["alerts"] = alert_traces(model.alerts)
    if "nearest" in wanted:
        traces["nearest"] = nearest_trace(model.selection)
    if "incidents" in wanted:
        traces["incidents_halo"], traces["incidents"] = incident_traces(model.incidents, model.selected_id)
    return traces


#: Which signature each trace follows.
_TRACE_GROUP = {
    "resources": "resources",
    "resources_mid": "resources",
    "resources_core": "resources",
    "sensors": "sensors",
    "alerts_halo": "alerts",
    "alerts": "alerts",
    "nearest": "nearest",
    "incidents_halo": "incidents",
    "incidents": "incidents",
}


def map_figure(model: MapModel, *, tile_url: str | None) -> go.Figure:
    """The whole map: district outlines, the selected incident's rings, every trace. The view
    (``uirevision``) follows the selection: picking an incident flies to it, and the
    viewer's own zoom and pan survive every refresh while it stays picked."""
    traces = _traces(model)
    selection = model.selection
    located = (
        selection is not None and selection.incident.lon is not None and selection.incident.lat is not None
    )
    centre = {"lon": selection.incident.lon, "lat": selection.incident.lat} if located else dict(CITY_CENTRE)
    fig = go.Figure(data=[traces[name] for name in TRACES])
    fig.update_layout(
        map={
            "style": theme.map_style(tile_url),
            "center": centre,
            "zoom": INCIDENT_ZOOM if located else CITY_ZOOM,
            "layers": [
                {
                    "sourcetype": "geojson",
                    "source": districts_geojson(),
                    "type": "line",
                    "color": "#4f6d99",
                    "line": {"width": 1},
                },
                {
                    "sourcetype": "geojson",
                    "source": rings_geojson([] if selection is None else selection.rings),
                    "type": "line",
                    "color": AREA_LINE,
                    "line": {"width": 2, "dash": [2, 2]},
                },
            ],
        },
        margin={"l": 0, "r": 0, "t": 0, "b": 0},
        height=MAP_HEIGHT_PX,
        paper_bgcolor=theme.PANEL,
        font={"family": theme.FONT_FAMILY, "color": theme.TEXT},
        showlegend=False,
        uirevision=f"emergency-{model.selected_id or 'city'}",
    )
    return fig


def map_update(
    model: MapModel, drawn: Mapping[str, str] | None, *, tile_url: str | None
) -> tuple[go.Figure | Patch | None, dict[str, str]]:
    """What to send to a browser whose map shows ``drawn`` (signatures; None: nothing yet).

    The whole figure the first time and when another incident is picked (the view moves);
    else a Patch of the traces whose content changed, or None when nothing did (the page
    then sends nothing). The district outlines are never sent twice.
    """
    now_drawn = map_signatures(model)
    if not drawn or drawn.get("selected") != now_drawn["selected"]:
        return map_figure(model, tile_url=tile_url), now_drawn
    changed = {group for group, sig in now_drawn.items() if drawn.get(group) != sig}
    if not changed:
        return None, now_drawn
    traces = _traces(model, changed)
    patch = Patch()
    for index, name in enumerate(TRACES):
        if _TRACE_GROUP[name] in changed:
            patch["data"][index] = traces[name].to_plotly_json()
    if "area" in changed:
        selection = model.selection
        patch["layout"]["map"]["layers"][1]["source"] = rings_geojson(
            [] if selection is None else selection.rings
        )
    return patch, now_drawn


# ---- rendering: legend, lists, sensor table ---------------------------------------------------


def symbol(shape: str, colour: str) -> html.Span:
    """The legend's copy of a map symbol (drawn by CSS: the map itself draws no text)."""
    return html.Span(className=f"em-sym em-sym-{shape}", style={"--c": colour})


def legend() -> html.Div:
    items: list[Any] = [html.Span(t("emergency.legend.incidents"), className="eco-legend-title")]
    for level in inc.ResponseLevel:
        items.append(
            html.Span(
                [symbol("halo", LEVEL_HEX[level.value]), t("emergency.level.label", numeral=level.numeral)],
                className="em-key",
            )
        )
    items.append(html.Span([symbol("halo", LEVEL_HEX[None]), t("emergency.level.none")], className="em-key"))
    items.append(html.Span(t("emergency.legend.alerts"), className="eco-legend-title"))
    for severity in MAP_SEVERITIES:
        items.append(
            html.Span(
                [symbol("dark", SEVERITY_HEX[severity]), t(f"console.severity.{severity}")],
                className="em-key",
            )
        )
    items.append(html.Span(t("emergency.legend.resources"), className="eco-legend-title"))
    for kind in RESOURCE_KINDS:
        shape, colour = RESOURCE_SYMBOLS[kind]
        items.append(html.Span([symbol(shape, colour), t(f"emergency.kind.{kind}")], className="em-key"))
    items.append(html.Span(t("emergency.legend.sensors"), className="eco-legend-title"))
    for status in ("ok", "over", "offline"):
        items.append(
            html.Span(
                [symbol("dot", SENSOR_HEX[status]), t(f"emergency.sensor_status.{status}")],
                className="em-key",
            )
        )
    return html.Div(items, className="eco-legend em-legend")


def level_badge(level: str | None) -> html.Span:
    parsed = inc.ResponseLevel.parse(level)
    colour = parsed.colour.value if parsed else "none"
    return html.Span(level_label(level), className=f"sev-badge em-level em-level-{colour}")


def incident_list(rows: Sequence[IncidentRow], selected: str | None) -> html.Div | html.Table:
    if not rows:
        return html.Div(t("emergency.incidents_none"), className="eco-muted")
    keys = (
        "emergency.col.level",
        "emergency.col.incident",
        "emergency.col.state",
        "emergency.col.age",
        "emergency.col.district",
    )
    body = [
        html.Tr(
            [
                html.Td(level_badge(r.level)),
                # Titles may quote a caller or an officer: plain strings, rendered as text.
                html.Td(
                    [html.Div(r.title, className="em-title"), html.Div(r.type_label, className="eco-muted")]
                ),
                html.Td(r.state_label, className=f"em-state em-state-{r.state}"),
                html.Td(duration_text(r.age_s), className="num"),
                html.Td(r.district),
            ],
            id={"type": "em-incident", "id": r.incident_id},
            n_clicks=0,
            className="em-row selected" if r.incident_id == selected else "em-row",
            title=r.incident_id,
        )
        for r in rows
    ]
    return html.Table(
        [html.Thead(html.Tr([html.Th(t(k)) for k in keys])), html.Tbody(body)],
        className="data-table em-table",
    )


def alert_list_signature(rows: Sequence[AlertRow], now: datetime, limit: int = ALERT_LIST_ROWS) -> str:
    """Signs :func:`alert_list` by what it shows, without building it."""
    return signature(
        (
            (r.id, r.severity, r.title, r.district, city_time(r.opened_at, now), r.incident_id, r.can_open)
            for r in rows[: max(0, limit)]
        ),
        [len(rows), current_language()],
    )


def alert_list(rows: Sequence[AlertRow], now: datetime, limit: int = ALERT_LIST_ROWS) -> html.Div:
    """The first ``limit`` open critical/major alerts (queue order: most severe, then oldest)
    and, when there are more, how many; the whole queue is on ``/alerts`` and its export."""
    if not rows:
        return html.Div(t("emergency.alerts_none"), className="eco-muted")
    total = len(rows)
    rows = rows[: max(0, limit)]
    keys = (
        "console.col.severity",
        "console.col.title",
        "console.col.district",
        "emergency.col.opened",
        "emergency.col.incident_id",
    )
    body = []
    for r in rows:
        if r.incident_id:
            action: Any = html.Span(r.incident_id, className="num em-linked")
        elif r.can_open:
            action = html.Button(
                t("emergency.action.open_from_alert"),
                id={"type": "em-open-alert", "id": r.id},
                n_clicks=0,
                className="em-btn em-btn-open",
            )
        else:
            action = html.Span("—", className="eco-muted")
        body.append(
            html.Tr(
                [
                    html.Td(
                        html.Span(
                            t(f"console.severity.{r.severity}"),
                            className=f"sev-badge sev-{'red' if r.severity == 'critical' else 'orange'}",
                        )
                    ),
                    html.Td(r.title, className="em-title"),
                    html.Td(r.district),
                    html.Td(city_time(r.opened_at, now), className="num"),
                    html.Td(action),
                ],
                className="em-alert-row",
                **{"data-alert-id": str(r.id)},
            )
        )
    table = html.Table(
        [html.Thead(html.Tr([html.Th(t(k)) for k in keys])), html.Tbody(body)],
        className="data-table em-table",
    )
    if len(rows) == total:
        return html.Div([table])
    return html.Div(
        [table, html.Div(t("console.queue_count", shown=len(rows), total=total), className="eco-muted")]
    )


def _sensors_shown(rows: Sequence[SensorRow], limit: int) -> list[SensorRow]:
    shown = [r for r in rows if r.status == "over"]
    return shown + [r for r in rows if r.status != "over"][: max(0, limit - len(shown))]


def _threshold_text(r: SensorRow) -> str:
    return "—" if r.threshold is None else f"{r.threshold:g} {r.unit}".strip()


def sensor_table_signature(rows: Sequence[SensorRow], limit: int = SENSOR_TABLE_ROWS) -> str:
    """Signs :func:`sensor_table` by what it shows, without building it."""
    return signature(
        sensor_summary(rows),
        (
            (r.device_id, r.name, r.type, r.district, value_text(r), _threshold_text(r), r.status)
            for r in _sensors_shown(rows, limit)
        ),
        [current_language()],
    )


def sensor_table(rows: Sequence[SensorRow], limit: int = SENSOR_TABLE_ROWS) -> html.Div:
    """Per type: online and over-threshold counts; then the sensors over a threshold (all of
    them) and the others up to ``limit`` rows."""
    summary = html.Div(
        [
            html.Div(
                [
                    html.Div(sensor_type_label(s.type), className="kpi-label"),
                    html.Div(
                        [
                            html.Span(f"{s.online}/{s.total}", className="num"),
                            html.Span(t("emergency.online"), className="eco-muted"),
                        ]
                    ),
                    html.Div(t("emergency.over_n", n=s.over), className="em-over" if s.over else "eco-muted"),
                ],
                className="em-sensor-kpi",
            )
            for s in sensor_summary(rows)
        ],
        className="em-sensor-kpis",
    )
    shown = _sensors_shown(rows, limit)
    if not shown:
        return html.Div([summary, html.Div(t("emergency.sensors_none"), className="eco-muted")])
    keys = (
        "emergency.col.sensor",
        "emergency.col.type",
        "console.col.district",
        "emergency.col.value",
        "emergency.col.threshold",
    )
    body = [
        html.Tr(
            [
                html.Td(r.name),
                html.Td(sensor_type_label(r.type)),
                html.Td(r.district),
                html.Td(value_text(r), className="num"),
                html.Td(_threshold_text(r), className="num"),
            ],
            className=f"em-sensor-row em-sensor-{r.status}",
            title=r.device_id,
        )
        for r in shown
    ]
    table = html.Table(
        [html.Thead(html.Tr([html.Th(t(k)) for k in keys])), html.Tbody(body)],
        className="data-table em-table",
    )
    return html.Div([summary, html.Div(table, className="em-scroll-short")])


# ---- the incident panel -----------------------------------------------------------------------


def _fact(label_key: str, value: Any) -> html.Div:
    return html.Div([html.Dt(t(label_key)), html.Dd(value)], className="console-fact")


def eta_text(d: inc.DispatchView, now: datetime) -> str:
    """The expected arrival of a dispatched resource: ``预计 10:42（还有 3:05）``; the time it
    arrived or was released otherwise."""
    if d.status == inc.DispatchStatus.ARRIVED and d.arrived_at is not None:
        return t("emergency.arrived_at", at=city_time(d.arrived_at, now))
    if d.status == inc.DispatchStatus.RELEASED and d.released_at is not None:
        return t("emergency.released_at", at=city_time(d.released_at, now))
    if d.eta_s is None:
        return "—"
    due = d.dispatched_at + timedelta(seconds=d.eta_s)
    left = (due - now).total_seconds()
    if left <= 0:
        return t("emergency.eta_late", at=city_time(due, now), over=duration_text(-left))
    return t("emergency.eta", at=city_time(due, now), left=duration_text(left))


def km_text(metres: float | None) -> str:
    return "—" if metres is None else f"{metres / 1000:.1f} km"


def dispatch_table(
    rows: Sequence[inc.DispatchView], now: datetime, *, can_act: bool
) -> html.Div | html.Table:
    if not rows:
        return html.Div(t("emergency.dispatched_none"), className="eco-muted")
    keys = (
        "emergency.col.resource",
        "emergency.col.status",
        "emergency.col.distance",
        "emergency.col.eta",
        "emergency.col.actions",
    )
    body = []
    for d in rows:
        buttons = []
        if can_act and d.status == inc.DispatchStatus.DISPATCHED:
            buttons.append(
                html.Button(
                    t("emergency.action.arrive"),
                    id={"type": "em-move", "id": d.id, "action": "arrive"},
                    n_clicks=0,
                    className="em-btn",
                )
            )
        if can_act and d.status != inc.DispatchStatus.RELEASED:
            buttons.append(
                html.Button(
                    t("emergency.action.release"),
                    id={"type": "em-move", "id": d.id, "action": "release"},
                    n_clicks=0,
                    className="em-btn",
                )
            )
        body.append(
            html.Tr(
                [
                    html.Td(
                        [
                            html.Div(d.name),
                            html.Div(
                                t(f"emergency.kind.{d.kind}") if d.kind in RESOURCE_SYMBOLS else d.kind,
                                className="eco-muted",
                            ),
                        ]
                    ),
                    html.Td(t(f"emergency.dispatch.{d.status}"), className=f"em-dispatch-{d.status}"),
                    html.Td(km_text(d.distance_m), className="num"),
                    html.Td(eta_text(d, now), className="num"),
                    html.Td(buttons),
                ],
                className="em-dispatch-row",
            )
        )
    return html.Table(
        [html.Thead(html.Tr([html.Th(t(k)) for k in keys])), html.Tbody(body)],
        className="data-table em-table",
    )


def nearest_table(
    nearest: Mapping[str, Sequence[spatial.ResourceHit]], active: set[str], *, can_dispatch: bool
) -> html.Div | html.Table:
    if not nearest:
        return html.Div(t("emergency.nearest_none"), className="eco-muted")
    keys = (
        "emergency.col.resource",
        "emergency.col.distance",
        "emergency.col.eta_est",
        "emergency.col.actions",
    )
    body = []
    for kind in [k for k in RESOURCE_KINDS if k in nearest] + [k for k in nearest if k not in RESOURCE_KINDS]:
        shape, colour = RESOURCE_SYMBOLS.get(kind, OTHER_SYMBOL)
        for hit in nearest[kind]:
            if hit.resource_id in active:
                action: Any = html.Span(t("emergency.already_sent"), className="eco-muted")
            elif can_dispatch:
                action = html.Button(
                    t("emergency.action.dispatch"),
                    id={"type": "em-dispatch", "id": hit.resource_id},
                    n_clicks=0,
                    className="em-btn em-btn-dispatch",
                )
            else:
                action = ""
            body.append(
                html.Tr(
                    [
                        html.Td(
                            [
                                symbol(shape, colour),
                                html.Span(hit.name),
                                html.Span(
                                    f" {t(f'emergency.kind.{kind}')}" if kind in RESOURCE_SYMBOLS else kind,
                                    className="eco-muted",
                                ),
                            ]
                        ),
                        html.Td(km_text(hit.distance_m), className="num"),
                        html.Td(duration_text(hit.eta_s), className="num"),
                        html.Td(action),
                    ],
                    className="em-nearest-row",
                    title=hit.resource_id,
                )
            )
    return html.Table(
        [html.Thead(html.Tr([html.Th(t(k)) for k in keys])), html.Tbody(body)],
        className="data-table em-table",
    )


def timeline_table(rows: Sequence[inc.TimelineEntry], now: datetime) -> html.Div | html.Table:
    if not rows:
        return html.Div("—", className="eco-muted")
    keys = ("console.col.time", "console.col.action", "console.col.actor", "console.col.comment")
    body = [
        html.Tr(
            [
                html.Td(city_time(e.ts, now), className="num"),
                html.Td(timeline_label(e)),
                html.Td(e.actor or "—"),
                # Officer-typed text: a string child is a React text node, never markup.
                html.Td(e.comment or "", className="console-comment-cell"),
            ]
        )
        for e in reversed(rows)  # newest first: what just happened is on top
    ]
    return html.Table(
        [html.Thead(html.Tr([html.Th(t(k)) for k in keys])), html.Tbody(body)],
        className="data-table em-table",
    )


def timeline_label(entry: inc.TimelineEntry) -> str:
    """The step's name in the viewer's language; a link names what was linked."""
    key = f"emergency.event.{entry.action}"
    label = t(key) if _known(key) else entry.label_zh
    payload = entry.payload or {}
    if entry.action == "link" and payload.get("kind"):
        kind = payload["kind"]
        return f"{label} {t(f'emergency.link.{kind}')} {payload.get('ref_id', '')}"
    return label


def _known(key: str) -> bool:
    from dashboards.i18n import STRINGS

    return key in STRINGS


def links_view(links: Sequence[inc.LinkView]) -> html.Div:
    if not links:
        return html.Div(t("emergency.links_none"), className="eco-muted")
    by_kind: dict[str, list[str]] = {}
    for link in links:
        by_kind.setdefault(link.kind, []).append(link.ref_id)
    return html.Div(
        [
            html.Div(
                [
                    html.Span(t(f"emergency.link.{k}"), className="em-link-kind"),
                    html.Span("、".join(v), className="num"),
                ]
            )
            for k, v in by_kind.items()
        ]
    )


def area_view(area: inc.AffectedArea | None, radius_m: float | None) -> html.Div:
    if area is None:
        return html.Div(t("emergency.area_none"), className="eco-muted")
    what = (
        t("emergency.area_circle", km=f"{(radius_m or area.area.radius_m or 0) / 1000:g}")
        if area.area.kind == "circle"
        else t("emergency.area_polygon")
    )
    parts: list[Any] = [html.Div(what, className="em-area-what")]
    for kind, hits in (("devices", area.devices), ("tickets", area.tickets), ("cases", area.cases)):
        names = [f"{h.label}（{km_text(h.distance_m)}）" for h in hits[:AREA_LIST_ROWS]]
        more = len(hits) - len(names)
        parts.append(
            html.Div(
                [
                    html.Span(t(f"emergency.area.{kind}", n=len(hits)), className="em-link-kind"),
                    # Ticket titles are citizens' words: text, never markup.
                    html.Span(
                        "；".join(names) + (t("emergency.and_more", n=more) if more > 0 else ""),
                        className="em-area-list",
                    ),
                ]
            )
        )
    return html.Div(parts)


def warning_view(draft: inc.WarningDraft | None, now: datetime) -> html.Div:
    if draft is None:
        return html.Div(t("emergency.warning_none"), className="eco-muted")
    headline = draft.headline_en if current_language() == "en" else draft.headline_zh
    area = draft.area_desc_en if current_language() == "en" else draft.area_desc_zh
    return html.Div(
        [
            html.Div(
                [
                    html.Span(
                        t(f"emergency.colour.{draft.colour}"), className=f"sev-badge sev-{draft.colour}"
                    ),
                    html.Span(headline, className="em-warning-head"),
                ]
            ),
            html.Div(area, className="eco-muted"),
            html.Div(
                t(
                    "emergency.warning_meta",
                    severity=draft.severity,
                    at=city_time(draft.drafted_at, now),
                    until=city_time(draft.expires, now),
                    who=draft.drafted_by,
                ),
                className="eco-muted",
            ),
        ],
        className="em-warning",
    )


@dataclass(frozen=True, slots=True)
class PanelData:
    """What the incident panel shows about the selected incident."""

    detail: inc.IncidentDetail
    area: inc.AffectedArea | None
    radius_m: float | None
    nearest: dict[str, list[spatial.ResourceHit]]


def incident_panel(data: PanelData, now: datetime) -> html.Div:
    i = data.detail.incident
    active = {d.resource_id for d in data.detail.resources if d.status != inc.DispatchStatus.RELEASED}
    open_ = i.state != inc.IncidentState.CLOSED
    can_dispatch = i.state in (inc.IncidentState.RESPONDING, *inc.WORKING_STATES)
    head = html.Div(
        [
            level_badge(i.level),
            html.Span(i.title, className="em-panel-title"),
            html.Span(state_label(i.state), className=f"em-state-badge em-state-{i.state}"),
        ],
        className="em-panel-head",
    )
    facts = html.Dl(
        [
            _fact("emergency.field.id", i.incident_id),
            _fact("emergency.field.type", t(f"emergency.type.{inc.incident_type(i.type).key}")),
            _fact("console.col.district", district_name(i.district_code)),
            _fact("emergency.field.reported", city_time(i.reported_at, now)),
            _fact("emergency.field.age", duration_text((now - i.reported_at).total_seconds())),
            _fact("emergency.field.commander", i.commander or "—"),
        ],
        className="console-facts em-facts",
    )
    sections: list[Any] = [head]
    if i.description:
        sections.append(html.P(i.description, className="console-message"))
    sections += [
        facts,
        html.H3(t("emergency.lifecycle")),
        lifecycle_steps(i, now),
        html.H3(t("emergency.dispatched")),
        dispatch_table(data.detail.resources, now, can_act=open_),
        html.H3(t("emergency.nearest")),
        nearest_table(data.nearest, active, can_dispatch=can_dispatch),
        html.H3(t("emergency.area")),
        area_view(data.area, data.radius_m),
        html.H3(t("emergency.links")),
        links_view(data.detail.links),
        html.H3(t("emergency.warning")),
        warning_view(data.detail.warning, now),
        html.H3(t("emergency.timeline")),
        timeline_table(data.detail.timeline, now),
    ]
    return html.Div(sections, className="em-panel")


#: The lifecycle in order, for the step line (dismissal goes straight to closed).
STEPS = ("reported", "responding", "dispatching", "handling", "assessing", "closed")


def lifecycle_steps(i: inc.IncidentView, now: datetime) -> html.Div:
    """接报 → 响应 → 调度 → 处置 → 评估 → 关闭, with the time each step was reached."""
    stamps = {
        "reported": i.reported_at,
        "responding": i.responding_at,
        "dispatching": i.dispatching_at,
        "handling": i.handling_at,
        "assessing": i.assessing_at,
        "closed": i.closed_at,
    }
    current = STEPS.index(i.state)
    return html.Div(
        [
            html.Div(
                [
                    html.Div(state_label(s)),
                    html.Div(city_time(stamps[s], now) if stamps[s] else "", className="num eco-muted"),
                ],
                className="em-step " + ("done" if n < current else "current" if n == current else "todo"),
            )
            for n, s in enumerate(STEPS)
        ],
        className="em-steps",
    )


# ---- operator actions -------------------------------------------------------------------------

#: The buttons under the panel, in order; each is one function of ``models.incidents``.
PANEL_ACTIONS: tuple[str, ...] = (
    "respond",
    "escalate",
    "de_escalate",
    "start",
    "assess",
    "close",
    "dismiss",
    "note",
)


def enabled_actions(state: str | None, role: str | None) -> set[str]:
    """The panel buttons the lifecycle allows from ``state`` (guards are run on press)."""
    if state is None:
        return set()
    return set(inc.allowed_actions(state, role)) & set(PANEL_ACTIONS)


@dataclass(frozen=True, slots=True)
class ActionRequest:
    """One press of a button on the page."""

    action: str
    incident_id: str | None = None
    comment: str | None = None
    level: str | None = None
    resource_id: str | None = None
    dispatch_id: int | None = None
    alert_id: int | None = None
    radius_m: float | None = None


@dataclass(frozen=True, slots=True)
class ActionOutcome:
    ok: bool
    message: str
    #: The incident to show afterwards (a new one after opening from an alert).
    incident_id: str | None = None


def refusal_text(exc: IllegalTransition) -> str:
    return exc.reason_en if current_language() == "en" else exc.reason_zh


def perform(
    engine: sa.Engine,
    live: LiveStore | None,
    request: ActionRequest,
    *,
    actor: Actor,
    address: str | None,
    now: datetime,
) -> ActionOutcome:
    """Run one operator action through :mod:`models.incidents` in its own transaction, then
    tell every open page (:func:`models.incidents.announce`). A refusal by the lifecycle
    is an answer for the operator (its reason, who was first), not an error; bad input
    (no level, unknown resource) is answered the same way and changes nothing."""
    comment = clean_comment(request.comment)
    incident_id = request.incident_id
    kwargs: dict[str, Any] = {"actor": actor, "address": address, "now": now}
    action = request.action
    try:
        with engine.begin() as conn:
            change: Any
            if action == "open_from_alert":
                if request.alert_id is None:
                    raise ValueError(t("emergency.no_alert"))
                change = inc.open_from_alert(conn, int(request.alert_id), comment=comment, **kwargs)
                incident_id = change.incident.incident_id
            elif incident_id is None:
                return ActionOutcome(False, t("emergency.no_selection"))
            elif action == "respond":
                change = inc.respond(conn, incident_id, level=request.level or "", comment=comment, **kwargs)
            elif action in ("escalate", "de_escalate"):
                fn = inc.escalate if action == "escalate" else inc.de_escalate
                change = fn(conn, incident_id, level=request.level or "", reason=comment or "", **kwargs)
            elif action == "start":
                change = inc.start_handling(conn, incident_id, comment=comment, **kwargs)
            elif action == "assess":
                change = inc.assess(conn, incident_id, summary=comment or "", **kwargs)
            elif action == "close":
                change = inc.close(conn, incident_id, assessment=comment or "", **kwargs)
            elif action == "dismiss":
                change = inc.dismiss(conn, incident_id, reason=comment or "", **kwargs)
            elif action == "note":
                change = inc.note(conn, incident_id, text=comment or "", **kwargs)
            elif action == "dispatch":
                if not request.resource_id:
                    raise ValueError(t("emergency.no_resource"))
                change = inc.dispatch_resources(
                    conn, incident_id, [request.resource_id], comment=comment, **kwargs
                )
            elif action in ("arrive", "release"):
                if request.dispatch_id is None:
                    raise ValueError(t("emergency.no_resource"))
                fn = inc.resource_arrived if action == "arrive" else inc.release_resource
                change = fn(conn, int(request.dispatch_id), comment=comment, **kwargs)
            elif action == "area":
                change = inc.set_area(conn, incident_id, radius_m=request.radius_m, **kwargs)
            else:
                raise ValueError(f"unknown action {action!r}")
    except IllegalTransition as exc:
        return ActionOutcome(False, t("emergency.refused", reason=refusal_text(exc)), incident_id)
    except EntityNotFound:
        return ActionOutcome(
            False, t("emergency.missing", id=incident_id or request.alert_id or ""), incident_id
        )
    except ValueError as exc:  # bad input: a clear answer, nothing changed
        return ActionOutcome(False, t("emergency.refused", reason=str(exc)), incident_id)
    inc.announce(live, change)
    if isinstance(change, inc.IncidentChange) and not change.created:
        return ActionOutcome(True, t("emergency.already_open", id=incident_id), incident_id)
    return ActionOutcome(
        True, t("emergency.done", action=t(f"emergency.action.{action}"), id=incident_id), incident_id
    )


# ---- the wall's emergency panel ---------------------------------------------------------------


def read_wall_incidents(district_code: str | None = None) -> list[inc.IncidentView] | None:
    """Open incidents for the wall, of one district with ``district_code`` (None when the
    database cannot be read)."""
    from dashboards import context

    try:
        return inc.open_incidents(context.current().engine, district_code=district_code, limit=50)
    except Exception:  # the wall's other panels still show; this one says what it lacks
        return None


def wall_panel(data: Any, incidents: Sequence[inc.IncidentView] | None = None) -> html.Div:
    """The wall's emergency focus: open incidents by response level and the most severe of
    them, the default panel's alert figures beneath. ``data`` is the wall's ``WallData``."""
    from dashboards import wall

    if incidents is None:
        incidents = read_wall_incidents(getattr(data, "district_code", None))
    base = wall.emergency_panel(data)
    if incidents is None:
        return html.Div(
            [html.Div(t("emergency.wall.unavailable"), className="wall-stale"), base],
            className="wall-panel-body",
        )
    counts = level_counts(incidents)
    bigs = [
        wall.big_number(
            t("emergency.level.label", numeral=lvl.numeral),
            str(counts.by_level[lvl.value]),
            alarm=lvl.rank <= 2 and counts.by_level[lvl.value] > 0,
        )
        for lvl in inc.ResponseLevel
    ]
    bigs.append(wall.big_number(t("emergency.level.none"), str(counts.by_level["none"])))
    rows = incident_rows(incidents, data.now)[: wall.PANEL_ROWS]
    listing = (
        html.Div(
            [
                html.Div(
                    [
                        level_badge(r.level),
                        html.Span(r.title, className="wall-row-title"),
                        html.Span(r.state_label, className="wall-row-district"),
                        html.Span(r.district, className="wall-row-district"),
                        html.Span(duration_text(r.age_s), className="wall-row-time num"),
                    ],
                    className="wall-row",
                )
                for r in rows
            ],
            className="wall-rows",
        )
        if rows
        else html.Div(t("emergency.incidents_none"), className="wall-empty")
    )
    return html.Div(
        [
            html.H3(t("emergency.wall.incidents", n=counts.total)),
            html.Div(bigs, className="wall-bigs"),
            listing,
            base,
        ],
        className="wall-panel-body",
    )
