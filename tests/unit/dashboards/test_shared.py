"""One refresh shared by the viewers of a page: when a result may be shared, who waits for
whom, and what keeps two viewers' results apart."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import flask
import pytest
from dash.exceptions import PreventUpdate

from dashboards import shared
from dashboards.i18n import language


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_result_started_after_the_viewers_push_is_shared() -> None:
    clock = Clock()
    results = shared.SharedResults(clock=clock)
    calls: list[int] = []

    def compute() -> str:
        calls.append(1)
        return f"read at {clock.now}"

    first = results.get("k", clock.now - 1, compute)
    clock.now += 0.2
    # The second viewer was woken by the same push (sent before the first computation).
    assert results.get("k", clock.now - 1, compute) == first
    assert len(calls) == 1 and (results.computed, results.shared) == (1, 1)


def test_a_push_after_the_last_computation_reads_again() -> None:
    clock = Clock()
    results = shared.SharedResults(clock=clock)
    first = results.get("k", clock.now, lambda: "old")
    clock.now += 0.5
    # New data were announced after the first read started: it cannot hold them.
    assert results.get("k", clock.now - 0.1, lambda: "new") == "new"
    assert first == "old" and results.computed == 2


def test_different_keys_never_share() -> None:
    clock = Clock()
    results = shared.SharedResults(clock=clock)
    assert results.get(("page", "zh-CN"), 0, lambda: "中文") == "中文"
    assert results.get(("page", "en"), 0, lambda: "English") == "English"


def test_a_viewer_waits_for_the_computation_already_running() -> None:
    results = shared.SharedResults()
    started, release = threading.Event(), threading.Event()
    calls: list[str] = []

    def slow() -> str:
        calls.append("slow")
        started.set()
        release.wait(5)
        return "shared"

    got: list[str] = []
    first = threading.Thread(target=lambda: got.append(results.get("k", 0, slow)))
    first.start()
    assert started.wait(5)
    second = threading.Thread(target=lambda: got.append(results.get("k", 0, lambda: "own")))
    second.start()
    release.set()
    first.join(5)
    second.join(5)
    assert got == ["shared", "shared"] and calls == ["slow"]


def test_an_error_reaches_the_waiters_and_is_not_kept() -> None:
    clock = Clock()
    results = shared.SharedResults(clock=clock)

    def fails() -> str:
        raise PreventUpdate

    with pytest.raises(PreventUpdate):
        results.get("k", 0, fails)
    assert len(results) == 0
    assert results.get("k", 0, lambda: "next time") == "next time"


def test_old_results_are_forgotten() -> None:
    clock = Clock()
    results = shared.SharedResults(keep_s=10, clock=clock)
    results.get("a", 0, lambda: 1)
    clock.now += 11
    results.get("b", 0, lambda: 2)
    assert len(results) == 1


@pytest.mark.parametrize(
    ("live", "expected"),
    [
        (None, 95.0),  # a timer tick: at most max_age old
        ({"server_ms": 99_000}, 99.0),  # woken by a push sent at 99 s
        ({"server_ms": 90_000}, 95.0),  # an old push: the age limit still holds
        ({"server_ms": 101_000}, 100.0),  # a little ahead of this clock: now
        ({"server_ms": 999_000}, 95.0),  # far ahead: not believed
        ({"server_ms": "x"}, 95.0),
        ({"server_ms": True}, 95.0),
    ],
)
def test_fresh_after(live: object, expected: float) -> None:
    assert shared.fresh_after(live, 100.0, 5.0) == expected


def _request(account: object | None):
    app = flask.Flask(__name__)
    context = app.test_request_context("/")
    context.push()
    flask.g.cityops_account = account
    return context


def test_the_decorator_keys_on_arguments_language_scope_and_role_not_on_triggers() -> None:
    results = shared.SharedResults()
    calls: list[tuple] = []

    @shared.refresh(results=results)
    def refresh(n: int | None, live: dict | None, switch: str) -> str:
        calls.append((n, switch))
        return f"{switch} {len(calls)}"

    officer = SimpleNamespace(role=SimpleNamespace(value="duty_officer"), district_code=None)
    scoped = SimpleNamespace(role=SimpleNamespace(value="duty_officer"), district_code="511621")
    context = _request(officer)
    try:
        assert refresh(1, None, "district") == "district 1"
        assert refresh(7, {"seen": {"video": 3}}, "district") == "district 1"  # another tick, same view
        assert refresh(1, None, "department") == "department 2"
        with language("en"):
            assert refresh(1, None, "district") == "district 3"
        flask.g.cityops_account = scoped
        assert refresh(1, None, "district") == "district 4"
    finally:
        context.pop()
    assert len(calls) == 4


def test_switched_off_every_call_computes() -> None:
    results = shared.SharedResults()
    results.enabled = False
    assert [results.get("k", 0, lambda n=n: n) for n in range(3)] == [0, 1, 2]


def test_a_data_version_in_the_key_is_never_answered_from_before_it() -> None:
    results = shared.SharedResults()
    queue_version = [1]
    calls: list[int] = []

    @shared.refresh(version=lambda: queue_version[0], results=results)
    def refresh(n: int | None, live: dict | None) -> str:
        calls.append(queue_version[0])
        return f"queue v{queue_version[0]}"

    def broken() -> int:
        raise ConnectionError("Redis away")

    @shared.refresh(version=broken, results=results)
    def refresh_without_store(n: int | None, live: dict | None) -> str:
        return "read by time"

    context = _request(None)
    try:
        assert refresh(1, None) == "queue v1"
        assert refresh(2, None) == "queue v1"  # same version, a tick later: shared
        queue_version[0] = 2  # an alert acknowledged, no push yet
        assert refresh(3, None) == "queue v2"
        assert refresh_without_store(1, None) == "read by time"
    finally:
        context.pop()
    assert calls == [1, 2]
