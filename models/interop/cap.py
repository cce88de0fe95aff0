"""OASIS CAP 1.2 messages for alerts, and an Atom feed that lists them.

Every alert becomes one CAP 1.2 message (namespace ``urn:oasis:names:tc:emergency:cap:1.2``)
with two ``info`` blocks, ``zh-CN`` first and ``en-US`` beside it, each with the alert's
area in WGS-84. What the fields mean and which values CAP allows are in
``shared/standards/workflows-and-interop.md`` (from CAP-v1.2-os); how our severities, the
four national warning colours and the alert lifecycle map onto them is below and in
docs/interop.md.

Severity (our scale, the national colour, CAP)::

    critical  红色 Ⅰ  Extreme   Immediate
    major     橙色 Ⅱ  Severe    Immediate
    minor     黄色 Ⅲ  Moderate  Expected
    info      蓝色 Ⅳ  Minor     Future

The colours come from :data:`models.schema.WARNING_COLOURS`. The four colours take CAP's
four known severities in order; the anchor is China's national profile (GB/T 35965.1—2018),
whose published sample maps 黄色 to ``Moderate``. Urgency follows our acknowledgement
deadlines (``CITYOPS_ALERT_SLA`` defaults: critical 2 min and major 10 min are "act now",
minor 30 min is "within the hour", info has none); an alert that has ended is ``Past``.

Lifecycle → ``msgType``: the first version of an alert is an ``Alert``; every later version
(repeats, acknowledgement, assignment, escalation) is an ``Update``; an alert that ended
(resolved, closed, false alarm) is a ``Cancel`` with ``responseType`` ``AllClear``.
Updates and cancels reference the first message. ``identifier`` is built from the sender,
the alert id and its version, so the same state always gives the same message.

Alerts are operational: ``scope`` is ``Restricted`` to government agencies on the
e-government network. Incidents' public warning drafts (:class:`models.incidents.WarningDraft`)
are ``Public`` and, until the warning release system issues them, ``Draft``.

The module only builds and renders; the queries it needs are at the end.
"""

from __future__ import annotations

import functools
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from models.alerts import QUEUE_STATES, AlertState, AlertView
from models.clock import CITY_TZ
from models.config import DEFAULT_CAP_SENDER
from models.incidents import WarningDraft
from models.schema import WARNING_COLOURS, Alert, Incident, Severity, WarningColour
from models.schema import IncidentWarning as IncidentWarningRow

CAP_NAMESPACE = "urn:oasis:names:tc:emergency:cap:1.2"
ATOM_NAMESPACE = "http://www.w3.org/2005/Atom"
#: Media type of a CAP message (as registered with IANA).
CAP_MEDIA_TYPE = "application/cap+xml"
ATOM_MEDIA_TYPE = "application/atom+xml"

#: Who speaks in the messages (``senderName``).
SENDER_NAME_ZH = "广安市一网统管城市运行指挥平台"
SENDER_NAME_EN = "Guang'an City Operations Command Platform"
#: Administrative division codes (GB/T 2260) are given as CAP geocodes under this name.
GEOCODE_NAME = "GB/T 2260"
CITY_CODE = "511600"

#: A device's alert concerns the place around it; this is the circle drawn there (km).
#: Half a kilometre covers a block or a river bank section, which is what one sensor or
#: camera watches, without claiming a whole district.
POINT_RADIUS_KM = 0.5
#: District outlines carry ~2,000 vertices; CAP consumers draw areas, not survey them, so
#: outlines are simplified to about 100 m (0.001°) and written with 5 decimals (~1 m).
OUTLINE_TOLERANCE_DEG = 0.001
COORD_DECIMALS = 5

#: The feed lists open alerts and those that ended within this window.
RECENT_WINDOW = timedelta(hours=24)
FEED_LIMIT = 500

ENDED_STATES = frozenset({AlertState.RESOLVED, AlertState.CLOSED, AlertState.FALSE_ALARM})


# --------------------------------------------------------------------------------------------
# Mappings


@dataclass(frozen=True, slots=True)
class WarningLevel:
    """One step of the national four-colour scale and its CAP values."""

    colour: WarningColour
    colour_zh: str
    level_zh: str
    level_en: str
    cap_severity: str
    cap_urgency: str


