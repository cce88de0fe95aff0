"""Signing in and out in a real browser against ``python app.py``: the wrong password's
message, a typed script shown as text, the admin page, logout that really ends the session,
and the security headers the pages load under (no console errors from the policy)."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import pytest

from tests.browser.support import chromium, demo_account, running_demo, severe_errors, sign_in, wait_until

HOSTILE = '<script>window.cityopsPwned = 1</script><img src=x onerror="window.cityopsPwned = 2">'


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_demo(tmp_path_factory.mktemp("security"), "/login") as running:
        yield running.base_url


@pytest.fixture
def driver() -> Iterator[object]:
    browser = chromium()
    try:
        yield browser
    finally:
        browser.quit()


def test_wrong_password_then_sign_in_admin_page_and_sign_out(base_url: str, driver) -> None:
    from selenium.webdriver.common.by import By

    driver.get(base_url + "/alerts")
    assert wait_until(lambda: "/login" in driver.current_url, 10)
    assert driver.find_element(By.ID, "login-username").is_displayed()
    # A wrong password: told so, in Chinese; the typed name comes back as text, not markup.
    driver.find_element(By.ID, "login-username").send_keys(HOSTILE)
    driver.find_element(By.ID, "login-password").send_keys("not the password")
    driver.find_element(By.ID, "login-submit").click()
    assert wait_until(
        lambda: "用户名或密码错误" in driver.find_element(By.CSS_SELECTOR, ".login-error").text, 10
    )
    assert driver.execute_script("return window.cityopsPwned") is None
    assert driver.find_element(By.ID, "login-username").get_attribute("value") == HOSTILE[:64]
    driver.get_log("browser")  # the refusal's 401 is logged as a failed load: expected, drop it

    admin = sign_in(driver, base_url, "admin")
    driver.get(base_url + "/admin")
    assert wait_until(lambda: admin["username"] in driver.find_element(By.ID, "admin-users").text, 30), (
        driver.find_element(By.TAG_NAME, "body").text[:500],
        severe_errors(driver),
    )
    assert admin["username"] in driver.find_element(By.ID, "shell-user-name").text
    # The filter's date fields show a whole date (they shrank to their label's width).
    for field in ("admin-audit-since", "admin-audit-until"):
        box = driver.find_element(By.ID, field)
        shown = driver.execute_script(
            "var i = arguments[0]; i.value = '2026-11-27'; var fits = i.scrollWidth <= i.clientWidth;"
            " i.value = ''; return fits;",
            box,
        )
        assert shown, (field, box.size)
    # The failed attempt is in the audit trail on the page.
    driver.find_element(By.ID, "admin-audit-what").send_keys("auth.login_failed\n")
    driver.find_element(By.ID, "admin-audit-search").click()
    assert wait_until(lambda: "auth.login_failed" in driver.find_element(By.ID, "admin-audit").text, 10)
    assert driver.execute_script("return window.cityopsPwned") is None
    assert severe_errors(driver) == []

    # Sign out: back at the sign-in page, and the pages are closed again.
    driver.find_element(By.ID, "shell-logout").click()
    assert wait_until(lambda: "/login" in driver.current_url, 10)
    driver.get(base_url + "/alerts")
    assert wait_until(lambda: "/login" in driver.current_url, 10)


def test_a_viewer_is_refused_the_admin_page(base_url: str, driver) -> None:
    from selenium.webdriver.common.by import By

    sign_in(driver, base_url + "/", "viewer")
    driver.get(base_url + "/admin")
    assert wait_until(lambda: "无权" in driver.find_element(By.TAG_NAME, "body").text, 15), (
        driver.current_url,
        driver.find_element(By.TAG_NAME, "body").text[:300],
    )
    assert "系统管理" not in [a.text for a in driver.find_elements(By.CSS_SELECTOR, ".shell-nav a")]


def test_pages_carry_the_security_headers(base_url: str) -> None:
    for path in ("/login", "/healthz"):
        with urllib.request.urlopen(base_url + path, timeout=10) as response:
            assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
            assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert demo_account(base_url, "viewer")["username"] == "demo-viewer"
