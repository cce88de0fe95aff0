"""Single sign-on with the city's OpenID Connect provider (authorization code flow).

Configured by ``CITYOPS_OIDC_ISSUER``, ``CITYOPS_OIDC_CLIENT_ID`` and
``CITYOPS_OIDC_CLIENT_SECRET``; without them nothing here is served. The provider says who
someone is; what they may do stays in cityops: the ``preferred_username`` (else ``sub``)
must name an enabled local account, whose role and district apply.

The ID token comes straight from the token endpoint over the back channel, so (OpenID
Connect Core 1.0, 3.1.3.7, item 6) the TLS connection to the issuer vouches for it; its
issuer, audience, expiry and nonce are still checked here.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import flask

from dashboards.i18n import t
from models import audit, users
from models.config import OidcSettings

CALLBACK_PATH = "/login/sso/callback"
START_PATH = "/login/sso"
#: The issuer is on the intranet; a slow one must not hold a web worker for long.
TIMEOUT_S = 10


class SsoError(Exception):
    """The sign-on did not complete; the message is for the log and the audit trail."""


def register(server: flask.Flask, settings: OidcSettings | None) -> None:
    if settings is None:
        return
    metadata: dict[str, Any] = {}

    def discovery() -> dict[str, Any]:
        if not metadata:
            found = _get_json(f"{settings.issuer}/.well-known/openid-configuration")
            if found.get("issuer", "").rstrip("/") != settings.issuer:
                raise SsoError("the discovery document names another issuer")
            metadata.update(found)
        return metadata

    @server.route(START_PATH)
    def sso_start() -> flask.Response:
        from dashboards.auth import safe_next

        try:
            endpoint = discovery()["authorization_endpoint"]
        except (SsoError, KeyError, OSError, ValueError) as exc:
            return _refused(f"discovery failed: {exc}")
        state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        flask.session["oidc"] = {
            "state": state,
            "nonce": nonce,
            "next": safe_next(flask.request.args.get("next")),
        }
        query = {
            "response_type": "code",
            "client_id": settings.client_id,
            "redirect_uri": _redirect_uri(),
            "scope": "openid profile",
            "state": state,
            "nonce": nonce,
        }
        return flask.redirect(f"{endpoint}?{urlencode(query)}", code=303)

    @server.route(CALLBACK_PATH)
    def sso_callback() -> flask.Response:
        from dashboards import auth

        pending = flask.session.pop("oidc", None)
        args = flask.request.args
        if not isinstance(pending, dict) or not secrets.compare_digest(
            str(args.get("state", "")), str(pending.get("state", ""))
        ):
            return _refused("state does not match (a replayed or forged answer)")
        if "code" not in args:
            return _refused(f"the provider answered {args.get('error', 'without a code')}")
        try:
            claims = _exchange(discovery(), settings, str(args["code"]), str(pending["nonce"]))
        except (SsoError, KeyError, OSError, ValueError) as exc:
            return _refused(str(exc))
        username = str(claims.get("preferred_username") or claims.get("sub") or "")
        cfg = auth.config()
        now = cfg.clock()
        with cfg.engine.begin() as conn:
            account = users.get_account(conn, username)
            if account is None or account.disabled:
                audit.record(
                    conn,
                    actor=username[:64] or "-",
                    address=auth.client_address(),
                    action="auth.login_failed",
                    entity_type="login",
                    entity_id=username,
                    before=None,
                    after={"method": "sso", "why": "no account" if account is None else "disabled"},
                    now=now,
                )
                token = None
            else:
                token = users.start_session(
                    conn, account, address=auth.client_address(), now=now, method="sso"
                )
        if token is None or account is None:
            return flask.Response(
                auth._document(t("auth.login_title"), _message(t("auth.sso_no_account"))), status=403
            )
        auth.begin_session(token)
        return flask.redirect(account.kiosk_path or str(pending.get("next") or "/"), code=303)


def _redirect_uri() -> str:
    return flask.request.host_url.rstrip("/") + CALLBACK_PATH


def _exchange(meta: dict[str, Any], settings: OidcSettings, code: str, nonce: str) -> dict[str, Any]:
    body = urlencode(
        {"grant_type": "authorization_code", "code": code, "redirect_uri": _redirect_uri()}
    ).encode()
    basic = base64.b64encode(f"{settings.client_id}:{settings.client_secret}".encode()).decode()
    request = urllib.request.Request(
        meta["token_endpoint"],
        data=body,
        headers={"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
        tokens = json.loads(response.read())
    claims = _payload(str(tokens["id_token"]))
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if str(claims.get("iss", "")).rstrip("/") != settings.issuer:
        raise SsoError("the ID token names another issuer")
    if settings.client_id not in audiences:
        raise SsoError("the ID token is not for this client")
    if float(claims.get("exp", 0)) <= datetime.now(UTC).timestamp():
        raise SsoError("the ID token has expired")
    if not secrets.compare_digest(str(claims.get("nonce", "")), nonce):
        raise SsoError("the ID token's nonce does not match")
    return claims


def _payload(id_token: str) -> dict[str, Any]:
    parts = id_token.split(".")
    if len(parts) != 3:
        raise SsoError("the ID token is not a JWT")
    padded = parts[1] + "=" * (-len(parts[1]) % 4)
    claims = json.loads(base64.urlsafe_b64decode(padded))
    if not isinstance(claims, dict):
        raise SsoError("the ID token's claims are not an object")
    return claims


def _get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
        found = json.loads(response.read())
    if not isinstance(found, dict):
        raise SsoError(f"{url} did not answer with a JSON object")
    return found


def _message(text: str) -> str:
    from markupsafe import escape

    return (
        f'<main class="login"><p class="login-error" role="alert">{escape(text)}</p>'
        f'<p><a href="/login">{escape(t("auth.sign_in"))}</a></p></main>'
    )


def _refused(why: str) -> flask.Response:
    from dashboards import auth

    # The refusal stands even when its audit row cannot be written.
    with contextlib.suppress(Exception):
        auth.record(
            "auth.login_failed", entity_type="login", entity_id=None, after={"method": "sso", "why": why}
        )
    return flask.Response(auth._document(t("auth.login_title"), _message(t("auth.sso_failed"))), status=401)
