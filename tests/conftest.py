"""Shared fixtures: real services, controllable time and randomness.

Real-service tests talk to the PostgreSQL/PostGIS, Redis and Mosquitto that run on
127.0.0.1. When one is missing they are skipped with the reason, except under
``CI=true`` where a missing service is a failure: CI must never pass by skipping.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
import sqlalchemy as sa

TEST_DATABASE_URL = os.environ.get(
    "CITYOPS_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/cityops_test"
)
TEST_REDIS_URL = os.environ.get("CITYOPS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
TEST_MQTT_URL = os.environ.get("CITYOPS_TEST_MQTT_URL", "mqtt://127.0.0.1:1883")

# The tests' own variables are not cityops settings: keep them out of load_settings().
for _name in ("CITYOPS_TEST_DATABASE_URL", "CITYOPS_TEST_REDIS_URL", "CITYOPS_TEST_MQTT_URL"):
    os.environ.pop(_name, None)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def service_missing(what: str, reason: str) -> None:
    """Fail under CI, skip visibly elsewhere."""
    message = f"{what} is not available: {reason}"
    if in_ci():
        pytest.fail(message + " (CI=true: real-service tests must run)", pytrace=False)
    pytest.skip(message)


def _tcp_open(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), 1.0):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def postgis_url() -> str:
    """URL of a PostgreSQL database with PostGIS, prepared by ``make test``."""
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(TEST_DATABASE_URL)
        with engine.connect() as conn:
            version = conn.execute(sa.text("SELECT postgis_full_version()")).scalar()
        engine.dispose()
    except Exception as exc:
        service_missing("PostgreSQL with PostGIS", f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
    assert version
    return TEST_DATABASE_URL


@pytest.fixture(scope="session")
def redis_url() -> str:
    import redis

    try:
        redis.Redis.from_url(TEST_REDIS_URL, socket_timeout=2).ping()
    except Exception as exc:
        service_missing("Redis", f"{type(exc).__name__}: {exc}")
    return TEST_REDIS_URL


@pytest.fixture(scope="session")
def mosquitto_url() -> str:
    if not _tcp_open(TEST_MQTT_URL, 1883):
        service_missing("Mosquitto", f"nothing listens at {TEST_MQTT_URL}")
    return TEST_MQTT_URL


@pytest.fixture(scope="module")
def pg_url(postgis_url: str) -> Iterator[str]:
    import sqlalchemy as sa

    from models import db

    """A URL to a database of its own (or a schema, where CREATE DATABASE is refused),
    migrated to head and dropped afterwards: the first-install path is what gets tested."""
    name = "cityops_t" + uuid.uuid4().hex[:10]
    admin = sa.create_engine(postgis_url, isolation_level="AUTOCOMMIT")
    base = sa.engine.make_url(postgis_url)
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        url = base.set(database=name).render_as_string(hide_password=False)
        dropping = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
    except sa.exc.ProgrammingError:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{name}"')
        options = quote(f"-csearch_path={name},public")
        url = base.render_as_string(hide_password=False) + f"?options={options}"
        dropping = f'DROP SCHEMA IF EXISTS "{name}" CASCADE'
    try:
        started = time.perf_counter()
        db.upgrade_database(url)
        print(f"upgrade_database on PostGIS: {time.perf_counter() - started:.2f} s")
        yield url
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(dropping)
        admin.dispose()


@pytest.fixture(scope="module")
def pg_engine(pg_url: str) -> Iterator[sa.Engine]:
    """An engine on the module's own PostGIS database. Modules that run on PostGIS alone
    name it ``engine`` for their tests; the per-test ``engine`` below is SQLite."""
    from models import db

    engine = db.create_engine_for(pg_url)
    yield engine
    engine.dispose()


@pytest.fixture
def fixed_now() -> datetime:
    """A fixed, timezone-aware 'now' for tests that depend on the clock."""
    return datetime(2026, 7, 15, 10, 30, tzinfo=UTC)


@pytest.fixture
def rng() -> random.Random:
    return random.Random(20261125)


@pytest.fixture
def unique_name() -> Iterator[str]:
    """A name no other test (or earlier run) uses: for topics, schemas, keys."""
    yield "t" + uuid.uuid4().hex[:12]


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded database migrated to head, once per run: tests copy it."""
    from models import db

    path = tmp_path_factory.mktemp("sqlite-template") / "template.sqlite3"
    db.upgrade_database(f"sqlite:///{path}")
    return path


@pytest.fixture
def engine(tmp_path: Path, sqlite_template: Path) -> Iterator[sa.Engine]:
    """A fresh embedded (SQLite) database of this test's own, at the head migration.
    Modules that need PostgreSQL or seeded data define their own ``engine``."""
    from models import db

    path = tmp_path / "cityops.sqlite3"
    shutil.copyfile(sqlite_template, path)
    engine = db.create_engine_for(f"sqlite:///{path}")
    yield engine
    engine.dispose()
