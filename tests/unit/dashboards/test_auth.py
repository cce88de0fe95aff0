"""The gate, sign-in, sessions, CSRF, headers and role checks, through the real app's Flask
test client (embedded SQLite, in-process Redis, a controllable clock).

Every page of ``dash.page_registry`` and every callback of the app's callback map is
enumerated: anonymous requests are refused for all of them; every server callback is either
guarded (``dashboards.auth.acts`` leaves ``cityops_permission`` on it) or listed below as a
read. A new callback that is neither makes ``test_every_callback_is_guarded_or_a_known_read``
fail, and one that writes (its code opens a transaction, performs or records) cannot be
listed as a read.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dash
import fakeredis
import flask
import pytest
import sqlalchemy as sa

from dashboards import auth
from models import audit, db, users
from models.config import ConfigError, load_settings
from models.live import LiveStore
from models.reference import seed_reference_data
from tests.unit.dashboards import signing

PASSWORD = "correct horse battery"
NOW = datetime(2026, 7, 14, 2, 0, tzinfo=UTC)
#: Server callbacks that only read (Dash's own page router included). Adding a callback
#: means deciding: guard it with ``auth.acts`` or, if it only reads, list it here.
READ_ONLY_CALLBACKS = frozenset(
    {
        "dash.dash.Dash.enable_pages.<locals>.router_sync.<locals>.update",
        "dashboards.pages.alerts.refresh_queue",
        "dashboards.pages.alerts.show_detail",
        "dashboards.pages.district.refresh",
        "dashboards.pages.ecology.refresh",
        "dashboards.pages.emergency.refresh",
        "dashboards.pages.emergency.select",
        "dashboards.pages.emergency.set_officer",  # a browser-session store, no server state
        "dashboards.pages.emergency.show_officer",
        "dashboards.pages.hotline.refresh",
        "dashboards.pages.overview.refresh",
        "dashboards.pages.urban.refresh",
        "dashboards.pages.urban.indicator_export",
        "dashboards.pages.wall.refresh",
    }
)
#: What code that changes state looks like; a "read" containing one of these is suspect.
WRITES = re.compile(r"\.begin\(|perform|run_action|audit\.record|\bunlock\(|\bcreate_|\bupdate_|\bdelete\(")


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dash.Dash, sa.Engine]]:
    from app import create_app

    data = tmp_path_factory.mktemp("auth")
    settings = load_settings({"CITYOPS_DATA_DIR": str(data), "CITYOPS_METRICS_TOKEN": "m" * 20})
    db.upgrade_database(settings.effective_database_url)
    engine = db.create_engine_for(settings.effective_database_url)
    seed_reference_data(engine)
    with engine.begin() as conn:
        for role in ("viewer", "leader", "operator", "duty_officer", "admin"):
            users.create_account(conn, username=role, password=PASSWORD, role=role, by="test", now=NOW)
        users.create_account(
            conn, username="wall1", password=PASSWORD, role="viewer", kiosk_path="/wall", by="test", now=NOW
        )
        users.create_account(
            conn,
            username="linshui",
            password=PASSWORD,
            role="duty_officer",
            district_code="511623",
            by="test",
            now=NOW,
        )
    app = create_app(settings, live=LiveStore(fakeredis.FakeRedis(decode_responses=True)), engine=engine)
    app.server.test_client().get("/login")  # Dash completes its setup (the router) on the first request
    yield app, engine
    engine.dispose()


@pytest.fixture
def clock(system: tuple[dash.Dash, sa.Engine], monkeypatch: pytest.MonkeyPatch) -> Clock:
    fixed = Clock()
    monkeypatch.setattr(auth, "_config", dataclasses.replace(auth.config(), clock=fixed))
    return fixed


def csrf_of(client: Any) -> str:
    page = client.get("/login").get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def login(app: dash.Dash, username: str, password: str = PASSWORD, address: str = "10.0.0.1") -> Any:
    client = app.server.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    response = client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": csrf_of(client), "next": "/"},
    )
    assert response.status_code == 303, response.get_data(as_text=True)
    return client


def callback_request(client: Any, key: str, spec: dict[str, Any], *, csrf: bool = True) -> Any:
    headers = {}
    cookie = client.get_cookie(auth.CSRF_COOKIE)
    if csrf and cookie is not None:
        headers[auth.CSRF_HEADER] = cookie.value
    body = {"output": key, "outputs": [], "inputs": [], "state": [], "changedPropIds": []}
    return client.post("/_dash-update-component", json=body, headers=headers)


def entries(engine: sa.Engine, prefix: str) -> list[audit.AuditEntry]:
    with engine.connect() as conn:
        return audit.search(conn, action_prefix=prefix, limit=1000)


def server_callbacks(app: dash.Dash) -> dict[str, Any]:
    return {k: v["callback"] for k, v in app.callback_map.items() if v.get("callback") is not None}


def name_of(function: Any) -> str:
    inner = inspect.unwrap(function)
    return f"{inner.__module__}.{inner.__qualname__}"


# ---- the gate: anonymous ----------------------------------------------------------------------


def test_every_page_refuses_an_anonymous_visitor_with_the_way_back(system) -> None:
    app, _ = system
    client = app.server.test_client()
    paths = [p.get("path") for p in dash.page_registry.values()]
    assert {"/", "/alerts", "/emergency", "/admin", "/wall", "/hotline"} <= set(paths)
    for page in dash.page_registry.values():
        path = page["path"]
        if page.get("path_template"):
            path = page["path_template"].replace("<code>", "511602")
        response = client.get(path + "?kiosk=1")
        assert response.status_code == 303, path
        assert response.headers["Location"].startswith("/login?next="), path
        assert "kiosk%3D1" in response.headers["Location"]


def test_every_callback_refuses_an_anonymous_request_with_401(system) -> None:
    app, _ = system
    client = app.server.test_client()
    callbacks = server_callbacks(app)
    assert len(callbacks) >= 15
    for key in callbacks:
        response = callback_request(client, key, {})
        assert response.status_code == 401, key
        assert response.get_json()["error"] == "unauthenticated"


def test_apis_and_assets_need_a_session_but_interop_and_health_do_not(system) -> None:
    app, _ = system
    client = app.server.test_client()
    for path in ("/api/ping", "/api/live/updates", "/assets/cityops-shell.js", "/_dash-layout"):
        assert client.get(path).status_code == 401, path
    for path in ("/healthz", "/api/cap/alerts.atom", "/open311/v2/services.json", "/assets/cityops.css"):
        assert client.get(path).status_code in (200, 503), path  # readiness may say 503; never 401
    assert client.post("/open311/v2/requests.json", data={"service_code": "x"}).status_code != 401
    # /metrics needs its bearer token when one is configured.
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer " + "m" * 20}).status_code == 200


# ---- callbacks: guarded or known reads ----------------------------------------------------------


def test_every_callback_is_guarded_or_a_known_read(system) -> None:
    app, _ = system
    unclassified, suspect = [], []
    for function in server_callbacks(app).values():
        name = name_of(function)
        if getattr(function, "cityops_permission", None) is not None:
            continue
        if name not in READ_ONLY_CALLBACKS:
            unclassified.append(name)
        elif not name.startswith("dash.") and WRITES.search(inspect.getsource(inspect.unwrap(function))):
            suspect.append(name)
    assert unclassified == [], "guard these with dashboards.auth.acts (or list them as reads)"
    assert suspect == [], "listed as reads but their code writes"
    # The state-changing ones are guarded with the permission the table gives them.
    guarded = {
        name_of(f): f.cityops_permission
        for f in server_callbacks(app).values()
        if hasattr(f, "cityops_permission")
    }
    assert guarded["dashboards.pages.alerts.act"] == "alert.act"
    assert guarded["dashboards.pages.emergency.act"] == "incident.open"
    assert guarded["dashboards.pages.admin.unlock"] == "admin"


def test_every_guarded_callback_refuses_the_wrong_role_and_audits_it(system) -> None:
    from tests.unit.dashboards.signing import account, signed_in

    app, engine = system
    guarded = [f for f in server_callbacks(app).values() if hasattr(f, "cityops_permission")]
    assert len(guarded) >= 5
    before = len(entries(engine, "auth.denied"))
    for function in guarded:
        permission = function.cityops_permission
        wrong = next(r for r in ("viewer", "leader", "operator") if not users.allowed(r, permission))
        checked = inspect.unwrap(
            function, stop=lambda f: hasattr(f, "__wrapped__") and f.__name__ == "checked"
        )
        checked = getattr(function, "__wrapped__", function)
        with signed_in(account(wrong, wrong)):
            # Arguments do not matter: the check runs before the callback looks at them.
            outputs = checked(*([None] * 12))
        text = str(outputs)
        assert "无权" in text, (name_of(function), text)
    denied = entries(engine, "auth.denied")
    assert len(denied) - before == len(guarded)
    assert {e.after["reason"] for e in denied[: len(guarded)]} == {"role"}


def test_a_viewer_pressing_acknowledge_over_http_changes_nothing(system) -> None:
    app, engine = system
    client = login(app, "viewer")
    key = next(k for k, f in server_callbacks(app).items() if name_of(f) == "dashboards.pages.alerts.act")
    body = {
        "output": key,
        "outputs": [
            {"id": "console-feedback", "property": "children"},
            {"id": "console-feedback", "property": "className"},
            {"id": "console-comment", "property": "value"},
            {"id": "console-bump", "property": "data"},
        ],
        "inputs": [
            {"id": f"console-btn-{a}", "property": "n_clicks", "value": 1}
            for a in ("acknowledge", "start", "assign", "escalate", "resolve", "mark_false_alarm")
        ],
        "state": [
            {"id": "console-selected", "property": "data", "value": 1},
            {"id": "console-comment", "property": "value", "value": "x"},
            {"id": "console-assignee", "property": "value", "value": None},
            {"id": "console-bump", "property": "data", "value": 0},
        ],
        "changedPropIds": ["console-btn-acknowledge.n_clicks"],
    }
    headers = {auth.CSRF_HEADER: client.get_cookie(auth.CSRF_COOKIE).value}
    response = client.post("/_dash-update-component", json=body, headers=headers)
    assert response.status_code == 200
    assert "无权" in str(response.get_json()["response"]["console-feedback"]["children"])
    # A forged callback (no CSRF header) is refused outright.
    forged = client.post("/_dash-update-component", json=body)
    assert forged.status_code == 403 and forged.get_json()["error"] == "csrf"
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM alert_events")).scalar_one() == 0


def _emergency_act_body(app: dash.Dash, key: str, open_alert_clicks: int | None) -> dict[str, Any]:
    """The emergency page's action callback as the browser sends it after the alerts table
    was drawn with one 转为突发事件 button: pressed ``open_alert_clicks`` times (None: drawn,
    not pressed), every other button untouched."""
    spec = app.callback_map[key]
    inputs: list[Any] = []
    for entry in spec["inputs"]:
        if entry["id"].startswith("{"):  # a pattern: the buttons on the page now
            pattern = json.loads(entry["id"])
            if pattern.get("type") == "em-open-alert":
                button = {"id": {"id": 1, "type": "em-open-alert"}, "property": "n_clicks"}
                inputs.append([{**button, "value": open_alert_clicks}])
            else:
                inputs.append([])
        else:
            inputs.append({**entry, "value": None})
    changed = '{"id":1,"type":"em-open-alert"}.n_clicks'
    return {
        "output": key,
        "outputs": [
            {"id": o.split(".")[0], "property": o.split(".")[1]} for o in key.strip(".").split("...")
        ],
        "inputs": inputs,
        "state": [{**entry, "value": None} for entry in spec["state"]],
        "changedPropIds": [changed],
    }


def test_buttons_drawn_again_are_not_an_action_nobody_took(system) -> None:
    """The emergency page's alert table redraws its 转为突发事件 buttons at every refresh, and
    Dash then runs the action callback with no button pressed. A leader (who may not open
    incidents) saw a refusal and left an auth.denied audit entry on every page view."""
    app, engine = system
    client = login(app, "leader")
    key = next(k for k, f in server_callbacks(app).items() if name_of(f) == "dashboards.pages.emergency.act")
    headers = {auth.CSRF_HEADER: client.get_cookie(auth.CSRF_COOKIE).value}
    before = len(entries(engine, "auth.denied"))

    drawn = client.post("/_dash-update-component", json=_emergency_act_body(app, key, None), headers=headers)
    assert drawn.status_code == 204, drawn.get_data(as_text=True)
    assert len(entries(engine, "auth.denied")) == before

    # Pressed, it is checked, refused and audited as before.
    pressed = client.post("/_dash-update-component", json=_emergency_act_body(app, key, 1), headers=headers)
    assert pressed.status_code == 200
    assert "无权" in str(pressed.get_json()["response"]["emergency-feedback"]["children"])
    denied = entries(engine, "auth.denied")
    assert len(denied) == before + 1 and denied[0].actor == "leader"


# ---- pages by role ----------------------------------------------------------------------------


def test_admin_page_is_for_admins_and_kiosk_accounts_see_their_wall_only(system) -> None:
    app, _ = system
    viewer = login(app, "viewer")
    assert viewer.get("/admin").status_code == 403
    assert viewer.get("/alerts").status_code == 200
    admin = login(app, "admin")
    assert admin.get("/admin").status_code == 200
    kiosk = login(app, "wall1")
    assert kiosk.get("/alerts").headers["Location"] == "/wall"
    assert kiosk.get("/wall").status_code == 200
    # The page guard answers crafted router requests the same way.
    admin_page = next(p for p in dash.page_registry.values() if p["path"] == "/admin")
    from tests.unit.dashboards.signing import account, signed_in

    with signed_in(account("v", "viewer")):
        assert "无权" in str(admin_page["layout"]())
    with signed_in(account("a", "admin")):
        assert "admin-audit" in str(admin_page["layout"]())


# ---- sign-in, sessions, CSRF ------------------------------------------------------------------


def test_login_page_in_both_languages_from_the_origin_only(system) -> None:
    app, _ = system
    client = app.server.test_client()
    zh = client.get("/login").get_data(as_text=True)
    assert 'lang="zh-CN"' in zh and "用户名" in zh and "密码" in zh and 'name="csrf_token"' in zh
    en = client.get("/login?lang=en").get_data(as_text=True)
    assert 'lang="en"' in en and "User name" in en and "Sign in" in en
    assert re.findall(r'(?:src|href)="(https?:)?//', zh + en) == []
    assert "<script" not in zh


def test_wrong_password_is_refused_with_a_message_and_audited(system, clock) -> None:
    app, engine = system
    client = app.server.test_client()
    client.environ_base["REMOTE_ADDR"] = "10.1.1.1"
    response = client.post(
        "/login", data={"username": "leader", "password": "nope" * 4, "csrf_token": csrf_of(client)}
    )
    assert response.status_code == 401 and "用户名或密码错误" in response.get_data(as_text=True)
    failed = entries(engine, "auth.login_failed")[0]
    assert (failed.actor, failed.address) == ("leader", "10.1.1.1")
    # Without the form's CSRF token nobody signs in, even with the right password.
    bare = app.server.test_client()
    refused = bare.post("/login", data={"username": "leader", "password": PASSWORD})
    assert refused.status_code == 403


def test_the_session_cookie_is_httponly_lax_and_secure_over_https(system) -> None:
    app, _ = system
    client = app.server.test_client()
    token = csrf_of(client)
    plain = client.post("/login", data={"username": "leader", "password": PASSWORD, "csrf_token": token})
    cookie = next(c for c in plain.headers.getlist("Set-Cookie") if c.startswith(auth.SESSION_COOKIE))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    secure = app.server.test_client()
    page = secure.get("/login", base_url="https://cityops.intranet").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    over_tls = secure.post(
        "/login",
        data={"username": "leader", "password": PASSWORD, "csrf_token": token},
        base_url="https://cityops.intranet",
    )
    cookie = next(c for c in over_tls.headers.getlist("Set-Cookie") if c.startswith(auth.SESSION_COOKIE))
    assert "Secure" in cookie and "HttpOnly" in cookie
    assert over_tls.headers["Strict-Transport-Security"].startswith("max-age=")


def test_sessions_expire_when_idle_and_at_their_lifetime(system, clock) -> None:
    app, _ = system
    client = login(app, "leader")
    assert client.get("/api/ping").status_code == 204
    clock.now += timedelta(minutes=29)
    assert client.get("/api/ping").status_code == 204
    clock.now += timedelta(minutes=31)
    expired = client.get("/api/ping")
    assert expired.status_code == 401 and "登录已过期" in expired.get_json()["message"]
    page = client.get("/alerts")
    assert page.status_code == 303 and page.headers["Location"].startswith("/login")
    # Active all along, a session still ends at its absolute lifetime (12 h by default).
    active = login(app, "leader")
    for _ in range(12 * 3):
        clock.now += timedelta(minutes=20)
        last = active.get("/api/ping").status_code
    assert last == 401


def test_logout_needs_the_token_and_ends_the_session_for_good(system) -> None:
    app, engine = system
    client = login(app, "operator")
    cookie = client.get_cookie(auth.SESSION_COOKIE).value
    assert client.post("/logout").status_code == 403  # no CSRF token: another site's form
    assert client.get("/api/ping").status_code == 204
    token = client.get_cookie(auth.CSRF_COOKIE).value
    assert client.post("/logout", data={"csrf_token": token}).status_code == 303
    assert client.get("/api/ping").status_code == 401
    # The old cookie, replayed, opens nothing.
    replay = app.server.test_client()
    replay.set_cookie(auth.SESSION_COOKIE, cookie)
    assert replay.get("/api/ping").status_code == 401
    assert entries(engine, "auth.logout")[0].actor == "operator"


def test_lockout_through_the_form(system, clock) -> None:
    app, _ = system
    client = app.server.test_client()
    client.environ_base["REMOTE_ADDR"] = "10.2.2.2"
    token = csrf_of(client)
    codes = [
        client.post(
            "/login", data={"username": "admin", "password": f"guess{i}", "csrf_token": token}
        ).status_code
        for i in range(5)
    ]
    assert codes == [401] * 4 + [429]
    right = client.post("/login", data={"username": "admin", "password": PASSWORD, "csrf_token": token})
    assert right.status_code == 429 and "锁定" in right.get_data(as_text=True)
    clock.now += timedelta(minutes=16)
    assert (
        client.post(
            "/login", data={"username": "admin", "password": PASSWORD, "csrf_token": token}
        ).status_code
        == 303
    )


# ---- headers, size limits, production mode ------------------------------------------------------


def test_security_headers_on_every_kind_of_response(system) -> None:
    app, _ = system
    anonymous = app.server.test_client()
    signed = login(app, "leader")
    responses = [
        anonymous.get("/login"),
        anonymous.get("/healthz"),
        anonymous.get("/api/cap/alerts.atom"),
        anonymous.get("/alerts"),
        anonymous.get("/api/ping"),
        anonymous.get("/assets/cityops.css"),
        signed.get("/alerts"),
        signed.get("/no/such/page"),
        signed.get("/_dash-layout"),
    ]
    for response in responses:
        csp = response.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "worker-src 'self' blob:" in csp and "object-src 'none'" in csp
        assert "'unsafe-eval'" not in csp and "script-src 'self' 'sha256-" in csp
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "same-origin"
        assert response.headers["X-Frame-Options"] == "DENY"


def test_the_index_page_inline_scripts_are_all_in_the_policy(system) -> None:
    import base64
    import hashlib

    app, _ = system
    response = login(app, "leader").get("/alerts")
    csp = response.headers["Content-Security-Policy"]
    # Dash's Internet Explorer warning sits in a conditional comment: not a script to a browser.
    page = re.sub(r"<!--.*?-->", "", response.get_data(as_text=True), flags=re.S)
    inline = re.findall(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>(.*?)</script>", page, re.S)
    assert inline
    for script in inline:
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in csp


def test_oversized_requests_get_413(system) -> None:
    app, _ = system
    client = login(app, "leader")
    huge = "x" * (app.server.config["MAX_CONTENT_LENGTH"] + 1)
    response = client.post("/login", data={"username": "a", "password": huge})
    assert response.status_code == 413 and response.get_json()["error"] == "too_large"


def test_production_mode_refuses_to_start_without_a_secret_key(tmp_path: Path) -> None:
    from app import create_app

    settings = load_settings({"CITYOPS_ENV": "production", "CITYOPS_DATA_DIR": str(tmp_path)})
    assert settings.production
    with pytest.raises(ConfigError, match="CITYOPS_SECRET_KEY"):
        create_app(settings, live=LiveStore(fakeredis.FakeRedis()), engine=sa.create_engine("sqlite://"))
    assert not load_settings({}).production
    assert load_settings({"CITYOPS_DATABASE_URL": "postgresql://db/cityops"}).production
    assert not load_settings(
        {"CITYOPS_DATABASE_URL": "postgresql://db/cityops", "CITYOPS_ENV": "demo"}
    ).production


# ---- district scope and personal data -----------------------------------------------------------


def test_a_district_officer_sees_and_acts_on_their_district_only(system) -> None:
    from tests.unit.dashboards.signing import account, signed_in

    scoped = account("linshui", "duty_officer", district_code="511623")
    with signed_in(scoped):
        assert auth.in_scope("511623") and not auth.in_scope("511602")
        assert auth.scope_district() == "511623"
        try:
            auth.require("alert.act", district_code="511602", what="test")
        except auth.PermissionDenied as exc:
            assert exc.reason == "district" and "区县" in exc.message
        else:
            pytest.fail("acting outside the district was allowed")
        assert auth.require("alert.act", district_code="511623") is scoped


def test_a_district_officer_lands_on_their_district_and_is_refused_the_others(system) -> None:
    app, engine = system
    client = login(app, "linshui")
    # The overview of a district-scoped account is its district's page.
    home = client.get("/")
    assert home.status_code == 303 and home.headers["Location"].endswith("/districts/511623")
    assert client.get("/districts/511623").status_code == 200
    before = len(entries(engine, "auth.denied"))
    refused = client.get("/districts/511602")
    body = refused.get_data(as_text=True)
    assert refused.status_code == 403 and "邻水县" in body and "广安区" not in body
    denied = entries(engine, "auth.denied")[: len(entries(engine, "auth.denied")) - before]
    assert [(e.actor, e.after["reason"], e.after["district_code"]) for e in denied] == [
        ("linshui", "district", "511602")
    ]
    # A city-wide account keeps the overview and every district.
    leader = login(app, "leader")
    assert leader.get("/").status_code == 200
    assert leader.get("/districts/511602").status_code == 200
    # Pages without a district in their URL open for the scoped account (their reads are scoped).
    assert client.get("/hotline").status_code == 200


def test_revealing_a_caller_is_for_handlers_within_their_district_and_audited(system) -> None:
    app, engine = system
    from models.schema import HotlineTicket

    row = {"ticket_id": "T-REVEAL", "ts": NOW, "channel": "phone", "category": "噪声扰民", "title": "t"}
    row |= {"content": "c", "district_code": "511602", "caller_name": "赵六六", "caller_phone": "13912345678"}
    with engine.begin() as conn:
        conn.execute(sa.insert(HotlineTicket.__table__), {**row, "state": "registered"})
    path = "/api/tickets/T-REVEAL/caller"
    viewer = login(app, "viewer")
    assert (
        viewer.post(path, headers={auth.CSRF_HEADER: viewer.get_cookie(auth.CSRF_COOKIE).value}).status_code
        == 403
    )
    scoped = login(app, "linshui")
    assert (
        scoped.post(path, headers={auth.CSRF_HEADER: scoped.get_cookie(auth.CSRF_COOKIE).value}).status_code
        == 403
    )
    operator = login(app, "operator")
    assert operator.post(path).status_code == 403  # no CSRF token
    shown = operator.post(path, headers={auth.CSRF_HEADER: operator.get_cookie(auth.CSRF_COOKIE).value})
    assert shown.status_code == 200 and shown.get_json()["caller_phone"] == "13912345678"
    reveal = entries(engine, "ticket.reveal_caller")
    assert [(e.actor, e.entity_id) for e in reveal] == [("operator", "T-REVEAL")]
    assert "13912345678" not in str(reveal[0].after)


def test_flask_g_is_empty_outside_requests() -> None:
    assert auth.current_user() is None and auth.current_actor() is None and auth.client_address() is None
    with flask.Flask("x").test_request_context("/"):
        assert auth.current_user() is None


def test_the_demo_writes_its_accounts_readable_by_the_owner_only(system, tmp_path: Path, capsys) -> None:
    import json
    import stat

    from app import write_demo_accounts

    _, engine = system
    settings = load_settings({"CITYOPS_DATA_DIR": str(tmp_path)})
    path = write_demo_accounts(settings, engine)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    accounts = json.loads(path.read_text(encoding="utf-8"))
    assert set(accounts) == {"viewer", "leader", "operator", "duty_officer", "admin"}
    assert accounts["admin"]["password"] in capsys.readouterr().out  # printed once, at start-up
    assert accounts["admin"]["username"] == "demo-admin"


def test_page_code_is_cached_and_revalidated_while_data_is_never_stored() -> None:
    who = signing.account()
    for path, expected in (
        ("/_dash-component-suites/plotly/package_data/plotly.min.js", "no-cache"),
        ("/assets/cityops.css", "no-cache"),
        ("/_dash-update-component", "no-store"),
        ("/api/export/alerts.csv", "no-store"),
    ):
        with signing.signed_in(who, path):
            response = auth._headers(flask.Response("x"))
        assert response.headers["Cache-Control"] == expected, path
    with signing.signed_in(who, "/_dash-component-suites/dash/dcc/dash_core_components.v3_1_0m1.js"):
        fingerprinted = flask.Response("x")
        fingerprinted.cache_control.max_age = 31536000
        assert auth._headers(fingerprinted).headers["Cache-Control"] == "max-age=31536000"
