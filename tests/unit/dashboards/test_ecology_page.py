"""The ecology page at city scale: capped tables, and a refresh sends only what changed.

With a thousand air stations and hundreds of river sections, sending every row and the
whole map on every refresh kept the browser's main thread busy for tens of seconds.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dash
import fakeredis
import pytest
import sqlalchemy as sa
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


def reading(device: str, at: datetime, district: str, **metrics: float) -> dict:
    return {"device_id": device, "ts": at, "metrics": metrics, "district_code": district, "grid_id": None}


def test_the_district_means_added_up_by_the_database_equal_the_stations_means(
    page_context: context.PageContext,
) -> None:
    from models.air_quality import hourly_means_by_district

    check_district_means(page_context.engine, hourly_means_by_district)


def stations_means_in_python(conn: Any, hours: list[datetime], codes: list[str]) -> dict:
    """The reference: every station's hourly roll-up read back and averaged here."""
    from models.air_quality import POLLUTANTS
    from models.schema import ObservationHourly

    t = ObservationHourly.__table__
    per_cell: dict[tuple[str, str, datetime], list[float]] = {}
    for row in conn.execute(sa.select(t).where(t.c.count > 0)):
        at = row.hour.astimezone(UTC)
        if row.district_code in codes and row.metric in POLLUTANTS and at in hours:
            per_cell.setdefault((row.district_code, row.metric, at), []).append(row.sum / row.count)
    return {
        code: {
            p: [(sum(v) / len(v)) if (v := per_cell.get((code, p, h))) else None for h in hours]
            for p in POLLUTANTS
        }
        for code in codes
    }


def check_district_means(engine: Any, district_means: Any) -> None:
    """The database's district means against the stations' means averaged in Python
    (shared with the PostGIS test)."""
    from models.db import record_observations

    hours = eco.window_hours(datetime(2026, 6, 15, 2, 30, tzinfo=UTC))
    rows = []
    for h, at in enumerate(hours):
        # Two stations in 广安区 (one reading twice an hour), one in 邻水县 every third hour,
        # and pollutants that are not in every hour.
        rows.append(reading("a", at + timedelta(minutes=5), "511602", pm25=30.0 + h, o3=90.5, co=0.7))
        rows.append(reading("a", at + timedelta(minutes=45), "511602", pm25=33.0 + h, o3=91.25))
        rows.append(reading("b", at + timedelta(minutes=9), "511602", pm25=70.0 - h / 4, no2=20.0 + h))
        if h % 3 == 0:
            rows.append(reading("c", at + timedelta(minutes=7), "511623", pm25=200.0, so2=12.0))
    # Outside the window, and another metric: not counted.
    rows.append(reading("a", hours[0] - timedelta(minutes=30), "511602", pm25=999.0))
    rows.append(reading("b", hours[3] + timedelta(minutes=1), "511602", laeq=70.0))
    with engine.begin() as conn:
        record_observations(conn, rows)
    codes = ["511602", "511623", "511681"]
    with engine.connect() as conn:
        summed = district_means(conn, hours, codes)
        listed = stations_means_in_python(conn, hours, codes)
    assert summed == listed
    assert summed["511602"]["pm25"][0] == (31.5 + 70.0) / 2 and summed["511602"]["so2"] == [None] * len(hours)
    assert summed["511623"]["pm25"][1] is None and summed["511681"]["pm25"] == [None] * len(hours)
    series = {c: eco.hourly_series(m, hours) for c, m in summed.items()}
    assert series == {c: eco.hourly_series(m, hours) for c, m in listed.items()}
    assert series["511602"][0] is not None and series["511681"][0] is None


