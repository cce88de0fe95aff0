"""The duty officers' console: queue order, SLA countdowns, filters, evidence, history,
actions through the lifecycle, and comments shown as text."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import fakeredis
import pytest
import sqlalchemy as sa

from dashboards import console
from dashboards.i18n import STRINGS
from models import alerts
from models.alerts import AlertDraft, AlertEventView
from models.lifecycle import Actor
from models.live import LiveAlert, LiveStore
from tests.unit.models.test_alerts import draft as alert_draft

ROOT = Path(__file__).resolve().parents[3]
NOW = datetime(2026, 7, 1, 2, 0, tzinfo=UTC)  # 10:00 in Guang'an
OFFICER = Actor("张三", "duty_officer", "张三")


def live_alert(alert_id: int, severity: str = "major", *, opened_min_ago: float = 5, **changes) -> LiveAlert:
    base = {
        "id": alert_id,
        "rule_id": "smoke_alarm",
        "domain": "emergency",
        "severity": severity,
        "colour": {"critical": "red", "major": "orange", "minor": "yellow", "info": "blue"}[severity],
        "title": f"告警{alert_id}",
        "message": "",
        "state": "new",
        "district_code": "511602",
        "grid_id": None,
        "lon": 106.63,
        "lat": 30.47,
        "opened_at": NOW - timedelta(minutes=opened_min_ago),
        "last_seen_at": None,
        "occurrences": 1,
        "acknowledged_by": None,
        "acknowledged_at": None,
        "assigned_to": None,
        "escalation_level": 0,
        "sla_due": None,
        "cleared": False,
        "audible": severity in {"critical", "major"},
        "version": 1,
    }
    base.update(changes)
    return LiveAlert(**base)


# ---- queue -----------------------------------------------------------------------------------


def test_queue_is_most_severe_first_then_oldest_first_then_lowest_id() -> None:
    queue = [
        live_alert(1, "minor", opened_min_ago=60),
        live_alert(2, "critical", opened_min_ago=1),
        live_alert(3, "major", opened_min_ago=30),
        live_alert(4, "critical", opened_min_ago=10),
        live_alert(5, "critical", opened_min_ago=10),
        live_alert(6, "info", opened_min_ago=600),
    ]
    assert [a.id for a in console.queue_order(queue)] == [4, 5, 2, 3, 1, 6]


def test_queue_rows_carry_labels_age_handler_and_flash_from_the_audible_set() -> None:
    queue = [
        live_alert(1, "critical", opened_min_ago=2, sla_due=NOW + timedelta(seconds=30)),
        live_alert(2, "major", state="acknowledged", acknowledged_by="李四", audible=False),
    ]
    rows = console.queue_rows(queue, NOW, audible={1})
    assert rows[0].severity_label == "Ⅰ级 特别严重"
    assert rows[0].district == "广安区"
    assert rows[0].state_label == "待确认"
    assert rows[0].age == "2:00"
    assert rows[0].audible and not rows[1].audible
    assert rows[1].handler == "李四"
    assert rows[1].sla.text == "已确认"
    # Acknowledged elsewhere a moment ago: the audible set wins over a stale hash.
    assert not console.queue_rows(queue, NOW, audible=set())[0].audible


@pytest.mark.parametrize(
    ("due_in_s", "state", "text"),
    [
        (90, "ok", "剩余 1:30"),
        (60, "due_soon", "即将超时 1:00"),
        (5, "due_soon", "即将超时 0:05"),
        (0, "overdue", "已超时 0:00"),
        (-125, "overdue", "已超时 2:05"),
        (-3 * 3600 - 61, "overdue", "已超时 3:01:01"),
    ],
)
def test_sla_countdown_states_with_a_fixed_clock(due_in_s: int, state: str, text: str) -> None:
    status = console.sla_status(NOW + timedelta(seconds=due_in_s), NOW, state="new")
    assert (status.state, status.text) == (state, text)


def test_no_deadline_reads_acknowledged_or_a_dash() -> None:
    assert console.sla_status(None, NOW, state="acknowledged").text == "已确认"
    assert console.sla_status(None, NOW, state="new").text == "—"  # info alerts have no SLA
    assert console.sla_status(None, NOW).state == "none"


def test_durations_beyond_a_day() -> None:
    assert console.duration_text(2 * 86_400 + 5 * 3600 + 7) == "2天5小时"
    assert console.duration_text(-10) == "0:00"


def test_ticking_cells_carry_their_instants_and_the_table_the_texts_in_the_viewers_language() -> None:
    from dashboards.i18n import language

    due = NOW + timedelta(seconds=90, milliseconds=250)
    assert console.sla_data(due) == {"data-sla-due": str(int(due.timestamp() * 1000))}
    assert console.sla_data(due)["data-sla-due"] == "1782871290250"
    assert console.sla_data(None) == {}  # no deadline: a text that does not tick
    assert console.age_data(NOW - timedelta(minutes=2)) == {
        "data-since": str(console.epoch_ms(NOW) - 120_000)
    }
    texts = console.countdown_texts()
    assert texts["data-sla-due-soon-s"] == str(console.DUE_SOON_S)
    assert (texts["data-sla-ok"], texts["data-sla-due-soon"], texts["data-sla-overdue"]) == (
        "剩余 {left}",
        "即将超时 {left}",
        "已超时 {over}",
    )
    assert texts["data-duration-ms"] == "{m}:{s:02d}" and texts["data-duration-days"] == "{d}天{h}小时"
    with language("en"):
        english = console.countdown_texts()
    assert (
        english["data-sla-overdue"] == "overdue by {over}" and english["data-duration-days"] == "{d} d {h} h"
    )


def test_countdown_templates_use_only_fields_the_browser_fills() -> None:
    """assets/cityops-console.js fills {name} and {name:0Nd}, as str.format does: a
    template with another spec would tick wrongly in the browser."""
    import string

    for key in (*console.DURATION_TEXT_KEYS.values(), *console.SLA_TEXT_KEYS.values()):
        for lang, template in STRINGS[key].items():
            for _, name, spec, conversion in string.Formatter().parse(template):
                if name is None:
                    continue
                assert name.isidentifier() and conversion is None, (key, lang, name)
                assert re.fullmatch(r"(0?\d*d)?", spec or ""), (key, lang, spec)


# What the browser's script writes, run by Node on stand-in cells (the browser test runs
# it in Chromium on the real page).
_NODE_RENDER = """
const fs = require("fs");
global.window = {setInterval: () => 0, setTimeout: () => 0};
global.document = {querySelectorAll: () => []};
new Function(fs.readFileSync(process.argv[1], "utf8"))();
const cases = JSON.parse(fs.readFileSync(0, "utf8"));
const element = (attributes, around) => ({
  getAttribute: (name) => (name in attributes ? attributes[name] : null),
  hasAttribute: (name) => name in attributes,
  closest(selector) {
    const name = selector.slice(1, -1);  // "[data-…]"
    return name in attributes ? this : around ? around.closest(selector) : null;
  },
});
const out = cases.map(([attributes, texts, nowMs]) => {
  const classes = new Set(["num", "sla", "sla-ok"]);
  const cell = element(attributes, element(texts, null));
  cell.textContent = "";
  cell.classList = {
    contains: (c) => classes.has(c), add: (c) => classes.add(c), remove: (c) => classes.delete(c),
  };
  window.cityopsConsole.render(cell, nowMs);
  return [cell.textContent, [...classes].filter((c) => c.startsWith("sla-"))];
});
process.stdout.write(JSON.stringify(out));
"""


def test_the_browser_script_writes_what_the_server_would_at_each_moment() -> None:
    from dashboards.i18n import LANGUAGES, language
    from tests.conftest import service_missing

    if shutil.which("node") is None:  # under CI=true a failure: make test installs nodejs
        service_missing("Node.js", "node is not installed; it runs the console's browser script here")

    script = ROOT / "assets" / "cityops-console.js"
    due = NOW + timedelta(milliseconds=400)  # deadlines are not on whole seconds
    offsets = [
        -90_061.2,
        -3_601,
        -59.6,
        -1,
        -0.3,
        0,
        0.3,
        1,
        59,
        59.7,
        60,
        60.4,
        61,
        3599,
        3600,
        86_399,
        86_400,
    ]
    offsets += [2 * 86_400 + 5 * 3600 + 7]
    cases, expected = [], []
    for lang in LANGUAGES:
        with language(lang):
            for left in offsets:
                now = due - timedelta(seconds=left)
                now_ms = console.epoch_ms(now)
                now = datetime.fromtimestamp(now_ms / 1000, UTC)  # the browser counts in ms
                status = console.sla_status(due, now, state="new")
                # The table carries the texts (the detail's cell carries both: same code).
                cases.append([console.sla_data(due), console.countdown_texts(), now_ms])
                expected.append([status.text, [f"sla-{status.state}"]])
                opened = due - timedelta(hours=1)
                cases.append([console.age_data(opened), console.countdown_texts(), now_ms])
                expected.append([console.duration_text((now - opened).total_seconds()), ["sla-ok"]])
    answer = subprocess.run(
        ["node", "-e", _NODE_RENDER, str(script)],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert json.loads(answer.stdout) == expected


def test_filters_combine_and_empty_values_mean_all() -> None:
    queue = [
        live_alert(1, "critical", domain="emergency", district_code="511602"),
        live_alert(2, "major", domain="urban", district_code="511623"),
        live_alert(3, "critical", domain="urban", district_code="511623", state="acknowledged"),
    ]
    assert [a.id for a in console.filter_alerts(queue, console.Filters.of("", None, "", None))] == [1, 2, 3]
    assert [a.id for a in console.filter_alerts(queue, console.Filters.of("urban", None, None, None))] == [
        2,
        3,
    ]
    urban_critical = console.Filters.of("urban", "critical", "511623", None)
    assert [a.id for a in console.filter_alerts(queue, urban_critical)] == [3]
    assert console.filter_alerts(queue, console.Filters.of(None, None, None, "escalated")) == []


def test_keyboard_selection_moves_within_the_queue() -> None:
    ids = [4, 5, 2]
    assert console.move_selection(ids, None, 1) == 4
    assert console.move_selection(ids, 4, 1) == 5
    assert console.move_selection(ids, 2, 1) == 2
    assert console.move_selection(ids, 4, -1) == 4
    assert console.move_selection(ids, 99, -1) == 4  # the selected alert left the queue
    assert console.move_selection([], 4, 1) is None


# ---- evidence and history --------------------------------------------------------------------


def test_evidence_in_chinese_labels_and_city_time() -> None:
    evidence = {
        "first": {"observed_at": "2026-07-01T02:00:00+00:00", "smoke": 0.45},
        "recent": [
            {"observed_at": "2026-07-01T02:00:00+00:00", "smoke": 0.45},
            {
                "observed_at": "2026-07-01T02:01:00+00:00",
                "events": [{"camera_id": "cam-1", "confidence": 0.9}],
            },
        ],
        "total": 7,
    }
    view = console.evidence_view(evidence)
    assert view is not None and view.total == 7
    assert [(x.label, x.value) for x in view.first] == [
        ("观测时间", "2026-07-01 10:00:00"),
        ("smoke", "0.45"),
    ]
    newest = view.recent[0]  # newest first
    assert newest[1].label == "事件"
    assert newest[1].value == "摄像头 cam-1，置信度 0.9"
    assert console.evidence_view(None) is None


def test_history_is_newest_first_with_state_changes_and_the_comment_verbatim() -> None:
    events = [
        AlertEventView(1, NOW - timedelta(minutes=3), "raise", None, "new", "rule:smoke", None, None, None),
        AlertEventView(
            2, NOW, "acknowledge", "new", "acknowledged", "张三", "10.0.0.5", "<b>已电话核实</b>", None
        ),
    ]
    rows = console.history_rows(events, NOW)
    assert [r.action for r in rows] == ["确认", "触发"]
    assert rows[0].transition == "待确认 → 已确认"
    assert rows[0].time == "10:00:00"
    assert rows[0].comment == "<b>已电话核实</b>"  # kept as typed; drawn as text
    assert rows[1].address == "—"


def test_comments_and_names_are_trimmed_and_bounded_but_not_altered() -> None:
    assert console.clean_comment("  <script>alert(1)</script>  ") == "<script>alert(1)</script>"
    assert console.clean_comment("   ") is None
    assert len(console.clean_comment("长" * 2000) or "") == console.COMMENT_MAX
    assert console.clean_officer_name("  张  三 ") == "张 三"
    assert console.clean_officer_name("") is None


@pytest.fixture(scope="module")
def page():
    """The page module; Dash wants an app with pages before a page registers itself."""
    import dash

    dash.Dash(__name__, use_pages=True, pages_folder="")
    from dashboards.pages import alerts as page

    return page


def test_comments_are_rendered_as_text_never_as_html_or_markdown(page) -> None:
    from dash import html

    hostile = '<img src=x onerror="alert(1)">**bold**'
    rows = console.history_rows(
        [AlertEventView(1, NOW, "acknowledge", "new", "acknowledged", "张三", None, hostile, None)], NOW
    )
    table = page.history_table(rows)[-1]
    cells = [c for tr in table.children[1].children for c in tr.children]
    comment = cells[-1]
    assert isinstance(comment, html.Td) and comment.children == hostile  # a string child: a text node
    for path in (ROOT / "dashboards" / "console.py", ROOT / "dashboards" / "pages" / "alerts.py"):
        source = path.read_text()
        for unsafe in ("dangerously_allow_html", "dangerouslySetInnerHTML", "dcc.Markdown", "innerHTML"):
            assert unsafe not in source, f"{path.name} uses {unsafe}"


def test_every_console_string_has_chinese_and_english() -> None:
    keys = [k for k in STRINGS if k.startswith(("console.", "nav.alerts", "unit.duration"))]
    assert len(keys) > 50
    for key in keys:
        assert STRINGS[key]["zh"] and STRINGS[key]["en"], key
        assert re.search(r"[\u4e00-\u9fff]|^[—\d{}:]", STRINGS[key]["zh"]), key
    for action in console.ACTIONS:
        assert f"console.action.{action}" in STRINGS
    for severity in console.SEVERITIES:
        assert f"console.severity.{severity}" in STRINGS


def test_location_figure_is_offline_and_keeps_the_view_per_alert() -> None:
    fig = console.location_figure(7, 106.63, 30.47, "red", centre={"lon": 106.6, "lat": 30.4})
    layout = fig.to_plotly_json()["layout"]
    style = layout["map"]["style"]
    assert style["sources"] == {} and "glyphs" not in style  # nothing to fetch, no text
    assert layout["uirevision"] == "alert-7"
    assert fig.data[0].marker.color == console.WARNING_HEX["red"]
    assert layout["map"]["center"] == {"lon": 106.63, "lat": 30.47}
    empty = console.location_figure(None, None, None, "", centre={"lon": 106.6, "lat": 30.4})
    assert list(empty.data[0].lon) == []


# ---- actions ---------------------------------------------------------------------------------


@pytest.fixture
def live() -> LiveStore:
    return LiveStore(fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True))


def raise_smoke_alarm(engine: sa.Engine, live: LiveStore) -> int:
    draft = AlertDraft(
        rule_id="smoke_alarm",
        domain="emergency",
        severity="critical",
        title="测试烟感烟雾报警",
        message="烟雾浓度0.45dB/m",
        dedup_key="smoke_alarm:smoke-1",
        source_kind="device",
        source_id="smoke-1",
        district_code="511602",
        grid_id=None,
        lon=106.63,
        lat=30.47,
        evidence={"smoke": 0.45},
    )
    with engine.begin() as conn:
        change = alerts.raise_alert(conn, draft, now=NOW)
    live.apply_alert_changes([change])
    return change.alert.id


def test_acknowledge_commits_pushes_to_redis_and_silences_the_alarm(engine, live) -> None:
    alert_id = raise_smoke_alarm(engine, live)
    assert live.audible_alerts() == {alert_id}
    outcome = console.perform_action(
        engine, live, "acknowledge", alert_id, actor=OFFICER, address="10.0.0.5", comment=" 已核实 ", now=NOW
    )
    assert outcome.ok and outcome.message == f"已确认告警 {alert_id}"
    assert live.audible_alerts() == set()
    assert live.alert(alert_id).state == "acknowledged"
    assert live.alert(alert_id).acknowledged_by == "张三"
    with engine.connect() as conn:
        last = alerts.alert_history(conn, alert_id)[-1]
    assert (last.actor, last.address, last.comment) == ("张三", "10.0.0.5", "已核实")


def test_a_second_acknowledgement_is_refused_naming_who_was_first(engine, live) -> None:
    alert_id = raise_smoke_alarm(engine, live)
    console.perform_action(
        engine, live, "acknowledge", alert_id, actor=OFFICER, address=None, comment=None, now=NOW
    )
    other = Actor("李四", "duty_officer", "李四")
    outcome = console.perform_action(
        engine, live, "acknowledge", alert_id, actor=other, address=None, comment=None, now=NOW
    )
    assert not outcome.ok and outcome.change is None
    assert "张三" in outcome.message and outcome.message.startswith("操作未执行：")


def test_assign_needs_a_unit_and_the_whole_path_to_resolved(engine, live) -> None:
    alert_id = raise_smoke_alarm(engine, live)
    act = lambda action, **kw: console.perform_action(  # noqa: E731
        engine, live, action, alert_id, actor=OFFICER, address=None, comment=None, now=NOW, **kw
    )
    assert act("acknowledge").ok
    refused = act("assign", assignee="  ")
    assert not refused.ok and "指派须指明" in refused.message
    assert act("assign", assignee="广安区消防救援大队").ok
    assert live.alert(alert_id).assigned_to == "广安区消防救援大队"
    assert act("escalate").ok
    assert act("acknowledge").ok
    assert act("resolve").ok
    assert live.open_alerts() == []


def test_false_alarm_and_unknown_alerts_and_actions(engine, live) -> None:
    alert_id = raise_smoke_alarm(engine, live)
    ok = console.perform_action(
        engine, live, "mark_false_alarm", alert_id, actor=OFFICER, address=None, comment="传感器故障", now=NOW
    )
    assert ok.ok and live.audible_alerts() == set() and live.open_alerts() == []
    missing = console.perform_action(
        engine, live, "acknowledge", 999, actor=OFFICER, address=None, comment=None, now=NOW
    )
    assert not missing.ok and "999" in missing.message
    with pytest.raises(ValueError):
        console.perform_action(
            engine, live, "drop_table", alert_id, actor=OFFICER, address=None, comment=None, now=NOW
        )


def test_identity_is_the_signed_in_user_never_a_typed_name(page) -> None:
    import flask

    from models.schema import Role
    from models.users import Account

    assert page.current_actor(" 王五 ") is None  # outside a request: nobody, whatever was typed
    account = Account(1, "wangwu", "王五", Role.DUTY_OFFICER, None, False, None, NOW, None)
    with flask.Flask("test").test_request_context("/alerts"):
        assert page.current_actor("张三") is None  # anonymous
        flask.g.cityops_account = account
        assert page.current_actor("张三") == Actor("wangwu", "duty_officer", "王五")


# ---- the page's refresh ----------------------------------------------------------------------


@pytest.fixture
def console_page(tmp_path: Path, engine: sa.Engine, page):
    """The real app over this database and an empty live store: (page module, live store)."""
    from app import create_app
    from models.config import load_settings
    from models.reference import seed_reference_data

    seed_reference_data(engine)
    store = LiveStore(fakeredis.FakeRedis(decode_responses=True))
    create_app(load_settings({"CITYOPS_DATA_DIR": str(tmp_path)}), live=store, engine=engine)
    return page, store


def refresh_at(page, monkeypatch, at: datetime, drawn: dict | None, selected: int | None = None) -> tuple:
    from tests.unit.dashboards.signing import account, signed_in

    monkeypatch.setattr(page, "_now", lambda: at)
    with signed_in(account("zhangsan", "duty_officer")):
        return page.refresh_queue(1, None, None, None, None, None, selected, None, drawn)


def test_the_queue_table_travels_only_when_its_rows_change_not_as_time_passes(
    console_page, engine, monkeypatch
) -> None:
    import dash

    page, store = console_page
    first_id = raise_smoke_alarm(engine, store)
    due = store.alert(first_id).sla_due
    assert due is not None
    first = refresh_at(page, monkeypatch, NOW + timedelta(seconds=5), None)
    table, live_data, drawn = first[0], first[2], first[5]
    assert "剩余 1:55" in repr(table)  # rendered right at render time (no script needed)
    assert live_data["at_ms"] == console.epoch_ms(NOW + timedelta(seconds=5))

    # One second later, same queue: the countdown's text changed, but no table is sent.
    later = refresh_at(page, monkeypatch, NOW + timedelta(seconds=6), drawn)
    assert later[0] is dash.no_update
    assert later[2]["at_ms"] - live_data["at_ms"] == 1000  # the browser's clock moves on
    # Past the due-soon mark and past the deadline: the browser changes state, not the server.
    for seconds in (75, 130):
        assert refresh_at(page, monkeypatch, NOW + timedelta(seconds=seconds), drawn)[0] is dash.no_update

    # A new alert: the table is sent, with the new row.
    with engine.begin() as conn:
        change = alerts.raise_alert(
            conn,
            alert_draft(
                "water_level:w-1",
                rule_id="water_level",
                title="测试水位超警戒",
                message="",
                source_kind="device",
                source_id="w-1",
                grid_id=None,
                evidence={},
            ),
            now=NOW + timedelta(seconds=7),
        )
    store.apply_alert_changes([change])
    added = refresh_at(page, monkeypatch, NOW + timedelta(seconds=8), drawn)
    assert added[0] is not dash.no_update and "测试水位超警戒" in repr(added[0])
    assert added[5] != drawn
    # Selecting a row and acknowledging an alert redraw it too.
    selected = refresh_at(page, monkeypatch, NOW + timedelta(seconds=9), added[5], selected=first_id)
    assert selected[0] is not dash.no_update
    console.perform_action(
        engine, store, "acknowledge", first_id, actor=OFFICER, address=None, comment=None, now=NOW
    )
    acked = refresh_at(page, monkeypatch, NOW + timedelta(seconds=10), selected[5], selected=first_id)
    assert acked[0] is not dash.no_update and "已确认" in repr(acked[0])


def test_the_sla_cell_carries_its_deadline_and_the_table_its_templates(
    console_page, engine, monkeypatch
) -> None:
    from dash import html

    page, store = console_page
    alert_id = raise_smoke_alarm(engine, store)
    due = store.alert(alert_id).sla_due
    table = refresh_at(page, monkeypatch, NOW + timedelta(seconds=65), None)[0]
    row = next(tr for tr in table.children[1].children if tr.id == f"console-row-{alert_id}")
    age, sla = row.children[4], row.children[5]
    assert isinstance(sla, html.Td)
    assert due == NOW + timedelta(minutes=2)  # a critical alert's deadline
    assert sla.to_plotly_json()["props"]["data-sla-due"] == str(console.epoch_ms(due))
    around = table.to_plotly_json()["props"]
    assert around["data-sla-ok"] == "剩余 {left}" and around["data-sla-overdue"] == "已超时 {over}"
    assert around["data-duration-ms"] == "{m}:{s:02d}" and around["data-sla-due-soon-s"] == "60"
    # 55 s left at render time: the server's text and state, which the script carries on.
    assert sla.children == "即将超时 0:55" and "sla-due_soon" in sla.className.split()
    assert (
        age.to_plotly_json()["props"]["data-since"] == str(console.epoch_ms(NOW)) and age.children == "1:05"
    )
    # The detail's deadline ticks too; it carries its texts itself.
    with engine.connect() as conn:
        detail = page.detail_view(alerts.get_alert(conn, alert_id), NOW + timedelta(seconds=65))
    deadline = next(
        c for c in _walk(detail) if isinstance(c, html.Dd) and "sla" in (getattr(c, "className", None) or "")
    )
    props = deadline.to_plotly_json()["props"]
    assert props["children"] == "即将超时 0:55" and props["data-sla-due"] == str(console.epoch_ms(due))
    assert props["data-sla-due-soon"] == "即将超时 {left}"


def _walk(component):
    yield component
    children = getattr(component, "children", None)
    for child in children if isinstance(children, list) else [children]:
        if hasattr(child, "to_plotly_json"):
            yield from _walk(child)
