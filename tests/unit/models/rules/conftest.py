"""Fixtures for rule tests: an in-process Redis and engines built from TOML snippets."""

from __future__ import annotations

from collections.abc import Callable

import fakeredis
import pytest

from models.rules import RuleEngine, parse_rules


@pytest.fixture
def redis_client() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(decode_responses=True)


@pytest.fixture
def make_engine(redis_client: fakeredis.FakeRedis) -> Callable[..., RuleEngine]:
    def make(*snippets: str) -> RuleEngine:
        return RuleEngine(parse_rules("version = 1\n" + "".join(snippets)), redis_client)

    return make
