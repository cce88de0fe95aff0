"""A bare Flask server with the API blueprints over a migrated SQLite file and an
in-process Redis: the endpoints without the Dash pages."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import fakeredis
import flask
import pytest
import sqlalchemy as sa

from dashboards.api import register_api
from dashboards.context import PageContext
from models.config import load_settings
from models.live import LiveStore

API_KEY = "test-key-0123456789abcdef"


@dataclass
class Api:
    client: flask.testing.FlaskClient
    context: PageContext
    server: flask.Flask


@pytest.fixture
def live() -> LiveStore:
    return LiveStore(fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True))


@pytest.fixture
def api(tmp_path: Path, engine: sa.Engine, live: LiveStore) -> Api:
    settings = load_settings({"CITYOPS_OPEN311_API_KEYS": API_KEY, "CITYOPS_DATA_DIR": str(tmp_path)})
    context = PageContext(settings=settings, live=live, engine=engine)
    server = flask.Flask("cityops-api-test")
    register_api(server, context)
    return Api(server.test_client(), context, server)
