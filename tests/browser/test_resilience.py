"""The web tier under faults, in a real browser: the production layout (``cityops web`` alone,
an ingest worker, the simulator, PostgreSQL + PostGIS, Redis, Mosquitto), every service a
private instance from tests/faults.py so breaking it disturbs nothing else.

- The web worker is SIGKILLed and started again on the same port: the open page shows the
  lost-connection notice, then clears it, reopens its event stream and shows new data —
  without a reload.
- PostgreSQL goes away: the open page says what is missing instead of failing, keeps its
  live half and its event stream, another page opened inside the app says so too, and both
  recover without a reload when it is back. The
  outage here is short (``CITYOPS_FAULT_WEB_PG_OUTAGE_S``, 20 s): pages ask the database on
  every refresh, so 20 s already spans more than one refresh of each page and the behaviour
  is the same at 60 s; ingest's one-minute outage is proven in
  tests/integration/test_faults_ingest.py.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from dashboards.i18n import t
from tests.browser import support
from tests.browser.support import chromium, severe_errors, sign_in, wait_until
from tests.faults import (
    CityopsProcess,
    FaultyMosquitto,
    IngestProcess,
    PrivatePostgres,
    PrivateRedis,
    WebProcess,
    add_account,
    simulator,
    start_private_services,
)

pytestmark = [pytest.mark.browser, pytest.mark.real_services]

#: The simulator's rate: enough that every page has something new every second.
FEED_RATE = 40.0
#: How long PostgreSQL stays away (see the module docstring).
PG_OUTAGE_S = float(os.environ.get("CITYOPS_FAULT_WEB_PG_OUTAGE_S", "20"))
#: Generous: two loaded cores, a web process starting cold, Chromium.
PATIENCE_S = 90
#: What the browser logs while the server it talks to is down or cut off mid-stream. Only
#: allowed while a fault is on; before and after it the console must stay clean.
OUTAGE_NOISE = (
    "ERR_CONNECTION_REFUSED",
    "ERR_CONNECTION_RESET",
    "ERR_EMPTY_RESPONSE",
    "ERR_INCOMPLETE_CHUNKED_ENCODING",
    "ERR_CONTENT_LENGTH_MISMATCH",  # a reply cut off by the kill
    "ERR_NETWORK_CHANGED",
    # Dash's renderer, for a callback whose request found no server.
    "Callback failed: the server did not respond.",
)
LIVE_STATE = "return window.cityopsLive && window.cityopsLive.state"
STREAM_OPEN = (
    "const s = window.cityopsLive && window.cityopsLive.state;"
    "return !!(s && s.connected === true && s.source && s.source.readyState === 1);"
)
#: Set on ``window`` before a fault: still there afterwards means the page was not reloaded.
MARKER = "window.__cityopsResilienceMarker"


@dataclass
class Stack:
    postgres: PrivatePostgres
    redis: PrivateRedis
    broker: FaultyMosquitto
    ingest: IngestProcess
    feed: CityopsProcess
    web: WebProcess

    def url(self, path: str) -> str:
        return self.web.base_url + path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("resilience")
    postgres, cache, broker, env = start_private_services(workdir)
    env["CITYOPS_LOG_LEVEL"] = "INFO"
    account = {"username": "duty.resilience", "password": secrets.token_urlsafe(18)}
    ingest = feed = web = None
    try:
        add_account(env, account["username"], "leader", account["password"])
        ingest = IngestProcess(workdir, env | {"CITYOPS_WORKER_ID": "resilience-1"}).start()
        feed = simulator(workdir, env, FEED_RATE).start()
        web = WebProcess(workdir, env).start()
        # sign_in() reads the account for a base URL from a file, as the demo writes it.
        accounts = workdir / "accounts.json"
        accounts.write_text(json.dumps({"leader": account}), encoding="utf-8")
        support._ACCOUNT_FILES[web.base_url] = accounts
        yield Stack(postgres, cache, broker, ingest, feed, web)
    finally:
        for process in (web, feed, ingest):
            if process is not None:
                process.stop()
        if web is not None:
            support._ACCOUNT_FILES.pop(web.base_url, None)
        broker.stop()
        cache.stop()
        postgres.remove()


@pytest.fixture
def browser(stack: Stack) -> Iterator[Any]:
    driver = chromium()
    try:
        sign_in(driver, stack.url("/"), "leader")
        yield driver
    finally:
        driver.quit()


def console_errors(driver: Any, allowed: tuple[str, ...] = ()) -> list[str]:
    return [e for e in severe_errors(driver) if not any(a in e for a in allowed)]


def text_of(driver: Any, element_id: str) -> str:
    return driver.find_element("id", element_id).text


def notice_shown(driver: Any) -> bool:
    notice = driver.find_element("id", "shell-conn")
    return notice.is_displayed() and t("shell.disconnected", "zh") in notice.text


def open_live_page(driver: Any, url: str, ready_id: str) -> None:
    """Open ``url``, wait for its first data and its event stream, mark the window."""

    def drawn() -> bool:
        return wait_until(lambda: text_of(driver, ready_id) not in ("", "—"), PATIENCE_S / 2)

    driver.get(url)
    if not drawn():  # a web process that just started can miss a page's first callbacks
        driver.refresh()  # (before any fault: the no-reload checks start below)
        assert drawn(), f"{driver.current_url}: {driver.find_element('tag name', 'body').text[:800]}"
    assert wait_until(lambda: driver.execute_script(STREAM_OPEN), PATIENCE_S), "event stream open"
    driver.execute_script(f"{MARKER} = performance.timeOrigin;")


def not_reloaded(driver: Any) -> bool:
    return driver.execute_script(f"return {MARKER} === performance.timeOrigin;") is True


def newest_note_ms(driver: Any) -> float:
    note = driver.execute_script(LIVE_STATE)["lastNote"]
    return float(note["received_ms"]) if note else 0.0


def test_an_open_page_reconnects_by_itself_after_the_web_worker_is_killed(stack: Stack, browser: Any) -> None:
    driver = browser
    open_live_page(driver, stack.url("/"), "kpi-messages-hour")
    readings = "return window.cityopsLive.state.lastNote.versions.observations || 0"
    assert wait_until(lambda: driver.execute_script(readings) > 0, PATIENCE_S), "readings announced"
    assert console_errors(driver) == []
    assert not notice_shown(driver)

    stack.web.kill()
    assert not stack.web.alive()
    assert wait_until(lambda: notice_shown(driver), 30), text_of(driver, "shell-conn")
    assert wait_until(lambda: driver.execute_script(LIVE_STATE)["connected"] is False, 30), "stream lost"

    stack.web.start()  # same port, like a supervisor restarting the worker
    restarted_ms = time.time() * 1000
    assert wait_until(lambda: not notice_shown(driver), PATIENCE_S), text_of(driver, "shell-conn")
    assert wait_until(lambda: driver.execute_script(STREAM_OPEN), PATIENCE_S), "stream open again"
    # New notes arrive on the new stream, and the page draws new data from them.
    assert wait_until(lambda: newest_note_ms(driver) > restarted_ms, PATIENCE_S), "notes after the restart"
    before = text_of(driver, "kpi-messages-hour")
    assert wait_until(lambda: text_of(driver, "kpi-messages-hour") != before, PATIENCE_S), before
    assert not_reloaded(driver), "the page recovered without a reload"
    errors = console_errors(driver, OUTAGE_NOISE)
    assert errors == [], "\n".join(errors)
    assert t("shell.disconnected", "zh") not in text_of(driver, "shell-conn")


def go_to(driver: Any, path: str) -> None:
    """Follow the shell's navigation link to ``path``: the app changes page without a reload."""
    link = driver.find_element("css selector", f'.shell-nav a[href="{path}"]')
    driver.execute_script("arguments[0].click();", link)


