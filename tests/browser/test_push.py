"""Server push in a real browser: the page holds one event stream and refreshes from it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.browser.support import RunningSystem, chromium, running_demo, severe_errors, sign_in, wait_until

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSystem]:
    with running_demo(tmp_path_factory.mktemp("push")) as running:
        yield running


def test_the_overview_follows_the_stream_of_the_simulated_feed(system: RunningSystem) -> None:
    driver = chromium()
    try:
        sign_in(driver, system.url("/"), "leader")
        driver.get(system.url("/"))
        state = "return window.cityopsLive && window.cityopsLive.state"
        assert wait_until(lambda: driver.execute_script(state)["connected"] is True, 60), "stream open"
        assert wait_until(
            lambda: driver.execute_script(state)["lastNote"]["versions"].get("observations", 0) > 0, 60
        ), "the simulator's readings are announced on the stream"
        source = driver.execute_script(
            "const s = window.cityopsLive.state.source; return {url: s.url, open: s.readyState === 1};"
        )
        assert source == {"url": system.url("/api/live/updates"), "open": True}
        # The page's trigger moves with the feed: the KPI for readings this hour changes
        # although the 15 s timer has not fired yet.
        before = driver.find_element("id", "kpi-messages-hour").text
        assert wait_until(lambda: driver.find_element("id", "kpi-messages-hour").text != before, 12)
        assert severe_errors(driver) == []
    finally:
        driver.quit()
