"""A message the database refuses is isolated: the rest of its batch is stored, it becomes
a dead letter, and the worker goes on (instead of retrying the same batch for ever)."""

from __future__ import annotations

from collections.abc import Sequence

import fakeredis
import pytest
import sqlalchemy as sa

from ingest.pipeline import Inbound, IngestPipeline, StoredBatch
from models import schema
from models.live import LiveStore
from tests.unit.ingest.test_pipeline import NOW, count, meta, migrated_db, obs  # noqa: F401 - fixture

POISON = "air-poison"


class RefusingPipeline(IngestPipeline):
    """Stands in for a database that refuses one device's rows (as PostgreSQL refuses a
    value too long for its column): any batch holding them fails as a whole."""

    batches: list[int]

    def store(self, messages: Sequence[Inbound]) -> StoredBatch:
        self.batches.append(len(messages))
        if any(f"/{POISON}/obs" in m.topic for m in messages):
            raise sa.exc.DataError("INSERT …", {}, Exception("value too long for type character varying(32)"))
        return super().store(messages)


@pytest.fixture
def pipeline(migrated_db: str, tmp_path) -> RefusingPipeline:  # noqa: F811 - the imported fixture
    from pathlib import Path

    from models.db import create_engine_for

    target = tmp_path / "cityops.sqlite3"
    target.write_bytes(Path(migrated_db.removeprefix("sqlite:///")).read_bytes())
    engine = create_engine_for(f"sqlite:///{target}")
    refusing = RefusingPipeline(
        engine, LiveStore(fakeredis.FakeRedis(decode_responses=True)), clock=lambda: NOW
    )
    refusing.batches = []
    return refusing


def test_the_refused_message_becomes_a_dead_letter_and_the_rest_is_stored(pipeline: RefusingPipeline) -> None:
    pipeline.process([meta("air-1"), meta(POISON)])
    pipeline.batches.clear()
    batch = [obs("air-1", minutes=m, pm25=10.0 + m) for m in range(7)]
    batch.insert(5, obs(POISON, pm25=99.0))
    result = pipeline.process(batch)
    assert result.stored["observations"] == 7
    assert [(r.reason, r.topic) for r in result.rejected] == [
        ("storage_refused", f"cityops/v1/sensors/{POISON}/obs")
    ]
    assert "character varying(32)" in result.rejected[0].detail
    assert count(pipeline.engine, schema.Observation.__table__) == 7
    with pipeline.engine.connect() as conn:
        letters = conn.execute(sa.select(schema.DeadLetter.__table__)).mappings().all()
    assert [(d["reason"], d["payload_size"]) for d in letters] == [("storage_refused", len(batch[5].payload))]
    # Halving found it in a few tries, not one store per message.
    assert pipeline.batches[0] == 8 and len(pipeline.batches) <= 2 * 3 + 1
    assert pipeline.live.redis.hget("cityops:rejected", "storage_refused") == "1"


def test_a_batch_the_database_takes_is_stored_in_one_go(pipeline: RefusingPipeline) -> None:
    pipeline.process([meta("air-1")])
    pipeline.batches.clear()
    result = pipeline.process([obs("air-1", minutes=m) for m in range(5)])
    assert result.stored["observations"] == 5 and result.rejected == []
    assert pipeline.batches == [5]


def test_a_database_that_is_down_is_not_mistaken_for_bad_data(pipeline: RefusingPipeline) -> None:
    """Lost connections are retried whole by the worker: nothing is dead-lettered."""

    def down(_messages: Sequence[Inbound]) -> StoredBatch:
        raise sa.exc.OperationalError("INSERT …", {}, Exception("connection refused"))

    pipeline.store = down  # type: ignore[method-assign]
    with pytest.raises(sa.exc.OperationalError):
        pipeline.store_isolating([obs("air-1")])