WARNING_LEVELS: Mapping[WarningColour, WarningLevel] = {
    WarningColour.RED: WarningLevel(WarningColour.RED, "红色", "Ⅰ级", "I", "Extreme", "Immediate"),
    WarningColour.ORANGE: WarningLevel(WarningColour.ORANGE, "橙色", "Ⅱ级", "II", "Severe", "Immediate"),
    WarningColour.YELLOW: WarningLevel(WarningColour.YELLOW, "黄色", "Ⅲ级", "III", "Moderate", "Expected"),
    WarningColour.BLUE: WarningLevel(WarningColour.BLUE, "蓝色", "Ⅳ级", "IV", "Minor", "Future"),
}


def warning_level(severity: str) -> WarningLevel:
    """The national warning step of one of our severities."""
    return WARNING_LEVELS[WARNING_COLOURS[Severity(severity)]]


@dataclass(frozen=True, slots=True)
class EventKind:
    """What kind of event a rule reports, in CAP's categories and in words."""

    categories: tuple[str, ...]
    event_zh: str
    event_en: str


#: Rule id prefixes → event kind; the first match wins. CAP counts floods as ``Met``.
_RULE_EVENTS: tuple[tuple[tuple[str, ...], EventKind], ...] = (
    (
        ("water_level", "rain_", "flood", "video_waterlogging", "manhole_water"),
        EventKind(("Met",), "汛情内涝", "Flood and waterlogging"),
    ),
    (("smoke", "fire", "video_smoke_fire"), EventKind(("Fire",), "火情", "Fire")),
    (("gas_",), EventKind(("Safety",), "燃气泄漏", "Gas leak")),
    (("video_crowd",), EventKind(("Safety",), "人群聚集", "Crowd gathering")),
    (("manhole_",), EventKind(("Infra",), "井盖异常", "Manhole cover fault")),
    (
        ("urban_road_damage", "urban_illegal_parking", "urban_fallen_tree"),
        EventKind(("Transport",), "道路交通秩序", "Road and traffic order"),
    ),
    (("urban_",), EventKind(("Infra",), "市容秩序", "City appearance and order")),
    (("aqi",), EventKind(("Env", "Health"), "空气污染", "Air pollution")),
    (("water_below_target",), EventKind(("Env",), "水质超标", "Water quality below target")),
    (("noise",), EventKind(("Env",), "噪声超标", "Noise above limit")),
    (("hotline_deadline",), EventKind(("Other",), "12345工单超时", "12345 work order deadline")),
    (("hotline_",), EventKind(("Other",), "12345诉求激增", "Surge of 12345 calls")),
    (("device_offline",), EventKind(("Infra",), "设备离线", "Device offline")),
)
_DOMAIN_EVENTS: Mapping[str, EventKind] = {
    "emergency": EventKind(("Safety",), "突发事件告警", "Emergency alert"),
    "urban": EventKind(("Infra",), "城市管理告警", "Urban management alert"),
    "ecology": EventKind(("Env",), "生态环境告警", "Environmental alert"),
    "hotline": EventKind(("Other",), "12345热线告警", "12345 hotline alert"),
    "system": EventKind(("Other",), "系统告警", "System alert"),
}


def event_kind(rule_id: str, domain: str) -> EventKind:
    for prefixes, kind in _RULE_EVENTS:
        if rule_id.startswith(prefixes):
            return kind
    return _DOMAIN_EVENTS.get(domain, _DOMAIN_EVENTS["system"])


_STATE_EN: Mapping[str, str] = {
    AlertState.NEW: "new",
    AlertState.ACKNOWLEDGED: "acknowledged",
    AlertState.IN_PROGRESS: "being handled",
    AlertState.RESOLVED: "resolved",
    AlertState.CLOSED: "closed",
    AlertState.ESCALATED: "escalated",
    AlertState.SUPPRESSED: "suppressed (maintenance)",
    AlertState.FALSE_ALARM: "false alarm",
}


