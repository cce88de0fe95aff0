"""Properties of the SensorThings Observation schema through the pipeline (as
test_schema_properties.py does for the native payloads), and hostile SensorThings messages
on SQLite and on PostgreSQL + PostGIS:

- a generated valid observation, on either topic form, becomes its device's reading with
  the result as the metric's value at the end of its phenomenonTime;
- a generated invalid one is one dead letter with a known reason, never an exception;
- hostile messages are refused with their reason, or stored as sent, and the good
  observations around them are stored.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from ingest.pipeline import Inbound, IngestPipeline
from ingest.routing import TopicRouter
from ingest.schemas import SensorThingsObservation
from ingest.sensorthings import Datastream, DatastreamMap
from models import schema
from models.catalog import DEVICE_TYPES
from models.db import create_engine_for, upgrade_database
from models.live import LiveStore
from tests.unit.ingest.test_schema_properties import EXAMPLES, REASONS, broken, json_values, text, timestamps

NOW = datetime(2026, 7, 15, 2, 30, tzinfo=UTC)
ROUTER = TopicRouter()
#: Every metric of a weather station, each fed by a datastream: integer ids and string ids.
WEATHER = DEVICE_TYPES["weather"]
DATASTREAM_IDS: list[int | str] = [i if i % 2 else f"wx-{m.key}" for i, m in enumerate(WEATHER, start=1)]
_serial = itertools.count()


def mapping(device_id: str) -> DatastreamMap:
    return DatastreamMap(
        {str(ds): Datastream(device_id, m.key) for ds, m in zip(DATASTREAM_IDS, WEATHER, strict=True)}
    )


# Observation ids are unique across the service (and so in the test's database): a serial
# part keeps generated ones apart.
iot_ids = st.integers(0, 10**6).map(lambda i: next(_serial) * 10**7 + i) | st.from_regex(
    r"[A-Za-z0-9_.:\-]{1,40}", fullmatch=True
).map(lambda s: f"{next(_serial)}-{s}")


@st.composite
def sta_observation(draw: st.DrawFn) -> tuple[str, dict[str, Any], str, datetime]:
    """(topic, body, metric, the reading's time) of a valid observation."""
    index = draw(st.integers(0, len(WEATHER) - 1))
    datastream, metric = DATASTREAM_IDS[index], WEATHER[index]
    end = draw(timestamps())
    body: dict[str, Any] = {
        "result": draw(
            st.floats(metric.minimum, metric.maximum)
            | st.integers(int(metric.minimum) + 1, int(metric.maximum))
        ),
        "phenomenonTime": end.isoformat(),
    }
    if draw(st.booleans()):
        start = end - timedelta(seconds=draw(st.integers(0, 86400)))
        body["phenomenonTime"] = f"{start.isoformat()}/{end.isoformat()}"
    if draw(st.booleans()):
        body["@iot.id"] = draw(iot_ids)
    if draw(st.booleans()):
        body["resultTime"] = draw(timestamps()).isoformat()
    if draw(st.booleans()):
        body["parameters"] = draw(st.dictionaries(text(16), json_values, max_size=5))
    if draw(st.booleans()):
        body["resultQuality"] = draw(json_values)
    if draw(st.booleans()):
        topic = ROUTER.sta_observations()
        body["Datastream"] = {"@iot.id": datastream}
    else:
        topic = ROUTER.sta_datastream_observations(datastream)
        if draw(st.booleans()):
            body["Datastream"] = {"@iot.id": datastream}
    return topic, body, metric.key, end


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sa.Engine]:
    path: Path = tmp_path_factory.mktemp("sta-properties") / "cityops.sqlite3"
    upgrade_database(f"sqlite:///{path}")
    engine = create_engine_for(f"sqlite:///{path}")
    yield engine
    engine.dispose()


