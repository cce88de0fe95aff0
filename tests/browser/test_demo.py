"""The embedded demo as a user meets it: start ``python app.py``, open the overview in Chromium.

Checks that the page is served within two minutes, fills with live data that keeps
moving, shows Chinese text, and loads nothing from outside this machine.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.support import SCREENSHOTS, chromium, foreign_requests, running_demo, sign_in, wait_until

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_demo(tmp_path_factory.mktemp("demo")) as system:
        yield system.url("/")


@pytest.fixture(scope="module")
def browser(demo: str) -> Iterator[object]:
    driver = chromium()
    try:
        sign_in(driver, demo, "leader")
        yield driver
    finally:
        driver.quit()


def text_of(driver, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id).text


def test_overview_fills_with_live_data_that_keeps_moving(demo: str, browser, tmp_path: Path) -> None:
    browser.get(demo)

    def devices_online() -> tuple[int, int] | None:
        match = re.fullmatch(r"(\d+) / (\d+)", text_of(browser, "kpi-devices-online"))
        return (int(match.group(1)), int(match.group(2))) if match else None

    # Registrations arrive in a few batches; wait for all of them, then check the counts.
    assert wait_until(lambda: (devices_online() or (0, 0))[1] >= 300, 60), (
        "the simulator registers a few hundred devices"
    )
    assert wait_until(lambda: (devices_online() or (0, 0))[0] > 0, 60), "no device came online"
    online, total = devices_online() or (0, 0)
    assert 0 < online <= total
    assert "城市运行体征" in browser.title or "城市运行体征" in browser.page_source

    def readings() -> int:
        return int(text_of(browser, "kpi-messages-hour").replace(",", ""))

    first = readings()
    assert wait_until(lambda: readings() > first, 30), "the readings counter did not move"
    assert wait_until(lambda: re.fullmatch(r"[\d.]+ µg/m³", text_of(browser, "kpi-pm25-city")), 30)
    rows = browser.find_elements("css selector", "#overview-districts tbody tr")
    assert [r.text.split()[0] for r in rows] == ["广安区", "前锋区", "岳池县", "武胜县", "邻水县", "华蓥市"]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOTS / "overview.png"))


def test_nothing_is_loaded_from_outside_this_machine(demo: str, browser) -> None:
    browser.get(demo)
    assert wait_until(lambda: text_of(browser, "kpi-devices-online") != "—", 60)
    time.sleep(2)  # let the map draw
    assert foreign_requests(browser) == []
