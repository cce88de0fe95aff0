"""The overview tells a silent feed from a live one, in a real browser.

The demo runs with a silent simulator (``--rate 0``: devices register, nobody reports) and
a five-second limit for the city feed. The test reports readings itself over MQTT: the
overview shows them as live, then, once the test stops, turns its reading panels stale
with "数据中断 N 秒" instead of presenting the old numbers as live, and recovers when
readings come back.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from tests.browser.support import (
    SCREENSHOTS,
    RunningSystem,
    chromium,
    running_demo,
    severe_errors,
    sign_in,
    wait_until,
)

pytestmark = pytest.mark.browser
DEVICE_ID = "air-stale-test-01"


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSystem]:
    with running_demo(
        tmp_path_factory.mktemp("stale"),
        settings={"CITYOPS_FEED_SILENT_AFTER_S": "5"},
        demo_args=("--rate", "0"),
    ) as running:
        yield running


def report(mqtt_url: str, readings: int) -> None:
    from ingest.mqtt import MqttClient

    client = MqttClient(mqtt_url, "stale-test-publisher").start()
    try:
        meta = {"type": "air_quality", "lon": 106.6332, "lat": 30.4561, "name": "失联测试站"}
        client.publish(
            f"cityops/v1/sensors/{DEVICE_ID}/meta", json.dumps(meta, ensure_ascii=False), retain=True
        )
        time.sleep(1)
        for _ in range(readings):
            reading = {"ts": datetime.now(UTC).isoformat(), "metrics": {"pm25": 42.0}}
            client.publish(f"cityops/v1/sensors/{DEVICE_ID}/obs", json.dumps(reading))
            time.sleep(1)
    finally:
        client.stop()


def classes(driver) -> dict[str, str]:
    ids = ["overview-kpis", "overview-map-panel", "overview-spark-panel", "overview-districts-panel"]
    return driver.execute_script(
        "return Object.fromEntries(arguments[0].map(id => [id, document.getElementById(id).className]));", ids
    )


def test_the_overview_turns_stale_when_its_feed_stops_and_recovers(system: RunningSystem) -> None:
    from selenium.webdriver.common.by import By

    driver = chromium()
    try:
        sign_in(driver, system.url("/"), "viewer")
        driver.get(system.url("/"))
        report(system.mqtt_url, 3)
        freshness = lambda: driver.find_element(By.ID, "kpi-freshness").text  # noqa: E731
        assert wait_until(lambda: "秒前" in freshness(), 30), freshness()
        assert not any("stale" in c for c in classes(driver).values())

        # Silence: within the limit (5 s) plus the page's 15 s timer, the panels go stale.
        assert wait_until(lambda: "数据中断" in freshness(), 40), freshness()
        assert all(c.endswith("stale") for c in classes(driver).values()), classes(driver)
        assert "中断" in driver.find_element(By.ID, "overview-status").text
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(SCREENSHOTS / "overview-stale.png"))

        # A reading again: pushed at once, the panels are live again.
        report(system.mqtt_url, 1)
        assert wait_until(lambda: "秒前" in freshness(), 15), freshness()
        assert not any("stale" in c for c in classes(driver).values())
        assert severe_errors(driver) == []
    finally:
        driver.quit()
