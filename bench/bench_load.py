"""Load test of the web tier: concurrent viewers of the overview (``/``) and the wall (``/wall``).

Loopback only, bounded in time (``--duration``, default 60 s). By default the script starts
a system of its own the way production runs it, and takes it down at the end:

* a fresh PostGIS database next to ``cityops_test`` (dropped at the end), reference data,
  one ``viewer`` account; Redis database 12 (flushed before and after); a private
  Mosquitto with ``deploy/mosquitto.conf`` on a free port;
* ``cityops ingest`` (one worker) and ``cityops simulate --rate 40`` (the demo's everyday
  feed, ~340 devices), so the pages have a live city and the push stream moves;
* the web tier: ``gunicorn -c deploy/gunicorn.conf.py -w 4 app:server`` on a free port.

``--url`` points it at a system already running instead (``--username``/``--password``).

Each viewer is a thread doing what the browser does, with its own session:

1. **sign-in**: ``GET /login``, ``POST /login`` (form with the CSRF token);
2. **page load**: the page's HTML, ``/_dash-layout``, ``/_dash-dependencies``, the pages
   router and every callback Dash fires on the layout at load (bench_pages.first_render);
3. an **event stream** ``/api/live/updates`` held open (a second thread reading it), and
   the page's **refresh** callback (the one taking its push trigger) posted whenever an
   event arrived, at most once per the trigger's ``min_ms`` (1 s for these pages) — what
   ``assets/live.js`` and the page's LiveTrigger do in the browser.

With ``--sign-in-first`` every viewer signs in before the clock starts (four at a time),
so the timed run is the page loads and the steady state alone: a sign-in is the dearest
request there is (an Argon2id hash, 64 MiB and three passes) and a shift arriving at
once measures mostly that. Viewers start spread over ``--ramp`` seconds (a shift
arriving, not one instant) and run until the deadline. Static files (Dash's JavaScript
bundles) are left out: a browser keeps them cached. Reported per request type: count,
errors (HTTP ≥ 400 other than a callback's 204, timeouts, refused connections),
p50/p95/max in ms; requests per second over the run; and what ``/metrics`` (all gunicorn
workers, multiprocess) says at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Runnable as a plain script from the repository root or from bench/.
BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(ROOT), str(BENCH)]

import requests  # noqa: E402
from bench_ingest import BenchMosquitto, cpu_seconds, process_tree, rss_kb  # noqa: E402
from bench_pages import Viewer as PageViewer  # noqa: E402
from bench_pages import first_render, fresh_database, measure_update, update_spec  # noqa: E402

REDIS_URL = os.environ.get("CITYOPS_BENCH_LOAD_REDIS_URL", "redis://127.0.0.1:6379/12")
PAGES = ("/", "/wall")
#: A request that takes longer than this counts as an error (a browser would have given up).
REQUEST_TIMEOUT_S = 30
#: Workers import the whole app; on a loaded machine that alone took over two minutes.
START_BUDGET_S = 300
KINDS = (
    "login form",
    "sign-in",
    "page HTML",
    "_dash-layout",
    "_dash-dependencies",
    # the pages router (the page's layout) and every callback Dash fires at load
    "load callbacks",
    "refresh callback",
    "event stream: first event",
)


# ---- figures -----------------------------------------------------------------------------


@dataclass
class Figures:
    """Every request's time by kind, and errors by kind and reason (shared by the viewers)."""

    ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: when each viewer had its page on screen (monotonic)
    loaded_at: list[float] = field(default_factory=list)
    #: (start, ms) of every refresh, to tell the steady state from the arrival
    refreshes: list[tuple[float, float]] = field(default_factory=list)

    def took(self, kind: str, ms: float) -> None:
        with self.lock:
            self.ms[kind].append(ms)

    def failed(self, kind: str, reason: str) -> None:
        with self.lock:
            self.errors[kind][reason[:80]] += 1


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


# ---- the browser's side, over HTTP -------------------------------------------------------

_current_kind = threading.local()


class Answer:
    """A requests response dressed as the Flask test client's (what bench_pages expects)."""

    def __init__(self, response: requests.Response) -> None:
        self.response = response
        self.status_code = response.status_code

    def get_data(self, as_text: bool = False) -> Any:
        return self.response.text if as_text else self.response.content

    def get_json(self) -> Any:
        return self.response.json()


