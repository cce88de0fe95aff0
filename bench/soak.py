"""Soak run: the production layout under a steady feed and open screens for a long time.

    make soak [SOAK_SECONDS=3600] [SOAK_RATE=2000] [SOAK_VIEWERS=10]
    .venv/bin/python bench/soak.py [--seconds 3600] [--rate 2000] [--viewers 10]
                                   [--sample-every 30] [--warmup S] [--web-workers 2]
                                   [--viewer-nice 10] [--system-nice 0] [--mix city]

What runs, each a real service on free loopback ports and never the shared ones
(tests/faults.py): a throw-away PostgreSQL 15 + PostGIS cluster (initdb in a temporary
folder, migrated; fsync off, as a test cluster), a Redis without persistence, Mosquitto
with production's deploy/mosquitto.conf; one ``cityops ingest`` worker; ``cityops simulate
--rate RATE --mix MIX`` (default ``city``: the proportions of sensor readings, video
sightings and 12345 orders Guang'an would send at full scale, docs/scaling.md — at
2,000 msgs/s the demo's shares would be 60 new 12345 orders a second); the web tier as
production runs it (gunicorn with deploy/gunicorn.conf.py, ``--web-workers`` threaded
workers); ``--viewers`` headless Chromium viewers signed in
with an account made by ``cityops users add``: ``--kiosk-viewers`` of them (default half)
open ``/`` or ``/wall`` once and keep it for the whole run, as a wall screen does, the
others switch between the two every ``--view-seconds`` (the pages stay open in between
and follow the server push). Each viewer notes its page's JavaScript heap every minute.
The viewers stand for screens on machines of their own: their Chromium processes run at
``--viewer-nice`` (default 10, ``SOAK_VIEWER_NICE``), so on a 2-core machine they take
the CPU the system under test leaves instead of a core of it (0 runs them as equals).
``--system-nice`` (``SOAK_SYSTEM_NICE``, default 0) sets the niceness of the system under
test itself — services, worker, simulator, web tier; a negative value (root only) puts it
ahead of whatever else shares the machine, as on a host of its own.

Every ``--sample-every`` seconds a row goes to ``var/soak/soak-<start>.csv``: the resident
memory of each part (a process and all its descendants: RSS summed as ``ps`` shows it,
and PSS) and the cores it used since the last sample; Redis ``used_memory`` and the
length of every capped stream; rows stored per
second (``observations`` + ``video_events`` inserts, from PostgreSQL's statistics); and
the arrival latency of the newest readings in Redis: stream entry time (the XADD, after
the database commit) − the reading's ``ts`` (set by the simulator when it builds the
reading; a tick's readings are spread over the second before they are published, so up
to 1 s of it is the simulator's own batching), p50 / p95 of the last 500 entries; and a
census of Redis: keys and bytes per key family (the report lists the families that grew).
The viewers' page-heap samples go to ``var/soak/soak-<start>-heaps.csv`` at the end.

Verdict (exit status 1 when it fails), after a warm-up (default: a fifth of the run, at
most 5 minutes; caches fill, the device map is read once, Chromium settles):

- memory is flat: for every part still running, its PSS (proportional set size: shared
  pages split among their sharers, so PostgreSQL's shared buffers count once, not once per
  backend) at the end ≤ PSS at the end of the warm-up + max(20 %, 50 MB)
  (:data:`RSS_GROWTH_FRACTION`, :data:`RSS_GROWTH_FLOOR_KIB`); RSS is reported beside it.
  The viewers that switch pages are reported, not judged, on their Chromium's PSS: a full
  page load every two minutes grows the browser's own caches, which no wall screen does;
  the kiosk viewers (one page for the hour, as a wall screen) are judged like the rest;
- every viewer's page heap (JavaScript, after a forced full collection) at the end ≤
  its heap after the warm-up + max(20 %, 20 MB), per page (:func:`judge_heaps`);
- the ingest worker, the simulator and the web tier run to the end (a viewer that stops
  is reported, not judged: under heavy load a WebDriver call may time out);
- Redis stays within its caps: every ``cityops:stream:*`` no longer than
  ``STREAM_MAXLEN`` + :data:`STREAM_SLACK` (trimming is approximate, by whole nodes), and
  ``used_memory`` at the end ≤ warm-up value + max(20 %, 20 MB).

Latency is reported per interval, not judged: on the shared 2-core machine it follows the
other work more than the system.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Runnable as a plain script from the repository root or from bench/.
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from models.db import create_engine_for  # noqa: E402
from models.live import STREAM_MAXLEN  # noqa: E402
from tests.browser import support  # noqa: E402
from tests.faults import (  # noqa: E402
    CityopsProcess,
    IngestProcess,
    WebProcess,
    add_account,
    process_tree,
    simulator,
    start_private_services,
    tree_cpu_s,
    tree_memory_kib,
    wait_for,
)

OUT_DIR = ROOT / "var" / "soak"
#: Allowed growth of a part's PSS from the end of the warm-up to the end of the run.
RSS_GROWTH_FRACTION = 0.20
RSS_GROWTH_FLOOR_KIB = 50 * 1024
REDIS_GROWTH_FLOOR_BYTES = 20 * 1024 * 1024
#: Approximate trimming (``MAXLEN ~``) removes whole stream nodes (100 entries by default).
STREAM_SLACK = 200
#: Seconds a viewer's Chromium gets to quit at the end before it is killed.
VIEWER_QUIT_TIMEOUT_S = 15.0
#: What each viewer shows, in turn (a kiosk viewer: the first of them it comes to).
VIEWER_PAGES = ("/", "/wall")
#: Seconds between two samples of a viewer's JavaScript heap.
HEAP_EVERY_S = 60.0
#: Samples whose median stands for a page's heap after the warm-up and at the end.
HEAP_EDGE = 3
#: Allowed growth of a page's heap: max(RSS_GROWTH_FRACTION, this).
HEAP_GROWTH_FLOOR_BYTES = 20 * 2**20


class GunicornWeb(WebProcess):
    """The web tier as deployed: gunicorn with the project's settings, threaded workers."""

    def __init__(self, workdir: Path, env: dict[str, str], workers: int) -> None:
        super().__init__(workdir, env)
        self.workers = workers

    def start(self, timeout: float = 120.0) -> GunicornWeb:
        gunicorn = Path(sys.executable).with_name("gunicorn")
        self.args = [
            "-c", str(ROOT / "deploy" / "gunicorn.conf.py"), "-w", str(self.workers),
            "-b", f"127.0.0.1:{self.port}", "--access-logfile", "/dev/null", "app:server",
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("CITYOPS_")} | self.env
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                [str(gunicorn), *self.args], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        return self._wait_answering(timeout)