def msg_type(alert: AlertView) -> str:
    """``Alert`` for the first version, ``Cancel`` once ended, ``Update`` in between."""
    if alert.state in ENDED_STATES:
        return "Cancel"
    return "Alert" if alert.version <= 1 else "Update"


# --------------------------------------------------------------------------------------------
# The message


@dataclass(frozen=True, slots=True)
class CapArea:
    desc: str
    polygons: tuple[str, ...] = ()
    circles: tuple[str, ...] = ()
    geocodes: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class CapInfo:
    language: str
    categories: tuple[str, ...]
    event: str
    urgency: str
    severity: str
    certainty: str
    response_types: tuple[str, ...] = ()
    effective: datetime | None = None
    onset: datetime | None = None
    expires: datetime | None = None
    sender_name: str | None = None
    headline: str | None = None
    description: str | None = None
    instruction: str | None = None
    web: str | None = None
    contact: str | None = None
    parameters: tuple[tuple[str, str], ...] = ()
    areas: tuple[CapArea, ...] = ()


@dataclass(frozen=True, slots=True)
class CapMessage:
    identifier: str
    sender: str
    sent: datetime
    status: str
    msg_type: str
    scope: str
    restriction: str | None = None
    note: str | None = None
    references: tuple[str, ...] = ()
    incidents: tuple[str, ...] = ()
    infos: tuple[CapInfo, ...] = field(default_factory=tuple)


def cap_time(at: datetime) -> str:
    """``YYYY-MM-DDThh:mm:ss+08:00``: CAP forbids fractions and ``Z``; the city's own offset."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(CITY_TZ).replace(microsecond=0).isoformat()


def _forbidden_in_ids(value: str) -> bool:
    return any(c.isspace() or c in ",<&" for c in value)


def alert_identifier(sender: str, alert_id: int, version: int) -> str:
    """Stable per alert and version; the first version's is what updates reference."""
    return f"{sender}.alert.{alert_id}" if version <= 1 else f"{sender}.alert.{alert_id}.v{version}"


def reference(sender: str, identifier: str, sent: datetime) -> str:
    """One entry of CAP ``references``: ``sender,identifier,sent``."""
    return f"{sender},{identifier},{cap_time(sent)}"


_RESTRICTION = "仅限电子政务外网内的政府部门使用 / for government agencies on the e-government network only"


