"""Indexes on the time of 12345 orders and video sightings.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26

The 12345 page (newest orders, today's volumes, rates and trend) and the urban page
(sightings of the last 24 h per grid cell and per type) select by time alone; the
existing indexes all lead with another column (district, category, camera, type), so
those reads scanned the whole table — fine for a demo's day, not for a year of a city's
orders and sightings.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_hotline_tickets_ts", "hotline_tickets", ["ts"])
    op.create_index("ix_video_events_ts", "video_events", ["ts"])


def downgrade() -> None:
    op.drop_index("ix_video_events_ts", table_name="video_events")
    op.drop_index("ix_hotline_tickets_ts", table_name="hotline_tickets")
