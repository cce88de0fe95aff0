"""Applying rule decisions: the alerts table (``models.alerts``) and the live state.

The engine decides, this module carries out: one database transaction per batch of
decisions (``raise_alert`` opens or updates the one open alert per dedup key,
``clear_alert`` clears it), then the resulting changes go to Redis for the pages.
:class:`RuleRunner` is what ingest plugs in: a pipeline hook for batches and a tick
for time-based rules, SLA escalation and 12345 deadlines.

A rule with ``open_incident = true`` also opens an emergency incident for its alert
(``models.incidents.open_for_alert``), in the same transaction and inside a savepoint:
one incident per alert — per correlation episode — however many workers see it, and a
failure there is logged without losing the alert.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from models import alerts, incidents, tickets
from models.clock import Clock, utc_now
from models.lifecycle import Actor
from models.live import LiveStore
from models.rules.decisions import Clear, Decision, Draft
from models.rules.engine import RuleEngine

log = logging.getLogger(__name__)

#: How often ingest runs the time-based rules (staleness, windows that emptied, SLA).
TICK_INTERVAL_S = 10.0


@dataclass(frozen=True, slots=True)
class IncidentRule:
    """What a rule with ``open_incident = true`` opens: the incident type (None: read from
    the rule id) and whether it is a correlation rule (the incident's source)."""

    incident_type: str | None
    correlation: bool


def incident_rules(rules: Iterable[Any]) -> dict[str, IncidentRule]:
    """The rules of a rule set that open incidents, by id."""
    return {
        r.id: IncidentRule(r.incident_type, r.kind == "correlation")
        for r in rules
        if getattr(r, "open_incident", False)
    }


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

    def apply(
        self,
        decisions: Sequence[Decision],
        *,
        opening: Mapping[str, IncidentRule] | None = None,
    ) -> list[alerts.AlertChange]:
        """Apply decisions; alerts of the rules in ``opening`` also get their incident."""
        if not decisions:
            return []
        now = self.clock()
        changes: list[alerts.AlertChange] = []
        opened: list[incidents.IncidentChange] = []
        with self.engine.begin() as conn:
            for d in decisions:
                if isinstance(d, Draft):
                    change = alerts.raise_alert(conn, d, now=now, sla=self.sla)
                    changes.append(change)
                    if opening and d.rule_id in opening:
                        incident = self._open_incident(conn, change, opening[d.rule_id], now)
                        if incident is not None:
                            opened.append(incident)
                elif isinstance(d, Clear):
                    cleared = alerts.clear_alert(conn, d.dedup_key, now=now, reason=d.reason)
                    if cleared is not None:
                        changes.append(cleared)
        self._publish([c for c in changes if c is not None])
        # After the commit, like the alerts: a page that refreshes on the note finds the incident.
        incidents.announce(self.live, *opened)
        return changes

    def _open_incident(
        self, conn: sa.Connection, change: alerts.AlertChange, rule: IncidentRule, now: datetime
    ) -> incidents.IncidentChange | None:
        # A suppressed alert (maintenance) asks nobody to act; neither does its incident.
        if change.alert.state == alerts.AlertState.SUPPRESSED:
            return None
        try:
            with conn.begin_nested():
                opened = incidents.open_for_alert(
                    conn,
                    change.alert.id,
                    actor=Actor(f"rule:{change.alert.rule_id}"[:64]),
                    now=now,
                    incident_type_key=rule.incident_type,
                    source=incidents.IncidentSource.CORRELATION
                    if rule.correlation
                    else incidents.IncidentSource.ALERT,
                )
        except Exception:
            log.exception("could not open the incident of alert %s; the alert stands", change.alert.id)
            return None
        if opened.created:
            log.info(
                "alert %s (%s) opened incident %s",
                change.alert.id,
                change.alert.rule_id,
                opened.incident.incident_id,
            )
        return opened

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
        #: rules whose alerts open emergency incidents (``open_incident = true``)
        self.opening = incident_rules(engine.rules.rules)

    def __call__(self, accepted: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        self.sink.apply(self.engine.evaluate(accepted), opening=self.opening)

    def warm_up(self) -> None:
        """Before the first batch (see :meth:`RuleEngine.warm_up`)."""
        self.engine.warm_up()

    def tick(self, now: datetime | None = None, *, claim: bool = True) -> list[Decision]:
        """Time-based rules and SLA escalation; with ``claim``, one worker per interval does it."""
        now = now or self.clock()
        if claim and not self.engine.claim_tick(now, self.interval_s):
            return []
        decisions = self.engine.tick(now)
        self.sink.apply(decisions, opening=self.opening)
        self.sink.sweep(now)
        return decisions

    def __repr__(self) -> str:
        return f"RuleRunner({len(self.engine.rules)} rules from {self.engine.rules.source})"
