"""The duty officers' console as two officers meet it: ``python app.py``, two Chromium windows.

A smoke detector reports smoke over MQTT to the running system (the embedded Redis lives
inside the app's process, so alerts must come in the way real ones do); both consoles
show the critical alarm; one officer acknowledges with the keyboard; the other console
shows it acknowledged within seconds, and its row stops flashing. Then a second alarm's
SLA countdown ticks in the browser, second by second, while the refreshes send no table.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.browser import support
from tests.browser.support import SCREENSHOTS, chromium, running_demo, severe_errors, wait_until

pytestmark = pytest.mark.browser
SCREENSHOT = SCREENSHOTS / "alerts.png"
DEVICE_ID = "smoke-console-test-01"
DEVICE_NAME = "控制台测试烟感01"


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The embedded demo on free ports: (console URL, MQTT URL)."""
    # A silent simulator: the only alarm is the one this test raises, so every screen's
    # reaction to its acknowledgement can be asserted exactly.
    with running_demo(tmp_path_factory.mktemp("console"), "/alerts", demo_args=("--rate", "0")) as running:
        yield running.url("/alerts"), running.mqtt_url


@pytest.fixture(scope="module")
def officers() -> Iterator[tuple[object, object]]:
    first = chromium()
    try:
        second = chromium()
    except Exception:
        first.quit()
        raise
    try:
        yield first, second
    finally:
        first.quit()
        second.quit()


def publish_smoke(mqtt_url: str, device_id: str = DEVICE_ID, name: str = DEVICE_NAME) -> None:
    from ingest.mqtt import MqttClient

    client = MqttClient(mqtt_url, "console-test-publisher").start()
    try:
        meta = {"type": "smoke", "lon": 106.6332, "lat": 30.4561, "name": name}
        client.publish(
            f"cityops/v1/sensors/{device_id}/meta", json.dumps(meta, ensure_ascii=False), retain=True
        )
        time.sleep(1)  # the worker registers the device before its first reading
        reading = {"ts": datetime.now(UTC).isoformat(), "metrics": {"smoke": 0.55, "temp": 31.0}}
        client.publish(f"cityops/v1/sensors/{device_id}/obs", json.dumps(reading))
    finally:
        client.stop()


def sign_in(driver, url: str, role: str) -> str:
    """Signed in through the login form as the demo's ``role`` account; its user name."""
    from selenium.webdriver.common.by import By

    name = support.sign_in(driver, url, role)["username"]
    driver.get(url)

    def signed_in() -> bool:
        return name in driver.find_element(By.ID, "console-officer-label").text

    # The first page of a freshly started demo can miss its first callbacks while the
    # server warms up; one reload is what an officer would do.
    if not wait_until(signed_in, 20):
        driver.refresh()
        assert wait_until(signed_in, 30), driver.find_element(By.TAG_NAME, "body").text[:300]
    return name


def our_row(driver, name: str = DEVICE_NAME) -> dict | None:
    """The test alert's row as the page shows it: id, state text, flashing or not."""
    return driver.execute_script(
        """for (const tr of document.querySelectorAll('#console-queue tr[data-alert-id]')) {
            if (tr.innerText.includes(arguments[0])) {
                return {id: tr.dataset.alertId, text: tr.innerText, alarm: tr.classList.contains('alarm')};
            }
        } return null;""",
        name,
    )


def errors(driver) -> list[str]:
    return severe_errors(driver)


def test_an_acknowledgement_in_one_console_shows_in_the_other(system, officers) -> None:

    url, mqtt_url = system
    one, two = officers
    first = sign_in(one, url, "duty_officer")
    sign_in(two, url, "admin")
    assert "告警处置台" in one.page_source

    # The command centre's wall is open too: it must ring for the alarm and stop with the ack.
    wall = chromium()
    try:
        support.sign_in(wall, url, "viewer")
        wall.get(url.replace("/alerts", "/wall"))
        _acknowledged_everywhere(one, two, wall, mqtt_url, first)
    finally:
        wall.quit()


def ringing(wall) -> int:
    """How many unacknowledged critical/major alarms the wall rings for (0: silent)."""
    return wall.execute_script(
        "const el = document.getElementById('wall-alarm');"
        "if (!el || !el.classList.contains('ringing')) { return 0; }"
        "const m = el.innerText.match(/\\d+/); return m ? Number(m[0]) : 1;"
    )