def test_open_pages_show_the_degraded_state_while_postgresql_is_away(stack: Stack, browser: Any) -> None:
    driver = browser
    open_live_page(driver, stack.url("/"), "kpi-devices-online")
    database_missing = t("vital.database_degraded", "zh", reason="")
    hotline_missing = t("hotline.degraded", "zh", reason="")
    assert database_missing not in text_of(driver, "overview-status")
    assert console_errors(driver) == []

    stack.postgres.stop()
    outage_started = time.monotonic()
    try:
        # The open overview says what is missing on its next refresh (timer or push) and
        # keeps its live half (Redis): figures, not dashes.
        assert wait_until(lambda: database_missing in text_of(driver, "overview-status"), PATIENCE_S), (
            text_of(driver, "overview-status")
        )
        assert text_of(driver, "kpi-devices-online") not in ("", "—")
        # Moving to another page inside the app still works, and that page says so too.
        go_to(driver, "/hotline")
        assert wait_until(lambda: hotline_missing in text_of(driver, "hotline-status"), PATIENCE_S), (
            driver.find_element("tag name", "body").text[:800]
        )
        # Hold the outage for its whole length: the page keeps saying so, the event stream
        # (Redis) stays open, the server stays reachable, and nothing fails in the browser.
        while time.monotonic() - outage_started < PG_OUTAGE_S:
            assert driver.execute_script(STREAM_OPEN), driver.execute_script(LIVE_STATE)
            assert not notice_shown(driver)
            time.sleep(1)
        assert hotline_missing in text_of(driver, "hotline-status")
        body = driver.find_element("tag name", "body").text
        assert "Internal Server Error" not in body and "Traceback" not in body
        assert console_errors(driver) == []
    finally:
        stack.postgres.start()

    # Back: the next refreshes read the database again, on the same page, then the overview.
    assert wait_until(lambda: hotline_missing not in text_of(driver, "hotline-status"), PATIENCE_S), text_of(
        driver, "hotline-status"
    )
    go_to(driver, "/")
    assert wait_until(lambda: database_missing not in text_of(driver, "overview-status"), PATIENCE_S), (
        text_of(driver, "overview-status")
    )
    assert not_reloaded(driver)
    assert driver.execute_script(STREAM_OPEN)
    assert console_errors(driver) == []
