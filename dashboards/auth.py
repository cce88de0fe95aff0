"""Sign-in, sessions, the gate in front of every page and API, CSRF and security headers.

``install(app, settings, engine)`` is the one call ``app.create_app`` makes:

- ``GET /login`` (a server-rendered form in the viewer's language, the project's CSS, no
  script) and ``POST /login`` (``username``, ``password``, ``csrf_token``); ``POST /logout``;
  optional single sign-on at ``/login/sso`` (OpenID Connect, :mod:`dashboards.oidc`);
- sessions: a signed cookie (HttpOnly, SameSite=Lax, Secure over HTTPS) naming a row of
  ``user_sessions``, checked on every request for idle time, lifetime and logout;
- the gate (``before_request``): anything not listed in :func:`is_public` needs a session;
  a page answers with a redirect to ``/login?next=…``, everything else with 401 JSON;
  a kiosk account sees only its page; a page registered with ``permission=`` needs it;
- CSRF: every state-changing request carries the session's token, as the ``csrf_token``
  form field or the ``X-CSRFToken`` header, which Dash's renderer sends on every callback
  from the ``_csrf_token`` cookie (a double submit tied to the signed session);
- security headers on every response, and ``MAX_CONTENT_LENGTH``.

Callbacks that change state ask :func:`require` (or are wrapped in :func:`acts`) before
acting: hiding a button is not a check. docs/security.md describes the whole model.
"""

from __future__ import annotations

import functools
import hmac
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import urlencode

import dash
import flask
import sqlalchemy as sa
from flask.sessions import SecureCookieSessionInterface
from markupsafe import escape

from dashboards.district import scope_name
from dashboards.i18n import HTML_LANG, current_language, t
from models import audit, users
from models.clock import Clock, utc_now
from models.config import ConfigError, Settings
from models.lifecycle import Actor
from models.users import Account, Permission, SignIn

log = logging.getLogger(__name__)

SESSION_COOKIE = "cityops_session"
#: Read by Dash's renderer and sent back as ``X-CSRFToken`` on every callback request.
CSRF_COOKIE = "_csrf_token"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRFToken"
DASH_CALLBACK_PATH = "/_dash-update-component"
LOGIN_PATH = "/login"
LOGOUT_PATH = "/logout"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: The login page's own files: the rest of /assets/ (scripts, boundaries) needs a session.
LOGIN_ASSETS = frozenset({"/assets/cityops.css", "/assets/cityops-login.css"})
#: Public by design: sign-in, health checks for the load balancer, the language switch.
PUBLIC_PATHS = frozenset({LOGIN_PATH, LOGOUT_PATH, "/healthz", "/readyz", "/favicon.ico", "/_favicon.ico"})
PUBLIC_PREFIXES = ("/lang/", "/login/sso")
#: Public interoperability by their specifications: CAP feeds and Open311 reads. Open311's
#: POST keeps its API key (checked by the endpoint) and carries no cookie, so no CSRF.
INTEROP_READ_PREFIXES = ("/api/cap/", "/open311/v2/")
OPEN311_PREFIX = "/open311/v2/"
#: Anonymous refusals are audited once per address and kind per this many seconds: an
#: open tab whose session ended would otherwise write a row every refresh.
ANONYMOUS_AUDIT_EVERY_S = 60

F = TypeVar("F", bound=Callable[..., Any])


class PermissionDenied(Exception):
    """The signed-in user may not do this; ``message`` is for the person (their language)."""

    def __init__(self, message: str, *, permission: str, reason: str) -> None:
        super().__init__(message)
        self.message = message
        self.permission = permission
        self.reason = reason


@dataclass(frozen=True, slots=True)
class AuthConfig:
    settings: Settings
    engine: sa.Engine
    clock: Clock
    throttle: users.ThrottlePolicy
    sessions: users.SessionPolicy


_config: AuthConfig | None = None
_anonymous_audited: dict[tuple[str, str], float] = {}
_anonymous_lock = threading.Lock()


