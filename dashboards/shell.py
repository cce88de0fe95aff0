"""The shell around every page: header, navigation, language switch, clock, connection
notice and kiosk mode.

Everything here is built per request, in the viewer's language (:mod:`dashboards.i18n`):
the layout is a function, page names and titles are looked up when shown, and the
language switch is a plain link to ``/lang/<code>?next=<page>`` that sets a cookie.

Kiosk mode (``/wall``, or any page with ``?kiosk=1``) hides the header: a wall screen
shows the page alone. The browser decides it on every navigation; the first render
decides it from the page URL the layout request came from, so the header never flashes.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import dash
import flask
from dash import ClientsideFunction, Input, Output, State, clientside_callback, dcc, html

from dashboards import push
from dashboards.i18n import (
    BROWSER_LOCALE,
    HTML_LANG,
    LANGUAGE_COOKIE,
    LANGUAGE_QUERY,
    LANGUAGES,
    current_language,
    key_for_text,
    normalise_language,
    t,
)

#: Paths that are kiosks whatever their query says.
KIOSK_PATHS = frozenset({"/wall"})
#: Query parameter that turns any page into a kiosk (no header, no navigation).
KIOSK_QUERY = "kiosk"
#: A cookie for a year: the choice outlives the browser session, like a wall's setting.
LANGUAGE_COOKIE_MAX_AGE_S = 365 * 24 * 3600
#: Same-origin URL the browser pings to tell "server unreachable" from "nothing changed".
PING_PATH = "/api/ping"
#: How often the browser pings while the page is open.
PING_INTERVAL_MS = 5000


# ---- language ---------------------------------------------------------------------------------


def html_lang(lang: str | None = None) -> str:
    return HTML_LANG[lang or current_language()]


def other_language(lang: str) -> str:
    """The switch toggles between the catalogue's two languages."""
    return next(code for code in LANGUAGES if code != lang)


def safe_next(target: str | None) -> str:
    """A same-origin path to go back to after switching language; anything else is ``/``.

    Drops ``lang=`` from the query, which would otherwise override the new cookie.
    """
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != LANGUAGE_QUERY]
    return parts.path + (f"?{urlencode(query)}" if query else "")


def switch_href(lang: str, path: str = "/") -> str:
    """The link that switches from ``lang`` to the other language and comes back to ``path``."""
    return f"/lang/{other_language(lang)}?{urlencode({'next': safe_next(path)})}"


def register_routes(server: flask.Flask) -> None:
    """``/lang/<code>`` (the switch), ``?lang=`` remembered as the cookie, and the ping."""

    @server.route("/lang/<code>")
    def switch_language(code: str) -> flask.Response:
        lang = normalise_language(code)
        if lang is None:
            return flask.Response(
                f"unknown language {code!r}; use one of {', '.join(LANGUAGES)}\n",
                status=404,
                mimetype="text/plain",
            )
        response = flask.redirect(safe_next(flask.request.args.get("next")), code=303)
        _set_language_cookie(response, lang)
        return response

    @server.after_request
    def remember_query_language(response: flask.Response) -> flask.Response:
        # A kiosk opened with ?lang=en keeps English for the callbacks that follow (they
        # are POSTs without the page's query string).
        lang = normalise_language(flask.request.args.get(LANGUAGE_QUERY))
        if lang is not None and flask.request.cookies.get(LANGUAGE_COOKIE) != lang:
            _set_language_cookie(response, lang)
        return response

    @server.route(PING_PATH)
    def ping() -> flask.Response:
        response = flask.Response(status=204)
        response.headers["Cache-Control"] = "no-store"
        return response


def _set_language_cookie(response: flask.Response, lang: str) -> None:
    response.set_cookie(
        LANGUAGE_COOKIE, lang, max_age=LANGUAGE_COOKIE_MAX_AGE_S, path="/", samesite="Lax", httponly=True
    )


# ---- navigation -------------------------------------------------------------------------------


def localise_registry(registry: MutableMapping[str, dict[str, Any]]) -> None:
    """Give every registered page a catalogue key for its name and a title in the viewer's
    language, found from the Chinese text it registered with. A page that registered a
    callable title already translates itself and is left alone."""
    for page in registry.values():
        page.setdefault("nav_key", key_for_text(str(page.get("name", "")), "nav."))
        title = page.get("title")
        if isinstance(title, str) and (key := key_for_text(title)) is not None:
            page["title"] = _title_in_language(key)


def _title_in_language(key: str) -> Any:
    def title(**_path: str) -> str:
        return f"{t(key)} · {t('app.short')}"

    return title


