"""Server push: the update hub and the event stream, on fakeredis and a fake clock."""

from __future__ import annotations

import json
import threading
import time

import fakeredis
import flask
import pytest
import redis

from dashboards import push
from models.live import UPDATES_CHANNEL


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _events(chunks: list[str]) -> list[dict[str, object]]:
    return [json.loads(c.removeprefix("data: ")) for c in chunks if c.startswith("data: ")]


def wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_notes_move_the_sequence_and_the_kind_versions() -> None:
    hub = push.UpdateHub(lambda: fakeredis.FakeRedis())
    hub.note(json.dumps({"kind": "observations", "n": 3}))
    hub.note(json.dumps({"kind": "alert", "id": 7}))
    hub.note(json.dumps({"kind": "observations", "n": 1}))
    state = hub.snapshot()
    assert state["seq"] == 3
    assert state["versions"] == {"observations": 3, "alert": 2}


def test_a_note_that_is_not_json_still_counts_as_a_change() -> None:
    hub = push.UpdateHub(lambda: fakeredis.FakeRedis())
    hub.note(b"\xff not json")
    hub.note("[1, 2]")
    assert hub.snapshot()["versions"] == {"other": 2}


def test_wait_returns_at_once_when_something_is_newer_and_times_out_otherwise() -> None:
    hub = push.UpdateHub(lambda: fakeredis.FakeRedis())
    hub.note('{"kind": "video"}')
    assert hub.wait(0, timeout=5.0) == 1
    started = time.monotonic()
    assert hub.wait(1, timeout=0.05) == 1
    assert time.monotonic() - started >= 0.04


def test_wait_wakes_when_a_note_arrives_from_another_thread() -> None:
    hub = push.UpdateHub(lambda: fakeredis.FakeRedis())
    timer = threading.Timer(0.05, hub.note, args=('{"kind": "tickets"}',))
    timer.start()
    assert hub.wait(0, timeout=5.0) == 1
    timer.join()


def test_the_hub_listens_to_the_updates_channel() -> None:
    server = fakeredis.FakeServer()
    hub = push.UpdateHub(lambda: fakeredis.FakeRedis(server=server, decode_responses=True)).start()
    try:
        assert wait_for(lambda: hub.snapshot()["connected"] is True)
        publisher = fakeredis.FakeRedis(server=server, decode_responses=True)
        # Published until seen: the subscription may still be on its way when we start.
        assert wait_for(
            lambda: (
                publisher.publish(UPDATES_CHANNEL, '{"kind": "alert"}') >= 0
                and "alert" in hub.snapshot()["versions"]
            )  # type: ignore[operator]
        )
    finally:
        hub.stop()


def test_an_unreachable_redis_is_reported_and_retried() -> None:
    attempts: list[int] = []

    def broken() -> redis.Redis:
        attempts.append(1)
        raise redis.ConnectionError("Connection refused")

    hub = push.UpdateHub(broken).start()
    try:
        assert wait_for(lambda: hub.snapshot()["error"] is not None)
        state = hub.snapshot()
        assert state["connected"] is False
        assert "ConnectionError" in str(state["error"])
        assert wait_for(lambda: len(attempts) >= 2)  # it keeps trying
    finally:
        hub.stop()


def test_the_stream_starts_with_the_current_state_then_sends_one_event_per_burst() -> None:
    clock = FakeClock()
    hub = push.UpdateHub(lambda: fakeredis.FakeRedis(), clock=clock)
    hub.note('{"kind": "observations"}')
    stream = push.event_stream(
        hub, coalesce_s=0.5, keepalive_s=15, lifetime_s=60, clock=clock, sleep=clock.sleep
    )
    assert next(stream).startswith("retry: ")
    first = _events([next(stream)])[0]
    assert first["seq"] == 1 and first["versions"] == {"observations": 1}

    # A burst of three notes before the stream looks again: one event with the last state.
    for kind in ("observations", "alert", "observations"):
        hub.note(json.dumps({"kind": kind}))
    second = _events([next(stream)])[0]
    assert second["seq"] == 4
    assert second["versions"] == {"observations": 4, "alert": 3}
    assert clock.slept == [pytest.approx(0.5)]  # the coalescing pause, since nothing went out for 0 s


def test_the_stream_sends_keepalives_while_nothing_changes_and_ends_after_its_lifetime() -> None:
    hub = push.UpdateHub(lambda: fakeredis.FakeRedis())
    chunks = list(push.event_stream(hub, keepalive_s=0.02, lifetime_s=0.1))
    assert chunks[0].startswith("retry: ")
    assert len(_events(chunks)) == 1  # only the opening state
    assert chunks.count(": keepalive\n\n") >= 2


def test_the_stream_is_served_as_server_sent_events() -> None:
    server = flask.Flask("t")
    hub = push.UpdateHub(lambda: fakeredis.FakeRedis())
    hub.note('{"kind": "video"}')
    push.register(server, hub)
    try:
        response = server.test_client().get(push.STREAM_PATH, buffered=False)
        assert response.status_code == 200
        assert response.mimetype == "text/event-stream"
        assert response.headers["Cache-Control"].startswith("no-cache")
        chunks = response.response
        assert next(chunks).decode().startswith("retry: ")
        opening = json.loads(next(chunks).decode().removeprefix("data: "))
        assert opening["versions"] == {"video": 1}
        response.close()
    finally:
        hub.stop()