def config() -> AuthConfig:
    if _config is None:
        raise RuntimeError("dashboards.auth.install() was not called; build the app with app.create_app()")
    return _config


def now() -> datetime:
    return config().clock()


# ---- who is asking -------------------------------------------------------------------------------


def current_user() -> Account | None:
    """The signed-in account of this request (None: anonymous, or outside a request)."""
    if not flask.has_request_context():
        return None
    return flask.g.get("cityops_account")


def scope_district() -> str | None:
    """The district the signed-in account is limited to: every read page and endpoint passes
    it to its queries. None for a city-wide account, an anonymous request or no request."""
    account = current_user()
    return None if account is None else account.district_code


def in_scope(district_code: str | None) -> bool:
    """Whether the signed-in account may see a record of ``district_code`` (a city-wide
    account sees everything, unlocated records too; a scoped one its district only)."""
    account = current_user()
    return account is None or account.may_act_in(district_code)


def refuse_out_of_scope(district_code: str | None, *, what: str) -> bool:
    """True, after auditing ``auth.denied`` (reason district), when the signed-in account
    asks for a record outside its district: for reads whose district comes from the
    browser (a page's store, an id in a URL) and could be crafted. Call it with no database
    connection open: the audit entry is written in its own transaction (on SQLite every
    transaction takes the write lock)."""
    if in_scope(district_code):
        return False
    _audit_denied(current_user(), Permission.VIEW, "district", what, district_code)
    return True


def current_actor() -> Actor | None:
    account = current_user()
    return None if account is None else account.actor


def client_address() -> str | None:
    """The client's address for the audit trail (behind a proxy, its ProxyFix decides)."""
    return flask.request.remote_addr if flask.has_request_context() else None


def require(permission: Permission | str, *, district_code: str | None = None, what: str = "") -> Account:
    """The signed-in account, if it holds ``permission`` (and may act in ``district_code``);
    else :class:`PermissionDenied`, after auditing the attempt. Call it on the server
    before acting; it is the check, whatever the page showed."""
    permission = Permission(permission)
    account = current_user()
    if account is None:
        _audit_denied(None, permission, "anonymous", what, district_code)
        raise PermissionDenied(t("auth.denied.anonymous"), permission=permission, reason="anonymous")
    if not account.can(permission):
        _audit_denied(account, permission, "role", what, district_code)
        raise PermissionDenied(
            t("auth.denied.role", role=role_label(account.role.value)), permission=permission, reason="role"
        )
    if district_code is not None and not account.may_act_in(district_code):
        _audit_denied(account, permission, "district", what, district_code)
        raise PermissionDenied(t("auth.denied.district"), permission=permission, reason="district")
    return account


def acts(permission: Permission | str, refused: Callable[[str], Any]) -> Callable[[F], F]:
    """Mark a state-changing callback and check ``permission`` before it runs.

    ``refused(message)`` builds the callback's outputs when the check fails (the message in
    the page, nothing changed). A :class:`PermissionDenied` raised inside the callback (a
    district check once the record is known) is answered the same way. The permission is
    kept on the function as ``cityops_permission``: the tests enumerate the app's callbacks
    and refuse any that might change state without one.
    """
    permission = Permission(permission)

    def decorate(function: F) -> F:
        @functools.wraps(function)
        def checked(*args: Any, **kwargs: Any) -> Any:
            if _redrawn_not_pressed():
                # Nobody asked for anything: no check, no refusal shown, nothing audited.
                raise dash.exceptions.PreventUpdate
            try:
                require(permission, what=function.__name__)
                return function(*args, **kwargs)
            except PermissionDenied as exc:
                return refused(exc.message)

        checked.cityops_permission = permission  # type: ignore[attr-defined]
        return checked  # type: ignore[return-value]

    return decorate


