"""The gate while the database cannot be reached: sessions this web process checked a moment
ago stay signed in (pages then show their degraded state), anything else still fails."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from dashboards import auth
from models import users
from tests.unit.dashboards.test_auth import login, system  # noqa: F401  (the app fixture)


def database_away(*_: Any, **__: Any) -> None:
    raise sa.exc.OperationalError("SELECT sessions", {}, ConnectionRefusedError("connection refused"))


def test_a_checked_session_rides_out_a_database_outage(system, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    app, _ = system
    client = login(app, "leader")
    assert client.get("/api/ping").status_code == 204  # checked against the database once
    monkeypatch.setattr(users, "check_session", database_away)
    assert client.get("/api/ping").status_code == 204
    assert client.get("/api/ping").status_code == 204


def test_an_unknown_session_is_not_let_in_during_an_outage(system, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    app, _ = system
    client = login(app, "viewer")  # signed in, but never checked by the gate before the outage
    monkeypatch.setattr(users, "check_session", database_away)
    assert client.get("/api/ping").status_code == 500


def test_the_outage_grace_runs_out(system, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    app, _ = system
    client = login(app, "operator")
    assert client.get("/api/ping").status_code == 204
    monkeypatch.setattr(users, "check_session", database_away)
    monkeypatch.setattr(auth, "SESSION_OUTAGE_GRACE_S", 0.0)
    assert client.get("/api/ping").status_code == 500


def test_an_ended_session_is_forgotten(system, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    app, _ = system
    client = login(app, "duty_officer")
    assert client.get("/api/ping").status_code == 204
    cookie = client.get_cookie(auth.SESSION_COOKIE).value
    token = client.get_cookie(auth.CSRF_COOKIE).value
    assert client.post("/logout", data={"csrf_token": token}).status_code == 303
    replay = app.server.test_client()
    replay.set_cookie(auth.SESSION_COOKIE, cookie)
    assert replay.get("/api/ping").status_code == 401  # the database says: ended
    monkeypatch.setattr(users, "check_session", database_away)
    replay.set_cookie(auth.SESSION_COOKIE, cookie)  # the 401 dropped it: send the old one again
    assert replay.get("/api/ping").status_code == 500  # the outage does not revive it
