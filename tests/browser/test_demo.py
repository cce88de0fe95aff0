"""The embedded demo as a user meets it: start ``python app.py``, open the overview in Chromium.

Checks that the page is served within two minutes, fills with live data that keeps
moving, shows Chinese text, and loads nothing from outside this machine.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import service_missing

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parents[2]
START_BUDGET_S = 120


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data_dir = tmp_path_factory.mktemp("demo")
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
    url = f"http://127.0.0.1:{port}/"
    started = time.monotonic()
    try:
        while time.monotonic() - started < START_BUDGET_S:
            if process.poll() is not None:
                pytest.fail(
                    f"demo exited with {process.returncode}: {(data_dir / 'demo.log').read_text()[-2000:]}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"the demo did not serve {url} within {START_BUDGET_S} s")
        print(f"demo served the overview after {time.monotonic() - started:.1f} s")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        service_missing(
            "Chromium", "chromium and chromium-driver are not installed (make test installs them)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or ""
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1920,1080",
        "--lang=zh-CN",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def text_of(driver, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id).text


def wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except Exception:  # the element may not exist yet while Dash renders
            pass
        time.sleep(0.5)
    return False


def test_overview_fills_with_live_data_that_keeps_moving(demo: str, browser, tmp_path: Path) -> None:
    browser.get(demo)

    def devices_online() -> tuple[int, int] | None:
        match = re.fullmatch(r"(\d+) / (\d+)", text_of(browser, "kpi-devices-online"))
        return (int(match.group(1)), int(match.group(2))) if match else None

    assert wait_until(lambda: (devices_online() or (0, 0))[0] > 0, 60), "no device came online"
    online, total = devices_online() or (0, 0)
    assert 0 < online <= total
    assert total >= 300, "the simulator registers a few hundred devices"
    assert "城市运行体征" in browser.title or "城市运行体征" in browser.page_source

    def readings() -> int:
        return int(text_of(browser, "kpi-messages-hour").replace(",", ""))

    first = readings()
    assert wait_until(lambda: readings() > first, 30), "the readings counter did not move"
    assert re.fullmatch(r"[\d.]+ µg/m³", text_of(browser, "kpi-pm25-city"))
    rows = browser.find_elements("css selector", "#overview-districts tbody tr")
    assert [r.text.split()[0] for r in rows] == ["广安区", "前锋区", "岳池县", "武胜县", "邻水县", "华蓥市"]
    artifacts = ROOT / "var" / "screenshots"  # kept after the run; var/ is not tracked
    artifacts.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(artifacts / "overview.png"))


def test_nothing_is_loaded_from_outside_this_machine(demo: str, browser) -> None:
    browser.get(demo)
    assert wait_until(lambda: text_of(browser, "kpi-devices-online") != "—", 60)
    time.sleep(2)  # let the map draw
    resources = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert resources, "the page loaded its scripts"
    foreign = [r for r in resources if not r.startswith(("http://127.0.0.1", "data:", "blob:"))]
    assert foreign == []