def _redrawn_not_pressed() -> bool:
    """True when a callback whose inputs are all buttons runs without a button pressed.

    Dash runs such a callback when buttons matched by a pattern (``ALL``) are added or
    drawn again, e.g. a table's row buttons after a refresh, with ``n_clicks`` None or 0,
    even with ``prevent_initial_call``. Checking the permission then would show a viewer
    the refusal of an action nobody took and audit it, at every refresh. A callback with
    any other input (a timer, a store, a field) is checked as it stands: it may read.
    """
    try:
        inputs = dash.callback_context.inputs_list
        triggered = dash.callback_context.triggered
    except dash.exceptions.MissingCallbackContextException:
        return False  # called directly (tests, tools): check
    entries = [e for group in inputs for e in (group if isinstance(group, list) else [group])]
    if not entries or any(e.get("property") != "n_clicks" for e in entries):
        return False
    return not any(trigger.get("value") for trigger in triggered)


def role_label(role: str) -> str:
    return t(f"auth.role.{role}")


# ---- audit ---------------------------------------------------------------------------------------


def record(
    action: str, *, entity_type: str, entity_id: str | None, before: Any = None, after: Any = None
) -> None:
    """One audit entry for the signed-in user (or ``-``) from this request, in its own transaction."""
    account = current_user()
    with config().engine.begin() as conn:
        audit.record(
            conn,
            actor=account.username if account else "-",
            address=client_address(),
            action=action,
            entity_type=entity_type,
            entity_id=entity_id,
            before=before,
            after=after,
            now=now(),
        )


def _audit_denied(
    account: Account | None, permission: str, reason: str, what: str, district_code: str | None
) -> None:
    try:
        record(
            "auth.denied",
            entity_type="permission",
            entity_id=str(permission),
            after={
                "reason": reason,
                "what": what or (flask.request.path if flask.has_request_context() else ""),
                "role": account.role.value if account else None,
                "district_code": district_code,
            },
        )
    except Exception:  # the refusal stands even when the trail cannot be written
        log.exception("could not audit a refused %s", permission)


def _audit_anonymous(kind: str) -> None:
    address = client_address() or "-"
    stamp = time.monotonic()
    with _anonymous_lock:
        last = _anonymous_audited.get((address, kind))
        if last is not None and stamp - last < ANONYMOUS_AUDIT_EVERY_S:
            return
        if len(_anonymous_audited) > 10_000:  # a scan from many addresses: forget, do not grow
            _anonymous_audited.clear()
        _anonymous_audited[(address, kind)] = stamp
    try:
        record("auth.refused", entity_type="request", entity_id=flask.request.path[:64], after={"why": kind})
    except Exception:
        log.exception("could not audit a refused request")


# ---- install -------------------------------------------------------------------------------------


