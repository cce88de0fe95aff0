"""The shell as a viewer meets it: the English switch and back, kiosk mode, and the
lost-connection notice that appears when the server cannot be reached and clears by itself.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.browser.support import chromium, foreign_requests, running_demo, severe_errors, sign_in, wait_until

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_demo(tmp_path_factory.mktemp("shell"), "/ecology") as running:
        yield running.base_url


@pytest.fixture(scope="module")
def driver(base_url: str) -> Iterator[object]:
    browser = chromium()
    try:
        sign_in(browser, base_url + "/ecology", "leader")
        yield browser
    finally:
        browser.quit()


def nav_labels(driver) -> list[str]:
    return [a.text for a in driver.find_elements("css selector", ".shell-nav a")]


def test_english_switch_and_back(base_url: str, driver) -> None:
    from selenium.webdriver.common.by import By

    driver.get(base_url + "/ecology")
    assert wait_until(lambda: "城市运行体征" in nav_labels(driver), 30), nav_labels(driver)
    assert driver.execute_script("return document.documentElement.lang") == "zh-CN"
    assert wait_until(lambda: "空气质量监测站" in driver.find_element(By.TAG_NAME, "body").text, 30)

    driver.find_element(By.ID, "shell-lang").click()
    # Back on the same page, now in English: the nav, the page's labels, the clock's locale.
    assert wait_until(lambda: "City vital signs" in nav_labels(driver), 30), nav_labels(driver)
    assert driver.current_url.endswith("/ecology")
    assert driver.execute_script("return document.documentElement.lang") == "en"
    assert wait_until(lambda: "Air stations" in driver.find_element(By.TAG_NAME, "body").text, 30)
    assert wait_until(lambda: "Environmental monitoring" in driver.title, 10), driver.title
    assert "空气质量监测站" not in driver.find_element(By.TAG_NAME, "body").text
    assert driver.find_element(By.ID, "shell-lang").text == "中文"

    # Navigating inside the app keeps English (the cookie, not the URL, carries it).
    driver.find_element(By.LINK_TEXT, "City vital signs").click()
    assert wait_until(lambda: "Devices online" in driver.find_element(By.TAG_NAME, "body").text, 30)

    driver.find_element(By.ID, "shell-lang").click()
    assert wait_until(lambda: "城市运行体征" in nav_labels(driver), 30), nav_labels(driver)
    assert wait_until(lambda: "在线设备" in driver.find_element(By.TAG_NAME, "body").text, 30)
    assert driver.execute_script("return document.documentElement.lang") == "zh-CN"
    assert severe_errors(driver) == []
    assert foreign_requests(driver) == []


def test_kiosk_query_hides_the_header(base_url: str, driver) -> None:
    from selenium.webdriver.common.by import By

    driver.get(base_url + "/ecology?kiosk=1")
    assert wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "#shell.kiosk"), 30)
    assert wait_until(lambda: "空气质量监测站" in driver.find_element(By.TAG_NAME, "body").text, 30)
    assert not driver.find_element(By.CSS_SELECTOR, ".shell-header").is_displayed()
    driver.get(base_url + "/ecology")
    assert wait_until(lambda: driver.find_element(By.CSS_SELECTOR, ".shell-header").is_displayed(), 30)


def test_lost_connection_is_shown_and_clears_by_itself(base_url: str, driver) -> None:
    from selenium.webdriver.common.by import By

    driver.get(base_url + "/")
    conn = lambda: driver.find_element(By.ID, "shell-conn")  # noqa: E731
    assert wait_until(lambda: driver.find_elements(By.ID, "kpi-devices-online"), 30)
    assert not conn().is_displayed()
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd(
        "Network.emulateNetworkConditions",
        {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
    )
    try:
        assert wait_until(lambda: conn().is_displayed() and "与服务器连接中断" in conn().text, 20)
    finally:
        driver.execute_cdp_cmd(
            "Network.emulateNetworkConditions",
            {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
        )
    assert wait_until(lambda: not conn().is_displayed(), 20), conn().text
    driver.execute_cdp_cmd("Network.disable", {})


#: Each text of the header with the number of lines it is drawn on, and the header's rows.
HEADER_LINES = """
var texts = [];
document.querySelectorAll('.shell-header *').forEach(function (el) {
  Array.from(el.childNodes).forEach(function (node) {
    if (node.nodeType !== 3 || !node.textContent.trim()) return;
    var range = document.createRange();
    range.selectNodeContents(node);
    var tops = new Set(Array.from(range.getClientRects()).map(function (r) { return Math.round(r.top); }));
    texts.push([node.textContent.trim(), tops.size]);
  });
});
var top = function (sel) { return Math.round(document.querySelector(sel).getBoundingClientRect().top); };
return {texts: texts, titleTop: top('.shell-title'), endTop: top('.shell-clock')};
"""


def test_the_longest_header_breaks_no_label_at_1920(base_url: str) -> None:
    """An administrator has the most links (ten). At 1920 px the Chinese header is one row;
    the longer English one may take a second row, but no label, the clock or the account is
    broken over two lines (they were, every one of them)."""
    from selenium.webdriver.common.by import By

    admin = chromium()
    try:
        sign_in(admin, base_url + "/ecology", "admin")
        for path, word in (("/ecology", "城市运行体征"), ("/lang/en?next=/ecology", "City vital signs")):
            admin.get(base_url + path)
            assert wait_until(lambda w=word: w in nav_labels(admin), 30), nav_labels(admin)
            assert wait_until(lambda: admin.find_element(By.ID, "shell-clock").text, 10)
            header = admin.execute_script(HEADER_LINES)
            assert len(nav_labels(admin)) == 10
            broken = [text for text, lines in header["texts"] if lines != 1]
            assert broken == [], (path, header)
            if word == "城市运行体征":
                assert abs(header["endTop"] - header["titleTop"]) < 20, header
        admin.get(base_url + "/lang/zh?next=/ecology")
    finally:
        admin.quit()
