"""The condition state machine every rule kind shares, and its Redis form.

A rule judges a *subject* (a device, a grid cell, a district and category) with samples:
each sample says whether the condition holds (``on``), has clearly ended (``off``) or is
in between (the hysteresis band: neither). :func:`step` turns the stored state and one
sample into the next state and at most one action:

* ``raise``  — the condition has held for ``min_duration`` (reading time): open the alert;
* ``update`` — it still holds and ``refresh`` has passed: send the latest evidence again
  (the alert layer updates the one open alert under the dedup key);
* ``clear``  — it ended: the open alert clears (and stays for acknowledgement).

Pure, so the no-flapping and minimum-duration behaviour is tested without Redis.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

Action = Literal["raise", "update", "clear"]

#: readings kept as evidence per subject: enough to show the trend, small enough for a row
EVIDENCE_KEEP = 6


@dataclass(frozen=True, slots=True)
class CondState:
    """What is known about one (rule, subject): times are epoch seconds of reading time."""

    #: since when the condition has held without a break (None: it does not hold)
    since: float | None = None
    #: an alert is open for this subject
    active: bool = False
    #: the newest reading judged; an older one arriving late must not move the state back
    last: float | None = None
    #: when the alert was last sent (raise or update)
    emitted: float | None = None
    #: the newest readings that held the condition, newest last
    evidence: tuple[dict[str, Any], ...] = ()

    @property
    def idle(self) -> bool:
        """Nothing pending and nothing open."""
        return self.since is None and not self.active

    @property
    def empty(self) -> bool:
        """Nothing to remember at all: the state need not be stored."""
        return self == CondState()

    def to_hash(self) -> dict[str, str]:
        out = {"active": "1" if self.active else "0"}
        for name in ("since", "last", "emitted"):
            value = getattr(self, name)
            if value is not None:
                out[name] = repr(float(value))
        if self.evidence:
            out["ev"] = json.dumps(list(self.evidence), ensure_ascii=False, separators=(",", ":"))
        return out

    @classmethod
    def from_hash(cls, data: Mapping[str, str]) -> CondState:
        if not data:
            return cls()

        def num(name: str) -> float | None:
            raw = data.get(name)
            return float(raw) if raw not in (None, "") else None

        return cls(
            since=num("since"),
            active=data.get("active") == "1",
            last=num("last"),
            emitted=num("emitted"),
            evidence=tuple(json.loads(data["ev"])) if data.get("ev") else (),
        )


def step(
    state: CondState,
    ts: float,
    *,
    on: bool,
    off: bool,
    min_duration: float = 0.0,
    refresh: float = 60.0,
    ordered: bool = True,
    evidence: Mapping[str, Any] | None = None,
) -> tuple[CondState, Action | None]:
    """The next state of one subject after a sample at ``ts``, and what to do about it.

    ``ordered`` samples are readings of one value: one older than the newest judged is
    ignored, because shared subscriptions may deliver a device's readings out of order.
    Window samples (counts over the last minutes) are recomputed from the window itself,
    so their order does not matter.
    """
    if on and off:
        raise ValueError("a sample cannot be both on and off")
    if ordered and state.last is not None and ts < state.last:
        return state, None
    last = ts if ordered else state.last
    if on:
        since = state.since if state.since is not None else ts
        kept = state.evidence
        if evidence is not None:
            kept = (*state.evidence, dict(evidence))[-EVIDENCE_KEEP:]
        held = replace(state, since=since, last=last, evidence=kept)
        if not state.active:
            # A condition that started "in the future" (a late reading raced ahead) counts from now.
            if ts - min(since, ts) >= min_duration:
                return replace(held, active=True, emitted=ts), "raise"
            return held, None
        if state.emitted is None or ts - state.emitted >= refresh:
            return replace(held, emitted=ts), "update"
        return held, None
    if state.idle:
        # Nothing pending, nothing open: nothing to remember (and nothing to write).
        return state, None
    if off:
        # Only the time is kept, so a late reading cannot reopen what this one closed.
        return CondState(last=last), "clear" if state.active else None
    # In the hysteresis band: an open alert stays open; a pending one must start again,
    # since the minimum duration means the condition held without a break.
    if state.active:
        return replace(state, last=last), None
    return CondState(last=last), None
