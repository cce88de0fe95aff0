"""The ingest pipeline on the embedded default: SQLite + the in-process Redis store."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import fakeredis
import pytest
import sqlalchemy as sa

from ingest.pipeline import Inbound, IngestPipeline
from models import schema
from models.db import create_engine_for, upgrade_database
from models.live import LiveStore

NOW = datetime(2026, 7, 15, 2, 30, tzinfo=UTC)
# Inside 广安区 (WGS-84), away from its boundary.
GUANGAN_LON, GUANGAN_LAT = 106.6333, 30.4560


@pytest.fixture(scope="module")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("db") / "cityops.sqlite3"
    url = f"sqlite:///{path}"
    upgrade_database(url)
    return url


@pytest.fixture
def engine(migrated_db: str, tmp_path: Path) -> sa.Engine:
    # A fresh copy per test keeps tests independent without re-running migrations.
    target = tmp_path / "cityops.sqlite3"
    target.write_bytes(Path(migrated_db.removeprefix("sqlite:///")).read_bytes())
    return create_engine_for(f"sqlite:///{target}")


@pytest.fixture
def live() -> LiveStore:
    return LiveStore(fakeredis.FakeRedis(decode_responses=True))


@pytest.fixture
def pipeline(engine: sa.Engine, live: LiveStore) -> IngestPipeline:
    return IngestPipeline(engine, live, clock=lambda: NOW)


def msg(topic: str, body: object, *, raw: bytes | None = None) -> Inbound:
    payload = raw if raw is not None else json.dumps(body, ensure_ascii=False).encode()
    return Inbound(f"cityops/v1/{topic}", payload, NOW)


def meta(device_id: str = "air-1", **extra: object) -> Inbound:
    body = {"type": "air_quality", "lon": GUANGAN_LON, "lat": GUANGAN_LAT, "name": "测试空气站"} | extra
    return msg(f"sensors/{device_id}/meta", body)


def obs(device_id: str = "air-1", minutes: int = 0, **metrics: float) -> Inbound:
    ts = (NOW - timedelta(minutes=minutes)).astimezone().isoformat()
    return msg(f"sensors/{device_id}/obs", {"ts": ts, "metrics": metrics or {"pm25": 35.0}})


def count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def test_meta_then_reading_is_located_stored_and_live(
    pipeline: IngestPipeline, engine: sa.Engine, live: LiveStore
) -> None:
    result = pipeline.process([meta(), obs(pm25=42.5, pm10=70)])
    assert result.rejected == []
    assert result.stored["observations"] == 1
    with engine.connect() as conn:
        row = conn.execute(sa.select(schema.Observation.__table__)).mappings().one()
        device = conn.execute(sa.select(schema.Device.__table__)).mappings().one()
    assert row["district_code"] == "511602" and device["district_code"] == "511602"
    assert row["grid_id"] and row["grid_id"] == device["grid_id"]
    assert row["metrics"] == {"pm25": 42.5, "pm10": 70.0}
    (state,) = live.devices()
    assert state.metrics["pm25"] == 42.5 and state.district_code == "511602"


def test_redelivered_batch_stores_nothing_twice(pipeline: IngestPipeline, engine: sa.Engine) -> None:
    batch = [meta(), obs(minutes=2), obs(minutes=1)]
    first = pipeline.process(batch)
    again = pipeline.process(batch)
    assert first.stored["observations"] == 2
    assert again.stored["observations"] == 0 and again.duplicates["observations"] == 2
    assert count(engine, schema.Observation.__table__) == 2
    with engine.connect() as conn:
        hourly = conn.execute(
            sa.select(schema.ObservationHourly.__table__.c.count).where(
                schema.ObservationHourly.__table__.c.metric == "pm25"
            )
        ).scalar_one()
    assert hourly == 2, "a duplicate must not be counted in the roll-up"


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (msg("sensors/air-1/obs", None, raw=b"\xff\xfe not utf8"), "invalid_utf8"),
        (msg("sensors/air-1/obs", None, raw=b"{not json"), "invalid_json"),
        (
            msg(
                "sensors/air-1/obs",
                None,
                raw=b'{"ts": "2026-07-15T10:00:00+08:00", "metrics": {"pm25": NaN}}',
            ),
            "invalid_json",
        ),
        (msg("sensors/air-1/obs", {"ts": "2026-07-15T10:00:00", "metrics": {"pm25": 1}}), "schema"),
        (msg("sensors/air-1/obs", {"ts": "2026-07-15T10:00:00+08:00", "metrics": {"pm25": "12"}}), "schema"),
        (
            msg("sensors/air-1/obs", {"ts": "2026-07-15T10:00:00+08:00", "metrics": {"pm25": -3}}),
            "negative_value",
        ),
        (
            msg("sensors/air-1/obs", {"ts": "2026-07-15T10:00:00+08:00", "metrics": {"laeq": 50}}),
            "unknown_metric",
        ),
        (msg("sensors/air-1/obs", {"ts": "2026-07-15T12:00:00+08:00", "metrics": {"pm25": 1}}), "ts_future"),
        (msg("sensors/air-1/obs", {"ts": "1970-01-01T00:00:00+00:00", "metrics": {"pm25": 1}}), "ts_past"),
        (
            msg("sensors/ghost/obs", {"ts": "2026-07-15T10:00:00+08:00", "metrics": {"pm25": 1}}),
            "unknown_device",
        ),
        (
            msg("sensors/air-2/meta", {"type": "air_quality", "lon": GUANGAN_LAT, "lat": GUANGAN_LON}),
            "out_of_extent",
        ),
        (msg("sensors/air-2/meta", {"type": "toaster", "lon": GUANGAN_LON, "lat": GUANGAN_LAT}), "schema"),
        (msg("sensors/a+b/obs", {}), "unknown_topic"),
        (msg("sensors/air-1/obs", None, raw=b"{" + b" " * 70_000 + b"}"), "too_large"),
    ],
)
def test_bad_messages_become_dead_letters_without_losing_good_ones(
    pipeline: IngestPipeline, engine: sa.Engine, live: LiveStore, message: Inbound, reason: str
) -> None:
    result = pipeline.process([meta(), message, obs(pm25=20.0)])
    assert [r.reason for r in result.rejected] == [reason]
    assert result.stored["observations"] == 1, "the good reading in the same batch is stored"
    with engine.connect() as conn:
        letters = conn.execute(sa.select(schema.DeadLetter.__table__)).mappings().all()
    assert [(d["reason"], d["topic"]) for d in letters] == [(reason, message.topic)]
    assert letters[0]["payload_size"] == len(message.payload)
    assert live.redis.hget("cityops:rejected", reason) == "1"


def test_swapped_coordinates_are_named_in_the_reason(pipeline: IngestPipeline) -> None:
    result = pipeline.process(
        [msg("sensors/x/meta", {"type": "noise", "lon": GUANGAN_LAT, "lat": GUANGAN_LON})]
    )
    assert "swapped" in result.rejected[0].detail


def test_gcj02_device_is_converted_before_it_is_stored(pipeline: IngestPipeline, engine: sa.Engine) -> None:
    from geo.crs import wgs84_to_gcj02

    gcj_lon, gcj_lat = wgs84_to_gcj02(GUANGAN_LON, GUANGAN_LAT)
    pipeline.process([meta("air-g", lon=float(gcj_lon), lat=float(gcj_lat), crs="gcj02")])
    with engine.connect() as conn:
        lon, lat = conn.execute(sa.select(schema.Device.__table__.c.lon, schema.Device.__table__.c.lat)).one()
    assert abs(lon - GUANGAN_LON) < 1e-6 and abs(lat - GUANGAN_LAT) < 1e-6


def test_video_event_and_ticket_are_stored_once_and_located(
    pipeline: IngestPipeline, engine: sa.Engine, live: LiveStore
) -> None:
    camera = msg("video/cam-1/meta", {"type": "camera", "lon": GUANGAN_LON, "lat": GUANGAN_LAT})
    event = msg(
        "video/cam-1/events",
        {
            "event_id": "ev-1",
            "ts": "2026-07-15T10:29:00+08:00",
            "type": "illegal_parking",
            "confidence": 0.91,
        },
    )
    ticket = msg(
        "hotline/tickets",
        {
            "ticket_id": "12345-1",
            "ts": "2026-07-15T10:29:30+08:00",
            "channel": "phone",
            "category": "噪声扰民",
            "title": "夜间施工",
            "content": "工地夜间施工噪声大",
            "lon": GUANGAN_LON,
            "lat": GUANGAN_LAT,
            "urgency": "urgent",
            "caller": {"name": "张先生", "phone": "13812345678"},
        },
    )
    first = pipeline.process([camera, event, ticket])
    second = pipeline.process([event, ticket])
    assert (first.stored["video_events"], first.stored["hotline_tickets"]) == (1, 1)
    assert (second.duplicates["video_events"], second.duplicates["hotline_tickets"]) == (1, 1)
    with engine.connect() as conn:
        t = conn.execute(sa.select(schema.HotlineTicket.__table__)).mappings().one()
        v = conn.execute(sa.select(schema.VideoEvent.__table__)).mappings().one()
    assert t["district_code"] == "511602" and t["caller_phone"] == "13812345678"
    assert v["district_code"] == "511602" and v["lon"] == GUANGAN_LON, (
        "an event without a point takes the camera's"
    )
    assert len(live.recent("video")) == 1 and len(live.recent("tickets")) == 1
    assert "caller_phone" not in live.recent("tickets")[0], "personal data stays out of Redis"
    assert [s.device_id for s in live.devices() if s.online()] == ["cam-1"], "its event says it is there"


def test_out_of_order_reading_does_not_move_live_state_backwards(
    pipeline: IngestPipeline, live: LiveStore
) -> None:
    pipeline.process([meta(), obs(minutes=1, pm25=50.0)])
    pipeline.process([obs(minutes=5, pm25=10.0)])
    (state,) = live.devices()
    assert state.metrics["pm25"] == 50.0


def test_a_failing_rule_hook_does_not_lose_the_batch(engine: sa.Engine, live: LiveStore) -> None:
    seen: list[int] = []

    def broken(_accepted: dict) -> None:
        raise RuntimeError("rule bug")

    def counting(accepted: dict) -> None:
        seen.append(len(accepted["observations"]))

    p = IngestPipeline(engine, live, clock=lambda: NOW, hooks=[broken, counting])
    p.process([meta(), obs()])
    assert seen == [1]
    assert count(engine, schema.Observation.__table__) == 1


def test_readings_carry_their_national_indices_into_the_live_state_and_the_rules(
    engine: sa.Engine, live: LiveStore
) -> None:
    seen: list[dict] = []
    p = IngestPipeline(engine, live, clock=lambda: NOW, hooks=[seen.append])
    noise_meta = msg(
        "sensors/n-1/meta", {"type": "noise", "lon": GUANGAN_LON, "lat": GUANGAN_LAT, "props": {"zone": "1"}}
    )
    # 23:30 in Beijing: night, zone 1 limit 45 dB(A)
    night = msg("sensors/n-1/obs", {"ts": "2026-07-14T23:30:00+08:00", "metrics": {"laeq": 51.5}})
    p.process([meta(), obs(pm25=160.0, pm10=80.0), noise_meta, night])
    states = {s.device_id: s for s in live.devices()}
    assert states["air-1"].derived["aqi"] == 210 and states["air-1"].derived["category"] == "重度污染"
    assert states["air-1"].derived["primary"] == ["pm25"]
    assert states["n-1"].derived == {"limit": 45, "exceeded": True, "excess_db": 6.5, "period": "night"}
    (batch,) = seen
    by_device = {r["device_id"]: r for r in batch["observations"]}
    assert by_device["n-1"]["device_type"] == "noise" and by_device["n-1"]["props"] == {"zone": "1"}
    assert by_device["air-1"]["derived"]["level"] == 5


def test_a_redelivery_in_the_same_batch_counts_as_one_duplicate(pipeline: IngestPipeline) -> None:
    camera = msg("video/cam-1/meta", {"type": "camera", "lon": GUANGAN_LON, "lat": GUANGAN_LAT})
    event = msg(
        "video/cam-1/events",
        {"event_id": "ev-9", "ts": "2026-07-15T10:29:00+08:00", "type": "fallen_tree", "confidence": 0.7},
    )
    reading = obs(pm25=12.0)
    result = pipeline.process([meta(), camera, reading, reading, event, event])
    assert (result.stored["observations"], result.duplicates["observations"]) == (1, 1)
    assert (result.stored["video_events"], result.duplicates["video_events"]) == (1, 1)


def test_a_batch_looks_up_the_devices_it_does_not_know_in_one_query(
    engine: sa.Engine, live: LiveStore
) -> None:
    IngestPipeline(engine, live, clock=lambda: NOW).process([meta(f"air-{i}") for i in range(30)])
    # A worker that starts now knows none of the thirty devices.
    fresh = IngestPipeline(engine, live, clock=lambda: NOW)
    lookups: list[str] = []

    def count_device_selects(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM devices" in statement:
            lookups.append(statement)

    sa.event.listen(engine, "before_cursor_execute", count_device_selects)
    try:
        result = fresh.process([obs(f"air-{i}", minutes=1) for i in range(30)] + [obs("nobody", minutes=1)])
        assert len(lookups) == 1
        assert result.stored["observations"] == 30
        assert result.rejected_by_reason == {"unknown_device": 1}
        # Known now: the next batch asks nothing, except again for the unknown device.
        lookups.clear()
        fresh.process([obs(f"air-{i}", minutes=2) for i in range(30)])
        assert lookups == []
        fresh.process([obs("nobody", minutes=2)])
        assert len(lookups) == 1
    finally:
        sa.event.remove(engine, "before_cursor_execute", count_device_selects)


def test_a_reading_prepared_before_its_device_was_stored_is_stored_after_it(pipeline: IngestPipeline) -> None:
    # The worker prepares batch N+1 while batch N (with the device's meta) is written.
    prepared = pipeline.prepare([obs("air-new", minutes=1)])
    assert prepared.observation_rows == []  # not known yet: left for the transaction
    pipeline.store([meta("air-new")])
    stored = pipeline.store_prepared(prepared)
    assert stored.result.rejected == []
    assert stored.result.stored["observations"] == 1


def test_a_prepared_batch_stored_again_after_a_failure_counts_once(
    pipeline: IngestPipeline, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ingest.pipeline as pipeline_module

    pipeline.process([meta("air-1")])
    prepared = pipeline.prepare(
        [obs("air-1", minutes=1), obs("air-1", minutes=2), msg("sensors/air-1/obs", 7)]
    )
    assert len(prepared.observation_rows) == 2  # a known device: checked and derived already
    real = pipeline_module.record_observations
    calls = 0

    def failing_once(conn, rows):
        nonlocal calls
        calls += 1
        if calls == 1:
            raise sa.exc.OperationalError("INSERT", {}, Exception("server closed the connection"))
        return real(conn, rows)

    monkeypatch.setattr(pipeline_module, "record_observations", failing_once)
    with pytest.raises(sa.exc.OperationalError):
        pipeline.store_prepared(prepared)
    stored = pipeline.store_prepared(prepared)
    assert stored.result.stored["observations"] == 2
    assert stored.result.rejected_by_reason == {"invalid_json": 1}
    assert count(engine, schema.Observation.__table__) == 2
    assert count(engine, schema.DeadLetter.__table__) == 1
