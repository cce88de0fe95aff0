"""A bare Flask server with the API blueprints over a migrated SQLite file and an
in-process Redis: the endpoints without the Dash pages."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import fakeredis
import flask
import pytest
import sqlalchemy as sa

from dashboards.api import register_api
from dashboards.context import PageContext
from models import db
from models.config import load_settings
from models.live import LiveStore

API_KEY = "test-key-0123456789abcdef"


@dataclass
class Api:
    client: flask.testing.FlaskClient
    context: PageContext
    server: flask.Flask


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("api") / "template.sqlite3"
    db.upgrade_database(f"sqlite:///{path}")
    return path


@pytest.fixture
def engine(tmp_path: Path, migrated_template: Path) -> Iterator[sa.Engine]:
    path = tmp_path / "cityops.sqlite3"
    shutil.copyfile(migrated_template, path)
    engine = db.create_engine_for(f"sqlite:///{path}")
    yield engine
    engine.dispose()


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
