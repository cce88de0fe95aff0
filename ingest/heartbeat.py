"""Heartbeats: every ingest worker and web process says in Redis, every few seconds, that it
is alive and how it is doing — for the administrators' system page (``/admin/system``).

Prometheus scrapes answer "how is the tier doing"; the system page answers "which process
is doing what, right now", without a Prometheus server on a small installation. Each
process writes one hash and one index entry:

* ``cityops:workers:<worker id>`` (ingest) or ``cityops:web:<host>:<pid>`` (web): a hash of
  the process's figures, kept :data:`KEEP_S` after the last beat;
* ``cityops:workers`` / ``cityops:web``: a sorted set, member → epoch seconds of its last
  beat, pruned after :data:`FORGET_AFTER_S`.

So a process that stopped beating is *stale* after :data:`STALE_AFTER_S` (its last figures
still shown), *gone* once its hash expired, and forgotten an hour later; one that stopped
cleanly says *stopped* at once. A heartbeat that cannot reach Redis logs it once and keeps
trying: it never stops the process it describes.

Ingest figures come from the process's own Prometheus metrics (:mod:`ingest.metrics`), so
they are per process: one ``cityops ingest`` is one worker. Rates and means are over the
last beat interval (differences of the counters), which is what an operator watching the
page wants to see move.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import redis
from prometheus_client.metrics import MetricWrapperBase

from ingest import metrics
from models.live import KEY_PREFIX

log = logging.getLogger(__name__)

#: Seconds between two beats of one process.
HEARTBEAT_S = 5.0
#: A process whose last beat is older than this is shown as stale (three missed beats).
STALE_AFTER_S = 3 * HEARTBEAT_S
#: How long a process's figures stay in Redis after its last beat (then: gone).
KEEP_S = 60
#: How long a process that is gone stays listed (then it is forgotten).
FORGET_AFTER_S = 3600

#: Kinds of process: ``cityops:<kind>`` is the index, ``cityops:<kind>:<member>`` a hash.
INGEST = "workers"
WEB = "web"

ProcessState = Literal["live", "stale", "stopped", "gone"]


def index_key(kind: str) -> str:
    return f"{KEY_PREFIX}{kind}"


def beat_key(kind: str, member: str) -> str:
    return f"{KEY_PREFIX}{kind}:{member}"


def web_member(host: str | None = None, pid: int | None = None) -> str:
    """``<host>:<pid>``: a web process has no stable name, its process id is enough."""
    return f"{host or socket.gethostname()}:{pid or os.getpid()}"


def rss_bytes() -> int | None:
    """Resident memory of this process (Linux ``/proc``; None elsewhere)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


# ---- writing -------------------------------------------------------------------------------


def write_beat(
    client: redis.Redis, kind: str, member: str, figures: Mapping[str, object], *, now: float
) -> None:
    """One beat: the figures (as text), the time, the expiry and the index entry."""
    key = beat_key(kind, member)
    fields = {name: "" if value is None else str(value) for name, value in figures.items()}
    fields["beat_at"] = f"{now:.3f}"
    with client.pipeline(transaction=False) as pipe:
        pipe.hset(key, mapping=fields)
        pipe.expire(key, KEEP_S)
        pipe.zadd(index_key(kind), {member: now})
        pipe.zremrangebyscore(index_key(kind), "-inf", now - FORGET_AFTER_S)
        pipe.execute()


