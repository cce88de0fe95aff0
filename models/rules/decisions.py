"""What the rule engine decides: open or refresh an alert (:class:`Draft`), or clear one (:class:`Clear`).

The engine only decides; :mod:`models.rules.sink` applies the decisions to the alerts
table and the live state. A draft is ``models.alerts.AlertDraft`` itself, so what the
engine decides is exactly what the alert layer stores.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from models.alerts import AlertDraft

#: Open the alert under ``dedup_key``, or update the one already open: the alert layer's own draft.
Draft = AlertDraft


@dataclass(frozen=True, slots=True)
class Clear:
    """The condition behind ``dedup_key`` ended."""

    rule_id: str
    dedup_key: str
    reason: str
    observed_at: datetime | None = None


Decision = Draft | Clear
