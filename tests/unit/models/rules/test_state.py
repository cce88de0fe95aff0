"""The shared condition state machine: minimum duration, hysteresis band, refresh, order."""

from __future__ import annotations

import pytest

from models.rules.state import EVIDENCE_KEEP, CondState, step


def run(samples: list[tuple[float, bool, bool]], **kw: float) -> list[str | None]:
    state, actions = CondState(), []
    for ts, on, off in samples:
        state, action = step(state, ts, on=on, off=off, **kw)
        actions.append(action)
    return actions


def test_raises_once_the_condition_held_for_the_minimum_duration() -> None:
    actions = run(
        [(0, True, False), (60, True, False), (119, True, False), (120, True, False)], min_duration=120
    )
    assert actions == [None, None, None, "raise"]


def test_a_break_restarts_the_minimum_duration() -> None:
    # 100 s on, one reading in the band (neither on nor off), then on again: the clock restarts.
    samples = [
        (0, True, False),
        (100, True, False),
        (110, False, False),
        (120, True, False),
        (230, True, False),
    ]
    assert run(samples, min_duration=120) == [None] * 5
    assert run([*samples, (240, True, False)], min_duration=120)[-1] == "raise"


def test_the_hysteresis_band_keeps_an_open_alert_open() -> None:
    # Around a threshold: on, band, on, band … never flaps; only a clear "off" clears.
    samples = [(0, True, False), (10, False, False), (20, True, False), (30, False, False), (40, False, True)]
    assert run(samples, refresh=1000) == ["raise", None, None, None, "clear"]


def test_a_persisting_condition_refreshes_at_most_every_refresh_seconds() -> None:
    samples = [(t, True, False) for t in range(0, 200, 10)]
    actions = run(samples, refresh=60)
    assert actions[0] == "raise"
    assert [t for (t, _, _), a in zip(samples, actions, strict=True) if a == "update"] == [60, 120, 180]


def test_a_late_reading_does_not_move_the_state_back() -> None:
    state, _ = step(CondState(), 100, on=True, off=False)
    later, action = step(state, 50, on=False, off=True)
    assert (later, action) == (state, None)
    # Window samples are recomputed from the window: their order does not matter.
    cleared, action = step(state, 50, on=False, off=True, ordered=False)
    assert action == "clear" and not cleared.active


def test_evidence_is_bounded_and_the_state_round_trips_through_redis_form() -> None:
    state = CondState()
    for t in range(20):
        state, _ = step(state, t, on=True, off=False, evidence={"ts": t, "level": 5.0 + t})
    assert len(state.evidence) == EVIDENCE_KEEP and state.evidence[-1]["ts"] == 19
    assert CondState.from_hash(state.to_hash()) == state
    assert CondState.from_hash({}) == CondState()


def test_on_and_off_at_once_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        step(CondState(), 0, on=True, off=True)
