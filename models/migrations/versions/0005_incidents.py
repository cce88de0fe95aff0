"""Emergency incident lifecycle: source, milestones, affected area, timeline, dispatched
resources, links and public warning drafts.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29

``incidents`` gains what :mod:`models.incidents` needs:

* ``level`` becomes nullable: an incident is reported (接报) before a response level is
  decided (响应);
* ``source`` (manual / alert / correlation) and ``source_alert_id``, unique, so one alert
  (one correlation episode) opens at most one incident even when two workers see it;
* the milestone times of 响应, 调度, 处置 and 评估, the 评估 conclusion (``assessment``),
  ``version`` for compare-and-set transitions like the other workflow tables;
* ``area`` (a polygon: the geodesic circle of ``radius_m`` or a drawn polygon) and
  ``area_kind``.

New tables: ``incident_events`` (the timeline), ``incident_resources`` (each dispatched
resource with its own status), ``incident_links`` (alerts, tickets and cases linked to an
incident, each to one incident) and ``incident_warnings`` (public warning drafts).

SQLite cannot relax NOT NULL or add a CHECK in place, so ``incidents`` is rebuilt in
``batch_alter_table`` (plain ALTERs on PostgreSQL). Nothing points at ``incidents`` before
this step; the new tables that do are created afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)

SOURCE_CHECK = "source IN ('manual', 'alert', 'correlation')"
LINK_KIND_CHECK = "kind IN ('alert', 'ticket', 'case')"
COLOUR_CHECK = "colour IN ('red', 'orange', 'yellow', 'blue')"


def _is_pg() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def _polygon() -> sa.types.TypeEngine:
    if _is_pg():
        from geoalchemy2 import Geometry

        return Geometry(geometry_type="POLYGON", srid=4326, spatial_index=False)
    return sa.LargeBinary()


def _new_incident_columns() -> tuple[tuple[str, sa.types.TypeEngine, str | None], ...]:
    """(name, type, server default or None), in the order of the model's columns."""
    return (
        ("source", sa.String(16), "'manual'"),
        ("source_alert_id", BIGID, None),
        ("area", _polygon(), None),
        ("area_kind", sa.String(8), None),
        ("responding_at", TS, None),
        ("dispatching_at", TS, None),
        ("handling_at", TS, None),
        ("assessing_at", TS, None),
        ("assessment", sa.Text(), None),
        ("version", sa.Integer(), "1"),
    )


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.alter_column("level", existing_type=sa.String(8), nullable=True)
        for name, type_, default in _new_incident_columns():
            batch.add_column(
                sa.Column(
                    name,
                    type_,
                    nullable=default is None,
                    server_default=sa.text(default) if default is not None else None,
                )
            )
        batch.create_check_constraint("ck_incidents_source_valid", SOURCE_CHECK)
    op.create_index("uq_incidents_source_alert_id", "incidents", ["source_alert_id"], unique=True)
    if _is_pg():
        op.create_index("ix_incidents_area_gist", "incidents", ["area"], postgresql_using="gist")

    op.create_table(
        "incident_events",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("incident_id", sa.String(32), nullable=False),
        sa.Column("ts", TS, nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("from_state", sa.String(24), nullable=True),
        sa.Column("to_state", sa.String(24), nullable=True),
        sa.Column("actor", sa.String(64), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("payload", JSON, nullable=True),
        sa.Column("address", sa.String(64), nullable=True),
        sa.ForeignKeyConstraint(
            ["incident_id"], ["incidents.incident_id"], name="fk_incident_events_incident_id_incidents"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_incident_events"),
    )
    op.create_index("ix_incident_events_incident_id_ts", "incident_events", ["incident_id", "ts"])

    op.create_table(
        "incident_resources",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("incident_id", sa.String(32), nullable=False),
        sa.Column("resource_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("distance_m", sa.Float(), nullable=True),
        sa.Column("eta_s", sa.Float(), nullable=True),
        sa.Column("dispatched_by", sa.String(64), nullable=True),
        sa.Column("dispatched_at", TS, nullable=False),
        sa.Column("arrived_at", TS, nullable=True),
        sa.Column("released_at", TS, nullable=True),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"], ["incidents.incident_id"], name="fk_incident_resources_incident_id_incidents"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_incident_resources"),
    )
    op.create_index("ix_incident_resources_incident_id", "incident_resources", ["incident_id"])
    op.create_index(
        "uq_incident_resources_incident_id_resource_id_active",
        "incident_resources",
        ["incident_id", "resource_id"],
        unique=True,
        postgresql_where=sa.text("released_at IS NULL"),
        sqlite_where=sa.text("released_at IS NULL"),
    )

    op.create_table(
        "incident_links",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("incident_id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("ref_id", sa.String(64), nullable=False),
        sa.Column("linked_at", TS, nullable=False),
        sa.Column("linked_by", sa.String(64), nullable=True),
        sa.CheckConstraint(LINK_KIND_CHECK, name="ck_incident_links_kind_valid"),
        sa.ForeignKeyConstraint(
            ["incident_id"], ["incidents.incident_id"], name="fk_incident_links_incident_id_incidents"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_incident_links"),
    )
    op.create_index("uq_incident_links_kind_ref_id", "incident_links", ["kind", "ref_id"], unique=True)
    op.create_index("ix_incident_links_incident_id", "incident_links", ["incident_id"])

    op.create_table(
        "incident_warnings",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("incident_id", sa.String(32), nullable=False),
        sa.Column("drafted_at", TS, nullable=False),
        sa.Column("drafted_by", sa.String(64), nullable=False),
        sa.Column("colour", sa.String(8), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("urgency", sa.String(16), nullable=False),
        sa.Column("certainty", sa.String(16), nullable=False),
        sa.Column("draft", JSON, nullable=False),
        sa.CheckConstraint(COLOUR_CHECK, name="ck_incident_warnings_colour_valid"),
        sa.ForeignKeyConstraint(
            ["incident_id"], ["incidents.incident_id"], name="fk_incident_warnings_incident_id_incidents"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_incident_warnings"),
    )
    op.create_index(
        "ix_incident_warnings_incident_id_drafted_at", "incident_warnings", ["incident_id", "drafted_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_incident_warnings_incident_id_drafted_at", table_name="incident_warnings")
    op.drop_table("incident_warnings")
    op.drop_index("ix_incident_links_incident_id", table_name="incident_links")
    op.drop_index("uq_incident_links_kind_ref_id", table_name="incident_links")
    op.drop_table("incident_links")
    op.drop_index("uq_incident_resources_incident_id_resource_id_active", table_name="incident_resources")
    op.drop_index("ix_incident_resources_incident_id", table_name="incident_resources")
    op.drop_table("incident_resources")
    op.drop_index("ix_incident_events_incident_id_ts", table_name="incident_events")
    op.drop_table("incident_events")
    if _is_pg():
        op.drop_index("ix_incidents_area_gist", table_name="incidents")
    op.drop_index("uq_incidents_source_alert_id", table_name="incidents")
    # Incidents reported but never given a level keep the old NOT NULL with the lowest one.
    op.execute("UPDATE incidents SET level = 'IV' WHERE level IS NULL")
    with op.batch_alter_table("incidents") as batch:
        batch.drop_constraint("ck_incidents_source_valid", type_="check")
        for name, _type, _default in reversed(_new_incident_columns()):
            batch.drop_column(name)
        batch.alter_column("level", existing_type=sa.String(8), nullable=False)
