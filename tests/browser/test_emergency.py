"""The emergency page as a duty officer meets it: ``python app.py``, one headless Chromium.

The page shows the seeded resources and the simulator's live sensors; a smoke detector
then reports smoke over MQTT (the embedded Redis lives inside the app's process, so the
alert must come in the way real ones do); the critical alert appears on the page and the
officer turns it into an incident from there; the incident list and panel show it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from tests.browser.support import (
    SCREENSHOTS,
    chromium,
    click_when_ready,
    foreign_requests,
    running_demo,
    severe_errors,
    sign_in,
    wait_until,
)

pytestmark = pytest.mark.browser
SCREENSHOT = SCREENSHOTS / "emergency.png"
DEVICE_ID = "smoke-emergency-test-01"
DEVICE_NAME = "应急页测试烟感01"


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    with running_demo(tmp_path_factory.mktemp("emergency"), "/emergency") as running:
        yield running.url("/emergency"), running.mqtt_url


@pytest.fixture(scope="module")
def driver(system: tuple[str, str]) -> Iterator[object]:
    browser = chromium()
    try:
        sign_in(browser, system[0], "duty_officer")
        yield browser
    finally:
        browser.quit()


def publish_smoke(mqtt_url: str) -> None:
    from ingest.mqtt import MqttClient

    client = MqttClient(mqtt_url, "emergency-test-publisher").start()
    try:
        meta = {"type": "smoke", "lon": 106.9335, "lat": 30.3362, "name": DEVICE_NAME}
        client.publish(
            f"cityops/v1/sensors/{DEVICE_ID}/meta", json.dumps(meta, ensure_ascii=False), retain=True
        )
        time.sleep(1)  # the worker registers the device before its first reading
        reading = {"ts": datetime.now(UTC).isoformat(), "metrics": {"smoke": 0.62, "temp": 33.0}}
        client.publish(f"cityops/v1/sensors/{DEVICE_ID}/obs", json.dumps(reading))
    finally:
        client.stop()


def text(driver, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id).text


def test_an_officer_opens_an_incident_from_a_critical_alert_on_the_page(system, driver) -> None:
    from selenium.webdriver.common.by import By

    url, mqtt_url = system
    driver.get(url)
    # The seeded resources (46, rescue teams included) and the simulator's live sensors.
    assert wait_until(lambda: text(driver, "emergency-kpi-resources") == "46", 40), text(
        driver, "emergency-kpi-resources"
    )
    assert wait_until(
        lambda: "水位" in text(driver, "emergency-sensors") and "在线" in text(driver, "emergency-sensors"),
        30,
    )
    assert wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "#emergency-map .main-svg"), 20)
    legend = text(driver, "emergency-map-panel")
    for kind in ("消防救援站", "医院", "应急避难场所", "救援队伍", "Ⅰ级"):
        assert kind in legend, kind
    # The signed-in duty officer acts; no name to type.
    assert wait_until(lambda: "demo-duty-officer" in text(driver, "emergency-officer-label"), 10)

    publish_smoke(mqtt_url)
    button = f"//tr[contains(., '{DEVICE_NAME}')]//button"
    assert wait_until(lambda: driver.find_elements(By.XPATH, button), 30), text(driver, "emergency-alerts")
    assert click_when_ready(driver, button, 15), text(driver, "emergency-alerts")
    assert wait_until(lambda: "已转为突发事件" in text(driver, "emergency-feedback"), 15), text(
        driver, "emergency-feedback"
    )
    # The new incident is listed, picked, and its panel offers the response.
    assert wait_until(lambda: DEVICE_NAME in text(driver, "emergency-incidents"), 10)
    assert wait_until(lambda: DEVICE_NAME in text(driver, "emergency-incident"), 10)
    panel = text(driver, "emergency-incident")
    assert "接报" in panel and "最近救援力量" in panel and "邻水县消防救援站" in panel
    assert wait_until(lambda: driver.find_element(By.ID, "emergency-btn-respond").is_enabled(), 10)
    # The alert row now names its incident instead of offering the button.
    assert wait_until(lambda: not driver.find_elements(By.XPATH, button), 10)

    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 1920, "height": 1080, "deviceScaleFactor": 1, "mobile": False},
    )
    time.sleep(3)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SCREENSHOT))

    assert severe_errors(driver) == []
    assert foreign_requests(driver) == []