class _SessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie, marked Secure whenever this request came over HTTPS."""

    def get_cookie_secure(self, app: flask.Flask) -> bool:
        return flask.request.is_secure if flask.has_request_context() else False


def install(app: dash.Dash, settings: Settings, engine: sa.Engine, *, clock: Clock = utc_now) -> None:
    """Sign-in, the gate, CSRF and the security headers on ``app``; see the module docstring."""
    global _config
    if settings.production and settings.secret_key is None:
        raise ConfigError(
            "CITYOPS_SECRET_KEY",
            "production mode needs a secret key that signs sessions (CITYOPS_ENV=demo for a demo)",
        )
    _config = AuthConfig(
        settings=settings,
        engine=engine,
        clock=clock,
        throttle=users.ThrottlePolicy(settings.login_max_failures, settings.login_lock),
        sessions=users.SessionPolicy(
            settings.session_idle, settings.session_lifetime, settings.kiosk_session_lifetime
        ),
    )
    server = app.server
    server.secret_key = settings.session_secret()
    server.session_interface = _SessionInterface()
    server.config.update(
        SESSION_COOKIE_NAME=SESSION_COOKIE,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=max(settings.session_lifetime, settings.kiosk_session_lifetime),
        MAX_CONTENT_LENGTH=settings.max_request_bytes,
    )
    from dashboards import oidc

    server.before_request(_gate)
    server.after_request(_headers)
    server.register_error_handler(413, _too_large)
    server.add_url_rule(LOGIN_PATH, "login", _login_page, methods=["GET"])
    server.add_url_rule(LOGIN_PATH, "login_post", _login_post, methods=["POST"])
    server.add_url_rule(LOGOUT_PATH, "logout", _logout, methods=["GET", "POST"])
    oidc.register(server, settings.oidc)
    _guard_page_layouts(dash.page_registry)


# ---- the gate ------------------------------------------------------------------------------------


def is_public(path: str, method: str) -> bool:
    if path in PUBLIC_PATHS or path in LOGIN_ASSETS or path.startswith(PUBLIC_PREFIXES):
        return True
    if path.startswith(INTEROP_READ_PREFIXES) and method in SAFE_METHODS:
        return True
    return path.startswith(OPEN311_PREFIX) and method == "POST"  # its API key is the check


#: While the database cannot be reached, a session this web process checked successfully
#: within this long stays signed in, so open pages keep refreshing and show their degraded
#: state instead of failing every request. Nothing can end a session meanwhile (logout,
#: disabling an account and the idle stamp all need the database too); once it is back,
#: every request is checked against it again.
SESSION_OUTAGE_GRACE_S = 300.0
_sessions_seen: dict[str, tuple[Account, float]] = {}
_sessions_lock = threading.Lock()


def _remember_session(token: str, account: Account | None) -> None:
    key = users._session_key(token)  # never the token itself in memory longer than a request
    stamp = time.monotonic()
    with _sessions_lock:
        if account is None:
            _sessions_seen.pop(key, None)
            return
        _sessions_seen[key] = (account, stamp)
        if len(_sessions_seen) > 10_000:  # drop what the grace no longer covers
            for old in [k for k, (_, at) in _sessions_seen.items() if stamp - at > SESSION_OUTAGE_GRACE_S]:
                del _sessions_seen[old]


def _session_during_outage(token: str) -> Account | None:
    with _sessions_lock:
        seen = _sessions_seen.get(users._session_key(token))
    if seen is None or time.monotonic() - seen[1] > SESSION_OUTAGE_GRACE_S:
        return None
    return seen[0]


def _resolve_account() -> Account | None:
    token = flask.session.get("sid")
    if not isinstance(token, str):
        return None
    cfg = config()
    try:
        with cfg.engine.begin() as conn:
            check = users.check_session(conn, token, now=cfg.clock(), policy=cfg.sessions)
    except sa.exc.OperationalError:
        account = _session_during_outage(token)
        if account is None:
            raise
        return account
    _remember_session(token, check.account)
    if check.account is None:
        flask.g.cityops_session_end = check.ended
        flask.session.pop("sid", None)
    return check.account


def _gate() -> flask.Response | None:
    request = flask.request
    path = request.path
    if path == "/metrics":
        return _metrics_gate()
    if path.startswith(INTEROP_READ_PREFIXES) or path in ("/healthz", "/readyz") or path in LOGIN_ASSETS:
        # Machine-to-machine and static: no session is read or started.
        return (
            None
            if is_public(path, request.method)
            else _json_error(401, "unauthenticated", t("auth.required"))
        )
    account = _resolve_account()
    flask.g.cityops_account = account
    _ensure_csrf_token()
    if is_public(path, request.method):
        return None
    if account is None:
        ended = flask.g.get("cityops_session_end")
        _audit_anonymous(f"session_{ended}" if ended else "anonymous")
        if request.method in SAFE_METHODS and (_page_for(path) is not None or _wants_html()):
            return flask.redirect(f"{LOGIN_PATH}?{urlencode({'next': _next_target()})}", code=303)
        message = t("auth.expired") if ended else t("auth.required")
        return _json_error(401, "unauthenticated", message)
    if request.method not in SAFE_METHODS and not _csrf_ok():
        _audit_denied(account, "csrf", "csrf", path, None)
        return _json_error(403, "csrf", t("auth.csrf"))
    page = _page_for(path) if request.method in SAFE_METHODS else None
    if page is not None:
        refusal = page_refusal(page, account)
        if refusal is not None:
            if account.kiosk_path:
                return flask.redirect(account.kiosk_path, code=303)
            _audit_denied(account, page.get("permission") or "view", "page", path, None)
            return flask.Response(
                _plain_page(t("auth.forbidden_title"), refusal), status=403, mimetype="text/html"
            )
        other = district_refusal(page, account, _path_variables(page, path))
        if other is not None:
            _audit_denied(account, Permission.VIEW, "district", path, other)
            return flask.Response(
                _plain_page(t("auth.forbidden_title"), district_page_refused(account)),
                status=403,
                mimetype="text/html",
            )
        home = scoped_home(page, account)
        if home is not None:
            return flask.redirect(home, code=303)
    return None


def page_refusal(page: Mapping[str, Any], account: Account | None) -> str | None:
    """Why ``account`` may not open ``page`` (None: it may)."""
    if account is None:
        return t("auth.required")
    if account.kiosk_path and page.get("path") != account.kiosk_path:
        return t("auth.kiosk_only", path=account.kiosk_path)
    permission = page.get("permission")
    if permission and not account.can(Permission(permission)):
        return t("auth.denied.role", role=role_label(account.role.value))
    return None


#: Page-registry keys (``dash.register_page(..., key=…)``) for district scope:
#: ``district_variable`` names the path variable that is a district code (the page of
#: another district is refused); ``scoped_home`` is where a district-scoped account is
#: sent instead of the page, ``{district}`` standing for its district (the overview).
DISTRICT_VARIABLE = "district_variable"
SCOPED_HOME = "scoped_home"


def district_refusal(
    page: Mapping[str, Any], account: Account | None, variables: Mapping[str, Any]
) -> str | None:
    """The district a page's URL asks for when ``account`` may not see it (None: it may)."""
    name = page.get(DISTRICT_VARIABLE)
    if name is None or account is None:
        return None
    code = str(variables.get(name) or "")
    return None if account.may_act_in(code) else code


