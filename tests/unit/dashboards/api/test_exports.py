"""``/api/export/…`` and ``/api/briefing/….png`` through the real app: the sign-in gate, the
export permission, district scoping, the audit entry, file names and the files themselves."""

from __future__ import annotations

import csv
import dataclasses
import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import dash
import fakeredis
import pytest
import sqlalchemy as sa
from openpyxl import load_workbook

from dashboards import auth, exports
from models import audit, db, users
from models.config import load_settings
from models.live import LiveStore
from models.reference import seed_reference_data
from models.schema import HotlineTicket

PASSWORD = "correct horse battery"
#: 10:00 on 25 November 2026 in Guang'an.
NOW = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
GUANG_AN, LINSHUI = "511602", "511623"


@contextmanager
def dash_globals_kept() -> Iterator[None]:
    """Dash moves the callbacks registered at import into the first app that serves a
    request. This module's app is built before test_auth's in a full run: give the
    callbacks back afterwards, so the next app gets them all too."""
    from dash import _callback

    kept = (
        list(_callback.GLOBAL_CALLBACK_LIST),
        dict(_callback.GLOBAL_CALLBACK_MAP),
        list(_callback.GLOBAL_INLINE_SCRIPTS),
        dict(_callback.GLOBAL_API_PATHS),
    )
    try:
        yield
    finally:
        for target, saved in zip(
            (
                _callback.GLOBAL_CALLBACK_LIST,
                _callback.GLOBAL_CALLBACK_MAP,
                _callback.GLOBAL_INLINE_SCRIPTS,
                _callback.GLOBAL_API_PATHS,
            ),
            kept,
            strict=True,
        ):
            target.clear()
            if isinstance(target, list):
                target.extend(saved)
            else:
                target.update(saved)


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dash.Dash, sa.Engine]]:
    from app import create_app

    data = tmp_path_factory.mktemp("exports")
    settings = load_settings({"CITYOPS_DATA_DIR": str(data)})
    db.upgrade_database(settings.effective_database_url)
    engine = db.create_engine_for(settings.effective_database_url)
    seed_reference_data(engine)
    with engine.begin() as conn:
        for role in ("viewer", "leader", "operator"):
            users.create_account(conn, username=role, password=PASSWORD, role=role, by="test", now=NOW)
        users.create_account(
            conn,
            username="linshui",
            password=PASSWORD,
            role="leader",
            district_code=LINSHUI,
            by="test",
            now=NOW,
        )
        for ticket_id, district, hours in (("T-GA", GUANG_AN, 1), ("T-LS", LINSHUI, 2)):
            conn.execute(
                sa.insert(HotlineTicket.__table__),
                {
                    "ticket_id": ticket_id,
                    "ts": NOW - timedelta(hours=hours),
                    "channel": "phone",
                    "category": "噪声扰民",
                    "title": "夜间施工噪声",
                    "content": "小区旁工地夜间施工",
                    "district_code": district,
                    "caller_name": "赵六六",
                    "caller_phone": "13912345678",
                    "state": "registered",
                },
            )
    # The pages (and their callbacks) are imported inside create_app; the first request
    # moves the callbacks into this app.
    app = create_app(settings, live=LiveStore(fakeredis.FakeRedis(decode_responses=True)), engine=engine)
    with dash_globals_kept():
        app.server.test_client().get("/login")
        yield app, engine
    engine.dispose()


@pytest.fixture(autouse=True)
def fixed_clock(system: tuple[dash.Dash, sa.Engine], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "_config", dataclasses.replace(auth.config(), clock=lambda: NOW))


def login(app: dash.Dash, username: str, address: str = "10.0.0.9") -> Any:
    client = app.server.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = client.post(
        "/login", data={"username": username, "password": PASSWORD, "csrf_token": token, "next": "/"}
    )
    assert response.status_code == 303
    return client


def trail(engine: sa.Engine, prefix: str) -> list[audit.AuditEntry]:
    with engine.connect() as conn:
        return audit.search(conn, action_prefix=prefix, limit=100)


def rows_of(body: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))


def test_anonymous_visitors_are_refused_by_the_gate(system) -> None:
    app, _ = system
    client = app.server.test_client()
    assert client.get("/api/export/tickets.csv").status_code == 401
    assert client.get("/api/briefing/2026-11-24.png").status_code == 401


def test_a_viewer_may_not_export_and_the_attempt_is_audited(system) -> None:
    app, engine = system
    viewer = login(app, "viewer")
    before = len(trail(engine, "auth.denied"))
    for path in ("/api/export/tickets.csv", "/api/export/alerts.xlsx", "/api/briefing/2026-11-24.png"):
        response = viewer.get(path)
        assert response.status_code == 403, path
        assert response.get_json()["error"] == "forbidden"
    denied = trail(engine, "auth.denied")[: len(trail(engine, "auth.denied")) - before]
    assert {e.after["what"] for e in denied} == {"export:tickets", "export:alerts", "export:briefing"}
    assert not [e for e in trail(engine, "export") if e.actor == "viewer"]


