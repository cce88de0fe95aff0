"""Single sign-on against a stub OpenID Connect issuer started on loopback: the
authorization code flow signs in a local account; a forged state, a wrong nonce, another
audience and a name without an account are refused and audited."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import fakeredis
import pytest

from models import audit, db, users
from models.config import load_settings
from models.live import LiveStore

NOW = datetime(2026, 7, 14, 2, 0, tzinfo=UTC)


class StubIssuer:
    """Discovery, a token endpoint that checks the client's secret, and claims set per test."""

    def __init__(self) -> None:
        self.claims: dict[str, Any] = {}
        self.token_requests: list[dict[str, Any]] = []
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def _json(self, body: dict[str, Any], status: int = 200) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path == "/.well-known/openid-configuration":
                    self._json(
                        {
                            "issuer": issuer.url,
                            "authorization_endpoint": issuer.url + "/authorize",
                            "token_endpoint": issuer.url + "/token",
                        }
                    )
                else:
                    self._json({"error": "not_found"}, 404)

            def do_POST(self) -> None:
                form = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
                issuer.token_requests.append({"form": form, "auth": self.headers.get("Authorization")})
                expected = "Basic " + base64.b64encode(b"cityops:client-secret-123456").decode()
                if self.headers.get("Authorization") != expected:
                    self._json({"error": "invalid_client"}, 401)
                    return
                payload = base64.urlsafe_b64encode(json.dumps(issuer.claims).encode()).decode().rstrip("=")
                self._json({"access_token": "a", "token_type": "Bearer", "id_token": f"e30.{payload}.sig"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def issuer() -> Iterator[StubIssuer]:
    stub = StubIssuer()
    yield stub
    stub.server.shutdown()


@pytest.fixture(scope="module")
def app(issuer: StubIssuer, tmp_path_factory: pytest.TempPathFactory):
    from app import create_app

    data = tmp_path_factory.mktemp("oidc")
    settings = load_settings(
        {
            "CITYOPS_DATA_DIR": str(data),
            "CITYOPS_OIDC_ISSUER": issuer.url,
            "CITYOPS_OIDC_CLIENT_ID": "cityops",
            "CITYOPS_OIDC_CLIENT_SECRET": "client-secret-123456",
        }
    )
    db.upgrade_database(settings.effective_database_url)
    engine = db.create_engine_for(settings.effective_database_url)
    with engine.begin() as conn:
        users.create_account(
            conn, username="zhangwei", password="correct horse battery", role="leader", by="t", now=NOW
        )
    yield create_app(settings, live=LiveStore(fakeredis.FakeRedis()), engine=engine), engine
    engine.dispose()


def start(client: Any) -> dict[str, str]:
    response = client.get("/login/sso?next=/ecology")
    assert response.status_code == 303
    location = urlsplit(response.headers["Location"])
    query = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert query["response_type"] == "code" and query["client_id"] == "cityops" and "openid" in query["scope"]
    assert query["redirect_uri"].endswith("/login/sso/callback")
    return query


def claims(issuer: StubIssuer, nonce: str, changes: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "iss": issuer.url,
        "aud": "cityops",
        "exp": time.time() + 300,
        "nonce": nonce,
        "preferred_username": "zhangwei",
        **(changes or {}),
    }


def test_the_login_page_offers_single_sign_on(app) -> None:
    flask_app, _ = app
    assert "/login/sso" in flask_app.server.test_client().get("/login").get_data(as_text=True)


def test_the_code_flow_signs_in_the_local_account(app, issuer: StubIssuer) -> None:
    flask_app, engine = app
    client = flask_app.server.test_client()
    query = start(client)
    issuer.claims = claims(issuer, query["nonce"])
    back = client.get(f"/login/sso/callback?code=abc&state={query['state']}")
    assert back.status_code == 303 and back.headers["Location"] == "/ecology"
    assert issuer.token_requests[-1]["form"]["code"] == ["abc"]
    assert client.get("/api/ping").status_code == 204  # signed in
    with engine.connect() as conn:
        [login] = audit.search(conn, action_prefix="auth.login", actor="zhangwei")
    assert login.after["method"] == "sso" and login.after["role"] == "leader"


@pytest.mark.parametrize(
    ("change", "state_ok"),
    [
        ({}, False),  # a forged or replayed state
        ({"nonce": "another"}, True),
        ({"aud": "someone-else"}, True),
        ({"iss": "http://evil.example"}, True),
        ({"exp": 1}, True),
        ({"preferred_username": "nobody"}, True),
    ],
)
def test_refusals(app, issuer: StubIssuer, change: dict[str, Any], state_ok: bool) -> None:
    flask_app, engine = app
    client = flask_app.server.test_client()
    query = start(client)
    issuer.claims = claims(issuer, query["nonce"], change)
    state = query["state"] if state_ok else "forged"
    with engine.connect() as conn:
        before = len(audit.search(conn, action_prefix="auth.login_failed"))
    response = client.get(f"/login/sso/callback?code=abc&state={state}")
    assert response.status_code in (401, 403)
    assert client.get("/api/ping").status_code == 401
    with engine.connect() as conn:
        assert len(audit.search(conn, action_prefix="auth.login_failed")) == before + 1


def test_incomplete_settings_are_a_clear_error(tmp_path: Path) -> None:
    from models.config import ConfigError

    with pytest.raises(ConfigError, match="CITYOPS_OIDC_CLIENT_SECRET"):
        load_settings({"CITYOPS_OIDC_ISSUER": "http://sso.intranet", "CITYOPS_OIDC_CLIENT_ID": "cityops"})
