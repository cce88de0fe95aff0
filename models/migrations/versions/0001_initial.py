"""Initial schema: geography, devices and observations, events, workflows, users, audit.

Revision ID: 0001
Revises:
Create Date: 2026-11-25

Written out by hand rather than generated, and self-contained (no import of
``models.schema``): a migration is a record of what the schema was, so later changes to the
models must not change what this step does. The schema test compares the result with the
models on SQLite and on PostGIS.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)

GEOMETRY_TABLES = (
    "districts",
    "grid_cells",
    "devices",
    "video_events",
    "hotline_tickets",
    "alerts",
    "cases",
    "incidents",
    "resources",
)


def _is_pg() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def geom(kind: str) -> sa.types.TypeEngine:
    if _is_pg():
        from geoalchemy2 import Geometry

        return Geometry(geometry_type=kind, srid=4326, spatial_index=False)
    return sa.LargeBinary()


def located(nullable_geom: bool = True) -> list[sa.Column]:
    """lon, lat, geom, district_code, grid_id: the columns of everything placed on the map."""
    return [
        sa.Column("lon", sa.Float(), nullable=True),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column("geom", geom("POINT"), nullable=nullable_geom),
        sa.Column("district_code", sa.String(12), nullable=True),
        sa.Column("grid_id", sa.String(20), nullable=True),
    ]


def upgrade() -> None:
    pg = _is_pg()
    if pg:
        op.execute("CREATE EXTENSION IF NOT EXISTS postgis")

    op.create_table(
        "districts",
        sa.Column("district_code", sa.String(12), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("name_en", sa.String(64), nullable=True),
        sa.Column("geom", geom("MULTIPOLYGON"), nullable=False),
        sa.Column("area_km2", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("district_code", name="pk_districts"),
    )

    op.create_table(
        "grid_cells",
        sa.Column("grid_id", sa.String(20), nullable=False),
        sa.Column("district_code", sa.String(12), nullable=False),
        sa.Column("h3_cell", sa.String(20), nullable=True),
        sa.Column("is_primary", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("geom", geom("MULTIPOLYGON"), nullable=False),
        sa.Column("area_km2", sa.Float(), nullable=False),
        sa.Column("center_lon", sa.Float(), nullable=False),
        sa.Column("center_lat", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["district_code"],
            ["districts.district_code"],
            name="fk_grid_cells_district_code_districts",
        ),
        sa.PrimaryKeyConstraint("grid_id", name="pk_grid_cells"),
    )
    op.create_index("ix_grid_cells_district_code", "grid_cells", ["district_code"])
    op.create_index("ix_grid_cells_h3_cell", "grid_cells", ["h3_cell"])

    op.create_table(
        "devices",
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("name", sa.String(128), nullable=True),
        *located(),
        sa.Column("props", JSON, nullable=False),
        sa.Column("registered_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("last_seen", TS, nullable=True),
        sa.CheckConstraint("kind IN ('sensor', 'camera')", name="ck_devices_kind_valid"),
        sa.PrimaryKeyConstraint("device_id", name="pk_devices"),
    )
    op.create_index("ix_devices_kind_type", "devices", ["kind", "type"])
    op.create_index("ix_devices_district_code", "devices", ["district_code"])
    op.create_index("ix_devices_grid_id", "devices", ["grid_id"])

    op.create_table(
        "observations",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("ts", TS, nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("metrics", JSON, nullable=False),
        sa.Column("msg_id", sa.String(64), nullable=True),
        sa.Column("district_code", sa.String(12), nullable=True),
        sa.Column("grid_id", sa.String(20), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_observations"),
    )
    op.create_index(
        "uq_observations_device_id_ts", "observations", ["device_id", sa.column("ts").desc()], unique=True
    )
    op.create_index(
        "uq_observations_msg_id",
        "observations",
        ["msg_id"],
        unique=True,
        postgresql_where=sa.text("msg_id IS NOT NULL"),
        sqlite_where=sa.text("msg_id IS NOT NULL"),
    )
    if pg:
        op.create_index("ix_observations_ts_brin", "observations", ["ts"], postgresql_using="brin")
    else:
        op.create_index("ix_observations_ts", "observations", ["ts"])

    op.create_table(
        "observation_hourly",
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("metric", sa.String(32), nullable=False),
        sa.Column("hour", TS, nullable=False),
        sa.Column("district_code", sa.String(12), nullable=True),
        sa.Column("grid_id", sa.String(20), nullable=True),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("sum", sa.Float(), nullable=False),
        sa.Column("min", sa.Float(), nullable=False),
        sa.Column("max", sa.Float(), nullable=False),
        sa.Column("last_ts", TS, nullable=False),
        sa.Column("last_value", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("device_id", "metric", "hour", name="pk_observation_hourly"),
    )
    op.create_index("ix_observation_hourly_metric_hour", "observation_hourly", ["metric", "hour"])
    op.create_index(
        "ix_observation_hourly_district_code_hour", "observation_hourly", ["district_code", "hour"]
    )
    op.create_index("ix_observation_hourly_grid_id_hour", "observation_hourly", ["grid_id", "hour"])

    op.create_table(
        "video_events",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("camera_id", sa.String(64), nullable=False),
        sa.Column("ts", TS, nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        *located(),
        sa.Column("snapshot_url", sa.String(512), nullable=True),
        sa.Column("bbox", JSON, nullable=True),
        sa.Column("received_at", TS, nullable=False),
        sa.CheckConstraint("confidence >= 0 AND confidence <= 1", name="ck_video_events_confidence_range"),
        sa.PrimaryKeyConstraint("id", name="pk_video_events"),
        sa.UniqueConstraint("event_id", name="uq_video_events_event_id"),
    )
    op.create_index("ix_video_events_district_code_ts", "video_events", ["district_code", "ts"])
    op.create_index("ix_video_events_camera_id_ts", "video_events", ["camera_id", "ts"])
    op.create_index("ix_video_events_type_ts", "video_events", ["type", "ts"])
    op.create_index("ix_video_events_grid_id", "video_events", ["grid_id"])

    op.create_table(
        "hotline_tickets",
        sa.Column("ticket_id", sa.String(32), nullable=False),
        sa.Column("ts", TS, nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("address", sa.String(256), nullable=True),
        *located(),
        sa.Column("urgency", sa.String(16), nullable=False),
        # Personal information: see models.schema.HotlineTicket.
        sa.Column("caller_name", sa.String(64), nullable=True),
        sa.Column("caller_phone", sa.String(32), nullable=True),
        sa.Column("state", sa.String(24), nullable=False),
        sa.Column("department", sa.String(64), nullable=True),
        sa.Column("accept_due", TS, nullable=True),
        sa.Column("reply_due", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("repeat_of", sa.String(32), nullable=True),
        sa.ForeignKeyConstraint(
            ["repeat_of"],
            ["hotline_tickets.ticket_id"],
            name="fk_hotline_tickets_repeat_of_hotline_tickets",
        ),
        sa.PrimaryKeyConstraint("ticket_id", name="pk_hotline_tickets"),
    )
    op.create_index("ix_hotline_tickets_district_code_ts", "hotline_tickets", ["district_code", "ts"])
    op.create_index("ix_hotline_tickets_department_state", "hotline_tickets", ["department", "state"])
    op.create_index("ix_hotline_tickets_category", "hotline_tickets", ["category"])
    op.create_index("ix_hotline_tickets_grid_id", "hotline_tickets", ["grid_id"])
    op.create_index("ix_hotline_tickets_state", "hotline_tickets", ["state"])
    op.create_index("ix_hotline_tickets_repeat_of", "hotline_tickets", ["repeat_of"])

    op.create_table(
        "ticket_events",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("ticket_id", sa.String(32), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=True),
        sa.Column("ts", TS, nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("from_state", sa.String(24), nullable=True),
        sa.Column("to_state", sa.String(24), nullable=True),
        sa.Column("actor", sa.String(64), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("payload", JSON, nullable=True),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["hotline_tickets.ticket_id"],
            name="fk_ticket_events_ticket_id_hotline_tickets",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_ticket_events"),
        sa.UniqueConstraint("event_id", name="uq_ticket_events_event_id"),
    )
    op.create_index("ix_ticket_events_ticket_id_ts", "ticket_events", ["ticket_id", "ts"])

    op.create_table(
        "alerts",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("rule_id", sa.String(64), nullable=False),
        sa.Column("domain", sa.String(16), nullable=False),
        sa.Column("severity", sa.String(8), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("source_kind", sa.String(16), nullable=True),
        sa.Column("source_id", sa.String(64), nullable=True),
        sa.Column("dedup_key", sa.String(200), nullable=False),
        sa.Column("state", sa.String(24), nullable=False),
        *located(),
        sa.Column("opened_at", TS, nullable=False),
        sa.Column("acknowledged_at", TS, nullable=True),
        sa.Column("resolved_at", TS, nullable=True),
        sa.Column("assigned_to", sa.String(64), nullable=True),
        sa.Column("sla_due", TS, nullable=True),
        sa.Column("evidence", JSON, nullable=True),
        sa.CheckConstraint(
            "domain IN ('emergency', 'urban', 'ecology', 'hotline', 'system')",
            name="ck_alerts_domain_valid",
        ),
        sa.CheckConstraint(
            "severity IN ('red', 'orange', 'yellow', 'blue')", name="ck_alerts_severity_valid"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
    )
    op.create_index(
        "uq_alerts_dedup_key_open",
        "alerts",
        ["dedup_key"],
        unique=True,
        postgresql_where=sa.text("resolved_at IS NULL"),
        sqlite_where=sa.text("resolved_at IS NULL"),
    )
    op.create_index("ix_alerts_district_code_opened_at", "alerts", ["district_code", "opened_at"])
    op.create_index("ix_alerts_domain_severity", "alerts", ["domain", "severity"])
    op.create_index("ix_alerts_state", "alerts", ["state"])
    op.create_index("ix_alerts_grid_id", "alerts", ["grid_id"])

    op.create_table(
        "alert_events",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("alert_id", BIGID, nullable=False),
        sa.Column("ts", TS, nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("from_state", sa.String(24), nullable=True),
        sa.Column("to_state", sa.String(24), nullable=True),
        sa.Column("actor", sa.String(64), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("payload", JSON, nullable=True),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"], name="fk_alert_events_alert_id_alerts"),
        sa.PrimaryKeyConstraint("id", name="pk_alert_events"),
    )
    op.create_index("ix_alert_events_alert_id_ts", "alert_events", ["alert_id", "ts"])

    op.create_table(
        "cases",
        sa.Column("case_id", sa.String(32), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("source_ref", sa.String(64), nullable=True),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("subcategory", sa.String(64), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("state", sa.String(24), nullable=False),
        sa.Column("department", sa.String(64), nullable=True),
        *located(),
        sa.Column("reporter", sa.String(64), nullable=True),
        sa.Column("filed_at", TS, nullable=False),
        sa.Column("due_at", TS, nullable=True),
        sa.Column("closed_at", TS, nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("props", JSON, nullable=False),
        sa.CheckConstraint(
            "source IN ('video', 'inspector', 'public', 'hotline')", name="ck_cases_source_valid"
        ),
        sa.PrimaryKeyConstraint("case_id", name="pk_cases"),
    )
    op.create_index("ix_cases_district_code_filed_at", "cases", ["district_code", "filed_at"])
    op.create_index("ix_cases_source_source_ref", "cases", ["source", "source_ref"])
    op.create_index("ix_cases_department_state", "cases", ["department", "state"])
    op.create_index("ix_cases_state", "cases", ["state"])
    op.create_index("ix_cases_grid_id", "cases", ["grid_id"])

    op.create_table(
        "incidents",
        sa.Column("incident_id", sa.String(32), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("level", sa.String(8), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("state", sa.String(24), nullable=False),
        sa.Column("reported_at", TS, nullable=False),
        *located(),
        sa.Column("radius_m", sa.Float(), nullable=True),
        sa.Column("commander", sa.String(64), nullable=True),
        sa.Column("closed_at", TS, nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("props", JSON, nullable=False),
        sa.CheckConstraint("radius_m IS NULL OR radius_m >= 0", name="ck_incidents_radius_m_positive"),
        sa.PrimaryKeyConstraint("incident_id", name="pk_incidents"),
    )
    op.create_index("ix_incidents_district_code_reported_at", "incidents", ["district_code", "reported_at"])
    op.create_index("ix_incidents_state", "incidents", ["state"])
    op.create_index("ix_incidents_grid_id", "incidents", ["grid_id"])

    op.create_table(
        "resources",
        sa.Column("resource_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("district_code", sa.String(12), nullable=True),
        sa.Column("lon", sa.Float(), nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("geom", geom("POINT"), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=True),
        sa.Column("phone", sa.String(32), nullable=True),
        sa.Column("props", JSON, nullable=False),
        sa.CheckConstraint("capacity IS NULL OR capacity >= 0", name="ck_resources_capacity_positive"),
        sa.PrimaryKeyConstraint("resource_id", name="pk_resources"),
    )
    op.create_index("ix_resources_kind", "resources", ["kind"])
    op.create_index("ix_resources_district_code", "resources", ["district_code"])

    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("display_name", sa.String(128), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("district_code", sa.String(12), nullable=True),
        sa.Column("disabled", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("last_login_at", TS, nullable=True),
        sa.CheckConstraint(
            "role IN ('viewer', 'leader', 'operator', 'duty_officer', 'admin')",
            name="ck_users_role_valid",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("username", name="uq_users_username"),
    )

    op.create_table(
        "audit_log",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("ts", TS, nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("address", sa.String(64), nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("entity_type", sa.String(32), nullable=False),
        sa.Column("entity_id", sa.String(64), nullable=True),
        sa.Column("before", JSON, nullable=True),
        sa.Column("after", JSON, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_entity_type_entity_id_ts", "audit_log", ["entity_type", "entity_id", "ts"])
    op.create_index("ix_audit_log_actor_ts", "audit_log", ["actor", "ts"])
    op.create_index("ix_audit_log_ts", "audit_log", ["ts"])
    if pg:
        op.execute(
            """
            CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'audit_log is append-only: % is not allowed', TG_OP
                    USING ERRCODE = 'insufficient_privilege';
            END;
            $$
            """
        )
        op.execute(
            "CREATE TRIGGER audit_log_no_update_delete BEFORE UPDATE OR DELETE ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
        )
        op.execute(
            "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()"
        )
    else:
        for statement in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_log_no_{statement.lower()} BEFORE {statement} ON audit_log "
                f"BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: {statement} is not allowed'); END"
            )

    op.create_table(
        "dead_letters",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("topic", sa.String(256), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=True),
        sa.Column("payload_size", sa.Integer(), nullable=False),
        sa.Column("detail", JSON, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_dead_letters"),
    )
    op.create_index("ix_dead_letters_received_at", "dead_letters", ["received_at"])
    op.create_index("ix_dead_letters_reason_received_at", "dead_letters", ["reason", "received_at"])

    if pg:
        for table in GEOMETRY_TABLES:
            op.create_index(f"ix_{table}_geom_gist", table, ["geom"], postgresql_using="gist")


def downgrade() -> None:
    for table in (
        "dead_letters",
        "audit_log",
        "users",
        "resources",
        "incidents",
        "cases",
        "alert_events",
        "alerts",
        "ticket_events",
        "hotline_tickets",
        "video_events",
        "observation_hourly",
        "observations",
        "devices",
        "grid_cells",
        "districts",
    ):
        op.drop_table(table)
    if _is_pg():
        op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
    # The postgis extension stays: other schemas in the database may use it.