@dataclass
class Viewer:
    """One headless Chromium signed in, switching pages; counts what went wrong."""

    number: int
    base_url: str
    view_seconds: float
    stop: threading.Event
    #: A kiosk viewer opens one page and keeps it for the whole run, as a wall screen does;
    #: the others switch pages every ``view_seconds``.
    kiosk: bool = False
    started: float = field(default_factory=time.monotonic)
    driver: Any = None
    loads: int = 0
    restarts: int = 0
    failures: list[str] = field(default_factory=list)
    #: (seconds since the run started, page, the page's JavaScript heap in bytes), every
    #: :data:`HEAP_EVERY_S` and before each page change: a page that leaks grows here,
    #: whatever Chromium's own caches do to the process's memory.
    heap: list[tuple[float, str, int]] = field(default_factory=list)

    @property
    def pid(self) -> int | None:
        with contextlib.suppress(AttributeError):
            return self.driver.service.process.pid  # chromedriver: Chromium is its child
        return None

    def run(self) -> None:
        """View until the run ends. A browser that fails (a page load past the WebDriver's
        timeout on a starved machine, a crash) is a problem counted, then replaced, as a
        kiosk's watchdog would: the run keeps its number of screens."""
        turn = self.number  # viewers start on different pages
        while not self.stop.is_set():
            try:
                self.driver = support.chromium(VIEWER_FLAGS)
                self._sign_in()
                while not self.stop.is_set():
                    path = VIEWER_PAGES[turn % len(VIEWER_PAGES)]
                    turn += 1
                    self.driver.get(self.base_url + path)
                    self.loads += 1
                    if not support.wait_until(lambda: self.driver.execute_script(_STREAM_OPEN), 60):
                        self.failures.append(
                            f"{datetime.now(UTC):%H:%M:%S} {path}: no event stream within 60 s"
                        )
                    self._watch(path, math.inf if self.kiosk else self.view_seconds)
            except Exception as exc:  # a finding, not a crash of the run
                if not self.stop.is_set():
                    self.restarts += 1
                    when = f"{datetime.now(UTC):%H:%M:%S}"
                    self.failures.append(
                        f"{when} viewer {self.number} restarted: {type(exc).__name__}: {exc}"[:300]
                    )
            finally:
                if self.driver is not None:
                    self.close()
                    self.driver = None
            self.stop.wait(5.0)

    def _watch(self, path: str, seconds: float) -> None:
        """Stay on the page for ``seconds`` (or until the run ends), noting its heap."""
        until = time.monotonic() + seconds
        while True:
            self._note_heap(path)
            if self.stop.wait(max(0.0, min(HEAP_EVERY_S, until - time.monotonic()))):
                return
            if time.monotonic() >= until:
                self._note_heap(path)
                return

    def _note_heap(self, path: str) -> None:
        with contextlib.suppress(Exception):  # a busy page is sampled next time
            used = self.driver.execute_script(_JS_HEAP)
            if used:
                self.heap.append((time.monotonic() - self.started, path, int(used)))

    def _sign_in(self) -> None:
        for attempt in range(3):  # a sign-in on a machine this busy may time out once
            try:
                support.sign_in(self.driver, self.base_url + "/", "leader")
                return
            except AssertionError as exc:
                if attempt == 2:
                    raise RuntimeError(f"viewer {self.number} could not sign in") from exc

    def close(self) -> None:
        """``driver.quit()``, but a Chromium too starved to answer is killed, not waited for
        (a quit can otherwise hang for the WebDriver's whole read timeout)."""
        pid = self.pid
        done = threading.Event()

        def quit_driver() -> None:
            with contextlib.suppress(Exception):
                self.driver.quit()
            done.set()

        threading.Thread(target=quit_driver, name=f"viewer-{self.number}-quit", daemon=True).start()
        if not done.wait(VIEWER_QUIT_TIMEOUT_S) and pid is not None:
            for member in process_tree(pid):
                with contextlib.suppress(OSError):
                    os.kill(member, signal.SIGKILL)


