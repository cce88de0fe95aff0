"""The daily briefing as a leader opens it: ``python app.py`` on a fresh data dir, ``/briefing``
for today in Chromium (the simulator has filled today; yesterday is empty on a fresh demo).

Its heading, key figures and three charts show; the print style hides the controls; the
browser logs no error and loads nothing from outside this machine; a viewer is refused;
an A4-width screenshot is saved under var/screenshots/.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest

from models.clock import CITY_TZ
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
SCREENSHOT = SCREENSHOTS / "briefing.png"


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_demo(tmp_path_factory.mktemp("briefing"), "/healthz") as running:
        yield running.url("/briefing")


def test_a_leader_reads_and_prints_todays_briefing(system: str) -> None:
    from selenium.webdriver.common.by import By

    today = datetime.now(CITY_TZ).date()
    driver = chromium()
    try:
        sign_in(driver, system, "leader")
        driver.set_window_size(1100, 1500)
        driver.get(f"{system}?date={today:%Y-%m-%d}")
        assert wait_until(lambda: driver.find_element(By.ID, "briefing-title").is_displayed(), 30)
        assert driver.find_element(By.ID, "briefing-title").text == f"广安市城市运行日报 · {today:%Y-%m-%d}"
        assert wait_until(
            lambda: len(driver.find_elements(By.CSS_SELECTOR, ".briefing-chart .main-svg")) >= 3, 30
        )
        labels = [e.text for e in driver.find_elements(By.CSS_SELECTOR, ".briefing-kpis .kpi-label")]
        assert "新增告警" in labels and "12345受理" in labels
        png = driver.find_element(By.ID, "briefing-png")
        assert png.get_attribute("href").endswith(f"/api/briefing/{today:%Y-%m-%d}.png")
        day_links = [
            e.get_attribute("href") for e in driver.find_elements(By.CSS_SELECTOR, ".briefing-section a")
        ]
        assert any(
            f"/api/export/alert-history.xlsx?since={today:%Y-%m-%d}&until={today:%Y-%m-%d}" in h
            for h in day_links
        ), day_links

        # Printed, the controls and the platform's header are gone; the sheet stays.
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
        assert not driver.find_element(By.CSS_SELECTOR, ".briefing-controls").is_displayed()
        assert driver.find_element(By.ID, "briefing-title").is_displayed()
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": ""})

        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(SCREENSHOT))
        assert severe_errors(driver) == []
        assert foreign_requests(driver) == []
    finally:
        driver.quit()

    viewer = chromium()
    try:
        sign_in(viewer, system, "viewer")
        viewer.get(system)
        assert wait_until(lambda: "无权" in viewer.page_source or "权限" in viewer.page_source, 20)
        assert not viewer.find_elements(By.ID, "briefing-title")
    finally:
        viewer.quit()
