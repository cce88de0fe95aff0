"""The live alert queue's version, per-district queues and per-process reads on a real Redis.

The scenarios of tests/unit/models/test_live_alerts.py, run against Redis itself (MULTI,
WATCH and SCAN as Redis does them, not as the embedded store imitates them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import redis
import sqlalchemy as sa

from models.live import LiveStore
from tests.unit.models.test_live_alerts import (
    SCENARIOS,
    only_changed_alerts_are_read_whole,
    unchanged_queue_is_not_read_again,
)

pytestmark = pytest.mark.real_services


@pytest.fixture
def live(redis_url: str) -> Iterator[LiveStore]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    store = LiveStore(client)
    assert store._scripts, "a real Redis"
    try:
        yield store
    finally:
        client.flushdb()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_scenario(scenario: Callable[..., None], engine: sa.Engine, live: LiveStore) -> None:
    scenario(engine, live)


def test_unchanged_queue_is_not_read_again(
    engine: sa.Engine, live: LiveStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    unchanged_queue_is_not_read_again(engine, live, monkeypatch)


def test_only_changed_alerts_are_read_whole(
    engine: sa.Engine, live: LiveStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    only_changed_alerts_are_read_whole(engine, live, monkeypatch)
