"""What every browser test needs: the embedded system on free ports, a headless Chromium,
polling, and the browser's own error log.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from tests.conftest import service_missing

ROOT = Path(__file__).resolve().parents[2]
#: The issue's promise: the demo serves its first page within two minutes.
START_BUDGET_S = 120
#: Test artifacts (var/ is not tracked); docs/screenshots/ holds the copies the README shows.
SCREENSHOTS = ROOT / "var" / "screenshots"
#: Plotly's map throws "Map error." in headless Chromium's software WebGL on every map page;
#: it is not caused by the pages. Anything else logged as an error fails a test.
KNOWN_HEADLESS_ERRORS = ("Uncaught Error: Map error.",)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: base URL of each running demo → its var/demo-accounts.json (for :func:`sign_in`).
_ACCOUNT_FILES: dict[str, Path] = {}
#: base URL of each running demo → its log (attached to a failing test's report).
_LOGS: dict[str, Path] = {}


def running_demo_logs(tail_chars: int = 6000) -> dict[str, str]:
    """The end of the log of every demo running now, by base URL: what the server said
    while a browser test failed is half of the story."""
    tails = {}
    for url, path in list(_LOGS.items()):
        try:
            tails[url] = path.read_text(encoding="utf-8", errors="replace")[-tail_chars:]
        except OSError as exc:
            tails[url] = f"(log unreadable: {exc})"
    return tails


@dataclass(frozen=True)
class RunningSystem:
    base_url: str
    mqtt_url: str
    accounts_file: Path | None = None

    def url(self, path: str) -> str:
        return self.base_url + path


@contextmanager
def running_demo(
    data_dir: Path,
    path: str = "/",
    settings: dict[str, str] | None = None,
    demo_args: Sequence[str] = (),
) -> Iterator[RunningSystem]:
    """``python app.py`` on a fresh data dir and free ports, until ``path`` answers 200.

    ``settings`` are extra ``CITYOPS_*`` variables for this run (the caller's own are not passed on);
    ``demo_args`` are options of ``cityops demo`` (e.g. ``--rate 0`` for a silent simulator),
    which then runs instead of ``app.py``'s defaults.
    """
    port, mqtt_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYOPS_")}
    env.update(settings or {})
    env.update(
        CITYOPS_DATA_DIR=str(data_dir / "var"),
        CITYOPS_PORT=str(port),
        CITYOPS_EMBEDDED_MQTT_PORT=str(mqtt_port),
    )
    log_path = data_dir / "demo.log"
    with log_path.open("wb") as log:
        command = [sys.executable, "cli.py", "demo", *demo_args] if demo_args else [sys.executable, "app.py"]
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        system = RunningSystem(
            f"http://127.0.0.1:{port}",
            f"mqtt://127.0.0.1:{mqtt_port}",
            data_dir / "var" / "demo-accounts.json",
        )
        _ACCOUNT_FILES[system.base_url] = system.accounts_file
        _LOGS[system.base_url] = log_path
        started = time.monotonic()
        try:
            while time.monotonic() - started < START_BUDGET_S:
                if process.poll() is not None:
                    pytest.fail(f"demo exited with {process.returncode}: {log_path.read_text()[-2000:]}")
                try:
                    with urllib.request.urlopen(system.url(path), timeout=2) as response:
                        if response.status == 200:
                            break
                except OSError:
                    time.sleep(0.5)
            else:
                pytest.fail(f"the demo did not serve {system.url(path)} within {START_BUDGET_S} s")
            print(f"demo served {path} after {time.monotonic() - started:.1f} s")
            yield system
        finally:
            _ACCOUNT_FILES.pop(system.base_url, None)
            _LOGS.pop(system.base_url, None)
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()


def chromium(extra_flags: Sequence[str] = ()) -> Any:
    """A headless Chromium (1920×1080, Chinese) that records its console log; ``extra_flags``
    are passed on (the soak's viewers measure their pages' heap with them)."""
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
        # Without these Chromium keeps trying hosts this intranet-like machine cannot reach.
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1920,1080",
        "--lang=zh-CN",
        "--enable-unsafe-swiftshader",
        "--mute-audio",
        *extra_flags,
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def wait_until(predicate: Callable[[], Any], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except Exception:  # the element may not exist yet while Dash renders
            pass
        time.sleep(0.5)
    return False


def click_when_ready(driver: Any, xpath: str, timeout: float) -> bool:
    """Click the element at ``xpath``, finding it again when a live redraw replaced it
    between finding and clicking (a stale element); False when it never could."""
    return wait_until(lambda: driver.find_element("xpath", xpath).click() is None, timeout)


def severe_errors(driver: Any) -> list[str]:
    """Errors the page logged in the browser console, less the known headless one."""
    return [
        e["message"]
        for e in driver.get_log("browser")
        if e["level"] == "SEVERE" and not any(k in e["message"] for k in KNOWN_HEADLESS_ERRORS)
    ]


def foreign_requests(driver: Any) -> list[str]:
    """Every resource the page loaded from anywhere but this server."""
    resources = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert resources, "the page loaded its scripts"
    return [r for r in resources if not r.startswith(("http://127.0.0.1", "data:", "blob:"))]


def demo_account(url: str, role: str) -> dict[str, str]:
    """``{"username", "password"}`` of the running demo's account for ``role`` (the demo
    writes them to var/demo-accounts.json at start-up)."""
    parts = urlsplit(url)
    path = _ACCOUNT_FILES[f"{parts.scheme}://{parts.netloc}"]
    return json.loads(path.read_text(encoding="utf-8"))[role]


def sign_in(driver: Any, url: str, role: str = "leader") -> dict[str, str]:
    """Sign ``driver`` in to the demo serving ``url`` as its ``role`` account, through the
    login form. It lands on ``/healthz`` (no page, no map), so the caller's own
    ``driver.get`` is the page's only load. Returns the account."""
    from selenium.webdriver.common.by import By

    account = demo_account(url, role)
    parts = urlsplit(url)
    driver.get(f"{parts.scheme}://{parts.netloc}/login?next={quote('/healthz')}")
    assert wait_until(lambda: driver.find_element(By.ID, "login-username").is_displayed(), 20)
    driver.find_element(By.ID, "login-username").send_keys(account["username"])
    driver.find_element(By.ID, "login-password").send_keys(account["password"])
    driver.find_element(By.ID, "login-submit").click()
    # The path, not the URL's end: the form's own address (/login?next=/healthz) ends with
    # /healthz too, and taking it for the landing let a test navigate before the sign-in
    # was processed (and land on the login page).
    assert wait_until(lambda: urlsplit(driver.current_url).path == "/healthz", 20), driver.page_source[:500]
    return account