def test_only_the_hours_loud_enough_for_some_limit_are_read(page_context: context.PageContext) -> None:
    from dashboards.pages import ecology
    from models.db import record_observations

    night = datetime(2026, 6, 14, 17, tzinfo=UTC)  # 01:00 Beijing
    day = datetime(2026, 6, 15, 2, tzinfo=UTC)  # 10:00 Beijing
    props = {"n1": {"zone": "1"}, "n2": {"zone": "3"}}  # 1: 55 / 45, 3: 65 / 55
    rows = [
        reading("n1", night + timedelta(minutes=5), "511602", laeq=44.0),  # quiet everywhere
        reading("n1", night + timedelta(minutes=6), "511602", laeq=47.0),  # over its night 45
        reading("n2", night + timedelta(minutes=5), "511602", laeq=50.0),  # under its night 55
        reading("n1", day + timedelta(minutes=5), "511602", laeq=45.0),  # at the lowest, not above
        reading("n2", day + timedelta(minutes=5), "511602", laeq=66.0),  # over its day 65
        reading("n3", day + timedelta(minutes=5), "511623", laeq=80.0),  # another district's point
    ]
    with page_context.engine.begin() as conn:
        record_observations(conn, rows)
    lowest = eco.lowest_noise_limit(props)
    assert lowest == 45
    since = night - timedelta(hours=1)
    with page_context.engine.connect() as conn:
        every = ecology.noise_hourly(conn, since, "511602")
        loud = ecology.noise_hourly(conn, since, "511602", above=lowest)
    assert sorted((d, h, round(v, 3)) for d, h, v in every) == [
        ("n1", night, 45.5),
        ("n1", day, 45.0),
        ("n2", night, 50.0),
        ("n2", day, 66.0),
    ]
    # The hours at or under the lowest limit are not sent; the count of exceedances holds.
    assert sorted((d, h) for d, h, _v in loud) == [("n1", night), ("n2", night), ("n2", day)]
    assert eco.noise_exceedance_hours(loud, props) == eco.noise_exceedance_hours(every, props) == 2


def test_the_tables_are_signed_by_what_they_show(page_context: context.PageContext) -> None:
    from dashboards.drawn import content_signature
    from dashboards.i18n import language
    from dashboards.pages import ecology

    stations = [station(i, 300 - i) for i in range(eco.STATION_ROWS + 5)]
    variants = {
        "same": stations,
        "worse": [station(0, 310), *stations[1:]],
        "silent": [station(0, None), *stations[1:]],
        "one more": [*stations, station(99, 20)],
        # Below the cap: not shown, the table is the same.
        "hidden": [*stations[:-1], station(eco.STATION_ROWS + 4, 21)],
    }
    signed = {k: ecology.station_table_signature(v) for k, v in variants.items()}
    built = {k: content_signature(ecology.station_table(v)) for k, v in variants.items()}
    for a in variants:
        for b in variants:
            assert (signed[a] == signed[b]) == (built[a] == built[b]), (a, b)
    assert signed["hidden"] == signed["same"] and signed["worse"] != signed["same"]
    with language("en"):
        assert ecology.station_table_signature(stations) != signed["same"]

    states, props = [], {}
    for i, grade in enumerate(["II", "III", "IV", None, "V"]):
        derived = {"grade": grade} if grade else {}
        states.append(_water(f"w{i}", derived, seen_ago=30 if grade else 7200))
        props[f"w{i}"] = {"river": "嘉陵江", "target_class": "III"}
    panels = eco.river_panels(eco.water_sections(states, props, NOW))
    worse = [_water("w0", {"grade": "劣V"}), *states[1:]]
    worse_panels = eco.river_panels(eco.water_sections(worse, props, NOW))
    assert ecology.river_panels_signature(panels) == ecology.river_panels_signature(
        eco.river_panels(eco.water_sections(states, props, NOW))
    )
    assert ecology.river_panels_signature(worse_panels) != ecology.river_panels_signature(panels)
    assert content_signature([ecology.river_panel(p) for p in worse_panels]) != content_signature(
        [ecology.river_panel(p) for p in panels]
    )


def test_the_maps_ages_read_as_each_one_alone(page_context: context.PageContext) -> None:
    from dashboards.pages import ecology

    ages = [None, 5.0, 119.9, 120.0, 599.0, 30 * 60.0, 30 * 60.0 + 59, 3 * 3600.0]
    text = ecology._age_texts()
    assert [text(eco.freshness(a)) for a in ages] == [ecology.age_text(eco.freshness(a)) for a in ages]
    assert len({text(eco.freshness(a)) for a in ages}) == len(ages) - 1  # two ages in one minute


NOW = time.time()


def _water(device_id: str, derived: dict[str, Any], seen_ago: float = 30) -> Any:
    from models.live import DeviceState

    return DeviceState(
        device_id=device_id,
        type="water_quality",
        name=f"断面{device_id}",
        lon=106.6,
        lat=30.4,
        district_code="511602",
        grid_id=None,
        ts=None,
        metrics={},
        derived=derived,
        last_seen=NOW - seen_ago,
    )
