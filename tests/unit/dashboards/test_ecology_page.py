"""The ecology page at city scale: capped tables, and a refresh sends only what changed.

With a thousand air stations and hundreds of river sections, sending every row and the
whole map on every refresh kept the browser's main thread busy for tens of seconds.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import dash
import fakeredis
import pytest
from dash import Patch

from dashboards import context
from dashboards import ecology as eco
from models import db
from models.config import load_settings
from models.live import LiveStore
from models.standards import aqi


@pytest.fixture
def page_context(tmp_path: Path) -> Iterator[context.PageContext]:
    from app import create_app

    url = f"sqlite:///{tmp_path / 'cityops.sqlite3'}"
    db.upgrade_database(url)
    engine = db.create_engine_for(url)
    create_app(load_settings({}), live=LiveStore(fakeredis.FakeRedis(decode_responses=True)), engine=engine)
    yield context.current()
    engine.dispose()


def station(i: int, value: int | None, lon: float = 106.6) -> eco.AirStation:
    level = aqi.level_of(value) if value is not None else None
    return eco.AirStation(
        device_id=f"aq-{i:04d}",
        name=f"监测站{i}",
        district="广安区",
        lon=lon,
        lat=30.4 + i / 10_000,
        aqi=value,
        level=level.number if level else None,
        category=level.category if level else None,
        color=level.color if level else None,
        primary=("pm25",) if value and value > 50 else (),
        fresh=eco.freshness(30.0 if value is not None else None),
    )


def test_the_station_table_shows_the_worst_stations_and_says_how_many(
    page_context: context.PageContext,
) -> None:
    from dashboards.pages import ecology

    stations = [station(i, 300 - i % 250) for i in range(1_000)]
    stations.sort(key=lambda s: (s.aqi is None, -(s.aqi or 0), s.device_id))
    table = ecology.station_table(stations)
    rows = table.children[0].children[1].children
    assert len(rows) == eco.STATION_ROWS
    assert rows[0].children[0].children == stations[0].name
    note = table.children[1].children
    assert str(eco.STATION_ROWS) in note and "1000" in note
    # A short list is shown whole, without the note.
    assert len(ecology.station_table(stations[:3]).children) == 1


def test_the_map_is_drawn_once_then_patched_or_left_alone(page_context: context.PageContext) -> None:
    from dashboards.pages import ecology

    stations = [station(i, 80 + i) for i in range(50)]
    figure, drawn = ecology.map_output(stations, [], None)
    assert figure == ecology.map_figure(stations, [])

    same, again = ecology.map_output(stations, [], drawn)
    assert same is dash.no_update and again == drawn

    worse = [station(0, 260), *stations[1:]]
    patch, patched = ecology.map_output(worse, [], drawn)
    assert isinstance(patch, Patch) and patched["places"] == drawn["places"]
    ops = {tuple(op["location"]): op["params"]["value"] for op in patch.to_plotly_json()["operations"]}
    whole = ecology.map_figure(worse, [])
    assert ops[("data", 2, "marker", "color")] == list(whole.data[2].marker.color)
    assert ops[("data", 2, "customdata")] == list(whole.data[2].customdata)

    moved = [station(0, 260, lon=106.9), *stations[1:]]
    assert not isinstance(ecology.map_output(moved, [], patched)[0], Patch)


def test_a_refresh_sends_only_the_panels_that_changed(page_context: context.PageContext) -> None:
    from dashboards.pages import ecology

    live = page_context.live
    for i in range(3):
        live.register_device(
            f"aq-{i}",
            {
                "type": "air_quality",
                "name": f"站{i}",
                "lon": 106.6 + i / 100,
                "lat": 30.45,
                "district_code": "511602",
            },
        )

    def reading(device_id: str, value: int) -> None:
        level = aqi.level_of(value)
        live.record_readings(
            [
                {
                    "device_id": device_id,
                    "ts": datetime.now(UTC),
                    "metrics": {"pm25": 50.0},
                    "derived": {"aqi": value, "level": level.number, "category": level.category,
                                "color": level.color, "primary": ["pm25"]},
                }
            ],
            now=time.time(),
        )  # fmt: skip

    for i in range(3):
        reading(f"aq-{i}", 60 + i)
    first = ecology.refresh(None, None, None)
    drawn = first[-1]
    assert first[1] is not dash.no_update and first[3] is not dash.no_update

    second = ecology.refresh(None, None, drawn)
    assert second[1] is dash.no_update, "an unchanged map was sent again"
    assert second[3] is dash.no_update, "an unchanged station table was sent again"
    assert second[8] is dash.no_update and second[11] is dash.no_update

    reading("aq-1", 180)
    third = ecology.refresh(None, None, second[-1])
    assert isinstance(third[1], Patch)
    assert third[3] is not dash.no_update and "180" in repr(third[3])