def station(engine: sa.Engine) -> tuple[IngestPipeline, str]:
    """A pipeline and a weather station of its own (each example starts without readings)."""
    device_id = f"wx-{next(_serial)}"
    pipeline = IngestPipeline(
        engine,
        LiveStore(fakeredis.FakeRedis(decode_responses=True)),
        clock=lambda: NOW,
        datastreams=mapping(device_id),
    )
    meta = {"type": "weather", "lon": 106.6333, "lat": 30.456}
    registered = pipeline.process(
        [Inbound(f"cityops/v1/sensors/{device_id}/meta", json.dumps(meta).encode(), NOW)]
    )
    assert registered.stored["devices"] == 1
    return pipeline, device_id


@EXAMPLES
@given(sta_observation())
def test_observation_becomes_the_reading_as_sent(
    engine: sa.Engine, case: tuple[str, dict[str, Any], str, datetime]
) -> None:
    topic, body, metric, end = case
    SensorThingsObservation.model_validate(body)
    pipeline, device_id = station(engine)
    result = pipeline.process([Inbound(topic, json.dumps(body).encode(), NOW)])
    assert result.rejected == [], [(r.reason, r.detail) for r in result.rejected]
    assert result.stored["observations"] == 1
    with engine.connect() as conn:
        t = schema.Observation.__table__
        got = conn.execute(sa.select(t).where(t.c.device_id == device_id)).mappings().one()
    assert got["ts"] == end.astimezone(UTC)
    assert got["metrics"] == {metric: float(body["result"])}
    assert got["msg_id"] == (None if "@iot.id" not in body else f"sta@{body['@iot.id']}")
    again = pipeline.process([Inbound(topic, json.dumps(body).encode(), NOW)])
    assert again.stored["observations"] == 0 and again.duplicates["observations"] == 1


_VALID = sta_observation().map(lambda c: (c[0], c[1]))


def test_invalid_observations_are_refused_with_a_reason_never_an_exception(engine: sa.Engine) -> None:
    pipeline, _device_id = station(engine)

    @EXAMPLES
    @given(broken(_VALID))
    def check(case: tuple[str, bytes]) -> None:
        topic, payload = case
        result = pipeline.process([Inbound(topic, payload, NOW)])  # never raises
        handled = len(result.rejected) + sum(result.stored.values()) + sum(result.duplicates.values())
        assert handled == 1, "each message is stored, a duplicate, or refused"
        for rejection in result.rejected:
            assert rejection.reason in REASONS
            assert rejection.detail.strip()

    check()


# ---- hostile messages, on SQLite and on PostgreSQL + PostGIS ------------------------------------

SQL = "'); DROP TABLE observations; --"
TS = "2026-07-15T02:30:00+00:00"


#: The datastream the hostile messages are published to (the good one next to them is 2).
DS1 = "v1.1/Datastreams(1)/Observations"


def _raw(result: str) -> bytes:
    """A body with a result literal json.dumps would not write."""
    return ('{"result": ' + result + ', "phenomenonTime": "' + TS + '"}').encode()


def _body(**fields: Any) -> bytes:
    return json.dumps({"result": 20.5, "phenomenonTime": TS} | fields, ensure_ascii=False).encode()


