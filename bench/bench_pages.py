"""Benchmark every dashboard page at the issue's volumes: server time, payload, browser render.

    python bench/bench_pages.py [--devices 10000] [--events 50000] [--tickets 3000]
                                [--repeat 3] [--no-browser] [--keep]

What it builds, on 127.0.0.1, cleaned up at the end:

* a fresh PostGIS database next to ``cityops_test`` (created, migrated to head with
  :func:`models.db.upgrade_database`, reference data seeded, dropped at the end);
* Redis database 13 (flushed before and after).

The data go through the same code as production ingest: the simulator's own placement
and message builders make the devices, readings, video events and 12345 orders, and an
:class:`ingest.pipeline.IngestPipeline` with the rule engine and the video-case hook (as
:meth:`ingest.worker.IngestWorker.from_settings` wires them) validates, locates and writes
them to PostGIS and Redis. On top: ``--devices`` devices of the catalogue's types over the
six districts (the simulator's placement repeated), each with a live reading in the last
ten minutes; 24 h of readings every 15 min for the first ~560 sensors (every type, every
district); ``--events`` video sightings over the last 24 h (and the cases the hook makes
of them); ``--tickets`` 12345 orders over the last 24 h moved through dispatch, accept,
reply and close in various proportions; smoke and water-level readings that raise open
critical alerts; one incident opened from one of them.

Then, per page, through the Flask test client signed in as the admin account, as the
browser would call it:

* **first render** = ``GET <path>`` (the index) + the pages router callback (the page's
  layout function) + every callback Dash fires on that layout at load, in dependency
  order, each as a ``POST /_dash-update-component`` with the values in the layout
  (clientside callbacks and ones whose inputs are not on the page are left out). The sum
  of the server times is printed; the browser would run some of them in parallel.
* **update** = the page's live refresh callback (the one taking its push trigger) as it
  runs when new data arrived, after the first render (so with the page's own "drawn"
  stores, i.e. the patch path where the page has one).
* **payload** = bytes of the first render's responses (index HTML + router + callbacks),
  and of one update.

The first read of every device's live state in a process is a full one (later reads take
only the devices that reported since, models.live): it is timed once, before the pages.

Finally a fresh headless Chromium per page (selenium, Debian's chromium/chromedriver,
signed in through the login form) against the same app served by werkzeug on a free
loopback port: time from navigation start to the page's main element drawn (a Plotly
graph with data in the DOM, or the queue/stream table filled), taken in the page by a
script installed before the page's own scripts; and the JS heap then. A page that keeps
the browser busy past ``BROWSER_BUDGET_S`` counts as not drawn.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import re
import signal
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# Runnable as a plain script from the repository root or from bench/.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]

ADMIN_DATABASE_URL = os.environ.get(
    "CITYOPS_BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("CITYOPS_BENCH_PAGES_REDIS_URL", "redis://127.0.0.1:6379/13")
SEED = 20261126
DISTRICT = "511602"
#: path → JavaScript expression that is true once the page's main element is drawn.
MAIN_ELEMENT = {
    "/": "graphDrawn('overview-map')",
    "/emergency": "graphDrawn('emergency-map')",
    "/ecology": "graphDrawn('eco-map')",
    "/urban": "graphDrawn('urban-map')",
    "/hotline": "!!document.querySelector('#hotline-stream tbody tr')",
    "/alerts": "!!document.querySelector('#console-queue tbody tr')",
    f"/districts/{DISTRICT}": "graphDrawn('district-map')",
    "/wall": "!!document.querySelector('#wall-kpis *')",
}
PAGES = tuple(MAIN_ELEMENT)
#: A page that keeps the browser busy longer than this counts as not drawn.
BROWSER_BUDGET_S = 45
#: Installed before the page's scripts: records when the main element is first drawn
#: (performance.now() = ms since navigation start).
PROBE = """
window.__bench = {drawn: null};
function graphDrawn(id) {
  const gd = document.querySelector('#' + id + ' .js-plotly-plot');
  return !!(gd && gd.data && gd.data.length && gd._fullLayout);
}
(function watch() {
  let ok = false;
  try { ok = (%s); } catch (e) {}
  if (ok) { window.__bench.drawn = performance.now(); return; }
  requestAnimationFrame(watch);
})();
"""


# ---- services ----------------------------------------------------------------------------


@contextmanager
def fresh_database(*, keep: bool = False) -> Iterator[str]:
    """A new PostGIS database migrated to head, dropped afterwards (unless ``keep``); yields its URL."""
    from models.db import upgrade_database

    name = f"cityops_bench_pages_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(ADMIN_DATABASE_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = ADMIN_DATABASE_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        upgrade_database(url)
        yield url
    finally:
        if not keep:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# ---- data --------------------------------------------------------------------------------


@dataclass
class Filled:
    devices: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def city_devices(sim: Any, n: int) -> list[Any]:
    """``n`` devices: the simulator's own placement over the six districts, repeated with new ids."""
    from dataclasses import replace

    from geo.boundaries import load_districts

    districts = load_districts().set_index("district_code")
    devices: list[Any] = list(sim.devices)
    round_ = 1
    while len(devices) < n:
        devices += [replace(d, device_id=f"{d.device_id}-r{round_}") for d in sim._place_devices(districts)]
        round_ += 1
    return devices[:n]


