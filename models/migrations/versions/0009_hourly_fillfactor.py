"""Room on every page of the hourly roll-up for the updates of its current hour.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26

Each reading updates its device's rows of the current hour in ``observation_hourly``.
With full pages (PostgreSQL's default fillfactor 100) the new version of such a row
rarely fits on its page, so four of five updates moved the row and inserted into all
four of the table's indexes. At fillfactor 70 nearly every update is HOT (same page, no
index touched): the table stays about a tenth of the size under a steady feed and the
database's work per reading falls (figures in bench/README.md, Ingest). Pages written
before the change keep their fill until rewritten; new hours use the new setting.
SQLite has no such setting.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The value of models.schema.HOURLY_FILLFACTOR when this revision was written.
FILLFACTOR = 70


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE observation_hourly SET (fillfactor = {FILLFACTOR})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE observation_hourly RESET (fillfactor)")
