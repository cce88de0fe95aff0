"""Exports: datasets read from seeded data, written as CSV and Excel and read back.

Over a migrated SQLite file and an in-process Redis (the API tests' fixtures); the HTTP
side (roles, audit, file names on the wire) is in ``api/test_exports.py``.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook

from dashboards import exports
from dashboards.context import PageContext
from dashboards.i18n import language, t
from models import alerts
from models.clock import CITY_TZ
from models.config import load_settings
from models.schema import HotlineTicket
from tests.unit.dashboards.api.conftest import live  # noqa: F401
from tests.unit.dashboards.signing import account, signed_in
from tests.unit.models.interop.test_cap import draft

#: 10:00 in Guang'an on 25 November 2026.
NOW = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
GUANG_AN, LINSHUI = "511602", "511623"
GUANG_AN_POINT, LINSHUI_POINT = (106.6337, 30.4562), (106.93, 30.33)


@pytest.fixture
def ctx(tmp_path, engine, live) -> PageContext:  # noqa: F811
    return PageContext(settings=load_settings({"CITYOPS_DATA_DIR": str(tmp_path)}), live=live, engine=engine)


def add_ticket(db: sa.Engine, ticket_id: str, ts: datetime, district: str, **more: object) -> None:
    row = {
        "ticket_id": ticket_id,
        "ts": ts,
        "channel": "phone",
        "category": "噪声扰民",
        "title": "夜间施工噪声",
        "content": "小区旁工地夜间施工",
        "district_code": district,
        "caller_name": "赵六六",
        "caller_phone": "13912345678",
        "state": "registered",
    }
    with db.begin() as conn:
        conn.execute(sa.insert(HotlineTicket.__table__), {**row, **more})


def read(ctx: PageContext, name: str, args: dict[str, str] | None = None, scope: str | None = None):
    spec = exports.DATASETS[name]
    query = exports.parse_query(spec, args or {}, now=NOW, scope=scope)
    return exports.read_table(ctx, spec, query, NOW)


def csv_rows(body: bytes) -> list[list[str]]:
    assert body.startswith(b"\xef\xbb\xbf"), "Excel on Windows needs the BOM to read UTF-8"
    return list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))


def test_tickets_of_a_period_as_csv_with_headers_city_times_and_masked_callers(ctx) -> None:
    add_ticket(ctx.engine, "T-1", datetime(2026, 11, 25, 0, 0, tzinfo=UTC), GUANG_AN)
    add_ticket(ctx.engine, "T-2", datetime(2026, 11, 24, 15, 59, tzinfo=UTC), LINSHUI)  # 23:59 on the 24th
    add_ticket(ctx.engine, "T-OLD", datetime(2026, 11, 20, 1, 0, tzinfo=UTC), GUANG_AN)

    table = read(ctx, "tickets", {"since": "2026-11-24", "until": "2026-11-25"})
    rows = csv_rows(exports.write_csv(table))

    assert rows[0][:3] == ["工单号", "来电时间", "渠道"]
    assert rows[0] == [t(c.header_key) for c in exports.DATASETS["tickets"].columns]
    assert [r[0] for r in rows[1:]] == ["T-1", "T-2"], "newest first, the older order left out"
    assert rows[1][1] == "2026-11-25 08:00:00", "times are city time"
    assert rows[2][1] == "2026-11-24 23:59:00"
    assert rows[1][6] == "广安区" and rows[2][6] == "邻水县"
    body = "\n".join(",".join(r) for r in rows)
    assert "赵**" in body and "139****5678" in body
    assert "赵六六" not in body and "13912345678" not in body


def test_tickets_as_excel_read_back(ctx) -> None:
    add_ticket(ctx.engine, "T-1", datetime(2026, 11, 25, 0, 30, tzinfo=UTC), GUANG_AN)
    add_ticket(ctx.engine, "T-2", datetime(2026, 11, 25, 1, 0, tzinfo=UTC), LINSHUI, urgency="urgent")

    book = load_workbook(io.BytesIO(exports.write_xlsx(read(ctx, "tickets"))))
    sheet = book.active

    assert sheet.title == "12345工单"
    assert sheet.freeze_panes == "A2"
    header = [c.value for c in sheet[1]]
    assert header == [t(c.header_key) for c in exports.DATASETS["tickets"].columns]
    assert all(c.font.bold for c in sheet[1])
    values = [[c.value for c in row] for row in sheet.iter_rows(min_row=2)]
    assert [v[0] for v in values] == ["T-2", "T-1"]
    assert values[0][1] == datetime(2026, 11, 25, 9, 0), "a real date-time, in city time"
    assert sheet.cell(row=2, column=2).number_format == "yyyy-mm-dd hh:mm:ss"
    assert values[0][7] == "赵** 139****5678"
    assert values[0][9] == "是" and values[1][9] == "否"
    assert sheet.column_dimensions["F"].width >= 40, "the citizen's words get a wide column"


def test_a_district_account_gets_its_district_whatever_it_asks(ctx) -> None:
    add_ticket(ctx.engine, "T-GA", NOW - timedelta(hours=1), GUANG_AN)
    add_ticket(ctx.engine, "T-LS", NOW - timedelta(hours=1), LINSHUI)

    query = exports.parse_query(exports.DATASETS["tickets"], {"district": GUANG_AN}, now=NOW, scope=LINSHUI)
    assert query.district_code == LINSHUI
    for name in ("tickets", "tickets-recent"):
        assert [r[0] for r in read(ctx, name, scope=LINSHUI).rows] == ["T-LS"], name
    assert sorted(r[0] for r in read(ctx, "tickets").rows) == ["T-GA", "T-LS"]
    assert [r[0] for r in read(ctx, "tickets", {"district": GUANG_AN}).rows] == ["T-GA"]


def test_open_alerts_come_from_the_live_queue_with_the_consoles_filters(ctx) -> None:
    with ctx.engine.begin() as conn:
        changes = [
            alerts.raise_alert(conn, draft("a", "critical", observed_at=NOW), now=NOW - timedelta(minutes=5)),
            alerts.raise_alert(conn, draft("b", "minor", observed_at=NOW), now=NOW - timedelta(minutes=9)),
            alerts.raise_alert(
                conn,
                draft("c", "major", district_code=LINSHUI, observed_at=NOW),
                now=NOW - timedelta(minutes=1),
            ),
        ]
    ctx.live.apply_alert_changes(changes)

    everything = read(ctx, "alerts").rows
    assert [r[0] for r in everything] == [changes[0].alert.id, changes[2].alert.id, changes[1].alert.id]
    assert [r[1] for r in everything] == [
        t("console.severity.critical"),
        t("console.severity.major"),
        t("console.severity.minor"),
    ]
    assert everything[0][6] == changes[0].alert.opened_at
    assert [r[0] for r in read(ctx, "alerts", {"severity": "minor"}).rows] == [changes[1].alert.id]
    assert [r[0] for r in read(ctx, "alerts", scope=LINSHUI).rows] == [changes[2].alert.id]


def test_alert_history_of_a_period_counts_city_days(ctx) -> None:
    midnight = datetime(2026, 11, 25, tzinfo=CITY_TZ)
    with ctx.engine.begin() as conn:
        late = alerts.raise_alert(conn, draft("late"), now=midnight - timedelta(minutes=1)).alert.id
        alerts.raise_alert(conn, draft("today"), now=midnight)
    rows = read(ctx, "alert-history", {"since": "2026-11-24", "until": "2026-11-24"}).rows
    assert [r[0] for r in rows] == [late]
    assert rows[0][1].astimezone(CITY_TZ) == midnight - timedelta(minutes=1)


def test_text_that_looks_like_a_formula_stays_text(ctx) -> None:
    add_ticket(ctx.engine, "T-F", NOW - timedelta(hours=1), GUANG_AN, title='=HYPERLINK("http://x","点我")')
    table = read(ctx, "tickets")

    rows = csv_rows(exports.write_csv(table))
    assert rows[1][4] == '\'=HYPERLINK("http://x","点我")'
    cell = load_workbook(io.BytesIO(exports.write_xlsx(table))).active.cell(row=2, column=5)
    assert cell.data_type == "s" and cell.value.startswith("=HYPERLINK")


def test_rows_are_capped_and_the_table_says_so(ctx, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exports, "ROW_CAP", 3)
    for i in range(5):
        add_ticket(ctx.engine, f"T-{i}", NOW - timedelta(minutes=i), GUANG_AN)
    table = read(ctx, "tickets")
    assert [r[0] for r in table.rows] == ["T-0", "T-1", "T-2"] and table.truncated
    monkeypatch.setattr(exports, "ROW_CAP", 5)
    assert not read(ctx, "tickets").truncated


def test_periods_are_city_days_and_checked() -> None:
    spec = exports.DATASETS["alert-history"]
    q = exports.parse_query(spec, {"since": "2026-11-01", "until": "2026-11-24"}, now=NOW, scope=None)
    assert q.since == datetime(2026, 11, 1, tzinfo=CITY_TZ)
    assert q.until == datetime(2026, 11, 25, tzinfo=CITY_TZ), "until names the last day included"
    default = exports.parse_query(spec, {}, now=NOW, scope=None)
    assert default.since == datetime(2026, 11, 19, tzinfo=CITY_TZ) and default.until > NOW
    month = exports.parse_query(exports.DATASETS["case-indicators"], {}, now=NOW, scope=None)
    assert month.since == datetime(2026, 11, 1, tzinfo=CITY_TZ), "the urban page's month so far"
    for bad in (
        {"since": "2026-11-31"},
        {"since": "2026-11-20", "until": "2026-11-19"},
        {"since": "2024-01-01", "until": "2026-11-24"},
        {"district": "110101"},
    ):
        with pytest.raises(exports.ExportError):
            exports.parse_query(spec, bad, now=NOW, scope=None)
    with pytest.raises(exports.ExportError):
        exports.parse_query(exports.DATASETS["case-indicators"], {"by": "grid"}, now=NOW, scope=None)


def test_case_indicators_by_district_end_with_the_total(ctx) -> None:
    from models import cases

    with ctx.engine.begin() as conn:
        for lon, lat in (GUANG_AN_POINT, GUANG_AN_POINT, LINSHUI_POINT):
            cases.report_case(
                conn,
                source="inspector",
                category="garbage_overflow",
                description="垃圾桶满溢",
                lon=lon,
                lat=lat,
                reporter="inspector-7",
                now=NOW - timedelta(hours=2),
            )
    rows = read(ctx, "case-indicators").rows
    assert [(r[0], r[1]) for r in rows] == [("广安区", 2), ("邻水县", 1), ("合计", 3)]
    scoped = read(ctx, "case-indicators", scope=LINSHUI).rows
    assert [(r[0], r[1]) for r in scoped] == [("邻水县", 1), ("合计", 1)]
    sheet = load_workbook(io.BytesIO(exports.write_xlsx(read(ctx, "case-indicators")))).active
    assert sheet.cell(row=2, column=5).number_format == "0.0%"


def test_headers_follow_the_language() -> None:
    spec = exports.DATASETS["tickets"]
    with language("en"):
        table = exports.ExportTable(
            "tickets", "x", spec.columns, tuple(t(c.header_key) for c in spec.columns)
        )
    assert table.headers[:2] == ("Order", "Called")


def test_file_names_and_content_disposition() -> None:
    assert exports.file_name("alerts", "xlsx", NOW) == "cityops-alerts-20261125.xlsx"
    late = datetime(2026, 11, 25, 16, 30, tzinfo=UTC)  # 00:30 on the 26th in Guang'an
    scoped = exports.ExportQuery(district_code=LINSHUI)
    assert exports.file_name("tickets", "csv", late, scoped) == "cityops-tickets-511623-20261126.csv"
    assert exports.content_disposition("cityops-alerts-20261125.xlsx") == (
        'attachment; filename="cityops-alerts-20261125.xlsx"'
    )
    chinese = exports.content_disposition("运行日报.png")
    assert "filename*=UTF-8''%E8%BF%90%E8%A1%8C%E6%97%A5%E6%8A%A5.png" in chinese
    assert 'filename="____.png"' in chinese


def test_every_dataset_reads_and_writes_on_an_empty_city(ctx) -> None:
    for name, spec in exports.DATASETS.items():
        table = read(ctx, name)
        assert len(table.headers) == len(spec.columns), name
        assert all(len(row) == len(spec.columns) for row in table.rows), name
        assert csv_rows(exports.write_csv(table))[0] == list(table.headers), name
        assert load_workbook(io.BytesIO(exports.write_xlsx(table))).active.max_column == len(spec.columns)


def test_export_links_for_those_who_may_export() -> None:
    with signed_in(account("boss", "leader")):
        links = exports.export_links("tickets", since="2026-11-01", district=None)
        hrefs = [a.href for a in links.children]
    assert hrefs == ["/api/export/tickets.csv?since=2026-11-01", "/api/export/tickets.xlsx?since=2026-11-01"]
    with signed_in(account("wall", "viewer")):
        hidden = exports.export_links("tickets")
    assert hidden.hidden is True and not getattr(hidden, "children", None)
    with pytest.raises(KeyError):
        exports.export_href("nothing", "csv")


def test_repeat_clusters_as_the_hotline_page_groups_them(ctx) -> None:
    hour = timedelta(hours=1)
    add_ticket(ctx.engine, "T-A", NOW - 5 * hour, GUANG_AN)
    add_ticket(ctx.engine, "T-B", NOW - 4 * hour, GUANG_AN, repeat_of="T-A", state="merged")
    add_ticket(ctx.engine, "T-C", NOW - 3 * hour, GUANG_AN, likely_repeat_of="T-B")
    add_ticket(ctx.engine, "T-X", NOW - 2 * hour, LINSHUI)
    add_ticket(ctx.engine, "T-Y", NOW - hour, LINSHUI, likely_repeat_of="T-X")

    rows = read(ctx, "tickets-repeats").rows
    assert [r[:6] for r in rows] == [
        ("T-A", "噪声扰民", "广安区", 3, 1, 1),
        ("T-X", "噪声扰民", "邻水县", 2, 0, 1),
    ]
    assert rows[0][6] == NOW - 3 * hour
    assert [r[0] for r in read(ctx, "tickets-repeats", scope=LINSHUI).rows] == ["T-X"]


def test_daily_aqi_of_yesterday_per_district(ctx) -> None:
    from models.air_quality import day_hours
    from models.schema import ObservationHourly
    from models.standards import aqi

    yesterday = datetime(2026, 11, 24).date()
    with ctx.engine.begin() as conn:
        conn.execute(
            sa.insert(ObservationHourly.__table__),
            [
                {
                    "device_id": "aq-1",
                    "metric": "pm25",
                    "hour": hour,
                    "district_code": GUANG_AN,
                    "count": 1,
                    "sum": 40.0,
                    "min": 40.0,
                    "max": 40.0,
                    "last_ts": hour,
                    "last_value": 40.0,
                }
                for hour in day_hours(yesterday)
            ],
        )
    expected = aqi.daily_from_hourly({"pm25": [40.0] * 24}, on=yesterday)
    rows = {r[0]: r for r in read(ctx, "daily-aqi").rows}
    assert rows["广安区"][1:4] == (expected.aqi, expected.category, "PM2.5")
    assert rows["邻水县"][1:3] == (None, "数据不足")
    assert [r[0] for r in read(ctx, "daily-aqi", scope=LINSHUI).rows] == ["邻水县"]


def _hrefs(component: object) -> list[str]:
    """Every link target in a layout tree."""
    found: list[str] = []
    href = getattr(component, "href", None)
    if isinstance(href, str):
        found.append(href)
    children = getattr(component, "children", None)
    for child in children if isinstance(children, list | tuple) else [children]:
        if child is not None and not isinstance(child, str | int | float):
            found += _hrefs(child)
    return found


@pytest.mark.parametrize(
    ("page", "datasets"),
    [
        ("hotline", {"tickets-recent", "tickets-overdue", "tickets-repeats"}),
        ("urban", {"cases", "case-indicators"}),
        ("emergency", {"incidents", "sensors"}),
        ("alerts", {"alerts"}),
        ("ecology", {"air-stations", "water-sections", "noise", "daily-aqi"}),
        ("overview", {"districts"}),
    ],
)
def test_every_page_table_has_its_download(ctx, page: str, datasets: set[str]) -> None:
    import importlib

    import dash

    dash.Dash(__name__, use_pages=True, pages_folder="")  # pages register with an app that has pages
    module = importlib.import_module(f"dashboards.pages.{page}")
    with signed_in(account("boss", "leader")):
        hrefs = _hrefs(module.layout())
    linked = {h.removeprefix("/api/export/").rsplit(".", 1)[0] for h in hrefs if h.startswith("/api/export/")}
    assert linked == datasets
    assert all(ds in exports.DATASETS for ds in linked)


def _export_groups(component: object, ancestors: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Every CSV/Excel link group in a layout tree, as the path from the root down to it."""
    path = (*ancestors, component)
    if getattr(component, "className", None) == "export-links":
        return [path]
    found: list[tuple[object, ...]] = []
    children = getattr(component, "children", None)
    for child in children if isinstance(children, list | tuple) else [children]:
        if child is not None and not isinstance(child, str | int | float):
            found += _export_groups(child, path)
    return found