def fill(
    engine: sa.Engine, live: Any, settings: Any, *, n_devices: int, n_events: int, n_tickets: int
) -> Filled:
    from ingest.pipeline import Inbound, IngestPipeline
    from ingest.simulator import CitySimulator, Message
    from models import incidents, tickets
    from models.cases import VideoCaseHook
    from models.rules import AlertSink, RuleEngine, RuleRunner, load_rules

    started = time.monotonic()
    now = datetime.now(UTC)
    sim = CitySimulator(seed=SEED)
    sim.devices = city_devices(sim, n_devices)
    sensors = [d for d in sim.devices if d.type != "camera"]
    cameras = [d for d in sim.devices if d.type == "camera"]
    rng = random.Random(SEED)
    rules = RuleRunner(
        RuleEngine(load_rules(settings.rules_file), live.redis),
        AlertSink(engine, live, sla=settings.alert_sla),
    )
    pipeline = IngestPipeline(engine, live, hooks=[rules, VideoCaseHook(engine)])

    def feed(messages: Iterable[Message], batch: int = 1000) -> None:
        chunk: list[Inbound] = []
        for m in messages:
            chunk.append(Inbound(m.topic, m.payload, datetime.now(UTC)))
            if len(chunk) >= batch:
                pipeline.process(chunk)
                chunk = []
        if chunk:
            pipeline.process(chunk)

    feed(sim.meta_messages())
    print(f"  {len(sim.devices):,} devices registered ({len(cameras):,} cameras)", flush=True)

    # 24 h of readings every 15 min for a subset (the first placements: every type, every
    # district), the 12345 orders and the video sightings, in time order.
    history = sensors[:560]
    timed: list[tuple[datetime, Message]] = []
    for step in range(96, 0, -1):
        at = now - timedelta(minutes=15 * step)
        for d in history:
            ts = at + timedelta(seconds=rng.uniform(0, 60))
            timed.append((ts, sim._observation(d, ts)))
    for _ in range(n_events):
        ts = now - timedelta(seconds=rng.uniform(60, 86_400))
        timed.append((ts, sim._video_event(rng.choice(cameras), ts)))
    for _ in range(n_tickets):
        ts = now - timedelta(seconds=rng.uniform(60, 86_400))
        timed.append((ts, sim._ticket(ts)))
    timed.sort(key=lambda p: p[0])
    feed(m for _, m in timed)
    print(f"  history fed ({len(timed):,} messages, {time.monotonic() - started:.0f} s)", flush=True)

    # Every device's current reading within the last ten minutes (cameras have none).
    latest = []
    for d in sensors:
        ts = datetime.now(UTC) - timedelta(seconds=rng.uniform(5, 600))
        latest.append((ts, sim._observation(d, ts)))
    latest.sort(key=lambda p: p[0])
    feed(m for _, m in latest)

    # Open critical alerts: smoke alarms and water above its warning level.
    smoke = [d for d in sensors if d.type == "smoke"][:25]
    alarms = [
        Message(
            sim.router.sensor_obs(d.device_id),
            json.dumps(
                {"ts": datetime.now(UTC).isoformat(), "metrics": {"smoke": 0.6, "temp": 31.0}}
            ).encode(),
        )
        for d in smoke
    ]
    for d in [d for d in sensors if d.type == "water_level"][:10]:
        alarms.append(
            Message(
                sim.router.sensor_obs(d.device_id),
                json.dumps(
                    {"ts": datetime.now(UTC).isoformat(), "metrics": {"level": 5.6, "flow": 900.0}}
                ).encode(),
            )
        )
    feed(alarms)

    # The orders through their lifecycle in various proportions.
    with engine.begin() as conn:
        rows = conn.execute(
            sa.text("SELECT ticket_id, category, district_code, ts FROM hotline_tickets ORDER BY ts")
        ).all()
    moved = 0
    for ticket_id, category, district, ts in rows:
        roll = rng.random()
        if roll < 0.15:
            continue  # still waiting for dispatch
        steps_at = ts + timedelta(minutes=rng.uniform(5, 60))
        try:
            with engine.begin() as conn:
                department = tickets.suggest_dispatch(category, district).department
                tickets.dispatch(
                    conn,
                    ticket_id,
                    department=department,
                    district_code=district,
                    actor="bench",
                    now=steps_at,
                )
                if roll >= 0.3:
                    tickets.accept(conn, ticket_id, actor="bench", now=steps_at + timedelta(minutes=20))
                if roll >= 0.5:
                    tickets.reply(
                        conn, ticket_id, text="已处理", actor="bench", now=steps_at + timedelta(hours=2)
                    )
                if roll >= 0.7:
                    tickets.close(conn, ticket_id, actor="bench", now=steps_at + timedelta(hours=3))
            moved += 1
        except Exception as exc:  # a refused step (e.g. a deadline in the future) leaves it where it is
            if moved == 0:
                print(f"  ticket step refused: {exc}")
    # One incident from the first open smoke alarm.
    with engine.begin() as conn:
        alert_id = conn.execute(
            sa.text("SELECT id FROM alerts WHERE severity = 'critical' AND state = 'new' ORDER BY id LIMIT 1")
        ).scalar()
        if alert_id is not None:
            change = incidents.open_from_alert(conn, alert_id, actor="bench", now=datetime.now(UTC))
    if alert_id is not None:
        incidents.announce(live, change)
    with engine.connect() as conn:
        counts = {
            t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar()
            for t in (
                "devices",
                "observations",
                "video_events",
                "hotline_tickets",
                "cases",
                "alerts",
                "incidents",
            )
        }
        counts["alerts new"] = conn.execute(
            sa.text("SELECT count(*) FROM alerts WHERE state = 'new'")
        ).scalar()
    counts["tickets moved"] = moved
    return Filled(len(sim.devices), counts, time.monotonic() - started)


