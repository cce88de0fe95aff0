"""Alert lifecycle: operational severities, lifecycle columns, maintenance windows.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26

* ``alerts.severity`` moves from China's warning colours to the operational scale
  critical / major / minor / info (one-to-one: red → critical, orange → major, yellow →
  minor, blue → info; ``models.schema.WARNING_COLOURS`` keeps the map for CAP).
* ``alerts`` gains what the lifecycle needs: who acknowledged, when it was assigned, when
  the condition cleared, when it was closed, last occurrence, occurrence count, escalation
  level and a ``version`` for compare-and-set transitions.
* ``alert_events`` gains ``address`` (from where a person acted).
* ``maintenance_windows``: declared maintenance of a device or a district, during which
  alerts from the devices it covers open as ``suppressed``.

Self-contained like 0001. SQLite cannot alter constraints in place, so those steps run in
``batch_alter_table`` (a table rebuild there, plain ALTERs on PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)

#: Old value → new value; the reverse is used by downgrade.
COLOUR_TO_SEVERITY = {"red": "critical", "orange": "major", "yellow": "minor", "blue": "info"}

DOMAIN_CHECK = "domain IN ('emergency', 'urban', 'ecology', 'hotline', 'system')"
#: The CHECK names 0001 actually created on ``alerts``.
OLD_CHECK_NAMES = {
    "domain": "ck_alerts_ck_alerts_domain_valid",
    "severity": "ck_alerts_ck_alerts_severity_valid",
}

NEW_ALERT_COLUMNS = (
    ("acknowledged_by", sa.String(64), None),
    ("assigned_at", TS, None),
    ("cleared_at", TS, None),
    ("closed_at", TS, None),
    ("last_seen_at", TS, None),
    ("updated_at", TS, None),
    ("occurrences", sa.Integer(), "1"),
    ("escalation_level", sa.Integer(), "0"),
    ("version", sa.Integer(), "1"),
)


def _is_sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def _recode_severity(mapping: dict[str, str]) -> None:
    for old, new in mapping.items():
        op.execute(
            sa.text("UPDATE alerts SET severity = :new WHERE severity = :old").bindparams(old=old, new=new)
        )


@contextmanager
def _alert_events_set_aside() -> Iterator[None]:
    """On SQLite, move ``alert_events`` rows aside while ``alerts`` is rebuilt.

    A batch step rebuilds ``alerts`` (copy, drop, rename). Dropping a table that rows still
    point at is a foreign-key violation, and SQLite counts it even when checks are deferred
    (the rename does not undo it), while ``PRAGMA foreign_keys = OFF`` is ignored inside the
    migration's transaction. Without referencing rows the drop is clean; they come back with
    their ids once the rebuilt table is in place.
    """
    if not _is_sqlite():
        yield
        return
    columns = ", ".join(c["name"] for c in sa.inspect(op.get_bind()).get_columns("alert_events"))
    op.execute("CREATE TEMP TABLE _alert_events_aside AS SELECT * FROM alert_events")
    op.execute("DELETE FROM alert_events")
    yield
    op.execute(f"INSERT INTO alert_events ({columns}) SELECT {columns} FROM _alert_events_aside")
    op.execute("DROP TABLE _alert_events_aside")


def upgrade() -> None:
    with _alert_events_set_aside():
        _upgrade_alerts()

    with op.batch_alter_table("alert_events") as batch:
        batch.add_column(sa.Column("address", sa.String(64), nullable=True))

    _create_maintenance_windows()


def _upgrade_alerts() -> None:
    # Drop the old CHECK before recoding: neither set of values passes the other's check.
    # 0001 passed full names through the naming convention, which prefixed them a second
    # time; the exact names (op.f) drop what is there and create what the models declare.
    with op.batch_alter_table("alerts") as batch:
        for old in OLD_CHECK_NAMES.values():
            batch.drop_constraint(op.f(old), type_="check")
    _recode_severity(COLOUR_TO_SEVERITY)

    with op.batch_alter_table("alerts") as batch:
        for name, type_, default in NEW_ALERT_COLUMNS:
            batch.add_column(
                sa.Column(
                    name,
                    type_,
                    nullable=default is None,
                    server_default=sa.text(default) if default is not None else None,
                )
            )
        batch.create_check_constraint(op.f("ck_alerts_domain_valid"), DOMAIN_CHECK)
        batch.create_check_constraint(
            op.f("ck_alerts_severity_valid"), "severity IN ('critical', 'major', 'minor', 'info')"
        )
        batch.create_check_constraint(op.f("ck_alerts_occurrences_positive"), "occurrences >= 1")
        batch.create_check_constraint(op.f("ck_alerts_escalation_level_positive"), "escalation_level >= 0")
    op.create_index("ix_alerts_sla_due", "alerts", ["sla_due"])
    # Alerts opened before this step: their first sighting is the last one known.
    op.execute("UPDATE alerts SET last_seen_at = opened_at WHERE last_seen_at IS NULL")


def _create_maintenance_windows() -> None:
    op.create_table(
        "maintenance_windows",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("device_id", sa.String(64), nullable=True),
        sa.Column("district_code", sa.String(12), nullable=True),
        sa.Column("starts_at", TS, nullable=False),
        sa.Column("ends_at", TS, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint(
            "device_id IS NOT NULL OR district_code IS NOT NULL",
            name=op.f("ck_maintenance_windows_scope_given"),
        ),
        sa.CheckConstraint("ends_at > starts_at", name=op.f("ck_maintenance_windows_ends_after_start")),
        sa.PrimaryKeyConstraint("id", name="pk_maintenance_windows"),
    )
    op.create_index(
        "ix_maintenance_windows_device_id_ends_at", "maintenance_windows", ["device_id", "ends_at"]
    )
    op.create_index(
        "ix_maintenance_windows_district_code_ends_at", "maintenance_windows", ["district_code", "ends_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_maintenance_windows_district_code_ends_at", table_name="maintenance_windows")
    op.drop_index("ix_maintenance_windows_device_id_ends_at", table_name="maintenance_windows")
    op.drop_table("maintenance_windows")

    with op.batch_alter_table("alert_events") as batch:
        batch.drop_column("address")

    with _alert_events_set_aside():
        _downgrade_alerts()


def _downgrade_alerts() -> None:
    op.drop_index("ix_alerts_sla_due", table_name="alerts")
    with op.batch_alter_table("alerts") as batch:
        for name in (
            "ck_alerts_escalation_level_positive",
            "ck_alerts_occurrences_positive",
            "ck_alerts_severity_valid",
            "ck_alerts_domain_valid",
        ):
            batch.drop_constraint(op.f(name), type_="check")
        for name, _type, _default in reversed(NEW_ALERT_COLUMNS):
            batch.drop_column(name)
    _recode_severity({new: old for old, new in COLOUR_TO_SEVERITY.items()})
    with op.batch_alter_table("alerts") as batch:
        batch.create_check_constraint(op.f(OLD_CHECK_NAMES["domain"]), DOMAIN_CHECK)
        batch.create_check_constraint(
            op.f(OLD_CHECK_NAMES["severity"]), "severity IN ('red', 'orange', 'yellow', 'blue')"
        )
