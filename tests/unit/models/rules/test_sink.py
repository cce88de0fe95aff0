"""Decisions applied through the alert lifecycle (SQLite) and the runner's hook and tick."""

from __future__ import annotations

from pathlib import Path

import fakeredis
import sqlalchemy as sa

from models import schema
from models.db import create_engine_for, upgrade_database
from models.live import LiveStore
from models.rules import AlertSink, Clear, RuleEngine, RuleRunner, load_rules

from .support import at, batch, reading, video


def test_runner_opens_updates_and_clears_one_alert_per_dedup_key(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'rules.sqlite3'}"
    upgrade_database(url)
    engine = create_engine_for(url)
    client = fakeredis.FakeRedis(decode_responses=True)
    now = at(0)
    runner = RuleRunner(
        RuleEngine(load_rules(), client),
        AlertSink(engine, LiveStore(client), clock=lambda: now),
        clock=lambda: now,
    )
    try:
        runner(batch([reading("smoke-1", 0, {"smoke": 1.5, "temp": 30.0}, device_type="smoke")]))
        runner(batch([reading("smoke-1", 90, {"smoke": 2.0, "temp": 31.0}, device_type="smoke")]))
        runner(batch(videos=[video("e1", 100, "smoke_fire", 0.93)]))
        t = schema.Alert.__table__
        with engine.connect() as conn:
            rows = {r.dedup_key: r for r in conn.execute(sa.select(t))}
        assert set(rows) == {"smoke_alarm:smoke-1", "video_smoke_fire:8840a1b2c3fffff"}
        smoke = rows["smoke_alarm:smoke-1"]
        assert (smoke.severity, smoke.domain, smoke.district_code) == ("critical", "emergency", "511623")
        assert smoke.occurrences == 2 and smoke.cleared_at is None
        assert smoke.evidence["recent"][-1]["readings"][-1]["smoke"] == 2.0

        runner(batch([reading("smoke-1", 120, {"smoke": 0.02, "temp": 25.0}, device_type="smoke")]))
        # The camera's window empties 10 minutes after the last sighting: the tick clears it.
        cleared = runner.tick(at(800), claim=True)
        assert [d.dedup_key for d in cleared if isinstance(d, Clear)] == ["video_smoke_fire:8840a1b2c3fffff"]
        assert runner.tick(at(801), claim=True) == []  # the same 10-second tick is claimed once
        with engine.connect() as conn:
            open_cleared = conn.execute(sa.select(t.c.dedup_key).where(t.c.cleared_at.is_not(None))).scalars()
            assert sorted(open_cleared) == ["smoke_alarm:smoke-1", "video_smoke_fire:8840a1b2c3fffff"]
        # The live state heard about it.
        assert client.xlen("cityops:stream:alerts") >= 3
    finally:
        engine.dispose()


def test_the_tick_raises_hotline_alerts_for_overdue_work_orders(tmp_path: Path) -> None:
    import json
    from datetime import UTC, datetime, timedelta

    from ingest.pipeline import Inbound, IngestPipeline
    from models.tickets import deadline_alert_key

    url = f"sqlite:///{tmp_path / 'tickets.sqlite3'}"
    upgrade_database(url)
    engine = create_engine_for(url)
    client = fakeredis.FakeRedis(decode_responses=True)
    received = datetime(2026, 7, 15, 2, 0, tzinfo=UTC)
    ticket = {
        "ticket_id": "12345-T1",
        "ts": received.isoformat(),
        "channel": "phone",
        "category": "噪声扰民",
        "title": "夜间施工",
        "content": "工地夜间施工",
        "lon": 106.6333,
        "lat": 30.456,
        "urgency": "urgent",
    }
    pipeline = IngestPipeline(engine, LiveStore(client), clock=lambda: received)
    pipeline.process([Inbound("cityops/v1/hotline/tickets", json.dumps(ticket).encode(), received)])
    runner = RuleRunner(RuleEngine(load_rules(), client), AlertSink(engine, LiveStore(client)))
    try:
        runner.tick(received + timedelta(minutes=30), claim=False)
        t = schema.Alert.__table__
        with engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one() == 0
        runner.tick(received + timedelta(hours=3), claim=False)  # urgent: 2 h to accept
        with engine.connect() as conn:
            (alert,) = conn.execute(sa.select(t)).all()
        assert alert.domain == "hotline" and alert.dedup_key == deadline_alert_key("12345-T1", "accept")
        assert alert.severity in {"major", "critical"}
        assert LiveStore(client).open_alerts(10), "the console queue has it"
    finally:
        engine.dispose()