# ---- server timings through the Flask test client ------------------------------------------


def walk(node: Any) -> Iterator[dict[str, Any]]:
    """Every component (``{"type", "namespace", "props"}``) in a layout's JSON, depth first."""
    if isinstance(node, dict):
        if "props" in node and "type" in node:
            yield node
            for value in node["props"].values():
                yield from walk(value)
        else:
            for value in node.values():
                yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


def id_key(component_id: Any) -> str:
    return (
        json.dumps(component_id, sort_keys=True, separators=(",", ":"))
        if isinstance(component_id, dict)
        else component_id
    )


def parse_outputs(output: str) -> list[tuple[Any, str]]:
    """``"..a.children...b.style.."`` (or ``"a.children"``) → [(id, property), …]."""
    parts = output[2:-2].split("...") if output.startswith("..") else [output]
    out = []
    for part in parts:
        cid, prop = part.rsplit(".", 1)
        prop = prop.split("@", 1)[0]  # allow_duplicate outputs carry a hash
        out.append((json.loads(cid) if cid.startswith("{") else cid, prop))
    return out


def is_wildcard(component_id: Any) -> bool:
    return isinstance(component_id, dict) and any(isinstance(v, list) for v in component_id.values())


def matches(pattern: dict[str, Any], component_id: Any) -> bool:
    if not isinstance(component_id, dict) or set(component_id) != set(pattern):
        return False
    return all(isinstance(v, list) or component_id[k] == v for k, v in pattern.items())


@dataclass
class Timed:
    ms: float
    size: int


