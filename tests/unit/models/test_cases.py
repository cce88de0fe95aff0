"""Urban-management cases on the embedded backend: every transition allowed and refused,
deadlines on a controlled clock, video de-duplication with real geometry, nearby cases,
indicators, and video events through the ingest pipeline.

The spatial, de-duplication and indicator checks are shared with
tests/integration/test_cases_postgis.py: both backends must give the same answers.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import fakeredis
import pytest
import sqlalchemy as sa

from models import cases
from models.cases import CASE_LIFECYCLE, CaseState
from models.lifecycle import Actor, EntityNotFound, IllegalTransition
from models.schema import Case, CaseEvent
from tests.unit.models.test_tickets import offset

T0 = datetime(2026, 7, 15, 2, 0, tzinfo=UTC)  # 10:00 in Guang'an
#: 广安区, near the city centre.
HOME = (106.6330, 30.4560)
#: 岳池县.
YUECHI = (106.44, 30.55)
OPERATOR = Actor("wang", role="operator", display_name="王五")
S = CaseState


# ---- shared helpers (the PostGIS tests import these) ---------------------------------------


def new_case(
    conn: sa.Connection,
    category: str = "garbage_overflow",
    at: tuple[float, float] = HOME,
    now: datetime = T0,
    source: str = "inspector",
) -> cases.CaseView:
    return cases.report_case(
        conn,
        source=source,
        category=category,
        description="垃圾桶满溢",
        lon=at[0],
        lat=at[1],
        reporter="inspector-7",
        evidence={"photo": "p1.jpg"},
        now=now,
    )


def video_row(event_id: str, minutes: float, camera: str = "cam-1", **extra: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "camera_id": camera,
        "ts": T0 + timedelta(minutes=minutes),
        "type": "illegal_parking",
        "confidence": 0.9,
        "lon": HOME[0],
        "lat": HOME[1],
        "snapshot_url": f"https://video.example/{event_id}.jpg",
        **extra,
    }


def check_video_dedup(conn: sa.Connection) -> None:
    """Same camera and type within the window: evidence on one case; otherwise new cases."""
    far = offset(*HOME, 3000, 0)
    rows = [
        video_row("v1", 0),
        video_row("v2", 4),  # same camera, 4 min later: evidence
        video_row("v3", 13),  # 9 min after the last sighting: the window slides, evidence
        video_row("v4", 30),  # 17 min after: a new case
        video_row("v5", 1, camera="cam-2", lon=far[0], lat=far[1]),  # another camera: new case
        video_row("v6", 2, type="garbage_overflow"),  # another type: new case
        video_row("v7", 3, confidence=0.3),  # too unsure: nothing
        video_row("v8", 3, type="crowd_gathering"),  # an emergency, not a case: nothing
    ]
    changes = cases.cases_from_video(conn, rows, T0 + timedelta(minutes=31))
    assert [(c.action, c.case.evidence_count) for c in changes] == [
        ("report", 1),
        ("report", 1),
        ("report", 1),
        ("evidence", 2),
        ("evidence", 3),
        ("report", 1),
    ]
    first = changes[0].case
    assert first.source == "video" and first.source_ref == "cam-1" and first.case_type == "illegal_parking"
    assert (first.district_code, first.subcategory, first.state) == ("511602", "违章停车", "reported")
    assert first.grid_id is not None
    other_camera = next(c.case for c in changes if c.case.source_ref == "cam-2")
    assert other_camera.district_code == "511602" and other_camera.grid_id != first.grid_id
    merged = cases.get_case(conn, first.case_id)
    assert merged is not None and merged.evidence_count == 3
    assert merged.last_evidence_at == T0 + timedelta(minutes=13)
    assert [e["event_id"] for e in cases.case_evidence(conn, first.case_id)] == ["v1", "v2", "v3"]
    # A replayed batch adds nothing.
    assert cases.cases_from_video(conn, rows, T0 + timedelta(minutes=32)) == []
    assert conn.execute(sa.select(sa.func.count()).select_from(Case.__table__)).scalar_one() == 4
    # A case no longer open takes no more evidence: the next sighting opens a new case.
    latest = changes[5].case
    cases.refuse_case(conn, latest.case_id, reason="误报", actor=OPERATOR, now=T0 + timedelta(minutes=31))
    again = cases.cases_from_video(conn, [video_row("v9", 35)], T0 + timedelta(minutes=36))
    assert again[0].action == "report" and again[0].case.case_id != latest.case_id


def check_nearby(conn: sa.Connection) -> None:
    """Cases within a radius, nearest first, measured the same on both backends."""
    here = new_case(conn, at=HOME)
    at_150 = new_case(conn, at=offset(*HOME, 150, 0))
    at_400 = new_case(conn, at=offset(*HOME, 0, 400), category="road_damage")
    new_case(conn, at=YUECHI)
    found = cases.cases_near(conn, *HOME, 500)
    assert [c.case_id for c in found] == [here.case_id, at_150.case_id, at_400.case_id]
    assert found[0].distance_m < 1
    assert abs(found[1].distance_m - 150) < 1.5 and abs(found[2].distance_m - 400) < 2.5
    assert [c.case_id for c in cases.cases_near(conn, *HOME, 200)] == [here.case_id, at_150.case_id]
    assert [c.case_id for c in cases.cases_near(conn, *HOME, 500, case_type_key="road_damage")] == [
        at_400.case_id
    ]
    cases.refuse_case(conn, at_150.case_id, reason="重复上报", actor=OPERATOR, now=T0)
    assert [c.case_id for c in cases.cases_near(conn, *HOME, 200)] == [here.case_id]
    assert [c.case_id for c in cases.cases_near(conn, *HOME, 200, open_only=False)] == [
        here.case_id,
        at_150.case_id,
    ]


def run_through(
    conn: sa.Connection, case_id: str, *, back_after: float, close_after: float, reworked: bool = False
) -> None:
    """File, dispatch and start at T0 + 1 h; report back and close ``…_after`` hours later."""
    start = T0 + timedelta(hours=1)
    cases.file_case(conn, case_id, actor=OPERATOR, now=start)
    cases.dispatch_case(conn, case_id, actor=OPERATOR, now=start)
    cases.start_handling(conn, case_id, actor=OPERATOR, now=start)
    if reworked:
        cases.report_back(conn, case_id, text="已清运", actor=OPERATOR, now=start + timedelta(minutes=30))
        cases.rework(conn, case_id, reason="仍有垃圾", actor=OPERATOR, now=start + timedelta(minutes=40))
    cases.report_back(conn, case_id, text="已清运", actor=OPERATOR, now=start + timedelta(hours=back_after))
    cases.verify_close(conn, case_id, actor=OPERATOR, now=start + timedelta(hours=close_after))


def check_indicators(conn: sa.Connection) -> None:
    """Garbage overflow: 4 h to handle (from 派遣), 24 h to close (from 立案)."""
    # 广安区: one on time; one reworked, then late for both deadlines; one never filed.
    run_through(conn, new_case(conn).case_id, back_after=2, close_after=3)
    run_through(conn, new_case(conn).case_id, back_after=5, close_after=30, reworked=True)
    new_case(conn)
    # 岳池县: filed and dispatched at T0 to 住建 (not the type's department), never handled.
    yc = new_case(conn, at=YUECHI)
    cases.file_case(conn, yc.case_id, actor=OPERATOR, now=T0)
    cases.dispatch_case(conn, yc.case_id, department="住建", actor=OPERATOR, now=T0)
    # Reported before the period: not counted.
    new_case(conn, now=T0 - timedelta(days=2))
    since, until = T0 - timedelta(hours=1), T0 + timedelta(days=1)

    # 14:30: the first is closed; the second's 处置 deadline (15:00) is not decided yet.
    early = cases.indicators(conn, since, until, now=T0 + timedelta(hours=4, minutes=30))
    assert list(early) == ["511602", "511621"]
    ga = early["511602"]
    assert (ga.reported, ga.filed, ga.closed, ga.reported_back) == (3, 2, 1, 1)
    assert (ga.handle.total, ga.handle.on_time, ga.close.total, ga.close.on_time) == (1, 1, 1, 1)
    assert ga.filing_rate == pytest.approx(2 / 3) and ga.closing_rate == 0.5 and ga.rework_rate == 0.0
    yc_row = early["511621"]
    assert (yc_row.reported, yc_row.filed, yc_row.closed) == (1, 1, 0)
    assert (yc_row.handle.total, yc_row.handle.on_time) == (1, 0)  # due 14:00, passed
    assert yc_row.close.rate is None and yc_row.rework_rate is None

    later = cases.indicators(conn, since, until, now=T0 + timedelta(days=3))
    ga = later["511602"]
    assert (ga.closed, ga.closing_rate, ga.on_time_handling_rate, ga.on_time_closing_rate) == (
        2,
        1.0,
        0.5,
        0.5,
    )
    assert ga.rework_rate == 0.5
    assert later["511621"].handle.rate == 0.0 and later["511621"].close.rate == 0.0

    by_department = cases.indicators(conn, since, until, by="department", now=T0 + timedelta(days=3))
    assert list(by_department) == ["住建", "城管", cases.UNASSIGNED]
    assert by_department["城管"].closed == 2 and by_department[cases.UNASSIGNED].reported == 1
    assert by_department["住建"].handle.total == 1


# ---- lifecycle -------------------------------------------------------------------------------

#: Every action and the states it is allowed from; all others must refuse it.
ALLOWED = {
    "file": {S.REPORTED},
    "refuse": {S.REPORTED},
    "dispatch": {S.FILED},
    "start": {S.DISPATCHED},
    "report_back": {S.HANDLING},
    "verify_close": {S.REPORTED_BACK},
    "rework": {S.REPORTED_BACK},
    "evaluate": {S.VERIFIED_CLOSED},
    "extend": {S.HANDLING},
    "return": {S.DISPATCHED, S.HANDLING},
    "park": {S.DISPATCHED, S.HANDLING},
    "resume": {S.PARKED},
}


def _do(conn: sa.Connection, action: str, case_id: str, now: datetime) -> cases.CaseChange:
    calls: dict[str, Callable[[], cases.CaseChange]] = {
        "file": lambda: cases.file_case(conn, case_id, actor=OPERATOR, now=now),
        "refuse": lambda: cases.refuse_case(conn, case_id, reason="非城管事项", actor=OPERATOR, now=now),
        "dispatch": lambda: cases.dispatch_case(conn, case_id, actor=OPERATOR, now=now),
        "start": lambda: cases.start_handling(conn, case_id, actor=OPERATOR, now=now),
        "report_back": lambda: cases.report_back(conn, case_id, text="已处置", actor=OPERATOR, now=now),
        "verify_close": lambda: cases.verify_close(conn, case_id, actor=OPERATOR, now=now),
        "rework": lambda: cases.rework(conn, case_id, reason="现场仍有垃圾", actor=OPERATOR, now=now),
        "evaluate": lambda: cases.evaluate(conn, case_id, grade="好", actor=OPERATOR, now=now),
        "extend": lambda: cases.extend(
            conn, case_id, until=now + timedelta(days=2), reason="需要调车", actor=OPERATOR, now=now
        ),
        "return": lambda: cases.return_case(conn, case_id, reason="不属本部门", actor=OPERATOR, now=now),
        "park": lambda: cases.park(conn, case_id, reason="需专项资金", actor=OPERATOR, now=now),
        "resume": lambda: cases.resume(conn, case_id, actor=OPERATOR, now=now),
    }
    return calls[action]()


#: How to bring a fresh case to each state.
PATHS: dict[CaseState, list[str]] = {
    S.REPORTED: [],
    S.FILED: ["file"],
    S.DISPATCHED: ["file", "dispatch"],
    S.HANDLING: ["file", "dispatch", "start"],
    S.REPORTED_BACK: ["file", "dispatch", "start", "report_back"],
    S.VERIFIED_CLOSED: ["file", "dispatch", "start", "report_back", "verify_close"],
    S.EVALUATED: ["file", "dispatch", "start", "report_back", "verify_close", "evaluate"],
    S.PARKED: ["file", "dispatch", "park"],
    S.NOT_FILED: ["refuse"],
}


def test_the_table_matches_the_lifecycle() -> None:
    assert set(ALLOWED) == set(CASE_LIFECYCLE.actions)
    for name, sources in ALLOWED.items():
        assert CASE_LIFECYCLE.actions[name].sources == {s.value for s in sources}
    assert set(PATHS) == set(CaseState)
    assert [s.label_zh for s in CaseState] == [
        "信息收集",
        "立案",
        "派遣",
        "处置",
        "反馈",
        "核查结案",
        "综合评价",
        "挂账",
        "不予立案",
    ]


@pytest.mark.parametrize("state", list(CaseState), ids=str)
def test_every_action_from_every_state(engine: sa.Engine, state: CaseState) -> None:
    with engine.begin() as conn:
        for action, sources in ALLOWED.items():
            case = new_case(conn)
            now = T0 + timedelta(minutes=1)
            for step in PATHS[state]:
                _do(conn, step, case.case_id, now)
            assert cases.get_case(conn, case.case_id).state == state  # type: ignore[union-attr]
            if state in sources:
                change = _do(conn, action, case.case_id, now + timedelta(minutes=1))
                assert change.from_state == state
                assert change.case.state == CASE_LIFECYCLE.actions[action].target
            else:
                with pytest.raises(IllegalTransition) as refused:
                    _do(conn, action, case.case_id, now + timedelta(minutes=1))
                assert refused.value.state == state
                assert f"不能{CASE_LIFECYCLE.actions[action].label_zh}" in refused.value.reason_zh
                assert cases.get_case(conn, case.case_id).state == state  # type: ignore[union-attr]


def test_a_full_case_with_rework_extension_return_and_parking(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        case = new_case(conn)
        assert case.state == "reported" and case.district_code == "511602" and case.grid_id
        assert case.category == "市容环境" and case.subcategory == "垃圾满溢"
        filed = cases.file_case(conn, case.case_id, actor=OPERATOR, now=T0 + timedelta(minutes=10)).case
        assert filed.filed_at == T0 + timedelta(minutes=10)
        assert filed.close_due == T0 + timedelta(minutes=10, hours=24)
        assert filed.due_at is None
        d = cases.dispatch_case(conn, case.case_id, actor=OPERATOR, now=T0 + timedelta(minutes=20)).case
        assert d.department == "城管" and d.due_at == T0 + timedelta(minutes=20, hours=4)
        # 回退: back to 立案, the department and 处置 deadline cleared; re-dispatched elsewhere.
        r = cases.return_case(
            conn, case.case_id, reason="不属本部门", actor=OPERATOR, now=T0 + timedelta(hours=1)
        )
        assert (r.case.state, r.case.department, r.case.due_at, r.case.return_count) == (
            "filed",
            None,
            None,
            1,
        )
        d = cases.dispatch_case(
            conn, case.case_id, department="住建", actor=OPERATOR, now=T0 + timedelta(hours=2)
        ).case
        assert d.department == "住建" and d.due_at == T0 + timedelta(hours=6)
        cases.start_handling(conn, case.case_id, actor=OPERATOR, now=T0 + timedelta(hours=3))
        # 延期 keeps the state and moves the 处置 deadline.
        e = cases.extend(
            conn,
            case.case_id,
            until=T0 + timedelta(hours=10),
            reason="等待设备",
            actor=OPERATOR,
            now=T0 + timedelta(hours=4),
        ).case
        assert (e.state, e.due_at, e.extension_count) == ("handling", T0 + timedelta(hours=10), 1)
        # 挂账 stops the clock; 恢复 gives a fresh 处置 window.
        cases.park(conn, case.case_id, reason="需专项资金", actor=OPERATOR, now=T0 + timedelta(hours=5))
        assert cases.overdue_cases(conn, T0 + timedelta(hours=11)) == []
        res = cases.resume(conn, case.case_id, actor=OPERATOR, now=T0 + timedelta(hours=12)).case
        assert res.state == "dispatched" and res.due_at == T0 + timedelta(hours=16)
        cases.start_handling(conn, case.case_id, actor=OPERATOR, now=T0 + timedelta(hours=13))
        cases.report_back(conn, case.case_id, text="已清运", actor=OPERATOR, now=T0 + timedelta(hours=14))
        # 返工: verification refused; counted; back to 处置 with the same deadline.
        w = cases.rework(
            conn, case.case_id, reason="仍有垃圾", actor=OPERATOR, now=T0 + timedelta(hours=15)
        ).case
        assert (w.state, w.rework_count, w.due_at) == ("handling", 1, T0 + timedelta(hours=16))
        cases.report_back(
            conn, case.case_id, text="已彻底清运", actor=OPERATOR, now=T0 + timedelta(hours=15, minutes=30)
        )
        closed = cases.verify_close(conn, case.case_id, actor=OPERATOR, now=T0 + timedelta(hours=16)).case
        assert closed.closed_at == T0 + timedelta(hours=16)
        done = cases.evaluate(
            conn, case.case_id, grade="good", actor=OPERATOR, now=T0 + timedelta(days=1)
        ).case
        assert (done.state, done.evaluation, done.state_label_zh) == ("evaluated", "good", "综合评价")
        history = [(e.action, e.to_state) for e in cases.case_history(conn, case.case_id)]
        assert history[0] == ("report", "reported") and history[-1] == ("evaluate", "evaluated")
        assert [a for a, _ in history].count("report_back") == 2
        assert "rework" in [a for a, _ in history] and "return" in [a for a, _ in history]


@pytest.mark.parametrize(
    ("action", "call", "zh"),
    [
        (
            "refuse",
            lambda c, i, n: cases.refuse_case(c, i, reason=" ", actor=OPERATOR, now=n),
            "不予立案须说明理由",
        ),
        (
            "return",
            lambda c, i, n: cases.return_case(c, i, reason="", actor=OPERATOR, now=n),
            "回退须说明理由",
        ),
        ("park", lambda c, i, n: cases.park(c, i, reason="", actor=OPERATOR, now=n), "挂账须说明理由"),
        (
            "report_back",
            lambda c, i, n: cases.report_back(c, i, text="", actor=OPERATOR, now=n),
            "反馈须填写处置结果",
        ),
        (
            "extend",
            lambda c, i, n: cases.extend(
                c, i, until=n - timedelta(hours=1), reason="x", actor=OPERATOR, now=n
            ),
            "延期后的处置时限须晚于",
        ),
        (
            "extend",
            lambda c, i, n: cases.extend(c, i, until=n + timedelta(days=9), reason="", actor=OPERATOR, now=n),
            "延期须说明理由",
        ),
    ],
)
def test_guards_refuse_with_chinese_reasons(engine: sa.Engine, action: str, call: Any, zh: str) -> None:
    with engine.begin() as conn:
        case = new_case(conn)
        for step in PATHS[S.HANDLING] if action != "refuse" else []:
            _do(conn, step, case.case_id, T0)
        with pytest.raises(IllegalTransition, match=zh):
            call(conn, case.case_id, T0 + timedelta(minutes=5))


def test_evaluation_needs_a_known_grade_and_rework_needs_a_reason(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        case = new_case(conn)
        for step in PATHS[S.REPORTED_BACK]:
            _do(conn, step, case.case_id, T0)
        with pytest.raises(IllegalTransition, match="核查不通过须说明理由"):
            cases.rework(conn, case.case_id, reason="", actor=OPERATOR, now=T0)
        cases.verify_close(conn, case.case_id, actor=OPERATOR, now=T0)
        with pytest.raises(IllegalTransition, match="综合评价须为"):
            cases.evaluate(conn, case.case_id, grade="excellent", actor=OPERATOR, now=T0)
        assert (
            cases.evaluate(conn, case.case_id, grade="差", actor=OPERATOR, now=T0).case.evaluation == "poor"
        )


def test_refusals_name_who_made_the_state_and_roles_are_checked(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        case = new_case(conn)
        cases.file_case(conn, case.case_id, actor=OPERATOR, now=T0)
        with pytest.raises(IllegalTransition) as refused:
            cases.file_case(conn, case.case_id, actor="li", now=T0 + timedelta(minutes=1))
        assert refused.value.by == "wang" and "已被 wang 于 10:00 立案，不能立案" in refused.value.reason_zh
        with pytest.raises(IllegalTransition, match="无权派遣"):
            cases.dispatch_case(conn, case.case_id, actor=Actor("zhao", role="viewer"), now=T0)
        with pytest.raises(EntityNotFound):
            cases.dispatch_case(conn, "AJ-none", actor=OPERATOR, now=T0)
        with pytest.raises(EntityNotFound):
            cases.start_handling(conn, "AJ-none", actor=OPERATOR, now=T0)


def test_unknown_categories_are_other_cases_for_the_street_office(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        case = new_case(conn, category="井盖缺失")
        assert (case.case_type, case.category, case.subcategory) == ("other", "其他", "井盖缺失")
        cases.file_case(conn, case.case_id, actor=OPERATOR, now=T0)
        d = cases.dispatch_case(conn, case.case_id, actor=OPERATOR, now=T0).case
        assert d.department == "街道/乡镇" and d.due_at == T0 + timedelta(hours=72)


def test_case_types_are_frozen_and_checked() -> None:
    assert cases.CASE_TYPES["road_damage"].department == "交通"
    with pytest.raises(TypeError):
        cases.CASE_TYPES["x"] = cases.OTHER  # type: ignore[index]
    with pytest.raises(ValueError, match="handle"):
        cases.CaseType("x", "事件", "a", "b", "c", timedelta(hours=5), timedelta(hours=1))
    assert set(cases.VIDEO_CASE_TYPES) >= {
        "illegal_parking",
        "garbage_overflow",
        "street_vending",
        "road_damage",
    }
    assert "crowd_gathering" not in cases.VIDEO_CASE_TYPES


# ---- deadlines ---------------------------------------------------------------------------------


def test_overdue_flags_on_a_controlled_clock(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        parking = new_case(conn, category="illegal_parking")  # 2 h to handle, 24 h to close
        cases.file_case(conn, parking.case_id, actor=OPERATOR, now=T0)
        cases.dispatch_case(conn, parking.case_id, actor=OPERATOR, now=T0)
        reported_only = new_case(conn)  # no deadline runs before 立案
        assert cases.overdue_cases(conn, T0 + timedelta(hours=2) - timedelta(seconds=1)) == []
        flags = cases.overdue_cases(conn, T0 + timedelta(hours=2))
        assert [(f.case_id, f.kind, f.label_zh) for f in flags] == [(parking.case_id, "handle", "处置超时")]
        view = cases.get_case(conn, parking.case_id)
        assert view is not None and view.overdue_kinds(T0 + timedelta(hours=2)) == ["handle"]
        assert view.overdue_kinds(T0 + timedelta(hours=1)) == []
        late = T0 + timedelta(hours=24)
        assert [f.kind for f in cases.overdue_cases(conn, late)] == ["handle", "close"]
        # Handled and reported back: only the 结案 deadline is still owed.
        cases.start_handling(conn, parking.case_id, actor=OPERATOR, now=late)
        cases.report_back(conn, parking.case_id, text="已拖离", actor=OPERATOR, now=late)
        assert [f.kind for f in cases.overdue_cases(conn, late)] == ["close"]
        cases.verify_close(conn, parking.case_id, actor=OPERATOR, now=late)
        assert cases.overdue_cases(conn, late + timedelta(days=30)) == []
        assert cases.get_case(conn, reported_only.case_id).overdue_kinds(late) == []  # type: ignore[union-attr]


def check_district_scope(conn: sa.Connection) -> None:
    """The urban page's reads keep one district's cases and sightings with ``district_code``
    and the whole city without it (same expectations on every backend)."""
    from geo.boundaries import district_geometries
    from models.schema import VideoEvent

    inside = district_geometries()["511623"].representative_point()
    linshui = (inside.x, inside.y)
    cases_by_district: dict[str, str] = {}
    for at in (HOME, linshui):
        case = new_case(conn, category="illegal_parking", at=at)  # 2 h to handle
        cases.file_case(conn, case.case_id, actor=OPERATOR, now=T0)
        cases.dispatch_case(conn, case.case_id, actor=OPERATOR, now=T0)
        assert case.district_code is not None
        cases_by_district[case.district_code] = case.case_id
    assert set(cases_by_district) == {"511602", "511623"}
    conn.execute(
        sa.insert(VideoEvent.__table__),
        [
            video_row("s1", 0, district_code="511602", grid_id="cellA"),
            video_row("s2", 1, district_code="511602", grid_id="cellA"),
            video_row("s3", 2, type="garbage_overflow", district_code="511623", grid_id="cellL"),
        ],
    )
    mine, other = "511623", "511602"
    late = T0 + timedelta(hours=3)
    since, until = T0 - timedelta(hours=1), T0 + timedelta(hours=1)

    assert [c.case_id for c in cases.open_cases(conn, district_code=mine)] == [cases_by_district[mine]]
    assert {c.case_id for c in cases.open_cases(conn)} == set(cases_by_district.values())
    assert sum(cases.state_counts(conn, district_code=mine).values()) == 1
    assert sum(cases.state_counts(conn).values()) == 2
    assert [f.case_id for f in cases.overdue_cases(conn, late, district_code=mine)] == [
        cases_by_district[mine]
    ]
    assert len(cases.overdue_cases(conn, late)) == 2
    assert list(cases.indicators(conn, since, until, district_code=mine)) == [mine]
    assert set(cases.indicators(conn, since, until)) == {mine, other}
    by_department = cases.indicators(conn, since, until, by="department", district_code=mine)
    assert sum(i.reported for i in by_department.values()) == 1
    assert list(cases.open_by_district(conn, late, district_code=mine)) == [mine]
    assert cases.open_by_district(conn, late, district_code=mine)[mine].overdue == 1
    assert set(cases.open_by_district(conn, late)) == {mine, other}
    assert cases.video_event_counts(conn, since, until, by="grid", district_code=mine) == {"cellL": 1}
    assert cases.video_event_counts(conn, since, until, by="type", district_code=other) == {
        "illegal_parking": 2
    }
    assert cases.video_event_counts(conn, since, until, by="grid") == {"cellA": 2, "cellL": 1}


def _reference_open_cases(conn: sa.Connection, limit: int, district_code: str | None) -> list[str]:
    """The urgency order as one sort by the owed deadline (how open_cases read it first)."""
    c = Case.__table__.c
    owed = sa.case(
        (c.state.in_(sorted(cases.AWAITING_HANDLING)), c.due_at),
        (c.state.in_(sorted(cases.AWAITING_CLOSE)), c.close_due),
        else_=None,
    )
    query = sa.select(c.case_id).where(c.state.in_(sorted(cases.OPEN_STATES)))
    if district_code is not None:
        query = query.where(c.district_code == district_code)
    return list(
        conn.execute(
            query.order_by(owed.is_(None), owed, c.reported_at.desc(), c.case_id).limit(limit)
        ).scalars()
    )


def check_page_reads(conn: sa.Connection) -> None:
    """The urban page's combined reads give what the single reads give, on a mixed city:
    every state, deadlines passed and to come (ties across the 处置 and 结案 deadlines and
    on the report time), cases before and in the period, three districts and none."""
    import random
    from itertools import product

    from models.schema import VideoEvent

    rng = random.Random(7)
    districts = ["511602", "511621", "511623", None]
    departments = ["城管", "住建", None]
    ties = [T0 + timedelta(hours=h) for h in (-5, -1, 2, 6)]
    rows = []
    for i in range(240):
        state = rng.choice(list(CaseState))
        reported = T0 - timedelta(days=rng.choice([0, 0, 1, 40]), hours=rng.choice([0, 1, 1, 3]))
        rows.append(
            {
                "case_id": f"AJ{i:04d}",
                "source": "inspector",
                "category": "市容环境",
                "state": state,
                "district_code": rng.choice(districts),
                "department": rng.choice(departments),
                "reported_at": reported,
                "filed_at": rng.choice([None, reported + timedelta(minutes=10)]),
                "due_at": rng.choice([None, *ties]),
                "close_due": rng.choice([None, *ties]),
                "reported_back_at": rng.choice([None, reported + timedelta(hours=2)]),
                "closed_at": rng.choice([None, reported + timedelta(hours=4)]),
                "rework_count": rng.choice([0, 0, 1]),
                "updated_at": T0,
                "props": {},
            }
        )
    conn.execute(sa.insert(Case.__table__), rows)

    for scope in (None, "511602"):
        for limit in (1, 7, 40, 500):
            views = cases.open_cases(conn, limit=limit, district_code=scope)
            assert [v.case_id for v in views] == _reference_open_cases(conn, limit, scope), (scope, limit)
            # The marks are the same cases in the same order, each with the view's values.
            marks = cases.open_case_marks(conn, limit=limit, district_code=scope)
            assert [{f: getattr(m, f) for f in cases.CaseMark.__dataclass_fields__} for m in marks] == [
                {f: getattr(v, f) for f in cases.CaseMark.__dataclass_fields__} for v in views
            ]
        for now in (T0 - timedelta(hours=2), T0 + timedelta(hours=3), T0 + timedelta(days=1)):
            for by, since in product(("district", "department"), (T0 - timedelta(days=2), T0)):
                board = cases.case_board(conn, since, now, by=by, now=now, district_code=scope)  # type: ignore[arg-type]
                assert board.indicators == cases.indicators(
                    conn,
                    since,
                    now,
                    by=by,  # type: ignore[arg-type]
                    now=now,
                    district_code=scope,
                )
                if by == "district":
                    # The wall's two figures of the day are the indicators' totals.
                    day = cases.intake(conn, since, now, now=now, district_code=scope)
                    totals = board.indicators.values()
                    assert (day.reported, day.filed) == (
                        sum(i.reported for i in totals),
                        sum(i.filed for i in totals),
                    )
                by_district = cases.open_by_district(conn, now, district_code=scope)
                per_district = by_district.values()
                assert board.open == sum(d.open for d in per_district) > 0
                flags = cases.overdue_cases(conn, now, district_code=scope)
                overdue = {f.case_id for f in flags}
                assert board.overdue == len(overdue)
                # Each district's late cases are the ones overdue_cases flags there.
                late_where = Counter(
                    code or cases.UNLOCATED for _, code in {(f.case_id, f.district_code) for f in flags}
                )
                assert {k: d.overdue for k, d in by_district.items() if d.overdue} == dict(late_where)
    assert cases.case_board(conn, T0, T0 + timedelta(hours=1), now=T0).overdue > 0
    busy = cases.intake(conn, T0 - timedelta(days=2), T0 + timedelta(days=1))
    assert 0 < busy.filed < busy.reported  # the totals above compared real counts

    conn.execute(
        sa.insert(VideoEvent.__table__),
        [
            video_row(f"t{i}", i, type=kind, district_code=code, grid_id=cell)
            for i, (kind, code, cell) in enumerate(
                [
                    ("illegal_parking", "511602", "cellA"),
                    ("illegal_parking", "511602", "cellA"),
                    ("garbage_overflow", "511602", "cellB"),
                    ("garbage_overflow", "511623", "cellL"),
                    ("smoke_fire", None, None),
                ]
            )
        ],
    )
    since, until = T0 - timedelta(hours=1), T0 + timedelta(hours=1)
    for scope in (None, "511602", "511623"):
        per_cell, per_type = cases.video_event_tallies(conn, since, until, district_code=scope)
        for got, by in ((per_cell, "grid"), (per_type, "type")):
            expected = cases.video_event_counts(conn, since, until, by=by, district_code=scope)  # type: ignore[arg-type]
            assert got == expected and list(got) == list(expected), (scope, by)
    assert cases.video_event_tallies(conn, since, until) == (
        {"cellA": 2, "cellB": 1, "cellL": 1},
        {"garbage_overflow": 2, "illegal_parking": 2, "smoke_fire": 1},
    )


# ---- shared expectations on the embedded backend -------------------------------------------


def test_video_dedup_with_real_geometry(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        check_video_dedup(conn)


def test_nearby_cases(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        check_nearby(conn)


def test_indicators_by_district_and_department(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        check_indicators(conn)


def test_reads_keep_one_district_with_district_code(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        check_district_scope(conn)


def test_the_urban_pages_combined_reads_match_the_single_ones(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        check_page_reads(conn)


# ---- through the ingest pipeline ---------------------------------------------------------------


def test_video_events_through_the_pipeline_open_one_case(engine: sa.Engine) -> None:
    from ingest.pipeline import Inbound, IngestPipeline
    from models.live import LiveStore

    live = LiveStore(fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True))
    clock = lambda: T0 + timedelta(minutes=30)  # noqa: E731
    pipeline = IngestPipeline(engine, live, clock=clock, hooks=[cases.VideoCaseHook(engine, clock=clock)])

    def msg(topic: str, payload: dict[str, Any]) -> Inbound:
        return Inbound(f"cityops/v1/{topic}", json.dumps(payload).encode(), T0)

    def event(
        event_id: str, minutes: int, type_: str = "garbage_overflow", confidence: float = 0.92
    ) -> Inbound:
        ts = (T0 + timedelta(minutes=minutes)).isoformat()
        body = {"event_id": event_id, "ts": ts, "type": type_, "confidence": confidence}
        return msg("video/cam-9/events", body)

    camera = msg("video/cam-9/meta", {"type": "camera", "lon": HOME[0], "lat": HOME[1]})
    batch = [
        camera,
        event("e1", 0),
        event("e2", 5),
        event("e3", 6, "crowd_gathering"),
        event("e4", 7, confidence=0.2),
    ]
    result = pipeline.process(batch)
    assert result.stored["video_events"] == 4
    pipeline.process([event("e5", 12), event("e2", 5)])  # one new sighting, one redelivery
    with engine.connect() as conn:
        rows = conn.execute(sa.select(Case.__table__)).mappings().all()
        assert len(rows) == 1
        case = rows[0]
        assert (case["source"], case["source_ref"], case["case_type"], case["district_code"]) == (
            "video",
            "cam-9",
            "garbage_overflow",
            "511602",
        )
        assert case["evidence_count"] == 3 and case["state"] == "reported"
        ids = conn.execute(
            sa.select(CaseEvent.__table__.c.event_id).order_by(CaseEvent.__table__.c.id)
        ).scalars()
        assert list(ids) == ["e1", "e2", "e5"]


def test_every_late_case_is_an_open_case() -> None:
    # open_by_district counts late cases apart from open ones and adds them to the open
    # rows: a deadline that ran in a closed state would count a case that is not open.
    assert cases.AWAITING_HANDLING | cases.AWAITING_CLOSE <= cases.OPEN_STATES
