"""Applying rule decisions: the alerts table (``models.alerts``) and the live state.

The engine decides, this module carries out: one database transaction per batch of
decisions (``raise_alert`` opens or updates the one open alert per dedup key,
``clear_alert`` clears it), then the resulting changes go to Redis for the pages.
:class:`RuleRunner` is what ingest plugs in: a pipeline hook for batches and a tick
for time-based rules and SLA escalation.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from types import ModuleType
from typing import Any

import sqlalchemy as sa

from models.clock import Clock, utc_now
from models.rules.decisions import Clear, Decision, Draft
from models.rules.engine import RuleEngine

log = logging.getLogger(__name__)

#: How often ingest runs the time-based rules (staleness, windows that emptied, SLA).
TICK_INTERVAL_S = 10.0


def _alerts_module() -> ModuleType | None:
    try:
        return importlib.import_module("models.alerts")
    except ImportError:
        return None


class AlertSink:
    """Writes decisions through the alert lifecycle; hands the changes to the live state."""

    def __init__(self, engine: sa.Engine, live: Any = None, *, clock: Clock = utc_now) -> None:
        self.engine = engine
        self.live = live
        self.clock = clock
        self._warned = False

    def apply(self, decisions: Sequence[Decision]) -> list[Any]:
        if not decisions:
            return []
        alerts = self._alerts()
        if alerts is None:
            return []
        now = self.clock()
        changes: list[Any] = []
        with self.engine.begin() as conn:
            for d in decisions:
                if isinstance(d, Draft):
                    changes.append(alerts.raise_alert(conn, _alert_draft(alerts, d), now=now))
                elif isinstance(d, Clear):
                    change = alerts.clear_alert(conn, d.dedup_key, now=now, reason=d.reason)
                    if change is not None:
                        changes.append(change)
        self._publish([c for c in changes if c is not None])
        return changes

    def escalate(self, now: datetime, sla: Any = None) -> list[Any]:
        """Escalate alerts past their SLA (``models.alerts.escalate_overdue``)."""
        alerts = self._alerts()
        if alerts is None or not hasattr(alerts, "escalate_overdue"):
            return []
        with self.engine.begin() as conn:
            if sla is None:
                changes = list(alerts.escalate_overdue(conn, now=now))
            else:
                changes = list(alerts.escalate_overdue(conn, now=now, sla=sla))
        self._publish(changes)
        return changes

    def _publish(self, changes: list[Any]) -> None:
        apply = getattr(self.live, "apply_alert_changes", None)
        if changes and apply is not None:
            apply(changes)

    def _alerts(self) -> ModuleType | None:
        alerts = _alerts_module()
        if alerts is None and not self._warned:
            log.warning("models.alerts is not available: rule decisions are not stored")
            self._warned = True
        return alerts


def _alert_draft(alerts: ModuleType, draft: Draft) -> Any:
    """The alert layer's own draft type, built field by field from ours."""
    target = alerts.AlertDraft
    names = {f.name for f in dataclasses.fields(target)} if dataclasses.is_dataclass(target) else None
    values = {f.name: getattr(draft, f.name) for f in dataclasses.fields(draft)}
    if names is not None:
        values = {k: v for k, v in values.items() if k in names}
    return target(**values)


class RuleRunner:
    """The rule engine as ingest uses it: ``runner(accepted)`` per batch, ``runner.tick()`` periodically."""

    def __init__(
        self,
        engine: RuleEngine,
        sink: AlertSink,
        *,
        clock: Clock = utc_now,
        interval_s: float = TICK_INTERVAL_S,
        sla: Any = None,
    ) -> None:
        self.engine = engine
        self.sink = sink
        self.clock = clock
        self.interval_s = interval_s
        self.sla = sla

    def __call__(self, accepted: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        self.sink.apply(self.engine.evaluate(accepted))

    def tick(self, now: datetime | None = None, *, claim: bool = True) -> list[Decision]:
        """Time-based rules and SLA escalation; with ``claim``, one worker per interval does it."""
        now = now or self.clock()
        if claim and not self.engine.claim_tick(now, self.interval_s):
            return []
        decisions = self.engine.tick(now)
        self.sink.apply(decisions)
        self.sink.escalate(now, self.sla)
        return decisions

    def __repr__(self) -> str:
        return f"RuleRunner({len(self.engine.rules)} rules from {self.engine.rules.source})"