def _names_something(component: object) -> bool:
    """A heading (its text may come from a callback) or a label with text of its own."""
    kind = type(component).__name__
    text = getattr(component, "children", None)
    labelled = kind in ("Span", "Label") and isinstance(text, str) and bool(text.strip())
    return kind in ("H2", "H3") or labelled


@pytest.mark.parametrize(
    "page", ["hotline", "urban", "emergency", "alerts", "ecology", "overview", "district"]
)
def test_every_download_is_named_by_what_stands_beside_it(ctx, page: str) -> None:
    """The links say CSV and Excel only: a heading or label next to them, at most three
    levels up (the panel's head), says what they download."""
    import importlib

    import dash

    dash.Dash(__name__, use_pages=True, pages_folder="")
    module = importlib.import_module(f"dashboards.pages.{page}")
    with signed_in(account("boss", "leader")):
        groups = _export_groups(module.layout(code="511623") if page == "district" else module.layout())
    assert groups
    for path in groups:
        links = path[-1]
        named = False
        for below, holder in list(zip(path[1:], path[:-1], strict=True))[::-1][:3]:
            siblings = getattr(holder, "children", None) or []
            siblings = siblings if isinstance(siblings, list | tuple) else [siblings]
            named = named or any(_names_something(s) for s in siblings if s is not below)
        assert named, (page, _hrefs(links))
