"""/admin/system: the process tables from heartbeats (live, stale, stopped, gone), the summary,
the dependencies' readiness, and the callback reading Redis for an administrator."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dash
import fakeredis
import pytest

from dashboards import context
from dashboards.api import health
from dashboards.context import PageContext
from dashboards.i18n import language
from ingest import heartbeat
from ingest.heartbeat import INGEST, WEB, ProcessStatus
from models.config import load_settings
from models.live import LiveStore
from tests.unit.dashboards.signing import account, signed_in

NOW = datetime(2026, 7, 15, 2, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def system() -> Any:
    """The page module; Dash wants an app with pages before a page registers itself."""
    dash.Dash(__name__, use_pages=True, pages_folder="")
    from dashboards.pages import system as page

    return page


def text(component: Any) -> str:
    return json.dumps(component.to_plotly_json(), ensure_ascii=False, default=lambda c: c.to_plotly_json())


def worker(member: str, state: str, **figures: str) -> ProcessStatus:
    return ProcessStatus(INGEST, member, state, 3.0, figures)  # type: ignore[arg-type]


def test_ingest_table_shows_each_worker_with_its_figures_and_state(system: Any) -> None:
    running = worker(
        "north-1",
        "live",
        host="ingest-01",
        pid="4242",
        stored="125000",
        rejected="3",
        rate="812.5",
        batch_s="0.0234",
        lag_s="0.081",
        queue_depth="12",
        connected="1",
        rss_bytes=str(180 * 2**20),
        started_at="2026-07-15T01:00:00+00:00",
    )
    gone = worker("north-2", "gone")
    with language("zh"):
        table = text(system.ingest_table([running, gone], NOW))
    assert "north-1" in table and "ingest-01" in table and "4242" in table
    assert "125,000" in table and "812.5" in table and "23 ms" in table and "81 ms" in table
    assert "180 MB" in table and "已连接" in table and "09:00:00" in table  # city time, UTC+8
    assert "运行中" in table and "已消失" in table
    assert "sla-overdue" in table  # a gone worker stands out
    assert table.count("—") >= 5  # its figures are unknown, not zero


def test_a_degraded_worker_says_why(system: Any) -> None:
    slow = worker("w", "live", connected="1", degraded="database: OperationalError: timeout")
    with language("en"):
        table = text(system.ingest_table([slow], NOW))
    assert "degraded: database: OperationalError: timeout" in table


def test_web_table_and_summary_count_only_running_processes(system: Any) -> None:
    web = [
        ProcessStatus(WEB, "web-01:101", "live", 1.0, {"viewers": "20", "requests": "5000", "rate": "12.5"}),
        ProcessStatus(WEB, "web-01:102", "live", 2.0, {"viewers": "15", "requests": "4000"}),
        ProcessStatus(WEB, "web-02:77", "stale", 40.0, {"viewers": "9"}),
    ]
    ingest = [worker("a", "live"), worker("b", "stopped")]
    with language("en"):
        table = text(system.web_table(web, NOW))
        line = system.summary(ingest, web, NOW)
        assert "web-01" in table and "101" in table and "5,000" in table and "stale" in table
        assert "1 ingest workers" in line and "2 web processes" in line and "35 viewers" in line
        assert system.ingest_table([], NOW).children == "No ingest worker has reported"


def test_readiness_names_each_dependency_and_shows_a_red_one(system: Any) -> None:
    results = {
        "broker": health.CheckResult(True, "connected to 127.0.0.1:1883", 0.01),
        "database": health.CheckResult(False, "OperationalError: connection refused", 3.0),
    }
    with language("zh"):
        table = text(system.readiness_table(results))
    assert "MQTT 消息服务器" in table and "正常" in table
    assert "数据库" in table and "异常" in table and "connection refused" in table


@pytest.fixture
def page_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PageContext:
    live = LiveStore(fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True))
    ctx = PageContext(settings=load_settings({"CITYOPS_DATA_DIR": str(tmp_path)}), live=live, engine=None)  # type: ignore[arg-type]
    monkeypatch.setattr(context, "_context", ctx)
    return ctx


def test_the_callback_reads_the_heartbeats_for_an_administrator(
    system: Any, page_context: PageContext
) -> None:
    client = page_context.live.redis
    now = datetime.now(UTC).timestamp()
    heartbeat.write_beat(client, INGEST, "north-1", {"stored": 10, "connected": 1}, now=now)
    heartbeat.write_beat(client, WEB, "web-01:101", {"viewers": 3}, now=now)
    heartbeat.write_beat(client, WEB, "web-01:102", {"viewers": 2}, now=now - 30)
    with signed_in(account("root", "admin"), "/admin/system"):
        line, ingest, web = system.show_processes(1)
    assert "north-1" in text(ingest)
    assert "101" in text(web) and "心跳中断" in text(web)  # the second one stopped beating 30 s ago
    assert "接入进程 1 个" in line and "网页进程 1 个" in line and "在线观看 3 人" in line


def test_redis_away_keeps_the_tables_and_says_so(
    system: Any, page_context: PageContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    def away(*_args: object, **_kwargs: object) -> None:
        raise ConnectionError("Connection refused")

    monkeypatch.setattr(heartbeat, "read_beats", away)
    with signed_in(account("root", "admin"), "/admin/system"):
        line, ingest, web = system.show_processes(1)
    assert "ConnectionError" in line and ingest is dash.no_update and web is dash.no_update


def test_the_page_is_registered_for_administrators_only(system: Any) -> None:
    page = next(p for p in dash.page_registry.values() if p["path"] == "/admin/system")
    assert page["permission"] == "admin"
