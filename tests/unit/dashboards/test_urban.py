"""The urban-management page's rows and figures on a fixed clock, and the case and video
queries it reads, on the embedded backend."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import plotly.graph_objects as go
import pytest
import sqlalchemy as sa
from dash import Patch

from dashboards import urban as ub
from geo.locate import locate_point
from models import cases
from models.cases import CaseIndicators, CaseView
from models.schema import Case, VideoEvent
from models.tickets import Rate

NOW = datetime(2026, 7, 15, 2, 0, tzinfo=UTC)  # 10:00 in Guang'an
HOME = (106.6330, 30.4560)  # 广安区
YUECHI = (106.44, 30.55)  # 岳池县


def case(case_id: str = "AJ1", state: str = "reported", **values: Any) -> CaseView:
    fields: dict[str, Any] = dict.fromkeys(CaseView.__dataclass_fields__)
    fields.update(
        case_id=case_id,
        source="video",
        case_type="garbage_overflow",
        category="市容环境",
        description="<b>不应出现在地图上</b>",
        state=state,
        district_code="511602",
        lon=HOME[0],
        lat=HOME[1],
        reported_at=NOW - timedelta(hours=3),
        extension_count=0,
        return_count=0,
        rework_count=0,
        evidence_count=2,
        version=1,
    )
    fields.update(values)
    return CaseView(**fields)


def patch_ops(patch: Patch) -> list[dict[str, Any]]:
    return patch.to_plotly_json()["operations"]


# ---- freshness ------------------------------------------------------------------------------


def test_a_feed_turns_silent_after_its_expected_period() -> None:
    fresh = ub.feed_freshness(NOW - timedelta(seconds=40), NOW, 600)
    assert fresh.age_s == 40 and not fresh.silent
    silent = ub.feed_freshness(NOW - timedelta(minutes=12), NOW, 600)
    assert silent.silent and silent.minutes == 12
    assert ub.feed_freshness(None, NOW, 600).silent
    # A clock slightly behind the feed's is not a negative age.
    assert ub.feed_freshness(NOW + timedelta(seconds=3), NOW, 600).age_s == 0


def test_newest_stamp_reads_stream_entries_and_skips_what_does_not_parse() -> None:
    entries = [
        {"received_at": "2026-07-15 01:59:00+00:00"},
        {"received_at": "2026-07-15T01:59:30"},  # no zone: UTC, as ingest writes
        {"received_at": "gestern"},
        {"other": "x"},
    ]
    assert ub.newest_stamp(entries, "received_at") == datetime(2026, 7, 15, 1, 59, 30, tzinfo=UTC)
    assert ub.newest_stamp([], "received_at") is None


# ---- grid cells -----------------------------------------------------------------------------


def test_heat_cells_keep_known_cells_with_events_in_a_stable_order() -> None:
    home_cell = locate_point(*HOME)[1]
    yuechi_cell = locate_point(*YUECHI)[1]
    assert home_cell and yuechi_cell
    cells = ub.heat_cells({yuechi_cell: 3, home_cell: 5, "not-a-cell": 9, "8840000000fffff": 0})
    assert cells.ids == tuple(sorted([home_cell, yuechi_cell]))
    assert dict(zip(cells.ids, cells.counts, strict=True)) == {home_cell: 5, yuechi_cell: 3}
    assert cells.total == 8
    # Classes: equal fifths of the largest count.
    assert cells.classes == tuple(4 if g == home_cell else 2 for g in cells.ids)
    assert [ub.heat_class(n, 10) for n in (1, 2, 3, 5, 8, 10, 0)] == [0, 0, 1, 2, 3, 4, 0]
    assert ub.heat_class(1, 1) == 4
    # A class's signature changes with the cells in it, not with their counts.
    same = ub.heat_cells({yuechi_cell: 30, home_cell: 50})
    assert same.signatures == cells.signatures
    moved = ub.heat_cells({yuechi_cell: 1, home_cell: 5}).signatures
    assert moved["class4"] == cells.signatures["class4"] and moved["class2"] != cells.signatures["class2"]
    geojson = ub.cells_geojson([*cells.ids, "not-a-cell"])
    assert [f["properties"]["grid_id"] for f in geojson["features"]] == list(cells.ids)


def test_cells_are_drawn_as_class_layers_with_a_point_each_for_hover() -> None:
    cell = locate_point(*HOME)[1]
    assert cell
    cells = ub.heat_cells({cell: 7}, {cell: "噪声扰民"})
    layers = ub.heat_layers(cells)
    assert [layer["color"] for layer in layers] == list(ub.HEAT_COLOURS)
    assert [len(layer["source"]["features"]) for layer in layers] == [0, 0, 0, 0, 1]
    trace = ub.heat_trace(cells)
    assert list(trace.marker.color) == [ub.HEAT_COLOURS[4]]
    assert "噪声扰民" in trace.text[0] and "广安区" in trace.text[0] and list(trace.customdata) == [7]
    assert "%{customdata} 起" in trace.hovertemplate
    assert trace.lon[0] == pytest.approx(HOME[0], abs=0.01) and trace.lat[0] == pytest.approx(
        HOME[1], abs=0.01
    )
    figure = ub.cell_map([trace], tile_url=None, uirevision="u", cells=cells)
    # Cells under the district outlines, points over both; an offline style (no tile source).
    assert [layer.type for layer in figure.layout.map.layers] == ["fill"] * 5 + ["line"]
    assert figure.layout.map.style["sources"] == {} and "glyphs" not in figure.layout.map.style


# ---- cases ----------------------------------------------------------------------------------


def test_case_rows_by_deadline_status_on_a_fixed_clock() -> None:
    rows = ub.case_rows(
        [
            case("A", "reported"),
            case("B", "filed", close_due=NOW + timedelta(hours=20)),
            case("C", "dispatched", due_at=NOW + timedelta(minutes=30), close_due=NOW + timedelta(hours=20)),
            case(
                "D",
                "handling",
                due_at=NOW - timedelta(hours=2, minutes=5),
                close_due=NOW + timedelta(hours=3),
            ),
            case("E", "parked", due_at=NOW - timedelta(days=2), close_due=NOW - timedelta(days=1)),
            case("F", "reported_back", due_at=NOW - timedelta(hours=5), close_due=NOW + timedelta(hours=5)),
        ],
        NOW,
    )
    assert [r.status for r in rows] == ["none", "ok", "due_soon", "overdue", "stopped", "ok"]
    assert rows[2].deadline_kind == "handle" and rows[2].left_s == 1800
    # A reported-back case no longer owes the 处置 deadline it missed: only 结案 runs.
    assert rows[5].deadline_kind == "close"
    assert ub.deadline_text(rows[0]) == "待立案（未计时）"
    assert ub.deadline_text(rows[1]) == "结案剩余 20:00:00"
    assert ub.deadline_text(rows[3]) == "处置超期 2:05:00"
    assert ub.deadline_text(rows[4]) == "挂账（停止计时）"
    assert rows[3].type_label == "垃圾满溢" and rows[3].department == "城管" and rows[3].district == "广安区"


def test_the_case_trace_shows_placed_cases_without_their_free_text() -> None:
    rows = ub.case_rows(
        [
            case("A", "handling", due_at=NOW - timedelta(hours=1)),
            case("B", "filed", close_due=NOW + timedelta(hours=5)),
            case("C", lon=None, lat=None),
        ],
        NOW,
    )
    trace = ub.cases_trace(rows)
    assert list(trace.lon) == [HOME[0], HOME[0]]
    assert list(trace.marker.color) == [ub.STATUS_COLOURS["overdue"], ub.STATUS_COLOURS["ok"]]
    assert trace.marker.size[0] > trace.marker.size[1]
    assert "07-15 09:00" in trace.customdata[0] and "已超期" in trace.customdata[0]
    assert not any("<b>" in text for text in trace.customdata)


def test_the_cases_signature_ignores_the_passing_clock_until_a_status_changes() -> None:
    c = case("A", "filed", close_due=NOW + timedelta(hours=5))
    first = ub.cases_signature(ub.case_rows([c], NOW))
    assert ub.cases_signature(ub.case_rows([c], NOW + timedelta(minutes=10))) == first
    assert ub.cases_signature(ub.case_rows([c], NOW + timedelta(hours=4, minutes=30))) != first  # due soon
    assert ub.cases_signature(ub.case_rows([replace(c, state="dispatched")], NOW)) != first


def test_map_update_sends_the_figure_once_then_only_what_changed() -> None:
    cell = locate_point(*HOME)[1]
    other = locate_point(*YUECHI)[1]
    assert cell and other
    rows = ub.case_rows([case("A", "filed", close_due=NOW + timedelta(hours=5))], NOW)
    cells = ub.heat_cells({cell: 2})
    figure, drawn = ub.map_update(cells, rows, None, tile_url=None)
    assert isinstance(figure, go.Figure) and figure.layout.uirevision == "urban-map"
    assert [t.type for t in figure.data] == ["scattermap", "scattermap"]
    # Same cells in the same classes, same cases: only the counts and colours travel.
    patch, again = ub.map_update(ub.heat_cells({cell: 9}), rows, drawn, tile_url=None)
    assert isinstance(patch, Patch) and again == drawn
    ops = patch_ops(patch)
    assert [op["location"] for op in ops] == [["data", 0, "customdata"], ["data", 0, "marker", "color"]]
    assert ops[0]["params"]["value"] == [9]
    # A new cell in class 1 and a new case: that class's shapes and the cases, nothing else.
    more = ub.case_rows([case("A", "filed", close_due=NOW + timedelta(hours=5)), case("B")], NOW)
    patch, _ = ub.map_update(ub.heat_cells({cell: 10, other: 3}), more, drawn, tile_url=None)
    locations = [op["location"] for op in patch_ops(patch)]
    assert locations == [["data", 0], ["layout", "map", "layers", 1, "source"], ["data", 1]]
    shapes = patch_ops(patch)[1]["params"]["value"]
    assert [f["id"] for f in shapes["features"]] == [other]


# ---- indicators -----------------------------------------------------------------------------


def indicators(key: str, reported: int, filed: int, closed: int, **rates: Rate) -> CaseIndicators:
    return CaseIndicators(
        key=key,
        reported=reported,
        filed=filed,
        closed=closed,
        handle=rates.get("handle", Rate(0, 0)),
        close=rates.get("close", Rate(0, 0)),
        reported_back=rates.get("back", Rate(0, 0)).total,
        reworked=rates.get("back", Rate(0, 0)).on_time,
    )


def test_indicator_rows_name_districts_and_add_the_city_total() -> None:
    per = {
        "511621": indicators("511621", 4, 2, 1, close=Rate(2, 1)),
        "511602": indicators("511602", 10, 8, 6, handle=Rate(5, 4), close=Rate(6, 6), back=Rate(4, 1)),
        "未定位": indicators("未定位", 1, 0, 0),
    }
    rows = ub.indicator_rows(per, "district")
    assert [r.name for r in rows] == ["广安区", "岳池县", "未定位", "全市"]
    assert (
        rows[0].filing_rate == "80.0%"
        and rows[0].on_time_handling == "80.0%"
        and rows[0].rework_rate == "25.0%"
    )
    assert rows[2].filing_rate == "0.0%" and rows[2].closing_rate == "—"
    total = rows[-1]
    assert total.total and total.reported == 15 and total.filed == 10 and total.closed == 7
    assert total.filing_rate == "66.7%" and total.on_time_closing == "87.5%"  # 7 of 8 decided
    by_department = ub.indicator_rows({"城管": indicators("城管", 3, 3, 0)}, "department")
    assert by_department[0].name == "城管"


def test_month_start_is_city_midnight_on_the_first() -> None:
    # 2026-07-31 20:00 UTC is already 1 August in Guang'an.
    start = ub.month_start(datetime(2026, 7, 31, 20, 0, tzinfo=UTC))
    assert start.isoformat() == "2026-08-01T00:00:00+08:00"


def test_bars_put_the_biggest_on_top_and_patches_carry_only_the_numbers() -> None:
    pairs = ub.type_rows({"garbage_overflow": 3, "illegal_parking": 9, "mystery": 1})
    assert pairs == [("违章停车", 9), ("垃圾满溢", 3), ("mystery", 1)]
    fig = ub.bar_figure(pairs, uirevision="t")
    assert list(fig.data[0].y) == ["mystery", "垃圾满溢", "违章停车"]
    assert {tuple(op["location"]) for op in patch_ops(ub.bar_patch(pairs))} == {
        ("data", 0, "x"),
        ("data", 0, "y"),
    }


# ---- the queries the page reads -------------------------------------------------------------


def add_case(conn: sa.Connection, case_id: str, state: str, **values: Any) -> None:
    row = {
        "case_id": case_id,
        "source": "inspector",
        "category": "市容环境",
        "state": state,
        "reported_at": NOW - timedelta(hours=1),
        "updated_at": NOW,
        "props": {},
        **values,
    }
    conn.execute(sa.insert(Case.__table__), row)


def test_open_cases_most_pressing_first(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        add_case(conn, "NEW", "reported", reported_at=NOW - timedelta(minutes=5))
        add_case(conn, "OLD", "reported", reported_at=NOW - timedelta(hours=5))
        add_case(
            conn, "LATE", "handling", due_at=NOW - timedelta(hours=1), close_due=NOW + timedelta(hours=9)
        )
        add_case(conn, "SOON", "filed", close_due=NOW + timedelta(minutes=30))
        # Reported back: the 处置 deadline no longer counts, the 结案 one does.
        add_case(
            conn, "BACK", "reported_back", due_at=NOW - timedelta(days=1), close_due=NOW + timedelta(hours=2)
        )
        add_case(conn, "PARK", "parked", due_at=NOW - timedelta(days=3))
        add_case(conn, "DONE", "verified_closed", closed_at=NOW)
        add_case(conn, "NO", "not_filed")
        assert [c.case_id for c in cases.open_cases(conn)] == ["LATE", "SOON", "BACK", "NEW", "PARK", "OLD"]
        assert [c.case_id for c in cases.open_cases(conn, limit=2)] == ["LATE", "SOON"]
        # The page reads marks: the rows it draws are those the full views give.
        assert ub.case_rows(cases.open_case_marks(conn), NOW) == ub.case_rows(cases.open_cases(conn), NOW)
        counts = cases.state_counts(conn)
        assert counts["reported"] == 2 and counts["evaluated"] == 0 and sum(counts.values()) == 8


def test_video_event_counts_bin_in_the_database(engine: sa.Engine) -> None:
    home = locate_point(*HOME)
    yuechi = locate_point(*YUECHI)
    rows = []
    for i, (where, kind, minutes) in enumerate(
        [
            (home, "illegal_parking", 10),
            (home, "illegal_parking", 20),
            (home, "garbage_overflow", 30),
            (yuechi, "illegal_parking", 40),
            (home, "illegal_parking", 60 * 25),
            ((None, None), "smoke_fire", 5),
        ]
    ):
        rows.append(
            {
                "event_id": f"ve-{i}",
                "camera_id": "cam-1",
                "ts": NOW - timedelta(minutes=minutes),
                "type": kind,
                "confidence": 0.9,
                "district_code": where[0],
                "grid_id": where[1],
                "received_at": NOW,
            }
        )
    with engine.begin() as conn:
        conn.execute(sa.insert(VideoEvent.__table__), rows)
        since = NOW - timedelta(hours=24)
        assert cases.video_event_counts(conn, since, NOW, by="grid") == {home[1]: 3, yuechi[1]: 1}
        assert cases.video_event_counts(conn, since, NOW, by="type") == {
            "illegal_parking": 3,
            "garbage_overflow": 1,
            "smoke_fire": 1,
        }
        assert cases.video_event_counts(conn, since, NOW, by="district") == {"511602": 3, "511621": 1}


# ---- the page's refresh ---------------------------------------------------------------------


def test_the_refresh_sends_each_table_only_when_what_it_shows_changed(page: sa.Engine) -> None:
    import dash

    from dashboards.pages import urban
    from tests.unit.dashboards.signing import account, signed_in

    now = datetime.now(UTC)
    with page.begin() as conn:
        add_case(conn, "NEW", "reported", reported_at=now - timedelta(seconds=40), district_code="511602")
        add_case(conn, "PARK", "parked", reported_at=now - timedelta(hours=2), district_code="511621")
        # Overdue: a running deadline, so the list's text changes by the second.
        add_case(
            conn, "LATE", "handling", reported_at=now - timedelta(hours=9), due_at=now - timedelta(hours=1)
        )
    with signed_in(account("city-duty", "duty_officer")):
        first = urban.refresh(None, None, "district", None)
        again = urban.refresh(None, None, "district", first[7])
        by_department = urban.refresh(None, None, "department", again[7])
    # First: everything, with the counts the single reads give.
    assert first[3] == "3" and "1" in repr(first[4])
    assert all(name in repr(first[8]) for name in ("NEW", "PARK", "LATE"))
    assert "广安区" in repr(first[10])
    # Again: the indicators did not change and stay as drawn.
    assert again[10] is dash.no_update
    assert again[3] == "3" and again[7]["indicator-table"] == first[7]["indicator-table"]
    # Another grouping: the indicators travel again, by department.
    assert by_department[10] is not dash.no_update and "广安区" not in repr(by_department[10])

    with page.begin() as conn:
        conn.execute(sa.delete(Case.__table__).where(Case.__table__.c.case_id == "LATE"))
    with signed_in(account("city-duty", "duty_officer")):
        calm = urban.refresh(None, None, "district", by_department[7])
        same = urban.refresh(None, None, "district", calm[7])
        with page.begin() as conn:
            add_case(
                conn, "NEWER", "reported", reported_at=now - timedelta(seconds=20), district_code="511602"
            )
        news = urban.refresh(None, None, "district", same[7])
    assert "LATE" not in repr(calm[8]) and calm[3] == "2" and "0" in repr(calm[4])
    # Nothing changed and no deadline runs: neither table is sent.
    assert same[8] is dash.no_update and same[10] is dash.no_update
    assert same[7]["case-table"] == calm[7]["case-table"]
    # A new case: the list and the month's indicators travel.
    assert "NEWER" in repr(news[8]) and news[10] is not dash.no_update
