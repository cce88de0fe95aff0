"""Server push: one Redis subscription per web process, fanned out to every open page.

Ingest and the alert lifecycle publish a short JSON note on ``cityops:updates`` for each
written batch or alert change (see :mod:`models.live`). An :class:`UpdateHub` listens to
that channel in one background thread and keeps a sequence number per kind of data. Each
open page holds one Server-Sent Events stream (``GET /api/live/updates``); the stream
sleeps until the sequence moves, then sends the versions of every kind, coalesced to at
most one event per :data:`COALESCE_S`. In the browser, ``assets/live.js`` writes each
event into the shell's ``live-updates`` store, and page callbacks that take it as an
Input refresh at once instead of polling on a timer.

Why SSE and not polling: a wall of idle screens costs nothing between changes, and a new
reading reaches the screen within the coalescing window plus one callback, not within a
polling period. Why one subscription per process: a hundred viewers must not mean a
hundred Redis connections. The stream also carries the hub's own health, so a page can
say when the live feed itself is down.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import flask
import redis
from dash import ClientsideFunction, Input, Output, State, clientside_callback, dcc

from models.live import UPDATES_CHANNEL

log = logging.getLogger(__name__)

#: The URL of the event stream (same origin as the pages).
STREAM_PATH = "/api/live/updates"
#: At most one event per stream in this many seconds: a busy feed (thousands of readings
#: a second) becomes two refreshes a second, not thousands.
COALESCE_S = 0.5
#: A comment line this often keeps proxies from closing an idle stream and lets the
#: server notice a viewer that has gone away.
KEEPALIVE_S = 15.0
#: A stream ends after this long and the browser reconnects by itself (EventSource does),
#: so a web worker's threads are handed back now and then and a restarted worker is
#: picked up without a page reload.
STREAM_LIFETIME_S = 300.0
#: The browser waits this long before reconnecting a closed stream.
RETRY_MS = 2000
#: A page refreshes at most this often on pushes (the browser keeps the last change for
#: the end of the interval, so nothing is dropped): 1 s keeps publish-to-screen under 2 s
#: with room for the callback, and bounds a busy feed's cost to one refresh a second.
PAGE_MIN_INTERVAL_MS = 1000
#: The kinds of note the pipeline and the lifecycles publish (``models.live``).
KINDS = ("observations", "video", "tickets", "alert", "incident")
#: Ids of the shell's stores that ``assets/live.js`` writes into.
UPDATES_STORE = "live-updates"
CONNECTION_STORE = "live-connection"
#: Backoff while Redis is unreachable.
RECONNECT_MIN_S = 0.5
RECONNECT_MAX_S = 10.0


@dataclass(slots=True)
class HubState:
    """What the hub knows: a global sequence number and the sequence of each kind's last note."""

    seq: int = 0
    versions: dict[str, int] = field(default_factory=dict)
    connected: bool = False
    error: str | None = None

    def event(self) -> dict[str, object]:
        return {
            "seq": self.seq,
            "versions": dict(self.versions),
            "connected": self.connected,
            "error": self.error,
        }


class UpdateHub:
    """Listens to ``cityops:updates`` and wakes every waiting stream when something changed."""

    def __init__(
        self,
        client_factory: Callable[[], redis.Redis],
        *,
        channel: str = UPDATES_CHANNEL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client_factory = client_factory
        self._channel = channel
        self._clock = clock
        self._state = HubState()
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- lifecycle ------------------------------------------------------------------------
    def start(self) -> UpdateHub:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._listen, name="cityops-update-hub", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 3.0) -> None:
        self._stop.set()
        with self._changed:
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    # ---- reading --------------------------------------------------------------------------
    def snapshot(self) -> dict[str, object]:
        with self._changed:
            return self._state.event()

    def wait(self, seen: int, timeout: float) -> int:
        """Block until the sequence number differs from ``seen`` (or ``timeout``); return it."""
        deadline = self._clock() + timeout
        with self._changed:
            while self._state.seq == seen and not self._stop.is_set():
                remaining = deadline - self._clock()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
            return self._state.seq

    # ---- writing (from the listener thread, or directly in tests) -------------------------
    def note(self, raw: str | bytes) -> None:
        """Record one note from the channel; a note that is not JSON still counts as a change."""
        try:
            kind = str(json.loads(raw).get("kind") or "other")
        except (ValueError, AttributeError):
            kind = "other"
        with self._changed:
            self._state.seq += 1
            self._state.versions[kind] = self._state.seq
            self._changed.notify_all()

    def _set_health(self, connected: bool, error: str | None) -> None:
        with self._changed:
            if (self._state.connected, self._state.error) == (connected, error):
                return
            self._state.connected = connected
            self._state.error = error
            # A change of health is news for every page, like new data.
            self._state.seq += 1
            self._changed.notify_all()

    def _listen(self) -> None:
        delay = RECONNECT_MIN_S
        while not self._stop.is_set():
            pubsub = None
            try:
                pubsub = self._client_factory().pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self._channel)
                self._set_health(True, None)
                delay = RECONNECT_MIN_S
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        self.note(message["data"])
            except (redis.RedisError, OSError) as exc:
                # Pages keep their last figures and say the feed is down; we retry quietly.
                reason = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:160]}"
                if self._state.connected or self._state.error is None:
                    log.warning("live update feed lost (%s); retrying", reason)
                self._set_health(False, reason)
                self._stop.wait(delay)
                delay = min(delay * 2, RECONNECT_MAX_S)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(redis.RedisError, OSError):
                        pubsub.close()


