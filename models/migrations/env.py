"""Alembic environment for cityops.

The database comes from, in order: a connection in ``config.attributes["connection"]``, a URL
in ``config.attributes["url"]``, or ``CITYOPS_DATABASE_URL`` through ``models.config`` (so the
embedded SQLite file when it is unset). The whole upgrade runs in one transaction, on SQLite
too, so a failed step leaves nothing half-built.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection, make_url

from models.schema import include_in_comparison, metadata

config = context.config
target_metadata = metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_object=include_in_comparison(connection.dialect.name),
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        transactional_ddl=True,
        compare_type=True,
    )


def run_migrations_offline() -> None:
    url = config.attributes.get("url") or _settings_url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        include_object=include_in_comparison(make_url(url).get_backend_name()),
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return

    from models.db import create_engine_for

    engine = create_engine_for(config.attributes.get("url") or _settings_url())
    try:
        with engine.connect() as conn:
            _configure(conn)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


def _settings_url() -> str:
    from models.config import load_settings

    return load_settings().effective_database_url


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