def renice_tree(pid: int, niceness: int, *, at_least: bool = True) -> None:
    """Every thread of ``pid`` and its descendants at ``niceness`` (on Linux a thread has
    its own; Chromium raises some of its own above the default): at least that with
    ``at_least``, exactly that without."""
    for member in process_tree(pid):
        for task in Path(f"/proc/{member}/task").glob("[0-9]*"):
            with contextlib.suppress(OSError, ValueError):
                tid = int(task.name)
                current = os.getpriority(os.PRIO_PROCESS, tid)
                if current < niceness or (not at_least and current != niceness):
                    os.setpriority(os.PRIO_PROCESS, tid, niceness)


def keep_system_niced(pids: Sequence[Callable[[], int | None]], niceness: int, stop: threading.Event) -> None:
    """The system under test ahead of other work on a shared machine, as on a host of its
    own (PostgreSQL's backends and new threads inherit it; checked again every few seconds)."""
    while True:
        for pid in pids:
            if (p := pid()) is not None:
                renice_tree(p, niceness, at_least=False)
        if stop.wait(5.0):
            return


def keep_viewers_niced(viewers: Sequence[Viewer], niceness: int, stop: threading.Event) -> None:
    """The viewers stand for wall screens and tablets on machines of their own: on this one
    they take what the system under test leaves (renderers come and go with each page)."""
    while not stop.wait(2.0):
        for viewer in viewers:
            if viewer.pid:
                renice_tree(viewer.pid, niceness)


#: Chromium's (non-standard) size of the page's JavaScript heap in use, after a full
#: collection (so a sample is what the page holds, not when V8 last collected).
_JS_HEAP = "if (window.gc) { window.gc(); } return performance.memory ? performance.memory.usedJSHeapSize : 0"
#: ``gc()`` on the page and heap sizes not rounded to buckets.
VIEWER_FLAGS = ("--js-flags=--expose-gc", "--enable-precise-memory-info")
_STREAM_OPEN = (
    "const s = window.cityopsLive && window.cityopsLive.state;"
    "return !!(s && s.connected === true && s.source && s.source.readyState === 1);"
)