def alert_message(
    alert: AlertView,
    *,
    updated_at: datetime | None = None,
    sender: str = DEFAULT_CAP_SENDER,
    web: str | None = None,
) -> CapMessage:
    """The CAP 1.2 message for an alert in its current state.

    ``updated_at`` (the row's last change) is the ``sent`` time of updates and cancels, so
    the same version always gives the same message; ``web`` links to the alert's page.
    """
    if _forbidden_in_ids(sender):
        raise ValueError(f"CAP sender {sender!r} holds a space, ',', '<' or '&'")
    kind_type = msg_type(alert)
    first_id = alert_identifier(sender, alert.id, 1)
    first_ref = reference(sender, first_id, alert.opened_at)
    sent = alert.opened_at if kind_type == "Alert" else (updated_at or _last_change(alert))
    level = warning_level(alert.severity)
    ended = alert.state in ENDED_STATES
    false_alarm = alert.state == AlertState.FALSE_ALARM
    kind = event_kind(alert.rule_id, alert.domain)
    zh_area, en_area = alert_areas(alert)
    urgency = "Past" if ended else level.cap_urgency
    certainty = "Unlikely" if false_alarm else "Observed"
    response = ("AllClear",) if ended else ()
    note = None
    if false_alarm:
        note = "经核实为误报 / verified as a false alarm"
    elif ended:
        note = "告警已结束 / the alert has ended"

    state_zh = _STATE_ZH.get(alert.state, alert.state)
    state_en = _STATE_EN.get(alert.state, alert.state)
    details_zh = [
        f"首次发生：{_local(alert.opened_at)}",
        f"发生次数：{alert.occurrences}",
        f"当前状态：{state_zh}",
    ]
    if alert.assigned_to:
        details_zh.append(f"处置单位：{alert.assigned_to}")
    if alert.escalation_level:
        details_zh.append(f"已升级 {alert.escalation_level} 次")
    details_en = [
        f"First raised {_local(alert.opened_at)} (UTC+8)",
        f"occurrences: {alert.occurrences}",
        f"state: {state_en}",
    ]
    if alert.escalation_level:
        details_en.append(f"escalated {alert.escalation_level} time(s)")
    place_en = en_area.desc
    common: dict[str, Any] = {
        "categories": kind.categories,
        "urgency": urgency,
        "severity": level.cap_severity,
        "certainty": certainty,
        "response_types": response,
        "effective": alert.opened_at,
        "web": web,
    }
    zh = CapInfo(
        language="zh-CN",
        event=kind.event_zh,
        sender_name=SENDER_NAME_ZH,
        headline=f"{level.colour_zh}预警：{alert.title}",
        description="\n".join([alert.message or alert.title, "；".join(details_zh)]),
        instruction=("经核实为误报，无需行动。" if false_alarm else "告警已结束，无需进一步行动。")
        if ended
        else None,
        parameters=(
            ("预警颜色", level.colour_zh),
            ("预警级别", level.level_zh),
            ("告警状态", state_zh),
            ("发生次数", str(alert.occurrences)),
        ),
        areas=(zh_area,),
        **common,
    )
    en = CapInfo(
        language="en-US",
        event=kind.event_en,
        sender_name=SENDER_NAME_EN,
        headline=f"{level.colour.value.capitalize()} warning: {kind.event_en}, {place_en}",
        description=f"{kind.event_en} at {place_en}. " + "; ".join(details_en) + ".",
        instruction=(
            "Verified as a false alarm; no action is needed."
            if false_alarm
            else "The alert has ended; no further action is needed."
        )
        if ended
        else None,
        parameters=(
            ("warningColour", level.colour.value),
            ("warningLevel", level.level_en),
            ("alertState", alert.state),
            ("occurrences", str(alert.occurrences)),
        ),
        areas=(en_area,),
        **common,
    )
    return CapMessage(
        identifier=alert_identifier(sender, alert.id, alert.version),
        sender=sender,
        sent=sent,
        status="Actual",
        msg_type=kind_type,
        scope="Restricted",
        restriction=_RESTRICTION,
        note=note,
        references=() if kind_type == "Alert" else (first_ref,),
        infos=(zh, en),
    )


_STATE_ZH: Mapping[str, str] = {
    AlertState.NEW: "待确认",
    AlertState.ACKNOWLEDGED: "已确认",
    AlertState.IN_PROGRESS: "处置中",
    AlertState.RESOLVED: "已处置",
    AlertState.CLOSED: "已关闭",
    AlertState.ESCALATED: "已升级",
    AlertState.SUPPRESSED: "已抑制",
    AlertState.FALSE_ALARM: "误报",
}


def _last_change(alert: AlertView) -> datetime:
    stamps = [
        alert.opened_at,
        alert.last_seen_at,
        alert.acknowledged_at,
        alert.assigned_at,
        alert.cleared_at,
        alert.resolved_at,
        alert.closed_at,
    ]
    return max(s for s in stamps if s is not None)


def _local(at: datetime) -> str:
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return f"{at.astimezone(CITY_TZ):%Y-%m-%d %H:%M}"


# --------------------------------------------------------------------------------------------
# Areas


def cap_polygon(ring: Sequence[tuple[float, float]]) -> str:
    """A closed ring of (lon, lat) as CAP wants it: ``lat,lon`` pairs, first = last, ≥ 4 pairs."""
    pairs = [f"{lat:.{COORD_DECIMALS}f},{lon:.{COORD_DECIMALS}f}" for lon, lat in ring]
    # Rounding may merge neighbouring vertices; drop the repeats, then close the ring.
    kept = [p for i, p in enumerate(pairs) if i == 0 or p != pairs[i - 1]]
    if kept[0] != kept[-1]:
        kept.append(kept[0])
    if len(kept) < 4:
        raise ValueError("a CAP polygon needs at least 4 points (3 corners and the first again)")
    return " ".join(kept)


def cap_circle(lon: float, lat: float, radius_km: float) -> str:
    return f"{lat:.{COORD_DECIMALS}f},{lon:.{COORD_DECIMALS}f} {radius_km:g}"


