"""Urban-management case lifecycle (GB/T 30428): version, milestones, deadlines, history.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28

``cases`` gains what :mod:`models.cases` needs:

* ``reported_at`` (信息收集) apart from ``filed_at`` (立案): a report need not be filed, and
  立案率 counts the difference, so ``filed_at`` becomes nullable. Rows stored before this
  step were filed when they were stored: ``reported_at`` takes ``filed_at``;
* ``version`` for compare-and-set transitions, like ``alerts`` and ``hotline_tickets``;
* ``case_type`` (the key of the case-type table, e.g. ``illegal_parking``), the milestone
  times (dispatched, handling, reported back, evaluated), ``close_due`` beside ``due_at``
  (which is the 处置 deadline), the counts behind 延期 / 回退 / 返工, the 综合评价 grade,
  and the evidence count and last sighting that video de-duplication reads.

``case_events`` is the history, like ``ticket_events``; its ``event_id`` (unique) is the
video event or outside event that produced the row, so a replayed batch adds nothing.

SQLite cannot relax NOT NULL in place, so ``cases`` is rebuilt in ``batch_alter_table``
(plain ALTERs on PostgreSQL). Nothing points at ``cases`` before this step, so the rebuild
needs nothing set aside (compare 0002); ``case_events`` is created afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)

#: (name, type, server default or None); the order is the order of the model's columns.
NEW_CASE_COLUMNS = (
    ("case_type", sa.String(32), None),
    ("reported_at", TS, None),
    ("dispatched_at", TS, None),
    ("handling_at", TS, None),
    ("reported_back_at", TS, None),
    ("evaluated_at", TS, None),
    ("close_due", TS, None),
    ("evaluation", sa.String(16), None),
    ("extension_count", sa.Integer(), "0"),
    ("return_count", sa.Integer(), "0"),
    ("rework_count", sa.Integer(), "0"),
    ("evidence_count", sa.Integer(), "1"),
    ("last_evidence_at", TS, None),
    ("version", sa.Integer(), "1"),
)

#: Statistics read reports by time; the deadline sweep reads open cases by due time; video
#: de-duplication reads one camera's cases of one type by their last sighting.
NEW_CASE_INDEXES = (
    ("ix_cases_reported_at", ["reported_at"]),
    ("ix_cases_due_at", ["due_at"]),
    ("ix_cases_close_due", ["close_due"]),
    ("ix_cases_source_ref_case_type_last_evidence_at", ["source_ref", "case_type", "last_evidence_at"]),
)


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.alter_column("filed_at", existing_type=TS, nullable=True)
        for name, type_, default in NEW_CASE_COLUMNS:
            batch.add_column(
                sa.Column(
                    name,
                    type_,
                    nullable=default is None,
                    server_default=sa.text(default) if default is not None else None,
                )
            )
    op.execute("UPDATE cases SET reported_at = filed_at WHERE reported_at IS NULL")
    op.execute("UPDATE cases SET last_evidence_at = reported_at WHERE last_evidence_at IS NULL")
    with op.batch_alter_table("cases") as batch:
        batch.alter_column("reported_at", existing_type=TS, nullable=False)
    for index, columns in NEW_CASE_INDEXES:
        op.create_index(index, "cases", columns)

    op.create_table(
        "case_events",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("case_id", sa.String(32), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=True),
        sa.Column("ts", TS, nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("from_state", sa.String(24), nullable=True),
        sa.Column("to_state", sa.String(24), nullable=True),
        sa.Column("actor", sa.String(64), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("payload", JSON, nullable=True),
        sa.Column("address", sa.String(64), nullable=True),
        sa.ForeignKeyConstraint(["case_id"], ["cases.case_id"], name="fk_case_events_case_id_cases"),
        sa.PrimaryKeyConstraint("id", name="pk_case_events"),
        sa.UniqueConstraint("event_id", name="uq_case_events_event_id"),
    )
    op.create_index("ix_case_events_case_id_ts", "case_events", ["case_id", "ts"])


def downgrade() -> None:
    op.drop_index("ix_case_events_case_id_ts", table_name="case_events")
    op.drop_table("case_events")
    for index, _columns in reversed(NEW_CASE_INDEXES):
        op.drop_index(index, table_name="cases")
    # Cases reported but never filed have no filing time; they keep their report time so
    # the old NOT NULL holds.
    op.execute("UPDATE cases SET filed_at = reported_at WHERE filed_at IS NULL")
    with op.batch_alter_table("cases") as batch:
        for name, _type, _default in reversed(NEW_CASE_COLUMNS):
            batch.drop_column(name)
        batch.alter_column("filed_at", existing_type=TS, nullable=False)