class HttpClient:
    """One browser's cookie jar against ``base``; times and checks every request by kind."""

    def __init__(self, base: str, figures: Figures) -> None:
        self.base = base
        self.figures = figures
        self.session = requests.Session()

    def _kind(self, method: str, path: str) -> str:
        if path == "/_dash-update-component":
            return getattr(_current_kind, "name", "load callbacks")
        if path.startswith("/login"):
            return "sign-in" if method == "POST" else "login form"
        if path in ("/_dash-layout", "/_dash-dependencies"):
            return path.lstrip("/")
        return "page HTML"

    def _send(self, method: str, path: str, **kwargs: Any) -> Answer:
        kind = self._kind(method, path)
        started = time.perf_counter()
        try:
            response = self.session.request(
                method, self.base + path, timeout=REQUEST_TIMEOUT_S, allow_redirects=False, **kwargs
            )
        except requests.RequestException as exc:
            self.figures.failed(kind, type(exc).__name__)
            raise
        self.figures.took(kind, (time.perf_counter() - started) * 1000)
        if response.status_code >= 400:
            self.figures.failed(kind, f"HTTP {response.status_code}")
        return Answer(response)

    def get(self, path: str) -> Answer:
        return self._send("GET", path)

    def post(self, path: str, **kwargs: Any) -> Answer:
        return self._send("POST", path, **kwargs)

    def get_cookie(self, name: str) -> Any:
        value = self.session.cookies.get(name)
        return None if value is None else type("Cookie", (), {"value": value})()


class _Served:
    """What bench_pages' Viewer takes: something with ``test_client()``."""

    def __init__(self, base: str, figures: Figures) -> None:
        self.base, self.figures = base, figures

    def test_client(self) -> HttpClient:
        return HttpClient(self.base, self.figures)


@contextmanager
def kind(name: str) -> Iterator[None]:
    _current_kind.name = name
    try:
        yield
    finally:
        _current_kind.name = "load callbacks"


def watch_stream(
    client: HttpClient,
    figures: Figures,
    changed: threading.Event,
    stop: threading.Event,
    last: dict[str, int] | None = None,
) -> None:
    """Hold the page's event stream open; set ``changed`` at every event (both pages take
    every kind of data) and keep the event's ``server_ms`` in ``last``. Reconnects like
    EventSource when the server ends the stream."""
    while not stop.is_set():
        started = time.perf_counter()
        try:
            with client.session.get(
                client.base + "/api/live/updates", stream=True, timeout=(REQUEST_TIMEOUT_S, 60)
            ) as response:
                if response.status_code != 200:
                    figures.failed("event stream: first event", f"HTTP {response.status_code}")
                    stop.wait(2)
                    continue
                first = True
                for line in response.iter_lines(decode_unicode=True):
                    if stop.is_set():
                        return
                    if not line or not line.startswith("data:"):
                        continue
                    if last is not None:
                        with suppress(ValueError, KeyError, TypeError):
                            last["server_ms"] = int(json.loads(line[5:])["server_ms"])
                    if first:
                        figures.took("event stream: first event", (time.perf_counter() - started) * 1000)
                        first = False
                    else:
                        changed.set()
        except requests.RequestException as exc:
            if stop.is_set():
                return
            figures.failed("event stream: first event", type(exc).__name__)
            stop.wait(2)


def signed_in(base: str, account: dict[str, str], figures: Figures) -> PageViewer | None:
    """A browser signed in, with the shell's layout and the dependencies; None if it failed."""
    try:
        return PageViewer(_Served(base, figures), account)  # login form, sign-in, layout, dependencies
    except (AssertionError, requests.RequestException, AttributeError, ValueError) as exc:
        figures.failed("page load", f"{type(exc).__name__}: {str(exc)[:60]}")
        return None


