"""OGC SensorThings observations: topics, the datastream mapping file, the payload schema,
and the readings they become, through IngestPipeline on SQLite + the in-process store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import sqlalchemy as sa

from ingest.pipeline import Inbound, IngestPipeline
from ingest.routing import Kind, Route, TopicRouter
from ingest.sensorthings import (
    Datastream,
    DatastreamFileError,
    DatastreamMap,
    load_datastreams,
    parse_datastreams,
)
from models import schema
from models.config import ConfigError, load_settings
from models.live import LiveStore, device_key

ROOT = Path(__file__).resolve().parents[3]
NOW = datetime(2026, 7, 15, 2, 30, tzinfo=UTC)
GUANGAN_LON, GUANGAN_LAT = 106.6333, 30.4560
MAPPING = """
version = 1

[datastreams]
42 = { device = "air-1", metric = "pm25" }
"ds-pm10" = { device = "air-1", metric = "pm10" }
43 = { device = "air-1", metric = "o3" }
"ds-level" = { device = "air-1", metric = "level" }
7 = { device = "ghost-1", metric = "pm25" }
"""


# ---- routing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic", "route"),
    [
        ("v1.1/Datastreams(42)/Observations", Route(Kind.STA_DATASTREAM_OBS, "42")),
        ("v1.1/Datastreams(0)/Observations", Route(Kind.STA_DATASTREAM_OBS, "0")),
        ("v1.1/Datastreams('ds-1')/Observations", Route(Kind.STA_DATASTREAM_OBS, "ds-1")),
        ("v1.1/Datastreams('42')/Observations", Route(Kind.STA_DATASTREAM_OBS, "42")),
        ("v1.1/Observations", Route(Kind.STA_OBS, "")),
    ],
)
def test_sensorthings_topics_route(topic: str, route: Route) -> None:
    assert TopicRouter("cityops/v1").route(topic) == route


@pytest.mark.parametrize(
    "topic",
    [
        "v1.1/Datastreams(042)/Observations",  # leading zero: not an integer literal
        "v1.1/Datastreams(ds-1)/Observations",  # a string id is quoted
        "v1.1/Datastreams('')/Observations",
        "v1.1/Datastreams('it''s')/Observations",
        "v1.1/Datastreams(" + "9" * 20 + ")/Observations",
        "v1.1/Datastreams('" + "x" * 65 + "')/Observations",
        "v1.1/Datastreams(42)/Observations/extra",
        "v1.1/Datastreams(42)",
        "v1.1/Things(1)/Observations",
        "v1.0/Datastreams(42)/Observations",
        "cityops/v1/Datastreams(42)/Observations",
        "v1.1/Observations(5)",
        "v1.1/observations",
    ],
)
def test_other_sensorthings_paths_are_not_ours(topic: str) -> None:
    assert TopicRouter("cityops/v1").route(topic) is None


def test_builders_subscriptions_and_a_root_of_its_own() -> None:
    router = TopicRouter("city/gaz", "sta/v1.1")
    assert router.sta_datastream_observations(42) == "sta/v1.1/Datastreams(42)/Observations"
    assert router.sta_datastream_observations("ds-1") == "sta/v1.1/Datastreams('ds-1')/Observations"
    assert router.route(router.sta_datastream_observations("ds-1")) == Route(Kind.STA_DATASTREAM_OBS, "ds-1")
    assert router.route(router.sta_observations()) == Route(Kind.STA_OBS, "")
    assert router.route("v1.1/Observations") is None
    subs = dict(router.subscriptions("ingest"))
    # Not under the prefix, shared, each filter in a group of its own.
    assert subs["sta/v1.1/+/Observations"] == "ingest-sta-datastreams"
    assert subs["sta/v1.1/Observations"] == "ingest-sta"
    assert len(set(subs.values()) - {None}) == len([g for g in subs.values() if g is not None])


# ---- the mapping file -------------------------------------------------------------------------


def test_mapping_file_maps_integer_and_string_ids() -> None:
    mapping = parse_datastreams(MAPPING)
    assert len(mapping) == 5 and mapping.root == "v1.1"
    assert mapping.get(42) == mapping.get("42") == Datastream("air-1", "pm25")
    assert mapping.get("ds-pm10") == Datastream("air-1", "pm10")
    assert mapping.get(44) is None


def test_the_shipped_example_loads() -> None:
    mapping = load_datastreams(ROOT / "deploy" / "sta-datastreams.example.toml")
    assert mapping.get(101) == Datastream("air_quality-511602-01", "pm25")
    assert mapping.get("wl-linshui-01") == Datastream("water_level-511623-01", "level")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[datastreams\n", "not valid TOML"),
        ("", "no datastreams"),
        ("[datastreams]\n", "no datastreams"),
        (
            "streams = 1\n[datastreams]\n1 = {device='a', metric='pm25'}",
            "unknown top-level key(s) ['streams']",
        ),
        ("version = 2\n[datastreams]\n1 = {device='a', metric='pm25'}", "version 2 is not supported"),
        ("root = 'v1.1/#'\n[datastreams]\n1 = {device='a', metric='pm25'}", "root 'v1.1/#'"),
        ("[datastreams]\n1 = 'a'", "datastream '1': must be a table"),
        (
            "[datastreams]\n1 = {device='a', metric='pm25', unit='x'}",
            "datastream '1': unknown field(s) ['unit']",
        ),
        ("[datastreams]\n1 = {metric='pm25'}", "datastream '1': device must be a device id"),
        ("[datastreams]\n1 = {device='广安', metric='pm25'}", "datastream '1': device must be a device id"),
        ("[datastreams]\n1 = {device='a', metric='pm2.5'}", "datastream '1': metric 'pm2.5' is not a metric"),
        ("[datastreams]\n1 = {device='a'}", "datastream '1': metric None is not a metric"),
        ("[datastreams]\n'a b' = {device='a', metric='pm25'}", "datastream 'a b': an id is 1-64"),
        (
            "[datastreams]\n1 = {device='a', metric='pm25'}\n2 = {device='a', metric='pm25'}",
            "datastream '2': device 'a' metric 'pm25' is already fed by datastream '1'",
        ),
        ("[datastreams]\n1 = {device='a', metric='pm25'}\n1 = {device='b', metric='pm25'}", "not valid TOML"),
    ],
)
def test_a_broken_mapping_is_one_line_naming_variable_file_and_entry(text: str, problem: str) -> None:
    with pytest.raises(DatastreamFileError) as err:
        parse_datastreams(text, source="/etc/cityops/sta.toml")
    message = str(err.value)
    assert isinstance(err.value, ConfigError)  # the command line prints it as one line, exit 2
    assert message.startswith("CITYOPS_STA_DATASTREAMS: /etc/cityops/sta.toml: ")
    assert problem in message
    assert "\n" not in message


def test_unreadable_mapping_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(DatastreamFileError, match=r"missing\.toml: cannot read the datastream mapping"):
        load_datastreams(tmp_path / "missing.toml")
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes(b"[datastreams]\n1 = {device='\xe9', metric='pm25'}\n")
    with pytest.raises(DatastreamFileError, match=r"latin1\.toml: cannot read"):
        load_datastreams(latin1)
    assert len(load_datastreams(None)) == 0


def test_setting_names_a_file_or_finds_the_default_in_the_data_directory(tmp_path: Path) -> None:
    assert load_settings({"CITYOPS_DATA_DIR": str(tmp_path)}).sta_datastreams is None
    default = tmp_path / "sta-datastreams.toml"
    default.write_text(MAPPING, encoding="utf-8")
    assert load_settings({"CITYOPS_DATA_DIR": str(tmp_path)}).sta_datastreams == default
    other = tmp_path / "other.toml"
    other.write_text(MAPPING, encoding="utf-8")
    explicit = {"CITYOPS_DATA_DIR": str(tmp_path), "CITYOPS_STA_DATASTREAMS": str(other)}
    assert load_settings(explicit).sta_datastreams == other
    with pytest.raises(ConfigError, match="CITYOPS_STA_DATASTREAMS: names no readable file"):
        load_settings({"CITYOPS_STA_DATASTREAMS": str(tmp_path / "absent.toml")})


def test_a_worker_refuses_to_start_with_a_broken_mapping(tmp_path: Path) -> None:
    broken = tmp_path / "sta.toml"
    broken.write_text("[datastreams]\n42 = { device = 'air-1', metric = 'pm2.5' }\n", encoding="utf-8")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CITYOPS_")}
    done = subprocess.run(
        [sys.executable, "-c", "from cli import main; main()", "ingest"],
        cwd=ROOT,
        env=clean
        | {
            # Nothing listens there: the mapping must stop the worker before it connects.
            "CITYOPS_MQTT_URL": "mqtt://127.0.0.1:9",
            "CITYOPS_DATA_DIR": str(tmp_path),
            "CITYOPS_STA_DATASTREAMS": str(broken),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"cityops: error: CITYOPS_STA_DATASTREAMS: {broken}: datastream '42': metric 'pm2.5' is not a "
        "metric of any device type (docs/mqtt.md lists them)"
    )


# ---- through the pipeline ---------------------------------------------------------------------


@pytest.fixture
def live() -> LiveStore:
    return LiveStore(fakeredis.FakeRedis(decode_responses=True))


@pytest.fixture
def pipeline(engine: sa.Engine, live: LiveStore) -> IngestPipeline:
    p = IngestPipeline(engine, live, clock=lambda: NOW, datastreams=parse_datastreams(MAPPING))
    registered = p.process(
        [native("sensors/air-1/meta", {"type": "air_quality", "lon": GUANGAN_LON, "lat": GUANGAN_LAT})]
    )
    assert registered.stored["devices"] == 1
    return p


def native(topic: str, body: object) -> Inbound:
    return Inbound(f"cityops/v1/{topic}", json.dumps(body).encode(), NOW)


def sta(datastream: int | str | None, body: dict[str, Any], *, raw: bytes | None = None) -> Inbound:
    router = TopicRouter()
    topic = (
        router.sta_observations() if datastream is None else router.sta_datastream_observations(datastream)
    )
    return Inbound(topic, raw if raw is not None else json.dumps(body).encode(), NOW)


def at(minutes: float = 0) -> str:
    return (NOW - timedelta(minutes=minutes)).astimezone().isoformat()


def readings(engine: sa.Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        t = schema.Observation.__table__
        return [dict(r) for r in conn.execute(sa.select(t).order_by(t.c.ts)).mappings()]


def hourly(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        t = schema.ObservationHourly.__table__
        return {r.metric: r.count for r in conn.execute(sa.select(t.c.metric, t.c["count"]))}


@pytest.mark.parametrize(
    ("message", "metric", "value", "msg_id"),
    [
        (sta(42, {"result": 35, "phenomenonTime": at(), "@iot.id": 1}), "pm25", 35.0, "sta@1"),
        (sta("ds-pm10", {"result": 61.5, "phenomenonTime": at()}), "pm10", 61.5, None),
        (
            sta("42", {"result": 35, "phenomenonTime": at(), "Datastream": {"@iot.id": 42}}),
            "pm25",
            35.0,
            None,
        ),
        (sta(None, {"result": 0, "phenomenonTime": at(), "Datastream": {"@iot.id": 43}}), "o3", 0.0, None),
        (
            sta(
                None,
                {
                    "result": 70,
                    "phenomenonTime": at(),
                    "Datastream": {"@iot.id": "ds-pm10"},
                    "@iot.id": "x-9",
                },
            ),
            "pm10",
            70.0,
            "sta@x-9",
        ),
        (
            sta(
                42,
                {
                    "result": 12.25,
                    "phenomenonTime": at(),
                    "resultTime": at(),
                    "validTime": f"{at(60)}/{at()}",
                    "resultQuality": {"flag": "ok"},
                    "parameters": {"method": "beta", "depth": [1, 2]},
                    "FeatureOfInterest": {"@iot.id": 5},
                },
            ),
            "pm25",
            12.25,
            None,
        ),
    ],
)
def test_an_observation_becomes_its_devices_reading(
    pipeline: IngestPipeline,
    engine: sa.Engine,
    live: LiveStore,
    message: Inbound,
    metric: str,
    value: float,
    msg_id: str | None,
) -> None:
    result = pipeline.process([message])
    assert result.rejected == [] and result.stored["observations"] == 1
    (row,) = readings(engine)
    assert row["device_id"] == "air-1" and row["metrics"] == {metric: value} and row["msg_id"] == msg_id
    assert row["ts"] == NOW and row["district_code"] == "511602" and row["grid_id"]
    assert json.loads(live.redis.hget(device_key("air-1"), "metrics")) == {metric: value}


def test_an_intervals_end_is_the_readings_time(pipeline: IngestPipeline, engine: sa.Engine) -> None:
    interval = f"{at(60)}/{at(0)}"
    assert pipeline.process([sta(42, {"result": 5, "phenomenonTime": interval})]).stored["observations"] == 1
    assert readings(engine)[0]["ts"] == NOW


@pytest.mark.parametrize(
    ("message", "reason", "detail"),
    [
        (sta(99, {"result": 1, "phenomenonTime": at()}), "unknown_datastream", "'99' is not mapped"),
        (
            sta(None, {"result": 1, "phenomenonTime": at(), "Datastream": {"@iot.id": "nope"}}),
            "unknown_datastream",
            "'nope'",
        ),
        (sta(None, {"result": 1, "phenomenonTime": at()}), "schema", "Datastream: required"),
        (sta(42, {"result": 1, "phenomenonTime": at(), "Datastream": {"@iot.id": 43}}), "schema", "differs"),
        # The same refusals a native reading gets, with the same reasons.
        (
            sta("ds-level", {"result": 1, "phenomenonTime": at()}),
            "unknown_metric",
            "'level' is not a metric of air_quality",
        ),
        (sta(7, {"result": 1, "phenomenonTime": at()}), "unknown_device", "ghost-1"),
        (sta(42, {"result": -3, "phenomenonTime": at()}), "negative_value", "pm25=-3.0"),
        (sta(42, {"result": 2**64, "phenomenonTime": at()}), "out_of_range", "pm25"),
        (sta(42, {"result": 1, "phenomenonTime": at(-10)}), "ts_future", ""),
        (sta(42, {"result": 1, "phenomenonTime": at(8 * 24 * 60)}), "ts_past", ""),
        (sta(42, {"result": 1, "phenomenonTime": f"{at(120)}/{at(-10)}"}), "ts_future", ""),
        # Strict schema.
        (sta(42, {"phenomenonTime": at()}), "schema", "result: Field required"),
        (sta(42, {"result": 1}), "schema", "phenomenonTime: Field required"),
        (sta(42, {"result": "35", "phenomenonTime": at()}), "schema", "result"),
        (sta(42, {"result": True, "phenomenonTime": at()}), "schema", "result"),
        (sta(42, {"result": None, "phenomenonTime": at()}), "schema", "result"),
        (sta(42, {"result": {"pm25": 3}, "phenomenonTime": at()}), "schema", "result"),
        (sta(42, {}, raw=b'{"result": 1e309, "phenomenonTime": "2026-07-15T02:30:00Z"}'), "schema", "finite"),
        (
            sta(42, {}, raw=b'{"result": NaN, "phenomenonTime": "2026-07-15T02:30:00Z"}'),
            "invalid_json",
            "NaN",
        ),
        (sta(42, {"result": 1, "phenomenonTime": "2026-07-15T02:30:00"}), "schema", "offset"),
        (sta(42, {"result": 1, "phenomenonTime": "yesterday"}), "schema", "phenomenonTime"),
        (sta(42, {"result": 1, "phenomenonTime": f"{at()}/PT1H"}), "schema", "start/end"),
        (sta(42, {"result": 1, "phenomenonTime": f"{at(0)}/{at(60)}"}), "schema", "ends before it starts"),
        (
            sta(42, {"result": 1, "phenomenonTime": "2026-07-15T02:00:00Z/2026-07-15T02:30:00"}),
            "schema",
            "offset",
        ),
        (sta(42, {"result": 1, "phenomenonTime": at(), "resultTime": "2026-07-15"}), "schema", "resultTime"),
        (sta(42, {"result": 1, "phenomenonTime": at(), "@iot.id": -1}), "schema", "@iot.id"),
        (sta(42, {"result": 1, "phenomenonTime": at(), "@iot.id": 2**63}), "schema", "@iot.id"),
        (sta(42, {"result": 1, "phenomenonTime": at(), "@iot.id": "a" * 61}), "schema", "@iot.id"),
        (sta(42, {"result": 1, "phenomenonTime": at(), "@iot.id": "a b"}), "schema", "@iot.id"),
        (sta(42, {"result": 1, "phenomenonTime": at(), "@iot.id": 1.5}), "schema", "@iot.id"),
        (
            sta(42, {"result": 1, "phenomenonTime": at(), "Datastream": {"@iot.id": 42, "name": "x"}}),
            "schema",
            "Datastream.name",
        ),
        (sta(42, {"result": 1, "phenomenonTime": at(), "Datastream": 42}), "schema", "Datastream"),
        (
            sta(42, {"result": 1, "phenomenonTime": at(), "FeatureOfInterest": {"name": "x"}}),
            "schema",
            "FeatureOfInterest",
        ),
        (sta(42, {"result": 1, "phenomenonTime": at(), "phenomenontime": at()}), "schema", "phenomenontime"),
        (sta(42, {"result": 1, "phenomenonTime": at(), "metrics": {"pm25": 1}}), "schema", "metrics"),
        (sta(42, {"result": 1, "phenomenonTime": at(), "parameters": [1]}), "schema", "parameters"),
        (
            sta(42, {"result": 1, "phenomenonTime": at(), "parameters": {str(i): i for i in range(33)}}),
            "schema",
            "parameters",
        ),
        (sta(42, {}, raw=b"[1]"), "invalid_json", "JSON object"),
        (sta(42, {}, raw=b'{"result": 1, "phenomenonTime": "\xe9"}'), "invalid_utf8", ""),
        (Inbound("v1.1/Things(1)/Observations", b"{}", NOW), "unknown_topic", "Things"),
    ],
)
def test_refused_observations_are_dead_letters_with_their_reason(
    pipeline: IngestPipeline, engine: sa.Engine, message: Inbound, reason: str, detail: str
) -> None:
    result = pipeline.process([message, sta(43, {"result": 88, "phenomenonTime": at(1)})])
    assert [r.reason for r in result.rejected] == [reason], [r.detail for r in result.rejected]
    assert detail in result.rejected[0].detail
    assert result.stored["observations"] == 1, "the good observation next to it is stored"
    with engine.connect() as conn:
        letters = conn.execute(sa.select(schema.DeadLetter.__table__)).mappings().all()
    assert [(d["topic"], d["reason"]) for d in letters] == [(message.topic, reason)]


def test_datastreams_of_one_instant_make_one_reading_and_redelivery_stores_nothing(
    pipeline: IngestPipeline, engine: sa.Engine, live: LiveStore
) -> None:
    pm25 = sta(42, {"result": 35, "phenomenonTime": at(), "@iot.id": 1})
    pm10 = sta("ds-pm10", {"result": 70, "phenomenonTime": at(), "@iot.id": 2})
    o3 = sta(None, {"result": 90, "phenomenonTime": at(), "@iot.id": 3, "Datastream": {"@iot.id": 43}})
    first = pipeline.process([pm25])
    second = pipeline.process([pm10, o3, pm10])  # a redelivery next to its original
    assert first.stored["observations"] == 1
    assert second.stored["observations"] == 2 and second.duplicates["observations"] == 1
    (row,) = readings(engine)
    assert row["metrics"] == {"pm25": 35.0, "pm10": 70.0, "o3": 90.0}
    assert row["msg_id"] == "sta@1"
    assert hourly(engine) == {"pm25": 1, "pm10": 1, "o3": 1}
    state = live.redis.hgetall(device_key("air-1"))
    assert json.loads(state["metrics"]) == row["metrics"]
    assert set(json.loads(state["derived"])["iaqi"]) == {"pm25", "pm10", "o3"}, "the AQI sees all three"

    again = pipeline.process([pm25, pm10, o3])
    assert again.stored["observations"] == 0 and again.duplicates["observations"] == 3
    assert readings(engine) == [row] and hourly(engine) == {"pm25": 1, "pm10": 1, "o3": 1}


def test_a_native_reading_and_an_observation_of_one_instant_share_the_reading(
    pipeline: IngestPipeline, engine: sa.Engine
) -> None:
    reading = native("sensors/air-1/obs", {"ts": at(), "metrics": {"so2": 8}, "msg_id": "m-1"})
    result = pipeline.process([reading, sta(42, {"result": 35, "phenomenonTime": at(), "@iot.id": 1})])
    assert result.stored["observations"] == 2 and result.rejected == []
    (row,) = readings(engine)
    assert row["metrics"] == {"so2": 8.0, "pm25": 35.0} and row["msg_id"] == "m-1"


def test_a_reused_iot_id_is_a_duplicate_and_cannot_reach_a_native_msg_id(
    pipeline: IngestPipeline, engine: sa.Engine
) -> None:
    assert (
        pipeline.process([sta(42, {"result": 35, "phenomenonTime": at(5), "@iot.id": 1})]).stored[
            "observations"
        ]
        == 1
    )
    # The same Observation id at another time: the id says it is a redelivery.
    later = pipeline.process([sta(43, {"result": 9, "phenomenonTime": at(0), "@iot.id": 1})])
    assert later.stored["observations"] == 0 and later.duplicates["observations"] == 1
    # A native msg_id cannot take the namespace: '@' is not an id character.
    spoof = pipeline.process(
        [native("sensors/air-1/obs", {"ts": at(1), "metrics": {"pm25": 1}, "msg_id": "sta@1"})]
    )
    assert [r.reason for r in spoof.rejected] == ["schema"]
    # And a native msg_id that looks like the id is its own.
    own = pipeline.process(
        [native("sensors/air-1/obs", {"ts": at(2), "metrics": {"pm25": 1}, "msg_id": "1"})]
    )
    assert own.stored["observations"] == 1
    assert [r["msg_id"] for r in readings(engine)] == ["sta@1", "1"]


def test_without_a_mapping_every_observation_is_an_unknown_datastream(
    engine: sa.Engine, live: LiveStore
) -> None:
    p = IngestPipeline(engine, live, clock=lambda: NOW)
    assert p.datastreams == DatastreamMap()
    result = p.process([sta(42, {"result": 1, "phenomenonTime": at()})])
    assert [r.reason for r in result.rejected] == ["unknown_datastream"]


def test_metrics_join_stored_readings_across_chunks(
    pipeline: IngestPipeline, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ingest.pipeline.MERGE_CHUNK", 2)
    minutes = range(5)
    assert (
        pipeline.process([sta(42, {"result": 30 + m, "phenomenonTime": at(m)}) for m in minutes]).stored[
            "observations"
        ]
        == 5
    )
    second = pipeline.process(
        [sta("ds-pm10", {"result": 60 + m, "phenomenonTime": at(m)}) for m in reversed(minutes)]
        + [sta(42, {"result": 1, "phenomenonTime": at(3)})]  # already there: a duplicate
    )
    assert second.stored["observations"] == 5 and second.duplicates["observations"] == 1
    assert [r["metrics"] for r in readings(engine)] == [
        {"pm25": 30.0 + m, "pm10": 60.0 + m} for m in reversed(minutes)
    ]
    assert hourly(engine) == {"pm25": 5, "pm10": 5}