@dataclass
class PageFigures:
    path: str
    first_ms: list[float] = field(default_factory=list)
    first_bytes: int = 0
    calls: int = 0
    update_ms: list[float] = field(default_factory=list)
    update_bytes: int = 0
    update_name: str = "–"
    slowest: str = ""
    browser_ms: list[float] = field(default_factory=list)
    browser_misses: int = 0
    heap_mb: list[float] = field(default_factory=list)


class Viewer:
    """The browser's conversation with the server, through Flask's test client."""

    def __init__(self, server: Any, account: dict[str, str]) -> None:
        self.client = server.test_client()
        page = self.client.get("/login").get_data(as_text=True)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        answer = self.client.post("/login", data={**account, "csrf_token": token})
        assert answer.status_code in (302, 303), answer.get_data(as_text=True)[:300]
        self.csrf = self.client.get_cookie("_csrf_token").value  # type: ignore[union-attr]
        self.deps = self.client.get("/_dash-dependencies").get_json()
        self.shell = self.client.get("/_dash-layout").get_json()

    def get(self, path: str) -> Timed:
        started = time.perf_counter()
        answer = self.client.get(path)
        ms = (time.perf_counter() - started) * 1000
        assert answer.status_code == 200, (path, answer.status_code)
        return Timed(ms, len(answer.get_data()))

    def call(
        self, spec: dict[str, Any], props: dict[str, dict[str, Any]], changed: list[str]
    ) -> tuple[Timed, dict]:
        """POST one callback with the values in ``props``; returns its timing and response."""
        outputs = []
        for cid, prop in parse_outputs(spec["output"]):
            if is_wildcard(cid):
                outputs.append(
                    [
                        {"id": json.loads(k), "property": prop}
                        for k in props
                        if k.startswith("{") and matches(cid, json.loads(k))
                    ]
                )
            else:
                outputs.append({"id": cid, "property": prop})

        def values(deps: list[dict[str, Any]]) -> list[Any]:
            out = []
            for dep in deps:
                cid, prop = dep["id"], dep["property"]
                if is_wildcard(cid):
                    out.append(
                        [
                            {"id": json.loads(k), "property": prop, "value": p.get(prop)}
                            for k, p in props.items()
                            if k.startswith("{") and matches(cid, json.loads(k))
                        ]
                    )
                else:
                    item = {"id": cid, "property": prop}
                    value = props.get(id_key(cid), {}).get(prop)
                    if value is not None:
                        item["value"] = value
                    out.append(item)
            return out

        body = {
            "output": spec["output"],
            "outputs": outputs if spec["output"].startswith("..") else outputs[0],
            "inputs": values(spec["inputs"]),
            "state": values(spec["state"]),
            "changedPropIds": changed,
        }
        started = time.perf_counter()
        answer = self.client.post("/_dash-update-component", json=body, headers={"X-CSRFToken": self.csrf})
        ms = (time.perf_counter() - started) * 1000
        if answer.status_code == 204:
            return Timed(ms, 0), {}
        assert answer.status_code == 200, (
            spec["output"],
            answer.status_code,
            answer.get_data(as_text=True)[:500],
        )
        data = answer.get_data()
        return Timed(ms, len(data)), json.loads(data).get("response", {})


def layout_props(layout: Any) -> dict[str, dict[str, Any]]:
    return {id_key(c["props"]["id"]): c["props"] for c in walk(layout) if "id" in c["props"]}


def present(deps: list[dict[str, Any]], props: dict[str, dict[str, Any]]) -> bool:
    for dep in deps:
        cid = dep["id"]
        if is_wildcard(cid):
            if any(isinstance(v, list) and v[0] == "MATCH" for v in cid.values()):
                return False  # MATCH callbacks fire per component; none of the pages' load on them
            continue
        if id_key(cid) not in props:
            return False
    return True


def on_page(component_id: Any, props: dict[str, dict[str, Any]]) -> bool:
    if is_wildcard(component_id):
        return any(k.startswith("{") and matches(component_id, json.loads(k)) for k in props)
    return id_key(component_id) in props