def sse_event(payload: dict[str, object]) -> str:
    """One Server-Sent Events message carrying ``payload`` as JSON."""
    return "data: " + json.dumps(payload, ensure_ascii=False, separators=(",", ":")) + "\n\n"


def event_stream(
    hub: UpdateHub,
    *,
    coalesce_s: float = COALESCE_S,
    keepalive_s: float = KEEPALIVE_S,
    lifetime_s: float = STREAM_LIFETIME_S,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[str]:
    """The text of one viewer's stream: the current state at once, then one event per change.

    Changes that arrive within ``coalesce_s`` of each other go out as one event, so the
    page refreshes at most twice a second however busy the feed is.
    """
    yield f"retry: {RETRY_MS}\n\n"
    state = hub.snapshot()
    seen = int(state["seq"])  # type: ignore[call-overload]
    yield sse_event({**state, "server_ms": int(time.time() * 1000)})
    ends = clock() + lifetime_s
    last_sent = clock()
    while clock() < ends:
        seq = hub.wait(seen, min(keepalive_s, max(0.0, ends - clock())))
        if seq == seen:
            yield ": keepalive\n\n"
            continue
        wait = coalesce_s - (clock() - last_sent)
        if wait > 0:
            sleep(wait)  # let a burst of notes collapse into one event
        state = hub.snapshot()
        seen = int(state["seq"])  # type: ignore[call-overload]
        last_sent = clock()
        yield sse_event({**state, "server_ms": int(time.time() * 1000)})


_viewers_lock = threading.Lock()
_viewers = 0


def connected_viewers() -> int:
    """Event streams open in this process right now: one per page being watched."""
    return _viewers


def counted(stream: Iterator[str]) -> Iterator[str]:
    """``stream``, counted in :func:`connected_viewers` from its first event until it closes."""
    global _viewers
    with _viewers_lock:
        _viewers += 1
    try:
        yield from stream
    finally:  # also when the viewer goes away: the server closes the generator
        with _viewers_lock:
            _viewers -= 1


def register(server: flask.Flask, hub: UpdateHub) -> None:
    """Serve the event stream on ``server``; the hub starts with the first viewer."""

    @server.get(STREAM_PATH)
    def live_updates() -> flask.Response:
        hub.start()
        return flask.Response(
            flask.stream_with_context(counted(event_stream(hub))),
            mimetype="text/event-stream",
            headers={
                "Cache-Control": "no-cache, no-transform",
                # A buffering reverse proxy (nginx) would hold events back: ask it not to.
                "X-Accel-Buffering": "no",
            },
        )


class LiveTrigger:
    """A page's refresh signal from the push stream: a store that changes when one of the
    page's ``kinds`` of data changed, at most once per ``min_interval_ms``.

    Create it at import time (it registers a browser-side filter) and put
    :meth:`store` in the page layout; the page's refresh callback takes :attr:`input`.
    The filter runs in the browser, so a page that does not show video events never
    calls the server because of one.
    """

    def __init__(
        self, component_id: str, kinds: Sequence[str], *, min_interval_ms: int = PAGE_MIN_INTERVAL_MS
    ) -> None:
        unknown = set(kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown live data kinds {sorted(unknown)}; known: {KINDS}")
        self.component_id = component_id
        self.kinds = tuple(kinds)
        self.min_interval_ms = min_interval_ms
        clientside_callback(
            ClientsideFunction("cityops_live", "filter"),
            Output(component_id, "data"),
            Input(UPDATES_STORE, "data"),
            State(component_id, "data"),
        )

    @property
    def input(self) -> Input:
        return Input(self.component_id, "data")

    def store(self) -> dcc.Store:
        return dcc.Store(
            id=self.component_id,
            data={
                "id": self.component_id,
                "kinds": list(self.kinds),
                "min_ms": self.min_interval_ms,
                "seen": {},
                "at": 0,
                "n": 0,
            },
        )


def shell_stores() -> list[dcc.Store]:
    """The stores the shell carries for every page: the stream's notes and its health."""
    return [dcc.Store(id=UPDATES_STORE), dcc.Store(id=CONNECTION_STORE)]


# The browser opens the stream once the shell is on screen (assets/live.js).
clientside_callback(
    ClientsideFunction("cityops_live", "start"),
    Output(CONNECTION_STORE, "data"),
    Input(UPDATES_STORE, "id"),
)
