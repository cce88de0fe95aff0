"""The language switch: ``t()`` answers in the request's language, the shell's routes set it,
and nothing translates at import time."""

from __future__ import annotations

import ast
from pathlib import Path

import flask
import pytest

from dashboards import shell
from dashboards.i18n import (
    LANGUAGE_COOKIE,
    LANGUAGES,
    STRINGS,
    current_language,
    key_for_text,
    language,
    normalise_language,
    t,
)

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def server() -> flask.Flask:
    app = flask.Flask(__name__)
    shell.register_routes(app)

    @app.route("/probe")
    def probe() -> str:
        return t("nav.overview")

    return app


def test_every_key_has_every_language() -> None:
    for key, entry in STRINGS.items():
        for lang in LANGUAGES:
            assert entry.get(lang, "").strip(), (key, lang)


def test_outside_a_request_the_default_is_chinese_and_an_explicit_language_wins() -> None:
    assert current_language() == "zh"
    assert t("nav.overview") == "城市运行体征"
    assert t("nav.overview", lang="en") == "City vital signs"
    with language("en"):
        assert t("nav.overview") == "City vital signs"
        assert t("nav.overview", lang="zh") == "城市运行体征"
    assert t("nav.overview") == "城市运行体征"
    with pytest.raises(ValueError, match="unknown language 'fr'"), language("fr"):
        pass


def test_t_follows_the_request_cookie_and_the_query(server: flask.Flask) -> None:
    with server.test_request_context("/", headers={"Cookie": f"{LANGUAGE_COOKIE}=en"}):
        assert t("nav.overview") == "City vital signs"
        assert t("unit.seconds_ago", n=5) == "5 s ago"
    with server.test_request_context("/"):
        assert t("nav.overview") == "城市运行体征"
    # The query beats the cookie: a kiosk URL decides for itself.
    with server.test_request_context("/?lang=zh", headers={"Cookie": f"{LANGUAGE_COOKIE}=en"}):
        assert t("nav.overview") == "城市运行体征"
    # A cookie with rubbish in it is ignored, not an error.
    with server.test_request_context("/", headers={"Cookie": f"{LANGUAGE_COOKIE}=<script>"}):
        assert t("nav.overview") == "城市运行体征"


def test_language_codes_are_normalised() -> None:
    assert [normalise_language(v) for v in ("en", "EN-us", "zh-CN", "zh_Hans", "fr", "", None)] == [
        "en",
        "en",
        "zh",
        "zh",
        None,
        None,
        None,
    ]


def test_the_switch_route_sets_the_cookie_and_goes_back_to_the_page(server: flask.Flask) -> None:
    client = server.test_client()
    response = client.get("/lang/en?next=/ecology")
    assert response.status_code == 303
    assert response.headers["Location"] == "/ecology"
    assert f"{LANGUAGE_COOKIE}=en" in response.headers["Set-Cookie"]
    assert client.get("/probe").text == "City vital signs"
    client.get("/lang/zh?next=/")
    assert client.get("/probe").text == "城市运行体征"


def test_the_switch_never_redirects_off_site_and_refuses_unknown_languages(server: flask.Flask) -> None:
    client = server.test_client()
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)", ""):
        assert client.get("/lang/en", query_string={"next": target}).headers["Location"] == "/"
    response = client.get("/lang/fr?next=/")
    assert response.status_code == 404
    assert "Set-Cookie" not in response.headers


def test_a_lang_query_is_remembered_for_the_callbacks_that_follow(server: flask.Flask) -> None:
    client = server.test_client()
    response = client.get("/probe?lang=en")
    assert response.text == "City vital signs"
    assert f"{LANGUAGE_COOKIE}=en" in response.headers["Set-Cookie"]
    assert client.get("/probe").text == "City vital signs"  # no query: the cookie answers


def test_switch_link_drops_the_lang_query_and_keeps_the_rest() -> None:
    assert shell.safe_next("/wall?lang=en&kiosk=1") == "/wall?kiosk=1"
    assert shell.switch_href("zh", "/districts/511602") == "/lang/en?next=%2Fdistricts%2F511602"
    assert shell.switch_href("en", "/") == "/lang/zh?next=%2F"


def test_ping_answers_without_caching(server: flask.Flask) -> None:
    response = server.test_client().get(shell.PING_PATH)
    assert response.status_code == 204
    assert response.headers["Cache-Control"] == "no-store"


def test_registered_chinese_names_are_shown_in_the_viewers_language(server: flask.Flask) -> None:
    registry = {
        "a": {"name": t("nav.overview"), "title": t("overview.title"), "relative_path": "/", "order": 0},
        "b": {"name": t("nav.ecology"), "title": t("eco.title"), "relative_path": "/ecology", "order": 2},
        "c": {"name": "no key", "title": "no key", "relative_path": "/x", "order": 1},
        "d": {"name": "d", "title": "d", "relative_path": "/d/<code>", "path_template": "/d/<code>"},
    }
    shell.localise_registry(registry)
    with server.test_request_context("/", headers={"Cookie": f"{LANGUAGE_COOKIE}=en"}):
        assert shell.nav_entries(registry) == [
            ("City vital signs", "/"),
            ("no key", "/x"),
            ("Ecology", "/ecology"),
        ]
        assert registry["b"]["title"]() == "Environmental monitoring · Unified city management"
    with server.test_request_context("/"):
        assert shell.nav_entries(registry)[2] == ("生态环境", "/ecology")
        assert registry["b"]["title"]() == "生态环境监测 · 一网统管"
    assert registry["c"]["title"] == "no key"  # nothing to translate it with: left as it is


def test_key_for_text_prefers_the_prefix() -> None:
    # "城市运行体征" is both the nav label and the page title.
    assert key_for_text("城市运行体征", "nav.") == "nav.overview"
    assert key_for_text("城市运行体征", "overview.") == "overview.title"
    assert key_for_text("nothing like this") is None


@pytest.mark.parametrize(
    ("url", "kiosk"),
    [
        ("http://h/wall", True),
        ("http://h/wall/", True),
        ("http://h/ecology?kiosk=1", True),
        ("http://h/ecology?kiosk=true&lang=en", True),
        ("http://h/ecology?kiosk=0", False),
        ("http://h/", False),
        (None, False),
    ],
)
def test_kiosk_urls(url: str | None, kiosk: bool) -> None:
    assert shell.is_kiosk(url) is kiosk


def test_no_module_translates_at_import_time() -> None:
    """A ``t(key)`` run at import is frozen in the language the process started with.

    Page registrations are the one exception: the shell shows their names and titles in
    the viewer's language (``shell.localise_registry``). A call that names its language
    (``t(key, lang=...)``) is deliberate and allowed.
    """
    frozen = []
    for path in sorted((ROOT / "dashboards").rglob("*.py")):
        for call in _import_time_calls(ast.parse(path.read_text(encoding="utf-8"))):
            if not any(k.arg == "lang" for k in call.keywords):
                frozen.append(f"{path.relative_to(ROOT)}:{call.lineno}")
    assert frozen == []


def _import_time_calls(tree: ast.AST) -> list[ast.Call]:
    calls: list[ast.Call] = []

    def walk(node: ast.AST) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            return  # runs later, inside a request
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr == "register_page":
                return
            if isinstance(func, ast.Name) and func.id == "t":
                calls.append(node)
        for child in ast.iter_child_nodes(node):
            walk(child)

    walk(tree)
    return calls
