"""The 12345 page's rows and figures on a fixed clock, and the order queries it reads, on
the embedded backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import plotly.graph_objects as go
import sqlalchemy as sa
from dash import Patch

from dashboards import hotline as hl
from geo.locate import locate_point
from models import tickets
from models.tickets import DeadlineFlag, HotSpot, RepeatLink, TicketView
from tests.unit.models.test_tickets import add_ticket, offset

NOW = datetime(2026, 7, 15, 2, 0, tzinfo=UTC)  # 10:00 in Guang'an
HOME = (106.6330, 30.4560)  # 广安区


def view(ticket_id: str = "12345-1", **values: Any) -> TicketView:
    fields: dict[str, Any] = dict.fromkeys(TicketView.__dataclass_fields__)
    fields.update(
        ticket_id=ticket_id,
        ts=NOW - timedelta(minutes=3),
        channel="wechat",
        category="噪声扰民",
        title="夜间施工",
        content="22点后仍在施工",
        district_code="511602",
        urgency="normal",
        caller_name_masked="张**",
        caller_phone_masked="138****5678",
        state="registered",
        supervised=False,
        return_count=0,
        version=1,
    )
    fields.update(values)
    return TicketView(**fields)


def flag(ticket_id: str, kind: str, due: datetime, *, overdue: bool = True, **values: Any) -> DeadlineFlag:
    fields: dict[str, Any] = {
        "ticket_id": ticket_id,
        "kind": kind,
        "due": due,
        "overdue": overdue,
        "state": "dispatched",
        "category": "道路破损",
        "urgency": "normal",
        "department": "交通",
        "district_code": "511621",
        "grid_id": None,
        "lon": None,
        "lat": None,
        "supervised": False,
    }
    fields.update(values)
    return DeadlineFlag(**fields)


def test_the_stream_shows_callers_masked_and_the_citizens_words_verbatim() -> None:
    words = '<img src=x onerror="alert(1)"> **加粗** [链接](http://example.com)'
    rows = hl.stream_rows(
        [
            view("A", content=words, urgency="urgent", likely_repeat_of="OLD"),
            view(
                "B",
                ts=NOW - timedelta(days=1),
                channel="carrier-pigeon",
                caller_name_masked=None,
                caller_phone_masked=None,
                district_code=None,
            ),
        ],
        NOW,
    )
    a, b = rows
    assert a.content == words  # kept as written: the page renders it as text
    assert a.caller == "张** 138****5678" and a.channel == "微信" and a.urgent and a.repeat_of == "OLD"
    assert a.at == "09:57:00" and a.district == "广安区" and a.state_label == "已受理"
    assert b.caller == "—" and b.channel == "carrier-pigeon" and b.at == "07-14 10:00" and b.district == "—"


def test_overdue_rows_one_per_order_longest_overdue_first() -> None:
    rows = hl.overdue_rows(
        [
            flag("T1", "reply", NOW - timedelta(hours=1)),
            flag("T1", "accept", NOW - timedelta(hours=5), supervised=True),
            flag("T2", "close", NOW - timedelta(days=2, hours=3), urgency="urgent", department=None),
            flag("T3", "accept", NOW + timedelta(minutes=20), overdue=False),  # due soon, not overdue
        ],
        NOW,
    )
    assert [r.ticket_id for r in rows] == ["T2", "T1"]
    t2, t1 = rows
    assert t2.over_s == (2 * 24 + 3) * 3600 and t2.urgent and t2.department == "—"
    assert t1.kinds == "签收、答复" and t1.over_s == 5 * 3600 and t1.supervised and t1.district == "岳池县"
    assert (
        hl.overdue_tickets([flag("T1", "reply", NOW), flag("T1", "accept", NOW), flag("T3", "accept", NOW)])
        == 2
    )
    assert len(hl.overdue_rows([flag(f"T{i}", "accept", NOW) for i in range(9)], NOW, limit=4)) == 4


def link(ticket_id: str, earlier: str, minutes: int, *, confirmed: bool = False) -> RepeatLink:
    return RepeatLink(
        ticket_id, NOW - timedelta(minutes=minutes), earlier, confirmed, "噪声扰民", "511602", None
    )


def test_repeat_clusters_follow_chains_to_the_first_order() -> None:
    clusters = hl.repeat_clusters(
        [
            link("B", "A", 50, confirmed=True),
            link("C", "B", 40),  # repeats a repeat: same cluster as A
            link("D", "A", 30),
            link("Y", "X", 10),
            link("P", "Q", 20),
            link("Q", "P", 15),  # a loop in bad data must not hang the page
        ]
    )
    first = clusters[0]
    assert (first.root, first.size, first.confirmed, first.likely) == ("A", 4, 1, 2)
    assert first.last == NOW - timedelta(minutes=30) and first.district == "广安区"
    assert {c.root for c in clusters[1:]} >= {"X"}
    assert sum(c.size - 1 for c in clusters) == 6
    assert len(hl.repeat_clusters([link(f"N{i}", f"O{i}", i) for i in range(20)], limit=5)) == 5


def test_categories_keep_the_biggest_and_sum_the_rest() -> None:
    volumes = {f"类{i:02d}": 20 - i for i in range(14)}
    pairs = hl.category_pairs(volumes, limit=10)
    assert pairs[0] == ("类00", 20) and len(pairs) == 11
    assert pairs[-1] == ("其他", 10 + 9 + 8 + 7)
    assert sum(n for _, n in pairs) == sum(volumes.values())
    assert hl.category_pairs({"a": 2, "b": 0}) == [("a", 2)]


def test_today_starts_at_city_midnight() -> None:
    # 17:30 UTC on 14 July is already 01:30 on 15 July in Guang'an.
    assert hl.day_start(datetime(2026, 7, 14, 17, 30, tzinfo=UTC)).isoformat() == "2026-07-15T00:00:00+08:00"


def test_the_hot_spot_map_is_drawn_once_then_patched() -> None:
    cell = locate_point(*HOME)[1]
    assert cell
    spots = [HotSpot(cell, "511602", 4, "噪声扰民", *HOME)]
    cells = hl.hot_cells(spots)
    assert cells.counts == (4,) and cells.labels == ("噪声扰民",)
    figure, drawn = hl.hot_map_update(cells, None, tile_url=None)
    assert isinstance(figure, go.Figure) and figure.layout.uirevision == "hotline-map"
    patch, again = hl.hot_map_update(
        hl.hot_cells([HotSpot(cell, "511602", 6, "噪声扰民", *HOME)]), drawn, tile_url=None
    )
    assert isinstance(patch, Patch) and again == drawn
    ops = patch.to_plotly_json()["operations"]
    assert [op["location"] for op in ops] == [["data", 0, "customdata"], ["data", 0, "marker", "color"]]
    # Another top category in the cell: its hover words change, so the point trace is resent.
    other = hl.hot_cells([HotSpot(cell, "511602", 6, "道路破损", *HOME)])
    patch, _ = hl.hot_map_update(other, drawn, tile_url=None)
    assert [op["location"] for op in patch.to_plotly_json()["operations"]] == [["data", 0]]


# ---- the queries the page reads -------------------------------------------------------------


def test_recent_tickets_newest_first_with_callers_masked(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        add_ticket(conn, "T-1", ts=NOW - timedelta(hours=2))
        add_ticket(conn, "T-3", ts=NOW - timedelta(minutes=1), state="closed")
        add_ticket(conn, "T-2", ts=NOW - timedelta(hours=1), at=offset(*HOME, 5000, 0))
        recent = tickets.recent_tickets(conn, limit=2)
        assert [v.ticket_id for v in recent] == ["T-3", "T-2"]
        assert recent[0].caller_name_masked == "张**" and recent[0].caller_phone_masked == "138****5678"
        assert not any("张三丰" in str(v) or "13812345678" in str(v) for v in recent)
        assert tickets.open_count(conn) == 2


def test_repeat_links_are_merged_or_likely_repeats_since_a_date(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        add_ticket(conn, "R-OLD", ts=NOW - timedelta(days=40), state="closed")
        add_ticket(conn, "R-FIRST", ts=NOW - timedelta(days=3))
        # Registered near R-FIRST with the same category: flagged as a likely repeat.
        add_ticket(conn, "R-LIKELY", ts=NOW - timedelta(days=2), at=offset(*HOME, 20, 0))
        add_ticket(
            conn,
            "R-MERGED",
            ts=NOW - timedelta(days=1),
            at=offset(*HOME, 0, 30),
            state="merged",
            repeat_of="R-FIRST",
        )
        add_ticket(
            conn, "R-ELSE", ts=NOW - timedelta(hours=1), category="道路破损", at=offset(*HOME, 3000, 0)
        )
        links = tickets.repeat_links(conn, NOW - timedelta(days=30))
        assert [(x.ticket_id, x.confirmed) for x in links] == [("R-LIKELY", False), ("R-MERGED", True)]
        assert links[1].earlier == "R-FIRST" and links[0].category == "噪声扰民"
        clusters = hl.repeat_clusters(links)
        assert len(clusters) == 1 and clusters[0].size == 3


# ---- the page's refresh ---------------------------------------------------------------------


def test_the_refresh_sends_each_table_only_when_what_it_shows_changed(page: sa.Engine) -> None:
    import dash

    from dashboards.pages import hotline
    from tests.unit.dashboards.signing import account, signed_in

    now = datetime.now(UTC)
    with page.begin() as conn:
        add_ticket(conn, "T-NEW", ts=now - timedelta(minutes=20))
        # Not signed for in three days: overdue by days, which the list shows to the hour.
        add_ticket(conn, "T-LATE", ts=now - timedelta(days=3), category="道路破损", at=offset(*HOME, 3000, 0))
        add_ticket(conn, "T-DONE", ts=now - timedelta(days=2), at=offset(*HOME, 0, 4000), state="closed")
        add_ticket(conn, "T-AGAIN", ts=now - timedelta(minutes=10), at=offset(*HOME, 20, 0))
    viewer, handler = account("leader", "leader"), account("op", "operator")
    with signed_in(viewer):
        first = hotline.refresh(None, None, None)
        again = hotline.refresh(None, None, first[8])
    # First: every table, with what the single reads give.
    assert first[2] == "3" and "1" in repr(first[3])  # open; overdue
    assert "T-NEW" in repr(first[5]) and "T-LATE" in repr(first[10]) and "T-NEW" in repr(first[11])
    assert "hotline-reveal" not in repr(first[5])
    # Again, nothing changed: no table travels, the counts do.
    assert all(again[i] is dash.no_update for i in (5, 9, 10, 11)), [type(again[i]) for i in (5, 9, 10, 11)]
    assert again[2] == "3" and {k: again[8][k] for k in first[8]} == first[8]

    with signed_in(handler):
        # Someone who may reveal callers gets the stream with the buttons.
        revealing = hotline.refresh(None, None, again[8])
    assert "hotline-reveal" in repr(revealing[5]) and revealing[10] is dash.no_update
    with page.begin() as conn:
        add_ticket(conn, "T-NEWER", ts=now - timedelta(minutes=1), at=offset(*HOME, 0, 2500))
    with signed_in(handler):
        news = hotline.refresh(None, None, revealing[8])
    assert "T-NEWER" in repr(news[5]) and news[10] is dash.no_update and news[2] == "4"
