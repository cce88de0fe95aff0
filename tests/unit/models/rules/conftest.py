"""Fixtures for rule tests: an in-process Redis and engines built from TOML snippets."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import fakeredis
import pytest
import redis

from models.rules import RuleEngine, parse_rules


@pytest.fixture
def redis_client(request: pytest.FixtureRequest) -> Iterator[redis.Redis]:
    """The embedded store by default; ``indirect`` parametrisation with ``"redis"`` gives the
    real Redis (database 15 of the test service, emptied before and after), where the engine
    runs its Lua scripts instead of pipelines."""
    if getattr(request, "param", "embedded") == "embedded":
        yield fakeredis.FakeRedis(decode_responses=True)
        return
    client = redis.Redis.from_url(request.getfixturevalue("redis_url"), decode_responses=True)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def make_engine(redis_client: fakeredis.FakeRedis) -> Callable[..., RuleEngine]:
    def make(*snippets: str) -> RuleEngine:
        return RuleEngine(parse_rules("version = 1\n" + "".join(snippets)), redis_client)

    return make