def first_render(viewer: Viewer, path: str) -> tuple[list[tuple[str, Timed]], dict[str, dict[str, Any]]]:
    """The index, the router and every initial callback of ``path``; (name, timing) each."""
    timings = [("index", viewer.get(path))]
    props = layout_props(viewer.shell)
    props.setdefault("_pages_location", {}).update(
        pathname=path, search="", hash="", href="http://localhost" + path
    )
    router = next(s for s in viewer.deps if "_pages_content.children" in s["output"])
    timed, response = viewer.call(router, props, ["_pages_location.pathname"])
    timings.append(("layout", timed))
    page_layout = response.get("_pages_content", {}).get("children")
    props.update(layout_props(page_layout))
    for cid, changed in response.items():
        props.setdefault(cid, {}).update({k: v for k, v in changed.items() if k != "children"})

    pending = [
        s
        for s in viewer.deps
        if s is not router
        and not s.get("clientside_function")
        and not s.get("prevent_initial_call")
        and present(s["inputs"], props)
        and any(on_page(c, props) for c, _ in parse_outputs(s["output"]))
    ]
    done: set[int] = set()
    while len(done) < len(pending):
        waiting = {
            (id_key(c), p)
            for i, s in enumerate(pending)
            if i not in done
            for c, p in parse_outputs(s["output"])
        }
        ready = [
            i
            for i, s in enumerate(pending)
            if i not in done and not any((id_key(d["id"]), d["property"]) in waiting for d in s["inputs"])
        ] or [min(set(range(len(pending))) - done)]
        for i in ready:
            spec = pending[i]
            timed, response = viewer.call(
                spec, props, [f"{id_key(d['id'])}.{d['property']}" for d in spec["inputs"]]
            )
            for cid, changed in response.items():
                props.setdefault(cid, {}).update(changed)
            timings.append((spec["output"][:60], timed))
            done.add(i)
    return timings, props


