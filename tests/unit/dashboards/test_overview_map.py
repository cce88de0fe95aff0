"""The overview's city map on refresh: drawn once, then only its colours travel.

At 10,000 devices building and validating the whole Plotly figure takes most of a
second and sends about 800 KB; while the browser's map shows the same devices with the
same indicator, a refresh patches the area and device colours instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dash
import fakeredis
import pytest
from dash import Patch

from dashboards import context
from dashboards.vitals import summarise
from models import db
from models.config import load_settings
from models.live import LiveStore
from tests.unit.dashboards.test_vitals import NOW, state


@pytest.fixture
def page_context(tmp_path: Path) -> Iterator[context.PageContext]:
    from app import create_app

    url = f"sqlite:///{tmp_path / 'cityops.sqlite3'}"
    db.upgrade_database(url)
    engine = db.create_engine_for(url)
    create_app(load_settings({}), live=LiveStore(fakeredis.FakeRedis(decode_responses=True)), engine=engine)
    yield context.current()
    engine.dispose()


def test_a_refresh_of_the_same_devices_patches_the_colours_only(page_context: context.PageContext) -> None:
    from dashboards.pages import overview

    states = [state("a", "511602", seen_ago=10, pm25=40.0), state("b", "511621", seen_ago=10, pm25=10.0)]
    snapshot = summarise(states, now=NOW)
    figure, drawn = overview.city_map(snapshot, states, "aqi", None)
    assert figure == overview.map_figure(snapshot, states, "aqi")

    # Nothing changed on the map: nothing is sent.
    unchanged, again = overview.city_map(snapshot, states, "aqi", drawn)
    assert unchanged is dash.no_update and again == drawn

    # One device went offline: its colour travels, not the places.
    states = [states[0], state("b", "511621", seen_ago=3600, pm25=10.0)]
    snapshot = summarise(states, now=NOW)
    patch, again = overview.city_map(snapshot, states, "aqi", drawn)
    assert isinstance(patch, Patch) and again != drawn
    assert again.split(":")[0] == drawn.split(":")[0]
    ops = {tuple(op["location"]): op["params"]["value"] for op in patch.to_plotly_json()["operations"]}
    update = overview.map_updates(snapshot, states, indicator="aqi")
    figure = overview.map_figure(snapshot, states, "aqi")
    assert ops == {
        ("data", 0, "z"): update["z"],
        ("data", 0, "zmax"): update["zmax"],
        ("data", 0, "customdata"): update["customdata"],
        ("data", 1, "marker", "color"): update["colors"],
    }
    assert update["z"] == list(figure.data[0].z) and update["colors"] == list(figure.data[1].marker.color)


@pytest.mark.parametrize(
    "change", ["indicator", "new device", "moved device", "renamed device", "names moved between devices"]
)
def test_other_devices_or_another_indicator_redraw_the_map(
    page_context: context.PageContext, change: str
) -> None:
    from dashboards.pages import overview

    states = [state("a", "511602", seen_ago=10, pm25=40.0)]
    _figure, drawn = overview.city_map(summarise(states, now=NOW), states, "aqi", None)
    indicator = "pm25" if change == "indicator" else "aqi"
    if change == "new device":
        states = [*states, state("b", "511621", seen_ago=10)]
    elif change == "moved device":
        from dataclasses import replace

        states = [replace(states[0], lon=106.7)]
    elif change == "renamed device":
        from dataclasses import replace

        states = [replace(states[0], name="新站名")]
    elif change == "names moved between devices":
        from dataclasses import replace

        # The same names and ids in the same order, but split differently: still another map.
        two = [replace(states[0], device_id="a", name="b\x1fc"), replace(states[0], device_id="d", name="e")]
        _figure, drawn = overview.city_map(summarise(two, now=NOW), two, "aqi", None)
        states = [replace(two[0], name="b"), replace(two[1], name="c\x1fe")]
    figure, now_drawn = overview.city_map(summarise(states, now=NOW), states, indicator, drawn)
    assert not isinstance(figure, Patch) and now_drawn != drawn
    assert len(figure.data[1].lon) == len(states)


def test_map_updates_for_a_district_match_its_figure(page_context: context.PageContext) -> None:
    from dashboards.pages import overview

    states = [state("a", "511602", seen_ago=10, pm25=40.0), state("b", "511621", seen_ago=10_000)]
    snapshot = summarise(states, now=NOW)
    one = overview.map_figure(snapshot, states, "aqi", "511602")
    update = overview.map_updates(snapshot, states, "511602")
    assert update["lon"] == list(one.data[1].lon) and update["text"] == ["a"]
    assert update["colors"] == list(one.data[1].marker.color)
    assert update["customdata"] == list(one.data[0].customdata)


def test_the_refresh_sends_a_patch_once_the_map_is_drawn(page_context: context.PageContext) -> None:
    from dashboards.pages import overview

    page_context.live.register_device(
        "air-1",
        {"type": "air_quality", "name": "城南站", "lon": 106.63, "lat": 30.45, "district_code": "511602"},
    )
    first = overview.refresh(None, None, "aqi", None)
    drawn = first[10]
    assert isinstance(first[5], type(overview.map_figure(summarise([]), [], "aqi"))) and isinstance(
        drawn, str
    )
    second = overview.refresh(None, None, "aqi", drawn)
    assert second[5] is dash.no_update and second[10] == drawn
    stale = drawn.split(":")[0] + ":older-colours"
    assert isinstance(overview.refresh(None, None, "aqi", stale)[5], Patch)
    assert not isinstance(overview.refresh(None, None, "pm25", drawn)[5], Patch)