def district_page_refused(account: Account) -> str:
    return t("scope.page_refused", name=scope_name(account.district_code or ""))


def scoped_home(page: Mapping[str, Any], account: Account | None) -> str | None:
    """Where ``account`` goes instead of ``page`` (None: the page itself)."""
    home = page.get(SCOPED_HOME)
    if home is None or account is None or account.district_code is None:
        return None
    return str(home).format(district=account.district_code)


def _path_variables(page: Mapping[str, Any], path: str) -> dict[str, str]:
    template = page.get("path_template")
    if not template:
        return {}
    parts = (path.rstrip("/") or "/").split("/")
    return {
        name[1:-1]: value
        for name, value in zip(template.split("/"), parts, strict=False)
        if name.startswith("<") and name.endswith(">")
    }


def _guard_page_layouts(registry: Mapping[str, dict[str, Any]]) -> None:
    """Every page's layout checks the viewer first: Dash renders pages through a callback, so
    the gate on the URL alone would not stop a crafted router request."""
    for page in registry.values():
        if not getattr(page.get("layout"), "cityops_guarded", False):
            page["layout"] = _guarded_layout(page, page.get("layout"))


def _guarded_layout(page: Mapping[str, Any], layout: Any) -> Callable[..., Any]:
    # A closure, not default arguments: the router passes the URL's query as keywords.
    def guarded(**kwargs: Any) -> Any:
        account = current_user()
        refusal = page_refusal(page, account)
        if refusal is not None:
            return dash.html.Div(refusal, className="auth-refused page", role="alert")
        other = district_refusal(page, account, kwargs)
        if other is not None:
            _audit_denied(account, Permission.VIEW, "district", str(page.get("path") or ""), other)
            return dash.html.Div(district_page_refused(account), className="auth-refused page", role="alert")
        home = scoped_home(page, account)
        if home is not None:
            # Reached inside the app (a link to it): load the scoped page instead, as the
            # gate does for a typed URL.
            return dash.html.Div(
                [
                    dash.dcc.Location(id="auth-scoped-home", href=home, refresh=True),
                    t("scope.opening_home", name=scope_name(account.district_code or "")),
                ],
                className="page status-line",
            )
        return layout(**kwargs) if callable(layout) else layout

    guarded.cityops_guarded = True  # type: ignore[attr-defined]
    return guarded