def update_spec(viewer: Viewer, props: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The page's live refresh: the server callback taking a push trigger (``*-push.data``)
    or, without one, the page's refresh interval."""
    candidates = [
        s
        for s in viewer.deps
        if not s.get("clientside_function")
        and present(s["inputs"], props)
        and "_pages_content" not in s["output"]
    ]
    for test in (
        lambda d: isinstance(d["id"], str) and d["id"].endswith("-push") and d["property"] == "data",
        lambda d: isinstance(d["id"], str) and d["id"].endswith("-tick") and d["property"] == "n_intervals",
    ):
        for spec in candidates:
            if any(test(d) for d in spec["inputs"]):
                return spec
    return None


def measure_update(
    viewer: Viewer, spec: dict[str, Any], props: dict[str, dict[str, Any]], server_ms: int | None = None
) -> tuple[Timed, str]:
    """The page's refresh as the browser posts it; ``server_ms`` is the stamp of the push
    that woke it (``assets/live.js`` puts it in the trigger)."""
    triggers = [
        d for d in spec["inputs"] if isinstance(d["id"], str) and d["id"].endswith(("-push", "-tick"))
    ]
    trigger = next((d for d in triggers if d["id"].endswith("-push")), triggers[0])
    state = props.setdefault(trigger["id"], {})
    if trigger["property"] == "data":
        data = dict(state.get("data") or {})
        data["n"] = int(data.get("n") or 0) + 1
        data["at"] = int(time.time() * 1000)
        if server_ms is not None:
            data["server_ms"] = server_ms
        state["data"] = data
    else:
        state["n_intervals"] = int(state.get("n_intervals") or 0) + 1
    changed = f"{trigger['id']}.{trigger['property']}"
    timed, response = viewer.call(spec, props, [changed])
    for cid, values in response.items():
        props.setdefault(cid, {}).update(
            {k: v for k, v in values.items() if not (isinstance(v, dict) and "__dash_patch_update" in v)}
        )
    return timed, changed


# ---- headless Chromium ---------------------------------------------------------------------


@contextmanager
def served(app: Any) -> Iterator[str]:
    """The app on a free loopback port (werkzeug, threaded, as ``app.run`` serves the demo)."""
    from werkzeug.serving import make_server

    from ingest.broker import free_port

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request in the figures
    port = free_port()
    server = make_server("127.0.0.1", port, app.server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="bench-web", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()


def browser_sign_in(driver: Any, base: str, account: dict[str, str]) -> None:
    from selenium.webdriver.common.by import By

    # Landing on /healthz, not on a page: a page's own first render would still be running
    # on the server when the measured navigation starts.
    driver.get(base + "/login?next=/healthz")
    driver.find_element(By.ID, "login-username").send_keys(account["username"])
    driver.find_element(By.ID, "login-password").send_keys(account["password"])
    driver.find_element(By.ID, "login-submit").click()
    deadline = time.monotonic() + 20
    while urlsplit(driver.current_url).path != "/healthz" and time.monotonic() < deadline:
        time.sleep(0.1)


def browser_run(base: str, account: dict[str, str], path: str) -> tuple[float | None, float | None]:
    """One navigation in a fresh signed-in Chromium; (None, None) when the page kept the
    browser busy past :data:`BROWSER_BUDGET_S` (every WebDriver command waits for the
    page's main thread, so such a browser is killed, not reused)."""
    from tests.browser.support import chromium

    driver = chromium()
    result: dict[str, tuple[float | None, float]] = {}

    def navigate() -> None:
        with suppress(Exception):  # a browser killed below fails its pending command
            browser_sign_in(driver, base, account)
            result["r"] = browser_render(driver, base, path, timeout=BROWSER_BUDGET_S)

    worker = threading.Thread(target=navigate, name="bench-browser", daemon=True)
    worker.start()
    worker.join(BROWSER_BUDGET_S + 20)
    if worker.is_alive() or "r" not in result:
        print(f"  browser {path}: not drawn within {BROWSER_BUDGET_S} s, browser killed", flush=True)
        kill_tree(driver.service.process.pid)
        return None, None
    driver.quit()
    return result["r"]


def kill_tree(pid: int) -> None:
    """``pid`` and its descendants (chromedriver and the Chromium it started)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    todo, seen = [pid], []
    while todo:
        current = todo.pop()
        seen.append(current)
        todo += children.get(current, [])
    for victim in seen:
        with suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)


def browser_render(driver: Any, url: str, path: str, timeout: float = 30) -> tuple[float | None, float]:
    """ms from navigation start to the main element drawn, and the JS heap in MB."""
    script = driver.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument", {"source": PROBE % MAIN_ELEMENT[path]}
    )
    try:
        driver.get(url + path)
        deadline = time.monotonic() + timeout
        drawn = None
        while time.monotonic() < deadline:
            drawn = driver.execute_script("return window.__bench && window.__bench.drawn")
            if drawn is not None:
                break
            time.sleep(0.05)
        driver.execute_cdp_cmd("HeapProfiler.collectGarbage", {})
        heap = driver.execute_script("return performance.memory.usedJSHeapSize") / 1e6
        return drawn, heap
    finally:
        driver.execute_cdp_cmd(
            "Page.removeScriptToEvaluateOnNewDocument", {"identifier": script["identifier"]}
        )


# ---- main ----------------------------------------------------------------------------------


def fmt_range(values: list[float]) -> str:
    if not values:
        return "–"
    values = sorted(values)
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:,.0f}"
    return f"{med:,.0f} ({values[0]:,.0f}–{values[-1]:,.0f})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--tickets", type=int, default=3_000)
    parser.add_argument("--repeat", type=int, default=3, help="first renders and updates per page")
    parser.add_argument("--pages", nargs="*", default=list(PAGES))
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--no-server", action="store_true", help="only the headless-browser run")
    parser.add_argument("--profile", metavar="PATH", help="cProfile the server phase into PATH")
    parser.add_argument(
        "--keep", action="store_true", help="keep the filled database and Redis db 13 (prints the URL)"
    )
    parser.add_argument("--reuse", metavar="URL", help="measure a database kept by --keep (no fill)")
    args = parser.parse_args(argv)

    import redis

    print(f"load before: {Path('/proc/loadavg').read_text().strip()}", flush=True)
    client = redis.Redis.from_url(REDIS_URL)
    if args.reuse:
        run(args.reuse, args, fill_first=False)
    else:
        client.flushdb()
        try:
            with fresh_database(keep=args.keep) as url:
                run(url, args, fill_first=True)
        finally:
            if not args.keep:
                client.flushdb()
    print(f"load after: {Path('/proc/loadavg').read_text().strip()}")


def run(url: str, args: argparse.Namespace, *, fill_first: bool) -> None:
    from app import create_app
    from models.config import load_settings
    from models.db import create_engine_for
    from models.live import LiveStore, connect_redis
    from models.reference import seed_reference_data
    from models.users import ensure_demo_accounts

    env = {
        "CITYOPS_DATABASE_URL": url,
        "CITYOPS_REDIS_URL": REDIS_URL,
        "CITYOPS_ENV": "demo",
        "CITYOPS_DATA_DIR": str(ROOT / "var" / "bench-pages"),
    }
    settings = load_settings(env)
    engine = create_engine_for(url)
    live = LiveStore(connect_redis(settings))
    seed_reference_data(engine)
    with engine.begin() as conn:
        account = ensure_demo_accounts(conn, now=datetime.now(UTC))["admin"]
    if fill_first:
        fill_and_report(engine, live, settings, args)
        if args.keep:
            print(f"kept: --reuse {url}")
    # The first read of every device's live state in a process is a full one (later reads
    # take only what moved, models.live): timed here, apart from the pages.
    started = time.perf_counter()
    live.devices()
    print(f"first full read of the live state: {(time.perf_counter() - started) * 1000:,.0f} ms", flush=True)
    measure_pages(create_app(settings, live=live, engine=engine), account, args)


def fill_and_report(engine: sa.Engine, live: Any, settings: Any, args: argparse.Namespace) -> None:
    print("filling …", flush=True)
    filled = fill(
        engine, live, settings, n_devices=args.devices, n_events=args.events, n_tickets=args.tickets
    )
    print(
        f"filled in {filled.seconds:.0f} s: {filled.devices:,} devices; "
        + ", ".join(f"{k} {v:,}" for k, v in filled.counts.items())
    )
    with engine.begin() as conn:
        conn.execute(sa.text("ANALYZE"))


def measure_pages(app: Any, account: dict[str, str], args: argparse.Namespace) -> None:
    from dashboards import shared

    # One viewer's own refresh is what is timed here: results shared between viewers
    # (dashboards/shared.py) would time a cache. bench_load.py measures the sharing.
    shared.RESULTS.enabled = False
    figures = {path: PageFigures(path) for path in args.pages}
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    for round_ in range(0 if args.no_server else args.repeat):
        for path in args.pages:
            viewer = Viewer(app.server, account)
            try:
                timings, props = first_render(viewer, path)
            except AssertionError as exc:
                print(f"  {path}: {str(exc)[:300]}")
                continue
            fig = figures[path]
            fig.first_ms.append(sum(t.ms for _, t in timings))
            fig.first_bytes = sum(t.size for _, t in timings)
            fig.calls = len(timings) - 2
            name, slow = max(timings, key=lambda p: p[1].ms)
            fig.slowest = f"{name} {slow.ms:.0f} ms"
            spec = update_spec(viewer, props)
            if spec is not None:
                timed, fig.update_name = measure_update(viewer, spec, props)
                fig.update_ms.append(timed.ms)
                fig.update_bytes = timed.size
            if round_ == 0:
                print(
                    f"  {path}: "
                    + ", ".join(f"{n} {t.ms:.0f} ms/{t.size / 1024:.0f} KB" for n, t in timings),
                    flush=True,
                )
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)

    if not args.no_browser:
        with served(app) as base:
            for _ in range(args.repeat):
                for path in args.pages:
                    drawn, heap = browser_run(base, account, path)
                    if drawn is not None and heap is not None:
                        print(
                            f"  browser {path}: drawn after {drawn:,.0f} ms, JS heap {heap:.0f} MB",
                            flush=True,
                        )
                    if drawn is not None:
                        figures[path].browser_ms.append(drawn)
                    else:
                        figures[path].browser_misses += 1
                    if heap is not None:
                        figures[path].heap_mb.append(heap)

    print()
    print(f"{args.repeat} rounds; median (min–max); server = sum of the first render's requests")
    columns = (
        "page",
        "first render server ms",
        "callbacks",
        "update server ms",
        "update trigger",
        "payload KB (first / update)",
        "browser first render ms",
        "JS heap MB",
        "slowest request",
    )
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for fig in figures.values():
        cells = (
            f"`{fig.path}`",
            fmt_range(fig.first_ms),
            str(fig.calls),
            fmt_range(fig.update_ms),
            f"`{fig.update_name}`",
            f"{fig.first_bytes / 1024:,.0f} / {fig.update_bytes / 1024:,.1f}",
            fmt_range(fig.browser_ms)
            + (f", {fig.browser_misses} × > {BROWSER_BUDGET_S} s" if fig.browser_misses else ""),
            fmt_range(fig.heap_mb),
            fig.slowest,
        )
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
