"""Indexes the open-case and today's-intake counts read without touching the table.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26

Every refresh of the overview, the wall and the district pages counts the open cases per
district and today's reported and filed cases. At city volume (tens of thousands of open
cases, about 20,000 reported a day) both read every matching row of the wide ``cases``
table. ``(state, district_code)`` replaces the index on ``state`` alone, and the index on
``reported_at`` carries ``filed_at`` and ``district_code`` (PostgreSQL's ``INCLUDE``), so
PostgreSQL answers both counts from the indexes (figures in bench/README.md, Web).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_cases_state", table_name="cases")
    op.create_index("ix_cases_state_district_code", "cases", ["state", "district_code"])
    op.drop_index("ix_cases_reported_at", table_name="cases")
    op.create_index(
        "ix_cases_reported_at", "cases", ["reported_at"], postgresql_include=["filed_at", "district_code"]
    )


def downgrade() -> None:
    op.drop_index("ix_cases_reported_at", table_name="cases")
    op.create_index("ix_cases_reported_at", "cases", ["reported_at"])
    op.drop_index("ix_cases_state_district_code", table_name="cases")
    op.create_index("ix_cases_state", "cases", ["state"])