def nav_entries(registry: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str]]:
    """``(label, href)`` of the pages to list, in their registered order, in the viewer's
    language. Pages with a path template (``/districts/<code>``) are reached from maps."""
    entries = []
    for page in sorted(registry.values(), key=lambda p: (p.get("order") is None, p.get("order") or 0)):
        if page.get("path_template") or page.get("nav") is False or not _may_open(page):
            continue
        key = page.get("nav_key")
        entries.append((t(key) if key else str(page["name"]), str(page["relative_path"])))
    return entries


def _may_open(page: Mapping[str, Any]) -> bool:
    """A page registered with a ``permission`` is listed only for those who hold it."""
    from dashboards import auth

    permission = page.get("permission")
    if not permission:
        return True
    account = auth.current_user()
    return account is not None and account.can(permission)


# ---- kiosk ------------------------------------------------------------------------------------


def is_kiosk(url: str | None) -> bool:
    """``/wall`` and any page with ``?kiosk=1`` (or ``true``/``yes``) show no header."""
    if not url:
        return False
    parts = urlsplit(url)
    if parts.path.rstrip("/") in KIOSK_PATHS:
        return True
    values = [v.lower() for k, v in parse_qsl(parts.query) if k == KIOSK_QUERY]
    return any(v in {"1", "true", "yes"} for v in values)


# ---- layout -----------------------------------------------------------------------------------


def layout() -> html.Div:
    """The shell: rebuilt for each page load, in the language of that request."""
    lang = current_language()
    page_url = flask.request.referrer if flask.has_request_context() else None
    path = urlsplit(page_url).path if page_url else "/"
    entries = nav_entries(dash.page_registry)
    links = [dcc.Link(label, href=href, className="shell-link") for label, href in entries]
    return html.Div(
        id="shell",
        className="shell kiosk" if is_kiosk(page_url) else "shell",
        children=[
            html.Header(
                className="shell-header",
                children=[
                    html.Div(t("app.title"), className="shell-title"),
                    html.Div(t("app.short"), className="shell-sub"),
                    html.Nav(links, className="shell-nav"),
                    html.A(
                        t("shell.switch_language"),
                        id="shell-lang",
                        href=switch_href(lang, path),
                        title=t("shell.switch_language_title"),
                        className="shell-lang",
                        lang=HTML_LANG[other_language(lang)],
                    ),
                    # One group, so that when the header needs a second row (ten links in
                    # English) the clock and the account move to it together, on the right.
                    html.Div(
                        [html.Div(id="shell-clock", className="shell-clock"), user_badge()],
                        className="shell-end",
                    ),
                ],
            ),
            # Shown by assets/cityops-shell.js while the server cannot be reached.
            html.Div(
                id="shell-conn",
                className="shell-conn",
                role="status",
                **{
                    "data-lost": t("shell.disconnected"),
                    "data-ping": PING_PATH,
                    "data-ping-ms": str(PING_INTERVAL_MS),
                },
            ),
            dash.page_container,
            # Server push: assets/live.js writes the stream's notes and health here.
            *push.shell_stores(),
            dcc.Interval(id="shell-clock-tick", interval=1000),
            dcc.Store(
                id="shell-locale",
                data={
                    "lang": lang,
                    "html_lang": HTML_LANG[lang],
                    "locale": BROWSER_LOCALE[lang],
                    "other": other_language(lang),
                    "kiosk_paths": sorted(KIOSK_PATHS),
                    "kiosk_query": KIOSK_QUERY,
                },
            ),
            dcc.Store(id="shell-chrome"),
        ],
    )


def user_badge() -> html.Div:
    """Who is signed in, and the sign-out button (a POST with the CSRF token: a link
    could be triggered by another site)."""
    from dashboards import auth

    account = auth.current_user()
    if account is None:
        return html.Div(id="shell-user")
    return html.Div(
        id="shell-user",
        className="shell-user",
        children=[
            html.Span(
                t("auth.signed_in_as", name=account.display_name, role=auth.role_label(account.role.value)),
                id="shell-user-name",
            ),
            html.Form(
                action=auth.LOGOUT_PATH,
                method="POST",
                className="shell-logout",
                children=[
                    dcc.Input(type="hidden", name=auth.CSRF_FIELD, value=auth.csrf_token()),
                    html.Button(t("auth.logout"), id="shell-logout", type="submit"),
                ],
            ),
        ],
    )


# The clock: Beijing time in the viewer's locale, whatever the browser's time zone.
clientside_callback(
    ClientsideFunction("cityops", "clock"),
    Output("shell-clock", "children"),
    Input("shell-clock-tick", "n_intervals"),
    State("shell-locale", "data"),
)

# On every navigation: kiosk or not, the switch's way back, and <html lang>.
clientside_callback(
    ClientsideFunction("cityops", "chrome"),
    Output("shell", "className"),
    Output("shell-lang", "href"),
    Output("shell-chrome", "data"),
    Input("_pages_location", "pathname"),
    Input("_pages_location", "search"),
    State("shell-locale", "data"),
)