def viewer(
    base: str,
    account: dict[str, str],
    path: str,
    figures: Figures,
    deadline: float,
    page: PageViewer | None = None,
) -> None:
    """One browser on ``path`` until ``deadline``: sign in (unless ``page`` already did),
    load, then refresh on pushes."""
    stop = threading.Event()
    page = page or signed_in(base, account, figures)
    if page is None:
        return
    try:
        _timings, props = first_render(page, path)  # page HTML, router, load callbacks
        with figures.lock:
            figures.loaded_at.append(time.monotonic())
    except (AssertionError, requests.RequestException, StopIteration, ValueError) as exc:
        figures.failed("page load", f"{type(exc).__name__}: {str(exc)[:60]}")
        return
    spec = update_spec(page, props)
    trigger = next((k for k in props if k.endswith("-push")), None)
    min_s = float(((props.get(trigger) or {}).get("data") or {}).get("min_ms") or 1000) / 1000
    changed = threading.Event()
    pushed: dict[str, int] = {}
    stream = threading.Thread(
        target=watch_stream, args=(page.client, figures, changed, stop, pushed), name="stream", daemon=True
    )
    stream.start()
    last = 0.0
    try:
        while time.monotonic() < deadline and spec is not None:
            if not changed.wait(timeout=max(0.0, min(1.0, deadline - time.monotonic()))):
                continue
            wait = last + min_s - time.monotonic()
            if wait > 0:
                time.sleep(wait)  # the trigger keeps the last change for the end of the interval
            if time.monotonic() >= deadline:
                break
            changed.clear()
            last = time.monotonic()
            try:
                with kind("refresh callback"):
                    timed, _ = measure_update(page, spec, props, pushed.get("server_ms"))
                with figures.lock:
                    figures.refreshes.append((last, timed.ms))
            except (AssertionError, requests.RequestException, ValueError):
                pass  # counted by the client; the browser would try again at the next push
    finally:
        stop.set()
        page.client.session.close()
        stream.join(5)


# ---- a system of our own -----------------------------------------------------------------


def _wait_for(url: str, process: subprocess.Popen[bytes], log: Path, budget: float) -> None:
    deadline = time.monotonic() + budget
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{process.args} exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} did not answer within {budget:.0f} s: {log.read_text(errors='replace')[-2000:]}")


