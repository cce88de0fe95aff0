"""The ecology page as a viewer meets it: ``python app.py`` on a fresh data dir, ``/ecology`` in Chromium.

The station table fills from the simulator's air stations, the labels are Chinese, the
browser logs no error (except headless Chromium's WebGL "Map error."), nothing is loaded
from outside this machine, and a 1920×1080 screenshot is saved for the docs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.browser.support import (
    SCREENSHOTS,
    chromium,
    foreign_requests,
    running_demo,
    severe_errors,
    sign_in,
    wait_until,
)

pytestmark = pytest.mark.browser
SCREENSHOT = SCREENSHOTS / "ecology.png"


@pytest.fixture(scope="module")
def ecology_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_demo(tmp_path_factory.mktemp("ecology"), "/ecology") as running:
        yield running.url("/ecology")


@pytest.fixture(scope="module")
def driver(ecology_url: str) -> Iterator[object]:
    browser = chromium()
    try:
        sign_in(browser, ecology_url, "leader")
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

    assert severe_errors(driver) == []
    assert foreign_requests(driver) == []