@dataclass
class Sample:
    at: datetime
    elapsed_s: float
    rss_kib: dict[str, int]
    pss_kib: dict[str, int]
    processes: dict[str, int]
    cpu_share: dict[str, float]
    redis_used_bytes: int
    streams: dict[str, int]
    stored_rows: int
    stored_per_s: float
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    load1: float
    redis_families: dict[str, tuple[int, int]] = field(default_factory=dict)


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def arrival_latencies_ms(client: redis.Redis, count: int = 500) -> list[float]:
    """Stream entry time − reading ``ts`` of the newest ``count`` readings in Redis."""
    out = []
    for entry_id, fields in client.xrevrange("cityops:stream:observations", count=count):
        with contextlib.suppress(KeyError, ValueError):
            ts = datetime.fromisoformat(fields["ts"]).timestamp() * 1000
            out.append(int(entry_id.split("-")[0]) - ts)
    return out


def key_family(key: str) -> str:
    """``cityops:device:SIM-AQ-0007`` → ``cityops:device:*``: the key with each part that
    names one thing (it holds a digit) replaced by ``*``, to count keys by kind."""
    return ":".join("*" if any(c.isdigit() for c in part) else part for part in key.split(":"))


def redis_census(client: redis.Redis) -> dict[str, tuple[int, int]]:
    """Keys and bytes (``MEMORY USAGE``, sampled for aggregates) per key family."""
    census: dict[str, list[int]] = {}
    keys = list(client.scan_iter(count=1000))
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        pipe = client.pipeline(transaction=False)
        for key in chunk:
            pipe.memory_usage(key, samples=5)
        for key, used in zip(chunk, pipe.execute(), strict=True):
            entry = census.setdefault(key_family(key), [0, 0])
            entry[0] += 1
            entry[1] += int(used or 0)  # a key that expired in between: 0
    return {family: (n, used) for family, (n, used) in census.items()}


def stored_rows(engine: sa.Engine) -> int:
    query = sa.text(
        "SELECT coalesce(sum(n_tup_ins), 0) FROM pg_stat_user_tables"
        " WHERE relname IN ('observations', 'video_events')"
    )
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


class Sampler:
    def __init__(
        self,
        parts: dict[str, Callable[[], int | None]],
        cache: redis.Redis,
        engine: sa.Engine,
        csv_path: Path,
    ) -> None:
        self.parts = parts
        self.cache = cache
        self.engine = engine
        self.csv_path = csv_path
        self.samples: list[Sample] = []
        self.started = time.monotonic()
        self._last: tuple[float, int] | None = None
        self._cpu: dict[str, tuple[float, float]] = {}

    def take(self) -> Sample:
        rss: dict[str, int] = {}
        pss: dict[str, int] = {}
        processes: dict[str, int] = {}
        cpu_share: dict[str, float] = {}
        for name, pid_of in self.parts.items():
            pid = pid_of()
            rss[name], pss[name], processes[name] = tree_memory_kib(pid) if pid else (0, 0, 0)
            used, at = (tree_cpu_s(pid) if pid else 0.0), time.monotonic()
            before = self._cpu.get(name)
            # Cores used since the last sample (1.0 = one core busy the whole interval).
            cpu_share[name] = max(0.0, (used - before[0]) / (at - before[1])) if before else 0.0
            self._cpu[name] = (used, at)
        streams = {
            key.removeprefix("cityops:stream:"): int(self.cache.xlen(key))
            for key in self.cache.scan_iter(match="cityops:stream:*", _type="stream")
        }
        rows = stored_rows(self.engine)
        now = time.monotonic()
        rate = (rows - self._last[1]) / (now - self._last[0]) if self._last else 0.0
        self._last = (now, rows)
        latencies = arrival_latencies_ms(self.cache)
        with open("/proc/loadavg") as f:
            load1 = float(f.read().split()[0])
        sample = Sample(
            datetime.now(UTC),
            now - self.started,
            rss,
            pss,
            processes,
            cpu_share,
            int(self.cache.info("memory")["used_memory"]),
            streams,
            rows,
            rate,
            percentile(latencies, 0.50) if latencies else None,
            percentile(latencies, 0.95) if latencies else None,
            load1,
            redis_census(self.cache),
        )
        self.samples.append(sample)
        self._write(sample)
        return sample

    def _write(self, s: Sample) -> None:
        row = {
            "time_utc": s.at.isoformat(timespec="seconds"),
            "elapsed_s": round(s.elapsed_s),
            **{f"rss_kib_{k}": v for k, v in s.rss_kib.items()},
            **{f"pss_kib_{k}": v for k, v in s.pss_kib.items()},
            **{f"procs_{k}": v for k, v in s.processes.items()},
            **{f"cores_{k}": round(v, 2) for k, v in s.cpu_share.items()},
            "redis_used_bytes": s.redis_used_bytes,
            **{
                f"xlen_{k}": s.streams.get(k, 0)
                for k in ("observations", "video", "tickets", "alerts", "dead")
            },
            "stored_rows": s.stored_rows,
            "stored_per_s": round(s.stored_per_s, 1),
            "latency_p50_ms": "" if s.latency_p50_ms is None else round(s.latency_p50_ms),
            "latency_p95_ms": "" if s.latency_p95_ms is None else round(s.latency_p95_ms),
            "load1": s.load1,
        }
        new = not self.csv_path.exists()
        with self.csv_path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)


