"""Properties of every MQTT payload schema (docs/mqtt.md), through the pipeline on SQLite.

- a generated valid payload is accepted by its schema and stored exactly as sent;
- a generated invalid one (a field dropped, an unknown field, a value of the wrong type or
  out of range, garbage bytes) becomes one dead letter with a known reason and a message;
  nothing escapes ``process()``;
- the fast observation check agrees with pydantic on every generated reading (the
  comparison of tests/unit/ingest/test_schemas_fast.py, fed with these strategies).
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
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.pipeline import Inbound, IngestPipeline
from ingest.schemas import DeviceMeta, HotlineTicket, Observation, TicketLifecycleEvent, VideoEvent
from models import schema
from models.catalog import DEVICE_TYPES, HOTLINE_CHANNELS, VIDEO_EVENT_TYPES
from models.db import create_engine_for, upgrade_database
from models.live import LiveStore
from tests.unit.ingest.test_schemas_fast import assert_same

NOW = datetime(2026, 7, 15, 2, 30, tzinfo=UTC)
PREFIX = "cityops/v1"
#: Inside the city's bounding box (rejections for places outside are the corpus's business).
LON = st.floats(106.0, 107.25)
LAT = st.floats(30.05, 30.8)
#: Every reason a message can be refused with (docs/mqtt.md).
REASONS = {
    "unknown_topic", "too_large", "invalid_utf8", "invalid_json", "schema", "unknown_device",
    "unknown_metric", "out_of_range", "negative_value", "ts_future", "ts_past", "out_of_extent",
    "not_supported", "illegal_transition", "unknown_ticket", "storage_refused", "unknown_datastream",
}  # fmt: skip
EXAMPLES = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

_serial = itertools.count()


def text(max_size: int, min_size: int = 0) -> st.SearchStrategy[str]:
    """Any text PostgreSQL and SQLite can store: no lone surrogates, no NUL."""
    return st.text(
        st.characters(exclude_categories=("Cs",), exclude_characters="\x00"),
        min_size=min_size,
        max_size=max_size,
    )


def identifier(max_size: int = 64) -> st.SearchStrategy[str]:
    # A serial prefix keeps generated ids unique within the test's database.
    return st.from_regex(r"[A-Za-z0-9_.:\-]{1,20}", fullmatch=True).map(
        lambda s: f"{next(_serial)}-{s}"[:max_size]
    )


def timestamps() -> st.SearchStrategy[datetime]:
    offsets = st.sampled_from([0, 8, -5, 5.5, 14]).map(lambda h: timedelta(hours=h))
    ages = st.integers(0, 6 * 24 * 3600 * 1000).map(lambda ms: timedelta(milliseconds=ms))
    return st.tuples(ages, offsets).map(lambda p: (NOW - p[0]).astimezone(_tz(p[1])))


def _tz(offset: timedelta) -> Any:
    from datetime import timezone

    return timezone(offset)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text(20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text(10), inner, max_size=3),
    max_leaves=8,
)


@st.composite
def sensor_meta(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    body: dict[str, Any] = {
        "type": draw(st.sampled_from(sorted(DEVICE_TYPES))),
        "lon": draw(LON),
        "lat": draw(LAT),
    }
    if draw(st.booleans()):
        body["name"] = draw(text(200))
    if draw(st.booleans()):
        body["props"] = draw(st.dictionaries(text(16), json_values, max_size=5))
    return draw(identifier()), body


@st.composite
def observation(draw: st.DrawFn, device_type: str = "weather") -> dict[str, Any]:
    metrics = DEVICE_TYPES[device_type]
    chosen = draw(st.lists(st.sampled_from(metrics), min_size=1, unique_by=lambda m: m.key))
    values = {
        m.key: draw(st.floats(m.minimum, m.maximum) | st.integers(int(m.minimum) + 1, int(m.maximum)))
        for m in chosen
    }
    body: dict[str, Any] = {"ts": draw(timestamps()).isoformat(), "metrics": values}
    if draw(st.booleans()):
        body["msg_id"] = draw(identifier())
    return body


@st.composite
def video_event(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": draw(identifier()),
        "ts": draw(timestamps()).isoformat(),
        "type": draw(st.sampled_from(sorted(VIDEO_EVENT_TYPES))),
        "confidence": draw(st.floats(0, 1)),
    }
    if draw(st.booleans()):
        body["lon"], body["lat"] = draw(LON), draw(LAT)
    if draw(st.booleans()):
        body["snapshot_url"] = draw(text(500))
    if draw(st.booleans()):
        body["bbox"] = draw(st.lists(st.floats(-1e6, 1e6) | st.integers(0, 4096), min_size=4, max_size=4))
    return body


@st.composite
def ticket(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {
        "ticket_id": draw(identifier(32)),
        "ts": draw(timestamps()).isoformat(),
        "channel": draw(st.sampled_from(sorted(HOTLINE_CHANNELS))),
        "category": draw(text(50, 1)),
        "title": draw(text(200, 1)),
        "content": draw(text(4000)),
        "urgency": draw(st.sampled_from(["normal", "urgent"])),
    }
    if draw(st.booleans()):
        body["address"] = draw(text(200))
    if draw(st.booleans()):
        body["lon"], body["lat"] = draw(LON), draw(LAT)
    if draw(st.booleans()):
        body["caller"] = {"name": draw(text(64)), "phone": draw(text(32))}
    return body


@st.composite
def dispatch_event(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": draw(identifier()),
        "ts": NOW.isoformat(),
        "action": "dispatched",
        # The lifecycle refuses a blank department (illegal_transition), as the console does.
        "department": draw(text(64, 1).filter(str.strip)),
    }
    for key, limit in (("note", 4000), ("actor", 48)):
        if draw(st.booleans()):
            body[key] = draw(text(limit))
    if draw(st.booleans()):
        body["district_code"] = draw(st.from_regex(r"[0-9]{6,12}", fullmatch=True))
    return body


# ---- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sa.Engine]:
    path: Path = tmp_path_factory.mktemp("properties") / "cityops.sqlite3"
    upgrade_database(f"sqlite:///{path}")
    engine = create_engine_for(f"sqlite:///{path}")
    yield engine
    engine.dispose()


@pytest.fixture
def pipeline(engine: sa.Engine) -> IngestPipeline:
    pipeline = IngestPipeline(
        engine, LiveStore(fakeredis.FakeRedis(decode_responses=True)), clock=lambda: NOW
    )
    meta = {"type": "weather", "lon": 106.6333, "lat": 30.456}
    pipeline.process(
        [message("sensors/wx-1/meta", meta), message("video/cam-p/meta", meta | {"type": "camera"})]
    )
    return pipeline


def message(topic: str, body: Any) -> Inbound:
    return Inbound(f"{PREFIX}/{topic}", json.dumps(body, ensure_ascii=False).encode(), NOW)


def row(engine: sa.Engine, table: sa.Table, **where: Any) -> dict[str, Any]:
    with engine.connect() as conn:
        query = sa.select(table).where(*(table.c[k] == v for k, v in where.items()))
        return dict(conn.execute(query).mappings().one())


def stored_once(pipeline: IngestPipeline, inbound: Inbound, table: str) -> None:
    result = pipeline.process([inbound])
    assert result.rejected == [], [(r.reason, r.detail) for r in result.rejected]
    assert result.stored[table] == 1


# ---- valid payloads: accepted and stored as sent -------------------------------------------------


@EXAMPLES
@given(sensor_meta())
def test_sensor_meta_is_stored_as_sent(
    pipeline: IngestPipeline, engine: sa.Engine, case: tuple[str, dict[str, Any]]
) -> None:
    device_id, body = case
    DeviceMeta.model_validate(body)
    stored_once(pipeline, message(f"sensors/{device_id}/meta", body), "devices")
    got = row(engine, schema.Device.__table__, device_id=device_id)
    assert (got["type"], got["lon"], got["lat"]) == (body["type"], body["lon"], body["lat"])
    assert got["name"] == body.get("name") or (got["name"] == device_id and not body.get("name"))
    assert got["props"] == body.get("props", {})


@EXAMPLES
@given(observation())
def test_observation_is_stored_as_sent(
    pipeline: IngestPipeline, engine: sa.Engine, body: dict[str, Any]
) -> None:
    model = Observation.model_validate(body)
    assert_same(json.loads(json.dumps(body)))  # the fast path agrees with pydantic
    result = pipeline.process([message("sensors/wx-1/obs", body)])
    assert result.rejected == []
    assert result.stored["observations"] + result.duplicates["observations"] == 1
    got = row(engine, schema.Observation.__table__, device_id="wx-1", ts=model.ts.astimezone(UTC))
    if result.stored["observations"]:
        assert got["metrics"] == {k: float(v) for k, v in body["metrics"].items()}
        assert got["msg_id"] == body.get("msg_id")


@EXAMPLES
@given(video_event())
def test_video_event_is_stored_as_sent(
    pipeline: IngestPipeline, engine: sa.Engine, body: dict[str, Any]
) -> None:
    VideoEvent.model_validate(body)
    stored_once(pipeline, message("video/cam-p/events", body), "video_events")
    got = row(engine, schema.VideoEvent.__table__, event_id=body["event_id"])
    assert got["ts"] == datetime.fromisoformat(body["ts"])
    assert (got["type"], got["confidence"], got["snapshot_url"]) == (
        body["type"],
        body["confidence"],
        body.get("snapshot_url"),
    )
    assert got["bbox"] == body.get("bbox")
    assert (got["lon"], got["lat"]) == (body.get("lon", 106.6333), body.get("lat", 30.456))


@EXAMPLES
@given(ticket())
def test_ticket_is_stored_as_sent(pipeline: IngestPipeline, engine: sa.Engine, body: dict[str, Any]) -> None:
    HotlineTicket.model_validate(body)
    stored_once(pipeline, message("hotline/tickets", body), "hotline_tickets")
    got = row(engine, schema.HotlineTicket.__table__, ticket_id=body["ticket_id"])
    for key in ("channel", "category", "title", "content", "urgency"):
        assert got[key] == body[key], key
    assert (got["address"], got["lon"], got["lat"]) == (body.get("address"), body.get("lon"), body.get("lat"))
    caller = body.get("caller") or {}
    assert (got["caller_name"], got["caller_phone"]) == (caller.get("name"), caller.get("phone"))


@EXAMPLES
@given(ticket(), dispatch_event())
def test_ticket_lifecycle_event_is_applied_as_sent(
    pipeline: IngestPipeline, engine: sa.Engine, order: dict[str, Any], body: dict[str, Any]
) -> None:
    TicketLifecycleEvent.model_validate(body)
    order["ts"] = (NOW - timedelta(hours=1)).isoformat()
    stored_once(pipeline, message("hotline/tickets", order), "hotline_tickets")
    stored_once(pipeline, message(f"hotline/tickets/{order['ticket_id']}/events", body), "ticket_events")
    got = row(engine, schema.TicketEvent.__table__, event_id=body["event_id"])
    assert got["ticket_id"] == order["ticket_id"] and got["action"] == "dispatch"
    assert got["note"] == body.get("note")
    assert (
        row(engine, schema.HotlineTicket.__table__, ticket_id=order["ticket_id"])["department"]
        == body["department"].strip()  # the lifecycle trims typed text, as on the console
    )
    # Redelivered: recognised, not applied twice.
    again = pipeline.process([message(f"hotline/tickets/{order['ticket_id']}/events", body)])
    assert again.duplicates["ticket_events"] == 1 and again.stored["ticket_events"] == 0


# ---- invalid payloads: a clear rejection, never an exception --------------------------------------

wrong_values = st.one_of(
    st.just("12"), st.just([1, 2]), st.just({"a": 1}), st.just(None), st.just(True), st.just(2**70),
    st.just(-1e300), st.just(""), st.just("x" * 5000), st.just("\x00"), st.just("2026-13-45T99:00:00+08:00"),
)  # fmt: skip

SCHEMAS = {
    "sensor_meta": (sensor_meta().map(lambda c: (f"sensors/{c[0]}/meta", c[1]))),
    "observation": observation().map(lambda b: ("sensors/wx-1/obs", b)),
    "video_event": video_event().map(lambda b: ("video/cam-p/events", b)),
    "ticket": ticket().map(lambda b: ("hotline/tickets", b)),
    "ticket_event": dispatch_event().map(lambda b: ("hotline/tickets/T-none/events", b)),
}


@st.composite
def broken(draw: st.DrawFn, valid: st.SearchStrategy[tuple[str, dict[str, Any]]]) -> tuple[str, bytes]:
    topic, body = draw(valid)
    how = draw(st.sampled_from(["drop", "unknown", "wrong", "bytes", "truncate"]))
    if how == "drop":
        body.pop(draw(st.sampled_from(sorted(body))))
    elif how == "unknown":
        body[draw(text(10).filter(lambda k: k not in body))] = draw(json_values)
    elif how == "wrong":
        body[draw(st.sampled_from(sorted(body)))] = draw(wrong_values)
    elif how == "bytes":
        return topic, draw(st.binary(max_size=200))
    payload = json.dumps(body, ensure_ascii=False).encode()
    if how == "truncate":
        payload = payload[: draw(st.integers(0, len(payload) - 1))]
    return topic, payload


@pytest.mark.parametrize("kind", sorted(SCHEMAS))
def test_invalid_payloads_are_refused_with_a_reason_never_an_exception(
    pipeline: IngestPipeline, engine: sa.Engine, kind: str
) -> None:
    @EXAMPLES
    @given(broken(SCHEMAS[kind]))
    def check(case: tuple[str, bytes]) -> None:
        topic, payload = case
        result = pipeline.process([Inbound(f"{PREFIX}/{topic}", payload, NOW)])  # never raises
        handled = len(result.rejected) + sum(result.stored.values()) + sum(result.duplicates.values())
        assert handled == 1, "each message is stored, a duplicate, or refused"
        for rejection in result.rejected:
            assert rejection.reason in REASONS
            assert rejection.detail.strip()

    check()
