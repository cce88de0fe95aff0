"""Applying rule decisions: the alerts table (``models.alerts``) and the live state.

The engine decides, this module carries out: one database transaction per batch of
decisions (``raise_alert`` opens or updates the one open alert per dedup key,
``clear_alert`` clears it), then the resulting changes go to Redis for the pages.
:class:`RuleRunner` is what ingest plugs in: a pipeline hook for batches and a tick
for time-based rules, SLA escalation and 12345 deadlines.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from models import alerts, tickets
from models.clock import Clock, utc_now
from models.live import LiveStore
from models.rules.decisions import Clear, Decision, Draft
from models.rules.engine import RuleEngine

log = logging.getLogger(__name__)

#: How often ingest runs the time-based rules (staleness, windows that emptied, SLA).
TICK_INTERVAL_S = 10.0


class AlertSink:
    """Writes decisions through the alert lifecycle; hands the changes to the live state."""

    def __init__(
        self,
        engine: sa.Engine,
        live: LiveStore | None = None,
        *,
        clock: Clock = utc_now,
        sla: Mapping[str, timedelta | None] = alerts.DEFAULT_SLA,
    ) -> None:
        self.engine = engine
        self.live = live
        self.clock = clock
        #: acknowledgement deadlines per severity (CITYOPS_ALERT_SLA)
        self.sla = sla

    def apply(self, decisions: Sequence[Decision]) -> list[alerts.AlertChange]:
        if not decisions:
            return []
        now = self.clock()
        changes: list[alerts.AlertChange] = []
        with self.engine.begin() as conn:
            for d in decisions:
                if isinstance(d, Draft):
                    changes.append(alerts.raise_alert(conn, d, now=now, sla=self.sla))
                elif isinstance(d, Clear):
                    change = alerts.clear_alert(conn, d.dedup_key, now=now, reason=d.reason)
                    if change is not None:
                        changes.append(change)
        self._publish([c for c in changes if c is not None])
        return changes

    def sweep(self, now: datetime) -> list[alerts.AlertChange]:
        """Alert changes that time alone brings: SLA escalation and 12345 deadline alerts."""
        with self.engine.begin() as conn:
            changes = alerts.escalate_overdue(conn, now=now, sla=self.sla)
            changes += tickets.raise_deadline_alerts(conn, now)
        self._publish(changes)
        return changes

    def _publish(self, changes: Sequence[alerts.AlertChange]) -> None:
        if changes and self.live is not None:
            self.live.apply_alert_changes(changes)


class RuleRunner:
    """The rule engine as ingest uses it: ``runner(accepted)`` per batch, ``runner.tick()`` periodically."""

    def __init__(
        self,
        engine: RuleEngine,
        sink: AlertSink,
        *,
        clock: Clock = utc_now,
        interval_s: float = TICK_INTERVAL_S,
    ) -> None:
        self.engine = engine
        self.sink = sink
        self.clock = clock
        self.interval_s = interval_s

    def __call__(self, accepted: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        self.sink.apply(self.engine.evaluate(accepted))

    def tick(self, now: datetime | None = None, *, claim: bool = True) -> list[Decision]:
        """Time-based rules and SLA escalation; with ``claim``, one worker per interval does it."""
        now = now or self.clock()
        if claim and not self.engine.claim_tick(now, self.interval_s):
            return []
        decisions = self.engine.tick(now)
        self.sink.apply(decisions)
        self.sink.sweep(now)
        return decisions

    def __repr__(self) -> str:
        return f"RuleRunner({len(self.engine.rules)} rules from {self.engine.rules.source})"
