"""Alembic migrations for the cityops schema (run through ``models.db.upgrade_database``)."""
