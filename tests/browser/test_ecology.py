"""The ecology page as a viewer meets it: ``python app.py`` on a fresh data dir, ``/ecology`` in Chromium.

The station table fills from the simulator's air stations, the labels are Chinese, the
browser logs no error (except headless Chromium's WebGL "Map error."), nothing is loaded
from outside this machine, and a 1920×1080 screenshot is saved for the docs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.test_console import KNOWN_HEADLESS_ERRORS, _chromium
from tests.browser.test_demo import free_port, wait_until
from tests.conftest import service_missing

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parents[2]
START_BUDGET_S = 120
# Test artifact (var/ is not tracked); docs/screenshots/ holds the copy the README shows.
SCREENSHOT = ROOT / "var" / "screenshots" / "ecology.png"


@pytest.fixture(scope="module")
def ecology_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data_dir = tmp_path_factory.mktemp("ecology")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYOPS_")}
    env.update(
        CITYOPS_DATA_DIR=str(data_dir / "var"),
        CITYOPS_PORT=str(port),
        CITYOPS_EMBEDDED_MQTT_PORT=str(free_port()),
    )
    log = open(data_dir / "demo.log", "wb")  # noqa: SIM115 - closed in the finally below
    process = subprocess.Popen(
        [sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}/ecology"
    started = time.monotonic()
    try:
        while time.monotonic() - started < START_BUDGET_S:
            if process.poll() is not None:
                pytest.fail(f"demo exited: {(data_dir / 'demo.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"the demo did not serve {url} within {START_BUDGET_S} s")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(scope="module")
def driver() -> Iterator[object]:
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        service_missing("Chromium", "chromium and chromium-driver are not installed")
    browser = _chromium()
    try:
        yield browser
    finally:
        browser.quit()


def test_ecology_page_fills_live_in_chinese_and_stays_offline(ecology_url: str, driver) -> None:
    from selenium.webdriver.common.by import By

    driver.get(ecology_url)
    # The station table fills: rows with an AQI badge from the live air stations.
    assert wait_until(
        lambda: len(driver.find_elements(By.CSS_SELECTOR, "#eco-stations .eco-station-row .aqi-badge")) >= 3,
        60,
    ), driver.find_element(By.ID, "eco-stations").text
    text = driver.find_element(By.TAG_NAME, "body").text
    for label in (
        "空气质量监测站",
        "首要污染物",
        "嘉陵江水质",
        "渠江水质",
        "声环境",
        "各区县日AQI",
        "今日超标统计",
    ):
        assert label in text, label
    assert "数据中断" not in driver.find_element(By.ID, "eco-stations-age").text
    # The hourly chart and the daily table render (a fresh system has no yesterday: 数据不足).
    assert wait_until(lambda: "数据不足" in driver.find_element(By.ID, "eco-daily").text, 10)
    assert driver.find_elements(By.CSS_SELECTOR, "#eco-hourly .main-svg")

    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 1920, "height": 1080, "deviceScaleFactor": 1, "mobile": False},
    )
    time.sleep(2)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SCREENSHOT))

    errors = [
        e["message"]
        for e in driver.get_log("browser")
        if e["level"] == "SEVERE" and not any(k in e["message"] for k in KNOWN_HEADLESS_ERRORS)
    ]
    assert errors == []
    resources = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    foreign = [r for r in resources if not r.startswith(("http://127.0.0.1", "data:", "blob:"))]
    assert foreign == []