def test_a_leader_downloads_csv_and_excel_and_each_is_audited(system) -> None:
    app, engine = system
    leader = login(app, "leader", address="10.1.2.3")

    response = leader.get("/api/export/tickets.csv?since=2026-11-25")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Content-Disposition"] == 'attachment; filename="cityops-tickets-20261125.csv"'
    assert response.headers["Cache-Control"] == "no-store"
    rows = rows_of(response.data)
    assert rows[0][0] == "工单号" and [r[0] for r in rows[1:]] == ["T-GA", "T-LS"]
    assert "13912345678" not in response.get_data(as_text=True)

    excel = leader.get("/api/export/tickets.xlsx?since=2026-11-25")
    assert excel.status_code == 200 and excel.mimetype.endswith("spreadsheetml.sheet")
    sheet = load_workbook(io.BytesIO(excel.data)).active
    assert [c.value for c in sheet["A"]][1:] == ["T-GA", "T-LS"]

    entries = [e for e in trail(engine, "export") if e.actor == "leader"][:2]
    assert [(e.action, e.entity_id, e.after["format"]) for e in entries] == [
        ("export", "tickets", "xlsx"),
        ("export", "tickets", "csv"),
    ]
    first = entries[1]
    assert first.address == "10.1.2.3"
    assert (first.ts if first.ts.tzinfo else first.ts.replace(tzinfo=UTC)) == NOW
    assert first.after["rows"] == 2 and first.after["truncated"] is False
    assert first.after["filters"]["since"].startswith("2026-11-25T00:00:00+08:00")


def test_a_district_account_exports_its_district_only(system) -> None:
    app, engine = system
    scoped = login(app, "linshui")
    response = scoped.get("/api/export/tickets.csv")
    assert response.status_code == 200
    assert [r[0] for r in rows_of(response.data)[1:]] == ["T-LS"]
    assert "511623" in response.headers["Content-Disposition"]
    entry = next(e for e in trail(engine, "export") if e.actor == "linshui")
    assert entry.after["filters"]["district_code"] == LINSHUI and entry.after["rows"] == 1

    elsewhere = scoped.get(f"/api/export/tickets.csv?district={GUANG_AN}")
    assert elsewhere.status_code == 403
    assert any(e.after["reason"] == "district" and e.actor == "linshui" for e in trail(engine, "auth.denied"))
    # By department too: the district's own cases, grouped by the departments handling them.
    assert scoped.get("/api/export/case-indicators.xlsx?by=department").status_code == 200
    assert scoped.get("/api/export/case-indicators.xlsx?by=district").status_code == 200


def test_bad_requests_say_what_is_wrong(system) -> None:
    app, _ = system
    leader = login(app, "operator")
    assert leader.get("/api/export/nothing.csv").status_code == 404
    assert leader.get("/api/export/tickets.pdf").status_code == 404
    bad = leader.get("/api/export/tickets.csv?since=2026-13-01")
    assert bad.status_code == 400 and "2026-01-31" in bad.get_json()["message"]
    assert leader.get("/api/export/tickets.csv?district=999999").status_code == 400
    assert leader.get("/api/briefing/2026-11-26.png").status_code == 400, "tomorrow has no briefing"
    assert leader.get("/api/briefing/yesterday.png").status_code == 400


def test_the_row_cap_is_announced(system, monkeypatch: pytest.MonkeyPatch) -> None:
    app, engine = system
    monkeypatch.setattr(exports, "ROW_CAP", 1)
    response = login(app, "operator").get("/api/export/tickets.csv")
    assert response.headers["X-Cityops-Truncated"] == "1" and response.headers["X-Cityops-Rows"] == "1"
    assert len(rows_of(response.data)) == 2
    entry = next(e for e in trail(engine, "export") if e.actor == "operator")
    assert entry.after["truncated"] is True and entry.after["rows"] == 1


def test_the_briefing_png_is_a_png_of_a4_proportions_and_audited(system) -> None:
    app, engine = system
    response = login(app, "leader").get("/api/briefing/2026-11-24.png")
    assert response.status_code == 200 and response.mimetype == "image/png"
    assert response.headers["Content-Disposition"] == 'attachment; filename="cityops-briefing-20261124.png"'
    body = response.data
    assert body[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(body[16:20], "big"), int.from_bytes(body[20:24], "big")
    assert width == 1240 and abs(height / width - 2**0.5) < 0.01, "A4 portrait at 150 dpi"
    assert 20_000 < len(body) < 2_000_000
    entry = next(e for e in trail(engine, "export") if e.entity_id == "briefing")
    assert entry.actor == "leader" and entry.after["filters"]["day"] == "2026-11-24"


def test_the_briefing_page_is_for_those_who_may_export(system) -> None:
    app, _ = system
    viewer = login(app, "viewer")
    assert viewer.get("/briefing", headers={"Accept": "text/html"}).status_code == 403
    assert login(app, "leader").get("/briefing", headers={"Accept": "text/html"}).status_code == 200


def test_a_store_that_is_away_gives_503_and_no_audit_entry(system, monkeypatch: pytest.MonkeyPatch) -> None:
    app, engine = system
    client = login(app, "operator")
    before = len(trail(engine, "export"))

    def away(*_args: object, **_kwargs: object) -> None:
        raise ConnectionError("Redis is restarting")

    monkeypatch.setattr(exports, "read_table", away)
    response = client.get("/api/export/alerts.csv")
    assert response.status_code == 503 and "ConnectionError" in response.get_json()["message"]
    assert len(trail(engine, "export")) == before
