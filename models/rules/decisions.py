"""What the rule engine decides: open or refresh an alert (:class:`Draft`), or clear one (:class:`Clear`).

The engine only decides; :mod:`models.rules.sink` applies the decisions to the alerts
table and the live state. ``Draft`` has the fields of ``models.alerts.AlertDraft`` so the
sink can hand it over field by field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Draft:
    """Open the alert under ``dedup_key``, or update the one already open."""

    rule_id: str
    domain: str
    severity: str
    title: str
    message: str
    dedup_key: str
    source_kind: str
    source_id: str | None
    district_code: str | None
    grid_id: str | None
    lon: float | None
    lat: float | None
    evidence: dict[str, Any] = field(default_factory=dict)
    #: reading time of the newest evidence (the tick's clock for time-based rules)
    observed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Clear:
    """The condition behind ``dedup_key`` ended."""

    rule_id: str
    dedup_key: str
    reason: str
    observed_at: datetime | None = None


Decision = Draft | Clear