#: (name, topic, payload, reason or None when stored)
HOSTILE: list[tuple[str, str, bytes, str | None]] = [
    ("nested_100k", DS1, b'{"a": ' + b"[" * 30_000 + b"]" * 30_000 + b"}", "invalid_json"),
    ("nested_parameters_ignored", DS1, _body(parameters={"a": [[[[[[[[[[]]]]]]]]]]}), None),
    ("10MB", DS1, b'{"x": "' + b"a" * 10_000_000 + b'"}', "too_large"),
    ("nul_in_parameters_ignored", DS1, _body(parameters={"\u0000": "\u0000"}), None),
    ("nul_in_valid_time", DS1, _body(validTime="\u0000"), None),
    ("1e309", DS1, _raw("1e309"), "schema"),
    ("2**64", DS1, _body(result=2**64), "out_of_range"),
    ("-(2**64)", DS1, _body(result=-(2**64)), "negative_value"),
    ("nan", DS1, _raw("NaN"), "invalid_json"),
    ("sql_in_iot_id", DS1, _body(**{"@iot.id": SQL}), "schema"),
    ("sql_in_datastream_link", "v1.1/Observations", _body(Datastream={"@iot.id": SQL}), "schema"),
    ("sql_in_topic", f"v1.1/Datastreams('{SQL}')/Observations", _body(), "unknown_topic"),
    ("wildcard_topic", "v1.1/+/Observations", _body(), "unknown_topic"),
    ("nul_in_topic", "v1.1/Datastreams('a\u0000')/Observations", _body(), "unknown_topic"),
    ("long_topic", "v1.1/Datastreams(1)/Observations/" + "x" * 300, _body(), "unknown_topic"),
    ("1970", DS1, _body(phenomenonTime="1970-01-01T00:00:00Z"), "ts_past"),
    ("2100", DS1, _body(phenomenonTime="2100-01-01T00:00:00Z"), "ts_future"),
    ("interval_from_1970", DS1, _body(phenomenonTime=f"1970-01-01T00:00Z/{TS}"), None),
    ("year_0", DS1, _body(phenomenonTime="0000-01-01T00:00:00Z"), "schema"),
    ("huge_iot_id", DS1, _body(**{"@iot.id": 2**64}), "schema"),
    ("many_parameters", DS1, _body(parameters=dict.fromkeys(map(str, range(99)))), "schema"),
]  # fmt: skip
TABLES = ("observation_hourly", "observations", "devices", "dead_letters")


@pytest.fixture(params=["sqlite", "postgis"])
def any_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'cityops.sqlite3'}"
        upgrade_database(url)
        engine = create_engine_for(url)
    else:
        engine = create_engine_for(request.getfixturevalue("pg_url"))
        with engine.begin() as conn:
            for table in TABLES:
                conn.exec_driver_sql(f"DELETE FROM {table}")
    yield engine
    engine.dispose()


@pytest.mark.parametrize(("name", "topic", "payload", "reason"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_observation_is_refused_or_stored_and_the_batch_goes_on(
    any_engine: sa.Engine, name: str, topic: str, payload: bytes, reason: str | None
) -> None:
    live = LiveStore(fakeredis.FakeRedis(decode_responses=True))
    pipeline = IngestPipeline(
        any_engine,
        live,
        clock=lambda: NOW,
        datastreams=DatastreamMap({"1": Datastream("air-1", "pm25"), "2": Datastream("air-1", "pm10")}),
    )
    meta = b'{"type": "air_quality", "lon": 106.6333, "lat": 30.4560}'
    assert pipeline.process([Inbound("cityops/v1/sensors/air-1/meta", meta, NOW)]).stored["devices"] == 1
    good = Inbound("v1.1/Datastreams(2)/Observations", _body(result=33), NOW)
    result = pipeline.process([good, Inbound(topic, payload, NOW)])

    assert result.stored["observations"] == (1 if reason else 2), [
        (r.reason, r.detail) for r in result.rejected
    ]
    with any_engine.connect() as conn:
        letters = conn.execute(sa.select(schema.DeadLetter.__table__)).mappings().all()
        metrics = conn.execute(sa.select(schema.Observation.__table__.c.metrics)).scalar_one()
    if reason is None:
        assert result.rejected == [] and letters == []
        assert metrics == {"pm10": 33.0, "pm25": 20.5}
    else:
        assert [r.reason for r in result.rejected] == [reason]
        assert result.rejected[0].detail.strip()
        assert [(d["reason"], d["payload_size"]) for d in letters] == [(reason, len(payload))]
        assert metrics == {"pm10": 33.0}
        assert live.redis.hget("cityops:rejected", reason) == "1"
