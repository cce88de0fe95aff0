"""12345 work orders on the embedded backend: every transition allowed and refused, deadlines
on a controlled clock, deadline alerts, dispatch suggestions, repeats with real geometry,
statistics, masking, and lifecycle events through the ingest pipeline.

The spatial and statistics expectations are shared with tests/integration/test_tickets_postgis.py,
which runs them against PostGIS: both backends must give the same answers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import sqlalchemy as sa
from shapely.geometry import Point

from models import audit, tickets
from models.lifecycle import Actor, EntityNotFound, IllegalTransition
from models.schema import Alert, DeadLetter, HotlineTicket, TicketEvent, User
from models.tickets import DEFAULT_POLICY, TicketState

T0 = datetime(2026, 7, 15, 2, 0, tzinfo=UTC)  # 10:00 in Guang'an
#: 广安区, near the city centre.
HOME = (106.6330, 30.4560)
OPERATOR = Actor("wang", role="operator", display_name="王五")


# ---- shared helpers (the PostGIS tests import these) ---------------------------------------


def offset(lon: float, lat: float, east_m: float, north_m: float) -> tuple[float, float]:
    """The point ``east_m`` / ``north_m`` metres from (lon, lat) on the mean sphere."""
    dlat = north_m / 111_195.0
    dlon = east_m / (111_195.0 * math.cos(math.radians(lat)))
    return lon + dlon, lat + dlat


def add_ticket(
    conn: sa.Connection,
    ticket_id: str,
    *,
    state: str = "registered",
    ts: datetime = T0,
    category: str = "噪声扰民",
    urgency: str = "normal",
    channel: str = "phone",
    at: tuple[float, float] | None = HOME,
    district_code: str | None = "511602",
    grid_id: str | None = "88409a2b6bfffff",
    register: bool = True,
    **values: Any,
) -> dict[str, Any]:
    """Store a ticket as ingest does (deadlines, suggestion, repeat flag), then force ``values``."""
    row: dict[str, Any] = {
        "ticket_id": ticket_id,
        "ts": ts,
        "channel": channel,
        "category": category,
        "title": "夜间施工噪音",
        "content": "22点后仍在施工",
        "address": "广安区某路",
        "lon": at[0] if at else None,
        "lat": at[1] if at else None,
        "geom": Point(*at) if at else None,
        "district_code": district_code if at else None,
        "grid_id": grid_id if at else None,
        "urgency": urgency,
        "caller_name": "张三丰",
        "caller_phone": "13812345678",
        "state": "registered",
        "created_at": ts,
        "updated_at": ts,
    }
    conn.execute(sa.insert(HotlineTicket.__table__), row)
    if register:
        row = tickets.register_new(conn, [row], now=ts)[0]
    forced = {"state": state, **values}
    conn.execute(
        sa.update(HotlineTicket.__table__).where(HotlineTicket.ticket_id == ticket_id).values(forced)
    )
    return {**row, **forced}


def check_repeats(conn: sa.Connection) -> None:
    """Repeat detection with real distances: same expectations on every backend."""
    add_ticket(conn, "R-OLD-150", ts=T0 - timedelta(days=10), at=offset(*HOME, 150, 0), state="closed")
    add_ticket(conn, "R-OLD-250", ts=T0 - timedelta(days=5), at=offset(*HOME, 0, 250))
    add_ticket(conn, "R-NEAR-50", ts=T0 - timedelta(days=2), at=offset(*HOME, -30, 40))
    add_ticket(conn, "R-OTHER-CAT", ts=T0 - timedelta(days=1), at=offset(*HOME, 10, 0), category="道路破损")
    # Closed and older than 30 days: not recent, not open.
    add_ticket(conn, "R-STALE", ts=T0 - timedelta(days=40), at=offset(*HOME, 20, 0), state="closed")
    # Older than 30 days but still open: a repeat all the same.
    add_ticket(conn, "R-OPEN-OLD", ts=T0 - timedelta(days=45), at=offset(*HOME, 0, -190), state="in_progress")
    add_ticket(conn, "R-MERGED", ts=T0 - timedelta(days=1), at=offset(*HOME, 5, 5), state="merged")
    add_ticket(conn, "R-LATER", ts=T0 + timedelta(hours=1), at=offset(*HOME, 0, 10), register=False)
    new = add_ticket(conn, "R-NEW", ts=T0, at=HOME)

    found = tickets.find_repeats(conn, new, radius_m=200, days=30)
    assert [m.ticket_id for m in found] == ["R-NEAR-50", "R-OLD-150", "R-OPEN-OLD"]
    assert [round(m.distance_m) for m in found] == pytest.approx([50, 150, 190], abs=1)
    assert new["likely_repeat_of"] == "R-NEAR-50"
    assert new["likely_repeat_distance_m"] == pytest.approx(50, abs=1)
    # The radius and the window are parameters.
    assert [m.ticket_id for m in tickets.find_repeats(conn, new, radius_m=300, days=30)] == [
        "R-NEAR-50",
        "R-OLD-150",
        "R-OPEN-OLD",
        "R-OLD-250",
    ]
    assert [m.ticket_id for m in tickets.find_repeats(conn, new, radius_m=200, days=3)] == [
        "R-NEAR-50",
        "R-OPEN-OLD",
    ]
    view = tickets.get_ticket(conn, "R-NEW")
    assert view is not None and view.likely_repeat_of == "R-NEAR-50"
    assert tickets.find_repeats(conn, view, radius_m=200) == found
    unplaced = add_ticket(conn, "R-NOWHERE", at=None)
    assert tickets.find_repeats(conn, unplaced) == []


def stats_fixture(conn: sa.Connection) -> None:
    """A small, known month of orders for the statistics tests."""
    hour = timedelta(hours=1)
    # City time 10:00 on 07-15 for T0; 23:30 city time is 15:30 UTC.
    add_ticket(
        conn,
        "S1",
        ts=T0,
        category="噪声扰民",
        grid_id="cellA",
        state="followed_up",
        accepted_at=T0 + hour,
        closed_at=T0 + 20 * hour,
        satisfaction="satisfied",
    )
    add_ticket(
        conn,
        "S2",
        ts=T0 + hour,
        category="噪声扰民",
        grid_id="cellA",
        state="followed_up",
        accepted_at=T0 + 30 * hour,
        closed_at=T0 + 200 * hour,
        satisfaction="dissatisfied",
    )
    add_ticket(
        conn,
        "S3",
        ts=T0 + 2 * hour,
        category="道路破损",
        grid_id="cellA",
        channel="wechat",
        state="followed_up",
        accepted_at=T0 + 3 * hour,
        closed_at=T0 + 50 * hour,
        satisfaction="basically_satisfied",
    )
    add_ticket(
        conn,
        "S4",
        ts=datetime(2026, 7, 15, 15, 30, tzinfo=UTC),
        category="供水问题",
        grid_id="cellB",
        channel="app",
        district_code="511621",
        state="dispatched",
    )
    add_ticket(conn, "S5", ts=T0 + 3 * hour, category="噪声扰民", grid_id="cellB", state="merged")
    add_ticket(conn, "S6", ts=T0 + 4 * hour, category="噪声扰民", at=None, channel="web", state="registered")
    add_ticket(conn, "S-OUT", ts=T0 - timedelta(days=40), category="噪声扰民", grid_id="cellC")


def check_statistics(conn: sa.Connection) -> None:
    stats_fixture(conn)
    since, until = T0 - timedelta(days=1), T0 + timedelta(days=1)
    assert tickets.volumes(conn, since, until, by="category") == {"噪声扰民": 3, "供水问题": 1, "道路破损": 1}
    assert tickets.volumes(conn, since, until, by="district") == {"511602": 3, "511621": 1, "未定位": 1}
    assert tickets.volumes(conn, since, until, by="channel") == {"phone": 2, "app": 1, "web": 1, "wechat": 1}
    hours = tickets.volumes(conn, since, until, by="hour")
    assert len(hours) == 24 and sum(hours.values()) == 5
    assert {h: n for h, n in hours.items() if n} == {"10": 1, "11": 1, "12": 1, "14": 1, "23": 1}

    now = T0 + timedelta(days=10)
    rates = tickets.on_time_rates(conn, since, until, now=now)
    # Accept within 24 h: S1, S3 on time; S2 late; S4 never accepted and past due; S6 too.
    assert (rates.accept.total, rates.accept.on_time) == (5, 2)
    # Close within 144 h (S4 供水问题 48 h): S1, S3 on time; S2 late; S4 and S6 past due.
    assert (rates.close.total, rates.close.on_time) == (5, 2)
    assert rates.accept.rate == pytest.approx(0.4)
    early = tickets.on_time_rates(conn, since, until, now=T0 + 5 * timedelta(hours=1))
    # Five hours in, only what already happened counts: S1 and S3 signed for, on time.
    assert (early.accept.total, early.accept.on_time) == (2, 2)

    sat = tickets.satisfaction_rate(conn, since, until)
    assert (sat.satisfied, sat.basically_satisfied, sat.dissatisfied, sat.rated) == (1, 1, 1, 3)
    assert sat.rate == pytest.approx(2 / 3)
    assert tickets.satisfaction_rate(conn, until, until + timedelta(days=1)).rate is None
    # The page's one pass gives the same figures as the single reads, early and late.
    for at in (T0 + 5 * timedelta(hours=1), now):
        service = tickets.service_rates(conn, since, until, now=at)
        assert service.on_time == tickets.on_time_rates(conn, since, until, now=at)
        assert service.satisfaction == sat
    assert service.on_time == rates and service.on_time != early

    spots = tickets.hot_spots(conn, since, limit=5)
    assert [(s.grid_id, s.count, s.top_category) for s in spots] == [
        ("cellA", 3, "噪声扰民"),
        ("cellB", 1, "供水问题"),
    ]
    assert spots[0].lon == pytest.approx(HOME[0]) and spots[0].district_code == "511602"

    points = tickets.trend(conn, 3, now=T0 + timedelta(days=1))
    # S4 came in at 23:30 city time, still 07-15; S1 was closed at 06:00 on 07-16.
    assert [(p.day.isoformat(), p.registered, p.closed) for p in points] == [
        ("2026-07-14", 0, 0),
        ("2026-07-15", 5, 0),
        ("2026-07-16", 0, 1),
    ]


def check_district_scope(conn: sa.Connection) -> None:
    """Every read of the 12345 page keeps one district's orders with ``district_code`` and
    the whole city without it (same expectations on every backend)."""
    stats_fixture(conn)
    # Another district's order flagged as repeating S4 (511621), and one of 511602.
    add_ticket(conn, "L-621", ts=T0 + timedelta(hours=5), district_code="511621", register=False)
    add_ticket(conn, "L-602", ts=T0 + timedelta(hours=6), register=False)
    conn.execute(
        sa.update(HotlineTicket.__table__)
        .where(HotlineTicket.ticket_id.in_(["L-621", "L-602"]))
        .values(likely_repeat_of="S4")
    )
    since, until = T0 - timedelta(days=1), T0 + timedelta(days=1)
    now = T0 + timedelta(days=10)
    other = "511621"

    assert tickets.volumes(conn, since, until, by="category", district_code=other) == {
        "供水问题": 1,
        "噪声扰民": 1,
    }
    assert tickets.volumes(conn, since, until, by="district", district_code=other) == {other: 2}
    assert sum(tickets.volumes(conn, since, until, by="hour", district_code=other).values()) == 2
    # The city-wide default is unchanged: the unlocated order and 511602's are counted.
    assert tickets.volumes(conn, since, until, by="district") == {"511602": 4, "511621": 2, "未定位": 1}

    assert [v.ticket_id for v in tickets.recent_tickets(conn, 50, district_code=other)] == ["S4", "L-621"]
    assert {v.ticket_id for v in tickets.recent_tickets(conn, 50)} >= {"S1", "S6", "L-602", "L-621"}

    assert tickets.open_count(conn, district_code=other) == 2
    assert (
        tickets.open_count(conn)
        == tickets.open_count(conn, district_code=other)
        + tickets.open_count(conn, district_code="511602")
        + 1
    )  # S6, unlocated

    late = tickets.overdue(conn, now, district_code=other)
    # L-621 was stored without registration, so it owes no deadline.
    assert late and {f.ticket_id for f in late} == {"S4"}
    assert {"S6", "S-OUT"} <= {f.ticket_id for f in tickets.overdue(conn, now)}

    rates = tickets.on_time_rates(conn, since, until, now=now, district_code=other)
    assert (rates.accept.total, rates.accept.on_time) == (1, 0)
    assert tickets.on_time_rates(conn, since, until, now=now).accept.total == 5

    assert tickets.satisfaction_rate(conn, since, until, district_code=other).rated == 0
    mine = tickets.satisfaction_rate(conn, since, until, district_code="511602")
    assert (mine.satisfied, mine.basically_satisfied, mine.dissatisfied) == (1, 1, 1)
    for code in (other, "511602"):
        service = tickets.service_rates(conn, since, until, now=now, district_code=code)
        assert service.on_time == tickets.on_time_rates(conn, since, until, now=now, district_code=code)
        assert service.satisfaction == tickets.satisfaction_rate(conn, since, until, district_code=code)
    assert (
        tickets.service_rates(conn, since, until, now=now, district_code=other).on_time.accept == rates.accept
    )

    spots = tickets.hot_spots(conn, since, limit=5, district_code=other)
    assert {s.district_code for s in spots} == {other}
    assert sum(s.count for s in spots) == 2
    assert "cellA" not in {s.grid_id for s in spots}
    assert "cellA" in {s.grid_id for s in tickets.hot_spots(conn, since, limit=5)}

    assert [r.ticket_id for r in tickets.repeat_links(conn, since, district_code=other)] == ["L-621"]
    assert "L-621" not in {r.ticket_id for r in tickets.repeat_links(conn, since, district_code="511602")}
    assert {"L-621", "L-602"} <= {r.ticket_id for r in tickets.repeat_links(conn, since)}

    counts = tickets.district_counts(conn, since, until, now=now, district_code=other)
    assert list(counts) == [other]
    assert (counts[other].registered, counts[other].open, counts[other].overdue) == (2, 2, 1)
    assert set(tickets.district_counts(conn, since, until, now=now)) == {"511602", "511621", "未定位"}


# ---- lifecycle -------------------------------------------------------------------------------


#: Valid arguments per action, so only the state decides whether it is allowed.
def _call(action: str) -> Callable[..., tickets.TicketChange]:
    later = T0 + timedelta(days=30)
    calls: dict[str, Callable[..., tickets.TicketChange]] = {
        "dispatch": lambda c, t, **kw: tickets.dispatch(c, t, department="城管", **kw),
        "accept": tickets.accept,
        "start": tickets.start,
        "reply": lambda c, t, **kw: tickets.reply(c, t, text="已处理完毕", **kw),
        "close": tickets.close,
        "follow_up": lambda c, t, **kw: tickets.follow_up(c, t, rating="满意", **kw),
        "return": lambda c, t, **kw: tickets.return_ticket(c, t, reason="不属于本部门职责", **kw),
        "request_extension": lambda c, t, **kw: tickets.request_extension(
            c, t, until=later, reason="需协调多部门", **kw
        ),
        "approve_extension": tickets.approve_extension,
        "refuse_extension": lambda c, t, **kw: tickets.refuse_extension(c, t, reason="时限内可办结", **kw),
        "supervise": tickets.supervise,
        "merge": lambda c, t, **kw: tickets.merge_into(c, t, "EARLIER", **kw),
    }
    return calls[action]


ACTIONS = [*tickets.TICKET_LIFECYCLE.actions, "supervise"]
SOURCES = {name: action.sources for name, action in tickets.TICKET_LIFECYCLE.actions.items()}
SOURCES["supervise"] = frozenset(s.value for s in tickets.OPEN_STATES)


@pytest.mark.parametrize("state", [s.value for s in TicketState])
@pytest.mark.parametrize("action", ACTIONS)
def test_every_action_from_every_state(engine: sa.Engine, state: str, action: str) -> None:
    with engine.begin() as conn:
        add_ticket(conn, "EARLIER", ts=T0 - timedelta(days=1), at=offset(*HOME, 500, 500))
        add_ticket(conn, "T1", state=state, extension_until=T0 + timedelta(days=9), department="城管")
        allowed = state in SOURCES[action]
        if allowed:
            change = _call(action)(conn, "T1", actor=OPERATOR, now=T0 + timedelta(hours=1))
            assert change.from_state == state
            target = state if action == "supervise" else tickets.TICKET_LIFECYCLE.actions[action].target
            assert change.ticket.state == target
            assert change.ticket.version == 2
        else:
            with pytest.raises(IllegalTransition) as refused:
                _call(action)(conn, "T1", actor=OPERATOR, now=T0 + timedelta(hours=1))
            assert refused.value.state == state
            assert f"当前为「{TicketState(state).label_zh}」" in refused.value.reason_zh
            assert tickets.get_ticket(conn, "T1").version == 1  # type: ignore[union-attr]


def test_state_labels_are_chinese() -> None:
    assert TicketState.REGISTERED.label_zh == "已受理"
    assert TicketState.DISPATCHED.label_zh == "已派单"
    assert TicketState.FOLLOWED_UP.label_zh == "已回访"
    assert TicketState.RETURNED.label_zh == "已退单"
    assert {s.value for s in TicketState} == set(tickets.TICKET_LIFECYCLE.states)


def test_the_whole_loop_with_side_paths(engine: sa.Engine) -> None:
    h = timedelta(hours=1)
    with engine.begin() as conn:
        add_ticket(conn, "L1", urgency="urgent")
        t = tickets.dispatch(conn, "L1", department="住建", actor=OPERATOR, now=T0 + h)
        assert (t.ticket.department, t.ticket.handling_district_code) == ("住建", "511602")
        first_accept_due = t.ticket.accept_due
        assert first_accept_due == T0 + 2 * h  # urgent: 2 h from the call
        r = tickets.return_ticket(conn, "L1", reason="属城管职责", actor="dept-zj", now=T0 + 1.5 * h)
        assert (r.ticket.state, r.ticket.department, r.ticket.return_count) == ("returned", None, 1)
        t = tickets.dispatch(
            conn, "L1", department="城管", district_code="511603", actor=OPERATOR, now=T0 + 2 * h
        )
        # The new department gets its own 签收 window; the citizen's reply deadline stays.
        assert t.ticket.accept_due == T0 + 4 * h
        assert t.ticket.reply_due == T0 + 24 * h
        assert t.ticket.handling_district_code == "511603"
        tickets.accept(conn, "L1", actor="dept-cg", now=T0 + 3 * h)
        tickets.start(conn, "L1", actor="dept-cg", now=T0 + 3 * h)
        with pytest.raises(IllegalTransition, match="延期后的答复时限须晚于当前时限"):
            tickets.request_extension(
                conn, "L1", until=T0 + 10 * h, reason="需协调", actor="dept-cg", now=T0 + 4 * h
            )
        with pytest.raises(IllegalTransition, match="申请延期须说明理由"):
            tickets.request_extension(
                conn, "L1", until=T0 + 48 * h, reason=" ", actor="dept-cg", now=T0 + 4 * h
            )
        tickets.request_extension(
            conn, "L1", until=T0 + 48 * h, reason="需协调", actor="dept-cg", now=T0 + 4 * h
        )
        a = tickets.approve_extension(conn, "L1", actor=OPERATOR, now=T0 + 5 * h)
        assert (a.ticket.extension_state, a.ticket.reply_due, a.ticket.close_due) == (
            "approved",
            T0 + 48 * h,
            T0 + 72 * h,
        )
        tickets.request_extension(
            conn, "L1", until=T0 + 60 * h, reason="再延", actor="dept-cg", now=T0 + 6 * h
        )
        with pytest.raises(IllegalTransition, match="驳回延期须说明理由"):
            tickets.refuse_extension(conn, "L1", reason="", actor=OPERATOR, now=T0 + 7 * h)
        f = tickets.refuse_extension(conn, "L1", reason="不予再次延期", actor=OPERATOR, now=T0 + 7 * h)
        assert (f.ticket.state, f.ticket.extension_state, f.ticket.reply_due) == (
            "in_progress",
            "refused",
            T0 + 48 * h,
        )
        s = tickets.supervise(
            conn, "L1", actor=Actor("leader1", role="leader"), comment="重点督办", now=T0 + 8 * h
        )
        assert s.ticket.supervised and s.ticket.state == "in_progress"
        with pytest.raises(IllegalTransition, match="已在督办中"):
            tickets.supervise(conn, "L1", actor=OPERATOR, now=T0 + 8 * h)
        with pytest.raises(IllegalTransition, match="答复须填写答复内容"):
            tickets.reply(conn, "L1", text="  ", actor="dept-cg", now=T0 + 9 * h)
        tickets.reply(conn, "L1", text="已清理并约谈施工方", actor="dept-cg", now=T0 + 9 * h)
        tickets.close(conn, "L1", actor=OPERATOR, now=T0 + 10 * h)
        with pytest.raises(IllegalTransition, match="回访须给出评价"):
            tickets.follow_up(conn, "L1", rating="很好", actor=OPERATOR, now=T0 + 11 * h)
        done = tickets.follow_up(conn, "L1", rating="基本满意", actor=OPERATOR, now=T0 + 11 * h)
        assert (done.ticket.state, done.ticket.satisfaction) == ("followed_up", "basically_satisfied")
        assert done.ticket.closed_at == T0 + 10 * h and done.ticket.replied_at == T0 + 9 * h

        history = tickets.ticket_history(conn, "L1")
        trail = audit.entries(conn, entity_type="ticket", entity_id="L1")
    assert [e.action for e in history] == [
        "register", "dispatch", "return", "dispatch", "accept", "start", "request_extension",
        "approve_extension", "request_extension", "refuse_extension", "supervise", "reply", "close",
        "follow_up",
    ]  # fmt: skip
    assert history[2].note == "属城管职责" and history[2].payload["reason"] == "属城管职责"
    assert history[11].note == "已清理并约谈施工方"
    assert [t.action for t in trail][:3] == ["ticket.register", "ticket.dispatch", "ticket.return"]
    # Personal data never reaches events or the audit log.
    text = json.dumps([e.payload for e in history], ensure_ascii=False) + str(trail)
    assert "张三丰" not in text and "13812345678" not in text


def test_refusals_name_who_and_when_and_roles(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.insert(User.__table__).values(
                username="li", display_name="李四", password_hash="x", role="operator"
            )
        )
        add_ticket(conn, "W1", state="dispatched")
        tickets.accept(conn, "W1", actor="li", now=T0 + timedelta(minutes=31))
        with pytest.raises(IllegalTransition) as lost:
            tickets.accept(conn, "W1", actor="zhao", now=T0 + timedelta(minutes=32))
        assert "工单 W1 已被 李四 于 10:31 签收，不能签收" in lost.value.reason_zh
        assert lost.value.by == "li"
        with pytest.raises(IllegalTransition, match="无权"):
            tickets.start(conn, "W1", actor=Actor("v", role="viewer"), now=T0)
        with pytest.raises(IllegalTransition, match="派单须指定承办部门"):
            add_ticket(conn, "W2")
            tickets.dispatch(conn, "W2", department=" ", actor=OPERATOR, now=T0)
        with pytest.raises(EntityNotFound):
            tickets.accept(conn, "NOPE", actor=OPERATOR, now=T0)
        with pytest.raises(EntityNotFound):
            tickets.supervise(conn, "NOPE", actor=OPERATOR, now=T0)


def test_merge_into_an_earlier_ticket(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        add_ticket(conn, "M0", ts=T0 - timedelta(days=2))
        add_ticket(conn, "M1", ts=T0 - timedelta(days=1), state="merged", repeat_of="M0")
        add_ticket(conn, "M2", ts=T0)
        add_ticket(conn, "M3", ts=T0 + timedelta(hours=1))
        with pytest.raises(IllegalTransition, match="不能合并到自身"):
            tickets.merge_into(conn, "M2", "M2", actor=OPERATOR, now=T0)
        with pytest.raises(IllegalTransition, match="原工单 NOPE 不存在"):
            tickets.merge_into(conn, "M2", "NOPE", actor=OPERATOR, now=T0)
        with pytest.raises(IllegalTransition, match="只能合并到更早的工单"):
            tickets.merge_into(conn, "M2", "M3", actor=OPERATOR, now=T0)
        # Merging into a merged order lands on the order it was merged into.
        m = tickets.merge_into(conn, "M2", "M1", actor=OPERATOR, now=T0 + timedelta(hours=2))
        assert (m.ticket.state, m.ticket.repeat_of) == ("merged", "M0")
        assert tickets.ticket_history(conn, "M2")[-1].payload["merged_into"] == "M0"  # type: ignore[index]


# ---- deadlines ---------------------------------------------------------------------------


def test_deadlines_from_policy_by_category_and_urgency(engine: sa.Engine, tmp_path: Path) -> None:
    h = timedelta(hours=1)
    with engine.begin() as conn:
        urgent = add_ticket(conn, "D1", urgency="urgent")
        normal = add_ticket(conn, "D2")
        water = add_ticket(conn, "D3", category="供水问题")
    assert (urgent["accept_due"], urgent["reply_due"], urgent["close_due"]) == (
        T0 + 2 * h,
        T0 + 24 * h,
        T0 + 48 * h,
    )
    assert (normal["accept_due"], normal["reply_due"]) == (T0 + 24 * h, T0 + 120 * h)
    assert (water["accept_due"], water["reply_due"]) == (T0 + 4 * h, T0 + 24 * h)
    assert normal["suggested_department"] == "环保" and water["suggested_department"] == "水务"

    config = tmp_path / "deadlines.toml"
    config.write_text(
        "warn_before_minutes = 30\n"
        "[urgency.urgent]\naccept_hours = 1\nreply_hours = 12\nclose_hours = 24\n"
        '[category."道路破损".normal]\naccept_hours = 8\nreply_hours = 48\nclose_hours = 72\n',
        encoding="utf-8",
    )
    policy = tickets.load_policy(config)
    assert policy.warn_before == timedelta(minutes=30)
    assert policy.for_ticket("噪声扰民", "urgent").reply == 12 * h
    assert policy.for_ticket("噪声扰民", "normal") == DEFAULT_POLICY.by_urgency["normal"]
    assert policy.for_ticket("道路破损", "normal").accept == 8 * h
    assert policy.for_ticket("道路破损", "urgent").accept == h
    with pytest.raises(ValueError, match="deadlines must grow"):
        tickets.Deadlines(2 * h, h, 3 * h)


def test_overdue_and_due_soon_on_a_controlled_clock(engine: sa.Engine) -> None:
    h = timedelta(hours=1)
    with engine.begin() as conn:
        add_ticket(conn, "O1", urgency="urgent", state="dispatched")  # accept due T0+2h
        add_ticket(conn, "O2", urgency="urgent", state="accepted")  # accept no longer owed
        add_ticket(conn, "O3", urgency="urgent", state="closed")  # nothing owed
        add_ticket(conn, "O4", urgency="urgent", state="merged")  # nothing owed

        def kinds(flags: list[tickets.DeadlineFlag]) -> list[tuple[str, str]]:
            return [(f.ticket_id, f.kind) for f in flags]

        assert tickets.overdue(conn, T0 + h) == []
        assert kinds(tickets.due_soon(conn, T0 + h, h)) == [("O1", "accept")]
        assert kinds(tickets.due_soon(conn, T0 + 0.5 * h, h)) == []
        at_due = tickets.overdue(conn, T0 + 2 * h)
        assert kinds(at_due) == [("O1", "accept")] and at_due[0].overdue
        assert at_due[0].label_zh == "签收超时"
        assert kinds(tickets.overdue(conn, T0 + 25 * h)) == [
            ("O1", "accept"),
            ("O1", "reply"),
            ("O2", "reply"),
        ]
        assert kinds(tickets.due_soon(conn, T0 + 23.5 * h, h)) == [("O1", "reply"), ("O2", "reply")]
        view = tickets.get_ticket(conn, "O1")
        assert view is not None
        assert view.overdue_kinds(T0 + 25 * h) == ["accept", "reply"]
        assert view.due_soon_kinds(T0 + 47 * h, 2 * h) == ["close"]


def test_deadline_alerts_are_raised_once_per_ticket_and_kind(engine: sa.Engine) -> None:
    h = timedelta(hours=1)
    with engine.begin() as conn:
        add_ticket(conn, "A1", urgency="urgent", state="dispatched")
        add_ticket(conn, "A2", state="dispatched")  # normal: accept due T0+24h

        soon = tickets.raise_deadline_alerts(conn, T0 + 1.5 * h)
        assert [(c.alert.dedup_key, c.alert.severity, c.action) for c in soon] == [
            ("hotline_deadline:A1:accept", "minor", "raise")
        ]
        assert soon[0].alert.domain == "hotline" and "签收即将超时" in soon[0].alert.title
        assert tickets.raise_deadline_alerts(conn, T0 + 1.6 * h) == []  # already alerted
        late = tickets.raise_deadline_alerts(conn, T0 + 2 * h)
        # Overdue raises the same alert; urgent orders are critical.
        assert [(c.alert.dedup_key, c.alert.severity, c.action) for c in late] == [
            ("hotline_deadline:A1:accept", "critical", "repeat")
        ]
        assert tickets.raise_deadline_alerts(conn, T0 + 2.5 * h) == []
        rows = conn.execute(sa.select(Alert.dedup_key, Alert.message, Alert.cleared_at)).all()
        assert len(rows) == 1 and "张三丰" not in str(rows) and "138" not in str(rows)
        # Signing for the order ends the condition; the officer still closes the alert.
        tickets.accept(conn, "A1", actor="dept", now=T0 + 3 * h)
        assert conn.execute(sa.select(Alert.cleared_at)).scalar_one() == T0 + 3 * h
        # A supervised normal order that is late is critical too.
        tickets.supervise(conn, "A2", actor=OPERATOR, now=T0 + 3 * h)
        late2 = tickets.raise_deadline_alerts(conn, T0 + 25 * h)
        assert ("hotline_deadline:A2:accept", "critical") in [
            (c.alert.dedup_key, c.alert.severity) for c in late2
        ]


# ---- suggestion, masking, views --------------------------------------------------------------


def test_dispatch_suggestion() -> None:
    s = tickets.suggest_dispatch("噪声扰民", "511602")
    assert (s.department, s.district_code, s.district_name, s.unit_zh) == (
        "环保",
        "511602",
        "广安区",
        "广安区环保",
    )
    assert "按归口部门" in s.reason_zh
    other = tickets.suggest_dispatch("邻里纠纷", "511681")
    assert (other.department, other.unit_zh) == ("街道/乡镇", "华蓥市街道/乡镇")
    nowhere = tickets.suggest_dispatch("违章建筑", None)
    assert (nowhere.department, nowhere.district_code, nowhere.unit_zh) == ("住建", None, "住建")
    assert set(tickets.CATEGORY_DEPARTMENTS.values()) <= set(tickets.DEPARTMENTS)


@pytest.mark.parametrize(
    ("phone", "masked"),
    [("13812345678", "138****5678"), ("138 1234 5678", "138****5678"), ("0826-2345678", "082*****5678"),
     ("12345", "***45"), ("12", "**"), (None, None)],
)  # fmt: skip
def test_mask_phone(phone: str | None, masked: str | None) -> None:
    assert tickets.mask_phone(phone) == masked


def test_mask_name() -> None:
    assert tickets.mask_name("张三") == "张*"
    assert tickets.mask_name("欧阳娜娜") == "欧***"
    assert tickets.mask_name("李") == "*"
    assert tickets.mask_name(None) is None


def test_views_carry_no_personal_data(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        add_ticket(conn, "V1")
        view = tickets.get_ticket(conn, "V1")
    assert view is not None
    assert (view.caller_name_masked, view.caller_phone_masked) == ("张**", "138****5678")
    assert "caller_name" not in tickets.TicketView.__dataclass_fields__
    assert "张三丰" not in repr(view) and "13812345678" not in repr(view)
    assert view.state_label_zh == "已受理"


# ---- spatial and statistics (same expectations as on PostGIS) -------------------------------


def test_repeats_with_real_distances(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        check_repeats(conn)


def test_statistics(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        check_statistics(conn)


def test_reads_keep_one_district_with_district_code(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        check_district_scope(conn)


# ---- lifecycle events over MQTT ------------------------------------------------------------


@pytest.fixture
def pipeline(engine: sa.Engine) -> Any:
    from ingest.pipeline import IngestPipeline
    from models.live import LiveStore

    live = LiveStore(fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True))
    return IngestPipeline(engine, live, clock=lambda: T0 + timedelta(hours=3))


def _message(topic: str, payload: dict[str, Any]) -> Any:
    from ingest.pipeline import Inbound

    return Inbound(f"cityops/v1/{topic}", json.dumps(payload, ensure_ascii=False).encode(), T0)


def _event(event_id: str, action: str, minutes: int, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "ts": (T0 + timedelta(minutes=minutes)).isoformat(),
        "action": action,
        **extra,
    }


def test_ticket_and_its_events_through_the_pipeline(engine: sa.Engine, pipeline: Any) -> None:
    ticket = {
        "ticket_id": "P1",
        "ts": T0.isoformat(),
        "channel": "phone",
        "category": "噪声扰民",
        "title": "夜间施工",
        "content": "噪音",
        "lon": HOME[0],
        "lat": HOME[1],
        "urgency": "urgent",
        "caller": {"name": "赵六", "phone": "13900001111"},
    }
    events = "hotline/tickets/P1/events"
    result = pipeline.process(
        [
            _message("hotline/tickets", ticket),
            _message(events, _event("e1", "dispatched", 10, department="城管", actor="centre-1")),
            _message(events, _event("e2", "accepted", 20)),
            _message(events, _event("e2", "accepted", 20)),  # redelivered in the same batch
            _message(events, _event("e3", "closed", 30)),  # not replied yet: refused
            _message(events, _event("e4", "replied", 40, note="已处理")),
            _message("hotline/tickets/NOPE/events", _event("e5", "accepted", 40)),
            _message(events, {**_event("e6", "rated", 50), "rating": "很好"}),  # not a rating
        ]
    )
    assert result.stored["hotline_tickets"] == 1
    assert result.stored["ticket_events"] == 3
    assert result.duplicates["ticket_events"] == 1
    assert sorted(r.reason for r in result.rejected) == ["illegal_transition", "schema", "unknown_ticket"]
    refused = next(r for r in result.rejected if r.reason == "illegal_transition")
    assert "工单 P1 已被 12345 于 10:20 签收，不能办结" in refused.detail

    # Redelivery of the whole batch later stores nothing twice.
    again = pipeline.process([_message(events, _event("e2", "accepted", 20))])
    assert again.duplicates["ticket_events"] == 1 and not again.rejected
    more = pipeline.process(
        [
            _message(events, _event("e7", "closed", 60)),
            _message(events, _event("e8", "rated", 70, rating="满意")),
        ]
    )
    assert more.stored["ticket_events"] == 2

    with engine.connect() as conn:
        view = tickets.get_ticket(conn, "P1")
        history = tickets.ticket_history(conn, "P1")
        letters = conn.execute(sa.select(DeadLetter.reason, DeadLetter.detail)).all()
        ids = (
            conn.execute(sa.select(TicketEvent.event_id).where(TicketEvent.event_id.is_not(None)))
            .scalars()
            .all()
        )
    assert view is not None
    assert (view.state, view.department, view.satisfaction) == ("followed_up", "城管", "satisfied")
    assert view.accept_due == T0 + timedelta(hours=2) and view.suggested_department == "环保"
    assert view.accepted_at == T0 + timedelta(minutes=20)  # the event's time, not arrival
    assert [(e.action, e.event_id, e.actor) for e in history] == [
        ("register", None, "12345"),
        ("dispatch", "e1", "12345:centre-1"),
        ("accept", "e2", "12345"),
        ("reply", "e4", "12345"),
        ("close", "e7", "12345"),
        ("follow_up", "e8", "12345"),
    ]
    assert sorted(ids) == ["e1", "e2", "e4", "e7", "e8"]
    assert {r for r, _ in letters} == {"illegal_transition", "schema", "unknown_ticket"}
    assert "赵六" not in str(letters)
