"""The district page's map in Chromium: its grid cells come by URL and are drawn.

The figure names the cells' GeoJSON (``/geo/grid/<code>.geojson?v=…``) instead of carrying
it, so this checks what a unit test cannot: that MapLibre fetches the URL, draws the cells
as lines on the district's map, and that nothing else on the page changed for it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.browser.support import (
    chromium,
    foreign_requests,
    running_demo,
    severe_errors,
    sign_in,
    wait_until,
)

pytestmark = pytest.mark.browser

#: The grid layer as MapLibre holds it: its source, whether loaded, and the cells it draws.
GRID_STATE = """
const gd = document.querySelector('#district-map .js-plotly-plot');
const map = gd && gd._fullLayout && gd._fullLayout.map && gd._fullLayout.map._subplot.map;
if (!map) { return null; }
const layer = map.getStyle().layers.find((l) => l.id.indexOf('plotly-layout-layer') === 0);
if (!layer) { return {layer: null}; }
return {
  layer: layer.type,
  source: gd.layout.map.layers[0].source,
  loaded: map.isSourceLoaded(layer.source),
  cells: map.querySourceFeatures(layer.source).length,
  devices: gd.data[1].lon.length,
};
"""


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_demo(tmp_path_factory.mktemp("district"), "/districts/511602") as running:
        yield running.base_url


@pytest.fixture(scope="module")
def driver(base_url: str) -> Iterator[object]:
    browser = chromium()
    try:
        sign_in(browser, base_url)
        yield browser
    finally:
        browser.quit()


def test_the_district_map_fetches_and_draws_its_grid_cells(base_url: str, driver) -> None:
    driver.get(base_url + "/districts/511602")
    state: dict = {}

    def drawn() -> bool:
        state.update(driver.execute_script(GRID_STATE) or {})
        return bool(state.get("loaded") and state.get("cells"))

    assert wait_until(drawn, 60), state
    assert state["layer"] == "line"
    assert state["source"].startswith("/geo/grid/511602.geojson?v=")
    assert state["devices"] > 0
    # plotly.js is fetched once (the cells are fetched by MapLibre's worker, which keeps its
    # own resource timings: that they are drawn is the proof they came).
    fetched = driver.execute_script(
        "return performance.getEntriesByType('resource').map((e) => e.name)"
        ".filter((n) => n.indexOf('plotly.min.js') >= 0)"
    )
    assert len(fetched) == 1, fetched
    assert severe_errors(driver) == []
    assert foreign_requests(driver) == []
