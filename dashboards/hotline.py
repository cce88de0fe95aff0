"""The 12345 hotline page's figures: pure functions over work orders, deadlines and repeats.

Nothing here reads Redis or the database; the page hands in what it read plus ``now``.
Callers appear only masked (:class:`models.tickets.TicketView` never holds more), and a
citizen's words stay plain strings: the page puts them into table cells as text, never
into Markdown, HTML or a Plotly hover (which would interpret some HTML tags).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import plotly.graph_objects as go
from dash import Patch

from dashboards.console import city_time, district_name
from dashboards.i18n import t
from dashboards.urban import HeatCells, heat_cells, heat_map_update
from models.catalog import HOTLINE_CHANNELS
from models.clock import CITY_TZ
from models.tickets import DEADLINE_KINDS, DeadlineFlag, HotSpot, RepeatLink, TicketView

#: A city hotline takes calls around the clock; a quarter of an hour without a single new
#: order means the link to the hotline system is down.
TICKETS_SILENT_AFTER_S = 15 * 60
STREAM_ROWS = 30
OVERDUE_ROWS = 50
REPEAT_CLUSTERS = 12
HOT_SPOTS = 60
HOT_MAP_PX = 380
#: The whole city in the hot-spot panel (narrower and lower than the urban map).
HOT_MAP_ZOOM = 7.9
CATEGORY_PX = 230
#: On-time, satisfaction and repeat figures look back this far: a day has too few
#: decided or rated orders to say anything.
RATES_WINDOW = timedelta(days=30)


def day_start(now: datetime) -> datetime:
    """Midnight of the city day containing ``now`` (today's figures count from here)."""
    local = now.astimezone(CITY_TZ)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


# ---- the live stream ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamRow:
    ticket_id: str
    at: str
    category: str
    title: str
    content: str
    district: str
    channel: str
    caller: str
    state_label: str
    urgent: bool
    repeat_of: str | None


def stream_rows(tickets: Iterable[TicketView], now: datetime) -> list[StreamRow]:
    """Newest first, as given; the caller is the masked name and phone (``张* 138****5678``)."""
    rows = []
    for v in tickets:
        caller = " ".join(x for x in (v.caller_name_masked, v.caller_phone_masked) if x)
        rows.append(
            StreamRow(
                ticket_id=v.ticket_id,
                at=city_time(v.ts, now),
                category=v.category,
                title=v.title,
                content=v.content,
                district=district_name(v.district_code),
                channel=HOTLINE_CHANNELS.get(v.channel, v.channel),
                caller=caller or "—",
                state_label=v.state_label_zh,
                urgent=v.urgency == "urgent",
                repeat_of=v.repeat_of or v.likely_repeat_of,
            )
        )
    return rows


# ---- overdue --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OverdueRow:
    ticket_id: str
    #: ``签收、答复``: every deadline the order has missed and still owes.
    kinds: str
    due: datetime
    over_s: float
    category: str
    department: str
    district: str
    supervised: bool
    urgent: bool


def overdue_rows(flags: Iterable[DeadlineFlag], now: datetime, limit: int = OVERDUE_ROWS) -> list[OverdueRow]:
    """One row per overdue order, the longest overdue first (by its earliest missed deadline)."""
    order = {k.name: i for i, k in enumerate(DEADLINE_KINDS)}
    labels = {k.name: k.label_zh for k in DEADLINE_KINDS}
    by_ticket: dict[str, list[DeadlineFlag]] = {}
    for f in flags:
        if f.overdue:
            by_ticket.setdefault(f.ticket_id, []).append(f)
    rows = []
    for ticket_id, mine in by_ticket.items():
        mine.sort(key=lambda f: order[f.kind])
        first = min(f.due for f in mine)
        f0 = mine[0]
        rows.append(
            OverdueRow(
                ticket_id=ticket_id,
                kinds="、".join(labels[f.kind] for f in mine),
                due=first,
                over_s=max(0.0, (now - first).total_seconds()),
                category=f0.category,
                department=f0.department or "—",
                district=district_name(f0.district_code),
                supervised=any(f.supervised for f in mine),
                urgent=f0.urgency == "urgent",
            )
        )
    rows.sort(key=lambda r: (-r.over_s, r.ticket_id))
    return rows[:limit]


# ---- repeat clusters ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RepeatCluster:
    """An order and the orders that repeat it (directly or through another repeat)."""

    root: str
    category: str
    district: str
    size: int
    confirmed: int
    likely: int
    last: datetime


def repeat_clusters(links: Iterable[RepeatLink], limit: int = REPEAT_CLUSTERS) -> list[RepeatCluster]:
    """Group repeat links by the earliest order of their chain; biggest clusters first."""
    links = list(links)
    earlier = {link.ticket_id: link.earlier for link in links}

    def root_of(ticket_id: str) -> str:
        seen = {ticket_id}
        while ticket_id in earlier and earlier[ticket_id] not in seen:
            ticket_id = earlier[ticket_id]
            seen.add(ticket_id)
        return ticket_id

    groups: dict[str, list[RepeatLink]] = {}
    for link in links:
        groups.setdefault(root_of(link.ticket_id), []).append(link)
    clusters = []
    for root, members in groups.items():
        newest = max(members, key=lambda m: (m.ts, m.ticket_id))
        confirmed = sum(1 for m in members if m.confirmed)
        clusters.append(
            RepeatCluster(
                root=root,
                category=newest.category,
                district=district_name(newest.district_code),
                size=len(members) + 1,
                confirmed=confirmed,
                likely=len(members) - confirmed,
                last=newest.ts,
            )
        )
    clusters.sort(key=lambda c: (-c.size, -c.last.timestamp(), c.root))
    return clusters[:limit]


# ---- categories and hot spots ---------------------------------------------------------------


def category_pairs(volumes: Mapping[str, int], limit: int = 10) -> list[tuple[str, int]]:
    """The ``limit`` biggest categories, the rest summed as one (其他) so the total stays right."""
    ordered = sorted(volumes.items(), key=lambda kv: (-kv[1], kv[0]))
    pairs = [(k, n) for k, n in ordered[:limit] if n > 0]
    rest = sum(n for _, n in ordered[limit:])
    if rest:
        pairs.append((t("hotline.other_categories"), rest))
    return pairs


def hot_map_update(
    cells: HeatCells, drawn: Mapping[str, str] | None, *, tile_url: str | None
) -> tuple[go.Figure | Patch, dict[str, str]]:
    """The hot-spot map: the whole figure once, then only what changed (see
    :func:`dashboards.urban.heat_map_update`)."""
    return heat_map_update(
        cells, drawn, tile_url=tile_url, uirevision="hotline-map", height=HOT_MAP_PX, zoom=HOT_MAP_ZOOM
    )


def hot_cells(spots: Iterable[HotSpot]) -> HeatCells:
    """Hot spots as grid-cell counts, each labelled with its most frequent category."""
    spots = list(spots)
    return heat_cells({s.grid_id: s.count for s in spots}, {s.grid_id: s.top_category for s in spots})


# ---- today ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TodayFigures:
    new: int
    open: int
    overdue: int
    satisfaction: float | None
    rated: int


def overdue_tickets(flags: Iterable[DeadlineFlag]) -> int:
    """Orders overdue on any deadline (an order late to sign and to reply counts once)."""
    return len({f.ticket_id for f in flags if f.overdue})