def _page_for(path: str) -> Mapping[str, Any] | None:
    stripped = path.rstrip("/") or "/"
    for page in dash.page_registry.values():
        if page.get("path") == stripped:
            return page
        template = page.get("path_template")
        if template:
            prefix = template.split("<", 1)[0].rstrip("/")
            if prefix and stripped.startswith(prefix + "/") and stripped.count("/") == template.count("/"):
                return page
    return None


def _wants_html() -> bool:
    return "text/html" in (flask.request.headers.get("Accept") or "")


def _next_target() -> str:
    request = flask.request
    return request.full_path.rstrip("?") if request.query_string else request.path


def _json_error(status: int, error: str, message: str) -> flask.Response:
    body = json.dumps({"error": error, "message": message}, ensure_ascii=False)
    return flask.Response(body, status=status, mimetype="application/json")


def _metrics_gate() -> flask.Response | None:
    token = config().settings.metrics_token
    if token is None:
        return None
    given = flask.request.headers.get("Authorization", "")
    if hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        return None
    response = _json_error(
        401, "unauthenticated", "metrics need Authorization: Bearer <CITYOPS_METRICS_TOKEN>"
    )
    response.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return response


def _too_large(_error: Exception) -> flask.Response:
    limit = config().settings.max_request_bytes
    return _json_error(413, "too_large", t("auth.too_large", limit=limit))


# ---- CSRF ----------------------------------------------------------------------------------------


def csrf_token() -> str:
    """This browser's CSRF token (kept in the signed session; a new one at each sign-in)."""
    return _ensure_csrf_token()


def _ensure_csrf_token() -> str:
    token = flask.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        flask.session["csrf"] = token
    return token


def _csrf_ok() -> bool:
    expected = flask.session.get("csrf")
    if not isinstance(expected, str):
        return False
    given = flask.request.headers.get(CSRF_HEADER) or flask.request.form.get(CSRF_FIELD) or ""
    return hmac.compare_digest(given.encode(), expected.encode())


# ---- headers -------------------------------------------------------------------------------------