def _rings(geometry: Any) -> list[list[tuple[float, float]]]:
    parts = getattr(geometry, "geoms", [geometry])
    return [list(p.exterior.coords) for p in parts if not p.is_empty]


@functools.lru_cache(maxsize=1)
def _grid_geometries() -> dict[str, Any]:
    from geo.grid import build_grid_cells

    cells = build_grid_cells()
    return dict(zip(cells["grid_id"], cells.geometry, strict=True))


@functools.lru_cache(maxsize=16)
def _outline_polygons(code: str) -> tuple[str, ...]:
    from geo.boundaries import city_outline, district_geometries

    geometry = city_outline() if code == CITY_CODE else district_geometries()[code]
    simple = geometry.simplify(OUTLINE_TOLERANCE_DEG, preserve_topology=True)
    return tuple(cap_polygon(r) for r in _rings(simple))


def _district_names(code: str | None) -> tuple[str, str]:
    from geo.boundaries import CITY_NAME, CITY_NAME_EN, district_by_code

    if code:
        try:
            district = district_by_code(code)
        except (KeyError, ValueError):
            pass
        else:
            return district.full_name, f"{district.name_en}, {CITY_NAME_EN}"
    return CITY_NAME, CITY_NAME_EN


def area_for(
    *, district_code: str | None, grid_id: str | None, lon: float | None, lat: float | None
) -> tuple[CapArea, CapArea]:
    """The (zh, en) area of something located in the city.

    The most precise geometry known: a circle round the point, plus the grid cell's polygon
    when the cell is known, else the district's outline (or the city's when nothing is
    known). The district code goes along as a geocode.
    """
    polygons: tuple[str, ...] = ()
    circles: tuple[str, ...] = ()
    if lon is not None and lat is not None:
        circles = (cap_circle(lon, lat, POINT_RADIUS_KM),)
    cell = _grid_geometries().get(grid_id) if grid_id else None
    if cell is not None:
        polygons = tuple(cap_polygon(r) for r in _rings(cell))
    elif not circles:
        polygons = _outline_polygons(district_code if _known_district(district_code) else CITY_CODE)
    zh_name, en_name = _district_names(district_code)
    code = district_code if _known_district(district_code) else CITY_CODE
    if cell is not None:
        zh_name, en_name = f"{zh_name} 网格 {grid_id}", f"grid cell {grid_id}, {en_name}"
    geocodes = ((GEOCODE_NAME, code),)
    return (
        CapArea(zh_name, polygons, circles, geocodes),
        CapArea(en_name, polygons, circles, geocodes),
    )


def _known_district(code: str | None) -> bool:
    from geo.boundaries import district_by_code

    if not code:
        return False
    try:
        district_by_code(code)
    except (KeyError, ValueError):
        return False
    return True


def alert_areas(alert: AlertView) -> tuple[CapArea, CapArea]:
    return area_for(district_code=alert.district_code, grid_id=alert.grid_id, lon=alert.lon, lat=alert.lat)


# --------------------------------------------------------------------------------------------
# Rendering


def _sub(parent: ET.Element, tag: str, text: str | None, ns: str = CAP_NAMESPACE) -> ET.Element | None:
    if text is None:
        return None
    element = ET.SubElement(parent, f"{{{ns}}}{tag}")
    element.text = text
    return element


def to_xml(message: CapMessage) -> bytes:
    """The message as UTF-8 XML, elements in the order the CAP 1.2 schema requires."""
    ET.register_namespace("", CAP_NAMESPACE)
    root = ET.Element(f"{{{CAP_NAMESPACE}}}alert")
    _sub(root, "identifier", message.identifier)
    _sub(root, "sender", message.sender)
    _sub(root, "sent", cap_time(message.sent))
    _sub(root, "status", message.status)
    _sub(root, "msgType", message.msg_type)
    _sub(root, "scope", message.scope)
    _sub(root, "restriction", message.restriction)
    _sub(root, "note", message.note)
    if message.references:
        _sub(root, "references", " ".join(message.references))
    if message.incidents:
        _sub(root, "incidents", " ".join(message.incidents))
    for info in message.infos:
        _info(root, info)
    ET.indent(root)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode").encode("utf-8")


