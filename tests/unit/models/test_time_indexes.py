"""Migration 0007: the reads by time alone (newest 12345 orders, the last 24 h of
sightings) have an index, in the migrated database and in the schema models alike."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from models import db, schema


def test_orders_and_sightings_are_indexed_by_time(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cityops.sqlite3'}"
    db.upgrade_database(url)
    engine = db.create_engine_for(url)
    try:
        inspector = sa.inspect(engine)
        for table, name in (
            ("hotline_tickets", "ix_hotline_tickets_ts"),
            ("video_events", "ix_video_events_ts"),
        ):
            migrated = {i["name"]: i["column_names"] for i in inspector.get_indexes(table)}
            assert migrated.get(name) == ["ts"]
            modelled = {
                i.name: [c.name for c in i.columns] for i in schema.Base.metadata.tables[table].indexes
            }
            assert modelled.get(name) == ["ts"]
        with engine.connect() as conn:
            plan = " ".join(
                str(r[-1])
                for r in conn.exec_driver_sql(
                    "EXPLAIN QUERY PLAN SELECT ticket_id FROM hotline_tickets ORDER BY ts DESC LIMIT 30"
                )
            )
        assert "ix_hotline_tickets_ts" in plan
    finally:
        engine.dispose()
