"""The wall's one read (``read_wall``): what its panels are built from, read once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from dashboards import context, vitals
from models.schema import Device

NOW = datetime.now(UTC).replace(microsecond=0)
AT = (106.63, 30.46)  # 广安区


def device(live: Any, conn: sa.Connection, device_id: str, dtype: str, props: dict[str, Any]) -> None:
    fields = {"type": dtype, "name": f"名-{device_id}", "lon": AT[0], "lat": AT[1], "district_code": "511602"}
    live.register_device(device_id, fields)
    conn.execute(
        sa.insert(Device.__table__).values(
            device_id=device_id,
            kind="sensor",
            props=props,
            **{k: fields[k] for k in ("type", "name", "lon", "lat")},
        )
    )


@pytest.fixture
def city(page: sa.Engine) -> Any:
    live = context.current().live
    with page.begin() as conn:
        device(live, conn, "wq-1", "water_quality", {"river": "渠江", "body": "river", "target_class": "III"})
        device(live, conn, "wq-lake", "water_quality", {"body": "lake"})
        device(live, conn, "noise-1", "noise", {"zone": "2"})
        device(live, conn, "aq-1", "air_quality", {})
        device(live, conn, "aq-quiet", "air_quality", {})
    stamp = NOW.timestamp()
    live.record_readings(
        [
            {"device_id": "wq-1", "ts": NOW, "metrics": {"do": 7.0}, "derived": {"grade": "II"}},
            {"device_id": "wq-lake", "ts": NOW, "metrics": {"do": 7.0}, "derived": {"grade": "II"}},
            {"device_id": "noise-1", "ts": NOW, "metrics": {"laeq": 50.0}},
            {"device_id": "aq-1", "ts": NOW, "metrics": {"pm25": 40.0}, "derived": {"aqi": 57, "level": 2}},
        ],
        now=stamp,
    )
    live.record_readings(
        [{"device_id": "aq-quiet", "ts": NOW - timedelta(hours=1), "metrics": {"pm25": 90.0}}],
        now=stamp - 3600,
    )
    return live


def test_the_wall_lists_its_stations_and_river_sections_with_their_properties(city: Any) -> None:
    from dashboards.pages import wall as wall_page  # pages register once the app exists

    data = wall_page.read_wall(NOW)
    assert [(s.device_id, s.river, s.grade, s.target) for s in data.water] == [("wq-1", "渠江", "II", "III")]
    assert [(s.device_id, s.aqi) for s in data.air] == [("aq-1", 57), ("aq-quiet", None)]


def test_the_figures_are_summarised_once_per_read(city: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from dashboards.pages import wall as wall_page

    data = wall_page.read_wall(NOW)
    assert data.snapshot == vitals.summarise(data.vitals.states, NOW.timestamp())
    assert data.snapshot is not None and (data.snapshot.devices, data.snapshot.online) == (5, 4)

    def summarised_again(*_args: Any) -> None:
        raise AssertionError("the key figures take the read's summary")

    monkeypatch.setattr(wall_page, "summarise", summarised_again)
    kpis = repr(wall_page.kpis(data, None))
    assert "4 / 5" in kpis


def test_the_newest_reading_age_is_taken_from_the_summary(city: Any) -> None:
    from dataclasses import replace

    from dashboards.pages import wall as wall_page

    data = wall_page.read_wall(NOW)
    from_summary = wall_page.newest_reading_age(data)
    from_states = wall_page.newest_reading_age(replace(data, snapshot=None))
    assert from_summary is not None and from_states is not None
    # Both as of now: the newest reading (every device here reported at NOW) is as old as NOW.
    assert abs(from_summary - from_states) < 1.0
    assert abs(from_summary - (datetime.now(UTC) - NOW).total_seconds()) < 5.0
