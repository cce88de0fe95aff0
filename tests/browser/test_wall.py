"""The wall and the district pages as their viewers meet them.

``/wall`` fills a 1920×1080 and a 3840×2160 screen without scrollbars, rotates its focus,
logs no error and loads nothing from outside; ``/districts/511602`` names its district,
is reached by clicking the district on the overview's map, and an unknown code gets a
clear message. Screenshots go to var/screenshots (the README shows copies of them).
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
ROTATE_S = 5


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = {"CITYOPS_WALL_ROTATE_S": str(ROTATE_S)}
    with running_demo(tmp_path_factory.mktemp("wall"), "/wall", settings) as running:
        yield running.base_url


@pytest.fixture(scope="module")
def driver(base_url: str) -> Iterator[object]:
    browser = chromium()
    try:
        sign_in(browser, base_url + "/wall", "viewer")
        yield browser
    finally:
        browser.quit()


def screen(driver, width: int, height: int) -> None:
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )


def extents(driver) -> dict[str, int]:
    return driver.execute_script(
        "const d = document.documentElement;"
        "return {sh: d.scrollHeight, ih: window.innerHeight, sw: d.scrollWidth, iw: window.innerWidth};"
    )


@pytest.mark.parametrize(("width", "height", "name"), [(1920, 1080, "wall.png"), (3840, 2160, "wall-4k.png")])
def test_wall_fits_the_screen_without_scrolling(
    base_url: str, driver, width: int, height: int, name: str
) -> None:
    from selenium.webdriver.common.by import By

    screen(driver, width, height)
    driver.get(base_url + "/wall")
    assert wait_until(
        lambda: (
            "/" in driver.find_element(By.CSS_SELECTOR, ".wall-kpi-value:not(:empty)").text
            or driver.find_elements(By.CSS_SELECTOR, ".wall-kpi .aqi-badge")
        ),
        60,
    )
    # The simulator's devices arrive in batches: wait until the figures are live.
    assert wait_until(lambda: "实时" in driver.find_element(By.ID, "wall-status").text, 30)
    assert not driver.find_element(By.CSS_SELECTOR, ".shell-header").is_displayed()  # kiosk: no chrome
    assert driver.find_element(By.ID, "wall-clock").text.strip()
    time.sleep(2)
    size = extents(driver)
    assert size["sh"] <= size["ih"] and size["sw"] <= size["iw"], size
    # Large type: the key figures are at least 4 % of the screen height (43 px at 1080p).
    value_px = driver.execute_script(
        "return parseFloat(getComputedStyle(document.querySelector('.wall-kpi-value')).fontSize)"
    )
    assert value_px >= 0.04 * height, value_px
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SCREENSHOTS / name))
    assert severe_errors(driver) == []
    assert foreign_requests(driver) == []


def test_wall_rotates_its_focus(base_url: str, driver) -> None:
    from selenium.webdriver.common.by import By

    screen(driver, 1920, 1080)
    driver.get(base_url + "/wall")

    def focused() -> str:
        return driver.find_element(By.CSS_SELECTOR, ".wall-tab.focus").text

    assert wait_until(lambda: focused() == "应急", 30)
    assert wait_until(lambda: focused() == "城市管理与12345", ROTATE_S * 3)
    assert wait_until(lambda: focused() == "生态环境", ROTATE_S * 3)
    # Only the focused panel is shown; its content is real figures (AQI per district).
    assert wait_until(
        lambda: len(driver.find_elements(By.CSS_SELECTOR, ".wall-panel.focus .wall-aqi-tile")) == 6, 10
    )
    visible = [p for p in driver.find_elements(By.CSS_SELECTOR, ".wall-panel") if p.is_displayed()]
    assert len(visible) == 1


def test_district_page_names_its_district_and_is_reached_from_the_overview_map(base_url: str, driver) -> None:
    from selenium.webdriver.common.by import By

    screen(driver, 1920, 1080)
    driver.get(base_url + "/districts/511602")
    assert wait_until(lambda: driver.find_element(By.ID, "district-name").text == "广安区运行体征", 30)
    assert wait_until(lambda: "/" in driver.find_element(By.ID, "district-devices").text, 60)
    assert wait_until(
        lambda: driver.find_elements(
            By.CSS_SELECTOR, "#district-map .maplibregl-canvas, #district-map canvas"
        ),
        30,
    )
    time.sleep(2)
    driver.save_screenshot(str(SCREENSHOTS / "district.png"))
    assert severe_errors(driver) == []
    assert foreign_requests(driver) == []

    # From the overview: the district table's link and the map both lead here.
    driver.get(base_url + "/")
    assert wait_until(
        lambda: driver.find_elements(By.CSS_SELECTOR, "#overview-districts a.district-link"), 60
    )
    # The table is redrawn whenever data changes: a link found just before a redraw goes
    # stale, so find and click it again until the click lands.
    assert wait_until(lambda: driver.find_element(By.LINK_TEXT, "华蓥市").click() is None, 15)
    assert wait_until(lambda: driver.find_element(By.ID, "district-name").text == "华蓥市运行体征", 30)
    assert driver.current_url.endswith("/districts/511681")
    driver.get(base_url + "/")
    assert wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "#overview-map .js-plotly-plot"), 60)

    # A click on the map reports the district under it; the page opens it without a reload.
    # Live updates redraw the map: click again on the map that is there until the page opens.
    def clicked_through() -> bool:
        driver.execute_script(
            "const gd = document.querySelector('#overview-map .js-plotly-plot');"
            "const point = {location: '511622', curveNumber: 0, pointNumber: 3};"
            "if (gd) { gd.emit('plotly_click', {points: [point]}); }"
        )
        return driver.current_url.endswith("/districts/511622")

    assert wait_until(clicked_through, 30), driver.current_url
    assert wait_until(lambda: driver.find_element(By.ID, "district-name").text == "武胜县运行体征", 30)


def test_unknown_district_says_so(base_url: str, driver) -> None:
    from selenium.webdriver.common.by import By

    driver.get(base_url + "/districts/999999")
    assert wait_until(
        lambda: "没有代码为 999999 的区县" in driver.find_element(By.ID, "district-unknown").text, 30
    )
    assert len(driver.find_elements(By.CSS_SELECTOR, ".district-unknown li a")) == 6
    assert severe_errors(driver) == []


@pytest.mark.parametrize(("width", "height"), [(1024, 768), (1366, 1024)])
@pytest.mark.parametrize("path", ["/", "/districts/511602"])
def test_tablet_layouts_fit_the_width_with_large_touch_targets(
    base_url: str, driver, path: str, width: int, height: int
) -> None:
    from selenium.webdriver.common.by import By

    screen(driver, width, height)
    driver.get(base_url + path)
    assert wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, ".kpi-value"), 30)
    assert wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, ".vital-card"), 60)
    time.sleep(1)
    size = extents(driver)
    assert size["sw"] <= size["iw"], size  # no sideways scrolling on a tablet
    small = driver.execute_script(
        """return Array.from(document.querySelectorAll('a, button, .indicator-switch label'))
            .filter((e) => e.offsetParent !== null)
            .map((e) => [e.textContent.trim(), e.getBoundingClientRect()])
            .filter(([_, r]) => r.width < 44 || r.height < 44)
            .map(([t, r]) => t + ' ' + Math.round(r.width) + '×' + Math.round(r.height));"""
    )
    assert small == []
    driver.save_screenshot(str(SCREENSHOTS / f"tablet-{width}x{height}{path.replace('/', '-')}.png"))
    assert severe_errors(driver) == []