@dataclass(frozen=True)
class Verdict:
    lines: list[str]
    failures: list[str]


def redis_growth_lines(base: Sample, end: Sample, top: int = 10) -> list[str]:
    """The key families that grew most in bytes from ``base`` to ``end``, as table lines."""
    families = set(base.redis_families) | set(end.redis_families)

    def growth(family: str) -> int:
        return end.redis_families.get(family, (0, 0))[1] - base.redis_families.get(family, (0, 0))[1]

    lines = [f"  {'Redis key family':<44} {'keys warm':>9} {'end':>7} {'KB warm':>8} {'end':>8}"]
    for family in sorted(families, key=growth, reverse=True)[:top]:
        (n0, b0), (n1, b1) = base.redis_families.get(family, (0, 0)), end.redis_families.get(family, (0, 0))
        lines.append(f"  {family[:44]:<44} {n0:>9,} {n1:>7,} {b0 / 1024:>8,.0f} {b1 / 1024:>8,.0f}")
    return lines


def judge_heaps(viewers: Sequence[Viewer], warmup_s: float) -> Verdict:
    """Each viewer's page heap (JavaScript, after a full collection) per page: the median
    of its first :data:`HEAP_EDGE` samples after the warm-up against that of its last ones
    (a switching viewer's samples of one page come from several visits)."""
    lines = [
        f"  {'viewer':<10} {'mode':<6} {'page':<6} {'heap warm':>9} {'end':>6} {'max':>6} (MB, JavaScript)"
    ]
    failures: list[str] = []
    for viewer in viewers:
        for page in VIEWER_PAGES:
            heap = [used for t, path, used in viewer.heap if path == page and t >= warmup_s]
            if len(heap) < 2:
                continue
            first = statistics.median(heap[:HEAP_EDGE])
            last = statistics.median(heap[-HEAP_EDGE:])
            lines.append(
                f"  viewer-{viewer.number:<3} {'kiosk' if viewer.kiosk else 'switch':<6} {page:<6}"
                f" {first / 2**20:>9.1f} {last / 2**20:>6.1f} {max(heap) / 2**20:>6.1f}"
            )
            allowed = max(RSS_GROWTH_FRACTION * first, HEAP_GROWTH_FLOOR_BYTES)
            if last - first > allowed:
                failures.append(
                    f"viewer-{viewer.number} {page}: page heap grew {(last - first) / 2**20:.0f} MB"
                    f" (allowed {allowed / 2**20:.0f})"
                )
    return Verdict(lines, failures)


