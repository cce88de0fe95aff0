"""The emergency map's patch builds only the traces it sends: at city scale the sensor
trace alone holds thousands of points, and building a trace validates each of them."""

from __future__ import annotations

import pytest
from dash import Patch

from dashboards import emergency as em
from models.rules import load_rules
from tests.unit.dashboards.test_console import live_alert
from tests.unit.dashboards.test_emergency import NOW, state


def test_a_sensor_change_builds_only_the_sensor_trace(monkeypatch: pytest.MonkeyPatch) -> None:
    limits = em.sensor_limits(load_rules().rules)
    sensors = em.sensor_rows([state("wl", "water_level", {"level": 4.0})], limits, {}, NOW.timestamp())
    alerts = em.alert_rows([live_alert(1, "critical")], {})
    model = em.MapModel([], sensors, alerts, [], None)
    _figure, drawn = em.map_update(model, None, tile_url=None)

    def not_needed(*_args: object) -> None:
        raise AssertionError("a trace that did not change was built")

    for builder in ("resource_traces", "alert_traces", "incident_traces", "nearest_trace"):
        monkeypatch.setattr(em, builder, not_needed)
    hot = em.sensor_rows([state("wl", "water_level", {"level": 5.6})], limits, {}, NOW.timestamp())
    patch, _ = em.map_update(em.MapModel([], hot, alerts, [], None), drawn, tile_url=None)

    assert isinstance(patch, Patch)
    ops = patch.to_plotly_json()["operations"]
    assert [op["location"] for op in ops] == [["data", em.TRACES.index("sensors")]]
    assert ops[0]["params"]["value"] == em.sensors_trace(hot).to_plotly_json()