def _info(root: ET.Element, info: CapInfo) -> None:
    element = ET.SubElement(root, f"{{{CAP_NAMESPACE}}}info")
    _sub(element, "language", info.language)
    for category in info.categories:
        _sub(element, "category", category)
    _sub(element, "event", info.event)
    for response in info.response_types:
        _sub(element, "responseType", response)
    _sub(element, "urgency", info.urgency)
    _sub(element, "severity", info.severity)
    _sub(element, "certainty", info.certainty)
    for tag, at in (("effective", info.effective), ("onset", info.onset), ("expires", info.expires)):
        if at is not None:
            _sub(element, tag, cap_time(at))
    _sub(element, "senderName", info.sender_name)
    _sub(element, "headline", info.headline)
    _sub(element, "description", info.description)
    _sub(element, "instruction", info.instruction)
    _sub(element, "web", info.web)
    _sub(element, "contact", info.contact)
    for name, value in info.parameters:
        parameter = ET.SubElement(element, f"{{{CAP_NAMESPACE}}}parameter")
        _sub(parameter, "valueName", name)
        _sub(parameter, "value", value)
    for area in info.areas:
        area_element = ET.SubElement(element, f"{{{CAP_NAMESPACE}}}area")
        _sub(area_element, "areaDesc", area.desc)
        for polygon in area.polygons:
            _sub(area_element, "polygon", polygon)
        for circle in area.circles:
            _sub(area_element, "circle", circle)
        for name, value in area.geocodes:
            geocode = ET.SubElement(area_element, f"{{{CAP_NAMESPACE}}}geocode")
            _sub(geocode, "valueName", name)
            _sub(geocode, "value", value)


@dataclass(frozen=True, slots=True)
class FeedEntry:
    """One line of the Atom feed: a CAP message and where to fetch it."""

    url: str
    title: str
    summary: str
    published: datetime
    updated: datetime
    severity: str
    label: str


def alert_entry(alert: AlertView, updated_at: datetime | None, url: str) -> FeedEntry:
    level = warning_level(alert.severity)
    return FeedEntry(
        url=url,
        title=f"{level.colour_zh}预警：{alert.title}",
        summary=" · ".join(
            [_STATE_ZH.get(alert.state, alert.state), msg_type(alert), alert.message or alert.title]
        ),
        published=alert.opened_at,
        updated=updated_at or _last_change(alert),
        severity=alert.severity,
        label=f"{level.colour_zh}预警 / {level.colour.value} warning",
    )


def atom_feed(
    entries: Sequence[FeedEntry], *, self_url: str, updated: datetime, title: str | None = None
) -> bytes:
    """An Atom (RFC 4287) feed, newest entry first, each linking to its CAP message."""
    ET.register_namespace("", ATOM_NAMESPACE)
    ns = ATOM_NAMESPACE
    root = ET.Element(f"{{{ns}}}feed", {"{http://www.w3.org/XML/1998/namespace}lang": "zh-CN"})
    _sub(root, "id", self_url, ns)
    _sub(root, "title", title or "广安市城市运行告警 / Guang'an city operations alerts", ns)
    ordered = sorted(entries, key=lambda e: (e.updated, e.url), reverse=True)
    newest = max([updated, *(e.updated for e in ordered)]) if ordered else updated
    _sub(root, "updated", cap_time(newest), ns)
    author = ET.SubElement(root, f"{{{ns}}}author")
    _sub(author, "name", SENDER_NAME_ZH, ns)
    ET.SubElement(root, f"{{{ns}}}link", {"rel": "self", "href": self_url, "type": ATOM_MEDIA_TYPE})
    for entry in ordered:
        element = ET.SubElement(root, f"{{{ns}}}entry")
        _sub(element, "id", entry.url, ns)
        _sub(element, "title", entry.title, ns)
        _sub(element, "published", cap_time(entry.published), ns)
        _sub(element, "updated", cap_time(entry.updated), ns)
        link = {"rel": "alternate", "href": entry.url, "type": CAP_MEDIA_TYPE}
        ET.SubElement(element, f"{{{ns}}}link", link)
        ET.SubElement(element, f"{{{ns}}}category", {"term": entry.severity, "label": entry.label})
        _sub(element, "summary", entry.summary, ns)
    ET.indent(root)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode").encode("utf-8")


