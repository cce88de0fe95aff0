"""One page refresh per data change, shared by every viewer of the page in this web process.

A wall of screens, leaders' tablets and the console all show the same pages: fifty open
``/emergency`` pages woken by the same push would read the same rows and build the same
figures fifty times. :func:`refresh` wraps a page's refresh callback so that viewers
asking with the same inputs (page, language, district scope, role, the page's own
switches and what their browser already shows) get one computation between them.

When is a shared result good enough for a viewer? When its computation *started* after

* the push that woke this viewer was sent (the live trigger carries the stream event's
  ``server_ms``, set after the data were committed; see ``assets/live.js``), so the new
  data are in it; and
* ``max_age_s`` ago, so a timer tick (ages, stale marks, SLA countdowns) is never served
  old text.

A viewer whose result is being computed by another request waits for it instead of
starting its own. Times are wall-clock (``time.time()``), the same clock the push stream
stamps its events with: several web processes and hosts must keep their clocks in step
(NTP), as the rest of the platform already assumes.
"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from dashboards import auth
from dashboards.i18n import current_language

F = TypeVar("F", bound=Callable[..., Any])

#: A refresh on a timer takes a result at most this old (the pages tick every 10–30 s and
#: show ages to the second only on the console, which asks for less).
MAX_AGE_S = 5.0
#: How long a viewer waits for another request's computation before doing its own.
WAIT_S = 30.0
#: A push stamp further ahead of this process's clock than this is not believed.
CLOCK_SLACK_S = 5.0


@dataclass(slots=True)
class _Computation:
    started: float
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None


class SharedResults:
    """Results by key, each with the time its computation started; see :func:`refresh`."""

    def __init__(self, *, keep_s: float = 4 * MAX_AGE_S, clock: Callable[[], float] = time.time) -> None:
        self._keep_s = keep_s
        self._clock = clock
        self._lock = threading.Lock()
        self._by_key: dict[Any, _Computation] = {}
        #: Computations run and results handed to a viewer that did not compute them.
        self.computed = 0
        self.shared = 0
        #: Off: every call computes (a benchmark timing one viewer's refresh; unit tests
        #: that change data between two calls of the same refresh).
        self.enabled = True

    def get(self, key: Any, fresh_after: float, compute: Callable[[], Any]) -> Any:
        """The result for ``key`` from a computation started at or after ``fresh_after``:
        one finished or running, or a new one by this caller."""
        if not self.enabled:
            return compute()
        with self._lock:
            now = self._clock()
            self._forget_before(now - self._keep_s)
            current = self._by_key.get(key)
            if current is None or current.started < fresh_after:
                current = self._by_key[key] = _Computation(started=now)
                mine = True
                self.computed += 1
            else:
                mine = False
                self.shared += 1
        if mine:
            return self._compute(key, current, compute)
        if not current.done.wait(WAIT_S):
            return compute()  # the other request is stuck: do not hang this viewer with it
        if current.error is not None:
            raise current.error
        return current.result

    def _compute(self, key: Any, computation: _Computation, compute: Callable[[], Any]) -> Any:
        try:
            computation.result = compute()
            return computation.result
        except BaseException as exc:
            # Waiters get the same answer (PreventUpdate included); the next caller tries again.
            computation.error = exc
            with self._lock:
                if self._by_key.get(key) is computation:
                    del self._by_key[key]
            raise
        finally:
            computation.done.set()

    def _forget_before(self, cutoff: float) -> None:
        for key in [k for k, c in self._by_key.items() if c.started < cutoff and c.done.is_set()]:
            del self._by_key[key]

    def __len__(self) -> int:
        return len(self._by_key)


#: This process's shared results (every page's refresh).
RESULTS = SharedResults()


def fresh_after(live: Any, now: float, max_age_s: float) -> float:
    """The oldest start a result may have for a viewer woken by ``live`` (its trigger store)."""
    floor = now - max_age_s
    pushed = live.get("server_ms") if isinstance(live, dict) else None
    if isinstance(pushed, (int, float)) and not isinstance(pushed, bool):
        stamp = pushed / 1000
        if stamp <= now + CLOCK_SLACK_S:
            return max(floor, min(stamp, now))
    return floor


def viewer_key() -> tuple[str, str | None, str | None]:
    """What, besides a callback's own arguments, changes what a page shows to a viewer:
    the language, the account's district scope and its role (masking, actions)."""
    account = auth.current_user()
    role = account.role.value if account is not None else None
    return current_language(), auth.scope_district(), role


def refresh(
    max_age_s: float = MAX_AGE_S,
    *,
    version: Callable[[], Any] | None = None,
    results: SharedResults = RESULTS,
) -> Callable[[F], F]:
    """Share a page refresh callback's results between viewers (see the module's text).

    The callback's first two arguments are the page's timer (``n_intervals``) and its push
    trigger (:class:`dashboards.push.LiveTrigger`): they say *when* to refresh, not *what*
    to show, so they are not part of the key; every other argument is. ``version``, when
    given, is a cheap read of a token that changes with the page's data (the live alert
    queue's version): it joins the key, so a change is never answered from before it, with
    or without a push.
    """

    def decorate(function: F) -> F:
        name = f"{function.__module__}.{function.__qualname__}"

        @functools.wraps(function)
        def shared(tick: Any, live: Any, *args: Any, **kwargs: Any) -> Any:
            token = _token(version)
            args_key = json.dumps([args, kwargs], sort_keys=True, default=str)
            key = (name, viewer_key(), token, args_key)
            since = fresh_after(live, time.time(), max_age_s)
            return results.get(key, since, lambda: function(tick, live, *args, **kwargs))

        return shared  # type: ignore[return-value]

    return decorate


def _token(version: Callable[[], Any] | None) -> Any:
    if version is None:
        return None
    try:
        return version()
    except Exception:  # the store is away: the page's own read will say so; share by time
        return None