def judge(
    samples: Sequence[Sample], warmup_s: float, asked_rate: float, unjudged: Sequence[str] = ()
) -> Verdict:
    """The verdict on memory, Redis and the stored rate; ``unjudged`` parts are reported
    only (the switching viewers: see the module docstring)."""
    settled = [s for s in samples if s.elapsed_s >= warmup_s] or list(samples)
    base, end = settled[0], samples[-1]
    lines = [
        "RSS (MB, summed over each part's processes) at the first sample, the end of the warm-up,",
        "the end and its maximum; growth and the verdict are judged on PSS (shared pages split):",
        f"{'part':<12} {'procs':>5} {'RSS start':>9} {'warm':>7} {'end':>7} {'max':>7}"
        f" {'PSS warm':>9} {'end':>7} {'growth':>8}",
    ]
    failures: list[str] = []
    for name in end.rss_kib:
        if end.processes.get(name, 0) == 0:
            lines.append(f"{name:<12} stopped before the end (see the viewer problems below)")
            continue
        start_kib = samples[0].rss_kib.get(name, 0)
        warm, last = base.rss_kib.get(name, 0), end.rss_kib.get(name, 0)
        peak = max(s.rss_kib.get(name, 0) for s in samples)
        pss_warm, pss_end = base.pss_kib.get(name, 0), end.pss_kib.get(name, 0)
        growth = pss_end - pss_warm
        lines.append(
            f"{name:<12} {end.processes.get(name, 0):>5} {start_kib / 1024:>9.0f} {warm / 1024:>7.0f}"
            f" {last / 1024:>7.0f} {peak / 1024:>7.0f} {pss_warm / 1024:>9.0f} {pss_end / 1024:>7.0f}"
            f" {growth / 1024:>+7.0f}M"
        )
        allowed = max(RSS_GROWTH_FRACTION * pss_warm, RSS_GROWTH_FLOOR_KIB)
        if growth > allowed and name not in unjudged:
            failures.append(
                f"{name}: PSS grew {growth / 1024:.0f} MB after warm-up (allowed {allowed / 1024:.0f})"
            )
    redis_allowed = max(RSS_GROWTH_FRACTION * base.redis_used_bytes, REDIS_GROWTH_FLOOR_BYTES)
    lines.append(
        f"redis used_memory: start {samples[0].redis_used_bytes / 2**20:.1f} MB, warm"
        f" {base.redis_used_bytes / 2**20:.1f} MB, end {end.redis_used_bytes / 2**20:.1f} MB,"
        f" max {max(s.redis_used_bytes for s in samples) / 2**20:.1f} MB"
    )
    if end.redis_used_bytes - base.redis_used_bytes > redis_allowed:
        failures.append(
            f"redis used_memory grew {(end.redis_used_bytes - base.redis_used_bytes) / 2**20:.1f} MB"
        )
    lines.extend(redis_growth_lines(base, end))
    longest = {k: max(s.streams.get(k, 0) for s in samples) for k in end.streams}
    lines.append("longest streams: " + ", ".join(f"{k} {v:,}" for k, v in sorted(longest.items())))
    for name, length in longest.items():
        if length > STREAM_MAXLEN + STREAM_SLACK:
            failures.append(f"stream {name} reached {length:,} entries (cap {STREAM_MAXLEN:,})")
    lines.append("")
    lines.append(f"{'elapsed':>8} {'stored/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'load':>6}")
    for s in samples:
        p50 = "–" if s.latency_p50_ms is None else f"{s.latency_p50_ms:,.0f}"
        p95 = "–" if s.latency_p95_ms is None else f"{s.latency_p95_ms:,.0f}"
        lines.append(f"{s.elapsed_s:>7.0f}s {s.stored_per_s:>9,.0f} {p50:>8} {p95:>8} {s.load1:>6.1f}")
    rates = [s.stored_per_s for s in settled if s.elapsed_s > samples[0].elapsed_s]
    if rates:
        lines.append(
            f"stored rows/s after warm-up: median {statistics.median(rates):,.0f},"
            f" min {min(rates):,.0f}, max {max(rates):,.0f} (asked: {asked_rate:,.0f} msgs/s,"
            " of which about 97 % are readings and video sightings)"
        )
    first, last = base.latency_p95_ms, end.latency_p95_ms
    if first is not None and last is not None and last > 2 * first + 5000:
        lines.append(
            f"arrival latency p95 went from {first:,.0f} ms to {last:,.0f} ms: the feed was not"
            " sustained, readings queued (broker and publisher) faster than they were stored"
        )
    return Verdict(lines, failures)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", 3600)))
    parser.add_argument("--rate", type=float, default=float(os.environ.get("SOAK_RATE", 2000)))
    parser.add_argument("--viewers", type=int, default=int(os.environ.get("SOAK_VIEWERS", 10)))
    parser.add_argument("--sample-every", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=None, help="seconds (default: a fifth, ≤ 300)")
    parser.add_argument("--view-seconds", type=float, default=120.0, help="each viewer's time per page")
    parser.add_argument(
        "--kiosk-viewers",
        type=int,
        default=None,
        help="viewers that keep one page for the whole run, like a wall screen (default: half)",
    )
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument(
        "--mix",
        default=os.environ.get("SOAK_MIX", "city"),
        help="the simulator's mix: city (Guang'an's proportions at full scale) or demo",
    )
    parser.add_argument(
        "--viewer-nice",
        type=int,
        default=int(os.environ.get("SOAK_VIEWER_NICE", 10)),
        help="niceness of the viewers' Chromium processes (0: as the system under test)",
    )
    parser.add_argument(
        "--system-nice",
        type=int,
        default=int(os.environ.get("SOAK_SYSTEM_NICE", 0)),
        help="niceness of the system under test (services, worker, simulator, web); below 0 "
        "(needs root) puts it ahead of other work sharing the machine",
    )
    args = parser.parse_args(argv)
    warmup = args.warmup if args.warmup is not None else min(300.0, args.seconds / 5)
    if args.kiosk_viewers is None:
        args.kiosk_viewers = args.viewers // 2
    needed = ("mosquitto", "redis-server") + (("chromium", "chromedriver") if args.viewers else ())
    for tool in needed:
        if not (shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/usr/local/bin")):
            print(f"soak: {tool} is not installed (make test installs the services)", file=sys.stderr)
            return 2

    started = datetime.now(UTC)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    workdir = OUT_DIR / f"run-{started:%Y%m%dT%H%M%SZ}"
    workdir.mkdir()
    csv_path = OUT_DIR / f"soak-{started:%Y%m%dT%H%M%SZ}.csv"
    print(
        f"soak: {args.seconds:.0f} s at {args.rate:.0f} msgs/s, {args.viewers} viewers"
        f" (nice {args.viewer_nice}), system nice {args.system_nice}, {args.mix} mix → {csv_path}"
    )

    postgres, cache, broker, env = start_private_services(workdir)
    env |= {"CITYOPS_LOG_LEVEL": "WARNING", "CITYOPS_WORKER_ID": "soak-1"}
    account = {"username": "soak.viewer", "password": secrets.token_urlsafe(18)}
    add_account(env, account["username"], "leader", account["password"])
    ingest = IngestProcess(workdir, env).start()
    feed: CityopsProcess = simulator(workdir, env, args.rate, seed=7, mix=args.mix)
    web = GunicornWeb(workdir, env, args.web_workers)
    stop = threading.Event()
    viewers: list[Viewer] = []
    threads: list[threading.Thread] = []
    engine = create_engine_for(postgres.url)
    client = redis.Redis.from_url(cache.url, decode_responses=True)
    early_exit: list[str] = []
    try:
        web.start()
        feed.start()
        accounts = workdir / "accounts.json"
        accounts.write_text(json.dumps({"leader": account}), encoding="utf-8")
        support._ACCOUNT_FILES[web.base_url] = accounts
        for number in range(args.viewers):
            viewer = Viewer(number, web.base_url, args.view_seconds, stop, kiosk=number < args.kiosk_viewers)
            viewers.append(viewer)
            threads.append(threading.Thread(target=viewer.run, name=f"viewer-{number}", daemon=True))
            threads[-1].start()
        if args.viewer_nice:
            threads.append(
                threading.Thread(
                    target=keep_viewers_niced, args=(viewers, args.viewer_nice, stop), daemon=True
                )
            )
            threads[-1].start()
        parts: dict[str, Callable[[], int | None]] = {
            "ingest": lambda: ingest.pid if ingest.alive() else None,
            "simulator": lambda: feed.pid if feed.alive() else None,
            "web": lambda: web.pid if web.alive() else None,
            "postgres": lambda: postgres.pid,
            "redis": lambda: cache.pid,
            "mosquitto": lambda: broker.pid,
        }
        if args.system_nice:
            threads.append(
                threading.Thread(
                    target=keep_system_niced, args=(list(parts.values()), args.system_nice, stop), daemon=True
                )
            )
            threads[-1].start()
        for viewer in viewers:
            parts[f"viewer-{viewer.number}"] = lambda v=viewer: v.pid
        sampler = Sampler(parts, client, engine, csv_path)
        wait_for(lambda: bool(client.exists("cityops:stream:observations")), 60, interval=1)
        end_at = time.monotonic() + args.seconds
        next_at = time.monotonic()
        interrupted = False

        def interrupt(*_: object) -> None:
            nonlocal interrupted
            interrupted = True

        signal.signal(signal.SIGINT, interrupt)
        signal.signal(signal.SIGTERM, interrupt)
        while not interrupted:
            s = sampler.take()
            viewers_mb = sum(v for k, v in s.rss_kib.items() if k.startswith("viewer-")) / 1024
            print(
                f"{s.elapsed_s:6.0f}s stored {s.stored_per_s:7,.0f}/s  p50 {s.latency_p50_ms or 0:7,.0f} ms"
                f"  p95 {s.latency_p95_ms or 0:7,.0f} ms  ingest {s.rss_kib['ingest'] / 1024:5.0f} MB"
                f"  web {s.rss_kib['web'] / 1024:5.0f} MB  viewers {viewers_mb:6.0f} MB"
                f"  redis {s.redis_used_bytes / 2**20:5.1f} MB  load {s.load1:.1f}  cores "
                + " ".join(f"{k} {v:.2f}" for k, v in s.cpu_share.items() if not k.startswith("viewer-"))
                + f" viewers {sum(v for k, v in s.cpu_share.items() if k.startswith('viewer-')):.2f}",
                flush=True,
            )
            early_exit = [
                n for n, p in (("ingest", ingest), ("simulator", feed), ("web", web)) if not p.alive()
            ]
            if early_exit:
                print(f"soak: exited early: {', '.join(early_exit)}", file=sys.stderr)
                break
            if time.monotonic() >= end_at:
                break
            next_at += args.sample_every
            while time.monotonic() < min(next_at, end_at) and not interrupted:
                time.sleep(0.5)
    finally:
        stop.set()
        # All at once, and before waiting for the viewers: one busy in a page load would
        # otherwise hold the end of the run for its whole WebDriver timeout.
        quitters = [threading.Thread(target=v.close, daemon=True) for v in viewers if v.driver is not None]
        for quitter in quitters:
            quitter.start()
        for quitter in quitters:
            quitter.join(VIEWER_QUIT_TIMEOUT_S + 5)
        for thread in threads:
            thread.join(30)
        engine.dispose()
        for part in (feed, web, ingest, broker, cache):
            with contextlib.suppress(Exception):
                part.stop()
        postgres.remove()

    heap_csv = csv_path.with_name(csv_path.stem + "-heaps.csv")
    with heap_csv.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["viewer", "mode", "elapsed_s", "page", "js_heap_bytes"])
        for v in viewers:
            for elapsed, page, used in v.heap:
                writer.writerow([v.number, "kiosk" if v.kiosk else "switch", round(elapsed), page, used])
    switching = [f"viewer-{v.number}" for v in viewers if not v.kiosk]
    verdict = judge(sampler.samples, warmup, args.rate, unjudged=switching)
    heaps = judge_heaps(viewers, warmup)
    print(f"\nsoak {started:%Y-%m-%d %H:%M} UTC, {args.seconds:.0f} s asked, rate {args.rate:.0f} msgs/s,")
    print(f"{args.viewers} viewers, warm-up {warmup:.0f} s; samples in {csv_path}\n")
    print("\n".join(verdict.lines))
    loads = sum(v.loads for v in viewers)
    viewer_failures = [f for v in viewers for f in v.failures]
    restarts = sum(v.restarts for v in viewers)
    if switching:
        print(f"(PSS of switching viewers, reported only: {', '.join(switching)})")
    print("\n" + "\n".join(heaps.lines))
    print(f"\nviewer page loads: {loads}; problems: {len(viewer_failures)}; browsers replaced: {restarts}")
    for failure in viewer_failures[:20]:
        print("  " + failure)
    failures = verdict.failures + heaps.failures + [f"{name} exited before the end" for name in early_exit]
    if failures:
        print("\nFAILED: " + "; ".join(failures))
        return 1
    floor_mb = RSS_GROWTH_FLOOR_KIB // 1024
    print(f"\nmemory (PSS) flat within max({RSS_GROWTH_FRACTION:.0%}, {floor_mb} MB) per part;")
    print(f"Redis within its caps (streams ≤ {STREAM_MAXLEN:,} + {STREAM_SLACK})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