# --------------------------------------------------------------------------------------------
# Queries

_ALERTS = Alert.__table__


@dataclass(frozen=True, slots=True)
class CapAlert:
    """An alert with the time of its last change (``sent`` of its updates)."""

    alert: AlertView
    updated_at: datetime | None


def cap_alert(conn: Connection, alert_id: int) -> CapAlert | None:
    row = conn.execute(sa.select(_ALERTS).where(_ALERTS.c.id == alert_id)).mappings().first()
    return None if row is None else CapAlert(AlertView.from_row(row), row["updated_at"])


def feed_alerts(
    conn: Connection, *, now: datetime, recent: timedelta = RECENT_WINDOW, limit: int = FEED_LIMIT
) -> list[CapAlert]:
    """Alerts in the duty officers' queue and those that ended within ``recent``, newest first.

    Suppressed alerts are left out: they were never announced, so there is nothing to update.
    """
    changed = sa.func.coalesce(_ALERTS.c.updated_at, _ALERTS.c.opened_at)
    query = (
        sa.select(_ALERTS)
        .where(
            sa.or_(
                _ALERTS.c.state.in_(sorted(QUEUE_STATES)),
                sa.and_(_ALERTS.c.state.in_(sorted(ENDED_STATES)), _ALERTS.c.resolved_at >= now - recent),
            )
        )
        .order_by(changed.desc(), _ALERTS.c.id.desc())
        .limit(limit)
    )
    return [CapAlert(AlertView.from_row(r), r["updated_at"]) for r in conn.execute(query).mappings()]


def message_for(item: CapAlert, *, sender: str = DEFAULT_CAP_SENDER, web: str | None = None) -> CapMessage:
    return alert_message(item.alert, updated_at=item.updated_at, sender=sender, web=web)


# --------------------------------------------------------------------------------------------
# Incidents' public warnings


@dataclass(frozen=True, slots=True)
class IncidentWarning:
    """An incident's newest warning draft, with what the envelope needs from its history."""

    draft: WarningDraft
    draft_id: int
    first_id: int
    first_drafted_at: datetime
    incident_state: str
    closed_at: datetime | None

    @property
    def updated(self) -> datetime:
        return self.closed_at or self.draft.drafted_at


_WARNING_NOTE = (
    "突发事件预警信息草稿，经审核后由预警发布系统发布 / "
    "public warning draft, to be issued by the warning release system once approved"
)


def warning_identifier(sender: str, incident_id: str, draft_id: int) -> str:
    return f"{sender}.incident.{incident_id}.w{draft_id}"


def incident_message(item: IncidentWarning, *, sender: str = DEFAULT_CAP_SENDER) -> CapMessage:
    """An incident's public warning draft as CAP 1.2, ``scope`` Public, ``status`` Draft.

    The platform drafts; the warning release system approves and issues, so the message is
    a ``Draft`` (CAP: "not actionable in its current form"). The first draft of an incident
    is an ``Alert``, a redraft an ``Update`` of it, and once the incident is closed the
    warning is a ``Cancel`` (all clear).
    """
    draft = item.draft
    if _forbidden_in_ids(sender) or _forbidden_in_ids(draft.incident_id):
        raise ValueError(
            f"CAP sender {sender!r} or incident {draft.incident_id!r} holds a space, ',', '<' or '&'"
        )
    closed = item.closed_at is not None or item.incident_state == "closed"
    first = warning_identifier(sender, draft.incident_id, item.first_id)
    kind_type = "Cancel" if closed else ("Alert" if item.draft_id == item.first_id else "Update")
    geocodes = tuple((GEOCODE_NAME, code) for code in draft.geocodes)
    polygons = (draft.polygon,) if draft.polygon else ()
    circles = (draft.circle,) if draft.circle else ()
    response = ("AllClear",) if closed else draft.response_type

    def info(language: str, suffix: str) -> CapInfo:
        return CapInfo(
            language=language,
            categories=draft.category,
            event=getattr(draft, f"event_{suffix}"),
            urgency="Past" if closed else draft.urgency,
            severity=draft.severity,
            certainty=draft.certainty,
            response_types=response,
            onset=draft.onset,
            expires=draft.expires,
            sender_name=getattr(draft, f"sender_name_{suffix}"),
            headline=getattr(draft, f"headline_{suffix}"),
            description=getattr(draft, f"description_{suffix}"),
            instruction=getattr(draft, f"instruction_{suffix}"),
            areas=(CapArea(getattr(draft, f"area_desc_{suffix}"), polygons, circles, geocodes),),
        )

    return CapMessage(
        identifier=warning_identifier(sender, draft.incident_id, item.draft_id),
        sender=sender,
        sent=item.updated if closed else draft.drafted_at,
        status="Draft",
        msg_type=kind_type,
        scope="Public",
        note=_WARNING_NOTE,
        references=() if kind_type == "Alert" else (reference(sender, first, item.first_drafted_at),),
        incidents=(draft.incident_id,),
        infos=(info("zh-CN", "zh"), info("en-US", "en")),
    )