def content_security_policy(script_hashes: list[str], tile_url: str | None = None) -> str:
    """Only this origin; ``blob:`` workers for the map; Dash's own inline scripts by hash.

    Styles allow ``'unsafe-inline'``: Plotly and MapLibre insert ``<style>`` elements at
    run time whose content no hash can predict. Scripts never do.
    """
    connect = ["'self'"]
    img = ["'self'", "data:", "blob:"]
    if tile_url:
        from urllib.parse import urlsplit

        parts = urlsplit(tile_url)
        origin = f"{parts.scheme}://{parts.netloc}"
        img.append(origin)
        connect.append(origin)
    directives = {
        "default-src": ["'self'"],
        "script-src": ["'self'", *script_hashes],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": img,
        "font-src": ["'self'", "data:"],
        "connect-src": connect,
        "worker-src": ["'self'", "blob:"],
        "child-src": ["'self'", "blob:"],
        "media-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
    return "; ".join(f"{name} {' '.join(values)}" for name, values in directives.items())


_csp_cache: dict[int, str] = {}


def _csp() -> str:
    app = dash.get_app()
    cached = _csp_cache.get(id(app))
    if cached is not None:
        return cached
    try:
        hashes = list(app.csp_hashes())
    except Exception:  # before Dash has collected its inline scripts: do not cache yet
        return content_security_policy([], config().settings.tile_url)
    policy = content_security_policy(hashes, config().settings.tile_url)
    # Dash collects its inline scripts (clientside callbacks, the pages' title script) on
    # the first request; the policy is final once both steps have run.
    if all(getattr(app, "_got_first_request", {}).values()):
        _csp_cache[id(app)] = policy
    return policy


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


#: Where Dash serves its component bundles and the project's assets from.
STATIC_CODE_PATHS = ("/_dash-component-suites/", "/assets/")


def _headers(response: flask.Response) -> flask.Response:
    response.headers["Content-Security-Policy"] = _csp()
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if flask.request.is_secure:
        response.headers["Strict-Transport-Security"] = "max-age=31536000"
    if flask.request.path.startswith(STATIC_CODE_PATHS):
        # Scripts, styles, sounds: the same for everyone and no data. Kept by the browser
        # and checked again (ETag) instead of fetched again: plotly.js alone is 4.8 MB
        # per page load otherwise. A fingerprinted URL keeps Dash's own long max-age.
        response.headers.setdefault("Cache-Control", "no-cache")
    elif flask.g.get("cityops_account") is not None or flask.request.path == LOGIN_PATH:
        response.headers.setdefault("Cache-Control", "no-store")
    token = flask.session.get("csrf")
    if isinstance(token, str) and flask.request.cookies.get(CSRF_COOKIE) != token:
        # Readable by the page's script (that is the point: Dash echoes it as a header);
        # useless to another site, which can neither read it nor set the header.
        response.set_cookie(
            CSRF_COOKIE, token, path="/", samesite="Strict", secure=flask.request.is_secure, httponly=False
        )
    return response


# ---- login and logout ----------------------------------------------------------------------------


def safe_next(target: str | None) -> str:
    from dashboards.shell import safe_next as shell_safe_next

    path = shell_safe_next(target)
    return "/" if path.startswith((LOGIN_PATH, LOGOUT_PATH)) else path


def _login_page(message: str | None = None, status: int = 200, username: str = "") -> flask.Response:
    target = safe_next(flask.request.values.get("next"))
    if current_user() is not None and message is None:
        return flask.redirect(current_user().kiosk_path or target, code=303)  # type: ignore[union-attr]
    lang = current_language()
    ended = flask.g.get("cityops_session_end")
    if message is None and ended in (users.SessionEnd.IDLE, users.SessionEnd.EXPIRED):
        message = t("auth.expired")
    from dashboards.shell import switch_href

    sso = ""
    if config().settings.oidc is not None:
        sso = (
            f'<p class="login-sso"><a href="/login/sso?{escape(urlencode({"next": target}))}">'
            f"{escape(t('auth.sso'))}</a></p>"
        )
    error = f'<p class="login-error" role="alert">{escape(message)}</p>' if message else ""
    body = f"""<main class="login">
<h1 class="login-title">{escape(t("app.title"))}</h1>
<p class="login-sub">{escape(t("auth.login_title"))}</p>
<form class="login-form" method="post" action="{LOGIN_PATH}" autocomplete="on">
<input type="hidden" name="{CSRF_FIELD}" value="{escape(csrf_token())}">
<input type="hidden" name="next" value="{escape(target)}">
<label for="login-username">{escape(t("auth.username"))}</label>
<input id="login-username" name="username" type="text" autocomplete="username" maxlength="64" required
 autofocus value="{escape(username)}">
<label for="login-password">{escape(t("auth.password"))}</label>
<input id="login-password" name="password" type="password" autocomplete="current-password"
 maxlength="{users.PASSWORD_MAX}" required>
{error}
<button id="login-submit" type="submit">{escape(t("auth.sign_in"))}</button>
</form>
{sso}
<p class="login-lang"><a href="{escape(switch_href(lang, LOGIN_PATH + "?" + urlencode({"next": target})))}">
{escape(t("shell.switch_language"))}</a></p>
</main>"""
    page = _document(t("auth.login_title"), body, lang)
    return flask.Response(page, status=status, mimetype="text/html")


def _document(title: str, body: str, lang: str | None = None) -> str:
    lang = lang or current_language()
    return f"""<!DOCTYPE html>
<html lang="{HTML_LANG[lang]}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} · {escape(t("app.short"))}</title>
<link rel="stylesheet" href="/assets/cityops.css"><link rel="stylesheet" href="/assets/cityops-login.css">
</head><body class="login-body">{body}</body></html>"""


def _plain_page(title: str, message: str) -> str:
    body = (
        f'<main class="login"><h1 class="login-title">{escape(title)}</h1>'
        f'<p class="login-error" role="alert">{escape(message)}</p>'
        f'<p><a href="/">{escape(t("auth.home"))}</a></p></main>'
    )
    return _document(title, body)


def _login_post() -> flask.Response:
    form = flask.request.form
    username = (form.get("username") or "").strip()[:64]
    password = form.get("password") or ""
    if not _csrf_ok():
        _audit_anonymous("login_csrf")
        return _login_page(t("auth.csrf"), status=403, username=username)
    if not username or not password:
        return _login_page(t("auth.missing"), status=400, username=username)
    cfg = config()
    with cfg.engine.begin() as conn:
        result = users.authenticate(
            conn, username, password, address=client_address(), now=cfg.clock(), policy=cfg.throttle
        )
    if result.outcome is SignIn.LOCKED:
        return _login_page(
            t("auth.locked", minutes=_minutes(cfg.throttle.lock.total_seconds())), 429, username
        )
    if result.outcome is SignIn.DISABLED:
        return _login_page(t("auth.disabled"), status=403, username=username)
    if result.outcome is not SignIn.OK or result.account is None or result.session_id is None:
        return _login_page(t("auth.wrong"), status=401, username=username)
    begin_session(result.session_id)
    target = result.account.kiosk_path or safe_next(form.get("next"))
    return flask.redirect(target, code=303)


def begin_session(session_id: str) -> None:
    """A fresh signed session for a sign-in: new CSRF token, nothing kept from before."""
    flask.session.clear()
    flask.session.permanent = True
    flask.session["sid"] = session_id
    flask.session["csrf"] = secrets.token_urlsafe(32)


def _minutes(seconds: float) -> int:
    return max(1, round(seconds / 60))


def _logout() -> flask.Response:
    if flask.request.method == "GET":
        # A link cannot end a session (another site could embed it); show the button instead.
        if current_user() is None:
            return flask.redirect(LOGIN_PATH, code=303)
        body = (
            f'<main class="login"><h1 class="login-title">{escape(t("auth.logout"))}</h1>'
            f'<form class="login-form" method="post" action="{LOGOUT_PATH}">'
            f'<input type="hidden" name="{CSRF_FIELD}" value="{escape(csrf_token())}">'
            f'<button id="logout-submit" type="submit">{escape(t("auth.logout"))}</button></form></main>'
        )
        return flask.Response(_document(t("auth.logout"), body), mimetype="text/html")
    if not _csrf_ok():
        return _json_error(403, "csrf", t("auth.csrf"))
    token = flask.session.get("sid")
    if isinstance(token, str):
        cfg = config()
        with cfg.engine.begin() as conn:
            users.end_session(conn, token, address=client_address(), now=cfg.clock())
    flask.session.clear()
    flask.g.cityops_account = None
    response = flask.redirect(LOGIN_PATH, code=303)
    response.delete_cookie(CSRF_COOKIE, path="/")
    return response


__all__ = [
    "PermissionDenied",
    "acts",
    "client_address",
    "content_security_policy",
    "csrf_token",
    "current_actor",
    "current_user",
    "district_refusal",
    "in_scope",
    "install",
    "is_public",
    "page_refusal",
    "record",
    "refuse_out_of_scope",
    "require",
    "scope_district",
    "scoped_home",
]
