"""Server push against the real Redis: the hub hears what ingest publishes, over HTTP as SSE."""

from __future__ import annotations

import json
import time

import flask
import pytest
import redis

from dashboards import push
from models.live import UPDATES_CHANNEL

pytestmark = pytest.mark.real_services


def test_a_published_note_reaches_an_open_event_stream(redis_url: str, unique_name: str) -> None:
    hub = push.UpdateHub(lambda: redis.Redis.from_url(redis_url, decode_responses=True))
    server = flask.Flask("t")
    push.register(server, hub)  # the first viewer starts the hub
    response = server.test_client().get(push.STREAM_PATH, buffered=False)
    chunks = response.response
    try:
        assert next(chunks).decode().startswith("retry: ")
        opening = json.loads(next(chunks).decode().removeprefix("data: "))
        assert unique_name not in opening["versions"]

        publisher = redis.Redis.from_url(redis_url, decode_responses=True)
        deadline = time.monotonic() + 10
        # Until the hub's subscription is in place a note has no listener: publish until heard.
        while time.monotonic() < deadline and unique_name not in hub.snapshot()["versions"]:
            publisher.publish(UPDATES_CHANNEL, json.dumps({"kind": unique_name, "n": 1}))
            time.sleep(0.05)
        assert hub.snapshot()["connected"] is True

        for _ in range(50):  # other tests may publish too; ours must show up in an event
            chunk = next(chunks).decode()
            if chunk.startswith("data: ") and unique_name in json.loads(chunk[6:])["versions"]:
                break
        else:
            pytest.fail("the note never reached the event stream")
    finally:
        response.close()
        hub.stop()
