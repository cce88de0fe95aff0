"""The hostile corpus (hostile_corpus.py) through IngestPipeline.process, on SQLite and on
PostgreSQL + PostGIS: each refused message is one dead letter with its reason and a
counter; valid text, however nasty, is stored exactly as sent; the good readings around
it in the same batch are stored, and the pipeline keeps going."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import fakeredis
import pytest
import sqlalchemy as sa

from ingest.pipeline import DEAD_LETTER_KEEP_BYTES, Inbound, IngestPipeline
from models import schema
from models.db import create_engine_for, upgrade_database
from models.live import LiveStore
from tests.unit.ingest.hostile_corpus import CAMERA, CASES, OPEN_TICKET, HostileCase

NOW = datetime(2026, 7, 15, 2, 30, tzinfo=UTC)
PREFIX = "cityops/v1"
#: Tables a case can write to, children first (PostgreSQL's database is shared by the module).
TABLES = (
    "ticket_events",
    "hotline_tickets",
    "observation_hourly",
    "observations",
    "video_events",
    "devices",
    "dead_letters",
)


@pytest.fixture(scope="module")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hostile") / "template.sqlite3"
    upgrade_database(f"sqlite:///{path}")
    return path


@pytest.fixture(params=["sqlite", "postgis"])
def engine(request: pytest.FixtureRequest, sqlite_template: Path, tmp_path: Path) -> Iterator[sa.Engine]:
    if request.param == "sqlite":
        target = tmp_path / "cityops.sqlite3"
        target.write_bytes(sqlite_template.read_bytes())
        engine = create_engine_for(f"sqlite:///{target}")
    else:
        engine = create_engine_for(request.getfixturevalue("pg_url"))
        with engine.begin() as conn:
            for table in TABLES:
                conn.exec_driver_sql(f"DELETE FROM {table}")
    yield engine
    engine.dispose()


def inbound(topic: str, payload: bytes) -> Inbound:
    ts, past = NOW.isoformat(), (NOW - timedelta(minutes=10)).isoformat()
    return Inbound(
        f"{PREFIX}/{topic}", payload.replace(b"{ts}", ts.encode()).replace(b"{past}", past.encode()), NOW
    )


def reading(minutes: int) -> Inbound:
    ts = (NOW - timedelta(minutes=minutes)).isoformat()
    return inbound("sensors/air-1/obs", f'{{"ts": "{ts}", "metrics": {{"pm25": 20.5}}}}'.encode())


def prepared(engine: sa.Engine) -> tuple[IngestPipeline, LiveStore]:
    live = LiveStore(fakeredis.FakeRedis(decode_responses=True))
    pipeline = IngestPipeline(engine, live, prefix=PREFIX, clock=lambda: NOW)
    meta = b'{"type": "air_quality", "lon": 106.6333, "lat": 30.4560}'
    first = pipeline.process([inbound("sensors/air-1/meta", meta), inbound(*CAMERA), inbound(*OPEN_TICKET)])
    assert first.rejected == [] and first.stored["devices"] == 2 and first.stored["hotline_tickets"] == 1
    return pipeline, live


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_message_is_refused_or_stored_verbatim_and_the_batch_goes_on(
    engine: sa.Engine, case: HostileCase
) -> None:
    pipeline, live = prepared(engine)
    hostile = Inbound(
        f"{PREFIX}/{case.topic}",
        case.body(NOW.isoformat(), (NOW - timedelta(minutes=10)).isoformat()),
        NOW,
    )
    result = pipeline.process([reading(3), hostile, reading(2)])

    assert result.stored["observations"] == 2, "the good readings around it are stored"
    with engine.connect() as conn:
        letters = conn.execute(sa.select(schema.DeadLetter.__table__)).mappings().all()
    if case.reason is None:
        assert result.rejected == [] and letters == []
        assert case.stored is not None
        table = schema.Base.metadata.tables[case.stored.table]
        with engine.connect() as conn:
            value = conn.execute(
                sa.select(table.c[case.stored.column]).where(
                    table.c[case.stored.key] == case.stored.key_value
                )
            ).scalar_one()
        assert value == case.stored.expected, "stored exactly as sent"
    else:
        assert [r.reason for r in result.rejected] == [case.reason], [r.detail for r in result.rejected]
        (rejection,) = result.rejected
        assert rejection.detail.strip(), "every rejection says why"
        assert case.detail.lower() in rejection.detail.lower()
        assert [(d["reason"], d["payload_size"]) for d in letters] == [(case.reason, len(hostile.payload))]
        assert len(letters[0]["payload"]) == min(len(hostile.payload), DEAD_LETTER_KEEP_BYTES)
        assert live.redis.hget("cityops:rejected", case.reason) == "1"
    # And the pipeline keeps going: the next batch is stored as usual.
    assert pipeline.process([reading(1)]).stored["observations"] == 1
    with engine.connect() as conn:
        tables = ("observations", "devices")
        counts = [conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one() for t in tables]
    assert counts[0] == 3
    assert counts[1] >= 2


def test_a_whole_batch_of_hostile_messages_keeps_every_good_one(engine: sa.Engine) -> None:
    """All refused cases in one batch, interleaved with good readings."""
    pipeline, live = prepared(engine)
    refused = [c for c in CASES if c.reason is not None]
    batch: list[Inbound] = []
    for i, case in enumerate(refused):
        batch.append(reading(100 + i))
        batch.append(Inbound(f"{PREFIX}/{case.topic}", case.body(NOW.isoformat(), NOW.isoformat()), NOW))
    result = pipeline.process(batch)
    assert result.stored["observations"] == len(refused)
    assert sorted(r.reason for r in result.rejected) == sorted(c.reason for c in refused)  # type: ignore[misc]
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM dead_letters")).scalar_one() == len(refused)
    counters = live.redis.hgetall("cityops:rejected")
    assert sum(int(v) for v in counters.values()) == len(refused)


def test_the_fuzz_harness_takes_its_seed_corpus() -> None:
    """tools/fuzz_ingest.py's ingest target over its seeds (this corpus and valid messages):
    the harness keeps working as ingest changes, and every seed keeps its promise."""
    import importlib.util

    path = Path(__file__).resolve().parents[3] / "tools" / "fuzz_ingest.py"
    spec = importlib.util.spec_from_file_location("fuzz_ingest", path)
    assert spec is not None and spec.loader is not None
    harness = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(harness)
    one = harness.ingest_target()
    seeds = list(harness.ingest_seeds())
    assert len(seeds) > len(CASES) // 2
    for seed in seeds:
        one(seed)
    with pytest.raises(harness.FuzzFailure):  # and it does notice a broken promise
        harness.REASONS = frozenset()
        one(b"nowhere\n{}")