def _end(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


@contextmanager
def own_system(workers: int, rate: float, workdir: Path) -> Iterator[tuple[str, dict[str, str], int]]:
    """Database, Redis, Mosquitto, one ingest worker, the simulator and gunicorn; yields the
    base URL, a viewer account and the gunicorn master's pid."""
    import redis

    from ingest.broker import free_port
    from models.db import create_engine_for
    from models.reference import seed_reference_data
    from models.users import create_account

    redis.Redis.from_url(REDIS_URL).flushdb()
    broker = BenchMosquitto(workdir / "mosquitto")
    broker.start()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        with fresh_database() as url:
            engine = create_engine_for(url)
            seed_reference_data(engine)
            account = {"username": "bench-viewer", "password": secrets.token_urlsafe(16)}
            with engine.begin() as conn:
                create_account(conn, **account, role="viewer", by="bench", now=datetime.now(UTC))
            engine.dispose()
            port = free_port()
            env = {k: v for k, v in os.environ.items() if not k.startswith(("CITYOPS_", "PROMETHEUS_"))}
            env.update(
                CITYOPS_DATABASE_URL=url,
                CITYOPS_REDIS_URL=REDIS_URL,
                CITYOPS_MQTT_URL=broker.url,
                CITYOPS_SECRET_KEY=secrets.token_urlsafe(48),
                CITYOPS_DATA_DIR=str(workdir / "var"),
                CITYOPS_WORKER_ID=f"bench-load-{secrets.token_hex(3)}",
                CITYOPS_LOG_LEVEL="WARNING",
            )
            python = sys.executable
            commands = {
                "ingest": [python, "cli.py", "ingest"],
                "simulate": [python, "cli.py", "simulate", "--rate", str(rate), "--seed", "7"],
                "gunicorn": [
                    str(Path(python).with_name("gunicorn")),
                    *("-c", "deploy/gunicorn.conf.py", "-w", str(workers), "-b", f"127.0.0.1:{port}"),
                    *("--access-logfile", "/dev/null", "app:server"),
                ],
            }
            logs = {}
            for name, command in commands.items():
                logs[name] = workdir / f"{name}.log"
                with logs[name].open("wb") as log:
                    processes.append(
                        subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
                    )
            base = f"http://127.0.0.1:{port}"
            _wait_for(base + "/healthz", processes[-1], logs["gunicorn"], START_BUDGET_S)
            # A live city before the first viewer: devices registered and readings arriving.
            client = redis.Redis.from_url(REDIS_URL)
            deadline = time.monotonic() + START_BUDGET_S
            while client.zcard("cityops:devices:last_seen") < 100 and time.monotonic() < deadline:
                if processes[0].poll() is not None:
                    raise SystemExit(f"ingest exited: {logs['ingest'].read_text(errors='replace')[-2000:]}")
                time.sleep(1)
            print(f"system up: {client.zcard('cityops:devices:last_seen')} devices live, {base}", flush=True)
            try:
                yield base, account, processes[-1].pid
            finally:
                for process in reversed(processes):
                    _end(process)
                # What the web tier itself said: workers killed or restarted, errors.
                lines = logs["gunicorn"].read_text(errors="replace").splitlines()
                said = Counter(
                    m.group(0)
                    for line in lines
                    for m in [re.search(r"WORKER TIMEOUT|Booting worker|Traceback|ERROR", line)]
                    if m
                )
                print(f"gunicorn log: {dict(said)}", flush=True)
                # The log goes with the work folder: show the first error in full.
                first = next((i for i, ln in enumerate(lines) if "ERROR" in ln or "Traceback" in ln), None)
                if first is not None:
                    print("\n".join(lines[first : first + 40]), flush=True)
    finally:
        for process in processes:
            _end(process)
        broker.stop()
        redis.Redis.from_url(REDIS_URL).flushdb()


# ---- the run -----------------------------------------------------------------------------


def tier_metrics(base: str) -> dict[str, float]:
    """A few figures from ``/metrics`` (every worker's, in multiprocess mode)."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = requests.get(base + "/metrics", timeout=10).text
    except requests.RequestException:
        return {}
    out: dict[str, float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "cityops_web_connected_viewers":
                out["viewers"] = sample.value
            elif sample.name == "cityops_web_requests_total":
                out["requests"] += sample.value
    return dict(out)


@dataclass
class Run:
    figures: Figures
    viewers: int
    #: monotonic time of the first viewer's arrival
    started: float
    elapsed_s: float
    #: open event streams over every web worker, per ``/metrics`` shortly before the end
    streams_at_end: float | None
    #: (monotonic time, CPU seconds of the web tier's processes so far), every half second
    cpu: list[tuple[float, float]] = field(default_factory=list)
    #: resident memory of the web tier's processes near the end (KiB)
    rss_kib: int = 0

    def cpu_between(self, start: float, end: float) -> float | None:
        inside = [c for t, c in self.cpu if start <= t <= end]
        return inside[-1] - inside[0] if len(inside) >= 2 else None


def web_cpu(master: int | None) -> float:
    return sum(cpu_seconds(p) for p in process_tree(master)) if master else 0.0


def load(
    base: str,
    account: dict[str, str],
    viewers: int,
    duration: float,
    ramp: float,
    *,
    sign_in_first: bool,
    master: int | None = None,
) -> Run:
    figures = Figures()
    pages: list[PageViewer | None] = [None] * viewers
    if sign_in_first:
        # Sessions opened before the clock starts (wall screens and desks signed in at the
        # start of the shift); four at a time, as each sign-in costs an Argon2id hash.
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(4) as pool:
            pages = list(pool.map(lambda _: signed_in(base, account, figures), range(viewers)))
        print(f"signed in: {sum(p is not None for p in pages)} of {viewers}", flush=True)
    started = time.monotonic()
    deadline = started + duration
    threads = []
    for i in range(viewers):
        if sign_in_first and pages[i] is None:
            continue
        thread = threading.Thread(
            target=viewer,
            args=(base, account, PAGES[i % len(PAGES)], figures, deadline, pages[i]),
            name=f"viewer-{i}",
            daemon=True,
        )
        threads.append(thread)
        # Spread over the ramp: viewers arrive during the first seconds, not all at once.
        time.sleep(max(0.0, started + ramp * i / max(1, viewers) - time.monotonic()))
        thread.start()
    streams = None
    cpu = [(time.monotonic(), web_cpu(master))]
    rss = 0
    while any(t.is_alive() for t in threads):
        if streams is None and time.monotonic() > deadline - 5:
            streams = tier_metrics(base).get("viewers")
            rss = sum(rss_kb(p) for p in process_tree(master)) if master else 0
        cpu.append((time.monotonic(), web_cpu(master)))
        if time.monotonic() > deadline + 60:
            print("some viewers did not finish within 60 s of the deadline", flush=True)
            break
        time.sleep(0.5)
    return Run(figures, viewers, started, time.monotonic() - started, streams, cpu if master else [], rss)


def _row(name: str, values: list[float], failed: int) -> str:
    cells = [f"{percentile(values, q):,.0f}" for q in (0.5, 0.95, 1.0)] if values else ["–"] * 3
    return f"| {name} | {len(values):,} | {failed} | " + " | ".join(cells) + " |"


def report(run: Run) -> str:
    figures, elapsed = run.figures, run.elapsed_s
    lines = [
        "| request | count | errors | p50 ms | p95 ms | max ms |",
        "|---|---|---|---|---|---|",
    ]
    total = errors = 0
    for name in [*KINDS, *(k for k in figures.ms if k not in KINDS), "page load"]:
        values = figures.ms.get(name, [])
        failed = sum(figures.errors.get(name, Counter()).values())
        if not values and not failed:
            continue
        if name != "event stream: first event":
            total += len(values)
        errors += failed
        lines.append(_row(name, values, failed))
    # Steady state: refreshes begun once every viewer that got its page had it on screen.
    all_loaded = max(figures.loaded_at, default=float("inf"))
    steady = [ms for started, ms in figures.refreshes if started >= all_loaded]
    lines.append(_row("refresh callback, all pages loaded", steady, 0))
    reasons = {k: dict(v) for k, v in figures.errors.items() if v}
    refreshes = figures.ms.get("refresh callback", [])
    streams = "–" if run.streams_at_end is None else f"{run.streams_at_end:.0f}"
    lines += [
        "",
        f"{run.viewers} viewers ({', '.join(PAGES)} alternately), {elapsed:.0f} s, "
        f"{total:,} requests ({total / elapsed:.1f}/s), {errors} errors"
        + (f": {json.dumps(reasons)}" if reasons else ""),
        f"pages on screen: {len(figures.loaded_at)} of {run.viewers}, the last after "
        f"{(all_loaded - run.started) if figures.loaded_at else float('nan'):.0f} s; "
        f"refreshes per viewer per minute: {len(refreshes) / run.viewers / (elapsed / 60):.1f}; "
        f"open streams on /metrics 5 s before the end: {streams}",
    ]
    if run.cpu:
        whole = run.cpu[-1][1] - run.cpu[0][1]
        line = (
            f"web tier (gunicorn master + workers): {whole:,.0f} CPU s over the run "
            f"({whole / elapsed:.2f} cores), {run.rss_kib / 1024:,.0f} MB resident near the end"
        )
        deadline = run.started + elapsed
        steady_cpu = run.cpu_between(all_loaded, deadline)
        in_window = [ms for started, ms in figures.refreshes if started >= all_loaded]
        if steady_cpu is not None and in_window:
            window = deadline - all_loaded
            line += (
                f"; all pages loaded: {steady_cpu / window:.2f} cores for {len(in_window)} refreshes "
                f"in {window:.0f} s = {steady_cpu / len(in_window) * 1000:,.0f} ms CPU per refresh "
                "(streams and keep-alives included)"
            )
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--viewers", type=int, default=50)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds, from the first viewer")
    parser.add_argument("--ramp", type=float, default=10.0, help="seconds over which viewers arrive")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers of the system started here")
    parser.add_argument("--rate", type=float, default=40.0, help="simulator messages per second")
    parser.add_argument("--url", help="a running system on loopback instead of one started here")
    parser.add_argument(
        "--sign-in-first", action="store_true", help="sign every viewer in before the timed run starts"
    )
    parser.add_argument("--username")
    parser.add_argument("--password")
    args = parser.parse_args(argv)
    if args.url and not re.match(r"^https?://(127\.0\.0\.1|localhost|\[::1\])[:/]", args.url + "/"):
        raise SystemExit("--url must be a loopback address: this is a load test")
    print(f"load before: {Path('/proc/loadavg').read_text().strip()}", flush=True)
    if args.url:
        if not (args.username and args.password):
            raise SystemExit("--url needs --username and --password")
        account = {"username": args.username, "password": args.password}
        run = load(
            args.url.rstrip("/"),
            account,
            args.viewers,
            args.duration,
            args.ramp,
            sign_in_first=args.sign_in_first,
        )
    else:
        workdir = Path(tempfile.mkdtemp(prefix="cityops-bench-load-"))
        try:
            with own_system(args.workers, args.rate, workdir) as (base, account, master):
                run = load(
                    base,
                    account,
                    args.viewers,
                    args.duration,
                    args.ramp,
                    sign_in_first=args.sign_in_first,
                    master=master,
                )
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"load after: {Path('/proc/loadavg').read_text().strip()}")
    print(report(run))


if __name__ == "__main__":
    main()