def incident_entry(item: IncidentWarning, url: str) -> FeedEntry:
    draft = item.draft
    return FeedEntry(
        url=url,
        title=draft.headline_zh,
        summary=f"预警信息草稿 / warning draft · {draft.event_zh} · {draft.area_desc_zh}",
        published=item.first_drafted_at,
        updated=item.updated,
        severity=draft.colour,
        label=f"{WARNING_LEVELS[WarningColour(draft.colour)].colour_zh}预警 / {draft.colour} warning",
    )


_WARNINGS = IncidentWarningRow.__table__
_INCIDENTS = Incident.__table__


def incident_warnings(
    conn: Connection,
    *,
    incident_id: str | None = None,
    now: datetime | None = None,
    recent: timedelta = RECENT_WINDOW,
    limit: int = FEED_LIMIT,
) -> list[IncidentWarning]:
    """The newest draft of one incident, or of every open incident and those closed within
    ``recent`` of ``now``."""
    w, i = _WARNINGS, _INCIDENTS
    ranked = sa.select(
        w.c.id,
        w.c.incident_id,
        w.c.drafted_at,
        w.c.draft,
        sa.func.row_number()
        .over(partition_by=w.c.incident_id, order_by=(w.c.drafted_at.desc(), w.c.id.desc()))
        .label("newest"),
        sa.func.min(w.c.id).over(partition_by=w.c.incident_id).label("first_id"),
    ).subquery()
    first = w.alias("first_draft")
    query = (
        sa.select(
            ranked.c.id, ranked.c.draft, ranked.c.first_id, first.c.drafted_at, i.c.state, i.c.closed_at
        )
        .join(i, i.c.incident_id == ranked.c.incident_id)
        .join(first, first.c.id == ranked.c.first_id)
        .where(ranked.c.newest == 1)
    )
    if incident_id is not None:
        query = query.where(ranked.c.incident_id == incident_id)
    else:
        assert now is not None
        query = query.where(sa.or_(i.c.closed_at.is_(None), i.c.closed_at >= now - recent))
    rows = conn.execute(query.order_by(ranked.c.drafted_at.desc()).limit(limit)).all()
    return [
        IncidentWarning(WarningDraft.from_json(r.draft), r.id, r.first_id, r.drafted_at, r.state, r.closed_at)
        for r in rows
    ]


__all__ = [
    "CAP_MEDIA_TYPE",
    "CAP_NAMESPACE",
    "WARNING_LEVELS",
    "CapAlert",
    "CapArea",
    "CapInfo",
    "CapMessage",
    "FeedEntry",
    "IncidentWarning",
    "alert_entry",
    "alert_message",
    "area_for",
    "atom_feed",
    "cap_alert",
    "cap_circle",
    "cap_polygon",
    "cap_time",
    "event_kind",
    "feed_alerts",
    "incident_entry",
    "incident_message",
    "incident_warnings",
    "msg_type",
    "to_xml",
    "warning_level",
]