class Heartbeat:
    """Writes ``figures()`` for one process every ``interval`` seconds from a daemon thread."""

    def __init__(
        self,
        client: redis.Redis,
        kind: str,
        member: str,
        figures: Callable[[], Mapping[str, object]],
        *,
        interval: float = HEARTBEAT_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.kind = kind
        self.member = member
        self.figures = figures
        self.interval = interval
        self.clock = clock
        self.started_at = clock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def identity(self) -> dict[str, object]:
        return {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started_at": datetime.fromtimestamp(self.started_at, UTC).isoformat(timespec="seconds"),
            "rss_bytes": rss_bytes(),
        }

    def beat(self, **extra: object) -> bool:
        """Write one beat now; False (logged once per outage) when Redis did not take it."""
        try:
            write_beat(
                self.client,
                self.kind,
                self.member,
                {**self.identity(), **self.figures(), **extra},
                now=self.clock(),
            )
        except Exception as exc:  # Redis away or a figure that failed: the process carries on
            if not self._failing:
                log.warning(
                    "heartbeat %s %s not written: %s: %s", self.kind, self.member, type(exc).__name__, exc
                )
            self._failing = True
            return False
        if self._failing:
            log.info("heartbeat %s %s written again", self.kind, self.member)
        self._failing = False
        return True

    def start(self) -> Heartbeat:
        """Beat once now (the process shows on the system page from its first moment), then
        every :attr:`interval` from a thread."""
        if self._thread is None:
            self.beat()
            self._thread = threading.Thread(target=self._run, name=f"heartbeat-{self.kind}", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Stop beating and say so: the page shows *stopped* at once instead of *stale* later."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.beat(stopped_at=f"{self.clock():.3f}")

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()


# ---- the figures of an ingest worker -------------------------------------------------------


def _totals(metric: MetricWrapperBase) -> dict[str, float]:
    """``sample name (+ first label value)`` → value, read through the public collect()."""
    totals: dict[str, float] = {}
    for family in metric.collect():
        for sample in family.samples:
            label = next(iter(sample.labels.values()), "")
            name = f"{sample.name}:{label}" if label else sample.name
            totals[name] = totals.get(name, 0.0) + sample.value
    return totals


class IngestFigures:
    """A worker's figures for its heartbeat: cumulative messages by outcome, and over the
    last interval the message rate, the mean batch store time and the mean delivery→live
    latency (the worker's lag)."""

    def __init__(self, worker: Any, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.worker = worker
        self.clock = clock
        self._last: tuple[float, dict[str, float]] | None = None

    def __call__(self) -> dict[str, object]:
        now = self.clock()
        current = {
            **_totals(metrics.MESSAGES),
            **_totals(metrics.STORE_SECONDS),
            **_totals(metrics.LATENCY_SECONDS),
        }
        previous_at, previous = self._last or (now, current)
        self._last = (now, current)

        def delta(name: str) -> float:
            return current.get(name, 0.0) - previous.get(name, 0.0)

        outcomes = ("stored", "duplicate", "rejected")
        messages = sum(delta(f"cityops_ingest_messages_total:{o}") for o in outcomes)
        elapsed = now - previous_at
        batches = delta("cityops_ingest_store_seconds_count")
        latencies = delta("cityops_ingest_latency_seconds_count")
        client = self.worker.client
        return {
            "worker_id": worker_id(self.worker),
            **{o: int(current.get(f"cityops_ingest_messages_total:{o}", 0)) for o in outcomes},
            "rate": round(messages / elapsed, 1) if elapsed > 0 else "",
            "batch_s": round(delta("cityops_ingest_store_seconds_sum") / batches, 4) if batches else "",
            "lag_s": round(delta("cityops_ingest_latency_seconds_sum") / latencies, 4) if latencies else "",
            "queue_depth": client.stats().queued,
            "connected": int(client.connected.is_set()),
            "degraded": self.worker.degraded or "",
            "processes": self.worker.processes,
        }


def worker_id(worker: Any) -> str:
    """The worker's stable name (``CITYOPS_WORKER_ID``), read back from its broker client id."""
    return str(worker.client.client_id).removeprefix("cityops-ingest-")


@contextlib.contextmanager
def beating(worker: Any) -> Iterator[Heartbeat | None]:
    """Heartbeats of ``worker`` while the block runs, into the Redis of its live state.

    A worker built around a pipeline without a live store (some tests) has none.
    """
    client = getattr(getattr(worker.pipeline, "live", None), "redis", None)
    if client is None:
        yield None
        return
    heartbeat = Heartbeat(client, INGEST, worker_id(worker), IngestFigures(worker)).start()
    try:
        yield heartbeat
    finally:
        heartbeat.stop()


# ---- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProcessStatus:
    """One process as the system page shows it."""

    kind: str
    member: str
    state: ProcessState
    #: seconds since its last beat
    age_s: float
    #: its last figures (empty once gone)
    figures: dict[str, str]


def read_beats(client: redis.Redis, kind: str, *, now: float | None = None) -> list[ProcessStatus]:
    """Every process of ``kind`` seen within :data:`FORGET_AFTER_S`, newest beat first."""
    now = time.time() if now is None else now
    members = client.zrevrangebyscore(index_key(kind), "+inf", now - FORGET_AFTER_S, withscores=True)
    with client.pipeline(transaction=False) as pipe:
        for member, _ in members:
            pipe.hgetall(beat_key(kind, member))
        hashes = pipe.execute()
    statuses = []
    for (member, beat_at), figures in zip(members, hashes, strict=True):
        age = max(0.0, now - float(beat_at))
        state: ProcessState
        if not figures:
            state = "gone"
        elif figures.get("stopped_at"):
            state = "stopped"
        elif age > STALE_AFTER_S:
            state = "stale"
        else:
            state = "live"
        statuses.append(ProcessStatus(kind, str(member), state, round(age, 1), dict(figures or {})))
    return statuses