def _acknowledged_everywhere(one, two, wall, mqtt_url: str, first: str) -> None:
    from selenium.webdriver.common.by import By

    publish_smoke(mqtt_url)
    assert wait_until(lambda: our_row(one) is not None and our_row(two) is not None, 30), "no alert row"
    assert wait_until(lambda: ringing(wall) == 1, 15), "the wall rings for the new critical alert"
    row = our_row(two)
    assert "Ⅰ级 特别严重" in row["text"] and "待确认" in row["text"] and row["alarm"], row
    alert_id = row["id"]
    assert wait_until(lambda: "紧急告警待确认" in two.find_element(By.ID, "console-alarm").text, 5)

    # Officer one selects the alert, writes a comment and presses A.
    one.execute_script(f"document.getElementById('console-row-{alert_id}').click()")
    assert wait_until(lambda: DEVICE_NAME in one.find_element(By.ID, "console-detail").text, 10)
    comment = one.find_element(By.ID, "console-comment")
    comment.send_keys("<b>已电话核实</b>")
    comment.send_keys("\ue00c")  # Escape leaves the box, so the next key is a shortcut
    one.find_element(By.TAG_NAME, "body").send_keys("a")
    assert wait_until(
        lambda: f"已确认告警 {alert_id}" in one.find_element(By.ID, "console-feedback").text, 10
    ), one.find_element(By.ID, "console-feedback").text

    # Officer two's console shows it acknowledged, by whom, and the row no longer flashes.
    assert wait_until(lambda: "已确认" in our_row(two)["text"] and first in our_row(two)["text"], 5)
    # Each screen refreshes on its own interval: wait for both to stop flashing.
    assert wait_until(lambda: not our_row(two)["alarm"] and not our_row(one)["alarm"], 5)
    # The wall falls silent.
    assert wait_until(lambda: ringing(wall) == 0, 10), ringing(wall)

    # Officer two tries too late: told who was first.
    two.execute_script(f"document.getElementById('console-row-{alert_id}').click()")
    assert wait_until(lambda: DEVICE_NAME in two.find_element(By.ID, "console-detail").text, 10)
    two.find_element(By.ID, "console-btn-acknowledge").click()
    assert wait_until(lambda: first in two.find_element(By.ID, "console-feedback").text, 10)

    # The comment is in the history as typed, as text (no <b> element made from it).
    assert wait_until(lambda: "<b>已电话核实</b>" in two.find_element(By.ID, "console-history").text, 10)
    assert two.find_elements(By.CSS_SELECTOR, "#console-history b") == []

    # The console's design size is the viewport (the window's frame does not count).
    two.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 1920, "height": 1080, "deviceScaleFactor": 1, "mobile": False},
    )
    time.sleep(2)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    two.save_screenshot(str(SCREENSHOT))

    for driver in (one, two):
        assert errors(driver) == []
        resources = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        foreign = [r for r in resources if not r.startswith(("http://127.0.0.1", "data:", "blob:"))]
        assert foreign == []
        assert (
            any(r.endswith("/assets/alarm.wav") for r in resources)
            or driver.execute_script("return document.getElementById('console-audio').getAttribute('src')")
            == "/assets/alarm.wav"
        )


# Every queue refresh the page receives from now on: did it carry the table, the live store?
WATCH_REFRESHES = """
window.testRefreshes = [];
const fetchBefore = window.fetch;
window.fetch = function (input, init) {
    const pending = fetchBefore(input, init);
    const url = typeof input === "string" ? input : (input && input.url) || "";
    if (url.includes("_dash-update-component")) {
        pending.then((answer) => answer.clone().json()).then((body) => {
            const outputs = (body && body.response) || {};
            if ("console-live" in outputs) {
                window.testRefreshes.push({table: "console-queue" in outputs});
            }
        }).catch(() => null);
    }
    return pending;
};
"""

# The countdown cell of the row showing arguments[0], its age cell, and the server's time
# as the page estimates it, read together.
READ_COUNTDOWN = """
for (const tr of document.querySelectorAll('#console-queue tr[data-alert-id]')) {
    if (!tr.innerText.includes(arguments[0])) { continue; }
    const sla = tr.querySelector('td[data-sla-due]');
    const age = tr.querySelector('td[data-since]');
    return {text: sla.textContent, classes: Array.from(sla.classList), due: Number(sla.dataset.slaDue),
            age: age.textContent, since: Number(age.dataset.since),
            now: window.cityopsConsole.serverNow(), offset: window.cityopsConsole.offsetMs()};
} return null;
"""


def test_the_sla_countdown_ticks_in_the_browser_without_the_table_being_resent(system, officers) -> None:
    from dashboards import console

    url, mqtt_url = system
    one, _ = officers
    device, name = "smoke-console-test-02", "控制台测试烟感02"
    if "/alerts" not in one.current_url:
        sign_in(one, url, "duty_officer")
    publish_smoke(mqtt_url, device, name)
    assert wait_until(lambda: one.execute_script(READ_COUNTDOWN, name) is not None, 30), "no alert row"
    time.sleep(3)  # the refreshes that brought the new row are over
    one.execute_script(WATCH_REFRESHES)

    first = one.execute_script(READ_COUNTDOWN, name)
    seen = {first["text"]}
    ages = {first["age"]}
    for _ in range(8):  # about four seconds, two or three queue refreshes
        time.sleep(0.5)
        shown = one.execute_script(READ_COUNTDOWN, name)
        seen.add(shown["text"])
        ages.add(shown["age"])
        # What the server would show at that moment (the script writes once a second).
        due = datetime.fromtimestamp(shown["due"] / 1000, UTC)
        server_now = datetime.fromtimestamp(shown["now"] / 1000, UTC)
        expected = [console.sla_status(due, server_now - timedelta(seconds=s)) for s in (0, 1, 2)]
        assert shown["text"] in {e.text for e in expected}, (shown, expected)
        status = next(e for e in expected if e.text == shown["text"])
        assert f"sla-{status.state}" in shown["classes"], shown
        assert re.fullmatch(r"(剩余|即将超时|已超时) \d+:\d\d", shown["text"]), shown["text"]
        since = datetime.fromtimestamp(shown["since"] / 1000, UTC)
        ages_then = {console.duration_text((server_now - since).total_seconds() - s) for s in (0, 1, 2)}
        assert shown["age"] in ages_then, (shown, ages_then)
    assert len(seen) >= 3 and len(ages) >= 3, (seen, ages)  # it ticked, second by second
    # Same machine: the estimated difference between the clocks is small.
    assert abs(first["offset"]) < 3000, first
    refreshes = one.execute_script("return window.testRefreshes")
    assert refreshes, "the queue kept refreshing"
    assert not any(r["table"] for r in refreshes), refreshes
    assert errors(one) == []
