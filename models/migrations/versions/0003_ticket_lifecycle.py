"""12345 work-order lifecycle: version, deadlines, milestones, side paths, suggestions.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27

``hotline_tickets`` gains what :mod:`models.tickets` needs:

* ``version`` for compare-and-set transitions (two departments signing for the same order
  at once: exactly one wins), like ``alerts.version``;
* ``close_due`` beside the existing ``accept_due`` / ``reply_due``, and the time of each
  milestone (dispatched, accepted, replied, closed, followed up) for on-time rates;
* the follow-up ``satisfaction``; the 督办 flag; the 延期 request (state and date asked
  for); how often the order was returned (退单);
* the auto-dispatch suggestion, the district the order was dispatched to, and a likely
  repeat (重复件) found at registration with its distance. ``repeat_of`` (from 0001) stays
  the confirmed merge.

Only columns with plain defaults and indexes are added: SQLite adds them with ``ALTER
TABLE … ADD COLUMN`` and no table rebuild, so the rows of ``ticket_events`` that point at
``hotline_tickets`` need no setting aside (see 0002). No foreign key on
``likely_repeat_of``: a suggestion must not stop the earlier ticket from being archived.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)

#: (name, type, server default or None); the order is the order of the model's columns.
NEW_TICKET_COLUMNS = (
    ("version", sa.Integer(), "1"),
    ("close_due", TS, None),
    ("dispatched_at", TS, None),
    ("accepted_at", TS, None),
    ("replied_at", TS, None),
    ("closed_at", TS, None),
    ("followed_up_at", TS, None),
    ("satisfaction", sa.String(24), None),
    ("supervised", sa.Boolean(), "false"),
    ("supervised_at", TS, None),
    ("extension_state", sa.String(16), None),
    ("extension_until", TS, None),
    ("return_count", sa.Integer(), "0"),
    ("suggested_department", sa.String(64), None),
    ("handling_district_code", sa.String(12), None),
    ("likely_repeat_of", sa.String(32), None),
    ("likely_repeat_distance_m", sa.Float(), None),
)

#: The deadline sweep reads open orders by due time; repeat detection and statistics read
#: one category over a time range.
NEW_TICKET_INDEXES = (
    ("ix_hotline_tickets_accept_due", ["accept_due"]),
    ("ix_hotline_tickets_reply_due", ["reply_due"]),
    ("ix_hotline_tickets_close_due", ["close_due"]),
    ("ix_hotline_tickets_category_ts", ["category", "ts"]),
)


def upgrade() -> None:
    for name, type_, default in NEW_TICKET_COLUMNS:
        op.add_column(
            "hotline_tickets",
            sa.Column(
                name,
                type_,
                nullable=default is None,
                server_default=sa.text(default) if default is not None else None,
            ),
        )
    for index, columns in NEW_TICKET_INDEXES:
        op.create_index(index, "hotline_tickets", columns)
    # Orders stored before this step: their milestones are known only from the state.
    op.execute(
        "UPDATE hotline_tickets SET closed_at = updated_at "
        "WHERE state IN ('closed', 'followed_up') AND closed_at IS NULL"
    )


def downgrade() -> None:
    for index, _columns in reversed(NEW_TICKET_INDEXES):
        op.drop_index(index, table_name="hotline_tickets")
    # SQLite (3.35+) drops a column in place when no index or constraint names it, which
    # holds for every column here once the indexes above are gone.
    for name, _type, _default in reversed(NEW_TICKET_COLUMNS):
        op.drop_column("hotline_tickets", name)
