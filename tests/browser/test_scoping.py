"""A district-scoped officer in a real browser against ``python app.py``: signing in as a
邻水县 (511623) account, the overview is 邻水县's page, another district's page is refused,
and the 12345 page lists 邻水县's orders only while the simulator files them city-wide."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from models import db, users
from models.config import load_settings
from models.schema import HotlineTicket
from tests.browser.support import RunningSystem, chromium, running_demo, severe_errors, sign_in, wait_until

MINE = "511623"
#: The key under which the demo's accounts file lists the scoped account (``sign_in`` reads it).
SCOPED_ROLE = "linshui_duty_officer"
PASSWORD = "linshui-duty-officer-pass"


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningSystem, sa.Engine]]:
    data = tmp_path_factory.mktemp("scoping")
    with running_demo(data, "/login") as running:
        # The demo makes one account per role, none scoped: add 邻水县's duty officer to its
        # database, as `cityops users add ls-duty --role duty_officer --district 511623` does.
        url = load_settings({"CITYOPS_DATA_DIR": str(data / "var")}).effective_database_url
        engine = db.create_engine_for(url)
        with engine.begin() as conn:
            users.create_account(
                conn,
                username="ls-duty",
                password=PASSWORD,
                role="duty_officer",
                district_code=MINE,
                by="test",
                now=datetime.now(UTC),
            )
        accounts = Path(running.accounts_file or "")
        listed = json.loads(accounts.read_text(encoding="utf-8"))
        listed[SCOPED_ROLE] = {"username": "ls-duty", "password": PASSWORD}
        accounts.write_text(json.dumps(listed, ensure_ascii=False), encoding="utf-8")
        try:
            yield running, engine
        finally:
            engine.dispose()


@pytest.fixture
def driver() -> Iterator[object]:
    browser = chromium()
    try:
        yield browser
    finally:
        browser.quit()


def other_districts_orders(engine: sa.Engine) -> int:
    table = HotlineTicket.__table__
    with engine.connect() as conn:
        return conn.execute(
            sa.select(sa.func.count()).where(
                table.c.district_code.is_not(None), table.c.district_code != MINE
            )
        ).scalar_one()


def test_a_district_officer_sees_his_district_only(system: tuple[RunningSystem, sa.Engine], driver) -> None:
    from selenium.webdriver.common.by import By

    running, engine = system
    sign_in(driver, running.url("/"), SCOPED_ROLE)

    # The overview: 邻水县's own page, named in its head.
    driver.get(running.url("/"))
    assert wait_until(lambda: driver.current_url.endswith(f"/districts/{MINE}"), 20), driver.current_url
    assert wait_until(lambda: "邻水县" in driver.find_element(By.ID, "district-name").text, 30)
    assert "范围：邻水县" in driver.find_element(By.CSS_SELECTOR, ".scope-badge").text

    # Another district's page is refused.
    driver.get(running.url("/districts/511602"))
    body = driver.find_element(By.TAG_NAME, "body").text
    assert "无权访问" in body and "邻水县" in body, body[:300]
    assert not driver.find_elements(By.ID, "district-vitals")

    # The 12345 page: the simulator files orders all over the city, the page lists 邻水县's.
    assert wait_until(lambda: other_districts_orders(engine) > 0, 90), "no order outside 邻水县 arrived"
    driver.get(running.url("/hotline"))
    rows = "#hotline-stream .hotline-ticket-row"
    assert wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, rows), 120), driver.find_element(
        By.ID, "hotline-stream"
    ).text
    # Read in one script: the live stream may redraw the table between two element reads.
    districts = set(
        driver.execute_script(
            "return Array.from(document.querySelectorAll(arguments[0])).map(r => r.cells[3].innerText)", rows
        )
    )
    assert districts == {"邻水县"}, districts
    assert "范围：邻水县" in driver.find_element(By.CSS_SELECTOR, ".scope-badge").text
    # The overview's link in the header, followed inside the app, opens 邻水县's page too.
    driver.find_element(By.CSS_SELECTOR, ".shell-nav a[href='/']").click()
    assert wait_until(lambda: driver.current_url.endswith(f"/districts/{MINE}"), 30), driver.current_url
    assert wait_until(lambda: "邻水县" in driver.find_element(By.ID, "district-name").text, 30)
    # The refused page's own 403 is logged by the browser; nothing else may be.
    assert [e for e in severe_errors(driver) if "/districts/511602" not in e] == []
